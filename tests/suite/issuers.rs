//! Issuer back ends and asynchronous orders: a downstream certd whose
//! environment `ra` is served by an upstream certd through the `puppet-ca` back end (the
//! upstream signs when its admin says so); crash and restart while an order waits; the
//! upstream down (backoff, readiness, error after the budget); cancel and modify reaching
//! the upstream; the event log and webhooks; a real `cfssl serve`; an external command.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// A certd with clients for it.
struct Node {
    api: Api,
    dir: PathBuf,
}

fn node(dir: &Path, config: &str) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    let server = Server::start(dir, config);
    let (cert, key) = admin(&server);
    Node {
        api: Api {
            admin: client(&server, Some((&cert, &key))),
            anon: client(&server, None),
            server,
        },
        dir: dir.to_owned(),
    }
}

impl Node {
    fn restart(self, config: &str) -> Node {
        let Node { api, dir } = self;
        drop(api);
        node(&dir, config)
    }

    fn status(&self, env: &str, name: &str) -> Value {
        self.api
            .admin
            .get(self.api.url(&format!("/{env}/certificate_status/{name}")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn submit(&self, env: &str, name: &str, csr: &[u8]) {
        let r = self
            .api
            .admin
            .put(self.api.url(&format!("/{env}/certificate_request/{name}")))
            .body(csr.to_vec())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "submit {name}: {}", r.status());
    }

    fn sign(&self, env: &str, name: &str) -> u16 {
        self.api
            .admin
            .post(self.api.url(&format!("/{env}/certificate/")))
            .body(name.to_owned())
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    fn events(&self, env: &str) -> Vec<Value> {
        self.api
            .admin
            .get(self.api.url(&format!("/{env}/events")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn head(&self, path: &str) -> u16 {
        self.api.head(path)
    }
}

/// Polls `f` every 100 ms until it is true or `limit` passes.
fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The downstream's config: environment `ra` served by the upstream's Puppet face.
fn downstream_config(up: &Node, extra_issuer: &str, events: &str) -> String {
    let (cert, key) = admin(&up.api.server);
    format!(
        r#"{FAST_CONFIG}
{events}
[environments.ra.issuer]
type = "puppet-ca"
url = "https://localhost:{port}"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
poll_interval = "1s"
{extra_issuer}
"#,
        port = up.api.server.port,
        ca = up.api.server.chain().display(),
        cert = cert.display(),
        key = key.display(),
    )
}

fn kinds_for(events: &[Value], name: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["certname"] == name)
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn verify(cert_pem: &[u8], ca_file: &Path) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    std::fs::write(&cert, cert_pem).unwrap();
    let (ok, _, _) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca_file)
        .arg(&cert));
    ok
}

#[test]
fn puppet_ca_upstream_signs_later_and_a_killed_downstream_finishes_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let up = node(&dir.path().join("up"), FAST_CONFIG);
    let (hook, received) = webhook_receiver();
    // A webhook that accepts connections and never answers.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let events = format!(
        "[events]\nwebhooks = [\"http://{}/never\", \"{hook}\"]\nwebhook_timeout = \"5s\"\n",
        dead.local_addr().unwrap()
    );
    let config = downstream_config(&up, "", &events);
    let down = node(&dir.path().join("down"), &config);

    let (csr, _key) = csr_for("node1");
    down.submit("ra", "node1", &csr);
    let started = Instant::now();
    assert_eq!(
        down.sign("ra", "node1"),
        202,
        "the upstream has autosign off"
    );
    let approve_took = started.elapsed();
    let s = down.status("ra", "node1");
    assert_eq!(s["state"], "requested");
    assert_eq!(s["sub_status"], "waiting_for_ca", "{s}");
    assert_eq!(s["order"]["issuer"], "puppet-ca");
    // The upstream holds exactly this CSR, pending.
    let pending = up
        .api
        .anon
        .get(up.api.url("/production/certificate_request/node1"))
        .send()
        .unwrap();
    assert_eq!(pending.status(), 200);
    assert_eq!(
        openssl::x509::X509Req::from_pem(&pending.bytes().unwrap())
            .unwrap()
            .to_der()
            .unwrap(),
        openssl::x509::X509Req::from_pem(&csr)
            .unwrap()
            .to_der()
            .unwrap()
    );
    // Issuance on a local environment is not held up by the dead webhook either.
    let t = Instant::now();
    api_issue(&down.api, "local1");
    let local_took = t.elapsed();

    // The webhook has the first two transitions (it follows the log while certd runs;
    // after a crash, GET /{env}/events has what it missed).
    assert!(
        until(Duration::from_secs(5), || {
            kinds_for(&received.lock().unwrap(), "node1").len() == 2
        }),
        "webhook got {:?}",
        received.lock().unwrap()
    );

    // SIGKILL the downstream while it waits; the upstream admin signs meanwhile.
    let mut down = down;
    down.api.server.child.kill().unwrap();
    down.api.server.child.wait().unwrap();
    assert_eq!(up.sign("production", "node1"), 201);
    let down = down.restart(&config);
    assert!(
        until(Duration::from_secs(5), || down
            .head("/ra/certificate/node1")
            == 200),
        "the order completes after the restart, within a poll: {}",
        down.status("ra", "node1")
    );
    let pem = down
        .api
        .anon
        .get(down.api.url("/ra/certificate/node1"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(
        verify(&pem, &up.api.server.chain()),
        "verifies against the upstream chain"
    );
    let own_chain = down.api.server.dir.join("ca/ra/chain.pem");
    assert!(
        !verify(&pem, &own_chain),
        "and not against the downstream's own CA"
    );
    let upstream_pem = up
        .api
        .anon
        .get(up.api.url("/production/certificate/node1"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(
        pem, upstream_pem,
        "the upstream's certificate, byte for byte"
    );

    // Nothing issued twice: one issuance upstream, one downstream.
    assert_eq!(
        kinds_for(&up.events("production"), "node1"),
        ["requested", "issued"]
    );
    let down_events = down.events("ra");
    assert_eq!(
        kinds_for(&down_events, "node1"),
        ["requested", "approved", "issued"],
        "{down_events:?}"
    );
    let ids: Vec<u64> = down_events
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");

    // The webhook saw every transition, in order, across the restart.
    assert!(
        until(Duration::from_secs(5), || {
            kinds_for(&received.lock().unwrap(), "node1").len() == 3
        }),
        "webhook got {:?}",
        received.lock().unwrap()
    );
    assert_eq!(
        kinds_for(&received.lock().unwrap(), "node1"),
        ["requested", "approved", "issued"]
    );
    // A webhook that never answers (5 s timeout, 3 attempts per event) held nothing up.
    assert!(
        approve_took < Duration::from_secs(3) && local_took < Duration::from_secs(3),
        "approval {approve_took:?}, local issuance {local_took:?}"
    );
    drop(dead);
}

/// Submits and signs `name` in `production` as the admin (the local CA).
fn api_issue(api: &Api, name: &str) {
    let (csr, _) = csr_for(name);
    assert_eq!(
        api.admin
            .put(api.url(&format!("/production/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap()
            .status(),
        201
    );
    assert_eq!(api.sign(name), 201);
}

#[test]
fn an_unreachable_upstream_backs_off_then_errors_after_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let up = node(&dir.path().join("up"), FAST_CONFIG);
    let config = downstream_config(&up, "retry_budget = \"10s\"\nmax_backoff = \"4s\"", "");
    let down = node(&dir.path().join("down"), &config);
    let (csr, _) = csr_for("node2");
    down.submit("ra", "node2", &csr);
    assert_eq!(down.sign("ra", "node2"), 202);
    let ready = |n: &Node| -> Value {
        let s: Value = n
            .api
            .admin
            .get(n.api.url("/status"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        s["issuers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["environment"] == "ra")
            .cloned()
            .unwrap()
    };
    assert!(until(Duration::from_secs(5), || ready(&down)["ready"] == true));
    assert!(up.api.server.terminate().success());

    // Watch the order: when each call happened, and what it said.
    let mut seen: Vec<(Duration, u64, String)> = Vec::new();
    let t0 = Instant::now();
    let mut not_ready_seen = false;
    let mut final_status = Value::Null;
    while t0.elapsed() < Duration::from_secs(30) {
        let s = down.status("ra", "node2");
        if s["state"] == "error" {
            final_status = s;
            break;
        }
        let attempts = s["order"]["attempts"].as_u64().unwrap();
        let sub = s["sub_status"].as_str().unwrap().to_owned();
        if seen.last().is_none_or(|l| l.1 != attempts) {
            seen.push((t0.elapsed(), attempts, sub));
        }
        if !not_ready_seen && ready(&down)["ready"] == false {
            not_ready_seen = true;
            assert!(ready(&down)["message"].as_str().is_some());
            // Approved while the issuer is not ready: it waits, without failing.
            let (csr, _) = csr_for("node3");
            down.submit("ra", "node3", &csr);
            assert_eq!(down.sign("ra", "node3"), 202);
            assert_eq!(down.status("ra", "node3")["sub_status"], "issuer_not_ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        final_status["state"], "error",
        "error after the budget: {seen:?}"
    );
    let why = final_status["error_message"].as_str().unwrap();
    assert!(
        why.contains("retry budget 10s") && why.contains("ca_unavailable"),
        "{why}"
    );
    assert!(
        not_ready_seen,
        "/status showed the issuer not ready meanwhile"
    );
    let unavailable: Vec<&(Duration, u64, String)> =
        seen.iter().filter(|s| s.2 == "ca_unavailable").collect();
    assert!(unavailable.len() >= 3, "{seen:?}");
    // Gaps between calls grow (1 s, 2 s, 4 s nominal, 80-100% jitter, capped at 4 s).
    let gaps: Vec<f64> = unavailable
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64())
        .collect();
    // After the first failure 1 s, then 2 s, then 4 s (each 80-100% of it).
    assert!(gaps[0] >= 0.7 && gaps[0] <= 1.5, "first gap ~1 s: {gaps:?}");
    if gaps.len() > 1 {
        assert!(
            gaps[1] >= 1.5 && gaps[1] <= 2.5,
            "second gap ~2 s: {gaps:?}"
        );
    }
    assert!(gaps.iter().all(|g| *g <= 4.6), "capped at 4 s: {gaps:?}");
    assert!(
        gaps.windows(2).all(|w| w[1] >= w[0] * 0.75),
        "non-decreasing within jitter: {gaps:?}"
    );
    let kinds = kinds_for(&down.events("ra"), "node2");
    assert_eq!(
        kinds,
        ["requested", "approved", "order_updated", "error"],
        "waiting → ca_unavailable → error"
    );
    assert_eq!(down.head("/ra/certificate_request/node2"), 410);
    // node3 was never handed over, so it spent no budget: still waiting for readiness.
    let s = down.status("ra", "node3");
    assert_eq!(
        (s["state"].as_str(), s["sub_status"].as_str()),
        (Some("requested"), Some("issuer_not_ready")),
        "{s}"
    );
    assert_eq!(s["order"]["attempts"], 0);
}

#[test]
fn cancel_and_modify_reach_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let up = node(&dir.path().join("up"), FAST_CONFIG);
    let config = downstream_config(&up, "", "");
    let down = node(&dir.path().join("down"), &config);
    let upstream_csr = |name: &str| -> Option<Vec<u8>> {
        let r = up
            .api
            .anon
            .get(
                up.api
                    .url(&format!("/production/certificate_request/{name}")),
            )
            .send()
            .unwrap();
        (r.status() == 200).then(|| {
            openssl::x509::X509Req::from_pem(&r.bytes().unwrap())
                .unwrap()
                .to_der()
                .unwrap()
        })
    };
    let der = |pem: &[u8]| {
        openssl::x509::X509Req::from_pem(pem)
            .unwrap()
            .to_der()
            .unwrap()
    };

    // Cancel: the downstream's DELETE withdraws the request upstream.
    let (csr, _) = csr_for("gone");
    down.submit("ra", "gone", &csr);
    assert_eq!(down.sign("ra", "gone"), 202);
    assert_eq!(upstream_csr("gone"), Some(der(&csr)));
    let r = down
        .api
        .admin
        .delete(down.api.url("/ra/certificate_request/gone"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(upstream_csr("gone"), None, "deleted upstream");

    // Modify: a new CSR while the order waits replaces the upstream's.
    let (first, _) = csr_for("moved");
    down.submit("ra", "moved", &first);
    assert_eq!(down.sign("ra", "moved"), 202);
    assert_eq!(upstream_csr("moved"), Some(der(&first)));
    let (second, second_key) = csr_for("moved");
    down.submit("ra", "moved", &second);
    assert!(
        until(Duration::from_secs(5), || upstream_csr("moved")
            == Some(der(&second))),
        "the upstream holds the new CSR"
    );
    assert_eq!(down.status("ra", "moved")["state"], "requested");
    assert_eq!(up.sign("production", "moved"), 201);
    assert!(until(Duration::from_secs(5), || down
        .head("/ra/certificate/moved")
        == 200));
    let pem = down
        .api
        .anon
        .get(down.api.url("/ra/certificate/moved"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let cert_key = openssl::x509::X509::from_pem(&pem)
        .unwrap()
        .public_key()
        .unwrap()
        .public_key_to_der()
        .unwrap();
    let new_key = openssl::pkey::PKey::private_key_from_pem(&second_key)
        .unwrap()
        .public_key_to_der()
        .unwrap();
    assert_eq!(cert_key, new_key, "issued for the modified CSR");
    assert_eq!(
        kinds_for(&down.events("ra"), "moved"),
        ["requested", "approved", "replaced", "issued"]
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn cfssl_serve_signs_with_and_without_an_auth_key() {
    if Command::new("cfssl").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CERTD_REQUIRE_EXTERNAL").is_none(),
            "cfssl is required (apt-get install golang-cfssl)"
        );
        eprintln!("cfssl not installed; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_key) = make_ca(dir.path(), "cfssl test CA");
    let key_hex = "00112233445566778899aabbccddeeff";
    let cfg = dir.path().join("cfssl.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "signing": {
                "default": {"expiry": "720h", "usages": ["digital signature", "client auth", "server auth"]},
                "profiles": {"authed": {"expiry": "720h", "usages": ["digital signature", "client auth"], "auth_key": "k1"}}
            },
            "auth_keys": {"k1": {"type": "standard", "key": key_hex}}
        })
        .to_string(),
    )
    .unwrap();
    let port = free_port();
    let mut cfssl = Command::new("cfssl")
        .args([
            "serve",
            "-address",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-ca",
        ])
        .arg(&ca)
        .arg("-ca-key")
        .arg(&ca_key)
        .arg("-config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let config = format!(
        r#"{FAST_CONFIG}
[environments.cf.issuer]
type = "cfssl"
url = "http://127.0.0.1:{port}"
ca_file = "{ca_file}"

[environments.cfa.issuer]
type = "cfssl"
url = "http://127.0.0.1:{port}"
ca_file = "{ca_file}"
profile = "authed"
auth_key = "{key_hex}"

[environments.cfbad.issuer]
type = "cfssl"
url = "http://127.0.0.1:{port}"
ca_file = "{ca_file}"
profile = "authed"
auth_key = "ffffffffffffffffffffffffffffffff"
"#,
        ca_file = ca.display()
    );
    let down = node(&dir.path().join("down"), &config);
    for env in ["cf", "cfa"] {
        let name = format!("{env}-node");
        let (csr, _) = csr_for(&name);
        down.submit(env, &name, &csr);
        assert_eq!(
            down.sign(env, &name),
            201,
            "{env}: {}",
            down.status(env, &name)
        );
        let pem = down
            .api
            .anon
            .get(down.api.url(&format!("/{env}/certificate/{name}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert!(verify(&pem, &ca), "{env}: verifies against cfssl's CA");
        let (_, text, _) = run(Command::new("sh").arg("-c").arg(format!(
            "echo '{}' | openssl x509 -noout -subject -ext subjectAltName",
            String::from_utf8_lossy(&pem)
        )));
        assert!(text.contains(&name), "{text}");
    }
    // A wrong auth key: cfssl refuses, and the request ends in error (409 now, 410 after).
    let (csr, _) = csr_for("refused");
    down.submit("cfbad", "refused", &csr);
    assert_eq!(down.sign("cfbad", "refused"), 409);
    assert_eq!(down.status("cfbad", "refused")["state"], "error");
    let _ = cfssl.kill();
    let _ = cfssl.wait();
}

#[test]
fn a_command_issuer_that_asks_to_be_called_again() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_key) = make_ca(dir.path(), "command test CA");
    let script = dir.path().join("sign.sh");
    let calls = dir.path().join("calls");
    write_program(
        &script,
        &format!(
            "#!/bin/sh\nset -e\ncat > {d}/req.pem\necho \"$CERTD_ACTION $CERTD_CERTNAME\" >> {calls}\n\
             if [ $(wc -l < {calls}) -lt 2 ]; then echo 'queued for review' >&2; exit 75; fi\n\
             openssl x509 -req -in {d}/req.pem -CA {ca} -CAkey {key} -CAcreateserial -days 1 2>/dev/null\n",
            d = dir.path().display(),
            calls = calls.display(),
            ca = ca.display(),
            key = ca_key.display(),
        ),
    );
    let config = format!(
        "{FAST_CONFIG}\n[environments.cmd.issuer]\ntype = \"command\"\nprogram = \"{}\"\nca_file = \"{}\"\ntimeout = \"10s\"\n",
        script.display(),
        ca.display()
    );
    let down = node(&dir.path().join("down"), &config);
    let (csr, _) = csr_for("cmd-node");
    down.submit("cmd", "cmd-node", &csr);
    assert_eq!(down.sign("cmd", "cmd-node"), 202);
    let s = down.status("cmd", "cmd-node");
    assert_eq!(s["sub_status"], "waiting_for_ca");
    assert_eq!(s["sub_status_message"], "queued for review");
    assert!(until(Duration::from_secs(10), || down
        .head("/cmd/certificate/cmd-node")
        == 200));
    let pem = down
        .api
        .anon
        .get(down.api.url("/cmd/certificate/cmd-node"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(verify(&pem, &ca));
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "issue cmd-node\ncheck cmd-node\n"
    );
}

/// A node whose environment `cmd` is served by a [`GatedSigner`], and `name`'s CSR
/// submitted and signed there: the issuer's first call has begun, and waits at the gate.
fn order_at_the_gate(dir: &Path, name: &str, csr: &[u8]) -> (GatedSigner, Node) {
    let gate = GatedSigner::new(dir);
    let node = node(
        &dir.join("node"),
        &format!("{FAST_CONFIG}\n{}", gate.issuer_toml("cmd")),
    );
    node.submit("cmd", name, csr);
    assert_eq!(node.sign("cmd", name), 202);
    assert!(
        until(Duration::from_secs(10), || gate.calls.exists()),
        "the issuer was never called"
    );
    (gate, node)
}

/// An order's result is stored only for the request it was leased with. Here the
/// issuer is still working when an admin rejects the request and the agent sends the
/// same CSR again (a new request, not approved by anyone): what the issuer then
/// returns is dropped, not issued for the new request.
#[test]
fn an_order_result_is_not_stored_for_a_request_that_replaced_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (csr, _) = csr_for("replayed");
    let (gate, node) = order_at_the_gate(dir.path(), "replayed", &csr);
    let r = node
        .api
        .admin
        .delete(node.api.url("/cmd/certificate_request/replayed"))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "reject: {}", r.status());
    node.submit("cmd", "replayed", &csr);
    assert_eq!(node.status("cmd", "replayed")["state"], "requested");
    gate.open();
    assert!(
        until(Duration::from_secs(10), || gate.done.exists()),
        "the issuer never answered"
    );
    // Stored, it would be served within a pass of the order worker.
    assert!(
        !until(Duration::from_secs(3), || node
            .head("/cmd/certificate/replayed")
            == 200),
        "a certificate was stored for a request nobody approved"
    );
    let s = node.status("cmd", "replayed");
    assert_eq!(s["state"], "requested", "{s}");
    assert_eq!(std::fs::read_to_string(&gate.calls).unwrap(), "issue\n");
}

/// The pending CSR sent again as it is (it is public: whoever may submit for the name
/// can send it back, as often as they like) while the issuer works: nothing changes,
/// and the issuer's answer is stored.
#[test]
fn a_pending_csr_sent_again_leaves_its_order_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (csr, _) = csr_for("again");
    let (gate, node) = order_at_the_gate(dir.path(), "again", &csr);
    for _ in 0..3 {
        node.submit("cmd", "again", &csr);
    }
    gate.open();
    assert!(
        until(Duration::from_secs(10), || node
            .head("/cmd/certificate/again")
            == 200),
        "the order never completed"
    );
    assert_eq!(std::fs::read_to_string(&gate.calls).unwrap(), "issue\n");
}

/// A new CSR sent while the issuer works on the order (here: its first call, held
/// until the test lets it go) keeps the order in that worker's hands until the call is
/// over; the worker then gives it back with what the issuer was told, so the next call
/// modifies that order (not a second `issue`), and the certificate is for the new key.
#[test]
fn a_csr_replaced_mid_call_modifies_the_order_the_issuer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = csr_for("moved");
    let (gate, node) = order_at_the_gate(dir.path(), "moved", &first);
    let (second, second_key) = csr_for("moved");
    node.submit("cmd", "moved", &second);
    gate.open();
    assert!(
        until(Duration::from_secs(15), || node
            .head("/cmd/certificate/moved")
            == 200),
        "the order never completed"
    );
    assert_eq!(
        std::fs::read_to_string(&gate.calls).unwrap(),
        "issue\nmodify\n",
        "the issuer's order was not modified"
    );
    let pem = node
        .api
        .anon
        .get(node.api.url("/cmd/certificate/moved"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_certifies_key(&pem, &second_key);
    let issued = node
        .events("cmd")
        .iter()
        .filter(|e| e["certname"] == "moved" && e["kind"] == "issued")
        .count();
    assert_eq!(issued, 1);
}

/// An order carries out the approval of the CSR it was started for. Whoever holds the
/// key may replace a pending CSR, and a replacement joins the order under way; but one
/// that would hold authority (here an extension value a rule grants rights by) was
/// approved by nobody: it is refused (409 `order-under-way`), and the order ends with a
/// certificate for the CSR approved.
#[test]
fn a_csr_that_would_hold_authority_does_not_join_an_order_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let gate = GatedSigner::new(dir.path());
    let home = dir.path().join("node");
    std::fs::create_dir_all(&home).unwrap();
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/auth.toml"))
            .unwrap();
    std::fs::write(
        home.join("site-auth.toml"),
        format!(
            "[[rule]]\nname = \"deployers list\"\nregex = \"^/[^/]+/certificate_statuses/\"\n\
             methods = [\"GET\"]\nallow = [\"extension:pp_role=deployer\", \"admins\"]\n\n{shipped}"
        ),
    )
    .unwrap();
    let node = node(
        &home,
        &format!(
            "{FAST_CONFIG}\n[authz]\nrules = \"site-auth.toml\"\n\
             [environments.cmd]\nallow_anonymous_csr = true\n{}",
            gate.issuer_toml("cmd")
        ),
    );
    // Two CSRs of one key: the second asks for pp_role=deployer.
    let key = dir.path().join("web1.key");
    let csr_of = |extra: &[&str]| -> Vec<u8> {
        let out = dir.path().join("web1.csr");
        let (ok, _, err) = run(std::process::Command::new("openssl")
            .args(["req", "-new", "-subj", "/CN=web1", "-key"])
            .arg(&key)
            .arg("-out")
            .arg(&out)
            .args(extra));
        assert!(ok, "{err}");
        std::fs::read(&out).unwrap()
    };
    let (ok, _, err) = run(std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key));
    assert!(ok, "{err}");
    let approved = csr_of(&[]);
    let deployer = csr_of(&[
        "-addext",
        "1.3.6.1.4.1.34380.1.1.13=ASN1:UTF8String:deployer",
    ]);
    let put = |csr: &[u8]| {
        node.api
            .anon
            .put(node.api.url("/cmd/certificate_request/web1"))
            .body(csr.to_vec())
            .send()
            .unwrap()
    };
    assert_eq!(put(&approved).status(), 201);
    assert_eq!(node.sign("cmd", "web1"), 202);
    assert!(
        until(Duration::from_secs(10), || gate.calls.exists()),
        "the issuer was never called"
    );
    let r = put(&deployer);
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    assert_eq!(
        status, 409,
        "a CSR holding authority joined the order: {body}"
    );
    assert!(body.contains("order-under-way"), "{body}");
    gate.open();
    assert!(
        until(Duration::from_secs(15), || node
            .head("/cmd/certificate/web1")
            == 200),
        "the order never completed"
    );
    let pem = node
        .api
        .anon
        .get(node.api.url("/cmd/certificate/web1"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!pem.is_empty());
    let text = {
        let f = dir.path().join("web1.pem");
        std::fs::write(&f, &pem).unwrap();
        run(std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&f))
        .1
    };
    assert!(!text.contains("deployer"), "{text}");
}

/// What a remote back end returns is checked against the environment's policy whoever
/// signed it: the back end's CA bundle (`ca_file`), CA:FALSE, a validity that covers now
/// and is no longer than asked, SANs the CSR policy allowed. A refusal ends the order
/// (`error`, with the reason for admins) instead of waiting for the retry budget.
#[test]
fn a_remote_issuers_certificate_is_checked_before_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, ca_key) = make_ca(d, "command test CA");
    let stranger = d.join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    let (other, other_key) = make_ca(&stranger, "unrelated CA");
    std::fs::write(d.join("ca-true.ext"), "basicConstraints=critical,CA:TRUE\n").unwrap();
    std::fs::write(d.join("san.ext"), "subjectAltName=DNS:evil.example.com\n").unwrap();
    std::fs::write(d.join("leaf.ext"), "basicConstraints=CA:FALSE\n").unwrap();
    // The certname picks the misbehaviour.
    let script = d.join("sign.sh");
    write_program(
        &script,
        &format!(
            r#"#!/bin/sh
set -e
cat > {d}/$CERTD_CERTNAME.csr
sign() {{ openssl x509 -req -in {d}/$CERTD_CERTNAME.csr -CAcreateserial "$@" 2>/dev/null; }}
case "$CERTD_CERTNAME" in
  good*) sign -CA {ca} -CAkey {key} -days 1 -extfile {d}/leaf.ext ;;
  ca-true*) sign -CA {ca} -CAkey {key} -days 1 -extfile {d}/ca-true.ext ;;
  unrelated*) sign -CA {other} -CAkey {other_key} -days 1 -extfile {d}/leaf.ext ;;
  long*) sign -CA {ca} -CAkey {key} -days 36500 -extfile {d}/leaf.ext ;;
  san*) sign -CA {ca} -CAkey {key} -days 1 -extfile {d}/san.ext ;;
  badsig*) sign -CA {ca} -CAkey {key} -days 1 -extfile {d}/leaf.ext -outform DER > {d}/$CERTD_CERTNAME.der
    python3 -c "import sys,base64; b=bytearray(open(sys.argv[1],'rb').read()); b[-1]^=1; print('-----BEGIN CERTIFICATE-----'); print(base64.encodebytes(bytes(b)).decode().strip()); print('-----END CERTIFICATE-----')" {d}/$CERTD_CERTNAME.der ;;
esac
"#,
            d = d.display(),
            ca = ca.display(),
            key = ca_key.display(),
            other = other.display(),
            other_key = other_key.display(),
        ),
    );
    let config = format!(
        "{FAST_CONFIG}\n[environments.cmd]\ncert_ttl = \"30d\"\n[environments.cmd.issuer]\ntype = \"command\"\nprogram = \"{}\"\nca_file = \"{}\"\ntimeout = \"10s\"\nretry_budget = \"1h\"\n",
        script.display(),
        ca.display()
    );
    let down = node(&d.join("down"), &config);
    let (csr, _) = csr_for("good-node");
    down.submit("cmd", "good-node", &csr);
    down.sign("cmd", "good-node");
    assert!(until(Duration::from_secs(10), || down
        .head("/cmd/certificate/good-node")
        == 200));
    for name in [
        "ca-true-node",
        "unrelated-node",
        "long-node",
        "san-node",
        "badsig-node",
    ] {
        let (csr, _) = csr_for(name);
        down.submit("cmd", name, &csr);
        down.sign("cmd", name);
        assert!(
            until(Duration::from_secs(10), || down.status("cmd", name)
                ["state"]
                == "error"),
            "{name}: the order ends in error: {}",
            down.status("cmd", name)
        );
        assert_eq!(
            down.head(&format!("/cmd/certificate/{name}")),
            404,
            "{name}"
        );
        let why = down.status("cmd", name)["error_message"].to_string();
        assert!(why.len() > 10, "{name}: the reason is kept: {why}");
    }
}

/// A one-thread HTTP server on a free loopback port that answers every request with
/// `answer` (its head, then `body_len` bytes of 'x'); returns the port and a counter of
/// the requests it got.
fn fake_upstream(
    answer: String,
    body_len: usize,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(answer.as_bytes());
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = body_len;
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.write_all(&chunk[..n]).is_err() {
                    break;
                }
                left -= n;
            }
        }
    });
    (port, hits)
}

/// Back ends' answers: a redirect is not followed (to another host, port or scheme it
/// could send the CSR there, or take a certificate from there), and an answer larger
/// than certd reads is refused without being held.
#[test]
fn back_end_redirects_are_not_followed_and_answers_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = make_ca(dir.path(), "cfssl test CA");
    let (elsewhere, elsewhere_hits) = fake_upstream(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".into(),
        0,
    );
    let (redirecting, _) = fake_upstream(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{elsewhere}/api/v1/cfssl/sign\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        0,
    );
    // 50 MB with no Content-Length: read until the connection closes.
    let (huge, _) = fake_upstream(
        "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n".into(),
        50 << 20,
    );
    let config = format!(
        "{FAST_CONFIG}\n[environments.redir.issuer]\ntype = \"cfssl\"\nurl = \"http://127.0.0.1:{redirecting}\"\nca_file = \"{ca}\"\n\
         [environments.huge.issuer]\ntype = \"cfssl\"\nurl = \"http://127.0.0.1:{huge}\"\nca_file = \"{ca}\"\n",
        ca = ca.display()
    );
    let down = node(&dir.path().join("down"), &config);
    for env in ["redir", "huge"] {
        let (csr, _) = csr_for("node1");
        down.submit(env, "node1", &csr);
        down.sign(env, "node1");
    }
    assert!(
        until(Duration::from_secs(10), || {
            down.status("huge", "node1")["sub_status_message"]
                .as_str()
                .is_some_and(|m| m.contains("larger than"))
        }),
        "the 50 MB answer is refused: {}",
        down.status("huge", "node1")
    );
    // The 307 is the back end's answer: a refusal that ends the order.
    assert!(
        until(Duration::from_secs(10), || down.status("redir", "node1")
            ["state"]
            == "error"),
        "{}",
        down.status("redir", "node1")
    );
    assert_eq!(
        elsewhere_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert_eq!(down.head("/redir/certificate/node1"), 404);
}

/// Issue 24, finding 2: tenants' issuers are apart. An upstream that takes a request
/// and never answers holds its own environment's orders only: another environment's
/// order, behind it, is issued at once.
#[test]
fn a_stuck_upstream_does_not_hold_other_environments_orders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, ca_key) = make_ca(d, "command test CA");
    // Answers its health probe (GET), and takes a signing request (POST) without ever
    // answering it (the connection held open until the test ends).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for s in listener.incoming().take(50) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = std::io::BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
                if line.starts_with("GET") {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                } else {
                    std::thread::sleep(Duration::from_secs(60));
                }
            });
        }
    });
    let script = d.join("sign.sh");
    write_program(
        &script,
        &format!(
            "#!/bin/sh\ncat > {d}/req.pem\nopenssl x509 -req -in {d}/req.pem -CA {ca} -CAkey {key} -CAcreateserial -days 1 2>/dev/null\n",
            d = d.display(),
            ca = ca.display(),
            key = ca_key.display()
        ),
    );
    let config = format!(
        "{FAST_CONFIG}\n[environments.stuck.issuer]\ntype = \"cfssl\"\nurl = \"http://127.0.0.1:{stuck}\"\nca_file = \"{ca}\"\n\
         [environments.quick.issuer]\ntype = \"command\"\nprogram = \"{script}\"\nca_file = \"{ca}\"\n",
        ca = ca.display(),
        script = script.display()
    );
    let down = node(&d.join("down"), &config);
    let ready = || {
        let st: Value = down
            .api
            .admin
            .get(down.api.url("/status"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        st["issuers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["ready"] == true)
    };
    assert!(until(Duration::from_secs(10), ready), "both issuers ready");
    let (csr, _) = csr_for("held");
    down.submit("stuck", "held", &csr);
    assert_eq!(
        down.sign("stuck", "held"),
        202,
        "the stuck upstream has not answered"
    );
    let (csr, _) = csr_for("free");
    down.submit("quick", "free", &csr);
    let started = Instant::now();
    down.sign("quick", "free");
    assert!(
        until(Duration::from_secs(20), || down
            .head("/quick/certificate/free")
            == 200),
        "{}",
        down.status("quick", "free")
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "another environment's stuck upstream held this order {:?}",
        started.elapsed()
    );
}
