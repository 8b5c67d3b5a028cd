//! Certificate signing requests: raw bytes become a [`ValidatedCsr`] only when every rule
//! of the CSR policy holds. A CSR only *requests*; what survives here is what a profile
//! may put in a certificate.

use std::net::IpAddr;

use der::asn1::Utf8StringRef;
use der::{Decode, Encode};
use openssl::pkey::{Id, PKey, Public};
use openssl::x509::X509Req;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::Extensions;
use x509_cert::request::CertReq;

use super::csr_der::{structural_copy, to_der};
use super::inspect::{common_name, der_string, ip_from_bytes};
use super::oid::{self, PP_CLI_AUTH};
use super::{CaError, Certname, Subject};

/// The rules a CSR must meet, per environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrPolicy {
    /// Largest CSR accepted, in bytes, checked before any parsing.
    pub max_bytes: usize,
    /// Smallest RSA modulus accepted, in bits (never below 2048).
    pub min_rsa_bits: u32,
    /// Whether SANs other than `DNS:<certname>` may be requested.
    pub allow_subject_alt_names: bool,
    /// Whether Puppet authorization extensions (arc 1.3.6.1.4.1.34380.1.3) may be requested.
    pub allow_authorization_extensions: bool,
    /// Whether an RSA key may have the public exponent 3 (else only 65537).
    pub allow_rsa_exponent_3: bool,
}

impl Default for CsrPolicy {
    fn default() -> Self {
        CsrPolicy {
            max_bytes: 64 * 1024,
            min_rsa_bits: 2048,
            allow_subject_alt_names: false,
            allow_authorization_extensions: false,
            allow_rsa_exponent_3: false,
        }
    }
}

/// RSA moduli above this are refused: verifying them costs the server more than any
/// legitimate client needs.
const MAX_RSA_BITS: u32 = 8192;

/// Signature algorithms accepted on a CSR (no MD5, no SHA-1).
const SIGNATURE_ALGORITHMS: [(&str, &str); 7] = [
    ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
    ("1.2.840.113549.1.1.12", "sha384WithRSAEncryption"),
    ("1.2.840.113549.1.1.13", "sha512WithRSAEncryption"),
    ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
    ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
    ("1.2.840.10045.4.3.4", "ecdsa-with-SHA512"),
    ("1.3.101.112", "Ed25519"),
];

/// A CSR that passed every policy rule, reduced to what may go into a certificate.
#[derive(Debug, Clone)]
pub struct ValidatedCsr {
    certname: Certname,
    der: Vec<u8>,
    public_key: PKey<Public>,
    dns_names: Vec<String>,
    ip_addrs: Vec<IpAddr>,
    extensions: Vec<(String, Vec<u8>, bool)>,
}

/// What a refused submission keeps (see [`CaError::is_policy_refusal`]): the CSR as DER
/// and the DNS names (other than `certname`) and IP addresses it asks for, read without
/// any policy. `None` when `bytes` is not a CSR at all.
pub fn refused_csr(
    bytes: &[u8],
    certname: &Certname,
) -> Option<(Vec<u8>, Vec<String>, Vec<String>)> {
    let der = to_der(bytes).ok()?;
    let asked = requested(&der)?;
    let dns = asked
        .dns_names
        .into_iter()
        .filter(|d| d != certname.as_str())
        .collect();
    Some((der, dns, asked.ip_addrs))
}

/// What a stored CSR asks for, as Puppet's status objects show it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestedNames {
    /// Its DNS names, in the CSR's order (the certname among them when it asks for it).
    pub dns_names: Vec<String>,
    /// Its IP addresses, in the CSR's order.
    pub ip_addrs: Vec<String>,
    /// Its Puppet authorization extensions (arc 1.3.6.1.4.1.34380.1.3): dotted OID and
    /// text value.
    pub authorization_extensions: Vec<(String, String)>,
}

/// What the stored CSR `der` asks for, read without any policy (an empty answer for
/// one that asks for nothing, or that does not decode). Most ask for nothing, and
/// listings read many: a CSR whose DER holds neither the subjectAltName nor the
/// authorization arc's OID is not decoded.
pub fn requested_names(der: &[u8]) -> RequestedNames {
    // 06 03 55 1D 11: the subjectAltName OID; 2B 06 01 04 01 82 8C 4C 01 03: the
    // authorization arc 1.3.6.1.4.1.34380.1.3.
    const SAN: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
    const AUTH_ARC: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x8c, 0x4c, 0x01, 0x03];
    let holds = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    if !holds(SAN) && !holds(AUTH_ARC) {
        return RequestedNames::default();
    }
    requested(der).unwrap_or_default()
}

/// What a refusal lists, as it names it: the first few items, and how many more. The
/// message is stored with a kept CSR (its audit event) and logged, and a 16 KB CSR may
/// list a thousand names.
fn some_of(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut out = items
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        out.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    out
}

/// `text` from a CSR no policy has accepted, as an admin's terminal may show it: control
/// characters and bidirectional overrides escaped (`\u{1b}`), so that a value cannot
/// rewrite what `puppetserver ca list` prints around it.
fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let hostile = c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            let escaped: Vec<char> = if hostile {
                c.escape_unicode().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn requested(der: &[u8]) -> Option<RequestedNames> {
    let req = CertReq::from_der(&structural_copy(der)).ok()?;
    let auth_arc = format!("{}.3.", oid::PUPPET_ARC);
    let mut out = RequestedNames::default();
    for attr in req.info.attributes.iter() {
        let id = attr.oid.to_string();
        if id != oid::EXTENSION_REQUEST && id != oid::MS_EXTENSION_REQUEST {
            continue;
        }
        for value in attr.values.iter() {
            let Ok(exts) = value.to_der().map(|d| Extensions::from_der(&d)) else {
                continue;
            };
            for ext in exts.into_iter().flatten() {
                let id = ext.extn_id.to_string();
                if id.starts_with(&auth_arc) {
                    let text = super::der_text(ext.extn_value.as_bytes()).unwrap_or_default();
                    out.authorization_extensions.push((id, shown(&text)));
                    continue;
                }
                if id != oid::SUBJECT_ALT_NAME {
                    continue;
                }
                let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) else {
                    continue;
                };
                for name in san.0 {
                    match name {
                        GeneralName::DnsName(d) => out.dns_names.push(shown(d.as_str())),
                        GeneralName::IpAddress(ip) => out
                            .ip_addrs
                            .extend(ip_from_bytes(ip.as_bytes()).map(|ip| ip.to_string())),
                        _ => {}
                    }
                }
            }
        }
    }
    Some(out)
}

/// The SubjectPublicKeyInfo (DER) of a stored CSR (already validated when stored).
pub fn csr_public_key_der(csr_der: &[u8]) -> Result<Vec<u8>, CaError> {
    Ok(openssl::x509::X509Req::from_der(csr_der)?
        .public_key()?
        .public_key_to_der()?)
}

pub(super) fn invalid(rule: &'static str, message: impl Into<String>) -> CaError {
    let message = message.into();
    CaError::InvalidCsr {
        rule,
        puppet: message.clone(),
        message,
    }
}

/// An invalid-CSR error with Puppet Server's own wording for the Puppet face.
fn invalid_as(rule: &'static str, message: String, puppet: String) -> CaError {
    CaError::InvalidCsr {
        rule,
        message,
        puppet,
    }
}

/// RFC 5280's upper bound on a commonName (`ub-common-name`), in characters; OpenSSL and
/// the CA refuse longer ones, so a CSR whose certname is longer could never be signed.
const MAX_COMMON_NAME: usize = 64;

impl ValidatedCsr {
    /// Parses and checks a CSR submitted for `certname`.
    ///
    /// Rules, in order, each with its own error code: size (`csr-too-large`), encoding
    /// (`csr-not-pem`, `csr-multiple-pem-blocks`, `csr-wrong-pem-label`, `csr-malformed`),
    /// signature algorithm (`csr-signature-algorithm`), key type and size
    /// (`csr-key-not-allowed`), signature (`csr-signature-invalid`), CN equal to the
    /// certname (`csr-cn-mismatch`) and at most 64 characters (`csr-cn-too-long`),
    /// subject alternative names
    /// (`csr-subject-alt-names-not-allowed`), extensions (`csr-extension-not-allowed`).
    pub fn parse(bytes: &[u8], certname: &Certname, policy: &CsrPolicy) -> Result<Self, CaError> {
        if bytes.len() > policy.max_bytes {
            return Err(invalid(
                "csr-too-large",
                format!(
                    "the CSR is {} bytes; at most {} are accepted",
                    bytes.len(),
                    policy.max_bytes
                ),
            ));
        }
        let der = to_der(bytes)?;
        let req = CertReq::from_der(&structural_copy(&der)).map_err(|e| {
            invalid(
                "csr-malformed",
                format!("the CSR is not valid DER PKCS#10: {e}"),
            )
        })?;

        let alg = req.algorithm.oid.to_string();
        if !SIGNATURE_ALGORITHMS.iter().any(|(o, _)| *o == alg) {
            return Err(invalid("csr-signature-algorithm", format!("the CSR is signed with {alg}; sign it with SHA-256 or stronger (RSA, ECDSA) or Ed25519")));
        }

        let public_key = match super::csr_key::public_key(&req.info.public_key) {
            Some(k) => k,
            // Not a key type built directly (or a malformed one): OpenSSL's general
            // decoder, so that the refusal names what the key is.
            None => X509Req::from_der(&der)
                .and_then(|r| r.public_key())
                .map_err(|_| {
                    invalid(
                        "csr-key-not-allowed",
                        "the CSR's public key cannot be decoded",
                    )
                })?,
        };
        check_key(&public_key, policy)?;
        let signature = req.signature.as_bytes().unwrap_or_default();
        if !super::csr_key::verify(&der, &alg, signature, &public_key) {
            return Err(invalid_as(
                "csr-signature-invalid",
                "the CSR's signature does not verify with its own public key; re-create the CSR with the matching private key".into(),
                "CSR contains a public key that does not correspond to the signing key".into(),
            ));
        }

        let cn = common_name(&req.info.subject);
        if cn.as_deref() != Some(certname.as_str()) {
            let cn = cn.unwrap_or_default();
            return Err(invalid_as(
                "csr-cn-mismatch",
                format!(
                    "the CSR's common name {cn:?} does not match the certname {:?} in the URL",
                    certname.as_str()
                ),
                format!("Instance name \"{cn}\" does not match requested key \"{certname}\""),
            ));
        }

        if certname.as_str().len() > MAX_COMMON_NAME {
            return Err(invalid_as(
                "csr-cn-too-long",
                format!(
                    "the certname has {} characters; a certificate's common name holds at \
                     most {MAX_COMMON_NAME} (RFC 5280 ub-common-name), so no certificate \
                     could be issued for it",
                    certname.as_str().len()
                ),
                format!(
                    "Certname \"{certname}\" is longer than the {MAX_COMMON_NAME} characters \
                     a certificate's common name can hold"
                ),
            ));
        }

        let mut csr = ValidatedCsr {
            certname: certname.clone(),
            der,
            public_key,
            dns_names: Vec::new(),
            ip_addrs: Vec::new(),
            extensions: Vec::new(),
        };
        // Extensions can be requested in several places: more than one value of one
        // attribute, more than one attribute, and Microsoft's msExtReq beside PKCS#9's
        // extensionRequest (OpenSSL reads both). All of them are one request, checked
        // against one allowlist, and an extension named twice anywhere refuses the CSR:
        // consumers would read different values (RFC 5280 section 4.2).
        let mut seen = std::collections::HashSet::new();
        for attr in req.info.attributes.iter() {
            let id = attr.oid.to_string();
            if id != oid::EXTENSION_REQUEST && id != oid::MS_EXTENSION_REQUEST {
                continue; // e.g. challengePassword: never copied into a certificate
            }
            for value in attr.values.iter() {
                let exts = Extensions::from_der(&value.to_der()?).map_err(|e| {
                    invalid(
                        "csr-malformed",
                        format!("the extension request cannot be decoded: {e}"),
                    )
                })?;
                csr.take_extensions(exts, policy, &mut seen)?;
            }
        }
        Ok(csr)
    }

    fn take_extensions(
        &mut self,
        exts: Extensions,
        policy: &CsrPolicy,
        seen: &mut std::collections::HashSet<String>,
    ) -> Result<(), CaError> {
        let mut refused = Vec::new();
        for ext in exts {
            let id = ext.extn_id.to_string();
            if !seen.insert(id.clone()) {
                return Err(invalid(
                    "csr-malformed",
                    format!("extension {id} is requested twice"),
                ));
            }
            if id == oid::SUBJECT_ALT_NAME {
                self.take_sans(ext.extn_value.as_bytes(), policy)?;
                continue;
            }
            let auth_arc = format!("{}.3.", oid::PUPPET_ARC);
            let allowed = id != PP_CLI_AUTH
                && (id.starts_with(&format!("{}.1.", oid::PUPPET_ARC))
                    || id.starts_with(&format!("{}.2.", oid::PUPPET_ARC))
                    || (id.starts_with(&auth_arc) && policy.allow_authorization_extensions));
            if !allowed {
                refused.push(id);
                continue;
            }
            // Values are re-encoded as UTF8String, as Puppet does; anything that is not a
            // string is refused rather than copied through unexamined.
            let text = der_string(ext.extn_value.as_bytes()).ok_or_else(|| {
                invalid(
                    "csr-extension-not-allowed",
                    format!("extension {id} must hold a string value"),
                )
            })?;
            let value = Utf8StringRef::new(&text)?.to_der()?;
            self.extensions.push((id, value, false));
        }
        if !refused.is_empty() {
            let message = format!("the CSR requests extensions that are not permitted: {}; only subjectAltName and Puppet's extension arcs may be requested (never pp_cli_auth)", some_of(&refused));
            let auth_arc = format!("{}.3.", oid::PUPPET_ARC);
            // Puppet checks authorization extensions before the allowlist.
            let puppet = if !policy.allow_authorization_extensions
                && refused.iter().any(|o| o.starts_with(&auth_arc))
            {
                format!("CSR '{}' contains an authorization extension, which is disallowed. To allow authorization extensions, set allow-authorization-extensions to true in your ca.conf file. Then restart the puppetserver and try signing this certificate again.", self.certname)
            } else {
                format!(
                    "Found extensions that are not permitted: {}",
                    some_of(&refused)
                )
            };
            return Err(invalid_as("csr-extension-not-allowed", message, puppet));
        }
        Ok(())
    }

    fn take_sans(&mut self, value: &[u8], policy: &CsrPolicy) -> Result<(), CaError> {
        let san = SubjectAltName::from_der(value).map_err(|_| {
            invalid(
                "csr-malformed",
                "the subjectAltName request cannot be decoded",
            )
        })?;
        let mut extra = Vec::new();
        for name in san.0 {
            match name {
                GeneralName::DnsName(d) => {
                    let d = d.as_str().to_owned();
                    if d != self.certname.as_str() {
                        if Certname::parse(&d).is_err() {
                            let shown: String = d.chars().take(64).collect();
                            let more = if shown.len() < d.len() { "..." } else { "" };
                            return Err(invalid("csr-subject-alt-names-not-allowed", format!("the requested DNS name {shown:?}{more} is not a valid host name (no wildcards, lower case)")));
                        }
                        extra.push(format!("DNS:{d}"));
                        self.dns_names.push(d);
                    }
                }
                GeneralName::IpAddress(ip) => {
                    let ip = ip_from_bytes(ip.as_bytes()).ok_or_else(|| {
                        invalid("csr-malformed", "an IP address SAN has a bad length")
                    })?;
                    extra.push(format!("IP:{ip}"));
                    self.ip_addrs.push(ip);
                }
                _ => {
                    return Err(invalid(
                        "csr-subject-alt-names-not-allowed",
                        "only DNS and IP subject alternative names may be requested",
                    ));
                }
            }
        }
        if !extra.is_empty() && !policy.allow_subject_alt_names {
            return Err(invalid_as(
                "csr-subject-alt-names-not-allowed",
                format!("the CSR requests subject alternative names ({}), which this environment does not allow; set allow_subject_alt_names or drop them", some_of(&extra)),
                format!("CSR '{}' contains extra subject alternative names ({}), which are disallowed. To allow subject alternative names, set allow-subject-alt-names to true in your ca.conf file. Then restart the puppetserver and try signing this certificate again.", self.certname, some_of(&extra)),
            ));
        }
        Ok(())
    }

    /// The certname the CSR was validated for.
    pub fn certname(&self) -> &Certname {
        &self.certname
    }

    /// The CSR as DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The CSR as PEM.
    pub fn to_pem(&self) -> Vec<u8> {
        super::pem_encode("CERTIFICATE REQUEST", &self.der)
    }

    /// The requested public key.
    pub fn public_key(&self) -> &PKey<Public> {
        &self.public_key
    }

    /// What the certificate's subject and extensions may be, from this CSR.
    pub fn subject(&self) -> Subject {
        Subject {
            certname: self.certname.clone(),
            dns_names: self.dns_names.clone(),
            ip_addrs: self.ip_addrs.clone(),
            extensions: self.extensions.clone(),
        }
    }
}

fn check_key(key: &PKey<Public>, policy: &CsrPolicy) -> Result<(), CaError> {
    let min_rsa = policy.min_rsa_bits.max(2048);
    if let Ok(rsa) = key.rsa() {
        // An exponent of 1 makes any "signature" verify (no private key needed); other
        // small or even exponents are broken or unusual. 65537, or 3 where allowed.
        let e = rsa.e().to_vec();
        let allowed = e == [1, 0, 1] || (policy.allow_rsa_exponent_3 && e == [3]);
        if !allowed || !rsa.n().is_bit_set(0) {
            let exponents = if policy.allow_rsa_exponent_3 {
                "65537 or 3"
            } else {
                "65537"
            };
            return Err(invalid(
                "csr-key-not-allowed",
                format!(
                    "the CSR's RSA key has public exponent {} and {} modulus; use an odd modulus and the exponent {exponents}",
                    rsa.e(),
                    if rsa.n().is_bit_set(0) { "an odd" } else { "an even" }
                ),
            ));
        }
    }
    let ok = match key.id() {
        Id::RSA => (min_rsa..=MAX_RSA_BITS).contains(&key.bits()),
        Id::EC | Id::ED25519 => super::KeyType::of_public(key).is_some(),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let what = match key.id() {
        Id::RSA => format!("an RSA-{} key", key.bits()),
        Id::EC => "an EC key on a curve other than P-256 or P-384".to_owned(),
        _ => "a key type that is not accepted".to_owned(),
    };
    Err(invalid("csr-key-not-allowed", format!("the CSR has {what}; use RSA {min_rsa}-{MAX_RSA_BITS} bits, EC P-256 or P-384, or Ed25519")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::KeyType;
    use openssl::asn1::Asn1Object;
    use openssl::hash::MessageDigest;
    use openssl::pkey::Private;
    use openssl::rsa::Rsa;
    use openssl::stack::Stack;
    use openssl::x509::extension::{KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509Extension, X509NameBuilder, X509ReqBuilder};

    fn csr_with(
        key: &PKey<Private>,
        cn: &str,
        md: MessageDigest,
        exts: Vec<X509Extension>,
    ) -> Vec<u8> {
        let mut b = X509ReqBuilder::new().unwrap();
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", cn).unwrap();
        b.set_subject_name(&n.build()).unwrap();
        b.set_pubkey(key).unwrap();
        if !exts.is_empty() {
            let mut st = Stack::new().unwrap();
            for e in exts {
                st.push(e).unwrap();
            }
            b.add_extensions(&st).unwrap();
        }
        b.sign(key, md).unwrap();
        b.build().to_pem().unwrap()
    }

    fn ec() -> PKey<Private> {
        KeyType::EcP256.generate().unwrap().pkey().to_owned()
    }

    fn name(s: &str) -> Certname {
        Certname::parse(s).unwrap()
    }

    fn code(bytes: &[u8], cn: &str, policy: &CsrPolicy) -> &'static str {
        ValidatedCsr::parse(bytes, &name(cn), policy)
            .unwrap_err()
            .code()
    }

    #[test]
    fn accepts_a_plain_csr_in_pem_and_der() {
        let pem = csr_with(&ec(), "agent1", MessageDigest::sha256(), vec![]);
        let csr = ValidatedCsr::parse(&pem, &name("agent1"), &CsrPolicy::default()).unwrap();
        assert_eq!(csr.certname().as_str(), "agent1");
        let again = ValidatedCsr::parse(csr.der(), &name("agent1"), &CsrPolicy::default()).unwrap();
        assert_eq!(again.der(), csr.der());
        assert!(ValidatedCsr::parse(&csr.to_pem(), &name("agent1"), &CsrPolicy::default()).is_ok());
    }

    #[test]
    fn rejects_csr_whose_cn_differs_from_url() {
        let pem = csr_with(&ec(), "other", MessageDigest::sha256(), vec![]);
        assert_eq!(
            code(&pem, "agent1", &CsrPolicy::default()),
            "csr-cn-mismatch"
        );
    }

    #[test]
    fn rejects_weak_keys_and_digests() {
        let rsa1024 = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let pem = csr_with(&rsa1024, "a", MessageDigest::sha256(), vec![]);
        assert_eq!(
            code(&pem, "a", &CsrPolicy::default()),
            "csr-key-not-allowed"
        );
        let rsa = KeyType::Rsa2048.generate().unwrap().pkey().to_owned();
        for md in [MessageDigest::sha1(), MessageDigest::md5()] {
            let pem = csr_with(&rsa, "a", md, vec![]);
            assert_eq!(
                code(&pem, "a", &CsrPolicy::default()),
                "csr-signature-algorithm"
            );
        }
        assert!(ValidatedCsr::parse(
            &csr_with(&rsa, "a", MessageDigest::sha256(), vec![]),
            &name("a"),
            &CsrPolicy::default()
        )
        .is_ok());
    }

    #[test]
    fn rejects_a_signature_that_does_not_verify() {
        let pem = csr_with(&ec(), "a", MessageDigest::sha256(), vec![]);
        let mut der = X509Req::from_pem(&pem).unwrap().to_der().unwrap();
        // Swap in another key's public key: the signature no longer matches.
        let other = csr_with(&ec(), "a", MessageDigest::sha256(), vec![]);
        let other_der = X509Req::from_pem(&other).unwrap().to_der().unwrap();
        let pk = ec().public_key_to_der().unwrap();
        let theirs = X509Req::from_der(&other_der)
            .unwrap()
            .public_key()
            .unwrap()
            .public_key_to_der()
            .unwrap();
        let mine = X509Req::from_der(&der)
            .unwrap()
            .public_key()
            .unwrap()
            .public_key_to_der()
            .unwrap();
        assert_eq!(pk.len(), mine.len());
        let at = der
            .windows(mine.len())
            .position(|w| w == mine.as_slice())
            .unwrap();
        der[at..at + mine.len()].copy_from_slice(&theirs);
        assert_eq!(
            code(&der, "a", &CsrPolicy::default()),
            "csr-signature-invalid"
        );
    }

    #[test]
    fn rejects_bad_encodings() {
        let pem = csr_with(&ec(), "a", MessageDigest::sha256(), vec![]);
        let p = CsrPolicy::default();
        assert_eq!(code(b"hello", "a", &p), "csr-not-pem");
        let mut two = pem.clone();
        two.extend_from_slice(&pem);
        assert_eq!(code(&two, "a", &p), "csr-multiple-pem-blocks");
        let relabelled = String::from_utf8(pem.clone())
            .unwrap()
            .replace("CERTIFICATE REQUEST", "CERTIFICATE");
        assert_eq!(code(relabelled.as_bytes(), "a", &p), "csr-wrong-pem-label");
        let der = X509Req::from_pem(&pem).unwrap().to_der().unwrap();
        assert_eq!(code(&der[..der.len() / 2], "a", &p), "csr-malformed");
        assert_eq!(
            code(
                b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
                "a",
                &p
            ),
            "csr-not-pem"
        );
        let big = vec![b'A'; p.max_bytes + 1];
        assert_eq!(code(&big, "a", &p), "csr-too-large");
    }

    fn san_ext(names: &[&str]) -> X509Extension {
        let mut s = SubjectAlternativeName::new();
        for n in names {
            s.dns(n);
        }
        let ctx_builder = X509ReqBuilder::new().unwrap();
        s.build(&ctx_builder.x509v3_context(None)).unwrap()
    }

    #[test]
    fn subject_alt_names_only_when_allowed() {
        let key = ec();
        let only_self = csr_with(&key, "a", MessageDigest::sha256(), vec![san_ext(&["a"])]);
        assert!(ValidatedCsr::parse(&only_self, &name("a"), &CsrPolicy::default()).is_ok());
        let extra = csr_with(
            &key,
            "a",
            MessageDigest::sha256(),
            vec![san_ext(&["a", "b.example.com"])],
        );
        assert_eq!(
            code(&extra, "a", &CsrPolicy::default()),
            "csr-subject-alt-names-not-allowed"
        );
        let allow = CsrPolicy {
            allow_subject_alt_names: true,
            ..CsrPolicy::default()
        };
        let csr = ValidatedCsr::parse(&extra, &name("a"), &allow).unwrap();
        assert_eq!(csr.subject().dns_names, vec!["b.example.com"]);
        let wild = csr_with(
            &key,
            "a",
            MessageDigest::sha256(),
            vec![san_ext(&["*.example.com"])],
        );
        assert_eq!(
            code(&wild, "a", &allow),
            "csr-subject-alt-names-not-allowed"
        );
    }

    fn raw_ext(oid: &str, value: &[u8]) -> X509Extension {
        let obj = Asn1Object::from_str(oid).unwrap();
        let v = openssl::asn1::Asn1OctetString::new_from_bytes(value).unwrap();
        X509Extension::new_from_der(&obj, false, &v).unwrap()
    }

    #[test]
    fn extensions_only_from_the_puppet_arcs_and_never_pp_cli_auth() {
        let key = ec();
        let utf8 = |s: &str| Utf8StringRef::new(s).unwrap().to_der().unwrap();
        let ok = csr_with(
            &key,
            "a",
            MessageDigest::sha256(),
            vec![raw_ext("1.3.6.1.4.1.34380.1.1.1", &utf8("ED803750"))],
        );
        let csr = ValidatedCsr::parse(&ok, &name("a"), &CsrPolicy::default()).unwrap();
        assert_eq!(csr.subject().extensions.len(), 1);

        let cli = csr_with(
            &key,
            "a",
            MessageDigest::sha256(),
            vec![raw_ext(PP_CLI_AUTH, &utf8("true"))],
        );
        let all = CsrPolicy {
            allow_authorization_extensions: true,
            ..CsrPolicy::default()
        };
        assert_eq!(code(&cli, "a", &all), "csr-extension-not-allowed");

        let auth = csr_with(
            &key,
            "a",
            MessageDigest::sha256(),
            vec![raw_ext("1.3.6.1.4.1.34380.1.3.1", &utf8("x"))],
        );
        assert_eq!(
            code(&auth, "a", &CsrPolicy::default()),
            "csr-extension-not-allowed"
        );
        assert!(ValidatedCsr::parse(&auth, &name("a"), &all).is_ok());

        let ctx = X509ReqBuilder::new().unwrap();
        let _ = ctx;
        let ku = KeyUsage::new().critical().key_cert_sign().build().unwrap();
        let with_ku = csr_with(&key, "a", MessageDigest::sha256(), vec![ku]);
        assert_eq!(
            code(&with_ku, "a", &CsrPolicy::default()),
            "csr-extension-not-allowed"
        );

        let not_string = csr_with(
            &key,
            "a",
            MessageDigest::sha256(),
            vec![raw_ext("1.3.6.1.4.1.34380.1.1.2", &[0x02, 0x01, 0x05])],
        );
        assert_eq!(
            code(&not_string, "a", &CsrPolicy::default()),
            "csr-extension-not-allowed"
        );
    }

    #[test]
    fn accepts_the_version_2_csrs_puppetserver_ca_writes() {
        let key = ec();
        let mut b = X509ReqBuilder::new().unwrap();
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", "gen-x").unwrap();
        b.set_subject_name(&n.build()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        // OpenSSL 3.6 writes only version 0 (`X509_REQ_set_version(2)` is refused), so
        // the version-2 request Ruby's OpenSSL writes is made here: the info's version
        // INTEGER set to 2 and the info signed again.
        let v0 = x509_cert::request::CertReq::from_der(&b.build().to_der().unwrap()).unwrap();
        let mut info = v0.info.to_der().unwrap();
        let at = if info[1] & 0x80 == 0 {
            2
        } else {
            2 + usize::from(info[1] & 0x7f)
        };
        assert_eq!(info[at..at + 3], [0x02, 0x01, 0x00], "version 0 first");
        info[at + 2] = 2;
        let sig = openssl::sign::Signer::new(MessageDigest::sha256(), &key)
            .unwrap()
            .sign_oneshot_to_vec(&info)
            .unwrap();
        let bits = der::asn1::BitString::from_bytes(&sig)
            .unwrap()
            .to_der()
            .unwrap();
        let der = crate::ca::crl::tlv(0x30, &[&info, &v0.algorithm.to_der().unwrap(), &bits]);
        assert_eq!(X509Req::from_der(&der).unwrap().version(), 2);
        let csr = ValidatedCsr::parse(&der, &name("gen-x"), &CsrPolicy::default()).unwrap();
        assert_eq!(csr.der(), der.as_slice(), "the original bytes are kept");
    }

    #[test]
    fn parse_never_panics_on_mangled_input() {
        let pem = csr_with(&ec(), "a", MessageDigest::sha256(), vec![]);
        let der = X509Req::from_pem(&pem).unwrap().to_der().unwrap();
        for i in 0..der.len() {
            let mut m = der.clone();
            m[i] ^= 0xFF;
            let _ = ValidatedCsr::parse(&m, &name("a"), &CsrPolicy::default());
            let _ = ValidatedCsr::parse(&der[..i], &name("a"), &CsrPolicy::default());
        }
    }
}

#[cfg(test)]
mod spread_extension_tests {
    use super::*;
    use crate::ca::KeyType;
    use der::asn1::{Any, BitString, ObjectIdentifier, SetOfVec};
    use x509_cert::attr::Attribute;
    use x509_cert::ext::Extension;
    use x509_cert::request::CertReqInfo;
    use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

    const PP_UUID: &str = "1.3.6.1.4.1.34380.1.1.1";
    const MS_EXT_REQ: &str = "1.3.6.1.4.1.311.2.1.14";

    fn ext(oid: &str, value: &str) -> Extension {
        Extension {
            extn_id: ObjectIdentifier::new_unwrap(oid),
            critical: false,
            extn_value: der::asn1::OctetString::new(
                Utf8StringRef::new(value).unwrap().to_der().unwrap(),
            )
            .unwrap(),
        }
    }

    /// A CSR for `cn` whose attributes are `attrs`: (attribute OID, one value per list of
    /// extensions), signed with a fresh P-256 key.
    fn csr(cn: &str, attrs: Vec<(&str, Vec<Vec<Extension>>)>) -> Vec<u8> {
        let key = KeyType::EcP256.generate().unwrap();
        let spki =
            SubjectPublicKeyInfoOwned::from_der(&key.pkey().public_key_to_der().unwrap()).unwrap();
        let subject = {
            let mut n = openssl::x509::X509NameBuilder::new().unwrap();
            n.append_entry_by_text("CN", cn).unwrap();
            x509_cert::name::Name::from_der(&n.build().to_der().unwrap()).unwrap()
        };
        let mut attributes = SetOfVec::new();
        for (oid, values) in attrs {
            let mut set = SetOfVec::new();
            for exts in values {
                let exts: Extensions = exts;
                set.insert(Any::from_der(&exts.to_der().unwrap()).unwrap())
                    .unwrap();
            }
            attributes
                .insert(Attribute {
                    oid: ObjectIdentifier::new_unwrap(oid),
                    values: set,
                })
                .unwrap();
        }
        let info = CertReqInfo {
            version: x509_cert::request::Version::V1,
            subject,
            public_key: spki,
            attributes,
        };
        let tbs = info.to_der().unwrap();
        let mut signer =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), key.pkey()).unwrap();
        signer.update(&tbs).unwrap();
        let sig = signer.sign_to_vec().unwrap();
        CertReq {
            info,
            algorithm: AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
                parameters: None,
            },
            signature: BitString::from_bytes(&sig).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    fn parse(der: &[u8]) -> Result<ValidatedCsr, CaError> {
        ValidatedCsr::parse(der, &Certname::parse("a").unwrap(), &CsrPolicy::default())
    }

    #[test]
    fn refuses_an_extension_requested_twice_however_it_is_spread() {
        let ext_req = oid::EXTENSION_REQUEST;
        // Once: taken.
        let once = csr("a", vec![(ext_req, vec![vec![ext(PP_UUID, "one")]])]);
        assert_eq!(parse(&once).unwrap().subject().extensions.len(), 1);
        for (case, der) in [
            (
                "two values of one extensionRequest",
                csr(
                    "a",
                    vec![(
                        ext_req,
                        vec![vec![ext(PP_UUID, "one")], vec![ext(PP_UUID, "two")]],
                    )],
                ),
            ),
            (
                "extensionRequest and msExtReq",
                csr(
                    "a",
                    vec![
                        (ext_req, vec![vec![ext(PP_UUID, "one")]]),
                        (MS_EXT_REQ, vec![vec![ext(PP_UUID, "two")]]),
                    ],
                ),
            ),
            (
                "a subjectAltName in each",
                csr(
                    "a",
                    vec![
                        (
                            ext_req,
                            vec![vec![Extension {
                                extn_id: ObjectIdentifier::new_unwrap(oid::SUBJECT_ALT_NAME),
                                critical: false,
                                extn_value: der::asn1::OctetString::new(
                                    SubjectAltName(vec![GeneralName::DnsName(
                                        der::asn1::Ia5String::new("a").unwrap(),
                                    )])
                                    .to_der()
                                    .unwrap(),
                                )
                                .unwrap(),
                            }]],
                        ),
                        (
                            MS_EXT_REQ,
                            vec![vec![Extension {
                                extn_id: ObjectIdentifier::new_unwrap(oid::SUBJECT_ALT_NAME),
                                critical: false,
                                extn_value: der::asn1::OctetString::new(
                                    SubjectAltName(vec![GeneralName::DnsName(
                                        der::asn1::Ia5String::new("evil.example").unwrap(),
                                    )])
                                    .to_der()
                                    .unwrap(),
                                )
                                .unwrap(),
                            }]],
                        ),
                    ],
                ),
            ),
        ] {
            let err = parse(&der).err();
            assert_eq!(
                err.as_ref().map(CaError::code),
                Some("csr-malformed"),
                "{case}: {err:?}"
            );
        }
    }
}

#[cfg(test)]
mod rsa_exponent_tests {
    use super::*;
    use der::asn1::{BitString, ObjectIdentifier, SetOfVec, UintRef};
    use openssl::bn::BigNum;
    use openssl::hash::{hash, MessageDigest};
    use x509_cert::request::CertReqInfo;
    use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

    #[derive(der::Sequence)]
    struct RsaPublicKey<'a> {
        modulus: UintRef<'a>,
        public_exponent: UintRef<'a>,
    }

    fn name(cn: &str) -> x509_cert::name::Name {
        let mut n = openssl::x509::X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", cn).unwrap();
        x509_cert::name::Name::from_der(&n.build().to_der().unwrap()).unwrap()
    }

    /// A CSR for `a` carrying the RSA public key (n, e), its signature made by `sign`
    /// over the CertificationRequestInfo.
    fn csr(n: &[u8], e: &[u8], sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let key = RsaPublicKey {
            modulus: UintRef::new(n).unwrap(),
            public_exponent: UintRef::new(e).unwrap(),
        }
        .to_der()
        .unwrap();
        let info = CertReqInfo {
            version: x509_cert::request::Version::V1,
            subject: name("a"),
            public_key: SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1"),
                    parameters: Some(der::asn1::Null.into()),
                },
                subject_public_key: BitString::from_bytes(&key).unwrap(),
            },
            attributes: SetOfVec::new(),
        };
        let sig = sign(&info.to_der().unwrap());
        CertReq {
            info,
            algorithm: AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
                parameters: Some(der::asn1::Null.into()),
            },
            signature: BitString::from_bytes(&sig).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    fn parse(der: &[u8], policy: &CsrPolicy) -> Result<ValidatedCsr, CaError> {
        ValidatedCsr::parse(der, &Certname::parse("a").unwrap(), policy)
    }

    /// With e = 1, "verifying" is comparing the signature with the padded digest, so
    /// anyone can write a valid signature for any modulus: no private key at all.
    #[test]
    fn refuses_rsa_keys_whose_exponent_lets_anyone_sign() {
        let real = openssl::rsa::Rsa::generate(2048).unwrap();
        let n = real.n().to_vec();
        let forged = csr(&n, &[1], |tbs| {
            // EMSA-PKCS1-v1_5 of SHA-256(tbs), which is the signature when e = 1.
            let mut digest_info = vec![
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ];
            digest_info.extend_from_slice(&hash(MessageDigest::sha256(), tbs).unwrap());
            let mut em = vec![0x00, 0x01];
            em.resize(n.len() - digest_info.len() - 1, 0xff);
            em.push(0x00);
            em.extend_from_slice(&digest_info);
            em
        });
        let err = parse(&forged, &CsrPolicy::default()).err();
        assert_eq!(
            err.as_ref().map(CaError::code),
            Some("csr-key-not-allowed"),
            "{err:?}"
        );

        // e = 3 only when the policy allows it; an even modulus never.
        let three =
            openssl::rsa::Rsa::generate_with_e(2048, &BigNum::from_u32(3).unwrap()).unwrap();
        let three = openssl::pkey::PKey::from_rsa(three).unwrap();
        let signed_by = |k: &openssl::pkey::PKey<openssl::pkey::Private>| {
            let k = k.clone();
            move |tbs: &[u8]| {
                let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &k).unwrap();
                s.update(tbs).unwrap();
                s.sign_to_vec().unwrap()
            }
        };
        let rsa3 = three.rsa().unwrap();
        let e3 = csr(&rsa3.n().to_vec(), &[3], signed_by(&three));
        assert_eq!(
            parse(&e3, &CsrPolicy::default())
                .err()
                .as_ref()
                .map(CaError::code),
            Some("csr-key-not-allowed")
        );
        let allow3 = CsrPolicy {
            allow_rsa_exponent_3: true,
            ..CsrPolicy::default()
        };
        assert!(parse(&e3, &allow3).is_ok());
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        let even = csr(&even, &[1, 0, 1], |_| vec![0x42; 256]);
        assert_eq!(
            parse(&even, &allow3).err().as_ref().map(CaError::code),
            Some("csr-key-not-allowed")
        );
    }
}
