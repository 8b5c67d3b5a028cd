//! Group commit, and the committer thread of autosigned submissions.

use super::super::pending::IssueFill;
use super::core::Core;
use super::reopen::Shared;
use super::tx::{engine, not_durable, TxResult};
use super::*;
use std::time::Duration;

/// Group commit: concurrent [`Store::flush`] calls share one fsync. Each caller takes a
/// ticket after its writes are applied; one caller at a time (the leader) flushes
/// everything written so far and marks every ticket taken before it started as durable;
/// the others wait for that, or lead the next flush.
#[derive(Default)]
pub(super) struct GroupCommit {
    pub(super) state: std::sync::Mutex<CommitState>,
    pub(super) done: std::sync::Condvar,
}

#[derive(Default)]
pub(super) struct CommitState {
    /// Tickets handed out.
    pub(super) taken: u64,
    /// Every ticket up to this one is durable.
    pub(super) durable: u64,
    /// A flush is under way.
    pub(super) flushing: bool,
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
pub(super) struct IssueQueue {
    pub(super) state: std::sync::Mutex<QueueState>,
    pub(super) work: std::sync::Condvar,
}

#[derive(Default)]
pub(super) struct QueueState {
    pub(super) queue: Vec<(IssueOp, IssueFill)>,
    /// The committer sleeps on `work` (a submission must wake it).
    pub(super) idle: bool,
    /// The store is being dropped: the committer finishes the queue and exits.
    pub(super) closed: bool,
    /// How many submissions the last batch had: how many the next one waits for.
    pub(super) last_batch: usize,
    /// The committer waits on `work` for the batch to fill up to `last_batch`.
    pub(super) gathering: bool,
}

impl IssueQueue {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the committer to look at the database's state. Under the queue's lock: the
    /// committer checks that state holding it, so it either sees the change or is
    /// already waiting and hears this.
    pub(super) fn wake(&self) {
        let _st = self.lock();
        self.work.notify_all();
    }

    /// The committer's loop, until the store is dropped. While the database is closed
    /// after an I/O error, it also opens it again when due.
    pub(super) fn run(&self, shared: &Shared) {
        // However the loop ends (a panic included), later submissions are refused and
        // queued ones hear an error (their fills are dropped) instead of waiting forever.
        struct Exit<'a>(&'a IssueQueue);
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                let mut st = self.0.lock();
                st.closed = true;
                st.queue.clear();
            }
        }
        let _exit = Exit(self);
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
pub(super) const COMPANY_WAIT: std::time::Duration = std::time::Duration::from_micros(500);

/// One queued [`CertificateStore::submit_issued`].
pub(super) struct IssueOp {
    pub(super) env: EnvName,
    pub(super) name: Certname,
    pub(super) rec: RequestRecord,
    pub(super) rule: SubmitRule,
    pub(super) cert: CertRecord,
}

impl Core {
    /// Applies a batch of [`CertificateStore::submit_issued`] calls, in order, in one transaction
    /// per environment. When that transaction fails, each is retried alone, so that one
    /// bad record fails only its own submission.
    pub(super) fn commit_issues(
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
    pub(super) fn commit_batch(&self, batch: Vec<(IssueOp, IssueFill)>) -> Option<String> {
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
    pub(super) fn flush_grouped(&self) -> Result<(), StoreError> {
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
}
