//! The watch connection: one per store, on a thread of its own. It listens on
//! [`CHANNEL`] to wake the change feed ([`Changes`]) and the cache's follower
//! (`readers.rs`), which it steps at least every [`STEP`]. And it says whether another
//! process uses the database as a certd store: every `PgStore` holds a shared advisory
//! lock on this connection, and the holders are counted every [`EVERY`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use super::cache::CertCache;
use super::lanes::{Conn, Connector};
use super::readers::Follower;

/// How often the holders are counted (and a lost connection made again).
pub(super) const EVERY: Duration = Duration::from_millis(500);

/// How long the thread waits for a notification before it steps the follower anyway.
const STEP: Duration = Duration::from_millis(100);

/// The advisory lock every certd store holds shared ("certd" and a 2; the migrations'
/// exclusive lock is the 1).
const KEY: i64 = 0x6365_7274_6400_0002;

const TAKE_SQL: &str = "SELECT pg_advisory_lock_shared($1)";
const MINE_SQL: &str = "SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1
       AND classid::bigint = $1 AND objid::bigint = $2";
const COUNT_SQL: &str = "SELECT count(*) FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 1
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND classid::bigint = $1 AND objid::bigint = $2";

/// The thread; stopped when dropped (giving its read lease back).
pub(super) struct Peers {
    stop: Arc<AtomicBool>,
    others: Arc<AtomicBool>,
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

/// Takes the lock, counts, follows and takes a read lease once (so that the cache
/// serves from the first request), then goes on on a thread.
pub(super) fn watch(
    connector: Connector,
    cache: Arc<CertCache>,
    changes: Arc<Changes>,
    mut follower: Follower,
) -> Peers {
    let others = Arc::new(AtomicBool::new(false));
    let mut conn = connect(&connector);
    let mut counted: Option<Instant> = Some(Instant::now());
    if let Some(c) = conn.as_mut() {
        let alone = take_and_count(c);
        others.store(alone == Some(false), Ordering::Relaxed);
        if follower.step(c, &cache, true).is_err() {
            conn = None;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (stop, others) = (stop.clone(), others.clone());
        std::thread::Builder::new()
            .name("certd-pg-watch".into())
            .spawn(move || {
                let mut tried = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    let heard = listen(&mut conn, STEP, &stop);
                    if heard == Some(true) {
                        changes.bump();
                    }
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if heard.is_none() || conn.as_ref().is_none_or(|c| c.client.is_closed()) {
                        if conn.take().is_some() {
                            follower.lost(&cache);
                        }
                        if tried.elapsed() < EVERY {
                            std::thread::park_timeout(STEP);
                            continue;
                        }
                        tried = Instant::now();
                        conn = connect(&connector);
                        let Some(c) = conn.as_mut() else { continue };
                        // Notifications sent while it was away are lost: look now.
                        changes.bump();
                        counted = None;
                        if take_and_count(c).is_none() {
                            continue;
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    if follower.step(c, &cache, heard == Some(true)).is_err() {
                        continue;
                    }
                    if counted.is_none_or(|t| t.elapsed() >= EVERY) {
                        counted = Some(Instant::now());
                        if let Some(alone) = take_and_count(c) {
                            others.store(!alone, Ordering::Relaxed);
                        }
                    }
                }
                if let Some(c) = conn.as_mut() {
                    follower.release(c);
                }
            })
            .ok()
    };
    Peers {
        stop,
        others,
        thread,
    }
}

impl Peers {
    /// Whether the last count found other processes using the database as a store.
    pub(super) fn others(&self) -> bool {
        self.others.load(Ordering::Relaxed)
    }

    /// What [`Peers::others`] reads, for a thread of the store to read as it goes.
    pub(super) fn others_flag(&self) -> Arc<AtomicBool> {
        self.others.clone()
    }
}

/// Opens the watch connection. Its only writes are the read lease's renewals, which
/// need not wait for the WAL to reach the disk: one lost in a crash of the database
/// only shortens the lease in the database, and the crash ends this connection, which
/// (beside other nodes) stops the cache at once.
fn connect(connector: &Connector) -> Option<Conn> {
    let mut conn = connector.connect_as(&watch_name()).ok()?;
    conn.client
        .batch_execute("SET synchronous_commit = off")
        .ok()?;
    Some(conn)
}

/// The watch connection's `application_name`: with the process id, so that an operator
/// (or a test) can tell the nodes' connections apart.
fn watch_name() -> String {
    format!("certd watch {}", std::process::id())
}

/// Waits up to `span` for notifications on `conn`, returning as soon as some came
/// (taking those that came with them): whether any did; `None` when the connection is
/// gone.
fn listen(conn: &mut Option<Conn>, span: Duration, stop: &AtomicBool) -> Option<bool> {
    let c = conn.as_mut().filter(|c| !c.client.is_closed())?;
    if stop.load(Ordering::SeqCst) {
        return Some(false);
    }
    let mut notes = c.client.notifications();
    let got = match notes.timeout_iter(span).next() {
        Ok(Some(_)) => true,
        Err(_) => return None,
        Ok(None) => false,
    };
    while let Ok(Some(_)) = notes.iter().next() {}
    Some(got)
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
