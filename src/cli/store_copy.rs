//! `certd store copy`: one installation's store, CA keys and data directory files into
//! an empty one (sled → PostgreSQL to move an installation; either → sled as a backup).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::ca::EnvName;
use crate::config::Config;
use crate::store::{write_file, CaKey, DataDir, Snapshot, Store};

/// What was copied, counted in the target after the copy.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    environments: usize,
    requests: usize,
    orders: usize,
    certificates: usize,
    revocations: usize,
    crls: usize,
    audit_events: usize,
    ca_keys: usize,
}

fn counts(s: &Snapshot, ca_keys: usize) -> Counts {
    let envs = s.envs.values();
    Counts {
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

/// The environments that have a CA: the configured ones and those made through the API.
fn env_names(config: &Config, snap: &Snapshot, data: &DataDir) -> anyhow::Result<Vec<EnvName>> {
    let mut names: BTreeSet<EnvName> = config.environments.keys().cloned().collect();
    for raw in snap.environments.keys() {
        names.insert(EnvName::parse(raw).with_context(|| format!("environment {raw:?}"))?);
    }
    Ok(names.into_iter().filter(|e| data.has_env(e)).collect())
}

/// Copies the data directory's files but the store and the CA keys (those go through
/// the target's vault or files), keeping each file's mode; `ca/root.pem`, the mark of a
/// set-up directory, last.
fn copy_files(from: &Path, to: &Path, skip: &[PathBuf]) -> anyhow::Result<()> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                walk(&path, out)?;
            } else if meta.is_file() {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(from, &mut files).with_context(|| format!("reading {}", from.display()))?;
    let marker = from.join("ca/root.pem");
    files.retain(|f| !skip.iter().any(|s| f.starts_with(s)) && *f != marker);
    files.push(marker);
    for file in files {
        let rel = file.strip_prefix(from).unwrap_or(&file);
        if rel.extension().is_some_and(|e| e == "tmp") {
            continue;
        }
        let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        write_file(&to.join(rel), &bytes, mode)?;
    }
    Ok(())
}

/// Copies the source installation into the target, then checks the target holds
/// exactly what was read.
pub(super) fn run(
    source: (Config, DataDir, std::sync::Arc<dyn Store>),
    target: (Config, DataDir, std::sync::Arc<dyn Store>),
) -> anyhow::Result<()> {
    let (src_config, src_data, src) = source;
    let (_, dst_data, dst) = target;
    if !src_data.is_set_up() {
        bail!(
            "{} is not set up: nothing to copy",
            src_data.root().display()
        );
    }
    if dst_data.is_set_up() {
        bail!(
            "{} is set up already; `certd store copy` only fills an empty installation",
            dst_data.root().display()
        );
    }
    if dst.snapshot()? != Snapshot::default() {
        bail!("the target store is not empty; `certd store copy` only fills an empty one");
    }
    // One consistent read of the source (PostgreSQL: one repeatable-read snapshot).
    let snap = src.snapshot().context("reading the source store")?;
    let envs = env_names(&src_config, &snap, &src_data)?;
    let mut keys = vec![CaKey::Root];
    keys.extend(envs.iter().map(CaKey::Issuing));
    let pems = keys
        .iter()
        .map(|key| src_data.read_ca_key(*key))
        .collect::<Result<Vec<_>, _>>()
        .context("reading the CA keys")?;
    // The store first (refused, nothing written, if the target is not empty), then the
    // keys, then the files with the set-up mark last.
    dst.import(&snap).context("writing the target store")?;
    for (key, pem) in keys.iter().zip(&pems) {
        dst_data
            .write_ca_key(*key, pem)
            .context("writing a CA key")?;
    }
    let mut skip = vec![src_data.store_dir(), src_data.root().join("store.key")];
    skip.push(src_data.root_key());
    skip.extend(envs.iter().map(|e| src_data.env_key(e)));
    copy_files(src_data.root(), dst_data.root(), &skip)?;

    // Verify: the target holds what was read, and its keys are the source's.
    let copied = dst.snapshot().context("reading the target store back")?;
    if copied != snap {
        bail!("the target store differs from the source after the copy");
    }
    for key in &keys {
        if dst_data.read_ca_key(*key)? != src_data.read_ca_key(*key)? {
            bail!("a CA key differs after the copy");
        }
    }
    let c = counts(&copied, keys.len());
    println!(
        "copied {} to {}: {} environments, {} requests ({} orders), {} certificates, {} revocations, {} CRLs, {} audit events, {} CA keys; verified",
        src_data.root().display(),
        dst_data.root().display(),
        c.environments,
        c.requests,
        c.orders,
        c.certificates,
        c.revocations,
        c.crls,
        c.audit_events,
        c.ca_keys
    );
    Ok(())
}
