//! The CRL of an environment: rebuilt after every revocation (a bulk clean is one
//! rebuild), kept encoded in memory, and served with validators.

use std::sync::Arc;

use super::{App, AppError, EnvCa};
use crate::authz::{Action, Identity};
use crate::ca::{build_crl, CaError, Clock, CrlEntry, CrlParams, SerialNumber, UnixTime};
use crate::config::Config;
use crate::store::{CrlRecord, Store};

/// A CRL ready to serve: DER, PEM and the validators derived from it.
#[derive(Debug, Clone)]
pub struct CrlView {
    /// The stored record (number, dates, DER).
    pub record: CrlRecord,
    /// PEM encoding.
    pub pem: Vec<u8>,
    /// Strong entity tag: the CRL number, which changes with every rebuild.
    pub etag: String,
}

impl CrlView {
    pub(super) fn new(record: CrlRecord) -> Self {
        let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &record.der)
            .map(String::into_bytes)
            .unwrap_or_default();
        let etag = format!("crl-{}", record.number);
        CrlView { record, pem, etag }
    }

    /// When it was issued (its `thisUpdate`), for `Last-Modified`.
    pub fn last_modified(&self) -> UnixTime {
        self.record.this_update
    }
}

/// Rebuilds `env`'s CRL from the store's revocations with the next CRL number, stores it
/// and swaps the cached copy. Rebuilds are serialised per environment, so the last one
/// written always lists every revocation committed before it started.
pub(super) fn rebuild(
    env: &EnvCa,
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
) -> Result<(), AppError> {
    let _guard = env.crl_rebuild.lock().unwrap_or_else(|p| p.into_inner());
    let revoked = store.revoked_serials(&env.name)?;
    let entries = revoked
        .iter()
        .map(|r| {
            Ok(CrlEntry {
                serial: SerialNumber::from_bytes(&r.serial)?,
                revoked_at: r.revocation.revoked_at,
                reason: r.revocation.reason,
            })
        })
        .collect::<Result<Vec<_>, CaError>>()?;
    let current = env
        .crl
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .record
        .number;
    let now = clock.now();
    let params = CrlParams {
        number: current + 1,
        this_update: now,
        next_update: now + config.ca.crl_next_update.as_secs(),
    };
    let der = build_crl(&env.ca, &entries, &params)?;
    let record = CrlRecord {
        number: params.number,
        this_update: now,
        next_update: params.next_update,
        entries: entries.len() as u64,
        der,
    };
    store.put_crl(&env.name, &record)?;
    *env.crl.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(CrlView::new(record));
    Ok(())
}

/// At start: a revocation can be durable without the CRL that lists it (a crash between
/// the two writes). Rebuild when the counts differ.
pub(super) fn refresh_if_stale(
    env: &EnvCa,
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
) -> Result<(), AppError> {
    let listed = env
        .crl
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .record
        .entries;
    if listed != store.revoked_serials(&env.name)?.len() as u64 {
        tracing::warn!(env = %env.name, "CRL is older than the revocations; rebuilding");
        rebuild(env, store, config, clock)?;
        store.flush()?;
    }
    Ok(())
}

impl App {
    /// The environment's current CRL.
    pub fn crl(&self, who: &Identity, raw_env: &str) -> Result<Arc<CrlView>, AppError> {
        let env = self.authorize(who, raw_env, Action::ReadCrl)?;
        let view = env.crl.read().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(view)
    }

    pub(super) fn rebuild_crl(&self, env: &EnvCa) -> Result<(), AppError> {
        rebuild(env, self.store.as_ref(), &self.config, self.clock.as_ref())
    }
}
