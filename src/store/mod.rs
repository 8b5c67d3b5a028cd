//! Persistence: the [`Store`] trait, its sled implementation, an in-memory model for
//! tests, and the data directory's key and certificate files ([`DataDir`]).
//!
//! Every state change is one transaction over all the trees it touches (request,
//! certificate, serial index, revocations, audit log) and is followed by [`Store::flush`]
//! before anyone is told it happened. Expected conflicts (no such request, already
//! signed, ...) are returned as outcome values, not errors.

mod files;
mod memory;
mod pending;
mod pg;
mod records;
mod schema;
mod sled_store;
mod summary;

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::ca::{Certname, EnvName, UnixTime};

pub(crate) use files::io as io_error;
pub use files::{read_secret, write_file, CaKey, CaKeyVault, DataDir, FilesError, Shared};
pub use memory::MemStore;
pub use pending::PendingIssue;
pub use pg::{schema_sql, MigrateError, PgOpenError, PgStore, SealedKeys, PG_SCHEMA_VERSION};
pub use records::{
    AuditEvent, CertRecord, CertState, CertSummary, CrlRecord, EnvRecord, EventKind, Lease,
    NodeRecord, Order, RequestRecord, RequestState, Revocation, RevokedSerial, StoredFingerprints,
    SubStatus,
};
pub use schema::SCHEMA_VERSION;
pub use sled_store::SledStore;

/// Store failures. None of them is an expected outcome of a request.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The underlying engine failed (corruption, a bug).
    #[error("storage engine: {0}")]
    Engine(String),
    /// The store cannot write now (an I/O error: a full disk, say). Nothing of the call
    /// was made durable; the store recovers by itself once the cause is gone (503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt {
        /// Which tree.
        tree: String,
        /// What was wrong.
        detail: String,
    },
    /// An import into a store that is not empty.
    #[error("the target store is not empty; `certd store copy` only fills an empty one")]
    NotEmpty,
    /// The store was written by an incompatible version of certd.
    #[error("store schema version {found} is not supported (this certd uses {SCHEMA_VERSION})")]
    Schema {
        /// The version found on disk.
        found: u32,
    },
}

/// Result of [`RequestStore::submit_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// A new request.
    Created,
    /// A pending request was replaced.
    Replaced,
    /// A request is pending and the rule does not replace it; nothing written.
    RequestPending,
    /// A certificate exists for the name and duplicates were not allowed; nothing written.
    CertificateExists {
        /// Whether that certificate is revoked.
        revoked: bool,
    },
    /// The name has a request or a certificate and the rule was for a new name only
    /// ([`SubmitRule::new_only`]); nothing written.
    NotNew,
}

/// When [`RequestStore::submit_request`] refuses, decided inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitRule {
    /// Accept a CSR for a name that has a certificate (Puppet's `allow_duplicate_certs`).
    pub allow_if_signed: bool,
    /// Replace a pending request (the native face); when false a pending request
    /// refuses the submission (the Puppet face).
    pub replace_pending: bool,
    /// Refuse (`NotNew`) if the name has a request or a certificate, whatever its state:
    /// the submitter read neither and decided as for a new name (a store whose reads
    /// cost a round trip spares that read for an agent's first request).
    pub new_only: bool,
}

/// Result of [`CertificateStore::issue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    /// The certificate is stored and the request gone.
    Issued,
    /// There is no pending request.
    NoRequest,
    /// The pending request is not the CSR that was signed (replaced meanwhile).
    RequestChanged,
    /// A valid (unrevoked) certificate exists already.
    AlreadySigned,
    /// The serial is already used in this environment.
    SerialTaken,
}

/// Result of [`CertificateStore::submit_issued`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitIssueOutcome {
    /// The certificate's serial is already used in this environment; nothing written.
    SerialTaken,
    /// The submission was refused (`RequestPending`, `CertificateExists`); nothing written.
    Refused(SubmitOutcome),
    /// The request was stored (`Created`, `Replaced`), then the issue's outcome: `Issued`,
    /// or `AlreadySigned` with the request left pending (as the two steps apart would).
    Stored(SubmitOutcome, IssueOutcome),
}

/// Result of [`CertificateStore::renew`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewOutcome {
    /// The new certificate replaced the old one, which is revoked as `superseded`.
    Renewed,
    /// The name's current certificate is not the one presented (gone, revoked, or
    /// already renewed).
    NotCurrent,
    /// The new serial is already used in this environment.
    SerialTaken,
}

/// Result of [`CertificateStore::revoke`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now: the serial that is now on the revocation list.
    Revoked {
        /// The revoked certificate's serial.
        serial: Vec<u8>,
    },
    /// It was revoked before; nothing changed.
    AlreadyRevoked,
    /// No certificate.
    NotFound,
}

/// Result of [`CertificateStore::clean`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanOutcome {
    /// Forgotten; `revoked` is the serial of a valid certificate revoked on the way (so
    /// that the CRL appends it without re-reading every revocation).
    Cleaned {
        /// The serial revoked first, if the certificate was valid.
        revoked: Option<Vec<u8>>,
    },
    /// Neither certificate nor request.
    NotFound,
}

/// Everything one environment holds, for comparing stores in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSnapshot {
    /// Requests by certname.
    pub requests: BTreeMap<String, RequestRecord>,
    /// Certificates by certname.
    pub certificates: BTreeMap<String, CertRecord>,
    /// Serial index.
    pub serials: BTreeMap<Vec<u8>, String>,
    /// Revoked serials, in serial order.
    pub revoked: Vec<RevokedSerial>,
    /// The cached CRL.
    pub crl: Option<CrlRecord>,
    /// The due-time index of orders: (when free to work, Unix ms; certname).
    pub orders_due: BTreeSet<(i64, String)>,
}

/// Result of [`RequestStore::due_orders`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueOrders {
    /// Requests whose order is free to work, earliest first.
    pub due: Vec<(Certname, RequestRecord)>,
    /// When the first order not returned becomes free (Unix ms).
    pub next_ms: Option<i64>,
}

/// Everything a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The root CA's CRL.
    pub root_crl: Option<CrlRecord>,
    /// Environment records.
    pub environments: BTreeMap<String, EnvRecord>,
    /// Per-environment contents (environments with no content are left out).
    pub envs: BTreeMap<String, EnvSnapshot>,
    /// The audit log.
    pub audit: Vec<AuditEvent>,
}

/// Environment records.
pub trait EnvironmentStore: Send + Sync {
    /// Creates or updates an environment record.
    fn put_environment(
        &self,
        env: &EnvName,
        rec: &EnvRecord,
        at: UnixTime,
    ) -> Result<(), StoreError>;

    /// All environment records, by name.
    fn environments(&self) -> Result<Vec<(EnvName, EnvRecord)>, StoreError>;
}

/// Requests, their orders, and the due-time index of orders.
pub trait RequestStore: Send + Sync {
    /// The request for `name`, in any state.
    fn request(&self, env: &EnvName, name: &Certname) -> Result<Option<RequestRecord>, StoreError>;

    /// Stores a new `Requested` request, replacing any earlier one unless `rule` says
    /// otherwise (`CertificateExists`, `RequestPending`; nothing written then).
    fn submit_request(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
    ) -> Result<SubmitOutcome, StoreError>;

    /// Marks a request `Invalid` with `reason`; false when there is none.
    fn reject_request(
        &self,
        env: &EnvName,
        name: &Certname,
        reason: &str,
        at: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Replaces the request of `name` with `new` if it is still exactly `expected`
    /// (compare-and-set: orders, leases), appending `event` (kind and detail) to the audit
    /// log; false, with nothing written, when it changed meanwhile.
    fn update_request(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        new: &RequestRecord,
        event: Option<(EventKind, Option<String>)>,
        at: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Removes a request in any state; false when there is none.
    fn cancel_request(
        &self,
        env: &EnvName,
        name: &Certname,
        at: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Requests in name order, starting after `after`, at most `limit`.
    fn requests(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, RequestRecord)>, StoreError>;

    /// How many requests (in any state) `env` holds, counted up to `up_to` at most.
    fn count_requests(&self, env: &EnvName, up_to: usize) -> Result<usize, StoreError> {
        const PAGE: usize = 1024;
        let mut n = 0;
        let mut after: Option<Certname> = None;
        while n < up_to {
            let page = self.requests(env, after.as_ref().map(Certname::as_str), PAGE)?;
            n += page.len();
            match page.into_iter().last() {
                Some((name, _)) if n < up_to => after = Some(name),
                _ => break,
            }
        }
        Ok(n.min(up_to))
    }

    /// Pending requests whose order is free to work by `until_ms` (due, and not leased
    /// past it), earliest first, after the index entry `after` (a page's last: its time
    /// and certname), at most `limit`, read through the environment's due-time index:
    /// the cost follows the orders returned, not the requests held.
    fn due_orders(
        &self,
        env: &EnvName,
        until_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<DueOrders, StoreError>;
}

/// Certificates, their serials and revocations.
pub trait CertificateStore: Send + Sync {
    /// Atomically: checks that the pending request is still exactly `expected` (the one
    /// the signer read or leased: compare-and-set, as [`RequestStore::update_request`];
    /// `RequestChanged` when it is not), removes it, stores the certificate and indexes
    /// its serial.
    fn issue(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        cert: &CertRecord,
    ) -> Result<IssueOutcome, StoreError>;

    /// Atomically, [`RequestStore::submit_request`] followed by [`CertificateStore::issue`] of the same CSR
    /// with `cert` (an autosigned submission: one transaction instead of two). Checks the
    /// serial first, so that `SerialTaken` writes nothing. Returns once what it stored is
    /// durable, as after [`Store::flush`] (so that concurrent calls can share one commit
    /// and one flush); an error when it could not be made so.
    fn submit_issued(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        cert: &CertRecord,
    ) -> Result<SubmitIssueOutcome, StoreError>;

    /// [`CertificateStore::submit_issued`] without blocking the caller where the store commits on a
    /// thread of its own: the outcome arrives, durable, through the [`PendingIssue`]
    /// (an HTTP handler awaits it instead of holding a thread through the commit). By
    /// default the work is done at once, in the call.
    fn submit_issued_pending(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        cert: &CertRecord,
    ) -> PendingIssue {
        PendingIssue::ready(self.submit_issued(env, name, rec, rule, cert))
    }

    /// Atomically: checks that `name`'s current certificate has `old_serial` and is not
    /// revoked, revokes it (`superseded`, at `cert.issued_at`), replaces it with `cert`,
    /// and indexes the new serial. So a name never has two valid certificates, and
    /// revoking or cleaning its current one leaves none.
    fn renew(
        &self,
        env: &EnvName,
        name: &Certname,
        old_serial: &[u8],
        cert: &CertRecord,
    ) -> Result<RenewOutcome, StoreError>;

    /// The certificate for `name`.
    fn certificate(&self, env: &EnvName, name: &Certname)
        -> Result<Option<CertRecord>, StoreError>;

    /// Which certname a serial was issued to (kept after a clean).
    fn certname_by_serial(
        &self,
        env: &EnvName,
        serial: &[u8],
    ) -> Result<Option<Certname>, StoreError>;

    /// Revokes the certificate of `name`.
    fn revoke(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<RevokeOutcome, StoreError>;

    /// Revokes the certificate of `name` if it is valid, then forgets it and any request.
    /// The serial index and the revocation stay.
    fn clean(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<CleanOutcome, StoreError>;

    /// Puppet's bulk clean, in one transaction: each name that has a certificate is
    /// cleaned as by [`CertificateStore::clean`]; a name without one is left alone, its request too,
    /// and answers `NotFound`. A name given twice is cleaned once. Callers keep `names`
    /// to a few hundred (the transaction is held in memory).
    fn clean_certified(
        &self,
        env: &EnvName,
        names: &[Certname],
        revocation: Revocation,
    ) -> Result<Vec<CleanOutcome>, StoreError>;

    /// Certificates in name order, starting after `after`, at most `limit`: their
    /// summaries (no DER), which is what listings need.
    fn certificates(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, CertSummary)>, StoreError>;

    /// Every revoked serial of the environment, in serial order.
    fn revoked_serials(&self, env: &EnvName) -> Result<Vec<RevokedSerial>, StoreError>;

    /// The revoked serials that were issued to `name` (what another node's revocation,
    /// renewal or clean of it added). By default read through every revocation: stores
    /// that serve several nodes index it.
    fn revoked_serials_of(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Result<Vec<RevokedSerial>, StoreError> {
        let mut out = Vec::new();
        for r in self.revoked_serials(env)? {
            if self.certname_by_serial(env, &r.serial)?.as_ref() == Some(name) {
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// The cached CRLs.
pub trait CrlStore: Send + Sync {
    /// The cached CRL.
    fn crl(&self, env: &EnvName) -> Result<Option<CrlRecord>, StoreError>;

    /// Replaces the cached CRL if the stored one has a lower number (or there is none);
    /// false, nothing written, when its number is as high (another node took it).
    fn put_crl(&self, env: &EnvName, crl: &CrlRecord) -> Result<bool, StoreError>;

    /// The root CA's CRL (it lists revoked issuing CAs; Puppet agents need one for every
    /// CA of the chain).
    fn root_crl(&self) -> Result<Option<CrlRecord>, StoreError>;

    /// Replaces the root CA's CRL.
    fn put_root_crl(&self, crl: &CrlRecord) -> Result<(), StoreError>;
}

/// The audit log.
pub trait AuditLog: Send + Sync {
    /// Audit events with id greater than `after`, at most `limit`.
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;

    /// Environment `env`'s audit events with id greater than `after`, at most `limit`.
    /// A store may keep an index by environment (PostgreSQL does), so that reading a
    /// quiet environment's events costs what they are, not the whole log; this default
    /// reads the log (sled, where the index cost 4% of issuance: `manual::postgres`).
    fn audit_of(
        &self,
        env: &EnvName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let want = env.as_str();
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            let page = self.audit(cursor, 1024)?;
            let Some(last) = page.last() else { break };
            cursor = last.id;
            out.extend(
                page.into_iter()
                    .filter(|e| e.env == want)
                    .take(limit - out.len()),
            );
        }
        Ok(out)
    }

    /// The id of the newest audit event (0 when there is none).
    fn last_event_id(&self) -> Result<u64, StoreError>;
}

/// What nodes sharing one store need of it: whether it is shared, a hint that another
/// node changed something, heartbeats and leases. A store that serves one process keeps
/// the defaults: not shared, every lease granted, only this node seen.
pub trait NodeStore: Send + Sync {
    /// Whether other processes (the other nodes of a cluster) may write this store while
    /// this one does; then the change feed follows what they do.
    fn shared(&self) -> bool {
        false
    }

    /// Whether another process (another node) uses the store now, as last seen.
    fn others_connected(&self) -> bool {
        false
    }

    /// Waits until another process may have changed the store since the count `seen`
    /// was returned, or `timeout` has passed; the count now. A hint that wakes the
    /// change feed early (the feed reads the audit log either way); by default, only the
    /// wait.
    fn wait_for_change(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        std::thread::sleep(timeout);
        seen
    }

    /// Records this node's heartbeat and returns every node seen within `recent_ms`
    /// (by the store's clock where it has one), this one included. A store that serves
    /// one process only knows this one.
    fn heartbeat(&self, node: &NodeRecord, recent_ms: i64) -> Result<Vec<NodeRecord>, StoreError> {
        let _ = recent_ms;
        Ok(vec![node.clone()])
    }

    /// Gives the lease `name` to `holder` for `ttl_ms` (by the store's clock) when it is
    /// free, expired or `holder`'s already (renewed); a new lease starts at `cursor`.
    /// `None` when another node holds it. A store that serves one process only grants
    /// every lease and keeps no cursor (its work starts where the caller says).
    fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        cursor: u64,
    ) -> Result<Option<Lease>, StoreError> {
        let _ = ttl_ms;
        Ok(Some(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            until_ms: i64::MAX,
            cursor,
        }))
    }

    /// Moves the cursor of `holder`'s lease `name` to `cursor`, fenced: false, nothing
    /// written, when `holder` no longer holds it (expired, or taken over).
    fn advance_lease(&self, name: &str, holder: &str, cursor: u64) -> Result<bool, StoreError> {
        let _ = (name, holder, cursor);
        Ok(true)
    }

    /// Every lease, for `/status` (none where leases are not kept).
    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        Ok(Vec::new())
    }
}

/// The persistence interface: every capability, plus durability and health.
/// Methods are synchronous (sled is); async callers run them on a blocking
/// thread. Mutations are atomic; [`Store::flush`] makes them durable.
pub trait Store:
    EnvironmentStore + RequestStore + CertificateStore + CrlStore + AuditLog + NodeStore + Send + Sync
{
    /// Makes every change so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// `Ok` when the store answers reads and takes writes; else why not.
    fn health(&self) -> Result<(), String>;

    /// The request of `name`, and whether `name` has a certificate: what a submission
    /// checks before it signs (one round trip where the store is across a network).
    fn request_and_has_certificate(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Result<(Option<RequestRecord>, bool), StoreError> {
        Ok((
            self.request(env, name)?,
            self.certificate(env, name)?.is_some(),
        ))
    }

    /// Whether a read is answered from this process (memory or local disk, in
    /// microseconds), so that it may run on an HTTP worker thread; false for a store
    /// across the network, whose reads go to the blocking pool.
    fn local_reads(&self) -> bool {
        true
    }

    /// [`CertificateStore::certificate`] if this process can answer it without waiting
    /// on the network (where reads are local, or from a cache); `None` when only a read
    /// that may block can tell. What `GET certificate/{name}` tries on an HTTP worker
    /// thread first.
    fn certificate_now(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Option<Result<Option<CertRecord>, StoreError>> {
        self.local_reads().then(|| self.certificate(env, name))
    }

    /// Bytes the store takes on disk (0 for a store in memory).
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Everything, for tests and diagnostics, and for `certd store copy` (from
    /// PostgreSQL: one repeatable-read snapshot).
    fn snapshot(&self) -> Result<Snapshot, StoreError>;

    /// Writes `snapshot` into this store as it is (audit ids included) and makes it
    /// durable; refused, nothing written, unless the store is empty. For `certd store
    /// copy`.
    fn import(&self, snapshot: &Snapshot) -> Result<(), StoreError>;
}
