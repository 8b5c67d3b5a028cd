//! The in-process harness: `App` on `MemStore` with a fixed clock, served by
//! `certd::http::service` without a socket. The caller is named by the `x-test-caller`
//! header and classified by the real resolver from a certificate the test registered
//! (`admin`, setup's admin certificate, is registered from the start); without the
//! header the caller is anonymous.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use certd::app::App;
use certd::authz::Identity;
use certd::ca::{build_csr, Certname, FixedClock, KeyType, OsRng};
use certd::config::Config;
use certd::store::{DataDir, MemStore};
use openssl::x509::X509;

/// 2027-01-15 08:00:00 UTC: the fixed clock's time.
pub const NOW: i64 = 1_800_000_000;

/// Header naming the caller (a registered name).
pub const AS: &str = "x-test-caller";

/// An application and the callers tests may act as.
pub struct Harness {
    pub app: Arc<App>,
    pub callers: Arc<Mutex<HashMap<String, Identity>>>,
    pub dir: tempfile::TempDir,
}

/// What a call answered.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The problem code of an error answer.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

impl Harness {
    /// An application set up from `config` (TOML; ECDSA keys unless it says otherwise).
    pub fn new(config: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(
            &format!("[ca]\nkey_type = \"ec-p256\"\n{config}"),
            &dir.path().join("certd.toml"),
        )
        .unwrap();
        let app = Arc::new(
            App::new(
                config,
                DataDir::new(dir.path().join("data")),
                Arc::new(MemStore::new()),
                Arc::new(FixedClock::new(NOW)),
                Arc::new(OsRng),
            )
            .unwrap(),
        );
        let h = Harness {
            app,
            callers: Arc::new(Mutex::new(HashMap::new())),
            dir,
        };
        let pem = std::fs::read(h.dir.path().join("data/admin/admin.pem")).unwrap();
        h.register_pem("admin", &pem);
        h
    }

    /// Lets tests act as the holder of certificate `pem`, under `name`.
    pub fn register_pem(&self, name: &str, pem: &[u8]) {
        let der = X509::from_pem(pem).unwrap().to_der().unwrap();
        let identity = self.app.resolver().identify(Some(&der));
        self.callers
            .lock()
            .unwrap()
            .insert(name.to_owned(), identity);
    }
}

/// The service over `$h`, with the test's identity middleware outside everything.
#[macro_export]
macro_rules! inproc_service {
    ($h:expr) => {{
        use actix_web::dev::Service as _;
        use actix_web::HttpMessage as _;
        let callers = $h.callers.clone();
        actix_web::test::init_service(
            certd::http::service(actix_web::web::Data::from($h.app.clone())).wrap_fn(
                move |req, srv| {
                    let who = req
                        .headers()
                        .get($crate::common::inproc::AS)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|n| callers.lock().unwrap().get(n).cloned());
                    if let Some(who) = who {
                        req.extensions_mut().insert(who);
                    }
                    srv.call(req)
                },
            ),
        )
        .await
    }};
}

/// `method uri` as `who` (a registered caller; "" for anonymous) with `body` and extra
/// headers.
pub async fn call<S, B>(
    svc: &S,
    method: Method,
    uri: &str,
    who: &str,
    body: impl Into<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut r = TestRequest::default().method(method).uri(uri);
    if !who.is_empty() {
        r = r.insert_header((AS, who));
    }
    for (k, v) in headers {
        r = r.insert_header((*k, *v));
    }
    let resp = test::call_service(svc, r.set_payload(body.into()).to_request()).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = test::read_body(resp).await.to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// A CSR (PEM) for `name` with a fresh P-256 key.
pub fn csr(name: &str) -> Vec<u8> {
    let key = KeyType::EcP256.generate().unwrap();
    build_csr(&key, &Certname::parse(name).unwrap(), &[]).unwrap()
}
