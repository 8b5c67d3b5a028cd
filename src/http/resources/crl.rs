//! `/{env}/certificate_revocation_list/ca` (the issuing CA's) and `.../root` (the
//! root's): the cached CRL with `ETag` and `Last-Modified`; 304 on `If-None-Match` or
//! `If-Modified-Since`.

use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::header::{self, EntityTag, Header, HttpDate, IfModifiedSince, IfNoneMatch};
use actix_web::{web, HttpRequest, HttpResponse};

use super::{negotiated, only, query, run};
use crate::app::App;
use crate::http::negotiate::{Offer, Repr};
use crate::http::Problem;

/// `GET`/`HEAD` of the issuing CA's CRL (`ca`) or the root's (`root`): PEM, or DER for
/// `application/pkix-crl`.
pub async fn get(
    req: HttpRequest,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    only(&query(&req)?, &[])?;
    let (env, which) = path.into_inner();
    let root = match which.as_str() {
        "ca" => false,
        "root" => true,
        _ => return Err(crate::app::AppError::NotFound("no such CRL".into()).into()),
    };
    let (repr, ctype) = Offer::pem_der("application/pkix-crl").choose(req.headers())?;
    let crl = run(
        &app,
        move |a| if root { a.root_crl(&env) } else { a.crl(&env) },
    )
    .await?;
    Ok(answer(&req, repr, ctype, &crl))
}

fn answer(
    req: &HttpRequest,
    repr: Repr,
    ctype: &'static str,
    crl: &crate::app::CrlView,
) -> HttpResponse {
    let etag = EntityTag::new_strong(crl.etag.clone());
    let modified =
        HttpDate::from(UNIX_EPOCH + Duration::from_secs(crl.last_modified().max(0) as u64));

    // If-None-Match takes precedence over If-Modified-Since (RFC 9110 13.2.2).
    let not_modified = if req.headers().contains_key(header::IF_NONE_MATCH) {
        match IfNoneMatch::parse(req) {
            Ok(IfNoneMatch::Any) => true,
            Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(&etag)),
            Err(_) => false,
        }
    } else {
        IfModifiedSince::parse(req).is_ok_and(|since| {
            std::time::SystemTime::from(modified) <= std::time::SystemTime::from(since.0)
        })
    };
    let mut b = negotiated(ctype);
    b.insert_header(header::ETag(etag))
        .insert_header(header::LastModified(modified));
    if not_modified {
        b.status(actix_web::http::StatusCode::NOT_MODIFIED);
        return b.finish();
    }
    if req.method() == actix_web::http::Method::HEAD && repr != Repr::Der {
        // The PEM's length without making it: a HEAD sends no body (actix-http takes
        // the length from the body's size and writes none of it).
        let none = futures_util::stream::empty::<Result<bytes::Bytes, std::convert::Infallible>>();
        return b.body(actix_web::body::SizedStream::new(crl.pem_len(), none));
    }
    // Shared with the CRL held, not copied.
    let bytes = if repr == Repr::Der {
        crl.der().clone()
    } else {
        crl.pem()
    };
    b.body(bytes)
}
