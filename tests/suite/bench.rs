//! `certd bench` against a real server: the load generator issues through the Puppet face
//! and the native face, checks the server's chain before anything is timed (a wrong CA
//! stops it), warms up uncounted when asked, and `sign` runs without a server.

use crate::common::*;

const CONFIG: &str = "[ca]\nkey_type = \"ec-p256\"\n[environments.production]\nautosign = true\n";

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = certd().arg("bench").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn issue_runs_against_both_faces_and_a_wrong_ca_stops_it_before_timing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG);
    let data = server.dir.to_str().unwrap().to_owned();
    let url = format!("https://127.0.0.1:{}", server.port);

    let puppet = format!("{url},face=puppet");
    let (code, out, err) = bench(&[
        "issue",
        "--data-dir",
        &data,
        "--target",
        &puppet,
        "--count",
        "12",
        "--runs",
        "2",
        "--new-connection",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.matches("n=12      err=0").count(), 2, "{out}");
    assert!(out.contains("median"), "{out}");

    let (code, out, err) = bench(&[
        "issue",
        "--data-dir",
        &data,
        "--target",
        &url,
        "--count",
        "5",
        "--runs",
        "1",
        "--warmup",
        "4",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("n=5       err=0"), "{out}");
    // The warm-up's 4 agents are issued, but no figure counts them.
    assert!(err.contains("warm-up done: 4 in"), "{err}");
    assert_eq!(out.matches(" run ").count(), 1, "{out}");
    assert!(out.contains("(1 runs)"), "{out}");

    // 2 x 12 + 4 + 5 agents, each with a certificate the server really issued.
    let (cert, key) = admin(&server);
    let admin = client(&server, Some((&cert, &key)));
    let listed: serde_json::Value = admin
        .get(server.url("/puppet-ca/v1/certificate_statuses/any?state=signed"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let benched = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("bench-"))
        .count();
    assert_eq!(benched, 33);

    // A CA the server's chain does not lead to: the chain check before timing fails.
    let (other, _) = make_ca(dir.path(), "another CA");
    let wrong = format!("{url},face=puppet,ca={}", other.display());
    let (code, out, err) = bench(&["issue", "--target", &wrong, "--count", "3", "--runs", "1"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("checking the server's certificate chain"),
        "{err}"
    );
    assert!(!out.contains("run 1"), "nothing timed: {out}");
}

#[test]
fn sign_needs_no_server_and_other_scenarios_need_a_target() {
    let (code, out, err) = bench(&[
        "sign",
        "--sign-key",
        "ec-p256",
        "--count",
        "200",
        "--runs",
        "2",
        "--concurrency",
        "2",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.matches("n=200").count(), 2, "{out}");
    assert!(out.contains("signatures/s"), "{out}");
    assert!(
        out.contains("OpenSSL 3."),
        "the linked library is named: {out}"
    );

    let (code, _, err) = bench(&["issue", "--count", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("--target"), "{err}");

    let (code, _, err) = bench(&["revoke", "--target", "https://127.0.0.1:1", "--warmup", "5"]);
    assert_ne!(code, 0);
    assert!(err.contains("--warmup is for"), "{err}");

    let (code, _, err) = bench(&["sign", "--sign-key", "rsa-1024"]);
    assert_ne!(code, 0);
    assert!(err.contains("--sign-key"), "{err}");
}
