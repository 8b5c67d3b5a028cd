//! Races that must have exactly one winner, each run many times with many concurrent
//! clients: never a 5xx, and the state afterwards is the winner's.

use std::sync::{Arc, Barrier};

use crate::common::*;
use serde_json::Value;

const CONFIG: &str = "[ca]\nkey_type = \"ec-p256\"\n";
const ROUNDS: usize = 12;
const PER_SIDE: usize = 6;

/// Runs `a` and `b` from `PER_SIDE` threads each, all released at once; returns the
/// status codes of each side.
fn race(
    api: &Arc<Api>,
    a: impl Fn(&Api) -> u16 + Send + Sync + 'static,
    b: impl Fn(&Api) -> u16 + Send + Sync + 'static,
) -> (Vec<u16>, Vec<u16>) {
    let (a, b) = (Arc::new(a), Arc::new(b));
    let barrier = Arc::new(Barrier::new(PER_SIDE * 2));
    let mut handles = Vec::new();
    for i in 0..PER_SIDE * 2 {
        let (api, barrier, a, b) = (api.clone(), barrier.clone(), a.clone(), b.clone());
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            (i % 2, if i % 2 == 0 { a(&api) } else { b(&api) })
        }));
    }
    let mut out = (Vec::new(), Vec::new());
    for h in handles {
        let (side, code) = h.join().unwrap();
        assert!(code < 500, "a 5xx in a race: {code}");
        if side == 0 {
            out.0.push(code)
        } else {
            out.1.push(code)
        }
    }
    out
}

/// Every status of simultaneous native-face submissions of fresh CSRs for `name`.
fn native_submissions(api: &Arc<Api>, name: &str) -> Vec<u16> {
    let (n1, n2) = (name.to_string(), name.to_string());
    let (a, b) = race(
        api,
        move |api| api.submit(&n1, &csr_for(&n1).0),
        move |api| api.submit(&n2, &csr_for(&n2).0),
    );
    a.into_iter().chain(b).collect()
}

fn count(codes: &[u16], code: u16) -> usize {
    codes.iter().filter(|c| **c == code).count()
}

fn status(api: &Api, name: &str) -> Option<Value> {
    let r = api
        .admin
        .get(api.url(&format!("/production/certificate_status/{name}")))
        .send()
        .unwrap();
    (r.status() == 200).then(|| r.json().unwrap())
}

#[test]
fn sign_against_reject() {
    let (api, _dir) = Api::start(CONFIG);
    let api = Arc::new(api);
    for round in 0..ROUNDS {
        let name = format!("sr{round}");
        assert_eq!(api.submit(&name, &csr_for(&name).0), 201);
        let (n1, n2) = (name.clone(), name.clone());
        let (signs, rejects) = race(
            &api,
            move |api| api.sign(&n1),
            move |api| {
                api.admin
                    .delete(api.url(&format!("/production/certificate_request/{n2}")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            },
        );
        let st = status(&api, &name);
        let signed = count(&signs, 201);
        assert!(signed <= 1, "{signs:?}");
        if signed == 1 {
            assert_eq!(st.unwrap()["state"], "signed", "round {round}");
            assert!(
                rejects.iter().all(|c| *c == 404 || *c == 204),
                "{rejects:?}"
            );
        } else {
            // Rejected, never signed. (A second DELETE removes a rejected request, so
            // with several rejecters it may be gone altogether.)
            assert!(count(&rejects, 204) >= 1, "{rejects:?}");
            assert!(st.is_none_or(|s| s["state"] == "invalid"), "round {round}");
            assert_eq!(api.head(&format!("/production/certificate/{name}")), 404);
        }
    }
}

#[test]
fn revoke_against_clean() {
    let (api, dir) = Api::start(CONFIG);
    let api = Arc::new(api);
    for round in 0..ROUNDS {
        let name = format!("rc{round}");
        api.issue(&name);
        let serial = status(&api, &name).unwrap()["serial_number"]
            .as_str()
            .unwrap()
            .to_owned();
        let (n1, n2) = (name.clone(), name.clone());
        let (revokes, cleans) = race(
            &api,
            move |api| {
                api.admin
                    .delete(api.url(&format!("/production/certificate/{n1}")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            },
            move |api| {
                api.admin
                    .delete(api.url(&format!("/production/certificate_status/{n2}")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            },
        );
        assert_eq!(count(&cleans, 204), 1, "exactly one clean wins: {cleans:?}");
        assert!(
            revokes.iter().all(|c| *c == 204 || *c == 404),
            "{revokes:?}"
        );
        assert!(status(&api, &name).is_none(), "cleaned");
        // The serial is on the CRL exactly once.
        let crl = api
            .anon
            .get(api.url("/production/certificate_revocation_list/ca"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let f = dir.path().join("crl.pem");
        std::fs::write(&f, crl).unwrap();
        let (_, text, _) = run(std::process::Command::new("openssl")
            .args(["crl", "-noout", "-text", "-in"])
            .arg(&f));
        assert_eq!(
            text.matches(&format!("Serial Number: {serial}\n")).count(),
            1,
            "round {round}"
        );
    }
}

#[test]
fn two_submissions_for_one_name() {
    let (api, _dir) = Api::start(CONFIG);
    let api = Arc::new(api);
    for round in 0..ROUNDS {
        // Native face: one creates; the others, each for a key of its own, may not
        // replace it (409).
        let name = format!("ts{round}");
        let all = native_submissions(&api, &name);
        assert_eq!(count(&all, 201), 1, "{all:?}");
        assert_eq!(count(&all, 409), all.len() - 1, "{all:?}");
        // Puppet face: one is accepted, the others are duplicates (400).
        let name = format!("tp{round}");
        let put = |api: &Api, n: &str| {
            api.anon
                .put(api.url(&format!("/puppet-ca/v1/certificate_request/{n}")))
                .body(csr_for(n).0)
                .send()
                .unwrap()
                .status()
                .as_u16()
        };
        let (n1, n2) = (name.clone(), name.clone());
        let (a, b) = race(&api, move |api| put(api, &n1), move |api| put(api, &n2));
        let all: Vec<u16> = a.into_iter().chain(b).collect();
        assert_eq!(count(&all, 200), 1, "Puppet face: {all:?}");
        assert_eq!(count(&all, 400), all.len() - 1, "Puppet face: {all:?}");
    }
}

#[test]
fn replacing_a_csr_while_it_is_signed() {
    let (api, dir) = Api::start(CONFIG);
    let api = Arc::new(api);
    for round in 0..ROUNDS {
        let name = format!("rp{round}");
        let (first, _) = csr_for(&name);
        assert_eq!(api.submit(&name, &first), 201);
        let replacement = Arc::new(csr_for(&name).0);
        let (n1, n2, r) = (name.clone(), name.clone(), replacement.clone());
        let (signs, puts) = race(
            &api,
            move |api| api.sign(&n1),
            move |api| api.submit(&n2, &r),
        );
        assert!(count(&signs, 201) <= 1, "{signs:?}");
        assert!(signs.iter().all(|c| [201, 409].contains(c)), "{signs:?}");
        assert!(puts.iter().all(|c| [200, 409].contains(c)), "{puts:?}");
        let st = status(&api, &name).unwrap();
        if count(&signs, 201) == 1 {
            // The certificate is for the key of a CSR that was pending when it was signed,
            // and nothing is left pending beside it.
            assert_eq!(st["state"], "signed");
            assert_eq!(
                api.head(&format!("/production/certificate_request/{name}")),
                404
            );
            let pem = api
                .anon
                .get(api.url(&format!("/production/certificate/{name}")))
                .send()
                .unwrap()
                .bytes()
                .unwrap();
            let key_of = |path: &std::path::Path, what: &str| {
                run(std::process::Command::new("openssl")
                    .args([what, "-noout", "-pubkey", "-in"])
                    .arg(path))
                .1
            };
            let (c, a, b) = (
                dir.path().join("c.pem"),
                dir.path().join("a.csr"),
                dir.path().join("b.csr"),
            );
            std::fs::write(&c, &pem).unwrap();
            std::fs::write(&a, &first).unwrap();
            std::fs::write(&b, replacement.as_slice()).unwrap();
            let cert_key = key_of(&c, "x509");
            assert!(
                cert_key == key_of(&a, "req") || cert_key == key_of(&b, "req"),
                "round {round}"
            );
        } else {
            assert_eq!(
                st["state"], "requested",
                "round {round}: no certificate, the request stays"
            );
        }
    }
}

#[test]
fn autosigned_submissions_for_one_name() {
    // Autosign signs first and stores request and certificate in one transaction: one
    // submission wins its certificate, every other meets it and is refused, and nothing
    // is left pending beside it.
    let (api, _dir) = Api::start(&format!(
        "{CONFIG}[environments.production]\nautosign = true\n"
    ));
    let api = Arc::new(api);
    for round in 0..ROUNDS / 2 {
        let name = format!("as{round}");
        let all = native_submissions(&api, &name);
        assert_eq!(count(&all, 201), 1, "round {round}: {all:?}");
        assert_eq!(count(&all, 409), all.len() - 1, "round {round}: {all:?}");
        assert_eq!(status(&api, &name).unwrap()["state"], "signed");
        assert_eq!(
            api.head(&format!("/production/certificate_request/{name}")),
            404,
            "round {round}: a request left pending beside the certificate"
        );
    }
}
