//! The Puppet face's wire behaviour (`/puppet-ca/v1`, `/status/v1`): status codes,
//! plain-text bodies and JSON shapes of Puppet Server, over real TLS. The real Puppet
//! clients are exercised in `puppet_clients.rs`.

use crate::common::*;
use serde_json::Value;

const CONFIG: &str = "[ca]\nkey_type = \"ec-p256\"\n";

fn p(api: &Api, path: &str) -> String {
    api.url(&format!("/puppet-ca/v1{path}"))
}

fn text(r: reqwest::blocking::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, r.text().unwrap())
}

#[test]
fn certificate_and_ca_bundle_with_if_modified_since() {
    let (api, _dir) = Api::start(CONFIG);
    let r = api
        .anon
        .get(p(&api, "/certificate/ca"))
        .header("accept", "text/plain")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-puppet-version"], "8.4.0");
    assert_eq!(r.headers()["content-type"], "text/plain");
    let modified = r.headers()["last-modified"].to_str().unwrap().to_owned();
    assert_eq!(
        r.bytes().unwrap().as_ref(),
        std::fs::read(api.server.chain()).unwrap().as_slice(),
        "byte for byte the stored bundle"
    );
    let r = api
        .anon
        .get(p(&api, "/certificate/ca"))
        .header("if-modified-since", &modified)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(
        api.anon
            .get(p(&api, "/certificate/ca"))
            .header("if-modified-since", "garbage")
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        api.anon
            .get(p(&api, "/certificate/ca"))
            .header("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")
            .send()
            .unwrap()
            .status(),
        200
    );

    assert_eq!(
        text(api.anon.get(p(&api, "/certificate/nobody")).send().unwrap()),
        (
            404,
            "text/plain; charset=utf-8".into(),
            "Could not find certificate nobody".into()
        )
    );
    let (pem, _) = api.issue("web1");
    let r = api.anon.get(p(&api, "/certificate/web1")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), pem.as_slice());
}

#[test]
fn crl_bundle_holds_the_environment_and_root_crls_and_answers_304() {
    let (api, dir) = Api::start(CONFIG);
    let r = api
        .anon
        .get(p(&api, "/certificate_revocation_list/ca"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let modified = r.headers()["last-modified"].to_str().unwrap().to_owned();
    // Sent as the two CRLs held, one after the other, with their length announced.
    let length = r.headers()["content-length"].to_str().unwrap().to_owned();
    assert!(!r.headers().contains_key("transfer-encoding"));
    let body = r.text().unwrap();
    assert_eq!(length, body.len().to_string());
    assert_eq!(
        body.matches("BEGIN X509 CRL").count(),
        2,
        "issuing CA's CRL, then the root's"
    );
    // Each verifies against its issuer: split and check with openssl.
    let crls: Vec<&str> = body.split_inclusive("-----END X509 CRL-----\n").collect();
    let chain = api.server.chain();
    for (i, crl) in crls.iter().enumerate() {
        let f = dir.path().join(format!("crl{i}.pem"));
        std::fs::write(&f, crl).unwrap();
        let (ok, out, err) = run(std::process::Command::new("openssl")
            .args(["crl", "-noout", "-issuer", "-CAfile"])
            .arg(&chain)
            .arg("-in")
            .arg(&f));
        assert!(ok && err.contains("verify OK"), "{out}{err}");
        assert!(
            out.contains(if i == 0 {
                "certd CA: production"
            } else {
                "certd Root CA"
            }),
            "{out}"
        );
    }
    assert_eq!(
        api.anon
            .get(p(&api, "/certificate_revocation_list/ca"))
            .header("if-modified-since", &modified)
            .send()
            .unwrap()
            .status(),
        304
    );
}

#[test]
fn csr_submission_follows_puppets_duplicate_rule_and_messages() {
    let (api, _dir) = Api::start(CONFIG);
    let put = |name: &str, body: Vec<u8>| {
        text(
            api.anon
                .put(p(&api, &format!("/certificate_request/{name}")))
                .header("content-type", "text/plain")
                .body(body)
                .send()
                .unwrap(),
        )
    };
    let (csr, _) = csr_for("agent-b");
    assert_eq!(
        put("agent-b", csr.clone()),
        (200, "text/plain; charset=utf-8".into(), String::new())
    );
    // A second CSR while one is pending: 400, which the agent takes as "already submitted".
    assert_eq!(
        put("agent-b", csr_for("agent-b").0).1,
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        put("agent-b", csr_for("agent-b").0),
        (
            400,
            "text/plain; charset=utf-8".into(),
            "agent-b already has a requested certificate; ignoring certificate request".into()
        )
    );
    let r = api
        .anon
        .get(p(&api, "/certificate_request/agent-b"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        text(
            api.anon
                .get(p(&api, "/certificate_request/nobody"))
                .send()
                .unwrap()
        )
        .2,
        "Could not find certificate_request nobody"
    );
    // Signed: "already has a signed certificate"; revoked: "a revoked certificate".
    assert_eq!(api.sign("agent-b"), 201);
    assert_eq!(
        put("agent-b", csr_for("agent-b").0).2,
        "agent-b already has a signed certificate; ignoring certificate request"
    );
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate/agent-b"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        put("agent-b", csr_for("agent-b").0).2,
        "agent-b already has a revoked certificate; ignoring certificate request"
    );
    // Puppet's words for broken rules.
    assert_eq!(
        put("other", csr).2,
        "Instance name \"agent-b\" does not match requested key \"other\""
    );
    assert_eq!(
        put("Upper", csr_for("Upper").0).2,
        "Certificate names must be lower case."
    );
    assert_eq!(put("fixture-san", fixture("csr/san-extra.csr")).2, "CSR 'fixture-san' contains extra subject alternative names (DNS:other.example.com), which are disallowed. To allow subject alternative names, set allow-subject-alt-names to true in your ca.conf file. Then restart the puppetserver and try signing this certificate again.");
    assert_eq!(put("fixture-cli", fixture("csr/pp-cli-auth.csr")).2, "CSR 'fixture-cli' contains an authorization extension, which is disallowed. To allow authorization extensions, set allow-authorization-extensions to true in your ca.conf file. Then restart the puppetserver and try signing this certificate again.");
    assert_eq!(
        put("fixture-ku", fixture("csr/keyusage-ext.csr")).2,
        "Found extensions that are not permitted: 2.5.29.15"
    );
    assert_eq!(
        put("fixture-badsig", fixture("csr/bad-signature.csr")).2,
        "CSR contains a public key that does not correspond to the signing key"
    );
    // Deleting a request is for admins only (Puppet's default rules deny it to all).
    let r = api
        .anon
        .delete(p(&api, "/certificate_request/x"))
        .send()
        .unwrap();
    assert_eq!(text(r), (403, "text/plain; charset=utf-8".into(), "Forbidden request: /puppet-ca/v1/certificate_request/x (method :delete). Please see the server logs for details.".to_owned()));
}

#[test]
fn certificate_status_put_checks_the_body_in_puppets_order() {
    let (api, _dir) = Api::start(CONFIG);
    let put = |name: &str, ctype: Option<&str>, body: &str| {
        let mut r = api
            .admin
            .put(p(&api, &format!("/certificate_status/{name}")))
            .body(body.to_owned());
        if let Some(c) = ctype {
            r = r.header("content-type", c);
        }
        let (s, _, b) = text(r.send().unwrap());
        (s, b)
    };
    let j = Some("application/json");
    assert_eq!(put("x", j, ""), (400, "Empty request body.".into()));
    assert_eq!(
        put("x", j, "nope"),
        (400, "Request body is not JSON.".into())
    );
    assert_eq!(
        put("x", j, "{}"),
        (400, "Missing required parameter \"desired_state\"".into())
    );
    assert_eq!(
        put("x", j, r#"{"desired_state":"frozen"}"#),
        (
            400,
            "State frozen invalid; Must specify desired state of 'signed' or 'revoked' for host x."
                .into()
        )
    );
    assert_eq!(
        put("x", j, r#"{"desired_state":"signed","cert_ttl":"1d"}"#),
        (
            400,
            "cert_ttl specified for host x must be an integer, not \"1d\"".into()
        )
    );
    assert_eq!(
        put("x", Some("text/html"), r#"{"desired_state":"signed"}"#),
        (415, "Unsupported media type.".into())
    );
    assert_eq!(
        put("x", j, r#"{"desired_state":"signed"}"#),
        (404, "Invalid certificate subject.".into())
    );
    assert_eq!(api.submit("n1", &csr_for("n1").0), 201);
    assert_eq!(
        put("n1", j, r#"{"desired_state":"revoked"}"#),
        (
            409,
            "Cannot revoke certificate for host n1 without a signed certificate".into()
        )
    );
    assert_eq!(
        put(
            "n1",
            Some("application/json; charset=UTF-8"),
            r#"{"desired_state":"signed","cert_ttl":3600}"#
        ),
        (204, String::new())
    );
    assert_eq!(
        put("n1", None, r#"{"desired_state":"signed"}"#),
        (
            409,
            "Cannot sign certificate for host n1 without a certificate request".into()
        )
    );
    assert_eq!(
        put("n1", j, r#"{"desired_state":"revoked"}"#),
        (204, String::new())
    );
    assert_eq!(
        put("n1", j, r#"{"desired_state":"revoked"}"#),
        (204, String::new()),
        "revoking twice is a no-op"
    );

    // GET: Puppet's object, with a JSON integer serial and Puppet's dates.
    let r = api
        .admin
        .get(p(&api, "/certificate_status/n1"))
        .header("accept", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let raw = r.text().unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["state"], "revoked");
    assert_eq!(v["fingerprint"], v["fingerprints"]["SHA256"]);
    assert!(
        v["not_after"].as_str().unwrap().ends_with("UTC")
            && !v["not_after"].as_str().unwrap().contains('Z')
    );
    assert!(
        raw.contains("\"serial_number\":")
            && raw
                .split("\"serial_number\":")
                .nth(1)
                .unwrap()
                .starts_with(|c: char| c.is_ascii_digit()),
        "{raw}"
    );
    assert_eq!(
        api.admin
            .get(p(&api, "/certificate_status/n1"))
            .header("accept", "text/pson")
            .send()
            .unwrap()
            .headers()["content-type"],
        "text/pson"
    );
    assert_eq!(
        api.admin
            .get(p(&api, "/certificate_status/n1"))
            .header("accept", "image/png")
            .send()
            .unwrap()
            .status(),
        406
    );
    assert_eq!(
        api.anon
            .get(p(&api, "/certificate_status/n1"))
            .send()
            .unwrap()
            .status(),
        403
    );
    // DELETE: 204, then 404.
    assert_eq!(
        api.admin
            .delete(p(&api, "/certificate_status/n1"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        api.admin
            .delete(p(&api, "/certificate_status/n1"))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn statuses_clean_expirations_sign_and_status_service() {
    let (api, _dir) = Api::start(CONFIG);
    for n in ["a1", "a2", "a3"] {
        assert_eq!(api.submit(n, &csr_for(n).0), 201);
    }
    api.issue("s1");
    // Setup's own certificates (listed too) are left out of what this test compares.
    let own = own_names(&api.server);
    let names = |q: &str| -> Vec<String> {
        let v: Vec<Value> = api
            .admin
            .get(p(&api, &format!("/certificate_statuses/any_key{q}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v.iter()
            .filter(|o| !own.iter().any(|n| o["name"] == n.as_str()))
            .map(|o| {
                format!(
                    "{}:{}",
                    o["name"].as_str().unwrap(),
                    o["state"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        names("?state=requested"),
        ["a1:requested", "a2:requested", "a3:requested"]
    );
    assert_eq!(
        names(""),
        ["a1:requested", "a2:requested", "a3:requested", "s1:signed"]
    );
    assert_eq!(names("?state=signed&environment=production"), ["s1:signed"]);
    assert_eq!(
        text(
            api.admin
                .get(p(&api, "/certificate_statuses/"))
                .send()
                .unwrap()
        )
        .2,
        "Missing URL Segment"
    );

    // Bulk sign.
    let r = api
        .admin
        .post(p(&api, "/sign"))
        .json(&serde_json::json!({"certnames": ["a1", "nope", "s1"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A name with a certificate and no request has no CSR, as Puppet Server says.
    assert_eq!(
        r.json::<Value>().unwrap(),
        serde_json::json!({"signed": ["a1"], "no-csr": ["nope", "s1"], "signing-errors": []})
    );
    let r = api.admin.post(p(&api, "/sign")).body("{}").send().unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().unwrap()["kind"], "schema-violation");
    let r = api
        .admin
        .post(p(&api, "/sign/all"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(
        r.json::<Value>().unwrap(),
        serde_json::json!({"signed": ["a2", "a3"], "no-csr": [], "signing-errors": []})
    );
    assert_eq!(
        api.anon
            .post(p(&api, "/sign/all"))
            .body("{}")
            .send()
            .unwrap()
            .status(),
        403
    );

    // Clean.
    let clean = |body: &str| {
        text(
            api.admin
                .put(p(&api, "/clean"))
                .body(body.to_owned())
                .send()
                .unwrap(),
        )
    };
    assert_eq!(
        clean(r#"{"certnames":["a1","a2"]}"#).2,
        "Successfully cleaned all certs."
    );
    assert_eq!(
        clean(r#"{"certnames":["a3","missing"]}"#).2,
        "The following certs do not exist and cannot be revoked: [\"missing\"]"
    );
    assert_eq!(
        clean(r#"{"certnames":["a3"],"async":true}"#),
        (
            400,
            "text/plain; charset=utf-8".into(),
            "Async mode is not currently supported.".into()
        )
    );
    assert_eq!(
        clean("{}").2,
        "Missing required key: 'certnames'. Please supply the list of certs you want to clean."
    );
    assert_eq!(clean("x").2, "Request body is not JSON.");
    assert_eq!(api.head("/production/certificate/a1"), 404);

    // Expirations: any authenticated caller.
    assert_eq!(
        api.anon
            .get(p(&api, "/expirations"))
            .send()
            .unwrap()
            .status(),
        403
    );
    let v: Value = api
        .admin
        .get(p(&api, "/expirations"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(v["ca-certs"]["certd CA: production"]
        .as_str()
        .unwrap()
        .ends_with("UTC"));
    assert_eq!(v["ca-certs"].as_object().unwrap().len(), 2);
    assert_eq!(v["crls"].as_object().unwrap().len(), 2);

    // Status service.
    assert_eq!(
        api.anon
            .get(api.url("/status/v1/simple"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "running"
    );
    assert_eq!(
        api.anon
            .get(api.url("/status/v1/simple/ca"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "running"
    );
    let v: Value = api
        .anon
        .get(api.url("/status/v1/services"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["ca"]["service_version"], "8.4.0");
    // As Puppet's auth.conf is checked before routing, an unknown route under the face
    // is refused by the final deny-all rule, even for an admin.
    assert_eq!(
        api.admin
            .get(p(&api, "/nope"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "Forbidden request: /puppet-ca/v1/nope (method :get). Please see the server logs for details."
    );
}

#[test]
fn autosign_globs_sign_matching_names_on_both_faces() {
    let (api, _dir) = Api::start(&format!(
        "{CONFIG}[environments.production]\nautosign = [\"*.dc1.example.com\", \"exact-node\"]\n"
    ));
    let put = |name: &str| {
        api.anon
            .put(p(&api, &format!("/certificate_request/{name}")))
            .body(csr_for(name).0)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(put("web.dc1.example.com"), 200);
    assert_eq!(api.head("/production/certificate/web.dc1.example.com"), 200);
    assert_eq!(put("dc1.example.com"), 200);
    assert_eq!(
        api.head("/production/certificate/dc1.example.com"),
        200,
        "*.domain also matches the domain"
    );
    assert_eq!(put("exact-node"), 200);
    assert_eq!(api.head("/production/certificate/exact-node"), 200);
    assert_eq!(put("other.example.com"), 200);
    assert_eq!(api.head("/production/certificate/other.example.com"), 404);
    assert_eq!(
        api.head("/production/certificate_request/other.example.com"),
        200,
        "left pending"
    );
    // The native face autosigns too.
    assert_eq!(
        api.submit("db.dc1.example.com", &csr_for("db.dc1.example.com").0),
        201
    );
    assert_eq!(api.head("/production/certificate/db.dc1.example.com"), 200);
}

#[test]
fn autosign_executables_say_yes_no_or_are_killed_at_the_timeout() {
    use std::os::unix::fs::PermissionsExt;
    let scripts = tempfile::tempdir().unwrap();
    let script = |n: &str, body: &str| {
        let path = scripts.path().join(n);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let marker = scripts.path().join("hang-finished");
    let cases = [
        ("yes", script("yes", "read -r first; [ \"$first\" = '-----BEGIN CERTIFICATE REQUEST-----' ] && [ \"$1\" = node-yes ]"), "node-yes", true),
        ("no", script("no", "cat >/dev/null; exit 1"), "node-no", false),
        ("hang", script("hang", &format!("sleep 30; touch {}", marker.display())), "node-hang", false),
    ];
    for (what, path, name, signed) in cases {
        let config = format!(
            "{CONFIG}[environments.production]\nautosign = {:?}\nautosign_timeout = \"1s\"\n",
            path.to_str().unwrap()
        );
        let (api, _dir) = Api::start(&config);
        let started = std::time::Instant::now();
        let r = api
            .anon
            .put(p(&api, &format!("/certificate_request/{name}")))
            .body(csr_for(name).0)
            .send()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(
            api.head(&format!("/production/certificate/{name}")),
            if signed { 200 } else { 404 },
            "{what}"
        );
        assert_eq!(
            api.head(&format!("/production/certificate_request/{name}")),
            if signed { 404 } else { 200 },
            "{what}: left pending"
        );
        if what == "hang" {
            assert!(
                took >= std::time::Duration::from_secs(1)
                    && took < std::time::Duration::from_secs(10),
                "{took:?}"
            );
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !marker.exists(),
        "the hanging policy was killed, with what it started"
    );
}

#[test]
fn crls_are_reissued_before_they_expire() {
    let (api, _dir) = Api::start(&format!("{CONFIG}crl_next_update = \"4s\"\n"));
    let number = |api: &Api| -> String {
        let r = api
            .anon
            .get(api.url("/production/certificate_revocation_list/ca"))
            .send()
            .unwrap();
        r.headers()["etag"].to_str().unwrap().to_owned()
    };
    let first = number(&api);
    // Re-issued past half its life (2 s), by the maintenance pass (every second): poll.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut later = number(&api);
    while later == first && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(100));
        later = number(&api);
    }
    assert_ne!(first, later, "re-issued by itself");
    // The Puppet bundle's CRLs are all current: nextUpdate in the future.
    let body = api
        .anon
        .get(p(&api, "/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, crl) in body.split_inclusive("-----END X509 CRL-----\n").enumerate() {
        let f = dir.path().join(format!("c{i}.pem"));
        std::fs::write(&f, crl).unwrap();
        let (_, out, _) = run(std::process::Command::new("openssl")
            .args([
                "crl",
                "-noout",
                "-nextupdate",
                "-dateopt",
                "iso_8601",
                "-in",
            ])
            .arg(&f));
        let date = out.trim().split('=').nth(1).unwrap().trim_end_matches('Z');
        let next = time::PrimitiveDateTime::parse(
            date,
            &time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        )
        .unwrap()
        .assume_utc();
        assert!(
            next > time::OffsetDateTime::now_utc(),
            "CRL {i} is current: {out}"
        );
    }
}

#[test]
fn agents_renew_their_own_certificate() {
    // Renewed at once, not a tenth of the certificate's life later.
    let (api, dir) = Api::start(&format!(
        "{CONFIG}[environments.production]\nmin_renewal_age = \"0s\"\n"
    ));
    let url = p(&api, "/certificate_renewal");
    assert_eq!(
        text(api.anon.post(&url).body("").send().unwrap()),
        (
            403,
            "text/plain; charset=utf-8".into(),
            "Forbidden request: /puppet-ca/v1/certificate_renewal (method :post). Please see the server logs for details.".into()
        ),
        "Puppet's rule for renewal admits authenticated callers only"
    );
    let (pem, key) = api.issue("renew1");
    let old_cert = dir.path().join("old.pem");
    let key_file = dir.path().join("k.pem");
    std::fs::write(&old_cert, &pem).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let agent = client(&api.server, Some((&old_cert, &key_file)));
    let r = agent
        .post(&url)
        .header("content-type", "text/plain")
        .body("")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let new_pem = r.text().unwrap();
    let new_cert = dir.path().join("new.pem");
    std::fs::write(&new_cert, &new_pem).unwrap();
    let openssl = |args: &[&str], f: &std::path::Path| {
        run(std::process::Command::new("openssl").args(args).arg(f)).1
    };
    // Same key and subject, new serial, 90 days, verifies; the store holds the new one.
    assert_eq!(
        openssl(&["x509", "-noout", "-pubkey", "-in"], &old_cert),
        openssl(&["x509", "-noout", "-pubkey", "-in"], &new_cert)
    );
    assert_eq!(
        openssl(&["x509", "-noout", "-subject", "-in"], &new_cert).trim(),
        "subject=CN = renew1"
    );
    assert_ne!(
        openssl(&["x509", "-noout", "-serial", "-in"], &old_cert),
        openssl(&["x509", "-noout", "-serial", "-in"], &new_cert)
    );
    let (ok, out, err) = run(std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(api.server.chain())
        .arg(&new_cert));
    assert!(ok, "{out}{err}");
    let st: Value = api
        .admin
        .get(api.url("/production/certificate_status/renew1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let nb = time::OffsetDateTime::parse(
        st["not_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let na = time::OffsetDateTime::parse(
        st["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((na - nb).whole_seconds(), 90 * 86_400 + 86_400);
    assert_eq!(
        api.anon
            .get(api.url("/production/certificate/renew1"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        new_pem
    );
    // The old certificate is revoked (superseded) by the renewal, even on the connection
    // it opened before: it cannot be renewed again, nor do anything else.
    let r = agent.post(&url).body("").send().unwrap();
    assert_eq!(
        text(r),
        (
            403,
            "text/plain; charset=utf-8".into(),
            "Forbidden request: /puppet-ca/v1/certificate_renewal (method :post). Please see the server logs for details.".into()
        )
    );
    let renewed = client(&api.server, Some((&new_cert, &key_file)));
    assert_eq!(renewed.post(&url).body("").send().unwrap().status(), 200);

    // Switched off: 404, as Puppet Server answers by default.
    let (api, dir) = Api::start(&format!(
        "{CONFIG}[environments.production]\nallow_auto_renewal = false\n"
    ));
    let (pem, key) = api.issue("renew2");
    std::fs::write(dir.path().join("c.pem"), &pem).unwrap();
    std::fs::write(dir.path().join("k.pem"), &key).unwrap();
    let agent = client(
        &api.server,
        Some((&dir.path().join("c.pem"), &dir.path().join("k.pem"))),
    );
    assert_eq!(
        text(
            agent
                .post(p(&api, "/certificate_renewal"))
                .body("")
                .send()
                .unwrap()
        ),
        (404, "text/plain; charset=utf-8".into(), "Not Found".into())
    );
}

#[test]
fn upstream_crls_replace_the_roots_when_newer_and_signed_by_it() {
    use certd::ca::{build_crl, CaPair, CrlEntry, CrlParams, RevocationReason, SerialNumber};
    let (api, dir) = Api::start(CONFIG);
    let url = p(&api, "/certificate_revocation_list");
    let put = |client: &reqwest::blocking::Client, body: Vec<u8>| {
        text(client.put(&url).body(body).send().unwrap())
    };
    assert_eq!(put(&api.anon, b"x".to_vec()).0, 403);
    assert_eq!(
        put(&api.admin, b"garbage".to_vec()),
        (
            400,
            "text/plain; charset=utf-8".into(),
            "No valid CRLs submitted.".into()
        )
    );

    // The issuing CA's own CRL is never replaced.
    let own = api
        .anon
        .get(api.url("/production/certificate_revocation_list/ca"))
        .send()
        .unwrap();
    let etag = own.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        put(&api.admin, own.bytes().unwrap().to_vec()).2,
        "Successfully updated CRLs."
    );
    assert_eq!(
        api.anon
            .get(api.url("/production/certificate_revocation_list/ca"))
            .send()
            .unwrap()
            .headers()["etag"]
            .to_str()
            .unwrap(),
        etag
    );

    // A newer root CRL, made offline with the root key, revoking an (imaginary) issuing CA.
    let data = &api.server.dir;
    let root = CaPair::from_pem(
        &std::fs::read(data.join("ca/root.pem")).unwrap(),
        &std::fs::read(data.join("ca/root.key")).unwrap(),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let crl_pem = |number: u64| {
        let entry = CrlEntry {
            serial: SerialNumber::from_hex("ABCD01").unwrap(),
            revoked_at: now - 60,
            reason: RevocationReason::CaCompromise,
        };
        let der = build_crl(
            &root,
            &[entry],
            &CrlParams {
                number,
                this_update: now - 60,
                next_update: now + 86_400,
            },
        )
        .unwrap();
        der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der)
            .unwrap()
            .into_bytes()
    };
    assert_eq!(put(&api.admin, crl_pem(50)).2, "Successfully updated CRLs.");
    assert_eq!(
        put(&api.admin, crl_pem(3)).2,
        "Successfully updated CRLs.",
        "an older one changes nothing"
    );
    let bundle = api
        .anon
        .get(p(&api, "/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let root_crl = bundle
        .split_inclusive("-----END X509 CRL-----\n")
        .nth(1)
        .unwrap();
    let f = dir.path().join("root-crl.pem");
    std::fs::write(&f, root_crl).unwrap();
    let (_, out, _) = run(std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&f));
    assert!(
        out.contains("X509v3 CRL Number: \n                50"),
        "{out}"
    );
    assert!(
        out.contains("Serial Number: ABCD01") && out.contains("CA Compromise"),
        "{out}"
    );

    // A CRL from a CA outside the chain is ignored.
    let stranger = CaPair::new_root(
        "stranger",
        certd::ca::KeyType::EcP256,
        86_400,
        &certd::ca::SystemClock,
        &certd::ca::OsRng,
    )
    .unwrap();
    let der = build_crl(
        &stranger,
        &[],
        &CrlParams {
            number: 99,
            this_update: now,
            next_update: now + 60,
        },
    )
    .unwrap();
    let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der).unwrap();
    assert_eq!(put(&api.admin, pem.into_bytes()).0, 200);
    let again = api
        .anon
        .get(p(&api, "/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(again, bundle);
}

#[test]
fn an_uploaded_root_crl_keeps_its_entries_when_certd_reissues_it() {
    use certd::ca::{build_crl, CaPair, CrlEntry, CrlParams, RevocationReason, SerialNumber};
    let (api, dir) = Api::start(&format!("{CONFIG}crl_next_update = \"4s\"\n"));
    let data = &api.server.dir;
    let root = CaPair::from_pem(
        &std::fs::read(data.join("ca/root.pem")).unwrap(),
        &std::fs::read(data.join("ca/root.key")).unwrap(),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let entry = CrlEntry {
        serial: SerialNumber::from_hex("ABCD02").unwrap(),
        revoked_at: now - 60,
        reason: RevocationReason::CaCompromise,
    };
    // Past half its life already, so the next maintenance pass re-issues it.
    let der = build_crl(
        &root,
        &[entry],
        &CrlParams {
            number: 50,
            this_update: now - 60,
            next_update: now + 10,
        },
    )
    .unwrap();
    let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der).unwrap();
    assert_eq!(
        api.admin
            .put(p(&api, "/certificate_revocation_list"))
            .body(pem)
            .send()
            .unwrap()
            .status(),
        200
    );
    // Re-issued by the next maintenance pass (every second): poll until the root's CRL
    // (the bundle's second) is no longer the uploaded one.
    let root_der = |bundle: &str| -> Vec<u8> {
        let pem = bundle
            .split_inclusive("-----END X509 CRL-----\n")
            .nth(1)
            .unwrap();
        openssl::x509::X509Crl::from_pem(pem.as_bytes())
            .unwrap()
            .to_der()
            .unwrap()
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let bundle = loop {
        let bundle = api
            .anon
            .get(p(&api, "/certificate_revocation_list/ca"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        if root_der(&bundle) != der || std::time::Instant::now() >= until {
            break bundle;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let f = dir.path().join("root-crl.pem");
    std::fs::write(
        &f,
        bundle
            .split_inclusive("-----END X509 CRL-----\n")
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    let (_, out, _) = run(std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&f));
    assert!(
        !out.contains("CRL Number: \n                50\n"),
        "re-issued: {out}"
    );
    assert!(
        out.contains("Serial Number: ABCD02"),
        "the uploaded entry is kept: {out}"
    );
}

#[test]
fn large_status_listings_stream_page_by_page_with_filters() {
    // Pages of 3 records: 4 requests, 8 certificates (3 of them revoked) span several
    // reads of each source, and `state=` filters leave some reads empty.
    let (api, _dir) = Api::start(&format!("{CONFIG}[limits]\nstream_page = 3\n"));
    let mut want: Vec<(String, &str)> = Vec::new();
    for i in 0..4 {
        let n = format!("req-{i}");
        assert_eq!(api.submit(&n, &csr_for(&n).0), 201);
        want.push((n, "requested"));
    }
    let mut certs = Vec::new();
    for i in 0..8 {
        let n = format!("node-{i}");
        api.issue(&n);
        let state = if i % 3 == 1 { "revoked" } else { "signed" };
        if state == "revoked" {
            let r = api
                .admin
                .put(p(&api, &format!("/certificate_status/{n}")))
                .header("Content-Type", "text/pson")
                .body(r#"{"desired_state":"revoked"}"#)
                .send()
                .unwrap();
            assert_eq!(r.status(), 204);
        }
        certs.push((n, state));
    }
    // Setup's own certificates are listed with the others.
    certs.extend(own_names(&api.server).into_iter().map(|n| (n, "signed")));
    certs.sort();
    want.extend(certs);
    let list = |q: &str| {
        let r = api
            .admin
            .get(p(&api, &format!("/certificate_statuses/any{q}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let chunked = r.headers().get("content-length").is_none();
        let v: Vec<Value> = r.json().unwrap();
        let got: Vec<(String, String)> = v
            .iter()
            .map(|o| {
                (
                    o["name"].as_str().unwrap().to_owned(),
                    o["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (got, chunked)
    };
    let expect = |state: Option<&str>| -> Vec<(String, String)> {
        want.iter()
            .filter(|(_, s)| state.is_none_or(|x| x == *s))
            .map(|(n, s)| (n.clone(), s.to_string()))
            .collect()
    };
    let (all, chunked) = list("");
    assert_eq!(all, expect(None));
    assert!(chunked, "a listing longer than a page is streamed");
    for state in ["requested", "signed", "revoked"] {
        assert_eq!(
            list(&format!("?state={state}")).0,
            expect(Some(state)),
            "{state}"
        );
    }
    // Every certificate's object is whole (Puppet's field set), streamed or not.
    let r: Vec<Value> = api
        .admin
        .get(p(&api, "/certificate_statuses/any?state=revoked"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for o in &r {
        assert!(o["serial_number"].is_u64() || o["serial_number"].is_number());
        assert!(o["not_after"].as_str().unwrap().ends_with("UTC"));
        assert_eq!(o["fingerprint"], o["fingerprints"]["SHA256"]);
    }
}

#[test]
fn a_streamed_listing_that_fails_after_its_first_page_is_cut_short() {
    // Pages of 3: a record past the first page that does not decode. The answer has
    // begun (200), so the listing can only end the connection before the array's end:
    // the client sees a listing it cannot take for whole, never a short one that parses.
    let config = format!("{CONFIG}[limits]\nstream_page = 3\n");
    let (api, dir) = Api::start(&config);
    for i in 0..8 {
        api.issue(&format!("node-{i}"));
    }
    let data = api.server.dir.clone();
    api.server.terminate();
    {
        let db = sled::open(data.join("store")).unwrap();
        let certs = db.open_tree("env/production/certificates").unwrap();
        assert!(certs
            .insert("node-7", &b"not a record"[..])
            .unwrap()
            .is_some());
        db.flush().unwrap();
    }
    let server = Server::start(dir.path(), &config);
    let api = Api::of(server);
    let r = api
        .admin
        .get(p(&api, "/certificate_statuses/any"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Vec<Value>>().is_err(),
        "a listing cut short parsed"
    );
    let log = api.server.stderr_with(
        "status listing ended early",
        std::time::Duration::from_secs(10),
    );
    assert!(log.contains("status listing ended early"), "{log}");
    // The server goes on answering.
    let r = api.anon.get(api.server.url("/status")).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn bulk_clean_of_hundreds_of_names_spans_store_batches_and_puts_every_serial_on_the_crl() {
    // 600 names (the store takes a few hundred per transaction): three certificates, one
    // already revoked, one named twice in different batches; a pending request (left
    // alone, as on Puppet Server); a name that does not parse; the rest unknown.
    let (api, dir) = Api::start(CONFIG);
    let mut serials = Vec::new();
    for n in ["bulk-0", "bulk-1", "bulk-2"] {
        let (pem, _) = api.issue(n);
        let f = dir.path().join(format!("{n}.pem"));
        std::fs::write(&f, pem).unwrap();
        let out = run(std::process::Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(&f))
        .1;
        serials.push(out.trim().trim_start_matches("serial=").to_owned());
    }
    let r = api
        .admin
        .delete(api.url("/production/certificate/bulk-1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(api.submit("pending", &csr_for("pending").0), 201);
    let mut names: Vec<String> = (0..600).map(|i| format!("gone-{i}")).collect();
    names[0] = "bulk-0".into();
    names[50] = "Not A Name!".into();
    names[100] = "pending".into();
    names[255] = "bulk-1".into();
    names[300] = "bulk-2".into();
    names[599] = "bulk-2".into();
    let r = api
        .admin
        .put(p(&api, "/clean"))
        .body(serde_json::json!({ "certnames": names }).to_string())
        .send()
        .unwrap();
    let missing: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 255, 300].contains(i))
        .map(|(_, n)| format!("{n:?}"))
        .collect();
    assert_eq!(
        text(r),
        (
            200,
            "text/plain; charset=utf-8".into(),
            format!(
                "The following certs do not exist and cannot be revoked: [{}]",
                missing.join(" ")
            )
        )
    );
    for n in ["bulk-0", "bulk-1", "bulk-2"] {
        assert_eq!(api.head(&format!("/production/certificate/{n}")), 404);
    }
    let r = api
        .admin
        .get(api.url("/production/certificate_request/pending"))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a request without a certificate is left alone"
    );
    // Every serial is on the CRL, read by openssl.
    let crl = dir.path().join("crl.pem");
    std::fs::write(
        &crl,
        api.anon
            .get(p(&api, "/certificate_revocation_list/ca"))
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    )
    .unwrap();
    let (ok, listed, err) = run(std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&crl));
    assert!(ok, "{err}");
    assert_eq!(listed.matches("Serial Number:").count(), 3, "{listed}");
    for s in &serials {
        assert!(
            listed.contains(&format!("Serial Number: {s}")),
            "{s} in {listed}"
        );
    }
    // The audit log has one cleaned event per certificate.
    let events: Vec<Value> = api
        .admin
        .get(api.url("/production/events?limit=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let cleaned: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "cleaned")
        .map(|e| e["certname"].as_str().unwrap())
        .collect();
    assert_eq!(cleaned, ["bulk-0", "bulk-1", "bulk-2"]);
}

/// Conformance review, findings 1–3: a CSR the policy refused at submission is kept and
/// listed as requested, as Puppet Server keeps it; so it is shown whole (its CSR, its
/// alternative names with the certname, the authorization extensions it asks for, which
/// an admin must see before anything else), and signing it says why it cannot be signed
/// (409 with the validation message), not that there is no such request.
#[test]
fn a_refused_csr_is_shown_and_answered_as_puppet_server_does() {
    let (api, _dir) = Api::start(CONFIG);
    let (csr, _) = csr_with(
        "r1",
        &[
            "-addext",
            "subjectAltName=DNS:r1,DNS:extra.example.com",
            "-addext",
            "1.3.6.1.4.1.34380.1.3.39=ASN1:UTF8String:true",
        ],
    );
    let r = api
        .anon
        .put(p(&api, "/certificate_request/r1"))
        .body(csr.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let status: Value = api
        .admin
        .get(p(&api, "/certificate_status/r1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["state"], "requested", "{status}");
    assert_eq!(
        status["dns_alt_names"],
        serde_json::json!(["DNS:r1", "DNS:extra.example.com"]),
        "{status}"
    );
    assert_eq!(
        status["authorization_extensions"],
        serde_json::json!({"pp_cli_auth": "true"}),
        "{status}"
    );
    let (code, _, pem) = text(
        api.anon
            .get(p(&api, "/certificate_request/r1"))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 200, "{pem}");
    assert_eq!(
        openssl::x509::X509Req::from_pem(pem.as_bytes())
            .unwrap()
            .to_der()
            .unwrap(),
        openssl::x509::X509Req::from_pem(&csr)
            .unwrap()
            .to_der()
            .unwrap()
    );
    let (code, _, said) = text(
        api.admin
            .put(p(&api, "/certificate_status/r1"))
            .header("Content-Type", "application/json")
            .body(r#"{"desired_state":"signed"}"#)
            .send()
            .unwrap(),
    );
    assert_eq!(code, 409, "{said}");
    assert!(said.contains("which are disallowed"), "{said}");
    let r = api
        .admin
        .post(p(&api, "/sign"))
        .json(&serde_json::json!({"certnames": ["r1"]}))
        .send()
        .unwrap();
    assert_eq!(
        r.json::<Value>().unwrap(),
        serde_json::json!({"signed": [], "no-csr": [], "signing-errors": ["r1"]})
    );
    assert_eq!(api.head("/production/certificate/r1"), 404);
    // A sweep reports it too, as it cannot be signed.
    let r = api
        .admin
        .post(p(&api, "/sign/all"))
        .body("{}")
        .send()
        .unwrap();
    let swept: Value = r.json().unwrap();
    assert!(
        swept["signing-errors"]
            .as_array()
            .unwrap()
            .contains(&"r1".into()),
        "{swept}"
    );

    // What an anonymous submitter wrote is shown with its control characters escaped:
    // the CLI prints these values on the admin's terminal.
    let (csr, _) = csr_with(
        "r2",
        &[
            "-addext",
            "1.3.6.1.4.1.34380.1.3.13=ASN1:FORMAT:UTF8,UTF8String:ops\u{1b}[2J\u{202e}x",
        ],
    );
    let r = api
        .anon
        .put(p(&api, "/certificate_request/r2"))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let status: Value = api
        .admin
        .get(p(&api, "/certificate_status/r2"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        status["authorization_extensions"]["pp_auth_role"], "ops\\u{1b}[2J\\u{202e}x",
        "{status}"
    );
}

/// Conformance review, finding 6: every answer of the face carries `X-Puppet-Version`,
/// the refusals of the rules (made before routing) included, and a refusal names the
/// path without its query, as trapperkeeper's does.
#[test]
fn refusals_of_the_rules_are_answered_as_puppet_server_does() {
    let (api, _dir) = Api::start(CONFIG);
    let r = api
        .anon
        .get(p(&api, "/certificate_statuses/any?state=signed"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()
            .get("x-puppet-version")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("8.4.0".to_owned())
    );
    assert_eq!(
        r.text().unwrap(),
        "Forbidden request: /puppet-ca/v1/certificate_statuses/any (method :get). Please see the server logs for details."
    );
}
