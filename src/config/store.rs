//! `[store]`: where certd keeps its state: the embedded sled store (the default) or a
//! PostgreSQL database.

use std::path::PathBuf;

use serde::Deserialize;

use super::{positive, Duration};

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// sled, in the data directory: one process on one machine.
    #[default]
    Sled,
    /// A PostgreSQL database.
    Postgres,
}

/// How the connection to PostgreSQL is protected (libpq's `sslmode`, the three values
/// that mean something definite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP (or a Unix socket).
    #[default]
    Disable,
    /// TLS, without checking the server's certificate.
    Require,
    /// TLS, the server's certificate checked against `ssl_root_cert` and the host name.
    VerifyFull,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sled` or `postgres`.
    pub backend: StoreBackend,
    /// The database, as a libpq connection string (`host=... port=... dbname=...
    /// user=...`) or a `postgresql://user@host:port/dbname` URL, without a password.
    pub url: String,
    /// A file holding the database password (one line); relative to the configuration
    /// file's directory. `CERTD_PG_PASSWORD` is used when this is empty.
    pub password_file: Option<PathBuf>,
    /// Connections certd holds open (one of them commits batched submissions).
    #[serde(deserialize_with = "positive")]
    pub pool_size: usize,
    /// A statement running longer than this is canceled by the server; a call waits at
    /// most about this long for its answer before it is told the store is unavailable.
    pub statement_timeout: Duration,
    /// Giving up on opening a connection after this long.
    pub connect_timeout: Duration,
    /// `disable`, `require` or `verify-full`.
    pub sslmode: SslMode,
    /// The CA certificate(s) the database server's certificate must chain to, for
    /// `verify-full`; relative to the configuration file's directory.
    pub ssl_root_cert: Option<PathBuf>,
    /// The key-encryption key (32 bytes, mode 0600) that protects CA private keys kept
    /// in the database; relative to the configuration file's directory, or the data
    /// directory's `store.key` when absent. Never stored in the database.
    pub key_file: Option<PathBuf>,
    /// Where `POST /backups` writes backups (each a complete sled data directory);
    /// relative to the configuration file's directory. Absent: no backups through the
    /// server.
    pub backup_dir: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sled,
            url: String::new(),
            password_file: None,
            pool_size: 8,
            statement_timeout: Duration::secs(5),
            connect_timeout: Duration::secs(5),
            sslmode: SslMode::Disable,
            ssl_root_cert: None,
            key_file: None,
            backup_dir: None,
        }
    }
}

impl StoreConfig {
    /// Checks what can be checked without the database; relative paths are made
    /// relative to `dir`, the configuration file's directory.
    pub(super) fn validate(&mut self, dir: &std::path::Path) -> Result<(), String> {
        for p in [
            &mut self.password_file,
            &mut self.ssl_root_cert,
            &mut self.key_file,
            &mut self.backup_dir,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        if self.backend != StoreBackend::Postgres {
            return Ok(());
        }
        if self.url.trim().is_empty() {
            return Err("[store] url: backend = \"postgres\" needs the database's url".into());
        }
        let parsed: postgres::Config = self
            .url
            .parse()
            .map_err(|e| format!("[store] url does not parse: {e}"))?;
        if parsed.get_password().is_some() {
            return Err("[store] url: no password in the url (it would be shown and logged); use password_file or CERTD_PG_PASSWORD".into());
        }
        if self.sslmode == SslMode::VerifyFull && self.ssl_root_cert.is_none() {
            return Err("[store] sslmode = \"verify-full\" needs ssl_root_cert".into());
        }
        Ok(())
    }
}
