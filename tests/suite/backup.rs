//! `POST /backups`: a backup of a running sled installation, taken while agents issue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use certd::ca::{build_csr, Certname, KeyType};

const AUTOSIGN: &str = "[ca]\nkey_type = \"ec-p256\"\n[environments.production]\nautosign = true\n[environments.dev]\nautosign = true\n";

/// While 8 agents issue, a global admin asks the running server for a backup. The
/// backup is a data directory: served as it is, it holds every certificate acknowledged
/// before the backup began (byte for byte, and with the original's CA: a certificate
/// it served verifies against the backup's chain), a revocation made before it, and it
/// answers every read resource exactly as the original did at that moment for what it
/// holds. Anyone but a global admin gets 403; a server without `backup_dir`, 409.
#[test]
fn a_backup_of_a_running_sled_server_holds_everything_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let config = format!(
        "{AUTOSIGN}[store]\nbackup_dir = \"{}\"\n",
        backups.display()
    );
    let server = Server::start(dir.path(), &config);
    let (cert, key) = admin(&server);
    let adm = client(&server, Some((&cert, &key)));
    let anon = client(&server, None);
    let r = anon.post(server.url("/backups")).send().unwrap();
    assert_eq!(r.status(), 403, "anonymous");

    // Something of everything: a revocation, a pending request, an environment made at
    // run time.
    let key0 = KeyType::EcP256.generate().unwrap();
    for name in ["gone", "kept"] {
        let csr = build_csr(&key0, &Certname::parse(name).unwrap(), &[]).unwrap();
        let r = anon
            .put(server.url(&format!("/production/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = adm
        .delete(server.url("/production/certificate/gone"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = adm
        .put(server.url("/environments/tenant1"))
        .json(&serde_json::json!({"autosign": false, "allow_anonymous_csr": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let csr = build_csr(&key0, &Certname::parse("waiting").unwrap(), &[]).unwrap();
    let r = anon
        .put(server.url("/tenant1/certificate_request/waiting"))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());

    let acked = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let agents: Vec<_> = (0..8)
        .map(|t| {
            let (acked, stop) = (acked.clone(), stop.clone());
            let anon = client(&server, None);
            let base = server.url("");
            std::thread::spawn(move || {
                let key = KeyType::EcP256.generate().unwrap();
                for i in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("a{t}-{i}");
                    let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
                    let r = anon
                        .put(format!("{base}/production/certificate_request/{name}"))
                        .body(csr)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 201, "{name}");
                    let pem = anon
                        .get(format!("{base}/production/certificate/{name}"))
                        .send()
                        .unwrap()
                        .bytes()
                        .unwrap()
                        .to_vec();
                    acked.lock().unwrap().push((name, pem));
                }
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let start = Instant::now();
        while acked.lock().unwrap().len() < n {
            assert!(start.elapsed() < Duration::from_secs(60), "no progress");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(300);
    let before: Vec<(String, Vec<u8>)> = acked.lock().unwrap().clone();
    let r = adm.post(server.url("/backups")).send().unwrap();
    assert_eq!(r.status(), 201);
    let made: serde_json::Value = r.json().unwrap();
    let during = acked.lock().unwrap().len();
    wait_for(during + 300);
    stop.store(true, Ordering::SeqCst);
    for a in agents {
        a.join().expect("an agent saw a wrong answer");
    }
    let path = std::path::PathBuf::from(made["path"].as_str().unwrap());
    eprintln!(
        "backup: {made}; {} acknowledged before it, {during} when it answered",
        before.len()
    );
    assert!(path.starts_with(&backups), "{path:?}");
    assert!(made["counts"]["certificates"].as_u64().unwrap() >= before.len() as u64 + 2);
    assert_eq!(made["counts"]["revocations"], 1);
    assert_eq!(
        made["counts"]["ca_keys"], 4,
        "root, production, dev, tenant1"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the backup holds CA keys");
    assert!(
        std::fs::read_dir(&backups).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")),
        "a partial backup was left"
    );
    let seen_names: Vec<String> = before.iter().map(|(n, _)| n.clone()).collect();
    drop(server);

    // One consistent view: every certificate in it has its serial indexed and its
    // events logged, every logged issuance its certificate (the trees were read while
    // agents wrote, one after another).
    {
        use certd::store::Store;
        let store = certd::store::SledStore::open(&path.join("store")).unwrap();
        let snap = store.snapshot().unwrap();
        let prod = &snap.envs["production"];
        let logged: std::collections::HashSet<&str> = snap
            .audit
            .iter()
            .filter(|e| e.env == "production")
            .map(|e| e.certname.as_str())
            .collect();
        for (name, c) in &prod.certificates {
            assert_eq!(prod.serials.get(&c.serial), Some(name), "{name}'s serial");
            assert!(logged.contains(name.as_str()), "{name} has no event");
        }
        for name in logged.iter().filter(|n| n.starts_with('a')) {
            assert!(
                prod.certificates.contains_key(*name),
                "{name}: event, no certificate"
            );
        }
    }

    // Restore: the backup directory is a data directory.
    let restored = tempfile::tempdir().unwrap();
    std::fs::rename(&path, restored.path().join("data")).unwrap();
    let copy = Server::start(restored.path(), AUTOSIGN);
    let c = client(&copy, None);
    for (name, pem) in &before {
        let r = c
            .get(copy.url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{name} was acknowledged before the backup");
        assert_eq!(&r.bytes().unwrap().to_vec(), pem, "{name}");
    }
    let head = |path: &str| c.head(copy.url(path)).send().unwrap().status().as_u16();
    assert_eq!(head("/production/certificate/gone"), 410);
    assert_eq!(head("/production/certificate/kept"), 200);
    assert_eq!(head("/tenant1/certificate_request/waiting"), 200);
    // The same CA: the restored server's chain is the original's.
    let chain = std::fs::read(restored.path().join("data/ca/production/chain.pem")).unwrap();
    let original = std::fs::read(dir.path().join("data/ca/production/chain.pem")).unwrap();
    assert_eq!(chain, original);
    // Its answers are whole: every read resource answers (statuses, CRLs, events).
    let names: Vec<&str> = seen_names.iter().take(20).map(String::as_str).collect();
    let read = answers(&copy, &["production", "dev", "tenant1"], &names);
    assert!(read.len() > 15);
}

/// Without `[store] backup_dir` there are no backups through the server: 409.
#[test]
fn without_a_backup_dir_there_is_no_backup() {
    let (api, _dir) = Api::start(AUTOSIGN);
    let r = api.admin.post(api.url("/backups")).send().unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["code"], "backups-not-configured", "{body}");
}

/// A `backup_dir` inside the data directory is refused (each backup would hold the
/// ones before it).
#[test]
fn a_backup_dir_inside_the_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{AUTOSIGN}[store]\nbackup_dir = \"data/backups\"\n");
    let server = Server::start(dir.path(), &config);
    let (cert, key) = admin(&server);
    let r = client(&server, Some((&cert, &key)))
        .post(server.url("/backups"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["code"], "backups-not-configured", "{body}");
}

/// Fifth review, a low finding: `certd store copy` into a data directory that already
/// existed (made by hand, say, with the usual 0755) left it and the sled files as they
/// were made, readable by others. A copy makes its target private, as a start does.
#[test]
fn a_store_copy_makes_its_target_private() {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let root = tempfile::tempdir().unwrap();
    let (src, dst) = (root.path().join("src"), root.path().join("dst"));
    std::fs::create_dir(&src).unwrap();
    let server = Server::start(&src, AUTOSIGN);
    assert!(server.terminate().success());
    std::fs::DirBuilder::new()
        .mode(0o755)
        .recursive(true)
        .create(dst.join("data"))
        .unwrap();
    std::fs::write(dst.join("certd.toml"), AUTOSIGN).unwrap();
    let out = store_copy(&src, &dst);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dst.join("data")), 0o700, "the data directory");
    let mut dirs = vec![dst.join("data")];
    let mut store_files = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                dirs.push(p);
            } else if p.starts_with(dst.join("data/store"))
                || p.extension().is_some_and(|e| e == "key")
            {
                assert_eq!(mode(&p) & 0o077, 0, "{} is private", p.display());
                store_files += 1;
            }
        }
    }
    assert!(store_files > 2, "the copy has a store and keys");
}
