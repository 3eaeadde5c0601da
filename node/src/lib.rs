//! upsilon-node: everything `upsilond` is made of, as a library so the CLI's demo and
//! the integration tests can start a node in-process.
//!
//! Data flow: `driver` → `monitor` (events, shutdown decision via `policy`) →
//! `events` (log and file) and `executor` (hooks, shutdown command) → `api` (gRPC over
//! `tls`). See ARCHITECTURE.md for the codemap.

pub mod api;
pub mod client;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod events;
pub mod executor;
pub mod fatal;
pub mod fault;
pub mod monitor;
pub mod node;
pub mod pb_impl;
pub mod pki;
pub mod policy;
pub mod ratelimit;
pub mod reading;
pub mod replicated;
pub mod shared;
pub mod staging;
pub mod status;
pub mod stop;
pub mod time;
pub mod tls;
pub mod view;
pub mod wording;
