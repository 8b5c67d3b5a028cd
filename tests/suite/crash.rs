//! Crash safety: certd is killed with SIGKILL at random moments while clients submit,
//! sign and revoke concurrently, then restarted on the same data directory. After every
//! restart: every issuance answered 201 (an admin's signing, or autosigning at
//! submission) is there and verifies; every revocation answered
//! 204 is on the CRL; no serial is used twice; no name is both pending and signed; the
//! CRL verifies and lists exactly the revoked serials; the audit log has no gap.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use certd::ca::{build_csr, Certname, KeyType};
use certd::store::{EventKind, PgStore, SledStore, Store};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509Crl, X509StoreContext, X509};
use serde_json::Value;

const KILLS: usize = 24;
const WORKERS: usize = 4;

/// What clients were told, across all rounds.
#[derive(Default)]
struct Ledger {
    next: usize,
    submitted: Vec<String>,
    issued: BTreeSet<String>,
    revoked: BTreeSet<String>,
    /// Submitted to the autosigning environment and answered 201: issued at once.
    autosigned: BTreeSet<String>,
}

/// A tiny deterministic generator, so that a failing run can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A name never used before (`prefix-N`) and a CSR for it with a new key.
fn fresh_csr(ledger: &Mutex<Ledger>, prefix: &str) -> (String, Vec<u8>) {
    let name = {
        let mut l = ledger.lock().unwrap();
        l.next += 1;
        format!("{prefix}-{}", l.next)
    };
    let key = KeyType::EcP256.generate().unwrap();
    let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
    (name, csr)
}

fn work(
    server_url: String,
    admin: reqwest::blocking::Client,
    anon: reqwest::blocking::Client,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    seed: u64,
    done: Arc<AtomicUsize>,
) {
    let mut rng = Lcg(seed);
    while !stop.load(Ordering::Relaxed) {
        match rng.next(4) {
            0 => {
                let (name, csr) = fresh_csr(&ledger, &format!("n{seed}"));
                match anon
                    .put(format!(
                        "{server_url}/production/certificate_request/{name}"
                    ))
                    .body(csr)
                    .send()
                {
                    Ok(r) if r.status() == 201 => ledger.lock().unwrap().submitted.push(name),
                    Ok(r) => panic!("submit {name}: unexpected {}", r.status()),
                    Err(_) => break,
                }
            }
            3 => {
                let (name, csr) = fresh_csr(&ledger, &format!("a{seed}"));
                // Anonymous agents submit only where the rules let them (production);
                // the admin's certificate reaches every environment.
                match admin
                    .put(format!("{server_url}/auto/certificate_request/{name}"))
                    .body(csr)
                    .send()
                {
                    Ok(r) if r.status() == 201 => {
                        ledger.lock().unwrap().autosigned.insert(name);
                    }
                    Ok(r) => panic!("autosigned submit {name}: unexpected {}", r.status()),
                    Err(_) => break,
                }
            }
            1 => {
                let pick = {
                    let l = ledger.lock().unwrap();
                    let pending: Vec<&String> = l
                        .submitted
                        .iter()
                        .filter(|n| !l.issued.contains(*n))
                        .collect();
                    (!pending.is_empty())
                        .then(|| pending[rng.next(pending.len() as u64) as usize].clone())
                };
                let Some(name) = pick else { continue };
                match admin
                    .post(format!("{server_url}/production/certificate/"))
                    .body(name.clone())
                    .send()
                {
                    Ok(r) if r.status() == 201 => {
                        ledger.lock().unwrap().issued.insert(name);
                    }
                    Ok(r) => assert!(
                        r.status() == 409 || r.status() == 404,
                        "sign {name}: {}",
                        r.status()
                    ),
                    Err(_) => break,
                }
            }
            _ => {
                let pick = {
                    let l = ledger.lock().unwrap();
                    let live: Vec<&String> = l
                        .issued
                        .iter()
                        .filter(|n| !l.revoked.contains(*n))
                        .collect();
                    (!live.is_empty()).then(|| live[rng.next(live.len() as u64) as usize].clone())
                };
                let Some(name) = pick else { continue };
                match admin
                    .delete(format!(
                        "{server_url}/production/certificate/{name}?reason=keyCompromise"
                    ))
                    .send()
                {
                    Ok(r) if r.status() == 204 => {
                        ledger.lock().unwrap().revoked.insert(name);
                    }
                    Ok(r) => panic!("revoke {name}: unexpected {}", r.status()),
                    Err(_) => break,
                }
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn sigkill(server: &mut Server) {
    Command::new("kill")
        .args(["-KILL", &server.child.id().to_string()])
        .status()
        .unwrap();
    server.child.wait().unwrap();
}

/// Every invariant, checked over HTTP and against the store on disk.
fn check(api: &Api, ledger: &Ledger, round: usize) {
    let statuses: Vec<Value> = {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let url = api.url(&format!(
                "/production/certificate_statuses/*?limit=1000&after={after}"
            ));
            let page: Vec<Value> = api.admin.get(url).send().unwrap().json().unwrap();
            let full = page.len() == 1000;
            after = page
                .last()
                .map(|v| v["name"].as_str().unwrap().to_owned())
                .unwrap_or_default();
            all.extend(page);
            if !full {
                break all;
            }
        }
    };
    let state: BTreeMap<String, &Value> = statuses
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
        .collect();
    let chain = X509::stack_from_pem(&std::fs::read(api.server.chain()).unwrap()).unwrap();
    let mut store = X509StoreBuilder::new().unwrap();
    for c in &chain {
        store.add_cert(c.clone()).unwrap();
    }
    let store = store.build();

    // Acknowledged issuances are there and verify; acknowledged revocations are revoked.
    for name in &ledger.issued {
        let st = state
            .get(name)
            .unwrap_or_else(|| panic!("round {round}: issued {name} is gone"));
        let s = st["state"].as_str().unwrap();
        assert!(
            s == "signed" || s == "revoked",
            "round {round}: {name} is {s}"
        );
        let pem = api
            .anon
            .get(api.url(&format!("/production/certificate/{name}")))
            .header("accept", "text/plain")
            .send()
            .unwrap();
        if s == "signed" {
            let cert = X509::from_pem(&pem.bytes().unwrap()).unwrap();
            let mut ctx = X509StoreContext::new().unwrap();
            let empty = openssl::stack::Stack::new().unwrap();
            assert!(
                ctx.init(&store, &cert, &empty, |c| c.verify_cert())
                    .unwrap(),
                "round {round}: {name} does not verify"
            );
        }
    }
    for name in &ledger.autosigned {
        let r = api
            .anon
            .get(api.url(&format!("/auto/certificate/{name}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "round {round}: autosigned {name} is gone");
    }
    for name in &ledger.revoked {
        assert_eq!(
            state[name]["state"], "revoked",
            "round {round}: revoked {name} came back"
        );
    }
    // No serial twice; no name both pending and signed.
    let serials: Vec<&str> = statuses
        .iter()
        .filter_map(|v| v["serial_number"].as_str())
        .collect();
    assert_eq!(
        serials.len(),
        serials.iter().collect::<HashSet<_>>().len(),
        "round {round}: a serial is used twice"
    );
    let pending: Vec<Value> = api
        .admin
        .get(api.url("/production/certificate_requests/?state=requested&limit=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for p in &pending {
        let name = p["name"].as_str().unwrap();
        assert_eq!(
            state[name]["state"], "requested",
            "round {round}: {name} is pending and has a certificate"
        );
    }
    // The CRL verifies against the issuing CA and lists exactly the revoked serials.
    let crl_pem = api
        .anon
        .get(api.url("/production/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let crl = X509Crl::from_pem(&crl_pem).unwrap();
    assert!(
        crl.verify(&chain[0].public_key().unwrap()).unwrap(),
        "round {round}: CRL signature"
    );
    let listed: BTreeSet<String> = crl_serials_hex(&crl).into_iter().collect();
    let revoked: BTreeSet<String> = statuses
        .iter()
        .filter(|v| v["state"] == "revoked")
        .map(|v| {
            v["serial_number"]
                .as_str()
                .unwrap()
                .trim_start_matches('0')
                .to_owned()
        })
        .collect();
    let listed: BTreeSet<String> = listed
        .into_iter()
        .map(|s| s.trim_start_matches('0').to_owned())
        .collect();
    assert_eq!(
        listed, revoked,
        "round {round}: CRL entries differ from the revoked certificates"
    );
}

/// The audit log in the store (read while certd is down) has ids 1..n without a gap, and
/// an event for every acknowledged issuance and revocation.
fn check_audit(store: &dyn Store, ledger: &Ledger, round: usize) {
    let audit = store.audit(0, usize::MAX).unwrap();
    for (i, ev) in audit.iter().enumerate() {
        assert_eq!(ev.id, i as u64 + 1, "round {round}: audit gap");
    }
    let has =
        |kind: EventKind, name: &str| audit.iter().any(|e| e.kind == kind && e.certname == name);
    for n in ledger.issued.iter().chain(&ledger.autosigned) {
        assert!(
            has(EventKind::Issued, n),
            "round {round}: no Issued event for {n}"
        );
    }
    for n in &ledger.revoked {
        assert!(
            has(EventKind::Revoked, n),
            "round {round}: no Revoked event for {n}"
        );
    }
}

const CRASH_CONFIG: &str = "[ca]\nkey_type = \"ec-p256\"\n[environments.auto]\nautosign = true\n";

#[test]
fn sigkill_under_load_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("data/store");
    sigkill_rounds(dir.path(), CRASH_CONFIG, KILLS, &|| {
        Box::new(SledStore::open(&store_dir).unwrap())
    });
}

/// The same on the PostgreSQL store: certd killed, the database (fsync on) keeps what
/// was committed before each answer.
#[test]
fn sigkill_under_load_on_postgres_loses_nothing_that_was_acknowledged() {
    let Some(pg) = crate::common::pg::Postgres::shared() else {
        return;
    };
    let db = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{CRASH_CONFIG}{}", pg.store_toml(&db, dir.path()));
    let cfg = pg.store_config(&db);
    sigkill_rounds(dir.path(), &config, KILLS / 2, &|| {
        Box::new(PgStore::open(&cfg).unwrap())
    });
}

/// `kills` rounds of load, SIGKILL, checks of the store, restart and checks over HTTP.
fn sigkill_rounds(
    dir: &std::path::Path,
    config: &str,
    kills: usize,
    open: &dyn Fn() -> Box<dyn Store>,
) {
    let mut server = Server::start(dir, config);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Lcg(0x5eed);
    let mut total_ops = 0;
    for round in 0..kills {
        let (cert, key) = admin(&server);
        let url = format!("https://localhost:{}", server.port);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (admin_c, anon_c) =
                    (client(&server, Some((&cert, &key))), client(&server, None));
                let (url, ledger, stop, done) =
                    (url.clone(), ledger.clone(), stop.clone(), done.clone());
                let seed = (round * WORKERS + w) as u64 + 1;
                std::thread::spawn(move || work(url, admin_c, anon_c, ledger, stop, seed, done))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100 + rng.next(400)));
        sigkill(&mut server);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("a worker saw a wrong answer");
        }
        total_ops += done.load(Ordering::Relaxed);
        {
            let l = ledger.lock().unwrap();
            check_audit(open().as_ref(), &l, round);
        }
        server = Server::start_with(dir, &["--config", dir.join("certd.toml").to_str().unwrap()]);
        let api = Api::of(server);
        check(&api, &ledger.lock().unwrap(), round);
        server = api.server;
    }
    let l = ledger.lock().unwrap();
    eprintln!("{kills} SIGKILLs, {total_ops} acknowledged operations: {} submitted, {} issued, {} autosigned, {} revoked", l.submitted.len(), l.issued.len(), l.autosigned.len(), l.revoked.len());
    assert!(
        l.issued.len() > kills && l.revoked.len() > kills / 2 && l.autosigned.len() > kills,
        "the load must actually exercise issuance and revocation"
    );
}

/// SIGTERM under issuance load: certd stops taking connections, finishes the requests
/// in flight, stops and joins its workers, flushes, and exits 0 within 5 s; every
/// certificate it acknowledged is there after a restart.
#[test]
fn sigterm_under_load_exits_0_within_5_s_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[ca]\nkey_type = \"ec-p256\"\n[environments.production]\nautosign = true\n";
    let server = Server::start(dir.path(), config);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..WORKERS)
        .map(|t| {
            let (acked, stop) = (acked.clone(), stop.clone());
            let anon = client(&server, None);
            let url = server.url("/production/certificate_request/");
            std::thread::spawn(move || {
                let key = KeyType::EcP256.generate().unwrap();
                // Bounded: the server stops answering within seconds of SIGTERM.
                for i in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("term{t}-{i}");
                    let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
                    match anon.put(format!("{url}{name}")).body(csr).send() {
                        Ok(r) if r.status().as_u16() == 201 => acked.lock().unwrap().push(name),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "no load reached the server");
    let pid = server.child.id().to_string();
    let mut server = server;
    let sent = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    while sent.elapsed() < Duration::from_secs(10) {
        if let Some(s) = server.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = sent.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    let status = status.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM"));
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        server.stderr()
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to exit after SIGTERM"
    );
    drop(server);

    let acked = acked.lock().unwrap().clone();
    eprintln!("{} acknowledged, exit {took:?} after SIGTERM", acked.len());
    let server = Server::start(dir.path(), config);
    let anon = client(&server, None);
    for name in &acked {
        let status = anon
            .get(server.url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 200, "{name}: acknowledged, then lost");
    }
}
