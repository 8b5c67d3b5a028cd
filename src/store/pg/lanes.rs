//! Connections and the threads that own them.
//!
//! The sync `postgres` client drives its connection with a runtime of its own and may not
//! be called from inside another (an actix worker thread is one). So each connection lives
//! on a thread of its own (a lane); a call hands its work to a free lane and waits for the
//! answer on a plain channel, from any thread. A lane whose connection broke opens a new
//! one for its next job, so certd reconnects by itself once the database is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Statement};
use postgres_openssl::MakeTlsConnector;

use crate::store::StoreError;

/// One open connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) stmts: HashMap<&'static str, Statement>,
}

/// Opens connections: the parsed configuration, the TLS connector, and how to name the
/// server in messages (host, port, database; never the password).
#[derive(Clone)]
pub(super) struct Connector {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: MakeTlsConnector,
    pub(super) target: String,
}

impl Connector {
    pub(super) fn connect(&self) -> Result<Conn, postgres::Error> {
        self.connect_as("certd")
    }

    /// A connection named `name` in `pg_stat_activity` (`application_name`).
    pub(super) fn connect_as(&self, name: &str) -> Result<Conn, postgres::Error> {
        let mut config = postgres::Config::from(self.config.clone());
        config.application_name(name);
        let client = config.connect(self.tls.clone())?;
        Ok(Conn {
            client,
            stmts: HashMap::new(),
        })
    }
}

type Run = Box<dyn FnOnce(Result<&mut Conn, StoreError>) + Send>;

/// A job's claim: a lane starts it only if its caller has not given up on it, and a
/// caller gives up only on a job no lane has started, so that a caller told
/// "unavailable" knows nothing of its call was done.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

struct Job {
    claim: Arc<std::sync::atomic::AtomicU8>,
    run: Run,
}

/// The lanes: a queue of jobs and the threads that take them.
pub(super) struct Lanes {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// How long a caller waits for an answer before it says the store is unavailable.
    wait: Duration,
    /// Whether the last attempt to reach the database worked.
    pub(super) up: Arc<AtomicBool>,
}

impl Lanes {
    pub(super) fn start(connector: Connector, count: usize, wait: Duration) -> Lanes {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let up = Arc::new(AtomicBool::new(true));
        let threads = (0..count)
            .map(|i| {
                let (rx, connector, up) = (rx.clone(), connector.clone(), up.clone());
                std::thread::Builder::new()
                    .name(format!("certd-pg-{i}"))
                    .spawn(move || lane(&rx, &connector, &up))
            })
            .filter_map(Result::ok)
            .collect();
        Lanes {
            queue: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            wait,
            up,
        }
    }

    /// Runs `f` on a lane's connection and returns its answer; `Unavailable` when no
    /// connection could be opened or no answer came within the wait.
    pub(super) fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
    {
        self.call_within(f, Some(self.wait))
    }

    /// [`Lanes::call`] for work of many statements (a snapshot, an import): the caller
    /// waits as long as the lane works; each statement is still bounded by the server's
    /// statement timeout.
    pub(super) fn call_unbounded<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
    {
        self.call_within(f, None)
    }

    fn call_within<R, F>(&self, f: F, wait: Option<Duration>) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let claim = Arc::new(std::sync::atomic::AtomicU8::new(QUEUED));
        let job = Job {
            claim: claim.clone(),
            run: Box::new(move |conn| {
                let _ = tx.send(conn.and_then(f));
            }),
        };
        {
            let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let Some(q) = queue.as_ref() else {
                return Err(StoreError::Unavailable("the store is closed".into()));
            };
            q.send(job)
                .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        }
        let gone = || StoreError::Unavailable("the store is closed".into());
        let Some(w) = wait else {
            return rx.recv().unwrap_or_else(|_| Err(gone()));
        };
        match rx.recv_timeout(w) {
            Ok(r) => r,
            Err(_) => {
                let abandoned = claim
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                if abandoned {
                    Err(StoreError::Unavailable(
                        "the database did not answer in time".into(),
                    ))
                } else {
                    // Under way: its outcome is what happened (the server's statement,
                    // lock and TCP timeouts bound it).
                    rx.recv().unwrap_or_else(|_| Err(gone()))
                }
            }
        }
    }

    /// Stops taking jobs and joins the lanes (each finishes the job it has).
    pub(super) fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.close();
    }
}

fn lane(rx: &Mutex<mpsc::Receiver<Job>>, connector: &Connector, up: &AtomicBool) {
    let mut conn: Option<Conn> = None;
    loop {
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let claimed = job
            .claim
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !claimed {
            continue;
        }
        let job = job.run;
        if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            conn = None;
        }
        if conn.is_none() {
            match connector.connect() {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    up.store(false, Ordering::Relaxed);
                    tracing::warn!(target = %connector.target, error = %e, "cannot connect to the database");
                    job(Err(unavailable(&e)));
                    continue;
                }
            }
        }
        if let Some(c) = conn.as_mut() {
            job(Ok(c));
            let closed = c.client.is_closed();
            up.store(!closed, Ordering::Relaxed);
            if closed {
                conn = None;
            }
        }
    }
}

/// A store error for a client error: the database unreachable, restarting, read-only,
/// out of resources, a statement canceled by its timeout, or writers that kept colliding
/// is `Unavailable` (503, try again); anything else is an engine error.
pub(super) fn store_error(e: postgres::Error) -> StoreError {
    match e.code() {
        Some(code) if is_unavailable(code) => unavailable(&e),
        // The server's message says what (a constraint, a permission, a bad statement).
        Some(_) => StoreError::Engine(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        }),
        None if e.is_closed() || io_error(&e) => unavailable(&e),
        // A client-side failure (a row of the wrong type): a bug, not an outage.
        None => StoreError::Engine(e.to_string()),
    }
}

/// Whether the failure came from the connection (I/O, a timeout, a refused connect).
fn io_error(e: &postgres::Error) -> bool {
    let text = e.to_string();
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || text.starts_with("error connecting")
        || text.starts_with("error communicating")
        || text.contains("timeout")
}

fn unavailable(e: &postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("the database: {}", db.message())),
        None => StoreError::Unavailable(format!("the database cannot be reached: {e}")),
    }
}

fn is_unavailable(code: &SqlState) -> bool {
    let c = code.code();
    // 08: connection exceptions; 57: operator intervention (shutdown, canceled by the
    // statement timeout); 53: insufficient resources (disk full, too many connections);
    // 25: transaction state (a read-only standby after a failover); 40: serialization
    // failures and deadlocks left after the retries; 55P03: a lock not obtained in time.
    c.starts_with("08")
        || c.starts_with("57")
        || c.starts_with("53")
        || c.starts_with("25")
        || c.starts_with("40")
        || c == "55P03"
}

/// Whether the transaction should simply be run again (two writers collided).
pub(super) fn is_retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}
