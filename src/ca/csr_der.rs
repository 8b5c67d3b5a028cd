//! The bytes of a submitted CSR before parsing: one PEM block or DER, and the copy the
//! strict structure decoder reads.

use super::csr::invalid;
use super::CaError;

/// Turns the submitted bytes into DER: either exactly one PEM block labelled
/// `CERTIFICATE REQUEST` (or the legacy `NEW CERTIFICATE REQUEST`), or raw DER.
pub(super) fn to_der(bytes: &[u8]) -> Result<Vec<u8>, CaError> {
    let trimmed = bytes.trim_ascii();
    if !trimmed.starts_with(b"-----BEGIN") {
        if trimmed.first() == Some(&0x30) {
            return Ok(bytes.to_vec());
        }
        return Err(invalid("csr-not-pem", "the body is neither a PEM CSR nor DER; send one -----BEGIN CERTIFICATE REQUEST----- block"));
    }
    let blocks = trimmed.windows(11).filter(|w| *w == b"-----BEGIN ").count();
    if blocks != 1 {
        return Err(invalid(
            "csr-multiple-pem-blocks",
            format!("the body holds {blocks} PEM blocks; send exactly one CSR"),
        ));
    }
    let (label, der) = der::pem::decode_vec(trimmed).map_err(|e| {
        invalid(
            "csr-not-pem",
            format!("the PEM block cannot be decoded: {e}"),
        )
    })?;
    if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
        return Err(invalid(
            "csr-wrong-pem-label",
            format!("the PEM block is a {label:?}; expected a CERTIFICATE REQUEST"),
        ));
    }
    Ok(der)
}

/// The puppetserver-ca CLI writes CSRs with version 2 (RFC 2986 allows only 0); OpenSSL
/// and Puppet Server accept them, the strict `x509-cert` decoder does not. The structure
/// is read from a copy whose version byte is 0; the original bytes are what is stored
/// and what OpenSSL verifies the signature over. Only versions 1 and 2 are rewritten.
pub(super) fn structural_copy(der: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // SEQUENCE { SEQUENCE { INTEGER version, ... } ... }: skip two headers, then expect
    // the one-byte INTEGER 02 01 vv.
    fn header_len(b: &[u8]) -> Option<usize> {
        match *b.get(1)? {
            l if l < 0x80 => Some(2),
            0x81 => Some(3),
            0x82 => Some(4),
            0x83 => Some(5),
            _ => None,
        }
    }
    let patch = || -> Option<usize> {
        if der.first()? != &0x30 {
            return None;
        }
        let outer = header_len(der)?;
        if der.get(outer)? != &0x30 {
            return None;
        }
        let at = outer + header_len(&der[outer..])?;
        match der.get(at..at + 3)? {
            [0x02, 0x01, 1 | 2] => Some(at + 2),
            _ => None,
        }
    };
    match patch() {
        Some(i) => {
            let mut copy = der.to_vec();
            copy[i] = 0;
            std::borrow::Cow::Owned(copy)
        }
        None => std::borrow::Cow::Borrowed(der),
    }
}
