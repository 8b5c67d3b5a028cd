//! `/{env}/certificate/...`.

use actix_web::http::Method;

use super::{harness, issue, status, submit};
use crate::common::inproc::call;
use crate::inproc_service;

#[actix_web::test]
async fn head_get_certificate_name() {
    let h = harness();
    let svc = inproc_service!(h);
    let pem = issue(&svc, "node1").await;
    let uri = "/production/certificate/node1";
    let get = call(&svc, Method::GET, uri, "", "", &[]).await;
    assert_eq!(get.body, pem);
    let head = call(&svc, Method::HEAD, uri, "", "", &[]).await;
    assert_eq!(head.status, 200);
    let der = call(
        &svc,
        Method::GET,
        uri,
        "",
        "",
        &[("accept", "application/pkix-cert")],
    )
    .await;
    assert_eq!(der.status, 200);
    assert_eq!(der.body[0], 0x30, "DER");
    let json = call(
        &svc,
        Method::GET,
        uri,
        "",
        "",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(json.json()["state"], "signed");
    let fp = call(
        &svc,
        Method::GET,
        uri,
        "",
        "",
        &[("accept", "x-cert/fingerprint;digest=sha256")],
    )
    .await;
    assert_eq!(fp.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&fp.body)
            .trim()
            .matches(':')
            .count(),
        31,
        "SHA-256 as hex pairs"
    );
    // Unknown, and pending: 404.
    assert_eq!(
        status(&svc, Method::GET, "/production/certificate/nobody", "").await,
        404
    );
    let put = submit(&svc, "node2").await;
    assert_eq!(put.status, 201);
    assert_eq!(
        status(&svc, Method::HEAD, "/production/certificate/node2", "").await,
        404
    );
    // Revoked: 410 with the date and reason.
    let del = call(
        &svc,
        Method::DELETE,
        "/production/certificate/node1?reason=keyCompromise",
        "admin",
        "",
        &[],
    )
    .await;
    assert_eq!(del.status, 204);
    let gone = call(&svc, Method::GET, uri, "", "", &[]).await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json()["revocation_reason"], "keyCompromise");
    assert!(gone.json()["revoked_at"].is_string());
}

#[actix_web::test]
async fn get_certificate_ca() {
    let h = harness();
    let svc = inproc_service!(h);
    let chain = call(&svc, Method::GET, "/production/certificate/ca", "", "", &[]).await;
    assert_eq!(chain.status, 200);
    let certs = openssl::x509::X509::stack_from_pem(&chain.body).unwrap();
    assert_eq!(certs.len(), 2, "issuing CA, then root");
    assert_eq!(certs[0].issuer_name_hash(), certs[1].subject_name_hash());
}

#[actix_web::test]
async fn delete_certificate_name() {
    let h = harness();
    let svc = inproc_service!(h);
    issue(&svc, "node1").await;
    let uri = "/production/certificate/node1";
    assert_eq!(
        status(&svc, Method::DELETE, uri, "").await,
        403,
        "anonymous"
    );
    assert_eq!(status(&svc, Method::DELETE, uri, "admin").await, 204);
    assert_eq!(
        status(&svc, Method::DELETE, uri, "admin").await,
        204,
        "again"
    );
    let none = call(
        &svc,
        Method::DELETE,
        "/production/certificate/nobody",
        "admin",
        "",
        &[],
    )
    .await;
    assert_eq!(none.status, 404);
}

#[actix_web::test]
async fn get_certificate_list() {
    let h = harness();
    let svc = inproc_service!(h);
    for n in ["web1", "web2", "db1"] {
        issue(&svc, n).await;
    }
    assert_eq!(
        status(&svc, Method::GET, "/production/certificate/", "").await,
        403
    );
    let web = call(
        &svc,
        Method::GET,
        "/production/certificate/?certname=web*",
        "admin",
        "",
        &[],
    )
    .await;
    assert_eq!(web.status, 200);
    let names: Vec<String> = web
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["web1", "web2"]);
    let page = call(
        &svc,
        Method::GET,
        "/production/certificate/?limit=1",
        "admin",
        "",
        &[],
    )
    .await;
    assert_eq!(page.json().as_array().unwrap().len(), 1);
    assert!(
        page.header("link")
            .is_some_and(|l| l.contains("rel=\"next\"")),
        "{:?}",
        page.header("link")
    );
}

#[actix_web::test]
async fn post_certificate_sign() {
    let h = harness();
    let svc = inproc_service!(h);
    let put = submit(&svc, "node1").await;
    assert_eq!(put.status, 201);
    let sign = call(
        &svc,
        Method::POST,
        "/production/certificate/",
        "admin",
        "node1",
        &[],
    )
    .await;
    assert_eq!(sign.status, 201);
    assert!(sign
        .header("location")
        .is_some_and(|l| l.ends_with("/production/certificate/node1")));
    let again = call(
        &svc,
        Method::POST,
        "/production/certificate/",
        "admin",
        "node1",
        &[],
    )
    .await;
    assert_eq!(again.status, 409, "already signed");
    let none = call(
        &svc,
        Method::POST,
        "/production/certificate/",
        "admin",
        "nobody",
        &[],
    )
    .await;
    assert_eq!(none.status, 404, "no request");
    let json = call(
        &svc,
        Method::POST,
        "/production/certificate/",
        "admin",
        "{\"certname\": \"nobody\", \"ttl\": 60}",
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(json.status, 404, "the JSON form names the certname too");
}
