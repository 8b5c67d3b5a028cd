//! Thin handlers, one module per resource.

pub mod certificate;
pub mod status;

use actix_web::http::StatusCode;
use actix_web::HttpRequest;

use super::Problem;

/// Any path no route matches.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, Problem> {
    let path: String = req.path().chars().take(200).collect();
    Err(Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no resource at {path:?}"),
    ))
}
