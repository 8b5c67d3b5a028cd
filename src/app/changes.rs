//! The change feed: what other nodes sharing the store did, applied here, and this
//! node's heartbeat.
//!
//! Every change is in the audit log, whose ids are one total order, committed in order
//! (`store`). Each node follows it from the id it read when it started, woken by the
//! store's hint ([`NodeStore::wait_for_change`]: PostgreSQL's LISTEN/NOTIFY) and
//! reading it every [`POLL`] anyway, so a lost notification (a connection that was down, a pooler
//! that does not pass them) delays a change by one poll at most. Of each event it applies
//! what this process keeps in memory:
//!
//! - a revocation, renewal or clean: the name's revoked serials join the handshake's
//!   refusal set and the environment's CRL (one re-issue per environment per batch of
//!   events, with a number no node used);
//! - an environment: one another node created is served (its chain from the vault),
//!   one whose settings changed is loaded with the new ones.
//!
//! Certificates and requests need nothing here: requests are read from the store at
//! every request, and the store keeps its certificate cache in step with the others'
//! writes itself (read leases and a fence, `manual::postgres`). Applying this node's
//! own events again changes nothing (serials are sets).
//!
//! [`NodeStore::wait_for_change`]: crate::store::NodeStore::wait_for_change

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use super::{App, AppError};
use crate::ca::{Certname, EnvName};
use crate::store::{AuditEvent, EventKind, Lease, NodeRecord};

/// How often the audit log is read when no notification came.
pub(super) const POLL: Duration = Duration::from_millis(250);

/// The least time between two reads of the audit log, so that a busy cluster's
/// notifications (one per commit) are taken in batches.
const GAP: Duration = Duration::from_millis(25);

/// How often this node beats.
const BEAT: Duration = Duration::from_secs(1);

/// A node counts as seen when it beat within this long.
const RECENT_MS: i64 = 10_000;

/// How far this node's clock may be from the database's before it says so: order leases
/// and due times are by each node's clock (`LEASE_MS`, 60 s), so nodes whose clocks
/// differ by more take over each other's orders that much early or late.
const CLOCK_OFFSET_WARN_MS: i64 = 1_000;

/// Events read at a time.
const PAGE: usize = 1000;

/// Where this node is in the change sequence, and whom it has seen.
pub(super) struct Feed {
    /// The last audit id whose change is applied here.
    applied: AtomicU64,
    /// This node's id.
    pub(super) node_id: String,
    /// This process among any sharing that id (random at each start).
    instance: String,
    /// The ids two live processes were seen beating under, as last logged.
    shared_warned: std::sync::Mutex<Vec<String>>,
    /// When it started (Unix seconds).
    started_at: crate::ca::UnixTime,
    /// The digest of the configuration the nodes must agree on, and its parts'.
    config_digest: String,
    config_parts: BTreeMap<String, String>,
    /// The differences last logged, by node.
    warned: std::sync::Mutex<BTreeMap<String, Vec<String>>>,
    /// The nodes seen at the last heartbeat (this one included), and the leases then.
    nodes: RwLock<(Vec<NodeRecord>, Vec<Lease>)>,
    /// The store's clock minus this node's at the last heartbeat, and whether a large
    /// one was logged.
    clock_offset_ms: std::sync::atomic::AtomicI64,
    offset_warned: std::sync::atomic::AtomicBool,
}

impl Feed {
    pub(super) fn new(
        applied: u64,
        node_id: String,
        started_at: crate::ca::UnixTime,
        config: &crate::config::Config,
    ) -> Feed {
        let config_parts = config_parts(config);
        let config_digest = digest(&format!("{config_parts:?}"));
        let mut bytes = [0u8; 8];
        // Without randomness the process id and the start time tell processes apart.
        let instance = match openssl::rand::rand_bytes(&mut bytes) {
            Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            Err(_) => format!("{:x}{:x}", std::process::id(), started_at),
        };
        Feed {
            applied: AtomicU64::new(applied),
            node_id,
            instance,
            shared_warned: std::sync::Mutex::default(),
            started_at,
            config_digest,
            config_parts,
            warned: std::sync::Mutex::default(),
            nodes: RwLock::new((Vec::new(), Vec::new())),
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            offset_warned: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// `/status`'s `cluster`: this node and those seen.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// This node's id.
    pub node_id: String,
    /// The last change (audit id) applied here.
    pub applied: u64,
    /// The digest of the configuration the nodes must agree on (environments declared in
    /// the file, CA settings, authorization rules, admins).
    pub config_digest: String,
    /// Nodes that beat within the last ten seconds, with the change each applied.
    pub nodes: Vec<NodeRecord>,
    /// The nodes seen whose configuration differs from this node's, and in which parts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_differs: Vec<ConfigDiffers>,
    /// The leases (each webhook's feed, the CRL refresh): who holds each, until when,
    /// and its cursor, as of the last heartbeat.
    pub leases: Vec<Lease>,
    /// Ids that two live processes beat under (a node id shared by mistake: each node
    /// needs its own `[server] node_id`); logged once each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_node_ids: Vec<String>,
    /// The database's clock minus this node's, in ms, at the last heartbeat (within
    /// half its round trip): order due times and leases are kept by this node's clock
    /// corrected by it. An offset over a second is logged (the node's clock wants NTP).
    pub clock_offset_ms: i64,
}

/// A node whose configuration differs from this node's.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigDiffers {
    /// Its id.
    pub node: String,
    /// The parts that differ (`environments`, `ca`, `rules`, `admins`, `issuers`).
    pub parts: Vec<String>,
}

impl App {
    /// Now, in ms, for order due times and leases: by the store's clock where the store
    /// is shared (this node's, corrected by the offset its last heartbeat measured, off
    /// by at most half that beat's round trip), since every node compares them; by this
    /// node's otherwise (the offset stays 0).
    pub(super) fn order_now_ms(&self) -> i64 {
        self.clock.now_ms() + self.feed.clock_offset_ms.load(Ordering::Relaxed)
    }
}

/// The store's clock minus this node's, from a reading `store_ms` taken between this
/// node's `before_ms` and `after_ms` (off by at most half the difference).
fn clock_offset(before_ms: i64, store_ms: i64, after_ms: i64) -> i64 {
    store_ms - (before_ms + (after_ms - before_ms) / 2)
}

/// The configuration every node must share, part by part, each as a digest of its debug
/// form (secrets enter only the digest).
fn config_parts(config: &crate::config::Config) -> BTreeMap<String, String> {
    [
        ("environments", format!("{:?}", config.environments)),
        ("ca", format!("{:?}", config.ca)),
        ("rules", format!("{:?}", config.rules)),
        (
            "admins",
            format!("{:?} {:?}", config.admins, config.admin_environments),
        ),
        ("issuers", format!("{:?}", config.issuers)),
        // The bounds that hold across the cluster, not each node's own tuning.
        (
            "limits",
            format!(
                "{} {} {} {}",
                config.limits.max_requests,
                config.limits.max_environments,
                config.limits.max_body_bytes,
                config.limits.max_csr_bytes
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), digest(&v)))
    .collect()
}

fn digest(text: &str) -> String {
    openssl::sha::sha256(text.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Feed {
    /// The parts of `node`'s configuration that differ from this node's.
    /// What holds this process's leases: the node's id and the instance, so that two
    /// processes sharing an id by mistake never both hold one.
    pub(super) fn holder(&self) -> String {
        format!("{}#{}", self.node_id, self.instance)
    }

    fn differs(&self, node: &NodeRecord) -> Option<ConfigDiffers> {
        if node.config_digest == self.config_digest {
            return None;
        }
        let mut parts: Vec<String> = self
            .config_parts
            .iter()
            .filter(|(k, v)| node.config_parts.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        if parts.is_empty() {
            parts.push("(unknown: that node does not say)".into());
        }
        Some(ConfigDiffers {
            node: node.id.clone(),
            parts,
        })
    }
}

impl App {
    /// The last change (audit id) applied here.
    pub fn applied_change(&self) -> u64 {
        self.feed.applied.load(Ordering::SeqCst)
    }

    /// This node and the nodes seen at the last heartbeat.
    pub fn cluster_status(&self) -> ClusterStatus {
        let (nodes, leases) = self
            .feed
            .nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let config_differs = nodes.iter().filter_map(|n| self.feed.differs(n)).collect();
        let shared_node_ids = shared_ids(&nodes);
        ClusterStatus {
            node_id: self.feed.node_id.clone(),
            applied: self.applied_change(),
            config_digest: self.feed.config_digest.clone(),
            nodes,
            config_differs,
            leases,
            shared_node_ids,
            clock_offset_ms: self.feed.clock_offset_ms.load(Ordering::Relaxed),
        }
    }

    /// Applies every change logged since the last one applied; returns how many events
    /// were read.
    pub fn follow_changes(&self) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let after = self.applied_change();
            let events = self.store.audit(after, PAGE)?;
            let Some(last) = events.last().map(|e| e.id) else {
                return Ok(total);
            };
            self.apply(&events)?;
            self.feed.applied.fetch_max(last, Ordering::SeqCst);
            total += events.len();
            if events.len() < PAGE {
                return Ok(total);
            }
        }
    }

    fn apply(&self, events: &[AuditEvent]) -> Result<(), AppError> {
        let mut envs = BTreeSet::new();
        let mut revoked: BTreeMap<EnvName, BTreeSet<Certname>> = BTreeMap::new();
        for e in events {
            let Ok(env) = EnvName::parse(&e.env) else {
                continue;
            };
            match e.kind {
                EventKind::Environment => {
                    envs.insert(env);
                }
                EventKind::Revoked | EventKind::Renewed | EventKind::Cleaned => {
                    if let Ok(name) = Certname::parse(&e.certname) {
                        revoked.entry(env).or_default().insert(name);
                    }
                }
                _ => {}
            }
        }
        for env in envs {
            self.follow_environment(&env)?;
        }
        for (env, names) in revoked {
            let Ok((_, ca)) = self.environment(env.as_str()) else {
                continue;
            };
            let mut new = Vec::new();
            for name in &names {
                let stored = self.store.revoked_serials_of(&env, name)?;
                // Refused at once, before anything waits on the CRL (`lists` waits for
                // a rebuild under way); re-signed when this node's CRL lacks them.
                self.revoked
                    .extend(&env, stored.iter().map(|r| r.serial.clone()));
                new.extend(stored.into_iter().filter(|r| !ca.lists(&r.serial)));
            }
            if !new.is_empty() {
                self.rebuild_crl(&ca, Some(&new))?;
            }
        }
        Ok(())
    }

    /// Serves `env` as the store now has it, if another node created it or changed its
    /// settings through the API (environments declared in this node's file are this
    /// node's business).
    fn follow_environment(&self, env: &EnvName) -> Result<(), AppError> {
        if self.config.environments.contains_key(env) {
            return Ok(());
        }
        let Some((_, rec)) = self
            .store
            .environments()?
            .into_iter()
            .find(|(n, _)| n == env)
        else {
            return Ok(());
        };
        let Some(json) = rec.settings else {
            return Ok(());
        };
        let served = self
            .envs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(env)
            .and_then(|e| e.api_settings.as_ref())
            .and_then(|a| serde_json::to_string(a).ok());
        if served.as_deref() == Some(json.as_str()) {
            return Ok(());
        }
        self.data.share(std::slice::from_ref(env))?;
        let installed = serde_json::from_str::<crate::config::ApiEnvSettings>(&json)
            .map_err(|e| AppError::BadRequest {
                code: "invalid-settings",
                detail: format!("environment {env} in the store: {e}"),
            })
            .and_then(|api| self.install_environment(env, api));
        match installed {
            Ok(()) => {
                tracing::info!(env = %env, "serving an environment another node created or changed");
                Ok(())
            }
            // The store or the vault: try again with the next read of the log.
            Err(e @ (AppError::Store(_) | AppError::Files(_))) => Err(e),
            // Settings this node cannot serve (another configuration): said, and passed
            // over, so that the changes after it are still applied.
            Err(e) => {
                tracing::warn!(env = %env, error = %e, "an environment another node created or changed is not served here");
                Ok(())
            }
        }
    }

    /// Records this node's heartbeat and keeps the nodes seen.
    fn beat(&self) -> Result<(), AppError> {
        let me = NodeRecord {
            id: self.feed.node_id.clone(),
            instance: self.feed.instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: self.feed.started_at,
            seen_ms: 0,
            applied: self.applied_change(),
            config_digest: self.feed.config_digest.clone(),
            config_parts: self.feed.config_parts.clone(),
        };
        let before = self.clock.now_ms();
        let nodes = self.store.heartbeat(&me, RECENT_MS)?;
        let after = self.clock.now_ms();
        // A beat slower than a second would place the store's clock too loosely: the
        // last offset stands.
        let seen = nodes
            .iter()
            .find(|n| n.id == me.id && n.instance == me.instance);
        if let Some(seen) = seen.filter(|_| after - before <= 1_000) {
            let offset = clock_offset(before, seen.seen_ms, after);
            self.feed.clock_offset_ms.store(offset, Ordering::Relaxed);
            let large = offset.abs() > CLOCK_OFFSET_WARN_MS;
            if large != self.feed.offset_warned.swap(large, Ordering::Relaxed) && large {
                tracing::warn!(offset_ms = offset, "this node's clock differs from the database's by more than a second (order leases and due times are corrected by it)");
            }
        }
        let mut warned = self.feed.warned.lock().unwrap_or_else(|p| p.into_inner());
        for d in nodes.iter().filter_map(|n| self.feed.differs(n)) {
            if warned.get(&d.node) != Some(&d.parts) {
                tracing::warn!(node = %d.node, differs = %d.parts.join(", "), "this node's configuration differs from that node's: the nodes must share one configuration");
                warned.insert(d.node, d.parts);
            }
        }
        drop(warned);
        let shared = shared_ids(&nodes);
        let mut logged = self
            .feed
            .shared_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for id in shared.iter().filter(|id| !logged.contains(id)) {
            tracing::error!(node = %id, "two live certd processes beat under this node id: give each node its own [server] node_id (their leases stay apart, their heartbeats do not)");
        }
        *logged = shared;
        drop(logged);
        let leases = self.store.leases()?;
        *self.feed.nodes.write().unwrap_or_else(|p| p.into_inner()) = (nodes, leases);
        Ok(())
    }

    /// The feed's thread: follows the changes and beats until `stop`.
    pub(super) fn spawn_feed(
        self: &Arc<Self>,
        stop: Arc<super::workers::Stop>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let app = Arc::clone(self);
        std::thread::Builder::new()
            .name("certd-changes".into())
            .spawn(move || {
                let mut seen = 0;
                let mut last_beat: Option<std::time::Instant> = None;
                let mut failing = false;
                while !stop.stopped() {
                    match app.follow_changes() {
                        Ok(_) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "following other nodes' changes failed; trying again");
                        }
                        Err(_) => {}
                    }
                    if last_beat.is_none_or(|t| t.elapsed() >= BEAT) {
                        last_beat = Some(std::time::Instant::now());
                        if let Err(e) = app.beat() {
                            tracing::debug!(error = %e, "heartbeat failed");
                        }
                    }
                    let read_at = std::time::Instant::now();
                    seen = app.store.wait_for_change(seen, POLL);
                    // Under load every commit notifies: read at most every GAP.
                    let waited = read_at.elapsed();
                    if waited < GAP {
                        stop.sleep(GAP - waited);
                    }
                }
            })
    }
}

/// The ids two live processes beat under: two records of one id, each seen after the
/// other started (a restarted node's predecessor stopped beating before it started;
/// five seconds allowed for the clocks: `started_at` is the node's, `seen_ms` the
/// store's).
fn shared_ids(nodes: &[NodeRecord]) -> Vec<String> {
    let mut shared: Vec<String> = Vec::new();
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            let started_ms = a.started_at.max(b.started_at) * 1000;
            if a.id == b.id
                && a.instance != b.instance
                && a.seen_ms.min(b.seen_ms) > started_ms + 5_000
                && !shared.contains(&a.id)
            {
                shared.push(a.id.clone());
            }
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::{clock_offset, shared_ids};
    use crate::store::NodeRecord;

    fn node(id: &str, instance: &str, started_at: i64, seen_ms: i64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            instance: instance.into(),
            version: String::new(),
            started_at,
            seen_ms,
            applied: 0,
            config_digest: String::new(),
            config_parts: Default::default(),
        }
    }

    #[test]
    fn an_id_is_shared_when_two_processes_beat_under_it_after_both_started() {
        // Two live processes: each beat after the later one started.
        let live = [node("a", "1", 100, 110_000), node("a", "2", 104, 109_500)];
        assert_eq!(shared_ids(&live), vec!["a".to_owned()]);
        // A restart: the predecessor's last beat came before its successor started.
        let restart = [node("a", "1", 100, 103_000), node("a", "2", 104, 109_500)];
        assert!(shared_ids(&restart).is_empty());
        // Other ids, and one process's own record, are not shared.
        let apart = [node("a", "1", 100, 110_000), node("b", "2", 104, 109_500)];
        assert!(shared_ids(&apart).is_empty());
        assert!(shared_ids(&[node("a", "1", 100, 110_000)]).is_empty());
    }

    #[test]
    fn the_clock_offset_is_taken_against_the_middle_of_the_round_trip() {
        // The store read 1,000,050 while this node's clock went from 1,000,000 to
        // 1,000,100: the clocks agree.
        assert_eq!(clock_offset(1_000_000, 1_000_050, 1_000_100), 0);
        // The store is 2 s ahead, then 3 s behind.
        assert_eq!(clock_offset(1_000_000, 1_002_010, 1_000_020), 2_000);
        assert_eq!(clock_offset(1_000_000, 997_010, 1_000_020), -3_000);
    }
}
