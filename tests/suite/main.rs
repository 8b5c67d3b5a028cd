//! certd's integration tests, one binary (one link, and the long tests of one file run
//! beside the short ones of another). By what they exercise:
//!
//! - resources of the native face over real TLS: [`native_api`], [`environments`],
//!   [`tenancy`], [`rules`], [`serve`], [`metrics`], [`wire`] (bytes on the wire, linted);
//! - the same app in-process, on the memory store with a fixed clock
//!   (`common::inproc`): every row of the native API's table, a test named after it, a
//!   file per resource ([`rows`]); a whole issuance and the order index ([`in_process`]);
//! - the Puppet face: [`puppet_face`], and with the real Puppet tools [`puppet_clients`];
//! - issuers and orders, with real cfssl and downstream certd: [`issuers`];
//! - what fails: [`crash`] (SIGKILL, SIGTERM), [`disk_full`], [`races`], [`hostile`],
//!   [`limits`]; backups of a running server: [`backup`];
//! - several nodes on one PostgreSQL database: [`cluster`];
//! - the store against its model: [`store_model`]; the command line: [`cli`], [`bench`].

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

mod backup;
mod bench;
mod cli;
mod cluster;
mod crash;
mod disk_full;
mod environments;
mod hostile;
mod in_process;
mod issuers;
mod limits;
mod metrics;
mod native_api;
mod postgres;
mod puppet_clients;
mod puppet_face;
mod races;
mod rows;
mod rules;
mod serve;
mod store_model;
mod tenancy;
mod wire;
