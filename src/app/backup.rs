//! Copying an installation (its store, CA keys and data directory files) into an empty
//! one: `certd store copy`, and `POST /backups`, which writes a backup of the running
//! server into `[store] backup_dir`.

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{App, AppError};
use crate::ca::EnvName;
use crate::config::Config;
use crate::store::{io_error, CaKey, DataDir, Snapshot, Store, StoreError};

/// What was copied, counted in the target after the copy.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CopyCounts {
    /// Environment records.
    pub environments: usize,
    /// Requests (orders included).
    pub requests: usize,
    /// Requests with an order.
    pub orders: usize,
    /// Certificates.
    pub certificates: usize,
    /// Revoked serials.
    pub revocations: usize,
    /// Cached CRLs, the root CA's included.
    pub crls: usize,
    /// Audit events.
    pub audit_events: usize,
    /// CA private keys.
    pub ca_keys: usize,
}

impl std::fmt::Display for CopyCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} environments, {} requests ({} orders), {} certificates, {} revocations, {} CRLs, {} audit events, {} CA keys",
            self.environments,
            self.requests,
            self.orders,
            self.certificates,
            self.revocations,
            self.crls,
            self.audit_events,
            self.ca_keys
        )
    }
}

fn counts(s: &Snapshot, ca_keys: usize) -> CopyCounts {
    let envs = s.envs.values();
    CopyCounts {
        environments: s.environments.len(),
        requests: envs.clone().map(|e| e.requests.len()).sum(),
        orders: envs
            .clone()
            .map(|e| e.requests.values().filter(|r| r.order.is_some()).count())
            .sum(),
        certificates: envs.clone().map(|e| e.certificates.len()).sum(),
        revocations: envs.clone().map(|e| e.revoked.len()).sum(),
        crls: envs.filter(|e| e.crl.is_some()).count() + usize::from(s.root_crl.is_some()),
        audit_events: s.audit.len(),
        ca_keys,
    }
}

/// One side of a copy: the installation's configuration, data directory and store.
pub struct Installation<'a> {
    /// Its configuration (the environments it declares).
    pub config: &'a Config,
    /// Its data directory (CA keys through its vault, if it has one).
    pub data: &'a DataDir,
    /// Its store.
    pub store: &'a dyn Store,
}

/// A copy that could not be made; nothing of the source is changed.
fn refused(detail: String) -> AppError {
    AppError::Conflict {
        code: "copy-refused",
        detail,
    }
}

/// The environments that have a CA: the configured ones and those made through the API.
fn env_names(config: &Config, snap: &Snapshot, data: &DataDir) -> Result<Vec<EnvName>, AppError> {
    let mut names: BTreeSet<EnvName> = config.environments.keys().cloned().collect();
    for raw in snap.environments.keys() {
        names.insert(EnvName::parse(raw).map_err(|e| {
            AppError::Store(StoreError::Corrupt {
                tree: "environments".into(),
                detail: format!("{raw:?}: {e}"),
            })
        })?);
    }
    Ok(names.into_iter().filter(|e| data.has_env(e)).collect())
}

/// Copies `source` into `target` (whose data directory is not set up and whose store is
/// empty), then checks the target holds exactly what was read: the store as one
/// consistent snapshot (PostgreSQL: one repeatable-read transaction; sled: writers wait
/// while it is read), then the CA keys (through the target's vault or files), then the
/// data directory's other files, the set-up mark last (the target made private before
/// them: directories 0700, the store's files 0600, as a start does).
pub fn copy_installation(
    source: &Installation<'_>,
    target: &Installation<'_>,
) -> Result<CopyCounts, AppError> {
    let (src_data, dst_data) = (source.data, target.data);
    if !src_data.is_set_up() {
        return Err(refused(format!(
            "{} is not set up: nothing to copy",
            src_data.root().display()
        )));
    }
    if dst_data.is_set_up() {
        return Err(refused(format!(
            "{} is set up already; a copy only fills an empty installation",
            dst_data.root().display()
        )));
    }
    if target.store.snapshot()? != Snapshot::default() {
        return Err(refused(
            "the target store is not empty; a copy only fills an empty one".into(),
        ));
    }
    let snap = source.store.snapshot()?;
    let envs = env_names(source.config, &snap, src_data)?;
    let mut keys = vec![CaKey::Root];
    keys.extend(envs.iter().map(CaKey::Issuing));
    let pems = keys
        .iter()
        .map(|key| src_data.read_ca_key(*key))
        .collect::<Result<Vec<_>, _>>()?;
    target.store.import(&snap)?;
    for (key, pem) in keys.iter().zip(&pems) {
        dst_data.write_ca_key(*key, pem)?;
    }
    let mut skip = vec![src_data.store_dir(), src_data.root().join("store.key")];
    skip.push(src_data.root_key());
    skip.extend(envs.iter().map(|e| src_data.env_key(e)));
    skip.push(dst_data.root().to_owned());
    // The target may have existed before (made by hand, with others' access); before
    // the set-up mark, so that a copy that fails here can be made again.
    dst_data.make_private()?;
    src_data.copy_files_into(dst_data, &skip)?;

    let copied = target.store.snapshot()?;
    if copied != snap {
        return Err(AppError::Store(StoreError::Engine(
            "the target store differs from the source after the copy".into(),
        )));
    }
    for (key, pem) in keys.iter().zip(&pems) {
        if dst_data.read_ca_key(*key)? != *pem {
            return Err(AppError::Store(StoreError::Engine(
                "a CA key differs after the copy".into(),
            )));
        }
    }
    Ok(counts(&copied, keys.len()))
}

/// Opens an empty store in a new data directory: what a backup is written into.
pub type BackupStoreOpener = dyn Fn(&DataDir) -> Result<Arc<dyn Store>, StoreError> + Send + Sync;

/// Backups through the running server (`[store] backup_dir`).
pub(super) struct Backups {
    /// Where they go.
    pub(super) dir: PathBuf,
    /// How a backup's store is opened (chosen by the composition root: sled).
    pub(super) open: Box<BackupStoreOpener>,
    /// One at a time.
    pub(super) one: std::sync::Mutex<()>,
}

/// A backup written by [`App::backup`].
#[derive(Debug, Clone, Serialize)]
pub struct BackupMade {
    /// The backup's directory: a data directory `certd serve` serves as it is.
    pub path: PathBuf,
    /// What it holds.
    pub counts: CopyCounts,
}

impl App {
    /// Lets [`App::backup`] write backups into `[store] backup_dir`, each a new data
    /// directory whose store `open` opens.
    pub fn with_backups(mut self, open: Box<BackupStoreOpener>) -> App {
        self.backups = self.config.store.backup_dir.clone().map(|dir| Backups {
            dir,
            open,
            one: std::sync::Mutex::new(()),
        });
        self
    }

    /// `POST /backups`: copies this installation, while it serves, into a new directory
    /// of `[store] backup_dir` (written as `NAME.partial`, renamed once complete and
    /// checked, so that a directory without the suffix is a whole backup; partial ones a
    /// crash left are removed by the next backup). One at a time: 409
    /// `backup-in-progress` while one is written.
    pub fn backup(&self) -> Result<BackupMade, AppError> {
        let Some(backups) = &self.backups else {
            return Err(AppError::Conflict {
                code: "backups-not-configured",
                detail: "no [store] backup_dir is configured".into(),
            });
        };
        // One at a time; a second while one runs is refused, not queued (a client that
        // retries would otherwise fill the disk with copies).
        let _one = match backups.one.try_lock() {
            Ok(one) => one,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(AppError::Conflict {
                    code: "backup-in-progress",
                    detail: "a backup is being written; ask again once it is done".into(),
                })
            }
        };
        // Inside the data directory, each backup would copy the ones before it: checked
        // on the names as configured, then (links resolved) once the directory exists.
        let inside = || AppError::Conflict {
            code: "backups-not-configured",
            detail: "[store] backup_dir is inside the data directory".into(),
        };
        let canonical = |p: &Path| std::fs::canonicalize(p).map_err(io_error(p));
        let data_root = canonical(self.data.root())?;
        if backups.dir.starts_with(self.data.root()) || backups.dir.starts_with(&data_root) {
            return Err(inside());
        }
        std::fs::create_dir_all(&backups.dir).map_err(io_error(&backups.dir))?;
        if canonical(&backups.dir)?.starts_with(&data_root) {
            return Err(inside());
        }
        // What a backup cut short (a crash) left: it holds CA keys, and is no backup.
        if let Ok(entries) = std::fs::read_dir(&backups.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("certd-backup-") && name.ends_with(".partial") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let stamp = crate::ca::format_utc(self.clock.now(), "Z").replace([':', '-'], "");
        let mut suffix = [0u8; 4];
        self.rng.fill(&mut suffix);
        let name = format!(
            "certd-backup-{stamp}-{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let done = backups.dir.join(&name);
        let partial = backups.dir.join(format!("{name}.partial"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&partial)
            .map_err(io_error(&partial))?;
        let made = self.backup_into(backups, &partial);
        match made {
            Ok(counts) => {
                std::fs::rename(&partial, &done).map_err(io_error(&done))?;
                tracing::info!(path = %done.display(), %counts, "backup written");
                Ok(BackupMade { path: done, counts })
            }
            Err(e) => {
                tracing::warn!(path = %partial.display(), error = %e, "backup failed");
                let _ = std::fs::remove_dir_all(&partial);
                Err(e)
            }
        }
    }

    fn backup_into(&self, backups: &Backups, dir: &Path) -> Result<CopyCounts, AppError> {
        let data = DataDir::new(dir);
        let store = (backups.open)(&data)?;
        let counts = copy_installation(
            &Installation {
                config: &self.config,
                data: &self.data,
                store: self.store.as_ref(),
            },
            &Installation {
                config: &self.config,
                data: &data,
                store: store.as_ref(),
            },
        )?;
        store.flush()?;
        Ok(counts)
    }
}
