//! Tree names and key encodings, declared in one place.
//!
//! Global trees: `meta` (schema version, audit counter), `environments` (name → record),
//! `audit` (big-endian u64 id → event). Per environment `E`: `env/E/requests` and
//! `env/E/certificates` (certname → record, so name order is key order),
//! `env/E/certificate_der` (certname → the certificate's DER, apart so that listings
//! read only the records),
//! `env/E/serials` (serial key → certname), `env/E/revocations` (serial key → revoked
//! serial), `env/E/meta` (the cached CRL), `env/E/orders_due` (the due-time index of
//! orders: [`due_key`] → nothing, one key per request that is pending with an order).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;
use crate::ca::EnvName;

/// The layout version written to `meta/schema_version`. Version 2 keeps certificates'
/// DER in `env/E/certificate_der`; a version 1 store (DER inside the certificate record)
/// is read as it is and marked current when opened: its records move their DER out when
/// next written. Version 3 adds `env/E/orders_due`, built from the requests the first
/// time an environment is opened (`env/E/meta/orders_indexed` marks it built); the
/// version is raised so that an older certd, which would not keep the index, refuses
/// the store instead of leaving it stale.
pub const SCHEMA_VERSION: u32 = 3;

/// Older layouts this certd opens.
pub(crate) const SCHEMA_COMPATIBLE: &[u32] = &[1, 2];

pub(crate) const META: &str = "meta";
pub(crate) const ENVIRONMENTS: &str = "environments";
pub(crate) const AUDIT: &str = "audit";

pub(crate) const KEY_SCHEMA: &[u8] = b"schema_version";
pub(crate) const KEY_AUDIT_LAST: &[u8] = b"audit_last";
pub(crate) const KEY_CRL: &[u8] = b"crl";
pub(crate) const KEY_ROOT_CRL: &[u8] = b"root_crl";
pub(crate) const KEY_ORDERS_INDEXED: &[u8] = b"orders_indexed";

pub(crate) const REQUESTS: &str = "requests";
pub(crate) const CERTIFICATES: &str = "certificates";
pub(crate) const CERTIFICATE_DER: &str = "certificate_der";
pub(crate) const SERIALS: &str = "serials";
pub(crate) const REVOCATIONS: &str = "revocations";
pub(crate) const ENV_META: &str = "meta";
pub(crate) const ORDERS_DUE: &str = "orders_due";

pub(crate) fn env_tree(env: &EnvName, which: &str) -> String {
    format!("env/{env}/{which}")
}

/// Parses `env/E/T` back into `(E, T)`.
pub(crate) fn parse_env_tree(name: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(name).ok()?;
    let rest = s.strip_prefix("env/")?;
    let (env, tree) = rest.split_once('/')?;
    Some((env.to_owned(), tree.to_owned()))
}

/// Serial index key: one length byte then the magnitude, so that keys sort numerically.
pub(crate) fn serial_key(serial: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(serial.len() + 1);
    k.push(serial.len() as u8);
    k.extend_from_slice(serial);
    k
}

/// Due-time index key: the time (Unix ms, sign bit flipped so that keys sort by time,
/// big-endian) then the certname.
pub(crate) fn due_key(at_ms: i64, certname: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + certname.len());
    k.extend_from_slice(&((at_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(certname.as_bytes());
    k
}

/// [`due_key`] back into (time, certname).
pub(crate) fn parse_due_key(key: &[u8]) -> Option<(i64, &str)> {
    let (at, name) = key.split_at_checked(8)?;
    let at = u64::from_be_bytes(at.try_into().ok()?) ^ (1 << 63);
    Some((at as i64, std::str::from_utf8(name).ok()?))
}

/// Big-endian u64, so that ids sort numerically.
pub(crate) fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

#[allow(
    clippy::expect_used,
    reason = "plain records: no maps with non-string keys, no foreign Serialize impls"
)]
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain records cannot fail: no maps with non-string keys, no
    // foreign Serialize impls.
    serde_json::to_vec(v).expect("record serialises")
}

pub(crate) fn decode<T: DeserializeOwned>(tree: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(tree, e))
}

/// [`decode`] of text already checked to be UTF-8 (a database's `text` column), which
/// spares checking each string again.
pub(crate) fn decode_text<T: DeserializeOwned>(tree: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(tree, e))
}

fn corrupt(tree: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        tree: tree.to_owned(),
        detail: e.to_string(),
    }
}
