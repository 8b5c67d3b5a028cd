//! The caller's identity: classified once per connection from the TLS peer certificate,
//! and handed to every handler through the [`Caller`] extractor.

use std::any::Any;
use std::future::{ready, Ready};
use std::sync::Arc;

use actix_tls::accept::openssl::TlsStream;
use actix_web::dev::{Extensions, Payload};
use actix_web::rt::net::TcpStream;
use actix_web::{FromRequest, HttpRequest};

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

/// The identity of the caller of this request.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = req
            .conn_data::<Identity>()
            .cloned()
            .unwrap_or_else(Identity::anonymous);
        ready(Ok(Caller(identity)))
    }
}
