//! `GET /status`, `/{env}/certificate_status/{name}` and `/{env}/certificate_statuses/`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{only, page_response, query, run, run_inline};
use crate::app::{App, DesiredState, ListQuery, Status};
use crate::authz::Role;
use crate::http::body;
use crate::http::{Caller, Problem};

#[derive(Serialize)]
struct CallerView {
    role: Role,
    certname: Option<String>,
    environment: Option<String>,
}

#[derive(Serialize)]
struct StatusView {
    #[serde(flatten)]
    status: Status,
    /// Who the server takes the caller to be (from its client certificate).
    caller: CallerView,
}

/// `GET /status`: version, store health and the caller's own identity; environments,
/// issuers and the cluster for a global admin.
pub async fn server(app: web::Data<App>, caller: Caller) -> Result<HttpResponse, Problem> {
    let who = caller.0;
    // A store across the network checks its health with a round trip: not on the
    // HTTP worker.
    let status = {
        let who = who.clone();
        run_inline(&app, move |a| Ok(a.status(&who))).await?
    };
    Ok(HttpResponse::Ok().json(StatusView {
        status,
        caller: CallerView {
            role: who.role,
            certname: who.certname.map(|c| c.to_string()),
            environment: who.environment.map(|e| e.to_string()),
        },
    }))
}

/// `GET /{env}/certificate_status/{name}`.
pub async fn get(
    req: HttpRequest,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (env, name) = path.into_inner();
    only(&query(&req)?, &[])?;
    let status = run(&app, move |a| a.status_of(&env, &name)).await?;
    Ok(HttpResponse::Ok().json(status))
}

/// The body of `PUT certificate_status`. Other members are ignored (as Puppet Server does);
/// `cert_ttl` is Puppet's spelling of `ttl`.
#[derive(Deserialize)]
struct Desired {
    desired_state: String,
    #[serde(alias = "cert_ttl")]
    ttl: Option<i64>,
}

/// `PUT /{env}/certificate_status/{name}`: `{"desired_state": "signed"|"revoked"}`; 204.
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
    let d: Desired = body::json(&bytes)?;
    let desired = match d.desired_state.as_str() {
        "signed" => DesiredState::Signed,
        "revoked" => DesiredState::Revoked,
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(Problem::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid-desired-state",
                format!("desired_state {shown:?} is not \"signed\" or \"revoked\""),
            ));
        }
    };
    if run(&app, move |a| {
        a.set_status(&caller.0, &env, &name, desired, d.ttl)
    })
    .await?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Ok(HttpResponse::Accepted().finish())
    }
}

/// `DELETE /{env}/certificate_status/{name}`: clean; 204, 404.
pub async fn delete(
    req: HttpRequest,
    app: web::Data<App>,
    caller: crate::http::Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (env, name) = path.into_inner();
    only(&query(&req)?, &[])?;
    run(&app, move |a| a.clean(&caller.0, &env, &name)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /{env}/certificate_statuses/{pattern}`: `*` for all; `?state=`/`?restrict=`.
pub async fn list(
    req: HttpRequest,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (env, pattern) = path.into_inner();
    let pairs = query(&req)?;
    let q =
        ListQuery::parse(&pairs, Some(&pattern), &app.config().limits).map_err(Problem::from)?;
    let page = run(&app, move |a| a.list_statuses(&env, &q)).await?;
    Ok(page_response(&req, &pairs, page))
}
