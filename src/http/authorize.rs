//! Authorization of every request, before routing (as Puppet's trapperkeeper does): the
//! rules in `conf/` decide on the method and the path as the router sees it, for the
//! caller the TLS layer identified. A refusal is a 403 in the face's own style: Puppet's
//! plain-text sentence under `/puppet-ca/` and `/status/v1/`, problem+json elsewhere.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};

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
    // The path the router matches: percent-decoded except %2F, %25 and %2B, so a rule
    // sees exactly the segments a route will.
    let decided = app.authorize_request(&who, req.method().as_str(), req.match_info().as_str());
    match decided {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(e) => {
            let mut response = if super::puppet::is_puppet_path(req.path()) {
                super::puppet::forbidden(req.request())
            } else {
                Problem::from(e).error_response()
            };
            // Refused before any handler read the body: hold it until the answer is sent,
            // or a stalled body would keep the connection (see `body::hold`).
            let mut req = req;
            if super::body::announces_body(req.request()) {
                let unread = super::body::UnreadBody::of(req.take_payload());
                response = super::body::hold(response, Some(unread));
            }
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}
