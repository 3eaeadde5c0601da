//! Legacy hosts: machines that run an unmodified apcupsd `net` client and take part in
//! the staged shutdown through an `upsilon-bridge`.
//!
//! A bridge declares its hosts ([`LegacyHostDecl`]); the cluster keeps one
//! [`LegacyHost`] record per name, owned by the bridge that declared it last, with a
//! host record like a node's (labels, feeds, `min_supplies`) under an id of its own
//! range, so a plan selects legacy hosts by name or label exactly like nodes and waits
//! for their acknowledgements the same way. The bridge reports what it sees of each
//! host ([`LegacyState`]): polling, silent, told (it fetched a status carrying the
//! shutdown bits: the "shutting down" ack) and halted (silent for the bridge's
//! `halt_silence_s` after being told: the "halting" ack). [`served`] is what the bridge
//! serves the host: its own supply, with the shutdown bits once its stage started.

mod host;
mod served;

pub use host::*;
pub use served::{LegacyServed, served};
