//! Object identifiers certd relies on, in one place.

/// Puppet's registered arc, 1.3.6.1.4.1.34380.1 (ppRegCertExt is .1, ppPrivCertExt .2,
/// ppAuthCertExt .3).
pub const PUPPET_ARC: &str = "1.3.6.1.4.1.34380.1";
/// Puppet's `pp_cli_auth` extension: a certificate carrying it with the value "true" is
/// an administrator's. Never signable from a CSR.
pub const PP_CLI_AUTH: &str = "1.3.6.1.4.1.34380.1.3.39";
/// PKCS#9 extensionRequest attribute of a CSR.
pub(crate) const EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";
/// Microsoft's extension request attribute (msExtReq), which OpenSSL reads as one too.
pub(crate) const MS_EXTENSION_REQUEST: &str = "1.3.6.1.4.1.311.2.1.14";
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

/// Puppet's short names for the extensions of its arc (`pp_role`, `pp_cli_auth`, ...),
/// as `puppet ssl` and `auth.conf` spell them.
const PUPPET_SHORT_NAMES: &[(&str, &str)] = &[
    ("1.3.6.1.4.1.34380.1.1.1", "pp_uuid"),
    ("1.3.6.1.4.1.34380.1.1.2", "pp_instance_id"),
    ("1.3.6.1.4.1.34380.1.1.3", "pp_image_name"),
    ("1.3.6.1.4.1.34380.1.1.4", "pp_preshared_key"),
    ("1.3.6.1.4.1.34380.1.1.5", "pp_cost_center"),
    ("1.3.6.1.4.1.34380.1.1.6", "pp_product"),
    ("1.3.6.1.4.1.34380.1.1.7", "pp_project"),
    ("1.3.6.1.4.1.34380.1.1.8", "pp_application"),
    ("1.3.6.1.4.1.34380.1.1.9", "pp_service"),
    ("1.3.6.1.4.1.34380.1.1.10", "pp_employee"),
    ("1.3.6.1.4.1.34380.1.1.11", "pp_created_by"),
    ("1.3.6.1.4.1.34380.1.1.12", "pp_environment"),
    ("1.3.6.1.4.1.34380.1.1.13", "pp_role"),
    ("1.3.6.1.4.1.34380.1.1.14", "pp_software_version"),
    ("1.3.6.1.4.1.34380.1.1.15", "pp_department"),
    ("1.3.6.1.4.1.34380.1.1.16", "pp_cluster"),
    ("1.3.6.1.4.1.34380.1.1.17", "pp_provisioner"),
    ("1.3.6.1.4.1.34380.1.1.18", "pp_region"),
    ("1.3.6.1.4.1.34380.1.1.19", "pp_datacenter"),
    ("1.3.6.1.4.1.34380.1.1.20", "pp_zone"),
    ("1.3.6.1.4.1.34380.1.1.21", "pp_network"),
    ("1.3.6.1.4.1.34380.1.1.22", "pp_securitypolicy"),
    ("1.3.6.1.4.1.34380.1.1.23", "pp_cloudplatform"),
    ("1.3.6.1.4.1.34380.1.1.24", "pp_apptier"),
    ("1.3.6.1.4.1.34380.1.1.25", "pp_hostname"),
    ("1.3.6.1.4.1.34380.1.3.1", "pp_authorization"),
    ("1.3.6.1.4.1.34380.1.3.13", "pp_auth_role"),
    ("1.3.6.1.4.1.34380.1.3.39", "pp_cli_auth"),
];

/// Puppet's short name of a dotted OID, if it has one.
pub fn puppet_short_name(oid: &str) -> Option<&'static str> {
    PUPPET_SHORT_NAMES
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| *n)
}

/// The dotted OID of a Puppet short name (`pp_role` → 1.3.6.1.4.1.34380.1.1.13).
pub fn puppet_oid(short_name: &str) -> Option<&'static str> {
    PUPPET_SHORT_NAMES
        .iter()
        .find(|(_, n)| *n == short_name)
        .map(|(o, _)| *o)
}
