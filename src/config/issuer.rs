//! `[environments.<env>.issuer]`: which back end signs an environment's certificates.
//!
//! `issuer = "local"` (the default), one table, or an array of tables (the first whose
//! `certnames` globs accept a request serves it). Each table has `type` and that back
//! end's keys ([`Backend`]); the parser refuses a key of another back end, or a typo,
//! with its line.

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

/// One issuer: what every back end has, and the back end with its own settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Wire", into = "Wire")]
pub struct IssuerSpec {
    /// A name for logs, `/status` and events; defaults to the type.
    pub name: Option<String>,
    /// Certname globs this issuer serves (Puppet autosign globs); empty: every name.
    pub certnames: Vec<String>,
    /// How long an order may keep being retried before it is marked `error` (default 24h).
    pub retry_budget: Option<Duration>,
    /// The longest wait between two retries (default 10m).
    pub max_backoff: Option<Duration>,
    /// The back end and its settings.
    pub backend: Backend,
}

/// A back end and its settings; each variant has exactly its own keys, so a key of
/// another back end (or a typo) is refused by the parser, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The environment's own issuing CA, in process.
    Local,
    /// A cfssl signer over HTTP.
    Cfssl(CfsslSpec),
    /// A Puppet-compatible CA over HTTPS.
    PuppetCa(PuppetCaSpec),
    /// An external program.
    Command(CommandSpec),
}

/// `type = "cfssl"`: `/api/v1/cfssl/sign`, or `authsign` with `auth_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfsslSpec {
    /// The base URL.
    pub url: String,
    /// The CA bundle every certificate it returns must chain to.
    pub ca_file: PathBuf,
    /// The hex HMAC key of an `auth_keys` entry; requests then go to `authsign`.
    pub auth_key: Option<String>,
    /// The signing profile to ask for.
    pub profile: Option<String>,
}

/// `type = "puppet-ca"`: Puppet Server or another certd; certd submits the CSR upstream
/// and polls for the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuppetCaSpec {
    /// The base URL.
    pub url: String,
    /// The CA bundle: its TLS certificate and every certificate it returns chain to it.
    pub ca_file: PathBuf,
    /// The client certificate certd presents upstream.
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// How often to look for the certificate while the upstream has not signed
    /// (default 30s).
    pub poll_interval: Option<Duration>,
}

/// `type = "command"`: the CSR on stdin, the certificate on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Killed after this long (default 30s).
    pub timeout: Option<Duration>,
    /// The CA bundle every certificate it prints must chain to.
    pub ca_file: PathBuf,
}

/// The configuration's spelling of an issuer: a table tagged by `type`, each back end
/// with its own keys and the common ones, unknown keys refused.
/// The common keys are repeated in each variant because serde's `flatten` cannot be
/// combined with `deny_unknown_fields`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum Wire {
    Local {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        certnames: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_budget: Option<Duration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_backoff: Option<Duration>,
    },
    Cfssl {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        certnames: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_budget: Option<Duration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_backoff: Option<Duration>,
        url: String,
        ca_file: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    PuppetCa {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        certnames: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_budget: Option<Duration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_backoff: Option<Duration>,
        url: String,
        ca_file: PathBuf,
        cert_file: PathBuf,
        key_file: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        poll_interval: Option<Duration>,
    },
    Command {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        certnames: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_budget: Option<Duration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_backoff: Option<Duration>,
        program: PathBuf,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<Duration>,
        ca_file: PathBuf,
    },
}

impl From<Wire> for IssuerSpec {
    fn from(w: Wire) -> IssuerSpec {
        let spec = |name, certnames, retry_budget, max_backoff, backend| IssuerSpec {
            name,
            certnames,
            retry_budget,
            max_backoff,
            backend,
        };
        match w {
            Wire::Local {
                name,
                certnames,
                retry_budget,
                max_backoff,
            } => spec(name, certnames, retry_budget, max_backoff, Backend::Local),
            Wire::Cfssl {
                name,
                certnames,
                retry_budget,
                max_backoff,
                url,
                ca_file,
                auth_key,
                profile,
            } => spec(
                name,
                certnames,
                retry_budget,
                max_backoff,
                Backend::Cfssl(CfsslSpec {
                    url,
                    ca_file,
                    auth_key,
                    profile,
                }),
            ),
            Wire::PuppetCa {
                name,
                certnames,
                retry_budget,
                max_backoff,
                url,
                ca_file,
                cert_file,
                key_file,
                poll_interval,
            } => spec(
                name,
                certnames,
                retry_budget,
                max_backoff,
                Backend::PuppetCa(PuppetCaSpec {
                    url,
                    ca_file,
                    cert_file,
                    key_file,
                    poll_interval,
                }),
            ),
            Wire::Command {
                name,
                certnames,
                retry_budget,
                max_backoff,
                program,
                args,
                timeout,
                ca_file,
            } => spec(
                name,
                certnames,
                retry_budget,
                max_backoff,
                Backend::Command(CommandSpec {
                    program,
                    args,
                    timeout,
                    ca_file,
                }),
            ),
        }
    }
}

impl From<IssuerSpec> for Wire {
    fn from(s: IssuerSpec) -> Wire {
        let IssuerSpec {
            name,
            certnames,
            retry_budget,
            max_backoff,
            backend,
        } = s;
        match backend {
            Backend::Local => Wire::Local {
                name,
                certnames,
                retry_budget,
                max_backoff,
            },
            Backend::Cfssl(c) => Wire::Cfssl {
                name,
                certnames,
                retry_budget,
                max_backoff,
                url: c.url,
                ca_file: c.ca_file,
                auth_key: c.auth_key,
                profile: c.profile,
            },
            Backend::PuppetCa(p) => Wire::PuppetCa {
                name,
                certnames,
                retry_budget,
                max_backoff,
                url: p.url,
                ca_file: p.ca_file,
                cert_file: p.cert_file,
                key_file: p.key_file,
                poll_interval: p.poll_interval,
            },
            Backend::Command(c) => Wire::Command {
                name,
                certnames,
                retry_budget,
                max_backoff,
                program: c.program,
                args: c.args,
                timeout: c.timeout,
                ca_file: c.ca_file,
            },
        }
    }
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
            name: None,
            certnames: Vec::new(),
            retry_budget: None,
            max_backoff: None,
            backend: Backend::Local,
        }
    }

    /// Its back end's type.
    pub fn kind(&self) -> IssuerKind {
        match self.backend {
            Backend::Local => IssuerKind::Local,
            Backend::Cfssl(_) => IssuerKind::Cfssl,
            Backend::PuppetCa(_) => IssuerKind::PuppetCa,
            Backend::Command(_) => IssuerKind::Command,
        }
    }

    /// The issuer's name.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind().as_str().to_owned())
    }

    /// The retry budget in seconds.
    pub fn retry_budget(&self) -> i64 {
        self.retry_budget.map_or(86_400, Duration::as_secs)
    }

    /// The longest backoff in seconds.
    pub fn max_backoff(&self) -> i64 {
        self.max_backoff.map_or(600, Duration::as_secs)
    }

    /// Checks what the parser cannot: URL schemes, that the CA bundle holds a
    /// certificate, that an `auth_key` is hex.
    pub fn validate(&self) -> Result<(), String> {
        let (url, ca_file) = match &self.backend {
            Backend::Local => return Ok(()),
            Backend::Cfssl(c) => (Some(&c.url), &c.ca_file),
            Backend::PuppetCa(p) => (Some(&p.url), &p.ca_file),
            Backend::Command(c) => (None, &c.ca_file),
        };
        if let Some(url) = url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("issuer url {url:?} must be http:// or https://"));
            }
        }
        // Read now, so that a bundle with no certificate is refused where it is named,
        // not when the first certificate comes back.
        let pem = std::fs::read(ca_file)
            .map_err(|e| format!("issuer ca_file {}: {e}", ca_file.display()))?;
        if openssl::x509::X509::stack_from_pem(&pem).map_or(true, |c| c.is_empty()) {
            return Err(format!(
                "issuer ca_file {} holds no PEM certificate",
                ca_file.display()
            ));
        }
        if let Backend::Cfssl(CfsslSpec {
            auth_key: Some(key),
            ..
        }) = &self.backend
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(table: &str) -> Result<IssuerSpec, String> {
        toml::from_str::<IssuerSpec>(table).map_err(|e| e.to_string())
    }

    /// Each back end takes exactly its own keys: the parser refuses another back end's
    /// key or a missing one, so no back end re-checks them.
    #[test]
    fn each_back_end_takes_its_own_keys_only() {
        let ok = parse(
            "type = \"command\"\nprogram = \"/bin/true\"\nca_file = \"ca.pem\"\nargs = [\"-x\"]\n",
        )
        .unwrap();
        assert_eq!(ok.kind(), IssuerKind::Command);
        match &ok.backend {
            Backend::Command(c) => assert_eq!(c.args, vec!["-x".to_owned()]),
            other => panic!("{other:?}"),
        }
        let e = parse(
            "type = \"cfssl\"\nurl = \"http://x\"\nca_file = \"ca.pem\"\nprogram = \"/bin/sh\"\n",
        )
        .unwrap_err();
        assert!(e.contains("unknown field `program`"), "{e}");
        let e =
            parse("type = \"puppet-ca\"\nurl = \"https://x\"\nca_file = \"ca.pem\"\n").unwrap_err();
        assert!(e.contains("missing field `cert_file`"), "{e}");
        let e = parse("type = \"local\"\nurl = \"http://x\"\n").unwrap_err();
        assert!(e.contains("unknown field `url`"), "{e}");
        assert_eq!(parse("type = \"local\"\n").unwrap(), IssuerSpec::local());
    }

    /// What is written back (an environment's settings as served) reads back the same.
    #[test]
    fn a_spec_round_trips_through_its_wire_form() {
        let spec = parse(
            "type = \"puppet-ca\"\nname = \"up\"\nurl = \"https://x\"\nca_file = \"ca.pem\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\npoll_interval = \"5s\"\n",
        )
        .unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("\"type\":\"puppet-ca\""), "{json}");
        assert_eq!(serde_json::from_str::<IssuerSpec>(&json).unwrap(), spec);
    }
}
