//! Object identifiers certd relies on, in one place.

/// Puppet's registered arc, 1.3.6.1.4.1.34380.1 (ppRegCertExt is .1, ppPrivCertExt .2,
/// ppAuthCertExt .3).
pub const PUPPET_ARC: &str = "1.3.6.1.4.1.34380.1";
/// Puppet's `pp_cli_auth` extension: a certificate carrying it with the value "true" is
/// an administrator's. Never signable from a CSR.
pub const PP_CLI_AUTH: &str = "1.3.6.1.4.1.34380.1.3.39";
/// PKCS#9 extensionRequest attribute of a CSR.
pub(crate) const EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";
/// subjectAltName.
pub(crate) const SUBJECT_ALT_NAME: &str = "2.5.29.17";
/// commonName attribute type.
pub(crate) const COMMON_NAME: &str = "2.5.4.3";
/// subjectKeyIdentifier.
pub(crate) const SUBJECT_KEY_ID: &str = "2.5.29.14";
/// authorityKeyIdentifier.
pub(crate) const AUTHORITY_KEY_ID: &str = "2.5.29.35";
/// cRLNumber.
pub(crate) const CRL_NUMBER: &str = "2.5.29.20";
/// CRL entry reasonCode.
pub(crate) const CRL_REASON: &str = "2.5.29.21";
