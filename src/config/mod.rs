//! The configuration file (`conf/certd.toml`) → a validated [`Config`], in one place.
//!
//! Unknown keys are errors, so a typo never silently falls back to a default. Every key
//! has a default; `conf/certd.toml` lists them all with a comment each.

mod api_env;
mod duration;
mod issuer;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::authz::{AuthzError, Rules};
use crate::ca::{Certname, CsrPolicy, Digest, EnvName, KeyType};
pub use api_env::{ApiAutosign, ApiEnvSettings, IssuerRef, IssuerRefs};
pub use duration::Duration;
pub use issuer::{Backend, CfsslSpec, CommandSpec, IssuerKind, IssuerSpec, Issuers, PuppetCaSpec};
pub use store::{SslMode, StoreBackend, StoreConfig};

/// This machine's host name, when it has one that is UTF-8.
pub fn host_name() -> Option<String> {
    hostname::get().ok().and_then(|h| h.into_string().ok())
}

/// Why a configuration could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong form.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The authorization rules file is malformed (the message names the line).
    #[error(transparent)]
    Rules(#[from] AuthzError),
}

/// A count or size that must be at least 1 (0 would refuse everything, or nothing would
/// fit); refused while the file is read, so the message names the line.
fn positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(n)
}

/// Most HTTP worker threads a node may be given.
const MAX_WORKERS: usize = 256;

/// A worker count, when given: 1 to [`MAX_WORKERS`].
fn workers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = positive(d)?;
    if n > MAX_WORKERS {
        return Err(serde::de::Error::custom(format!(
            "must be at most {MAX_WORKERS}"
        )));
    }
    Ok(Some(n))
}

/// Webhook URLs: each an http:// or https:// URL that parses, checked while the file is
/// read.
fn webhook_urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let urls = Vec::<String>::deserialize(d)?;
    for url in &urls {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some());
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "{url:?} is not an http:// or https:// URL"
            )));
        }
    }
    Ok(urls)
}

/// `[server]`: how certd listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The data directory, relative to the working directory when not absolute.
    pub data_dir: PathBuf,
    /// Extra DNS names (or IP addresses) for the server certificate, beyond localhost,
    /// 127.0.0.1, ::1 and the host name.
    pub dns_alt_names: Vec<String>,
    /// Key type of the HTTPS server key: ECDSA P-256 is cheap to handshake with.
    pub tls_key_type: KeyType,
    /// How long an idle keep-alive connection is kept before certd closes it.
    pub keep_alive: Duration,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// A client must send a request's line and headers within this long (slow-loris
    /// clients are dropped with 408).
    pub request_timeout: Duration,
    /// A client must send a request's whole body within this long (408 beyond).
    pub body_timeout: Duration,
    /// Most connections open at once, per worker thread.
    #[serde(deserialize_with = "positive")]
    pub max_connections: usize,
    /// HTTP worker threads; by default one per core. Several nodes sharing one machine's
    /// cores each take their share.
    #[serde(deserialize_with = "workers")]
    pub workers: Option<usize>,
    /// This node's name among the nodes sharing one store (`/status`); by default the
    /// host name and the port.
    pub node_id: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8140)),
            data_dir: PathBuf::from("data"),
            dns_alt_names: Vec::new(),
            tls_key_type: KeyType::EcP256,
            keep_alive: Duration::secs(5),
            shutdown_timeout: Duration::secs(30),
            request_timeout: Duration::secs(10),
            body_timeout: Duration::secs(10),
            max_connections: 10_000,
            workers: None,
            node_id: None,
        }
    }
}

/// `[ca]`: the certificate authorities certd creates and the certificates it issues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// Key type of the root and of every environment's issuing CA.
    pub key_type: KeyType,
    /// Validity of the root CA certificate.
    pub root_ttl: Duration,
    /// Validity of an environment's issuing CA certificate (never beyond the root's).
    pub issuing_ttl: Duration,
    /// Default validity of issued certificates (Puppet's `ca_ttl`).
    pub cert_ttl: Duration,
    /// How far ahead a CRL's `nextUpdate` lies.
    pub crl_next_update: Duration,
    /// Certname of the admin client certificate written by setup.
    pub admin_certname: String,
    /// Key type of the admin client key.
    pub admin_key_type: KeyType,
    /// Digest of a fingerprint when the client names none.
    pub fingerprint_digest: Digest,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            key_type: KeyType::Rsa4096,
            root_ttl: Duration::secs(20 * 365 * 86_400),
            issuing_ttl: Duration::secs(15 * 365 * 86_400),
            cert_ttl: Duration::secs(5 * 365 * 86_400),
            crl_next_update: Duration::secs(5 * 365 * 86_400),
            admin_certname: "certd-admin".into(),
            admin_key_type: KeyType::EcP256,
            fingerprint_digest: Digest::Sha256,
        }
    }
}

/// `[authz]`: who is an administrator beyond holders of a `pp_cli_auth` certificate,
/// and where the authorization rules are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzConfig {
    /// Certnames that are global administrators.
    pub admins: Vec<String>,
    /// Environments whose CA may vouch for a global administrator (production only when
    /// absent).
    pub admin_environments: Option<Vec<String>>,
    /// The rules file, relative to the configuration file's directory; empty: the
    /// shipped rules (`conf/auth.toml`), compiled in.
    pub rules: String,
}

/// `[environments.<name>]`: one environment (tenant) and its CSR policy.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvConfig {
    /// Whether CSRs may request subject alternative names beyond `DNS:<certname>`.
    pub allow_subject_alt_names: bool,
    /// Whether CSRs may request Puppet authorization extensions (arc
    /// 1.3.6.1.4.1.34380.1.3; `pp_cli_auth` is never signable).
    pub allow_authorization_extensions: bool,
    /// Whether an agent's RSA key may have the public exponent 3 (otherwise only 65537;
    /// an exponent of 1, even exponents and even moduli are never accepted).
    pub allow_rsa_exponent_3: bool,
    /// Whether a new CSR is accepted for a name that already has a certificate.
    pub allow_duplicate_certs: bool,
    /// Validity of certificates issued here; `[ca] cert_ttl` when absent.
    pub cert_ttl: Option<Duration>,
    /// Which CSRs are signed on submission, with Puppet's semantics.
    pub autosign: Autosign,
    /// An autosign executable is killed after this long, and counts as a "no".
    pub autosign_timeout: Duration,
    /// Whether an agent may renew its own certificate with
    /// `POST /puppet-ca/v1/certificate_renewal` (Puppet 8.2+ agents do so by themselves).
    pub allow_auto_renewal: bool,
    /// Validity of a renewed certificate.
    pub auto_renewal_cert_ttl: Duration,
    /// A certificate younger than this is not renewed (429, saying when), so that
    /// renewing in a loop cannot grow the CRL (each renewal revokes its predecessor);
    /// when absent, a tenth of the certificate's lifetime; `"0s"` lifts the bound.
    #[serde(
        deserialize_with = "duration::zero_or_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_renewal_age: Option<Duration>,
    /// This environment's own administrators: certnames that, with a certificate from
    /// this environment's CA, may sign, revoke, reject, clean and list here.
    pub admins: Vec<Certname>,
    /// Whether a caller without a client certificate may submit a CSR here; when
    /// absent, true for `production` and false for every other environment.
    pub allow_anonymous_csr: Option<bool>,
    /// Who signs: `"local"` (this environment's issuing CA), or one or more back ends
    /// (see [`IssuerSpec`]).
    pub issuer: Issuers,
}

/// `autosign = false | true | ["glob", ...] | "/path"` (Puppet's `autosign` setting).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Autosign {
    /// Sign everything, or nothing.
    All(bool),
    /// Certnames or domain globs: `*` alone is everything, `*.example.com` matches
    /// names under example.com and example.com itself, anything else is an exact name.
    Globs(Vec<String>),
    /// An executable (given the certname as its argument and the CSR on stdin; exit 0
    /// signs), or, when not executable, an allowlist file of such globs; a path that
    /// does not exist signs nothing.
    Path(PathBuf),
}

impl Default for Autosign {
    fn default() -> Self {
        Autosign::All(false)
    }
}

impl Default for EnvConfig {
    fn default() -> Self {
        EnvConfig {
            allow_subject_alt_names: false,
            allow_authorization_extensions: false,
            allow_rsa_exponent_3: false,
            allow_duplicate_certs: false,
            cert_ttl: None,
            autosign: Autosign::default(),
            autosign_timeout: Duration::secs(10),
            allow_auto_renewal: true,
            auto_renewal_cert_ttl: Duration::secs(90 * 86_400),
            min_renewal_age: None,
            admins: Vec::new(),
            allow_anonymous_csr: None,
            issuer: Issuers::default(),
        }
    }
}

impl EnvConfig {
    /// The CSR policy these settings and the global limits make.
    pub fn csr_policy(&self, limits: &LimitsConfig) -> CsrPolicy {
        CsrPolicy {
            max_bytes: limits.max_csr_bytes,
            allow_subject_alt_names: self.allow_subject_alt_names,
            allow_authorization_extensions: self.allow_authorization_extensions,
            allow_rsa_exponent_3: self.allow_rsa_exponent_3,
            ..CsrPolicy::default()
        }
    }
}

/// `[limits]`: size bounds checked before anything is parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body, in bytes (413 beyond).
    #[serde(deserialize_with = "positive")]
    pub max_body_bytes: usize,
    /// Largest CSR, in bytes.
    #[serde(deserialize_with = "positive")]
    pub max_csr_bytes: usize,
    /// Longest `regex=` or `certname=` pattern in a listing, in bytes.
    #[serde(deserialize_with = "positive")]
    pub max_pattern_bytes: usize,
    /// Largest page of a listing (`limit=`), and the default page size.
    pub max_page: usize,
    /// How many records a streamed Puppet-face listing (`certificate_statuses`) reads
    /// and sends at a time: its memory, and its round trips to a database.
    #[serde(deserialize_with = "positive")]
    pub stream_page: usize,
    /// Largest total size of a request's headers, in bytes (431 beyond).
    #[serde(deserialize_with = "positive")]
    pub max_header_bytes: usize,
    /// Most signings (issuance, autosign, renewal) under way at once; more get 503
    /// with `Retry-After` instead of queueing without bound.
    #[serde(deserialize_with = "positive")]
    pub max_pending_signings: usize,
    /// Most autosign programs running at once, across environments; a submission that
    /// would start one more gets 503 with `Retry-After`.
    #[serde(deserialize_with = "positive")]
    pub max_policy_runs: usize,
    /// Most environments served, declared and created through the API together; each
    /// costs an issuing CA key. Creating one more is refused (409).
    #[serde(deserialize_with = "positive")]
    pub max_environments: usize,
    /// Most requests (pending, refused or failed) an environment holds; a submission
    /// that would store one more is refused (503 `requests-full`) until an admin signs,
    /// rejects or deletes some. Certificates signed at once are not counted.
    #[serde(deserialize_with = "positive")]
    pub max_requests: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 64 * 1024,
            max_csr_bytes: 16 * 1024,
            max_pattern_bytes: 256,
            max_page: 1000,
            stream_page: 2500,
            max_header_bytes: 16 * 1024,
            max_pending_signings: 64,
            max_environments: 100,
            max_policy_runs: 16,
            max_requests: 100_000,
        }
    }
}

/// `[events]`: where events (issued, revoked, rejected, canceled, error, order state
/// changes) are POSTed as JSON, besides the audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Webhook URLs (http:// or https://).
    #[serde(deserialize_with = "webhook_urls")]
    pub webhooks: Vec<String>,
    /// Each POST gives up after this long.
    pub webhook_timeout: Duration,
    /// Attempts per event and webhook (then the event is skipped for that webhook).
    pub webhook_attempts: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            webhooks: Vec::new(),
            webhook_timeout: Duration::secs(5),
            webhook_attempts: 3,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: ServerConfig,
    ca: CaConfig,
    limits: LimitsConfig,
    authz: AuthzConfig,
    events: EventsConfig,
    store: StoreConfig,
    issuers: BTreeMap<String, IssuerSpec>,
    autosign_policies: BTreeMap<String, PathBuf>,
    environments: BTreeMap<String, EnvConfig>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[ca]`.
    pub ca: CaConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[events]`.
    pub events: EventsConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// Global admin certnames.
    pub admins: Vec<Certname>,
    /// The environments whose CA may vouch for a global admin (`[authz]
    /// admin_environments`): a certificate from any other CA is never a global admin's.
    pub admin_environments: Vec<EnvName>,
    /// The certname of the admin certificate setup writes.
    pub admin_certname: Certname,
    /// Declared environments; `production` is always present.
    pub environments: BTreeMap<EnvName, EnvConfig>,
    /// `[issuers.<name>]`: issuer back ends that environments created through the API
    /// may name (the API names no program, path or URL itself).
    pub issuers: BTreeMap<String, IssuerSpec>,
    /// `[autosign_policies]`: autosign executables or allowlist files, by name, that
    /// environments created through the API may name.
    pub autosign_policies: BTreeMap<String, PathBuf>,
    /// The authorization rules (`[authz] rules`).
    pub rules: Rules,
    /// Where the rules came from: a path, or the built-in defaults.
    pub rules_origin: String,
}

impl Default for Config {
    #[allow(
        clippy::expect_used,
        reason = "the built-in defaults; the config tests build them"
    )]
    fn default() -> Self {
        Config::from_raw(RawConfig::default(), Path::new("")).expect("defaults are valid")
    }
}

impl Config {
    /// Whether `name` is a global administrator's certname: listed in `[authz] admins`,
    /// or the admin certificate setup writes.
    pub fn is_global_admin_name(&self, name: &Certname) -> bool {
        *name == self.admin_certname || self.admins.contains(name)
    }

    /// Whether `env`'s CA may vouch for a global administrator.
    pub fn vouches_for_admins(&self, env: &EnvName) -> bool {
        self.admin_environments.contains(env)
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `path` names it in messages, and a rules file is
    /// looked up beside it.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Config::from_raw(raw, path.parent().unwrap_or(Path::new("")))
    }

    fn from_raw(raw: RawConfig, dir: &Path) -> Result<Config, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let admins = raw
            .authz
            .admins
            .iter()
            .map(|a| Certname::parse(a).map_err(|e| invalid(format!("[authz] admins: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let admin_certname = Certname::parse(&raw.ca.admin_certname)
            .map_err(|e| invalid(format!("[ca] admin_certname: {e}")))?;
        let mut environments = BTreeMap::new();
        for (name, env) in raw.environments {
            let env_name = EnvName::parse(&name)
                .map_err(|e| invalid(format!("[environments.{name}]: {e}")))?;
            environments.insert(env_name, env);
        }
        environments.entry(EnvName::production()).or_default();
        if environments.len() > raw.limits.max_environments {
            return Err(invalid(format!(
                "[limits] max_environments is {}, but the file declares {} environments",
                raw.limits.max_environments,
                environments.len()
            )));
        }
        let admin_environments = match &raw.authz.admin_environments {
            None => vec![EnvName::production()],
            Some(list) => list
                .iter()
                .map(|e| {
                    let env = EnvName::parse(e)
                        .map_err(|err| invalid(format!("[authz] admin_environments: {err}")))?;
                    if !environments.contains_key(&env) {
                        return Err(invalid(format!(
                            "[authz] admin_environments: {env} is not an environment declared in this file"
                        )));
                    }
                    Ok(env)
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if raw.events.webhook_attempts == 0 {
            return Err(invalid(
                "[events] webhook_attempts must be at least 1".into(),
            ));
        }
        if raw.ca.issuing_ttl > raw.ca.root_ttl {
            return Err(invalid("[ca] issuing_ttl must not exceed root_ttl".into()));
        }
        if raw.limits.max_page == 0 || raw.limits.max_body_bytes < raw.limits.max_csr_bytes {
            return Err(invalid(
                "[limits] max_page must be positive and max_body_bytes at least max_csr_bytes"
                    .into(),
            ));
        }
        let mut store = raw.store;
        store.validate(dir).map_err(invalid)?;
        let mut issuers = BTreeMap::new();
        for (name, mut spec) in raw.issuers {
            if name == "local"
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(format!(
                    "[issuers.{name}]: a name of letters, digits, - and _, other than local"
                )));
            }
            spec.validate()
                .map_err(|e| invalid(format!("[issuers.{name}]: {e}")))?;
            spec.name.get_or_insert_with(|| name.clone());
            issuers.insert(name, spec);
        }
        let (rules, rules_origin) = if raw.authz.rules.is_empty() {
            (Rules::builtin(), "built in (conf/auth.toml)".to_owned())
        } else {
            let file = dir.join(&raw.authz.rules);
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: file.clone(),
                source,
            })?;
            let origin = file.display().to_string();
            (Rules::parse(&text, &origin)?, origin)
        };
        Ok(Config {
            server: raw.server,
            ca: raw.ca,
            limits: raw.limits,
            events: raw.events,
            store,
            admins,
            admin_environments,
            admin_certname,
            environments,
            issuers,
            autosign_policies: raw.autosign_policies,
            rules,
            rules_origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_loads_without_unknown_keys() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/certd.toml");
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8140");
        assert_eq!(cfg.ca.key_type, KeyType::Rsa4096);
        assert!(cfg.environments.contains_key(&EnvName::production()));
        assert!(cfg.rules_origin.ends_with("conf/auth.toml"));
        assert_eq!(cfg.rules.len(), Config::default().rules.len());
    }

    #[test]
    fn a_rules_file_is_read_beside_the_config_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("certd.toml");
        std::fs::write(&cfg, "[authz]\nrules = \"my-auth.toml\"\n").unwrap();
        assert!(matches!(Config::load(&cfg), Err(ConfigError::Read { .. })));
        std::fs::write(
            dir.path().join("my-auth.toml"),
            "[[rule]]\nname = \"all\"\npath = \"/\"\nallow = [\"anyone\"]\n",
        )
        .unwrap();
        assert_eq!(Config::load(&cfg).unwrap().rules.len(), 1);
        std::fs::write(
            dir.path().join("my-auth.toml"),
            "[[rule]]\nname = \"all\"\npath = \"/\"\n\nallow = [\"everybody\"]\n",
        )
        .unwrap();
        let e = Config::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("my-auth.toml:5:") && e.contains("everybody"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_file_spells_out_every_default() {
        // Every key the code reads appears in the shipped file with its default value.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/certd.toml");
        let shipped = Config::load(&path).unwrap();
        let defaults = Config::default();
        assert_eq!(
            format!("{:?}", shipped.server),
            format!("{:?}", defaults.server)
        );
        assert_eq!(format!("{:?}", shipped.ca), format!("{:?}", defaults.ca));
        assert_eq!(
            format!("{:?}", shipped.events),
            format!("{:?}", defaults.events)
        );
        assert_eq!(
            format!("{:?}", shipped.limits),
            format!("{:?}", defaults.limits)
        );
        assert_eq!(
            format!("{:?}", shipped.store),
            format!("{:?}", defaults.store)
        );
        assert_eq!(
            format!("{:?}", shipped.environments[&EnvName::production()]),
            format!("{:?}", EnvConfig::default())
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            "listen",
            "data_dir",
            "dns_alt_names",
            "tls_key_type",
            "keep_alive",
            "shutdown_timeout",
            "workers",
            "node_id",
            "key_type",
            "root_ttl",
            "issuing_ttl",
            "cert_ttl",
            "crl_next_update",
            "admin_certname",
            "admin_key_type",
            "admins",
            "admin_environments",
            "[issuers.",
            "[autosign_policies]",
            "[environments.production]",
            "[store]",
            "backend",
            "url",
            "password_file",
            "pool_size",
            "statement_timeout",
            "connect_timeout",
            "sslmode",
            "ssl_root_cert",
            "key_file",
        ] {
            assert!(text.contains(key), "conf/certd.toml does not mention {key}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_a_location() {
        let err = Config::from_toml(
            "[server]\nlisten = \"127.0.0.1:1\"\nlsten = 1\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("lsten") && msg.contains("line 3"), "{msg}");
        assert!(Config::from_toml("[nope]\n", Path::new("x.toml")).is_err());
        assert!(
            Config::from_toml("[environments.prod]\nautosgn = true\n", Path::new("x.toml"))
                .is_err()
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        assert!(Config::from_toml("[ca]\nkey_type = \"rsa-1024\"\n", Path::new("x")).is_err());
        assert!(Config::from_toml("[ca]\ncert_ttl = \"0s\"\n", Path::new("x")).is_err());
        assert!(Config::from_toml("[authz]\nadmins = [\"Bad Name\"]\n", Path::new("x")).is_err());
        assert!(Config::from_toml("[environments.\"Bad/Env\"]\n", Path::new("x")).is_err());
        assert!(Config::from_toml(
            "[ca]\nissuing_ttl = \"30y\"\nroot_ttl = \"10y\"\n",
            Path::new("x")
        )
        .is_err());
    }

    #[test]
    fn autosign_takes_a_bool_a_list_or_a_path() {
        let env = |t: &str| {
            Config::from_toml(&format!("[environments.production]\n{t}\n"), Path::new("x"))
                .unwrap()
                .environments[&EnvName::production()]
                .autosign
                .clone()
        };
        assert_eq!(env("autosign = true"), Autosign::All(true));
        assert_eq!(
            env("autosign = [\"*.example.com\"]"),
            Autosign::Globs(vec!["*.example.com".into()])
        );
        assert_eq!(
            env("autosign = \"/etc/certd/autosign\""),
            Autosign::Path("/etc/certd/autosign".into())
        );
        assert!(
            Config::from_toml("[environments.production]\nautosign = 3\n", Path::new("x")).is_err()
        );
    }

    #[test]
    fn production_always_exists() {
        let cfg = Config::from_toml("[environments.staging]\n", Path::new("x")).unwrap();
        let names: Vec<_> = cfg.environments.keys().map(|e| e.to_string()).collect();
        assert_eq!(names, vec!["production", "staging"]);
    }
}
