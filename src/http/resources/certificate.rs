//! `/{env}/certificate/...`: one certificate (HEAD, GET, DELETE), the CA chain, the
//! collection (GET) and signing (POST).

use std::str::FromStr;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{negotiated, only, page_response, query, run};
use crate::app::{App, ListQuery, Signing};
use crate::ca::Digest;
use crate::http::body;
use crate::http::negotiate::{Offer, Repr};
use crate::http::Problem;
use crate::store::CertState;

/// `?digest=`, read whatever representation is chosen: an unknown one is a 400 (and
/// before a 404: the request is malformed whatever the store holds).
fn digest_asked(query: Option<&str>) -> Result<Option<Digest>, Problem> {
    query
        .map(|q| {
            Digest::from_str(q)
                .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))
        })
        .transpose()
}

/// Decides the fingerprint digest: `?digest=` wins, then the Accept parameter, then the
/// configured default.
fn digest_of(query: Option<Digest>, accepted: Option<Digest>, default: Digest) -> Digest {
    query.or(accepted).unwrap_or(default)
}

fn fingerprint_response(der: &[u8], digest: Digest) -> HttpResponse {
    let fp = crate::app::fingerprint(der, digest);
    negotiated(&format!("x-cert/fingerprint; digest={digest}")).body(format!("{fp}\n").into_bytes())
}

/// `GET`/`HEAD /{env}/certificate/{name}`: 200 (PEM, DER, JSON status or fingerprint),
/// 404 none or still pending, 410 revoked. `ca` is the environment's chain.
pub async fn get(
    req: HttpRequest,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (env, name) = path.into_inner();
    let pairs = query(&req)?;
    let digest_q = digest_asked(only(&pairs, &["digest"])?[0])?;
    let default = app.config().ca.fingerprint_digest;
    let mut offer = Offer::pem_der("application/pkix-cert").fingerprint();
    if name != "ca" {
        offer = offer.json();
    }
    if digest_q.is_some() {
        offer = offer.prefer_fingerprint();
    }
    let (repr, ctype) = offer.choose(req.headers())?;
    if name == "ca" {
        let (chain, der) = run(&app, move |a| {
            Ok((a.ca_chain(&env)?, a.ca_certificate_der(&env)?))
        })
        .await?;
        return Ok(match repr {
            Repr::Fingerprint(d) => fingerprint_response(&der, digest_of(digest_q, d, default)),
            Repr::Der => negotiated(ctype).body(der),
            Repr::Pem | Repr::Json => negotiated(ctype).body(chain),
        });
    }
    // On the worker thread when the store can answer without the network.
    let view = match app.certificate_now(&env, &name) {
        Some(found) => found?,
        None => run(&app, move |a| a.certificate(&env, &name)).await?,
    };
    Ok(match repr {
        Repr::Pem => negotiated(ctype).body(view.pem()),
        Repr::Der => negotiated(ctype).body(view.record.der.clone()),
        Repr::Json => {
            let json = serde_json::to_vec(&app.certificate_status(&view)).unwrap_or_default();
            negotiated(ctype).body(json)
        }
        Repr::Fingerprint(d) => {
            fingerprint_response(&view.record.der, digest_of(digest_q, d, default))
        }
    })
}

/// `DELETE /{env}/certificate/{name}?reason=`: revoke; 204 also when already revoked.
pub async fn delete(
    req: HttpRequest,
    app: web::Data<App>,
    caller: crate::http::Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (env, name) = path.into_inner();
    let pairs = query(&req)?;
    let reason = only(&pairs, &["reason"])?[0].map(str::to_owned);
    run(&app, move |a| {
        a.revoke(&caller.0, &env, &name, reason.as_deref())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /{env}/certificate/`: the collection, filtered and paged.
pub async fn list(
    req: HttpRequest,
    app: web::Data<App>,
    env: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let pairs = query(&req)?;
    let q = ListQuery::parse(&pairs, None, &app.config().limits).map_err(Problem::from)?;
    let env = env.into_inner();
    let page = run(&app, move |a| a.list_certificates(&env, &q)).await?;
    Ok(page_response(&req, &pairs, page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    certname: String,
    ttl: Option<i64>,
}

/// `POST /{env}/certificate/`: sign the pending request named in the body (the certname
/// as `text/plain`, or JSON `{"certname": ..., "ttl": seconds}`); 201 with `Location`.
pub async fn sign(
    req: HttpRequest,
    app: web::Data<App>,
    caller: crate::http::Caller,
    env: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let bytes = body::read(&req, payload, app.config().limits.max_body_bytes).await?;
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (name, ttl) = if is_json {
        let b: SignBody = body::json(&bytes)?;
        (b.certname, b.ttl)
    } else {
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-body",
                "the body must be the certname as UTF-8 text, or JSON",
            )
        })?;
        (text.trim().to_owned(), None)
    };
    let env = env.into_inner();
    let status_of = format!("/{env}/certificate_status/{name}");
    match run(&app, move |a| a.sign(&caller.0, &env, &name, ttl)).await? {
        Signing::Issued(issued) => {
            let location = format!("/{}/certificate/{}", issued.env, issued.certname);
            Ok(HttpResponse::Created()
                .insert_header((header::LOCATION, location))
                .content_type(ContentType::plaintext())
                .finish())
        }
        // An issuer that answers later has the order; its status tells how it goes.
        Signing::Accepted { sub_status } => Ok(HttpResponse::Accepted()
            .insert_header((header::LOCATION, status_of))
            .json(serde_json::json!({ "state": CertState::Requested, "sub_status": sub_status }))),
    }
}
