//! The TLS acceptor.
//!
//! Client certificates are requested but optional ("want"): a client without one is
//! anonymous; one that presents a certificate that does not verify against the CA chains
//! fails the handshake. No session tickets are sent: Puppet 7's Ruby client stalls on a
//! ticket that arrives after a response on an idle connection.
//!
//! Trust follows the environments: when one is created at run time, the next handshake
//! (in the servername callback, which OpenSSL runs for every ClientHello, with or
//! without SNI) switches the connection to a context rebuilt with the new CA in its
//! verify store, so the new environment's client certificates work without a restart.

use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslMethod, SslOptions, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use std::sync::{Arc, RwLock};

use openssl::ssl::SslContext;

use crate::app::{App, TlsMaterial};
use crate::authz::{Resolver, RevokedSerials};

/// The acceptor for `app`: its server certificate, key and trusted client CAs, refusing
/// revoked client certificates (the set is read at every handshake), and following the
/// environments as they are created.
pub fn acceptor(app: Arc<App>) -> Result<SslAcceptorBuilder, ErrorStack> {
    let material = app.tls_material().map_err(|e| {
        tracing::error!(error = %e, "TLS material");
        ErrorStack::get()
    })?;
    let mut b = builder(&material, app.revoked_serials(), app.resolver())?;
    let current: RwLock<(u64, Option<SslContext>)> = RwLock::new((0, None));
    b.set_servername_callback(move |ssl, _alert| {
        let generation = app.trust_generation();
        if generation == 0 {
            return Ok(()); // no environment created since start: this context is current
        }
        if let Some(ctx) = current
            .read()
            .ok()
            .filter(|c| c.0 == generation)
            .and_then(|c| c.1.clone())
        {
            let _ = ssl.set_ssl_context(&ctx);
            return Ok(());
        }
        match app
            .tls_material()
            .ok()
            .and_then(|m| builder(&m, app.revoked_serials(), app.resolver()).ok())
        {
            Some(b) => {
                let ctx = b.build().into_context();
                let _ = ssl.set_ssl_context(&ctx);
                if let Ok(mut c) = current.write() {
                    *c = (generation, Some(ctx));
                }
            }
            None => tracing::error!("could not rebuild the TLS context for new environments"),
        }
        Ok(())
    });
    Ok(b)
}

/// An acceptor builder from the server's certificate, key and trusted client CAs. A
/// client certificate whose serial is in `revoked` for the environment whose CA issued
/// it (`resolver` knows which; in any environment when none did) fails the handshake.
fn builder(
    m: &TlsMaterial,
    revoked: Arc<RevokedSerials>,
    resolver: Arc<Resolver>,
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
            let revoked_here = ctx.current_cert().is_some_and(|c| {
                let Ok(serial) = c.serial_number().to_bn().map(|s| s.to_vec()) else {
                    return false;
                };
                let env = c.issuer_name().to_der().ok().and_then(|issuer| {
                    resolver.issuer_environment(&issuer, c.authority_key_id().map(|k| k.as_slice()))
                });
                match env {
                    Some(env) => revoked.contains(&env, &serial),
                    None => revoked.contains_anywhere(&serial),
                }
            });
            if revoked_here {
                // OpenSSL picks the alert from the verify error: "revoked" sends
                // certificate_revoked, so the client's error says why (an application
                // error would be a bare handshake_failure).
                ctx.set_error(cert_revoked());
                return false;
            }
        }
        true
    });
    // Expired certificates need nothing here: OpenSSL's own check fails them with
    // X509_V_ERR_CERT_HAS_EXPIRED, which it answers with certificate_expired.
    // Required for session resumption when client certificates are in play.
    b.set_session_id_context(b"certd")?;
    b.set_num_tickets(0)?;
    b.set_options(SslOptions::NO_TICKET);
    // A client may not make the server run handshake after handshake on one connection
    // (OpenSSL 3 refuses client-initiated renegotiation already; this says so here).
    b.set_options(SslOptions::NO_RENEGOTIATION);
    // One `recv` per burst of records instead of two per record (5-byte header, then the
    // rest). actix reads until the socket would block, so nothing buffered here is left
    // unread while the connection waits for readiness.
    b.set_read_ahead(true);
    Ok(b)
}

/// `X509_V_ERR_CERT_REVOKED` (23 in OpenSSL's `x509_vfy.h`, stable since 0.9.x) as a
/// verify result. The openssl crate names only two results safely; building another from
/// its number is its one `unsafe` constructor, sound for any number OpenSSL defines.
#[allow(unsafe_code)]
fn cert_revoked() -> openssl::x509::X509VerifyResult {
    const X509_V_ERR_CERT_REVOKED: std::os::raw::c_int = 23;
    // SAFETY: 23 is OpenSSL's X509_V_ERR_CERT_REVOKED, a valid verify result code.
    unsafe { openssl::x509::X509VerifyResult::from_raw(X509_V_ERR_CERT_REVOKED) }
}
