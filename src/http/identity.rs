//! The caller's identity: classified once per connection from the TLS peer certificate,
//! and handed to every handler through the [`Caller`] extractor.

use std::any::Any;
use std::future::{ready, Ready};
use std::sync::Arc;

use actix_tls::accept::openssl::TlsStream;
use actix_web::dev::{Extensions, Payload};
use actix_web::rt::net::TcpStream;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::authz::{Identity, Resolver};

/// The `on_connect` hook: reads the verified peer certificate and stores the identity
/// in the connection's data.
pub fn on_connect(
    resolver: Arc<Resolver>,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |conn, ext| {
        if let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() {
            let peer = tls.ssl().peer_certificate().and_then(|c| c.to_der().ok());
            let identity = resolver.identify(peer.as_deref());
            tracing::debug!(%identity, "connection");
            ext.insert(identity);
        }
    }
}

/// The socket under a connection `on_connect` is given (a TLS one; none otherwise).
pub fn socket(conn: &dyn Any) -> Option<std::os::fd::BorrowedFd<'_>> {
    use std::os::fd::AsFd;
    conn.downcast_ref::<TlsStream<TcpStream>>()
        .map(|tls| tls.get_ref().as_fd())
}

/// The identity of the caller of this request.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Caller(of(req))))
    }
}

/// The caller of `req`: the identity [`on_connect`] read from the connection's TLS peer
/// certificate; on a connection that is not TLS (the app driven in-process, as tests
/// do), the one an outer middleware put in the request's extensions; else anonymous.
pub fn of(req: &HttpRequest) -> Identity {
    if let Some(identity) = req.conn_data::<Identity>() {
        return identity.clone();
    }
    req.extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or_else(Identity::anonymous)
}
