//! Certificate serial numbers: random, positive, 128 bits of entropy.

use std::collections::HashSet;
use std::fmt;

use openssl::asn1::Asn1Integer;
use openssl::bn::BigNum;

use super::{CaError, Rng};

/// Longest serial RFC 5280 allows, in bytes.
const MAX_SERIAL_BYTES: usize = 20;

/// A positive certificate serial number, kept as its big-endian magnitude without
/// leading zero bytes (at most 20 bytes, RFC 5280 section 4.1.2.2).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SerialNumber(Vec<u8>);

impl SerialNumber {
    /// A fresh serial: 16 random bytes (128 bits of entropy), never zero.
    pub fn random(rng: &dyn Rng) -> Self {
        loop {
            let mut buf = [0u8; 16];
            rng.fill(&mut buf);
            if let Ok(s) = SerialNumber::from_bytes(&buf) {
                return s;
            }
        }
    }

    /// From a big-endian magnitude; leading zeros are dropped. Zero and over-long values
    /// are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CaError> {
        let trimmed = without_leading_zeros(bytes);
        if trimmed.is_empty() || trimmed.len() > MAX_SERIAL_BYTES {
            return Err(CaError::BadCertificate(
                "serial number must be positive and at most 20 bytes".into(),
            ));
        }
        Ok(SerialNumber(trimmed.to_vec()))
    }

    /// Parses uppercase or lowercase hex, as [`fmt::Display`] writes it.
    pub fn from_hex(hex: &str) -> Result<Self, CaError> {
        let bn = BigNum::from_hex_str(hex)
            .map_err(|_| CaError::BadCertificate(format!("serial {hex:?} is not hex")))?;
        if bn.is_negative() {
            return Err(CaError::BadCertificate("serial number is negative".into()));
        }
        SerialNumber::from_bytes(&bn.to_vec())
    }

    /// The big-endian magnitude.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// As an OpenSSL integer, for certificate building.
    pub fn to_asn1(&self) -> Result<Asn1Integer, CaError> {
        Ok(BigNum::from_slice(&self.0)?.to_asn1_integer()?)
    }

    /// The serial as a decimal string (Puppet reports serials as integers).
    pub fn to_decimal(&self) -> String {
        let mut out = Vec::new();
        SerialNumber::write_decimal(&self.0, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends [`SerialNumber::to_decimal`] of the serial whose big-endian magnitude is
    /// `bytes`, without making one (a listing writes 100,000); `false`, with nothing
    /// written, when `bytes` is not a serial [`SerialNumber::from_bytes`] takes.
    pub fn write_decimal(bytes: &[u8], out: &mut Vec<u8>) -> bool {
        let trimmed = without_leading_zeros(bytes);
        if trimmed.is_empty() || trimmed.len() > MAX_SERIAL_BYTES {
            return false;
        }
        if trimmed.len() <= 16 {
            // Every serial certd issues fits; listings print 100,000 of them.
            use std::io::Write;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{}", to_u128(trimmed));
            return true;
        }
        match BigNum::from_slice(trimmed).and_then(|bn| bn.to_dec_str()) {
            Ok(digits) => {
                out.extend_from_slice(digits.as_bytes());
                true
            }
            Err(_) => false,
        }
    }
}

impl fmt::Display for SerialNumber {
    /// Uppercase hex, two digits a byte, as `openssl x509 -serial` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut buf = [0u8; 2 * MAX_SERIAL_BYTES];
        let n = self.0.len().min(MAX_SERIAL_BYTES);
        for (i, b) in self.0[..n].iter().enumerate() {
            buf[2 * i] = HEX[usize::from(b >> 4)];
            buf[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        f.write_str(std::str::from_utf8(&buf[..2 * n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SerialNumber({self})")
    }
}

/// A big-endian magnitude without its leading zero bytes.
fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A big-endian magnitude of at most 16 bytes as a number.
fn to_u128(magnitude: &[u8]) -> u128 {
    magnitude
        .iter()
        .fold(0u128, |n, &b| (n << 8) | u128::from(b))
}

/// A set of serial numbers, as big-endian magnitudes (leading zeros ignored: a serial
/// is an INTEGER), held compactly: each a 128-bit key, 16 bytes in the table and no
/// allocation of its own. Every serial certd issues fits; longer ones (at most 20
/// bytes) are kept apart. 100,000 serials take 2.2 MB (`manual::performance`).
#[derive(Debug, Default, Clone)]
pub struct SerialSet {
    short: HashSet<u128>,
    long: HashSet<Box<[u8]>>,
}

/// A serial's key in a [`SerialSet`].
enum SerialKey<'a> {
    Short(u128),
    Long(&'a [u8]),
}

impl<'a> SerialKey<'a> {
    fn of(magnitude: &'a [u8]) -> SerialKey<'a> {
        let m = without_leading_zeros(magnitude);
        if m.len() <= 16 {
            SerialKey::Short(to_u128(m))
        } else {
            SerialKey::Long(m)
        }
    }
}

impl SerialSet {
    /// Adds a serial; whether it was not yet in.
    pub fn insert(&mut self, magnitude: &[u8]) -> bool {
        match SerialKey::of(magnitude) {
            SerialKey::Short(k) => self.short.insert(k),
            SerialKey::Long(m) => !self.long.contains(m) && self.long.insert(m.into()),
        }
    }

    /// Whether a serial is in.
    pub fn contains(&self, magnitude: &[u8]) -> bool {
        match SerialKey::of(magnitude) {
            SerialKey::Short(k) => self.short.contains(&k),
            SerialKey::Long(m) => self.long.contains(m),
        }
    }

    /// How many serials are in.
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::OsRng;
    use std::collections::HashSet;

    #[test]
    fn random_serials_are_positive_unique_and_128_bit() {
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let s = SerialNumber::random(&OsRng);
            assert!(s.as_bytes().len() <= 16);
            assert_ne!(s.as_bytes()[0], 0);
            let asn1 = s.to_asn1().unwrap();
            assert!(!asn1.to_bn().unwrap().is_negative());
            assert!(seen.insert(s));
        }
    }

    #[test]
    fn hex_round_trips_and_leading_zeros_drop() {
        let s = SerialNumber::from_bytes(&[0, 0, 0x01, 0xAB]).unwrap();
        assert_eq!(s.to_string(), "01AB");
        assert_eq!(SerialNumber::from_hex("01ab").unwrap(), s);
        assert_eq!(s.to_decimal(), "427");
    }

    proptest::proptest! {
        #[test]
        fn fast_decimal_and_hex_agree_with_bignum(bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..=20)) {
            if let Ok(s) = SerialNumber::from_bytes(&bytes) {
                let bn = BigNum::from_slice(s.as_bytes()).unwrap();
                proptest::prop_assert_eq!(s.to_decimal(), bn.to_dec_str().unwrap().to_string());
                let hex = bn.to_hex_str().unwrap().to_string();
                // OpenSSL drops a leading zero nibble; certd keeps two digits a byte.
                let ours = s.to_string();
                proptest::prop_assert_eq!(ours.trim_start_matches('0'), hex.trim_start_matches('0'));
                proptest::prop_assert_eq!(ours.len(), 2 * s.as_bytes().len());
            }
        }
    }

    #[test]
    fn a_serial_set_holds_each_number_once_whatever_its_length() {
        let mut set = SerialSet::default();
        assert!(set.insert(&[0x01, 0xAB]));
        assert!(!set.insert(&[0, 0, 0x01, 0xAB]), "the same number");
        assert!(set.contains(&[0, 0x01, 0xAB]));
        assert!(!set.contains(&[0xAB, 0x01]));
        let long = [0x7F; 20];
        assert!(!set.contains(&long));
        assert!(set.insert(&long));
        let padded: Vec<u8> = std::iter::once(0).chain(long).collect();
        assert!(!set.insert(&padded), "the same number");
        assert!(set.contains(&long) && !set.contains(&long[1..]));
        let sixteen = [0xFF; 16];
        assert!(set.insert(&sixteen) && !set.contains(&sixteen[1..]));
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn refuses_zero_and_overlong() {
        assert!(SerialNumber::from_bytes(&[0, 0]).is_err());
        assert!(SerialNumber::from_bytes(&[1; 21]).is_err());
        assert!(SerialNumber::from_hex("-5").is_err());
        assert!(SerialNumber::from_hex("zz").is_err());
    }

    struct Zeros;
    impl Rng for Zeros {
        fn fill(&self, buf: &mut [u8]) {
            static CALLS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
            // All zeros the first time (an invalid serial), then a valid value.
            let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            buf.fill(0);
            if n > 0 {
                buf[15] = 7;
            }
        }
    }

    #[test]
    fn an_all_zero_draw_is_redrawn() {
        assert_eq!(SerialNumber::random(&Zeros).as_bytes(), &[7]);
    }
}
