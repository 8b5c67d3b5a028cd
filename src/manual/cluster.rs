//! # Several nodes on one database
//!
//! N certd processes with the same `certd.toml` and the same `[store] key_file`, on one
//! PostgreSQL database, answer as one server: every node takes every request, reads and
//! writes, and no node's answer contradicts another's. What follows is how, what has
//! been measured (`tests/suite/cluster.rs`, three real processes on a private
//! PostgreSQL), and what is not built yet.
//!
//! ## Joining
//!
//! The CA keys are in the database, sealed under the key file
//! (`store::pg::keys`). Beside them the vault holds, sealed the same way, what a node
//! needs that is not in the tables: the root and every environment's chain, and the TLS
//! server identity ([`Shared`](crate::store::Shared)). Every node serves that one
//! identity: the load balancer passes TLS through (certd reads client certificates),
//! so the name agents reach it by must be in it (`[server] dns_alt_names`, at the first
//! node's setup). A node whose data directory is empty and whose vault holds a root
//! certificate writes these files from it and is set up ([`SetupOutcome::Joined`]);
//! `ca/root.pem`, the mark of a set-up directory, last. It
//! gets no admin identity: the installation's is the first node's. At every start a
//! node also shares what the vault lacks (an installation made before nodes could join
//! shares its files the first time it starts with this version), and an environment
//! created on one node is shared when it is made. Two first nodes started at the same
//! moment on an empty database: one sets up, the other fails (its root key cannot be
//! stored) and joins when started again.
//!
//! ## One order of changes
//!
//! Every write transaction locks the audit log's head row first and logs an event for
//! every change it makes, so audit ids are one total order in commit order, with no gaps
//! (`manual::postgres`). That log is the change sequence. Each node follows it
//! (`src/app/changes.rs`) from the id it read at start: it reads the events after the
//! last it applied, and applies what it keeps in memory:
//!
//! - a revocation, renewal or clean adds the name's revoked serials (one query on an
//!   index of serials by name) to the TLS handshake's refusal set and to the
//!   environment's CRL, re-issued once per environment per batch read;
//! - an environment event serves an environment another node created (its chain from
//!   the vault, its CA key from the database) or loads its new settings; the TLS
//!   verify store takes its CA at once.
//!
//! Every write's transaction also runs `pg_notify('certd_changes', id)`, delivered at
//! its commit. The node's watch connection (the one that holds the store's shared
//! advisory lock, `src/store/pg/peers.rs`) listens, and a notification wakes the feed.
//! Notifications are lost while that connection is down and do not pass through
//! transaction poolers, so the feed also reads the log every 250 ms: a lost one delays a
//! change by one poll, and a node that was away catches up from its last id. Under load
//! the feed reads at most every 25 ms (each commit notifies).
//!
//! Measured (3 nodes, 100 tries, a fifth of them with the revoking node's peer's watch
//! connection cut by `pg_terminate_backend` just before): a revocation acknowledged on
//! one node is refused by the next node's TLS handshake after p50 23 ms, p99 265 ms
//! (the cut tries are the slow ones: one poll); an environment created on one node was
//! served by the other after 27–44 ms.
//!
//! ## What is read from the database every time
//!
//! Certificates, requests and listings are not kept per node while other nodes use the
//! database: each node's certificate cache is off (it counts the store's holders every
//! 500 ms; a node that finds others when it opens waits two counts before it serves, so
//! no older node still caches what the new one changes). So after a 201 on one node a
//! `GET` or `HEAD` on another answers from the committed row: 1,000 autosigned PUTs on
//! one node each followed by a GET on the next, 0 not found; a HEAD right after a
//! revoke on another node is 410.
//!
//! ## CRL numbers
//!
//! A CRL's number is stored before the CRL is served, with a compare-and-set: stored
//! only if the stored number is lower ([`CrlStore::put_crl`]). A node that finds its number taken signs again
//! with the next free one. So two CRLs never carry one number, whichever nodes made
//! them: 30 revocations spread over 3 nodes at once: 19–29 distinct CRLs seen, no number
//! seen on two different ones, and each node's final CRL listing all 30. A node that
//! starts alone and finds the stored CRL complete signs it again with its number and
//! dates, as a single node does; one that starts beside others issues the next number
//! (signing the stored one again would put a second ECDSA signature, and maybe another
//! order of entries, under a number another node serves: the test caught that for
//! number 0, the CRL setup made, re-signed by each joining node).
//!
//! ## Seeing the cluster
//!
//! Each node beats every second into `certd_nodes` (its id, version, start, the last
//! change it applied, a digest of the configuration that must agree: declared
//! environments, CA settings, rules, admins, issuers), by the database's clock.
//! `/status` shows `cluster`: this node's id, the change it applied, the nodes seen in
//! the last 10 s with theirs, and `config_differs` (the nodes whose digest is not this
//! node's; each is also logged). `/metrics` has `certd_changes_applied` and
//! `certd_changes_lag` (changes in the log not yet applied here). A node's id is
//! `[server] node_id`, or the host name and port.
//!
//! ## Not yet
//!
//! - Each order worked by one node at a time: orders already carry a lease in their
//!   record, taken and released by compare-and-set, so two nodes cannot both write an
//!   order's result; not yet tested with nodes killed while holding one.
//! - Webhooks: every node delivers every event (repeats, no `X-Certd-Event-Id` yet);
//!   one node at a time under a lease in the database, with a cursor, is to come.
//! - The CRL re-issue before `nextUpdate` is made by every node (each with its own
//!   number), not by one lease holder.
//! - The configuration check says which node differs, not in what.
//! - The crash and partition tests (SIGKILL every 2 s, network namespaces), the Puppet
//!   clients across nodes, and `certd bench` over several targets.
//!
//! [`SetupOutcome::Joined`]: crate::app::SetupOutcome::Joined
//! [`CrlStore::put_crl`]: crate::store::CrlStore::put_crl
