//! `certd ca ...` end to end against a running server, with the state checked over the
//! native API afterwards.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;
use serde_json::Value;

const CONFIG: &str = "[ca]\nkey_type = \"ec-p256\"\n";

/// `certd ca --server URL --data-dir DIR ARGS...` → (exit code, stdout, stderr).
fn ca(api: &Api, args: &[&str]) -> (i32, String, String) {
    certd_ca(&api.server, args)
}

fn state(api: &Api, name: &str) -> Option<String> {
    let r = api
        .admin
        .get(api.url(&format!("/production/certificate_status/{name}")))
        .send()
        .unwrap();
    if r.status() == 404 {
        return None;
    }
    Some(
        r.json::<Value>().unwrap()["state"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

#[test]
fn list_sign_status_fingerprint_revoke_reject_clean() {
    let (api, dir) = Api::start(CONFIG);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(api.submit(n, &csr_for(n).0), 201);
    }
    // list shows pending requests; --json for scripts.
    let (code, out, _) = ca(&api, &["list"]);
    assert_eq!(code, 0);
    for n in ["n1", "n2", "n3"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(n) && l.contains("requested")),
            "{out}"
        );
    }
    let (_, out, _) = ca(&api, &["list", "--json"]);
    let v: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(v.len(), 3);

    // sign several at once; a name without a request makes exit code 3.
    let (code, out, err) = ca(&api, &["sign", "n1", "n2", "ghost"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("signed n1") && out.contains("signed n2"),
        "{out}"
    );
    assert!(err.contains("ghost"), "{err}");
    assert_eq!(state(&api, "n1").as_deref(), Some("signed"));
    assert_eq!(state(&api, "n2").as_deref(), Some("signed"));
    // signing again is refused: exit 4.
    assert_eq!(ca(&api, &["sign", "n1"]).0, 4);

    let (_, out, _) = ca(&api, &["list", "--all"]);
    // n1, n2, n3, and setup's own two certificates.
    assert_eq!(
        out.lines().count(),
        3 + own_names(&api.server).len(),
        "{out}"
    );
    let (_, out, _) = ca(&api, &["list", "--state", "signed", "--certname", "n*"]);
    assert_eq!(out.lines().count(), 2, "{out}");

    let (code, out, _) = ca(&api, &["status", "n1"]);
    assert_eq!(code, 0);
    assert!(out.contains("state              signed"), "{out}");
    let (_, out, _) = ca(&api, &["status", "n1", "--json"]);
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["name"], "n1");
    assert_eq!(ca(&api, &["status", "ghost"]).0, 3);

    // fingerprint equals openssl's.
    let pem = api
        .anon
        .get(api.url("/production/certificate/n1"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let cert = dir.path().join("n1.pem");
    std::fs::write(&cert, &pem).unwrap();
    for d in ["sha256", "md5"] {
        let (code, out, _) = ca(&api, &["fingerprint", "n1", "--digest", d]);
        assert_eq!(code, 0);
        let (_, want, _) = run(Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", &format!("-{d}"), "-in"])
            .arg(&cert));
        assert!(
            out.trim().ends_with(want.trim().split('=').nth(1).unwrap()),
            "{out} vs {want}"
        );
    }

    // revoke, reject, clean.
    let (code, out, _) = ca(&api, &["revoke", "n2", "--reason", "superseded"]);
    assert_eq!((code, out.trim()), (0, "revoked n2"));
    assert_eq!(state(&api, "n2").as_deref(), Some("revoked"));
    assert_eq!(ca(&api, &["reject", "n3"]).0, 0);
    assert_eq!(state(&api, "n3").as_deref(), Some("invalid"));
    assert_eq!(ca(&api, &["clean", "n1", "n2", "n3"]).0, 0);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(state(&api, n), None, "{n} cleaned");
    }
    assert_eq!(ca(&api, &["clean", "n1"]).0, 3);
}

#[test]
fn generate_writes_a_0600_key_and_a_certificate_that_verifies() {
    let (api, dir) = Api::start(CONFIG);
    let out_dir = dir.path().join("out");
    let (code, out, err) = ca(
        &api,
        &["generate", "gen1", "--out-dir", out_dir.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let key = out_dir.join("gen1.key");
    let cert = out_dir.join("gen1.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, vout, verr) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(api.server.chain())
        .arg(&cert));
    assert!(ok, "{vout}{verr}");
    let (_, pub_cert, _) = run(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&cert));
    let (_, pub_key, _) = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key));
    assert_eq!(pub_cert, pub_key);
    assert_eq!(state(&api, "gen1").as_deref(), Some("signed"));
    // The generated identity works as a client certificate.
    let agent = client(&api.server, Some((&cert, &key)));
    let me: Value = agent
        .get(api.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(me["caller"]["certname"], "gen1");
    // A second generate for the same name is refused (exit 4), nothing overwritten.
    let before = std::fs::read(&key).unwrap();
    assert_eq!(
        ca(
            &api,
            &["generate", "gen1", "--out-dir", out_dir.to_str().unwrap()]
        )
        .0,
        4
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn an_unreachable_server_is_exit_code_1_with_a_message() {
    let (api, _dir) = Api::start(CONFIG);
    let out = certd()
        .args(["ca", "--server", "https://localhost:1", "--data-dir"])
        .arg(&api.server.dir)
        .args(["list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
