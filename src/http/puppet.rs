//! The Puppet face: `/puppet-ca/v1/...` and `/status/v1/...`, with Puppet Server's status
//! codes, plain-text bodies and JSON field names (Puppet Server 7's CA API),
//! on the same use cases as the native face, in the default environment.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, Header, HttpDate, IfModifiedSince};
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::resources::{run_raw, submission};
use super::{body, Caller};
use crate::app::{App, AppError, PuppetStatus, StatusCursor, PUPPET_ENV};
use crate::ca::UnixTime;
use crate::store::CertState;

/// The Puppet Server version certd answers as: 8.4 semantics (bulk sign, renewal,
/// `If-Modified-Since` on certificates), so that newer CLIs use the bulk endpoints.
pub const PUPPET_VERSION: &str = "8.4.0";

/// The Puppet face's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/puppet-ca/v1")
            .wrap(DefaultHeaders::new().add(("X-Puppet-Version", PUPPET_VERSION)))
            .route("/certificate/{name}", web::get().to(certificate))
            .route("/certificate_revocation_list/{name}", web::get().to(crl))
            .route("/certificate_revocation_list", web::put().to(put_crl))
            .route("/certificate_request/{name}", web::get().to(get_request))
            .route("/certificate_request/{name}", web::put().to(put_request))
            .route(
                "/certificate_request/{name}",
                web::delete().to(delete_request),
            )
            .route("/certificate_status/{name}", web::get().to(get_status))
            .route("/certificate_status/{name}", web::put().to(put_status))
            .route(
                "/certificate_status/{name}",
                web::delete().to(delete_status),
            )
            .route("/certificate_statuses/{any}", web::get().to(statuses))
            .route("/certificate_statuses/", web::get().to(missing_segment))
            .route("/clean", web::put().to(clean))
            .route("/expirations", web::get().to(expirations))
            .route("/certificate_renewal", web::post().to(renew))
            .route("/sign", web::post().to(sign))
            .route("/sign/all", web::post().to(sign_all))
            .default_service(web::to(not_found)),
    )
    .service(
        web::scope("/status/v1")
            .route("/simple", web::get().to(simple))
            .route("/simple/{service}", web::get().to(simple_service))
            .route("/services", web::get().to(services)),
    );
}

/// The body, bounded by `limits.max_body_bytes`, or Puppet-style plain-text refusal
/// (413 too large, 400 unreadable).
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    app: &App,
) -> Result<web::Bytes, HttpResponse> {
    body::read(req, payload, app.config().limits.max_body_bytes)
        .await
        .map_err(|p| plain(p.status(), p.to_string()))
}

/// A name from the request as a plain-text answer may echo it: control characters (a
/// NUL, a terminal escape) escaped, at most 300 characters.
fn echo(raw: &str) -> String {
    raw.chars()
        .take(300)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn plain(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body.into())
}

async fn not_found() -> HttpResponse {
    plain(StatusCode::NOT_FOUND, "Not Found")
}

async fn missing_segment() -> HttpResponse {
    plain(StatusCode::BAD_REQUEST, "Missing URL Segment")
}

/// Whether `path` is under the Puppet face (its errors are Puppet's plain text).
pub(super) fn is_puppet_path(path: &str) -> bool {
    path.starts_with("/puppet-ca/") || path.starts_with("/status/v1/")
}

/// trapperkeeper-authorization's refusal, word for word (the path without its query, as
/// Ring's `:uri`), with the face's `X-Puppet-Version` also where the rules refuse before
/// routing.
pub(super) fn forbidden(req: &HttpRequest) -> HttpResponse {
    let mut r = plain(
        StatusCode::FORBIDDEN,
        format!(
            "Forbidden request: {} (method :{}). Please see the server logs for details.",
            echo(req.path()),
            req.method().as_str().to_ascii_lowercase()
        ),
    );
    if req.path().starts_with("/puppet-ca/") {
        r.headers_mut().insert(
            header::HeaderName::from_static("x-puppet-version"),
            header::HeaderValue::from_static(PUPPET_VERSION),
        );
    }
    r
}

/// Puppet's answer for an error of the core; `conflict` is the status a state conflict
/// gets here (409, or 400 on CSR submission).
fn answer(req: &HttpRequest, e: AppError, conflict: StatusCode) -> HttpResponse {
    match e {
        AppError::Forbidden(_) => forbidden(req),
        AppError::CertificateMismatch => plain(StatusCode::FORBIDDEN, e.to_string()),
        AppError::NotFound(detail) => plain(StatusCode::NOT_FOUND, detail),
        AppError::UnknownEnvironment(env) => plain(
            StatusCode::NOT_FOUND,
            format!("Not Found: environment {env}"),
        ),
        AppError::InvalidInput(ca) => plain(StatusCode::BAD_REQUEST, ca.puppet_message()),
        AppError::BadRequest { detail, .. } => plain(StatusCode::BAD_REQUEST, detail),
        AppError::CsrRejected(ca) => plain(conflict, ca.puppet_message()),
        AppError::Conflict { detail, .. } => plain(conflict, detail),
        AppError::Revoked { certname, .. } => plain(
            StatusCode::NOT_FOUND,
            format!("Could not find certificate {certname}"),
        ),
        AppError::RequestInvalid { certname, .. } => plain(
            StatusCode::NOT_FOUND,
            format!("Could not find certificate_request {certname}"),
        ),
        // No Retry-After: a Puppet agent sleeps on one (up to its run interval) and
        // asks again, up to 100 times; without one it logs the failure and goes on
        // (a renewal keeps its certificate; a bootstrap waits `waitforcert`).
        AppError::TooSoon { detail, .. } => plain(StatusCode::TOO_MANY_REQUESTS, detail.clone()),
        AppError::Full(detail) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Service Unavailable: {detail}"),
        ),
        AppError::Busy => {
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable: too many signings under way; retry shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        AppError::Store(crate::store::StoreError::Unavailable(why)) => {
            tracing::error!(error = %why, "store unavailable");
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable: the store cannot take writes now; retry shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        AppError::Store(_) | AppError::Files(_) | AppError::Pki(_) | AppError::Task(_) => {
            tracing::error!(error = %e, "internal error on the Puppet face");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// 304 when `If-Modified-Since` parses and `modified` is not after it.
fn not_modified(req: &HttpRequest, modified: UnixTime) -> bool {
    let Ok(since) = IfModifiedSince::parse(req) else {
        return false;
    };
    let modified = UNIX_EPOCH + Duration::from_secs(modified.max(0) as u64);
    modified <= SystemTime::from(since.0)
}

fn pem_or_304<B: actix_web::body::MessageBody + 'static>(
    req: &HttpRequest,
    pem: impl FnOnce() -> B,
    modified: UnixTime,
) -> HttpResponse {
    if not_modified(req, modified) {
        return HttpResponse::NotModified()
            .content_type("text/plain")
            .finish();
    }
    let last = HttpDate::from(UNIX_EPOCH + Duration::from_secs(modified.max(0) as u64));
    HttpResponse::Ok()
        .content_type("text/plain")
        .insert_header(header::LastModified(last))
        .body(pem())
}

async fn certificate(
    req: HttpRequest,
    app: web::Data<App>,
    name: web::Path<String>,
) -> HttpResponse {
    let name = name.into_inner();
    // Answered on the worker thread when the store can answer without the network (one
    // local key, or its cache), as the native face's is.
    let result = if name == "ca" {
        app.puppet_ca_bundle()
    } else {
        let found = match app.puppet_certificate_now(&name) {
            Some(found) => found,
            None => {
                let name = name.clone();
                run_raw(&app, move |a: &App| a.puppet_certificate(&name)).await
            }
        };
        found.map_err(|e| match e {
            AppError::InvalidInput(_) => {
                AppError::NotFound(format!("Could not find certificate {}", echo(&name)))
            }
            other => other,
        })
    };
    match result {
        Ok((pem, modified)) => pem_or_304(&req, || pem, modified),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

async fn crl(req: HttpRequest, app: web::Data<App>) -> HttpResponse {
    // From memory, on the worker thread (as `certificate`).
    match app.crl_bundle(PUPPET_ENV) {
        Ok((views, modified)) => pem_or_304(
            &req,
            || {
                // The two CRLs as held (6.7 MB of PEM at 100,000 entries), not a copy.
                let pems = views.map(|v| v.pem());
                let len = pems.iter().map(|p| p.len() as u64).sum();
                let parts = futures_util::stream::iter(pems.map(Ok::<_, std::convert::Infallible>));
                actix_web::body::SizedStream::new(len, parts)
            },
            modified,
        ),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

/// `PUT /certificate_revocation_list`: newer upstream CRLs.
async fn put_crl(req: HttpRequest, app: web::Data<App>, payload: web::Payload) -> HttpResponse {
    let bytes = match read_body(&req, payload, &app).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    match run_raw(&app, move |a| a.update_upstream_crls(&bytes)).await {
        Ok(()) => plain(StatusCode::OK, "Successfully updated CRLs."),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

async fn get_request(
    req: HttpRequest,
    app: web::Data<App>,
    name: web::Path<String>,
) -> HttpResponse {
    let name = name.into_inner();
    let shown = name.clone();
    match run_raw(&app, move |a| a.puppet_request(&name)).await {
        Ok(view) => plain(
            StatusCode::OK,
            String::from_utf8_lossy(&view.pem()).into_owned(),
        ),
        Err(
            AppError::NotFound(_) | AppError::RequestInvalid { .. } | AppError::InvalidInput(_),
        ) => plain(
            StatusCode::NOT_FOUND,
            format!("Could not find certificate_request {}", echo(&shown)),
        ),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

/// Submission: 200 with an empty body whether queued or autosigned; any refusal is a 400
/// (the agent takes a 400 as "already submitted" and polls for its certificate).
async fn put_request(
    req: HttpRequest,
    app: web::Data<App>,
    caller: Caller,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let bytes = match read_body(&req, payload, &app).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let name = name.into_inner();
    let who = caller.0;
    let start = app.puppet_submit_start(&who, &name, &bytes);
    match submission(&app, start, move |a, read_first| {
        a.puppet_submit_again(&who, &name, &bytes, read_first)
    })
    .await
    {
        Ok(_) => plain(StatusCode::OK, ""),
        Err(e) => answer(&req, e, StatusCode::BAD_REQUEST),
    }
}

async fn delete_request(
    req: HttpRequest,
    app: web::Data<App>,
    caller: Caller,
    name: web::Path<String>,
) -> HttpResponse {
    let name = name.into_inner();
    match run_raw(&app, move |a| a.puppet_delete_request(&caller.0, &name)).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

/// The JSON media types `certificate_status` speaks; the response echoes an acceptable
/// `Accept`, else `application/json`; anything else is a 406.
fn status_media(req: &HttpRequest) -> Option<&'static str> {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return Some("application/json");
    };
    for range in accept
        .split(',')
        .map(|r| r.split(';').next().unwrap_or("").trim())
    {
        match range {
            "application/json" | "*/*" | "application/*" => return Some("application/json"),
            "text/pson" => return Some("text/pson"),
            "pson" => return Some("pson"),
            _ => {}
        }
    }
    None
}

fn not_acceptable() -> HttpResponse {
    plain(
        StatusCode::NOT_ACCEPTABLE,
        "No acceptable resource format found.",
    )
}

async fn get_status(
    req: HttpRequest,
    app: web::Data<App>,
    name: web::Path<String>,
) -> HttpResponse {
    let Some(media) = status_media(&req) else {
        return not_acceptable();
    };
    let name = name.into_inner();
    match run_raw(&app, move |a| a.puppet_status(&name)).await {
        Ok(st) => {
            let mut json = Vec::with_capacity(1024);
            st.write_json(&mut json);
            HttpResponse::Ok().content_type(media).body(json)
        }
        Err(AppError::InvalidInput(_)) => plain(StatusCode::NOT_FOUND, "Resource not found."),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

/// `PUT certificate_status/{name}`, checking the body in Puppet's order: empty, not
/// JSON, no `desired_state`, a state other than signed/revoked, a non-integer
/// `cert_ttl`; then the content type (415).
async fn put_status(
    req: HttpRequest,
    app: web::Data<App>,
    caller: Caller,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let name = name.into_inner();
    let bytes = match read_body(&req, payload, &app).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let bad = |m: String| plain(StatusCode::BAD_REQUEST, m);
    if bytes.is_empty() {
        return bad("Empty request body.".into());
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bad("Request body is not JSON.".into());
    };
    let Some(state) = json.get("desired_state") else {
        return bad("Missing required parameter \"desired_state\"".into());
    };
    let sign = match state.as_str() {
        Some("signed") => true,
        Some("revoked") => false,
        _ => {
            let shown = state
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| state.to_string());
            return bad(format!("State {shown} invalid; Must specify desired state of 'signed' or 'revoked' for host {name}."));
        }
    };
    let ttl = match json.get("cert_ttl") {
        None => None,
        Some(v) => match v.as_i64() {
            Some(t) => Some(t),
            None => {
                return bad(format!(
                    "cert_ttl specified for host {name} must be an integer, not \"{}\"",
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                ))
            }
        },
    };
    if let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !matches!(essence, "application/json" | "text/pson" | "pson") {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type.",
            );
        }
    }
    match run_raw(&app, move |a| {
        a.puppet_set_status(&caller.0, &name, sign, ttl)
    })
    .await
    {
        Ok(()) => HttpResponse::NoContent()
            .content_type("text/plain")
            .finish(),
        Err(AppError::InvalidInput(_)) => {
            plain(StatusCode::NOT_FOUND, "Invalid certificate subject.")
        }
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

async fn delete_status(
    req: HttpRequest,
    app: web::Data<App>,
    caller: Caller,
    name: web::Path<String>,
) -> HttpResponse {
    let name = name.into_inner();
    match run_raw(&app, move |a| a.puppet_delete(&caller.0, &name)).await {
        Ok(()) => HttpResponse::NoContent()
            .content_type("text/plain")
            .finish(),
        Err(AppError::InvalidInput(_)) => plain(StatusCode::NOT_FOUND, "Resource not found."),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

#[derive(Deserialize)]
struct StateQuery {
    state: Option<String>,
}

/// `GET certificate_statuses/{any}?state=`: the segment is ignored, as is any other query
/// parameter.
async fn statuses(req: HttpRequest, app: web::Data<App>) -> HttpResponse {
    let Some(media) = status_media(&req) else {
        return not_acceptable();
    };
    let state = serde_urlencoded::from_str::<StateQuery>(req.query_string())
        .ok()
        .and_then(|q| q.state);
    // Puppet Server filters on these three; any other value lists everything.
    let state = state.and_then(|s| {
        [CertState::Requested, CertState::Signed, CertState::Revoked]
            .into_iter()
            .find(|c| c.as_str() == s)
    });
    let first = run_raw(&app, move |a| first_statuses(a, state)).await;
    let (head, cursor) = match first {
        Ok(c) => c,
        Err(e) => return answer(&req, e, StatusCode::CONFLICT),
    };
    let mut resp = HttpResponse::Ok();
    resp.content_type(media);
    if cursor == StatusCursor::Done {
        return resp.body(head);
    }
    // Larger listings are streamed (chunked), a page (`limits.stream_page` records) at a
    // time, in three steps that overlap: a page is read (the store, on the blocking
    // pool) while the one before it is encoded (the pool too) and the one before that
    // is sent. The next read starts as soon as a read ends, since its cursor is then
    // known. Memory stays at three pages however many certificates there are. An error
    // after the first page can only end the connection early, and does.
    let ahead = read_page(&app, state, cursor);
    let rest = futures_util::stream::unfold(Some(ahead), move |pending| {
        let app = app.clone();
        async move {
            let mut pending = pending?;
            let failed = |e: AppError| {
                tracing::warn!(error = %e, "status listing ended early");
                Some((Err(actix_web::error::ErrorInternalServerError(e)), None))
            };
            loop {
                let (items, next) = match pending.await {
                    Ok(page) => page,
                    Err(e) => return failed(e),
                };
                let last = next == StatusCursor::Done;
                // A filter may leave a page empty: a chunk never is, but the last.
                if items.is_empty() && !last {
                    pending = read_page(&app, state, next);
                    continue;
                }
                let ahead = (!last).then(|| read_page(&app, state, next));
                let encoded = web::block(move || encode_statuses(&items, last))
                    .await
                    .map_err(|e| AppError::Task(e.to_string()));
                return match encoded {
                    Ok(bytes) => Some((Ok(web::Bytes::from(bytes)), ahead)),
                    Err(e) => failed(e),
                };
            }
        }
    });
    let head = futures_util::stream::once(async move { Ok(web::Bytes::from(head)) });
    resp.streaming(head.chain(rest))
}

/// A listing page being read: its statuses, and where the listing goes on.
type PageRead = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(Vec<PuppetStatus>, StatusCursor), AppError>>>,
>;

/// Reads the listing page at `cursor` (after the first chunk). It starts on the blocking
/// pool now, not when the returned future is first polled, so that it overlaps encoding
/// and sending the pages before it.
fn read_page(app: &web::Data<App>, state: Option<CertState>, cursor: StatusCursor) -> PageRead {
    let page = app.config().limits.stream_page;
    let app = app.clone().into_inner();
    let pending = web::block(move || app.puppet_statuses_page(state, cursor, page));
    Box::pin(async move { pending.await.map_err(|e| AppError::Task(e.to_string()))? })
}

/// The JSON of a chunk after the first: each status after a comma, and the array's end
/// if `last`.
fn encode_statuses(items: &[PuppetStatus], last: bool) -> Vec<u8> {
    // A status is 900-odd bytes of JSON: size the chunk once instead of doubling it.
    let mut out = Vec::with_capacity(items.len() * 1024 + 1);
    for item in items {
        out.push(b',');
        item.write_json(&mut out);
    }
    if last {
        out.push(b']');
    }
    out
}

/// The listing's first chunk: the array's start and the statuses of its first pages
/// until one yields something (a filter may leave a page empty) or the listing ends
/// (then the array's end too); and where it goes on.
fn first_statuses(
    app: &App,
    state: Option<CertState>,
) -> Result<(Vec<u8>, StatusCursor), AppError> {
    let mut out = vec![b'['];
    let mut cursor = StatusCursor::start();
    loop {
        let page = app.config().limits.stream_page;
        let (items, next) = app.puppet_statuses_page(state, cursor, page)?;
        // A status is 900-odd bytes of JSON: size the chunk once instead of doubling it.
        out.reserve(items.len() * 1024);
        for item in &items {
            if out.len() > 1 {
                out.push(b',');
            }
            item.write_json(&mut out);
        }
        cursor = next;
        if cursor == StatusCursor::Done {
            out.push(b']');
            return Ok((out, cursor));
        }
        if !items.is_empty() {
            return Ok((out, cursor));
        }
    }
}

/// `PUT /clean` `{"certnames": [...], "async": false}`.
async fn clean(
    req: HttpRequest,
    app: web::Data<App>,
    caller: Caller,
    payload: web::Payload,
) -> HttpResponse {
    let bytes = match read_body(&req, payload, &app).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return plain(StatusCode::BAD_REQUEST, "Request body is not JSON.");
    };
    if json.get("async").and_then(|v| v.as_bool()) == Some(true) {
        return plain(
            StatusCode::BAD_REQUEST,
            "Async mode is not currently supported.",
        );
    }
    let Some(names) = json.get("certnames").and_then(|v| v.as_array()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "Missing required key: 'certnames'. Please supply the list of certs you want to clean.",
        );
    };
    let names: Vec<String> = names
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    match run_raw(&app, move |a| a.puppet_clean(&caller.0, &names)).await {
        Ok(missing) if missing.is_empty() => {
            plain(StatusCode::OK, "Successfully cleaned all certs.")
        }
        Ok(missing) => {
            let list: Vec<String> = missing.iter().map(|m| format!("{m:?}")).collect();
            plain(
                StatusCode::OK,
                format!(
                    "The following certs do not exist and cannot be revoked: [{}]",
                    list.join(" ")
                ),
            )
        }
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

async fn expirations(req: HttpRequest, app: web::Data<App>) -> HttpResponse {
    match run_raw(&app, move |a| a.puppet_expirations()).await {
        Ok(e) => HttpResponse::Ok().json(e),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

/// `POST /certificate_renewal`: the caller is its TLS client certificate.
async fn renew(req: HttpRequest, app: web::Data<App>, caller: Caller) -> HttpResponse {
    match run_raw(&app, move |a| a.puppet_renew(&caller.0)).await {
        Ok(pem) => plain(StatusCode::OK, String::from_utf8_lossy(&pem).into_owned()),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

fn schema_violation(submitted: serde_json::Value, error: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY).json(
        serde_json::json!({"kind": "schema-violation", "submitted": submitted, "error": error}),
    )
}

/// `POST /sign` `{"certnames": [...]}`.
async fn sign(
    req: HttpRequest,
    app: web::Data<App>,
    caller: Caller,
    payload: web::Payload,
) -> HttpResponse {
    let bytes = match read_body(&req, payload, &app).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let names: Option<Vec<String>> = json
        .get("certnames")
        .and_then(|v| v.as_array())
        .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
    let Some(names) = names else {
        return schema_violation(
            json,
            "{:certnames (not (sequential? a-clojure.lang.PersistentArrayMap))}",
        );
    };
    match run_raw(&app, move |a| a.puppet_sign(&caller.0, Some(&names))).await {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

/// `POST /sign/all`: the body is ignored.
async fn sign_all(req: HttpRequest, app: web::Data<App>, caller: Caller) -> HttpResponse {
    match run_raw(&app, move |a| a.puppet_sign(&caller.0, None)).await {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(e) => answer(&req, e, StatusCode::CONFLICT),
    }
}

async fn simple() -> HttpResponse {
    plain(StatusCode::OK, "running")
}

async fn simple_service(service: web::Path<String>) -> HttpResponse {
    match service.as_str() {
        "ca" | "status-service" => plain(StatusCode::OK, "running"),
        other => plain(
            StatusCode::NOT_FOUND,
            format!("not found: {}", other.chars().take(64).collect::<String>()),
        ),
    }
}

async fn services() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "ca": {"service_version": PUPPET_VERSION, "service_status_version": 1, "detail_level": "info", "state": "running", "status": {}, "active_alerts": []},
        "status-service": {"service_version": "1.1.0", "service_status_version": 1, "detail_level": "info", "state": "running", "status": {}, "active_alerts": []}
    }))
}
