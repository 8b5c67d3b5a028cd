//! Authorization of every request, before routing (as Puppet's trapperkeeper does): the
//! rules in `conf/` decide on the method and the path as the router sees it, for the
//! caller the TLS layer identified. A refusal is a 403 in the face's own style: Puppet's
//! plain-text sentence under `/puppet-ca/` and `/status/v1/`, problem+json elsewhere.
//!
//! Before the rules, a request that would change something and that a browser says
//! another origin sent is refused: a browser holding an admin's client certificate
//! presents it to certd whichever page asks, and a form or a `no-cors` fetch needs no
//! preflight.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpRequest, ResponseError};

use super::Problem;
use crate::app::App;

/// Admits the request when the rules allow its caller, or answers 403 (or 404 when the
/// rule speaks of an environment certd does not serve).
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(app) = req.app_data::<web::Data<App>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let who = super::identity::of(req.request());
    let decided = if from_another_origin(req.request()) {
        tracing::info!(caller = %who, method = %req.method(), path = crate::app::logged_path(req.path()), "denied: sent by a page of another origin");
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "cross-site-request",
            "a request that changes something is taken only from certd's own pages and \
             from clients that are not browsers",
        ))
    } else {
        // The path the router matches: percent-decoded except %2F, %25 and %2B, so a
        // rule sees exactly the segments a route will.
        app.authorize_request(&who, req.method().as_str(), req.match_info().as_str())
            .map_err(Problem::from)
    };
    match decided {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(problem) => {
            // Refused before any handler read the body: the connection closes after
            // the answer (`body::close_unread`).
            let response = if super::puppet::is_puppet_path(req.path()) {
                super::puppet::forbidden(req.request())
            } else {
                problem.error_response()
            };
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Whether `req` may change something and a browser says a page of another origin sent
/// it: `Sec-Fetch-Site` other than `same-origin` or `none` (typed by the user); where a
/// browser sends no `Sec-Fetch-Site`, an `Origin` other than `https://` and the host it
/// was sent to (`null` included). `Sec-Fetch-Site` decides alone when present: a page
/// of certd's own with `Referrer-Policy: no-referrer` sends `Origin: null` with its
/// forms. Clients that are not browsers send neither header.
fn from_another_origin(req: &HttpRequest) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let headers = req.headers();
    if headers.contains_key("sec-fetch-site") {
        return headers
            .get_all("sec-fetch-site")
            .any(|v| !matches!(v.to_str(), Ok("same-origin" | "none")));
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    headers.get_all(header::ORIGIN).any(|origin| {
        let Some(sent) = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("https://"))
        else {
            return true;
        };
        host.is_none_or(|host| !same_authority(sent, host))
    })
}

/// `a` and `b` name one host and port; 443 when none is written.
fn same_authority(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.to_ascii_lowercase();
        match s.strip_suffix(":443") {
            Some(bare) => bare.to_owned(),
            None => s,
        }
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn sent(method: Method, headers: &[(&str, &str)]) -> bool {
        let mut req = TestRequest::default()
            .method(method)
            .insert_header((header::HOST, "CA.example:8140"));
        for h in headers {
            req = req.insert_header(*h);
        }
        from_another_origin(&req.to_http_request())
    }

    #[test]
    fn only_changes_a_browser_says_another_origin_sent_are_refused() {
        let post = Method::POST;
        assert!(!sent(post.clone(), &[]), "a client that is not a browser");
        assert!(!sent(
            post.clone(),
            &[("origin", "https://ca.example:8140")]
        ));
        assert!(!sent(post.clone(), &[("sec-fetch-site", "same-origin")]));
        assert!(!sent(post.clone(), &[("sec-fetch-site", "none")]));
        assert!(!sent(Method::GET, &[("origin", "https://evil.example")]));
        for refused in [
            ("origin", "https://evil.example"),
            ("origin", "https://ca.example:8140.evil.example"),
            ("origin", "https://ca.example"),
            ("origin", "http://ca.example:8140"),
            ("origin", "null"),
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-site", "cross-site"),
        ] {
            assert!(sent(Method::DELETE, &[refused]), "{refused:?}");
        }
        assert!(
            sent(
                post.clone(),
                &[
                    ("origin", "https://ca.example:8140"),
                    ("sec-fetch-site", "cross-site")
                ]
            ),
            "Sec-Fetch-Site decides"
        );
        assert!(
            !sent(
                post,
                &[("origin", "null"), ("sec-fetch-site", "same-origin")]
            ),
            "a form of certd's own page under no-referrer"
        );
        assert!(same_authority("ca.example", "CA.example:443"));
    }
}
