//! Certificate caches beside other nodes: read leases, the follower, and the writers'
//! fence.
//!
//! A store serves certificates from its cache (`cache.rs`) only while it holds a read
//! lease: its row in `certd_readers`, with an expiry by the database's clock, the audit
//! id up to which it has applied what others wrote, and the backend of its watch
//! connection. The watch thread (`peers.rs`) follows the audit log: for every event that
//! may change a certificate row it forgets the name, then reports the id it reached and
//! renews the lease, at least every [`RENEW`] and at once after a notification.
//!
//! A write that changed a certificate row another node may hold (a revocation, a renewal,
//! a clean, an issue in place of a revoked certificate) makes its last audit id the
//! name's fence (`certd_cert_fences`; and the last fence of all, in the audit head),
//! notifies at its commit and, before anyone hears of it, waits at the [`Fence`] until
//! every other live reader has applied that id. Every write or read that looks at a
//! name's certificate row waits for the name's fence, since its outcome may rest on that
//! change (a revocation found done, a name found free), and a listing of certificates
//! for the last fence of all, and a page of events for the fenced ones in it: usually at
//! once, as the fence already saw it applied. Waits are on the caller's thread (a batch's
//! on a thread of its own), never on a connection's. A reader counts while its lease runs
//! and its watch backend lives: a reader killed takes its backend with it, and writers
//! stop waiting for it at once (a lone node that crashed holds nobody back). A reader
//! whose lease ran out serves nothing from its cache, and empties it before it serves
//! again under a new lease, so what a fence did not wait for cannot be served. A reader
//! alone serves on without its connection, for the rest of its lease (below).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cache::CertCache;
use super::lanes::{store_error, Conn, Connector};
use crate::store::StoreError;

/// How long a lease runs, by the database's clock, while other readers are seen: the
/// longest a node cut off from the database (its backend alive) holds back the others'
/// fenced writes. It also bounds how late a renewal may come before the cache stops
/// serving. On 2 cores saturated by 3 nodes and a benchmark, renewals due every 250 ms
/// came 350-770 ms apart (one statement took 480 ms); with 1 s leases (750 ms served)
/// the caches lapsed about once a second, and each lapse emptied a cache and sent GETs
/// to a database as stalled (GET max 190-750 ms). At 2 s: 1 lapse in 5 runs, GET max 14 ms.
pub(super) const TTL_SHARED: Duration = Duration::from_secs(2);

/// How long it runs for a reader that saw no other: it keeps serving that long without
/// the database (issue 22's "reads keep answering").
pub(super) const TTL_ALONE: Duration = Duration::from_secs(30);

/// How often the lease is renewed (and the applied id reported) at the least.
pub(super) const RENEW: Duration = Duration::from_millis(250);

/// How long writers ask the fence again while a reader is behind.
const ASK_EVERY: Duration = Duration::from_millis(2);

/// How long the fence waits before it connects again after a failure.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// The share of a lease this process serves from its cache: the rest covers the two
/// clocks running at different rates (the lease ends by the database's clock, service
/// by this process's).
fn serving(ttl: Duration) -> Duration {
    ttl * 3 / 4
}

/// The kinds of the events that may change a certificate row.
const CHANGES_CERTS: [&str; 4] = ["issued", "renewed", "revoked", "cleaned"];

const HEAD_SQL: &str = "SELECT last FROM certd_audit_head";

const CHANGED_SQL: &str = "SELECT id, env, certname FROM certd_audit
     WHERE id > $1 AND id <= $2 AND kind = ANY($3) ORDER BY id";

/// Renews this reader's lease and counts the other live readers.
const RENEW_SQL: &str =
    "WITH now AS (SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS ms),
     mine AS (
         INSERT INTO certd_readers (reader, until_ms, applied, pid)
         SELECT $1, now.ms + $2, $3, pg_backend_pid() FROM now
         ON CONFLICT (reader) DO UPDATE
         SET until_ms = EXCLUDED.until_ms, applied = EXCLUDED.applied, pid = EXCLUDED.pid)
     SELECT count(*) FROM certd_readers r, now
     WHERE r.reader <> $1 AND r.until_ms > now.ms
       AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.pid)";

/// Leases that ended an hour ago or more (readers gone for good).
const PRUNE_SQL: &str = "DELETE FROM certd_readers
     WHERE until_ms < (extract(epoch from clock_timestamp()) * 1000)::bigint - 3600000";

const RELEASE_SQL: &str = "DELETE FROM certd_readers WHERE reader = $1";

/// The least id the other live readers have applied (`$2` when there is none): those
/// whose lease runs and whose watch backend lives.
const BEHIND_SQL: &str = "SELECT coalesce(min(r.applied), $2) FROM certd_readers r
     WHERE r.reader <> $1
       AND r.until_ms > (extract(epoch from clock_timestamp()) * 1000)::bigint
       AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.pid)";

/// This process's reader: its name, what it has applied, its lease.
pub(super) struct Follower {
    pub(super) me: String,
    applied: Option<u64>,
    renewed: Option<Instant>,
    /// Whether the last renewal saw other readers.
    others: bool,
}

impl Follower {
    pub(super) fn new(me: String) -> Follower {
        Follower {
            me,
            applied: None,
            renewed: None,
            others: true,
        }
    }

    /// Follows the log and renews the lease (reporting the id followed) when due, or
    /// `now` (after a notification: a writer may be waiting at its fence); an error
    /// means the connection is no good.
    pub(super) fn step(
        &mut self,
        conn: &mut Conn,
        cache: &CertCache,
        now: bool,
    ) -> Result<(), StoreError> {
        self.follow(conn, cache)?;
        let due = self.renewed.is_none_or(|t| t.elapsed() >= RENEW);
        if due || now {
            self.renew(conn, cache)?;
        }
        Ok(())
    }

    /// Forgets the names of the certificate changes after what was applied. The first
    /// call only learns where the log is (the cache holds nothing yet that a change
    /// before could have touched).
    fn follow(&mut self, conn: &mut Conn, cache: &CertCache) -> Result<(), StoreError> {
        let head: i64 = conn
            .client
            .query_one(HEAD_SQL, &[])
            .map_err(store_error)?
            .get(0);
        let head = head.max(0) as u64;
        let Some(applied) = self.applied.filter(|a| *a <= head) else {
            if self.applied.is_some() {
                // The log went back (a restore, a failover that lost commits): what was
                // followed no longer says what the cache holds.
                cache.clear(None);
            } else {
                let _ = conn.client.execute(PRUNE_SQL, &[]);
            }
            self.applied = Some(head);
            return Ok(());
        };
        if applied == head {
            return Ok(());
        }
        let kinds: Vec<&str> = CHANGES_CERTS.to_vec();
        let rows = conn
            .client
            .query(CHANGED_SQL, &[&(applied as i64), &(head as i64), &kinds])
            .map_err(store_error)?;
        cache.follow(
            rows.iter()
                .map(|r| (r.get::<_, i64>(0).max(0) as u64, r.get(1), r.get(2))),
            head,
        );
        self.applied = Some(head);
        Ok(())
    }

    /// Reports the applied id and extends the lease; the cache serves until a share of
    /// it has passed.
    fn renew(&mut self, conn: &mut Conn, cache: &CertCache) -> Result<(), StoreError> {
        let Some(applied) = self.applied else {
            return Ok(());
        };
        let ttl = if self.others { TTL_SHARED } else { TTL_ALONE };
        let started = Instant::now();
        let others: i64 = conn
            .client
            .query_one(
                RENEW_SQL,
                &[&self.me, &(ttl.as_millis() as i64), &(applied as i64)],
            )
            .map_err(store_error)?
            .get(0);
        self.renewed = Some(started);
        cache.lease(started + serving(ttl));
        if (others > 0) != self.others {
            if others > 0 {
                tracing::info!(
                    others,
                    "other certd nodes cache certificates of this database: writes that change one wait for them"
                );
            }
            self.others = others > 0;
            // Shorter at once when another came (a writer beside this node waits for
            // the lease while this node cannot be reached).
            if self.others {
                return self.renew(conn, cache);
            }
        }
        Ok(())
    }

    /// The watch connection was lost: beside others the cache stops serving now (its
    /// lease can no longer be told from a dead node's); alone, it serves out its lease.
    pub(super) fn lost(&mut self, cache: &CertCache) {
        tracing::debug!(others = self.others, "watch connection lost");
        if self.others {
            cache.lapse();
        }
    }

    /// Gives the lease back (a clean stop): writers stop waiting for this node at once.
    pub(super) fn release(&self, conn: &mut Conn) {
        let _ = conn.client.execute(RELEASE_SQL, &[&self.me]);
    }
}

/// The writers' fence: a write waits here until the other readers have applied it. One
/// thread asks the database for everyone waiting, on a connection of its own.
pub(super) struct Fence {
    shared: Arc<FenceShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct FenceState {
    /// The highest id a writer waits for.
    wanted: u64,
    /// Every other live reader had applied this much at the last answer.
    cleared: u64,
    /// Writers waiting now.
    waiting: usize,
    stop: bool,
}

struct FenceShared {
    state: Mutex<FenceState>,
    signal: Condvar,
}

impl FenceShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Fence {
    pub(super) fn start(connector: Connector, me: String) -> Fence {
        let shared = Arc::new(FenceShared {
            state: Mutex::new(FenceState::default()),
            signal: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("certd-pg-fence".into())
            .spawn(move || ask(&s, &connector, &me))
            .ok();
        Fence { shared, thread }
    }

    /// Whether every other live reader had applied `id` at the last answer (0: always).
    pub(super) fn passed(&self, id: u64) -> bool {
        self.shared.lock().cleared >= id
    }

    /// Waits until every other live reader has applied `id` (none for 0), for at most
    /// `limit`;
    /// `Unavailable` when that could not be seen (the write is committed, but its
    /// outcome may not be visible everywhere yet).
    pub(super) fn wait(&self, id: u64, limit: Duration) -> Result<(), StoreError> {
        let until = Instant::now() + limit;
        let mut st = self.shared.lock();
        if st.cleared >= id {
            return Ok(());
        }
        st.wanted = st.wanted.max(id);
        st.waiting += 1;
        self.shared.signal.notify_all();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if st.cleared >= id || left.is_zero() || st.stop {
                st.waiting -= 1;
                if st.cleared >= id {
                    return Ok(());
                }
                return Err(StoreError::Unavailable(
                    "the change is stored, but another node has not confirmed it yet".into(),
                ));
            }
            st = self
                .shared
                .signal
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The fence's thread: while a writer waits, asks how far the other readers are.
fn ask(shared: &FenceShared, connector: &Connector, me: &str) {
    let mut conn: Option<Conn> = None;
    loop {
        let wanted = {
            let mut st = shared.lock();
            while !st.stop && (st.waiting == 0 || st.wanted <= st.cleared) {
                st = shared.signal.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.stop {
                return;
            }
            st.wanted
        };
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = connector.connect_as("certd fence").ok();
        }
        let answer = conn.as_mut().map(|c| {
            c.client
                .query_one(BEHIND_SQL, &[&me, &(wanted as i64)])
                .map(|r| r.get::<_, i64>(0).max(0) as u64)
        });
        let mut st = shared.lock();
        match answer {
            Some(Ok(least)) => {
                st.cleared = st.cleared.max(least.min(wanted));
                shared.signal.notify_all();
                if st.cleared >= st.wanted {
                    continue;
                }
            }
            _ => {
                conn = None;
                drop(st);
                // Not every 2 ms against a database that refuses.
                std::thread::sleep(RETRY_AFTER);
                continue;
            }
        }
        drop(st);
        std::thread::sleep(ASK_EVERY);
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.signal.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
