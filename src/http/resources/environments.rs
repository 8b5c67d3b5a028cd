//! `/environments` and `/environments/{env}`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{only, query, run};
use crate::app::{App, EnvChange};
use crate::http::body;
use crate::http::Problem;

/// `GET /environments`.
pub async fn list(req: HttpRequest, app: web::Data<App>) -> Result<HttpResponse, Problem> {
    only(&query(&req)?, &[])?;
    let envs = run(&app, move |a| a.list_environments()).await?;
    Ok(HttpResponse::Ok().json(envs))
}

/// `GET /environments/{env}`.
pub async fn get(
    req: HttpRequest,
    app: web::Data<App>,
    env: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    only(&query(&req)?, &[])?;
    let env = env.into_inner();
    let view = run(&app, move |a| a.environment_view(&env)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `PUT /environments/{env}`: JSON settings; 201 created (with its issuing CA), 200
/// updated.
pub async fn put(
    req: HttpRequest,
    app: web::Data<App>,
    env: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    only(&query(&req)?, &[])?;
    let bytes = body::read(&req, payload, app.config().limits.max_body_bytes).await?;
    let env = env.into_inner();
    let (change, view) = run(&app, move |a| a.put_environment(&env, &bytes)).await?;
    Ok(match change {
        EnvChange::Created => HttpResponse::Created()
            .insert_header(("Location", format!("/environments/{}", view.name)))
            .json(view),
        EnvChange::Updated => HttpResponse::Ok().json(view),
    })
}
