//! The data directory's files: CA certificates and keys, the TLS server identity and the
//! admin client identity (`manual::robustness`). Keys are written with mode 0600, every
//! file atomically (temporary file, fsync, rename, fsync of the directory).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ca::EnvName;

/// File-level failures, each naming the path.
#[derive(Debug, Error)]
pub enum FilesError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A private key file can be read by other users.
    #[error("{path} has mode {mode:o}; private keys must not be readable by group or others (chmod 600)")]
    InsecureKey {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The CA key vault (keys kept in the database) failed.
    #[error("CA key vault: {0}")]
    Vault(String),
    /// The CA key vault's store cannot be reached now (a request answers 503).
    #[error("CA key vault: the store is unavailable: {0}")]
    Unavailable(String),
}

/// Which CA private key.
#[derive(Debug, Clone, Copy)]
pub enum CaKey<'a> {
    /// The root CA's.
    Root,
    /// An environment's issuing CA's.
    Issuing(&'a EnvName),
}

impl CaKey<'_> {
    /// The environment it belongs to (`""` for the root) and its purpose: the row's key,
    /// and what its encryption is bound to.
    pub fn scope(&self) -> (String, &'static str) {
        match self {
            CaKey::Root => (String::new(), "root-ca"),
            CaKey::Issuing(env) => (env.to_string(), "issuing-ca"),
        }
    }
}

/// What else every node of an installation shares through the vault, beside the CA keys:
/// the files a node whose data directory is empty writes from it before it serves
/// ([`DataDir::share`]), so that adding a node takes the configuration and the key file
/// and nothing else. All nodes serve one TLS identity (the name the load balancer is
/// reached by is in it), and every environment's chain.
#[derive(Debug, Clone, Copy)]
pub enum Shared<'a> {
    /// `ca/root.pem`: the root CA certificate (the mark of a set-up directory).
    RootCert,
    /// An environment's `chain.pem` (its `ca.pem` is the chain's first certificate).
    Chain(&'a EnvName),
    /// `tls/server.key`.
    ServerKey,
    /// `tls/server.pem`.
    ServerCert,
}

impl Shared<'_> {
    fn scope(&self) -> (String, &'static str) {
        match self {
            Shared::RootCert => (String::new(), "root-cert"),
            Shared::Chain(env) => (env.to_string(), "chain"),
            Shared::ServerKey => (String::new(), "server-key"),
            Shared::ServerCert => (String::new(), "server-cert"),
        }
    }
}

/// Where CA private keys are kept when not as files of the data directory, with the
/// [`Shared`] files: the PostgreSQL store keeps them in the database, encrypted
/// (`store::pg::keys`). Rows are named by scope (an environment, or `""`) and purpose;
/// none is ever replaced.
pub trait CaKeyVault: Send + Sync + std::fmt::Debug {
    /// A row's bytes; `None` when there is none; an error when it does not decrypt.
    fn find(&self, scope: &str, purpose: &str) -> Result<Option<Vec<u8>>, FilesError>;
    /// Stores a new row; false, nothing written, when there is one already.
    fn insert(&self, scope: &str, purpose: &str, bytes: &[u8]) -> Result<bool, FilesError>;

    /// The key's PEM; an error when it is not there or does not decrypt.
    fn get(&self, key: CaKey<'_>) -> Result<Vec<u8>, FilesError> {
        let (scope, purpose) = key.scope();
        self.find(&scope, purpose)?.ok_or_else(|| {
            FilesError::Vault(format!("the database holds no {purpose} key{}", of(&scope)))
        })
    }

    /// Stores a new key; an error when one is there already (never replaced).
    fn put(&self, key: CaKey<'_>, pem: &[u8]) -> Result<(), FilesError> {
        let (scope, purpose) = key.scope();
        if self.insert(&scope, purpose, pem)? {
            return Ok(());
        }
        Err(FilesError::Vault(format!(
            "the database already holds a {purpose} key{}; certd never replaces one (a data directory set up anew against another installation's database, or two first nodes started at once: start this one again)",
            of(&scope)
        )))
    }
}

fn of(scope: &str) -> String {
    if scope.is_empty() {
        String::new()
    } else {
        format!(" for {scope}")
    }
}

/// The layout of a data directory. Paths only; nothing is created until written. CA
/// private keys are files here, or in a [`CaKeyVault`] when it has one.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    vault: Option<std::sync::Arc<dyn CaKeyVault>>,
}

/// A `map_err` for an I/O error on `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_owned(),
        source,
    }
}

impl DataDir {
    /// A data directory rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir {
            root: root.into(),
            vault: None,
        }
    }

    /// The same directory, its CA keys kept in `vault` instead of files.
    pub fn with_vault(mut self, vault: std::sync::Arc<dyn CaKeyVault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// A CA private key (PEM), from the vault or its file.
    pub fn read_ca_key(&self, key: CaKey<'_>) -> Result<Vec<u8>, FilesError> {
        match (&self.vault, key) {
            (Some(v), _) => v.get(key),
            (None, CaKey::Root) => self.read_secret(&self.root_key()),
            (None, CaKey::Issuing(env)) => self.read_secret(&self.env_key(env)),
        }
    }

    /// Stores a new CA private key (PEM), in the vault or as its file (0600).
    pub fn write_ca_key(&self, key: CaKey<'_>, pem: &[u8]) -> Result<(), FilesError> {
        match (&self.vault, key) {
            (Some(v), _) => v.put(key, pem),
            (None, CaKey::Root) => self.write_secret(&self.root_key(), pem),
            (None, CaKey::Issuing(env)) => self.write_secret(&self.env_key(env), pem),
        }
    }

    /// The CA key `key` as the vault holds it; None without a vault (keys are files,
    /// which a new key replaces) or when it holds none.
    pub fn vault_ca_key(&self, key: CaKey<'_>) -> Result<Option<Vec<u8>>, FilesError> {
        self.in_vault(key.scope())
    }

    /// The vault's row (scope, purpose); None without a vault or when it holds none.
    fn in_vault(&self, (scope, purpose): (String, &str)) -> Result<Option<Vec<u8>>, FilesError> {
        match &self.vault {
            Some(vault) => vault.find(&scope, purpose),
            None => Ok(None),
        }
    }

    /// Whether a node could join an installation through the vault: it holds the root
    /// CA certificate that another node shared.
    pub fn can_join(&self) -> Result<bool, FilesError> {
        if self.in_vault(Shared::RootCert.scope())?.is_some() {
            return Ok(true);
        }
        if self.in_vault(CaKey::Root.scope())?.is_some() {
            return Err(FilesError::Vault(
                "the database holds a root CA key but not its certificate: another node is setting it up now (start this one again in a moment), or it was set up by an older certd (start a node that has the data directory first)".into(),
            ));
        }
        Ok(false)
    }

    /// Makes the [`Shared`] files (of `envs`, with the root's and the server's) the same
    /// here and in the vault: a file the vault lacks is stored there, a file this
    /// directory lacks is written from it; `ca/root.pem` last, so that a node joining
    /// with an empty directory is set up only once it has everything. Without a vault,
    /// nothing.
    pub fn share(&self, envs: &[EnvName]) -> Result<(), FilesError> {
        let Some(vault) = &self.vault else {
            return Ok(());
        };
        let mut items = vec![Shared::ServerKey, Shared::ServerCert];
        items.extend(envs.iter().map(Shared::Chain));
        items.push(Shared::RootCert);
        for item in items {
            let (scope, purpose) = item.scope();
            let path = match item {
                Shared::RootCert => self.root_cert(),
                Shared::Chain(env) => self.env_chain(env),
                Shared::ServerKey => self.server_key(),
                Shared::ServerCert => self.server_cert(),
            };
            if path.is_file() {
                if vault.find(&scope, purpose)?.is_none() {
                    let bytes = match item {
                        Shared::ServerKey => self.read_secret(&path)?,
                        _ => self.read(&path)?,
                    };
                    vault.insert(&scope, purpose, &bytes)?;
                }
                continue;
            }
            let Some(bytes) = vault.find(&scope, purpose)? else {
                continue;
            };
            match item {
                Shared::ServerKey => self.write_secret(&path, &bytes)?,
                Shared::Chain(env) => self.write_chain(env, &bytes)?,
                _ => self.write_public(&path, &bytes)?,
            }
        }
        Ok(())
    }

    /// Where the keys are in a vault: makes this directory's chain of `env` the one the
    /// vault holds, when they differ (two nodes that made one at once: the first shared
    /// is the installation's).
    pub fn follow_shared_chain(&self, env: &EnvName) -> Result<(), FilesError> {
        let Some(bytes) = self.in_vault(Shared::Chain(env).scope())? else {
            return Ok(());
        };
        let path = self.env_chain(env);
        if path.is_file() && self.read(&path)? == bytes {
            return Ok(());
        }
        self.write_chain(env, &bytes)
    }

    /// Writes `env`'s chain, and its first certificate as the issuing CA's.
    fn write_chain(&self, env: &EnvName, bytes: &[u8]) -> Result<(), FilesError> {
        let first = first_pem(bytes).ok_or_else(|| {
            FilesError::Vault(format!("the chain of {env} in the database is not PEM"))
        })?;
        self.write_public(&self.env_chain(env), bytes)?;
        self.write_public(&self.env_cert(env), first)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory (0700) when it does not exist, and makes it 0700 when it
    /// does (it may have been made by hand): before a store is opened in it, so that
    /// nobody else can open the store's files while they are written.
    pub fn create(&self) -> Result<(), FilesError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io(&self.root))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(io(&self.root))
    }

    /// `ca/root.pem`; its presence means setup completed (it is written last).
    pub fn root_cert(&self) -> PathBuf {
        self.root.join("ca/root.pem")
    }

    /// `ca/root.key`.
    pub fn root_key(&self) -> PathBuf {
        self.root.join("ca/root.key")
    }

    /// `ca/<env>/ca.pem`, the issuing CA; written last for its environment.
    pub fn env_cert(&self, env: &EnvName) -> PathBuf {
        self.root.join("ca").join(env.as_str()).join("ca.pem")
    }

    /// `ca/<env>/chain.pem`: issuing CA, then root.
    pub fn env_chain(&self, env: &EnvName) -> PathBuf {
        self.root.join("ca").join(env.as_str()).join("chain.pem")
    }

    /// `ca/<env>/ca.key`.
    pub fn env_key(&self, env: &EnvName) -> PathBuf {
        self.root.join("ca").join(env.as_str()).join("ca.key")
    }

    /// `tls/server.pem`.
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("tls/server.pem")
    }

    /// `tls/server.key`.
    pub fn server_key(&self) -> PathBuf {
        self.root.join("tls/server.key")
    }

    /// `admin/admin.pem`.
    pub fn admin_cert(&self) -> PathBuf {
        self.root.join("admin/admin.pem")
    }

    /// `admin/admin.key`.
    pub fn admin_key(&self) -> PathBuf {
        self.root.join("admin/admin.key")
    }

    /// `store/`, the sled database.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Copies the data directory's files but `skip` (the store and the CA keys, which go
    /// through the target's vault or files), keeping each file's mode; `ca/root.pem`, the
    /// mark of a set-up directory, last.
    pub fn copy_files_into(&self, to: &DataDir, skip: &[PathBuf]) -> Result<(), FilesError> {
        let (from, to) = (self.root(), to.root());
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                let meta = std::fs::symlink_metadata(&path)?;
                if meta.is_dir() {
                    walk(&path, out)?;
                } else if meta.is_file() {
                    out.push(path);
                }
            }
            Ok(())
        }
        let mut files = Vec::new();
        walk(from, &mut files).map_err(io(from))?;
        let marker = from.join("ca/root.pem");
        files.retain(|f| !skip.iter().any(|s| f.starts_with(s)) && *f != marker);
        files.push(marker);
        for file in files {
            let rel = file.strip_prefix(from).unwrap_or(&file);
            if rel.extension().is_some_and(|e| e == "tmp") {
                continue;
            }
            let mode = std::fs::metadata(&file)
                .map_err(io(&file))?
                .permissions()
                .mode()
                & 0o777;
            let bytes = std::fs::read(&file).map_err(io(&file))?;
            write_file(&to.join(rel), &bytes, mode)?;
        }
        Ok(())
    }

    /// Whether setup has completed here.
    pub fn is_set_up(&self) -> bool {
        self.root_cert().is_file()
    }

    /// Whether the environment's issuing CA exists.
    pub fn has_env(&self, env: &EnvName) -> bool {
        self.env_cert(env).is_file()
    }

    /// Reads a file.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, FilesError> {
        fs::read(path).map_err(io(path))
    }

    /// Reads a private key file, refusing one that group or others may read.
    pub fn read_secret(&self, path: &Path) -> Result<Vec<u8>, FilesError> {
        read_secret(path)
    }

    /// Makes the data directory private: every directory in it 0700 and every file of
    /// the store 0600 (the store holds API-made settings and the audit log; its engine
    /// creates files with the process umask). Called at every start, so a directory
    /// made by an older certd is closed too.
    pub fn make_private(&self) -> Result<(), FilesError> {
        fn walk(dir: &Path, files_too: bool) -> Result<(), FilesError> {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
            for entry in fs::read_dir(dir).map_err(io(dir))? {
                let path = entry.map_err(io(dir))?.path();
                let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
                if meta.is_dir() {
                    walk(&path, files_too)?;
                } else if files_too && meta.is_file() {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                        .map_err(io(&path))?;
                }
            }
            Ok(())
        }
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(io(&self.root))?;
        for entry in fs::read_dir(&self.root).map_err(io(&self.root))? {
            let path = entry.map_err(io(&self.root))?.path();
            if fs::symlink_metadata(&path).map_err(io(&path))?.is_dir() {
                walk(&path, path == self.store_dir())?;
            }
        }
        Ok(())
    }

    /// Writes a public file (mode 0644) atomically.
    pub fn write_public(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        write_atomic(path, bytes, 0o644)
    }

    /// Writes a private key (mode 0600) atomically; the bytes never exist on disk with a
    /// wider mode.
    pub fn write_secret(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        write_atomic(path, bytes, 0o600)
    }
}

/// The first PEM block of `pem`, through its END line and newline.
fn first_pem(pem: &[u8]) -> Option<&[u8]> {
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let at = pem.windows(END.len()).position(|w| w == END)? + END.len();
    let at = if pem.get(at) == Some(&b'\n') {
        at + 1
    } else {
        at
    };
    Some(&pem[..at])
}

/// Reads a private file, refusing one that group or others may read.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, FilesError> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FilesError::InsecureKey {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).map_err(io(path))
}

/// Writes any file atomically with `mode` (0600 for keys): temporary file, fsync,
/// rename, fsync of the directory.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FilesError> {
    write_atomic(path, bytes, mode)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FilesError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    {
        use std::os::unix::fs::DirBuilderExt;
        // Directories certd makes are its own (0700), whatever the umask.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    // The umask may have narrowed the mode; set it exactly.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_written_0600_and_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(dir.path());
        let p = d.root_key();
        d.write_secret(&p, b"k").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(d.read_secret(&p).unwrap(), b"k");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            d.read_secret(&p),
            Err(FilesError::InsecureKey { .. })
        ));
    }

    #[test]
    fn a_data_directory_made_by_hand_is_made_private_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        DataDir::new(&root).create().unwrap();
        assert_eq!(
            fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn public_files_are_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(dir.path());
        let p = d.env_chain(&EnvName::production());
        d.write_public(&p, b"one").unwrap();
        d.write_public(&p, b"two").unwrap();
        assert_eq!(d.read(&p).unwrap(), b"two");
        assert!(!p.with_extension("tmp").exists());
    }
}
