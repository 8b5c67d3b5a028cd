//! Every row of the native API's table (`certd::manual::api`), one test each, named
//! after the row, on the in-process harness (`common::inproc`): a file per resource.

mod certificate;
mod certificate_request;
mod certificate_status;
mod crl_events_status;

use actix_web::http::{Method, StatusCode};

use crate::common::inproc::{call, csr, Answer, Harness};

/// Submits a CSR for `name` anonymously and signs it as admin; the certificate PEM.
async fn issue<S, B>(svc: &S, name: &str) -> Vec<u8>
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let put = call(
        svc,
        Method::PUT,
        &format!("/production/certificate_request/{name}"),
        "",
        csr(name),
        &[],
    )
    .await;
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    let sign = call(
        svc,
        Method::POST,
        "/production/certificate/",
        "admin",
        name,
        &[],
    )
    .await;
    assert_eq!(sign.status, 201, "{}", String::from_utf8_lossy(&sign.body));
    let get = call(
        svc,
        Method::GET,
        &format!("/production/certificate/{name}"),
        "",
        "",
        &[],
    )
    .await;
    assert_eq!(get.status, 200);
    get.body
}

/// `method uri` as `who`, no body: the status.
async fn status<S, B>(svc: &S, method: Method, uri: &str, who: &str) -> StatusCode
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    call(svc, method, uri, who, "", &[]).await.status
}

/// An anonymous `PUT certificate_request/{name}` of a fresh CSR.
async fn submit<S, B>(svc: &S, name: &str) -> Answer
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let uri = format!("/production/certificate_request/{name}");
    call(svc, Method::PUT, &uri, "", csr(name), &[]).await
}

fn harness() -> Harness {
    Harness::new("")
}
