//! The cluster: one openraft group replicating [`PowerState`] to every node.
//!
//! - `mod.rs` (here): the type configuration, declared once, and the node type.
//! - the replicated data and its deterministic `apply` live in `upsilon_core::replicated`.
//! - [`store`]: sled-backed log storage and state-machine storage for openraft.
//! - [`network`]: the Raft RPC client over mutual-TLS gRPC.
//! - [`handle`]: what the rest of the node uses: write (forwarding to the leader),
//!   read the state, membership changes.

pub mod duties;
pub mod handle;
pub mod network;
pub mod store;

use std::fmt;

pub use upsilon_core::replicated::state::{Command, CommandResult, PowerState};

/// A cluster member as recorded in Raft membership: its name and API address.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterNode {
    pub name: String,
    /// `host:port` of its gRPC API (which also carries Raft traffic).
    pub addr: String,
    /// The incarnation of its store when it joined (0: joined before incarnations).
    #[serde(default)]
    pub incarnation: u64,
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

pub use upsilon_core::replicated::NodeId;

openraft::declare_raft_types!(
    /// Upsilon's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = ClusterNode,
);

/// The Raft handle type used throughout the node.
pub type Raft = openraft::Raft<TypeConfig, store::StateMachineStore>;
