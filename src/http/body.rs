//! Request bodies, bounded before they are read: `Content-Length` is checked first, then
//! the stream is cut at the limit. Anything larger is a 413. A body not read to its end
//! closes its connection after the answer ([`close_unread`]).

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{self, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::{HttpMessage, HttpRequest};
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
        // The connection closes after the answer (`close_unread`).
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

/// Whether the request announces a body (chunked, or a non-zero `Content-Length`).
fn announces_body(req: &HttpRequest) -> bool {
    use actix_web::http::header;
    req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Closes the connection after every answer given before its request's body ended: a
/// 408 for a body that did not arrive, a 413, a refusal by the rules, a handler that
/// reads no body.
///
/// actix-http drains an unread request body after the response and keeps the
/// connection open meanwhile, with no timer, so a client that stalls its body would
/// hold the connection for good; it closes the connection instead when the payload is
/// still held (not dropped) when the response ends. So the payload of a request that
/// announces a body is held here, handlers read it through a [`Tracked`] stream, and
/// an answer sent before that stream ended holds it until it is sent, with
/// `Connection: close`.
pub async fn close_unread<B: MessageBody + 'static>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    if !announces_body(req.request()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let held = Rc::new(RefCell::new(req.take_payload()));
    let ended = Rc::new(Cell::new(false));
    let tracked: Pin<Box<dyn futures_util::Stream<Item = _>>> = Box::pin(Tracked {
        payload: held.clone(),
        ended: ended.clone(),
    });
    req.set_payload(dev::Payload::from(tracked));
    let res = next.call(req).await?;
    if ended.get() {
        return Ok(res.map_into_left_body());
    }
    Ok(res
        .map_body(|head, body| {
            head.set_connection_type(actix_web::http::ConnectionType::Close);
            Holding {
                body: body.boxed(),
                _unread: held,
            }
            .boxed()
        })
        .map_into_right_body())
}

/// A request's payload as handlers read it, noting when it has ended.
struct Tracked {
    payload: Rc<RefCell<dev::Payload>>,
    ended: Rc<Cell<bool>>,
}

impl futures_util::Stream for Tracked {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut *self.payload.borrow_mut()).poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.ended.set(true);
        }
        polled
    }
}

/// A response body sent while an unread request body is held (see [`close_unread`]).
struct Holding {
    body: BoxBody,
    _unread: Rc<RefCell<dev::Payload>>,
}

impl MessageBody for Holding {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
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
