//! A certificate's [`CertSummary`] as bytes: what a listing reads of each certificate,
//! kept beside the record's JSON by stores whose listings must not parse JSON.
//!
//! A record's JSON is ~600 bytes, half of it the fingerprints' hex, and decoding it
//! was a quarter to a third of certd's CPU in a listing on PostgreSQL; these bytes are
//! ~200 and decode with a bounds check and a copy per field (`manual::postgres`).
//!
//! Layout (version 1), integers big-endian, lengths and counts `u32`:
//! `1`, the serial (length, bytes), `issued_at`, `not_before`, `not_after` (`i64`), the
//! revocation (`0`; or `1`, `revoked_at` as `i64`, the reason's RFC 5280 code as one
//! byte), the SHA-1, SHA-256 and SHA-512 fingerprints (20, 32 and 64 bytes), the DNS
//! names and the IP addresses (count, then each as length and UTF-8), the authorization
//! extensions (count, then each OID and value as length and UTF-8). Nothing may follow.

use super::records::{CertSummary, Revocation, StoredFingerprints};
use crate::ca::{DigestValue, RevocationReason};

/// The layout's version, its first byte.
const VERSION: u8 = 1;

/// `s` as bytes; `None` if a field is longer than a `u32` counts (never, for anything
/// a request body can carry): the store then keeps the JSON alone.
pub(crate) fn encode(s: &CertSummary) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.push(VERSION);
    put_bytes(&mut out, &s.serial)?;
    for t in [s.issued_at, s.not_before, s.not_after] {
        out.extend_from_slice(&t.to_be_bytes());
    }
    match s.revocation {
        None => out.push(0),
        Some(r) => {
            out.push(1);
            out.extend_from_slice(&r.revoked_at.to_be_bytes());
            out.push(r.reason.code());
        }
    }
    let f = &s.fingerprints;
    out.extend_from_slice(&f.sha1.0);
    out.extend_from_slice(&f.sha256.0);
    out.extend_from_slice(&f.sha512.0);
    for list in [&s.dns_names, &s.ip_addrs] {
        put_len(&mut out, list.len())?;
        for item in list {
            put_bytes(&mut out, item.as_bytes())?;
        }
    }
    put_len(&mut out, s.authorization_extensions.len())?;
    for (oid, value) in &s.authorization_extensions {
        put_bytes(&mut out, oid.as_bytes())?;
        put_bytes(&mut out, value.as_bytes())?;
    }
    Some(out)
}

/// What [`encode`] wrote; `None` for anything else (another version, a truncated or
/// overlong value, a string that is not UTF-8, an unknown reason code).
pub(crate) fn decode(bytes: &[u8]) -> Option<CertSummary> {
    let mut r = Reader(bytes);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let serial = r.bytes()?.to_vec();
    let (issued_at, not_before, not_after) = (r.i64()?, r.i64()?, r.i64()?);
    let revocation = match r.take(1)? {
        [0] => None,
        [1] => {
            let revoked_at = r.i64()?;
            let reason = RevocationReason::from_code(r.take(1)?[0])?;
            Some(Revocation { revoked_at, reason })
        }
        _ => return None,
    };
    let fingerprints = StoredFingerprints {
        sha1: DigestValue(r.array()?),
        sha256: DigestValue(r.array()?),
        sha512: DigestValue(r.array()?),
    };
    let dns_names = r.strings()?;
    let ip_addrs = r.strings()?;
    let n = r.count()?;
    let mut authorization_extensions = Vec::with_capacity(n.min(r.0.len() / 8));
    for _ in 0..n {
        authorization_extensions.push((r.string()?, r.string()?));
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(CertSummary {
        serial,
        issued_at,
        not_before,
        not_after,
        dns_names,
        ip_addrs,
        authorization_extensions,
        revocation,
        fingerprints,
    })
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Option<()> {
    out.extend_from_slice(&u32::try_from(n).ok()?.to_be_bytes());
    Some(())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Option<()> {
    put_len(out, b.len())?;
    out.extend_from_slice(b);
    Some(())
}

/// The bytes not yet read.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.array()?))
    }

    fn count(&mut self) -> Option<usize> {
        usize::try_from(u32::from_be_bytes(self.array()?)).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }

    fn string(&mut self) -> Option<String> {
        Some(std::str::from_utf8(self.bytes()?).ok()?.to_owned())
    }

    fn strings(&mut self) -> Option<Vec<String>> {
        let n = self.count()?;
        // Each item is at least its length: a count the bytes cannot hold reserves
        // nothing it cannot fill.
        let mut out = Vec::with_capacity(n.min(self.0.len() / 4));
        for _ in 0..n {
            out.push(self.string()?);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn summary() -> impl Strategy<Value = CertSummary> {
        let text = || proptest::collection::vec(any::<String>(), 0..4);
        let reason = proptest::sample::select(
            RevocationReason::ALL
                .iter()
                .map(|e| e.0)
                .collect::<Vec<_>>(),
        );
        (
            proptest::collection::vec(any::<u8>(), 0..21),
            any::<(i64, i64, i64)>(),
            proptest::option::of((any::<i64>(), reason)),
            (
                any::<[u8; 20]>(),
                any::<[u8; 32]>(),
                proptest::collection::vec(any::<u8>(), 64),
            ),
            (text(), text()),
            proptest::collection::vec(any::<(String, String)>(), 0..3),
        )
            .prop_map(|(serial, (a, b, c), rev, (f1, f2, f3), (dns, ips), auth)| {
                CertSummary {
                    serial,
                    issued_at: a,
                    not_before: b,
                    not_after: c,
                    dns_names: dns,
                    ip_addrs: ips,
                    authorization_extensions: auth,
                    revocation: rev.map(|(revoked_at, reason)| Revocation { revoked_at, reason }),
                    fingerprints: StoredFingerprints {
                        sha1: DigestValue(f1),
                        sha256: DigestValue(f2),
                        sha512: DigestValue(f3.try_into().unwrap_or([0; 64])),
                    },
                }
            })
    }

    proptest! {
        #[test]
        fn decodes_what_it_encodes(s in summary()) {
            let bytes = encode(&s).unwrap();
            prop_assert_eq!(decode(&bytes), Some(s));
        }

        #[test]
        fn refuses_every_truncation_and_any_trailing_byte(s in summary(), extra in any::<u8>()) {
            let mut bytes = encode(&s).unwrap();
            for n in 0..bytes.len() {
                prop_assert_eq!(decode(&bytes[..n]), None);
            }
            bytes.push(extra);
            prop_assert_eq!(decode(&bytes), None);
        }

        /// A byte changed anywhere: refused, or read as what encodes to exactly these
        /// bytes (the layout has one encoding per summary), never a panic.
        #[test]
        fn a_changed_byte_is_refused_or_read_as_exactly_what_it_says(
            s in summary(),
            at in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = encode(&s).unwrap();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Some(read) = decode(&bytes) {
                prop_assert_eq!(encode(&read).unwrap(), bytes);
            }
        }

        #[test]
        fn arbitrary_bytes_of_this_version_never_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), 1..400),
        ) {
            bytes[0] = VERSION;
            if let Some(read) = decode(&bytes) {
                prop_assert_eq!(encode(&read).unwrap(), bytes);
            }
        }
    }

    #[test]
    fn refuses_another_version_an_unknown_reason_and_bad_utf8() {
        let mut s = CertSummary {
            serial: vec![1, 2],
            issued_at: 1,
            not_before: 2,
            not_after: 3,
            dns_names: vec!["a".into()],
            ip_addrs: vec![],
            authorization_extensions: vec![],
            revocation: Some(Revocation {
                revoked_at: 4,
                reason: RevocationReason::KeyCompromise,
            }),
            fingerprints: StoredFingerprints::default(),
        };
        let good = encode(&s).unwrap();
        assert_eq!(decode(&good).as_ref(), Some(&s));
        let mut other = good.clone();
        other[0] = 2;
        assert_eq!(decode(&other), None);
        // The reason code sits after version, serial (4 + 2), three times and the flag.
        let at = 1 + 4 + 2 + 24 + 1 + 8;
        let mut reason = good.clone();
        assert_eq!(reason[at], 1);
        reason[at] = 7; // RFC 5280 leaves 7 unused.
        assert_eq!(decode(&reason), None);
        s.revocation = None;
        let mut utf8 = encode(&s).unwrap();
        let last = utf8.len() - 4 - 4 - 1; // before the two empty counts: the name "a"
        assert_eq!(utf8[last], b'a');
        utf8[last] = 0xFF;
        assert_eq!(decode(&utf8), None);
    }
}
