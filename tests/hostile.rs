//! The hostile-input corpus of `fixtures/hostile/` (see its README): every case, sent as
//! raw bytes over TLS, gets the expected 4xx with its stable problem+json code, never a
//! 5xx; the server answers normally after each one; and the store is exactly as before.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use certd::store::{SledStore, Store};
use common::*;
use openssl::ssl::{SslConnector, SslMethod};

/// Sends `raw` on a fresh TLS connection and returns (status, body). The cases go in
/// with the admin certificate: authorization comes before parsing, so an anonymous
/// caller's bad listing query is a 403 before its query is read; as admin, every case
/// reaches the parser it is aimed at.
fn send_raw(server: &Server, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(server.chain()).unwrap();
    let (cert, key) = admin(server);
    b.set_certificate_chain_file(cert).unwrap();
    b.set_private_key_file(key, openssl::ssl::SslFiletype::PEM)
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = b.build().connect("localhost", tcp).unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = tls.write_all(raw);
    let _ = tls.flush();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => out[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

fn snapshot(data: &Path) -> certd::store::Snapshot {
    SledStore::open(&data.join("store"))
        .unwrap()
        .snapshot()
        .unwrap()
}

#[test]
fn every_hostile_case_gets_its_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[ca]\nkey_type = \"ec-p256\"\n";
    let server = Server::start(dir.path(), config);
    let data = server.dir.clone();
    assert!(server.terminate().success());
    let before = snapshot(&data);
    let server = Server::start(dir.path(), config);

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile");
    let manifest = std::fs::read_to_string(root.join("cases.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let (id, file, want_status, want_code) = (f[0], f[2], f[3].parse::<u16>().unwrap(), f[4]);
        let raw = std::fs::read(root.join("requests").join(file)).unwrap();
        let (status, body) = send_raw(&server, &raw);
        n += 1;
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned));
        let ok_status = status == want_status && (400..500).contains(&status);
        let ok_code = match want_code {
            "-" => true,
            "*" => code.is_some(),
            c => code.as_deref() == Some(c),
        };
        if !ok_status || !ok_code {
            failures.push(format!(
                "{id}: got {status} {code:?}, want {want_status} {want_code}"
            ));
        }
        // Still answering normally.
        let (alive, _) = send_raw(
            &server,
            b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(alive, 200, "after {id}");
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(n >= 150, "the corpus has {n} cases");
    assert!(server.terminate().success());
    assert_eq!(snapshot(&data), before, "the store changed");
    eprintln!("{n} hostile cases, each refused as expected; the store is unchanged");
}
