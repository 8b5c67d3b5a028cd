//! Submissions begun on an HTTP worker thread: an autosigned one is checked and signed
//! there, and its commit awaited without holding a thread; anything else, or one the
//! store refused with nothing stored, goes to a thread that may block.

use super::requests::{submitted, Submitted};
use super::{certname, App, AppError, EnvCa};
use crate::authz::Identity;
use crate::ca::Certname;
use crate::store::{CertRecord, PendingIssue, SubmitIssueOutcome, SubmitOutcome};

/// Where a submission started by [`App::submit_start`] stands.
pub enum Submitting {
    /// Answered (a malformed name or CSR, an unknown environment).
    Done(Result<Submitted, AppError>),
    /// Signed; the store is committing the request and its certificate.
    Committing(Box<InFlight>),
    /// Nothing done: the submission needs a thread that may block ([`App::submit`]).
    NeedsThread,
}

/// An autosigned submission being committed: holds its signing slot until then.
pub struct InFlight {
    pending: PendingIssue,
    _slot: super::SigningSlot,
    env: std::sync::Arc<EnvCa>,
    name: Certname,
    record: CertRecord,
    issuer: String,
}

/// How a submission begun on a worker thread ended there ([`InFlight::finish`]).
pub enum Finished {
    /// What [`App::submit`] would answer.
    Done(Result<Submitted, AppError>),
    /// Nothing was stored; the submission must be made again on a thread that may
    /// block ([`App::submit_again`]): `read_first` when it was made unread and the
    /// name turned out not to be new, otherwise because the serial was taken.
    Again { read_first: bool },
}

impl InFlight {
    /// Awaits the commit (durable when it answers), then answers as [`App::submit`]
    /// would, or says that the submission must be made again.
    pub async fn finish(self, app: &App) -> Finished {
        let InFlight {
            pending,
            _slot,
            env,
            name,
            record,
            issuer,
        } = self;
        let outcome = pending.await;
        if matches!(
            outcome,
            Ok(SubmitIssueOutcome::SerialTaken | SubmitIssueOutcome::Refused(_))
        ) {
            app.metrics.discarded(env.name.as_str());
        }
        let outcome = match outcome {
            Ok(SubmitIssueOutcome::SerialTaken) => return Finished::Again { read_first: false },
            Ok(SubmitIssueOutcome::Refused(SubmitOutcome::NotNew)) => {
                return Finished::Again { read_first: true }
            }
            Ok(SubmitIssueOutcome::Refused(refused)) => Ok(refused),
            Ok(SubmitIssueOutcome::Stored(submitted, issued)) => {
                app.stored_and_issued(&env, &name, &record, &issuer, submitted, issued)
            }
            Err(e) => Err(e.into()),
        };
        Finished::Done(outcome.and_then(|o| submitted(&name, o)))
    }
}

impl App {
    /// [`App::submit`] started on a thread that must not block (an HTTP worker): an
    /// autosigned submission that an in-process issuer signs is checked, signed, and
    /// handed to the store to commit, and the caller awaits [`InFlight::finish`]; it
    /// costs CPU only (reads come from the store's cache; with a store whose reads cost
    /// a round trip, none is made: it is submitted unread as in [`App::submit`], and
    /// made again reading first if the name is not new). Anything that may block (a
    /// policy executable or allowlist file, storing a request that waits for an admin,
    /// an issuer that answers later, every signing slot taken, a failed signature, a
    /// refusal a read shows) answers [`Submitting::NeedsThread`] before anything is
    /// stored, and the caller runs the whole submission on a thread that may block
    /// instead; so it does after [`Finished::Again`] (a serial taken, a name submitted
    /// unread that was not new: the store refused it with nothing stored).
    pub fn submit_start(
        &self,
        who: &Identity,
        raw_env: &str,
        raw_name: &str,
        body: &[u8],
    ) -> Submitting {
        self.start_as(who, raw_env, raw_name, body, false)
    }

    /// [`App::submit_start`] with either face's duplicate rule (see [`App::submit_as`]).
    pub(super) fn start_as(
        &self,
        who: &Identity,
        raw_env: &str,
        raw_name: &str,
        body: &[u8],
        refuse_pending: bool,
    ) -> Submitting {
        let env = match self.env_ca(raw_env) {
            Ok(env) => env,
            Err(e) => return Submitting::Done(Err(e)),
        };
        let name = match certname(raw_name) {
            Ok(name) => name,
            Err(e) => return Submitting::Done(Err(e)),
        };
        // A name the policy does not sign by its name alone goes to the whole path
        // before its CSR is checked.
        if !self.signs_by_name(&env, &name) {
            return Submitting::NeedsThread;
        }
        // The checks below read the store: on this (HTTP worker) thread only when that
        // costs microseconds. Otherwise the submission is made unread, as in
        // `App::submit_as`, or on a thread that may block.
        let read = self.store.local_reads();
        if !read
            && matches!(
                self.store.certificate_now(&env.name, &name),
                Some(Ok(Some(_)))
            )
        {
            return Submitting::NeedsThread;
        }
        let p = match self.prepare(who, &env, &name, body, refuse_pending, read) {
            Ok(p) => p,
            // Kept as an invalid request: a store write, on a thread that may block.
            Err(AppError::InvalidInput(e)) if e.is_policy_refusal() => {
                return Submitting::NeedsThread
            }
            Err(e) => return Submitting::Done(Err(e)),
        };
        // A CSR whose extensions would hold authority (signs_by_name saw the name
        // only) is no policy's to sign: the whole path leaves it pending.
        if p.modifies || p.refused || self.holds_authority(&env, &p.csr.subject()) {
            return Submitting::NeedsThread;
        }
        match self.sign_submission(&env, &p.csr) {
            Some((slot, record, issuer)) => {
                let pending = self
                    .store
                    .submit_issued_pending(&env.name, &name, &p.rec, p.rule, &record);
                Submitting::Committing(Box::new(InFlight {
                    pending,
                    _slot: slot,
                    env,
                    name,
                    record,
                    issuer,
                }))
            }
            None => Submitting::NeedsThread,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;

    use super::*;
    use crate::app::requests::tests::csr;
    use crate::ca::{Rng, SystemClock};
    use crate::config::Config;
    use crate::store::{DataDir, MemStore, Store};

    /// The same bytes at every draw: every certificate gets the same serial.
    struct Repeats;
    impl Rng for Repeats {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(0x5a);
        }
    }

    /// Runs a future to its end on this thread, parking between polls.
    fn block_on<F: Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }

    #[test]
    fn the_worker_path_signs_autosigned_submissions_and_hands_back_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(
            "[ca]\nkey_type = \"ec-p256\"\n\
             [environments.production]\nautosign = true\n\
             [environments.manual]\n\
             [environments.web]\nautosign = [\"*.web.example\"]\n",
            &dir.path().join("certd.toml"),
        )
        .unwrap();
        // Set up with a real RNG (setup's own certificates are recorded with theirs), then
        // served with the repeating one.
        let data = DataDir::new(dir.path().join("data"));
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        drop(
            App::new(
                config.clone(),
                data.clone(),
                store.clone(),
                Arc::new(SystemClock),
                Arc::new(crate::ca::OsRng),
            )
            .unwrap(),
        );
        let app = App::new(
            config,
            data,
            store,
            Arc::new(SystemClock),
            Arc::new(Repeats),
        )
        .unwrap();
        let anon = Identity::anonymous();

        // Autosigned: signed here, committed by the store, durable when it answers.
        match app.submit_start(&anon, "production", "first", &csr("first")) {
            Submitting::Committing(f) => match block_on((*f).finish(&app)) {
                Finished::Done(done) => assert_eq!(done.unwrap(), Submitted::Created),
                Finished::Again { .. } => panic!("a new name's serial is free"),
            },
            _ => panic!("an autosigned submission is signed on the worker path"),
        }
        assert!(app.certificate("production", "first").is_ok());

        // Signed with the serial "first" has: the commit refuses it with nothing stored,
        // and the caller is told to submit it again.
        match app.submit_start(&anon, "production", "second", &csr("second")) {
            Submitting::Committing(f) => assert!(matches!(
                block_on((*f).finish(&app)),
                Finished::Again { read_first: false }
            )),
            _ => panic!("an autosigned submission is signed on the worker path"),
        }
        assert!(matches!(
            app.request("production", "second"),
            Err(AppError::NotFound(_))
        ));
        // Submitted whole, it is retried, then stored unsigned and the error answered.
        assert!(app
            .submit(&anon, "production", "second", &csr("second"))
            .is_err());
        assert!(app.request("production", "second").is_ok());

        // Refused (a pending request, Puppet's rule), waiting for an admin, or malformed.
        assert!(matches!(
            app.puppet_submit_start(&anon, "second", &csr("second")),
            Submitting::NeedsThread
        ));
        assert!(matches!(
            app.submit_start(&anon, "manual", "third", &csr("third")),
            Submitting::NeedsThread
        ));
        assert!(matches!(
            app.submit_start(&anon, "production", "fourth", b"not a CSR"),
            Submitting::Done(Err(_))
        ));
        assert!(matches!(
            app.request("manual", "third"),
            Err(AppError::NotFound(_))
        ));
        // Globs: a name they match is signed on the worker path, another is not started
        // there (not even its CSR checked: a malformed one is not answered here).
        assert!(matches!(
            app.submit_start(&anon, "web", "a.web.example", &csr("a.web.example")),
            Submitting::Committing(_)
        ));
        assert!(matches!(
            app.submit_start(&anon, "web", "b.other.example", b"not a CSR"),
            Submitting::NeedsThread
        ));
    }
}
