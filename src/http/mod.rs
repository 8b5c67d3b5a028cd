//! actix-web only: the route table, the TLS acceptor, the caller identity hook, and the
//! one error → response mapping. Handlers in `resources/` extract, call one use case in
//! `app`, and render.

mod authorize;
mod body;
mod conn;
mod error;
mod identity;
mod limits;
mod metrics;
pub mod negotiate;
mod puppet;
mod resources;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, HttpServer};
use openssl::ssl::SslAcceptorBuilder;

use crate::app::App;
pub use error::Problem;
pub use identity::Caller;

/// Every route, registered in one place. A method a resource does not support is a 405.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use resources::{
        backups, certificate, crl, environments, events, method_not_allowed, request, status,
    };
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.configure(puppet::routes);
    cfg.service(
        resource("/status")
            .route(web::get().to(status::server))
            // A load balancer's health check (conf/auth.toml admits HEAD there).
            .route(web::head().to(status::server)),
    )
    .service(resource("/metrics").route(web::get().to(metrics::metrics)))
    .service(resource("/environments").route(web::get().to(environments::list)))
    .service(resource("/backups").route(web::post().to(backups::create)))
    .service(
        resource("/environments/{env}")
            .route(web::get().to(environments::get))
            .route(web::put().to(environments::put)),
    )
    .service(
        resource("/{env}/certificate/")
            .route(web::get().to(certificate::list))
            .route(web::post().to(certificate::sign)),
    )
    .service(
        resource("/{env}/certificate/{name}")
            .route(web::get().to(certificate::get))
            .route(web::head().to(certificate::get))
            .route(web::delete().to(certificate::delete)),
    )
    .service(
        resource("/{env}/certificate_request/{name}")
            .route(web::get().to(request::get))
            .route(web::head().to(request::get))
            .route(web::put().to(request::put))
            .route(web::delete().to(request::delete)),
    )
    .service(resource("/{env}/certificate_requests/").route(web::get().to(request::list)))
    .service(
        resource("/{env}/certificate_status/{name}")
            .route(web::get().to(status::get))
            .route(web::put().to(status::put))
            .route(web::delete().to(status::delete)),
    )
    .service(resource("/{env}/certificate_statuses/{pattern}").route(web::get().to(status::list)))
    .service(resource("/{env}/events").route(web::get().to(events::list)))
    .service(
        resource("/{env}/certificate_revocation_list/{which}")
            .route(web::get().to(crl::get))
            .route(web::head().to(crl::get)),
    )
    .default_service(web::to(resources::not_found));
}

/// The whole HTTP application over `app`: routes and middleware, for `serve` and for
/// tests that drive it in-process alike.
pub fn service(
    app: web::Data<App>,
) -> actix_web::App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    actix_web::App::new()
        .app_data(app)
        .wrap(actix_web::middleware::from_fn(authorize::authorize))
        .wrap(actix_web::middleware::from_fn(limits::headers))
        .wrap(actix_web::middleware::from_fn(metrics::record))
        .wrap(actix_web::middleware::from_fn(body::close_unread))
        // Answers depend on Accept (representations, and the 406 when none fits), so
        // every response says so, errors included, where a handler has not already.
        .wrap(
            actix_web::middleware::DefaultHeaders::new()
                .add((actix_web::http::header::VARY, "Accept")),
        )
        // Outermost: a request counts as worked on until it is answered, and its answer
        // as being sent until its body has been handed over.
        .wrap(actix_web::middleware::from_fn(conn::busy))
        .configure(routes)
}

/// Serves `app` over HTTPS on `listen` until SIGINT/SIGTERM, then finishes in-flight
/// requests (up to the configured shutdown timeout) and flushes the store.
///
/// Prints `listening on https://ADDR:PORT` on stdout once the socket is bound (port 0
/// picks a free port; the line names the real one).
pub async fn serve(
    app: Arc<App>,
    listen: SocketAddr,
    tls: SslAcceptorBuilder,
) -> std::io::Result<()> {
    let server_cfg = app.config().server.clone();
    let data = web::Data::from(app.clone());
    let resolver = app.resolver();
    conn::raise_descriptor_limit();
    // Between requests a connection gets actix's two timers, as one bound (`conn`).
    let watchdog = conn::Watchdog::start(Duration::from_secs(
        (server_cfg.keep_alive.as_secs() + server_cfg.request_timeout.as_secs()) as u64,
    ));
    let identify = identity::on_connect(resolver);
    let mut server = HttpServer::new(move || service(data.clone()));
    if let Some(n) = server_cfg.workers {
        server = server.workers(n);
    }
    let server = server
        .on_connect(move |conn, ext| {
            identify(conn, ext);
            if let Some(w) = identity::socket(conn).and_then(|s| watchdog.watch(s)) {
                ext.insert(w);
            }
        })
        .keep_alive(Duration::from_secs(server_cfg.keep_alive.as_secs() as u64))
        .client_request_timeout(Duration::from_secs(
            server_cfg.request_timeout.as_secs() as u64
        ))
        .max_connections(server_cfg.max_connections)
        .client_disconnect_timeout(Duration::from_secs(2))
        .shutdown_timeout(server_cfg.shutdown_timeout.as_secs() as u64)
        .bind_openssl(listen, tls)?;
    let addr = server.addrs().first().copied().unwrap_or(listen);
    // Start the server before announcing it: actix installs its SIGTERM/SIGINT handlers
    // on the server future's first poll, so spawn it and yield once, and a signal sent
    // right after the line is a graceful stop.
    let running = actix_web::rt::spawn(server.run());
    actix_web::rt::task::yield_now().await;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on https://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, "listening");
    running.await.map_err(std::io::Error::other)??;
    tracing::info!("stopped serving; flushing the store");
    app.flush().map_err(std::io::Error::other)
}
