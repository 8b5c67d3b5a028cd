//! The sled and PostgreSQL stores against the in-memory model: random sequences of
//! operations give the same outcomes and the same contents in all three, including across
//! a close and reopen.

use certd::ca::{Certname, EnvName, RevocationReason};
use certd::store::{
    AuditLog, CertRecord, CertificateStore, CrlRecord, EnvRecord, IssueOutcome, MemStore, PgStore,
    RequestRecord, RequestState, RequestStore, Revocation, SledStore, Store, StoreError,
    StoredFingerprints, SubmitIssueOutcome, SubmitOutcome, SubmitRule,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Submit {
        env: u8,
        name: u8,
        csr: u8,
        allow: bool,
        replace: bool,
        /// `SubmitRule::new_only`.
        new_only: bool,
    },
    Reject {
        env: u8,
        name: u8,
    },
    Cancel {
        env: u8,
        name: u8,
    },
    /// Compare-and-set of the request's order; `stale` expects a record that is not there.
    Order {
        env: u8,
        name: u8,
        attempts: u32,
        stale: bool,
    },
    /// Issues for the request as read, its CSR made `csr`; `stale` expects a record
    /// with that CSR that is not there (compare-and-set, as `Order`).
    Issue {
        env: u8,
        name: u8,
        csr: u8,
        serial: u8,
        stale: bool,
    },
    /// An autosigned submission: submit and issue in one transaction.
    SubmitIssued {
        env: u8,
        name: u8,
        csr: u8,
        allow: bool,
        replace: bool,
        new_only: bool,
        serial: u8,
    },
    Renew {
        env: u8,
        name: u8,
        old: u8,
        serial: u8,
    },
    Revoke {
        env: u8,
        name: u8,
        reason: bool,
    },
    Clean {
        env: u8,
        name: u8,
    },
    /// Puppet's bulk clean; names may repeat.
    CleanCertified {
        env: u8,
        names: Vec<u8>,
    },
    PutEnv {
        env: u8,
    },
    PutCrl {
        env: u8,
        number: u8,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let e = 0u8..2;
    let n = 0u8..2;
    prop_oneof![
        4 => (e.clone(), n.clone(), 0u8..2, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(env, name, csr, allow, replace, new_only)| Op::Submit { env, name, csr, allow, replace, new_only }),
        1 => (e.clone(), n.clone()).prop_map(|(env, name)| Op::Reject { env, name }),
        1 => (e.clone(), n.clone()).prop_map(|(env, name)| Op::Cancel { env, name }),
        2 => (e.clone(), n.clone(), 0u32..4, any::<bool>()).prop_map(|(env, name, attempts, stale)| Op::Order { env, name, attempts, stale }),
        4 => (e.clone(), n.clone(), 0u8..2, 0u8..8, any::<bool>()).prop_map(|(env, name, csr, serial, stale)| Op::Issue { env, name, csr, serial, stale }),
        3 => (e.clone(), n.clone(), 0u8..2, any::<bool>(), any::<bool>(), any::<bool>(), 0u8..8).prop_map(|(env, name, csr, allow, replace, new_only, serial)| Op::SubmitIssued { env, name, csr, allow, replace, new_only, serial }),
        2 => (e.clone(), n.clone(), 0u8..8, 0u8..8).prop_map(|(env, name, old, serial)| Op::Renew { env, name, old, serial }),
        2 => (e.clone(), n.clone(), any::<bool>()).prop_map(|(env, name, reason)| Op::Revoke { env, name, reason }),
        1 => (e.clone(), n.clone()).prop_map(|(env, name)| Op::Clean { env, name }),
        1 => (e.clone(), proptest::collection::vec(n.clone(), 0..4)).prop_map(|(env, names)| Op::CleanCertified { env, names }),
        1 => e.clone().prop_map(|env| Op::PutEnv { env }),
        1 => (e, 0u8..5).prop_map(|(env, number)| Op::PutCrl { env, number }),
        1 => Just(Op::Reopen),
    ]
}

fn env(i: u8) -> EnvName {
    EnvName::parse(["production", "staging"][i as usize]).unwrap()
}

fn name(i: u8) -> Certname {
    Certname::parse(&format!("node{i}.example.com")).unwrap()
}

fn csr(i: u8) -> Vec<u8> {
    vec![0x30, i, i, i]
}

fn request(c: u8, at: i64) -> RequestRecord {
    RequestRecord {
        csr_der: csr(c),
        submitted_at: at,
        state: RequestState::Requested,
        dns_names: vec![],
        ip_addrs: vec![],
        order: None,
    }
}

/// A certificate; with an even serial it carries fingerprints (as certd issues them:
/// PostgreSQL keeps them in the row's summary, not its record; not those of its DER, so
/// that a store recomputing them instead of keeping them shows), with an odd one it
/// does not (as records from before they were stored, which PostgreSQL returns with
/// them computed from the DER: [`filled`]).
fn issued(n: u8, serial: u8, at: i64) -> CertRecord {
    CertRecord {
        serial: vec![serial + 1, 0xAB],
        fingerprints: (serial % 2 == 0).then(|| StoredFingerprints::of_der(&[0x66, n, serial])),
        der: vec![0x30, n, serial],
        issued_at: at,
        not_before: 0,
        not_after: at + 100,
        dns_names: vec![],
        ip_addrs: vec![],
        authorization_extensions: vec![],
        revocation: None,
    }
}

/// Applies one operation, returning its outcome as text for comparison.
fn apply(store: &dyn Store, op: &Op, at: i64) -> String {
    let revocation = |reason: bool| Revocation {
        revoked_at: at,
        reason: if reason {
            RevocationReason::KeyCompromise
        } else {
            RevocationReason::Unspecified
        },
    };
    match *op {
        Op::Submit {
            env: e,
            name: n,
            csr: c,
            allow,
            replace,
            new_only,
        } => {
            let rec = request(c, at);
            format!(
                "{:?}",
                store
                    .submit_request(
                        &env(e),
                        &name(n),
                        &rec,
                        SubmitRule {
                            allow_if_signed: allow,
                            replace_pending: replace,
                            new_only,
                        }
                    )
                    .unwrap()
            )
        }
        Op::Reject { env: e, name: n } => format!(
            "{:?}",
            store
                .reject_request(&env(e), &name(n), "rejected by admin", at)
                .unwrap()
        ),
        Op::Cancel { env: e, name: n } => {
            format!("{:?}", store.cancel_request(&env(e), &name(n), at).unwrap())
        }
        Op::Order {
            env: e,
            name: n,
            attempts,
            stale,
        } => {
            let Some(current) = store.request(&env(e), &name(n)).unwrap() else {
                return "no request".into();
            };
            let mut expected = current.clone();
            if stale {
                expected.submitted_at += 1;
            }
            let mut new = current.clone();
            new.order = Some(certd::store::Order {
                issuer: "up".into(),
                sub_status: certd::store::SubStatus::WaitingForCa,
                sub_status_message: format!("attempt {attempts}"),
                plugin_meta: [("k".to_string(), attempts.to_string())].into(),
                approved_at: at,
                started_at: at,
                due_ms: at * 1000,
                attempts,
                failures: 0,
                validity: 60,
                modified: false,
                lease_until_ms: 0,
            });
            let event = (attempts % 2 == 0).then(|| {
                (
                    certd::store::EventKind::OrderUpdated,
                    Some(format!("attempt {attempts}")),
                )
            });
            format!(
                "{:?}",
                store
                    .update_request(&env(e), &name(n), &expected, &new, event, at)
                    .unwrap()
            )
        }
        Op::Issue {
            env: e,
            name: n,
            csr: c,
            serial,
            stale,
        } => {
            let cert = issued(n, serial, at);
            let mut expected = store
                .request(&env(e), &name(n))
                .unwrap()
                .unwrap_or_else(|| request(c, at));
            expected.csr_der = csr(c);
            if stale {
                expected.submitted_at += 1;
            }
            format!(
                "{:?}",
                store.issue(&env(e), &name(n), &expected, &cert).unwrap()
            )
        }
        Op::SubmitIssued {
            env: e,
            name: n,
            csr: c,
            allow,
            replace,
            new_only,
            serial,
        } => {
            let rule = SubmitRule {
                allow_if_signed: allow,
                replace_pending: replace,
                new_only,
            };
            let cert = issued(n, serial, at);
            format!(
                "{:?}",
                store
                    .submit_issued(&env(e), &name(n), &request(c, at), rule, &cert)
                    .unwrap()
            )
        }
        Op::Renew {
            env: e,
            name: n,
            old,
            serial,
        } => {
            // The renewed certificate: another DER and a later notAfter.
            let cert = CertRecord {
                der: vec![0x31, n, serial],
                not_after: at + 200,
                ..issued(n, serial, at)
            };
            format!(
                "{:?}",
                store
                    .renew(&env(e), &name(n), &[old + 1, 0xAB], &cert)
                    .unwrap()
            )
        }
        Op::Revoke {
            env: e,
            name: n,
            reason,
        } => format!(
            "{:?}",
            store.revoke(&env(e), &name(n), revocation(reason)).unwrap()
        ),
        Op::Clean { env: e, name: n } => format!(
            "{:?}",
            store.clean(&env(e), &name(n), revocation(false)).unwrap()
        ),
        Op::CleanCertified { env: e, ref names } => {
            let names: Vec<_> = names.iter().map(|&n| name(n)).collect();
            format!(
                "{:?}",
                store
                    .clean_certified(&env(e), &names, revocation(true))
                    .unwrap()
            )
        }
        Op::PutEnv { env: e } => format!(
            "{:?}",
            store
                .put_environment(
                    &env(e),
                    &EnvRecord {
                        created_at: at,
                        settings: None
                    },
                    at
                )
                .unwrap()
        ),
        Op::PutCrl { env: e, number } => {
            let crl = CrlRecord {
                number: number.into(),
                this_update: at,
                next_update: at + 10,
                entries: 0,
                der: vec![number],
            };
            format!("{:?}", store.put_crl(&env(e), &crl).unwrap())
        }
        Op::Reopen => String::new(),
    }
}

/// What PostgreSQL returns for a certificate the model holds: with its fingerprints,
/// as given or computed from its DER.
fn filled(mut c: CertRecord) -> CertRecord {
    if c.fingerprints.is_none() {
        c.fingerprints = Some(StoredFingerprints::of_der(&c.der));
    }
    c
}

/// A snapshot's certificates [`filled`].
fn filled_snapshot(mut s: certd::store::Snapshot) -> certd::store::Snapshot {
    for e in s.envs.values_mut() {
        e.certificates = std::mem::take(&mut e.certificates)
            .into_iter()
            .map(|(n, c)| (n, filled(c)))
            .collect();
    }
    s
}

/// Reads of `store` against the model's; with `fill`, the model's certificates
/// [`filled`] (what PostgreSQL returns).
fn check_reads(store: &dyn Store, model: &dyn Store, fill: bool) {
    for e in 0..2 {
        let env = env(e);
        assert_eq!(
            store.certificates(&env, None, 1000).unwrap(),
            model.certificates(&env, None, 1000).unwrap()
        );
        assert_eq!(
            store.requests(&env, Some("node1.example.com"), 2).unwrap(),
            model.requests(&env, Some("node1.example.com"), 2).unwrap()
        );
        assert_eq!(
            store.revoked_serials(&env).unwrap(),
            model.revoked_serials(&env).unwrap()
        );
        let held = model.requests(&env, None, 1000).unwrap().len();
        for up_to in [0, 1, 2, 1000] {
            assert_eq!(store.count_requests(&env, up_to).unwrap(), held.min(up_to));
            assert_eq!(model.count_requests(&env, up_to).unwrap(), held.min(up_to));
        }
        for n in 0..4 {
            assert_eq!(
                store.request(&env, &name(n)).unwrap(),
                model.request(&env, &name(n)).unwrap()
            );
            let want = model.certificate(&env, &name(n)).unwrap();
            assert_eq!(
                store.certificate(&env, &name(n)).unwrap(),
                if fill { want.map(filled) } else { want }
            );
        }
        for s in 0..8u8 {
            let serial = [s + 1, 0xAB];
            assert_eq!(
                store.certname_by_serial(&env, &serial).unwrap(),
                model.certname_by_serial(&env, &serial).unwrap()
            );
        }
        // The environment's events, by the store's index (the model reads the log).
        for (after, limit) in [(0, 1000), (2, 3)] {
            assert_eq!(
                store.audit_of(&env, after, limit).unwrap(),
                model.audit_of(&env, after, limit).unwrap()
            );
        }
    }
    assert_eq!(store.audit(3, 5).unwrap(), model.audit(3, 5).unwrap());
}

/// An empty PostgreSQL store on the shared test server: a fresh database per case would
/// cost a checkpoint each, so one database is emptied between cases.
fn empty_pg_store() -> Option<(PgStore, String)> {
    use std::sync::OnceLock;
    static DB: OnceLock<Option<String>> = OnceLock::new();
    let pg = crate::common::pg::Postgres::shared()?;
    let db = DB
        .get_or_init(|| {
            let db = pg.database();
            // Durability is not what this test is about (crash.rs tests it): commits
            // that wait for no WAL flush keep 256 cases quick.
            pg.admin()
                .batch_execute(&format!("ALTER DATABASE {db} SET synchronous_commit = off"))
                .unwrap();
            Some(db)
        })
        .clone()?;
    let store = PgStore::open(&pg.store_config(&db)).unwrap();
    pg.admin_of(&db)
        .batch_execute(
            "DELETE FROM certd_environments; DELETE FROM certd_requests;
             DELETE FROM certd_certificates; DELETE FROM certd_revocations;
             DELETE FROM certd_serials; DELETE FROM certd_crls; DELETE FROM certd_root_crl;
             DELETE FROM certd_audit; DELETE FROM certd_ca_keys;
             UPDATE certd_audit_head SET last = 0;",
        )
        .unwrap();
    Some((store, db))
}

/// One PostgreSQL database at a time: the cases share it.
static PG_CASE: std::sync::Mutex<()> = std::sync::Mutex::new(());

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sled_and_postgres_stores_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let _one = PG_CASE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let mut sled = SledStore::open(dir.path()).unwrap();
        let mut pg = empty_pg_store();
        let model = MemStore::new();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Reopen = op {
                sled.flush().unwrap();
                drop(sled);
                sled = SledStore::open(dir.path()).unwrap();
                if let Some((store, db)) = pg.take() {
                    drop(store);
                    let cfg = crate::common::pg::Postgres::shared().unwrap().store_config(&db);
                    pg = Some((PgStore::open(&cfg).unwrap(), db));
                }
                continue;
            }
            let at = 1_700_000_000 + i as i64;
            let want = apply(&model, op, at);
            let got = apply(&sled, op, at);
            prop_assert_eq!(&got, &want, "sled: op {} {:?}", i, op);
            if let Some((store, _)) = &pg {
                let got = apply(store, op, at);
                prop_assert_eq!(&got, &want, "postgres: op {} {:?}", i, op);
            }
        }
        check_reads(&sled, &model, false);
        prop_assert_eq!(sled.snapshot().unwrap(), model.snapshot().unwrap());
        if let Some((store, _)) = &pg {
            check_reads(store, &model, true);
            prop_assert_eq!(store.snapshot().unwrap(), filled_snapshot(model.snapshot().unwrap()));
            let audit = store.audit(0, usize::MAX).unwrap();
            for (i, ev) in audit.iter().enumerate() {
                prop_assert_eq!(ev.id, i as u64 + 1);
            }
        }
        // Audit ids are consecutive from 1.
        let audit = sled.audit(0, usize::MAX).unwrap();
        for (i, ev) in audit.iter().enumerate() {
            prop_assert_eq!(ev.id, i as u64 + 1);
        }
        sled.flush().unwrap();
        drop(sled);
        let reopened = SledStore::open(dir.path()).unwrap();
        prop_assert_eq!(reopened.snapshot().unwrap(), model.snapshot().unwrap());
    }
}

/// Writes a store below certd's layer: schema version `schema` and each (tree, key,
/// value) as given, flushed.
fn raw_store(dir: &std::path::Path, schema: u32, records: &[(&str, &str, Vec<u8>)]) {
    let db = sled::open(dir).unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert("schema_version", &schema.to_be_bytes())
        .unwrap();
    for (tree, key, value) in records {
        db.open_tree(tree)
            .unwrap()
            .insert(key, value.as_slice())
            .unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn refuses_a_store_of_another_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    raw_store(dir.path(), 99, &[]);
    let err = SledStore::open(dir.path()).err().expect("must refuse");
    assert!(err.to_string().contains("99"), "{err}");
}

#[test]
fn concurrent_issues_of_one_request_give_one_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
    let env = EnvName::production();
    let n = name(0);
    let rec = RequestRecord {
        csr_der: csr(0),
        submitted_at: 1,
        state: RequestState::Requested,
        dns_names: vec![],
        ip_addrs: vec![],
        order: None,
    };
    store
        .submit_request(
            &env,
            &n,
            &rec,
            SubmitRule {
                allow_if_signed: false,
                replace_pending: true,
                new_only: false,
            },
        )
        .unwrap();
    let handles: Vec<_> = (0..16u8)
        .map(|i| {
            let store = store.clone();
            let (env, n, rec) = (env.clone(), n.clone(), rec.clone());
            std::thread::spawn(move || {
                let cert = CertRecord {
                    serial: vec![i + 1],
                    der: vec![i],
                    issued_at: 2,
                    not_before: 0,
                    not_after: 3,
                    dns_names: vec![],
                    ip_addrs: vec![],
                    authorization_extensions: vec![],
                    revocation: None,
                    fingerprints: None,
                };
                store.issue(&env, &n, &rec, &cert).unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let issued = outcomes
        .iter()
        .filter(|o| **o == certd::store::IssueOutcome::Issued)
        .count();
    assert_eq!(issued, 1, "{outcomes:?}");
    assert_eq!(
        store.snapshot().unwrap().envs["production"].serials.len(),
        1
    );
}

#[test]
fn opens_a_schema_1_store_and_moves_each_der_out_when_its_record_is_written() {
    // Schema 1 kept the DER inside the certificate's JSON record.
    let dir = tempfile::tempdir().unwrap();
    let prod = EnvName::production();
    let record = |n: u8| CertRecord {
        serial: vec![n + 1],
        der: vec![0x30, n, 0xEE],
        issued_at: 2,
        not_before: 0,
        not_after: 3,
        dns_names: vec![format!("n{n}.example.com")],
        ip_addrs: vec![],
        authorization_extensions: vec![],
        revocation: None,
        fingerprints: None,
    };
    let names: Vec<Certname> = (0..2u8).map(name).collect();
    let inline: Vec<(&str, &str, Vec<u8>)> = (0..2u8)
        .map(|n| {
            let mut json = serde_json::to_value(record(n)).unwrap();
            assert!(
                json.get("der").is_none(),
                "schema 2 never writes the DER inline"
            );
            json["der"] =
                <base64ct::Base64 as base64ct::Encoding>::encode_string(&record(n).der).into();
            (
                "env/production/certificates",
                names[usize::from(n)].as_str(),
                serde_json::to_vec(&json).unwrap(),
            )
        })
        .collect();
    raw_store(dir.path(), 1, &inline);
    let store = SledStore::open(dir.path()).unwrap();
    for n in 0..2u8 {
        assert_eq!(store.certificate(&prod, &name(n)).unwrap(), Some(record(n)));
    }
    let listed = store.certificates(&prod, None, 10).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].1.dns_names, ["n1.example.com"]);
    // Revoking rewrites the record: its DER moves to its own tree and is still there.
    let revocation = Revocation {
        revoked_at: 5,
        reason: RevocationReason::Unspecified,
    };
    store.revoke(&prod, &name(0), revocation).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    let revoked = store.certificate(&prod, &name(0)).unwrap().unwrap();
    assert_eq!(revoked.der, record(0).der);
    assert_eq!(revoked.revocation, Some(revocation));
    assert_eq!(store.certificate(&prod, &name(1)).unwrap(), Some(record(1)));
    drop(store);
    let db = sled::open(dir.path()).unwrap();
    assert_eq!(
        db.open_tree("meta")
            .unwrap()
            .get("schema_version")
            .unwrap()
            .unwrap()
            .as_ref(),
        certd::store::SCHEMA_VERSION.to_be_bytes(),
        "marked as the current layout"
    );
    let der = db.open_tree("env/production/certificate_der").unwrap();
    assert_eq!(
        der.get(name(0).as_str()).unwrap().unwrap().as_ref(),
        record(0).der
    );
    assert!(
        der.get(name(1).as_str()).unwrap().is_none(),
        "not written: still inline"
    );
}

#[test]
fn concurrent_autosigned_submissions_commit_together_and_keep_to_themselves() {
    let dir = tempfile::tempdir().unwrap();
    raw_store(
        dir.path(),
        2,
        &[(
            "env/production/requests",
            "corrupt.example.com",
            b"{not json".to_vec(),
        )],
    );
    concurrent_batches(std::sync::Arc::new(SledStore::open(dir.path()).unwrap()));
}

#[test]
fn concurrent_autosigned_submissions_on_postgres_commit_together_and_keep_to_themselves() {
    let Some(pg) = crate::common::pg::Postgres::shared() else {
        return;
    };
    let db = pg.database();
    let store = PgStore::open(&pg.store_config(&db)).unwrap();
    pg.admin_of(&db)
        .batch_execute(
            "INSERT INTO certd_requests (env, certname, record)
             VALUES ('production', 'corrupt.example.com', '{not json')",
        )
        .unwrap();
    concurrent_batches(std::sync::Arc::new(store));
}

/// Concurrent `submit_issued` calls share transactions (one per environment and batch).
/// Each must still get its own outcome; a submission whose record is corrupt fails
/// alone, not the batch it shared.
fn concurrent_batches(store: std::sync::Arc<dyn Store>) {
    let rule = SubmitRule {
        allow_if_signed: false,
        replace_pending: true,
        new_only: false,
    };
    const THREADS: u8 = 8;
    const EACH: u8 = 40;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..EACH)
                    .map(|i| {
                        // Every name is submitted by two threads; the corrupt one, in
                        // production, by all of them, often.
                        let n = if i % 4 == 0 {
                            Certname::parse("corrupt.example.com").unwrap()
                        } else {
                            Certname::parse(&format!("n{}-{i}.example.com", t / 2)).unwrap()
                        };
                        let e = env(i % 2);
                        let mut cert = issued(i, 0, 7);
                        cert.serial = vec![1, t, i];
                        let out = store.submit_issued(&e, &n, &request(t, 7), rule, &cert);
                        (e, n, cert.serial, out)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.extend(h.join().unwrap());
    }
    let mut issued_per_name = std::collections::BTreeMap::new();
    for (e, n, serial, out) in &results {
        if n.as_str() == "corrupt.example.com" && e.as_str() == "production" {
            assert!(out.is_err(), "{out:?}");
            continue;
        }
        match out.as_ref().unwrap() {
            SubmitIssueOutcome::Stored(SubmitOutcome::Created, IssueOutcome::Issued) => {
                assert_eq!(
                    store.certificate(e, n).unwrap().unwrap().serial,
                    *serial,
                    "{e} {n}"
                );
                *issued_per_name.entry((e.clone(), n.clone())).or_insert(0) += 1;
            }
            SubmitIssueOutcome::Refused(SubmitOutcome::CertificateExists { revoked: false }) => {}
            other => panic!("{e} {n}: {other:?}"),
        }
    }
    // Every name got exactly one certificate, and no request was left beside it.
    let names: std::collections::BTreeSet<_> = results
        .iter()
        .filter(|(e, n, _, _)| !(n.as_str() == "corrupt.example.com" && e.as_str() == "production"))
        .map(|(e, n, _, _)| (e.clone(), n.clone()))
        .collect();
    assert_eq!(names.len(), issued_per_name.len());
    assert!(
        issued_per_name.values().all(|c| *c == 1),
        "{issued_per_name:?}"
    );
    for (e, n) in &names {
        assert_eq!(store.request(e, n).unwrap(), None, "{e} {n}");
    }
}

#[test]
fn a_submission_queued_behind_a_batch_is_never_left_waiting() {
    // Two submissions at a time, over and over: often the second arrives while the
    // first leads a batch, and must then be woken to lead its own once that batch is
    // done, with nobody else arriving to do it. A lost wake-up hangs a thread; the
    // watchdog turns that into a failure.
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
    let rule = SubmitRule {
        allow_if_signed: false,
        replace_pending: true,
        new_only: false,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for round in 0..200u16 {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let pair: Vec<_> = (0..2u8)
                .map(|t| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let name = Certname::parse(&format!("r{round}-t{t}")).unwrap();
                        let mut cert = issued(t, 0, 7);
                        cert.serial = vec![1, t, (round >> 8) as u8, round as u8];
                        barrier.wait();
                        store
                            .submit_issued(&env(0), &name, &request(t, 7), rule, &cert)
                            .unwrap()
                    })
                })
                .collect();
            for h in pair {
                assert!(matches!(
                    h.join().unwrap(),
                    SubmitIssueOutcome::Stored(SubmitOutcome::Created, IssueOutcome::Issued)
                ));
            }
        }
        tx.send(()).unwrap();
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("a submission was left waiting (or 400 submissions took a minute)");
}

/// The PostgreSQL store's certificate cache under concurrency: while readers keep
/// filling it, writers go round issue (batched, which fills it too), revoke and clean on
/// a few names, and after each acknowledged write read the name back: they must see
/// their write, never an older state a reader put back. At the end every name reads the
/// same through the cache as from the database (a second store, its cache empty).
/// (Without the writes' invalidation it fails at once; the window in which a reader's
/// fill could land after a write is too narrow to hit from outside: the cache's unit
/// tests drive that interleaving step by step.)
#[test]
fn the_postgres_certificate_cache_never_hides_an_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let Some(pg) = crate::common::pg::Postgres::shared() else {
        return;
    };
    let db = pg.database();
    let store: Arc<dyn Store> = Arc::new(PgStore::open(&pg.store_config(&db)).unwrap());
    let rule = SubmitRule {
        allow_if_signed: true,
        replace_pending: true,
        new_only: false,
    };
    let prod = env(0);
    const NAMES: u8 = 6;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (store, stop, prod) = (store.clone(), stop.clone(), prod.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let n = name((reads as u8).wrapping_add(r) % NAMES);
                    let _ = store.certificate(&prod, &n).unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..NAMES)
        .map(|i| {
            let (store, prod) = (store.clone(), prod.clone());
            std::thread::spawn(move || {
                let n = name(i);
                for round in 0..40u8 {
                    let at = 1_700_000_000 + i64::from(round);
                    let mut cert = issued(i, round, at);
                    cert.serial = vec![1, i, round];
                    let out = store
                        .submit_issued(&prod, &n, &request(round, at), rule, &cert)
                        .unwrap();
                    assert!(
                        matches!(out, SubmitIssueOutcome::Stored(_, IssueOutcome::Issued)),
                        "{out:?}"
                    );
                    let seen = store.certificate(&prod, &n).unwrap();
                    assert_eq!(seen, Some(filled(cert.clone())), "{n} after its issue");
                    let revocation = Revocation {
                        revoked_at: at,
                        reason: RevocationReason::KeyCompromise,
                    };
                    if round % 2 == 0 {
                        store.revoke(&prod, &n, revocation).unwrap();
                        let seen = store.certificate(&prod, &n).unwrap().unwrap();
                        assert!(seen.revocation.is_some(), "{n} after its revocation");
                        assert_eq!(seen.serial, cert.serial);
                    }
                    store.clean(&prod, &n, revocation).unwrap();
                    let seen = store.certificate(&prod, &n).unwrap();
                    assert_eq!(seen, None, "{n} after its clean");
                }
                // Leave one certificate for the final comparison.
                let mut cert = issued(i, 99, 1_800_000_000);
                cert.serial = vec![2, i];
                store
                    .submit_issued(&prod, &n, &request(99, 1_800_000_000), rule, &cert)
                    .unwrap();
            })
        })
        .collect();
    for w in writers {
        w.join()
            .expect("a writer read a state older than its own write");
    }
    stop.store(true, Ordering::SeqCst);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let fresh = PgStore::open(&pg.store_config(&db)).unwrap();
    for i in 0..NAMES {
        assert_eq!(
            store.certificate(&prod, &name(i)).unwrap(),
            fresh.certificate(&prod, &name(i)).unwrap(),
            "{}",
            name(i)
        );
    }
    eprintln!("{reads} concurrent reads");
}

/// Two PostgreSQL stores on one database (two nodes) each keep their certificate cache,
/// and a write of one that changes a certificate the other holds is acknowledged only
/// once the other has followed it: a revocation, and an issue in place of the revoked
/// certificate. A reader whose lease runs with a live backend holds writes back (the
/// write is answered unavailable when it does not follow); one whose backend is gone (a
/// killed node) does not.
#[test]
fn stores_beside_each_other_cache_and_follow_each_others_writes() {
    let Some(pg) = crate::common::pg::Postgres::shared() else {
        return;
    };
    let db = pg.database();
    let a = PgStore::open(&pg.store_config(&db)).unwrap();
    let prod = env(0);
    let rule = SubmitRule {
        allow_if_signed: true,
        replace_pending: true,
        new_only: false,
    };
    let n = name(1);
    let mut cert = issued(1, 0, 7);
    cert.serial = vec![9, 9];
    a.submit_issued(&prod, &n, &request(1, 7), rule, &cert)
        .unwrap();
    let b = PgStore::open(&pg.store_config(&db)).unwrap();
    // Both serve from their caches: A what it stored, B what it read.
    assert!(a.certificate_now(&prod, &n).is_some(), "A beside B");
    b.certificate(&prod, &n).unwrap();
    assert!(
        b.certificate_now(&prod, &n).is_some(),
        "B kept what it read"
    );
    let revocation = Revocation {
        revoked_at: 8,
        reason: RevocationReason::KeyCompromise,
    };
    b.revoke(&prod, &n, revocation).unwrap();
    // Acknowledged: A has followed it, before any read of A's.
    let held = a.certificate_now(&prod, &n).map(|r| r.unwrap().unwrap());
    assert!(
        held.is_none_or(|c| c.revocation.is_some()),
        "A still holds the certificate B revoked"
    );
    assert!(a
        .certificate(&prod, &n)
        .unwrap()
        .unwrap()
        .revocation
        .is_some());
    // B holds the revoked certificate; A issues a new one in its place.
    b.certificate(&prod, &n).unwrap();
    assert!(b.certificate_now(&prod, &n).is_some());
    let mut again = issued(1, 0, 9);
    again.serial = vec![9, 10];
    a.submit_issued(&prod, &n, &request(1, 9), rule, &again)
        .unwrap();
    let held = b.certificate_now(&prod, &n).map(|r| r.unwrap().unwrap());
    assert!(
        held.is_none_or(|c| c.serial == again.serial),
        "B still holds the revoked certificate A replaced"
    );

    // A reader that has followed up to now and then stops, with a live backend (this
    // test's connection). A revocation waits for it and is answered unavailable (it is
    // stored). So is everything whose outcome rests on it until the reader follows: the
    // same revocation again (found done), a batch that issues in the name, a read of
    // the name from the database, a listing, the events. Issuing for a name no cache can
    // hold rests on nothing and does not wait.
    let mut admin = pg.admin_of(&db);
    let pid: i32 = admin
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let stuck = |admin: &mut postgres::Client, pid: i32| {
        admin
            .execute(
                "INSERT INTO certd_readers (reader, until_ms, applied, pid)
                 SELECT 'stuck', (extract(epoch from clock_timestamp()) * 1000)::bigint + 60000,
                        last, $1 FROM certd_audit_head
                 ON CONFLICT (reader) DO UPDATE
                 SET until_ms = EXCLUDED.until_ms, applied = EXCLUDED.applied, pid = EXCLUDED.pid",
                &[&pid],
            )
            .unwrap();
    };
    stuck(&mut admin, pid);
    let other = name(2);
    let mut third = issued(2, 0, 10);
    third.serial = vec![9, 11];
    let started = std::time::Instant::now();
    a.submit_issued(&prod, &other, &request(2, 10), rule, &third)
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let unavailable = |what: &str, r: Result<(), StoreError>| {
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "{what}, beside a reader that does not follow: {r:?}"
        );
    };
    unavailable(
        "a revocation",
        a.revoke(&prod, &other, revocation).map(drop),
    );
    unavailable(
        "the revocation again",
        b.revoke(&prod, &other, revocation).map(drop),
    );
    unavailable("a read", b.certificate(&prod, &other).map(drop));
    let mut fourth = issued(2, 0, 11);
    fourth.serial = vec![9, 12];
    let r = a.submit_issued(&prod, &other, &request(2, 11), rule, &fourth);
    unavailable("an issue in place of the revoked one", r.map(drop));
    assert!(
        a.certificate_now(&prod, &other).is_none(),
        "the issuing store serves the new certificate before the fence"
    );
    unavailable("a listing", b.certificates(&prod, None, 100).map(drop));
    unavailable("the events", b.audit(0, 1000).map(drop));
    // Another name rests on nothing: issued at once, beside the change still waiting.
    let started = std::time::Instant::now();
    let mut sixth = issued(4, 0, 12);
    sixth.serial = vec![9, 14];
    a.submit_issued(&prod, &name(4), &request(4, 12), rule, &sixth)
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "another name waited {:?}",
        started.elapsed()
    );
    // Gone with its backend (a killed node, alone or not): not waited for.
    admin
        .execute(
            "UPDATE certd_readers SET pid = 0 WHERE reader = 'stuck'",
            &[],
        )
        .unwrap();
    let started = std::time::Instant::now();
    a.clean(&prod, &other, revocation).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "waited {:?} for a reader without a backend",
        started.elapsed()
    );
}

/// Two stores on one database (two nodes), each keeping its certificate cache: right
/// after every write acknowledged by one, the other's read gives what was written, even
/// for a name it had just read (and cached). 240 writes: issue, revoke, then a new
/// certificate in place of the revoked one or a clean.
#[test]
fn a_store_beside_another_never_serves_a_certificate_the_other_changed() {
    let Some(pg) = crate::common::pg::Postgres::shared() else {
        return;
    };
    let db = pg.database();
    let a = PgStore::open(&pg.store_config(&db)).unwrap();
    let b = PgStore::open(&pg.store_config(&db)).unwrap();
    let prod = env(0);
    let rule = SubmitRule {
        allow_if_signed: false,
        replace_pending: true,
        new_only: false,
    };
    let revocation = Revocation {
        revoked_at: 8,
        reason: RevocationReason::KeyCompromise,
    };
    let mut serial = 0u16;
    for i in 0..240u32 {
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let n = name((i % 6) as u8);
        // The reader holds the name's certificate as it is now (or its absence).
        reader.certificate(&prod, &n).unwrap();
        reader.certificate(&prod, &n).unwrap();
        let want = match writer.certificate(&prod, &n).unwrap() {
            None => {
                serial += 1;
                let mut cert = issued((i % 6) as u8, 0, i as i64);
                cert.serial = serial.to_be_bytes().to_vec();
                writer
                    .submit_issued(&prod, &n, &request((i % 6) as u8, i as i64), rule, &cert)
                    .unwrap();
                Some((cert.serial, false))
            }
            Some(c) if c.revocation.is_none() => {
                writer.revoke(&prod, &n, revocation).unwrap();
                Some((c.serial, true))
            }
            // Revoked: a new certificate in its place, or cleaned, in turn.
            Some(_) if (i / 6) % 2 == 0 => {
                serial += 1;
                let mut cert = issued((i % 6) as u8, 0, i as i64);
                cert.serial = serial.to_be_bytes().to_vec();
                let replace = SubmitRule {
                    allow_if_signed: true,
                    ..rule
                };
                writer
                    .submit_issued(&prod, &n, &request((i % 6) as u8, i as i64), replace, &cert)
                    .unwrap();
                Some((cert.serial, false))
            }
            Some(_) => {
                writer.clean(&prod, &n, revocation).unwrap();
                None
            }
        };
        let got = reader
            .certificate(&prod, &n)
            .unwrap()
            .map(|c| (c.serial, c.revocation.is_some()));
        assert_eq!(got, want, "write {i}: the other store's read");
    }
}

/// A submission the store refuses as not new writes nothing, so the name's cached
/// certificate stays served from the cache (an agent repeating its PUT must not send
/// every GET of its certificate to the database).
#[test]
fn a_refused_submission_leaves_the_postgres_certificate_cache_alone() {
    let Some(pg) = crate::common::pg::Postgres::shared() else {
        return;
    };
    let db = pg.database();
    let store = PgStore::open(&pg.store_config(&db)).unwrap();
    let prod = env(0);
    let n = name(1);
    let rule = |new_only| SubmitRule {
        allow_if_signed: false,
        replace_pending: true,
        new_only,
    };
    let cert = issued(1, 0, 7);
    let first = store
        .submit_issued(&prod, &n, &request(1, 7), rule(true), &cert)
        .unwrap();
    assert_eq!(
        first,
        SubmitIssueOutcome::Stored(SubmitOutcome::Created, IssueOutcome::Issued)
    );
    assert_eq!(
        store.certificate_now(&prod, &n).unwrap().unwrap(),
        Some(cert.clone())
    );
    let mut again = issued(1, 1, 8);
    again.serial = vec![9, 9];
    for (new_only, refused) in [
        (true, SubmitOutcome::NotNew),
        (false, SubmitOutcome::CertificateExists { revoked: false }),
    ] {
        let r = store
            .submit_issued(&prod, &n, &request(0, 8), rule(new_only), &again)
            .unwrap();
        assert_eq!(r, SubmitIssueOutcome::Refused(refused));
        assert_eq!(
            store.certificate_now(&prod, &n).map(Result::unwrap),
            Some(Some(cert.clone())),
            "the cache forgot the certificate after {refused:?}"
        );
    }
}
