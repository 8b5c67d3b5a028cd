//! Time and randomness as parameters, so that validity windows, CRL dates and serials are
//! testable. Nothing else under `ca/` reads the system clock or an RNG.

use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = i64;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time in seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    }
}

/// A clock that stands still until moved; for tests.
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock reading `at`.
    pub fn new(at: UnixTime) -> Self {
        FixedClock(AtomicI64::new(at))
    }

    /// Moves the clock by `secs` (may be negative).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of random bytes for serial numbers.
///
/// Key generation uses OpenSSL's own CSPRNG, which cannot be redirected; everything else
/// that needs randomness takes an `Rng`.
pub trait Rng: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// OpenSSL's CSPRNG (`RAND_bytes`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl Rng for OsRng {
    fn fill(&self, buf: &mut [u8]) {
        // RAND_bytes only fails when the generator cannot be seeded, in which case
        // continuing would issue predictable serials: stopping is the only safe answer.
        openssl::rand::rand_bytes(buf).expect("OpenSSL RNG failed; refusing to continue");
    }
}
