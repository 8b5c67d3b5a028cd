//! `GET /status`.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::app::{App, Status};
use crate::authz::Role;
use crate::http::Caller;

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

/// Version, environments, store health, and the caller's own identity.
pub async fn get(app: web::Data<App>, caller: Caller) -> HttpResponse {
    let who = caller.0;
    HttpResponse::Ok().json(StatusView {
        status: app.status(),
        caller: CallerView {
            role: who.role,
            certname: who.certname.map(|c| c.to_string()),
            environment: who.environment.map(|e| e.to_string()),
        },
    })
}
