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
        fmt_hex_pairs(f, &self.bytes)
    }
}

/// Hands `bytes` as [`Fingerprint`]'s `Display` writes them to `part`, a piece at a time,
/// from a buffer on the stack rather than `{:02X}` per byte through the formatter.
fn hex_pairs(bytes: &[u8], mut part: impl FnMut(&str)) {
    // A colon before every pair, the first dropped; built on the stack, 64 bytes at a
    // time.
    let mut buf = [0u8; 3 * 64];
    for (c, chunk) in bytes.chunks(64).enumerate() {
        for (slot, &b) in buf.chunks_exact_mut(3).zip(chunk) {
            let [hi, lo] = HEX_PAIR[usize::from(b)];
            slot.copy_from_slice(&[b':', hi, lo]);
        }
        let skip = usize::from(c == 0);
        // Colons and hex digits: always ASCII.
        part(std::str::from_utf8(&buf[skip..3 * chunk.len()]).unwrap_or_default());
    }
}

/// Appends `bytes` as [`Fingerprint`]'s `Display` writes them: the colons laid down
/// with the space, then each pair written in place from a table (a listing of 100,000
/// statuses writes 18 million pairs).
pub fn write_hex_pairs(out: &mut Vec<u8>, bytes: &[u8]) {
    let Some(len) = (3 * bytes.len()).checked_sub(1) else {
        return;
    };
    let start = out.len();
    out.resize(start + len, b':');
    // Every third byte stays a colon; the last pair has none after it.
    for (slot, &b) in out[start..].chunks_mut(3).zip(bytes) {
        let [hi, lo] = HEX_PAIR[usize::from(b)];
        slot[0] = hi;
        slot[1] = lo;
    }
}

/// Each byte's two uppercase hex digits.
const HEX_PAIR: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut t = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0x0f]];
        i += 1;
    }
    t
};

fn fmt_hex_pairs(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut r = Ok(());
    hex_pairs(bytes, |p| r = r.and_then(|()| f.write_str(p)));
    r
}

/// A hex digit's value (either case), or 0xFF.
const NIBBLE: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789ABCDEF"[i] as usize] = i as u8;
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// A digest's `N` bytes, written and read as [`Fingerprint`] writes them (`AB:CD:...`),
/// held without an allocation of their own: a listing reads 100,000 certificates' three
/// fingerprints. All zero: not known (records from before fingerprints were stored).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestValue<const N: usize>(pub [u8; N]);

impl<const N: usize> DigestValue<N> {
    /// `digest` of `der`; the unknown value if `digest` does not give `N` bytes.
    pub fn of_der(der: &[u8], digest: Digest) -> Self {
        DigestValue(digest.hash(der).try_into().unwrap_or([0; N]))
    }

    /// Whether it holds a digest (a digest of all zero bytes is not one anybody finds).
    pub fn is_known(&self) -> bool {
        self.0.iter().any(|&b| b != 0)
    }

    /// The bytes; none when not known.
    pub fn bytes(&self) -> &[u8] {
        if self.is_known() {
            &self.0
        } else {
            &[]
        }
    }

    /// From the `AB:CD:...` form (either case); the empty string is the unknown value.
    pub fn parse(s: &str) -> Option<Self> {
        let mut v = [0u8; N];
        if s.is_empty() {
            return Some(DigestValue(v));
        }
        let s = s.as_bytes();
        if s.len() != 3 * N - 1 {
            return None;
        }
        // No early exit: every pair is read, and any bad byte found at the end.
        let mut bad = 0u8;
        for (i, out) in v.iter_mut().enumerate() {
            let (hi, lo) = (
                NIBBLE[usize::from(s[3 * i])],
                NIBBLE[usize::from(s[3 * i + 1])],
            );
            bad |= (hi | lo) & 0xF0;
            if i + 1 < N {
                bad |= u8::from(s[3 * i + 2] != b':');
            }
            *out = hi << 4 | (lo & 0x0F);
        }
        (bad == 0).then_some(DigestValue(v))
    }
}

impl<const N: usize> Default for DigestValue<N> {
    fn default() -> Self {
        DigestValue([0; N])
    }
}

impl<const N: usize> fmt::Display for DigestValue<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hex_pairs(f, self.bytes())
    }
}

impl<const N: usize> fmt::Debug for DigestValue<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DigestValue({self})")
    }
}

impl<const N: usize> Serialize for DigestValue<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, const N: usize> Deserialize<'de> for DigestValue<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<const N: usize>;
        impl<const N: usize> serde::de::Visitor<'_> for Visitor<N> {
            type Value = DigestValue<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes as hex pairs joined by ':'")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                DigestValue::parse(s)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_str(Visitor::<N>)
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
    fn digest_values_read_back_what_they_write() {
        let fp = Fingerprint::of_der(b"x", Digest::Sha256);
        let text = fp.to_string();
        let v = DigestValue::<32>::parse(&text).unwrap();
        assert_eq!(v.to_string(), text);
        assert_eq!(DigestValue::<32>::parse(&text.to_lowercase()), Some(v));
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<DigestValue<32>>(&format!("\"{text}\"")).unwrap(),
            v
        );
        assert_eq!(DigestValue::<32>::parse(""), Some(DigestValue::default()));
        assert!(!DigestValue::<32>::default().is_known());
        assert_eq!(DigestValue::<32>::default().to_string(), "");
        for bad in [
            &text[1..],
            &text.replace(':', "-"),
            &format!("G{}", &text[1..]),
            "A",
        ] {
            assert_eq!(DigestValue::<32>::parse(bad), None, "{bad}");
        }
        assert!(serde_json::from_str::<DigestValue<20>>(&format!("\"{text}\"")).is_err());
    }

    #[test]
    fn known_answer_sha256_of_empty_input() {
        let fp = Fingerprint::of_der(b"", Digest::Sha256);
        assert!(fp.to_string().starts_with("E3:B0:C4:42:98:FC:1C:14"));
        assert_eq!(fp.to_string().len(), 32 * 3 - 1);
    }
}
