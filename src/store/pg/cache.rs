//! The certificate cache: certificates read from the database, kept in memory so that
//! `GET`/`HEAD certificate/{name}` is answered without a round trip, and keeps being
//! answered while the database is away (within the read lease, `readers.rs`).
//!
//! It is right because every write that changes a certificate is applied to it before
//! the write's caller hears of it: this process's own writes remove the names they
//! touched once their transaction has ended (committed, rolled back or broken); other
//! processes' writes wait until this one has followed them, while it holds a read lease
//! (`readers.rs`), and without a lease nothing is served. A read that missed fills the
//! cache only if no removal happened while it read (a generation count), so an older row
//! read before a commit never lands after it. A write whose outcome is not known (the
//! connection broke) may still be committing on the server: fills stop for a while.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::ca::{Certname, EnvName};
use crate::store::CertRecord;

/// Bytes of certificates kept at most (DER, names and the record's fixed part): some
/// 5,000 to 8,000 certificates, what agents fetch right after their PUT and what
/// monitors probe, within the 64 MB an idle certd keeps to.
pub(super) const CACHE_BYTES: usize = 8 << 20;

#[derive(Default)]
struct Inner {
    /// By environment, then certname.
    map: HashMap<String, HashMap<String, CertRecord>>,
    bytes: usize,
    /// Bumped by every removal; a fill brings the value it saw when its read began.
    generation: u64,
    /// No fill before then (a write's outcome was unknown).
    fills_from: Option<Instant>,
    /// The read lease: nothing is served or kept from then on (or without one), since
    /// other nodes' writes no longer wait for this one.
    serve_until: Option<Instant>,
    /// The audit ids (first, last) of this process's writes that stored what they wrote
    /// here: [`CertCache::follow`] passes over them.
    own: Vec<(u64, u64)>,
}

impl Inner {
    fn leased(&self) -> bool {
        self.serve_until.is_some_and(|t| Instant::now() < t)
    }
}

/// See the module.
pub(super) struct CertCache {
    inner: RwLock<Inner>,
    capacity: usize,
}

/// What one record takes, roughly.
fn cost(name: &str, rec: &CertRecord) -> usize {
    std::mem::size_of::<CertRecord>()
        + name.len()
        + rec.der.len()
        + rec.serial.len()
        + rec.dns_names.iter().map(|s| s.len() + 24).sum::<usize>()
        + rec.ip_addrs.iter().map(|s| s.len() + 24).sum::<usize>()
        + rec
            .authorization_extensions
            .iter()
            .map(|(a, b)| a.len() + b.len() + 48)
            .sum::<usize>()
        + 64
}

impl CertCache {
    pub(super) fn new(capacity: usize) -> CertCache {
        CertCache {
            inner: RwLock::new(Inner::default()),
            capacity,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached certificate of `name`.
    pub(super) fn get(&self, env: &EnvName, name: &Certname) -> Option<CertRecord> {
        let inner = self.read();
        if !inner.leased() {
            return None;
        }
        inner
            .map
            .get(env.as_str())
            .and_then(|m| m.get(name.as_str()))
            .cloned()
    }

    /// To be taken before a read that may [`fill`](Self::fill), or a write that may
    /// [`settle`](Self::settle) what it stored; `None` while fills are held off (a read
    /// begun then may see a row older than a commit still to come).
    pub(super) fn generation(&self) -> Option<u64> {
        let inner = self.read();
        match inner.fills_from {
            _ if !inner.leased() => None,
            Some(t) if Instant::now() < t => None,
            _ => Some(inner.generation),
        }
    }

    /// Keeps `rec`, read from the database after [`generation`](Self::generation) gave
    /// `seen`, unless a write ended since.
    pub(super) fn fill(&self, seen: Option<u64>, env: &EnvName, name: &Certname, rec: &CertRecord) {
        let mut inner = self.write();
        if seen == Some(inner.generation) {
            self.put(&mut inner, env, name, rec);
        }
    }

    /// Keeps `rec` for `name`, making room if needed; one too large for the cache is
    /// not kept, and what was kept for the name before is forgotten.
    fn put(&self, inner: &mut Inner, env: &EnvName, name: &Certname, rec: &CertRecord) {
        let size = cost(name.as_str(), rec);
        if size > self.capacity / 16 {
            if let Some(p) = inner
                .map
                .get_mut(env.as_str())
                .and_then(|m| m.remove(name.as_str()))
            {
                inner.bytes = inner.bytes.saturating_sub(cost(name.as_str(), &p));
            }
            return;
        }
        if inner.bytes + size > self.capacity {
            evict(inner, self.capacity / 4);
        }
        let previous = inner
            .map
            .entry(env.as_str().to_owned())
            .or_default()
            .insert(name.as_str().to_owned(), rec.clone());
        inner.bytes += size;
        if let Some(p) = previous {
            inner.bytes = inner.bytes.saturating_sub(cost(name.as_str(), &p));
        }
    }

    /// After a write that ended, begun when [`generation`](Self::generation) gave `seen`:
    /// each name's certificate is now the one given (`Some`: what the write stored) or
    /// unknown (`None`: forgotten). What was stored is kept only if no other write ended
    /// while this one ran (one that committed after it may have changed the name);
    /// either way reads under way do not fill (the generation moves).
    pub(super) fn settle<'a>(
        &self,
        seen: Option<u64>,
        ids: Option<(u64, u64)>,
        outcomes: impl IntoIterator<Item = (&'a EnvName, &'a Certname, Option<&'a CertRecord>)>,
    ) {
        let mut inner = self.write();
        inner.own.extend(ids);
        let keep = seen == Some(inner.generation);
        inner.generation += 1;
        for (env, name, rec) in outcomes {
            match rec {
                Some(rec) if keep => self.put(&mut inner, env, name, rec),
                _ => forget(&mut inner, env, [name]),
            }
        }
    }

    /// Forgets the certificates `changes` name (audit id, environment, certname: other
    /// writers' changes, followed up to `head`); its own writes it passes over. A name
    /// this process could not have cached (it does not parse) empties it.
    pub(super) fn follow<'a>(
        &self,
        changes: impl IntoIterator<Item = (u64, &'a str, &'a str)>,
        head: u64,
    ) {
        let mut inner = self.write();
        for (id, env, name) in changes {
            if inner.own.iter().any(|(lo, hi)| (*lo..=*hi).contains(&id)) {
                continue;
            }
            match (EnvName::parse(env), Certname::parse(name)) {
                (Ok(env), Ok(name)) => forget(&mut inner, &env, [&name]),
                _ => {
                    inner.generation += 1;
                    inner.map.clear();
                    inner.bytes = 0;
                }
            }
        }
        inner.own.retain(|(_, hi)| *hi > head);
    }

    /// Forgets the certificates of `names` (in `env`): after a write that ended.
    pub(super) fn remove<'a>(&self, env: &EnvName, names: impl IntoIterator<Item = &'a Certname>) {
        forget(&mut self.write(), env, names);
    }

    /// After a write whose outcome is unknown (it may still commit on the server):
    /// forgets `names` and keeps nothing read from now until `hold` has passed (by then
    /// the server has ended the transaction either way).
    pub(super) fn remove_uncertain<'a>(
        &self,
        env: &EnvName,
        names: impl IntoIterator<Item = &'a Certname>,
        hold: Duration,
    ) {
        let mut inner = self.write();
        forget(&mut inner, env, names);
        inner.fills_from = Some(Instant::now() + hold);
    }

    /// Forgets everything (after an import); with `hold`, as
    /// [`remove_uncertain`](Self::remove_uncertain).
    pub(super) fn clear(&self, hold: Option<Duration>) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.map.clear();
        inner.bytes = 0;
        if let Some(hold) = hold {
            inner.fills_from = Some(Instant::now() + hold);
        }
    }

    /// A read lease was renewed (its statement begun before `until`): serves until
    /// then. After a time without one it starts empty, and reads begun before do not
    /// fill: writes fenced meanwhile did not wait for this process.
    pub(super) fn lease(&self, until: Instant) {
        let mut inner = self.write();
        if !inner.leased() {
            inner.generation += 1;
            inner.map.clear();
            inner.bytes = 0;
        }
        inner.serve_until = Some(until);
    }

    /// Stops serving now, until the next lease.
    pub(super) fn lapse(&self) {
        self.write().serve_until = None;
    }

    /// Bytes held, for tests.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.read().bytes
    }
}

/// Forgets `names` and moves the generation (reads under way do not fill).
fn forget<'a>(inner: &mut Inner, env: &EnvName, names: impl IntoIterator<Item = &'a Certname>) {
    inner.generation += 1;
    let mut freed = 0;
    if let Some(m) = inner.map.get_mut(env.as_str()) {
        for name in names {
            if let Some(p) = m.remove(name.as_str()) {
                freed += cost(name.as_str(), &p);
            }
        }
    }
    inner.bytes = inner.bytes.saturating_sub(freed);
}

/// Drops entries (in the map's order, which follows the names' hashes: as good as
/// random) until `target` bytes are free.
fn evict(inner: &mut Inner, target: usize) {
    let mut freed = 0;
    for m in inner.map.values_mut() {
        m.retain(|name, rec| {
            if freed >= target {
                return true;
            }
            freed += cost(name, rec);
            false
        });
    }
    inner.map.retain(|_, m| !m.is_empty());
    inner.bytes = inner.bytes.saturating_sub(freed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(serial: u8) -> CertRecord {
        CertRecord {
            serial: vec![serial],
            der: vec![0; 1000],
            issued_at: 0,
            not_before: 0,
            not_after: 0,
            dns_names: vec![],
            ip_addrs: vec![],
            authorization_extensions: vec![],
            revocation: None,
            fingerprints: None,
        }
    }

    fn names() -> (EnvName, Certname) {
        (
            EnvName::parse("production").unwrap(),
            Certname::parse("a.example").unwrap(),
        )
    }

    /// A cache under a lease for the test's length.
    fn leased(capacity: usize) -> CertCache {
        let c = CertCache::new(capacity);
        c.lease(Instant::now() + Duration::from_secs(60));
        c
    }

    #[test]
    fn nothing_is_served_or_kept_without_a_lease() {
        let c = CertCache::new(CACHE_BYTES);
        let (env, name) = names();
        let seen = c.generation();
        assert_eq!(seen, None);
        c.fill(seen, &env, &name, &rec(1));
        c.lease(Instant::now() + Duration::from_secs(60));
        assert!(c.get(&env, &name).is_none());
        let seen = c.generation();
        c.fill(seen, &env, &name, &rec(1));
        assert!(c.get(&env, &name).is_some());
        // Lapsed: not served; a read begun under the old lease does not fill the new one,
        // which starts empty.
        let before = c.generation();
        c.lapse();
        assert!(c.get(&env, &name).is_none());
        c.lease(Instant::now() + Duration::from_secs(60));
        assert!(c.get(&env, &name).is_none(), "a new lease starts empty");
        c.fill(before, &env, &name, &rec(2));
        assert!(c.get(&env, &name).is_none());
        // Renewed in time: kept.
        let seen = c.generation();
        c.fill(seen, &env, &name, &rec(3));
        c.lease(Instant::now() + Duration::from_secs(60));
        assert_eq!(c.get(&env, &name).map(|r| r.serial), Some(vec![3]));
    }

    #[test]
    fn a_read_that_overlapped_a_write_does_not_fill() {
        let c = leased(CACHE_BYTES);
        let (env, name) = names();
        let seen = c.generation();
        // The write ends while the read is under way...
        c.remove(&env, [&name]);
        // ...so what the read saw may be older than the commit: not kept.
        c.fill(seen, &env, &name, &rec(1));
        assert!(c.get(&env, &name).is_none());
        let seen = c.generation();
        c.fill(seen, &env, &name, &rec(2));
        assert_eq!(c.get(&env, &name).map(|r| r.serial), Some(vec![2]));
        c.remove(&env, [&name]);
        assert!(c.get(&env, &name).is_none());
        assert_eq!(c.bytes(), 0);
    }

    /// A leased cache and two names of one environment.
    fn two_names() -> (CertCache, EnvName, Certname, Certname) {
        let (env, name) = names();
        let other = Certname::parse("b.example").unwrap();
        (leased(CACHE_BYTES), env, name, other)
    }

    #[test]
    fn a_write_keeps_what_it_stored_unless_another_ended_meanwhile() {
        let (c, env, name, other) = two_names();
        let begun = c.generation();
        c.settle(
            begun,
            None,
            [(&env, &name, Some(&rec(1))), (&env, &other, None)],
        );
        assert_eq!(c.get(&env, &name).map(|r| r.serial), Some(vec![1]));
        // A read that began before the write ended does not fill over it.
        let reading = begun;
        c.fill(reading, &env, &name, &rec(0));
        assert_eq!(c.get(&env, &name).map(|r| r.serial), Some(vec![1]));
        // Another write ended while this one ran: what this one stored may be older.
        let begun = c.generation();
        c.remove(&env, [&other]);
        c.settle(begun, None, [(&env, &name, Some(&rec(2)))]);
        assert!(c.get(&env, &name).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn following_forgets_what_others_changed_and_passes_over_its_own_writes() {
        let (c, env, name, other) = two_names();
        let begun = c.generation();
        // This process's batch stored both names, with audit ids 4 and 5.
        c.settle(
            begun,
            Some((4, 5)),
            [(&env, &name, Some(&rec(1))), (&env, &other, Some(&rec(2)))],
        );
        c.follow(
            [
                (4, "production", "a.example"),
                (5, "production", "b.example"),
            ],
            5,
        );
        assert!(c.get(&env, &name).is_some(), "its own write");
        assert!(c.get(&env, &other).is_some(), "its own write");
        // Another node's change to one of them, past the own range (now forgotten).
        let seen = c.generation();
        c.follow([(6, "production", "b.example")], 6);
        assert!(c.get(&env, &other).is_none());
        assert!(c.get(&env, &name).is_some());
        // A read begun before that does not fill.
        c.fill(seen, &env, &other, &rec(2));
        assert!(c.get(&env, &other).is_none());
        // Ids 4 and 5 are no longer passed over.
        c.follow([(5, "production", "a.example")], 7);
        assert!(c.get(&env, &name).is_none());
    }

    #[test]
    fn an_uncertain_write_stops_fills_for_a_while() {
        let c = leased(CACHE_BYTES);
        let (env, name) = names();
        // A read begun before the hold ends does not fill, even once it has ended.
        c.remove_uncertain(&env, [&name], Duration::from_millis(50));
        let seen = c.generation();
        assert_eq!(seen, None);
        std::thread::sleep(Duration::from_millis(60));
        c.fill(seen, &env, &name, &rec(1));
        assert!(c.get(&env, &name).is_none());
        c.remove_uncertain(&env, [&name], Duration::ZERO);
        let seen = c.generation();
        c.fill(seen, &env, &name, &rec(1));
        assert!(c.get(&env, &name).is_some());
    }

    #[test]
    fn it_stays_within_its_size() {
        let cap = 64 * 1024;
        let c = leased(cap);
        let env = EnvName::parse("production").unwrap();
        for i in 0..1000 {
            let name = Certname::parse(&format!("n{i}")).unwrap();
            let seen = c.generation();
            c.fill(seen, &env, &name, &rec(1));
            assert!(c.bytes() <= cap, "{} bytes after {i}", c.bytes());
        }
        let held = c.read().map.values().map(HashMap::len).sum::<usize>();
        assert!(held > 20, "{held} kept");
    }
}
