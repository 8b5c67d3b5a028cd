//! `/{env}/events`, `/{env}/certificate_revocation_list/{ca,root}` and `/status`.

use actix_web::http::Method;

use super::{harness, issue, status};
use crate::common::inproc::call;
use crate::inproc_service;

#[actix_web::test]
async fn get_events() {
    let h = harness();
    let svc = inproc_service!(h);
    issue(&svc, "node1").await;
    assert_eq!(
        status(
            &svc,
            Method::DELETE,
            "/production/certificate/node1",
            "admin"
        )
        .await,
        204
    );
    let events = call(
        &svc,
        Method::GET,
        "/production/events?after=0&limit=100",
        "admin",
        "",
        &[],
    )
    .await;
    assert_eq!(events.status, 200);
    let kinds: Vec<String> = events
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["certname"] == "node1")
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["requested", "issued", "revoked"]);
    assert_eq!(
        status(&svc, Method::GET, "/production/events", "").await,
        403
    );
}

#[actix_web::test]
async fn get_certificate_revocation_list_ca() {
    let h = harness();
    let svc = inproc_service!(h);
    issue(&svc, "node1").await;
    assert_eq!(
        status(
            &svc,
            Method::DELETE,
            "/production/certificate/node1",
            "admin"
        )
        .await,
        204
    );
    let uri = "/production/certificate_revocation_list/ca";
    let pem = call(&svc, Method::GET, uri, "", "", &[]).await;
    assert_eq!(pem.status, 200);
    let crl = openssl::x509::X509Crl::from_pem(&pem.body).unwrap();
    assert_eq!(crl.get_revoked().map_or(0, |r| r.len()), 1);
    let der = call(
        &svc,
        Method::GET,
        uri,
        "",
        "",
        &[("accept", "application/pkix-crl")],
    )
    .await;
    assert_eq!(der.body[0], 0x30);
    let etag = pem.header("etag").expect("ETag");
    let same = call(&svc, Method::GET, uri, "", "", &[("if-none-match", &etag)]).await;
    assert_eq!(same.status, 304);
}

#[actix_web::test]
async fn get_certificate_revocation_list_root() {
    let h = harness();
    let svc = inproc_service!(h);
    let root = call(
        &svc,
        Method::GET,
        "/production/certificate_revocation_list/root",
        "",
        "",
        &[],
    )
    .await;
    assert_eq!(root.status, 200);
    let crl = openssl::x509::X509Crl::from_pem(&root.body).unwrap();
    let chain = call(&svc, Method::GET, "/production/certificate/ca", "", "", &[]).await;
    let certs = openssl::x509::X509::stack_from_pem(&chain.body).unwrap();
    assert_eq!(
        crl.issuer_name().to_der().unwrap(),
        certs[1].subject_name().to_der().unwrap(),
        "the root's CRL"
    );
}

#[actix_web::test]
async fn get_status() {
    let h = harness();
    let svc = inproc_service!(h);
    let anon = call(&svc, Method::GET, "/status", "", "", &[]).await;
    assert_eq!(anon.status, 200);
    let s = anon.json();
    assert_eq!(s["store"]["ok"], true);
    // Environments and issuers are a global admin's to read.
    assert!(s.get("environments").is_none(), "{s}");
    let admin = call(&svc, Method::GET, "/status", "admin", "", &[])
        .await
        .json();
    assert!(admin["environments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "production"));
    assert_ne!(
        admin["caller"]["role"], s["caller"]["role"],
        "the caller as the server sees it"
    );
}
