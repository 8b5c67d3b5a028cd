//! `/{env}/certificate/...`.

use actix_web::{web, HttpResponse};

use crate::app::App;
use crate::http::Problem;

/// `GET /{env}/certificate/ca`: the environment's chain, issuing CA first, root last.
pub async fn ca_chain(
    app: web::Data<App>,
    env: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let pem = app.ca_chain(&env)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(pem))
}
