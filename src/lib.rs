//! certd: a certificate authority served as plain HTTP resources.
//!
//! Layers (arrows run one way; see [`manual::architecture`], and [`manual`] for the design):
//! `ca` ← `store`, `authz`, `issuer` ← `orders` ← `app` ← `http`, `cli` ← `main`. `config` is read by the
//! composition root (`cli`) and handed down.

pub mod app;
pub mod authz;
pub mod ca;
pub mod cli;
pub mod config;
pub mod http;
pub mod issuer;
pub mod manual;
pub mod orders;
pub mod store;
