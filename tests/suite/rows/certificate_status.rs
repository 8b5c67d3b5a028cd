//! `/{env}/certificate_status/...` and `/{env}/certificate_statuses/...`.

use actix_web::http::Method;

use super::{harness, issue, status, submit};
use crate::common::inproc::call;
use crate::inproc_service;

#[actix_web::test]
async fn get_certificate_status_name() {
    let h = harness();
    let svc = inproc_service!(h);
    let pem = issue(&svc, "node1").await;
    let other = issue(&svc, "node2").await;
    h.register_pem("node1", &pem);
    h.register_pem("node2", &other);
    let uri = "/production/certificate_status/node1";
    let admin = call(&svc, Method::GET, uri, "admin", "", &[]).await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.json()["state"], "signed");
    assert_eq!(admin.json()["name"], "node1");
    assert_eq!(
        status(&svc, Method::GET, uri, "node1").await,
        200,
        "the agent itself"
    );
    assert_eq!(
        status(&svc, Method::GET, uri, "node2").await,
        403,
        "another agent"
    );
    assert_eq!(status(&svc, Method::GET, uri, "").await, 403, "anonymous");
    let none = call(
        &svc,
        Method::GET,
        "/production/certificate_status/nobody",
        "admin",
        "",
        &[],
    )
    .await;
    assert_eq!(none.status, 404);
}

#[actix_web::test]
async fn put_certificate_status_name() {
    let h = harness();
    let svc = inproc_service!(h);
    let put = submit(&svc, "node1").await;
    assert_eq!(put.status, 201);
    let uri = "/production/certificate_status/node1";
    let json = [("content-type", "application/json")];
    let sign = call(
        &svc,
        Method::PUT,
        uri,
        "admin",
        r#"{"desired_state": "signed"}"#,
        &json,
    )
    .await;
    assert_eq!(sign.status, 204);
    assert_eq!(
        status(&svc, Method::GET, "/production/certificate/node1", "").await,
        200
    );
    let revoke = call(
        &svc,
        Method::PUT,
        uri,
        "admin",
        r#"{"desired_state": "revoked"}"#,
        &json,
    )
    .await;
    assert_eq!(revoke.status, 204);
    assert_eq!(
        status(&svc, Method::GET, "/production/certificate/node1", "").await,
        410
    );
    let none = call(
        &svc,
        Method::PUT,
        "/production/certificate_status/nobody",
        "admin",
        r#"{"desired_state": "signed"}"#,
        &json,
    )
    .await;
    assert_eq!(none.status, 404);
    let anon = call(
        &svc,
        Method::PUT,
        uri,
        "",
        r#"{"desired_state": "signed"}"#,
        &json,
    )
    .await;
    assert_eq!(anon.status, 403);
}

#[actix_web::test]
async fn delete_certificate_status_name() {
    let h = harness();
    let svc = inproc_service!(h);
    issue(&svc, "node1").await;
    let uri = "/production/certificate_status/node1";
    assert_eq!(status(&svc, Method::DELETE, uri, "").await, 403);
    assert_eq!(
        status(&svc, Method::DELETE, uri, "admin").await,
        204,
        "clean"
    );
    assert_eq!(
        status(&svc, Method::GET, "/production/certificate/node1", "").await,
        404,
        "forgotten"
    );
    assert_eq!(status(&svc, Method::DELETE, uri, "admin").await, 404);
}

#[actix_web::test]
async fn get_certificate_statuses_pattern() {
    let h = harness();
    let svc = inproc_service!(h);
    issue(&svc, "signed1").await;
    let put = submit(&svc, "waiting1").await;
    assert_eq!(put.status, 201);
    let all = call(
        &svc,
        Method::GET,
        "/production/certificate_statuses/*",
        "admin",
        "",
        &[],
    )
    .await;
    let names = |a: &crate::common::inproc::Answer| -> Vec<String> {
        a.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Every name, setup's own certificates (admin, server) included.
    let all = names(&all);
    assert!(
        all.contains(&"signed1".to_owned()) && all.contains(&"waiting1".to_owned()),
        "{all:?}"
    );
    for q in ["state=requested", "restrict=waiting"] {
        let waiting = call(
            &svc,
            Method::GET,
            &format!("/production/certificate_statuses/*?{q}"),
            "admin",
            "",
            &[],
        )
        .await;
        assert_eq!(names(&waiting), ["waiting1"], "{q}");
    }
    assert_eq!(
        status(&svc, Method::GET, "/production/certificate_statuses/*", "").await,
        403
    );
}
