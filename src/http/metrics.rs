//! Counts and times every request for `/metrics`, labelled by the route pattern it
//! matched (never the raw path) and a method from a fixed set.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse};

use crate::app::App;

const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];

/// Records the request once it is answered.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let app = req.app_data::<web::Data<App>>().cloned();
    let method = METHODS
        .iter()
        .find(|m| **m == req.method().as_str())
        .copied()
        .unwrap_or("other");
    let res = next.call(req).await?;
    if let Some(app) = app {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        app.metrics()
            .observe(&route, method, res.status().as_u16(), start.elapsed());
    }
    Ok(res)
}

/// `GET /metrics`.
pub async fn metrics(
    app: web::Data<App>,
    caller: super::Caller,
) -> Result<HttpResponse, super::Problem> {
    let text = super::resources::run(&app, move |a| Ok(a.render_metrics(&caller.0))).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
