//! upsilon-node: everything `upsilond` is made of, as a library so the CLI's demo and
//! the integration tests can start a node in-process.
//!
//! The pure layer (readings, policy, monitor, events, replicated state and plan, config
//! schema) is `upsilon-core`; certificates, TLS and the gRPC client are
//! `upsilon-client`. This crate adds what does I/O: `driver` → monitor → `executor`
//! (hooks, shutdown command), `cluster` (openraft, sled, network), `staging`, the
//! node's `status` and the gRPC `api`. See ARCHITECTURE.md for the codemap.

pub mod api;
pub mod cluster;
pub mod driver;
pub mod endgame;
pub mod executor;
pub mod fatal;
pub mod halted;
pub mod markers;
pub mod nis;
pub mod node;
pub mod shared;
pub mod staging;
pub mod status;
pub mod ticks;
pub mod trace;
