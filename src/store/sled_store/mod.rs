//! The sled implementation of [`Store`], in parts: `core` (the database, its trees,
//! opening it, the order index), `tx` (one environment transaction and its record-level
//! operations), `commit` (group commit and the committer thread of autosigned
//! submissions), `reopen` (closing after an I/O error and opening again).

mod commit;
mod core;
mod reopen;
#[cfg(test)]
mod tests;
mod tx;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use sled::transaction::TransactionError;
use sled::Transactional;

use self::commit::{IssueOp, IssueQueue};
use self::core::{with_der, Core};
use self::reopen::{OpenState, Shared};
use self::tx::{engine, log, not_durable};
use super::schema::{self, decode, due_key, encode, parse_due_key, serial_key, u64_key};
use super::*;

/// A [`Store`] in a sled database directory. One process at a time (sled holds a lock).
/// Autosigned submissions are committed by a thread of the store's own (see
/// `IssueQueue`); dropping the store stops it. After an I/O error the database is
/// closed and reopened by that thread (see `Shared`).
pub struct SledStore {
    shared: Arc<Shared>,
    issues: Arc<IssueQueue>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, checking the schema version.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let issues = Arc::new(IssueQueue::default());
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            committer: issues.clone(),
            state: RwLock::new(OpenState {
                core: Some(Arc::new(Core::open(dir)?)),
                why: String::new(),
                next_try: Instant::now(),
                tries: 0,
                reopened: None,
                generation: 0,
            }),
        });
        let committer = std::thread::Builder::new()
            .name("certd-commit".into())
            .spawn({
                let (shared, issues) = (shared.clone(), issues.clone());
                move || issues.run(&shared)
            })
            .map_err(|e| StoreError::Engine(format!("cannot start the committer: {e}")))?;
        Ok(SledStore {
            shared,
            issues,
            committer: Some(committer),
        })
    }

    /// Runs `f` on the open database (see [`Shared::with`]).
    fn with<R>(&self, f: impl FnOnce(&Core) -> Result<R, StoreError>) -> Result<R, StoreError> {
        self.shared.with(f)
    }
}

impl Drop for SledStore {
    /// Stops the committer once it has committed what is queued, so that the database
    /// (and its lock) is released when the store is.
    fn drop(&mut self) {
        let mut st = self.issues.lock();
        st.closed = true;
        drop(st);
        self.issues.work.notify_all();
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

impl EnvironmentStore for SledStore {
    fn put_environment(
        &self,
        env: &EnvName,
        rec: &EnvRecord,
        at: UnixTime,
    ) -> Result<(), StoreError> {
        self.with(|core| {
            let _writing = core.writing();
            (&core.environments, &core.audit, &core.meta)
                .transaction(|(envs, audit, meta)| {
                    envs.insert(env.as_str(), encode(rec))?;
                    log(audit, meta, at, env, "", EventKind::Environment, None)
                })
                .map_err(|e| match e {
                    TransactionError::Abort(e) => e,
                    TransactionError::Storage(e) => engine(e),
                })
        })
    }

    fn environments(&self) -> Result<Vec<(EnvName, EnvRecord)>, StoreError> {
        self.with(|core| {
            let mut out = Vec::new();
            for item in core.environments.iter() {
                let (k, v) = item.map_err(engine)?;
                let name = std::str::from_utf8(&k)
                    .ok()
                    .and_then(|s| EnvName::parse(s).ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        tree: "environments".into(),
                        detail: "bad key".into(),
                    })?;
                out.push((name, decode("environments", &v)?));
            }
            Ok(out)
        })
    }
}

impl RequestStore for SledStore {
    fn request(&self, env: &EnvName, name: &Certname) -> Result<Option<RequestRecord>, StoreError> {
        match self.with(|core| core.env(env)?.requests.get(name.as_str()).map_err(engine))? {
            Some(v) => Ok(Some(decode("requests", &v)?)),
            None => Ok(None),
        }
    }

    fn submit_request(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
    ) -> Result<SubmitOutcome, StoreError> {
        self.with(|core| core.txn(env, |tx| tx.submit(env, name, rec, rule)))
    }

    fn reject_request(
        &self,
        env: &EnvName,
        name: &Certname,
        reason: &str,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.with(|core| {
            core.txn(env, |tx| {
                let Some(mut rec) =
                    tx.get::<RequestRecord>(tx.requests, "requests", name.as_str().as_bytes())?
                else {
                    return Ok(false);
                };
                rec.state = RequestState::Invalid {
                    reason: reason.to_owned(),
                    rule: None,
                };
                tx.put_request(name.as_str(), &rec)?;
                tx.log(at, env, name.as_str(), EventKind::Rejected)?;
                Ok(true)
            })
        })
    }

    fn update_request(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        new: &RequestRecord,
        event: Option<(EventKind, Option<String>)>,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.with(|core| {
            core.txn(env, |tx| {
                let current =
                    tx.get::<RequestRecord>(tx.requests, "requests", name.as_str().as_bytes())?;
                if current.as_ref() != Some(expected) {
                    return Ok(false);
                }
                tx.put_request(name.as_str(), new)?;
                if let Some((kind, detail)) = &event {
                    log(
                        tx.audit,
                        tx.meta,
                        at,
                        env,
                        name.as_str(),
                        *kind,
                        detail.clone(),
                    )?;
                }
                Ok(true)
            })
        })
    }

    fn cancel_request(
        &self,
        env: &EnvName,
        name: &Certname,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.with(|core| {
            core.txn(env, |tx| {
                if !tx.remove_request(name.as_str())? {
                    return Ok(false);
                }
                tx.log(at, env, name.as_str(), EventKind::Canceled)?;
                Ok(true)
            })
        })
    }

    fn requests(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, RequestRecord)>, StoreError> {
        self.with(|core| Core::scan(&core.env(env)?.requests, "requests", after, limit))
    }

    fn count_requests(&self, env: &EnvName, up_to: usize) -> Result<usize, StoreError> {
        self.with(|core| {
            let mut n = 0;
            for key in core.env(env)?.requests.iter().keys().take(up_to) {
                key.map_err(engine)?;
                n += 1;
            }
            Ok(n)
        })
    }

    fn due_orders(
        &self,
        env: &EnvName,
        until_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<DueOrders, StoreError> {
        use std::ops::Bound;
        self.with(|core| {
            let t = core.env(env)?;
            let mut out = DueOrders::default();
            let from = match after {
                Some((at, name)) => Bound::Excluded(due_key(at, name)),
                None => Bound::Unbounded,
            };
            for item in t.orders_due.range::<Vec<u8>, _>((from, Bound::Unbounded)) {
                let (k, _) = item.map_err(engine)?;
                let (at, name) = parse_due_key(&k).ok_or_else(|| StoreError::Corrupt {
                    tree: "orders_due".into(),
                    detail: "bad key".into(),
                })?;
                if at > until_ms || out.due.len() >= limit {
                    out.next_ms = Some(at);
                    break;
                }
                let Some(v) = t.requests.get(name).map_err(engine)? else {
                    continue;
                };
                let rec: RequestRecord = decode("requests", &v)?;
                // Read outside a transaction: a request changed since its key was read
                // is skipped here and found under its new key.
                if rec.order_free_at() != Some(at) {
                    continue;
                }
                let name = Certname::parse(name).map_err(|_| StoreError::Corrupt {
                    tree: "orders_due".into(),
                    detail: "key is not a certname".into(),
                })?;
                out.due.push((name, rec));
            }
            Ok(out)
        })
    }
}

impl CertificateStore for SledStore {
    fn issue(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        cert: &CertRecord,
    ) -> Result<IssueOutcome, StoreError> {
        self.with(|core| core.txn(env, |tx| tx.issue(env, name, expected, cert)))
    }

    fn submit_issued(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        cert: &CertRecord,
    ) -> Result<SubmitIssueOutcome, StoreError> {
        self.submit_issued_pending(env, name, rec, rule, cert)
            .wait()
    }

    fn submit_issued_pending(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        cert: &CertRecord,
    ) -> PendingIssue {
        let (pending, fill) = PendingIssue::pair();
        let op = IssueOp {
            env: env.clone(),
            name: name.clone(),
            rec: rec.clone(),
            rule,
            cert: cert.clone(),
        };
        let mut st = self.issues.lock();
        if st.closed {
            drop(st);
            fill.fill(Err(StoreError::Engine("the store is closing".into())));
            return pending;
        }
        st.queue.push((op, fill));
        // Wake the committer when it sleeps for want of work, or when it waits for
        // company and this submission makes the batch as large as the last one.
        let wake = if st.idle {
            st.idle = false;
            true
        } else if st.gathering && st.queue.len() >= st.last_batch {
            st.gathering = false;
            true
        } else {
            false
        };
        drop(st);
        if wake {
            self.issues.work.notify_one();
        }
        pending
    }

    fn renew(
        &self,
        env: &EnvName,
        name: &Certname,
        old_serial: &[u8],
        cert: &CertRecord,
    ) -> Result<RenewOutcome, StoreError> {
        self.with(|core| {
            core.txn(env, |tx| {
                let key = name.as_str().as_bytes();
                match tx.get::<CertRecord>(tx.certificates, "certificates", key)? {
                    Some(c) if c.serial == old_serial && c.revocation.is_none() => {}
                    _ => return Ok(RenewOutcome::NotCurrent),
                }
                let skey = serial_key(&cert.serial);
                if tx.serials.get(&skey)?.is_some() {
                    return Ok(RenewOutcome::SerialTaken);
                }
                let superseded = Revocation {
                    revoked_at: cert.issued_at,
                    reason: crate::ca::RevocationReason::Superseded,
                };
                tx.list_revoked(env, name, old_serial, superseded)?;
                tx.put_cert(key, cert)?;
                tx.serials.insert(skey, key)?;
                tx.log(cert.issued_at, env, name.as_str(), EventKind::Renewed)?;
                Ok(RenewOutcome::Renewed)
            })
        })
    }

    fn certificate(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Result<Option<CertRecord>, StoreError> {
        self.with(|core| {
            let t = core.env(env)?;
            match t.certificates.get(name.as_str()).map_err(engine)? {
                Some(v) => Ok(Some(with_der(
                    &t,
                    name.as_str(),
                    decode("certificates", &v)?,
                )?)),
                None => Ok(None),
            }
        })
    }

    fn certname_by_serial(
        &self,
        env: &EnvName,
        serial: &[u8],
    ) -> Result<Option<Certname>, StoreError> {
        match self.with(|core| {
            core.env(env)?
                .serials
                .get(serial_key(serial))
                .map_err(engine)
        })? {
            Some(v) => {
                let s = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| Certname::parse(s).ok());
                s.map(Some).ok_or_else(|| StoreError::Corrupt {
                    tree: "serials".into(),
                    detail: "not a certname".into(),
                })
            }
            None => Ok(None),
        }
    }

    fn revoke(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<RevokeOutcome, StoreError> {
        self.with(|core| {
            core.txn(env, |tx| {
                let Some(cert) = tx.get::<CertRecord>(
                    tx.certificates,
                    "certificates",
                    name.as_str().as_bytes(),
                )?
                else {
                    return Ok(RevokeOutcome::NotFound);
                };
                if cert.revocation.is_some() {
                    return Ok(RevokeOutcome::AlreadyRevoked);
                }
                let serial = cert.serial.clone();
                tx.revoke(env, name, cert, revocation)?;
                Ok(RevokeOutcome::Revoked { serial })
            })
        })
    }

    fn clean(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<CleanOutcome, StoreError> {
        self.with(|core| core.txn(env, |tx| tx.clean(env, name, revocation, false)))
    }

    fn clean_certified(
        &self,
        env: &EnvName,
        names: &[Certname],
        revocation: Revocation,
    ) -> Result<Vec<CleanOutcome>, StoreError> {
        self.with(|core| {
            core.txn(env, |tx| {
                names
                    .iter()
                    .map(|name| tx.clean(env, name, revocation, true))
                    .collect()
            })
        })
    }

    fn certificates(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, CertSummary)>, StoreError> {
        self.with(|core| {
            let mut out: Vec<(Certname, CertSummary)> =
                Core::scan(&core.env(env)?.certificates, "certificates", after, limit)?;
            for (name, summary) in &mut out {
                if !summary.fingerprints.is_known() {
                    // Written before fingerprints were stored: read it whole once.
                    if let Some(full) = self.certificate(env, name)? {
                        summary.fingerprints = full.summary().fingerprints;
                    }
                }
            }
            Ok(out)
        })
    }

    fn revoked_serials(&self, env: &EnvName) -> Result<Vec<RevokedSerial>, StoreError> {
        self.with(|core| {
            let mut out = Vec::new();
            for item in core.env(env)?.revocations.iter() {
                let (_, v) = item.map_err(engine)?;
                out.push(decode("revocations", &v)?);
            }
            Ok(out)
        })
    }
}

impl CrlStore for SledStore {
    fn crl(&self, env: &EnvName) -> Result<Option<CrlRecord>, StoreError> {
        match self.with(|core| core.env(env)?.meta.get(schema::KEY_CRL).map_err(engine))? {
            Some(v) => Ok(Some(decode("meta", &v)?)),
            None => Ok(None),
        }
    }

    fn put_crl(&self, env: &EnvName, crl: &CrlRecord) -> Result<bool, StoreError> {
        self.with(|core| {
            let trees = core.env(env)?;
            let _writing = core.writing();
            let new = encode(crl);
            // Compare-and-swap, so that a lower number never replaces a higher one.
            let mut current = trees.meta.get(schema::KEY_CRL).map_err(engine)?;
            loop {
                if let Some(bytes) = &current {
                    let stored: CrlRecord = decode("meta", bytes)?;
                    if stored.number >= crl.number {
                        return Ok(false);
                    }
                }
                match trees
                    .meta
                    .compare_and_swap(schema::KEY_CRL, current, Some(new.clone()))
                    .map_err(engine)?
                {
                    Ok(()) => return Ok(true),
                    Err(e) => current = e.current,
                }
            }
        })
    }

    fn root_crl(&self) -> Result<Option<CrlRecord>, StoreError> {
        self.with(
            |core| match core.meta.get(schema::KEY_ROOT_CRL).map_err(engine)? {
                Some(v) => Ok(Some(decode("meta", &v)?)),
                None => Ok(None),
            },
        )
    }

    fn put_root_crl(&self, crl: &CrlRecord) -> Result<(), StoreError> {
        self.with(|core| {
            let _writing = core.writing();
            core.meta
                .insert(schema::KEY_ROOT_CRL, encode(crl))
                .map_err(engine)?;
            Ok(())
        })
    }
}

impl AuditLog for SledStore {
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.with(|core| {
            let mut out = Vec::new();
            let start = u64_key(after.saturating_add(1));
            for item in core.audit.range(start..).take(limit) {
                let (_, v) = item.map_err(engine)?;
                out.push(decode("audit", &v)?);
            }
            Ok(out)
        })
    }

    fn last_event_id(&self) -> Result<u64, StoreError> {
        self.with(|core| match core.audit.last().map_err(engine)? {
            Some((k, _)) => Ok(u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt {
                    tree: "audit".into(),
                    detail: "key".into(),
                }
            })?)),
            None => Ok(0),
        })
    }
}

impl NodeStore for SledStore {}

impl Store for SledStore {
    fn flush(&self) -> Result<(), StoreError> {
        // This thread's writes went to the database of `wrote_on`; once that one is
        // closed (an I/O error), what they left in its memory is gone, and a flush of the
        // database opened again from disk says nothing about them.
        // The check and the flush use the same database, so no reopen falls between.
        let wrote_on = self.shared.last_used();
        let (core, now) = self.shared.current_generation()?;
        if wrote_on.is_some_and(|g| g != now) {
            return Err(StoreError::Unavailable(
                "the store was opened again after an I/O error since this call's writes; they may not have been made durable".into(),
            ));
        }
        let result = core.flush_grouped().map_err(|e| not_durable(&e));
        if let Err(StoreError::Unavailable(why)) = &result {
            self.shared.failed(&core, why);
        }
        result
    }

    /// A fixed sentence when not healthy: the engine's own words (which can name files)
    /// are in the log, where the failure was reported.
    fn health(&self) -> Result<(), String> {
        let closed = || {
            "closed after an I/O error (see the server's log); it is opened again by itself"
                .to_owned()
        };
        let core = self.shared.current().map_err(|_| closed())?;
        match core.meta.get(schema::KEY_SCHEMA) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "store health check");
                Err("does not answer reads (see the server's log)".to_owned())
            }
        }
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with(|core| core.db.size_on_disk().map_err(engine))
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.with(|core| {
            // Writers wait until it is read: one consistent view (see `Core::writers`).
            let _alone = core.writers.write().unwrap_or_else(|p| p.into_inner());
            let mut snap = Snapshot {
                root_crl: self.root_crl()?,
                ..Snapshot::default()
            };
            for (name, rec) in self.environments()? {
                snap.environments.insert(name.to_string(), rec);
            }
            snap.audit = self.audit(0, usize::MAX)?;
            let mut names: Vec<String> = core
                .db
                .tree_names()
                .iter()
                .filter_map(|n| schema::parse_env_tree(n).map(|(e, _)| e))
                .collect();
            names.dedup();
            for raw in names {
                let env = EnvName::parse(&raw).map_err(|_| StoreError::Corrupt {
                    tree: raw.clone(),
                    detail: "bad environment tree name".into(),
                })?;
                let t = core.env(&env)?;
                let mut e = EnvSnapshot::default();
                for (n, r) in self.requests(&env, None, usize::MAX)? {
                    e.requests.insert(n.to_string(), r);
                }
                for (n, c) in
                    Core::scan::<CertRecord>(&t.certificates, "certificates", None, usize::MAX)?
                {
                    e.certificates
                        .insert(n.to_string(), with_der(&t, n.as_str(), c)?);
                }
                for item in t.serials.iter() {
                    let (k, v) = item.map_err(engine)?;
                    e.serials
                        .insert(k[1..].to_vec(), String::from_utf8_lossy(&v).into_owned());
                }
                for item in t.orders_due.iter() {
                    let (k, _) = item.map_err(engine)?;
                    if let Some((at, name)) = parse_due_key(&k) {
                        e.orders_due.insert((at, name.to_owned()));
                    }
                }
                e.revoked = self.revoked_serials(&env)?;
                e.crl = self.crl(&env)?;
                if e != EnvSnapshot::default() {
                    snap.envs.insert(raw, e);
                }
            }
            Ok(snap)
        })
    }

    fn import(&self, snap: &Snapshot) -> Result<(), StoreError> {
        if self.snapshot()? != Snapshot::default() {
            return Err(StoreError::NotEmpty);
        }
        self.with(|core| {
            let _writing = core.writing();
            let put = |tree: &sled::Tree, k: &[u8], v: &[u8]| -> Result<(), StoreError> {
                tree.insert(k, v).map(|_| ()).map_err(engine)
            };
            for (name, rec) in &snap.environments {
                put(&core.environments, name.as_bytes(), &encode(rec))?;
            }
            if let Some(crl) = &snap.root_crl {
                put(&core.meta, schema::KEY_ROOT_CRL, &encode(crl))?;
            }
            for (raw, e) in &snap.envs {
                let env = EnvName::parse(raw).map_err(|_| StoreError::Corrupt {
                    tree: raw.clone(),
                    detail: "bad environment name".into(),
                })?;
                let t = core.env(&env)?;
                for (n, r) in &e.requests {
                    put(&t.requests, n.as_bytes(), &encode(r))?;
                    if let Some(at) = r.order_free_at() {
                        put(&t.orders_due, &schema::due_key(at, n), &[])?;
                    }
                }
                for (n, c) in &e.certificates {
                    put(&t.certificate_der, n.as_bytes(), &c.der)?;
                    put(&t.certificates, n.as_bytes(), &encode(c))?;
                }
                for (serial, n) in &e.serials {
                    put(&t.serials, &schema::serial_key(serial), n.as_bytes())?;
                }
                for r in &e.revoked {
                    put(&t.revocations, &schema::serial_key(&r.serial), &encode(r))?;
                }
                if let Some(crl) = &e.crl {
                    put(&t.meta, schema::KEY_CRL, &encode(crl))?;
                }
            }
            for ev in &snap.audit {
                put(&core.audit, &schema::u64_key(ev.id), &encode(ev))?;
            }
            let last = snap.audit.last().map(|e| e.id).unwrap_or(0);
            put(&core.meta, schema::KEY_AUDIT_LAST, &schema::u64_key(last))?;
            Ok(())
        })?;
        self.flush()
    }
}
