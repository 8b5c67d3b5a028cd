//! # The certd manual
//!
//! The design of certd, kept with the code so that `cargo doc --open` shows it and a
//! change to the code changes it in the same commit. The README is the front door; this
//! is the rest.
//!
//! - [`architecture`]: the layers, the composition root, the store and its capabilities,
//!   the background workers, what happens when the disk fills.
//! - [`postgres`]: the PostgreSQL store: schema, constraints, transactions, faults.
//! - [`cluster`]: several nodes on one database: joining, the change sequence each
//!   follows, CRL numbers, what each node shows of the others.
//! - [`api`]: environments (tenants), roles, the authorization rules, and the native
//!   API's resources and status codes.
//! - [`issuers`]: the issuance pipeline: approval, the built-in CA, remote CAs that answer
//!   later, orders and their retries.
//! - [`puppet`]: the Puppet face (`/puppet-ca/v1`), and where it differs from Puppet
//!   Server.
//! - [`robustness`]: crash safety, races, hostile input, limits, secrets, fuzzing, and
//!   the data directory.
//! - [`choices`]: choices made where the contract is silent.
//! - [`performance`]: what bounds each figure of the README's table.

pub mod api;
pub mod architecture;
pub mod choices;
pub mod cluster;
pub mod issuers;
pub mod performance;
pub mod postgres;
pub mod puppet;
pub mod robustness;
