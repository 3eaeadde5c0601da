//! The replicated data and the pure decisions made on it, without I/O: what every node
//! holds ([`state`]: `PowerState`, the `Command`s that change it and their
//! deterministic `apply`) and the staged shutdown plan ([`plan`]: schema, a host's
//! supply, the coordinator's `decide`, the local fallback) and the
//! end of an outage ([`endgame`]: observed down, shutdown times, kill-power delays) and
//! `plan check` ([`check`]: the plan against the batteries and the cluster) and the fire
//! drill's report ([`drill`]), both from one model of the end game ([`timeline`]:
//! the coordinator played forward). The
//! cluster (openraft, sled, network) carries these; nothing here knows it exists.

pub mod check;
pub mod drill;
pub mod endgame;
pub mod legacy;
pub mod plan;
pub mod records;
pub mod state;
pub mod timeline;

pub use state::{Command, CommandResult, PowerState};

/// A node's numeric Raft id.
pub type NodeId = u64;
