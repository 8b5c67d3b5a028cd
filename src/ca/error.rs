use thiserror::Error;

/// Everything that can go wrong in the pure PKI layer.
///
/// Variants that describe bad *input* carry a stable kebab-case code (see
/// [`CaError::code`]) that the HTTP layer turns into a problem+json `code`.
#[derive(Debug, Error)]
pub enum CaError {
    /// A certname broke one of the naming rules; `rule` is the stable code, `puppet` the
    /// words Puppet Server uses for it.
    #[error("invalid certname: {message}")]
    InvalidCertname {
        rule: &'static str,
        message: String,
        puppet: String,
    },
    /// An environment name does not match `^[a-z0-9][a-z0-9_-]{0,53}$`, or is the name
    /// of one of certd's own routes.
    #[error(
        "invalid environment name {0:?}: use 1-54 of a-z 0-9 _ -, starting with a letter or digit (54: what the issuing CA's common name holds), and not one of puppet-ca, status, environments, metrics, dashboard, acme"
    )]
    InvalidEnvironment(String),
    /// A CSR broke a policy or encoding rule; `rule` is the stable code, `puppet` the
    /// words Puppet Server uses for it (its exact messages, reference section 8).
    #[error("{message}")]
    InvalidCsr {
        rule: &'static str,
        message: String,
        puppet: String,
    },
    /// A key type name is not one of the allowlisted ones.
    #[error("unknown key type {0:?}: use one of rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384, ed25519")]
    UnknownKeyType(String),
    /// A digest name is not one of md5, sha1, sha224, sha256, sha384, sha512.
    #[error("unknown digest {0:?}: use one of md5, sha1, sha224, sha256, sha384, sha512")]
    UnknownDigest(String),
    /// Stored or loaded key material could not be parsed or does not match.
    #[error("bad key material: {0}")]
    BadKey(String),
    /// A certificate could not be parsed.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// OpenSSL failed while building or signing.
    #[error("openssl: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// DER encoding or decoding failed while building a structure.
    #[error("der: {0}")]
    Der(#[from] der::Error),
}

impl CaError {
    /// A stable kebab-case code for the error, for clients to match on.
    pub fn code(&self) -> &'static str {
        match self {
            CaError::InvalidCertname { rule, .. } => rule,
            CaError::InvalidEnvironment(_) => "invalid-environment",
            CaError::InvalidCsr { rule, .. } => rule,
            CaError::UnknownKeyType(_) => "unknown-key-type",
            CaError::UnknownDigest(_) => "unknown-digest",
            CaError::BadKey(_) => "bad-key",
            CaError::BadCertificate(_) => "bad-certificate",
            CaError::OpenSsl(_) => "openssl",
            CaError::Der(_) => "der",
        }
    }

    /// The message Puppet Server gives for this error, for the Puppet face.
    pub fn puppet_message(&self) -> String {
        match self {
            CaError::InvalidCertname { puppet, .. } | CaError::InvalidCsr { puppet, .. } => {
                puppet.clone()
            }
            other => other.to_string(),
        }
    }

    /// True for a well-formed CSR, signed by its key and for the right name, that asks
    /// for what the environment's policy does not allow (subject alternative names,
    /// extensions): such a submission is kept as an invalid request for an admin to see,
    /// where input that is not a valid CSR at all is refused with nothing kept.
    pub fn is_policy_refusal(&self) -> bool {
        matches!(
            self,
            CaError::InvalidCsr { rule, .. }
                if *rule == "csr-subject-alt-names-not-allowed" || *rule == "csr-extension-not-allowed"
        )
    }

    /// True when the error was caused by what a client sent (a 4xx), not by the CA.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            CaError::InvalidCertname { .. }
                | CaError::InvalidEnvironment(_)
                | CaError::InvalidCsr { .. }
                | CaError::UnknownDigest(_)
        )
    }
}
