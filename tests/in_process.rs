//! The HTTP application driven in-process: `App` built by the test (the composition root
//! `cli serve` is, for a server) on `MemStore` with a fixed clock, its routes and
//! middleware served by `certd::http::service` without a socket. The caller's identity
//! comes from a client certificate the real resolver classifies, put in the request by
//! a middleware of the test's (what the TLS layer does for a real connection).

use std::sync::Arc;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Service;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, HttpMessage};
use certd::app::App;
use certd::authz::Identity;
use certd::ca::{build_csr, Certname, FixedClock, KeyType, OsRng};
use certd::config::Config;
use certd::store::{DataDir, MemStore};
use openssl::x509::X509;

/// 2027-01-15 08:00:00 UTC: every certificate issued here starts then.
const NOW: i64 = 1_800_000_000;

/// Header naming the caller, read by the test's identity middleware: `admin` is the
/// admin certificate setup made; anything else (or none) is anonymous.
const AS: &str = "x-test-caller";

struct Harness {
    app: Arc<App>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(config: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(config, &dir.path().join("certd.toml")).unwrap();
        let app = App::new(
            config,
            DataDir::new(dir.path().join("data")),
            Arc::new(MemStore::new()),
            Arc::new(FixedClock::new(NOW)),
            Arc::new(OsRng),
        )
        .unwrap();
        Harness {
            app: Arc::new(app),
            _dir: dir,
        }
    }

    fn admin(&self) -> Identity {
        let pem = std::fs::read(self._dir.path().join("data/admin/admin.pem")).unwrap();
        let der = X509::from_pem(&pem).unwrap().to_der().unwrap();
        self.app.resolver().identify(Some(&der))
    }
}

/// The service, with the test's identity middleware outside everything.
macro_rules! service {
    ($h:expr) => {{
        let admin = $h.admin();
        test::init_service(
            certd::http::service(web::Data::from($h.app.clone())).wrap_fn(move |req, srv| {
                if req.headers().get(AS).is_some_and(|v| v == "admin") {
                    req.extensions_mut().insert(admin.clone());
                }
                srv.call(req)
            }),
        )
        .await
    }};
}

fn csr(name: &str) -> Vec<u8> {
    let key = KeyType::EcP256.generate().unwrap();
    build_csr(&key, &Certname::parse(name).unwrap(), &[]).unwrap()
}

#[actix_web::test]
async fn a_native_face_issuance_runs_in_process_on_the_memory_store() {
    let h = Harness::new("[ca]\nkey_type = \"ec-p256\"\n");
    let svc = service!(h);

    // Agent: PUT the CSR (anonymous). 201, pending.
    let resp = test::call_service(
        &svc,
        TestRequest::put()
            .uri("/production/certificate_request/node1")
            .set_payload(csr("node1"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Monitor: HEAD the certificate: not signed yet.
    let resp = test::call_service(
        &svc,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/production/certificate/node1")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Anonymous signing is refused by the authorization rules.
    let resp = test::call_service(
        &svc,
        TestRequest::post()
            .uri("/production/certificate/")
            .set_payload("node1")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Admin: POST the name. 201.
    let resp = test::call_service(
        &svc,
        TestRequest::post()
            .uri("/production/certificate/")
            .insert_header((AS, "admin"))
            .set_payload("node1")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Agent: GET the certificate; it starts at the fixed clock's time, backdated by the
    // profile's allowance for clock skew.
    let resp = test::call_service(
        &svc,
        TestRequest::get()
            .uri("/production/certificate/node1")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let pem = test::read_body(resp).await;
    let cert = X509::from_pem(&pem).unwrap();
    let not_before =
        openssl::asn1::Asn1Time::from_unix(NOW - certd::ca::Profile::DEFAULT_BACKDATE).unwrap();
    assert_eq!(
        cert.not_before().compare(&not_before).unwrap(),
        std::cmp::Ordering::Equal,
        "notBefore {} is not the fixed clock's time",
        cert.not_before()
    );

    // Monitor: HEAD now says signed, with GET's length (the body the HTTP layer
    // measures for Content-Length and then leaves out).
    let resp = test::call_service(
        &svc,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/production/certificate/node1")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.response().body().size(),
        BodySize::Sized(pem.len() as u64)
    );
}
