//! Certificate authorities: the self-signed root, one issuing CA per environment, and
//! signing of leaf certificates under a profile.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKeyRef, Public};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Extension, X509NameBuilder, X509Ref, X509};

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

/// A leaf's extensions that depend on neither its subject nor its key.
struct LeafConstants {
    basic_constraints: X509Extension,
    key_usage: X509Extension,
    key_usage_rsa: X509Extension,
    extended_key_usage: X509Extension,
    authority_key_id: X509Extension,
}

impl LeafConstants {
    fn build(ca: &X509Ref) -> Result<Self, CaError> {
        let ku = |rsa: bool| {
            let mut ku = KeyUsage::new();
            ku.critical().digital_signature();
            if rsa {
                ku.key_encipherment();
            }
            ku.build()
        };
        let ctx_builder = X509Builder::new()?;
        Ok(LeafConstants {
            basic_constraints: BasicConstraints::new().critical().build()?,
            key_usage: ku(false)?,
            key_usage_rsa: ku(true)?,
            extended_key_usage: ExtendedKeyUsage::new()
                .critical()
                .server_auth()
                .client_auth()
                .build()?,
            authority_key_id: AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&ctx_builder.x509v3_context(Some(ca), None))?,
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
                let built = LeafConstants::build(&self.cert)?;
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
        b.sign(key.pkey(), signing_digest(&key))?;
        let cert = b.build();
        // A self-signed certificate has no issuer to copy an AKI from; OpenSSL would add
        // the SKI as AKI, which is what `openssl req -x509` does too. Keep it minimal.
        Ok(CaPair::assemble(cert, key))
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
        let key = key_type.generate()?;
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
    /// profile; and the subject's vetted extensions.
    pub fn sign_leaf(
        &self,
        subject: &Subject,
        public_key: &PKeyRef<Public>,
        profile: &Profile,
        clock: &dyn Clock,
        rng: &dyn Rng,
    ) -> Result<X509, CaError> {
        let (not_before, not_after) = profile.window(clock.now(), self.not_after()?);
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = SerialNumber::random(rng).to_asn1()?;
        b.set_serial_number(&serial)?;
        let subject_name = name(subject.certname.as_str())?;
        b.set_subject_name(&subject_name)?;
        b.set_issuer_name(self.cert.subject_name())?;
        let (nb, na) = (asn1_time(not_before)?, asn1_time(not_after)?);
        b.set_not_before(&nb)?;
        b.set_not_after(&na)?;
        b.set_pubkey(public_key)?;

        let constants = self.leaf_constants()?;
        b.append_extension2(&constants.basic_constraints)?;
        b.append_extension2(if public_key.id() == Id::RSA {
            &constants.key_usage_rsa
        } else {
            &constants.key_usage
        })?;
        b.append_extension2(&constants.extended_key_usage)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(ski)?;
        b.append_extension2(&constants.authority_key_id)?;

        let mut san = SubjectAlternativeName::new();
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
        let san = san.build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(san)?;

        if profile.kind == ProfileKind::Admin {
            b.append_extension(raw_extension(PP_CLI_AUTH, false, &DER_UTF8_TRUE)?)?;
        }
        for (oid, value, critical) in &subject.extensions {
            // The CSR policy never lets pp_cli_auth through; this is the last line of that.
            if oid == PP_CLI_AUTH {
                return Err(CaError::InvalidCsr {
                    rule: "extension-not-allowed",
                    message: "pp_cli_auth can only be granted by certd itself".into(),
                    puppet: format!("Found extensions that are not permitted: {PP_CLI_AUTH}"),
                });
            }
            b.append_extension(raw_extension(oid, *critical, value)?)?;
        }
        b.sign(self.key.pkey(), signing_digest(&self.key))?;
        Ok(b.build())
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

fn raw_extension(oid: &str, critical: bool, der_value: &[u8]) -> Result<X509Extension, CaError> {
    let obj = Asn1Object::from_str(oid)?;
    let value = Asn1OctetString::new_from_bytes(der_value)?;
    Ok(X509Extension::new_from_der(&obj, critical, &value)?)
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
    use openssl::x509::X509StoreContext;

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
        issuing.sign_leaf(
            subject,
            &key.public_key().unwrap(),
            &Profile::new(kind, ttl),
            &FixedClock::new(1_700_000_000),
            &OsRng,
        )
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

    #[test]
    fn leaf_extensions_are_what_openssls_builders_make_for_each_key_type() {
        use der::{Decode, Encode};
        let (_root, issuing) = chain();
        // EC, then RSA, then EC again from one CA: the extensions it builds once serve
        // every key type.
        for kt in [KeyType::EcP256, KeyType::Rsa2048, KeyType::EcP256] {
            let key = kt.generate().unwrap();
            let subject = Subject::new(Certname::parse("agent1.example.com").unwrap());
            let leaf = sign(&issuing, &subject, &key, ProfileKind::Agent, 3600).unwrap();
            let cert = x509_cert::Certificate::from_der(&leaf.to_der().unwrap()).unwrap();
            let got: Vec<Vec<u8>> = cert
                .tbs_certificate
                .extensions
                .unwrap()
                .iter()
                .map(|e| e.to_der().unwrap())
                .collect();
            let mut ku = KeyUsage::new();
            ku.critical().digital_signature();
            if kt == KeyType::Rsa2048 {
                ku.key_encipherment();
            }
            let mut b = X509Builder::new().unwrap();
            b.set_pubkey(&key.public_key().unwrap()).unwrap();
            let ctx = b.x509v3_context(Some(issuing.cert()), None);
            let expected = [
                BasicConstraints::new().critical().build().unwrap(),
                ku.build().unwrap(),
                ExtendedKeyUsage::new()
                    .critical()
                    .server_auth()
                    .client_auth()
                    .build()
                    .unwrap(),
                SubjectKeyIdentifier::new().build(&ctx).unwrap(),
                AuthorityKeyIdentifier::new()
                    .keyid(true)
                    .build(&ctx)
                    .unwrap(),
            ]
            .map(|e| e.to_der().unwrap());
            assert_eq!(got.len(), expected.len() + 1, "{kt:?}: and the SAN");
            assert_eq!(got[..expected.len()], expected, "{kt:?}");
        }
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
