//! CA private keys in the database, encrypted with a key-encryption key that never
//! enters it: AES-256-GCM under the 32 bytes of `[store] key_file` (0600), a fresh
//! 96-bit nonce per key, and the environment and purpose as associated data, so that a
//! row moved to another environment's place (or the root's) does not decrypt.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};

use super::PgStore;
use crate::store::{read_secret, write_file, CaKeyVault, FilesError};

const KEK_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The vault: the store's `certd_ca_keys` table and the key that opens it.
pub struct SealedKeys {
    store: Arc<PgStore>,
    kek: [u8; KEK_LEN],
    path: PathBuf,
}

impl std::fmt::Debug for SealedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        write!(f, "SealedKeys(key file {})", self.path.display())
    }
}

fn aad(scope: &str, purpose: &str) -> Vec<u8> {
    format!("certd CA key v1\0{scope}\0{purpose}").into_bytes()
}

fn vault(e: impl std::fmt::Display) -> FilesError {
    FilesError::Vault(e.to_string())
}

/// A store failure reading or writing a key: unavailable stays unavailable.
fn from_store(e: crate::store::StoreError) -> FilesError {
    match e {
        crate::store::StoreError::Unavailable(why) => FilesError::Unavailable(why),
        other => vault(other),
    }
}

/// Writes a new key file, never over one: the file is made complete beside it, then
/// linked into place, which fails if another process (a node starting at the same
/// time, with the same key file) got there first; then the file in place is the key.
fn create_kek(path: &Path) -> Result<[u8; KEK_LEN], FilesError> {
    let mut kek = [0u8; KEK_LEN];
    openssl::rand::rand_bytes(&mut kek).map_err(vault)?;
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    write_file(&tmp, &kek, 0o600)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(key_file = %path.display(), "wrote a new key-encryption key for the CA keys in the database");
            Ok(kek)
        }
        // Another process's key, in place first: that one is the key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_kek(path),
        Err(source) => Err(FilesError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The key file: private, and exactly 32 bytes.
fn read_kek(path: &Path) -> Result<[u8; KEK_LEN], FilesError> {
    let bytes = read_secret(path)?;
    <[u8; KEK_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        vault(format!(
            "the key file {} must hold exactly {KEK_LEN} bytes (it holds {})",
            path.display(),
            bytes.len()
        ))
    })
}

impl SealedKeys {
    /// Opens the vault with the key file at `path`. A missing file is written (32 random
    /// bytes, 0600) when the database holds no CA key yet; otherwise a missing, unsafe,
    /// malformed or wrong key file is refused, each with a message naming the file.
    pub fn open(store: Arc<PgStore>, path: &Path) -> Result<SealedKeys, FilesError> {
        let existing = store.any_ca_key().map_err(from_store)?;
        let kek = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if existing.is_some() {
                    return Err(vault(format!(
                        "no key file at {}: the CA keys in the database cannot be decrypted without the key file they were written with",
                        path.display()
                    )));
                }
                create_kek(path)?
            }
            _ => read_kek(path)?,
        };
        let keys = SealedKeys {
            store,
            kek,
            path: path.to_owned(),
        };
        if let Some((scope, purpose, nonce, sealed)) = existing {
            keys.open_row(&scope, &purpose, &nonce, &sealed)?;
        }
        Ok(keys)
    }

    fn open_row(
        &self,
        scope: &str,
        purpose: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, FilesError> {
        let wrong = || {
            vault(format!(
                "the key file {} does not decrypt the {purpose} key{} in the database (a wrong key file, or a row not written for this place)",
                self.path.display(),
                if scope.is_empty() { String::new() } else { format!(" of {scope}") }
            ))
        };
        if nonce.len() != NONCE_LEN || sealed.len() < TAG_LEN {
            return Err(wrong());
        }
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.kek,
            Some(nonce),
            &aad(scope, purpose),
            ciphertext,
            tag,
        )
        .map_err(|_| wrong())
    }
}

impl CaKeyVault for SealedKeys {
    fn find(&self, scope: &str, purpose: &str) -> Result<Option<Vec<u8>>, FilesError> {
        match self.store.ca_key(scope, purpose).map_err(from_store)? {
            Some((nonce, sealed)) => self.open_row(scope, purpose, &nonce, &sealed).map(Some),
            None => Ok(None),
        }
    }

    fn insert(&self, scope: &str, purpose: &str, bytes: &[u8]) -> Result<bool, FilesError> {
        let mut nonce = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce).map_err(vault)?;
        let mut tag = [0u8; TAG_LEN];
        let mut sealed = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.kek,
            Some(&nonce),
            &aad(scope, purpose),
            bytes,
            &mut tag,
        )
        .map_err(vault)?;
        sealed.extend_from_slice(&tag);
        self.store
            .insert_ca_key(scope, purpose, &nonce, &sealed)
            .map_err(from_store)
    }
}
