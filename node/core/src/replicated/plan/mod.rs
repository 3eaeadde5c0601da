//! The staged shutdown plan and the coordinator's pure decision.
//!
//! [`Plan`] is the ordered list of stages (replicated; set with `upsilon plan apply`).
//! [`supply`] computes a host's power from its feeds and `min_supplies` (NUT's
//! MINSUPPLIES). [`decide`] reads the replicated state and the time and returns the
//! commands the leader should propose: start an outage, start the next stage (or every
//! remaining one in an emergency), order a UPS to cut power once no running host it
//! feeds would be left short of `min_supplies`, cancel what has not started when mains return, and power-cycle a
//! UPS to bring halted hosts back. It is pure: a new leader re-runs it and continues,
//! and `PowerState::apply` refuses anything already done, so nothing happens twice.

mod decide;
mod model;
mod supply;

pub use decide::*;
pub use model::*;
pub use supply::*;

#[cfg(test)]
mod tests;
