//! Whether another process uses the database as a certd store: every `PgStore` holds a
//! shared advisory lock on a connection of its own, and counts the holders every
//! [`EVERY`]. The certificate cache is right only while this process sees every write
//! (`cache.rs`); with another holder (a second node, which is not supported yet, or a
//! `certd store copy` reading) it is turned off within one interval, and on again once
//! this process is alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::cache::CertCache;
use super::lanes::{Conn, Connector};

/// How often the holders are counted.
pub(super) const EVERY: Duration = Duration::from_millis(500);

/// The advisory lock every certd store holds shared ("certd" and a 2; the migrations'
/// exclusive lock is the 1).
const KEY: i64 = 0x6365_7274_6400_0002;

const NOT_ALONE: &str = "another certd uses this database: the certificate cache is off until it is gone (several nodes are not supported yet)";

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

/// Takes the lock and counts once (so that the cache is right from the first request),
/// then keeps counting on a thread.
pub(super) fn watch(connector: Connector, cache: Arc<CertCache>) -> Peers {
    let mut conn = connector.connect().ok();
    let mut alone = conn.as_mut().map(take_and_count).unwrap_or(None);
    if alone == Some(false) {
        tracing::warn!("{NOT_ALONE}");
    }
    cache.set_alone(alone == Some(true));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("certd-pg-peers".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::park_timeout(EVERY);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
                        // Lost: while it is away the cache keeps serving what it holds
                        // (writes fail anyway); once back, what others may have written
                        // meanwhile is unknown, so it starts empty.
                        conn = connector.connect().ok();
                        if conn.is_none() {
                            continue;
                        }
                        cache.clear(None);
                    }
                    let now = conn.as_mut().and_then(take_and_count);
                    if now.is_some() && now != alone {
                        if now == Some(false) {
                            tracing::warn!("{NOT_ALONE}");
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

/// Holds the lock (taken again on a new connection) and says whether this is the only
/// holder; `None` when it cannot tell.
fn take_and_count(conn: &mut Conn) -> Option<bool> {
    let (hi, lo) = (KEY >> 32, KEY & 0xffff_ffff);
    let mine = conn.client.query_opt(MINE_SQL, &[&hi, &lo]).ok()?.is_some();
    if !mine {
        conn.client.query_one(TAKE_SQL, &[&KEY]).ok()?;
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
