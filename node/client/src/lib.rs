//! upsilon-client: how anything reaches an Upsilon node, shared by the daemon, the
//! `upsilon` CLI and the bridge.
//!
//! - [`pki`]: the cluster CA, certificates with one role each (node, operator, viewer,
//!   bridge), checks on the files an operator hands us.
//! - [`tls`]: mutual-TLS accept and connect, refusal explanations, `authorize`.
//! - [`rpc`]: gRPC channels to a node and following a "not the leader" redirect.
//! - [`stop`]: the small stop signal passed down to every task.
//! - [`runtime`]: the tokio runtime each binary's `main` starts.
//! - [`fault`]: test-only partitions between real processes (feature
//!   `fault-injection`; a no-op without it).
//! - [`pb_impl`]: every conversion between our types and the protobuf messages, for
//!   the node's API and every client that reads it.

pub mod fault;
pub mod pb_impl;
pub mod pki;
pub mod rpc;
pub mod runtime;
pub mod stop;
pub mod tls;
