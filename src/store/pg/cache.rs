//! The certificate cache: certificates read from the database, kept in memory so that
//! `GET`/`HEAD certificate/{name}` is answered without a round trip, and keeps being
//! answered while the database is away.
//!
//! It is right because this process sees every write that changes a certificate: each
//! one removes the names it touched once its transaction has ended (committed, rolled
//! back or broken), before its caller hears of it. A read that missed fills the cache only
//! if no such removal happened while it read (a generation count), so an older row read
//! before a commit never lands after it. A write whose outcome is not known (the
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
    /// Another process may write the database (another node, a `certd store copy`):
    /// nothing is served or kept, since its writes do not pass through here.
    shared: bool,
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
        if inner.shared {
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
            _ if inner.shared => None,
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
        outcomes: impl IntoIterator<Item = (&'a EnvName, &'a Certname, Option<&'a CertRecord>)>,
    ) {
        let mut inner = self.write();
        let keep = seen == Some(inner.generation);
        inner.generation += 1;
        for (env, name, rec) in outcomes {
            match rec {
                Some(rec) if keep => self.put(&mut inner, env, name, rec),
                _ => forget(&mut inner, env, [name]),
            }
        }
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

    /// Whether this process is the only one connected to the database as a certd
    /// store (see `peers`). Not alone: everything is forgotten, and nothing is served or
    /// kept until it is alone again.
    pub(super) fn set_alone(&self, alone: bool) {
        let mut inner = self.write();
        if !alone {
            inner.generation += 1;
            inner.map.clear();
            inner.bytes = 0;
        }
        inner.shared = !alone;
    }

    /// Whether the last count found other holders (see `peers`).
    pub(super) fn is_shared(&self) -> bool {
        self.read().shared
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

    #[test]
    fn a_read_that_overlapped_a_write_does_not_fill() {
        let c = CertCache::new(CACHE_BYTES);
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

    #[test]
    fn a_write_keeps_what_it_stored_unless_another_ended_meanwhile() {
        let c = CertCache::new(CACHE_BYTES);
        let (env, name) = names();
        let other = Certname::parse("b.example").unwrap();
        let begun = c.generation();
        c.settle(begun, [(&env, &name, Some(&rec(1))), (&env, &other, None)]);
        assert_eq!(c.get(&env, &name).map(|r| r.serial), Some(vec![1]));
        // A read that began before the write ended does not fill over it.
        let reading = begun;
        c.fill(reading, &env, &name, &rec(0));
        assert_eq!(c.get(&env, &name).map(|r| r.serial), Some(vec![1]));
        // Another write ended while this one ran: what this one stored may be older.
        let begun = c.generation();
        c.remove(&env, [&other]);
        c.settle(begun, [(&env, &name, Some(&rec(2)))]);
        assert!(c.get(&env, &name).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn an_uncertain_write_stops_fills_for_a_while() {
        let c = CertCache::new(CACHE_BYTES);
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
        let c = CertCache::new(cap);
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
