//! Time and randomness as parameters, so that validity windows, CRL dates and serials are
//! testable. Nothing else under `ca/` reads the system clock or an RNG.

use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = i64;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time in seconds since the Unix epoch.
    fn now(&self) -> UnixTime {
        self.now_ms().div_euclid(1000)
    }
    /// The current time in milliseconds since the Unix epoch (order due times).
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        #[allow(clippy::disallowed_methods)] // the one reading of the system clock
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that stands still until moved; for tests. Keeps milliseconds.
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock reading `at` (seconds).
    pub fn new(at: UnixTime) -> Self {
        FixedClock(AtomicI64::new(at.saturating_mul(1000)))
    }

    /// Moves the clock by `secs` (may be negative).
    pub fn advance(&self, secs: i64) {
        self.advance_ms(secs.saturating_mul(1000));
    }

    /// Moves the clock by `ms` milliseconds (may be negative).
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
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
    #[allow(
        clippy::expect_used,
        reason = "no randomness means predictable serials: stopping is the only safe answer"
    )]
    fn fill(&self, buf: &mut [u8]) {
        // RAND_bytes only fails when the generator cannot be seeded, in which case
        // continuing would issue predictable serials: stopping is the only safe answer.
        openssl::rand::rand_bytes(buf).expect("OpenSSL RNG failed; refusing to continue");
    }
}

/// `YYYY-MM-DDTHH:MM:SS` then `suffix` (`Z` for RFC 3339, `UTC` for Puppet's dates), for
/// years 0 to 9999; empty outside them.
pub fn format_utc(t: UnixTime, suffix: &str) -> String {
    let mut out = Vec::with_capacity(19 + suffix.len());
    write_utc(&mut out, t, suffix);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends what [`format_utc`] answers. Written out by hand: listings write two dates
/// for each of 100,000 certificates, where `time`'s formatter was a measurable share.
pub fn write_utc(out: &mut Vec<u8>, t: UnixTime, suffix: &str) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic
    // Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return;
    }
    // Filled in place, then appended at once.
    let mut text = *b"0000-00-00T00:00:00";
    let fields = [
        (year, 0..4),
        (month, 5..7),
        (day, 8..10),
        (secs / 3600, 11..13),
        (secs / 60 % 60, 14..16),
        (secs % 60, 17..19),
    ];
    for (mut n, at) in fields {
        for d in text[at].iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    out.extend_from_slice(&text);
    out.extend_from_slice(suffix.as_bytes());
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn format_utc_agrees_with_time(t in -62_167_219_200_i64..253_402_300_800) {
            let d = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
            let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
            prop_assert_eq!(format_utc(t, "Z"), d.format(&fmt).unwrap());
        }
    }

    #[test]
    fn format_utc_edges() {
        assert_eq!(format_utc(0, "Z"), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400, "UTC"), "2000-02-29T00:00:00UTC");
        assert_eq!(format_utc(253_402_300_799, "Z"), "9999-12-31T23:59:59Z");
        assert_eq!(format_utc(253_402_300_800, "Z"), "");
        assert_eq!(format_utc(-62_167_219_201, "Z"), "");
    }
}
