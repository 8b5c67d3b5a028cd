//! # Architecture
//!
//! ## Layers
//!
//! The code is layered one way, each module using only the ones below it:
//!
//! ```text
//! ca ← store, authz, issuer ← orders ← app ← http, cli ← main
//! ```
//!
//! `config` is read by the composition root (`cli`) and handed down.
//!
//! - `ca`: X.509 objects: names, CSR checks, profiles, signing, CRLs, the [`Clock`] and
//!   [`Rng`] every time and serial comes from. Nothing else reads the system clock
//!   (`.clippy.toml` refuses `SystemTime::now` elsewhere).
//! - `store`: the [`Store`] trait, its sled ([`SledStore`]) and PostgreSQL
//!   ([`PgStore`](crate::store::PgStore), see [`postgres`](super::postgres)) implementations, and the
//!   in-memory model ([`MemStore`]) it is property-tested against; the data directory's
//!   files ([`DataDir`]).
//! - `authz`: who a client certificate is (the [`Resolver`]) and the rules of
//!   `conf/auth.toml`.
//! - `issuer`, `orders`: the back ends an environment's requests are signed by, and the
//!   state machine of an order that a remote CA answers later.
//! - `app`: [`App`], the CA's operations over the parts it is given; no HTTP in it.
//! - `http`: the resources of both faces over `App`, in one actix application
//!   ([`service`]).
//! - `cli`: the composition root and the admin and benchmark commands.
//!
//! ## The composition root
//!
//! `cli` is the one place that chooses implementations: it opens the store
//! (`cli::open_store`, the only code that names [`SledStore`] or `PgStore`, chosen by
//! `[store] backend`), and hands it, the clock
//! and the RNG to [`App::new`], which sets the data directory up when it is empty and
//! loads every environment. [`service`] builds the routes and middleware for `serve`;
//! tests build the same [`App`] on a [`MemStore`] with a [`FixedClock`] and drive
//! [`service`] in-process (`tests/suite/in_process.rs`). On a TLS connection the caller's
//! identity is what the resolver made of the peer certificate; on a connection that is
//! not TLS (only an in-process test has one) it is the identity an outer middleware put
//! in the request, else anonymous.
//!
//! ## The store
//!
//! [`Store`] is every capability the application needs: `EnvironmentStore`,
//! `RequestStore` (with the due-time index of orders), `CertificateStore`, `CrlStore`,
//! `AuditLog` and `NodeStore` (what nodes sharing one store need: heartbeats, leases, a
//! change hint; `manual::cluster`), plus flush, health and a snapshot for tests. The sled implementation
//! is in parts (`src/store/sled_store/`): `core` (the database, its trees, the order
//! index), `tx` (one environment transaction), `commit` (group commit and the committer
//! thread), `reopen` (after an I/O error). Every change is one transaction (request,
//! certificate, serial index, revocation and audit entry together), then a flush before
//! the answer (see
//! [`choices`](super::choices), "Durability"). The sled layout is in
//! `src/store/schema.rs`. Orders due for a remote issuer are found through a due-time
//! index kept in the same transactions as the requests (`env/E/orders_due`, keyed by the
//! time the order is free to work, then the certname; [`RequestStore::due_orders`]), so one
//! pass of the order worker reads the orders that are due, not every pending request
//! (`tests/suite/in_process.rs` counts: 10 due among 100,015). A store written before the
//! index gets it built the first time each environment is opened (schema 3).
//!
//! When sled meets an I/O error (a full disk) it fails every later call until the
//! database is opened again, and what it holds in memory may include the write that
//! did not reach the disk. The store then closes the database at once (every call
//! answers 503 `store-unavailable`, `/status` says why) and its committer thread opens
//! it again from disk with backoff, so only what was made durable comes back and writes
//! resume by themselves once there is space (`tests/suite/disk_full.rs`). Before every open, a
//! snapshot file sled left half-written (`snap.N.generating`, which sled would read as
//! the newest and then refuse to open) is removed, under sled's own lock.
//!
//! ## Background workers and shutdown
//!
//! [`App::spawn_workers`] starts every long-lived thread: CRL maintenance, the order
//! worker, the issuer readiness prober, one thread per webhook. They watch one stop
//! signal. On SIGTERM or SIGINT `serve` stops accepting connections and finishes the
//! requests in flight (up to `server.shutdown_timeout`), then [`Workers::stop`] signals
//! the workers and joins them (waiting up to 2 s for order calls under way, whose
//! leases let the next start take them up), the store is flushed, and the process exits
//! 0 (`tests/suite/crash.rs`: under issuance load, within 5 s, nothing acknowledged lost).
//!
//! [`Clock`]: crate::ca::Clock
//! [`Rng`]: crate::ca::Rng
//! [`FixedClock`]: crate::ca::FixedClock
//! [`Store`]: crate::store::Store
//! [`RequestStore::due_orders`]: crate::store::RequestStore::due_orders
//! [`SledStore`]: crate::store::SledStore
//! [`MemStore`]: crate::store::MemStore
//! [`DataDir`]: crate::store::DataDir
//! [`Resolver`]: crate::authz::Resolver
//! [`App`]: crate::app::App
//! [`App::new`]: crate::app::App::new
//! [`App::spawn_workers`]: crate::app::App::spawn_workers
//! [`Workers::stop`]: crate::app::Workers::stop
//! [`service`]: crate::http::service
