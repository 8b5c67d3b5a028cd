//! The watch connection: whether another process uses the database as a certd store: every `PgStore` holds a
//! shared advisory lock on a connection of its own, and counts the holders every
//! [`EVERY`]. The certificate cache is right only while this process sees every write
//! (`cache.rs`); with another holder (another node, or a `certd store copy` reading) it
//! is turned off within one interval, and on again once this process is alone. A store
//! that finds others when it opens waits two intervals before it is used, so that no
//! other node's cache still holds what its first writes change. The same connection
//! listens on [`CHANNEL`], to wake the change feed ([`Changes`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use super::cache::CertCache;
use super::lanes::{Conn, Connector};

/// How often the holders are counted.
pub(super) const EVERY: Duration = Duration::from_millis(500);

/// The advisory lock every certd store holds shared ("certd" and a 2; the migrations'
/// exclusive lock is the 1).
const KEY: i64 = 0x6365_7274_6400_0002;

const NOT_ALONE: &str =
    "another certd uses this database: the certificate cache is off while it does";

const TAKE_SQL: &str = "SELECT pg_advisory_lock_shared($1)";
const MINE_SQL: &str = "SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1
       AND classid::bigint = $1 AND objid::bigint = $2";
const COUNT_SQL: &str = "SELECT count(*) FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 1
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND classid::bigint = $1 AND objid::bigint = $2";

/// The thread that counts; stopped when dropped.
pub(super) struct Peers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The notification channel every writing transaction notifies at its commit (with the
/// audit append) and the watch connection listens on.
pub(super) const CHANNEL: &str = "certd_changes";

/// Wake-ups for the change feed: a count bumped on every notification, and whenever
/// the watch connection is made again (notifications sent while it was away are lost).
/// A wake-up only says "look now": the feed reads the audit log itself and polls it
/// anyway, so a lost one costs only the wait until the next poll.
#[derive(Default)]
pub(super) struct Changes {
    count: Mutex<u64>,
    signal: Condvar,
}

impl Changes {
    fn bump(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.signal.notify_all();
    }

    /// Waits until the count is not `seen` or `timeout` has passed; the count.
    pub(super) fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let (count, _) = self
            .signal
            .wait_timeout_while(count, timeout, |c| *c == seen)
            .unwrap_or_else(|p| p.into_inner());
        *count
    }
}

/// Takes the lock and counts once (so that the cache is right from the first request),
/// then keeps counting on a thread, which also listens for changes.
pub(super) fn watch(connector: Connector, cache: Arc<CertCache>, changes: Arc<Changes>) -> Peers {
    let mut conn = connector.connect_as(&watch_name()).ok();
    let mut alone = conn.as_mut().map(take_and_count).unwrap_or(None);
    cache.set_alone(alone == Some(true));
    if alone == Some(false) {
        tracing::info!("{NOT_ALONE}");
        // The others count every EVERY: once this has passed twice, each has turned its
        // cache off, and none serves a certificate this node is about to change.
        std::thread::sleep(2 * EVERY + Duration::from_millis(100));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("certd-pg-watch".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    listen_for(&mut conn, EVERY, &stop, &changes);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
                        // Lost: while it is away the cache keeps serving what it holds
                        // (writes fail anyway); once back, what others may have written
                        // meanwhile is unknown, so it starts empty.
                        conn = connector.connect_as(&watch_name()).ok();
                        if conn.is_none() {
                            continue;
                        }
                        cache.clear(None);
                        changes.bump();
                    }
                    let now = conn.as_mut().and_then(take_and_count);
                    if now.is_some() && now != alone {
                        if now == Some(false) {
                            tracing::info!("{NOT_ALONE}");
                        }
                        cache.set_alone(now == Some(true));
                        alone = now;
                    }
                }
            })
            .ok()
    };
    Peers { stop, thread }
}

/// The watch connection's `application_name`: with the process id, so that an operator
/// (or a test) can tell the nodes' connections apart.
fn watch_name() -> String {
    format!("certd watch {}", std::process::id())
}

/// Passes `span` taking the notifications that arrive on `conn` (in steps short enough
/// to see `stop` soon), bumping `changes` for those that did.
fn listen_for(conn: &mut Option<Conn>, span: Duration, stop: &AtomicBool, changes: &Changes) {
    const STEP: Duration = Duration::from_millis(100);
    let until = Instant::now() + span;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let Some(c) = conn.as_mut().filter(|c| !c.client.is_closed()) else {
            std::thread::park_timeout(left.min(STEP));
            continue;
        };
        let mut notes = c.client.notifications();
        let mut got = match notes.timeout_iter(left.min(STEP)).next() {
            Ok(Some(_)) => true,
            Err(_) => return,
            Ok(None) => false,
        };
        // Those that came with it, without waiting.
        while let Ok(Some(_)) = notes.iter().next() {
            got = true;
        }
        if got {
            changes.bump();
        }
    }
}

/// Holds the lock (taken again on a new connection) and says whether this is the only
/// holder; `None` when it cannot tell.
fn take_and_count(conn: &mut Conn) -> Option<bool> {
    let (hi, lo) = (KEY >> 32, KEY & 0xffff_ffff);
    let mine = conn.client.query_opt(MINE_SQL, &[&hi, &lo]).ok()?.is_some();
    if !mine {
        conn.client.query_one(TAKE_SQL, &[&KEY]).ok()?;
        conn.client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .ok()?;
    }
    let held: i64 = conn.client.query_one(COUNT_SQL, &[&hi, &lo]).ok()?.get(0);
    Some(held <= 1)
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
