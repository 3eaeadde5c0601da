//! upsilon-core: the part of Upsilon that decides, without I/O beyond plain files.
//!
//! Wire facts (`reading`), pure decisions (`policy`, `monitor`, `replicated`: the
//! replicated state, its commands and the staged-shutdown plan), apcupsd's events,
//! the config file's schema with located errors (`config`), the plain views the node
//! serves (`view`), the state in words (`wording`) and the date/time helpers (`time`).
//! Nothing here depends on tokio, tonic, openraft, sled or a serial port, so it is
//! tested directly and fuzzed without building the daemon. See ARCHITECTURE.md.

pub mod config;
pub mod events;
pub mod monitor;
pub mod policy;
pub mod ratelimit;
pub mod reading;
pub mod replicated;
pub mod snapshot;
pub mod store_identity;
pub mod testing;
pub mod time;
pub mod ups;
pub mod view;
pub mod wording;
