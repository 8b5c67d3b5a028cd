//! An in-memory [`Store`]: the simple model the sled store is tested against, and a
//! store for unit tests of the layers above. Written independently of the sled code,
//! as plain maps under one lock. It panics on what cannot happen in it (a stored name
//! that does not parse), as a model should.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;

/// A [`Store`] held in memory; nothing survives the process.
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Snapshot>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn log(s: &mut Snapshot, at: UnixTime, env: &EnvName, certname: &str, kind: EventKind) {
    let id = s.audit.len() as u64 + 1;
    s.audit.push(AuditEvent {
        id,
        at,
        env: env.to_string(),
        certname: certname.to_owned(),
        kind,
        detail: None,
    });
}

fn env_mut<'a>(s: &'a mut Snapshot, env: &EnvName) -> &'a mut EnvSnapshot {
    s.envs.entry(env.to_string()).or_default()
}

impl EnvSnapshot {
    /// Stores a request, keeping the due-time index of orders; returns the one replaced.
    fn put_request(&mut self, name: &str, rec: RequestRecord) -> Option<RequestRecord> {
        if let Some(at) = rec.order_free_at() {
            self.orders_due.insert((at, name.to_owned()));
        }
        let prev = self.requests.insert(name.to_owned(), rec);
        self.unindex(name, prev.as_ref());
        prev
    }

    /// Removes a request and its index entry.
    fn remove_request(&mut self, name: &str) -> Option<RequestRecord> {
        let prev = self.requests.remove(name);
        self.unindex(name, prev.as_ref());
        prev
    }

    /// Drops `prev`'s index entry unless the request now stored has the same.
    fn unindex(&mut self, name: &str, prev: Option<&RequestRecord>) {
        let Some(at) = prev.and_then(|p| p.order_free_at()) else {
            return;
        };
        if self.requests.get(name).and_then(|r| r.order_free_at()) != Some(at) {
            self.orders_due.remove(&(at, name.to_owned()));
        }
    }
}

/// [`RequestStore::submit_request`] on the state.
fn submit(
    s: &mut Snapshot,
    env: &EnvName,
    name: &Certname,
    rec: &RequestRecord,
    rule: SubmitRule,
) -> SubmitOutcome {
    let e = env_mut(s, env);
    if rule.new_only
        && (e.certificates.contains_key(name.as_str()) || e.requests.contains_key(name.as_str()))
    {
        return SubmitOutcome::NotNew;
    }
    if let Some(c) = e.certificates.get(name.as_str()) {
        if !rule.allow_if_signed {
            return SubmitOutcome::CertificateExists {
                revoked: c.revocation.is_some(),
            };
        }
    }
    let pending = e
        .requests
        .get(name.as_str())
        .is_some_and(|p| p.state == RequestState::Requested);
    if pending && !rule.replace_pending {
        return SubmitOutcome::RequestPending;
    }
    let prev = e.put_request(name.as_str(), rec.clone());
    let replaced = prev.is_some_and(|p| p.state == RequestState::Requested);
    let (kind, detail) = rec.submit_event(replaced);
    log(s, rec.submitted_at, env, name.as_str(), kind);
    if let Some(last) = s.audit.last_mut() {
        last.detail = detail;
    }
    if replaced {
        SubmitOutcome::Replaced
    } else {
        SubmitOutcome::Created
    }
}

/// [`CertificateStore::issue`] on the state.
fn issue(
    s: &mut Snapshot,
    env: &EnvName,
    name: &Certname,
    expected: &RequestRecord,
    cert: &CertRecord,
) -> IssueOutcome {
    let e = env_mut(s, env);
    let outcome = match e.requests.get(name.as_str()) {
        Some(r) if r.state == RequestState::Requested => {
            if r != expected {
                IssueOutcome::RequestChanged
            } else if e
                .certificates
                .get(name.as_str())
                .is_some_and(|c| c.revocation.is_none())
            {
                IssueOutcome::AlreadySigned
            } else if e.serials.contains_key(&cert.serial) {
                IssueOutcome::SerialTaken
            } else {
                IssueOutcome::Issued
            }
        }
        _ => IssueOutcome::NoRequest,
    };
    if outcome == IssueOutcome::Issued {
        e.remove_request(name.as_str());
        e.certificates.insert(name.to_string(), cert.clone());
        e.serials.insert(cert.serial.clone(), name.to_string());
        log(s, cert.issued_at, env, name.as_str(), EventKind::Issued);
    }
    outcome
}

/// Drops environments left with no content, as the sled snapshot leaves them out.
fn tidy(s: &mut Snapshot) {
    s.envs.retain(|_, e| *e != EnvSnapshot::default());
}

fn page<T: Clone>(
    m: &BTreeMap<String, T>,
    after: Option<&str>,
    limit: usize,
) -> Vec<(Certname, T)> {
    m.iter()
        .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
        .take(limit)
        .map(|(k, v)| {
            (
                Certname::parse(k).expect("stored names are valid"),
                v.clone(),
            )
        })
        .collect()
}

/// Cleans `name`; with `certified`, only if it has a certificate.
fn clean_in(
    s: &mut Snapshot,
    env: &EnvName,
    name: &Certname,
    revocation: Revocation,
    certified: bool,
) -> CleanOutcome {
    let Some(e) = s.envs.get_mut(env.as_str()) else {
        return CleanOutcome::NotFound;
    };
    let cert = e.certificates.get(name.as_str()).cloned();
    if certified && cert.is_none() {
        return CleanOutcome::NotFound;
    }
    let had_request = e.remove_request(name.as_str()).is_some();
    if cert.is_none() && !had_request {
        return CleanOutcome::NotFound;
    }
    let mut revoked = None;
    if let Some(c) = cert {
        if c.revocation.is_none() {
            revoke_in(s, env, name, revocation);
            revoked = Some(c.serial);
        }
        env_mut(s, env).certificates.remove(name.as_str());
    }
    log(
        s,
        revocation.revoked_at,
        env,
        name.as_str(),
        EventKind::Cleaned,
    );
    CleanOutcome::Cleaned { revoked }
}

/// How a renewal revokes the certificate it replaces.
fn superseded(renewed: &CertRecord) -> Revocation {
    Revocation {
        revoked_at: renewed.issued_at,
        reason: crate::ca::RevocationReason::Superseded,
    }
}

fn revoke_in(s: &mut Snapshot, env: &EnvName, name: &Certname, revocation: Revocation) {
    let e = env_mut(s, env);
    let cert = e
        .certificates
        .get_mut(name.as_str())
        .expect("caller checked");
    cert.revocation = Some(revocation);
    let serial = cert.serial.clone();
    e.revoked.push(RevokedSerial { serial, revocation });
    // Serial order: shorter magnitudes first, then bytewise (numeric order).
    e.revoked
        .sort_by(|a, b| (a.serial.len(), &a.serial).cmp(&(b.serial.len(), &b.serial)));
    log(
        s,
        revocation.revoked_at,
        env,
        name.as_str(),
        EventKind::Revoked,
    );
}

impl EnvironmentStore for MemStore {
    fn put_environment(
        &self,
        env: &EnvName,
        rec: &EnvRecord,
        at: UnixTime,
    ) -> Result<(), StoreError> {
        self.with(|s| {
            s.environments.insert(env.to_string(), rec.clone());
            log(s, at, env, "", EventKind::Environment);
        });
        Ok(())
    }

    fn environments(&self) -> Result<Vec<(EnvName, EnvRecord)>, StoreError> {
        Ok(self.with(|s| {
            s.environments
                .iter()
                .map(|(k, v)| (EnvName::parse(k).expect("valid"), v.clone()))
                .collect()
        }))
    }
}

impl RequestStore for MemStore {
    fn request(&self, env: &EnvName, name: &Certname) -> Result<Option<RequestRecord>, StoreError> {
        Ok(self.with(|s| {
            s.envs
                .get(env.as_str())
                .and_then(|e| e.requests.get(name.as_str()).cloned())
        }))
    }

    fn submit_request(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
    ) -> Result<SubmitOutcome, StoreError> {
        Ok(self.with(|s| {
            let outcome = submit(s, env, name, rec, rule);
            tidy(s);
            outcome
        }))
    }

    fn reject_request(
        &self,
        env: &EnvName,
        name: &Certname,
        reason: &str,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let Some(e) = s.envs.get_mut(env.as_str()) else {
                return false;
            };
            let Some(mut r) = e.requests.get(name.as_str()).cloned() else {
                return false;
            };
            r.state = RequestState::Invalid {
                reason: reason.to_owned(),
                rule: None,
            };
            e.put_request(name.as_str(), r);
            log(s, at, env, name.as_str(), EventKind::Rejected);
            true
        }))
    }

    fn update_request(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        new: &RequestRecord,
        event: Option<(EventKind, Option<String>)>,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let e = env_mut(s, env);
            if e.requests.get(name.as_str()) != Some(expected) {
                tidy(s);
                return false;
            }
            e.put_request(name.as_str(), new.clone());
            if let Some((kind, detail)) = event {
                log(s, at, env, name.as_str(), kind);
                if let Some(last) = s.audit.last_mut() {
                    last.detail = detail;
                }
            }
            true
        }))
    }

    fn cancel_request(
        &self,
        env: &EnvName,
        name: &Certname,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let removed = s
                .envs
                .get_mut(env.as_str())
                .and_then(|e| e.remove_request(name.as_str()))
                .is_some();
            if removed {
                log(s, at, env, name.as_str(), EventKind::Canceled);
            }
            tidy(s);
            removed
        }))
    }

    fn requests(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, RequestRecord)>, StoreError> {
        Ok(self.with(|s| {
            s.envs
                .get(env.as_str())
                .map(|e| page(&e.requests, after, limit))
                .unwrap_or_default()
        }))
    }

    fn due_orders(
        &self,
        env: &EnvName,
        until_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<DueOrders, StoreError> {
        use std::ops::Bound;
        Ok(self.with(|s| {
            let mut out = DueOrders::default();
            let Some(e) = s.envs.get(env.as_str()) else {
                return out;
            };
            let from = match after {
                Some((at, name)) => Bound::Excluded((at, name.to_owned())),
                None => Bound::Unbounded,
            };
            for (at, name) in e.orders_due.range((from, Bound::Unbounded)) {
                if *at > until_ms || out.due.len() >= limit {
                    out.next_ms = Some(*at);
                    break;
                }
                let rec = e.requests[name].clone();
                let name = Certname::parse(name).expect("stored names are valid");
                out.due.push((name, rec));
            }
            out
        }))
    }
}

impl CertificateStore for MemStore {
    fn issue(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        cert: &CertRecord,
    ) -> Result<IssueOutcome, StoreError> {
        Ok(self.with(|s| {
            let outcome = issue(s, env, name, expected, cert);
            tidy(s);
            outcome
        }))
    }

    fn submit_issued(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        cert: &CertRecord,
    ) -> Result<SubmitIssueOutcome, StoreError> {
        Ok(self.with(|s| {
            let outcome = if env_mut(s, env).serials.contains_key(&cert.serial) {
                SubmitIssueOutcome::SerialTaken
            } else {
                match submit(s, env, name, rec, rule) {
                    o @ (SubmitOutcome::Created | SubmitOutcome::Replaced) => {
                        SubmitIssueOutcome::Stored(o, issue(s, env, name, rec, cert))
                    }
                    refused => SubmitIssueOutcome::Refused(refused),
                }
            };
            tidy(s);
            outcome
        }))
    }

    fn renew(
        &self,
        env: &EnvName,
        name: &Certname,
        old_serial: &[u8],
        cert: &CertRecord,
    ) -> Result<RenewOutcome, StoreError> {
        Ok(self.with(|s| {
            let e = env_mut(s, env);
            let current = e
                .certificates
                .get(name.as_str())
                .is_some_and(|c| c.serial == old_serial && c.revocation.is_none());
            let outcome = if !current {
                RenewOutcome::NotCurrent
            } else if e.serials.contains_key(&cert.serial) {
                RenewOutcome::SerialTaken
            } else {
                revoke_in(s, env, name, superseded(cert));
                let e = env_mut(s, env);
                e.certificates.insert(name.to_string(), cert.clone());
                e.serials.insert(cert.serial.clone(), name.to_string());
                log(s, cert.issued_at, env, name.as_str(), EventKind::Renewed);
                RenewOutcome::Renewed
            };
            tidy(s);
            outcome
        }))
    }

    fn certificate(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Result<Option<CertRecord>, StoreError> {
        Ok(self.with(|s| {
            s.envs
                .get(env.as_str())
                .and_then(|e| e.certificates.get(name.as_str()).cloned())
        }))
    }

    fn certname_by_serial(
        &self,
        env: &EnvName,
        serial: &[u8],
    ) -> Result<Option<Certname>, StoreError> {
        Ok(self.with(|s| {
            s.envs
                .get(env.as_str())
                .and_then(|e| e.serials.get(serial))
                .map(|n| Certname::parse(n).expect("valid"))
        }))
    }

    fn revoke(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<RevokeOutcome, StoreError> {
        Ok(self.with(|s| {
            match s
                .envs
                .get(env.as_str())
                .and_then(|e| e.certificates.get(name.as_str()))
            {
                None => RevokeOutcome::NotFound,
                Some(c) if c.revocation.is_some() => RevokeOutcome::AlreadyRevoked,
                Some(c) => {
                    let serial = c.serial.clone();
                    revoke_in(s, env, name, revocation);
                    RevokeOutcome::Revoked { serial }
                }
            }
        }))
    }

    fn clean(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<CleanOutcome, StoreError> {
        Ok(self.with(|s| {
            let outcome = clean_in(s, env, name, revocation, false);
            tidy(s);
            outcome
        }))
    }

    fn clean_certified(
        &self,
        env: &EnvName,
        names: &[Certname],
        revocation: Revocation,
    ) -> Result<Vec<CleanOutcome>, StoreError> {
        Ok(self.with(|s| {
            let out = names
                .iter()
                .map(|name| clean_in(s, env, name, revocation, true))
                .collect();
            tidy(s);
            out
        }))
    }

    fn certificates(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, CertSummary)>, StoreError> {
        Ok(self.with(|s| {
            s.envs
                .get(env.as_str())
                .map(|e| page(&e.certificates, after, limit))
                .unwrap_or_default()
                .into_iter()
                .map(|(n, c)| (n, c.summary()))
                .collect()
        }))
    }

    fn revoked_serials(&self, env: &EnvName) -> Result<Vec<RevokedSerial>, StoreError> {
        Ok(self.with(|s| {
            s.envs
                .get(env.as_str())
                .map(|e| e.revoked.clone())
                .unwrap_or_default()
        }))
    }
}

impl CrlStore for MemStore {
    fn crl(&self, env: &EnvName) -> Result<Option<CrlRecord>, StoreError> {
        Ok(self.with(|s| s.envs.get(env.as_str()).and_then(|e| e.crl.clone())))
    }

    fn put_crl(&self, env: &EnvName, crl: &CrlRecord) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let slot = &mut env_mut(s, env).crl;
            let newer = slot.as_ref().is_none_or(|c| c.number < crl.number);
            if newer {
                *slot = Some(crl.clone());
            }
            newer
        }))
    }

    fn root_crl(&self) -> Result<Option<CrlRecord>, StoreError> {
        Ok(self.with(|s| s.root_crl.clone()))
    }

    fn put_root_crl(&self, crl: &CrlRecord) -> Result<(), StoreError> {
        self.with(|s| s.root_crl = Some(crl.clone()));
        Ok(())
    }
}

impl AuditLog for MemStore {
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self.with(|s| {
            s.audit
                .iter()
                .filter(|e| e.id > after)
                .take(limit)
                .cloned()
                .collect()
        }))
    }

    fn last_event_id(&self) -> Result<u64, StoreError> {
        Ok(self.with(|s| s.audit.len() as u64))
    }
}

impl NodeStore for MemStore {}

impl Store for MemStore {
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(self.with(|s| s.clone()))
    }

    fn import(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.with(|s| {
            if *s != Snapshot::default() {
                return Err(StoreError::NotEmpty);
            }
            *s = snapshot.clone();
            Ok(())
        })
    }
}
