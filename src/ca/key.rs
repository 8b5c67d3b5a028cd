//! Key types from an allowlist, key generation, and PEM encoding of private keys.

use std::fmt;
use std::str::FromStr;

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use serde::{Deserialize, Serialize};

use super::CaError;

/// The key types certd generates and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyType {
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus (the CA default, as Puppet).
    Rsa4096,
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Every key type, in the order they are documented.
    pub const ALL: [KeyType; 6] = [
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Ed25519,
    ];

    /// The configuration spelling, e.g. `rsa-4096`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// Generates a fresh private key of this type with OpenSSL's CSPRNG.
    pub fn generate(self) -> Result<PrivateKey, CaError> {
        let pkey = match self {
            KeyType::Rsa2048 => PKey::from_rsa(Rsa::generate(2048)?)?,
            KeyType::Rsa3072 => PKey::from_rsa(Rsa::generate(3072)?)?,
            KeyType::Rsa4096 => PKey::from_rsa(Rsa::generate(4096)?)?,
            KeyType::EcP256 => ec_key(Nid::X9_62_PRIME256V1)?,
            KeyType::EcP384 => ec_key(Nid::SECP384R1)?,
            KeyType::Ed25519 => PKey::generate_ed25519()?,
        };
        Ok(PrivateKey(pkey))
    }

    /// The type of a public key, if it is one of the allowlisted ones.
    pub fn of_public(key: &PKeyRef<Public>) -> Option<KeyType> {
        key_type_of(key)
    }
}

fn ec_key(nid: Nid) -> Result<PKey<Private>, CaError> {
    let group = EcGroup::from_curve_name(nid)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn key_type_of<T: openssl::pkey::HasPublic>(key: &PKeyRef<T>) -> Option<KeyType> {
    match key.id() {
        Id::RSA => match key.bits() {
            2048 => Some(KeyType::Rsa2048),
            3072 => Some(KeyType::Rsa3072),
            4096 => Some(KeyType::Rsa4096),
            _ => None,
        },
        Id::EC => {
            let ec = key.ec_key().ok()?;
            match ec.group().curve_name()? {
                Nid::X9_62_PRIME256V1 => Some(KeyType::EcP256),
                Nid::SECP384R1 => Some(KeyType::EcP384),
                _ => None,
            }
        }
        Id::ED25519 => Some(KeyType::Ed25519),
        _ => None,
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = CaError;
    fn from_str(s: &str) -> Result<Self, CaError> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| CaError::UnknownKeyType(s.chars().take(32).collect()))
    }
}

impl TryFrom<String> for KeyType {
    type Error = CaError;
    fn try_from(s: String) -> Result<Self, CaError> {
        s.parse()
    }
}

impl From<KeyType> for String {
    fn from(k: KeyType) -> String {
        k.as_str().to_owned()
    }
}

/// A private key. `Debug` never prints key material.
#[derive(Clone)]
pub struct PrivateKey(PKey<Private>);

impl PrivateKey {
    /// Parses a PEM private key (PKCS#8 or traditional).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CaError> {
        PKey::private_key_from_pem(pem)
            .map(PrivateKey)
            .map_err(|_| CaError::BadKey("not a PEM private key".into()))
    }

    /// PKCS#8 PEM (`BEGIN PRIVATE KEY`), the form TLS clients and servers load.
    pub fn to_pem(&self) -> Result<Vec<u8>, CaError> {
        Ok(self.0.private_key_to_pem_pkcs8()?)
    }

    /// The key type, when it is an allowlisted one.
    pub fn key_type(&self) -> Option<KeyType> {
        key_type_of(&self.0)
    }

    /// The OpenSSL key, for signing.
    pub fn pkey(&self) -> &PKeyRef<Private> {
        &self.0
    }

    /// The public half.
    pub fn public_key(&self) -> Result<PKey<Public>, CaError> {
        Ok(PKey::public_key_from_der(&self.0.public_key_to_der()?)?)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.key_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_generates_and_is_recognised() {
        for kt in [
            KeyType::Rsa2048,
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Ed25519,
        ] {
            let key = kt.generate().unwrap();
            assert_eq!(key.key_type(), Some(kt));
            let back = PrivateKey::from_pem(&key.to_pem().unwrap()).unwrap();
            assert_eq!(back.key_type(), Some(kt));
            assert_eq!(KeyType::of_public(&key.public_key().unwrap()), Some(kt));
        }
    }

    #[test]
    fn key_type_names_round_trip_and_reject_unknown() {
        for kt in KeyType::ALL {
            assert_eq!(kt.as_str().parse::<KeyType>().unwrap(), kt);
        }
        assert_eq!("RSA-4096".parse::<KeyType>().unwrap(), KeyType::Rsa4096);
        assert!("rsa-1024".parse::<KeyType>().is_err());
        assert!("dsa".parse::<KeyType>().is_err());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = KeyType::EcP256.generate().unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted"));
        let pem = String::from_utf8(key.to_pem().unwrap()).unwrap();
        let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!shown.contains(&body));
    }

    #[test]
    fn rejects_garbage_pem() {
        assert!(PrivateKey::from_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }
}
