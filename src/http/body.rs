//! Request bodies, bounded before they are read: `Content-Length` is checked first, then
//! the stream is cut at the limit. Anything larger is a 413.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::{HttpRequest, HttpResponse};
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
pub async fn read(req: &HttpRequest, mut payload: Payload, limit: usize) -> Result<Bytes, Problem> {
    let timeout = req
        .app_data::<actix_web::web::Data<crate::app::App>>()
        .map(|a| std::time::Duration::from_secs(a.config().server.body_timeout.as_secs() as u64))
        .unwrap_or(std::time::Duration::from_secs(10));
    match actix_web::rt::time::timeout(timeout, read_bounded(req, &mut payload, limit)).await {
        Ok(result) => result,
        Err(_) => Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )
        .holding(payload)),
    }
}

/// A request body left unread, kept alive by the answer (see [`hold`]).
#[derive(Clone)]
pub struct UnreadBody {
    _payload: std::rc::Rc<actix_web::dev::Payload>,
}

impl UnreadBody {
    /// Holds `payload`.
    pub fn new(payload: Payload) -> Self {
        UnreadBody::of(payload.into_inner())
    }

    /// Holds a request's payload taken before any handler (a refusal by the rules).
    pub fn of(payload: actix_web::dev::Payload) -> Self {
        UnreadBody {
            _payload: std::rc::Rc::new(payload),
        }
    }
}

/// Whether the request announces a body (chunked, or a non-zero `Content-Length`).
pub fn announces_body(req: &HttpRequest) -> bool {
    use actix_web::http::header;
    req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// `response`, sent while `unread` (if any) is held, with `Connection: close`.
///
/// actix-http drains an unread *chunked* request body after the response and keeps the
/// connection open meanwhile, so a client that stalls its body would hold the
/// connection for good; it closes the connection instead when the payload is still
/// held (not dropped) when the response ends. So every answer given before the body was
/// read (a 408 for a body that did not arrive, a refusal by the rules) goes through
/// here, and the connection closes after it, whatever the framing.
pub fn hold(mut response: HttpResponse, unread: Option<UnreadBody>) -> HttpResponse {
    let Some(unread) = unread else {
        return response;
    };
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
        .map_body(|_, body| Holding {
            body,
            _unread: unread,
        })
        .map_into_boxed_body()
}

/// A response body sent while an unread request body is held (see [`hold`]).
struct Holding<B> {
    body: B,
    _unread: UnreadBody,
}

impl<B: actix_web::body::MessageBody + Unpin> actix_web::body::MessageBody for Holding<B> {
    type Error = B::Error;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}

impl std::fmt::Debug for UnreadBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnreadBody")
    }
}

async fn read_bounded(
    req: &HttpRequest,
    payload: &mut Payload,
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
