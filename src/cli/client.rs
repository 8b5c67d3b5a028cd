//! The admin's HTTPS client: the data directory's admin certificate, trusting the
//! production chain, speaking the native API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use reqwest::blocking::{Client, Response};

use crate::store::DataDir;

/// What the server answered, reduced to what the commands decide on.
pub enum Answer {
    /// 2xx, with the body.
    Ok(Response),
    /// 404.
    NotFound(String),
    /// Any other 4xx: (status, problem code, detail).
    Refused(u16, String, String),
}

/// A client for one server and environment.
pub struct AdminClient {
    http: Client,
    base: String,
    /// The environment every path is under.
    pub env: String,
}

impl AdminClient {
    /// Builds the client from the data directory's admin identity and chain.
    pub fn new(data: &DataDir, base: String, env: String) -> anyhow::Result<Self> {
        let read =
            |p: PathBuf| std::fs::read(&p).with_context(|| format!("reading {}", p.display()));
        let chain = read(data.env_chain(&crate::ca::EnvName::production()))?;
        let identity =
            reqwest::Identity::from_pkcs8_pem(&read(data.admin_cert())?, &read(data.admin_key())?)
                .context("loading the admin certificate and key")?;
        let mut b = Client::builder()
            .tls_built_in_root_certs(false)
            .identity(identity)
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("certd-cli/", env!("CARGO_PKG_VERSION")));
        for cert in reqwest::Certificate::from_pem_bundle(&chain).context("reading the CA chain")? {
            b = b.add_root_certificate(cert);
        }
        Ok(AdminClient {
            http: b.build()?,
            base: base.trim_end_matches('/').to_owned(),
            env,
        })
    }

    /// A URL under the environment, e.g. `certificate/web1`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base, self.env, path)
    }

    /// A URL at the server root, e.g. a `Link` target.
    pub fn absolute(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The raw client, for requests the helpers do not cover.
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// Sends a request and sorts the answer.
    pub fn send(&self, req: reqwest::blocking::RequestBuilder) -> anyhow::Result<Answer> {
        let resp = req
            .send()
            .map_err(|e| anyhow!("cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        if status.is_success() || status.as_u16() == 304 {
            return Ok(Answer::Ok(resp));
        }
        let body = resp.text().unwrap_or_default();
        let (code, detail) = match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => (
                v["code"].as_str().unwrap_or("").to_owned(),
                v["detail"].as_str().unwrap_or(&body).to_owned(),
            ),
            Err(_) => (String::new(), body),
        };
        if status.is_server_error() {
            return Err(anyhow!("the server failed ({status}): {detail}"));
        }
        if status.as_u16() == 404 {
            return Ok(Answer::NotFound(detail));
        }
        Ok(Answer::Refused(status.as_u16(), code, detail))
    }
}
