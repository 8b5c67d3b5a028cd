//! certd on PostgreSQL (a private server per test process, `common::pg`): the same CA on
//! a database, its start-up errors, and what happens when the database goes away.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::pg::Postgres;
use crate::common::*;
use certd::ca::{build_csr, Certname, KeyType};

const AUTOSIGN: &str = "[ca]\nkey_type = \"ec-p256\"\n[environments.production]\nautosign = true\n";

/// An autosigning ECDSA CA on a new database of `pg`: (database, directory, server).
fn autosigning_server(pg: &Postgres) -> (String, tempfile::TempDir, Server) {
    server_with(pg, AUTOSIGN)
}

/// A server configured by `config` (its store section added) on a new database of
/// `pg`: (database, directory, server).
fn server_with(pg: &Postgres, config: &str) -> (String, tempfile::TempDir, Server) {
    let db = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{config}{}", pg.store_toml(&db, dir.path()));
    let server = Server::start(dir.path(), &config);
    (db, dir, server)
}

/// Submits a CSR for `name` to production, expecting it signed at once (201).
fn submit_autosigned(
    server: &Server,
    anon: &reqwest::blocking::Client,
    key: &certd::ca::PrivateKey,
    name: &str,
) {
    submit_new(server, anon, key, name, &[]);
}

/// Submits a CSR for `name` (asking for `sans`) to production, expecting 201: a new
/// request, signed at once where production autosigns.
fn submit_new(
    server: &Server,
    anon: &reqwest::blocking::Client,
    key: &certd::ca::PrivateKey,
    name: &str,
    sans: &[String],
) {
    let csr = build_csr(key, &Certname::parse(name).unwrap(), sans).unwrap();
    let r = anon
        .put(server.url(&format!("/production/certificate_request/{name}")))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{name}");
}

/// What a DBA grants certd's role once the schema is applied.
const GRANT_CERTD: &str =
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO certd";

/// Runs `certd serve` expecting it to fail at start; its stderr.
fn start_fails(dir: &std::path::Path, config: &str) -> String {
    let cfg = dir.join("certd.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = certd()
        .current_dir(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success(), "certd started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The last line of certd's stderr (the error), which must be the only `error` line.
fn error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    errors[0].to_owned()
}

#[test]
fn a_ca_on_postgres_issues_revokes_and_keeps_it_all_across_a_restart() {
    let Some(pg) = Postgres::shared() else { return };
    let (db, dir, server) = autosigning_server(pg);
    let (cert, key) = admin(&server);
    let admin_c = client(&server, Some((&cert, &key)));
    let anon = client(&server, None);
    let key_pair = KeyType::EcP256.generate().unwrap();
    for i in 0..20 {
        submit_autosigned(&server, &anon, &key_pair, &format!("pg{i}"));
    }
    let r = admin_c
        .delete(server.url("/production/certificate/pg3"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    // A global admin's view, which shows the most.
    let status: serde_json::Value = admin_c
        .get(server.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["store"]["ok"], true, "{status}");
    assert!(
        !status
            .to_string()
            .contains(crate::common::pg::CERTD_PASSWORD),
        "the password is shown: {status}"
    );
    let before: Vec<serde_json::Value> = admin_c
        .get(server.url("/production/certificate_statuses/*"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let crl_before = anon
        .get(server.url("/production/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let (status, log) = server.terminate_with_log();
    assert!(status.success());
    assert!(
        !log.contains(crate::common::pg::CERTD_PASSWORD),
        "password logged"
    );

    let server = Server::start_with(
        dir.path(),
        &["--config", dir.path().join("certd.toml").to_str().unwrap()],
    );
    let admin_c = client(&server, Some((&cert, &key)));
    let after: Vec<serde_json::Value> = admin_c
        .get(server.url("/production/certificate_statuses/*"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(after.len(), 22, "20 agents, the server and the admin");
    let crl_after = client(&server, None)
        .get(server.url("/production/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    // The CRL is signed again at start (ECDSA signatures differ each time): the same
    // entries and number.
    let entries = |pem: &[u8]| {
        let crl = openssl::x509::X509Crl::from_pem(pem).unwrap();
        let serials = crl_serials_hex(&crl);
        (serials, crl.last_update().to_string())
    };
    assert_eq!(entries(&crl_before), entries(&crl_after));
    assert_eq!(entries(&crl_after).0.len(), 1);
    let r = client(&server, None)
        .head(server.url("/production/certificate/pg3"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 410);
    // Everything is in the database: its tables hold the certificates.
    let n: i64 = pg
        .admin_of(&db)
        .query_one("SELECT count(*) FROM certd_certificates", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 22);
}

#[test]
fn start_up_errors_are_one_clear_line_without_the_password() {
    let Some(pg) = Postgres::shared() else { return };
    let dir = tempfile::tempdir().unwrap();

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pw = dir.path().join("pw");
    write_private(&pw, b"s3cret-not-shown");
    let cfg = format!(
        "{FAST_CONFIG}[store]\nbackend = \"postgres\"\nurl = \"host=127.0.0.1 port={port} dbname=x user=certd\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    let e = error_line(&start_fails(dir.path(), &cfg));
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("refused"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");

    // A wrong password.
    let db = pg.database();
    let cfg = format!(
        "{FAST_CONFIG}[store]\nbackend = \"postgres\"\nurl = \"host=127.0.0.1 port={} dbname={db} user=certd\"\npassword_file = \"{}\"\n",
        pg.port,
        pw.display()
    );
    let e = error_line(&start_fails(dir.path(), &cfg));
    assert!(
        e.contains("password authentication failed")
            && e.contains(&format!("127.0.0.1:{}", pg.port)),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");

    // A password file others may read.
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let e = error_line(&start_fails(dir.path(), &cfg));
    assert!(
        e.contains("password_file") && e.contains("chmod 600"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");

    // A password in the url is refused before anything is tried.
    let cfg = format!(
        "{FAST_CONFIG}[store]\nbackend = \"postgres\"\nurl = \"postgresql://certd:s3cret@127.0.0.1:{}/{db}\"\n",
        pg.port
    );
    let e = error_line(&start_fails(dir.path(), &cfg));
    assert!(e.contains("no password in the url"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");

    // A schema newer than this certd.
    let newer = pg.database();
    let store_cfg = pg.store_toml(&newer, dir.path());
    drop(certd::store::PgStore::open(&pg.store_config(&newer)).unwrap());
    pg.admin_of(&newer)
        .batch_execute("INSERT INTO certd_schema_version (version) VALUES (999)")
        .unwrap();
    let e = error_line(&start_fails(
        dir.path(),
        &format!("{FAST_CONFIG}{store_cfg}"),
    ));
    assert!(
        e.contains("version 999") && e.contains(&format!("{}", certd::store::PG_SCHEMA_VERSION)),
        "{e}"
    );
}

#[test]
fn a_user_without_create_rights_is_told_and_a_dba_applied_schema_works() {
    let Some(pg) = Postgres::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A database owned by the superuser: certd's role may connect, not create.
    let db = format!("dba{}", std::process::id());
    pg.admin()
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let store_cfg = pg.store_toml(&db, dir.path());
    let e = error_line(&start_fails(
        dir.path(),
        &format!("{FAST_CONFIG}{store_cfg}"),
    ));
    assert!(
        e.contains("may not create") && e.contains("certd store schema"),
        "{e}"
    );
    // The DBA applies the printed schema and grants the role its rights.
    let out = certd().args(["store", "schema"]).output().unwrap();
    assert!(out.status.success());
    let sql = String::from_utf8(out.stdout).unwrap();
    let mut admin = pg.admin_of(&db);
    admin.batch_execute(&sql).unwrap();
    admin.batch_execute(GRANT_CERTD).unwrap();
    // A storage setting the schema of an earlier certd lacked: certd, not the tables'
    // owner, cannot set it, starts all the same, and says what the DBA may run.
    admin
        .batch_execute("ALTER TABLE certd_certificates RESET (toast_tuple_target)")
        .unwrap();
    let server = Server::start(dir.path(), &format!("{AUTOSIGN}{store_cfg}"));
    let key = KeyType::EcP256.generate().unwrap();
    submit_autosigned(&server, &client(&server, None), &key, "dba1");
    let wanted = "ALTER TABLE certd_certificates SET (toast_tuple_target=8160)";
    let log = server.stderr_with(wanted, Duration::from_secs(10));
    assert!(log.contains(wanted), "{log}");
}

/// A database a DBA set up for a schema two versions before this certd's: a user that
/// may not change tables is told which command prints what the database lacks, what it
/// prints refuses a database at another version, and the DBA's applying it (and
/// granting the new tables) is all the upgrade takes.
#[test]
fn a_dba_applied_schema_of_an_earlier_certd_is_brought_up_to_date() {
    let Some(pg) = Postgres::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("dbaold{}", std::process::id());
    pg.admin()
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let schema = |from: i32| {
        let out = certd()
            .args(["store", "schema", "--from", &from.to_string()])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    };
    let version = |admin: &mut postgres::Client| -> i32 {
        admin
            .query_one("SELECT max(version) FROM certd_schema_version", &[])
            .unwrap()
            .get(0)
    };
    // The schema as an earlier certd printed it: all but the last two migrations.
    let now = certd::store::PG_SCHEMA_VERSION;
    let old = now - 2;
    assert!(
        old >= 1,
        "this test wants a schema of three versions or more"
    );
    let (ok, whole) = schema(0);
    assert!(ok);
    let cut = whole
        .find(&format!("-- migration {}\n", old + 1))
        .expect("a migration's marker");
    let mut admin = pg.admin_of(&db);
    admin
        .batch_execute(&format!("{}COMMIT;\n", &whole[..cut]))
        .unwrap();
    admin.batch_execute(GRANT_CERTD).unwrap();
    assert_eq!(version(&mut admin), old);
    let store_cfg = pg.store_toml(&db, dir.path());
    let e = error_line(&start_fails(
        dir.path(),
        &format!("{FAST_CONFIG}{store_cfg}"),
    ));
    let command = format!("certd store schema --from {old}");
    assert!(e.contains("may not migrate") && e.contains(&command), "{e}");
    // What another version lacks, and the whole schema, refuse this database and leave
    // it as it was.
    for from in [0, old + 1] {
        let (ok, sql) = schema(from);
        assert!(ok);
        let e = admin.batch_execute(&sql).unwrap_err();
        assert!(
            format!("{e:?}").contains(&format!("does not hold schema version {from}")),
            "{e:?}"
        );
        admin.batch_execute("ROLLBACK").unwrap();
        assert_eq!(version(&mut admin), old);
    }
    // What the message names brings it up to date.
    let (ok, rest) = schema(old);
    assert!(ok);
    assert!(
        !rest.contains(&format!("-- migration {old}\n"))
            && rest.contains(&format!("-- migration {now}\n")),
        "{rest}"
    );
    admin.batch_execute(&rest).unwrap();
    admin.batch_execute(GRANT_CERTD).unwrap();
    assert_eq!(version(&mut admin), now);
    let server = Server::start(dir.path(), &format!("{AUTOSIGN}{store_cfg}"));
    let key = KeyType::EcP256.generate().unwrap();
    submit_autosigned(&server, &client(&server, None), &key, "dba2");
    // A version this certd does not know prints nothing.
    let (ok, out) = schema(now + 1);
    assert!(!ok && out.is_empty());
}

/// 8 agents issue while the database stops at once (`pg_ctl stop -m immediate`) and
/// comes back: 503 while it is down, never a 500, answers again within 5 s of its
/// return, and every certificate acknowledged before, during or after is there.
#[test]
fn a_database_restart_under_load_gives_503s_then_recovers_losing_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let (db, _dir, server) = autosigning_server(&pg);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let codes = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let since_back = Arc::new(Mutex::new(None::<Instant>));
    let first_after = Arc::new(Mutex::new(None::<Duration>));
    let count = Arc::new(AtomicUsize::new(0));
    let agents: Vec<_> = (0..8)
        .map(|t| {
            let (acked, codes, stop) = (acked.clone(), codes.clone(), stop.clone());
            let (since_back, first_after, count) =
                (since_back.clone(), first_after.clone(), count.clone());
            let anon = client(&server, None);
            let url = server.url("/production/certificate_request/");
            std::thread::spawn(move || {
                let key = KeyType::EcP256.generate().unwrap();
                for i in 0..1_000_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("r{t}-{i}");
                    let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
                    let r = anon.put(format!("{url}{name}")).body(csr).send().unwrap();
                    let code = r.status().as_u16();
                    *codes.lock().unwrap().entry(code).or_default() += 1;
                    match code {
                        201 => {
                            acked.lock().unwrap().push(name);
                            count.fetch_add(1, Ordering::SeqCst);
                            if let Some(back) = *since_back.lock().unwrap() {
                                first_after.lock().unwrap().get_or_insert(back.elapsed());
                            }
                        }
                        503 => {
                            assert!(r.headers().contains_key("retry-after"));
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        other => panic!("{name}: {other} {}", r.text().unwrap_or_default()),
                    }
                }
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let start = Instant::now();
        while count.load(Ordering::SeqCst) < n {
            assert!(start.elapsed() < Duration::from_secs(60), "no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(200);
    pg.stop_immediate();
    let down_at = count.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    let status: serde_json::Value = client(&server, None)
        .get(server.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["store"]["ok"], false, "{status}");
    // Reads the node answers from what it holds: the CA chain.
    let r = client(&server, None)
        .get(server.url("/production/certificate/ca"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    pg.restart();
    *since_back.lock().unwrap() = Some(Instant::now());
    wait_for(down_at + 200);
    stop.store(true, Ordering::SeqCst);
    for a in agents {
        a.join().expect("an agent saw a wrong answer");
    }
    let recovered = first_after.lock().unwrap().expect("recovered");
    let codes = codes.lock().unwrap().clone();
    eprintln!("answers: {codes:?}; first 201 {recovered:?} after the database was back");
    assert!(
        codes.get(&503).copied().unwrap_or(0) > 0,
        "no 503 while down"
    );
    assert!(recovered < Duration::from_secs(5), "{recovered:?}");
    let status: serde_json::Value = client(&server, None)
        .get(server.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["store"]["ok"], true, "{status}");
    // Everything acknowledged is there, from the database itself.
    let mut admin = pg.admin_of(&db);
    let stored: std::collections::HashSet<String> = admin
        .query("SELECT certname FROM certd_certificates", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged, lost: {lost:?}",
        acked.len()
    );
}

/// What a node holds it keeps answering while the database is away: a certificate it
/// issued or read is served (native and Puppet faces, GET and HEAD, the same bytes); one
/// it never saw (issued before it restarted) is 503. And what it holds never hides a change: a revocation and a renewal by a
/// clean and a new submission are seen by the next read.
#[test]
fn certificates_read_before_the_database_went_away_are_still_served() {
    let Some(pg) = Postgres::start() else { return };
    let (db, dir, first) = autosigning_server(&pg);
    let agent_key = KeyType::EcP256.generate().unwrap();
    // Issued before a restart: this process has never read it.
    submit_autosigned(&first, &client(&first, None), &agent_key, "unread");
    drop(first);
    let server = Server::start(
        dir.path(),
        &format!("{AUTOSIGN}{}", pg.store_toml(&db, dir.path())),
    );
    let anon = client(&server, None);
    let (cert, key) = admin(&server);
    let admin = client(&server, Some((&cert, &key)));
    let submit = |name: &str| submit_autosigned(&server, &anon, &agent_key, name);
    let get = |path: &str| {
        let r = anon.get(server.url(path)).send().unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    };
    let head = |path: &str| {
        anon.head(server.url(path))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    for name in ["kept1", "kept2", "revoked", "renamed"] {
        submit(name);
    }
    let mut held = Vec::new();
    for path in [
        "/production/certificate/kept1",
        "/production/certificate/kept2",
        "/puppet-ca/v1/certificate/kept1",
    ] {
        let (code, body) = get(path);
        assert_eq!(code, 200, "{path}");
        held.push((path, body));
    }
    // Read, then changed: the next read sees the change, not what was read.
    assert_eq!(get("/production/certificate/revoked").0, 200);
    let r = admin
        .delete(server.url("/production/certificate/revoked"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(head("/production/certificate/revoked"), 410);
    let (_, before) = get("/production/certificate/renamed");
    let r = admin
        .put(server.url("/puppet-ca/v1/clean"))
        .json(&serde_json::json!({"certnames": ["renamed"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    assert_eq!(head("/production/certificate/renamed"), 404);
    submit("renamed");
    let (code, after) = get("/production/certificate/renamed");
    assert_eq!(code, 200);
    assert_ne!(before, after, "the cleaned certificate was served again");

    pg.stop_immediate();
    for (path, body) in &held {
        let (code, now) = get(path);
        if code != 200 {
            eprintln!("{}", server.stderr());
        }
        assert_eq!(code, 200, "{path} while the database is down");
        assert_eq!(&now, body, "{path}");
    }
    assert_eq!(head("/production/certificate/kept2"), 200);
    assert_eq!(head("/production/certificate/revoked"), 410);
    let r = anon
        .get(server.url("/production/certificate/unread"))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "a certificate never read needs the database"
    );
    assert!(r.headers().contains_key("retry-after"));
    pg.restart();
    let start = Instant::now();
    while get("/production/certificate/unread").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "not back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The CA keys' table out of reach (here locked by another session past the statement
/// timeout, as a database going away mid-request would leave it): creating an
/// environment answers 503 `store-unavailable`, as every store write does, not 500;
/// once the table is free again, the same request creates it.
#[test]
fn the_ca_key_vault_out_of_reach_answers_503() {
    let Some(pg) = Postgres::shared() else { return };
    let (db, _dir, server) = autosigning_server(pg);
    let (cert, key) = admin(&server);
    let admin_client = client(&server, Some((&cert, &key)));
    let put_env = || {
        admin_client
            .put(server.url("/environments/locked"))
            .body("{}")
            .send()
            .unwrap()
    };
    let mut sql = pg.admin_of(&db);
    let mut tx = sql.transaction().unwrap();
    tx.batch_execute("LOCK TABLE certd_ca_keys IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let r = put_env();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    tx.rollback().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store-unavailable"), "{body}");
    assert_eq!(put_env().status().as_u16(), 201);
}

/// An environment's creation cut off after its issuing key was stored (the database
/// lost, the node killed) leaves that key in the database, which never replaces one:
/// creating the environment again takes it up, with the chain shared for it if that
/// was done and a new certificate for it if not, and the environment signs.
#[test]
fn an_environment_whose_creation_was_cut_off_is_created_again() {
    let Some(pg) = Postgres::shared() else { return };
    let (db, dir, server) = autosigning_server(pg);
    let cfg = dir.path().join("certd.toml");
    let data = dir.path().join("data");
    let (cert, key) = admin(&server);
    let admin_client = |s: &Server| client(s, Some((&cert, &key)));
    let put_env = |s: &Server, env: &str| {
        admin_client(s)
            .put(s.url(&format!("/environments/{env}")))
            .body("{}")
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(put_env(&server, "half"), 201);
    assert_eq!(put_env(&server, "shared"), 201);
    assert!(server.terminate().success());
    // `half`: cut off right after its key was stored; `shared`: after its chain was
    // shared too. Neither was recorded as an environment.
    let mut sql = pg.admin_of(&db);
    sql.execute(
        "DELETE FROM certd_environments WHERE name IN ('half', 'shared')",
        &[],
    )
    .unwrap();
    sql.execute(
        "DELETE FROM certd_ca_keys WHERE env = 'half' AND purpose = 'chain'",
        &[],
    )
    .unwrap();
    for env in ["half", "shared"] {
        std::fs::remove_dir_all(data.join("ca").join(env)).unwrap();
    }
    let server = Server::start_with(dir.path(), &["--config", cfg.to_str().unwrap()]);
    for env in ["half", "shared"] {
        assert_eq!(put_env(&server, env), 201, "{env}");
        let name = format!("node.{env}");
        let (csr, _) = csr_for(&name);
        let r = admin_client(&server)
            .put(server.url(&format!("/{env}/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{env}: {}", r.status());
        let r = admin_client(&server)
            .post(server.url(&format!("/{env}/certificate/")))
            .body(name.clone())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{env}: sign {}", r.status());
        let anon = client(&server, None);
        let get = |path: &str| {
            let r = anon.get(server.url(path)).send().unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.bytes().unwrap().to_vec()
        };
        let chain = dir.path().join(format!("{env}-chain.pem"));
        let leaf = dir.path().join(format!("{env}-leaf.pem"));
        std::fs::write(&chain, get(&format!("/{env}/certificate/ca"))).unwrap();
        std::fs::write(&leaf, get(&format!("/{env}/certificate/{name}"))).unwrap();
        let (ok, out, err) = run(std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&chain)
            .arg(&leaf));
        assert!(ok, "{env}: {out}{err}");
    }
    let shared: i64 = sql
        .query_one(
            "SELECT count(*) FROM certd_ca_keys WHERE purpose = 'chain' AND env IN ('half', 'shared')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(shared, 2);
    assert!(server.terminate().success());
}

/// With the postgres backend every CA key (the root, each issuing CA, one made at run
/// time included) is in the database, sealed with AES-256-GCM under the key file, and
/// bound to its place: a wrong or missing key file, or two rows swapped, stop certd with
/// a message naming the file.
#[test]
fn ca_keys_live_in_the_database_sealed_and_bound_to_their_place() {
    let Some(pg) = Postgres::shared() else { return };
    let (db, dir, server) = autosigning_server(pg);
    let config = format!("{AUTOSIGN}{}", pg.store_toml(&db, dir.path()));
    let data = dir.path().join("data");
    let (cert, key) = admin(&server);
    let r = client(&server, Some((&cert, &key)))
        .put(server.url("/environments/runtime"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(server.terminate().success());

    for file in ["ca/root.key", "ca/production/ca.key", "ca/runtime/ca.key"] {
        assert!(!data.join(file).exists(), "{file} is a file");
    }
    let key_file = data.join("store.key");
    let meta = std::fs::metadata(&key_file).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let mut sql = pg.admin_of(&db);
    let rows: Vec<(String, String, Vec<u8>)> = sql
        .query(
            "SELECT env, purpose, sealed FROM certd_ca_keys ORDER BY env, purpose",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let places: Vec<(&str, &str)> = rows
        .iter()
        .map(|(e, p, _)| (e.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        places,
        [
            ("", "root-ca"),
            ("", "root-cert"),
            ("", "server-cert"),
            ("", "server-key"),
            ("production", "chain"),
            ("production", "issuing-ca"),
            ("runtime", "chain"),
            ("runtime", "issuing-ca")
        ]
    );
    for (_, _, sealed) in &rows {
        let text = String::from_utf8_lossy(sealed);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("-----"),
            "plaintext (keys, and the certificates shared with joining nodes, are sealed)"
        );
    }
    let cfg = dir.path().join("certd.toml");
    let start_ok = || {
        let s = Server::start_with(dir.path(), &["--config", cfg.to_str().unwrap()]);
        assert!(s.terminate().success());
    };
    start_ok();

    // A wrong key file.
    let right = std::fs::read(&key_file).unwrap();
    let mut wrong = right.clone();
    wrong[0] ^= 1;
    std::fs::write(&key_file, &wrong).unwrap();
    let e = error_line(&start_fails(dir.path(), &config));
    assert!(
        e.contains("store.key") && e.contains("does not decrypt"),
        "{e}"
    );
    // A missing one.
    std::fs::remove_file(&key_file).unwrap();
    let e = error_line(&start_fails(dir.path(), &config));
    assert!(
        e.contains("no key file at") && e.contains("store.key"),
        "{e}"
    );
    crate::common::write_private(&key_file, &right);
    start_ok();

    // The root's row and production's swapped: neither opens in the other's place.
    sql.batch_execute(
        "UPDATE certd_ca_keys AS a SET nonce = b.nonce, sealed = b.sealed
         FROM certd_ca_keys AS b
         WHERE (a.env, b.env) IN (('', 'production'), ('production', ''))",
    )
    .unwrap();
    let e = error_line(&start_fails(dir.path(), &config));
    assert!(e.contains("does not decrypt the root-ca key"), "{e}");
}

/// A populated sled installation copied to PostgreSQL answers every read resource byte
/// for byte as the original did (RSA: deterministic signatures, so the CRLs too); a
/// backup of the PostgreSQL one taken while 8 agents issue holds every certificate
/// acknowledged before it began.
#[test]
fn store_copy_moves_an_installation_to_postgres_and_backs_it_up_while_it_issues() {
    let Some(pg) = Postgres::shared() else { return };
    let root = tempfile::tempdir().unwrap();
    let (src, dst, back) = (
        root.path().join("sled"),
        root.path().join("pg"),
        root.path().join("backup"),
    );
    for d in [&src, &dst, &back] {
        std::fs::create_dir(d).unwrap();
    }
    let base = "[ca]\nkey_type = \"rsa-2048\"\n[environments.production]\nautosign = true\n[environments.manual]\n";
    std::fs::write(back.join("certd.toml"), base).unwrap();
    let db = pg.database();
    std::fs::write(
        dst.join("certd.toml"),
        format!("{base}{}", pg.store_toml(&db, &dst)),
    )
    .unwrap();

    let server = Server::start(&src, base);
    let (cert, key) = admin(&server);
    let adm = client(&server, Some((&cert, &key)));
    let anon = client(&server, None);
    let k = KeyType::EcP256.generate().unwrap();
    let csr = |n: &str| build_csr(&k, &Certname::parse(n).unwrap(), &[]).unwrap();
    let mut names = Vec::new();
    for i in 0..30 {
        let n = format!("node{i}");
        let r = anon
            .put(server.url(&format!("/production/certificate_request/{n}")))
            .body(csr(&n))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        names.push(n);
    }
    for n in &names[..5] {
        let r = adm
            .delete(server.url(&format!("/production/certificate/{n}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let r = adm
        .put(server.url("/environments/runtime"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    for (env, n) in [("manual", "m1"), ("manual", "m2"), ("runtime", "r1")] {
        let r = adm
            .put(server.url(&format!("/{env}/certificate_request/{n}")))
            .body(csr(n))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{env} {n}");
    }
    assert!(server.terminate().success());
    // What the original answers once started on its store (a running server appends
    // revocations to its CRL in the order they came; a start lists them in serial
    // order, so the comparison is between two started servers).
    let server = Server::start_with(
        &src,
        &["--config", src.join("certd.toml").to_str().unwrap()],
    );
    let envs = ["production", "manual", "runtime"];
    let some: Vec<&str> = names[3..8].iter().map(String::as_str).collect();
    let before = answers(&server, &envs, &some);
    assert!(server.terminate().success());

    let out = store_copy(&src, &dst);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    assert!(
        stdout.contains("3 environments")
            && stdout.contains("32 certificates")
            && stdout.contains("3 requests")
            && stdout.contains("5 revocations")
            && stdout.contains("4 CA keys")
            && stdout.contains("verified"),
        "{stdout}"
    );
    // Into a target that is not empty: refused.
    let again = store_copy(&src, &dst);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("set up already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        !dst.join("data/ca/root.key").exists(),
        "a key file on postgres"
    );

    let server = Server::start_with(
        &dst,
        &["--config", dst.join("certd.toml").to_str().unwrap()],
    );
    let after = answers(&server, &envs, &some);
    for ((p, a), (_, b)) in before.iter().zip(&after) {
        assert!(
            a == b,
            "{p} differs:\n{}\n{}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        );
    }

    // A backup of the running PostgreSQL installation while 8 agents issue.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let agents: Vec<_> = (0..8)
        .map(|t| {
            let (stop, acked) = (stop.clone(), acked.clone());
            let anon = client(&server, None);
            let url = server.url("/production/certificate_request/");
            std::thread::spawn(move || {
                let k = KeyType::EcP256.generate().unwrap();
                for i in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let n = format!("b{t}-{i}");
                    let csr = build_csr(&k, &Certname::parse(&n).unwrap(), &[]).unwrap();
                    let r = anon.put(format!("{url}{n}")).body(csr).send().unwrap();
                    assert_eq!(r.status(), 201, "{n}");
                    acked.lock().unwrap().push(n);
                }
            })
        })
        .collect();
    let start = Instant::now();
    while acked.lock().unwrap().len() < 200 {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(10));
    }
    let before_backup: Vec<String> = acked.lock().unwrap().clone();
    let out = store_copy(&dst, &back);
    let during = acked.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    for a in agents {
        a.join().unwrap();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "backup: {} acknowledged before it began, {} when it ended; {}",
        before_backup.len(),
        during,
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert!(
        during > before_backup.len(),
        "the agents did not issue during the backup"
    );
    drop(server);
    let restored = Server::start_with(
        &back,
        &["--config", back.join("certd.toml").to_str().unwrap()],
    );
    let anon = client(&restored, None);
    for n in &before_backup {
        let r = anon
            .head(restored.url(&format!("/production/certificate/{n}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{n} is not in the backup");
    }
}

/// Nodes starting together on a new database migrate it once: the advisory lock makes
/// the others wait and then find the schema current.
#[test]
fn nodes_starting_together_migrate_once() {
    let Some(pg) = Postgres::shared() else { return };
    let db = pg.database();
    let cfg = pg.store_config(&db);
    let barrier = Arc::new(std::sync::Barrier::new(6));
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let (cfg, barrier) = (cfg.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                certd::store::PgStore::open(&cfg).map(drop)
            })
        })
        .collect();
    for o in opens {
        o.join().unwrap().expect("every node starts");
    }
    let versions: Vec<i32> = pg
        .admin_of(&db)
        .query("SELECT version FROM certd_schema_version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=certd::store::PG_SCHEMA_VERSION).collect::<Vec<_>>()
    );
}

/// A write that cannot take the writers' lock within the statement timeout is told the
/// store is unavailable (503), and leaves no transaction open behind it: the next write
/// on the same connection works.
#[test]
fn a_write_that_times_out_on_the_lock_leaves_its_connection_usable() {
    use certd::store::{CrlStore, PgStore};
    let Some(pg) = Postgres::shared() else { return };
    let db = pg.database();
    // pool_size 2: one lane, so both writes use the same connection.
    let store = PgStore::open(&pg.store_config(&db)).unwrap();
    let crl = certd::store::CrlRecord {
        number: 1,
        this_update: 0,
        next_update: 1,
        entries: 0,
        der: Vec::new(),
    };
    let mut holder = pg.admin_of(&db);
    let mut held = holder.transaction().unwrap();
    held.batch_execute("SELECT last FROM certd_audit_head FOR UPDATE")
        .unwrap();
    let e = store.put_root_crl(&crl).unwrap_err();
    assert!(
        matches!(e, certd::store::StoreError::Unavailable(_)),
        "{e:?}"
    );
    held.rollback().unwrap();
    store
        .put_root_crl(&crl)
        .expect("the connection is usable again");
}

/// The database password given in `CERTD_PG_PASSWORD` is not passed on to the programs
/// certd runs (here an autosign policy that records its environment).
#[test]
fn programs_certd_runs_do_not_inherit_the_database_password() {
    use std::os::unix::fs::PermissionsExt;
    let Some(pg) = Postgres::shared() else { return };
    let db = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("policy-env");
    let policy = dir.path().join("policy.sh");
    std::fs::write(
        &policy,
        format!("#!/bin/sh\nenv > '{}'\nexit 0\n", seen.display()),
    )
    .unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "{FAST_CONFIG}[environments.production]\nautosign = \"{}\"\n[store]\nbackend = \"postgres\"\nurl = \"host=127.0.0.1 port={} dbname={db} user=certd\"\n",
        policy.display(),
        pg.port
    );
    std::fs::write(dir.path().join("certd.toml"), &config).unwrap();
    let server = Server::start_env(
        dir.path(),
        &["--config", dir.path().join("certd.toml").to_str().unwrap()],
        &[("CERTD_PG_PASSWORD", crate::common::pg::CERTD_PASSWORD)],
    );
    let key = KeyType::EcP256.generate().unwrap();
    let csr = build_csr(&key, &Certname::parse("envcheck").unwrap(), &[]).unwrap();
    let r = client(&server, None)
        .put(server.url("/production/certificate_request/envcheck"))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "the policy ran and signed");
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(!env.is_empty());
    assert!(
        !env.contains("CERTD_PG_PASSWORD") && !env.contains(crate::common::pg::CERTD_PASSWORD),
        "{env}"
    );
}

/// What a series of submissions for names that are not new answers, and the events it
/// leaves: (status, error code) per step, then (kind, certname) per event.
type Answers = (Vec<(u16, String)>, Vec<(String, String)>);

/// With them, how many signatures the server discarded in the steps after the revocation.
fn submissions_for_names_not_new(server: &Server) -> (Answers, u64) {
    let (cert, key) = admin(server);
    let admin_c = client(server, Some((&cert, &key)));
    let anon = client(server, None);
    let put = |path: &str, name: &str, sans: &[String]| {
        let k = KeyType::EcP256.generate().unwrap();
        let csr = build_csr(&k, &Certname::parse(name).unwrap(), sans).unwrap();
        let r = anon.put(server.url(path)).body(csr).send().unwrap();
        let status = r.status().as_u16();
        let body = r.text().unwrap();
        let code = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or(body);
        (status, code)
    };
    let native = |name: &str| format!("/production/certificate_request/{name}");
    let mut steps = vec![put(&native("n1"), "n1", &[])];
    steps.push(put(&native("n1"), "n1", &[]));
    steps.push(put(
        "/puppet-ca/v1/certificate_request/n1?environment=production",
        "n1",
        &[],
    ));
    let r = admin_c
        .delete(server.url("/production/certificate/n1"))
        .send()
        .unwrap();
    steps.push((r.status().as_u16(), String::new()));
    // From here no name is in a certificate cache (the revocation dropped n1's), so
    // which submissions go unread does not depend on timing.
    let discarded_before = discarded_signatures(server);
    steps.push(put(&native("n1"), "n1", &[]));
    // Refused by the policy (kept as an invalid request), then a CSR it allows.
    steps.push(put(&native("n2"), "n2", &["alt.example.com".to_owned()]));
    steps.push(put(&native("n2"), "n2", &[]));
    let discarded = discarded_signatures(server) - discarded_before;
    let events: Vec<serde_json::Value> = admin_c
        .get(server.url("/production/events?after=0"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let events = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("kind"), s("certname"))
        })
        .filter(|(_, name)| name.starts_with('n'))
        .collect();
    ((steps, events), discarded)
}

/// The server's count of certificates it signed and did not store.
fn discarded_signatures(server: &Server) -> u64 {
    let (cert, key) = admin(server);
    let text = client(server, Some((&cert, &key)))
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("certd_signatures_discarded_total{environment=\"production\"} ")
        })
        .map_or(0, |n| n.parse().unwrap())
}

/// A store whose reads cost a round trip submits a name that autosign signs by name
/// unread, as new, and again after the read when the store finds it is not: the answers
/// and the events are sled's, with nothing written by the first try, and one signature
/// discarded per such name.
#[test]
fn submissions_for_names_not_new_answer_on_postgres_as_on_sled() {
    let Some(pg) = Postgres::shared() else { return };
    let sled_dir = tempfile::tempdir().unwrap();
    let sled = Server::start(sled_dir.path(), AUTOSIGN);
    let (on_sled, discarded) = submissions_for_names_not_new(&sled);
    assert_eq!(discarded, 0);
    drop(sled);
    let (_db, _dir, server) = autosigning_server(pg);
    let (on_pg, discarded) = submissions_for_names_not_new(&server);
    // One signature thrown away per submission found not new (the revoked n1, the n2
    // kept as invalid), whichever thread made it unread: never made unread again.
    assert_eq!(discarded, 2);
    assert_eq!(
        on_sled.0.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [201, 409, 400, 204, 409, 400, 201],
        "{on_sled:?}"
    );
    assert_eq!(on_sled.0[1].1, "already-signed");
    assert_eq!(on_sled.0[4].1, "already-revoked");
    assert_eq!(on_pg, on_sled);
}

/// An RSA-4096 CA's certificate rows and the rows of pending RSA-4096 requests (2 KB and
/// more, above PostgreSQL's default TOAST threshold) are kept whole in their tables'
/// pages: storing one is one row, not a row plus a TOAST row and its index entry, and
/// reading one is one lookup.
#[test]
fn certificate_and_request_rows_stay_in_their_tables() {
    let Some(pg) = Postgres::shared() else { return };
    let (db, _dir, server) = server_with(
        pg,
        "[ca]\nkey_type = \"rsa-4096\"\n[environments.production]\nautosign = false\nallow_subject_alt_names = true\n",
    );
    let anon = client(&server, None);
    let (cert, admin_key) = admin(&server);
    let admin_c = client(&server, Some((&cert, &admin_key)));
    let key = KeyType::Rsa4096.generate().unwrap();
    // Both with the alternative names a web server's agent asks for (the signed one's
    // row is narrower: its fingerprints are in its summary, not its record).
    let sans =
        |host: &str| -> Vec<String> { (0..12).map(|i| format!("www{i}.{host}.example")).collect() };
    submit_new(&server, &anon, &key, "pending.example", &sans("pending"));
    submit_new(&server, &anon, &key, "signed.example", &sans("signed"));
    let r = admin_c
        .post(server.url("/production/certificate/"))
        .body("signed.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "signed");
    let mut db_admin = pg.admin_of(&db);
    for table in ["certd_certificates", "certd_requests"] {
        let row = db_admin
            .query_one(
                &format!(
                    "SELECT (SELECT max(pg_column_size(t.*)) FROM {table} t),
                            pg_relation_size(c.reltoastrelid)
                     FROM pg_class c WHERE c.relname = '{table}'"
                ),
                &[],
            )
            .unwrap();
        let (widest, toasted): (i32, i64) = (row.get(0), row.get(1));
        assert!(
            widest > 2032,
            "{table}: rows of {widest} bytes test nothing"
        );
        assert_eq!(toasted, 0, "{table}: rows of {widest} bytes moved to TOAST");
    }
}

/// Listings read a certificate's `summary` column (migration 4), not its JSON record;
/// a row without one (written before migration 4) lists from the record and DER, and a record
/// changed without its summary loses the summary (a trigger), so that no listing can
/// show a summary its record contradicts. A record beside a summary leaves its
/// fingerprints to it; a revocation writes both again.
#[test]
fn listings_read_summaries_and_fall_back_to_the_record_without_one() {
    let Some(pg) = Postgres::shared() else { return };
    let (db, _dir, server) =
        server_with(pg, &format!("{AUTOSIGN}allow_subject_alt_names = true\n"));
    let anon = client(&server, None);
    let (cert, key) = admin(&server);
    let admin_c = client(&server, Some((&cert, &key)));
    let key_pair = KeyType::EcP256.generate().unwrap();
    let sans = ["a.sum.example".to_owned(), "b.sum.example".to_owned()];
    submit_new(&server, &anon, &key_pair, "sans.sum", &sans);
    for name in ["plain.sum", "gone.sum", "later.sum", "kept.sum"] {
        submit_autosigned(&server, &anon, &key_pair, name);
    }
    let revoke = |name: &str| {
        let r = admin_c
            .delete(server.url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204, "{name}");
    };
    revoke("gone.sum");
    let listings = || {
        [
            "/production/certificate_statuses/*",
            "/puppet-ca/v1/certificate_statuses/any",
        ]
        .map(|path| {
            let r = admin_c.get(server.url(path)).send().unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.text().unwrap()
        })
    };
    let before = listings();
    for listing in &before {
        assert!(listing.contains("b.sum.example"), "{listing}");
    }
    assert_eq!(before[1].matches("\"state\":\"revoked\"").count(), 1);
    let mut db_admin = pg.admin_of(&db);
    let without_summary = |db_admin: &mut postgres::Client| -> Vec<String> {
        db_admin
            .query(
                "SELECT certname FROM certd_certificates WHERE summary IS NULL ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert!(without_summary(&mut db_admin).is_empty());
    // A record beside its summary leaves the fingerprints to it.
    let records_with_fingerprints = |db_admin: &mut postgres::Client| -> i64 {
        db_admin
            .query_one(
                "SELECT count(*) FROM certd_certificates WHERE record LIKE '%fingerprints%'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(records_with_fingerprints(&mut db_admin), 0);
    let rename = |from: &str, to: &str| {
        format!(
            "UPDATE certd_certificates SET record = replace(record, '{from}', '{to}')
             WHERE certname = 'sans.sum'"
        )
    };
    // With the trigger off, record and summary disagree: listings show the summary.
    db_admin
        .batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica; {}; COMMIT",
            rename("b.sum.example", "c.sum.example")
        ))
        .unwrap();
    assert!(without_summary(&mut db_admin).is_empty());
    assert_eq!(listings(), before);
    // As before migration 4 (plain.sum); records changed by something that knows
    // nothing of summaries (sans.sum renamed again; the others one space longer); a
    // summary that does not decode (certd-admin's: listed from its record).
    db_admin
        .batch_execute(&format!(
            "UPDATE certd_certificates SET summary = NULL WHERE certname = 'plain.sum';
             UPDATE certd_certificates SET summary = '\\x01ff' WHERE certname = 'certd-admin';
             {};
             UPDATE certd_certificates SET record = record || ' '
             WHERE certname IN ('gone.sum', 'later.sum')",
            rename("c.sum.example", "d.sum.example")
        ))
        .unwrap();
    assert_eq!(
        without_summary(&mut db_admin),
        ["gone.sum", "later.sum", "plain.sum", "sans.sum"]
    );
    assert_eq!(
        listings(),
        before
            .clone()
            .map(|l| l.replace("b.sum.example", "d.sum.example"))
    );
    // A revocation writes the record and its summary, the fingerprints in the summary:
    // also for a record whose summary was cleared (its fingerprints computed from the
    // DER again).
    revoke("kept.sum");
    revoke("later.sum");
    assert_eq!(
        without_summary(&mut db_admin),
        ["gone.sum", "plain.sum", "sans.sum"]
    );
    assert_eq!(records_with_fingerprints(&mut db_admin), 0);
    // On the Puppet face, the states of kept.sum and later.sum are all that changed.
    let parse = |text: &str| serde_json::from_str::<Vec<serde_json::Value>>(text).unwrap();
    let mut expected = parse(&before[1].replace("b.sum.example", "d.sum.example"));
    for s in &mut expected {
        if s["name"] == "later.sum" || s["name"] == "kept.sum" {
            s["state"] = "revoked".into();
        }
    }
    assert_eq!(parse(&listings()[1]), expected);
}

/// A node cut off from the database in the middle of a transaction leaves its session
/// there, holding the writers' lock, until PostgreSQL ends it: another node's writes
/// wait for that lock up to `lock_timeout`. The partition test saw node 1 answer 503
/// for its first write after node 2 was cut: certd's sessions ended an idle
/// transaction after twice the statement timeout, while waiting for a lock gave up
/// after one. A session stuck in a transaction is now ended before the writers waiting
/// on it give up (half the statement timeout), as certd's writing sessions report.
#[test]
fn a_session_stuck_in_a_transaction_ends_before_writers_waiting_on_it_give_up() {
    let Some(pg) = Postgres::shared() else { return };
    let db = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{AUTOSIGN}{}", pg.store_toml(&db, dir.path()));
    let server = Server::start(dir.path(), &config);
    pg.admin_of(&db)
        .batch_execute(
            "CREATE TABLE seen_timeouts (idle bigint NOT NULL, lock bigint NOT NULL);
             GRANT INSERT ON seen_timeouts TO certd;
             CREATE FUNCTION note_timeouts() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               INSERT INTO seen_timeouts
                 SELECT (SELECT setting::bigint FROM pg_settings
                          WHERE name = 'idle_in_transaction_session_timeout'),
                        (SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout');
               RETURN NULL;
             END $$;
             CREATE TRIGGER note_timeouts AFTER INSERT ON certd_audit
               FOR EACH STATEMENT EXECUTE FUNCTION note_timeouts();",
        )
        .unwrap();
    let anon = client(&server, None);
    let key = KeyType::EcP256.generate().unwrap();
    for i in 0..3 {
        submit_autosigned(&server, &anon, &key, &format!("node{i}.example"));
    }
    let seen: Vec<(i64, i64)> = pg
        .admin_of(&db)
        .query("SELECT idle, lock FROM seen_timeouts", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|&(idle, lock)| idle > 0 && idle < lock),
        "(idle_in_transaction_session_timeout, lock_timeout) in ms: {seen:?}"
    );
}

/// Every write certd acknowledges waits for its commit to reach the WAL on disk, even
/// where the database (or its role, or the server, or the URL's own `options`)
/// defaults `synchronous_commit` to off: certd's sessions pin it on, after the URL's
/// options, which are otherwise kept. A trigger records the settings of the session
/// that writes each audited change: autosigned submissions (the committer's batches)
/// and a revocation (a pooled connection).
#[test]
fn acknowledged_writes_wait_for_the_wal_whatever_the_database_defaults_to() {
    let Some(pg) = Postgres::shared() else { return };
    let db = pg.database();
    pg.admin()
        .batch_execute(&format!("ALTER DATABASE {db} SET synchronous_commit = off"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = pg.store_toml(&db, dir.path()).replace(
        "user=certd\"",
        "user=certd options='-c work_mem=7MB -c synchronous_commit=off \
         -c default_transaction_isolation=serializable'\"",
    );
    assert!(store.contains("work_mem"), "{store}");
    let config = format!("{AUTOSIGN}{store}");
    let server = Server::start(dir.path(), &config);
    pg.admin_of(&db)
        .batch_execute(
            "CREATE TABLE seen_commit (setting text NOT NULL);
             GRANT INSERT ON seen_commit TO certd;
             CREATE FUNCTION note_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               INSERT INTO seen_commit VALUES (current_setting('synchronous_commit')
                 || ' ' || current_setting('work_mem')
                 || ' ' || current_setting('transaction_isolation'));
               RETURN NULL;
             END $$;
             CREATE TRIGGER note_commit AFTER INSERT ON certd_audit
               FOR EACH STATEMENT EXECUTE FUNCTION note_commit();",
        )
        .unwrap();
    let anon = client(&server, None);
    let key = KeyType::EcP256.generate().unwrap();
    for i in 0..4 {
        submit_autosigned(&server, &anon, &key, &format!("node{i}.example"));
    }
    let (cert, admin_key) = admin(&server);
    let r = client(&server, Some((&cert, &admin_key)))
        .delete(server.url("/production/certificate/node0.example"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let seen: Vec<String> = pg
        .admin_of(&db)
        .query("SELECT setting FROM seen_commit", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(
        seen.iter().all(|s| s == "on 7MB read committed"),
        "writes acknowledged before their WAL reached the disk, or the URL's options lost: {seen:?}"
    );
}
