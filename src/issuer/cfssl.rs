//! `cfssl`: a remote cfssl signer (`cfssl serve`) over HTTP. `POST /api/v1/cfssl/sign`
//! with the CSR, the hosts certd's policy allowed, and the profile; with `auth_key`, the
//! same request goes to `/api/v1/cfssl/authsign` wrapped with its HMAC-SHA256 token, as
//! cfssl's `auth_keys` expect. Synchronous: it signs or says why not.

use std::time::Duration;

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use reqwest::blocking::Client;

use super::{short, verify_returned, Issuer, OrderRequest, Outcome, PluginMeta};
use crate::config::CfsslSpec;

/// Pause before trying again when cfssl cannot be reached.
const RETRY_AFTER: i64 = 10;

/// The cfssl back end.
#[derive(Debug)]
pub struct Cfssl {
    base: String,
    auth_key: Option<Vec<u8>>,
    profile: Option<String>,
    client: Client,
    trust: super::Trust,
}

impl Cfssl {
    /// From validated settings.
    pub fn new(spec: &CfsslSpec) -> Result<Self, String> {
        let url = &spec.url;
        let auth_key = match &spec.auth_key {
            None => None,
            Some(hex) => Some(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| "auth_key is not hex".to_string())?,
            ),
        };
        let client = super::http_client(Duration::from_secs(5), Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Cfssl {
            base: format!("{}/api/v1/cfssl", url.trim_end_matches('/')),
            auth_key,
            profile: spec.profile.clone(),
            client,
            trust: super::Trust::from_file(&spec.ca_file)?,
        })
    }

    fn sign(&self, req: &OrderRequest<'_>) -> Outcome {
        let csr = req.csr;
        let mut hosts = vec![csr.certname().to_string()];
        let subject = csr.subject();
        hosts.extend(subject.dns_names.iter().cloned());
        hosts.extend(subject.ip_addrs.iter().map(|ip| ip.to_string()));
        hosts.dedup();
        let mut body = serde_json::json!({
            "certificate_request": String::from_utf8_lossy(&csr.to_pem()),
            "hosts": hosts,
        });
        if let Some(p) = &self.profile {
            body["profile"] = p.clone().into();
        }
        let request = body.to_string().into_bytes();
        let (endpoint, payload) = match &self.auth_key {
            None => ("sign", request),
            Some(key) => {
                let token = PKey::hmac(key)
                    .and_then(|k| {
                        let mut s = Signer::new(MessageDigest::sha256(), &k)?;
                        s.update(&request)?;
                        s.sign_to_vec()
                    })
                    .map(|mac| openssl::base64::encode_block(&mac));
                let Ok(token) = token else {
                    return Outcome::Failed {
                        message: "could not compute the cfssl auth token".into(),
                    };
                };
                let wrapped = serde_json::json!({
                    "token": token,
                    "request": openssl::base64::encode_block(&request),
                });
                ("authsign", wrapped.to_string().into_bytes())
            }
        };
        let r = self
            .client
            .post(format!("{}/{endpoint}", self.base))
            .header("Content-Type", "application/json")
            .body(payload)
            .send();
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Unavailable {
                    retry_after: RETRY_AFTER,
                    message: short(&format!("cfssl unreachable: {e}")),
                }
            }
        };
        let status = r.status();
        let answer: serde_json::Value = match super::read_capped(r) {
            Ok(body) => serde_json::from_slice(&body).unwrap_or_default(),
            Err(m) => {
                return Outcome::Unavailable {
                    retry_after: RETRY_AFTER,
                    message: format!("cfssl: {m}"),
                }
            }
        };
        if status.is_server_error() && answer["success"] != true {
            // cfssl answers 400 for requests it refuses and 5xx when it fails itself.
            if answer["errors"].as_array().is_none_or(|e| e.is_empty()) {
                return Outcome::Unavailable {
                    retry_after: RETRY_AFTER,
                    message: format!("cfssl answered {status}"),
                };
            }
        }
        if answer["success"] == true {
            let pem = answer["result"]["certificate"].as_str().unwrap_or_default();
            return match super::first_pem_cert(pem.as_bytes())
                .and_then(|der| verify_returned(req, &der, &self.trust).map(|()| der))
            {
                Ok(cert_der) => Outcome::Issued { cert_der },
                Err(m) => Outcome::Failed {
                    message: format!("cfssl: {m}"),
                },
            };
        }
        let why = answer["errors"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(|e| e["message"].as_str())
            .unwrap_or("no reason given");
        Outcome::Failed {
            message: short(&format!("cfssl refused ({status}): {why}")),
        }
    }
}

impl Issuer for Cfssl {
    fn ready(&self) -> Result<(), String> {
        // Any HTTP answer means cfssl is up; `info` may itself need a profile or a key.
        match self.client.get(format!("{}/info", self.base)).send() {
            Ok(_) => Ok(()),
            Err(e) => Err(short(&format!("cfssl unreachable: {e}"))),
        }
    }

    fn issue(&self, req: &OrderRequest<'_>, _meta: &mut PluginMeta) -> Outcome {
        self.sign(req)
    }

    fn check(&self, req: &OrderRequest<'_>, _meta: &mut PluginMeta) -> Outcome {
        self.sign(req)
    }
}
