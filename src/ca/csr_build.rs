//! Building CSRs, for clients certd itself runs (`certd ca generate`).

use super::{CaError, Certname};

/// Builds a CSR for `certname` signed by `key` (SHA-256, or none for Ed25519), asking for
/// `dns_names` as subject alternative names besides the certname. PEM.
pub fn build_csr(
    key: &super::PrivateKey,
    certname: &Certname,
    dns_names: &[String],
) -> Result<Vec<u8>, CaError> {
    use openssl::hash::MessageDigest;
    use openssl::stack::Stack;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509ReqBuilder};
    let mut b = X509ReqBuilder::new()?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", certname.as_str())?;
    b.set_subject_name(&name.build())?;
    b.set_pubkey(key.pkey())?;
    let mut san = SubjectAlternativeName::new();
    san.dns(certname.as_str());
    for d in dns_names {
        san.dns(d);
    }
    let ext = san.build(&b.x509v3_context(None))?;
    let mut exts = Stack::new()?;
    exts.push(ext)?;
    b.add_extensions(&exts)?;
    let md = if key.key_type() == Some(super::KeyType::Ed25519) {
        MessageDigest::null()
    } else {
        MessageDigest::sha256()
    };
    b.sign(key.pkey(), md)?;
    Ok(b.build().to_pem()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CsrPolicy, KeyType, ValidatedCsr};

    fn name(s: &str) -> Certname {
        Certname::parse(s).unwrap()
    }

    #[test]
    fn built_csrs_pass_the_policy() {
        for kt in [KeyType::EcP256, KeyType::Rsa2048, KeyType::Ed25519] {
            let key = kt.generate().unwrap();
            let pem = build_csr(&key, &name("gen1"), &[]).unwrap();
            let csr = ValidatedCsr::parse(&pem, &name("gen1"), &CsrPolicy::default()).unwrap();
            assert!(csr.subject().dns_names.is_empty(), "only DNS:<certname>");
        }
        let pem = build_csr(
            &KeyType::EcP256.generate().unwrap(),
            &name("gen1"),
            &["alt.example.com".into()],
        )
        .unwrap();
        assert_eq!(
            ValidatedCsr::parse(&pem, &name("gen1"), &CsrPolicy::default())
                .unwrap_err()
                .code(),
            "csr-subject-alt-names-not-allowed"
        );
    }
}
