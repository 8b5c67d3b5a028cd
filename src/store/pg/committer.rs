//! The committer: autosigned submissions that arrive together are stored in one
//! transaction (one commit, one WAL flush), as the sled store's committer shares one
//! flush among them. Each waiter hears its own outcome once the commit is done.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::batch::{Committed, Pipe};
use super::cache::CertCache;
use super::lanes::Connector;
use super::readers::Fence;
use crate::ca::{Certname, EnvName};
use crate::store::pending::IssueFill;
use crate::store::{
    CertRecord, IssueOutcome, PendingIssue, RequestRecord, StoreError, SubmitIssueOutcome,
    SubmitRule,
};

/// Longest the committer waits for a batch to fill up to the last one's size (beside
/// other nodes, the largest of the last [`RECENT`]). Measured
/// (PG and sled in one `certd bench` invocation, medians of 3 runs): ECDSA CA, 8
/// keep-alive agents, 0 → 2,458/s, 500 µs → 2,647/s, 1 ms → 2,562/s, 1.5 ms → 2,567/s
/// (±80/s between invocations); RSA-4096 CA, new connection per agent, 0.79× sled → 0.81×,
/// 0.87×, 0.85×. Fewer, larger transactions cost the database less per certificate.
const COMPANY_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Beside other nodes, batches wait for company up to the largest of this many last
/// batches, not only the last: the nodes' batches take turns on the writers' lock
/// (`ops::LOCK_SQL`), so a batch of one holds the lock as long as a batch of three.
/// Waiting only for as many as the last batch had kept batches at 1.4 certificates on
/// average over 3 nodes (8 agents): the size fed itself. Measured, ECDSA CA, 8
/// keep-alive agents, 3 nodes against one, same invocation, medians of 3 runs:
/// 0.66–0.69× one node (3 invocations) → 0.69–0.76× (7). Alone the last batch's size
/// stands: one node waiting for the peak too measured 0–9% slower (within this
/// machine's drift, but never faster).
const RECENT: usize = 8;

/// After this many batches the connection is opened anew, so that its statements are
/// planned again for the tables as they have grown. A plan made while a table was nearly
/// empty scans it whole, and a prepared statement keeps its plan for the connection's
/// life (autoanalyze, which would replan it, waits a minute or more): issuing 8,000
/// certificates into a new database read 61 million rows of `certd_serials`.
const REPLAN_AT: [u64; 4] = [256, 1024, 4096, 16384];

/// Most submissions in one transaction.
const MAX_BATCH: usize = 256;

/// One autosigned submission.
pub(super) struct Submission {
    pub(super) env: EnvName,
    pub(super) name: Certname,
    pub(super) rec: RequestRecord,
    pub(super) rule: SubmitRule,
    pub(super) cert: CertRecord,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(Submission, IssueFill)>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    up: Arc<AtomicBool>,
}

pub(super) struct Committer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Committer {
    /// Starts the committer thread; a batch not committed within `limits.wait` (plus
    /// the time to connect) is abandoned with its connection, its waiters told
    /// unavailable. The certificates of each batch leave `cache` once its transaction
    /// has ended (fills held off for `limits.settle` when its outcome is unknown); a
    /// batch that replaced certificates other nodes may hold waits at `fence` for them.
    pub(super) fn start(
        connector: Connector,
        limits: Limits,
        cache: Arc<CertCache>,
        fence: Arc<Fence>,
        others: Arc<AtomicBool>,
    ) -> Committer {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            up: Arc::new(AtomicBool::new(true)),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("certd-pg-commit".into())
            .spawn(move || {
                // However the thread ends (a panic included), nothing queued or queued
                // later waits for it.
                let _closed = CloseOnExit(&s);
                run(&s, &connector, limits, &cache, &fence, &others)
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the committer thread");
                shared.lock().closed = true;
                None
            }
        };
        Committer {
            shared,
            thread: Mutex::new(thread),
        }
    }

    pub(super) fn up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    pub(super) fn submit(&self, s: Submission) -> PendingIssue {
        let (pending, fill) = PendingIssue::pair();
        let mut q = self.shared.lock();
        if q.closed {
            drop(q);
            fill.fill(Err(StoreError::Unavailable("the store is closed".into())));
            return pending;
        }
        q.items.push_back((s, fill));
        drop(q);
        self.shared.wake.notify_one();
        pending
    }

    /// Commits what is queued, then stops.
    pub(super) fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Closes the queue and answers what is in it, when the committer thread ends.
struct CloseOnExit<'a>(&'a Shared);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        let left: Vec<(Submission, IssueFill)> = {
            let mut q = self.0.lock();
            q.closed = true;
            q.items.drain(..).collect()
        };
        for (_, fill) in left {
            fill.fill(Err(StoreError::Unavailable("the store is closed".into())));
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a batch may take, and how long a broken one may still be ending on the server.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub(super) wait: std::time::Duration,
    pub(super) settle: std::time::Duration,
}

/// Outcomes of a batch that rest on a fence not yet passed, until when they may wait.
struct Fenced {
    id: u64,
    until: std::time::Instant,
    fills: Vec<(IssueFill, Result<SubmitIssueOutcome, StoreError>)>,
}

impl Fenced {
    /// Waits at the fence (until `until`), then answers: the outcomes, or unavailable.
    fn answer(self, fence: &Fence) {
        let left = self
            .until
            .saturating_duration_since(std::time::Instant::now());
        match fence.wait(self.id, left) {
            Ok(()) => {
                for (fill, o) in self.fills {
                    fill.fill(o);
                }
            }
            Err(e) => {
                for (fill, _) in self.fills {
                    fill.fill(Err(same(&e)));
                }
            }
        }
    }
}

/// The thread that answers the outcomes waiting at the fence, in turn; it ends when
/// the committer does.
fn spawn_waiter(fence: Arc<Fence>) -> std::sync::mpsc::Sender<Fenced> {
    let (tx, rx) = std::sync::mpsc::channel::<Fenced>();
    let spawned = std::thread::Builder::new()
        .name("certd-pg-fenced".into())
        .spawn(move || {
            for w in rx {
                w.answer(&fence);
            }
        });
    if let Err(e) = spawned {
        // The receiver is gone with the closure: each batch answers on its own thread.
        tracing::error!(error = %e, "cannot start the fence's waiting thread");
    }
    tx
}

fn run(
    shared: &Shared,
    connector: &Connector,
    limits: Limits,
    cache: &CertCache,
    fence: &Arc<Fence>,
    others: &AtomicBool,
) {
    let waiter = spawn_waiter(fence.clone());
    let Limits {
        wait: limit,
        settle,
    } = limits;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the committer's runtime");
            fail_all(
                shared,
                &StoreError::Engine(format!("committer runtime: {e}")),
            );
            return;
        }
    };
    let mut pipe: Option<Pipe> = None;
    let mut recent: VecDeque<usize> = VecDeque::with_capacity(RECENT);
    let mut batches: u64 = 0;
    loop {
        let company = if others.load(Ordering::Relaxed) {
            recent.iter().copied().max()
        } else {
            recent.back().copied()
        };
        let company = Some((company.unwrap_or(1), COMPANY_WAIT));
        let Some(batch) = next_batch(shared, MAX_BATCH, company) else {
            return;
        };
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(batch.len());
        batches += 1;
        if pipe.as_ref().is_some_and(Pipe::is_closed) || REPLAN_AT.contains(&batches) {
            pipe = None;
        }
        if pipe.is_none() {
            match Pipe::connect(&rt, &connector.config, connector.tls.clone()) {
                Ok(p) => pipe = Some(p),
                Err(e) => {
                    shared.up.store(false, Ordering::Relaxed);
                    tracing::warn!(target = %connector.target, error = %e, "cannot connect to the database");
                    let err = super::lanes::store_error(e);
                    for (_, fill) in batch {
                        fill.fill(Err(same(&err)));
                    }
                    continue;
                }
            }
        }
        let Some(p) = pipe.as_mut() else { continue };
        let (subs, fills): (Vec<Submission>, Vec<IssueFill>) = batch.into_iter().unzip();
        let started = std::time::Instant::now();
        let begun = cache.generation();
        let result = p.submit_issued(&rt, &subs, limit);
        tracing::debug!(
            submissions = subs.len(),
            micros = started.elapsed().as_micros() as u64,
            "committed a batch"
        );
        // The certificates stored go into the cache (the agent's GET that follows
        // needs no round trip), unless another write ended meanwhile. A refused
        // submission wrote nothing: what is cached for its name stays.
        match &result {
            // One in place of a certificate other nodes may hold is not kept: a read
            // goes to the database, and waits for their caches to follow.
            Ok(Committed {
                outcomes,
                ids,
                replaced,
                ..
            }) => cache.settle(
                begun,
                *ids,
                subs.iter()
                    .zip(outcomes)
                    .zip(replaced)
                    .filter(|((_, o), _)| {
                        !matches!(
                            o,
                            Ok(SubmitIssueOutcome::Refused(_) | SubmitIssueOutcome::SerialTaken)
                        )
                    })
                    .map(|((s, o), r)| {
                        let stored =
                            matches!(o, Ok(SubmitIssueOutcome::Stored(_, IssueOutcome::Issued)));
                        (&s.env, &s.name, (stored && !r).then_some(&s.cert))
                    }),
            ),
            // Cut off: it may still commit on the server.
            Err(StoreError::Unavailable(_)) => {
                for s in &subs {
                    cache.remove_uncertain(&s.env, [&s.name], settle);
                }
            }
            // Rolled back by the server.
            Err(_) => {
                for s in &subs {
                    cache.remove(&s.env, [&s.name]);
                }
            }
        }
        let closed = p.is_closed();
        shared.up.store(!closed, Ordering::Relaxed);
        if closed {
            pipe = None;
        }
        match result {
            Ok(Committed {
                outcomes, fences, ..
            }) => {
                // Answered once other nodes' caches have followed what each rests on:
                // at once, or by the waiting thread, while the next batch commits.
                let mut waiting = Fenced {
                    id: 0,
                    until: std::time::Instant::now() + limit,
                    fills: Vec::new(),
                };
                for ((fill, o), id) in fills.into_iter().zip(outcomes).zip(fences) {
                    if fence.passed(id) {
                        fill.fill(o);
                    } else {
                        waiting.id = waiting.id.max(id);
                        waiting.fills.push((fill, o));
                    }
                }
                if !waiting.fills.is_empty() {
                    if let Err(std::sync::mpsc::SendError(w)) = waiter.send(waiting) {
                        w.answer(fence);
                    }
                }
            }
            Err(e) => {
                for fill in fills {
                    fill.fill(Err(same(&e)));
                }
            }
        }
    }
}

/// Waits for submissions and takes at most `max`; None once closed and drained. With
/// `company`, waits up to that long for as many submissions as the last batch had
/// (`last`), as the sled committer does.
fn next_batch(
    shared: &Shared,
    max: usize,
    company: Option<(usize, std::time::Duration)>,
) -> Option<Vec<(Submission, IssueFill)>> {
    let mut q = shared.lock();
    while q.items.is_empty() && !q.closed {
        q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
    }
    if q.items.is_empty() {
        return None;
    }
    if let Some((last, wait)) = company {
        let until = std::time::Instant::now() + wait;
        while q.items.len() < last.min(max) && !q.closed {
            let now = std::time::Instant::now();
            if now >= until {
                break;
            }
            q = shared
                .wake
                .wait_timeout(q, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
    let n = q.items.len().min(max);
    Some(q.items.drain(..n).collect())
}

/// Answers everything queued, and all that comes later, with `err` (no runtime).
fn fail_all(shared: &Shared, err: &StoreError) {
    loop {
        let Some(batch) = next_batch(shared, usize::MAX, None) else {
            return;
        };
        for (_, fill) in batch {
            fill.fill(Err(same(err)));
        }
    }
}

/// A copy of a store error for each waiter of a failed batch.
fn same(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Engine(other.to_string()),
    }
}
