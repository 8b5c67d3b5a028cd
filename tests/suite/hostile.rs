//! The hostile-input corpus of `fixtures/hostile/` (see its README): every case, sent as
//! raw bytes over TLS, gets the expected 4xx with its stable problem+json code, never a
//! 5xx; the server answers normally after each one; and the store is as before, but for
//! the well-formed CSRs the policy refused, which are kept as invalid requests. The other
//! tests here are the trust findings found from outside, one test each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use certd::store::{EventKind, RequestState, SledStore, Store};
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
    // Well-formed CSRs that broke the policy (SANs, extensions) are kept as invalid
    // requests for the admin to see, with an `invalid` audit event each; nothing else
    // may have changed.
    let mut after = snapshot(&data);
    let mut kept = 0;
    for env in after.envs.values_mut() {
        env.requests.retain(|name, r| match &r.state {
            RequestState::Invalid {
                rule: Some(rule), ..
            } => {
                assert!(
                    rule == "csr-subject-alt-names-not-allowed"
                        || rule == "csr-extension-not-allowed",
                    "{name} kept for {rule}"
                );
                kept += 1;
                false
            }
            _ => true,
        });
    }
    after
        .envs
        .retain(|name, e| before.envs.contains_key(name) || *e != Default::default());
    let events = after.audit.len();
    after.audit.retain(|e| e.kind != EventKind::Invalid);
    assert!(
        kept > 0 && after.audit.len() < events,
        "policy refusals are kept"
    );
    assert_eq!(after, before, "the store changed beyond the kept refusals");
    eprintln!(
        "{n} hostile cases, each refused as expected; the store is unchanged but for {kept} \
         refused CSR(s) kept as invalid ({} invalid events)",
        events - after.audit.len()
    );
}

/// Writes `pem` and `key` under `dir` as NAME.pem / NAME.key; returns a client with them.
fn client_with(
    server: &Server,
    dir: &Path,
    name: &str,
    pem: &[u8],
    key: &[u8],
) -> reqwest::blocking::Client {
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, pem).unwrap();
    std::fs::write(&k, key).unwrap();
    client(server, Some((&c, &k)))
}

/// Finding 1: a global admin's certname is a global admin only with a certificate from
/// a CA that may vouch for it (`[authz] admin_environments`, production by default), and
/// no other environment takes a request for it, however it would be approved.
#[test]
fn a_global_admin_name_from_another_environments_ca_is_nobody_special() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[ca]\nkey_type = \"ec-p256\"\n\
        [authz]\nadmins = [\"ops\"]\n\
        [environments.production]\nautosign = true\nadmins = [\"padmin\"]\n\
        [environments.a]\nadmins = [\"admin-a\"]\nautosign = true\nallow_anonymous_csr = true\n";
    let server = Server::start(dir.path(), config);
    let anon = client(&server, None);
    let (acert, akey) = admin(&server);
    let global = client(&server, Some((&acert, &akey)));
    let put = |who: &reqwest::blocking::Client, env: &str, name: &str| {
        let (csr, _) = csr_for(name);
        who.put(server.url(&format!("/{env}/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap()
    };
    // Anonymous callers in an autosigning environment, and the environment's own
    // admin, are refused a request for the global admin's name (and for certd's own).
    for (who, name) in [(&anon, "ops"), (&anon, "certd-admin"), (&global, "ops")] {
        assert_eq!(
            problem_code(put(who, "a", name)),
            (400, "reserved-certname".to_owned()),
            "PUT /a/certificate_request/{name}"
        );
        assert_eq!(
            anon.head(server.url(&format!("/a/certificate/{name}")))
                .send()
                .unwrap()
                .status(),
            404
        );
    }
    // In production (whose CA may vouch) the request is taken but never autosigned: an
    // admin signs a global admin's certificate.
    let (ops_csr, ops_key) = csr_for("ops");
    let r = anon
        .put(server.url("/production/certificate_request/ops"))
        .body(ops_csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        anon.head(server.url("/production/certificate/ops"))
            .send()
            .unwrap()
            .status(),
        404,
        "a global admin's name is not autosigned"
    );
    // setup's admin name is certd's own: nobody may request it, even in production.
    assert_eq!(
        problem_code(put(&anon, "production", "certd-admin")),
        (400, "reserved-certname".to_owned())
    );

    // A certificate for "ops" from a's CA (issued outside the API) is a's agent, not a
    // global admin: it reaches neither production's nor the global resources.
    let (csr, key) = csr_for("ops");
    let forged = dir.path().join("ops-from-a.pem");
    sign_with_env_ca(&server, "a", &csr, &forged);
    let ops_a = client_with(
        &server,
        dir.path(),
        "ops-a",
        &std::fs::read(&forged).unwrap(),
        &key,
    );
    for (method, path) in [
        ("GET", "/environments"),
        ("GET", "/production/certificate_statuses/*"),
        ("GET", "/a/certificate_statuses/*"),
        ("PUT", "/environments/evil"),
    ] {
        let r = match method {
            "GET" => ops_a.get(server.url(path)),
            _ => ops_a.put(server.url(path)).body("{}"),
        };
        assert_eq!(r.send().unwrap().status(), 403, "{method} {path}");
    }
    // Nor may production's own admin sign it, and Puppet's sign-all passes it over: a
    // global admin's certificate is signed by a global admin.
    let (pcsr, pkey) = csr_for("padmin");
    let r = global
        .put(server.url("/production/certificate_request/padmin"))
        .body(pcsr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    // An environment admin's name is signed by an admin, never by a policy.
    assert_eq!(
        global
            .post(server.url("/production/certificate/"))
            .body("padmin")
            .send()
            .unwrap()
            .status(),
        201
    );
    let ppem = anon
        .get(server.url("/production/certificate/padmin"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let padmin = client_with(&server, dir.path(), "padmin", &ppem, &pkey);
    for r in [
        padmin
            .post(server.url("/production/certificate/"))
            .body("ops")
            .send()
            .unwrap(),
        padmin
            .put(server.url("/production/certificate_status/ops"))
            .body(r#"{"desired_state":"signed"}"#)
            .send()
            .unwrap(),
    ] {
        assert_eq!(
            r.status(),
            403,
            "production's own admin signs a global admin"
        );
    }
    sign_all(&server, &global);
    assert_eq!(
        anon.head(server.url("/production/certificate/ops"))
            .send()
            .unwrap()
            .status(),
        404,
        "sign-all passes a global admin's name over"
    );
    // The same name with production's certificate is the global admin it is meant to be.
    assert_eq!(
        global
            .post(server.url("/production/certificate/"))
            .body("ops")
            .send()
            .unwrap()
            .status(),
        201
    );
    let pem = anon
        .get(server.url("/production/certificate/ops"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let ops = client_with(&server, dir.path(), "ops-prod", &pem, &ops_key);
    assert_eq!(
        ops.get(server.url("/environments"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

/// Finding 7: the certificates setup signs (the admin's and the server's) are recorded
/// like any other, so they are listed and can be revoked.
#[test]
fn setup_certificates_are_recorded_and_revocable() {
    let (api, _dir) = Api::start(FAST_CONFIG);
    let statuses: serde_json::Value = api
        .admin
        .get(api.url("/production/certificate_statuses/*"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let fingerprints: Vec<String> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fingerprints"]["SHA256"].as_str().unwrap().to_owned())
        .collect();
    for file in ["admin/admin.pem", "tls/server.pem"] {
        let fp = fingerprint(&api.server.dir.join(file));
        let fp = fp.split('=').nth(1).unwrap().to_owned();
        assert!(
            fingerprints.contains(&fp),
            "{file} ({fp}) is not among the listed certificates {statuses}"
        );
    }
    // Revoking setup's admin certificate shuts its holder out.
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate/certd-admin"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(api.head("/production/certificate/certd-admin"), 410);
    let (cert, key) = admin(&api.server);
    let fresh = client(&api.server, Some((&cert, &key)));
    assert!(
        fresh
            .get(api.url("/production/certificate_statuses/*"))
            .send()
            .map(|r| r.status() == 403)
            .unwrap_or(true),
        "a revoked admin certificate is refused"
    );
}

/// `openssl x509 -noout FIELD -in PEM`, the value after `=`.
fn x509_field(pem: &[u8], field: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.pem");
    std::fs::write(&f, pem).unwrap();
    let (ok, out, err) = run(std::process::Command::new("openssl")
        .args(["x509", "-noout", field, "-in"])
        .arg(&f));
    assert!(ok, "{err}");
    out.trim().split_once('=').unwrap().1.to_owned()
}

/// The serials `openssl crl` reads from the environment's CRL, with their reasons.
fn crl_text(api: &Api, env: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("crl.pem");
    let pem = api
        .anon
        .get(api.url(&format!("/{env}/certificate_revocation_list/ca")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    std::fs::write(&f, pem).unwrap();
    let (ok, out, err) = run(std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&f));
    assert!(ok, "{err}");
    out
}

fn openssl_date(s: &str) -> time::OffsetDateTime {
    let fmt = time::macros::format_description!(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), fmt)
        .unwrap()
        .assume_utc()
}

/// Submits a CSR for `name` and has the admin sign it for 600 s: (certificate PEM, key
/// PEM).
fn signed_for_ten_minutes(api: &Api, name: &str) -> (Vec<u8>, Vec<u8>) {
    let (csr, key) = csr_for(name);
    assert_eq!(api.submit(name, &csr), 201);
    let r = api
        .admin
        .post(api.url("/production/certificate/"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"certname": "{name}", "ttl": 600}}"#))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let cert = api
        .anon
        .get(api.url(&format!("/production/certificate/{name}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    (cert, key)
}

/// DoS review: a renewal revokes its predecessor, so an agent renewing in a loop grew
/// its environment's CRL by one entry per renewal (each re-signing it), for every agent
/// that fetches the CRL to download. A certificate is now renewed only once it has
/// lived `min_renewal_age` (by default a tenth of its lifetime; Puppet agents renew
/// within `hostcert_renewal_interval` of the end): sooner is 429 saying when, nothing
/// signed or revoked.
#[test]
fn a_certificate_is_renewed_only_once_it_has_lived_a_while() {
    for (config, wait) in [
        (FAST_CONFIG.to_owned(), None),
        (
            // Ages are whole seconds: the renewal right after the first is 429 as long
            // as under 2 s pass between them.
            format!("{FAST_CONFIG}[environments.production]\nmin_renewal_age = \"3s\"\n"),
            Some(Duration::from_millis(3100)),
        ),
    ] {
        let (api, dir) = Api::start(&config);
        let (mut cert, key) = signed_for_ten_minutes(&api, "looper");
        let renew = |cert: &[u8], label: &str| {
            client_with(&api.server, dir.path(), label, cert, &key)
                .post(api.url("/puppet-ca/v1/certificate_renewal"))
                .header("content-type", "text/plain")
                .body("")
                .send()
                .unwrap()
        };
        if let Some(wait) = wait {
            std::thread::sleep(wait);
            let r = renew(&cert, "first");
            assert_eq!(r.status(), 200, "{config}: renewed after {wait:?}");
            cert = r.bytes().unwrap().to_vec();
        }
        let crl = || {
            api.anon
                .get(api.url("/production/certificate_revocation_list/ca"))
                .send()
                .unwrap()
                .bytes()
                .unwrap()
        };
        let before = crl();
        let r = renew(&cert, "again");
        assert_eq!(r.status(), 429, "{config}: renewed at once");
        // No Retry-After: a Puppet agent would sleep on it and ask again, up to 100 times.
        assert!(r.headers().get("retry-after").is_none());
        let text = r.text().unwrap();
        let retry: u64 = text
            .split("try again in ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("when to try again: {text}"));
        let most = if wait.is_some() { 3 } else { 60 };
        assert!((1..=most).contains(&retry), "try again in {retry} s");
        assert_eq!(crl(), before, "nothing revoked");
        let r = client_with(&api.server, dir.path(), "still", &cert, &key)
            .get(api.url("/production/certificate_status/looper"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "the certificate still serves");
    }
}

/// Findings 3 and 10: a renewal revokes its predecessor (`superseded`) in the same
/// transaction, so a node never holds two valid certificates and a revoke (or clean)
/// of the node leaves none valid; and a renewal gives no more life than the
/// certificate it replaces had (an admin's short validity stays short).
#[test]
fn a_renewal_supersedes_its_predecessor_and_gives_no_more_life() {
    // Renewed at once, not a tenth of the certificate's life later.
    let (api, dir) = Api::start(&format!(
        "{FAST_CONFIG}[environments.production]\nmin_renewal_age = \"0s\"\n"
    ));
    let (old, key) = signed_for_ten_minutes(&api, "node1");
    let old_agent = client_with(&api.server, dir.path(), "old", &old, &key);
    let renew = |who: &reqwest::blocking::Client| {
        who.post(api.url("/puppet-ca/v1/certificate_renewal"))
            .header("content-type", "text/plain")
            .body("")
            .send()
            .unwrap()
    };
    let r = renew(&old_agent);
    assert_eq!(r.status(), 200);
    let new = r.bytes().unwrap().to_vec();
    let life = |pem: &[u8]| {
        openssl_date(&x509_field(pem, "-enddate")) - openssl_date(&x509_field(pem, "-startdate"))
    };
    assert!(
        life(&new) <= life(&old),
        "the renewal lives {} s, the certificate it replaced {} s",
        life(&new).whole_seconds(),
        life(&old).whole_seconds()
    );
    let (old_serial, new_serial) = (x509_field(&old, "-serial"), x509_field(&new, "-serial"));
    let crl = crl_text(&api, "production");
    assert!(
        crl.contains(&format!("Serial Number: {old_serial}")) && crl.contains("Superseded"),
        "the predecessor {old_serial} is on the CRL as superseded:\n{crl}"
    );
    // The predecessor no longer completes a request; the renewed certificate does.
    let stale = client_with(&api.server, dir.path(), "old2", &old, &key);
    assert!(
        stale
            .get(api.url("/production/certificate_status/node1"))
            .send()
            .map(|r| r.status() == 403)
            .unwrap_or(true),
        "the pre-renewal certificate is refused"
    );
    let agent = client_with(&api.server, dir.path(), "new", &new, &key);
    assert_eq!(
        agent
            .get(api.url("/production/certificate_status/node1"))
            .send()
            .unwrap()
            .status(),
        200
    );
    // Revoking the node leaves none of its certificates valid.
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate/node1"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let crl = crl_text(&api, "production");
    for serial in [&old_serial, &new_serial] {
        assert!(
            crl.contains(&format!("Serial Number: {serial}")),
            "{serial}:\n{crl}"
        );
    }
    // Durably: the CRL certd re-issues from the store at start lists both.
    assert!(api.server.terminate().success());
    let server = Server::start(dir.path(), FAST_CONFIG);
    let api = Api::of(server);
    let crl = crl_text(&api, "production");
    for serial in [&old_serial, &new_serial] {
        assert!(
            crl.contains(&format!("Serial Number: {serial}")),
            "after a restart, {serial}:\n{crl}"
        );
    }
}

/// Finding 5: a pending request is replaced only by a CSR for the same key, by an admin,
/// or by the node itself (with its current certificate); anyone else allowed to submit
/// gets 409, on the native face as on Puppet's.
#[test]
fn only_the_same_key_an_admin_or_the_node_replaces_a_pending_request() {
    let (api, dir) = Api::start(&format!(
        "{FAST_CONFIG}[environments.production]\nallow_duplicate_certs = true\n"
    ));
    let key = certd::ca::KeyType::EcP256.generate().unwrap();
    let name = certd::ca::Certname::parse("victim").unwrap();
    let put = |who: &reqwest::blocking::Client, csr: Vec<u8>| {
        who.put(api.url("/production/certificate_request/victim"))
            .body(csr)
            .send()
            .unwrap()
    };
    let csr = |k: &certd::ca::PrivateKey| certd::ca::build_csr(k, &name, &[]).unwrap();
    assert_eq!(put(&api.anon, csr(&key)).status(), 201);
    let first = api
        .anon
        .get(api.url("/production/certificate_request/victim"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    // Another key, anonymously or as another node: refused, the victim's CSR kept.
    let (other_pem, other_key) = api.issue("bystander");
    let bystander = client_with(&api.server, dir.path(), "bystander", &other_pem, &other_key);
    for who in [&api.anon, &bystander] {
        let attacker = certd::ca::KeyType::EcP256.generate().unwrap();
        assert_eq!(
            problem_code(put(who, csr(&attacker))),
            (409, "already-requested".to_owned())
        );
    }
    let kept = api
        .anon
        .get(api.url("/production/certificate_request/victim"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(kept, first, "the pending CSR is the victim's");
    // The same key may send a new CSR; so may an admin, with any key.
    assert_eq!(put(&api.anon, csr(&key)).status(), 200);
    let admins_key = certd::ca::KeyType::EcP256.generate().unwrap();
    assert_eq!(put(&api.admin, csr(&admins_key)).status(), 200);
    // The node itself, with its current certificate, may replace a pending request
    // (here a new CSR for its name, with duplicates allowed).
    assert_eq!(api.sign("victim"), 201);
    let pem = api
        .anon
        .get(api.url("/production/certificate/victim"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let node = client_with(
        &api.server,
        dir.path(),
        "victim",
        &pem,
        &admins_key.to_pem().unwrap(),
    );
    let attacker = certd::ca::KeyType::EcP256.generate().unwrap();
    assert_eq!(put(&api.anon, csr(&attacker)).status(), 201);
    let rekey = certd::ca::KeyType::EcP256.generate().unwrap();
    assert_eq!(put(&node, csr(&rekey)).status(), 200);
}

/// Findings 2 and 8: the API chooses among what the operator declared in the file (the
/// local issuer, `[issuers.<name>]`, `[autosign_policies]`); no program, path or URL
/// comes from the API. Settings are shown without their secrets, and the data
/// directory and store are private.
#[test]
fn environments_from_the_api_name_only_what_the_file_declares() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "00112233445566778899aabbccddeeff";
    let (ca, _) = make_ca(dir.path(), "upstream CA");
    let ca = ca.display();
    let config = format!(
        "{FAST_CONFIG}\
         [issuers.upstream]\ntype = \"cfssl\"\nurl = \"http://127.0.0.1:9\"\nauth_key = \"{secret}\"\nca_file = \"{ca}\"\n\
         [autosign_policies]\nvetted = \"/bin/false\"\n\
         [environments.declared]\nissuer = {{ type = \"cfssl\", url = \"http://127.0.0.1:9\", auth_key = \"{secret}\", ca_file = \"{ca}\" }}\n"
    );
    let server = Server::start(dir.path(), &config);
    let (c, k) = admin(&server);
    let admin = client(&server, Some((&c, &k)));
    let put = |env: &str, body: &str| {
        admin
            .put(server.url(&format!("/environments/{env}")))
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    let key_file = server.dir.join("ca/production/ca.key");
    let key_file = key_file.display();
    for (i, body) in [
        r#"{"issuer": {"type": "command", "program": "/bin/sh", "args": ["-c", "id"]}}"#.to_owned(),
        r#"{"issuer": [{"type": "command", "program": "/usr/bin/env"}]}"#.to_owned(),
        format!(
            r#"{{"issuer": {{"type": "puppet-ca", "url": "https://127.0.0.1:9", "ca_file": "{key_file}", "cert_file": "{key_file}", "key_file": "{key_file}"}}}}"#
        ),
        r#"{"issuer": {"type": "cfssl", "url": "http://127.0.0.1:9"}}"#.to_owned(),
        r#"{"issuer": "no-such-issuer"}"#.to_owned(),
        r#"{"autosign": "/bin/true"}"#.to_owned(),
        r#"{"autosign": {"policy": "no-such-policy"}}"#.to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let env = format!("evil{i}");
        assert_eq!(
            problem_code(put(&env, body)),
            (400, "invalid-settings".to_owned()),
            "{body}"
        );
        assert_eq!(
            admin
                .get(server.url(&format!("/{env}/certificate/ca")))
                .send()
                .unwrap()
                .status(),
            404,
            "no environment was made for {body}"
        );
    }
    // What the file declares may be named.
    let r = put(
        "tenant",
        r#"{"issuer": "upstream", "autosign": {"policy": "vetted"}}"#,
    );
    assert_eq!(r.status(), 201);
    assert_eq!(put("tenant2", r#"{"issuer": ["local"]}"#).status(), 201);
    // No secret is echoed, wherever it was set.
    let listing = admin
        .get(server.url("/environments"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!listing.contains(secret), "{listing}");
    assert!(listing.contains("\"tenant\""), "{listing}");
    // The data directory and the store are private, and so are the store's files.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.dir), 0o700, "data directory");
    assert_eq!(mode(&server.dir.join("store")), 0o700, "store");
    let files = walk(&server.dir.join("store"));
    assert!(!files.is_empty(), "the store has files");
    for entry in files {
        assert_eq!(mode(&entry) & 0o077, 0, "{} is private", entry.display());
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Finding 15: environments made at run time are capped (each costs a CA key), and
/// `/metrics` shows an environment's names and volumes only to who may see it there.
#[test]
fn environment_creation_is_capped_and_metrics_keep_tenants_apart() {
    let (api, dir) = Api::start(&format!(
        "{FAST_CONFIG}[limits]\nmax_environments = 3\n[environments.a]\n"
    ));
    let put = |env: &str| {
        api.admin
            .put(api.url(&format!("/environments/{env}")))
            .body("{}")
            .send()
            .unwrap()
    };
    assert_eq!(put("b").status(), 201);
    assert_eq!(
        problem_code(put("c")),
        (409, "too-many-environments".to_owned())
    );
    assert_eq!(put("b").status(), 200, "changing one is not creating one");
    // An agent of b sees b's series and no other environment's.
    let (csr, key) = csr_for("agent-b");
    assert_eq!(
        api.admin
            .put(api.url("/b/certificate_request/agent-b"))
            .body(csr)
            .send()
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        api.admin
            .post(api.url("/b/certificate/"))
            .body("agent-b")
            .send()
            .unwrap()
            .status(),
        201
    );
    let pem = api
        .anon
        .get(api.url("/b/certificate/agent-b"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let agent = client_with(&api.server, dir.path(), "agent-b", &pem, &key);
    let text = agent
        .get(api.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains(r#"environment="b""#), "{text}");
    for other in ["production", "a"] {
        assert!(
            !text.contains(&format!("environment=\"{other}\"")),
            "an agent of b sees {other}:\n{text}"
        );
    }
    let all = api
        .admin
        .get(api.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(all.contains(r#"environment="a""#) && all.contains(r#"environment="production""#));
}

/// Finding 12: a remote issuer of an environment created at run time is probed like a
/// declared one; until it has answered a probe it is not shown as ready.
#[test]
fn issuers_of_environments_made_at_run_time_are_probed_before_they_are_ready() {
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca, _) = make_ca(ca_dir.path(), "upstream CA");
    let (api, _dir) = Api::start(&format!(
        "{FAST_CONFIG}[issuers.nowhere]\ntype = \"cfssl\"\nurl = \"http://127.0.0.1:9\"\nca_file = \"{}\"\n",
        ca.display()
    ));
    assert_eq!(
        api.admin
            .put(api.url("/environments/tenant"))
            .body(r#"{"issuer": "nowhere"}"#)
            .send()
            .unwrap()
            .status(),
        201
    );
    let issuer = || -> serde_json::Value {
        let s: serde_json::Value = api
            .admin
            .get(api.url("/status"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        s["issuers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["environment"] == "tenant")
            .cloned()
            .expect("the tenant's issuer is in /status")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut probed = false;
    while std::time::Instant::now() < deadline {
        let i = issuer();
        assert_eq!(i["ready"], false, "nothing listens on port 9: {i}");
        if i["message"]
            .as_str()
            .is_some_and(|m| !m.contains("not probed yet"))
        {
            probed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(probed, "the issuer was probed: {}", issuer());
}

/// Finding 13: an issuer's failure (its program, exit status, stderr) is logged and kept
/// for admins, and the submitter, who may be anonymous, gets a stable code only.
#[test]
fn an_issuers_failure_details_are_not_told_to_the_submitter() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("failing-signer");
    std::fs::write(
        &program,
        "#!/bin/sh\necho 'db password hunter2 at /etc/secret' >&2\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ca, _) = make_ca(dir.path(), "signer CA");
    let config = format!(
        "{FAST_CONFIG}[environments.production]\nautosign = true\n\
         issuer = {{ type = \"command\", program = \"{}\", ca_file = \"{}\" }}\n",
        program.display(),
        ca.display()
    );
    let server = Server::start(dir.path(), &config);
    let anon = client(&server, None);
    let (csr, _) = csr_for("node1");
    let r = anon
        .put(server.url("/production/certificate_request/node1"))
        .body(csr)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    assert!((400..500).contains(&status), "{status} {body}");
    let probe = anon
        .get(server.url("/production/certificate_request/node1"))
        .send()
        .unwrap();
    assert_eq!(probe.status(), 410);
    let probe = probe.text().unwrap();
    for told in [&body, &probe] {
        for secret in ["hunter2", "failing-signer", "exited", "/etc/secret"] {
            assert!(
                !told.contains(secret),
                "{secret:?} told to the submitter: {told}"
            );
        }
    }
    assert!(body.contains("issuance-failed"), "{body}");
    // The admin sees why.
    let (c, k) = admin(&server);
    let status: serde_json::Value = client(&server, Some((&c, &k)))
        .get(server.url("/production/certificate_status/node1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        status.to_string().contains("hunter2"),
        "the admin's status keeps the reason: {status}"
    );
}

/// Finding 14: every CRL of an upload is checked; one naming the issuing CA whose
/// signature does not verify is refused (400), not answered with success and ignored.
#[test]
fn an_uploaded_crl_that_does_not_verify_is_refused() {
    let (api, _dir) = Api::start(FAST_CONFIG);
    let mut der = api
        .anon
        .get(api.url("/production/certificate_revocation_list/ca"))
        .header("accept", "application/pkix-crl")
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    // The issuing CA's own CRL, its signature broken: the authority key identifier
    // still names the issuing CA.
    *der.last_mut().unwrap() ^= 0x01;
    let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der).unwrap();
    let r = api
        .admin
        .put(api.url("/puppet-ca/v1/certificate_revocation_list"))
        .body(pem)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    assert_eq!(status, 400, "{body}");
}

/// Finding 4: a request whose body times out is answered 408 and its connection closed,
/// on both faces and whatever the framing, so stalled bodies cannot hold every
/// connection slot. So is any answer given before the request's body ended, from the
/// rules or from a handler that reads none.
#[test]
fn a_body_that_times_out_closes_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &format!("{FAST_CONFIG}[server]\nbody_timeout = \"1s\"\nkeep_alive = \"30s\"\n"),
    );
    for (path, answer) in [
        ("PUT /production/certificate_request/stall", "HTTP/1.1 408"),
        (
            "PUT /puppet-ca/v1/certificate_request/stall",
            "HTTP/1.1 408",
        ),
        // Refused by the rules before any handler reads the body.
        ("POST /production/certificate/", "HTTP/1.1 403"),
        (
            "DELETE /puppet-ca/v1/certificate_request/stall",
            "HTTP/1.1 403",
        ),
        // Fifth review, finding 2: admitted by handlers that read no body, and answered
        // before it ended.
        ("GET /production/certificate/ca", "HTTP/1.1 200"),
        ("GET /status", "HTTP/1.1 200"),
        ("GET /puppet-ca/v1/certificate/ca", "HTTP/1.1 200"),
    ] {
        for (framing, start) in [
            ("chunked", "Transfer-Encoding: chunked\r\n\r\n5\r\n-----"),
            ("length", "Content-Length: 1000\r\n\r\n-----BEGIN"),
        ] {
            let mut tls = anonymous_tls(&server, Duration::from_secs(6));
            tls.write_all(format!("{path} HTTP/1.1\r\nHost: localhost\r\n{start}").as_bytes())
                .unwrap();
            let started = std::time::Instant::now();
            let mut out = Vec::new();
            let read = tls.read_to_end(&mut out);
            let text = String::from_utf8_lossy(&out);
            assert!(text.starts_with(answer), "{path} {framing}: {text}");
            assert!(
                read.is_ok() && started.elapsed() < Duration::from_secs(5),
                "{path} {framing}: the connection stayed open after the answer ({read:?} after {:?}): {text}",
                started.elapsed()
            );
        }
    }
}

/// A TLS connection to `server` as anyone, reads timing out after `read_timeout`.
fn anonymous_tls(server: &Server, read_timeout: Duration) -> openssl::ssl::SslStream<TcpStream> {
    tls_with(server, read_timeout, None, false)
}

/// A TLS connection to `server`, reads timing out after `read_timeout`, its receive
/// buffer set to `receive_buffer` bytes before it connects, as the admin or anyone.
fn tls_with(
    server: &Server,
    read_timeout: Duration,
    receive_buffer: Option<usize>,
    as_admin: bool,
) -> openssl::ssl::SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(server.chain()).unwrap();
    if as_admin {
        let (cert, key) = admin(server);
        b.set_certificate_chain_file(cert).unwrap();
        b.set_private_key_file(key, openssl::ssl::SslFiletype::PEM)
            .unwrap();
    }
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], server.port).into();
    socket.connect(&addr.into()).unwrap();
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(read_timeout)).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    b.build().connect("localhost", tcp).unwrap()
}

/// Reads one answer from `tls`; its status line.
fn status_line(tls: &mut openssl::ssl::SslStream<TcpStream>) -> String {
    let head = read_answer(tls).expect("an answer");
    head.lines().next().unwrap_or_default().to_owned()
}

/// DoS review, not bounded until now: actix times a connection's request head only for
/// its first request, and never a response's write. A client that sends one byte of a
/// second request and stops, trickles a second request's head a byte at a time, or asks
/// for answers it never reads, held its connection (and a file descriptor) for good.
/// Between requests a connection now has `keep_alive` plus `request_timeout` to deliver
/// its next request's head, and an answer as long without progress to be taken; a
/// request certd is working on (here a body arriving slowly, within `body_timeout`) is
/// not cut.
#[test]
fn a_connection_that_stalls_between_requests_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &format!(
            "{FAST_CONFIG}[server]\nkeep_alive = \"1s\"\nrequest_timeout = \"2s\"\nbody_timeout = \"10s\"\n"
        ),
    );
    let first = "GET /production/certificate/ca HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // Bound: 1 s + 2 s, checked about once a second; allowed 4 s more for a busy machine.
    let bound = Duration::from_secs(8);

    // One byte of a second request, then nothing.
    let mut tls = anonymous_tls(&server, Duration::from_secs(20));
    tls.write_all(first.as_bytes()).unwrap();
    assert_eq!(status_line(&mut tls), "HTTP/1.1 200 OK");
    tls.write_all(b"G").unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tls.read_to_end(&mut rest);
    assert!(
        started.elapsed() < bound
            && !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "one byte of a second request: the connection stayed open ({read:?} after {:?})",
        started.elapsed()
    );

    // A second request's head trickled a byte every 700 ms (under keep_alive).
    let mut tls = anonymous_tls(&server, Duration::from_millis(700));
    tls.write_all(first.as_bytes()).unwrap();
    assert_eq!(status_line(&mut tls), "HTTP/1.1 200 OK");
    let started = std::time::Instant::now();
    let mut closed = false;
    for byte in first.bytes().cycle().take(30) {
        if tls.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tls.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        closed && started.elapsed() < bound,
        "a trickled head: the connection stayed open for {:?}",
        started.elapsed()
    );

    // Answers asked for and never read: more than the sockets' buffers hold.
    let mut tls = tls_with(&server, Duration::from_secs(5), Some(4096), false);
    let mut sent = 0usize;
    for _ in 0..4000 {
        if tls.write_all(first.as_bytes()).is_err() {
            break;
        }
        sent += 1;
    }
    std::thread::sleep(bound);
    let mut all = Vec::new();
    let _ = tls.read_to_end(&mut all);
    let answered = String::from_utf8_lossy(&all)
        .matches("HTTP/1.1 200")
        .count();
    assert!(
        sent > 1000 && answered < sent,
        "answers never read: all {answered} of {sent} answers were sent in the end"
    );

    // A body that arrives slowly but within body_timeout, past the bound between
    // requests: answered.
    let (csr, _) = csr_for("slow-body");
    let csr = String::from_utf8(csr).unwrap();
    let mut tls = anonymous_tls(&server, Duration::from_secs(20));
    tls.write_all(
        format!(
            "PUT /production/certificate_request/slow-body HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            csr.len()
        )
        .as_bytes(),
    )
    .unwrap();
    for part in csr.as_bytes().chunks(csr.len() / 6 + 1) {
        std::thread::sleep(Duration::from_millis(1000));
        tls.write_all(part).unwrap();
    }
    let status = status_line(&mut tls);
    assert!(
        status.starts_with("HTTP/1.1 2"),
        "a slow body within its timeout: {status}"
    );
}

/// Review of the bound above: an answer that takes longer than the bound to download
/// is not cut while it moves. (Its connection then closes as actix's keep-alive
/// decides: actix counts it from when the answer was handed over, not from its last
/// byte, so after a download longer than `keep_alive` the connection is gone.)
#[test]
fn a_download_slower_than_the_bound_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &format!(
            "{FAST_CONFIG}[server]\nkeep_alive = \"2s\"\nrequest_timeout = \"1s\"\n[environments.production]\nautosign = true\n"
        ),
    );
    let api = Api::of(server);
    for i in 0..150 {
        let name = format!("slow-{i:03}");
        let csr = certd::ca::build_csr(
            &certd::ca::KeyType::EcP256.generate().unwrap(),
            &certd::ca::Certname::parse(&name).unwrap(),
            &[],
        )
        .unwrap();
        assert_eq!(api.submit(&name, &csr), 201, "{name}");
    }
    let mut tls = tls_with(&api.server, Duration::from_secs(10), Some(4096), true);
    let list = "GET /production/certificate/?limit=1000 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    tls.write_all(list.as_bytes()).unwrap();
    // Taken 1 KB every 40 ms: over 4 s for the ~100 KB listing, past the 3 s bound.
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut length = None;
    loop {
        let mut buf = [0u8; 1024];
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "the download was cut after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if length.is_none() {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..i]).to_ascii_lowercase();
                let l: usize = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a length");
                length = Some(i + 4 + l);
            }
        }
        if length.is_some_and(|l| got.len() >= l) {
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(3),
        "the download took only {took:?}"
    );
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}

/// Issue 24, findings 7, 8 and 10: an environment name is bounded by what its CA's
/// subject can hold, the names of certd's own top-level routes are not environment
/// names, and a path echoed in a Puppet-face 404 has its control characters escaped.
#[test]
fn environment_names_fit_the_ca_and_the_routes_and_echoes_are_escaped() {
    let (api, _dir) = Api::start(FAST_CONFIG);
    let put = |env: &str| {
        api.admin
            .put(api.url(&format!("/environments/{env}")))
            .body("{}")
            .send()
            .unwrap()
    };
    assert_eq!(put(&"e".repeat(54)).status(), 201, "54 characters fit");
    for env in [
        "e".repeat(55),
        "e".repeat(63),
        "puppet-ca".into(),
        "status".into(),
        "environments".into(),
        "metrics".into(),
    ] {
        assert_eq!(
            problem_code(put(&env)),
            (400, "invalid-environment".to_owned()),
            "{env}"
        );
    }
    for path in [
        "/puppet-ca/v1/certificate_request/a%00b",
        "/puppet-ca/v1/certificate/a%00b%1b[31m",
    ] {
        let body = api.anon.get(api.url(path)).send().unwrap().bytes().unwrap();
        assert!(
            !body.iter().any(|b| *b == 0 || *b == 0x1b),
            "{path}: {body:?}"
        );
    }
}

/// Second review (read as an attacker), findings 1-3: a name that holds authority is acted
/// on only by a caller of that rank, whatever the action. An environment admin's name
/// is never autosigned nor swept by sign-all (anyone could otherwise ask for it first
/// and become that environment's admin); an environment's admin may neither replace
/// a global admin's pending request with a key of their own (which a global admin
/// would then sign), nor reject it, nor revoke or clean a global admin's or certd's
/// own certificates (which would shut the global admins out, or put the server's own
/// certificate on the CRL).
#[test]
fn names_that_hold_authority_are_acted_on_only_by_their_rank() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[ca]\nkey_type = \"ec-p256\"\n\
        [authz]\nadmins = [\"ops\"]\n\
        [environments.production]\nautosign = true\nadmins = [\"padmin\", \"padmin2\"]\n";
    let server = Server::start(dir.path(), config);
    let anon = client(&server, None);
    let (acert, akey) = admin(&server);
    let global = client(&server, Some((&acert, &akey)));
    let status = |r: reqwest::blocking::RequestBuilder| r.send().unwrap().status().as_u16();
    let head =
        |name: &str| status(anon.head(server.url(&format!("/production/certificate/{name}"))));
    let put = |who: &reqwest::blocking::Client, name: &str, csr: &[u8]| {
        status(
            who.put(server.url(&format!("/production/certificate_request/{name}")))
                .body(csr.to_vec()),
        )
    };

    // An environment admin's name, asked for by anyone: taken, not autosigned, and
    // passed over by sign-all.
    let (csr, _) = csr_for("padmin2");
    assert_eq!(put(&anon, "padmin2", &csr), 201);
    assert_eq!(
        head("padmin2"),
        404,
        "an environment admin's name was autosigned"
    );
    sign_all(&server, &global);
    assert_eq!(
        head("padmin2"),
        404,
        "sign-all signed an environment admin's name"
    );
    // Signed when named, by an admin: the global admin signs `name`, and the holder
    // of `key` gets a client with the certificate.
    let signed = |name: &str, key: &[u8]| {
        let r = global
            .post(server.url("/production/certificate/"))
            .body(name.to_owned());
        assert_eq!(status(r), 201, "{name}");
        let pem = anon
            .get(server.url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        client_with(&server, dir.path(), name, &pem, key)
    };
    let (pcsr, pkey) = csr_for("padmin");
    assert_eq!(put(&global, "padmin", &pcsr), 201);
    let padmin = signed("padmin", &pkey);

    // A global admin's pending request: production's admin can neither put their own
    // key in it nor reject it.
    let (ops_csr, ops_key) = csr_for("ops");
    assert_eq!(put(&anon, "ops", &ops_csr), 201);
    let (evil_csr, _) = csr_for("ops");
    assert_eq!(
        put(&padmin, "ops", &evil_csr),
        403,
        "production's admin replaced a global admin's pending CSR"
    );
    assert_eq!(
        status(padmin.delete(server.url("/production/certificate_request/ops"))),
        403,
        "production's admin rejected a global admin's request"
    );
    assert_eq!(
        status(padmin.delete(server.url("/puppet-ca/v1/certificate_request/ops"))),
        403,
        "production's admin deleted a global admin's request on the Puppet face"
    );
    let ops = signed("ops", &ops_key);
    assert_eq!(
        status(ops.get(server.url("/environments"))),
        200,
        "ops's own key"
    );

    // Nor can it revoke or clean a global admin's certificate or certd's own, on
    // either face.
    let server_pem = std::fs::read(server.dir.join("tls/server.pem")).unwrap();
    let server_name = x509_field(&server_pem, "-subject")
        .trim()
        .trim_start_matches("CN")
        .trim_start_matches([' ', '='])
        .to_owned();
    for name in ["ops", "certd-admin", server_name.as_str()] {
        let attempts = [
            padmin.delete(server.url(&format!("/production/certificate/{name}"))),
            padmin.delete(server.url(&format!("/production/certificate_status/{name}"))),
            padmin
                .put(server.url(&format!("/production/certificate_status/{name}")))
                .body(r#"{"desired_state":"revoked"}"#),
            padmin
                .put(server.url(&format!("/puppet-ca/v1/certificate_status/{name}")))
                .header("content-type", "application/json")
                .body(r#"{"desired_state":"revoked"}"#),
            padmin.delete(server.url(&format!("/puppet-ca/v1/certificate_status/{name}"))),
            padmin
                .put(server.url("/puppet-ca/v1/clean"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"certnames":["{name}"]}}"#)),
        ];
        for attempt in attempts {
            let r = attempt.send().unwrap();
            let (code, url) = (r.status().as_u16(), r.url().clone());
            assert_eq!(code, 403, "{url} for {name}: {}", r.text().unwrap());
            assert_eq!(head(name), 200, "{name} revoked by production's admin");
        }
    }
    assert_eq!(status(global.get(server.url("/environments"))), 200);
    assert_eq!(status(ops.get(server.url("/environments"))), 200);

    // Everything else in production is theirs to revoke.
    let (ncsr, _) = csr_for("node1");
    assert_eq!(put(&anon, "node1", &ncsr), 201);
    assert_eq!(head("node1"), 200);
    assert_eq!(
        status(padmin.delete(server.url("/production/certificate/node1"))),
        204
    );
    assert_eq!(head("node1"), 410);
}

/// Second review, finding 5: `GET /status` is open to anyone, as a load
/// balancer's health check; it tells anonymous callers and members the version, the
/// store's health and who they are, and only a global admin the environments (other
/// tenants' names, which `/metrics` keeps from members too), the issuers (whose
/// messages name programs and upstream URLs) and the cluster (hosts, and leases named
/// after webhook URLs).
#[test]
fn the_server_status_tells_only_global_admins_about_tenants_issuers_and_hosts() {
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca, _) = make_ca(ca_dir.path(), "upstream CA");
    let (api, dir) = Api::start(&format!(
        "{FAST_CONFIG}[issuers.hidden]\ntype = \"cfssl\"\nurl = \"http://127.0.0.1:9/upstream-secret\"\nca_file = \"{}\"\n",
        ca.display()
    ));
    let r = api
        .admin
        .put(api.url("/environments/quiet-tenant"))
        .body(r#"{"issuer": "hidden"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let (pem, key) = api.issue("node1");
    let member = client_with(&api.server, dir.path(), "node1", &pem, &key);
    let read = |who: &reqwest::blocking::Client| -> (serde_json::Value, String) {
        let r = who.get(api.url("/status")).send().unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().unwrap();
        (serde_json::from_str(&text).unwrap(), text)
    };
    // A global admin sees it all, the probe's message naming the upstream included.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (full, text) = loop {
        let (full, text) = read(&api.admin);
        if text.contains("upstream-secret") || std::time::Instant::now() > deadline {
            break (full, text);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains("upstream-secret"), "{text}");
    assert!(full["environments"]
        .as_array()
        .unwrap()
        .contains(&"quiet-tenant".into()));
    // Nobody else does.
    for (who, client) in [("anonymous", &api.anon), ("a member", &member)] {
        let (seen, text) = read(client);
        assert_eq!(seen["store"]["ok"], true, "{who}: {text}");
        assert!(seen["version"].is_string(), "{who}: {text}");
        for hidden in ["environments", "issuers", "cluster"] {
            assert!(seen.get(hidden).is_none(), "{who} sees {hidden}: {text}");
        }
        for word in ["quiet-tenant", "upstream-secret", "127.0.0.1"] {
            assert!(!text.contains(word), "{who} reads {word}: {text}");
        }
    }
    assert_eq!(read(&member).0["caller"]["certname"], "node1");
}

/// Second review, finding 4 (in part): every environment's CA chains to the one root,
/// so a certificate any tenant obtains for a name of certd's own server (its common
/// name, a DNS name or an IP address of its certificate) would let that tenant pose as
/// certd to every agent that trusts the root. No environment takes a request naming
/// one, as its certname or as an alternative name.
#[test]
fn no_environment_certifies_a_name_of_certds_own_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[ca]\nkey_type = \"ec-p256\"\n\
        [server]\ndns_alt_names = [\"CA.Example.net\"]\n\
        [environments.dev]\nautosign = true\nallow_anonymous_csr = true\nallow_subject_alt_names = true\n";
    let server = Server::start(dir.path(), config);
    let anon = client(&server, None);
    let put = |env: &str, name: &str, san: Option<&str>| {
        let (csr, _) = match san {
            Some(san) => csr_with(name, &["-addext", &format!("subjectAltName={san}")]),
            None => csr_for(name),
        };
        anon.put(server.url(&format!("/{env}/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap()
    };
    for (env, name, san) in [
        ("dev", "ca.example.net", None),
        ("dev", "localhost", None),
        ("production", "ca.example.net", None),
        ("dev", "web1.example.org", Some("DNS:ca.example.net")),
        (
            "dev",
            "web2.example.org",
            Some("DNS:web2.example.org,DNS:localhost"),
        ),
        ("dev", "web3.example.org", Some("IP:127.0.0.1")),
        ("dev", "web4.example.org", Some("IP:::1")),
        ("dev", "web6.example.org", Some("IP:::ffff:127.0.0.1")),
        ("dev", "web7.example.org", Some("DNS:127.0.0.1")),
        ("dev", "127.0.0.1", None),
    ] {
        assert_eq!(
            problem_code(put(env, name, san)),
            (400, "reserved-certname".to_owned()),
            "{env} {name} {san:?}"
        );
        let r = anon
            .head(server.url(&format!("/{env}/certificate/{name}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{env} {name} {san:?} was certified");
    }
    // Other names and addresses are the tenant's to ask for.
    let r = put(
        "dev",
        "web5.example.org",
        Some("DNS:www.example.org,IP:10.0.0.5"),
    );
    assert_eq!(r.status(), 201);
}

/// Fifth review, finding 1: an admin's browser holds the admin's client certificate
/// and sends it to certd whichever page asks. A page on another site could make it
/// sign (a plain `text/plain` form posting `{"certnames":["alice"],"x":"="}` to the
/// Puppet face, or the name to `POST /{env}/certificate/`), sweep every pending
/// request, renew the admin's own certificate away (revoking it), or write backups.
/// Forms and `no-cors` fetches need no preflight, so the browser's own rules stopped
/// none of them. A request that changes anything and says, as browsers do, that
/// another origin sent it (`Sec-Fetch-Site` other than `same-origin` or `none`, or an
/// `Origin` other than the server's own) is refused before anything else; reads, and
/// clients that send neither header (the CLI, agents), are not concerned.
#[test]
fn a_page_of_another_site_changes_nothing_through_an_admins_browser() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let config = format!(
        "[ca]\nkey_type = \"ec-p256\"\n[authz]\nadmins = [\"alice\"]\n\
         [store]\nbackup_dir = \"{}\"\n",
        backups.display()
    );
    let server = Server::start(dir.path(), &config);
    let (acert, akey) = admin(&server);
    let browser = client(&server, Some((&acert, &akey)));
    let anon = client(&server, None);
    let evil = "https://evil.example";
    let cross = |r: reqwest::blocking::RequestBuilder, how: &str| {
        let r = match how {
            "origin" => r.header("Origin", evil),
            "null" => r.header("Origin", "null"),
            "fetch-site" => r.header("Sec-Fetch-Site", "cross-site"),
            "same-site" => r
                .header("Sec-Fetch-Site", "same-site")
                .header("Origin", "https://dashboard.localhost"),
            _ => r
                .header("Sec-Fetch-Site", "cross-site")
                .header("Sec-Fetch-Mode", "navigate")
                .header("Origin", evil),
        };
        r.header("Content-Type", "text/plain").send().unwrap()
    };
    let head = |name: &str| {
        anon.head(server.url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    for name in ["alice", "web1"] {
        let (csr, _) = csr_for(name);
        let r = anon
            .put(server.url(&format!("/production/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{name}");
    }
    for how in ["form", "origin", "null", "fetch-site", "same-site"] {
        let r = cross(
            browser
                .post(server.url("/puppet-ca/v1/sign"))
                .body(r#"{"certnames":["alice"],"x":"="}"#),
            how,
        );
        assert_eq!(r.status(), 403, "{how}: Puppet sign");
        let r = cross(
            browser
                .post(server.url("/production/certificate/"))
                .body("alice"),
            how,
        );
        assert_eq!(
            problem_code(r),
            (403, "cross-site-request".to_owned()),
            "{how}: sign"
        );
        let r = cross(browser.post(server.url("/puppet-ca/v1/sign/all")), how);
        assert_eq!(r.status(), 403, "{how}: sign-all");
        let r = cross(
            browser.post(server.url("/puppet-ca/v1/certificate_renewal")),
            how,
        );
        assert_eq!(r.status(), 403, "{how}: renewal");
        let r = cross(browser.post(server.url("/backups")), how);
        assert_eq!(r.status(), 403, "{how}: backup");
        let r = cross(
            browser.delete(server.url("/production/certificate_request/web1")),
            how,
        );
        assert_eq!(r.status(), 403, "{how}: reject");
    }
    assert_eq!(head("alice"), 404, "alice was signed from another site");
    assert_eq!(head("web1"), 404, "web1 was signed from another site");
    assert!(
        !backups.exists() || std::fs::read_dir(&backups).unwrap().next().is_none(),
        "a backup was written from another site"
    );
    // The admin's certificate was not renewed away.
    let r = browser.get(server.url("/status")).send().unwrap();
    assert_eq!(r.status(), 200);
    let who: serde_json::Value = r.json().unwrap();
    assert_eq!(who["caller"]["role"], "admin", "{who}");
    // Reads from anywhere, and the server's own pages, go through.
    let r = cross(
        browser.get(server.url("/production/certificate_requests/")),
        "form",
    );
    assert_eq!(r.status(), 200, "a read from another site");
    let own = format!("https://localhost:{}", server.port);
    let r = browser
        .post(server.url("/production/certificate/"))
        .header("Origin", own.as_str())
        .header("Sec-Fetch-Site", "same-origin")
        .header("Content-Type", "text/plain")
        .body("web1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "signed from the server's own page");
    // So do clients that say nothing of where they run.
    let r = browser
        .delete(server.url("/production/certificate_request/alice"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "the CLI's reject");
    assert_eq!(head("web1"), 200);
}

/// Fifth review, finding 5: serials are unique within an environment only, and every
/// serial certd serves is public, yet revocations were refused at the TLS layer by
/// serial alone, across environments. The back end an operator declares for a tenant
/// (here a `command` program whose CA the tenant runs) can return a certificate with
/// the production admin's serial; revoking it in the tenant then locked the admin out
/// of every connection. A revocation refuses certificates of its own issuing CA only.
#[test]
fn a_revocation_in_one_environment_refuses_no_certificate_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_key) = make_ca(dir.path(), "a tenant's own CA");
    let serial_file = dir.path().join("serial");
    let script = dir.path().join("sign.sh");
    write_program(
        &script,
        &format!(
            "#!/bin/sh\nset -e\ncat > {d}/req.pem\n\
             openssl x509 -req -in {d}/req.pem -CA {ca} -CAkey {key} -set_serial $(cat {serial}) -days 1 2>/dev/null\n",
            d = dir.path().display(),
            ca = ca.display(),
            key = ca_key.display(),
            serial = serial_file.display(),
        ),
    );
    let (api, _data) = Api::start(&format!(
        "{FAST_CONFIG}[environments.tenant]\nautosign = true\n\
         [environments.tenant.issuer]\ntype = \"command\"\nprogram = \"{}\"\nca_file = \"{}\"\ntimeout = \"10s\"\n",
        script.display(),
        ca.display()
    ));
    let (admin_pem, _) = admin(&api.server);
    let admin_serial = x509_field(&std::fs::read(admin_pem).unwrap(), "-serial");
    let admin_serial = admin_serial.trim_start_matches("serial=");
    std::fs::write(&serial_file, format!("0x{admin_serial}")).unwrap();

    let (csr, _) = csr_for("copycat");
    let r = api
        .admin
        .put(api.url("/tenant/certificate_request/copycat"))
        .body(csr)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while api.head("/tenant/certificate/copycat") != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let pem = api
        .anon
        .get(api.url("/tenant/certificate/copycat"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(
        x509_field(&pem, "-serial").trim_start_matches("serial="),
        admin_serial,
        "the tenant's CA did not copy the serial"
    );
    let r = api
        .admin
        .delete(api.url("/tenant/certificate/copycat"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(api.head("/tenant/certificate/copycat"), 410);

    // The admin's connection, and a new one, still act.
    let whoami = |c: &reqwest::blocking::Client| {
        let r = c
            .get(api.url("/status"))
            .send()
            .map_err(|e| e.to_string())?;
        let code = r.status().as_u16();
        let v: serde_json::Value = r.json().map_err(|e| e.to_string())?;
        Ok::<_, String>((code, v["caller"]["role"].clone()))
    };
    assert_eq!(
        whoami(&api.admin),
        Ok((200, "admin".into())),
        "the admin's open connection"
    );
    let (cert, key) = admin(&api.server);
    let fresh = client(&api.server, Some((&cert, &key)));
    assert_eq!(
        whoami(&fresh),
        Ok((200, "admin".into())),
        "a new connection of the admin"
    );
}

/// DoS review, finding 2: a CSR the policy refuses is kept, with an audit event naming
/// why. The reason named every extra alternative name (a 16 KB CSR of 1,000 names made
/// a 16 KB event and log line), and the same CSR sent again wrote, flushed and logged
/// it all again: one CSR replayed in a loop filled the disk and, on PostgreSQL, held
/// every writer behind its fsyncs. A reason names at most a few of what it lists, and
/// the same refused CSR sent again changes nothing.
#[test]
fn a_refused_csr_sent_again_writes_nothing_and_its_reason_is_bounded() {
    let (api, _dir) = Api::start(FAST_CONFIG);
    let sans: Vec<String> = (0..600).map(|i| format!("DNS:n{i}.example.com")).collect();
    let (csr, _) = csr_with(
        "flood",
        &["-addext", &format!("subjectAltName={}", sans.join(","))],
    );
    assert!(csr.len() > 10_000, "{}", csr.len());
    let events = || -> Vec<serde_json::Value> {
        let v: serde_json::Value = api
            .admin
            .get(api.url("/production/events?after=0&limit=1000"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let list = v
            .as_array()
            .cloned()
            .or_else(|| v["events"].as_array().cloned());
        list.unwrap_or_else(|| panic!("{v}"))
            .into_iter()
            .filter(|e| e["certname"] == "flood")
            .collect()
    };
    for _ in 0..3 {
        let r = api
            .anon
            .put(api.url("/production/certificate_request/flood"))
            .body(csr.clone())
            .send()
            .unwrap();
        let (code, rule) = problem_code(r);
        assert_eq!(
            (code, rule.as_str()),
            (400, "csr-subject-alt-names-not-allowed")
        );
    }
    let seen = events();
    assert_eq!(
        seen.len(),
        1,
        "one event for one CSR sent three times, not {}",
        seen.len()
    );
    let text = seen[0].to_string();
    assert!(text.len() < 2_000, "an event of {} bytes", text.len());
    // Still kept, and shown.
    let r = api
        .admin
        .get(api.url("/production/certificate_status/flood"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // A name too long to be one is not echoed whole either.
    let long = format!("Bad{}", "x".repeat(3000));
    let (csr, _) = csr_with(
        "longname",
        &[
            "-addext",
            &format!("subjectAltName=DNS:longname,DNS:{long}"),
        ],
    );
    let r = api
        .anon
        .put(api.url("/production/certificate_request/longname"))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = api
        .admin
        .get(api.url("/production/events?after=0&limit=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let text = v.to_string();
    assert!(
        text.contains("longname"),
        "{}",
        &text[..text.len().min(500)]
    );
    assert!(!text.contains(&long), "the whole name is in an event");

    // The same CSR refused for another reason once the policy changed is kept anew,
    // with that reason.
    let r = api
        .admin
        .put(api.url("/environments/flex"))
        .body(r#"{"allow_subject_alt_names": false}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let (csr, _) = csr_with(
        "both",
        &[
            "-addext",
            "subjectAltName=DNS:both,DNS:extra.example.com",
            "-addext",
            "1.3.6.1.4.1.34380.1.3.39=ASN1:UTF8String:true",
        ],
    );
    let submit = || {
        let r = api
            .admin
            .put(api.url("/flex/certificate_request/both"))
            .body(csr.clone())
            .send()
            .unwrap();
        problem_code(r)
    };
    let first = submit();
    let r = api
        .admin
        .put(api.url("/environments/flex"))
        .body(r#"{"allow_subject_alt_names": true}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let second = submit();
    assert_eq!(first.0, 400);
    assert_eq!(second.0, 400);
    assert_ne!(
        first.1, second.1,
        "the rule did not change: {first:?} {second:?}"
    );
    let status: serde_json::Value = api
        .admin
        .get(api.url("/flex/certificate_status/both"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kept = status["error_message"].as_str().unwrap_or_default();
    assert!(
        kept.contains("extensions that are not permitted"),
        "the kept reason is not the new one ({second:?}): {status}"
    );
}
