//! The native resource API (`certd::manual::api`) over real TLS: every row, its status
//! codes, and the state of the other resources after each step. Certificates and CRLs
//! are re-checked with the `openssl` command line.

use std::process::Command;

use crate::common::*;
use certd::store::{SledStore, Store};
use serde_json::Value;

const CONFIG: &str = r#"
[ca]
key_type = "ec-p256"
cert_ttl = "30d"
crl_next_update = "7d"
"#;

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn openssl(args: &[&str], files: &[&std::path::Path]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    for f in files {
        cmd.arg(f);
    }
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "openssl {args:?}: {err}");
    out + &err
}

fn status_json(api: &Api, name: &str) -> reqwest::blocking::Response {
    api.admin
        .get(api.url(&format!("/production/certificate_status/{name}")))
        .send()
        .unwrap()
}

#[test]
fn lifecycle_submit_sign_revoke_clean_with_the_state_of_every_resource() {
    let (api, dir) = Api::start(CONFIG);
    let name = "agent1.example.com";
    let cert_path = format!("/production/certificate/{name}");
    let req_path = format!("/production/certificate_request/{name}");

    // Nothing yet.
    assert_eq!(
        api.admin
            .delete(api.url(&cert_path))
            .send()
            .unwrap()
            .status(),
        404,
        "nothing to revoke"
    );
    assert_eq!(api.head(&cert_path), 404);
    assert_eq!(api.head(&req_path), 404);
    assert_eq!(status_json(&api, name).status(), 404);

    // Submit: 201 with Location; the request is pending, the certificate is not there.
    let (csr, _key) = csr_for(name);
    let r = api
        .anon
        .put(api.url(&req_path))
        .body(csr.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], req_path.as_str());
    assert_eq!(api.head(&req_path), 200);
    assert_eq!(api.head(&cert_path), 404, "pending is not signed");
    let served = api
        .anon
        .get(api.url(&req_path))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let a = openssl(
        &["req", "-noout", "-pubkey", "-in"],
        &[&write(dir.path(), "a.csr", &csr)],
    );
    let b = openssl(
        &["req", "-noout", "-pubkey", "-in"],
        &[&write(dir.path(), "b.csr", &served)],
    );
    assert_eq!(a, b, "the pending request is the CSR submitted");
    let st: Value = status_json(&api, name).json().unwrap();
    assert_eq!(st["state"], "requested");
    assert_eq!(
        api.anon
            .get(api.url(&format!("/production/certificate_status/{name}")))
            .send()
            .unwrap()
            .status(),
        403
    );

    // A CSR for another key does not replace it, unless an admin sends it: 409, 200.
    let (csr2, key2) = csr_for(name);
    assert_eq!(api.submit(name, &csr2), 409);
    assert_eq!(
        api.admin
            .put(api.url(&format!("/production/certificate_request/{name}")))
            .body(csr2.clone())
            .send()
            .unwrap()
            .status(),
        200
    );

    // Sign: anonymous may not; the admin gets 201 with Location.
    let r = api
        .anon
        .post(api.url("/production/certificate/"))
        .body(name)
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (403, "forbidden".into()));
    let r = api
        .admin
        .post(api.url("/production/certificate/"))
        .body(name)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], cert_path.as_str());
    assert_eq!(api.head(&req_path), 404, "the request is gone once signed");
    assert_eq!(api.head(&cert_path), 200);
    assert_eq!(api.sign(name), 409, "already signed");
    assert_eq!(
        api.submit(name, &csr_for(name).0),
        409,
        "a signed certificate blocks a new CSR"
    );

    // The certificate: verifies against the served chain, has exactly the profile.
    let pem = api
        .anon
        .get(api.url(&cert_path))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let chain = api
        .anon
        .get(api.url("/production/certificate/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let cert_file = write(dir.path(), "cert.pem", &pem);
    let chain_file = write(dir.path(), "chain.pem", &chain);
    assert!(openssl(&["verify", "-CAfile"], &[&chain_file, &cert_file]).contains("cert.pem: OK"));
    let text = openssl(&["x509", "-noout", "-text", "-in"], &[&cert_file]);
    assert!(text.contains(&format!("Subject: CN = {name}\n")), "{text}");
    for want in [
        "X509v3 Basic Constraints: critical\n                CA:FALSE",
        "X509v3 Key Usage: critical\n                Digital Signature",
        "X509v3 Extended Key Usage: critical\n                TLS Web Server Authentication, TLS Web Client Authentication",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        &format!("X509v3 Subject Alternative Name: \n                DNS:{name}"),
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // The key in the certificate is the one of the replacing CSR.
    let pubkey_cert = openssl(&["x509", "-noout", "-pubkey", "-in"], &[&cert_file]);
    let pubkey_key = openssl(
        &["pkey", "-pubout", "-in"],
        &[&write(dir.path(), "k2.pem", &key2)],
    );
    assert_eq!(pubkey_cert.trim(), pubkey_key.trim());
    // Validity: 30 days from the profile, backdated one day.
    let dates = openssl(
        &[
            "x509",
            "-noout",
            "-startdate",
            "-enddate",
            "-dateopt",
            "iso_8601",
            "-in",
        ],
        &[&cert_file],
    );
    let parse = |key: &str| {
        let line = dates.lines().find(|l| l.starts_with(key)).unwrap();
        time::PrimitiveDateTime::parse(
            line.split('=').nth(1).unwrap().trim_end_matches('Z'),
            &time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        )
        .unwrap()
    };
    assert_eq!(
        (parse("notAfter") - parse("notBefore")).whole_seconds(),
        30 * 86_400 + 86_400
    );
    let st: Value = status_json(&api, name).json().unwrap();
    assert_eq!(st["state"], "signed");
    let serial = st["serial_number"].as_str().unwrap().to_owned();
    assert_eq!(
        openssl(&["x509", "-noout", "-serial", "-in"], &[&cert_file]).trim(),
        format!("serial={serial}")
    );

    // Revoke: anonymous may not; 204, and 204 again; then HEAD 410 and the CRL lists it.
    assert_eq!(
        api.anon
            .delete(api.url(&cert_path))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        api.admin
            .delete(api.url(&format!("{cert_path}?reason=keyCompromise")))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        api.admin
            .delete(api.url(&cert_path))
            .send()
            .unwrap()
            .status(),
        204,
        "revoking again is fine"
    );
    assert_eq!(api.head(&cert_path), 410);
    let r = api.anon.get(api.url(&cert_path)).send().unwrap();
    assert_eq!(r.status(), 410);
    let gone: Value = r.json().unwrap();
    assert_eq!(gone["code"], "revoked");
    assert_eq!(gone["revocation_reason"], "keyCompromise");
    assert!(gone["revoked_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        status_json(&api, name).json::<Value>().unwrap()["state"],
        "revoked"
    );
    let crl = api
        .anon
        .get(api.url("/production/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let crl_text = openssl(
        &[
            "crl",
            "-noout",
            "-text",
            "-CAfile",
            chain_file.to_str().unwrap(),
            "-in",
        ],
        &[&write(dir.path(), "crl.pem", &crl)],
    );
    assert!(crl_text.contains("verify OK"), "{crl_text}");
    assert!(
        crl_text.contains(&format!("Serial Number: {serial}")),
        "{crl_text}"
    );
    assert!(crl_text.contains("Key Compromise"), "{crl_text}");

    // Clean: 204; everything about the name is gone but the CRL entry; a new CSR is fine.
    assert_eq!(
        api.admin
            .delete(api.url(&format!("/production/certificate_status/{name}")))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        api.admin
            .delete(api.url(&format!("/production/certificate_status/{name}")))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(api.head(&cert_path), 404);
    assert_eq!(status_json(&api, name).status(), 404);
    let crl = api
        .anon
        .get(api.url("/production/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let crl_text = openssl(
        &["crl", "-noout", "-text", "-in"],
        &[&write(dir.path(), "crl2.pem", &crl)],
    );
    assert!(crl_text.contains(&format!("Serial Number: {serial}")));
    assert_eq!(api.submit(name, &csr_for(name).0), 201);
}

#[test]
fn clean_revokes_a_valid_certificate_and_forgets_requests() {
    let (api, dir) = Api::start(CONFIG);
    api.issue("web1");
    let serial = status_json(&api, "web1").json::<Value>().unwrap()["serial_number"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate_status/web1"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let crl = api
        .anon
        .get(api.url("/production/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let text = openssl(
        &["crl", "-noout", "-text", "-in"],
        &[&write(dir.path(), "crl.pem", &crl)],
    );
    assert!(
        text.contains(&format!("Serial Number: {serial}")),
        "clean revokes first: {text}"
    );
    // A request alone is cleaned too.
    assert_eq!(api.submit("web2", &csr_for("web2").0), 201);
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate_status/web2"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(api.head("/production/certificate_request/web2"), 404);
}

#[test]
fn rejected_requests_answer_410_until_removed() {
    let (api, _dir) = Api::start(CONFIG);
    let path = "/production/certificate_request/node1";
    assert_eq!(api.submit("node1", &csr_for("node1").0), 201);
    assert_eq!(api.anon.delete(api.url(path)).send().unwrap().status(), 403);
    assert_eq!(
        api.admin.delete(api.url(path)).send().unwrap().status(),
        204
    );
    assert_eq!(api.head(path), 410);
    let r = api.anon.get(api.url(path)).send().unwrap();
    assert_eq!(r.status(), 410);
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "request-invalid");
    assert!(body["reason"]
        .as_str()
        .unwrap()
        .contains("rejected by certd-admin"));
    assert_eq!(
        status_json(&api, "node1").json::<Value>().unwrap()["state"],
        "invalid"
    );
    let r = api
        .admin
        .post(api.url("/production/certificate/"))
        .body("node1")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (409, "request-invalid".into()));
    assert_eq!(api.head("/production/certificate/node1"), 404);
    // Deleting a rejected request removes it; then there is nothing.
    assert_eq!(
        api.admin.delete(api.url(path)).send().unwrap().status(),
        204
    );
    assert_eq!(api.head(path), 404);
    assert_eq!(
        api.admin.delete(api.url(path)).send().unwrap().status(),
        404
    );
    // A fresh submission after rejection starts over.
    assert_eq!(api.submit("node1", &csr_for("node1").0), 201);
    assert_eq!(api.head(path), 200);
}

#[test]
fn put_certificate_status_signs_and_revokes() {
    let (api, _dir) = Api::start(CONFIG);
    let put = |name: &str, body: &str| {
        api.admin
            .put(api.url(&format!("/production/certificate_status/{name}")))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    assert_eq!(
        problem_code(put("nobody", r#"{"desired_state":"signed"}"#)),
        (404, "not-found".into())
    );
    assert_eq!(api.submit("db1", &csr_for("db1").0), 201);
    assert_eq!(
        problem_code(put("db1", r#"{"desired_state":"revoked"}"#)),
        (409, "not-signed".into())
    );
    assert_eq!(
        put(
            "db1",
            r#"{"desired_state":"signed","ttl":7200,"note":"ignored"}"#
        )
        .status(),
        204
    );
    assert_eq!(api.head("/production/certificate/db1"), 200);
    let st: Value = status_json(&api, "db1").json().unwrap();
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
    assert_eq!((na - nb).whole_seconds(), 7200 + 86_400);
    assert_eq!(
        problem_code(put("db1", r#"{"desired_state":"signed"}"#)),
        (409, "already-signed".into())
    );
    assert_eq!(put("db1", r#"{"desired_state":"revoked"}"#).status(), 204);
    assert_eq!(put("db1", r#"{"desired_state":"revoked"}"#).status(), 204);
    assert_eq!(api.head("/production/certificate/db1"), 410);
    let r = api
        .anon
        .put(api.url("/production/certificate_status/db1"))
        .body(r#"{"desired_state":"revoked"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[test]
fn post_sign_accepts_json_with_ttl() {
    let (api, _dir) = Api::start(CONFIG);
    assert_eq!(api.submit("app1", &csr_for("app1").0), 201);
    let r = api
        .admin
        .post(api.url("/production/certificate/"))
        .header("content-type", "application/json")
        .body(r#"{"certname":"app1","ttl":3600}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let st: Value = status_json(&api, "app1").json().unwrap();
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
    assert_eq!((na - nb).whole_seconds(), 3600 + 86_400);
    let r = api
        .admin
        .post(api.url("/production/certificate/"))
        .body("nobody")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (404, "not-found".into()));
    let r = api
        .admin
        .post(api.url("/production/certificate/"))
        .header("content-type", "application/json")
        .body(r#"{"certname":"app1","ttl":-5}"#)
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "invalid-ttl".into()));
}

#[test]
fn fingerprints_equal_openssl_for_all_six_digests_by_accept_and_by_query() {
    let (api, dir) = Api::start(CONFIG);
    let (pem, _) = api.issue("fp1");
    let cert = write(dir.path(), "fp1.pem", &pem);
    let path = api.url("/production/certificate/fp1");
    for d in ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"] {
        let want = openssl(
            &["x509", "-noout", "-fingerprint", &format!("-{d}"), "-in"],
            &[&cert],
        );
        let want = want.trim().split('=').nth(1).unwrap().to_owned();
        let by_accept = api
            .anon
            .get(&path)
            .header(
                "accept",
                format!("x-cert/fingerprint;digest={}", d.to_uppercase()),
            )
            .send()
            .unwrap();
        assert_eq!(by_accept.status(), 200);
        assert_eq!(
            by_accept.headers()["content-type"],
            format!("x-cert/fingerprint; digest={d}").as_str()
        );
        assert_eq!(by_accept.text().unwrap().trim(), want, "{d} by Accept");
        let by_query = api.anon.get(format!("{path}?digest={d}")).send().unwrap();
        assert_eq!(by_query.text().unwrap().trim(), want, "{d} by query");
        let both = api
            .anon
            .get(format!("{path}?digest={d}"))
            .header("accept", "x-cert/fingerprint")
            .send()
            .unwrap();
        assert_eq!(
            both.text().unwrap().trim(),
            want,
            "{d} by query with Accept"
        );
    }
    let default = api
        .anon
        .get(&path)
        .header("accept", "x-cert/fingerprint")
        .send()
        .unwrap();
    assert_eq!(
        default.headers()["content-type"],
        "x-cert/fingerprint; digest=sha256"
    );
    let r = api
        .anon
        .get(&path)
        .header("accept", "x-cert/fingerprint;digest=crc32")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "unknown-digest".into()));
    let r = api
        .anon
        .get(format!("{path}?digest=whirlpool"))
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "unknown-digest".into()));
    // Whatever representation is asked for, and whatever the store holds: the request
    // is malformed (conformance review, S2).
    let r = api
        .anon
        .get(format!("{path}?digest=whirlpool"))
        .header("accept", "text/plain")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "unknown-digest".into()), "as PEM");
    let r = api
        .anon
        .get(api.url("/production/certificate/nobody?digest=whirlpool"))
        .send()
        .unwrap();
    assert_eq!(
        problem_code(r),
        (400, "unknown-digest".into()),
        "for nobody"
    );
    // The status object carries the same fingerprints.
    let st: Value = status_json(&api, "fp1").json().unwrap();
    let sha256 = openssl(
        &["x509", "-noout", "-fingerprint", "-sha256", "-in"],
        &[&cert],
    );
    assert_eq!(st["fingerprint"], sha256.trim().split('=').nth(1).unwrap());
    assert_eq!(st["fingerprints"]["SHA256"], st["fingerprints"]["default"]);
}

#[test]
fn content_negotiation_offers_pem_der_json_and_refuses_the_rest() {
    let (api, dir) = Api::start(CONFIG);
    let (pem, _) = api.issue("neg1");
    let path = api.url("/production/certificate/neg1");
    let get = |accept: &str| api.anon.get(&path).header("accept", accept).send().unwrap();
    let r = get("application/pkix-cert");
    assert_eq!(r.headers()["content-type"], "application/pkix-cert");
    assert_eq!(r.headers()["vary"], "Accept");
    let der = r.bytes().unwrap();
    let der_file = write(dir.path(), "n.der", &der);
    let back = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&der_file)
        .output()
        .unwrap();
    assert!(back.status.success(), "openssl read the DER back");
    assert_eq!(
        String::from_utf8(back.stdout).unwrap().as_bytes(),
        pem.as_slice(),
        "DER and PEM are the same certificate"
    );
    assert_eq!(
        get("application/x-pem-file").headers()["content-type"],
        "application/x-pem-file"
    );
    assert_eq!(get("text/plain").bytes().unwrap().as_ref(), pem.as_slice());
    let json: Value = get("application/json").json().unwrap();
    assert_eq!(json["name"], "neg1");
    assert_eq!(json["state"], "signed");
    assert_eq!(
        get("text/plain;q=0.2, application/json;q=0.9").headers()["content-type"],
        "application/json"
    );
    assert_eq!(
        get("application/json;q=0, */*;q=0.1").headers()["content-type"],
        "text/plain"
    );
    assert_eq!(
        problem_code(get("image/png")),
        (406, "not-acceptable".into())
    );
    assert_eq!(
        problem_code(get("application/json;q=0")),
        (406, "not-acceptable".into())
    );
    // HEAD answers like GET without a body.
    let r = api
        .anon
        .head(&path)
        .header("accept", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    // The CA resource: PEM chain, DER issuing CA, fingerprint.
    let r = api
        .anon
        .get(api.url("/production/certificate/ca"))
        .header("accept", "application/pkix-cert")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let ca_der = write(dir.path(), "ca.der", &r.bytes().unwrap());
    let subj = openssl(
        &["x509", "-inform", "DER", "-noout", "-subject", "-in"],
        &[&ca_der],
    );
    assert!(subj.contains("certd CA: production"), "{subj}");
}

#[test]
fn listings_filter_by_glob_regex_and_state_and_page_with_link() {
    let (api, _dir) = Api::start(CONFIG);
    for i in 1..=7 {
        api.issue(&format!("web-{i:02}"));
    }
    for name in ["db-01", "db-02", "web-08"] {
        assert_eq!(api.submit(name, &csr_for(name).0), 201);
    }
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate/web-03"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let names = |path: &str| -> Vec<String> {
        let r = api.admin.get(api.url(path)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json::<Vec<Value>>()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let web: Vec<String> = (1..=7).map(|i| format!("web-{i:02}")).collect();
    // Setup's own certificates are listed with the others.
    let own = own_names(&api.server);
    let mut every = web.iter().chain(&own).cloned().collect::<Vec<_>>();
    every.sort();
    assert_eq!(names("/production/certificate/"), every);
    assert_eq!(names("/production/certificate/?certname=web-0?"), web);
    assert_eq!(
        names("/production/certificate/?regex=web-0%5B1-3%5D"),
        ["web-01", "web-02", "web-03"]
    );
    assert_eq!(names("/production/certificate/?state=revoked"), ["web-03"]);
    assert_eq!(
        names("/production/certificate_requests/"),
        ["db-01", "db-02", "web-08"]
    );
    assert_eq!(
        names("/production/certificate_requests/?certname=db-*"),
        ["db-01", "db-02"]
    );
    assert_eq!(
        names("/production/certificate_statuses/*?state=requested"),
        ["db-01", "db-02", "web-08"]
    );
    assert_eq!(
        names("/production/certificate_statuses/*?restrict=waiting"),
        ["db-01", "db-02", "web-08"]
    );
    assert_eq!(
        names("/production/certificate_statuses/web-0*?state=signed").len(),
        6
    );
    let all = names("/production/certificate_statuses/*");
    assert_eq!(all.len(), 10 + own.len());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "stable order by name");

    // Paging: follow Link headers until the end; the pages add up to the whole list.
    let mut seen = Vec::new();
    let mut next = Some("/production/certificate_statuses/*?limit=3".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let r = api.admin.get(api.url(&path)).send().unwrap();
        assert_eq!(r.status(), 200);
        if let Some(link) = r.headers().get("link") {
            let link = link.to_str().unwrap();
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            next = Some(link[1..link.find('>').unwrap()].to_owned());
        }
        let items: Vec<Value> = r.json().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|v| v["name"].as_str().unwrap().to_owned()));
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(seen, all);
    assert_eq!(pages, 4);

    // Listings are for admins; bad patterns are 400 with a code.
    assert_eq!(
        api.anon
            .get(api.url("/production/certificate/"))
            .send()
            .unwrap()
            .status(),
        403
    );
    let bad = |q: &str| {
        problem_code(
            api.admin
                .get(api.url(&format!("/production/certificate/?{q}")))
                .send()
                .unwrap(),
        )
    };
    assert_eq!(
        bad(&format!("regex={}", "a".repeat(300))),
        (400, "pattern-too-long".into())
    );
    assert_eq!(bad("regex=%28"), (400, "invalid-regex".into()));
    assert_eq!(bad("state=lost"), (400, "invalid-state".into()));
    assert_eq!(bad("limit=0"), (400, "invalid-limit".into()));
    assert_eq!(bad("colour=blue"), (400, "unknown-parameter".into()));
}

#[test]
fn crl_is_cached_with_validators_and_answers_304() {
    let (api, dir) = Api::start(CONFIG);
    let url = api.url("/production/certificate_revocation_list/ca");
    let r = api.anon.get(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let modified = r.headers()["last-modified"].to_str().unwrap().to_owned();
    let pem = r.bytes().unwrap();
    let text = openssl(
        &["crl", "-noout", "-text", "-in"],
        &[&write(dir.path(), "c0.pem", &pem)],
    );
    assert!(text.contains("No Revoked Certificates"));
    // nextUpdate is crl_next_update (7 days) after lastUpdate.
    let dates = openssl(
        &[
            "crl",
            "-noout",
            "-lastupdate",
            "-nextupdate",
            "-dateopt",
            "iso_8601",
            "-in",
        ],
        &[&write(dir.path(), "c0b.pem", &pem)],
    );
    let parse = |key: &str| {
        let line = dates.lines().find(|l| l.starts_with(key)).unwrap();
        time::PrimitiveDateTime::parse(
            line.split('=').nth(1).unwrap().trim_end_matches('Z'),
            &time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        )
        .unwrap()
    };
    assert_eq!(
        (parse("nextUpdate") - parse("lastUpdate")).whole_seconds(),
        7 * 86_400
    );

    assert_eq!(
        api.anon
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .unwrap()
            .status(),
        304
    );
    assert_eq!(
        api.anon
            .get(&url)
            .header("if-modified-since", &modified)
            .send()
            .unwrap()
            .status(),
        304
    );
    assert_eq!(
        api.anon
            .get(&url)
            .header("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")
            .send()
            .unwrap()
            .status(),
        200
    );
    let der = api
        .anon
        .get(&url)
        .header("accept", "application/pkix-crl")
        .send()
        .unwrap();
    assert_eq!(der.headers()["content-type"], "application/pkix-crl");
    let der = der.bytes().unwrap();
    let der_text = openssl(
        &["crl", "-inform", "DER", "-noout", "-text", "-in"],
        &[&write(dir.path(), "c0.der", &der)],
    );
    assert!(der_text.contains("CRL Number"));
    // HEAD: the length of a GET's body, in either form, and no body.
    for (accept, len) in [("*/*", pem.len()), ("application/pkix-crl", der.len())] {
        let head = api.anon.head(&url).header("accept", accept).send().unwrap();
        assert_eq!(head.status(), 200, "{accept}");
        assert_eq!(
            head.headers()["content-length"].to_str().unwrap(),
            len.to_string(),
            "{accept}"
        );
        assert!(head.headers().get("transfer-encoding").is_none());
        assert!(head.bytes().unwrap().is_empty());
    }

    // A revocation makes a new CRL: the old validator no longer matches.
    api.issue("gone1");
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate/gone1"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let r = api
        .anon
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    let text = openssl(
        &["crl", "-noout", "-text", "-in"],
        &[&write(dir.path(), "c1.pem", &r.bytes().unwrap())],
    );
    assert!(
        text.contains("X509v3 CRL Number: \n                1"),
        "{text}"
    );
}

#[test]
fn fifty_concurrent_signings_of_one_request_give_one_certificate() {
    let (api, _dir) = Api::start(CONFIG);
    assert_eq!(api.submit("race1", &csr_for("race1").0), 201);
    let api = std::sync::Arc::new(api);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (api, barrier) = (api.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                api.sign("race1")
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 49, "{codes:?}");
    let api = std::sync::Arc::try_unwrap(api).ok().unwrap();
    let data = api.server.dir.clone();
    let own = own_names(&api.server);
    assert!(api.server.terminate().success());
    let snap = SledStore::open(&data.join("store"))
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(snap.envs["production"].certificates.len(), 1 + own.len());
    assert_eq!(snap.envs["production"].serials.len(), 1 + own.len());
    let issued = snap
        .audit
        .iter()
        .filter(|e| e.kind == certd::store::EventKind::Issued && !own.contains(&e.certname))
        .count();
    assert_eq!(issued, 1);
}

#[test]
fn bad_input_gets_a_4xx_with_a_stable_code_and_leaves_nothing_in_the_store() {
    let (api, dir) = Api::start(CONFIG);
    let long_name = "n".repeat(300);
    // A valid certname (up to 255 bytes) longer than a common name can be (64).
    let long_cn = "a".repeat(65);
    let put = |name: &str, body: Vec<u8>| {
        problem_code(
            api.anon
                .put(api.url(&format!("/production/certificate_request/{name}")))
                .body(body)
                .send()
                .unwrap(),
        )
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("fixture-good", fixture("csr/not-pem.txt"), "csr-not-pem"),
        (
            "fixture-good",
            fixture("csr/truncated.der"),
            "csr-malformed",
        ),
        (
            "fixture-good",
            fixture("csr/two-blocks.csr"),
            "csr-multiple-pem-blocks",
        ),
        (
            "fixture-good",
            fixture("csr/wrong-label.pem"),
            "csr-wrong-pem-label",
        ),
        (
            "fixture-badsig",
            fixture("csr/bad-signature.csr"),
            "csr-signature-invalid",
        ),
        (
            "fixture-weak",
            fixture("csr/rsa1024.csr"),
            "csr-key-not-allowed",
        ),
        (
            "fixture-md5",
            fixture("csr/md5-signed.csr"),
            "csr-signature-algorithm",
        ),
        (
            "fixture-sha1",
            fixture("csr/sha1-signed.csr"),
            "csr-signature-algorithm",
        ),
        ("other-name", fixture("csr/good-ec.csr"), "csr-cn-mismatch"),
        (&long_cn, fixture("csr/cn-65-chars.csr"), "csr-cn-too-long"),
        (
            "fixture-san",
            fixture("csr/san-extra.csr"),
            "csr-subject-alt-names-not-allowed",
        ),
        (
            "fixture-ku",
            fixture("csr/keyusage-ext.csr"),
            "csr-extension-not-allowed",
        ),
        (
            "fixture-cli",
            fixture("csr/pp-cli-auth.csr"),
            "csr-extension-not-allowed",
        ),
        ("Agent1", csr_for("Agent1").0, "invalid-certname"),
        (
            "%2A.example.com",
            fixture("csr/good-ec.csr"),
            "invalid-certname",
        ),
        ("a..b", fixture("csr/good-ec.csr"), "invalid-certname"),
        ("a%2Fb", fixture("csr/good-ec.csr"), "invalid-certname"),
        ("a%00b", fixture("csr/good-ec.csr"), "invalid-certname"),
        (&long_name, fixture("csr/good-ec.csr"), "invalid-certname"),
        ("ca", fixture("csr/good-ec.csr"), "reserved-certname"),
    ];
    for (name, body, code) in cases {
        assert_eq!(put(name, body), (400, code.to_owned()), "PUT {name}");
    }
    // The good fixtures are accepted, so the bad ones fail for the reason named.
    assert_eq!(api.submit("fixture-good", &fixture("csr/good-ec.csr")), 201);
    assert_eq!(
        api.submit("fixture-rsa", &fixture("csr/good-rsa2048.csr")),
        201
    );
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate_status/fixture-good"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate_status/fixture-rsa"))
            .send()
            .unwrap()
            .status(),
        204
    );

    // Paths a library would normalise, sent as they are.
    let body = write(dir.path(), "good.csr", &fixture("csr/good-ec.csr"));
    for raw in [
        "/production/certificate_request/..",
        "/production/certificate_request/.%2E",
        "/production/certificate_request/%2E%2E%2Fetc",
    ] {
        assert_eq!(
            curl_status(&api.server, "PUT", raw, Some(&body)),
            400,
            "{raw}"
        );
    }
    assert_eq!(
        curl_status(
            &api.server,
            "PUT",
            "/production/certificate_request/../../etc/passwd",
            Some(&body)
        ),
        403,
        "no rule admits an anonymous PUT to a path of several segments (no route has one)"
    );

    // Oversized body: 413 before parsing.
    let big = vec![b'A'; 70 * 1024];
    assert_eq!(put("big", big), (413, "body-too-large".into()));
    // Bad JSON and unknown desired_state.
    let r = api
        .admin
        .post(api.url("/production/certificate/"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "bad-json".into()));
    let r = api
        .admin
        .put(api.url("/production/certificate_status/x1"))
        .body("not json")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "bad-json".into()));
    let r = api
        .admin
        .put(api.url("/production/certificate_status/x1"))
        .body(r#"{"desired_state":"frozen"}"#)
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "invalid-desired-state".into()));
    // Unsupported Accept, bad reason, regex too long, unknown environment, wrong method.
    let r = api
        .anon
        .get(api.url("/production/certificate/ca"))
        .header("accept", "image/png")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (406, "not-acceptable".into()));
    api.issue("victim");
    let r = api
        .admin
        .delete(api.url("/production/certificate/victim?reason=because"))
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "invalid-reason".into()));
    let r = api
        .admin
        .get(api.url(&format!(
            "/production/certificate_statuses/*?regex={}",
            "x".repeat(1000)
        )))
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "pattern-too-long".into()));
    let r = api
        .anon
        .put(api.url("/nowhere/certificate_request/x1"))
        .body(fixture("csr/good-ec.csr"))
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (404, "unknown-environment".into()));
    let r = api
        .admin
        .patch(api.url("/production/certificate/victim"))
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (405, "method-not-allowed".into()));
    // Authorization comes before routing: no rule admits an anonymous PATCH.
    let r = api
        .anon
        .patch(api.url("/production/certificate/victim"))
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (403, "forbidden".into()));
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate_status/victim"))
            .send()
            .unwrap()
            .status(),
        204
    );

    // The server still answers normally, and the store holds no request and no
    // certificate: every refused input left nothing behind, but for the well-formed
    // CSRs the policy refused (SANs, extensions), kept as invalid requests with the
    // rule they broke for the admin to see.
    assert_eq!(
        api.anon.get(api.url("/status")).send().unwrap().status(),
        200
    );
    let data = api.server.dir.clone();
    let mut own = own_names(&api.server);
    own.sort();
    assert!(api.server.terminate().success());
    let snap = SledStore::open(&data.join("store"))
        .unwrap()
        .snapshot()
        .unwrap();
    let prod = &snap.envs["production"];
    let kept: Vec<(&str, &str)> = prod
        .requests
        .iter()
        .map(|(name, r)| match &r.state {
            certd::store::RequestState::Invalid {
                rule: Some(rule), ..
            } => (name.as_str(), rule.as_str()),
            other => panic!("{name} was left {other:?}"),
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("fixture-cli", "csr-extension-not-allowed"),
            ("fixture-ku", "csr-extension-not-allowed"),
            ("fixture-san", "csr-subject-alt-names-not-allowed")
        ]
    );
    assert!(
        prod.certificates.keys().eq(own.iter()),
        "{:?}",
        prod.certificates.keys()
    );
}

#[test]
fn agents_read_their_own_status_and_nothing_more() {
    let (api, dir) = Api::start(CONFIG);
    let (pem, key) = api.issue("agent7");
    api.issue("agent8");
    let cert = write(dir.path(), "a7.pem", &pem);
    let key = write(dir.path(), "a7.key", &key);
    // openssl writes PKCS#8 keys, which the client identity wants.
    let agent = client(&api.server, Some((&cert, &key)));
    let me: Value = agent
        .get(api.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        me["caller"],
        serde_json::json!({"role": "agent", "certname": "agent7", "environment": "production"})
    );
    assert_eq!(
        agent
            .get(api.url("/production/certificate_status/agent7"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        agent
            .get(api.url("/production/certificate_status/agent8"))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        agent
            .get(api.url("/production/certificate_statuses/*"))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        agent
            .post(api.url("/production/certificate/"))
            .body("agent8")
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        agent
            .delete(api.url("/production/certificate/agent8"))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        agent
            .get(api.url("/production/certificate/agent8"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn environments_have_their_own_chain_crl_and_agents() {
    let (api, dir) = Api::start(&format!("{CONFIG}[environments.staging]\n"));
    let (csr, key) = csr_for("st1");
    // Only production takes CSRs from callers without a certificate by default.
    let put = |c: &reqwest::blocking::Client, body: Vec<u8>| {
        c.put(api.url("/staging/certificate_request/st1"))
            .body(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(put(&api.anon, csr.clone()), 403);
    assert_eq!(put(&api.admin, csr), 201);
    assert_eq!(
        api.admin
            .post(api.url("/staging/certificate/"))
            .body("st1")
            .send()
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        api.head("/production/certificate/st1"),
        404,
        "not a production certificate"
    );
    let pem = api
        .anon
        .get(api.url("/staging/certificate/st1"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let cert = write(dir.path(), "st1.pem", &pem);
    let staging = write(
        dir.path(),
        "staging.pem",
        &api.anon
            .get(api.url("/staging/certificate/ca"))
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    );
    let production = write(
        dir.path(),
        "production.pem",
        &api.anon
            .get(api.url("/production/certificate/ca"))
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    );
    assert!(openssl(&["verify", "-CAfile"], &[&staging, &cert]).contains("OK"));
    let (ok, _, _) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&production)
        .arg(&cert));
    assert!(
        !ok,
        "a staging certificate does not verify against production's chain"
    );

    // A revocation in staging is on staging's CRL only.
    let serial = api
        .admin
        .get(api.url("/staging/certificate_status/st1"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["serial_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_file = write(dir.path(), "st1.key", &key);
    let agent = client(&api.server, Some((&cert, &key_file)));
    assert_eq!(
        agent
            .get(api.url("/staging/certificate_status/st1"))
            .send()
            .unwrap()
            .status(),
        200,
        "its own status, in its own environment"
    );
    assert_eq!(
        agent
            .get(api.url("/production/certificate_status/st1"))
            .send()
            .unwrap()
            .status(),
        403,
        "not in another environment"
    );
    assert_eq!(
        api.admin
            .delete(api.url("/staging/certificate/st1"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let crl_of = |env: &str| {
        let body = api
            .anon
            .get(api.url(&format!("/{env}/certificate_revocation_list/ca")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        openssl(
            &["crl", "-noout", "-text", "-in"],
            &[&write(dir.path(), &format!("{env}.crl"), &body)],
        )
    };
    assert!(crl_of("staging").contains(&format!("Serial Number: {serial}")));
    assert!(!crl_of("production").contains(&format!("Serial Number: {serial}")));
    assert!(crl_of("staging").contains("Issuer: CN = certd CA: staging"));
}

#[test]
fn a_listing_that_cannot_read_a_certificate_fails_instead_of_blanking_its_fingerprint() {
    // MD5 is not among the stored fingerprints: the listing reads each certificate's
    // DER to compute it. When that read fails, the answer is an error, not "".
    let config = format!("{CONFIG}fingerprint_digest = \"md5\"\n");
    let (api, dir) = Api::start(&config);
    api.issue("fp-ok");
    api.issue("fp-lost");
    let list = |api: &Api| {
        api.admin
            .get(api.url("/production/certificate/"))
            .header("accept", "application/json")
            .send()
            .unwrap()
    };
    let before: Vec<Value> = list(&api).json().unwrap();
    assert_eq!(before.len(), 2 + own_names(&api.server).len());
    for item in &before {
        assert_eq!(item["fingerprint"].as_str().unwrap().len(), 47, "{item}");
    }
    let data = api.server.dir.clone();
    api.server.terminate();
    {
        let db = sled::open(data.join("store")).unwrap();
        let der = db.open_tree("env/production/certificate_der").unwrap();
        assert!(der.remove("fp-lost").unwrap().is_some());
        db.flush().unwrap();
    }
    let server = Server::start(dir.path(), &config);
    let api = Api::of(server);
    assert_eq!(problem_code(list(&api)), (500, "internal".into()));
    let log = api
        .server
        .stderr_with("no DER for fp-lost", std::time::Duration::from_secs(10));
    assert!(log.contains("no DER for fp-lost"), "{log}");
}
