//! Certificate authorities: the self-signed root, one issuing CA per environment, and
//! signing of leaf certificates under a profile.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKeyRef, Public};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509Ref, X509};

use super::oid;
use super::{
    CaError, Certname, Clock, KeyType, PrivateKey, Profile, ProfileKind, Rng, SerialNumber,
    UnixTime, PP_CLI_AUTH,
};

/// The subject of a new leaf certificate: always exactly `CN=<certname>`, plus SANs.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The certname, which becomes the CN and is always a DNS SAN.
    pub certname: Certname,
    /// Further DNS subject alternative names (already allowed by policy).
    pub dns_names: Vec<String>,
    /// IP subject alternative names (already allowed by policy).
    pub ip_addrs: Vec<IpAddr>,
    /// Extra extensions already vetted by the CSR policy: (dotted OID, DER value, critical).
    pub extensions: Vec<(String, Vec<u8>, bool)>,
}

impl Subject {
    /// A subject with no SANs beyond its certname and no extra extensions.
    pub fn new(certname: Certname) -> Self {
        Subject {
            certname,
            dns_names: Vec::new(),
            ip_addrs: Vec::new(),
            extensions: Vec::new(),
        }
    }
}

impl Subject {
    /// What a renewal of the certificate `der` carries over: the certname (its CN), its
    /// SANs and its Puppet extensions; with its public key, and the admin profile when it
    /// held `pp_cli_auth`.
    pub fn from_certificate(
        der: &[u8],
    ) -> Result<(Subject, openssl::pkey::PKey<Public>, ProfileKind), CaError> {
        let info = super::CertInfo::from_der(der)?;
        let cn = info
            .common_name
            .clone()
            .ok_or_else(|| CaError::BadCertificate("no common name".into()))?;
        let certname = Certname::parse(&cn)?;
        let arc = format!("{}.", super::PUPPET_ARC);
        let extensions = info
            .extensions
            .iter()
            .filter(|(oid, _, _)| oid.starts_with(&arc) && oid != PP_CLI_AUTH)
            .map(|(oid, critical, value)| (oid.clone(), value.clone(), *critical))
            .collect();
        let subject = Subject {
            dns_names: info
                .dns_names
                .iter()
                .filter(|d| **d != cn)
                .cloned()
                .collect(),
            ip_addrs: info.ip_addrs.clone(),
            extensions,
            certname,
        };
        let key = X509::from_der(der)?.public_key()?;
        let kind = if info.pp_cli_auth {
            ProfileKind::Admin
        } else {
            ProfileKind::Agent
        };
        Ok((subject, key, kind))
    }
}

/// A CA certificate and its private key. `Debug` shows the subject only.
#[derive(Clone)]
pub struct CaPair {
    cert: X509,
    key: PrivateKey,
    /// The extensions every leaf this CA signs carries, built on first use: building
    /// them (OpenSSL's config-string parsers) cost as much per leaf as the rest of it.
    leaf: Arc<OnceLock<LeafConstants>>,
}

/// What a leaf's DER takes from its CA whatever its subject or key: the extensions
/// (each an encoded `Extension`), the issuer name and the signature algorithm.
struct LeafConstants {
    basic_constraints: Vec<u8>,
    key_usage: Vec<u8>,
    key_usage_rsa: Vec<u8>,
    extended_key_usage: Vec<u8>,
    authority_key_id: Vec<u8>,
    issuer: Vec<u8>,
    signature_algorithm: Vec<u8>,
    digest: MessageDigest,
}

impl LeafConstants {
    fn build(ca: &X509Ref, key: &PrivateKey) -> Result<Self, CaError> {
        let ku = |rsa: bool| {
            let mut ku = KeyUsage::new();
            ku.critical().digital_signature();
            if rsa {
                ku.key_encipherment();
            }
            ku.build()
        };
        let ctx_builder = X509Builder::new()?;
        use der::Encode;
        let (alg, digest) = super::crl::signature_algorithm(key.key_type())?;
        Ok(LeafConstants {
            basic_constraints: BasicConstraints::new().critical().build()?.to_der()?,
            key_usage: ku(false)?.to_der()?,
            key_usage_rsa: ku(true)?.to_der()?,
            extended_key_usage: ExtendedKeyUsage::new()
                .critical()
                .server_auth()
                .client_auth()
                .build()?
                .to_der()?,
            authority_key_id: AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&ctx_builder.x509v3_context(Some(ca), None))?
                .to_der()?,
            issuer: ca.subject_name().to_der()?,
            signature_algorithm: alg.to_der()?,
            digest,
        })
    }
}

/// The digest a CA key signs with: SHA-256 (SHA-384 for P-384), none for Ed25519.
fn signing_digest(key: &PrivateKey) -> MessageDigest {
    match key.key_type() {
        Some(KeyType::Ed25519) => MessageDigest::null(),
        Some(KeyType::EcP384) => MessageDigest::sha384(),
        _ => MessageDigest::sha256(),
    }
}

fn asn1_time(t: UnixTime) -> Result<Asn1Time, CaError> {
    Ok(Asn1Time::from_unix(t)?)
}

fn name(cn: &str) -> Result<openssl::x509::X509Name, CaError> {
    let mut b = X509NameBuilder::new()?;
    b.append_entry_by_text("CN", cn)?;
    Ok(b.build())
}

/// RFC 5280's upper bound on a commonName, in characters (OpenSSL refuses longer).
const UB_COMMON_NAME: usize = 64;

/// `UTF8String "true"`, Puppet's encoding of boolean-like extension values.
const DER_UTF8_TRUE: [u8; 6] = [0x0c, 0x04, b't', b'r', b'u', b'e'];

impl CaPair {
    fn assemble(cert: X509, key: PrivateKey) -> CaPair {
        CaPair {
            cert,
            key,
            leaf: Arc::default(),
        }
    }

    fn leaf_constants(&self) -> Result<&LeafConstants, CaError> {
        match self.leaf.get() {
            Some(c) => Ok(c),
            None => {
                let built = LeafConstants::build(&self.cert, &self.key)?;
                Ok(self.leaf.get_or_init(|| built))
            }
        }
    }

    /// A new self-signed root CA named `cn`, valid from one day before `clock.now()` for
    /// `validity` seconds. Key usage keyCertSign + cRLSign, basicConstraints CA:TRUE.
    pub fn new_root(
        cn: &str,
        key_type: KeyType,
        validity: i64,
        clock: &dyn Clock,
        rng: &dyn Rng,
    ) -> Result<CaPair, CaError> {
        let key = key_type.generate()?;
        let subject = name(cn)?;
        let now = clock.now();
        let mut b = ca_builder(
            &subject,
            &subject,
            &key,
            now - Profile::DEFAULT_BACKDATE,
            now + validity,
            rng,
        )?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(ski)?;
        // Its own key identifier as AKI, as `openssl req -x509` and Puppet's CA write it:
        // RFC 5280 allows leaving it out of a self-signed certificate, but path builders
        // and linters (pkilint's chain check) look for it. With no issuer given, the
        // context's issuer is the certificate itself, whose SKI is set above.
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(None, None))?;
        b.append_extension(aki)?;
        b.sign(key.pkey(), signing_digest(&key))?;
        Ok(CaPair::assemble(b.build(), key))
    }

    /// A new issuing CA named `cn`, signed by this (root) CA, with pathlen 0 so it can
    /// sign only leaves. Its validity never outlives this CA.
    pub fn new_issuing(
        &self,
        cn: &str,
        key_type: KeyType,
        validity: i64,
        clock: &dyn Clock,
        rng: &dyn Rng,
    ) -> Result<CaPair, CaError> {
        self.certify_issuing(key_type.generate()?, cn, validity, clock, rng)
    }

    /// [`CaPair::new_issuing`] for a key that exists already.
    pub fn certify_issuing(
        &self,
        key: PrivateKey,
        cn: &str,
        validity: i64,
        clock: &dyn Clock,
        rng: &dyn Rng,
    ) -> Result<CaPair, CaError> {
        let now = clock.now();
        let not_after = (now + validity).min(self.not_after()?);
        let subject = name(cn)?;
        let mut b = ca_builder(
            &subject,
            self.cert.subject_name(),
            &key,
            now - Profile::DEFAULT_BACKDATE,
            not_after,
            rng,
        )?;
        b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(ski)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(aki)?;
        b.sign(self.key.pkey(), signing_digest(&self.key))?;
        Ok(CaPair::assemble(b.build(), key))
    }

    /// Loads a CA from PEM, checking that the key belongs to the certificate and that
    /// the certificate is a CA.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CaPair, CaError> {
        let cert = X509::from_pem(cert_pem)
            .map_err(|_| CaError::BadCertificate("CA certificate is not PEM".into()))?;
        let key = PrivateKey::from_pem(key_pem)?;
        let public = cert.public_key()?;
        if !public.public_eq(key.pkey()) {
            return Err(CaError::BadKey(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        Ok(CaPair::assemble(cert, key))
    }

    /// The CA certificate.
    pub fn cert(&self) -> &X509Ref {
        &self.cert
    }

    /// The CA private key, for signing CRLs.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The CA certificate's `notAfter` in Unix seconds.
    pub fn not_after(&self) -> Result<UnixTime, CaError> {
        super::inspect::asn1_to_unix(self.cert.not_after())
    }

    /// Signs a leaf certificate for `subject` with `public_key` under `profile`.
    ///
    /// The certificate holds exactly: subject `CN=<certname>`; SAN with `DNS:<certname>`
    /// first, then the subject's other names; basicConstraints CA:FALSE (critical); key
    /// usage digitalSignature (+ keyEncipherment for RSA keys) (critical); extended key
    /// usage serverAuth + clientAuth (critical); SKI; AKI; `pp_cli_auth` for the admin
    /// profile; and the subject's vetted extensions. Returned as DER.
    ///
    /// The TBSCertificate is written directly (as the CRL's is, `crl::assemble_crl`)
    /// rather than through OpenSSL's `X509` builder, whose name, key, extension and
    /// re-encoding steps cost as much as the signature; the extensions that do not
    /// depend on the subject are encoded once per CA. A unit test checks the result byte
    /// for byte against what OpenSSL's builder makes.
    pub fn sign_leaf(
        &self,
        subject: &Subject,
        public_key: &PKeyRef<Public>,
        profile: &Profile,
        clock: &dyn Clock,
        rng: &dyn Rng,
    ) -> Result<Vec<u8>, CaError> {
        use super::crl::{extension, positive, sign, tlv, x509_time};
        use der::{Decode, Encode};
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::SubjectAltName;

        // The CSR policy never lets pp_cli_auth through; this is the last line of that.
        if subject
            .extensions
            .iter()
            .any(|(oid, _, _)| oid == PP_CLI_AUTH)
        {
            return Err(CaError::InvalidCsr {
                rule: "extension-not-allowed",
                message: "pp_cli_auth can only be granted by certd itself".into(),
                puppet: format!("Found extensions that are not permitted: {PP_CLI_AUTH}"),
            });
        }
        let cn = subject.certname.as_str();
        if cn.len() > UB_COMMON_NAME {
            return Err(CaError::InvalidCsr {
                rule: "certname-too-long-for-certificate",
                message: format!(
                    "a certificate's common name holds at most {UB_COMMON_NAME} characters \
                     (RFC 5280 ub-common-name); the certname has {}",
                    cn.len()
                ),
                puppet: format!(
                    "Certname {cn} is longer than the {UB_COMMON_NAME} characters a \
                     certificate's common name can hold"
                ),
            });
        }
        let c = self.leaf_constants()?;
        let (not_before, not_after) = profile.window(clock.now(), self.not_after()?);
        let serial = tlv(0x02, &[&positive(SerialNumber::random(rng).as_bytes())]);
        let validity = tlv(
            0x30,
            &[
                &x509_time(not_before)?.to_der()?,
                &x509_time(not_after)?.to_der()?,
            ],
        );
        // Name ::= SEQUENCE OF SET OF { commonName, UTF8String }, as OpenSSL writes it.
        let cn_oid = der::asn1::ObjectIdentifier::new_unwrap(oid::COMMON_NAME).to_der()?;
        let atv = tlv(0x30, &[&cn_oid, &tlv(0x0c, &[cn.as_bytes()])]);
        let subject_name = tlv(0x30, &[&tlv(0x31, &[&atv])]);
        let spki = public_key.public_key_to_der()?;
        // SubjectKeyIdentifier: SHA-1 of the key's BIT STRING (RFC 5280 4.2.1.2, method 1).
        let key_bits = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(&spki)?
            .subject_public_key
            .raw_bytes()
            .to_vec();
        let ski_value = der::asn1::OctetString::new(openssl::sha::sha1(&key_bits).to_vec())?;
        let ski = extension(oid::SUBJECT_KEY_ID, false, ski_value.to_der()?)?.to_der()?;
        let mut names = vec![GeneralName::DnsName(der::asn1::Ia5String::new(cn)?)];
        for dns in subject.dns_names.iter().filter(|d| *d != cn) {
            names.push(GeneralName::DnsName(der::asn1::Ia5String::new(dns)?));
        }
        for ip in &subject.ip_addrs {
            let octets = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            names.push(GeneralName::IpAddress(der::asn1::OctetString::new(octets)?));
        }
        let san = extension(
            oid::SUBJECT_ALT_NAME,
            false,
            SubjectAltName(names).to_der()?,
        )?
        .to_der()?;
        let key_usage = if public_key.id() == Id::RSA {
            &c.key_usage_rsa
        } else {
            &c.key_usage
        };
        let mut extensions: Vec<Vec<u8>> = Vec::new();
        if profile.kind == ProfileKind::Admin {
            extensions.push(extension(PP_CLI_AUTH, false, DER_UTF8_TRUE.to_vec())?.to_der()?);
        }
        for (oid, value, critical) in &subject.extensions {
            extensions.push(extension(oid, *critical, value.clone())?.to_der()?);
        }
        let mut all: Vec<&[u8]> = vec![
            &c.basic_constraints,
            key_usage,
            &c.extended_key_usage,
            &ski,
            &c.authority_key_id,
            &san,
        ];
        all.extend(extensions.iter().map(Vec::as_slice));
        let extensions = tlv(0xa3, &[&tlv(0x30, &all)]);
        // TBSCertificate ::= SEQUENCE { [0] version v3, serialNumber, signature, issuer,
        //   validity, subject, subjectPublicKeyInfo, [3] extensions }
        let tbs = tlv(
            0x30,
            &[
                &[0xa0, 0x03, 0x02, 0x01, 0x02],
                &serial,
                &c.signature_algorithm,
                &c.issuer,
                &validity,
                &subject_name,
                &spki,
                &extensions,
            ],
        );
        let signature = der::asn1::BitString::from_bytes(&sign(self, c.digest, &tbs)?)?.to_der()?;
        Ok(tlv(0x30, &[&tbs, &c.signature_algorithm, &signature]))
    }
}

fn ca_builder(
    subject: &openssl::x509::X509NameRef,
    issuer: &openssl::x509::X509NameRef,
    key: &PrivateKey,
    not_before: UnixTime,
    not_after: UnixTime,
    rng: &dyn Rng,
) -> Result<X509Builder, CaError> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = SerialNumber::random(rng).to_asn1()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(subject)?;
    b.set_issuer_name(issuer)?;
    let (nb, na) = (asn1_time(not_before)?, asn1_time(not_after)?);
    b.set_not_before(&nb)?;
    b.set_not_after(&na)?;
    b.set_pubkey(key.pkey())?;
    Ok(b)
}

impl fmt::Debug for CaPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cn = self
            .cert
            .subject_name()
            .entries()
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_default();
        write!(f, "CaPair({cn:?}, key: <redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CertInfo, FixedClock, OsRng};
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509Extension, X509StoreContext};

    pub(crate) fn chain() -> (CaPair, CaPair) {
        let clock = FixedClock::new(1_700_000_000);
        let root = CaPair::new_root(
            "certd Root CA: test",
            KeyType::EcP256,
            20 * 365 * 86400,
            &clock,
            &OsRng,
        )
        .unwrap();
        let issuing = root
            .new_issuing(
                "certd CA: production",
                KeyType::EcP256,
                10 * 365 * 86400,
                &clock,
                &OsRng,
            )
            .unwrap();
        (root, issuing)
    }

    fn verifies(leaf: &X509, issuing: &CaPair, root: &CaPair) -> bool {
        let mut sb = X509StoreBuilder::new().unwrap();
        sb.add_cert(root.cert().to_owned()).unwrap();
        // The fixed clock's time, not the wall clock's.
        let mut param = openssl::x509::verify::X509VerifyParam::new().unwrap();
        param.set_time(1_700_000_000);
        sb.set_param(&param).unwrap();
        let store = sb.build();
        let mut untrusted = Stack::new().unwrap();
        untrusted.push(issuing.cert().to_owned()).unwrap();
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, leaf, &untrusted, |c| c.verify_cert())
            .unwrap()
    }

    /// `issuing` signs `subject`'s leaf with `key` under a profile of `kind` valid `ttl`
    /// seconds, at the tests' fixed time.
    fn sign(
        issuing: &CaPair,
        subject: &Subject,
        key: &PrivateKey,
        kind: ProfileKind,
        ttl: i64,
    ) -> Result<X509, CaError> {
        let der = issuing.sign_leaf(
            subject,
            &key.public_key().unwrap(),
            &Profile::new(kind, ttl),
            &FixedClock::new(1_700_000_000),
            &OsRng,
        )?;
        Ok(X509::from_der(&der).unwrap())
    }

    #[test]
    fn issuing_ca_is_signed_by_root_and_is_a_ca() {
        let (root, issuing) = chain();
        let root_key = root.cert().public_key().unwrap();
        assert!(issuing.cert().verify(&root_key).unwrap());
        assert!(root.cert().verify(&root_key).unwrap());
        let info = CertInfo::from_der(&issuing.cert().to_der().unwrap()).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("certd CA: production"));
        assert!(info.is_ca);
    }

    /// The leaf OpenSSL's `X509` builder makes for the same inputs (the way certd built
    /// leaves before it wrote their DER directly), with `serial` and the window given.
    fn openssl_leaf(
        issuing: &CaPair,
        subject: &Subject,
        public_key: &PKeyRef<Public>,
        kind: ProfileKind,
        serial: &[u8],
        window: (UnixTime, UnixTime),
    ) -> X509 {
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let serial = openssl::bn::BigNum::from_slice(serial)
            .unwrap()
            .to_asn1_integer()
            .unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&name(subject.certname.as_str()).unwrap())
            .unwrap();
        b.set_issuer_name(issuing.cert().subject_name()).unwrap();
        b.set_not_before(&asn1_time(window.0).unwrap()).unwrap();
        b.set_not_after(&asn1_time(window.1).unwrap()).unwrap();
        b.set_pubkey(public_key).unwrap();
        b.append_extension(BasicConstraints::new().critical().build().unwrap())
            .unwrap();
        let mut ku = KeyUsage::new();
        ku.critical().digital_signature();
        if public_key.id() == Id::RSA {
            ku.key_encipherment();
        }
        b.append_extension(ku.build().unwrap()).unwrap();
        b.append_extension(
            ExtendedKeyUsage::new()
                .critical()
                .server_auth()
                .client_auth()
                .build()
                .unwrap(),
        )
        .unwrap();
        let ctx = b.x509v3_context(Some(issuing.cert()), None);
        let ski = SubjectKeyIdentifier::new().build(&ctx).unwrap();
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&ctx)
            .unwrap();
        let mut san = openssl::x509::extension::SubjectAlternativeName::new();
        san.dns(subject.certname.as_str());
        for dns in subject
            .dns_names
            .iter()
            .filter(|d| *d != subject.certname.as_str())
        {
            san.dns(dns);
        }
        for ip in &subject.ip_addrs {
            san.ip(&ip.to_string());
        }
        let san = san.build(&ctx).unwrap();
        b.append_extension(ski).unwrap();
        b.append_extension(aki).unwrap();
        b.append_extension(san).unwrap();
        let raw = |oid: &str, critical: bool, value: &[u8]| {
            X509Extension::new_from_der(
                &openssl::asn1::Asn1Object::from_str(oid).unwrap(),
                critical,
                &openssl::asn1::Asn1OctetString::new_from_bytes(value).unwrap(),
            )
            .unwrap()
        };
        if kind == ProfileKind::Admin {
            b.append_extension(raw(PP_CLI_AUTH, false, &DER_UTF8_TRUE))
                .unwrap();
        }
        for (oid, value, critical) in &subject.extensions {
            b.append_extension(raw(oid, *critical, value)).unwrap();
        }
        b.sign(issuing.key().pkey(), signing_digest(issuing.key()))
            .unwrap();
        b.build()
    }

    #[test]
    fn leaves_are_byte_for_byte_what_openssls_builder_makes() {
        use der::{Decode, Encode};
        let clock = FixedClock::new(1_700_000_000);
        let mut full = Subject::new(Certname::parse("agent1.example.com").unwrap());
        full.dns_names = vec!["agent1.example.com".into(), "alias.example.com".into()];
        full.ip_addrs = vec!["127.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        // pp_role (a UTF8String) and a critical one, as the CSR policy would pass them.
        full.extensions = vec![
            (
                "1.3.6.1.4.1.34380.1.1.13".into(),
                vec![0x0c, 0x03, b'w', b'e', b'b'],
                false,
            ),
            (
                "1.3.6.1.4.1.34380.1.2.1".into(),
                vec![0x0c, 0x01, b'x'],
                true,
            ),
        ];
        let plain = Subject::new(Certname::parse(&"n".repeat(UB_COMMON_NAME)).unwrap());
        for ca_type in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa2048,
            KeyType::Ed25519,
        ] {
            let root = CaPair::new_root("r", ca_type, 86400 * 10, &clock, &OsRng).unwrap();
            let issuing = root
                .new_issuing("certd CA: production", ca_type, 86400 * 5, &clock, &OsRng)
                .unwrap();
            for key_type in [KeyType::EcP256, KeyType::Rsa2048, KeyType::Ed25519] {
                let key = key_type.generate().unwrap();
                let public = key.public_key().unwrap();
                for (subject, kind, ttl) in [
                    (&full, ProfileKind::Agent, 3600),
                    (&plain, ProfileKind::Admin, 100 * 365 * 86400),
                ] {
                    let ours = sign(&issuing, subject, &key, kind, ttl).unwrap();
                    // (OpenSSL's chain check refuses an unknown critical extension.)
                    if subject.extensions.is_empty() {
                        assert!(verifies(&ours, &issuing, &root), "{ca_type} {key_type:?}");
                    }
                    let ours = x509_cert::Certificate::from_der(&ours.to_der().unwrap()).unwrap();
                    let tbs = &ours.tbs_certificate;
                    let window = (
                        tbs.validity.not_before.to_unix_duration().as_secs() as i64,
                        tbs.validity.not_after.to_unix_duration().as_secs() as i64,
                    );
                    let reference = openssl_leaf(
                        &issuing,
                        subject,
                        &public,
                        kind,
                        tbs.serial_number.as_bytes(),
                        window,
                    );
                    let reference =
                        x509_cert::Certificate::from_der(&reference.to_der().unwrap()).unwrap();
                    assert_eq!(
                        tbs.to_der().unwrap(),
                        reference.tbs_certificate.to_der().unwrap(),
                        "{ca_type} CA, {key_type:?} key, {kind:?}"
                    );
                    assert_eq!(ours.signature_algorithm, reference.signature_algorithm);
                }
            }
        }
    }

    #[test]
    fn a_certname_longer_than_a_common_name_holds_is_refused_clearly() {
        let (_, issuing) = chain();
        let key = KeyType::EcP256.generate().unwrap();
        let long = Subject::new(Certname::parse(&"a".repeat(UB_COMMON_NAME + 1)).unwrap());
        let err = sign(&issuing, &long, &key, ProfileKind::Agent, 3600).unwrap_err();
        assert_eq!(err.code(), "certname-too-long-for-certificate");
    }

    #[test]
    fn leaf_has_profile_contents_and_verifies() {
        let (root, issuing) = chain();
        let key = KeyType::EcP256.generate().unwrap();
        let mut subject = Subject::new(Certname::parse("agent1.example.com").unwrap());
        subject.dns_names.push("alias.example.com".into());
        subject.ip_addrs.push("127.0.0.1".parse().unwrap());
        let leaf = sign(&issuing, &subject, &key, ProfileKind::Agent, 3600).unwrap();
        assert!(verifies(&leaf, &issuing, &root));
        let info = CertInfo::from_der(&leaf.to_der().unwrap()).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("agent1.example.com"));
        assert_eq!(info.subject_rdn_count, 1);
        assert_eq!(
            info.dns_names,
            vec!["agent1.example.com", "alias.example.com"]
        );
        assert_eq!(info.ip_addrs, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.not_before, 1_700_000_000 - 86_400);
        assert_eq!(info.not_after, 1_700_000_000 + 3600);
        assert!(!info.is_ca);
        assert!(!info.pp_cli_auth);
        assert!(info.subject_key_id.is_some());
        assert_eq!(
            info.authority_key_id,
            CertInfo::from_der(&issuing.cert().to_der().unwrap())
                .unwrap()
                .subject_key_id
        );
    }

    #[test]
    fn admin_profile_carries_pp_cli_auth() {
        let (_, issuing) = chain();
        let key = KeyType::EcP256.generate().unwrap();
        let subject = Subject::new(Certname::parse("certd-admin").unwrap());
        let leaf = sign(&issuing, &subject, &key, ProfileKind::Admin, 3600).unwrap();
        assert!(
            CertInfo::from_der(&leaf.to_der().unwrap())
                .unwrap()
                .pp_cli_auth
        );
    }

    #[test]
    fn refuses_pp_cli_auth_from_a_subject() {
        let (_, issuing) = chain();
        let key = KeyType::EcP256.generate().unwrap();
        let mut subject = Subject::new(Certname::parse("sneaky").unwrap());
        subject
            .extensions
            .push((PP_CLI_AUTH.into(), DER_UTF8_TRUE.to_vec(), false));
        let err = sign(&issuing, &subject, &key, ProfileKind::Agent, 3600).unwrap_err();
        assert_eq!(err.code(), "extension-not-allowed");
    }

    #[test]
    fn leaf_never_outlives_its_issuer() {
        let (_, issuing) = chain();
        let key = KeyType::EcP256.generate().unwrap();
        let subject = Subject::new(Certname::parse("long").unwrap());
        let leaf = sign(
            &issuing,
            &subject,
            &key,
            ProfileKind::Agent,
            100 * 365 * 86400,
        )
        .unwrap();
        let info = CertInfo::from_der(&leaf.to_der().unwrap()).unwrap();
        assert_eq!(info.not_after, issuing.not_after().unwrap());
    }

    #[test]
    fn every_ca_key_type_can_sign() {
        let clock = FixedClock::new(1_700_000_000);
        for kt in [KeyType::Rsa2048, KeyType::EcP384, KeyType::Ed25519] {
            let root = CaPair::new_root("r", kt, 86400 * 10, &clock, &OsRng).unwrap();
            let issuing = root
                .new_issuing("i", kt, 86400 * 5, &clock, &OsRng)
                .unwrap();
            let key = KeyType::Rsa2048.generate().unwrap();
            let subject = Subject::new(Certname::parse("n").unwrap());
            let leaf = sign(&issuing, &subject, &key, ProfileKind::Agent, 3600).unwrap();
            assert!(verifies(&leaf, &issuing, &root), "{kt}");
        }
    }

    #[test]
    fn from_pem_refuses_a_key_of_another_ca() {
        let (root, issuing) = chain();
        let err = CaPair::from_pem(
            &root.cert().to_pem().unwrap(),
            &issuing.key().to_pem().unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "bad-key");
        assert!(CaPair::from_pem(
            &root.cert().to_pem().unwrap(),
            &root.key().to_pem().unwrap()
        )
        .is_ok());
    }
}
