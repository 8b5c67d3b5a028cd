//! The PostgreSQL store: every capability of [`Store`] with exactly the outcomes of the
//! sled store, each state change one transaction, answered after its commit.
//!
//! Connections live on threads of their own ([`lanes`]); autosigned submissions are
//! batched into one transaction by a committer ([`committer`]), as the sled store's
//! committer batches them into one flush.

mod batch;
mod cache;
mod committer;
mod keys;
mod lanes;
mod migrations;
mod ops;
mod peers;
mod readers;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::{Host, SslMode as PgSslMode};

use super::*;
use crate::config::{SslMode, StoreConfig};
use cache::CertCache;
use committer::Committer;
pub use keys::SealedKeys;
use lanes::{Connector, Lanes};
pub use migrations::{schema_sql, MigrateError, PG_SCHEMA_VERSION};

/// Why the PostgreSQL store could not be opened; each a one-line message that names the
/// server (host, port, database, user) and never the password.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    /// The configuration cannot be used.
    #[error("[store]: {0}")]
    Config(String),
    /// The server could not be reached, or refused the login.
    #[error("cannot connect to PostgreSQL at {target}: {detail}")]
    Connect {
        /// Host, port, database and user.
        target: String,
        /// Why.
        detail: String,
    },
    /// The schema could not be brought to this certd's version.
    #[error("PostgreSQL at {target}: {source}")]
    Migrate {
        /// Host, port, database and user.
        target: String,
        /// Why.
        source: MigrateError,
    },
}

/// A sealed CA key: (nonce, ciphertext and tag).
type Sealed = (Vec<u8>, Vec<u8>);
/// A CA key row: (environment, purpose, nonce, ciphertext and tag).
type KeyRow = (String, String, Vec<u8>, Vec<u8>);

/// The store on PostgreSQL.
pub struct PgStore {
    lanes: Lanes,
    committer: Committer,
    /// Certificates read, so that `GET certificate` needs no round trip.
    cache: Arc<CertCache>,
    /// How long a write may still be ending on the server after its caller heard of a
    /// failure (statement and idle-in-transaction timeouts).
    settle: Duration,
    /// Counts the other processes on the database, follows their changes (the cache's
    /// read lease), and listens for them.
    peers: peers::Peers,
    /// Where writes of certificates other nodes may cache wait for them.
    fence: Arc<readers::Fence>,
    /// How long a write waits there.
    wait: Duration,
    /// Bumped when another node may have changed something.
    changes: Arc<peers::Changes>,
    target: String,
}

/// The parsed connection settings, with the password and timeouts applied.
fn connector(cfg: &StoreConfig) -> Result<Connector, PgOpenError> {
    let mut config: tokio_postgres::Config = cfg
        .url
        .parse()
        .map_err(|e| PgOpenError::Config(format!("url does not parse: {e}")))?;
    let password = match &cfg.password_file {
        // Refused when group or others may read it, as key files are.
        Some(file) => Some(
            String::from_utf8_lossy(&crate::store::read_secret(file).map_err(|e| {
                PgOpenError::Config(format!("password_file {}: {e}", file.display()))
            })?)
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        ),
        None => std::env::var("CERTD_PG_PASSWORD").ok(),
    };
    // Read once; programs certd starts (autosign policies, command issuers, openssl)
    // must not inherit it.
    std::env::remove_var("CERTD_PG_PASSWORD");
    if let Some(p) = password {
        config.password(p);
    }
    let timeout = Duration::from_secs(cfg.statement_timeout.as_secs() as u64);
    // The URL's own options are kept, before certd's, which win where both set one:
    // the durability, the isolation and the writability the store's transactions are
    // written for, and the timeouts.
    let given = config
        .get_options()
        .map(|o| format!("{o} "))
        .unwrap_or_default();
    config
        .connect_timeout(Duration::from_secs(cfg.connect_timeout.as_secs() as u64))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .tcp_user_timeout(timeout)
        .application_name("certd")
        // synchronous_commit pinned on: every answer comes after its commit reached the
        // WAL on disk (and any synchronous standby), whatever the server, the database
        // or the role has for a default.
        .options(format!(
            "{given}-c synchronous_commit=on -c default_transaction_isolation=read\\ committed -c default_transaction_read_only=off -c statement_timeout={}ms -c lock_timeout={}ms -c idle_in_transaction_session_timeout={}ms",
            timeout.as_millis(),
            timeout.as_millis(),
            // A session stuck in a transaction (its node cut off mid-batch, the writers'
            // lock held) is ended before the writers waiting on that lock give up.
            (timeout.as_millis() / 2).max(100)
        ));
    let mut tls = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| PgOpenError::Config(format!("TLS: {e}")))?;
    match cfg.sslmode {
        SslMode::Disable => {
            config.ssl_mode(PgSslMode::Disable);
        }
        SslMode::Require => {
            config.ssl_mode(PgSslMode::Require);
            tls.set_verify(SslVerifyMode::NONE);
        }
        SslMode::VerifyFull => {
            config.ssl_mode(PgSslMode::Require);
            if let Some(ca) = &cfg.ssl_root_cert {
                tls.set_ca_file(ca).map_err(|e| {
                    PgOpenError::Config(format!("ssl_root_cert {}: {e}", ca.display()))
                })?;
            }
            tls.set_verify(SslVerifyMode::PEER);
        }
    }
    let mut tls = MakeTlsConnector::new(tls.build());
    if cfg.sslmode == SslMode::Require {
        tls.set_callback(|c, _| {
            c.set_verify_hostname(false);
            Ok(())
        });
    }
    let target = describe(&config);
    Ok(Connector {
        config,
        tls,
        target,
    })
}

/// `host:port/dbname as user`, for messages.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port} (database {}, user {})",
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)")
    )
}

impl PgStore {
    /// Connects, brings the schema to this certd's version (under an advisory lock, so
    /// that nodes starting together migrate once), and starts the connection threads.
    pub fn open(cfg: &StoreConfig) -> Result<PgStore, PgOpenError> {
        PgStore::open_as(cfg, &reader_name())
    }

    /// [`PgStore::open`] for a server: `reader` names its read lease (`readers.rs`), the
    /// same across its restarts, so that a restarted server takes its lease back at
    /// once. Two live processes must never share one.
    pub fn open_as(cfg: &StoreConfig, reader: &str) -> Result<PgStore, PgOpenError> {
        let connector = connector(cfg)?;
        let target = connector.target.clone();
        let mut conn = connector.connect().map_err(|e| PgOpenError::Connect {
            target: target.clone(),
            detail: connect_detail(&e),
        })?;
        let user = connector.config.get_user().unwrap_or("").to_owned();
        migrations::migrate(&mut conn.client, &user).map_err(|source| PgOpenError::Migrate {
            target: target.clone(),
            source,
        })?;
        drop(conn);
        let wait = Duration::from_secs(cfg.statement_timeout.as_secs() as u64);
        let lanes = Lanes::start(
            connector.clone(),
            cfg.pool_size.saturating_sub(1).max(1),
            wait,
        );
        let cache = Arc::new(CertCache::new(cache::CACHE_BYTES));
        let settle = wait * 3;
        let changes = Arc::new(peers::Changes::default());
        let me = reader.to_owned();
        let fence = Arc::new(readers::Fence::start(connector.clone(), me.clone()));
        let peers = peers::watch(
            connector.clone(),
            cache.clone(),
            changes.clone(),
            readers::Follower::new(me),
        );
        let committer = Committer::start(
            connector,
            committer::Limits { wait, settle },
            cache.clone(),
            fence.clone(),
            peers.others_flag(),
        );
        Ok(PgStore {
            lanes,
            committer,
            cache,
            settle,
            peers,
            fence,
            wait,
            changes,
            target,
        })
    }

    /// Some CA key row, if there is any: (environment, purpose, nonce, sealed key).
    fn any_ca_key(&self) -> Result<Option<KeyRow>, StoreError> {
        self.read(|tx| {
            let row = tx.opt(
                "SELECT env, purpose, nonce, sealed FROM certd_ca_keys ORDER BY env, purpose LIMIT 1",
                &[],
            )?;
            Ok(row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
        })
    }

    /// A CA key row: (nonce, sealed key).
    fn ca_key(&self, env: &str, purpose: &str) -> Result<Option<Sealed>, StoreError> {
        let (env, purpose) = (env.to_owned(), purpose.to_owned());
        self.read(move |tx| {
            let row = tx.opt(
                "SELECT nonce, sealed FROM certd_ca_keys WHERE env = $1 AND purpose = $2",
                &[&env, &purpose],
            )?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    /// Stores a sealed CA key; false (nothing written) when the row exists.
    fn insert_ca_key(
        &self,
        env: &str,
        purpose: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let (env, purpose, nonce, sealed) = (
            env.to_owned(),
            purpose.to_owned(),
            nonce.to_vec(),
            sealed.to_vec(),
        );
        self.write(move |tx| {
            let n = tx.exec(
                "INSERT INTO certd_ca_keys (env, purpose, nonce, sealed) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[&env, &purpose, &nonce, &sealed],
            )?;
            Ok(n == 1)
        })
    }

    /// The server, for messages and `/status` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ops::Tx<'_, postgres::Client>) -> ops::Op<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.lanes.call(move |conn| ops::read(conn, f))
    }

    /// A writing transaction, answered once other nodes' caches have followed what its
    /// outcome rests on (the fence: waited for on the caller's thread, so that no lane
    /// and its connection wait).
    fn write<R: Send + 'static>(
        &self,
        f: impl FnMut(&mut ops::Tx<'_, postgres::Client>) -> ops::Op<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (r, rests_on) = self.lanes.call(move |conn| ops::write_fenced(conn, f))?;
        self.fence.wait(rests_on, self.wait)?;
        Ok(r)
    }

    /// A read of certificates, answered once other nodes' caches have followed every
    /// change it may have seen (so that no node then answers from its cache what this
    /// read saw changed).
    fn read_certs<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ops::Tx<'_, postgres::Client>) -> ops::Op<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (r, rests_on) = self
            .lanes
            .call(move |conn| ops::read(conn, |tx| Ok((f(tx)?, tx.rests_on()))))?;
        self.fence.wait(rests_on, self.wait)?;
        Ok(r)
    }

    /// [`PgStore::write`] of a change to the certificates of `names`: they leave the
    /// cache once the transaction has ended, on the lane, and other nodes that may cache
    /// them have followed the change (the fence), before the caller hears.
    fn write_certs<R: Send + 'static>(
        &self,
        env: &EnvName,
        names: Vec<Certname>,
        f: impl FnMut(&mut ops::Tx<'_, postgres::Client>) -> ops::Op<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (cache, env, settle) = (self.cache.clone(), env.clone(), self.settle);
        let (r, rests_on) = self.lanes.call(move |conn| {
            let r = ops::write_fenced(conn, f);
            match &r {
                // Cut off: it may still commit on the server.
                Err(StoreError::Unavailable(_)) => cache.remove_uncertain(&env, &names, settle),
                // Committed, or rolled back by the server.
                _ => cache.remove(&env, &names),
            }
            r
        })?;
        self.fence.wait(rests_on, self.wait)?;
        Ok(r)
    }
}

/// A store's name among the readers (`readers.rs`) when it is not a node's: the host,
/// the process id and a random part.
fn reader_name() -> String {
    let host = crate::config::host_name().unwrap_or_default();
    let mut nonce = [0u8; 8];
    let random = match openssl::rand::rand_bytes(&mut nonce) {
        Ok(()) => nonce.iter().map(|b| format!("{b:02x}")).collect(),
        // The host and process still tell live processes apart.
        Err(_) => String::from("-"),
    };
    format!("{host} {} {random}", std::process::id())
}

/// A connection failure without the password (the client's messages carry none) and
/// without the library's prefix.
fn connect_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let s = e.to_string();
            let mut detail = s
                .strip_prefix("error connecting to server: ")
                .unwrap_or(&s)
                .to_owned();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                let text = inner.to_string();
                if !detail.contains(&text) {
                    detail = format!("{detail}: {text}");
                }
                source = inner.source();
            }
            detail
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.committer.close();
        self.lanes.close();
    }
}

impl EnvironmentStore for PgStore {
    fn put_environment(
        &self,
        env: &EnvName,
        rec: &EnvRecord,
        at: UnixTime,
    ) -> Result<(), StoreError> {
        let (env, rec) = (env.clone(), rec.clone());
        self.write(move |tx| ops::put_environment(tx, &env, &rec, at))
    }

    fn environments(&self) -> Result<Vec<(EnvName, EnvRecord)>, StoreError> {
        self.read(ops::environments)
    }
}

impl RequestStore for PgStore {
    fn request(&self, env: &EnvName, name: &Certname) -> Result<Option<RequestRecord>, StoreError> {
        let (env, name) = (env.clone(), name.clone());
        self.read(move |tx| ops::request(tx, &env, &name))
    }

    fn submit_request(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
    ) -> Result<SubmitOutcome, StoreError> {
        let (env, name, rec) = (env.clone(), name.clone(), rec.clone());
        self.write(move |tx| ops::submit(tx, &env, &name, &rec, rule))
    }

    fn reject_request(
        &self,
        env: &EnvName,
        name: &Certname,
        reason: &str,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        let (env, name, reason) = (env.clone(), name.clone(), reason.to_owned());
        self.write(move |tx| ops::reject(tx, &env, &name, &reason, at))
    }

    fn update_request(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        new: &RequestRecord,
        event: Option<(EventKind, Option<String>)>,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        let (env, name, expected, new) = (env.clone(), name.clone(), expected.clone(), new.clone());
        self.write(move |tx| ops::update(tx, &env, &name, &expected, &new, &event, at))
    }

    fn cancel_request(
        &self,
        env: &EnvName,
        name: &Certname,
        at: UnixTime,
    ) -> Result<bool, StoreError> {
        let (env, name) = (env.clone(), name.clone());
        self.write(move |tx| ops::cancel(tx, &env, &name, at))
    }

    fn requests(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, RequestRecord)>, StoreError> {
        let (env, after) = (env.clone(), after.map(str::to_owned));
        self.read(move |tx| ops::requests(tx, &env, after.as_deref(), limit))
    }

    fn count_requests(&self, env: &EnvName, up_to: usize) -> Result<usize, StoreError> {
        let env = env.clone();
        self.read(move |tx| ops::count_requests(tx, &env, up_to))
    }

    fn due_orders(
        &self,
        env: &EnvName,
        until_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<DueOrders, StoreError> {
        let env = env.clone();
        let after = after.map(|(at, n)| (at, n.to_owned()));
        self.read(move |tx| {
            let after = after.as_ref().map(|(at, n)| (*at, n.as_str()));
            ops::due_orders(tx, &env, until_ms, after, limit)
        })
    }
}

impl CertificateStore for PgStore {
    fn issue(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        cert: &CertRecord,
    ) -> Result<IssueOutcome, StoreError> {
        let (e, n, expected, cert) = (env.clone(), name.clone(), expected.clone(), cert.clone());
        self.write_certs(env, vec![name.clone()], move |tx| {
            ops::issue(tx, &e, &n, &expected, &cert)
        })
    }

    fn submit_issued(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        cert: &CertRecord,
    ) -> Result<SubmitIssueOutcome, StoreError> {
        self.submit_issued_pending(env, name, rec, rule, cert)
            .wait()
    }

    fn submit_issued_pending(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        cert: &CertRecord,
    ) -> PendingIssue {
        // With its fingerprints, as a read of its row gives it (`ops::with_fingerprints`):
        // the committer caches what it stores.
        self.committer.submit(committer::Submission {
            env: env.clone(),
            name: name.clone(),
            rec: rec.clone(),
            rule,
            cert: ops::with_fingerprints(cert.clone(), None, &cert.der),
        })
    }

    fn renew(
        &self,
        env: &EnvName,
        name: &Certname,
        old_serial: &[u8],
        cert: &CertRecord,
    ) -> Result<RenewOutcome, StoreError> {
        let (e, n, old, cert) = (env.clone(), name.clone(), old_serial.to_vec(), cert.clone());
        self.write_certs(env, vec![name.clone()], move |tx| {
            ops::renew(tx, &e, &n, &old, &cert)
        })
    }

    fn certificate(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Result<Option<CertRecord>, StoreError> {
        if let Some(rec) = self.cache.get(env, name) {
            return Ok(Some(rec));
        }
        let seen = self.cache.generation();
        let (e, n) = (env.clone(), name.clone());
        let found = self.read_certs(move |tx| ops::certificate(tx, &e, &n))?;
        if let Some(rec) = &found {
            self.cache.fill(seen, env, name, rec);
        }
        Ok(found)
    }

    fn certname_by_serial(
        &self,
        env: &EnvName,
        serial: &[u8],
    ) -> Result<Option<Certname>, StoreError> {
        let (env, serial) = (env.clone(), serial.to_vec());
        self.read(move |tx| ops::certname_by_serial(tx, &env, &serial))
    }

    fn revoke(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<RevokeOutcome, StoreError> {
        let (e, n) = (env.clone(), name.clone());
        self.write_certs(env, vec![name.clone()], move |tx| {
            ops::revoke(tx, &e, &n, revocation)
        })
    }

    fn clean(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
    ) -> Result<CleanOutcome, StoreError> {
        let (e, n) = (env.clone(), name.clone());
        self.write_certs(env, vec![name.clone()], move |tx| {
            ops::clean(tx, &e, &n, revocation, false)
        })
    }

    fn clean_certified(
        &self,
        env: &EnvName,
        names: &[Certname],
        revocation: Revocation,
    ) -> Result<Vec<CleanOutcome>, StoreError> {
        let (e, ns) = (env.clone(), names.to_vec());
        self.write_certs(env, names.to_vec(), move |tx| {
            // A name given twice is cleaned once: the second time finds nothing.
            ns.iter()
                .map(|name| ops::clean(tx, &e, name, revocation, true))
                .collect()
        })
    }

    fn certificates(
        &self,
        env: &EnvName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, CertSummary)>, StoreError> {
        let (env, after) = (env.clone(), after.map(str::to_owned));
        self.read_certs(move |tx| ops::certificates(tx, &env, after.as_deref(), limit))
    }

    fn revoked_serials(&self, env: &EnvName) -> Result<Vec<RevokedSerial>, StoreError> {
        let env = env.clone();
        self.read(move |tx| ops::revoked_serials(tx, &env))
    }

    fn revoked_serials_of(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Result<Vec<RevokedSerial>, StoreError> {
        let (env, name) = (env.clone(), name.clone());
        self.read(move |tx| ops::revoked_serials_of(tx, &env, &name))
    }
}

impl CrlStore for PgStore {
    fn crl(&self, env: &EnvName) -> Result<Option<CrlRecord>, StoreError> {
        let env = env.clone();
        self.read(move |tx| ops::crl(tx, &env))
    }

    fn put_crl(&self, env: &EnvName, crl: &CrlRecord) -> Result<bool, StoreError> {
        let (env, crl) = (env.clone(), crl.clone());
        self.write(move |tx| ops::put_crl(tx, &env, &crl))
    }

    fn root_crl(&self) -> Result<Option<CrlRecord>, StoreError> {
        self.read(ops::root_crl)
    }

    fn put_root_crl(&self, crl: &CrlRecord) -> Result<(), StoreError> {
        let crl = crl.clone();
        self.write(move |tx| ops::put_root_crl(tx, &crl))
    }
}

impl AuditLog for PgStore {
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        // The change feed, webhooks and the events resource: none shows a change to a
        // certificate before other nodes' caches have followed it.
        self.read_certs(move |tx| ops::audit(tx, None, after, limit))
    }

    fn audit_of(
        &self,
        env: &EnvName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let env = env.to_string();
        self.read_certs(move |tx| ops::audit(tx, Some(&env), after, limit))
    }

    fn last_event_id(&self) -> Result<u64, StoreError> {
        self.read(ops::last_event_id)
    }
}

impl NodeStore for PgStore {
    fn shared(&self) -> bool {
        true
    }

    fn others_connected(&self) -> bool {
        self.peers.others()
    }

    fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        self.changes.wait(seen, timeout)
    }

    fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        cursor: u64,
    ) -> Result<Option<Lease>, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        // One statement, atomic on its own: no writers' lock (a lease is no audited change).
        self.read(move |tx| ops::take_lease(tx, &name, &holder, ttl_ms, cursor))
    }

    fn advance_lease(&self, name: &str, holder: &str, cursor: u64) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.read(move |tx| ops::advance_lease(tx, &name, &holder, cursor))
    }

    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.read(ops::leases)
    }

    fn heartbeat(&self, node: &NodeRecord, recent_ms: i64) -> Result<Vec<NodeRecord>, StoreError> {
        let node = node.clone();
        // Each statement on its own (no writers' lock): a heartbeat is no audited change.
        self.read(move |tx| ops::heartbeat(tx, &node, recent_ms))
    }
}

impl Store for PgStore {
    fn flush(&self) -> Result<(), StoreError> {
        // Every answer came after its commit (synchronous_commit pinned on: `connector`).
        Ok(())
    }

    fn health(&self) -> Result<(), String> {
        if !self.lanes.up.load(Ordering::Relaxed) || !self.committer.up() {
            // Try now: the answer says whether it is back.
            return self
                .lanes
                .call(|conn| {
                    conn.client
                        .simple_query("SELECT 1")
                        .map_err(lanes::store_error)
                })
                .map(|_| ())
                .map_err(|_| "the database cannot be reached".to_owned());
        }
        Ok(())
    }

    fn local_reads(&self) -> bool {
        false
    }

    fn certificate_now(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Option<Result<Option<CertRecord>, StoreError>> {
        self.cache.get(env, name).map(|rec| Ok(Some(rec)))
    }

    fn request_and_has_certificate(
        &self,
        env: &EnvName,
        name: &Certname,
    ) -> Result<(Option<RequestRecord>, bool), StoreError> {
        let (env, name) = (env.clone(), name.clone());
        self.read_certs(move |tx| ops::request_and_has_certificate(tx, &env, &name))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.read(|tx| {
            let rows = tx.query("SELECT pg_database_size(current_database())", &[])?;
            Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64)
        })
    }

    fn import(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let snapshot = snapshot.clone();
        // Writes many rows: no caller-side limit (the statement timeout bounds each).
        let r = self
            .lanes
            .call_unbounded(move |conn| ops::write(conn, |tx| ops::import(tx, &snapshot)));
        let uncertain = matches!(r, Err(StoreError::Unavailable(_)));
        self.cache.clear(uncertain.then_some(self.settle));
        r
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.lanes.call_unbounded(|conn| {
            // A closure, not the function: it must take the transaction's lifetime.
            #[allow(clippy::redundant_closure)]
            ops::read_snapshot(conn, |tx| ops::snapshot(tx))
        })
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.target)
    }
}
