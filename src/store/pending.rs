//! [`PendingIssue`]: the outcome of an autosigned submission that is being committed,
//! awaited by an HTTP handler or waited for by a thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;

use super::{StoreError, SubmitIssueOutcome};

type Outcome = Result<SubmitIssueOutcome, StoreError>;

/// What [`CertificateStore::submit_issued_pending`](super::CertificateStore::submit_issued_pending) answers: its
/// outcome once it is durable (or failed). Await it (it is a future that needs no
/// particular runtime) or [`wait`](Self::wait) for it on a thread that may block.
#[must_use = "the outcome says whether anything was stored"]
pub struct PendingIssue(Arc<Slot>);

/// The committing side of a [`PendingIssue`]. Dropped without [`fill`](Self::fill) (the
/// committer gone), the waiter hears an engine error instead of waiting forever.
pub(super) struct IssueFill(Option<Arc<Slot>>);

#[derive(Default)]
struct Slot(Mutex<SlotState>);

#[derive(Default)]
struct SlotState {
    outcome: Option<Outcome>,
    /// The task or the thread waiting, woken once the outcome is in.
    waker: Option<Waker>,
    thread: Option<Thread>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PendingIssue {
    /// A pending outcome and the handle that fills it.
    pub(super) fn pair() -> (PendingIssue, IssueFill) {
        let slot = Arc::new(Slot::default());
        (PendingIssue(slot.clone()), IssueFill(Some(slot)))
    }

    /// An outcome known already.
    pub fn ready(outcome: Outcome) -> PendingIssue {
        let (pending, fill) = PendingIssue::pair();
        fill.fill(outcome);
        pending
    }

    /// Blocks the calling thread until the outcome is in.
    pub fn wait(self) -> Outcome {
        loop {
            let mut st = self.0.lock();
            if let Some(outcome) = st.outcome.take() {
                return outcome;
            }
            st.thread = Some(std::thread::current());
            drop(st);
            // A fill between the unlock and here leaves the park token set: no lost wake.
            std::thread::park();
        }
    }
}

impl Future for PendingIssue {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut st = self.0.lock();
        match st.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                match &mut st.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl IssueFill {
    /// Hands the outcome over and wakes whoever waits for it.
    pub(super) fn fill(mut self, outcome: Outcome) {
        if let Some(slot) = self.0.take() {
            deliver(&slot, outcome);
        }
    }
}

impl Drop for IssueFill {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            deliver(
                &slot,
                Err(StoreError::Engine(
                    "the submission was dropped before it was committed".into(),
                )),
            );
        }
    }
}

fn deliver(slot: &Slot, outcome: Outcome) {
    let mut st = slot.lock();
    st.outcome = Some(outcome);
    let (waker, thread) = (st.waker.take(), st.thread.take());
    drop(st);
    if let Some(w) = waker {
        w.wake();
    }
    if let Some(t) = thread {
        t.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IssueOutcome, SubmitOutcome};

    const STORED: SubmitIssueOutcome =
        SubmitIssueOutcome::Stored(SubmitOutcome::Created, IssueOutcome::Issued);

    #[test]
    fn a_waiting_thread_gets_what_another_fills() {
        let (pending, fill) = PendingIssue::pair();
        let filler = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            fill.fill(Ok(STORED));
        });
        assert_eq!(pending.wait().unwrap(), STORED);
        filler.join().unwrap();
    }

    #[test]
    fn a_dropped_fill_answers_an_error_instead_of_hanging() {
        let (pending, fill) = PendingIssue::pair();
        drop(fill);
        assert!(matches!(pending.wait(), Err(StoreError::Engine(_))));
    }

    #[test]
    fn the_future_is_woken_by_the_fill() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (mut pending, fill) = PendingIssue::pair();
        assert!(Pin::new(&mut pending).poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        fill.fill(Ok(STORED));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            Pin::new(&mut pending).poll(&mut cx),
            Poll::Ready(Ok(STORED))
        ));
    }
}
