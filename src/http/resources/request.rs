//! `/{env}/certificate_request/{name}` and `/{env}/certificate_requests/`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{negotiated, only, page_response, query, run, submission};
use crate::app::{App, ListQuery, Submitted};
use crate::http::body;
use crate::http::negotiate::{Offer, Repr};
use crate::http::{Caller, Problem};

/// `GET`/`HEAD`: 200 the pending CSR (PEM, or DER as `application/pkcs10`), 404 none,
/// 410 rejected or invalid with the reason.
pub async fn get(
    req: HttpRequest,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (env, name) = path.into_inner();
    only(&query(&req)?, &[])?;
    let (repr, ctype) = Offer::pem_der("application/pkcs10").choose(req.headers())?;
    let view = run(&app, move |a| a.request(&env, &name)).await?;
    let bytes = if repr == Repr::Der {
        view.csr_der.clone()
    } else {
        view.pem()
    };
    Ok(negotiated(ctype).body(bytes))
}

/// `PUT`: submit a CSR (PEM, or DER); 201 new, 200 replaced a pending one.
pub async fn put(
    req: HttpRequest,
    app: web::Data<App>,
    caller: Caller,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let (env, name) = path.into_inner();
    only(&query(&req)?, &[])?;
    let bytes = body::read(&req, payload, app.config().limits.max_body_bytes).await?;
    let location = format!("/{env}/certificate_request/{name}");
    let who = caller.0;
    let start = app.submit_start(&who, &env, &name, &bytes);
    let outcome = submission(&app, start, move |a, read_first| {
        a.submit_again(&who, &env, &name, &bytes, read_first)
    })
    .await?;
    Ok(match outcome {
        Submitted::Created => HttpResponse::Created()
            .insert_header((header::LOCATION, location))
            .finish(),
        Submitted::Replaced => HttpResponse::Ok().finish(),
    })
}

/// `DELETE`: reject the pending request (or remove a rejected one); 204, 404.
pub async fn delete(
    req: HttpRequest,
    app: web::Data<App>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (env, name) = path.into_inner();
    only(&query(&req)?, &[])?;
    run(&app, move |a| a.reject(&caller.0, &env, &name)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /{env}/certificate_requests/`: requests as status objects, filtered and paged.
pub async fn list(
    req: HttpRequest,
    app: web::Data<App>,
    env: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let pairs = query(&req)?;
    let q = ListQuery::parse(&pairs, None, &app.config().limits).map_err(Problem::from)?;
    let env = env.into_inner();
    let page = run(&app, move |a| a.list_requests(&env, &q)).await?;
    Ok(page_response(&req, &pairs, page))
}
