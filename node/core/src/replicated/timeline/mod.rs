//! The end game as one model, without I/O: when each stage starts and why, whom it
//! waits for and how long, when each host is down and with how much battery left, each
//! UPS's kill order, each owner's halt, and what happens once the quorum is gone.
//!
//! It does not re-derive the coordinator's rules: it plays the real coordinator
//! ([`plan::decide`] and [`PowerState::apply`]) forward on a copy of the state, one tick
//! at a time, with the hosts doing what the nodes do (prompt acknowledgements, a halt
//! that takes each host's shutdown time and ends with "halted", a UPS owner halting
//! only after its kill power, a bridge's legacy host acknowledging halting once it fell
//! silent) and, once fewer than a quorum of voters is up, nothing committed any more:
//! each UPS owner finishes alone ([`endgame::alone_delay`]) and the other hosts fall
//! back to their own shutdown after `dead_time_s`. `plan check`, the drill's report and
//! the coordinator therefore cannot disagree about the order of things.
//!
//! The battery model errs on the safe side: every UPS is taken to be on battery from
//! now on (during an outage, those on battery stay so and the others on line), each
//! drains linearly from its reported runtime at the current load (load that drops as
//! hosts halt is not counted), and charge falls in proportion.

mod lines;
mod model;

pub use lines::*;
pub use model::predict;
