//! The database, its trees, opening it, and the due-time index of orders.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sled::transaction::TransactionError;
use sled::{Db, Transactional, Tree};

use super::super::schema::{self, decode, due_key, env_tree};
use super::commit::GroupCommit;
use super::reopen::remove_torn_snapshots;
use super::tx::{engine, Tx, TxResult};
use super::*;

/// The database and its trees, shared by the store and its committing thread.
pub(super) struct Core {
    pub(super) db: Db,
    pub(super) meta: Tree,
    pub(super) environments: Tree,
    pub(super) audit: Tree,
    pub(super) envs: RwLock<HashMap<EnvName, Arc<EnvTrees>>>,
    pub(super) commit: GroupCommit,
    /// Held shared by every write, exclusively by a snapshot: sled reads no consistent
    /// view of several trees, so a snapshot (a backup of a running server) keeps
    /// writers out while it reads. Never take it twice on one thread: a reader waits
    /// behind a waiting snapshot, so the second would wait for the first.
    pub(super) writers: RwLock<()>,
}

/// sled's page cache size.
pub(super) const CACHE_BYTES: u64 = 32 << 20;

pub(super) struct EnvTrees {
    pub(super) requests: Tree,
    pub(super) certificates: Tree,
    pub(super) certificate_der: Tree,
    pub(super) serials: Tree,
    pub(super) revocations: Tree,
    pub(super) meta: Tree,
    pub(super) orders_due: Tree,
}

/// Builds an environment's due-time index of orders from its requests, once (a store
/// written before the index existed); marked built in the environment's meta.
pub(super) fn index_orders(t: &EnvTrees) -> Result<(), StoreError> {
    if t.meta
        .get(schema::KEY_ORDERS_INDEXED)
        .map_err(engine)?
        .is_some()
    {
        return Ok(());
    }
    for item in t.requests.iter() {
        let (k, v) = item.map_err(engine)?;
        // A record that does not decode fails the calls that read it, as before the
        // index; it has no order the worker could work.
        let Ok(rec) = decode::<RequestRecord>("requests", &v) else {
            tracing::warn!(key = %String::from_utf8_lossy(&k), "undecodable request left out of the order index");
            continue;
        };
        if let Some(at) = rec.order_free_at() {
            let name = std::str::from_utf8(&k).map_err(|_| StoreError::Corrupt {
                tree: "requests".into(),
                detail: "key is not a certname".into(),
            })?;
            t.orders_due
                .insert(due_key(at, name), &[])
                .map_err(engine)?;
        }
    }
    t.meta
        .insert(schema::KEY_ORDERS_INDEXED, &[1])
        .map_err(engine)?;
    Ok(())
}

/// `rec` with its DER from the DER tree, unless it carried it inline (schema 1).
pub(super) fn with_der(
    t: &EnvTrees,
    name: &str,
    mut rec: CertRecord,
) -> Result<CertRecord, StoreError> {
    if rec.der.is_empty() {
        let der = t.certificate_der.get(name).map_err(engine)?;
        rec.der = der
            .ok_or_else(|| StoreError::Corrupt {
                tree: schema::CERTIFICATE_DER.into(),
                detail: format!("no DER for {name}"),
            })?
            .to_vec();
    }
    Ok(rec)
}

impl Core {
    /// Opens the database in `dir`, checking (and on first use writing) the schema version.
    pub(super) fn open(dir: &Path) -> Result<Core, StoreError> {
        // sled's page cache defaults to 1 GiB and fills with every record ever read; the
        // records certd reads most (pending requests, recent certificates, CRLs) fit in
        // far less, and resident memory is what operators watch.
        // A database dropped a moment ago in this process (setup opens the store, then
        // the server opens it again) keeps its file lock until sled's background
        // flusher thread notices and exits: wait for that, briefly. Another process
        // holding the data directory still fails, after the wait.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            remove_torn_snapshots(dir);
            match sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_BYTES)
                .open()
            {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < give_up =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(engine)?,
            }
        };
        let meta = db.open_tree(schema::META).map_err(engine)?;
        match meta.get(schema::KEY_SCHEMA).map_err(engine)? {
            Some(v) => {
                let found = v.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0);
                if schema::SCHEMA_COMPATIBLE.contains(&found) {
                    meta.insert(schema::KEY_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                        .map_err(engine)?;
                    db.flush().map_err(engine)?;
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found });
                }
            }
            None => {
                meta.insert(schema::KEY_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(engine)?;
                db.flush().map_err(engine)?;
            }
        }
        Ok(Core {
            environments: db.open_tree(schema::ENVIRONMENTS).map_err(engine)?,
            audit: db.open_tree(schema::AUDIT).map_err(engine)?,
            meta,
            db,
            envs: RwLock::new(HashMap::new()),
            commit: GroupCommit::default(),
            writers: RwLock::new(()),
        })
    }
}

impl Core {
    /// What every write holds (see [`Core::writers`]).
    pub(super) fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.writers.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn env(&self, env: &EnvName) -> Result<Arc<EnvTrees>, StoreError> {
        if let Some(t) = self.envs.read().unwrap_or_else(|p| p.into_inner()).get(env) {
            return Ok(t.clone());
        }
        // Opened (and the index built) under the write lock: no transaction can use the
        // environment's trees before its index is complete.
        let mut cache = self.envs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.get(env) {
            return Ok(t.clone());
        }
        let open = |which: &str| self.db.open_tree(env_tree(env, which)).map_err(engine);
        let trees = Arc::new(EnvTrees {
            requests: open(schema::REQUESTS)?,
            certificates: open(schema::CERTIFICATES)?,
            certificate_der: open(schema::CERTIFICATE_DER)?,
            serials: open(schema::SERIALS)?,
            revocations: open(schema::REVOCATIONS)?,
            meta: open(schema::ENV_META)?,
            orders_due: open(schema::ORDERS_DUE)?,
        });
        index_orders(&trees)?;
        cache.insert(env.clone(), trees.clone());
        Ok(trees)
    }

    /// Runs `f` as one transaction over the environment's trees, the audit log and meta.
    pub(super) fn txn<R>(
        &self,
        env: &EnvName,
        f: impl Fn(&Tx) -> TxResult<R>,
    ) -> Result<R, StoreError> {
        let t = self.env(env)?;
        let _writing = self.writing();
        (
            &t.requests,
            &t.orders_due,
            &t.certificates,
            &t.certificate_der,
            &t.serials,
            &t.revocations,
            &self.audit,
            &self.meta,
        )
            .transaction(
                |(
                    requests,
                    orders_due,
                    certificates,
                    certificate_der,
                    serials,
                    revocations,
                    audit,
                    meta,
                )| {
                    f(&Tx {
                        requests,
                        orders_due,
                        certificates,
                        certificate_der,
                        serials,
                        revocations,
                        audit,
                        meta,
                    })
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => engine(e),
            })
    }

    pub(super) fn scan<T: serde::de::DeserializeOwned>(
        tree: &Tree,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Certname, T)>, StoreError> {
        let iter = match after {
            Some(a) => tree.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => tree.iter(),
        };
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(engine)?;
            let key = std::str::from_utf8(&k)
                .ok()
                .and_then(|s| Certname::parse(s).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    tree: name.into(),
                    detail: "key is not a certname".into(),
                })?;
            out.push((key, decode(name, &v)?));
        }
        Ok(out)
    }
}
