//! CRL building.
//!
//! The openssl crate has no CRL builder, and going through `openssl-sys` would need
//! `unsafe`. Instead the TBSCertList is assembled with the RustCrypto `x509-cert`/`der`
//! types (a complete, typed ASN.1 model), encoded to DER, and its signature is made by
//! OpenSSL with the CA key, exactly as a certificate's would be. Tests check the result
//! with `openssl crl`.

use der::asn1::{BitString, GeneralizedTime, OctetString, UtcTime};
use der::{Decode, Encode};
use openssl::hash::MessageDigest;
use openssl::sign::Signer;
use x509_cert::crl::{CertificateList, RevokedCert};
use x509_cert::ext::pkix::AuthorityKeyIdentifier;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::Time;
use x509_cert::Version;

use super::oid;
use super::{CaError, CaPair, KeyType, SerialNumber, UnixTime};

/// RFC 5280 section 5.3.1 reason codes (value 7 is unused by the RFC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    /// 0, the default when none is given.
    Unspecified,
    /// 1.
    KeyCompromise,
    /// 2.
    CaCompromise,
    /// 3.
    AffiliationChanged,
    /// 4.
    Superseded,
    /// 5.
    CessationOfOperation,
    /// 6.
    CertificateHold,
    /// 8.
    RemoveFromCrl,
    /// 9.
    PrivilegeWithdrawn,
    /// 10.
    AaCompromise,
}

impl RevocationReason {
    pub(crate) const ALL: [(RevocationReason, u8, &'static str); 10] = [
        (RevocationReason::Unspecified, 0, "unspecified"),
        (RevocationReason::KeyCompromise, 1, "keyCompromise"),
        (RevocationReason::CaCompromise, 2, "cACompromise"),
        (
            RevocationReason::AffiliationChanged,
            3,
            "affiliationChanged",
        ),
        (RevocationReason::Superseded, 4, "superseded"),
        (
            RevocationReason::CessationOfOperation,
            5,
            "cessationOfOperation",
        ),
        (RevocationReason::CertificateHold, 6, "certificateHold"),
        (RevocationReason::RemoveFromCrl, 8, "removeFromCRL"),
        (
            RevocationReason::PrivilegeWithdrawn,
            9,
            "privilegeWithdrawn",
        ),
        (RevocationReason::AaCompromise, 10, "aACompromise"),
    ];

    /// The RFC 5280 code.
    pub fn code(self) -> u8 {
        Self::ALL
            .iter()
            .find(|(r, _, _)| *r == self)
            .map(|e| e.1)
            .unwrap_or(0)
    }

    /// The reason of an RFC 5280 code; `None` for a code it leaves unused (7) or
    /// does not define.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().find(|e| e.1 == code).map(|e| e.0)
    }

    /// The RFC 5280 name, e.g. `keyCompromise`.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(r, _, _)| *r == self)
            .map(|e| e.2)
            .unwrap_or("unspecified")
    }

    /// Parses an RFC 5280 name in any case (`keyCompromise`, `key-compromise` and
    /// `key_compromise` too).
    pub fn parse(s: &str) -> Option<Self> {
        let fold = |x: &str| -> String {
            x.chars()
                .filter(|c| *c != '-' && *c != '_')
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        let want = fold(s);
        Self::ALL
            .iter()
            .find(|(_, _, n)| fold(n) == want)
            .map(|e| e.0)
    }
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    /// The revoked certificate's serial.
    pub serial: SerialNumber,
    /// When it was revoked.
    pub revoked_at: UnixTime,
    /// Why.
    pub reason: RevocationReason,
}

/// The CRL-wide fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlParams {
    /// The monotonically increasing CRL number.
    pub number: u64,
    /// `thisUpdate`.
    pub this_update: UnixTime,
    /// `nextUpdate`.
    pub next_update: UnixTime,
}

/// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
pub(super) fn x509_time(t: UnixTime) -> Result<Time, CaError> {
    let secs = u64::try_from(t).map_err(|_| CaError::BadCertificate("time before 1970".into()))?;
    let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))?;
    if dt.year() < 2050 {
        Ok(Time::UtcTime(UtcTime::from_date_time(dt)?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

/// The signature algorithm identifier matching how [`sign`] signs with `key_type` (a
/// certificate's as well as a CRL's).
pub(super) fn signature_algorithm(
    key_type: Option<KeyType>,
) -> Result<(AlgorithmIdentifierOwned, MessageDigest), CaError> {
    let (oid, null_params, md) = match key_type {
        Some(KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096) => {
            ("1.2.840.113549.1.1.11", true, MessageDigest::sha256())
        }
        Some(KeyType::EcP256) => ("1.2.840.10045.4.3.2", false, MessageDigest::sha256()),
        Some(KeyType::EcP384) => ("1.2.840.10045.4.3.3", false, MessageDigest::sha384()),
        Some(KeyType::Ed25519) => ("1.3.101.112", false, MessageDigest::null()),
        None => return Err(CaError::BadKey("the CA key type cannot sign CRLs".into())),
    };
    let parameters = if null_params {
        Some(der::Any::from(der::asn1::Null))
    } else {
        None
    };
    let alg = AlgorithmIdentifierOwned {
        oid: oid.parse().map_err(|_| CaError::BadKey("bad OID".into()))?,
        parameters,
    };
    Ok((alg, md))
}

pub(super) fn sign(ca: &CaPair, md: MessageDigest, tbs: &[u8]) -> Result<Vec<u8>, CaError> {
    let key = ca.key().pkey();
    if md == MessageDigest::null() {
        let mut s = Signer::new_without_digest(key)?;
        Ok(s.sign_oneshot_to_vec(tbs)?)
    } else {
        let mut s = Signer::new(md, key)?;
        s.update(tbs)?;
        Ok(s.sign_to_vec()?)
    }
}

pub(super) fn extension(oid: &str, critical: bool, value: Vec<u8>) -> Result<Extension, CaError> {
    Ok(Extension {
        extn_id: oid.parse().map_err(|_| CaError::BadKey("bad OID".into()))?,
        critical,
        extn_value: OctetString::new(value)?,
    })
}

/// One revokedCertificates entry, DER (serial, revocation date, and a reasonCode entry
/// extension unless the reason is unspecified).
pub fn encode_crl_entry(e: &CrlEntry) -> Result<Vec<u8>, CaError> {
    let crl_entry_extensions = if e.reason == RevocationReason::Unspecified {
        None
    } else {
        // CRLReason ::= ENUMERATED
        Some(vec![extension(
            oid::CRL_REASON,
            false,
            vec![0x0a, 0x01, e.reason.code()],
        )?])
    };
    let entry = RevokedCert {
        serial_number: x509_cert::serial_number::SerialNumber::new(&positive(e.serial.as_bytes()))?,
        revocation_date: x509_time(e.revoked_at)?,
        crl_entry_extensions,
    };
    Ok(entry.to_der()?)
}

/// Builds and signs a v2 CRL for `ca` listing `entries`, returned as DER.
///
/// Extensions: cRLNumber and authorityKeyIdentifier (from the CA's SKI). Entries carry a
/// reasonCode unless the reason is `unspecified` (RFC 5280 5.3.1 says to omit it then).
pub fn build_crl(
    ca: &CaPair,
    entries: &[CrlEntry],
    params: &CrlParams,
) -> Result<Vec<u8>, CaError> {
    let mut encoded = Vec::new();
    for e in entries {
        encoded.extend_from_slice(&encode_crl_entry(e)?);
    }
    Ok(assemble_crl(ca, &[&encoded], params)?.der)
}

/// A DER length field.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A constructed TLV: `tag`, then the length of `parts` together, then each part.
pub(super) fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    der_len(len, &mut out);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A signed CRL, DER, and where its revokedCertificates entries lie in it.
#[derive(Debug, Clone)]
pub struct AssembledCrl {
    /// The CRL.
    pub der: Vec<u8>,
    /// The entries' encodings, concatenated: `der[entries]`.
    pub entries: std::ops::Range<usize>,
}

/// Signs a CRL whose revokedCertificates are `entries`: entry encodings from
/// [`encode_crl_entry`], concatenated in the order given (the pieces need not end at an
/// entry's end). The entries are spliced in as bytes, so a CRL of 100,000 entries is
/// re-issued by appending one entry's encoding to the previous CRL's entries rather than
/// by re-encoding them all; the other fields are encoded by `x509-cert` as usual.
pub fn assemble_crl(
    ca: &CaPair,
    entries: &[&[u8]],
    params: &CrlParams,
) -> Result<AssembledCrl, CaError> {
    let (alg, md) = signature_algorithm(ca.key().key_type())?;
    let issuer = Name::from_der(&ca.cert().subject_name().to_der()?)?;
    let mut exts = vec![extension(oid::CRL_NUMBER, false, params.number.to_der()?)?];
    if let Some(ski) = ca.cert().subject_key_id() {
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(ski.as_slice())?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        exts.push(extension(oid::AUTHORITY_KEY_ID, false, aki.to_der()?)?);
    }
    // TBSCertList ::= SEQUENCE { version, signature, issuer, thisUpdate, nextUpdate,
    //   revokedCertificates SEQUENCE OF ... OPTIONAL, crlExtensions [0] EXPLICIT ... }
    let version = Version::V2.to_der()?;
    let signature = alg.to_der()?;
    let issuer = issuer.to_der()?;
    let this_update = x509_time(params.this_update)?.to_der()?;
    let next_update = x509_time(params.next_update)?.to_der()?;
    let extensions = tlv(0xa0, &[&exts.to_der()?]);
    // The entries are the bulk (4.9 MB for 100,000): they are hashed where they lie and
    // copied once, into the finished CRL, instead of into each enclosing TLV in turn.
    let entries_len: usize = entries.iter().map(|e| e.len()).sum();
    let mut revoked_head = Vec::new();
    if entries_len > 0 {
        revoked_head.push(0x30);
        der_len(entries_len, &mut revoked_head);
    }
    let head: [&[u8]; 6] = [
        &version,
        &signature,
        &issuer,
        &this_update,
        &next_update,
        &revoked_head,
    ];
    let parts = || {
        head.iter()
            .copied()
            .chain(entries.iter().copied())
            .chain(std::iter::once(&extensions[..]))
    };
    let mut tbs_head = vec![0x30];
    der_len(parts().map(<[u8]>::len).sum(), &mut tbs_head);
    let sig = if md == MessageDigest::null() {
        // Ed25519 signs the message in one piece.
        let mut tbs = tbs_head.clone();
        for p in parts() {
            tbs.extend_from_slice(p);
        }
        sign(ca, md, &tbs)?
    } else {
        let mut signer = Signer::new(md, ca.key().pkey())?;
        signer.update(&tbs_head)?;
        for p in parts() {
            signer.update(p)?;
        }
        signer.sign_to_vec()?
    };
    let sig = BitString::from_bytes(&sig)?.to_der()?;
    let alg = alg.to_der()?;
    let tbs_len = tbs_head.len() + parts().map(<[u8]>::len).sum::<usize>();
    let body_len = tbs_len + alg.len() + sig.len();
    let mut out = Vec::with_capacity(body_len + 6);
    out.push(0x30);
    der_len(body_len, &mut out);
    out.extend_from_slice(&tbs_head);
    for p in head {
        out.extend_from_slice(p);
    }
    let start = out.len();
    for p in entries {
        out.extend_from_slice(p);
    }
    let end = out.len();
    out.extend_from_slice(&extensions);
    out.extend_from_slice(&alg);
    out.extend_from_slice(&sig);
    Ok(AssembledCrl {
        der: out,
        entries: start..end,
    })
}

/// A magnitude as a positive two's-complement INTEGER body (leading 0x00 when the top bit
/// is set), which is what `x509_cert::serial_number::SerialNumber::new` expects.
pub(super) fn positive(magnitude: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(magnitude);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{FixedClock, OsRng};
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn ca(kt: KeyType) -> CaPair {
        let clock = FixedClock::new(1_700_000_000);
        let root = CaPair::new_root("root", kt, 86400 * 3650, &clock, &OsRng).unwrap();
        root.new_issuing("certd CA: production", kt, 86400 * 365, &clock, &OsRng)
            .unwrap()
    }

    /// Runs `openssl crl -inform DER -noout -text` (and verifies the signature with the CA
    /// certificate), returning the text.
    fn openssl_text(der: &[u8], ca: &CaPair) -> String {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert().to_pem().unwrap()).unwrap();
        let mut child = Command::new("openssl")
            .args(["crl", "-inform", "DER", "-noout", "-text", "-CAfile"])
            .arg(&ca_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl on PATH");
        child.stdin.take().unwrap().write_all(der).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "openssl crl failed: {err}");
        assert!(err.contains("verify OK"), "signature not verified: {err}");
        text
    }

    const PARAMS: CrlParams = CrlParams {
        number: 0,
        this_update: 1_700_000_000,
        next_update: 1_700_000_000 + 7 * 86400,
    };

    #[test]
    fn empty_crl_parses_with_openssl() {
        let ca = ca(KeyType::EcP256);
        let der = build_crl(&ca, &[], &PARAMS).unwrap();
        let text = openssl_text(&der, &ca);
        assert!(text.contains("Version 2"), "{text}");
        assert!(text.contains("Issuer: CN = certd CA: production"), "{text}");
        assert!(
            text.contains("Last Update: Nov 14 22:13:20 2023 GMT"),
            "{text}"
        );
        assert!(
            text.contains("Next Update: Nov 21 22:13:20 2023 GMT"),
            "{text}"
        );
        assert!(
            text.contains("X509v3 CRL Number: \n                0"),
            "{text}"
        );
        assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
        assert!(text.contains("No Revoked Certificates."), "{text}");
    }

    #[test]
    fn crl_lists_revoked_serials_with_reasons() {
        for kt in [
            KeyType::Rsa2048,
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Ed25519,
        ] {
            let ca = ca(kt);
            let entries = vec![
                CrlEntry {
                    serial: SerialNumber::from_hex("8A1B2C3D4E5F60718293A4B5C6D7E8F9").unwrap(),
                    revoked_at: 1_700_000_100,
                    reason: RevocationReason::KeyCompromise,
                },
                CrlEntry {
                    serial: SerialNumber::from_hex("01").unwrap(),
                    revoked_at: 1_700_000_200,
                    reason: RevocationReason::Unspecified,
                },
                CrlEntry {
                    serial: SerialNumber::from_hex("7F00").unwrap(),
                    revoked_at: 1_700_000_300,
                    reason: RevocationReason::Superseded,
                },
            ];
            let params = CrlParams {
                number: 42,
                ..PARAMS
            };
            let der = build_crl(&ca, &entries, &params).unwrap();
            let text = openssl_text(&der, &ca);
            assert!(
                text.contains("Serial Number: 8A1B2C3D4E5F60718293A4B5C6D7E8F9"),
                "{kt}: {text}"
            );
            assert!(text.contains("Serial Number: 01"), "{text}");
            assert!(text.contains("Serial Number: 7F00"), "{text}");
            assert!(text.contains("Key Compromise"), "{text}");
            assert!(text.contains("Superseded"), "{text}");
            assert_eq!(text.matches("CRL Reason Code").count(), 2, "{text}");
            assert!(
                text.contains("X509v3 CRL Number: \n                42"),
                "{text}"
            );
            assert!(
                text.contains("Revocation Date: Nov 14 22:15:00 2023 GMT"),
                "{text}"
            );
        }
    }

    #[test]
    fn dates_from_2050_use_generalized_time() {
        assert!(matches!(
            x509_time(2_524_608_000).unwrap(),
            Time::GeneralTime(_)
        ));
        assert!(matches!(
            x509_time(2_524_607_999).unwrap(),
            Time::UtcTime(_)
        ));
    }

    #[test]
    fn reasons_parse_by_rfc_name() {
        assert_eq!(
            RevocationReason::parse("keyCompromise"),
            Some(RevocationReason::KeyCompromise)
        );
        assert_eq!(
            RevocationReason::parse("key-compromise"),
            Some(RevocationReason::KeyCompromise)
        );
        assert_eq!(
            RevocationReason::parse("removeFromCRL").map(|r| r.code()),
            Some(8)
        );
        assert_eq!(RevocationReason::parse("nope"), None);
        assert_eq!(RevocationReason::AaCompromise.name(), "aACompromise");
    }
}

/// What certd reads back from a CRL (an uploaded one, or its own stored one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCrl {
    /// The DER, as given.
    pub der: Vec<u8>,
    /// The authority key identifier, if present.
    pub authority_key_id: Option<Vec<u8>>,
    /// The CRL number (0 when absent).
    pub number: u64,
    /// `thisUpdate`.
    pub this_update: UnixTime,
    /// `nextUpdate` (`thisUpdate` when absent).
    pub next_update: UnixTime,
    /// Whether it is a delta CRL.
    pub is_delta: bool,
    /// The revoked certificates.
    pub entries: Vec<CrlEntry>,
}

/// Every PEM `X509 CRL` block in `pem`, parsed; blocks that do not parse are skipped.
pub fn parse_crls(pem: &[u8]) -> Vec<ParsedCrl> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    for block in text.split_inclusive("-----END X509 CRL-----") {
        let Some(start) = block.find("-----BEGIN X509 CRL-----") else {
            continue;
        };
        if let Ok((label, der)) = der::pem::decode_vec(&block.as_bytes()[start..]) {
            if label == "X509 CRL" {
                if let Ok(p) = parse_crl(&der) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Parses one DER CRL.
pub fn parse_crl(der: &[u8]) -> Result<ParsedCrl, CaError> {
    let crl = CertificateList::from_der(der)
        .map_err(|e| CaError::BadCertificate(format!("not a CRL: {e}")))?;
    let tbs = &crl.tbs_cert_list;
    let unix = |t: &Time| t.to_unix_duration().as_secs() as UnixTime;
    let mut parsed = ParsedCrl {
        der: der.to_vec(),
        authority_key_id: None,
        number: 0,
        this_update: unix(&tbs.this_update),
        next_update: tbs
            .next_update
            .as_ref()
            .map(unix)
            .unwrap_or_else(|| unix(&tbs.this_update)),
        is_delta: false,
        entries: Vec::new(),
    };
    for ext in tbs.crl_extensions.iter().flatten() {
        match ext.extn_id.to_string().as_str() {
            oid::AUTHORITY_KEY_ID => {
                parsed.authority_key_id =
                    AuthorityKeyIdentifier::from_der(ext.extn_value.as_bytes())
                        .ok()
                        .and_then(|a| a.key_identifier)
                        .map(|k| k.as_bytes().to_vec());
            }
            oid::CRL_NUMBER => {
                parsed.number = u64::from_der(ext.extn_value.as_bytes()).unwrap_or(0)
            }
            "2.5.29.27" => parsed.is_delta = true,
            _ => {}
        }
    }
    for rc in tbs.revoked_certificates.iter().flatten() {
        let reason = rc
            .crl_entry_extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id.to_string() == oid::CRL_REASON)
            .and_then(|e| e.extn_value.as_bytes().get(2).copied())
            .and_then(|code| {
                RevocationReason::ALL
                    .iter()
                    .find(|(_, c, _)| *c == code)
                    .map(|e| e.0)
            })
            .unwrap_or(RevocationReason::Unspecified);
        parsed.entries.push(CrlEntry {
            serial: SerialNumber::from_bytes(rc.serial_number.as_bytes())?,
            revoked_at: unix(&rc.revocation_date),
            reason,
        });
    }
    Ok(parsed)
}

/// Whether `der` is a CRL signed by the key of `issuer`.
pub fn crl_signed_by(der: &[u8], issuer: &openssl::x509::X509Ref) -> bool {
    let Ok(crl) = openssl::x509::X509Crl::from_der(der) else {
        return false;
    };
    issuer
        .public_key()
        .and_then(|k| crl.verify(&k))
        .unwrap_or(false)
}

#[cfg(test)]
mod parse_tests {
    use super::*;
    use crate::ca::{FixedClock, OsRng};

    #[test]
    fn parsing_reads_back_what_build_crl_wrote() {
        let clock = FixedClock::new(1_700_000_000);
        let root = CaPair::new_root("r", KeyType::EcP256, 86400 * 10, &clock, &OsRng).unwrap();
        let other = CaPair::new_root("r", KeyType::EcP256, 86400 * 10, &clock, &OsRng).unwrap();
        let entries = vec![
            CrlEntry {
                serial: SerialNumber::from_hex("8F01").unwrap(),
                revoked_at: 1_700_000_100,
                reason: RevocationReason::CaCompromise,
            },
            CrlEntry {
                serial: SerialNumber::from_hex("02").unwrap(),
                revoked_at: 1_700_000_200,
                reason: RevocationReason::Unspecified,
            },
        ];
        let params = CrlParams {
            number: 7,
            this_update: 1_700_000_000,
            next_update: 1_700_086_400,
        };
        let der = build_crl(&root, &entries, &params).unwrap();
        // The spliced encoding is exactly x509-cert's canonical DER of the same CRL: the
        // whole list decodes and re-encodes to the same bytes.
        let decoded = CertificateList::from_der(&der).unwrap();
        assert_eq!(decoded.to_der().unwrap(), der);
        assert_eq!(decoded.tbs_cert_list.revoked_certificates.unwrap().len(), 2);
        // Appending an entry's encoding to the list gives the CRL that lists both.
        let one = encode_crl_entry(&entries[0]).unwrap();
        let two = encode_crl_entry(&entries[1]).unwrap();
        let appended = assemble_crl(&root, &[&one, &two], &params).unwrap().der;
        let a = CertificateList::from_der(&appended).unwrap();
        let b = CertificateList::from_der(&der).unwrap();
        assert_eq!(
            a.tbs_cert_list.to_der().unwrap(),
            b.tbs_cert_list.to_der().unwrap()
        );
        let p = parse_crl(&der).unwrap();
        assert_eq!(
            (p.number, p.this_update, p.next_update, p.is_delta),
            (7, 1_700_000_000, 1_700_086_400, false)
        );
        assert_eq!(p.entries, entries);
        assert_eq!(
            p.authority_key_id.as_deref(),
            root.cert().subject_key_id().map(|k| k.as_slice())
        );
        assert!(crl_signed_by(&der, root.cert()));
        assert!(!crl_signed_by(&der, other.cert()));
        let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der).unwrap();
        let two = format!("{pem}junk\n{pem}");
        assert_eq!(parse_crls(two.as_bytes()).len(), 2);
        assert!(parse_crls(b"nothing here").is_empty());
    }

    #[test]
    fn assembled_crls_are_canonical_and_verify_for_every_ca_key_type() {
        let clock = FixedClock::new(1_700_000_000);
        let entries: Vec<u8> = (1..=300u16)
            .flat_map(|i| {
                encode_crl_entry(&CrlEntry {
                    serial: SerialNumber::from_bytes(&i.to_be_bytes()).unwrap(),
                    revoked_at: 1_700_000_000 + i64::from(i),
                    reason: RevocationReason::KeyCompromise,
                })
                .unwrap()
            })
            .collect();
        let params = CrlParams {
            number: 300,
            this_update: 1_700_000_000,
            next_update: 1_700_086_400,
        };
        for kt in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa2048,
            KeyType::Ed25519,
        ] {
            let ca = CaPair::new_root("r", kt, 86400, &clock, &OsRng).unwrap();
            // Whole, cut into pieces mid-entry, and empty (as no pieces or one empty).
            let (a, b) = entries.split_at(1000);
            let pieces: [(&[&[u8]], usize); 4] = [
                (&[&entries[..]], 300),
                (&[a, &[], b], 300),
                (&[], 0),
                (&[&[]], 0),
            ];
            for (list, listed) in pieces {
                let AssembledCrl { der, entries: at } = assemble_crl(&ca, list, &params).unwrap();
                let decoded = CertificateList::from_der(&der).unwrap();
                assert_eq!(decoded.to_der().unwrap(), der, "{kt:?}");
                assert!(crl_signed_by(&der, ca.cert()), "{kt:?}");
                assert_eq!(parse_crl(&der).unwrap().entries.len(), listed, "{kt:?}");
                assert_eq!(der[at], list.concat()[..], "{kt:?}");
            }
        }
    }
}
