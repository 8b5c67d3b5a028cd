//! Reading certificates back: the fields the rest of certd reports and decides on,
//! decoded with the RustCrypto `x509-cert` parser (independent of the OpenSSL builder
//! that produced them).

use std::net::IpAddr;

use der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode};
use openssl::asn1::Asn1TimeRef;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::Certificate;

use super::oid;
use super::{CaError, SerialNumber, UnixTime};

/// What certd needs to know about a certificate, decoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name, if it has one.
    pub common_name: Option<String>,
    /// How many relative distinguished names the subject has.
    pub subject_rdn_count: usize,
    /// The DER of the issuer name.
    pub issuer_der: Vec<u8>,
    /// The serial number.
    pub serial: SerialNumber,
    /// `notBefore`, Unix seconds.
    pub not_before: UnixTime,
    /// `notAfter`, Unix seconds.
    pub not_after: UnixTime,
    /// DNS subject alternative names, in certificate order.
    pub dns_names: Vec<String>,
    /// IP subject alternative names, in certificate order.
    pub ip_addrs: Vec<IpAddr>,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// Carries `pp_cli_auth` with the value "true".
    pub pp_cli_auth: bool,
    /// Subject key identifier.
    pub subject_key_id: Option<Vec<u8>>,
    /// Authority key identifier (key id form).
    pub authority_key_id: Option<Vec<u8>>,
    /// Every extension: dotted OID, critical, DER value.
    pub extensions: Vec<(String, bool, Vec<u8>)>,
}

fn bad(what: &str) -> CaError {
    CaError::BadCertificate(what.into())
}

/// Decodes a string-like ASN.1 value (UTF8String, PrintableString, IA5String).
pub(crate) fn der_string(value: &[u8]) -> Option<String> {
    if let Ok(s) = Utf8StringRef::from_der(value) {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = PrintableStringRef::from_der(value) {
        return Some(s.as_str().to_owned());
    }
    Ia5StringRef::from_der(value)
        .ok()
        .map(|s| s.as_str().to_owned())
}

/// Reads the first common name of an X.501 name.
pub(crate) fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid.to_string() == oid::COMMON_NAME)
        .and_then(|atv| atv.value.to_der().ok())
        .and_then(|der| der_string(&der))
}

impl CertInfo {
    /// Decodes a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, CaError> {
        let cert =
            Certificate::from_der(der).map_err(|e| bad(&format!("not a DER certificate: {e}")))?;
        let tbs = &cert.tbs_certificate;
        let mut info = CertInfo {
            common_name: common_name(&tbs.subject),
            subject_rdn_count: tbs.subject.0.len(),
            issuer_der: tbs.issuer.to_der()?,
            serial: SerialNumber::from_bytes(tbs.serial_number.as_bytes())?,
            not_before: tbs.validity.not_before.to_unix_duration().as_secs() as i64,
            not_after: tbs.validity.not_after.to_unix_duration().as_secs() as i64,
            dns_names: Vec::new(),
            ip_addrs: Vec::new(),
            is_ca: false,
            pp_cli_auth: false,
            subject_key_id: None,
            authority_key_id: None,
            extensions: Vec::new(),
        };
        for ext in tbs.extensions.iter().flatten() {
            let oid = ext.extn_id.to_string();
            let value = ext.extn_value.as_bytes();
            match oid.as_str() {
                "2.5.29.19" => {
                    info.is_ca = BasicConstraints::from_der(value)
                        .map(|b| b.ca)
                        .unwrap_or(false);
                }
                oid::SUBJECT_ALT_NAME => {
                    let san = SubjectAltName::from_der(value)
                        .map_err(|_| bad("malformed subjectAltName"))?;
                    for name in san.0 {
                        match name {
                            GeneralName::DnsName(d) => info.dns_names.push(d.as_str().to_owned()),
                            GeneralName::IpAddress(ip) => {
                                if let Some(ip) = ip_from_bytes(ip.as_bytes()) {
                                    info.ip_addrs.push(ip);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                oid::SUBJECT_KEY_ID => {
                    info.subject_key_id = SubjectKeyIdentifier::from_der(value)
                        .ok()
                        .map(|s| s.0.as_bytes().to_vec());
                }
                oid::AUTHORITY_KEY_ID => {
                    info.authority_key_id = AuthorityKeyIdentifier::from_der(value)
                        .ok()
                        .and_then(|a| a.key_identifier)
                        .map(|k| k.as_bytes().to_vec());
                }
                oid::PP_CLI_AUTH => {
                    info.pp_cli_auth = der_string(value).as_deref() == Some("true");
                }
                _ => {}
            }
            info.extensions.push((oid, ext.critical, value.to_vec()));
        }
        Ok(info)
    }
}

/// An IP address from the 4 or 16 raw bytes of a SAN.
pub(crate) fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// Converts an OpenSSL time to Unix seconds.
pub(crate) fn asn1_to_unix(t: &Asn1TimeRef) -> Result<UnixTime, CaError> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0)?;
    let diff = epoch.diff(t)?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}
