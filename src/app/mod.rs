//! Use cases, free of HTTP: setup, environments and their CAs, status, the CA chain.
//! `http` and `cli` call these; this module calls `ca`, `store` and `authz`.

pub mod autosign;
mod backup;
mod certificates;
mod changes;
mod crl;
mod crl_view;
mod environments;
mod listing;
mod metrics;
mod orders;
mod puppet;
mod requests;
mod setup;
mod started;
mod status;
mod webhooks;
mod workers;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use openssl::x509::X509;
use thiserror::Error;

use crate::authz::{EnvFacts, Identity, Issuer, Resolver, RevokedSerials};
use crate::ca::{CaError, CaPair, CertInfo, Certname, Clock, EnvName, Rng, UnixTime};
use crate::config::{Config, EnvConfig};
use crate::store::{DataDir, FilesError, Store, StoreError};

pub use backup::{copy_installation, BackupMade, BackupStoreOpener, CopyCounts, Installation};
pub use certificates::{CertificateView, Issued, Signing};
pub use changes::{ClusterStatus, ConfigDiffers};
pub use crl_view::CrlView;
pub use environments::{EnvChange, EnvView};
pub use listing::{ListQuery, Page};
pub use metrics::Metrics;
pub use orders::{EventView, IssuerStatus};
pub use puppet::{Expirations, PuppetStatus, SignReport, StatusCursor, PUPPET_ENV};
pub use requests::{RequestView, Submitted};
pub use setup::{setup, SetupOutcome};
pub use started::{Finished, InFlight, Submitting};
pub use status::{rfc3339, DesiredState, StatusObject};
pub use workers::Workers;

/// Everything a use case can fail with. The HTTP layer maps each variant exhaustively.
#[derive(Debug, Error)]
pub enum AppError {
    /// The caller sent something invalid (a bad name, CSR, ...); carries the stable code.
    #[error(transparent)]
    InvalidInput(CaError),
    /// The environment in the request is not one certd serves.
    #[error("environment {0} does not exist")]
    UnknownEnvironment(EnvName),
    /// A malformed request that is not about PKI input: bad JSON, query, parameter.
    #[error("{detail}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// What to change.
        detail: String,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such certificate, request or status.
    #[error("{0}")]
    NotFound(String),
    /// The certificate was revoked (410).
    #[error("the certificate of {certname} was revoked")]
    Revoked {
        /// Whose.
        certname: Certname,
        /// When.
        revoked_at: UnixTime,
        /// Why (RFC 5280 name).
        reason: &'static str,
    },
    /// The request was rejected or found invalid (410).
    #[error("the request of {certname} is invalid: {reason}")]
    RequestInvalid {
        /// Whose.
        certname: Certname,
        /// Why.
        reason: String,
    },
    /// A stored CSR no longer passes the environment's policy at signing time (409).
    #[error("{0}")]
    CsrRejected(CaError),
    /// The state of the resource does not allow the change (409).
    #[error("{detail}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// What stands in the way.
        detail: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A data directory file could not be read or written (a vault whose store is
    /// unavailable is [`AppError::Store`]: 503).
    #[error("data directory: {0}")]
    Files(FilesError),
    /// The PKI layer failed on data certd produced itself (not the caller's input).
    #[error("pki: {0}")]
    Pki(CaError),
    /// A renewal's client certificate is not the current certificate of its name in
    /// this environment (403).
    #[error("Certificate present, but does not match signature")]
    CertificateMismatch,
    /// The environment holds as many requests as it may (503 `requests-full`).
    #[error("{0}")]
    Full(String),
    /// Asked for too soon: a renewal of a certificate younger than its environment's
    /// `min_renewal_age` (429, with `Retry-After`).
    #[error("{detail}")]
    TooSoon {
        /// What is too soon, and when it will not be.
        detail: String,
        /// Seconds until it will not be.
        retry_after: u64,
    },
    /// Too many signings are under way; try again shortly (503).
    #[error("too many signings are under way; retry shortly")]
    Busy,
    /// A blocking task could not be run or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl From<FilesError> for AppError {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::Unavailable(why) => AppError::Store(StoreError::Unavailable(why)),
            other => AppError::Files(other),
        }
    }
}

impl From<CaError> for AppError {
    fn from(e: CaError) -> Self {
        if e.is_client_error() {
            AppError::InvalidInput(e)
        } else {
            AppError::Pki(e)
        }
    }
}

/// One environment as served: its issuing CA, settings and cached CRL.
#[derive(Debug)]
pub struct EnvCa {
    /// The environment's name.
    pub name: EnvName,
    /// The issuing CA and its key.
    pub ca: CaPair,
    /// `chain.pem` exactly as stored: issuing CA first, root last.
    pub chain_pem: Vec<u8>,
    /// The environment's settings.
    pub settings: EnvConfig,
    /// When `chain.pem` was last written (for `If-Modified-Since`).
    pub chain_modified: UnixTime,
    /// The current CRL, encoded, as served.
    crl: RwLock<Arc<CrlView>>,
    /// Serialises CRL rebuilds so that the last one written lists every revocation, and
    /// keeps the encoded entries between them.
    crl_rebuild: std::sync::Mutex<crl::CrlEntries>,
    /// Revocations waiting for the next rebuild (see `crl::rebuild`).
    crl_pending: std::sync::Mutex<Vec<crate::store::RevokedSerial>>,
    /// Who signs here, in order of preference (`supports` picks).
    pub issuers: Vec<crate::issuer::Configured>,
    /// The settings as the API gave them, for an environment created through it.
    pub api_settings: Option<crate::config::ApiEnvSettings>,
}

/// What the HTTPS listener needs: its certificate chain, key, and the CAs client
/// certificates may chain to.
pub struct TlsMaterial {
    /// The server certificate, PEM.
    pub cert_pem: Vec<u8>,
    /// The server key, PEM.
    pub key_pem: Vec<u8>,
    /// Certificates sent after the server certificate (its issuing CA).
    pub chain: Vec<X509>,
    /// Trusted CAs for client certificates: the root and every issuing CA.
    pub client_cas: Vec<X509>,
}

/// `GET /status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// certd's version.
    pub version: &'static str,
    /// Store health.
    pub store: StoreStatus,
    /// Environments served, by name (global admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
    /// Each environment's issuers and whether they take orders now (global admins
    /// only: a message may name a program or an upstream URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuers: Option<Vec<IssuerStatus>>,
    /// Where the store is shared by several nodes: this node and the others (global
    /// admins only: host names, and leases named after webhook URLs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
}

/// Store part of [`Status`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStatus {
    /// The store answers reads and takes writes.
    pub ok: bool,
    /// Why it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The application: configuration, data directory, store, CAs. Built once by the
/// composition root (`cli serve`) and shared.
pub struct App {
    config: Config,
    data: DataDir,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Rng>,
    root: CaPair,
    envs: RwLock<BTreeMap<EnvName, Arc<EnvCa>>>,
    resolver: Arc<Resolver>,
    /// Certnames certd uses for itself (setup's admin certificate, and the server
    /// certificate's common name and DNS names): no environment takes a request naming
    /// them.
    own_names: Vec<Certname>,
    /// The server certificate's IP addresses: no environment certifies them either.
    own_ips: Vec<std::net::IpAddr>,
    revoked: Arc<RevokedSerials>,
    /// Signings under way, bounded by `limits.max_pending_signings`.
    signings: Arc<std::sync::atomic::AtomicUsize>,
    /// Autosign policy runs under way, bounded by `limits.max_policy_runs`.
    policy_runs: Arc<std::sync::atomic::AtomicUsize>,
    /// Each environment's count of requests as last read, and when
    /// (`limits.max_requests`).
    request_counts: std::sync::Mutex<std::collections::HashMap<EnvName, requests::RequestCount>>,
    /// Autosign allowlist files as last read (read again when they change).
    allowlists: autosign::Allowlists,
    /// The root CA's CRL, encoded, as served in the Puppet face's CRL bundle.
    root_crl: RwLock<Arc<CrlView>>,
    /// Bumped whenever the set of trusted CAs changes (an environment is created).
    trust_generation: std::sync::atomic::AtomicU64,
    /// Each remote issuer's last readiness probe, by "env/issuer" (absent: not probed
    /// yet, taken as ready).
    readiness: RwLock<BTreeMap<String, Result<(), String>>>,
    /// Wakes the order worker (new or changed orders) and those waiting on it (an order
    /// was worked on): a counter bumped on each, with its condition variable.
    orders_signal: (std::sync::Mutex<u64>, std::sync::Condvar),
    /// Request and issuance counters for `/metrics`.
    metrics: metrics::Metrics,
    /// The issuer lanes ("env/issuer") with an order being worked now.
    order_lanes: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Backups through the server, when `[store] backup_dir` is set and the composition
    /// root said how to open their stores ([`App::with_backups`]).
    backups: Option<backup::Backups>,
    /// This node's place in the change sequence of a store other nodes share.
    feed: changes::Feed,
}

/// One admitted signing; releases its place when dropped.
pub(crate) struct SigningSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for SigningSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl App {
    /// The application over the parts the composition root (`cli serve`, or a test)
    /// chose: sets up the data directory first when it is empty, creates the issuing CA
    /// of any configured environment that lacks one, and loads every environment from
    /// `store`.
    pub fn new(
        config: Config,
        data: DataDir,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
    ) -> Result<App, AppError> {
        setup(&data, &config, store.as_ref(), clock.as_ref(), rng.as_ref())?;
        let root = CaPair::from_pem(
            &data.read(&data.root_cert())?,
            &data.read_ca_key(crate::store::CaKey::Root)?,
        )?;
        data.make_private()?;
        // Changes after this one are applied by the feed; those before are loaded now.
        let applied = store.last_event_id()?;
        // Every environment's chain here and in the vault (where there is one): those
        // another node created are written here, this node's are shared.
        let mut known: Vec<EnvName> = config.environments.keys().cloned().collect();
        known.extend(store.environments()?.into_iter().map(|(e, _)| e));
        known.sort();
        known.dedup();
        data.share(&known)?;
        // Filled from the revocations each environment's CRL is re-issued from.
        let revoked = RevokedSerials::new();
        let mut envs = BTreeMap::new();
        for env in config.environments.keys() {
            if !data.has_env(env) {
                setup::create_env_ca(&data, &config, &root, env, clock.as_ref(), rng.as_ref())?;
            }
            setup::ensure_env_in_store(store.as_ref(), &data, &config, env, clock.as_ref())?;
            let settings = config.environments[env].clone();
            let (loaded, serials) =
                load_env(&data, store.as_ref(), &config, env, settings, &clock, &rng)?;
            revoked.extend(env, serials);
            envs.insert(env.clone(), Arc::new(loaded));
        }
        // Environments created through the API, with the settings kept in the store.
        for (name, rec) in store.environments()? {
            if envs.contains_key(&name) {
                continue;
            }
            let Some(json) = rec.settings else { continue };
            let api: crate::config::ApiEnvSettings =
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                    tree: "environments".into(),
                    detail: format!("{name}: {e}"),
                })?;
            // Settings an older certd took from the API (a program, path or URL) are not
            // served: the operator declares such an environment in the file instead.
            let settings = api.resolve(&config).map_err(|e| AppError::BadRequest {
                code: "invalid-settings",
                detail: format!(
                    "environment {name}, created through the API: {e}; declare [environments.{name}] in the configuration file to take it over"
                ),
            })?;
            let (mut loaded, serials) = load_env(
                &data,
                store.as_ref(),
                &config,
                &name,
                settings,
                &clock,
                &rng,
            )?;
            loaded.api_settings = Some(api);
            revoked.extend(&name, serials);
            envs.insert(name, Arc::new(loaded));
        }
        crl::ensure_root(&root, store.as_ref(), &config, clock.as_ref())?;
        setup::record_own_certificates(store.as_ref(), &data, clock.now())?;
        let root_crl = store.root_crl()?.ok_or_else(|| StoreError::Corrupt {
            tree: "meta".into(),
            detail: "no root CRL".into(),
        })?;
        store.flush()?;
        let issuers = envs
            .iter()
            .map(|(name, e)| issuer_of(name, &e.ca))
            .collect::<Result<Vec<_>, _>>()?;
        let resolver = Arc::new(Resolver::new(
            issuers,
            config.admins.iter().cloned(),
            config.admin_environments.iter().cloned(),
        ));
        let mut own_names = vec![config.admin_certname.clone()];
        let server_der = X509::from_pem(&data.read(&data.server_cert())?)
            .and_then(|c| c.to_der())
            .map_err(CaError::from)?;
        let server = CertInfo::from_der(&server_der)?;
        // Every environment's CA chains to the one root: a certificate naming the server
        // from any of them would pose as certd to every agent trusting that root.
        // Names as certnames are spelled (lower case); addresses also as DNS names, which
        // some clients match against them.
        let own_ips: Vec<std::net::IpAddr> =
            server.ip_addrs.iter().map(|ip| ip.to_canonical()).collect();
        let server_names = server.common_name.iter().chain(&server.dns_names);
        let spelled = server_names
            .map(|n| n.to_ascii_lowercase())
            .chain(own_ips.iter().map(|ip| ip.to_string()));
        for name in spelled.filter_map(|n| Certname::parse(&n).ok()) {
            if !own_names.contains(&name) {
                own_names.push(name);
            }
        }
        let feed = changes::Feed::new(applied, node_id(&config), clock.now(), &config);
        Ok(App {
            config,
            data,
            store,
            clock,
            rng,
            root,
            envs: RwLock::new(envs),
            resolver,
            own_names,
            own_ips,
            revoked,
            signings: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            policy_runs: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            request_counts: std::sync::Mutex::new(std::collections::HashMap::new()),
            allowlists: autosign::Allowlists::default(),
            trust_generation: std::sync::atomic::AtomicU64::new(0),
            root_crl: RwLock::new(Arc::new(CrlView::new(root_crl))),
            readiness: RwLock::new(BTreeMap::new()),
            orders_signal: (std::sync::Mutex::new(0), std::sync::Condvar::new()),
            metrics: metrics::Metrics::default(),
            order_lanes: std::sync::Mutex::new(std::collections::HashSet::new()),
            backups: None,
            feed,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The serial-number RNG.
    pub fn rng(&self) -> &Arc<dyn Rng> {
        &self.rng
    }

    /// Classifies TLS peers; shared with the HTTP layer's connection hook.
    pub fn resolver(&self) -> Arc<Resolver> {
        self.resolver.clone()
    }

    /// Changes whenever the CAs that client certificates may come from change; 0 until
    /// the first change after start.
    pub fn trust_generation(&self) -> u64 {
        self.trust_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Serials of revoked certificates, for the TLS layer to refuse them.
    pub fn revoked_serials(&self) -> Arc<RevokedSerials> {
        self.revoked.clone()
    }

    /// The identity of a caller presenting `peer_der`.
    pub fn identify(&self, peer_der: Option<&[u8]>) -> Identity {
        self.resolver.identify(peer_der)
    }

    /// An environment by its raw name from a URL: 400 when the name is malformed, 404
    /// when certd does not serve it.
    pub fn environment(&self, raw: &str) -> Result<(EnvName, Arc<EnvCa>), AppError> {
        let env = EnvName::parse(raw)?;
        let found = self
            .envs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&env)
            .cloned();
        found
            .map(|ca| (env.clone(), ca))
            .ok_or(AppError::UnknownEnvironment(env))
    }

    /// The PEM chain of an environment: issuing CA first, root last.
    pub fn ca_chain(&self, raw_env: &str) -> Result<Vec<u8>, AppError> {
        Ok(self.environment(raw_env)?.1.chain_pem.clone())
    }

    /// Whether a use case that reads one store key may run on an HTTP worker thread
    /// (the store answers from this process).
    pub fn reads_inline(&self) -> bool {
        self.store.local_reads()
    }

    /// Version and store health for anyone (what a load balancer's health check needs);
    /// environments, issuers and the cluster for a global admin only: they name other
    /// tenants, programs, upstream and webhook URLs, and hosts.
    pub fn status(&self, who: &Identity) -> Status {
        let store = {
            let health = self.store.health();
            StoreStatus {
                ok: health.is_ok(),
                detail: health.err(),
            }
        };
        let full = who.role == crate::authz::Role::Admin;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            store,
            environments: full.then(|| {
                self.envs
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .map(|e| e.to_string())
                    .collect()
            }),
            issuers: full.then(|| self.issuer_statuses()),
            cluster: (full && self.store.shared()).then(|| self.cluster_status()),
        }
    }

    /// The HTTPS server's certificate, key and trust anchors.
    pub fn tls_material(&self) -> Result<TlsMaterial, AppError> {
        let envs = self.envs.read().unwrap_or_else(|p| p.into_inner());
        let production = envs
            .get(&EnvName::production())
            .ok_or(AppError::UnknownEnvironment(EnvName::production()))?;
        let mut client_cas = vec![self.root.cert().to_owned()];
        client_cas.extend(envs.values().map(|e| e.ca.cert().to_owned()));
        Ok(TlsMaterial {
            cert_pem: self.data.read(&self.data.server_cert())?,
            key_pem: self.data.read_secret(&self.data.server_key())?,
            chain: vec![production.ca.cert().to_owned()],
            client_cas,
        })
    }

    /// Makes every change durable; called at shutdown.
    pub fn flush(&self) -> Result<(), AppError> {
        Ok(self.store.flush()?)
    }
}

/// An environment's CA, issuers and CRL, the CRL re-issued from the stored revocations
/// (whose serials are returned, for the handshake's refusal list).
fn load_env(
    data: &DataDir,
    store: &dyn Store,
    config: &Config,
    env: &EnvName,
    settings: EnvConfig,
    clock: &Arc<dyn Clock>,
    rng: &Arc<dyn Rng>,
) -> Result<(EnvCa, Vec<Vec<u8>>), AppError> {
    let ca = CaPair::from_pem(
        &data.read(&data.env_cert(env))?,
        &data.read_ca_key(crate::store::CaKey::Issuing(env))?,
    )?;
    let issuers = crate::issuer::build(
        &settings.issuer.0,
        crate::issuer::LocalParts {
            ca: ca.clone(),
            clock: clock.clone(),
            rng: rng.clone(),
        },
    )
    .map_err(|e| AppError::BadRequest {
        code: "invalid-issuer",
        detail: format!("environment {env}: {e}"),
    })?;
    let record = store.crl(env)?.ok_or_else(|| StoreError::Corrupt {
        tree: env.to_string(),
        detail: "no CRL".into(),
    })?;
    let loaded = EnvCa {
        name: env.clone(),
        ca,
        chain_pem: data.read(&data.env_chain(env))?,
        chain_modified: std::fs::metadata(data.env_chain(env))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as UnixTime)
            .unwrap_or(0),
        settings,
        crl: RwLock::new(Arc::new(CrlView::new(record))),
        crl_rebuild: std::sync::Mutex::new(crl::CrlEntries::default()),
        crl_pending: std::sync::Mutex::new(Vec::new()),
        issuers,
        api_settings: None,
    };
    let serials = crl::load(&loaded, store, config, clock.as_ref())?;
    Ok((loaded, serials))
}

impl App {
    /// Every environment served now (a snapshot: the list can grow at run time).
    fn env_list(&self) -> Vec<Arc<EnvCa>> {
        self.envs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// An environment's CA, or why there is none.
    fn env_ca(&self, raw_env: &str) -> Result<Arc<EnvCa>, AppError> {
        Ok(self.environment(raw_env)?.1)
    }

    /// Decides whether `who` may send `method` to `path` (the path as routed), by the
    /// authorization rules; called for every request before routing. A revoked client
    /// certificate is refused before any rule. A denial is logged with the rule that
    /// decided it (the answer does not name it).
    pub fn authorize_request(
        &self,
        who: &Identity,
        method: &str,
        path: &str,
    ) -> Result<(), AppError> {
        if who
            .serial
            .as_ref()
            .zip(who.environment.as_ref())
            .is_some_and(|(s, env)| self.revoked.contains(env, s))
        {
            tracing::info!(caller = %who, method, path = logged_path(path), "denied: the client certificate is revoked");
            return Err(AppError::Forbidden(
                "the client certificate is revoked".into(),
            ));
        }
        // The handshake checked the validity window once; a keep-alive connection can
        // outlive the certificate.
        if who.not_after.is_some_and(|t| self.now() > t) {
            tracing::info!(caller = %who, method, path = logged_path(path), "denied: the client certificate has expired");
            return Err(AppError::Forbidden(
                "the client certificate has expired".into(),
            ));
        }
        let Some(rule) = self.config.rules.find(method, path) else {
            tracing::info!(caller = %who, method, path = logged_path(path), rule = "(none matched)", "denied");
            return Err(forbidden(who, method, path));
        };
        // A rule about an environment certd does not serve: say so (404), as the handler
        // would; which environments exist is no secret (GET /{env}/certificate/ca).
        let env = match rule.environment() {
            Some(name) => Some((self.environment(name.as_str())?.1, name)),
            None => None,
        };
        let facts = env.as_ref().map(|(ca, name)| EnvFacts {
            name,
            admins: &ca.settings.admins,
            allow_anonymous_csr: ca
                .settings
                .allow_anonymous_csr
                .unwrap_or(*name == EnvName::production()),
        });
        if rule.permits(who, facts.as_ref()) {
            return Ok(());
        }
        tracing::info!(caller = %who, method, path = logged_path(path), rule = %rule, "denied");
        Err(forbidden(who, method, path))
    }

    /// Admits one signing when fewer than `limits.max_pending_signings` are under way,
    /// waiting up to five seconds for a place (so an autosign burst queues briefly rather
    /// than failing), then refuses with [`AppError::Busy`].
    pub(crate) fn signing_slot(&self) -> Result<SigningSlot, AppError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(slot) = self.try_signing_slot() {
                return Ok(slot);
            }
            if std::time::Instant::now() >= deadline {
                return Err(AppError::Busy);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// [`App::signing_slot`] without waiting: `None` when all are taken.
    pub(crate) fn try_signing_slot(&self) -> Option<SigningSlot> {
        take_slot(&self.signings, self.config.limits.max_pending_signings)
    }

    /// Admits one autosign policy run (a program, or an allowlist file) when fewer than
    /// `limits.max_policy_runs` are under way; [`AppError::Busy`] (503) otherwise, at
    /// once, so that slow policies in one environment cannot take every thread.
    pub(crate) fn policy_slot(&self) -> Result<SigningSlot, AppError> {
        take_slot(&self.policy_runs, self.config.limits.max_policy_runs).ok_or(AppError::Busy)
    }

    /// The serving time, from the clock.
    fn now(&self) -> UnixTime {
        self.clock.now()
    }
}

/// One place of `counter`'s `limit`, released when the slot drops; `None` when all are
/// taken.
fn take_slot(counter: &Arc<std::sync::atomic::AtomicUsize>, limit: usize) -> Option<SigningSlot> {
    use std::sync::atomic::Ordering;
    loop {
        let now = counter.load(Ordering::SeqCst);
        if now >= limit {
            return None;
        }
        if counter
            .compare_exchange(now, now + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Some(SigningSlot(counter.clone()));
        }
    }
}

/// `[server] node_id`, or the host name and the port listened on (the process id when
/// the port is picked at start).
fn node_id(config: &Config) -> String {
    if let Some(id) = &config.server.node_id {
        return id.clone();
    }
    let host = crate::config::host_name().unwrap_or_else(|| "localhost".into());
    match config.server.listen.port() {
        0 => format!("{host}/{}", std::process::id()),
        port => format!("{host}:{port}"),
    }
}

/// The fingerprint of a DER encoding under `digest`, as served (`AB:CD:...`).
pub fn fingerprint(der: &[u8], digest: crate::ca::Digest) -> String {
    crate::ca::Fingerprint::of_der(der, digest).to_string()
}

/// A certname from a URL segment: 400 with the broken rule when malformed.
fn certname(raw: &str) -> Result<Certname, AppError> {
    Ok(Certname::parse(raw)?)
}

fn issuer_of(env: &EnvName, ca: &CaPair) -> Result<Issuer, AppError> {
    let info = CertInfo::from_der(&ca.cert().to_der().map_err(CaError::from)?)?;
    Ok(Issuer {
        environment: env.clone(),
        subject_der: ca.cert().subject_name().to_der().map_err(CaError::from)?,
        key_id: info.subject_key_id,
    })
}

fn forbidden(who: &Identity, method: &str, path: &str) -> AppError {
    let caller = match &who.certname {
        Some(c) => format!("{c}"),
        None => "an anonymous caller".to_owned(),
    };
    AppError::Forbidden(format!("{caller} may not {method} {path}"))
}

/// At most the first 256 bytes of a request's path, for a log line: a refusal is logged
/// for anyone who asks, and a path may be as long as the request head allows.
pub fn logged_path(path: &str) -> &str {
    const MAX: usize = 256;
    if path.len() <= MAX {
        return path;
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}
