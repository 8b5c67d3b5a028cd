//! A full disk. certd answers 503 `store-unavailable` with `Retry-After` to a write it
//! cannot make durable, `/status` says the store is not ok, and once space is free again
//! writes work by themselves, with every certificate acknowledged before still there.
//!
//! The data directory is a small tmpfs mounted in a mount namespace of certd's own
//! (`unshare --mount`), so nothing outlives the test; the test reaches it through
//! `/proc/PID/root`. The mount needs root, or a user namespace of the test's own (as an
//! unprivileged user, `unshare --user --map-root-user`); where neither is allowed the
//! test is skipped, unless `CERTD_REQUIRE_EXTERNAL=1` (set by `.ci/run`) makes that a
//! failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use certd::ca::{build_csr, Certname, KeyType};
use serde_json::Value;

const CONFIG: &str = "[ca]\nkey_type = \"ec-p256\"\n[environments.production]\nautosign = true\n";

/// The `unshare` options under which this process may mount a tmpfs, if any: a mount
/// namespace alone (root), or inside a user namespace (anyone, where the kernel allows).
fn mount_namespace() -> Option<&'static [&'static str]> {
    const WAYS: [&[&str]; 2] = [
        &["--mount", "--propagation", "private"],
        &[
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ],
    ];
    WAYS.into_iter().find(|way| {
        Command::new("unshare")
            .args(*way)
            .args(["sh", "-c", "mount -t tmpfs -o size=1m probe /mnt"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// `certd serve` with its data directory on a tmpfs of `size`, in its own mount namespace.
fn start_on_tmpfs(dir: &Path, size: &str, way: &[&str]) -> Server {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let config = dir.join("certd.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.current_dir(dir)
        .args(way)
        .args(["sh", "-c"])
        .arg(r#"mount -t tmpfs -o "size=$1,mode=0700" certd-test "$2" && shift 2 && exec "$@""#)
        .args(["sh", size])
        .arg(&data)
        .arg(env!("CARGO_BIN_EXE_certd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config);
    let mut server = Server::spawn(cmd, data.clone(), config);
    server.dir = PathBuf::from(format!(
        "/proc/{}/root{}",
        server.child.id(),
        data.display()
    ));
    server
}

/// Writes `path` until the file system is full; returns its length.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 64 << 10];
    let mut len = 0u64;
    // Bounded by the tmpfs's size; the bound is only a guard.
    for _ in 0..100_000 {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n as u64,
        }
    }
    let _ = f.sync_all();
    len
}

fn put(
    anon: &reqwest::blocking::Client,
    server: &Server,
    name: &str,
) -> (u16, Option<String>, String) {
    let key = KeyType::EcP256.generate().unwrap();
    let pem = build_csr(&key, &Certname::parse(name).unwrap(), &[]).unwrap();
    let resp = anon
        .put(server.url(&format!("/production/certificate_request/{name}")))
        .body(pem)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.text().unwrap())
}

fn store_status(anon: &reqwest::blocking::Client, server: &Server) -> Value {
    anon.get(server.url("/status"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["store"]
        .clone()
}

#[test]
fn a_full_disk_answers_503_and_writes_resume_once_space_is_back() {
    let Some(way) = mount_namespace() else {
        assert!(
            std::env::var("CERTD_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "mounting a tmpfs in a namespace of the test's own is required (CERTD_REQUIRE_EXTERNAL=1) but failed: run as root or allow user namespaces"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root or user namespaces)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_on_tmpfs(dir.path(), "24m", way);
    let anon = client(&server, None);
    assert_eq!(store_status(&anon, &server)["ok"], true);

    // Leave the store about 1 MiB of room.
    let filler = server.dir.join("filler");
    let full = fill(&filler);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(full.saturating_sub(1 << 20))
        .unwrap();

    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..5_000 {
        let name = format!("node{i}");
        let (status, retry, body) = put(&anon, &server, &name);
        match status {
            201 => acknowledged.push(name),
            503 => {
                refused = Some((name, retry, body));
                break;
            }
            other => panic!("{name}: {other} {body}\n{}", server.stderr()),
        }
    }
    let (name, retry, body) = refused.unwrap_or_else(|| {
        panic!(
            "the disk never filled after {} certificates",
            acknowledged.len()
        )
    });
    assert!(!acknowledged.is_empty(), "the first write already failed");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "store-unavailable", "{body}");
    assert!(retry.is_some(), "503 without Retry-After");
    eprintln!(
        "{} certificates acknowledged before the disk filled; {name} refused",
        acknowledged.len()
    );

    // While space is short, writes keep answering 503 (never 500) and /status says so.
    for i in 0..5 {
        let (status, _, body) = put(&anon, &server, &format!("still{i}"));
        assert_eq!(status, 503, "{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Long enough for the store to try reopening while the disk is still full (its
    // first tries come after 0.5 s and 1 s more).
    std::thread::sleep(Duration::from_secs(2));
    // The Puppet face says the same in its own way.
    let key = KeyType::EcP256.generate().unwrap();
    let pem = build_csr(&key, &Certname::parse("puppetnode").unwrap(), &[]).unwrap();
    let resp = anon
        .put(server.url("/puppet-ca/v1/certificate_request/puppetnode?environment=production"))
        .header("content-type", "text/plain")
        .body(pem)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let store = store_status(&anon, &server);
    assert_eq!(store["ok"], false, "{store}");
    assert!(store["detail"].is_string(), "{store}");

    // Free the space: writes work again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    let back = loop {
        n += 1;
        let name = format!("after{n}");
        let (status, _, body) = put(&anon, &server, &name);
        match status {
            201 => break name,
            503 if Instant::now() < until => std::thread::sleep(Duration::from_millis(250)),
            other => panic!("{other} {body}\n{}", server.stderr()),
        }
    };
    assert_eq!(store_status(&anon, &server)["ok"], true);
    acknowledged.push(back);

    // Every acknowledged certificate is there (the store was reopened from disk).
    for name in &acknowledged {
        let resp = anon
            .get(server.url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{name} lost");
    }
}
