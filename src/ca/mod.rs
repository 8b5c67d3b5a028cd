//! Pure PKI: names, keys, certificates, CSRs, CRLs, serials and fingerprints.
//!
//! Synchronous and free of I/O. This module knows OpenSSL, the RustCrypto DER types and
//! serde, never actix, sled, tokio or another module of the crate. Time and randomness
//! come in through [`Clock`] and [`Rng`].

mod authority;
mod clock;
mod crl;
mod csr;
mod csr_build;
mod csr_der;
mod csr_key;
mod error;
mod fingerprint;
mod inspect;
mod key;
mod name;
mod oid;
mod profile;
mod serial;

pub use authority::{CaPair, Subject};
pub use clock::{format_utc, write_utc, Clock, FixedClock, OsRng, Rng, SystemClock, UnixTime};
pub use crl::{
    assemble_crl, build_crl, crl_signed_by, encode_crl_entry, parse_crl, parse_crls, AssembledCrl,
    CrlEntry, CrlParams, ParsedCrl, RevocationReason,
};
pub use csr::{
    csr_public_key_der, refused_csr, requested_names, CsrPolicy, RequestedNames, ValidatedCsr,
};
pub use csr_build::build_csr;
pub use error::CaError;
pub use fingerprint::{write_hex_pairs, Digest, DigestValue, Fingerprint};
pub use inspect::CertInfo;

/// The text of a string-valued extension (UTF8String, PrintableString, IA5String).
pub fn der_text(value: &[u8]) -> Option<String> {
    inspect::der_string(value)
}
pub use key::{KeyType, PrivateKey};
pub use name::{domain_glob_matches, Certname, EnvName, MAX_ENV_NAME, RESERVED_ENV_NAMES};
pub use oid::{puppet_oid, puppet_short_name, PP_CLI_AUTH, PUPPET_ARC};
pub use profile::{Profile, ProfileKind};
pub use serial::{SerialNumber, SerialSet};

/// PEM-encodes `der` under `label` (e.g. `CERTIFICATE`, `X509 CRL`), LF line endings.
pub fn pem_encode(label: &str, der: &[u8]) -> Vec<u8> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der)
        .map(String::into_bytes)
        .unwrap_or_default()
}

/// The length [`pem_encode`] gives `der` under `label`, without encoding it.
pub fn pem_len(label: &str, der: &[u8]) -> usize {
    der::pem::encoded_len(label, der::pem::LineEnding::LF, der).unwrap_or_default()
}

/// PEM-encodes a chain of certificates, in the order given, as one bundle.
pub fn pem_bundle(certs: &[&openssl::x509::X509Ref]) -> Result<Vec<u8>, CaError> {
    let mut out = Vec::new();
    for cert in certs {
        out.extend_from_slice(&cert.to_pem()?);
    }
    Ok(out)
}
