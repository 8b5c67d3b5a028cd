//! `[environments.<env>.issuer]`: which back end signs an environment's certificates.
//!
//! `issuer = "local"` (the default), one table, or an array of tables (the first whose
//! `certnames` globs accept a request serves it). Each table has `type` and that back
//! end's keys; keys of another back end are an error, so a typo never goes unnoticed.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::Duration;

/// The back end of an issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssuerKind {
    /// The environment's own issuing CA, in process.
    Local,
    /// A cfssl signer over HTTP (`/api/v1/cfssl/sign`, or `authsign` with `auth_key`).
    Cfssl,
    /// A Puppet-compatible CA over HTTPS (Puppet Server or another certd): certd submits
    /// the CSR upstream and polls for the certificate.
    PuppetCa,
    /// An external program: the CSR on stdin, the certificate on stdout.
    Command,
}

/// One issuer. Unused keys are refused by [`IssuerSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// The back end.
    #[serde(rename = "type")]
    pub kind: IssuerKind,
    /// A name for logs, `/status` and events; defaults to the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Certname globs this issuer serves (Puppet autosign globs); empty: every name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certnames: Vec<String>,
    /// `cfssl`, `puppet-ca`: the base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `cfssl`: the hex HMAC key of an `auth_keys` entry; requests then go to `authsign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_key: Option<String>,
    /// `cfssl`: the signing profile to ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The back end's CA bundle: every certificate it returns must chain to it (and, for
    /// `puppet-ca`, its TLS certificate too). Required for every remote back end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `puppet-ca`: the client certificate certd presents upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// `puppet-ca`: its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// `puppet-ca`: how often to look for the certificate while the upstream has not
    /// signed (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<Duration>,
    /// `command`: the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<PathBuf>,
    /// `command`: its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `command`: killed after this long (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// How long an order may keep being retried before it is marked `error` (default 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<Duration>,
    /// The longest wait between two retries (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<Duration>,
}

impl IssuerKind {
    /// The name used in the configuration (`local`, `cfssl`, `puppet-ca`, `command`).
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Local => "local",
            IssuerKind::Cfssl => "cfssl",
            IssuerKind::PuppetCa => "puppet-ca",
            IssuerKind::Command => "command",
        }
    }
}

impl IssuerSpec {
    /// The built-in CA.
    pub fn local() -> Self {
        IssuerSpec {
            kind: IssuerKind::Local,
            name: None,
            certnames: Vec::new(),
            url: None,
            auth_key: None,
            profile: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            poll_interval: None,
            program: None,
            args: Vec::new(),
            timeout: None,
            retry_budget: None,
            max_backoff: None,
        }
    }

    /// The issuer's name.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind.as_str().to_owned())
    }

    /// The retry budget in seconds.
    pub fn retry_budget(&self) -> i64 {
        self.retry_budget.map_or(86_400, Duration::as_secs)
    }

    /// The longest backoff in seconds.
    pub fn max_backoff(&self) -> i64 {
        self.max_backoff.map_or(600, Duration::as_secs)
    }

    /// Checks that the keys this back end needs are there and no other back end's are.
    pub fn validate(&self) -> Result<(), String> {
        let present = |k: &str| -> bool {
            match k {
                "url" => self.url.is_some(),
                "auth_key" => self.auth_key.is_some(),
                "profile" => self.profile.is_some(),
                "ca_file" => self.ca_file.is_some(),
                "cert_file" => self.cert_file.is_some(),
                "key_file" => self.key_file.is_some(),
                "poll_interval" => self.poll_interval.is_some(),
                "program" => self.program.is_some(),
                "args" => !self.args.is_empty(),
                "timeout" => self.timeout.is_some(),
                _ => false,
            }
        };
        let all = [
            "url",
            "auth_key",
            "profile",
            "ca_file",
            "cert_file",
            "key_file",
            "poll_interval",
            "program",
            "args",
            "timeout",
        ];
        let (required, optional): (&[&str], &[&str]) = match self.kind {
            IssuerKind::Local => (&[], &[]),
            IssuerKind::Cfssl => (&["url", "ca_file"], &["auth_key", "profile"]),
            IssuerKind::PuppetCa => (
                &["url", "ca_file", "cert_file", "key_file"],
                &["poll_interval"],
            ),
            IssuerKind::Command => (&["program", "ca_file"], &["args", "timeout"]),
        };
        let kind = self.kind.as_str();
        for k in required {
            if !present(k) {
                return Err(format!("issuer type {kind} needs {k}"));
            }
        }
        for k in all {
            if present(k) && !required.contains(&k) && !optional.contains(&k) {
                return Err(format!("issuer type {kind} has no key {k}"));
            }
        }
        if let Some(url) = &self.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("issuer url {url:?} must be http:// or https://"));
            }
        }
        if let Some(ca) = &self.ca_file {
            // Read now, so that a bundle with no certificate is refused where it is
            // named, not when the first certificate comes back.
            let pem =
                std::fs::read(ca).map_err(|e| format!("issuer ca_file {}: {e}", ca.display()))?;
            if openssl::x509::X509::stack_from_pem(&pem).map_or(true, |c| c.is_empty()) {
                return Err(format!(
                    "issuer ca_file {} holds no PEM certificate",
                    ca.display()
                ));
            }
        }
        if let Some(key) = &self.auth_key {
            if key.is_empty() || key.len() % 2 != 0 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("issuer auth_key must be hex, as in cfssl's auth_keys".into());
            }
        }
        Ok(())
    }
}

/// `issuer = "local" | { type = ... } | [{ type = ... }, ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Issuers(pub Vec<IssuerSpec>);

impl Default for Issuers {
    fn default() -> Self {
        Issuers(vec![IssuerSpec::local()])
    }
}

impl<'de> Deserialize<'de> for Issuers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Issuers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"local\", an issuer table, or an array of issuer tables")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Issuers, E> {
                match s {
                    "local" => Ok(Issuers::default()),
                    other => Err(E::custom(format!(
                        "issuer {other:?}: write \"local\" or a table with type = ..."
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Issuers, A::Error> {
                let one = IssuerSpec::deserialize(de::value::MapAccessDeserializer::new(map))?;
                one.validate().map_err(de::Error::custom)?;
                Ok(Issuers(vec![one]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Issuers, A::Error> {
                let many =
                    Vec::<IssuerSpec>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                if many.is_empty() {
                    return Err(de::Error::custom("issuer: an empty list serves nothing"));
                }
                for one in &many {
                    one.validate().map_err(de::Error::custom)?;
                }
                Ok(Issuers(many))
            }
        }
        d.deserialize_any(V)
    }
}
