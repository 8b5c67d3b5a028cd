//! `/{env}/certificate_request/...` and `/{env}/certificate_requests/`.

use actix_web::http::Method;

use super::{harness, issue, status, submit};
use crate::common::inproc::{call, csr};
use crate::inproc_service;

#[actix_web::test]
async fn head_get_certificate_request_name() {
    let h = harness();
    let svc = inproc_service!(h);
    let uri = "/production/certificate_request/node1";
    let mine = csr("node1");
    assert_eq!(
        call(&svc, Method::PUT, uri, "", mine.clone(), &[])
            .await
            .status,
        201
    );
    let get = call(&svc, Method::GET, uri, "", "", &[]).await;
    assert_eq!(get.status, 200);
    assert!(String::from_utf8_lossy(&get.body).contains("BEGIN CERTIFICATE REQUEST"));
    assert_eq!(status(&svc, Method::HEAD, uri, "").await, 200);
    let der = call(
        &svc,
        Method::GET,
        uri,
        "",
        "",
        &[("accept", "application/pkcs10")],
    )
    .await;
    assert_eq!(der.body[0], 0x30, "DER");
    assert_eq!(
        status(
            &svc,
            Method::GET,
            "/production/certificate_request/nobody",
            ""
        )
        .await,
        404
    );
    assert_eq!(status(&svc, Method::DELETE, uri, "admin").await, 204);
    let gone = call(&svc, Method::GET, uri, "", "", &[]).await;
    assert_eq!(gone.status, 410, "rejected");
}

#[actix_web::test]
async fn put_certificate_request_name() {
    let h = harness();
    let svc = inproc_service!(h);
    let uri = "/production/certificate_request/node1";
    assert_eq!(
        call(&svc, Method::PUT, uri, "", csr("node1"), &[])
            .await
            .status,
        201,
        "new"
    );
    let other = call(&svc, Method::PUT, uri, "", csr("node1"), &[]).await;
    assert_eq!(
        (other.status.as_u16(), other.code().as_str()),
        (409, "already-requested"),
        "anyone else, another key"
    );
    assert_eq!(
        call(&svc, Method::PUT, uri, "admin", csr("node1"), &[])
            .await
            .status,
        200,
        "an admin replaces it"
    );
    // A CSR asking for what the policy forbids: 400 with the rule.
    let key = certd::ca::KeyType::EcP256.generate().unwrap();
    let name = certd::ca::Certname::parse("node2").unwrap();
    let sans = certd::ca::build_csr(&key, &name, &["other.example".into()]).unwrap();
    let bad = call(
        &svc,
        Method::PUT,
        "/production/certificate_request/node2",
        "",
        sans,
        &[],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(!bad.code().is_empty());
    // A certificate exists: 409.
    issue(&svc, "node3").await;
    let exists = submit(&svc, "node3").await;
    assert_eq!(exists.status, 409);
    // Too large: 413.
    let big = vec![b'A'; 2 << 20];
    let large = call(
        &svc,
        Method::PUT,
        "/production/certificate_request/node4",
        "",
        big,
        &[],
    )
    .await;
    assert_eq!(large.status, 413);
}

#[actix_web::test]
async fn delete_certificate_request_name() {
    let h = harness();
    let svc = inproc_service!(h);
    let uri = "/production/certificate_request/node1";
    assert_eq!(
        call(&svc, Method::PUT, uri, "", csr("node1"), &[])
            .await
            .status,
        201
    );
    assert_eq!(
        status(&svc, Method::DELETE, uri, "").await,
        403,
        "anonymous"
    );
    assert_eq!(
        status(&svc, Method::DELETE, uri, "admin").await,
        204,
        "reject"
    );
    assert_eq!(status(&svc, Method::GET, uri, "").await, 410);
    assert_eq!(
        status(&svc, Method::DELETE, uri, "admin").await,
        204,
        "remove the rejected one"
    );
    assert_eq!(status(&svc, Method::GET, uri, "").await, 404);
    assert_eq!(status(&svc, Method::DELETE, uri, "admin").await, 404);
}

#[actix_web::test]
async fn get_certificate_requests_list() {
    let h = harness();
    let svc = inproc_service!(h);
    for n in ["a1", "a2", "b1"] {
        let put = call(
            &svc,
            Method::PUT,
            &format!("/production/certificate_request/{n}"),
            "",
            csr(n),
            &[],
        )
        .await;
        assert_eq!(put.status, 201);
    }
    assert_eq!(
        status(
            &svc,
            Method::DELETE,
            "/production/certificate_request/a2",
            "admin"
        )
        .await,
        204
    );
    let all = call(
        &svc,
        Method::GET,
        "/production/certificate_requests/",
        "admin",
        "",
        &[],
    )
    .await;
    assert_eq!(all.status, 200);
    let states: Vec<(String, String)> = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("a1".into(), "requested".into()),
            ("a2".into(), "invalid".into()),
            ("b1".into(), "requested".into())
        ]
    );
    let a = call(
        &svc,
        Method::GET,
        "/production/certificate_requests/?certname=a*&state=requested",
        "admin",
        "",
        &[],
    )
    .await;
    assert_eq!(a.json().as_array().unwrap().len(), 1);
    assert_eq!(
        status(&svc, Method::GET, "/production/certificate_requests/", "").await,
        403
    );
}
