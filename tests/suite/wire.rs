//! On the wire with other people's tools: pkilint on every certificate and CRL certd
//! makes, `openssl verify -crl_check_all` over the whole chain with the CRLs a client
//! fetches from the native face, curl comparing HEAD with GET, and `Vary: Accept` on
//! every negotiated answer.
//!
//! pkilint comes from PyPI (`python3 -m pip install pkilint`, which `.ci/run` does); when
//! it is missing its test is skipped, unless `CERTD_REQUIRE_EXTERNAL=1`, which makes it a
//! failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const CONFIG: &str = "[ca]\nkey_type = \"ec-p256\"\n[environments.production]\nautosign = true\n[environments.manual]\n";

/// Whether pkilint is installed for `python3`; when not, the test is skipped (or fails
/// under `CERTD_REQUIRE_EXTERNAL`).
fn have_pkilint() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import pkilint"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CERTD_REQUIRE_EXTERNAL").is_none(),
        "pkilint is required (python3 -m pip install pkilint)"
    );
    eprintln!("pkilint not installed; skipped");
    false
}

/// GETs `path` anonymously with `accept`; the body.
fn get(api: &Api, path: &str, accept: &str) -> Vec<u8> {
    let r = api
        .anon
        .get(api.url(path))
        .header("accept", accept)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.bytes().unwrap().to_vec()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The findings pkilint's linter `args[0]` reports at WARNING or above, one
/// `code: detail` per line (empty: none).
fn pkilint(args: &[&str], files: &[&Path]) -> Vec<String> {
    let out = Command::new("python3")
        .arg("-m")
        .arg(format!("pkilint.bin.{}", args[0]))
        .args(&args[1..])
        .args(["-s", "WARNING"])
        .args(files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(|l| l.trim().to_owned())
        .collect();
    assert!(
        out.status.success() || !findings.is_empty(),
        "{args:?} failed with no finding: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    findings
}

/// pkilint finds nothing at WARNING or above in any certificate or CRL certd makes, nor
/// in any issuer/subject pair of the chain, except what is kept on purpose:
/// single-label certnames as `DNS:` subject alternative names (Puppet has issued them
/// since 6.15 and fleets depend on them).
#[test]
fn pkilint_finds_nothing_in_what_certd_issues() {
    if !have_pkilint() {
        return;
    }
    let (api, dir) = Api::start(CONFIG);
    let d = dir.path();
    let (csr, _) = csr_with(
        "web1.example.com",
        &["-addext", "subjectAltName=DNS:web1.example.com"],
    );
    assert_eq!(
        api.anon
            .put(api.url("/production/certificate_request/web1.example.com"))
            .body(csr)
            .send()
            .unwrap()
            .status(),
        201
    );
    let (single, _) = csr_for("web2");
    assert_eq!(api.submit("web2", &single), 201);
    let single_label = write(
        d,
        "web2.pem",
        &get(&api, "/production/certificate/web2", "text/plain"),
    );
    // Revoked, so that the CRL has an entry to lint.
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate/web2?reason=keyCompromise"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let data = &api.server.dir;
    let root = data.join("ca/root.pem");
    let issuing = data.join("ca/production/ca.pem");
    let leaf = write(
        d,
        "leaf.pem",
        &get(
            &api,
            "/production/certificate/web1.example.com",
            "text/plain",
        ),
    );
    let crl = write(
        d,
        "crl.der",
        &get(
            &api,
            "/production/certificate_revocation_list/ca",
            "application/pkix-crl",
        ),
    );
    let root_crl = write(
        d,
        "root-crl.der",
        &get(
            &api,
            "/production/certificate_revocation_list/root",
            "application/pkix-crl",
        ),
    );
    let cert = ["lint_pkix_cert", "lint"];
    for file in [&root, &issuing, &leaf] {
        assert_eq!(
            pkilint(&cert, &[file]),
            Vec::<String>::new(),
            "{}",
            file.display()
        );
    }
    // Kept on purpose: single-label names (the agent's, setup's admin, the server's
    // host name and localhost) as DNS names; nothing else.
    for file in [
        single_label,
        data.join("admin/admin.pem"),
        data.join("tls/server.pem"),
    ] {
        for finding in pkilint(&cert, &[&file]) {
            assert!(
                finding.starts_with("pkix.invalid_domain_name_syntax"),
                "{}: {finding}",
                file.display()
            );
        }
    }
    let crl_lint = ["lint_crl", "lint", "-t", "CRL", "-p", "PKIX"];
    let arl_lint = ["lint_crl", "lint", "-t", "ARL", "-p", "PKIX"];
    assert_eq!(
        pkilint(&crl_lint, &[&crl]),
        Vec::<String>::new(),
        "issuing CA's CRL"
    );
    assert_eq!(
        pkilint(&arl_lint, &[&root_crl]),
        Vec::<String>::new(),
        "root's CRL"
    );
    // Each issuer/subject pair, the root's own included (it needs an AKI for that).
    let chain = ["lint_pkix_signer_signee_cert_chain", "lint"];
    for (issuer, subject) in [(&root, &root), (&root, &issuing), (&issuing, &leaf)] {
        assert_eq!(
            pkilint(&chain, &[issuer, subject]),
            Vec::<String>::new(),
            "{} -> {}",
            issuer.display(),
            subject.display()
        );
    }
}

/// A generic client doing full-chain revocation checking gets both CRLs from the native
/// face, and `openssl verify -x509_strict -crl_check_all` accepts a valid leaf and
/// refuses a revoked one.
#[test]
fn openssl_checks_the_whole_chain_with_the_crls_the_native_face_serves() {
    let (api, dir) = Api::start(CONFIG);
    let d = dir.path();
    let (csr, _) = csr_for("good.example.com");
    assert_eq!(api.submit("good.example.com", &csr), 201);
    let (csr, _) = csr_for("bad.example.com");
    assert_eq!(api.submit("bad.example.com", &csr), 201);
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate/bad.example.com?reason=keyCompromise"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let chain = write(
        d,
        "chain.pem",
        &get(&api, "/production/certificate/ca", "text/plain"),
    );
    let mut crls = get(
        &api,
        "/production/certificate_revocation_list/ca",
        "text/plain",
    );
    crls.extend(get(
        &api,
        "/production/certificate_revocation_list/root",
        "text/plain",
    ));
    let crls = write(d, "crls.pem", &crls);
    let verify = |name: &str| {
        let leaf = write(
            d,
            &format!("{name}.pem"),
            &get(
                &api,
                &format!("/production/certificate/{name}"),
                "text/plain",
            ),
        );
        run(Command::new("openssl")
            .args(["verify", "-x509_strict", "-crl_check_all", "-CAfile"])
            .arg(&chain)
            .arg("-CRLfile")
            .arg(&crls)
            .arg(&leaf))
    };
    let (ok, out, err) = verify("good.example.com");
    assert!(ok, "{out}{err}");
    let pem = api
        .admin
        .get(api.url("/production/certificate/bad.example.com"))
        .send()
        .unwrap();
    assert_eq!(pem.status(), 410);
    // The revoked leaf's PEM from the store, as a client that kept it would hold it.
    let snap = {
        let data = api.server.dir.clone();
        assert!(api.server.terminate().success());
        certd::store::CertificateStore::certificate(
            &certd::store::SledStore::open(&data.join("store")).unwrap(),
            &certd::ca::EnvName::production(),
            &certd::ca::Certname::parse("bad.example.com").unwrap(),
        )
        .unwrap()
        .unwrap()
    };
    let bad = write(
        d,
        "bad.pem",
        &certd::ca::pem_encode("CERTIFICATE", &snap.der),
    );
    let (ok, out, err) = run(Command::new("openssl")
        .args(["verify", "-x509_strict", "-crl_check_all", "-CAfile"])
        .arg(&chain)
        .arg("-CRLfile")
        .arg(&crls)
        .arg(&bad));
    assert!(
        !ok && format!("{out}{err}").contains("revoked"),
        "{out}{err}"
    );
}

/// The root's CRL on the native face: the same negotiation, ETag and 304 as the issuing
/// CA's.
#[test]
fn the_roots_crl_is_served_with_etag_and_304() {
    let (api, _dir) = Api::start(CONFIG);
    let url = api.url("/production/certificate_revocation_list/root");
    let r = api.anon.get(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(r.headers().contains_key("last-modified"));
    let pem = r.text().unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"), "{pem}");
    let der = get(
        &api,
        "/production/certificate_revocation_list/root",
        "application/pkix-crl",
    );
    assert_eq!(der[0], 0x30);
    let r = api
        .anon
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    // It is the root's: the same bytes as the second CRL of the Puppet face's bundle.
    let bundle = api
        .anon
        .get(api.url("/puppet-ca/v1/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(bundle.ends_with(&pem), "{bundle}\n---\n{pem}");
}

/// `curl -I` and `curl` agree: a HEAD answer's Content-Length is the length GET sends,
/// for a certificate in every representation, the CA chain, the CRLs and `/status`.
#[test]
fn head_says_the_length_get_sends() {
    let (api, _dir) = Api::start(CONFIG);
    let (csr, _) = csr_for("h1.example.com");
    assert_eq!(api.submit("h1.example.com", &csr), 201);
    let curl = |extra: &[&str], path: &str, accept: &str| {
        let (ok, out, err) = run(Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(api.server.chain())
            .args(["-H", &format!("Accept: {accept}")])
            .args(extra)
            .arg(api.url(path)));
        assert!(ok, "{err}");
        out
    };
    for (path, accept) in [
        ("/production/certificate/h1.example.com", "text/plain"),
        (
            "/production/certificate/h1.example.com",
            "application/pkix-cert",
        ),
        ("/production/certificate/h1.example.com", "application/json"),
        (
            "/production/certificate/h1.example.com",
            "x-cert/fingerprint;digest=sha256",
        ),
        ("/production/certificate/ca", "text/plain"),
        ("/production/certificate_revocation_list/ca", "text/plain"),
        (
            "/production/certificate_revocation_list/ca",
            "application/pkix-crl",
        ),
        ("/production/certificate_revocation_list/root", "text/plain"),
        // A load balancer's health check (conf/auth.toml admits HEAD there).
        ("/status", "application/json"),
    ] {
        let got = curl(&["-o", "/dev/null", "-w", "%{size_download}"], path, accept);
        let head = curl(&["-I"], path, accept);
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("HEAD {path} ({accept}) has no Content-Length: {head}"));
        assert_eq!(length, got, "HEAD {path} ({accept})");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
}

/// Every negotiated answer, errors included, says it varies with `Accept`.
#[test]
fn negotiated_answers_vary_by_accept() {
    let (api, _dir) = Api::start(CONFIG);
    let (csr, _) = csr_for("v1.example.com");
    assert_eq!(api.submit("v1.example.com", &csr), 201);
    for (path, accept, status) in [
        ("/production/certificate/v1.example.com", "text/plain", 200),
        (
            "/production/certificate/v1.example.com",
            "application/json",
            200,
        ),
        ("/production/certificate/v1.example.com", "image/png", 406),
        ("/production/certificate/nobody", "text/plain", 404),
        ("/production/certificate/ca", "image/png", 406),
        (
            "/production/certificate_revocation_list/ca",
            "image/png",
            406,
        ),
        ("/production/certificate_revocation_list/ca", "*/*", 200),
        ("/production/certificate_request/nobody", "text/plain", 404),
    ] {
        let r = api
            .anon
            .get(api.url(path))
            .header("accept", accept)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path} {accept}");
        let vary = r
            .headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            vary.contains("accept"),
            "{path} {accept} ({status}): vary {vary:?}"
        );
    }
}

/// The alert `openssl s_client` reports when it connects with `cert`/`key` and sends a
/// request, under TLS `version` (`-tls1_2`, `-tls1_3`).
fn alert_seen(api: &Api, cert: &Path, key: &Path, version: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", api.server.port))
        .args([version, "-servername", "localhost", "-CAfile"])
        .arg(api.server.chain())
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // Under TLS 1.3 the server's verdict on the client certificate arrives after the
        // handshake, on the client's first read.
        let _ = stdin.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A revoked client certificate gets the `certificate_revoked` alert and an expired one
/// `certificate_expired`, under TLS 1.2 and 1.3, so that the client's error says why.
#[test]
fn revoked_and_expired_client_certificates_get_their_own_alerts() {
    let (api, dir) = Api::start(CONFIG);
    let d = dir.path();
    let issue = |env: &str, name: &str, ttl: i64| {
        let (csr, key) = csr_for(name);
        let r = api
            .admin
            .put(api.url(&format!("/{env}/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = api
            .admin
            .post(api.url(&format!("/{env}/certificate/")))
            .header("content-type", "application/json")
            .body(serde_json::json!({"certname": name, "ttl": ttl}).to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let pem = get(&api, &format!("/{env}/certificate/{name}"), "text/plain");
        (
            write(d, &format!("{name}.pem"), &pem),
            write(d, &format!("{name}.key"), &key),
        )
    };
    let (expired_cert, expired_key) = issue("manual", "expired.example.com", 1);
    let (revoked_cert, revoked_key) = issue("manual", "revoked.example.com", 3600);
    assert_eq!(
        api.admin
            .delete(api.url("/manual/certificate/revoked.example.com"))
            .send()
            .unwrap()
            .status(),
        204
    );
    for version in ["-tls1_2", "-tls1_3"] {
        let seen = alert_seen(&api, &revoked_cert, &revoked_key, version);
        assert!(
            seen.contains("certificate revoked"),
            "{version}: a revoked certificate's alert:\n{seen}"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1500)); // past its notAfter
    for version in ["-tls1_2", "-tls1_3"] {
        let seen = alert_seen(&api, &expired_cert, &expired_key, version);
        assert!(
            seen.contains("certificate expired"),
            "{version}: an expired certificate's alert:\n{seen}"
        );
    }
}
