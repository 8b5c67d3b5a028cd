//! Unit tests of the sled store.

use super::reopen::remove_torn_snapshots;
use super::schema::env_tree;
use std::time::{Duration, Instant};

use super::*;

fn env_record(at: UnixTime) -> EnvRecord {
    EnvRecord {
        created_at: at,
        settings: None,
    }
}

/// A snapshot sled left half-written (a full disk or a crash during the write) no
/// longer keeps the database from opening, and nothing durable is lost.
#[test]
fn a_half_written_snapshot_does_not_keep_the_store_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    let env = EnvName::parse("dev").unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.put_environment(&env, &env_record(7), 7).unwrap();
        store.flush().unwrap();
    }
    // Newer than any snapshot sled wrote, so it is the one sled would read.
    for torn in [
        "snap.FFFFFFFFFFFFFFFF.generating",
        "snap.FFFFFFFFFFFFFFFE.generating",
    ] {
        std::fs::write(dir.path().join(torn), b"").unwrap();
    }
    let store = SledStore::open(dir.path()).expect("opens despite the torn snapshot");
    assert_eq!(store.environments().unwrap(), vec![(env, env_record(7))]);
    assert!(store.health().is_ok());
}

/// A store written before the due-time index existed (schema 2) gets its index built
/// from its requests the first time the environment is opened.
#[test]
fn a_schema_2_store_gets_its_order_index_built() {
    let dir = tempfile::tempdir().unwrap();
    let env = EnvName::parse("dev").unwrap();
    let name = Certname::parse("node1").unwrap();
    let mut rec = RequestRecord {
        csr_der: vec![0x30, 0],
        submitted_at: 7,
        state: RequestState::Requested,
        dns_names: vec![],
        ip_addrs: vec![],
        order: None,
    };
    rec.order = Some(Order {
        issuer: "upstream".into(),
        sub_status: SubStatus::WaitingForCa,
        sub_status_message: String::new(),
        plugin_meta: Default::default(),
        approved_at: 7,
        started_at: 0,
        due_ms: 7_000,
        attempts: 0,
        failures: 0,
        validity: 60,
        modified: false,
        lease_until_ms: 0,
    });
    let rule = SubmitRule {
        allow_if_signed: false,
        replace_pending: true,
        new_only: false,
    };
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.submit_request(&env, &name, &rec, rule).unwrap();
        store.flush().unwrap();
    }
    // Make it what certd wrote before: no index, no mark, schema 2.
    {
        let db = when_free(|| sled::open(dir.path()));
        db.drop_tree(env_tree(&env, schema::ORDERS_DUE)).unwrap();
        db.open_tree(env_tree(&env, schema::ENV_META))
            .unwrap()
            .remove(schema::KEY_ORDERS_INDEXED)
            .unwrap();
        db.open_tree(schema::META)
            .unwrap()
            .insert(schema::KEY_SCHEMA, &2u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let store = when_free(|| SledStore::open(dir.path()));
    let due = store.due_orders(&env, 7_000, None, 10).unwrap();
    assert_eq!(due.due, vec![(name, rec)]);
    assert_eq!(
        store.due_orders(&env, 6_999, None, 10).unwrap().next_ms,
        Some(7_000)
    );
}

/// While sled's lock is held (the database is in use), its snapshot files are left
/// alone.
#[test]
fn snapshot_files_of_a_database_in_use_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let _store = SledStore::open(dir.path()).unwrap();
    let in_flight = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&in_flight, b"").unwrap();
    remove_torn_snapshots(dir.path());
    assert!(in_flight.exists());
}

fn cert(serial: u16) -> CertRecord {
    CertRecord {
        serial: serial.to_be_bytes().to_vec(),
        der: vec![0x30, 0x01, serial as u8],
        issued_at: 9,
        not_before: 0,
        not_after: 99,
        dns_names: vec![],
        ip_addrs: vec![],
        authorization_extensions: vec![],
        revocation: None,
        fingerprints: None,
    }
}

fn pending_request(n: u16) -> RequestRecord {
    RequestRecord {
        csr_der: vec![0x30, 0x02, (n >> 8) as u8, n as u8],
        submitted_at: 9,
        state: RequestState::Requested,
        dns_names: vec![],
        ip_addrs: vec![],
        order: None,
    }
}

/// The committer: concurrent autosigned submissions each get their own outcome, all of
/// them stored and durable, and under concurrency they share batches.
#[test]
fn concurrent_submissions_are_committed_in_shared_batches_each_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let env = EnvName::production();
    let rule = SubmitRule {
        allow_if_signed: false,
        replace_pending: true,
        new_only: false,
    };
    const THREADS: u16 = 8;
    const EACH: u16 = 25;
    let barrier = Arc::new(std::sync::Barrier::new(THREADS as usize));
    let mut largest = 0;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier, env) = (store.clone(), barrier.clone(), env.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut batches = Vec::new();
                for i in 0..EACH {
                    let n = t * EACH + i;
                    let name = Certname::parse(&format!("n{n}")).unwrap();
                    let out = store.submit_issued(&env, &name, &pending_request(n), rule, &cert(n));
                    assert!(
                        matches!(
                            out,
                            Ok(SubmitIssueOutcome::Stored(
                                SubmitOutcome::Created,
                                IssueOutcome::Issued
                            ))
                        ),
                        "{name}: {out:?}"
                    );
                    batches.push(store.issues.lock().last_batch);
                }
                batches.into_iter().max().unwrap_or(0)
            })
        })
        .collect();
    for t in threads {
        largest = largest.max(t.join().unwrap());
    }
    assert!(largest > 1, "no batch ever held more than one submission");
    drop(store);
    // Durable: all there after the store is opened again.
    let store = SledStore::open(dir.path()).unwrap();
    for n in 0..THREADS * EACH {
        let name = Certname::parse(&format!("n{n}")).unwrap();
        let c = store.certificate(&env, &name).unwrap().unwrap();
        assert_eq!(c.serial, n.to_be_bytes().to_vec());
        assert_eq!(
            store.certname_by_serial(&env, &c.serial).unwrap(),
            Some(name)
        );
    }
}

/// Group commit: concurrent flushes all return once what was written before them is
/// durable, and every ticket handed out is marked durable.
#[test]
fn concurrent_flushes_share_and_cover_every_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let env = EnvName::parse(&format!("e{t}")).unwrap();
                    store.put_environment(&env, &env_record(i), i).unwrap();
                    store.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let core = store.shared.current().unwrap();
    let st = core.commit.state.lock().unwrap();
    assert_eq!(st.taken, 160);
    assert_eq!(st.durable, st.taken);
    assert!(!st.flushing);
}

/// After an I/O error the store answers `Unavailable` (and says so in its health)
/// until the committer has opened the database again, and then holds what was durable.
#[test]
fn after_an_io_error_the_store_is_unavailable_until_reopened_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let env = EnvName::parse("dev").unwrap();
    store.put_environment(&env, &env_record(1), 1).unwrap();
    store.flush().unwrap();
    // What a write that met ENOSPC reports.
    let core = store.shared.current().unwrap();
    store
        .shared
        .failed(&core, "No space left on device (os error 28)");
    drop(core);
    assert!(matches!(
        store.environments(),
        Err(StoreError::Unavailable(why)) if why.contains("No space")
    ));
    assert!(store.health().is_err());
    // The committer reopens it after the first backoff (0.5 s); bounded wait.
    let until = Instant::now() + Duration::from_secs(10);
    while store.health().is_err() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.health().is_ok(), "not reopened");
    assert_eq!(store.environments().unwrap(), vec![(env, env_record(1))]);
}

/// A flush after the database was closed (an I/O error) and opened again does not
/// vouch for this thread's writes made before: they were in the closed one's memory.
#[test]
fn a_flush_after_a_reopen_does_not_vouch_for_earlier_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let env = EnvName::parse("dev").unwrap();
    store.put_environment(&env, &env_record(1), 1).unwrap();
    let core = store.shared.current().unwrap();
    store
        .shared
        .failed(&core, "No space left on device (os error 28)");
    drop(core);
    let until = Instant::now() + Duration::from_secs(10);
    while store.health().is_err() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.health().is_ok(), "not reopened");
    assert!(
        matches!(store.flush(), Err(StoreError::Unavailable(_))),
        "the write before the reopen is not vouched for"
    );
    // A write on the database opened again is flushed as usual.
    store.put_environment(&env, &env_record(2), 2).unwrap();
    store.flush().unwrap();
}

/// A request record that does not decode is still removed by a cancel or a clean.
#[test]
fn an_undecodable_request_can_still_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let env = EnvName::parse("dev").unwrap();
    drop(SledStore::open(dir.path()).unwrap());
    {
        let db = when_free(|| sled::open(dir.path()));
        let requests = db.open_tree(env_tree(&env, schema::REQUESTS)).unwrap();
        requests.insert("bad1", &b"{not json"[..]).unwrap();
        requests.insert("bad2", &b"{not json"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = when_free(|| SledStore::open(dir.path()));
    let bad1 = Certname::parse("bad1").unwrap();
    assert!(store.cancel_request(&env, &bad1, 5).unwrap());
    assert!(!store.cancel_request(&env, &bad1, 5).unwrap());
    let revocation = Revocation {
        revoked_at: 5,
        reason: crate::ca::RevocationReason::CessationOfOperation,
    };
    let bad2 = Certname::parse("bad2").unwrap();
    assert_eq!(
        store.clean(&env, &bad2, revocation).unwrap(),
        CleanOutcome::Cleaned { revoked: None }
    );
}

/// What `/status` shows of a closed store is a fixed sentence: the engine's own words
/// (which can name files, such as a lock held on `/var/lib/.../db`) go to the log.
#[test]
fn health_does_not_repeat_the_engines_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let core = store.shared.current().unwrap();
    store.shared.failed(
        &core,
        "could not acquire lock on \"/srv/secret-path/store/db\"",
    );
    drop(core);
    let why = store.health().unwrap_err();
    assert!(!why.contains("secret-path"), "{why}");
}

/// Opens what a store or database dropped just before held: sled lets go of its file
/// lock from a background thread, a moment after the drop.
fn when_free<T, E: std::fmt::Debug>(open: impl Fn() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Ok(t) => return t,
            Err(e) if std::time::Instant::now() > deadline => panic!("still held: {e:?}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}
