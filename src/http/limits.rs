//! Request-wide limits applied before any handler: the total size of the headers.
//! (Bodies are bounded where they are read, in `body`; the HTTP parser bounds the
//! request line.)

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, Error, ResponseError};

use super::Problem;
use crate::app::App;

/// Refuses a request whose header names and values add up to more than
/// `limits.max_header_bytes`, with 431 `headers-too-large`.
pub async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let limit = req
        .app_data::<web::Data<App>>()
        .map(|a| a.config().limits.max_header_bytes)
        .unwrap_or(usize::MAX);
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > limit {
        let problem = Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            format!("the request headers add up to {size} bytes; at most {limit} are accepted"),
        );
        return Ok(req
            .into_response(problem.error_response())
            .map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}
