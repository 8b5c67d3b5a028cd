//! Thin handlers, one module per resource. Each extracts, runs one use case of `app` on
//! a blocking thread (store I/O and signing must not stall the executor), and renders.

pub mod backups;
pub mod certificate;
pub mod crl;
pub mod environments;
pub mod events;
pub mod request;
pub mod status;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};

use super::Problem;
use crate::app::{App, AppError, Finished, Page, Submitted, Submitting};

/// Any path no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, Problem> {
    let path: String = req.path().chars().take(200).collect();
    Err(Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no resource at {path:?}"),
    ))
}

/// A method the resource does not support.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, Problem> {
    Err(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} is not supported here", req.method()),
    ))
}

/// Runs a use case on the blocking pool.
pub(super) async fn run<T, F>(app: &web::Data<App>, f: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&App) -> Result<T, AppError> + Send + 'static,
{
    run_raw(app, f).await.map_err(Problem::from)
}

/// Runs a use case on the blocking pool, leaving the error for the caller to render
/// (the Puppet face renders errors its own way).
pub(crate) async fn run_raw<T, F>(app: &web::Data<App>, f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&App) -> Result<T, AppError> + Send + 'static,
{
    let app = app.clone().into_inner();
    web::block(move || f(&app))
        .await
        .map_err(|e| AppError::Task(e.to_string()))?
}

/// A submission (either face), begun with `start` on the worker thread
/// ([`App::submit_start`]): an autosigned one is signed there and then awaited while the
/// store commits it, so no blocking-pool thread is held through the commit (two thread
/// hand-offs fewer per certificate). Anything else runs whole, as `whole`, on the
/// blocking pool; so does one the store refused with nothing stored
/// ([`Finished::Again`]: its serial was taken, or, submitted unread, its name was not
/// new, and `whole` is told to read first).
pub(crate) async fn submission<F>(
    app: &web::Data<App>,
    start: Submitting,
    whole: F,
) -> Result<Submitted, AppError>
where
    F: FnOnce(&App, bool) -> Result<Submitted, AppError> + Send + 'static,
{
    match start {
        Submitting::Done(outcome) => outcome,
        Submitting::Committing(in_flight) => {
            // A task of its own, so that a client that hangs up mid-commit cancels
            // neither what follows the commit (the issuance's log line and metrics) nor
            // the submission made again.
            let owned = app.clone();
            actix_web::rt::spawn(async move {
                match (*in_flight).finish(&owned).await {
                    Finished::Done(outcome) => outcome,
                    Finished::Again { read_first } => {
                        run_raw(&owned, move |a| whole(a, read_first)).await
                    }
                }
            })
            .await
            .map_err(|e| AppError::Task(e.to_string()))?
        }
        Submitting::NeedsThread => run_raw(app, move |a| whole(a, false)).await,
    }
}

/// Runs a use case that reads at most one key of the store and never writes or
/// flushes (a certificate probe, the CRL from memory) on the worker thread itself when
/// the store answers from this process. These answer in microseconds from sled's page
/// cache, where a hop to the blocking pool and back costs more than the work (measured:
/// 45 → 38 µs of server CPU per HEAD). A store across the network (PostgreSQL) would
/// hold the worker through a round trip: then the blocking pool. Anything that scans,
/// writes or signs goes through [`run`].
pub(super) async fn run_inline<T, F>(app: &web::Data<App>, f: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&App) -> Result<T, AppError> + Send + 'static,
{
    if app.reads_inline() {
        f(app).map_err(Problem::from)
    } else {
        run(app, f).await
    }
}

/// Longest query string accepted, in bytes.
const MAX_QUERY_BYTES: usize = 4096;

/// The query string as ordered pairs, bounded and with a 400 for malformed encodings.
pub(super) fn query(req: &HttpRequest) -> Result<Vec<(String, String)>, Problem> {
    let q = req.query_string();
    if q.len() > MAX_QUERY_BYTES {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "query-too-long",
            format!("the query string is longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    // serde_urlencoded keeps a malformed escape ("%zz", a lone "%") literally; refuse it,
    // so that a query means one thing only.
    let b = q.as_bytes();
    let malformed = b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "the query string has a malformed percent escape",
        ));
    }
    serde_urlencoded::from_str(q).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            format!("the query string cannot be decoded: {e}"),
        )
    })
}

/// Only the named parameters are allowed; returns the value of each, if given once.
pub(super) fn only<'a>(
    pairs: &'a [(String, String)],
    allowed: &[&str],
) -> Result<Vec<Option<&'a str>>, Problem> {
    let mut out = vec![None; allowed.len()];
    for (k, v) in pairs {
        let i = allowed.iter().position(|a| a == k).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "unknown-parameter",
                format!(
                    "unknown query parameter {:?}; allowed here: {}",
                    k.chars().take(40).collect::<String>(),
                    allowed.join(", ")
                ),
            )
        })?;
        if out[i].replace(v.as_str()).is_some() {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "repeated-parameter",
                format!("parameter {k:?} is given more than once"),
            ));
        }
    }
    Ok(out)
}

/// A JSON listing page, with `Link: <...>; rel="next"` when more follow.
pub(super) fn page_response(
    req: &HttpRequest,
    pairs: &[(String, String)],
    page: Page,
) -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    if let Some(after) = &page.next_after {
        let mut next: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(k, _)| k != "after")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        next.push(("after", after));
        let qs = serde_urlencoded::to_string(&next).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&format!("<{}?{qs}>; rel=\"next\"", req.path())) {
            resp.insert_header((header::LINK, v));
        }
    }
    resp.json(page.items)
}

/// A negotiated representation: status 200, `Vary: Accept`, the chosen type.
pub(super) fn negotiated(content_type: &str) -> HttpResponseBuilder {
    let mut b = HttpResponse::Ok();
    b.insert_header((header::VARY, "Accept"))
        .content_type(content_type.to_owned());
    b
}
