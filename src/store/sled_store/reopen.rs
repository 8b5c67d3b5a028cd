//! Closing the database after an I/O error and opening it again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::commit::IssueQueue;
use super::core::Core;
use super::*;

/// The open database, or why there is none. Once sled meets an I/O error (a full disk)
/// it fails every later call, writes and reads alike, until the database is opened
/// again; and what it holds in memory may include writes that never reached the disk.
/// So the first call that hears one drops the database (every call answers
/// [`StoreError::Unavailable`] from then on), and the committer thread opens it again
/// from disk, with backoff, until that works: only what was made durable comes back.
/// The open database, or why there is none. Once sled meets an I/O error (a full disk)
/// it fails every later call, writes and reads alike, until the database is opened
/// again; and what it holds in memory may include writes that never reached the disk.
/// So the first call that hears one drops the database (every call answers
/// [`StoreError::Unavailable`] from then on), and the committer thread opens it again
/// from disk, with backoff, until that works: only what was made durable comes back.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) state: RwLock<OpenState>,
    /// The committer's queue: woken when the database is closed, so that it reopens it
    /// even when no submission comes.
    pub(super) committer: Arc<IssueQueue>,
}

pub(super) struct OpenState {
    /// The database, when open.
    pub(super) core: Option<Arc<Core>>,
    /// Why it is not.
    pub(super) why: String,
    /// When the committer next tries to open it.
    pub(super) next_try: Instant,
    /// Reopens in a row that failed, or that failed again soon after.
    pub(super) tries: u32,
    /// When it was last opened again.
    pub(super) reopened: Option<Instant>,
    /// How many times it was opened again: what a thread's writes went to.
    pub(super) generation: u64,
}

thread_local! {
    /// The store (by address) and database generation this thread's last call used: a
    /// flush must not vouch for writes made on a database that was closed since (they
    /// were in its memory only), by answering for the one opened again from disk.
    static LAST_USED: std::cell::Cell<(usize, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// First wait before opening the database again after an I/O error; it doubles with
/// every try that fails, up to [`REOPEN_MAX`].
pub(super) const REOPEN_FIRST: Duration = Duration::from_millis(500);
pub(super) const REOPEN_MAX: Duration = Duration::from_secs(15);
/// A failure this soon after a reopen counts as the same outage (the backoff goes on).
pub(super) const SAME_OUTAGE: Duration = Duration::from_secs(60);

impl Shared {
    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, OpenState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, OpenState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The open database, or [`StoreError::Unavailable`] with the reason.
    pub(super) fn current(&self) -> Result<Arc<Core>, StoreError> {
        self.current_generation().map(|(core, _)| core)
    }

    /// The open database and its generation.
    pub(super) fn current_generation(&self) -> Result<(Arc<Core>, u64), StoreError> {
        let st = self.read();
        match &st.core {
            Some(core) => Ok((core.clone(), st.generation)),
            None => Err(StoreError::Unavailable(st.why.clone())),
        }
    }

    fn address(&self) -> usize {
        self as *const Shared as usize
    }

    /// The generation this thread's last call on this store used, if any.
    pub(super) fn last_used(&self) -> Option<u64> {
        let (store, generation) = LAST_USED.with(std::cell::Cell::get);
        (store == self.address()).then_some(generation)
    }

    /// Runs `f` on the open database; an I/O error drops it (see [`Shared`]).
    pub(super) fn with<R>(
        &self,
        f: impl FnOnce(&Core) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let (core, generation) = self.current_generation()?;
        LAST_USED.with(|c| c.set((self.address(), generation)));
        let result = f(&core);
        if let Err(StoreError::Unavailable(why)) = &result {
            self.failed(&core, why);
        }
        result
    }

    /// `core` met an I/O error: drop it, unless it was replaced already.
    pub(super) fn failed(&self, core: &Arc<Core>, why: &str) {
        let mut st = self.write();
        if !st.core.as_ref().is_some_and(|c| Arc::ptr_eq(c, core)) {
            return;
        }
        tracing::error!(error = %why, "store write failed; closing it until it can be opened again");
        st.core = None;
        st.why = why.to_owned();
        st.tries = match st.reopened {
            Some(at) if at.elapsed() < SAME_OUTAGE => st.tries + 1,
            _ => 0,
        };
        st.next_try = Instant::now() + backoff(st.tries);
        drop(st);
        self.committer.wake();
    }

    /// How long the committer may sleep before it must try to reopen (None: open).
    pub(super) fn until_reopen(&self) -> Option<Duration> {
        let st = self.read();
        match st.core {
            Some(_) => None,
            None => Some(st.next_try.saturating_duration_since(Instant::now())),
        }
    }

    /// Opens the database again when it is closed and its time has come.
    pub(super) fn reopen_if_due(&self) {
        if self.until_reopen() != Some(Duration::ZERO) {
            return;
        }
        // sled may panic on files a failed write left behind: that is a failed try too.
        let opened = std::panic::catch_unwind(|| Core::open(&self.dir)).unwrap_or_else(|_| {
            Err(StoreError::Engine(
                "the storage engine panicked while opening the database".into(),
            ))
        });
        let mut st = self.write();
        match opened {
            Ok(core) => {
                tracing::info!("store opened again after: {}", st.why);
                st.core = Some(Arc::new(core));
                st.reopened = Some(Instant::now());
                st.generation += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "store: cannot open the database again yet");
                st.why = e.to_string();
                st.tries += 1;
                st.next_try = Instant::now() + backoff(st.tries);
            }
        }
    }
}

pub(super) fn backoff(tries: u32) -> Duration {
    REOPEN_FIRST
        .saturating_mul(1 << tries.min(8))
        .min(REOPEN_MAX)
}

/// Removes snapshot files sled left half-written. sled writes a snapshot to
/// `snap.N.generating` and renames it once complete, but at open it reads the newest
/// `snap.*` file, a `.generating` one included: one left by a write that failed (a full
/// disk, a crash) made every later open fail with "Read corrupted data", until removed
/// by hand. Such a file is incomplete by construction, and sled recovers from the older
/// snapshot (or none) and its log. Only done while nobody holds sled's lock (the `db`
/// file), so no process using the database loses a snapshot in flight.
pub(super) fn remove_torn_snapshots(dir: &Path) {
    let Ok(db) = std::fs::File::options().write(true).open(dir.join("db")) else {
        return;
    };
    if fs2::FileExt::try_lock_exclusive(&db).is_err() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::warn!(file = %name, "removed a half-written sled snapshot"),
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove a half-written sled snapshot")
                }
            }
        }
    }
}
