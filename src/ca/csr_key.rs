//! The CSR's public key and signature, checked without OpenSSL 3's generic decoders.
//!
//! `X509Req::from_der` and `PKey::public_key_from_der` go through OpenSSL 3's
//! `OSSL_DECODER` machinery, and a key made that way goes through `OSSL_ENCODER` again
//! when it is put into a certificate: together about a millisecond per CSR on OpenSSL
//! 3.0, most of issuance (a profile showed 37% of server time in decoder setup and key
//! management lookups). The SubjectPublicKeyInfo is already decoded by `x509-cert`, so
//! the key is built from its parts with the direct constructors (EC point, RSA modulus
//! and exponent, raw Ed25519 bytes), and the signature is verified over the original
//! bytes of the CertificationRequestInfo.

use std::sync::OnceLock;

use der::Decode;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const ED25519: &str = "1.3.101.112";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";

static P256_GROUP: OnceLock<Option<EcGroup>> = OnceLock::new();
static P384_GROUP: OnceLock<Option<EcGroup>> = OnceLock::new();

/// A curve's group, built once (building one costs as much as a signature check).
fn group(cell: &'static OnceLock<Option<EcGroup>>, nid: Nid) -> Option<&'static EcGroup> {
    cell.get_or_init(|| EcGroup::from_curve_name(nid).ok())
        .as_ref()
}

/// The public key of a SubjectPublicKeyInfo; `None` for a key certd does not accept or
/// cannot decode.
pub(super) fn public_key(spki: &SubjectPublicKeyInfoOwned) -> Option<PKey<Public>> {
    let bits = spki.subject_public_key.as_bytes()?;
    match spki.algorithm.oid.to_string().as_str() {
        EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()?
                .decode_as::<der::asn1::ObjectIdentifier>()
                .ok()?
                .to_string();
            let group = match curve.as_str() {
                P256 => group(&P256_GROUP, Nid::X9_62_PRIME256V1)?,
                P384 => group(&P384_GROUP, Nid::SECP384R1)?,
                _ => return None,
            };
            let mut ctx = BigNumContext::new().ok()?;
            // `EC_POINT_oct2point` refuses a point that is not on the curve; P-256 and
            // P-384 have cofactor 1, so such a point is in the prime-order group and the
            // (costly) full `EC_KEY_check_key` would add nothing.
            let point = EcPoint::from_bytes(group, bits, &mut ctx).ok()?;
            if point.is_infinity(group) {
                return None;
            }
            let key = EcKey::from_public_key(group, &point).ok()?;
            PKey::from_ec_key(key).ok()
        }
        RSA_ENCRYPTION => {
            let (n, e) = rsa_parts(bits)?;
            let rsa = Rsa::from_public_components(
                BigNum::from_slice(&n).ok()?,
                BigNum::from_slice(&e).ok()?,
            )
            .ok()?;
            PKey::from_rsa(rsa).ok()
        }
        ED25519 => PKey::public_key_from_raw_bytes(bits, Id::ED25519).ok(),
        _ => None,
    }
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }, as magnitudes.
fn rsa_parts(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    #[derive(der::Sequence)]
    struct RsaPublicKey<'a> {
        modulus: der::asn1::UintRef<'a>,
        public_exponent: der::asn1::UintRef<'a>,
    }
    let k = RsaPublicKey::from_der(der).ok()?;
    Some((
        k.modulus.as_bytes().to_vec(),
        k.public_exponent.as_bytes().to_vec(),
    ))
}

/// The raw bytes of the first element inside the outer SEQUENCE of `der` (the signed
/// part of a CSR), header included, exactly as received.
fn first_inner(der: &[u8]) -> Option<&[u8]> {
    fn header(b: &[u8]) -> Option<(usize, usize)> {
        // (header length, content length) of a definite-length DER TLV.
        let first = *b.get(1)?;
        if first < 0x80 {
            return Some((2, usize::from(first)));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        Some((2 + n, len))
    }
    let (outer_h, _) = header(der)?;
    let inner = der.get(outer_h..)?;
    let (h, len) = header(inner)?;
    inner.get(..h.checked_add(len)?)
}

/// Whether `signature` (under signature algorithm `alg`, a dotted OID from the allowlist)
/// verifies with `key` over the CSR's original signed bytes. The algorithm must fit the
/// key's type.
pub(super) fn verify(der: &[u8], alg: &str, signature: &[u8], key: &PKey<Public>) -> bool {
    let Some(tbs) = first_inner(der) else {
        return false;
    };
    let (family, md) = match alg {
        "1.2.840.113549.1.1.11" => (Id::RSA, Some(MessageDigest::sha256())),
        "1.2.840.113549.1.1.12" => (Id::RSA, Some(MessageDigest::sha384())),
        "1.2.840.113549.1.1.13" => (Id::RSA, Some(MessageDigest::sha512())),
        "1.2.840.10045.4.3.2" => (Id::EC, Some(MessageDigest::sha256())),
        "1.2.840.10045.4.3.3" => (Id::EC, Some(MessageDigest::sha384())),
        "1.2.840.10045.4.3.4" => (Id::EC, Some(MessageDigest::sha512())),
        "1.3.101.112" => (Id::ED25519, None),
        _ => return false,
    };
    if key.id() != family {
        return false;
    }
    if family == Id::EC {
        return ecdsa_verify(alg, tbs, signature, key);
    }
    let verifier = match md {
        Some(md) => Verifier::new(md, key),
        None => Verifier::new_without_digest(key),
    };
    verifier
        .and_then(|mut v| v.verify_oneshot(signature, tbs))
        .unwrap_or(false)
}

/// An ECDSA signature checked on the key as built ([`public_key`] makes an `EC_KEY`),
/// without `EVP_DigestVerifyInit`: OpenSSL 3 copies such a key into its provider's form
/// on every EVP operation, which cost ~24 us per CSR, more than half the check itself.
/// The signature must be DER, exactly, with nothing after it (as the EVP path requires).
fn ecdsa_verify(alg: &str, tbs: &[u8], signature: &[u8], key: &PKey<Public>) -> bool {
    let digest: Vec<u8> = match alg {
        "1.2.840.10045.4.3.2" => openssl::sha::sha256(tbs).to_vec(),
        "1.2.840.10045.4.3.3" => openssl::sha::sha384(tbs).to_vec(),
        "1.2.840.10045.4.3.4" => openssl::sha::sha512(tbs).to_vec(),
        _ => return false,
    };
    let (Ok(ec), Ok(sig)) = (key.ec_key(), EcdsaSig::from_der(signature)) else {
        return false;
    };
    if sig.to_der().ok().as_deref() != Some(signature) {
        return false;
    }
    sig.verify(&digest, &ec).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{build_csr, Certname, KeyType};
    use x509_cert::request::CertReq;

    #[test]
    fn keys_and_signatures_agree_with_openssl() {
        let name = Certname::parse("web1").unwrap();
        for kt in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa2048,
            KeyType::Ed25519,
        ] {
            let key = kt.generate().unwrap();
            let pem = build_csr(&key, &name, &[]).unwrap();
            let ossl = openssl::x509::X509Req::from_pem(&pem).unwrap();
            let der = ossl.to_der().unwrap();
            let req = CertReq::from_der(&der).unwrap();
            let ours = public_key(&req.info.public_key).expect("built directly");
            let theirs = ossl.public_key().unwrap();
            assert!(ours.public_eq(&theirs), "{kt:?}");
            assert_eq!(
                ours.public_key_to_der().unwrap(),
                theirs.public_key_to_der().unwrap()
            );
            let alg = req.algorithm.oid.to_string();
            let sig = req.signature.as_bytes().unwrap().to_vec();
            assert!(verify(&der, &alg, &sig, &ours), "{kt:?}");
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(!verify(&der, &alg, &bad, &ours), "{kt:?}: a flipped bit");
            let mut tampered = der.clone();
            let at = tampered.len() / 3;
            tampered[at] ^= 0x20;
            assert!(
                !verify(&tampered, &alg, &sig, &ours),
                "{kt:?}: signed bytes changed"
            );
            // An algorithm of another key family never verifies.
            let other = if kt == KeyType::Rsa2048 {
                "1.2.840.10045.4.3.2"
            } else {
                "1.2.840.113549.1.1.11"
            };
            assert!(!verify(&der, other, &sig, &ours), "{kt:?}");
            // The same signature with a byte after it, or its length in long form
            // (BER, not DER), is refused.
            let mut trailing = sig.clone();
            trailing.push(0);
            assert!(!verify(&der, &alg, &trailing, &ours), "{kt:?}: trailing");
            if kt != KeyType::Rsa2048 && kt != KeyType::Ed25519 {
                assert!(sig[1] < 0x80, "{kt:?}: a short-form SEQUENCE length");
                let mut long = vec![0x30, 0x81, sig[1]];
                long.extend_from_slice(&sig[2..]);
                let ossl_says = |s: &[u8]| {
                    let md = match alg.as_str() {
                        "1.2.840.10045.4.3.2" => MessageDigest::sha256(),
                        "1.2.840.10045.4.3.3" => MessageDigest::sha384(),
                        other => panic!("{kt:?}: {other}"),
                    };
                    let mut v = openssl::sign::Verifier::new(md, &theirs).unwrap();
                    v.verify_oneshot(s, first_inner(&der).unwrap())
                        .unwrap_or(false)
                };
                assert!(ossl_says(&sig), "{kt:?}");
                assert!(
                    !ossl_says(&long),
                    "{kt:?}: OpenSSL's EVP path refuses BER too"
                );
                assert!(!verify(&der, &alg, &long, &ours), "{kt:?}: BER length");
            }
        }
    }
}
