//! The foundation over real TLS: `certd setup` and `certd serve`, the data directory they
//! write, `/status`, `/{env}/certificate/ca`, identity, restart and shutdown.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;
use certd::store::{SledStore, Store};

#[test]
fn shipped_config_serves_status_to_curl_with_the_production_chain() {
    // The shipped conf/certd.toml (RSA-4096 CAs), found in the working directory as a
    // fresh clone would have it; only the port differs so tests can run side by side.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/conf/certd.toml"),
        dir.path().join("conf/certd.toml"),
    )
    .unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/conf/auth.toml"),
        dir.path().join("conf/auth.toml"),
    )
    .unwrap();
    let server = {
        let mut child = certd()
            .current_dir(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("listening on https://127.0.0.1:"),
            "{line}"
        );
        (
            child,
            line.trim()
                .rsplit(':')
                .next()
                .unwrap()
                .parse::<u16>()
                .unwrap(),
        )
    };
    let (mut child, port) = server;
    let data = dir.path().join("data");
    assert!(
        data.join("ca/production/chain.pem").is_file(),
        "data directory is ./data"
    );
    let (ok, body, err) = run(Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(data.join("ca/production/chain.pem"))
        .arg(format!("https://localhost:{port}/status")));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ok, "curl: {err}");
    let (json, code) = body.rsplit_once('\n').unwrap();
    assert_eq!(code, "200");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["store"]["ok"], true);
    assert!(v.get("environments").is_none(), "{v}");
    let (ok, text, _) = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(data.join("ca/root.pem")));
    assert!(ok && text.contains("Public-Key: (4096 bit)"), "{text}");
}

#[test]
fn server_certificate_verifies_for_localhost_and_127_0_0_1() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), FAST_CONFIG);
    for (flag, value) in [
        ("-verify_hostname", "localhost"),
        ("-verify_ip", "127.0.0.1"),
    ] {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.port),
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(server.chain())
        .args([flag, value, "-servername", "localhost"])
        .stdin(std::process::Stdio::null());
        let (ok, out, err) = run(&mut cmd);
        assert!(ok, "s_client {flag} {value}: {err}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    }
    // A name the certificate does not carry fails verification.
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{}", server.port),
        "-verify_return_error",
        "-CAfile",
    ])
    .arg(server.chain())
    .args(["-verify_hostname", "not-this-host.example"])
    .stdin(std::process::Stdio::null());
    let (ok, _, _) = run(&mut cmd);
    assert!(!ok, "a wrong host name must not verify");
}

#[test]
fn data_directory_has_every_file_keys_0600_and_an_admin_with_pp_cli_auth() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), FAST_CONFIG);
    let d = &server.dir;
    for f in [
        "ca/root.pem",
        "ca/root.key",
        "ca/production/ca.pem",
        "ca/production/chain.pem",
        "ca/production/ca.key",
        "tls/server.pem",
        "tls/server.key",
        "admin/admin.pem",
        "admin/admin.key",
        "store/db",
    ] {
        assert!(d.join(f).exists(), "{f} missing");
    }
    for key in [
        "ca/root.key",
        "ca/production/ca.key",
        "tls/server.key",
        "admin/admin.key",
    ] {
        let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let (ok, out, err) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(server.chain())
        .arg(d.join("admin/admin.pem")));
    assert!(ok, "{out}{err}");
    assert!(out.contains("admin.pem: OK"));
    let (_, text, _) = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(d.join("admin/admin.pem")));
    let after = text
        .split("1.3.6.1.4.1.34380.1.3.39:")
        .nth(1)
        .expect("pp_cli_auth extension present");
    assert!(after.lines().nth(1).unwrap().contains("true"), "{text}");
    // The chain file is the issuing CA then the root.
    let chain = std::fs::read_to_string(server.chain()).unwrap();
    let issuing = std::fs::read_to_string(d.join("ca/production/ca.pem")).unwrap();
    let root = std::fs::read_to_string(d.join("ca/root.pem")).unwrap();
    assert_eq!(chain, format!("{issuing}{root}"));
    // The server certificate names localhost, 127.0.0.1 and ::1.
    let (_, text, _) = run(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(d.join("tls/server.pem")));
    for want in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
}

#[test]
fn ca_chain_is_served_byte_for_byte_and_unknown_environments_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), FAST_CONFIG);
    let c = client(&server, None);
    let r = c
        .get(server.url("/production/certificate/ca"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().unwrap().as_ref(),
        std::fs::read(server.chain()).unwrap().as_slice()
    );

    let r = c.get(server.url("/staging/certificate/ca")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = r.json().unwrap();
    assert_eq!(p["code"], "unknown-environment");

    let r = c.get(server.url("/Bad.Env/certificate/ca")).send().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["code"],
        "invalid-environment"
    );

    // The rules run first; the one that would decide speaks of environment "no".
    let r = c.get(server.url("/no/such/route/here")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["code"],
        "unknown-environment"
    );
}

#[test]
fn configured_environments_get_their_own_issuing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &format!("{FAST_CONFIG}\n[environments.staging]\n"),
    );
    let c = client(&server, None);
    let prod = c
        .get(server.url("/production/certificate/ca"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let staging = c
        .get(server.url("/staging/certificate/ca"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_ne!(prod, staging);
    assert!(staging.ends_with(&std::fs::read_to_string(server.dir.join("ca/root.pem")).unwrap()));
    let (ok, _, err) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(server.dir.join("ca/root.pem"))
        .arg(server.dir.join("ca/staging/ca.pem")));
    assert!(ok, "{err}");
    let (cert, key) = admin(&server);
    let status: serde_json::Value = client(&server, Some((&cert, &key)))
        .get(server.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        status["environments"],
        serde_json::json!(["production", "staging"])
    );
}

#[test]
fn caller_identity_reaches_handlers_and_foreign_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), FAST_CONFIG);
    let anon: serde_json::Value = client(&server, None)
        .get(server.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(anon["caller"]["role"], "anonymous");
    let (cert, key) = admin(&server);
    let admin: serde_json::Value = client(&server, Some((&cert, &key)))
        .get(server.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        admin["caller"],
        serde_json::json!({"role": "admin", "certname": "certd-admin", "environment": "production"})
    );

    // A certificate from another installation's CA does not get through the handshake.
    let other_dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(certd()
        .args(["setup", "--config"])
        .arg(&server.config)
        .arg("--data-dir")
        .arg(other_dir.path()));
    assert!(ok, "{err}");
    let foreign = client(
        &server,
        Some((
            &other_dir.path().join("admin/admin.pem"),
            &other_dir.path().join("admin/admin.key"),
        )),
    );
    let result = foreign.get(server.url("/status")).send();
    assert!(
        result.is_err(),
        "a foreign client certificate must be refused: {result:?}"
    );
    // The server keeps answering others.
    assert_eq!(
        client(&server, None)
            .get(server.url("/status"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn setup_on_an_existing_directory_changes_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certd.toml");
    std::fs::write(&config, FAST_CONFIG).unwrap();
    let data = dir.path().join("data");
    let (ok, out, err) = run(certd()
        .args(["setup", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data));
    assert!(ok, "{err}");
    assert!(out.contains("set up"), "{out}");
    let files = [
        "ca/root.pem",
        "ca/root.key",
        "ca/production/ca.pem",
        "ca/production/ca.key",
        "tls/server.pem",
        "admin/admin.pem",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(data.join(f)).unwrap())
        .collect();
    let (ok, out, _) = run(certd()
        .args(["setup", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data));
    assert!(ok);
    assert!(out.contains("already set up; nothing changed"), "{out}");
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(data.join(f)).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn restart_keeps_the_same_cas_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), FAST_CONFIG);
    let data = server.dir.clone();
    let files = [
        "ca/root.pem",
        "ca/production/ca.pem",
        "tls/server.pem",
        "admin/admin.pem",
    ];
    let before: Vec<String> = files.iter().map(|f| fingerprint(&data.join(f))).collect();
    let chain_before = client(&server, None)
        .get(server.url("/production/certificate/ca"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(server.terminate().success(), "SIGTERM exits 0");
    let snapshot_before = SledStore::open(&data.join("store"))
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(snapshot_before.environments.len(), 1);
    assert!(
        snapshot_before.envs["production"].crl.is_some(),
        "the first CRL exists from setup"
    );

    let server = Server::start(dir.path(), FAST_CONFIG);
    let after: Vec<String> = files.iter().map(|f| fingerprint(&data.join(f))).collect();
    assert_eq!(before, after);
    let chain_after = client(&server, None)
        .get(server.url("/production/certificate/ca"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(chain_before, chain_after);
    assert!(server.terminate().success());
    let snapshot_after = SledStore::open(&data.join("store"))
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(snapshot_before, snapshot_after);
}

#[test]
fn refuses_to_start_with_a_world_readable_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certd.toml");
    std::fs::write(&config, FAST_CONFIG).unwrap();
    let data = dir.path().join("data");
    assert!(
        run(certd()
            .args(["setup", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data))
        .0
    );
    let key = data.join("ca/production/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = run(certd()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data));
    assert!(!ok);
    assert!(err.contains("ca.key") && err.contains("chmod 600"), "{err}");
}

#[test]
fn a_malformed_config_stops_the_server_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certd.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nbogus_key = 1\n",
    )
    .unwrap();
    let (ok, _, err) = run(certd()
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("d")));
    assert!(!ok);
    assert!(err.contains("bogus_key") && err.contains("line 3"), "{err}");
    assert!(
        !dir.path().join("d").exists(),
        "nothing written for a bad config"
    );
}

/// `[server] workers` sets how many HTTP worker threads serve (nodes sharing one
/// machine's cores each take their share); unset, one per core.
#[test]
#[cfg(target_os = "linux")]
fn server_workers_sets_the_http_worker_threads() {
    // A count that is not the default's, one per core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = if cores == 7 { 5 } else { 7 };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &format!("[server]\nworkers = {n}\n"));
    let status = client(&server, None)
        .get(server.url("/status"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    // Each worker is a thread that actix names "actix-rt|system:N|arbiter:M" (Linux
    // keeps 15 characters); they start together, so the count settles at once.
    let task = std::path::PathBuf::from(format!("/proc/{}/task", server.child.id()));
    let workers = || {
        std::fs::read_dir(&task)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("actix-rt|system"))
            })
            .count()
    };
    let mut seen = workers();
    for _ in 0..50 {
        if seen == n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen = workers();
    }
    assert_eq!(seen, n, "HTTP worker threads");
}

/// Issue 24, finding 9: hostile values that used to be taken silently, or failed later
/// with an opaque message, stop the server at once with the key and its line.
#[test]
fn hostile_config_values_stop_the_server_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    for (body, key) in [
        ("[limits]\nmax_header_bytes = 0\n", "max_header_bytes"),
        ("[limits]\nmax_pending_signings = 0\n", "max_pending_signings"),
        ("[limits]\nmax_csr_bytes = 0\n", "max_csr_bytes"),
        ("[server]\nmax_connections = 0\n", "max_connections"),
        ("[server]\nworkers = 0\n", "workers"),
        ("[server]\nworkers = 100000\n", "workers"),
        ("[events]\nwebhooks = [\"http://exa mple/\"]\n", "webhooks"),
        ("[ca]\nroot_ttl = \"99999999y\"\n", "root_ttl"),
        ("[ca]\ncrl_next_update = \"99999999y\"\n", "crl_next_update"),
        (
            &format!(
                "[environments.x.issuer]\ntype = \"cfssl\"\nurl = \"http://127.0.0.1:9\"\nca_file = \"{}\"\n",
                empty.display()
            ),
            "ca_file",
        ),
    ] {
        let config = dir.path().join("certd.toml");
        std::fs::write(&config, format!("# hostile\n{body}")).unwrap();
        let data = dir.path().join("d");
        // Bounded: a server that takes the value starts and would not stop by itself.
        let (ok, _, err) = run(std::process::Command::new("timeout")
            .arg("20")
            .arg(env!("CARGO_BIN_EXE_certd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data));
        assert!(!ok, "{body}: started");
        assert!(
            err.contains(key) && err.contains("line "),
            "{body}: the message names the key and its line: {err}"
        );
        assert!(!data.exists(), "{body}: nothing written for a bad config");
    }
}
