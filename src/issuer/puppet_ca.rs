//! `puppet-ca`: an upstream Puppet-compatible CA (Puppet Server, or another certd) over
//! HTTPS, with a client certificate. certd acts as a registration authority: it submits
//! the CSR with `PUT certificate_request/{name}` and polls `GET certificate/{name}` until
//! the upstream's admin (or autosign) signs. The genuinely asynchronous back end.
//!
//! `plugin_meta`: `submitted` = "true" once the upstream holds the request.
//!
//! Cancel is `DELETE certificate_request/{name}` and modify is a delete followed by a new
//! `PUT`; Puppet Server's default rules refuse that DELETE (certd's admit its admins), so
//! against Puppet Server they end with the upstream's refusal in the message.

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

use super::{first_pem_cert, is_for, short, verify_returned, Cancel, Issuer, Modify, OrderRequest};
use super::{Outcome, PluginMeta};
use crate::config::PuppetCaSpec;

/// The upstream back end.
#[derive(Debug)]
pub struct PuppetCa {
    base: String,
    client: Client,
    poll: i64,
    trust: super::Trust,
}

/// An answer's text, at most [`super::MAX_ANSWER_BYTES`] of it (the reason when larger).
fn text_capped(r: Response) -> String {
    match super::read_capped(r) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(m) => m,
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl PuppetCa {
    /// Reads the credentials and CA bundle named by validated settings.
    pub fn new(spec: &PuppetCaSpec) -> Result<Self, String> {
        let (url, ca, cert, key) = (&spec.url, &spec.ca_file, &spec.cert_file, &spec.key_file);
        let mut b = super::http_client(Duration::from_secs(5), Duration::from_secs(20))
            .tls_built_in_root_certs(false);
        let bundle = read(ca)?;
        for c in reqwest::Certificate::from_pem_bundle(&bundle)
            .map_err(|e| format!("{}: {e}", ca.display()))?
        {
            b = b.add_root_certificate(c);
        }
        // Puppet writes PKCS#1 keys; the TLS client wants PKCS#8.
        let pkcs8 = openssl::pkey::PKey::private_key_from_pem(&read(key)?)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(|e| format!("{}: {e}", key.display()))?;
        let identity = reqwest::Identity::from_pkcs8_pem(&read(cert)?, &pkcs8)
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        let client = b
            .identity(identity)
            .build()
            .map_err(|e| format!("TLS client: {e}"))?;
        Ok(PuppetCa {
            base: format!("{}/puppet-ca/v1", url.trim_end_matches('/')),
            client,
            poll: spec.poll_interval.map_or(30, |d| d.as_secs()),
            trust: super::Trust::from_file(ca)?,
        })
    }

    fn url(&self, resource: &str, req: &OrderRequest<'_>) -> String {
        format!("{}/{resource}/{}", self.base, req.csr.certname())
    }

    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> Outcome {
        Outcome::Unavailable {
            retry_after: self.poll,
            message: short(&format!("upstream CA unreachable ({what}): {e}")),
        }
    }

    fn submit(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome {
        let r = self
            .client
            .put(self.url("certificate_request", req))
            .header("Content-Type", "text/plain")
            .body(req.csr.to_pem())
            .send();
        let r = match r {
            Ok(r) => r,
            Err(e) => return self.unavailable("submitting", e),
        };
        let status = r.status();
        let body = text_capped(r);
        if status.is_success() {
            meta.insert("submitted".into(), "true".into());
            return self.look(req, meta);
        }
        if status.is_server_error() {
            return self.unavailable("submitting", format!("{status}: {body}"));
        }
        if status == StatusCode::BAD_REQUEST && body.contains("already has a") {
            // Submitted before (a crash between the PUT and storing `submitted`), or the
            // upstream holds someone else's request or certificate for the name: `look`
            // tells which, by comparing keys.
            meta.insert("submitted".into(), "true".into());
            return self.look(req, meta);
        }
        if status == StatusCode::BAD_REQUEST {
            return Outcome::ClientDataIssue {
                retry_after: self.poll,
                message: short(&format!("the upstream CA refused the CSR: {body}")),
            };
        }
        Outcome::Failed {
            message: short(&format!("the upstream CA answered {status}: {body}")),
        }
    }

    /// Looks for the certificate; without one, for the request.
    fn look(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome {
        let r = match self.client.get(self.url("certificate", req)).send() {
            Ok(r) => r,
            Err(e) => return self.unavailable("polling", e),
        };
        let status = r.status();
        if status == StatusCode::OK {
            let pem = super::read_capped(r).unwrap_or_default();
            match first_pem_cert(&pem) {
                // Ours (the CSR's name and key): served only if it passes the policy;
                // otherwise the order ends with why, rather than waiting for nothing.
                Ok(der) if is_for(req, &der).is_ok() => {
                    return match verify_returned(req, &der, &self.trust) {
                        Ok(()) => Outcome::Issued { cert_der: der },
                        Err(m) => Outcome::Failed {
                            message: format!("upstream CA: {m}"),
                        },
                    }
                }
                // An older certificate for another key: our request may still be pending.
                _ => {
                    tracing::debug!(certname = %req.csr.certname(), "upstream certificate not ours")
                }
            }
        } else if status.is_server_error() {
            return self.unavailable("polling", status);
        }
        let r = match self.client.get(self.url("certificate_request", req)).send() {
            Ok(r) => r,
            Err(e) => return self.unavailable("polling", e),
        };
        match r.status() {
            StatusCode::OK => {
                let pem = super::read_capped(r).unwrap_or_default();
                if same_csr(&pem, req) {
                    Outcome::Waiting {
                        retry_after: self.poll,
                        message: "waiting for the upstream CA to sign".into(),
                    }
                } else {
                    Outcome::ClientDataIssue {
                        retry_after: self.poll,
                        message: "the upstream CA holds a different request for this name".into(),
                    }
                }
            }
            s if s.is_server_error() => self.unavailable("polling", s),
            _ if meta.contains_key("submitted") => Outcome::Failed {
                message: "the upstream CA no longer has the request (rejected or deleted there)"
                    .into(),
            },
            _ => self.submit(req, meta),
        }
    }

    fn delete(&self, req: &OrderRequest<'_>) -> Result<(), Outcome> {
        match self
            .client
            .delete(self.url("certificate_request", req))
            .send()
        {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => Ok(()),
            Ok(r) => {
                let status = r.status();
                let body = text_capped(r);
                Err(Outcome::Failed {
                    message: short(&format!(
                        "the upstream CA refused to delete the request: {status} {body}"
                    )),
                })
            }
            Err(e) => Err(self.unavailable("deleting", e)),
        }
    }
}

fn same_csr(pem: &[u8], req: &OrderRequest<'_>) -> bool {
    openssl::x509::X509Req::from_pem(pem)
        .and_then(|r| r.to_der())
        .is_ok_and(|der| der == req.csr.der())
}

fn ok(r: reqwest::Result<Response>) -> Result<Response, String> {
    match r {
        Ok(r) if r.status().is_success() => Ok(r),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

impl Issuer for PuppetCa {
    fn ready(&self) -> Result<(), String> {
        let base = self.base.trim_end_matches("/puppet-ca/v1");
        ok(self.client.get(format!("{base}/status/v1/simple")).send())
            .map(|_| ())
            .map_err(|e| short(&format!("upstream CA {base}: {e}")))
    }

    fn issue(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome {
        self.submit(req, meta)
    }

    fn check(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome {
        if meta.contains_key("submitted") {
            self.look(req, meta)
        } else {
            self.submit(req, meta)
        }
    }

    fn modifier(&self) -> Option<&dyn Modify> {
        Some(self)
    }

    fn canceller(&self) -> Option<&dyn Cancel> {
        Some(self)
    }
}

impl Modify for PuppetCa {
    fn modify(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome {
        if let Err(o) = self.delete(req) {
            return o;
        }
        meta.remove("submitted");
        self.submit(req, meta)
    }
}

impl Cancel for PuppetCa {
    fn cancel(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome {
        match self.delete(req) {
            Ok(()) => {
                meta.remove("submitted");
                Outcome::Canceled {
                    message: "withdrawn from the upstream CA".into(),
                }
            }
            Err(o) => o,
        }
    }
}
