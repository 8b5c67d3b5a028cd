//! The HTTP application driven in-process: `App` built by the test (the composition root
//! `cli serve` is, for a server) on `MemStore` with a fixed clock, its routes and
//! middleware served by `certd::http::service` without a socket. The caller's identity
//! comes from a client certificate the real resolver classifies, put in the request by
//! a middleware of the test's (what the TLS layer does for a real connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::http::{Method, StatusCode};
use certd::app::App;
use certd::ca::{Certname, EnvName, FixedClock, OsRng, UnixTime};
use certd::config::Config;
use certd::store::{
    AuditEvent, AuditLog, CertRecord, CertSummary, CertificateStore, CleanOutcome, CrlRecord,
    CrlStore, DataDir, DueOrders, EnvRecord, EnvironmentStore, EventKind, IssueOutcome, MemStore,
    NodeRecord, NodeStore, Order, RenewOutcome, RequestRecord, RequestState, RequestStore,
    Revocation, RevokeOutcome, RevokedSerial, Snapshot, Store, StoreError, SubmitIssueOutcome,
    SubmitOutcome, SubmitRule,
};
use openssl::x509::X509;

use crate::common::inproc::{call, csr, Harness, NOW};
use crate::inproc_service;

#[actix_web::test]
async fn a_native_face_issuance_runs_in_process_on_the_memory_store() {
    let h = Harness::new("");
    let svc = inproc_service!(h);
    let cert = "/production/certificate/node1";

    // Agent: PUT the CSR (anonymous). 201, pending.
    let put = call(
        &svc,
        Method::PUT,
        "/production/certificate_request/node1",
        "",
        csr("node1"),
        &[],
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED);
    // Monitor: HEAD the certificate: not signed yet.
    assert_eq!(
        call(&svc, Method::HEAD, cert, "", "", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // Anonymous signing is refused by the authorization rules; the admin's is 201.
    let sign = |who| {
        call(
            &svc,
            Method::POST,
            "/production/certificate/",
            who,
            "node1",
            &[],
        )
    };
    assert_eq!(sign("").await.status, StatusCode::FORBIDDEN);
    assert_eq!(sign("admin").await.status, StatusCode::CREATED);

    // Agent: GET the certificate; it starts at the fixed clock's time, backdated by the
    // profile's allowance for clock skew.
    let get = call(&svc, Method::GET, cert, "", "", &[]).await;
    assert_eq!(get.status, StatusCode::OK);
    let x509 = X509::from_pem(&get.body).unwrap();
    let not_before =
        openssl::asn1::Asn1Time::from_unix(NOW - certd::ca::Profile::DEFAULT_BACKDATE).unwrap();
    assert_eq!(
        x509.not_before().compare(&not_before).unwrap(),
        std::cmp::Ordering::Equal,
        "notBefore {} is not the fixed clock's time",
        x509.not_before()
    );

    // Monitor: HEAD now says signed, with GET's length (the body the HTTP layer
    // measures for Content-Length, then leaves out).
    let head = call(&svc, Method::HEAD, cert, "", "", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body.len(), get.body.len());
}

/// A store that counts the records its reads return, over a [`MemStore`].
#[derive(Default)]
struct Counting {
    inner: MemStore,
    read: AtomicUsize,
    /// Shared, as a database is, whose clock reads this (ms): what heartbeats see.
    db_ms: Option<i64>,
    /// The `until_ms` of the last `due_orders`.
    until_ms: std::sync::atomic::AtomicI64,
}

impl Counting {
    fn saw(&self, n: usize) {
        self.read.fetch_add(n, Ordering::SeqCst);
    }
}

impl EnvironmentStore for Counting {
    fn put_environment(
        &self,
        env: &EnvName,
        rec: &EnvRecord,
        at: UnixTime,
    ) -> Result<(), StoreError> {
        self.inner.put_environment(env, rec, at)
    }

    fn environments(&self) -> Result<Vec<(EnvName, EnvRecord)>, StoreError> {
        let r = self.inner.environments()?;
        self.saw(r.len());
        Ok(r)
    }
}

impl RequestStore for Counting {
    fn request(&self, env: &EnvName, name: &Certname) -> Result<Option<RequestRecord>, StoreError> {
        let r = self.inner.request(env, name)?;
        self.saw(r.is_some() as usize);
        Ok(r)
    }

    fn submit_request(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
    ) -> Result<SubmitOutcome, StoreError> {
        self.inner.submit_request(env, name, rec, rule)
    }

    fn reject_request(
        &self,
        env: &EnvName,
        name: &Certname,
        reason: &str,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.inner.reject_request(env, name, reason, at)
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
        self.inner
            .update_request(env, name, expected, new, event, at)
    }

    fn cancel_request(
        &self,
        env: &EnvName,
        name: &Certname,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.inner.cancel_request(env, name, at)
    }

    fn requests(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, RequestRecord)>, StoreError> {
        let r = self.inner.requests(env, after, limit)?;
        self.saw(r.len());
        Ok(r)
    }

    fn due_orders(
        &self,
        env: &EnvName,
        until_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<DueOrders, StoreError> {
        let r = self.inner.due_orders(env, until_ms, after, limit)?;
        self.saw(r.due.len());
        self.until_ms.store(until_ms, Ordering::SeqCst);
        Ok(r)
    }
}

impl CertificateStore for Counting {
    fn issue(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        cert: &CertRecord,
    ) -> Result<IssueOutcome, StoreError> {
        self.inner.issue(env, name, expected, cert)
    }

    fn submit_issued(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        cert: &CertRecord,
    ) -> Result<SubmitIssueOutcome, StoreError> {
        self.inner.submit_issued(env, name, rec, rule, cert)
    }

    fn renew(
        &self,
        env: &EnvName,
        name: &Certname,
        old_serial: &[u8],
        cert: &CertRecord,
    ) -> Result<RenewOutcome, StoreError> {
        self.inner.renew(env, name, old_serial, cert)
    }

    fn certificate(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Result<Option<CertRecord>, StoreError> {
        let r = self.inner.certificate(env, name)?;
        self.saw(r.is_some() as usize);
        Ok(r)
    }

    fn certname_by_serial(
        &self,
        env: &EnvName,
        serial: &[u8],
    ) -> Result<Option<Certname>, StoreError> {
        let r = self.inner.certname_by_serial(env, serial)?;
        self.saw(r.is_some() as usize);
        Ok(r)
    }

    fn revoke(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<RevokeOutcome, StoreError> {
        self.inner.revoke(env, name, revocation)
    }

    fn clean(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<CleanOutcome, StoreError> {
        self.inner.clean(env, name, revocation)
    }

    fn clean_certified(
        &self,
        env: &EnvName,
        names: &[Certname],
        revocation: Revocation,
    ) -> Result<Vec<CleanOutcome>, StoreError> {
        self.inner.clean_certified(env, names, revocation)
    }

    fn certificates(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, CertSummary)>, StoreError> {
        let r = self.inner.certificates(env, after, limit)?;
        self.saw(r.len());
        Ok(r)
    }

    fn revoked_serials(&self, env: &EnvName) -> Result<Vec<RevokedSerial>, StoreError> {
        let r = self.inner.revoked_serials(env)?;
        self.saw(r.len());
        Ok(r)
    }
}

impl CrlStore for Counting {
    fn crl(&self, env: &EnvName) -> Result<Option<CrlRecord>, StoreError> {
        let r = self.inner.crl(env)?;
        self.saw(r.is_some() as usize);
        Ok(r)
    }

    fn put_crl(&self, env: &EnvName, crl: &CrlRecord) -> Result<bool, StoreError> {
        self.inner.put_crl(env, crl)
    }

    fn root_crl(&self) -> Result<Option<CrlRecord>, StoreError> {
        let r = self.inner.root_crl()?;
        self.saw(r.is_some() as usize);
        Ok(r)
    }

    fn put_root_crl(&self, crl: &CrlRecord) -> Result<(), StoreError> {
        self.inner.put_root_crl(crl)
    }
}

impl AuditLog for Counting {
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let r = self.inner.audit(after, limit)?;
        self.saw(r.len());
        Ok(r)
    }

    fn last_event_id(&self) -> Result<u64, StoreError> {
        self.inner.last_event_id()
    }
}

impl NodeStore for Counting {
    fn shared(&self) -> bool {
        self.db_ms.is_some()
    }

    fn heartbeat(&self, node: &NodeRecord, recent_ms: i64) -> Result<Vec<NodeRecord>, StoreError> {
        let mut seen = self.inner.heartbeat(node, recent_ms)?;
        for n in &mut seen {
            n.seen_ms = self.db_ms.unwrap_or(n.seen_ms);
        }
        Ok(seen)
    }
}

impl Store for Counting {
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    fn health(&self) -> Result<(), String> {
        self.inner.health()
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.inner.snapshot()
    }

    fn import(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.import(snapshot)
    }
}

fn pending(order: Option<Order>) -> RequestRecord {
    RequestRecord {
        csr_der: vec![0x30, 0x00],
        submitted_at: NOW,
        state: RequestState::Requested,
        dns_names: vec![],
        ip_addrs: vec![],
        order,
    }
}

/// An order for an issuer of its own (one lane each), not configured.
fn order(issuer: &str, due_ms: i64) -> Order {
    Order {
        issuer: issuer.into(),
        sub_status: certd::store::SubStatus::WaitingForCa,
        sub_status_message: String::new(),
        plugin_meta: Default::default(),
        approved_at: NOW,
        started_at: 0,
        due_ms,
        attempts: 0,
        failures: 0,
        validity: 3600,
        modified: false,
        lease_until_ms: 0,
    }
}

/// One pass of the order worker reads the orders that are due, through the store's
/// due-time index, not every pending request.
#[test]
fn one_order_worker_pass_reads_the_due_orders_not_every_pending_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(
        "[ca]\nkey_type = \"ec-p256\"\n",
        &dir.path().join("certd.toml"),
    )
    .unwrap();
    let store = Arc::new(Counting::default());
    let clock = Arc::new(FixedClock::new(NOW));
    let app = Arc::new(
        App::new(
            config,
            DataDir::new(dir.path().join("data")),
            store.clone(),
            clock.clone(),
            Arc::new(OsRng),
        )
        .unwrap(),
    );
    let env = EnvName::production();
    let rule = SubmitRule {
        allow_if_signed: false,
        replace_pending: true,
        new_only: false,
    };
    let now_ms = NOW * 1000;
    for i in 0..100_000 {
        let name = Certname::parse(&format!("idle{i:06}")).unwrap();
        store
            .inner
            .submit_request(&env, &name, &pending(None), rule)
            .unwrap();
    }
    // Ten due (one a minute ago, ...), five due in an hour.
    for i in 0..15 {
        let due = if i < 10 {
            now_ms - 60_000 * (i + 1)
        } else {
            now_ms + 3_600_000
        };
        let name = Certname::parse(&format!("order{i:02}")).unwrap();
        store
            .inner
            .submit_request(
                &env,
                &name,
                &pending(Some(order(&format!("gone{i}"), due))),
                rule,
            )
            .unwrap();
    }

    store.read.store(0, Ordering::SeqCst);
    let next = app.work_due_orders().unwrap();
    assert_eq!(
        next,
        Some(now_ms + 3_600_000),
        "the next due time is the first order left"
    );
    // The lanes end each due order (its issuer is not configured): wait for that.
    let orders_ended = || {
        (0..10).all(|i| {
            let name = Certname::parse(&format!("order{i:02}")).unwrap();
            matches!(
                store.inner.request(&env, &name).unwrap().map(|r| r.state),
                Some(RequestState::Error { .. })
            )
        })
    };
    for _ in 0..500 {
        if orders_ended() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(orders_ended(), "the ten due orders were not worked");
    let read = store.read.load(Ordering::SeqCst);
    assert!(
        read <= 30,
        "one pass read {read} records for 10 due orders among 100,015 requests"
    );

    // The next pass finds nothing due until the clock reaches the later five.
    store.read.store(0, Ordering::SeqCst);
    assert_eq!(app.work_due_orders().unwrap(), Some(now_ms + 3_600_000));
    assert_eq!(store.read.load(Ordering::SeqCst), 0);
}

/// Order due times and leases are compared by every node that shares the store, so a
/// node keeps them by the store's clock (its own corrected by the offset its heartbeat
/// measures), not by its own: a node whose clock runs an hour ahead asks for the orders
/// due by the database's now, not for those due within the next hour.
#[test]
fn a_node_keeps_order_times_by_the_shared_stores_clock() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(
        "[ca]\nkey_type = \"ec-p256\"\n",
        &dir.path().join("certd.toml"),
    )
    .unwrap();
    let db_ms = NOW * 1000 - 3_600_000;
    let store = Arc::new(Counting {
        db_ms: Some(db_ms),
        ..Counting::default()
    });
    let app = Arc::new(
        App::new(
            config,
            DataDir::new(dir.path().join("data")),
            store.clone(),
            Arc::new(FixedClock::new(NOW)),
            Arc::new(OsRng),
        )
        .unwrap(),
    );
    let workers = app.spawn_workers().unwrap();
    // The cluster part of the status is a global admin's to read.
    let admin = certd::authz::Identity {
        role: certd::authz::Role::Admin,
        ..certd::authz::Identity::anonymous()
    };
    let offset = (0..200).find_map(|_| {
        let offset = app.status(&admin).cluster.map(|c| c.clock_offset_ms);
        if offset == Some(-3_600_000) {
            return offset;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        None
    });
    assert_eq!(offset, Some(-3_600_000), "the heartbeat's offset");
    app.work_due_orders().unwrap();
    workers.stop(std::time::Duration::from_secs(5));
    assert_eq!(store.until_ms.load(Ordering::SeqCst), db_ms);
}
