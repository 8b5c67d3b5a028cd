//! Who may do what, where: every caller × every native endpoint × two environments,
//! against a table written out below. Environment `a` takes CSRs from anonymous callers
//! and has its own admin (`admin-a`); `b` has neither. `ops` is a global admin's name.

use std::path::{Path, PathBuf};

use crate::common::*;
use certd::ca::{build_csr, Certname, KeyType};

const CONFIG: &str = r#"
[ca]
key_type = "ec-p256"
[authz]
admins = ["ops"]
[environments.a]
admins = ["admin-a"]
allow_anonymous_csr = true
[environments.b]
[environments.production]
min_renewal_age = "0s"
"#;

/// Callers, in the order of the table's columns.
const CALLERS: [&str; 10] = [
    "anonymous",
    "agent of a",
    "agent of b",
    "admin of a",
    "global admin",
    "revoked agent of a",
    "expired cert",
    "foreign CA",
    "ops from a's CA",
    "pre-renewal, revoked",
];

/// 0 = refused at the TLS handshake. Each cell is (env a, env b).
#[rustfmt::skip]
const TABLE: &[(&str, [(u16, u16); 10])] = &[
    //                          anonymous   agent a     agent b     admin a     global      revoked  expired  foreign  ops by a    pre-renewal
    ("HEAD certificate/T",     [(200, 200), (200, 200), (200, 200), (200, 200), (200, 200), (0, 0), (0, 0), (0, 0), (200, 200), (0, 0)]),
    ("GET certificate/ca",     [(200, 200), (200, 200), (200, 200), (200, 200), (200, 200), (0, 0), (0, 0), (0, 0), (200, 200), (0, 0)]),
    ("GET crl",                [(200, 200), (200, 200), (200, 200), (200, 200), (200, 200), (0, 0), (0, 0), (0, 0), (200, 200), (0, 0)]),
    ("GET request/P",          [(200, 200), (200, 200), (200, 200), (200, 200), (200, 200), (0, 0), (0, 0), (0, 0), (200, 200), (0, 0)]),
    ("PUT request/NEW",        [(201, 403), (201, 403), (403, 201), (201, 403), (201, 201), (0, 0), (0, 0), (0, 0), (201, 403), (0, 0)]),
    ("DELETE request/P",       [(403, 403), (403, 403), (403, 403), (204, 403), (204, 204), (0, 0), (0, 0), (0, 0), (403, 403), (0, 0)]),
    ("GET status/SELF",        [(403, 403), (200, 403), (403, 200), (200, 403), (404, 404), (0, 0), (0, 0), (0, 0), (404, 403), (0, 0)]),
    ("GET status/T",           [(403, 403), (403, 403), (403, 403), (200, 403), (200, 200), (0, 0), (0, 0), (0, 0), (403, 403), (0, 0)]),
    ("PUT status/P signed",    [(403, 403), (403, 403), (403, 403), (204, 403), (204, 204), (0, 0), (0, 0), (0, 0), (403, 403), (0, 0)]),
    ("DELETE status/T",        [(403, 403), (403, 403), (403, 403), (204, 403), (204, 204), (0, 0), (0, 0), (0, 0), (403, 403), (0, 0)]),
    ("GET statuses/*",         [(403, 403), (403, 403), (403, 403), (200, 403), (200, 200), (0, 0), (0, 0), (0, 0), (403, 403), (0, 0)]),
    ("GET certificate/",       [(403, 403), (403, 403), (403, 403), (200, 403), (200, 200), (0, 0), (0, 0), (0, 0), (403, 403), (0, 0)]),
    ("POST certificate/ P",    [(403, 403), (403, 403), (403, 403), (201, 403), (201, 201), (0, 0), (0, 0), (0, 0), (403, 403), (0, 0)]),
    ("DELETE certificate/T",   [(403, 403), (403, 403), (403, 403), (204, 403), (204, 204), (0, 0), (0, 0), (0, 0), (403, 403), (0, 0)]),
];

struct World {
    api: Api,
    dir: tempfile::TempDir,
    n: std::cell::Cell<usize>,
}

impl World {
    fn fresh(&self, prefix: &str) -> String {
        self.n.set(self.n.get() + 1);
        format!("{prefix}{}", self.n.get())
    }

    /// A pending request in `env`, submitted by the global admin.
    fn pending(&self, env: &str) -> String {
        let name = self.fresh("p");
        let csr = build_csr(
            &KeyType::EcP256.generate().unwrap(),
            &Certname::parse(&name).unwrap(),
            &[],
        )
        .unwrap();
        let r = self
            .api
            .admin
            .put(self.api.url(&format!("/{env}/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        name
    }

    /// A signed certificate in `env`; with `ttl`, its validity in seconds. Returns the
    /// name and the paths of its certificate and key.
    fn signed(
        &self,
        env: &str,
        name: Option<&str>,
        ttl: Option<i64>,
    ) -> (String, PathBuf, PathBuf) {
        let name = name.map(str::to_owned).unwrap_or_else(|| self.fresh("t"));
        let key = KeyType::EcP256.generate().unwrap();
        let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
        let a = &self.api;
        assert_eq!(
            a.admin
                .put(a.url(&format!("/{env}/certificate_request/{name}")))
                .body(csr)
                .send()
                .unwrap()
                .status(),
            201
        );
        let body = match ttl {
            Some(t) => serde_json::json!({"certname": name, "ttl": t}).to_string(),
            None => serde_json::json!({"certname": name}).to_string(),
        };
        let r = a
            .admin
            .post(a.url(&format!("/{env}/certificate/")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let pem = a
            .anon
            .get(a.url(&format!("/{env}/certificate/{name}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, pem).unwrap();
        std::fs::write(&k, key.to_pem().unwrap()).unwrap();
        (name, c, k)
    }
}

/// Runs one cell: prepares its target with the global admin, then sends the request as
/// the caller. Returns the status, or 0 when the handshake was refused.
fn cell(
    w: &World,
    caller: &reqwest::blocking::Client,
    own: &str,
    endpoint: &str,
    env: &str,
) -> u16 {
    let a = &w.api;
    let url = |p: &str| a.url(&format!("/{env}/{p}"));
    let req = match endpoint {
        "HEAD certificate/T" => {
            caller.head(url(&format!("certificate/{}", w.signed(env, None, None).0)))
        }
        "GET certificate/ca" => caller.get(url("certificate/ca")),
        "GET crl" => caller.get(url("certificate_revocation_list/ca")),
        "GET request/P" => caller.get(url(&format!("certificate_request/{}", w.pending(env)))),
        "PUT request/NEW" => {
            let name = w.fresh("new");
            let csr = build_csr(
                &KeyType::EcP256.generate().unwrap(),
                &Certname::parse(&name).unwrap(),
                &[],
            )
            .unwrap();
            caller
                .put(url(&format!("certificate_request/{name}")))
                .body(csr)
        }
        "DELETE request/P" => {
            caller.delete(url(&format!("certificate_request/{}", w.pending(env))))
        }
        "GET status/SELF" => caller.get(url(&format!("certificate_status/{own}"))),
        "GET status/T" => caller.get(url(&format!(
            "certificate_status/{}",
            w.signed(env, None, None).0
        ))),
        "PUT status/P signed" => caller
            .put(url(&format!("certificate_status/{}", w.pending(env))))
            .body(r#"{"desired_state":"signed"}"#),
        "DELETE status/T" => caller.delete(url(&format!(
            "certificate_status/{}",
            w.signed(env, None, None).0
        ))),
        "GET statuses/*" => caller.get(url("certificate_statuses/*")),
        "GET certificate/" => caller.get(url("certificate/")),
        "POST certificate/ P" => caller.post(url("certificate/")).body(w.pending(env)),
        "DELETE certificate/T" => {
            caller.delete(url(&format!("certificate/{}", w.signed(env, None, None).0)))
        }
        other => panic!("no such endpoint in the table: {other}"),
    };
    match req.send() {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// A certificate for `name` signed with `env`'s CA key straight from the data directory;
/// returns the paths of the certificate and its key.
fn forge_with_env_ca(w: &World, env: &str, name: &str) -> (PathBuf, PathBuf) {
    let key = KeyType::EcP256.generate().unwrap();
    let csr = build_csr(&key, &Certname::parse(name).unwrap(), &[]).unwrap();
    let d = w.dir.path();
    let (cert, key_path) = (
        d.join(format!("{name}-forged.pem")),
        d.join(format!("{name}-forged.key")),
    );
    std::fs::write(&key_path, key.to_pem().unwrap()).unwrap();
    sign_with_env_ca(&w.api.server, env, &csr, &cert);
    (cert, key_path)
}

/// Issues `name` in production, renews it with its own certificate, then revokes the
/// node; returns the paths of the certificate from before the renewal and its key.
fn renewed_then_revoked(w: &World, name: &str) -> (PathBuf, PathBuf) {
    let (_, cert, key) = w.signed("production", Some(name), None);
    let agent = identity(&w.api.server, &cert, &key);
    let r = agent
        .post(w.api.url("/puppet-ca/v1/certificate_renewal"))
        .header("content-type", "text/plain")
        .body("")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = w
        .api
        .admin
        .delete(w.api.url(&format!("/production/certificate/{name}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    (cert, key)
}

fn identity(server: &Server, cert: &Path, key: &Path) -> reqwest::blocking::Client {
    client(server, Some((cert, key)))
}

#[test]
fn every_caller_on_every_endpoint_in_both_environments() {
    let (api, dir) = Api::start(CONFIG);
    let w = World {
        api,
        dir,
        n: std::cell::Cell::new(0),
    };
    let server = &w.api.server;
    let (_, ca, ka) = w.signed("a", Some("agent-a"), None);
    let (_, cb, kb) = w.signed("b", Some("agent-b"), None);
    let (_, cadm, kadm) = w.signed("a", Some("admin-a"), None);
    let (_, cr, kr) = w.signed("a", Some("revoked-a"), None);
    assert_eq!(
        w.api
            .admin
            .delete(w.api.url("/a/certificate/revoked-a"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let (_, ce, ke) = w.signed("a", Some("expired-a"), Some(1));
    // Another installation's admin certificate.
    let other = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(certd()
        .args(["setup", "--config"])
        .arg(&server.config)
        .arg("--data-dir")
        .arg(other.path()));
    assert!(ok, "{err}");
    let (global_cert, global_key) = admin(server);
    // A certificate for the global admin's name, signed by a's CA outside the API (as
    // a back end or an older certd might have).
    let (ops_cert, ops_key) = forge_with_env_ca(&w, "a", "ops");
    // A production agent that renewed, then was revoked: its pre-renewal certificate.
    let (pre_cert, pre_key) = renewed_then_revoked(&w, "renewed-p");
    std::thread::sleep(std::time::Duration::from_secs(2)); // expired-a expires
    let callers: [(reqwest::blocking::Client, &str); 10] = [
        (client(server, None), "nobody"),
        (identity(server, &ca, &ka), "agent-a"),
        (identity(server, &cb, &kb), "agent-b"),
        (identity(server, &cadm, &kadm), "admin-a"),
        (identity(server, &global_cert, &global_key), "certd-admin"),
        (identity(server, &cr, &kr), "revoked-a"),
        (identity(server, &ce, &ke), "expired-a"),
        (
            identity(
                server,
                &other.path().join("admin/admin.pem"),
                &other.path().join("admin/admin.key"),
            ),
            "certd-admin",
        ),
        (identity(server, &ops_cert, &ops_key), "ops"),
        (identity(server, &pre_cert, &pre_key), "renewed-p"),
    ];
    let mut wrong = Vec::new();
    let mut cells = 0;
    for (endpoint, row) in TABLE {
        for (i, (want_a, want_b)) in row.iter().enumerate() {
            for (env, want) in [("a", *want_a), ("b", *want_b)] {
                let got = cell(&w, &callers[i].0, callers[i].1, endpoint, env);
                cells += 1;
                if got != want {
                    wrong.push(format!(
                        "{:<22} {:<20} env {env}: got {got}, table says {want}",
                        endpoint, CALLERS[i]
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells differ from the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    eprintln!("{cells} cells (callers × endpoints × environments) as the table says");
}

/// One keep-alive TLS connection with a client certificate, for requests sent one after
/// another on it.
struct KeepAlive(openssl::ssl::SslStream<std::net::TcpStream>);

impl KeepAlive {
    fn open(server: &Server, cert: &Path, key: &Path) -> KeepAlive {
        use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_ca_file(server.chain()).unwrap();
        b.set_certificate_chain_file(cert).unwrap();
        b.set_private_key_file(key, SslFiletype::PEM).unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        KeepAlive(b.build().connect("localhost", tcp).unwrap())
    }

    /// Sends `GET path` and reads the answer; its status (0: the connection is gone).
    fn get(&mut self, path: &str) -> u16 {
        use std::io::Write;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        if self.0.write_all(req.as_bytes()).is_err() {
            return 0;
        }
        match read_answer(&mut self.0) {
            Some(text) => text.split_whitespace().nth(1).unwrap().parse().unwrap(),
            None => 0,
        }
    }
}

/// Finding 11: a certificate that expires while its keep-alive connection is open is
/// refused from then on, as a revoked one is (the handshake checked it only once).
#[test]
fn an_expired_certificate_on_an_open_connection_is_refused() {
    let (api, dir) = Api::start(CONFIG);
    let w = World {
        api,
        dir,
        n: std::cell::Cell::new(0),
    };
    let (name, cert, key) = w.signed("a", Some("short-lived"), Some(2));
    let mut conn = KeepAlive::open(&w.api.server, &cert, &key);
    let own = format!("/a/certificate_status/{name}");
    assert_eq!(conn.get(&own), 200, "valid: its own status");
    // Past notAfter (2 s), within the server's keep-alive (5 s).
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let status = conn.get(&own);
    assert!(
        status == 403 || status == 0,
        "expired on an open connection: got {status}"
    );
}
