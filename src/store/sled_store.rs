//! The sled implementation of [`Store`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::{Db, Transactional, Tree};

use super::pending::IssueFill;
use super::schema::{self, decode, due_key, encode, env_tree, parse_due_key, serial_key, u64_key};
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

/// The open database, or why there is none. Once sled meets an I/O error (a full disk)
/// it fails every later call, writes and reads alike, until the database is opened
/// again; and what it holds in memory may include writes that never reached the disk.
/// So the first call that hears one drops the database (every call answers
/// [`StoreError::Unavailable`] from then on), and the committer thread opens it again
/// from disk, with backoff, until that works: only what was made durable comes back.
struct Shared {
    dir: PathBuf,
    state: RwLock<OpenState>,
}

struct OpenState {
    /// The database, when open.
    core: Option<Arc<Core>>,
    /// Why it is not.
    why: String,
    /// When the committer next tries to open it.
    next_try: Instant,
    /// Reopens in a row that failed, or that failed again soon after.
    tries: u32,
    /// When it was last opened again.
    reopened: Option<Instant>,
}

/// First wait before opening the database again after an I/O error; it doubles with
/// every try that fails, up to [`REOPEN_MAX`].
const REOPEN_FIRST: Duration = Duration::from_millis(500);
const REOPEN_MAX: Duration = Duration::from_secs(15);
/// A failure this soon after a reopen counts as the same outage (the backoff goes on).
const SAME_OUTAGE: Duration = Duration::from_secs(60);

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, OpenState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, OpenState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The open database, or [`StoreError::Unavailable`] with the reason.
    fn current(&self) -> Result<Arc<Core>, StoreError> {
        let st = self.read();
        match &st.core {
            Some(core) => Ok(core.clone()),
            None => Err(StoreError::Unavailable(st.why.clone())),
        }
    }

    /// Runs `f` on the open database; an I/O error drops it (see [`Shared`]).
    fn with<R>(&self, f: impl FnOnce(&Core) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let core = self.current()?;
        let result = f(&core);
        if let Err(StoreError::Unavailable(why)) = &result {
            self.failed(&core, why);
        }
        result
    }

    /// `core` met an I/O error: drop it, unless it was replaced already.
    fn failed(&self, core: &Arc<Core>, why: &str) {
        let mut st = self.write();
        if !st.core.as_ref().is_some_and(|c| Arc::ptr_eq(c, core)) {
            return;
        }
        tracing::error!(error = %why, "store write failed; closing it until it can be opened again");
        st.core = None;
        st.why = why.to_owned();
        st.tries = match st.reopened {
            Some(at) if at.elapsed() < SAME_OUTAGE => st.tries + 1,
            _ => 0,
        };
        st.next_try = Instant::now() + backoff(st.tries);
    }

    /// How long the committer may sleep before it must try to reopen (None: open).
    fn until_reopen(&self) -> Option<Duration> {
        let st = self.read();
        match st.core {
            Some(_) => None,
            None => Some(st.next_try.saturating_duration_since(Instant::now())),
        }
    }

    /// Opens the database again when it is closed and its time has come.
    fn reopen_if_due(&self) {
        if self.until_reopen() != Some(Duration::ZERO) {
            return;
        }
        let opened = Core::open(&self.dir);
        let mut st = self.write();
        match opened {
            Ok(core) => {
                tracing::info!("store opened again after: {}", st.why);
                st.core = Some(Arc::new(core));
                st.reopened = Some(Instant::now());
            }
            Err(e) => {
                st.why = e.to_string();
                st.tries += 1;
                st.next_try = Instant::now() + backoff(st.tries);
            }
        }
    }
}

fn backoff(tries: u32) -> Duration {
    REOPEN_FIRST
        .saturating_mul(1 << tries.min(8))
        .min(REOPEN_MAX)
}

/// The database and its trees, shared by the store and its committing thread.
struct Core {
    db: Db,
    meta: Tree,
    environments: Tree,
    audit: Tree,
    envs: RwLock<HashMap<EnvName, Arc<EnvTrees>>>,
    commit: GroupCommit,
}

/// sled's page cache size.
const CACHE_BYTES: u64 = 32 << 20;

/// Group commit: concurrent [`Store::flush`] calls share one fsync. Each caller takes a
/// ticket after its writes are applied; one caller at a time (the leader) flushes
/// everything written so far and marks every ticket taken before it started as durable;
/// the others wait for that, or lead the next flush.
#[derive(Default)]
struct GroupCommit {
    state: std::sync::Mutex<CommitState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct CommitState {
    /// Tickets handed out.
    taken: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A flush is under way.
    flushing: bool,
}

/// Autosigned submissions ([`CertificateStore::submit_issued`]) committed together: every sled
/// transaction seals and writes the log buffer before it and its batch manifest after,
/// each write handed to sled's I/O pool, so concurrent submissions share one
/// transaction per environment and one flush. Submissions queue here; one thread (the
/// committer, started with the store) takes everything queued, applies it in order
/// inside one transaction per environment, flushes, and hands each submission its
/// outcome. Whatever queues while it commits goes in its next batch, and it waits
/// briefly for as many as the last batch had ([`COMPANY_WAIT`]). Callers do not lead or
/// wait for one another: an HTTP handler awaits its [`PendingIssue`] without holding a
/// thread.
#[derive(Default)]
struct IssueQueue {
    state: std::sync::Mutex<QueueState>,
    work: std::sync::Condvar,
}

#[derive(Default)]
struct QueueState {
    queue: Vec<(IssueOp, IssueFill)>,
    /// The committer sleeps on `work` (a submission must wake it).
    idle: bool,
    /// The store is being dropped: the committer finishes the queue and exits.
    closed: bool,
    /// How many submissions the last batch had: how many the next one waits for.
    last_batch: usize,
    /// The committer waits on `work` for the batch to fill up to `last_batch`.
    gathering: bool,
}

impl IssueQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committer's loop, until the store is dropped. While the database is closed
    /// after an I/O error, it also opens it again when due.
    fn run(&self, shared: &Shared) {
        loop {
            shared.reopen_if_due();
            let mut st = self.lock();
            while st.queue.is_empty() {
                if st.closed {
                    return;
                }
                st.idle = true;
                match shared.until_reopen() {
                    None => st = self.work.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Some(wait) => {
                        st = self
                            .work
                            .wait_timeout(st, wait)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                        if shared.until_reopen() == Some(Duration::ZERO) {
                            break;
                        }
                    }
                }
            }
            if st.queue.is_empty() {
                // Woken to reopen the database.
                st.idle = false;
                continue;
            }
            st.idle = false;
            // Wait for company: after one yield (to the workers signing submissions),
            // until as many submissions are queued as the last batch had, for at most
            // COMPANY_WAIT, asleep on `work` (the submission that completes the batch
            // wakes it). A lone agent's batches are of one, so it does not wait; under
            // load a batch takes in every agent already on its way, and sled writes (and
            // wakes its whole I/O pool) twice per batch, not per submission.
            drop(st);
            std::thread::yield_now();
            st = self.lock();
            let until = std::time::Instant::now() + COMPANY_WAIT;
            while st.queue.len() < st.last_batch && !st.closed {
                let now = std::time::Instant::now();
                if now >= until {
                    break;
                }
                st.gathering = true;
                st = self
                    .work
                    .wait_timeout(st, until - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                st.gathering = false;
            }
            let batch = std::mem::take(&mut st.queue);
            st.last_batch = batch.len();
            drop(st);
            // A panic past commit_batch's own guard (in the flush, say) must not stop the
            // committer, or every later submission would wait forever; the batch's
            // submissions hear an error as their fills are dropped.
            let _ =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match shared.current() {
                    Ok(core) => {
                        if let Some(why) = core.commit_batch(batch) {
                            shared.failed(&core, &why);
                        }
                    }
                    Err(e) => {
                        let why = match e {
                            StoreError::Unavailable(why) => why,
                            other => other.to_string(),
                        };
                        for (_, fill) in batch {
                            fill.fill(Err(StoreError::Unavailable(why.clone())));
                        }
                    }
                }));
        }
    }
}

/// Longest the committer waits for a batch to fill up to the last one's size. Measured
/// (8 agents, ECDSA CA): one yield and no waiting gave batches of ~2–4; waiting for the
/// last batch's size, up to 500 µs, gave 4,197 → 5,225 certs/s and 93.5 → 77 ticks of
/// server CPU per 3,000 certificates, with lower p50 and p99. A fixed window (150 or
/// 300 µs whatever the load) was no better than ~4,800/s. Sleeping on the condition
/// variable rather than yielding in a loop costs ~11% less server CPU at the same rate.
const COMPANY_WAIT: std::time::Duration = std::time::Duration::from_micros(500);

/// One queued [`CertificateStore::submit_issued`].
struct IssueOp {
    env: EnvName,
    name: Certname,
    rec: RequestRecord,
    rule: SubmitRule,
    cert: CertRecord,
}

struct EnvTrees {
    requests: Tree,
    certificates: Tree,
    certificate_der: Tree,
    serials: Tree,
    revocations: Tree,
    meta: Tree,
    orders_due: Tree,
}

/// The trees one environment transaction sees.
struct Tx<'a> {
    requests: &'a TransactionalTree,
    orders_due: &'a TransactionalTree,
    certificates: &'a TransactionalTree,
    certificate_der: &'a TransactionalTree,
    serials: &'a TransactionalTree,
    revocations: &'a TransactionalTree,
    audit: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

fn engine(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(e) => StoreError::Unavailable(e.to_string()),
        e => StoreError::Engine(e.to_string()),
    }
}

/// Builds an environment's due-time index of orders from its requests, once (a store
/// written before the index existed); marked built in the environment's meta.
fn index_orders(t: &EnvTrees) -> Result<(), StoreError> {
    if t.meta
        .get(schema::KEY_ORDERS_INDEXED)
        .map_err(engine)?
        .is_some()
    {
        return Ok(());
    }
    for item in t.requests.iter() {
        let (k, v) = item.map_err(engine)?;
        // A record that does not decode fails the calls that read it, as before the
        // index; it has no order the worker could work.
        let Ok(rec) = decode::<RequestRecord>("requests", &v) else {
            tracing::warn!(key = %String::from_utf8_lossy(&k), "undecodable request left out of the order index");
            continue;
        };
        if let Some(at) = rec.order_free_at() {
            let name = std::str::from_utf8(&k).map_err(|_| StoreError::Corrupt {
                tree: "requests".into(),
                detail: "key is not a certname".into(),
            })?;
            t.orders_due
                .insert(due_key(at, name), &[])
                .map_err(engine)?;
        }
    }
    t.meta
        .insert(schema::KEY_ORDERS_INDEXED, &[1])
        .map_err(engine)?;
    Ok(())
}

/// Removes snapshot files sled left half-written. sled writes a snapshot to
/// `snap.N.generating` and renames it once complete, but at open it reads the newest
/// `snap.*` file, a `.generating` one included: one left by a write that failed (a full
/// disk, a crash) made every later open fail with "Read corrupted data", until removed
/// by hand. Such a file is incomplete by construction, and sled recovers from the older
/// snapshot (or none) and its log. Only done while nobody holds sled's lock (the `db`
/// file), so no process using the database loses a snapshot in flight.
fn remove_torn_snapshots(dir: &Path) {
    let Ok(db) = std::fs::File::options().write(true).open(dir.join("db")) else {
        return;
    };
    if fs2::FileExt::try_lock_exclusive(&db).is_err() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::warn!(file = %name, "removed a half-written sled snapshot"),
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove a half-written sled snapshot")
                }
            }
        }
    }
}

/// A write that was applied but could not be flushed: unavailable when the flush met
/// an I/O error.
fn not_durable(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(why) => StoreError::Unavailable(format!("not made durable: {why}")),
        e => StoreError::Engine(format!("not made durable: {e}")),
    }
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl<'a> Tx<'a> {
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        tree: &TransactionalTree,
        name: &str,
        key: &[u8],
    ) -> TxResult<Option<T>> {
        match tree.get(key)? {
            Some(v) => Ok(Some(decode(name, &v).map_err(abort)?)),
            None => Ok(None),
        }
    }

    /// Stores a request, keeping the due-time index of orders.
    fn put_request(&self, name: &str, rec: &RequestRecord) -> TxResult<()> {
        let prev = self.get::<RequestRecord>(self.requests, "requests", name.as_bytes())?;
        self.requests.insert(name, encode(rec))?;
        self.reindex(name, prev.as_ref(), rec.order_free_at())
    }

    /// Removes a request and its index entry; returns it.
    fn remove_request(&self, name: &str) -> TxResult<Option<RequestRecord>> {
        let prev = self.get::<RequestRecord>(self.requests, "requests", name.as_bytes())?;
        if prev.is_some() {
            self.requests.remove(name)?;
            self.reindex(name, prev.as_ref(), None)?;
        }
        Ok(prev)
    }

    /// Moves `name`'s index entry from `prev`'s due time to `now`.
    fn reindex(&self, name: &str, prev: Option<&RequestRecord>, now: Option<i64>) -> TxResult<()> {
        let was = prev.and_then(|p| p.order_free_at());
        if was == now {
            return Ok(());
        }
        if let Some(at) = was {
            self.orders_due.remove(due_key(at, name))?;
        }
        if let Some(at) = now {
            self.orders_due.insert(due_key(at, name), &[])?;
        }
        Ok(())
    }

    fn log(&self, at: UnixTime, env: &EnvName, certname: &str, kind: EventKind) -> TxResult<()> {
        log(self.audit, self.meta, at, env, certname, kind, None)
    }

    /// [`RequestStore::submit_request`] inside a transaction.
    fn submit(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
    ) -> TxResult<SubmitOutcome> {
        if !rule.allow_if_signed {
            if let Some(cert) =
                self.get::<CertRecord>(self.certificates, "certificates", name.as_str().as_bytes())?
            {
                return Ok(SubmitOutcome::CertificateExists {
                    revoked: cert.revocation.is_some(),
                });
            }
        }
        let prev =
            self.get::<RequestRecord>(self.requests, "requests", name.as_str().as_bytes())?;
        let replaced = matches!(
            prev,
            Some(RequestRecord {
                state: RequestState::Requested,
                ..
            })
        );
        if replaced && !rule.replace_pending {
            return Ok(SubmitOutcome::RequestPending);
        }
        self.put_request(name.as_str(), rec)?;
        let (kind, detail) = rec.submit_event(replaced);
        log(
            self.audit,
            self.meta,
            rec.submitted_at,
            env,
            name.as_str(),
            kind,
            detail,
        )?;
        Ok(if replaced {
            SubmitOutcome::Replaced
        } else {
            SubmitOutcome::Created
        })
    }

    /// [`CertificateStore::submit_issued`] inside a transaction: the serial first, so that
    /// `SerialTaken` writes nothing.
    fn submit_issued(&self, op: &IssueOp) -> TxResult<SubmitIssueOutcome> {
        let IssueOp {
            env,
            name,
            rec,
            rule,
            cert,
        } = op;
        if self.serials.get(serial_key(&cert.serial))?.is_some() {
            return Ok(SubmitIssueOutcome::SerialTaken);
        }
        match self.submit(env, name, rec, *rule)? {
            o @ (SubmitOutcome::Created | SubmitOutcome::Replaced) => Ok(
                SubmitIssueOutcome::Stored(o, self.issue(env, name, &rec.csr_der, cert)?),
            ),
            refused => Ok(SubmitIssueOutcome::Refused(refused)),
        }
    }

    /// [`CertificateStore::issue`] inside a transaction.
    fn issue(
        &self,
        env: &EnvName,
        name: &Certname,
        csr_der: &[u8],
        cert: &CertRecord,
    ) -> TxResult<IssueOutcome> {
        let key = name.as_str().as_bytes();
        let req = match self.get::<RequestRecord>(self.requests, "requests", key)? {
            Some(r) if r.state == RequestState::Requested => r,
            _ => return Ok(IssueOutcome::NoRequest),
        };
        if req.csr_der != csr_der {
            return Ok(IssueOutcome::RequestChanged);
        }
        if let Some(existing) = self.get::<CertRecord>(self.certificates, "certificates", key)? {
            if existing.revocation.is_none() {
                return Ok(IssueOutcome::AlreadySigned);
            }
        }
        let skey = serial_key(&cert.serial);
        if self.serials.get(&skey)?.is_some() {
            return Ok(IssueOutcome::SerialTaken);
        }
        self.remove_request(name.as_str())?;
        self.put_cert(key, cert)?;
        self.serials.insert(skey, key)?;
        self.log(cert.issued_at, env, name.as_str(), EventKind::Issued)?;
        Ok(IssueOutcome::Issued)
    }

    /// Cleans `name`: revokes its certificate if valid, forgets it and any request;
    /// with `certified`, only if it has a certificate.
    fn clean(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
        certified: bool,
    ) -> TxResult<CleanOutcome> {
        let key = name.as_str().as_bytes();
        let cert = self.get::<CertRecord>(self.certificates, "certificates", key)?;
        if certified && cert.is_none() {
            return Ok(CleanOutcome::NotFound);
        }
        let had_request = self.remove_request(name.as_str())?.is_some();
        if cert.is_none() && !had_request {
            return Ok(CleanOutcome::NotFound);
        }
        let mut revoked = None;
        if let Some(cert) = cert {
            if cert.revocation.is_none() {
                self.list_revoked(env, name, &cert.serial, revocation)?;
                revoked = Some(cert.serial);
            }
            self.certificates.remove(key)?;
            self.certificate_der.remove(key)?;
        }
        self.log(
            revocation.revoked_at,
            env,
            name.as_str(),
            EventKind::Cleaned,
        )?;
        Ok(CleanOutcome::Cleaned { revoked })
    }

    /// Stores a certificate record: the DER in its own tree when the record carries it (a
    /// new certificate, or a schema 1 record that had it inline), the rest as JSON.
    fn put_cert(&self, key: &[u8], cert: &CertRecord) -> TxResult<()> {
        if !cert.der.is_empty() {
            self.certificate_der.insert(key, cert.der.as_slice())?;
        }
        self.certificates.insert(key, encode(cert))?;
        Ok(())
    }

    /// Marks the certificate revoked and lists its serial; the caller checked it is valid.
    fn revoke(
        &self,
        env: &EnvName,
        name: &Certname,
        mut cert: CertRecord,
        revocation: Revocation,
    ) -> TxResult<()> {
        cert.revocation = Some(revocation);
        self.put_cert(name.as_str().as_bytes(), &cert)?;
        self.list_revoked(env, name, &cert.serial, revocation)
    }

    /// Lists `serial` as revoked and logs it: the part of a revocation that outlives the
    /// certificate's record (a clean deletes the record right after).
    fn list_revoked(
        &self,
        env: &EnvName,
        name: &Certname,
        serial: &[u8],
        revocation: Revocation,
    ) -> TxResult<()> {
        let entry = RevokedSerial {
            serial: serial.to_vec(),
            revocation,
        };
        self.revocations
            .insert(serial_key(serial), encode(&entry))?;
        self.log(
            revocation.revoked_at,
            env,
            name.as_str(),
            EventKind::Revoked,
        )
    }
}

/// `rec` with its DER from the DER tree, unless it carried it inline (schema 1).
fn with_der(t: &EnvTrees, name: &str, mut rec: CertRecord) -> Result<CertRecord, StoreError> {
    if rec.der.is_empty() {
        let der = t.certificate_der.get(name).map_err(engine)?;
        rec.der = der
            .ok_or_else(|| StoreError::Corrupt {
                tree: schema::CERTIFICATE_DER.into(),
                detail: format!("no DER for {name}"),
            })?
            .to_vec();
    }
    Ok(rec)
}

/// Appends one event to the audit log; the id is the counter in `meta` plus one, so ids
/// are consecutive as long as every append happens inside a transaction.
fn log(
    audit: &TransactionalTree,
    meta: &TransactionalTree,
    at: UnixTime,
    env: &EnvName,
    certname: &str,
    kind: EventKind,
    detail: Option<String>,
) -> TxResult<()> {
    let last = match meta.get(schema::KEY_AUDIT_LAST)? {
        Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
            abort(StoreError::Corrupt {
                tree: "meta".into(),
                detail: "audit counter".into(),
            })
        })?),
        None => 0,
    };
    let id = last + 1;
    meta.insert(schema::KEY_AUDIT_LAST, &u64_key(id))?;
    let ev = AuditEvent {
        id,
        at,
        env: env.to_string(),
        certname: certname.to_owned(),
        kind,
        detail,
    };
    audit.insert(&u64_key(id), encode(&ev))?;
    Ok(())
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, checking the schema version.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            state: RwLock::new(OpenState {
                core: Some(Arc::new(Core::open(dir)?)),
                why: String::new(),
                next_try: Instant::now(),
                tries: 0,
                reopened: None,
            }),
        });
        let issues = Arc::new(IssueQueue::default());
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

impl Core {
    /// Opens the database in `dir`, checking (and on first use writing) the schema version.
    fn open(dir: &Path) -> Result<Core, StoreError> {
        // sled's page cache defaults to 1 GiB and fills with every record ever read; the
        // records certd reads most (pending requests, recent certificates, CRLs) fit in
        // far less, and resident memory is what operators watch.
        // A database dropped a moment ago in this process (setup opens the store, then
        // the server opens it again) keeps its file lock until sled's background
        // flusher thread notices and exits: wait for that, briefly. Another process
        // holding the data directory still fails, after the wait.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            remove_torn_snapshots(dir);
            match sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_BYTES)
                .open()
            {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < give_up =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(engine)?,
            }
        };
        let meta = db.open_tree(schema::META).map_err(engine)?;
        match meta.get(schema::KEY_SCHEMA).map_err(engine)? {
            Some(v) => {
                let found = v.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0);
                if schema::SCHEMA_COMPATIBLE.contains(&found) {
                    meta.insert(schema::KEY_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                        .map_err(engine)?;
                    db.flush().map_err(engine)?;
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found });
                }
            }
            None => {
                meta.insert(schema::KEY_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(engine)?;
                db.flush().map_err(engine)?;
            }
        }
        Ok(Core {
            environments: db.open_tree(schema::ENVIRONMENTS).map_err(engine)?,
            audit: db.open_tree(schema::AUDIT).map_err(engine)?,
            meta,
            db,
            envs: RwLock::new(HashMap::new()),
            commit: GroupCommit::default(),
        })
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

impl Core {
    fn env(&self, env: &EnvName) -> Result<Arc<EnvTrees>, StoreError> {
        if let Some(t) = self.envs.read().unwrap_or_else(|p| p.into_inner()).get(env) {
            return Ok(t.clone());
        }
        // Opened (and the index built) under the write lock: no transaction can use the
        // environment's trees before its index is complete.
        let mut cache = self.envs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.get(env) {
            return Ok(t.clone());
        }
        let open = |which: &str| self.db.open_tree(env_tree(env, which)).map_err(engine);
        let trees = Arc::new(EnvTrees {
            requests: open(schema::REQUESTS)?,
            certificates: open(schema::CERTIFICATES)?,
            certificate_der: open(schema::CERTIFICATE_DER)?,
            serials: open(schema::SERIALS)?,
            revocations: open(schema::REVOCATIONS)?,
            meta: open(schema::ENV_META)?,
            orders_due: open(schema::ORDERS_DUE)?,
        });
        index_orders(&trees)?;
        cache.insert(env.clone(), trees.clone());
        Ok(trees)
    }

    /// Runs `f` as one transaction over the environment's trees, the audit log and meta.
    fn txn<R>(&self, env: &EnvName, f: impl Fn(&Tx) -> TxResult<R>) -> Result<R, StoreError> {
        let t = self.env(env)?;
        (
            &t.requests,
            &t.orders_due,
            &t.certificates,
            &t.certificate_der,
            &t.serials,
            &t.revocations,
            &self.audit,
            &self.meta,
        )
            .transaction(
                |(
                    requests,
                    orders_due,
                    certificates,
                    certificate_der,
                    serials,
                    revocations,
                    audit,
                    meta,
                )| {
                    f(&Tx {
                        requests,
                        orders_due,
                        certificates,
                        certificate_der,
                        serials,
                        revocations,
                        audit,
                        meta,
                    })
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => engine(e),
            })
    }

    /// Applies a batch of [`CertificateStore::submit_issued`] calls, in order, in one transaction
    /// per environment. When that transaction fails, each is retried alone, so that one
    /// bad record fails only its own submission.
    fn commit_issues(
        &self,
        batch: Vec<(u64, IssueOp)>,
    ) -> Vec<(u64, Result<SubmitIssueOutcome, StoreError>)> {
        let mut by_env: Vec<(EnvName, Vec<(u64, IssueOp)>)> = Vec::new();
        for (id, op) in batch {
            match by_env.iter_mut().find(|(e, _)| *e == op.env) {
                Some((_, ops)) => ops.push((id, op)),
                None => by_env.push((op.env.clone(), vec![(id, op)])),
            }
        }
        let mut out = Vec::new();
        for (env, ops) in by_env {
            let together = self.txn(&env, |tx| {
                ops.iter()
                    .map(|(_, op)| tx.submit_issued(op))
                    .collect::<TxResult<Vec<_>>>()
            });
            match together {
                Ok(outcomes) => out.extend(
                    ops.iter()
                        .map(|(id, _)| *id)
                        .zip(outcomes.into_iter().map(Ok)),
                ),
                Err(e) if ops.len() == 1 => out.push((ops[0].0, Err(e))),
                Err(_) => out.extend(
                    ops.iter()
                        .map(|(id, op)| (*id, self.txn(&env, |tx| tx.submit_issued(op)))),
                ),
            }
        }
        out
    }

    /// The committer's work on one batch: commits it, makes it durable, and only then
    /// hands each submission its outcome. Returns the I/O error met, if any.
    fn commit_batch(&self, batch: Vec<(IssueOp, IssueFill)>) -> Option<String> {
        let (ops, fills): (Vec<(u64, IssueOp)>, Vec<IssueFill>) = batch
            .into_iter()
            .zip(0u64..)
            .map(|((op, fill), id)| ((id, op), fill))
            .unzip();
        let count = ops.len() as u64;
        let committed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit_issues(ops)));
        let mut outcomes: Vec<Result<SubmitIssueOutcome, StoreError>> = match committed {
            Ok(mut by_id) => {
                by_id.sort_by_key(|(id, _)| *id);
                by_id.into_iter().map(|(_, o)| o).collect()
            }
            Err(_) => (0..count)
                .map(|_| Err(StoreError::Engine("issue batch panicked".into())))
                .collect(),
        };
        let stored = |o: &Result<SubmitIssueOutcome, StoreError>| {
            matches!(o, Ok(SubmitIssueOutcome::Stored(..)))
        };
        if outcomes.iter().any(stored) {
            if let Err(e) = self.flush_grouped() {
                for o in outcomes.iter_mut().filter(|o| stored(o)) {
                    *o = Err(not_durable(&e));
                }
            }
        }
        let io = outcomes.iter().find_map(|o| match o {
            Err(StoreError::Unavailable(why)) => Some(why.clone()),
            _ => None,
        });
        for (fill, outcome) in fills.into_iter().zip(outcomes) {
            fill.fill(outcome);
        }
        io
    }

    /// [`Store::flush`]: concurrent callers share one fsync (see [`GroupCommit`]).
    fn flush_grouped(&self) -> Result<(), StoreError> {
        fn lock(m: &std::sync::Mutex<CommitState>) -> std::sync::MutexGuard<'_, CommitState> {
            m.lock().unwrap_or_else(|p| p.into_inner())
        }
        let mut st = lock(&self.commit.state);
        st.taken += 1;
        let ticket = st.taken;
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if st.flushing {
                st = self.commit.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead: everything written before any ticket up to `covers` goes in this flush.
            st.flushing = true;
            let covers = st.taken;
            drop(st);
            let result = self.db.flush();
            st = lock(&self.commit.state);
            st.flushing = false;
            if result.is_ok() {
                st.durable = st.durable.max(covers);
            }
            self.commit.done.notify_all();
            result.map_err(engine)?;
        }
    }

    fn scan<T: serde::de::DeserializeOwned>(
        tree: &Tree,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, T)>, StoreError> {
        let iter = match after {
            Some(a) => tree.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => tree.iter(),
        };
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(engine)?;
            let key = std::str::from_utf8(&k)
                .ok()
                .and_then(|s| Certname::parse(s).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    tree: name.into(),
                    detail: "key is not a certname".into(),
                })?;
            out.push((key, decode(name, &v)?));
        }
        Ok(out)
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
                if tx.remove_request(name.as_str())?.is_none() {
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
        csr_der: &[u8],
        cert: &CertRecord,
    ) -> Result<IssueOutcome, StoreError> {
        self.with(|core| core.txn(env, |tx| tx.issue(env, name, csr_der, cert)))
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
                if summary.fingerprints.sha256.is_empty() {
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

    fn put_crl(&self, env: &EnvName, crl: &CrlRecord) -> Result<(), StoreError> {
        self.with(|core| {
            core.env(env)?
                .meta
                .insert(schema::KEY_CRL, encode(crl))
                .map_err(engine)?;
            Ok(())
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

impl Store for SledStore {
    fn flush(&self) -> Result<(), StoreError> {
        self.with(|core| core.flush_grouped().map_err(|e| not_durable(&e)))
    }

    fn health(&self) -> Result<(), String> {
        let core = self.shared.current().map_err(|e| e.to_string())?;
        match core.meta.get(schema::KEY_SCHEMA) {
            Ok(_) => Ok(()),
            Err(e) => Err(engine(e).to_string()),
        }
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with(|core| core.db.size_on_disk().map_err(engine))
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.with(|core| {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_record(at: UnixTime) -> EnvRecord {
        EnvRecord {
            created_at: at,
            settings: None,
        }
    }

    /// A snapshot sled left half-written (a full disk or a crash during the write) no
    /// longer keeps the database from opening, and nothing durable is lost.
    #[test]
    fn a_half_written_snapshot_does_not_keep_the_store_from_opening() {
        let dir = tempfile::tempdir().unwrap();
        let env = EnvName::parse("dev").unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.put_environment(&env, &env_record(7), 7).unwrap();
            store.flush().unwrap();
        }
        // Newer than any snapshot sled wrote, so it is the one sled would read.
        for torn in [
            "snap.FFFFFFFFFFFFFFFF.generating",
            "snap.FFFFFFFFFFFFFFFE.generating",
        ] {
            std::fs::write(dir.path().join(torn), b"").unwrap();
        }
        let store = SledStore::open(dir.path()).expect("opens despite the torn snapshot");
        assert_eq!(store.environments().unwrap(), vec![(env, env_record(7))]);
        assert!(store.health().is_ok());
    }

    /// A store written before the due-time index existed (schema 2) gets its index built
    /// from its requests the first time the environment is opened.
    #[test]
    fn a_schema_2_store_gets_its_order_index_built() {
        let dir = tempfile::tempdir().unwrap();
        let env = EnvName::parse("dev").unwrap();
        let name = Certname::parse("node1").unwrap();
        let mut rec = RequestRecord {
            csr_der: vec![0x30, 0],
            submitted_at: 7,
            state: RequestState::Requested,
            dns_names: vec![],
            ip_addrs: vec![],
            order: None,
        };
        rec.order = Some(Order {
            issuer: "upstream".into(),
            sub_status: SubStatus::WaitingForCa,
            sub_status_message: String::new(),
            plugin_meta: Default::default(),
            approved_at: 7,
            started_at: 0,
            due_ms: 7_000,
            attempts: 0,
            failures: 0,
            validity: 60,
            modified: false,
            lease_until_ms: 0,
        });
        let rule = SubmitRule {
            allow_if_signed: false,
            replace_pending: true,
        };
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.submit_request(&env, &name, &rec, rule).unwrap();
            store.flush().unwrap();
        }
        // Make it what certd wrote before: no index, no mark, schema 2.
        {
            let db = sled::open(dir.path()).unwrap();
            db.drop_tree(env_tree(&env, schema::ORDERS_DUE)).unwrap();
            db.open_tree(env_tree(&env, schema::ENV_META))
                .unwrap()
                .remove(schema::KEY_ORDERS_INDEXED)
                .unwrap();
            db.open_tree(schema::META)
                .unwrap()
                .insert(schema::KEY_SCHEMA, &2u32.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let due = store.due_orders(&env, 7_000, None, 10).unwrap();
        assert_eq!(due.due, vec![(name, rec)]);
        assert_eq!(
            store.due_orders(&env, 6_999, None, 10).unwrap().next_ms,
            Some(7_000)
        );
    }

    /// While sled's lock is held (the database is in use), its snapshot files are left
    /// alone.
    #[test]
    fn snapshot_files_of_a_database_in_use_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let _store = SledStore::open(dir.path()).unwrap();
        let in_flight = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&in_flight, b"").unwrap();
        remove_torn_snapshots(dir.path());
        assert!(in_flight.exists());
    }
}
