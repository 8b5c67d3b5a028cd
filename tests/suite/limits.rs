//! Resource limits and hygiene: slow clients cannot hold the server, graceful shutdown
//! finishes what is in flight, and key material never reaches a log or a response.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use openssl::ssl::{SslConnector, SslMethod, SslStream};

fn tls(server: &Server) -> SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(server.chain()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    b.build().connect("localhost", tcp).unwrap()
}

/// Reads until the server closes; returns what arrived.
fn read_all<S: Read + Write>(s: &mut SslStream<S>) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_loris_clients_are_dropped_and_never_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[ca]\nkey_type = \"ec-p256\"\n[server]\nrequest_timeout = \"2s\"\n",
    );
    // Thirty clients that start a request and never finish its headers.
    let mut idle: Vec<SslStream<TcpStream>> = (0..30)
        .map(|_| {
            let mut s = tls(&server);
            s.write_all(b"GET /status HTTP/1.1\r\nHost: loc").unwrap();
            s
        })
        .collect();
    // One that trickles a byte every 300 ms, forever.
    let trickler = {
        let mut s = tls(&server);
        std::thread::spawn(move || {
            let started = Instant::now();
            for b in b"GET /status HTTP/1.1\r\nX-Slow: "
                .iter()
                .chain(std::iter::repeat(&b'a'))
            {
                if s.write_all(&[*b]).is_err() || started.elapsed() > Duration::from_secs(20) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            let answer = read_all(&mut s);
            (started.elapsed(), answer)
        })
    };
    // Meanwhile everyone else is served promptly.
    let c = client(&server, None);
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(c.get(server.url("/status")).send().unwrap().status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a normal request waited {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The stalled clients were dropped at the request timeout (408 or a close).
    for s in idle.iter_mut() {
        let answer = read_all(s);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer:?}"
        );
    }
    let (took, answer) = trickler.join().unwrap();
    assert!(
        took < Duration::from_secs(8),
        "the trickling client was held for {took:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[ca]\nkey_type = \"ec-p256\"\n[server]\nbody_timeout = \"2s\"\n",
    );
    let mut s = tls(&server);
    s.write_all(b"PUT /production/certificate_request/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n-----BEGIN").unwrap();
    let started = Instant::now();
    let answer = read_all(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body-timeout\""), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        client(&server, None)
            .head(server.url("/production/certificate_request/slow"))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn sigterm_finishes_in_flight_requests_and_keeps_their_results() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("slow-yes");
    std::fs::write(&policy, "#!/bin/sh\ncat >/dev/null\nsleep 2\nexit 0\n").unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "[ca]\nkey_type = \"ec-p256\"\n[environments.production]\nautosign = {:?}\n",
        policy.to_str().unwrap()
    );
    let server = Server::start(dir.path(), &config);
    let c = client(&server, None);
    let url = server.url("/production/certificate_request/inflight");
    let (csr, _) = csr_for("inflight");
    let request =
        std::thread::spawn(move || c.put(url).body(csr).send().map(|r| r.status().as_u16()));
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "graceful exit: {status}");
    assert_eq!(
        request
            .join()
            .unwrap()
            .expect("the in-flight request was answered"),
        201
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The autosigned certificate survived the shutdown.
    let server = Server::start_with(
        dir.path(),
        &["--config", dir.path().join("certd.toml").to_str().unwrap()],
    );
    assert_eq!(
        client(&server, None)
            .head(server.url("/production/certificate/inflight"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn key_material_never_appears_in_logs_or_responses() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("certd.toml"),
        "[ca]\nkey_type = \"ec-p256\"\n",
    )
    .unwrap();
    let server = Server::start_env(
        dir.path(),
        &["--config", dir.path().join("certd.toml").to_str().unwrap()],
        &[("RUST_LOG", "trace")],
    );
    let api = Api::of(server);
    // A full run over both faces, collecting every response body.
    let mut seen = String::new();
    let mut keep = |r: reqwest::blocking::Response| seen.push_str(&r.text().unwrap_or_default());
    let (csr, _) = csr_for("k1");
    keep(
        api.anon
            .put(api.url("/production/certificate_request/k1"))
            .body(csr)
            .send()
            .unwrap(),
    );
    keep(
        api.admin
            .post(api.url("/production/certificate/"))
            .body("k1")
            .send()
            .unwrap(),
    );
    for path in [
        "/status",
        "/production/certificate/k1",
        "/production/certificate/ca",
        "/production/certificate_status/k1",
        "/production/certificate_statuses/*",
        "/production/certificate_revocation_list/ca",
        "/puppet-ca/v1/certificate/ca",
        "/puppet-ca/v1/certificate_status/k1",
        "/puppet-ca/v1/expirations",
        "/puppet-ca/v1/certificate_revocation_list/ca",
        "/status/v1/services",
    ] {
        keep(api.admin.get(api.url(path)).send().unwrap());
    }
    keep(
        api.admin
            .delete(api.url("/production/certificate/k1"))
            .send()
            .unwrap(),
    );
    keep(
        api.anon
            .put(api.url("/production/certificate_request/Bad"))
            .body("junk")
            .send()
            .unwrap(),
    );
    let out = certd()
        .args([
            "ca",
            "--server",
            &format!("https://localhost:{}", api.server.port),
            "--data-dir",
        ])
        .arg(&api.server.dir)
        .args(["generate", "k2", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    seen.push_str(&String::from_utf8_lossy(&out.stdout));
    seen.push_str(&String::from_utf8_lossy(&out.stderr));
    let data = api.server.dir.clone();
    let (status, logs) = api.server.terminate_with_log();
    assert!(status.success());
    assert!(
        logs.contains("issued") && logs.contains("revoked") && logs.contains("TRACE"),
        "the log covers the run: {} bytes",
        logs.len()
    );
    let keys = [
        "ca/root.key",
        "ca/production/ca.key",
        "tls/server.key",
        "admin/admin.key",
    ];
    // What is secret in each key is its private scalar (EC) or exponent (RSA): looked
    // for as hex and as base64 at each of the three alignments a byte can have in a
    // base64 stream. (A PEM line of the key file is no needle: its last lines encode
    // the public key, which the CA's served chain also holds, and matched it there when
    // the certificate's layout put the key at the same alignment.)
    let mut secrets: Vec<(String, String)> = Vec::new();
    for k in keys
        .iter()
        .map(|k| data.join(k))
        .chain([dir.path().join("k2.key")])
    {
        let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(&k).unwrap()).unwrap();
        let private = match key.id() {
            openssl::pkey::Id::EC => key.ec_key().unwrap().private_key().to_vec(),
            openssl::pkey::Id::RSA => key.rsa().unwrap().d().to_vec(),
            other => panic!("{}: a key of type {other:?}", k.display()),
        };
        let what = k.display().to_string();
        let hex: String = private[..12].iter().map(|b| format!("{b:02x}")).collect();
        secrets.push((what.clone(), hex.to_uppercase()));
        secrets.push((what.clone(), hex));
        for pad in 0..3 {
            let mut bytes = vec![0u8; pad];
            bytes.extend_from_slice(&private);
            let b64 = openssl::base64::encode_block(&bytes);
            // Two windows, so that a line break in one leaves the other whole.
            secrets.push((what.clone(), b64[4..20].to_owned()));
            secrets.push((what.clone(), b64[24..40].to_owned()));
        }
    }
    assert_eq!(secrets.len(), 40);
    assert!(
        !seen.contains("PRIVATE KEY"),
        "a private key in a response or CLI output"
    );
    assert!(
        !logs.contains("PRIVATE KEY"),
        "a private key in the server log"
    );
    for (what, s) in &secrets {
        assert!(
            !seen.contains(s.as_str()),
            "key material of {what} in a response or CLI output: {s}"
        );
        assert!(
            !logs.contains(s.as_str()),
            "key material of {what} in the server log: {s}"
        );
    }
}

/// A TCP stream that holds what is written until `flush`, so that several TLS records
/// leave in one write.
#[derive(Debug)]
struct Held {
    tcp: TcpStream,
    out: Vec<u8>,
}

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Held {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.write_all(&self.out)?;
        self.out.clear();
        self.tcp.flush()
    }
}

#[test]
fn pipelined_requests_arriving_together_are_all_answered() {
    // The server reads ahead (one `recv` takes every TLS record that has arrived); none
    // of the requests in those records may be left waiting for more bytes.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "[ca]\nkey_type = \"ec-p256\"\n");
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(server.chain()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let held = Held {
        tcp,
        out: Vec::new(),
    };
    let mut s = b.build().connect("localhost", held).unwrap();
    s.get_mut().flush().unwrap();
    let get = |close: bool| {
        format!(
            "GET /production/certificate/ca HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        )
    };
    // Three requests in one TLS record, then three in a record each, in one TCP write.
    s.write_all(format!("{}{}{}", get(false), get(false), get(false)).as_bytes())
        .unwrap();
    s.write_all(get(false).as_bytes()).unwrap();
    s.write_all(get(false).as_bytes()).unwrap();
    s.write_all(get(true).as_bytes()).unwrap();
    s.flush().unwrap();
    let answer = read_all(&mut s);
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 6, "{answer}");
    let chain = std::fs::read_to_string(server.chain()).unwrap();
    let per_answer = chain.matches("-----END CERTIFICATE-----").count();
    assert_eq!(
        answer.matches("-----END CERTIFICATE-----").count(),
        6 * per_answer
    );
}

/// Issue 24, finding 3: an autosign program's time limit covers its process group and
/// its pipes: a child left holding its stdout (`cmd &`, or one escaped with `setsid`)
/// costs nothing past the limit; and policy runs are bounded, so slow ones answer 503
/// beyond the bound instead of starving submissions elsewhere.
#[test]
fn autosign_programs_are_bounded_with_their_children_and_in_number() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let forks = script("forks", "cat >/dev/null\nsleep 30 &\nexit 0");
    let escapes = script("escapes", "cat >/dev/null\nsetsid sleep 30 &\nexit 0");
    let slow = script("slow", "cat >/dev/null\nsleep 3\nexit 1");
    let config = format!(
        "[ca]\nkey_type = \"ec-p256\"\n[limits]\nmax_policy_runs = 2\n\
         [environments.production]\nautosign = \"{}\"\nautosign_timeout = \"2s\"\n\
         [environments.esc]\nautosign = \"{}\"\nautosign_timeout = \"2s\"\nallow_anonymous_csr = true\n\
         [environments.slow]\nautosign = \"{}\"\nautosign_timeout = \"10s\"\nallow_anonymous_csr = true\n\
         [environments.plain]\nallow_anonymous_csr = true\n",
        forks.display(),
        escapes.display(),
        slow.display()
    );
    let server = Server::start(dir.path(), &config);
    let anon = client(&server, None);
    let put = |env: &str, name: &str| {
        let (csr, _) = csr_for(name);
        let started = Instant::now();
        let status = anon
            .put(server.url(&format!("/{env}/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap()
            .status()
            .as_u16();
        (status, started.elapsed())
    };
    for (env, name) in [("production", "forked"), ("esc", "escaped")] {
        let (status, took) = put(env, name);
        assert_eq!(status, 201, "{env}");
        assert!(
            took < Duration::from_secs(5),
            "{env}: a child holding the policy's stdout held the submission {took:?}"
        );
    }
    // Four slow policy runs at once against a bound of two: two are refused at once
    // (503), and a submission elsewhere is not held up.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (csr, _) = csr_for(&format!("slow{i}"));
            let url = server.url(&format!("/slow/certificate_request/slow{i}"));
            let anon = anon.clone();
            std::thread::spawn(move || anon.put(url).body(csr).send().unwrap().status().as_u16())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, took) = put("plain", "elsewhere");
    assert_eq!(status, 201);
    assert!(took < Duration::from_secs(2), "held up {took:?}");
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 2, "{codes:?}");
}

/// DoS review: anyone may submit a CSR for a new name (production's default, as
/// Puppet's), and each waited as a request for good, as did each refused CSR kept to
/// show the admin why: an anonymous loop filled the disk. An environment now holds at
/// most `[limits] max_requests` requests (pending, refused or failed); a submission that
/// would add one more is 503 `requests-full` on either face and stores nothing, a
/// refused CSR past it is refused without being kept. Names already requested, and
/// certificates signed at once, are not held back; an admin makes room.
#[test]
fn an_environment_holds_a_bounded_number_of_requests() {
    let (api, _dir) = Api::start(&format!(
        "{FAST_CONFIG}[limits]\nmax_requests = 3\n[environments.production]\nautosign = [\"*.auto.example\"]\n"
    ));
    let mut csrs = Vec::new();
    for name in ["full-a", "full-b", "full-c"] {
        let (csr, _) = csr_for(name);
        assert_eq!(api.submit(name, &csr), 201, "{name}");
        csrs.push(csr);
    }
    let (csr_d, _) = csr_for("full-d");
    let resp = api
        .anon
        .put(api.url("/production/certificate_request/full-d"))
        .body(csr_d.clone())
        .send()
        .unwrap();
    assert_eq!(problem_code(resp), (503, "requests-full".to_owned()));
    let get = |name: &str| {
        api.admin
            .get(api.url(&format!("/production/certificate_request/{name}")))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get("full-d"), 404, "nothing stored");
    // The Puppet face.
    let (csr_p, _) = csr_for("full-p");
    let resp = api
        .anon
        .put(api.url("/puppet-ca/v1/certificate_request/full-p?environment=production"))
        .header("Content-Type", "text/plain")
        .body(csr_p)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(get("full-p"), 404, "nothing stored");
    // A refused CSR is refused, and not kept.
    let (refused, _) = csr_with(
        "full-e",
        &["-addext", "subjectAltName=DNS:elsewhere.example"],
    );
    assert_eq!(api.submit("full-e", &refused), 400);
    assert_eq!(get("full-e"), 404, "a refused CSR past the limit was kept");
    // A name already requested is sent again; names the policy signs are signed.
    assert_eq!(api.submit("full-a", &csrs[0]), 200);
    for i in 0..5 {
        let name = format!("n{i}.auto.example");
        let (csr, _) = csr_for(&name);
        let resp = api
            .anon
            .put(api.url(&format!("/production/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(status, 201, "{name}: {}", resp.text().unwrap());
    }
    // A name with a certificate is refused as ever, not as full (review).
    let (again, _) = csr_for("n0.auto.example");
    let resp = api
        .anon
        .put(api.url("/production/certificate_request/n0.auto.example"))
        .body(again)
        .send()
        .unwrap();
    assert_eq!(problem_code(resp).0, 409, "a signed name sent again");
    // An admin makes room: a rejected request is still held, a cleaned one is not.
    let rejected = api
        .admin
        .delete(api.url("/production/certificate_request/full-b"))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(rejected, 204);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(api.submit("full-d", &csr_d), 503);
    let deleted = api
        .admin
        .delete(api.url("/production/certificate_status/full-b"))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(deleted, 204);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(api.submit("full-d", &csr_d), 201);
}

/// Review of the bound on requests: a submission the policy signs at once whose signing
/// fails (no issuer serves the name, every signing slot taken) is stored unsigned as a
/// request; that path is bounded too.
#[test]
fn requests_stored_when_signing_fails_are_bounded_too() {
    let (api, _dir) = Api::start(&format!(
        "{FAST_CONFIG}[limits]\nmax_requests = 2\n[environments.production]\nautosign = true\n\
         issuer = {{ type = \"local\", certnames = [\"*.web.example\"] }}\n"
    ));
    let submit = |name: &str| {
        let (csr, _) = csr_for(name);
        problem_code(
            api.anon
                .put(api.url(&format!("/production/certificate_request/{name}")))
                .body(csr)
                .send()
                .unwrap(),
        )
    };
    for name in ["unserved-1", "unserved-2"] {
        assert_eq!(submit(name), (409, "no-issuer".to_owned()), "{name}");
    }
    assert_eq!(submit("unserved-3"), (503, "requests-full".to_owned()));
    let held = api
        .admin
        .get(api.url("/production/certificate_request/unserved-3"))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(held, 404, "stored past the bound");
}
