//! The TLS acceptor.
//!
//! Client certificates are requested but optional ("want"): a client without one is
//! anonymous; one that presents a certificate that does not verify against the CA chains
//! fails the handshake. No session tickets are sent: Puppet 7's Ruby client stalls on a
//! ticket that arrives after a response on an idle connection.

use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslMethod, SslOptions, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use std::sync::Arc;

use crate::app::TlsMaterial;
use crate::authz::RevokedSerials;

/// Builds the acceptor from the server's certificate, key and trusted client CAs. A
/// client certificate whose serial is in `revoked` fails the handshake; the set is read
/// at every handshake, so a revocation takes effect without a restart.
pub fn acceptor(
    m: &TlsMaterial,
    revoked: Arc<RevokedSerials>,
) -> Result<SslAcceptorBuilder, ErrorStack> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    let cert = X509::from_pem(&m.cert_pem)?;
    b.set_certificate(&cert)?;
    for c in &m.chain {
        b.add_extra_chain_cert(c.clone())?;
    }
    let key = PKey::private_key_from_pem(&m.key_pem)?;
    b.set_private_key(&key)?;
    b.check_private_key()?;

    let mut store = X509StoreBuilder::new()?;
    for ca in &m.client_cas {
        store.add_cert(ca.clone())?;
    }
    b.set_verify_cert_store(store.build())?;
    b.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
        if !ok {
            return false;
        }
        if ctx.error_depth() == 0 {
            if let Some(serial) = ctx
                .current_cert()
                .and_then(|c| c.serial_number().to_bn().ok())
            {
                if revoked.contains(&serial.to_vec()) {
                    ctx.set_error(openssl::x509::X509VerifyResult::APPLICATION_VERIFICATION);
                    return false;
                }
            }
        }
        true
    });
    // Required for session resumption when client certificates are in play.
    b.set_session_id_context(b"certd")?;
    b.set_num_tickets(0)?;
    b.set_options(SslOptions::NO_TICKET);
    Ok(b)
}
