//! Fingerprints: a digest of the DER encoding, uppercase hex pairs joined by `:`.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest as _, Sha224, Sha256, Sha384, Sha512};

use super::CaError;

/// The digests a fingerprint may be computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Digest {
    /// MD5 (offered for compatibility with older tooling; not a safe default).
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256 (the shipped default).
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Digest {
    /// Every digest.
    pub const ALL: [Digest; 6] = [
        Digest::Md5,
        Digest::Sha1,
        Digest::Sha224,
        Digest::Sha256,
        Digest::Sha384,
        Digest::Sha512,
    ];

    /// Lowercase name, as in `x-cert/fingerprint;digest=sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha1 => "sha1",
            Digest::Sha224 => "sha224",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha512 => "sha512",
        }
    }

    /// The raw digest of `data`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Digest::Md5 => Md5::digest(data).to_vec(),
            Digest::Sha1 => Sha1::digest(data).to_vec(),
            Digest::Sha224 => Sha224::digest(data).to_vec(),
            Digest::Sha256 => Sha256::digest(data).to_vec(),
            Digest::Sha384 => Sha384::digest(data).to_vec(),
            Digest::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

impl FromStr for Digest {
    type Err = CaError;
    /// Any case; a dash after "sha" is tolerated (`SHA-256`).
    fn from_str(s: &str) -> Result<Self, CaError> {
        let folded: String = s
            .chars()
            .filter(|&c| c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Digest::ALL
            .into_iter()
            .find(|d| d.as_str() == folded)
            .ok_or_else(|| CaError::UnknownDigest(s.chars().take(32).collect()))
    }
}

impl TryFrom<String> for Digest {
    type Error = CaError;
    fn try_from(s: String) -> Result<Self, CaError> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.as_str().to_owned()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fingerprint: the digest used and its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    digest: Digest,
    bytes: Vec<u8>,
}

impl Fingerprint {
    /// The fingerprint of a DER encoding under `digest`.
    pub fn of_der(der: &[u8], digest: Digest) -> Self {
        Fingerprint {
            digest,
            bytes: digest.hash(der),
        }
    }

    /// The digest used.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

impl fmt::Display for Fingerprint {
    /// `AB:CD:...`, uppercase pairs joined by `:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Built by hand: listings format three fingerprints per entry, and `{:02X}` per
        // byte through the formatting machinery was a tenth of a listing's time.
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = String::with_capacity(self.bytes.len() * 3);
        for (i, b) in self.bytes.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({}, {self})", self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_names_parse_in_any_case_and_with_a_dash() {
        assert_eq!("SHA-256".parse::<Digest>().unwrap(), Digest::Sha256);
        assert_eq!("Sha512".parse::<Digest>().unwrap(), Digest::Sha512);
        assert_eq!("md5".parse::<Digest>().unwrap(), Digest::Md5);
        assert!("sha3".parse::<Digest>().is_err());
        assert!("".parse::<Digest>().is_err());
    }

    /// Every digest against `openssl x509 -noout -fingerprint -<digest>`.
    #[test]
    fn matches_openssl_for_all_six_digests() {
        use crate::ca::{CaPair, FixedClock, KeyType, OsRng};
        let ca = CaPair::new_root(
            "fp",
            KeyType::EcP256,
            86400,
            &FixedClock::new(1_700_000_000),
            &OsRng,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, ca.cert().to_pem().unwrap()).unwrap();
        let der = ca.cert().to_der().unwrap();
        for d in Digest::ALL {
            let out = std::process::Command::new("openssl")
                .args(["x509", "-noout", "-fingerprint", &format!("-{d}"), "-in"])
                .arg(&path)
                .output()
                .expect("openssl on PATH");
            assert!(out.status.success(), "{d}");
            let text = String::from_utf8(out.stdout).unwrap();
            // "SHA256 Fingerprint=AB:CD:..."
            let theirs = text.trim().split('=').nth(1).unwrap();
            assert_eq!(Fingerprint::of_der(&der, d).to_string(), theirs, "{d}");
        }
    }

    #[test]
    fn known_answer_sha256_of_empty_input() {
        let fp = Fingerprint::of_der(b"", Digest::Sha256);
        assert!(fp.to_string().starts_with("E3:B0:C4:42:98:FC:1C:14"));
        assert_eq!(fp.to_string().len(), 32 * 3 - 1);
    }
}
