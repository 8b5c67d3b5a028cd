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
//!   environment's CRL, re-issued once per environment per batch read. The refusal
//!   comes first and does not wait on the CRL: while no CRL can be stored (a full
//!   disk, a read-only database) the serial is refused all the same, on the node that
//!   revoked and on the others, and the batch is read again until this node's CRL
//!   lists it
//!   (`cluster::a_revocation_is_refused_in_handshakes_even_when_no_crl_can_be_stored`:
//!   a trigger refusing every CRL write, both nodes refuse the certificate; dropped,
//!   both CRLs list it);
//! - an environment event serves an environment another node created (its chain from
//!   the vault, its CA key from the database) or loads its new settings; the TLS
//!   verify store takes its CA at once. Settings this node cannot serve (an autosign
//!   policy or issuer its configuration lacks) are logged and passed over, so that the
//!   changes after them are still applied; a store or vault failure is tried again
//!   with the next read.
//!
//! A transaction that changes what other nodes hold in memory (a revocation, renewal or
//! clean, an environment, an issue in place of a revoked certificate) also runs
//! `pg_notify('certd_changes', '')`, delivered at its commit. The node's watch connection (the one that holds the store's shared
//! advisory lock, `src/store/pg/peers.rs`) listens, and a notification wakes the feed.
//! Notifications are lost while that connection is down and do not pass through
//! transaction poolers, so the feed also reads the log every 250 ms: a lost one delays a
//! change by one poll, and a node that was away catches up from its last id. Under load
//! the feed reads at most every 25 ms.
//!
//! Measured (3 nodes, 100 tries, a fifth of them with the revoking node's peer's watch
//! connection cut by `pg_terminate_backend` just before): a revocation acknowledged on
//! one node is refused by the next node's TLS handshake after p50 27–40 ms, p99
//! 76–264 ms (five runs); an environment created on one node was served by the other
//! after 27–44 ms.
//!
//! ## Certificates: each node's cache, and the fence
//!
//! Each node keeps a certificate cache while it holds a read lease, and a write that
//! changes a certificate another node may hold is acknowledged only once every node
//! with a live lease has followed it; every other write on that name and every read of
//! it from the database waits for the same (`manual::postgres`, "the certificate cache";
//! `src/store/pg/readers.rs`). Requests and listings of requests are
//! read from the database every time. So after a 201 on one node a `GET` or `HEAD` on
//! another answers what was written: 1,000 autosigned PUTs on one node each followed by
//! a GET on the next, 0 not found; a HEAD right after a revoke on another node is 410.
//! A node killed stops holding anything back with its backend. A node cut off from the
//! database (its backend alive) holds back the others' writes and reads on names changed
//! meanwhile, and listings, until its lease has run out (2 s), or they answer 503 after
//! the statement timeout if its lease was taken alone (30 s).
//!
//! ## CRL numbers
//!
//! A CRL's number is stored before the CRL is served, with a compare-and-set: stored
//! only if the stored number is lower ([`CrlStore::put_crl`]). A node that finds its number taken signs again
//! with the next free one. So two CRLs never carry one number, whichever nodes made
//! them: 30 revocations by 10 admins at once over 3 nodes: no number seen on two
//! different CRLs, and each node's final CRL listing all 30. Re-signings are coalesced:
//! revocations that come while a node signs its CRL wait and are signed together by the
//! next rebuild, and a node's feed re-signs once per batch of others' revocations. The
//! numbers used count the CRLs signed: 27–30 in all for those 30 revocations on the
//! three nodes (45–47 before revocations waiting on one node were signed together). A node that
//! starts alone and finds the stored CRL complete signs it again with its number and
//! dates, as a single node does; one that starts beside others issues the next number
//! (signing the stored one again would put a second ECDSA signature, and maybe another
//! order of entries, under a number another node serves: the test caught that for
//! number 0, the CRL setup made, re-signed by each joining node).
//!
//! ## Work one node does at a time: leases
//!
//! A lease is a row of `certd_leases` (name, holder, until, cursor), taken in one
//! statement when it is free, expired or the taker's own (renewed), by the database's
//! clock, so nodes' clocks do not matter ([`NodeStore::take_lease`]); the cursor moves only
//! while the holder holds it ([`NodeStore::advance_lease`]: fenced).
//!
//! - **Webhooks** (`src/app/webhooks.rs`): each is fed by the holder of `webhook <url>`
//!   (6 s, renewed every 2 s), from the lease's cursor, which moves past an event only
//!   once it was delivered (or given up on). A node killed mid-delivery leaves the cursor
//!   where the next holder resumes: at least once. Each POST carries
//!   `X-Certd-Event-Id`. Measured: the holder SIGKILLed while 40 events were made, the
//!   other node took over after 15 s (with the 15 s lease first tried; 6 s now) and the
//!   receiver had all 40, each with its id header, 0 repeats.
//! - **The CRL re-issue before `nextUpdate`** (`src/app/crl.rs`): done by the holder of
//!   `crl refresh` (three maintenance passes long), which stores that CRL whole; the
//!   other nodes serve the stored CRL once it is newer and lists as many as theirs, its
//!   signature checked against the environment's CA. Measured with a 16 s CRL (a pass
//!   every 2 s): the two nodes served one re-issued CRL, byte for byte; the holder
//!   SIGKILLed, the other took the lease 5.8 s later and re-issued; neither node ever
//!   served an expired CRL.
//! - **Orders** carry a lease in their record (`manual::issuers`), taken and given back
//!   by compare-and-set on the whole record, so a node that lost it cannot write over
//!   the new holder's result, nor store a certificate (the store's `issue` is one such
//!   write). A new CSR for the order does not end the lease: the node calling the
//!   issuer keeps it until its call is over, then gives it back. That lease is 60 s, and it and the orders' due times are
//!   kept by the database's clock as each node estimates it: its own corrected by the
//!   offset its heartbeat measures (within half the beat's round trip; a beat slower
//!   than a second leaves the last offset), so a node whose clock is an hour ahead
//!   asks for the orders due now, not for those due within the hour
//!   (`in_process::a_node_keeps_order_times_by_the_shared_stores_clock`). Measured: a
//!   `command` issuer whose first call hangs, the node making it SIGKILLed; the other
//!   node took the order when the lease ran out and completed it 55 s after the kill,
//!   one `issued` event, the program called twice in all.
//!
//! ## Nodes dying under load
//!
//! `nodes_killed_at_random_under_load_lose_nothing_acknowledged`: three nodes, 8
//! agents round-robin over them (autosigned PUTs; every tenth action an admin revoke),
//! a random node SIGKILLed every 2 s for 20 rounds and started again at once. One run:
//! 4,292 certificates and 427 revocations acknowledged; afterwards every node serves
//! each certificate (200) or says revoked (410) exactly as acknowledged (a revocation
//! whose answer was lost in a kill is either done on every node or on none), no serial
//! twice, the three listings identical, every node's CRL lists every acknowledged
//! revocation, the audit log has no gap, and the webhook received all 9,014 events.
//!
//! ## A node cut off from the database
//!
//! `a_node_cut_off_from_the_database_acknowledges_nothing_and_catches_up` puts each node
//! on a test host of its own (a network namespace and a veth pair, made by the test
//! with `ip netns`), the database on this host's loopback at 10.77.0.1, and drops node
//! 2's packets to it for 8 s (a blackhole route) while 4 agents write through both
//! nodes. While cut off node 2 answers a write 503 (once its statement timeout has
//! passed); node 1 holds the webhook's lease within its 6 s; a revocation made on node
//! 1 meanwhile is refused by node 2's handshake 134–143 ms after the route is back (its
//! watch connection comes back, and the feed catches up from its last id). Afterwards
//! nothing acknowledged is lost (428–540 certificates in two runs), both nodes list the
//! same, the log has no gap, and the webhook got every event. Where the machine does
//! not let the test make namespaces it says so and skips, unless
//! `CERTD_REQUIRE_EXTERNAL=1`.
//!
//! ## Other people's clients
//!
//! `puppet ssl bootstrap` submits to one node and waits; `puppetserver ca sign` through
//! a second node (with the installation's admin identity) signs; the agent gets its
//! certificate, which a third node serves byte for byte, and `puppetserver ca list` there
//! lists it (`tests/suite/puppet_clients.rs`).
//!
//! ## Seeing the cluster
//!
//! Each node beats every second into `certd_nodes` (its id, version, start, the last
//! change it applied, digests of the configuration that must agree, part by part:
//! declared environments, CA settings, rules, admins, issuers, limits), by the
//! database's clock.
//! `/status` shows a global admin `cluster`: this node's id, the change it applied, the nodes seen in
//! the last 10 s with theirs, `config_differs` (each node whose configuration is not
//! this node's, with the parts that differ; logged once per difference: a node started
//! with one more global admin is named with `admins`), the leases (holder, until,
//! cursor) as of the last beat, and `clock_offset_ms`: the database's clock minus this
//! node's, measured at each beat (within half its round trip), logged once when it
//! passes 1 s. `/metrics` has `certd_changes_applied` and `certd_changes_lag` (changes in the
//! log not yet applied here). A node's id is `[server] node_id`, or the host name and
//! port (the process id when the port is picked at start). Leases are held by a
//! process, not by an id: the holder is `id#instance`, the instance random at each start,
//! so a node started again takes its leases over when they run out (6 s for a webhook),
//! and two live processes given one id by mistake never both hold one (tested: with the
//! id as holder, both fed one slow webhook and every event was delivered twice). Such a
//! pair is also seen: each beats under the id's row unless another process beat there
//! within 10 s, then beside it under `id#instance`; every node's `/status` lists the id
//! in `cluster.shared_node_ids` (two records of it, each seen after both started: a
//! restarted node's predecessor stopped beating before it started) and each process
//! logs it once (`cluster::two_processes_under_one_node_id_...`).
//!
//! ## What it costs
//!
//! `certd bench` takes a target with `nodes=PORT:PORT`: each new connection goes to the
//! next node, and any number of targets, each compared with the last. One installation
//! (its CA, its admin, a certificate to probe) is copied three ways on one PostgreSQL
//! (Debian's 15, same two cores): three nodes on one database; a **control** of three
//! independent nodes, each on its own copy of the database (`CREATE DATABASE ...
//! TEMPLATE`) and data directory, so three processes with no coordination at all; and
//! one node. Same invocation, medians of 3 runs each unless said:
//!
//! | work | 3 nodes / 1 node | control / 1 node | target |
//! |---|---|---|---|
//! | ECDSA issuance, 8 keep-alive agents | one worker per node, medians of 9 runs, nothing else on the machine: **0.83, 0.78, 0.82×**, and 0.77, 0.82, 0.79× with `pg_stat_statements` loaded; p99 6.9–8.4 ms (1 node 4.9–5.8 ms). Medians of 3, with the control and a second cluster idle beside them: 0.79–0.98×, median 0.87× (9 invocations); default workers 0.78–0.88× (3) | 0.83–0.95× | ≥ 0.8×, p99 ≤ 10 ms: p99 met; 0.8× in half the invocations |
//! | `GET certificate` | 0.78–0.97× (5); one worker per node **0.87, 0.92, 0.94×** (medians of 9), 0.80–0.92× (4) | 0.69–0.84× | ≥ 0.8×: met with one worker per node |
//! | `HEAD certificate` | 0.65–0.84× (7); one worker per node **0.89, 0.91, 0.93×** (medians of 9), 0.92–1.00× (4) | 0.67–0.92× | ≥ 0.8×: met with one worker per node |
//! | `GET`, all connections on one node of the three | 1.03× | | |
//! | revocation refused by another node's handshake | p50 27–40 ms, p99 76–264 ms | | p99 ≤ 1 s: met |
//!
//! "One worker per node" is `[server] workers = 1` on each of the three (the one node
//! keeps its default, one per core: two). The control is the point: three processes
//! that share nothing reach 0.67–0.95× of one on two cores (which also run the database
//! and the load generator), so the targets measure that first and coordination second.
//! What coordination costs on top, the cluster against the control in the same
//! invocations: issuance 0.90–1.06× with one worker per node (it was 0.88–0.97× before
//! the committer's statements kept their plans, and 0.95–1.07× before submissions
//! started on the HTTP worker, `manual::postgres`, which sped up independent nodes more
//! than the cluster's), `GET` and `HEAD` 0.78–1.26× (the machine's drift: in CPU per
//! answer the two differ by 3%, below). Issuance over 3 nodes was 0.69–0.76× with p99
//! 9.1–11.7 ms before, then 0.74–0.80×.
//!
//! Why three processes answer `GET` and `HEAD` more slowly on two cores, from `perf
//! record -a` over whole runs of 150,000 `HEAD`s (default workers): the servers spent
//! 3,675 samples on one node (1,717 of them in user space), 5,509 over three nodes
//! (3,031) and 5,353 over the control. The same answers cost half as much again once
//! spread over three processes of two workers each, coordinated or not. Each of the six
//! threads serves one or two of the eight connections instead of four, so it likely
//! wakes for each request alone, on caches another process has just used. With one
//! worker per node, three threads share the eight connections, and the ratio is
//! 0.92–1.00×. A node that shares a machine's cores with other nodes should be given
//! its share of them (`[server] workers`).
//!
//! The set-up, each node with the same `[store]` section but its `dbname`, and
//! `key_file` shared:
//!
//! ```sh
//! certd serve --config q1.toml --listen 127.0.0.1:18161 --data-dir d1 &  # sets up
//! curl -k -X PUT --data-binary @probe.csr \
//!   https://127.0.0.1:18161/production/certificate_request/probe-node      # autosigned
//! kill %1
//! for db in q2 q3 clusterdb; do psql -c "CREATE DATABASE $db TEMPLATE q1"; done
//! for d in d2 d3 c1 c2 c3; do cp -a d1 $d; done
//! # serve q1..q3 on 18161..18163 (d1..d3), clusterdb on 18151..18153 (c1..c3), then
//! # (one worker per node: a fourth copy, its nodes with [server] workers = 1, first):
//! A=ca=d1/ca/production/chain.pem,cert=d1/admin/admin.pem,key=d1/admin/admin.key
//! certd bench --target https://127.0.0.1:18151,nodes=18152:18153,$A \
//!   --target https://127.0.0.1:18162,nodes=18163:18161,$A \
//!   --target https://127.0.0.1:18161,$A issue --count 4000      # or probe --probe-name probe-node
//! ```
//!
//! Where it goes:
//!
//! - `GET` and `HEAD` are answered from each node's certificate cache, as on one node:
//!   with all connections on one node of the three it is 1.03×, so following the log
//!   costs nothing measurable; spread over three processes on two cores it costs what
//!   three processes cost (above).
//!   Before the read leases each `GET` went to the database (0.18×). A head read before
//!   each cached answer, shared by the requests waiting at that moment, was tried
//!   first: 0.23×, and issuance fell to 0.47×. Not kept: the writes pay now, and only
//!   those that change a certificate another node may hold, or rest on one still
//!   being followed (a revocation is refused by the other nodes' handshakes after p50
//!   27–40 ms, 23–24 ms before the fence).
//! - Issuance spread over three nodes makes three times as many, smaller, write
//!   transactions (each committer batches what its own agents send), on two cores that
//!   now run three certd processes. With all agents on one node of the three it is
//!   0.85×: following the log and the heartbeats cost little. (From 0.55×: the agent's
//!   `GET` after its `PUT` is a cache hit again.) The batches take turns on the writers'
//!   lock; beside other nodes a committer waits for its recent peak of company
//!   (`committer.rs`, `RECENT`): 0.66–0.69× → 0.69–0.76×. Submissions started on the
//!   HTTP worker (`manual::postgres`): 0.74–0.79×, p99 under 10 ms. The audit append
//!   was planned anew at every batch, under the writers' lock (53 µs, more than it
//!   ran: `manual::postgres`); planned once per connection, same invocations, one
//!   worker per node, the cluster of the previous binary against this one: 0.79–0.95×
//!   (median 0.80×) → 0.79–0.98× (median 0.87×) in 6.
//! - Leases: 1 s leases lapsed about once a second under a saturated GET load (renewals
//!   due every 250 ms came up to 770 ms apart), emptying caches (GET max 190–750 ms);
//!   2 s leases lapse about once in five runs (GET max 7–14 ms): 0.78× → 0.81–0.97×.
//! - Notifications: every commit notifying cost 20% (0.48×); only revocations,
//!   renewals, cleans and environment changes notify now.
//!
//! What one primary carries, from figures measured here (arithmetic, not a measurement
//! of a larger machine). PostgreSQL's CPU per certificate issued, all its processes
//! (`/proc`, ECDSA CA, 8 keep-alive agents, 9,000 certificates after 2,000 to warm the
//! plans, 2–3 invocations each): one node 144–167 µs (two workers; 0.21–0.22 write
//! transactions a certificate), 184–204 µs with one worker (0.28–0.30); three nodes of
//! one worker each 312–368 µs (0.52–0.58: each committer batches only what its own
//! agents send, and three followers read the log). So each core like these carries
//! ~6,000 issuances/s from one node and ~2,900/s from three. Write transactions take
//! turns on the audit log's head row, ~0.4 ms each on a database with cores of its own
//! (the statements, 62 µs a certificate by `pg_stat_statements`, and the WAL flush,
//! 0.09 ms here; on these two shared cores a turn measured 1.3 ms, `manual::postgres`):
//! ~2,500 per second, with ~4.7 certificates in each from one node (~12,000/s) but
//! ~1.8 over three nodes (~4,500/s). So a 4-core primary serving three nodes is bound
//! by that turn-taking near 4,500 issuances/s (its CPU would carry ~11,000/s), some 2.5
//! times what the three nodes sign here. Per certificate it writes 2,125–2,381 WAL
//! bytes in 10.6–11.9 records over three nodes (2,160–2,563 and 10.3–12.3 on one, the
//! checkpoints' page images making most of the spread; ~370 bytes less since the
//! record leaves its fingerprints to the summary, `manual::postgres`): ~10 MB/s at
//! 4,500/s, ~8 MB/s now. Beyond that: larger batches per node (more agents per node),
//! or environments on separate databases (no transaction spans two), or a head row per
//! environment.
//!
//! ## Not yet
//!
//! - Issuance at 0.8× one node in every invocation (3 of 6 with medians of 9 runs),
//!   and its p99 under 10 ms on a slow day: on one where `certd bench sign` read
//!   40,000–57,000 ECDSA signatures/s, 0.68–0.85× (6 invocations, 2 below) with p99
//!   10.2–14.0 ms over three nodes (one node 7.3–9.2 ms, 1,725–2,113/s). Three
//!   processes that share nothing reach 0.83–0.95× on these two cores, and the
//!   writers' turns on the audit log's head cost up to 10% on top. Each turn lasts
//!   through the commit's WAL flush, so the three committers' flushes are one after
//!   another, never grouped. Tried and not kept, each against the binary before in
//!   alternating invocations (medians of 9 runs, one worker per node), where that
//!   binary itself read 0.77–0.84× in 8 invocations (5 at 0.8× or more; one node
//!   2,802–3,414/s between them):
//!   - The turn shortened: the batch's reads before the lock, checked inside it
//!     against the row versions read (`xmin`, one statement more; a changed row failed
//!     the transaction as a serialization failure, run again with the lock first),
//!     so that the lock is held only while the server runs one flush. 0.75–0.85× in 6;
//!     the cluster 2,336–2,596/s against 2,347–2,716/s, one node 2,875–3,114/s
//!     against 2,802–3,414/s: no gain beyond the drift between invocations. On two
//!     saturated cores the turn is not what bounds it.
//!   - A batch of names believed new in one flush, its lookups turned into guards
//!     that fail the transaction (`manual::postgres`), so that the lock is held only
//!     while the server runs that flush: 0.77, 0.77, 0.88× against 0.76, 0.81, 0.85×
//!     (3 alternating pairs, medians of 9 runs).
//!   - The lookups of a batch as one statement instead of one per submission:
//!     0.84, 0.71× (an `unnest` join planned as hash joins over whole tables: 0.76,
//!     0.71×).
//! - On a later slow day, three invocations of cluster, control and one node side by
//!   side (medians of 5 runs each): the cluster 0.75, 0.79, 0.80× one node with p99
//!   13.3–15.5 ms; the control (three nodes each on its own database, sharing
//!   nothing) 0.81, 0.89, 0.81× with p99 12.0–14.4 ms; one node's own p99 8.1–9.6 ms.
//!   Three processes that coordinate not at all miss p99 ≤ 10 ms on these two cores,
//!   so no coordination can meet it here. In the same runs `GET` over three nodes was
//!   1.05× and `HEAD` 1.00× one node.
//! - Re-signings are coalesced per node, not across nodes: each node signs its own CRL
//!   (above).
//! - Order times follow the database's clock as measured at each beat (within half its
//!   round trip), not the database's clock itself: the rest of an offset's error moves
//!   a takeover that much early or late (the results stay fenced).
//!
//! [`SetupOutcome::Joined`]: crate::app::SetupOutcome::Joined
//! [`CrlStore::put_crl`]: crate::store::CrlStore::put_crl
//! [`NodeStore::take_lease`]: crate::store::NodeStore::take_lease
//! [`NodeStore::advance_lease`]: crate::store::NodeStore::advance_lease
