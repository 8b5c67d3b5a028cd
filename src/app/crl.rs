//! The CRL of an environment: re-issued after every revocation (a bulk clean is one
//! re-issue; revocations that come while one is signed are signed together by the
//! next) by appending to the encoded entries of the previous one, served with
//! validators. The store keeps the revocations and, of the CRL, only its number and
//! dates: at start (and when an environment is reloaded) the CRL is re-issued from the
//! revocations with the next number, so it can never be older than they are.
//!
//! A CRL is held once (`crl_view`): the served copy, the next rebuild's entries and
//! every response body share one buffer (at 100,000 entries 4.9 MB DER, 6.7 MB PEM). A
//! revocation copies the entries once, into the new CRL; a fetch makes no copy of its
//! own (the HTTP layer's write buffer still takes one).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::crl_view::{CrlView, PEM_KEPT_IDLE};
use super::{App, AppError, EnvCa};
use crate::ca::{
    assemble_crl, build_crl, crl_signed_by, encode_crl_entry, AssembledCrl, CaError, Clock,
    CrlEntry, CrlParams, SerialNumber, UnixTime,
};
use crate::config::Config;
use crate::store::{CrlRecord, RevokedSerial, Store};

/// How often the maintenance thread looks for PEMs to drop.
const PEM_SWEEP: std::time::Duration = std::time::Duration::from_secs(10);

impl super::EnvCa {
    /// The current CRL, as served.
    pub(super) fn crl_view(&self) -> Arc<CrlView> {
        self.crl.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether this node's CRL lists `serial`: a CRL signed with it was kept (after a
    /// rebuild that failed, none is, until one that reads them all again is).
    pub(super) fn lists(&self, serial: &[u8]) -> bool {
        let cache = self.crl_rebuild.lock().unwrap_or_else(|p| p.into_inner());
        cache.loaded && cache.serials.contains(serial)
    }
}

impl App {
    /// The root's current CRL, as served.
    pub(super) fn root_crl_view(&self) -> Arc<CrlView> {
        self.root_crl
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The revokedCertificates of an environment's CRL, encoded, kept between rebuilds so
/// that a revocation appends one entry instead of re-reading and re-encoding them all.
/// Guarded by the per-environment rebuild lock.
#[derive(Debug, Default)]
pub(super) struct CrlEntries {
    /// The last CRL signed from them (its served DER, shared)...
    crl: Bytes,
    /// ...and where in it they lie: their encodings, concatenated.
    at: Range<usize>,
    /// The serials listed (to never list one twice).
    serials: crate::ca::SerialSet,
    /// Whether `crl` lists every revocation read from the store since start: set when a
    /// CRL signed from them is kept, cleared while a rebuild runs, so that one that
    /// fails or panics midway leaves the next to read them all again.
    loaded: bool,
}

fn entry(r: &RevokedSerial) -> Result<CrlEntry, CaError> {
    Ok(CrlEntry {
        serial: SerialNumber::from_bytes(&r.serial)?,
        revoked_at: r.revocation.revoked_at,
        reason: r.revocation.reason,
    })
}

/// Re-issues `env`'s CRL with the next CRL number, stores it and swaps the cached copy.
/// `new`: the revocations just committed, appended to the entries kept in memory; `None`
/// (and the first time after start) reads every revocation from the store. Rebuilds are
/// serialised per environment, so the last one written lists every revocation committed
/// before it started; revocations that come while one is signed wait and are signed
/// together by the next. Returns the serials newly listed (or, for a call whose
/// revocations another call signed, those).
pub(super) fn rebuild(
    env: &EnvCa,
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
    new: Option<&[RevokedSerial]>,
) -> Result<Vec<Vec<u8>>, AppError> {
    locked(env, store, config, clock, new, Why::Append)
}

/// Why a CRL is issued: it decides what may be kept and what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Revocations were added (or none: re-read).
    Append,
    /// The environment was loaded: a complete stored CRL may be signed again as it was.
    Load,
    /// Its lifetime is half over: where nodes share the store, the DER is stored too, so
    /// that the others serve it instead of signing their own.
    Refresh,
}

/// Re-issues `env`'s CRL as it lists now, before it expires.
pub(super) fn refresh(
    env: &EnvCa,
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
) -> Result<Vec<Vec<u8>>, AppError> {
    locked(env, store, config, clock, Some(&[]), Why::Refresh)
}

/// At start (or when an environment is loaded): the CRL made from every stored
/// revocation. When the stored record lists as many as there are (revocations are only
/// ever added), this is the same CRL, signed again with its number and dates, and the
/// store is left alone; otherwise a revocation became durable without a CRL listing it
/// (a crash between the two, or another node's revocation) and the CRL is re-issued
/// with the next free number, as it is while other nodes share the store (they serve
/// the stored number's CRL, signed by them). Returns the revoked serials.
pub(super) fn load(
    env: &EnvCa,
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
) -> Result<Vec<Vec<u8>>, AppError> {
    locked(env, store, config, clock, None, Why::Load)
}

fn locked(
    env: &EnvCa,
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
    new: Option<&[RevokedSerial]>,
    why: Why,
) -> Result<Vec<Vec<u8>>, AppError> {
    // Revocations queue for the next rebuild, which takes every one queued: those that
    // come while one is signed are signed together, once, by whoever holds the lock next.
    let pending = || env.crl_pending.lock().unwrap_or_else(|p| p.into_inner());
    let own: Vec<RevokedSerial> = new.map(<[RevokedSerial]>::to_vec).unwrap_or_default();
    pending().extend(own.iter().cloned());
    let mut cache = env.crl_rebuild.lock().unwrap_or_else(|p| p.into_inner());
    let queued = std::mem::take(&mut *pending());
    if !own.is_empty() && queued.is_empty() {
        // A rebuild that held the lock before this one took these and signed a CRL
        // listing them (one that failed would have queued them again).
        return Ok(own.into_iter().map(|r| r.serial).collect());
    }
    let batch = new.map(|_| queued.as_slice());
    let result = rebuild_locked(env, &mut cache, store, config, clock, batch, why);
    if result.is_err() {
        // Queue these again for the callers waiting (the entries are read again).
        pending().extend(queued);
    }
    result
}

fn rebuild_locked(
    env: &EnvCa,
    cache: &mut CrlEntries,
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
    new: Option<&[RevokedSerial]>,
    why: Why,
) -> Result<Vec<Vec<u8>>, AppError> {
    let mut added = Vec::new();
    // What the CRL lists: the previous one's entries, then those encoded here.
    let mut encoded = Vec::new();
    // Unset until a CRL signed from them is kept.
    let loaded = std::mem::take(&mut cache.loaded);
    match new {
        Some(new) if loaded => {
            for r in new {
                if cache.serials.insert(&r.serial) {
                    encoded.extend_from_slice(&encode_crl_entry(&entry(r)?)?);
                    added.push(r.serial.clone());
                }
            }
        }
        _ => {
            *cache = CrlEntries::default();
            for r in store.revoked_serials(&env.name)? {
                encoded.extend_from_slice(&encode_crl_entry(&entry(&r)?)?);
                cache.serials.insert(&r.serial);
                added.push(r.serial);
            }
        }
    }
    let entries: [&[u8]; 2] = [&cache.crl[cache.at.clone()], &encoded];
    let stored = env.crl_view().meta.clone();
    // At load, a stored record that lists every revocation is the same CRL: sign it
    // again as it was. Not while another node serves it: an ECDSA signature (and the
    // entries' order) would differ from that node's, under one number.
    if why == Why::Load && stored.entries == cache.serials.len() as u64 && !store.others_connected()
    {
        let params = CrlParams {
            number: stored.number,
            this_update: stored.this_update,
            next_update: stored.next_update,
        };
        let crl = assemble_crl(&env.ca, &entries, &params)?;
        let view = CrlView::sharing(stored, cache.keep(crl));
        *env.crl.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
        return Ok(added);
    }
    let mut number = stored.number + 1;
    let now = clock.now();
    // The number is durable before anyone can see this CRL, and taken only if no CRL of
    // the environment has it or a higher one (another node's, say): so no number is
    // ever used for two different CRLs, crash or not. Taken, the next one past it.
    let mut tries = 0;
    let (crl, meta) = loop {
        let params = CrlParams {
            number,
            this_update: now,
            next_update: now + config.ca.crl_next_update.as_secs(),
        };
        let crl = assemble_crl(&env.ca, &entries, &params)?;
        let meta = CrlRecord {
            number,
            this_update: now,
            next_update: params.next_update,
            entries: cache.serials.len() as u64,
            der: if why == Why::Refresh && store.shared() {
                crl.der.clone()
            } else {
                Vec::new()
            },
        };
        if store.put_crl(&env.name, &meta)? {
            break (crl, meta);
        }
        tries += 1;
        let stored = store.crl(&env.name)?.map_or(0, |r| r.number);
        if tries >= 16 {
            return Err(AppError::Conflict {
                code: "crl-number-taken",
                detail: format!(
                    "CRL number {number} of {} was taken 16 times over (stored: {stored})",
                    env.name
                ),
            });
        }
        number = number.max(stored) + 1;
    };
    // With the revocation's own flush just before or after, group commit makes this
    // cheap.
    store.flush()?;
    let view = CrlView::sharing(meta, cache.keep(crl));
    *env.crl.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    Ok(added)
}

impl CrlEntries {
    /// Keeps the entries of `crl`, just signed from them, for the next rebuild; returns
    /// its DER, shared.
    fn keep(&mut self, crl: AssembledCrl) -> Bytes {
        self.crl = Bytes::from(crl.der);
        self.at = crl.entries;
        self.loaded = true;
        self.crl.clone()
    }
}

/// Builds a CRL record for `ca` listing `entries` with `number`, dated now.
fn make(
    ca: &crate::ca::CaPair,
    entries: &[CrlEntry],
    number: u64,
    config: &Config,
    clock: &dyn Clock,
) -> Result<CrlRecord, AppError> {
    let now = clock.now();
    let params = CrlParams {
        number,
        this_update: now,
        next_update: now + config.ca.crl_next_update.as_secs(),
    };
    let der = build_crl(ca, entries, &params)?;
    Ok(CrlRecord {
        number,
        this_update: now,
        next_update: params.next_update,
        entries: entries.len() as u64,
        der,
    })
}

/// The root CA's first CRL (empty: no issuing CA has been revoked), unless it exists.
pub(super) fn ensure_root(
    root: &crate::ca::CaPair,
    store: &dyn Store,
    config: &Config,
    clock: &dyn Clock,
) -> Result<(), AppError> {
    if store.root_crl()?.is_none() {
        store.put_root_crl(&make(root, &[], 0, config, clock)?)?;
    }
    Ok(())
}

/// The lease whose holder re-issues the CRLs before they expire, where nodes share the
/// store.
const CRL_LEASE: &str = "crl refresh";

/// Seconds between two maintenance passes: an eighth of the CRL lifetime, between one
/// second and one hour.
fn maintenance_every(config: &Config) -> u64 {
    (config.ca.crl_next_update.as_secs() / 8).clamp(1, 3600) as u64
}

/// A CRL is re-issued once half of its lifetime has passed, so that no client ever
/// holds one that expires (Puppet 7 never does this; users lost whole fleets to it).
fn due(record: &CrlRecord, now: UnixTime) -> bool {
    now >= record.this_update + (record.next_update - record.this_update) / 2
}

impl App {
    /// Re-issues every CRL (each environment's and the root's) past half its lifetime.
    /// Returns how many were re-issued.
    pub fn refresh_crls(&self) -> Result<usize, AppError> {
        if self.store.shared() {
            let ttl_ms = 3 * maintenance_every(&self.config) as i64 * 1000;
            let lease = self
                .store
                .take_lease(CRL_LEASE, &self.feed.holder(), ttl_ms, 0)?;
            if lease.is_none() {
                return self.adopt_crls();
            }
        }
        let now = self.clock.now();
        let mut n = 0;
        for env in self.env_list() {
            let meta = env.crl_view().meta.clone();
            if due(&meta, now) {
                // Re-signs what is listed; nothing new.
                let serials =
                    refresh(&env, self.store.as_ref(), &self.config, self.clock.as_ref())?;
                self.revoked.extend(&env.name, serials);
                n += 1;
            }
        }
        {
            let root = self.root_crl_view();
            if due(&root.meta, now) {
                // Keep what the root's CRL lists (issuing CAs revoked upstream).
                let entries = crate::ca::parse_crl(root.der())?.entries;
                let root = &root.meta;
                self.set_root_crl(make(
                    &self.root,
                    &entries,
                    root.number + 1,
                    &self.config,
                    self.clock.as_ref(),
                )?)?;
                n += 1;
            }
        }
        if n > 0 {
            self.store.flush()?;
            tracing::info!(reissued = n, "CRLs re-issued before expiry");
        }
        Ok(n)
    }

    /// Where another node holds the refresh lease: serves each CRL it stored (whole,
    /// signed by the environment's CA) that is newer and lists as many as this node's.
    /// Returns how many were taken.
    fn adopt_crls(&self) -> Result<usize, AppError> {
        let mut n = 0;
        for env in self.env_list() {
            let Some(stored) = self.store.crl(&env.name)? else {
                continue;
            };
            let mine = env.crl_view().meta.clone();
            if stored.number > mine.number
                && stored.entries >= mine.entries
                && crl_signed_by(&stored.der, env.ca.cert())
            {
                let _rebuild = env.crl_rebuild.lock().unwrap_or_else(|p| p.into_inner());
                *env.crl.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(CrlView::new(stored));
                n += 1;
            }
        }
        if let Some(stored) = self.store.root_crl()? {
            let mine = self.root_crl_view().meta.number;
            if stored.number > mine {
                *self.root_crl.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(CrlView::new(stored));
                n += 1;
            }
        }
        Ok(n)
    }

    /// Runs [`App::refresh_crls`] periodically on a background thread until stopped:
    /// every eighth of the CRL lifetime, between one second and one hour; and, at least
    /// every [`PEM_SWEEP`], drops the PEM of every CRL unused for [`PEM_KEPT_IDLE`].
    pub(super) fn spawn_maintenance(
        self: &Arc<Self>,
        stop: Arc<super::workers::Stop>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let app = Arc::clone(self);
        let every = std::time::Duration::from_secs(maintenance_every(&self.config));
        std::thread::Builder::new()
            .name("certd-maintenance".into())
            .spawn(move || {
                let mut refresh_at = std::time::Instant::now() + every;
                loop {
                    let wait = refresh_at.saturating_duration_since(std::time::Instant::now());
                    if stop.sleep(wait.min(PEM_SWEEP)) {
                        break;
                    }
                    let now = std::time::Instant::now();
                    app.forget_idle_pems(now);
                    if now >= refresh_at {
                        refresh_at = now + every;
                        if let Err(e) = app.refresh_crls() {
                            tracing::error!(error = %e, "CRL refresh failed");
                        }
                    }
                }
            })
    }

    /// Drops the PEM of each CRL (every environment's and the root's) not asked for
    /// in [`PEM_KEPT_IDLE`].
    fn forget_idle_pems(&self, now: std::time::Instant) {
        let root = self.root_crl_view();
        let views = self.env_list().into_iter().map(|e| e.crl_view());
        let n = std::iter::once(root)
            .chain(views)
            .filter(|v| v.forget_idle_pem(now, PEM_KEPT_IDLE))
            .count();
        if n > 0 {
            tracing::debug!(crls = n, "dropped the PEM of CRLs not fetched lately");
        }
    }

    /// The Puppet face's CRL bundle: the environment's CRL, then the root's (served as
    /// PEM); and when the newest of them was issued.
    pub fn crl_bundle(&self, raw_env: &str) -> Result<([Arc<CrlView>; 2], UnixTime), AppError> {
        let env_crl = self.crl(raw_env)?;
        let root_view = self.root_crl_view();
        let modified = env_crl.last_modified().max(root_view.last_modified());
        Ok(([env_crl, root_view], modified))
    }

    /// `PUT /certificate_revocation_list`: accepts newer CRLs for the CAs above the
    /// issuing CA (here: the root), Puppet's rules: every CRL needs an authority key
    /// identifier, delta CRLs are refused, the issuing CA's own CRL is never replaced,
    /// the newest (highest number) wins, and it must verify against its CA.
    pub fn update_upstream_crls(&self, pem: &[u8]) -> Result<(), AppError> {
        let env = self.env_ca(super::PUPPET_ENV)?;
        let bad = |d: &str| AppError::BadRequest {
            code: "invalid-crl",
            detail: d.to_owned(),
        };
        let crls = crate::ca::parse_crls(pem);
        if crls.is_empty() {
            return Err(bad("No valid CRLs submitted."));
        }
        if crls.iter().any(|c| c.authority_key_id.is_none()) {
            return Err(bad(
                "One or more submitted CRLs do not have an authority key identifier.",
            ));
        }
        if crls.iter().any(|c| c.is_delta) {
            return Err(bad("Cannot support delta CRL."));
        }
        let own = env
            .ca
            .cert()
            .subject_key_id()
            .map(|k| k.as_slice().to_vec());
        let root_kid = self
            .root
            .cert()
            .subject_key_id()
            .map(|k| k.as_slice().to_vec());
        let mut newest: Option<crate::ca::ParsedCrl> = None;
        for c in crls {
            // Every CRL that names a CA of the chain must verify with that CA's key, even
            // the issuing CA's own, which is never replaced: success is not answered for
            // a forgery. CRLs of CAs outside the chain cannot be checked and change
            // nothing; they are ignored, as Puppet Server does.
            if c.authority_key_id == own {
                if !crate::ca::crl_signed_by(&c.der, env.ca.cert()) {
                    return Err(bad("Invalid certs and/or CRLs: a CRL naming the issuing CA does not verify with its key"));
                }
                continue;
            }
            if c.authority_key_id != root_kid {
                continue;
            }
            if !crate::ca::crl_signed_by(&c.der, self.root.cert()) {
                return Err(bad("Invalid certs and/or CRLs: a CRL naming the root CA does not verify with the root's key"));
            }
            if newest.as_ref().is_none_or(|n| c.number > n.number) {
                newest = Some(c);
            }
        }
        let current = self.root_crl_view().meta.number;
        if let Some(n) = newest.filter(|n| n.number > current) {
            self.set_root_crl(CrlRecord {
                number: n.number,
                this_update: n.this_update,
                next_update: n.next_update,
                entries: n.entries.len() as u64,
                der: n.der,
            })?;
            self.store.flush()?;
            tracing::info!(number = n.number, "root CRL replaced by an uploaded one");
        }
        Ok(())
    }

    /// Stores a new root CRL and serves it from now on.
    fn set_root_crl(&self, record: CrlRecord) -> Result<(), AppError> {
        self.store.put_root_crl(&record)?;
        *self.root_crl.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(CrlView::new(record));
        Ok(())
    }

    /// The root CA's current CRL, as served beside `env`'s (404 for an environment certd
    /// does not serve): clients checking the whole chain need both.
    pub fn root_crl(&self, raw_env: &str) -> Result<Arc<CrlView>, AppError> {
        self.env_ca(raw_env)?;
        Ok(self.root_crl_view())
    }

    /// The environment's current CRL.
    pub fn crl(&self, raw_env: &str) -> Result<Arc<CrlView>, AppError> {
        let env = self.env_ca(raw_env)?;
        let view = env.crl.read().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(view)
    }

    /// Refuses `new` (the revocations just committed) at the TLS layer from now on, then
    /// re-issues `env`'s CRL adding them (`None`: read them all from the store, and
    /// refuse those once it is signed).
    pub(super) fn rebuild_crl(
        &self,
        env: &EnvCa,
        new: Option<&[RevokedSerial]>,
    ) -> Result<(), AppError> {
        // Stored revocations are refused at once, whether or not a CRL listing them can
        // be stored now (a CRL that fails is made again: the change feed asks `lists`).
        if let Some(new) = new {
            self.revoked
                .extend(&env.name, new.iter().map(|r| r.serial.clone()));
        }
        let serials = rebuild(
            env,
            self.store.as_ref(),
            &self.config,
            self.clock.as_ref(),
            new,
        )?;
        self.revoked.extend(&env.name, serials);
        Ok(())
    }
}
