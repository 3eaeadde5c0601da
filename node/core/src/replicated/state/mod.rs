//! The replicated power state and the commands that change it.
//!
//! Every change is a [`Command`] carried in the Raft log; [`PowerState::apply`] is a
//! pure function of the state and the command, and every timestamp travels inside the
//! command, so each node applying the same log reaches the same state. The records it
//! holds are in [`super::records`] (re-exported here).

mod apply;
mod apply_legacy;
mod apply_outage;
mod command;
mod power;

pub use super::records::*;
pub use command::{Command, CommandResult, UpsReport};
pub use power::PowerState;

#[cfg(test)]
mod tests;
