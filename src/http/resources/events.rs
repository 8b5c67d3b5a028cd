//! `GET /{env}/events?after=ID&limit=N`: the environment's audit log (admins).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{only, query, run};
use crate::app::App;
use crate::http::Problem;

/// The events after `after` (default 0), at most `limit` (default and most:
/// `limits.max_page`), oldest first.
pub async fn list(
    req: HttpRequest,
    app: web::Data<App>,
    env: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let pairs = query(&req)?;
    let v = only(&pairs, &["after", "limit"])?;
    let max = app.config().limits.max_page;
    let after = match v[0] {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-after",
                "after must be an event id (a non-negative integer)",
            )
        })?,
    };
    let limit = match v[1] {
        None => max,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-limit",
                    format!("limit must be an integer from 1 to {max}"),
                )
            })?,
    };
    let env = env.into_inner();
    let events = run(&app, move |a| a.events(&env, after, limit)).await?;
    Ok(HttpResponse::Ok().json(events))
}
