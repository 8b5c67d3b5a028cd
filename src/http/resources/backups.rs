//! `POST /backups`: a backup of the running server, written on the server's host.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{only, query, run};
use crate::app::App;
use crate::http::Problem;

/// `POST /backups`: 201 with where the backup went and what it holds; 409
/// `backups-not-configured` without `[store] backup_dir`. The body is ignored: nothing
/// from the request names where the backup goes.
pub async fn create(req: HttpRequest, app: web::Data<App>) -> Result<HttpResponse, Problem> {
    only(&query(&req)?, &[])?;
    let made = run(&app, |a| a.backup()).await?;
    Ok(HttpResponse::Created().json(made))
}
