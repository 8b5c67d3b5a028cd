//! Request bodies, bounded before they are read: `Content-Length` is checked first, then
//! the stream is cut at the limit. Anything larger is a 413.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::HttpRequest;
use futures_util::StreamExt;

use super::Problem;

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Reads the whole body, refusing more than `limits.max_body_bytes` and a body not
/// complete within `server.body_timeout` (408 `body-timeout`).
pub async fn read(req: &HttpRequest, payload: Payload, limit: usize) -> Result<Bytes, Problem> {
    let timeout = req
        .app_data::<actix_web::web::Data<crate::app::App>>()
        .map(|a| std::time::Duration::from_secs(a.config().server.body_timeout.as_secs() as u64))
        .unwrap_or(std::time::Duration::from_secs(10));
    match actix_web::rt::time::timeout(timeout, read_bounded(req, payload, limit)).await {
        Ok(result) => result,
        Err(_) => Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
    }
}

async fn read_bounded(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, Problem> {
    if let Some(len) = req.headers().get(actix_web::http::header::CONTENT_LENGTH) {
        let len: usize = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad-content-length",
                    "Content-Length is not a number",
                )
            })?;
        if len > limit {
            return Err(too_large(limit));
        }
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Decodes a JSON body into `T`, with a 400 `bad-json` that says what is wrong.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-json",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}
