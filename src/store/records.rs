//! The records the store keeps. Encoded as JSON (bytes as base64) so that a store can be
//! inspected with ordinary tools; the encoding lives in [`super::schema`].

use serde::{Deserialize, Serialize};

use crate::ca::{Digest, DigestValue, RevocationReason, UnixTime};

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
        /// The CSR policy rule the submission broke (its stable code), for a request
        /// kept because it was refused at submission; absent when an admin rejected it
        /// or the CA canceled it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
    /// Its issuer gave up (a permanent failure, or the retry budget spent); kept so that
    /// probes answer 410 until it is resubmitted or deleted.
    Error {
        /// Why.
        reason: String,
    },
}

/// Where a certname stands, as status objects and listings say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    /// A request waits for approval or for its issuer.
    Requested,
    /// A valid certificate.
    Signed,
    /// A revoked certificate.
    Revoked,
    /// A request rejected or refused; kept so that probes answer 410.
    Invalid,
    /// A request its issuer gave up on.
    Error,
}

impl CertState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Requested => "requested",
            CertState::Signed => "signed",
            CertState::Revoked => "revoked",
            CertState::Invalid => "invalid",
            CertState::Error => "error",
        }
    }

    /// A certificate's state: revoked or signed.
    pub fn of_certificate(revoked: bool) -> CertState {
        if revoked {
            CertState::Revoked
        } else {
            CertState::Signed
        }
    }

    /// A request's state.
    pub fn of_request(state: &RequestState) -> CertState {
        match state {
            RequestState::Requested => CertState::Requested,
            RequestState::Invalid { .. } => CertState::Invalid,
            RequestState::Error { .. } => CertState::Error,
        }
    }
}

impl std::fmt::Display for CertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an order stands with its issuer (`sub_status` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubStatus {
    /// The issuer was not ready when the order was approved.
    IssuerNotReady,
    /// The CA has the order and has not signed yet.
    WaitingForCa,
    /// The CA cannot be reached.
    CaUnavailable,
    /// The CA has a problem with the request's data.
    ClientDataIssue,
}

impl SubStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubStatus::IssuerNotReady => "issuer_not_ready",
            SubStatus::WaitingForCa => "waiting_for_ca",
            SubStatus::CaUnavailable => "ca_unavailable",
            SubStatus::ClientDataIssue => "client_data_issue",
        }
    }
}

impl std::fmt::Display for SubStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approved request handed to an issuer that has not answered with a certificate yet
/// (`sub_status`, `plugin_meta`, a due time, retries within a
/// budget). Kept with the request, so a restart loses nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The issuer (by name) serving it.
    pub issuer: String,
    /// Where it stands with its issuer.
    pub sub_status: SubStatus,
    /// The issuer's last word.
    pub sub_status_message: String,
    /// What the issuer keeps about the order.
    #[serde(default)]
    pub plugin_meta: std::collections::BTreeMap<String, String>,
    /// When it was approved.
    pub approved_at: UnixTime,
    /// When it was first handed to the issuer (the retry budget runs from here); 0
    /// while it has not been.
    #[serde(default)]
    pub started_at: UnixTime,
    /// When the worker should next call the issuer (Unix milliseconds).
    pub due_ms: i64,
    /// Calls made so far.
    pub attempts: u32,
    /// Consecutive calls that found the CA unavailable or unhappy (the backoff grows
    /// with them; an answer of "waiting" resets it).
    #[serde(default)]
    pub failures: u32,
    /// Validity asked for, seconds.
    pub validity: i64,
    /// Set when the CSR was replaced while the order was under way: the next call is
    /// the issuer's `modify`.
    #[serde(default)]
    pub modified: bool,
    /// A worker holds the order until this time (Unix milliseconds); 0: nobody.
    #[serde(default)]
    pub lease_until_ms: i64,
}

/// A certificate request (an order, once approved for a remote issuer).
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
    /// The order, once approved for an issuer that answers later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
}

impl RequestRecord {
    /// When its order is free to work (Unix ms): due, and not leased past it. None when
    /// it is not a pending request with an order (the due-time index leaves it out).
    pub fn order_free_at(&self) -> Option<i64> {
        match (&self.state, &self.order) {
            (RequestState::Requested, Some(o)) => Some(o.due_ms.max(o.lease_until_ms)),
            _ => None,
        }
    }

    /// The audit event storing this record as a submission appends: a request refused
    /// by the policy and kept as invalid (with why), or a new or replacing one.
    pub fn submit_event(&self, replaced: bool) -> (EventKind, Option<String>) {
        match &self.state {
            RequestState::Invalid {
                reason,
                rule: Some(_),
            } => (EventKind::Invalid, Some(reason.clone())),
            _ if replaced => (EventKind::Replaced, None),
            _ => (EventKind::Requested, None),
        }
    }
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
    /// The certificate, DER. Never written into the record's JSON: the sled store keeps
    /// it in a tree of its own, so that listings read summaries only (records written by
    /// schema 1 carry it inline and still decode).
    #[serde(with = "b64", default, skip_serializing)]
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
    /// Fingerprints computed at issue time (`AB:CD:...`), so that listings hash nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<StoredFingerprints>,
}

/// What listings need of a certificate: its [`CertRecord`] without the DER. Decoded
/// from the same stored record (the DER is skipped, not decoded), so a listing of
/// 100,000 certificates neither base64-decodes nor copies 100,000 certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CertSummary {
    /// The serial, big-endian magnitude.
    #[serde(with = "b64")]
    pub serial: Vec<u8>,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// `notBefore`.
    pub not_before: UnixTime,
    /// `notAfter`.
    pub not_after: UnixTime,
    /// DNS subject alternative names, in certificate order.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// IP subject alternative names, in certificate order.
    #[serde(default)]
    pub ip_addrs: Vec<String>,
    /// Authorization extensions: dotted OID and string value.
    #[serde(default)]
    pub authorization_extensions: Vec<(String, String)>,
    /// Set once revoked.
    pub revocation: Option<Revocation>,
    /// Fingerprints; a store fills them in from the DER for records written before
    /// they were stored, so they are always here.
    #[serde(default)]
    pub fingerprints: StoredFingerprints,
}

impl CertRecord {
    /// The record without its DER (fingerprints computed if the record lacks them).
    pub fn summary(&self) -> CertSummary {
        CertSummary {
            serial: self.serial.clone(),
            issued_at: self.issued_at,
            not_before: self.not_before,
            not_after: self.not_after,
            dns_names: self.dns_names.clone(),
            ip_addrs: self.ip_addrs.clone(),
            authorization_extensions: self.authorization_extensions.clone(),
            revocation: self.revocation,
            fingerprints: self
                .fingerprints
                .clone()
                .unwrap_or_else(|| StoredFingerprints::of_der(&self.der)),
        }
    }
}

/// A certificate's SHA-1, SHA-256 and SHA-512 fingerprints, stored as served
/// (`AB:CD:...`). The default value: not known (a record from before they were stored;
/// stores fill them in from the DER).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFingerprints {
    /// SHA-1.
    pub sha1: DigestValue<20>,
    /// SHA-256.
    pub sha256: DigestValue<32>,
    /// SHA-512.
    pub sha512: DigestValue<64>,
}

impl StoredFingerprints {
    /// The three fingerprints of a certificate's DER.
    pub fn of_der(der: &[u8]) -> StoredFingerprints {
        StoredFingerprints {
            sha1: DigestValue::of_der(der, Digest::Sha1),
            sha256: DigestValue::of_der(der, Digest::Sha256),
            sha512: DigestValue::of_der(der, Digest::Sha512),
        }
    }

    /// Whether they are known (see the type).
    pub fn is_known(&self) -> bool {
        self.sha256.is_known()
    }
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

/// A named lease with a cursor (a webhook's feed, the CRL refresh): which node holds it
/// until when, and how far its work got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// What it is for (`webhook <url>`, `crl refresh`).
    pub name: String,
    /// The process holding it: its node's id and its instance (`host:8140#3fa9c2d1`).
    pub holder: String,
    /// Until when (Unix ms, by the store's clock).
    pub until_ms: i64,
    /// How far the holder's work got (the last event delivered, for a webhook).
    pub cursor: u64,
}

/// A node of the cluster as its last heartbeat left it in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its id (`[server] node_id`, or host name and port).
    pub id: String,
    /// The process beating under that id (random at each start): two live processes
    /// sharing one id are told apart, and seen.
    #[serde(default)]
    pub instance: String,
    /// certd's version there.
    pub version: String,
    /// When it started (Unix seconds).
    pub started_at: UnixTime,
    /// When it last beat (Unix ms; the store's clock where it has one).
    pub seen_ms: i64,
    /// The last audit event id whose change it applied.
    pub applied: u64,
    /// A digest of the configuration that must agree across nodes.
    pub config_digest: String,
    /// The same, part by part (`environments`, `ca`, `rules`, `admins`, `issuers`), so
    /// that a difference can be named.
    #[serde(default)]
    pub config_parts: std::collections::BTreeMap<String, String>,
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

/// A CRL: an environment's is stored without its DER (number, dates and count only, so a
/// revocation writes a few bytes, not a 5 MB CRL) and re-issued from the revocations at
/// start; the root's, which may be uploaded, is stored whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlRecord {
    /// Its CRL number.
    pub number: u64,
    /// `thisUpdate`.
    pub this_update: UnixTime,
    /// `nextUpdate`.
    pub next_update: UnixTime,
    /// How many revocations it lists.
    pub entries: u64,
    /// The CRL, DER; empty when only the record of it is kept.
    #[serde(with = "b64", default, skip_serializing_if = "Vec::is_empty")]
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
    /// A submitted CSR broke the environment's policy and was kept as an invalid
    /// request (the detail says why).
    Invalid,
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
    /// A request was approved and handed to an issuer that answers later.
    Approved,
    /// An order under way changed `sub_status` (the detail says to what).
    OrderUpdated,
    /// An order failed for good (the detail says why).
    Error,
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
    /// More about it: an order's new `sub_status` and message, an error's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
