//! The records the store keeps. Encoded as JSON (bytes as base64) so that a store can be
//! inspected with ordinary tools; the encoding lives in [`super::schema`].

use serde::{Deserialize, Serialize};

use crate::ca::{RevocationReason, UnixTime};

/// State of a certificate request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approval or for its issuer.
    Requested,
    /// Rejected by an admin or found invalid; kept so that probes answer 410.
    Invalid {
        /// Why, for the response body.
        reason: String,
    },
}

/// A certificate request (an order, seeds 000/001).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The CSR as submitted, re-encoded as DER.
    #[serde(with = "b64")]
    pub csr_der: Vec<u8>,
    /// When it was (last) submitted.
    pub submitted_at: UnixTime,
    /// Where it stands.
    #[serde(flatten)]
    pub state: RequestState,
    /// DNS names the CSR requests (other than the certname), kept so that listings need
    /// no CSR parsing.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// IP addresses the CSR requests.
    #[serde(default)]
    pub ip_addrs: Vec<String>,
}

/// A revocation of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When it was revoked.
    pub revoked_at: UnixTime,
    /// Why.
    pub reason: RevocationReason,
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// The serial, big-endian magnitude.
    #[serde(with = "b64")]
    pub serial: Vec<u8>,
    /// The certificate, DER.
    #[serde(with = "b64")]
    pub der: Vec<u8>,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// `notBefore`.
    pub not_before: UnixTime,
    /// `notAfter`. These summary fields are kept so that listings, status and expiry
    /// questions never re-parse the certificate.
    pub not_after: UnixTime,
    /// DNS subject alternative names, in certificate order.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// IP subject alternative names, in certificate order.
    #[serde(default)]
    pub ip_addrs: Vec<String>,
    /// Authorization extensions (Puppet arc 1.3.6.1.4.1.34380.1.3): dotted OID and
    /// string value, so that status listings need no parsing.
    #[serde(default)]
    pub authorization_extensions: Vec<(String, String)>,
    /// Set once revoked.
    pub revocation: Option<Revocation>,
}

/// A revoked serial as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSerial {
    /// The serial, big-endian magnitude.
    #[serde(with = "b64")]
    pub serial: Vec<u8>,
    /// The revocation.
    #[serde(flatten)]
    pub revocation: Revocation,
}

/// An environment known to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRecord {
    /// When it was created.
    pub created_at: UnixTime,
    /// Its settings as JSON, for environments created through the API (those declared
    /// in the configuration file take their settings from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
}

/// The environment's current CRL, cached as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlRecord {
    /// Its CRL number.
    pub number: u64,
    /// `thisUpdate`.
    pub this_update: UnixTime,
    /// `nextUpdate`.
    pub next_update: UnixTime,
    /// How many revocations it lists (to notice a CRL older than the revocations).
    pub entries: u64,
    /// The CRL, DER.
    #[serde(with = "b64")]
    pub der: Vec<u8>,
}

/// What happened, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A CSR was submitted.
    Requested,
    /// A pending CSR was replaced by a new one.
    Replaced,
    /// A request was rejected.
    Rejected,
    /// A request was withdrawn.
    Canceled,
    /// A certificate was issued.
    Issued,
    /// A certificate was renewed (same key, new serial and validity).
    Renewed,
    /// A certificate was revoked.
    Revoked,
    /// A certificate and its request were forgotten.
    Cleaned,
    /// An environment was created or updated.
    Environment,
}

/// One audit log entry. Ids are consecutive from 1, with no gaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the log.
    pub id: u64,
    /// When.
    pub at: UnixTime,
    /// Which environment.
    pub env: String,
    /// Which certname (empty for environment events).
    pub certname: String,
    /// What.
    pub kind: EventKind,
}

/// Bytes as standard base64 strings in JSON.
mod b64 {
    use base64ct::{Base64, Encoding};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Base64::encode_string(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Base64::decode_vec(&s).map_err(serde::de::Error::custom)
    }
}
