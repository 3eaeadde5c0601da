//! Helpers for the workspace integration tests: find the built binaries, make
//! certificates, write configs, and run `upsilond` / `upsilon` as real processes on
//! loopback. Every process is killed when its handle drops.

pub mod apcupsd;
pub mod fakeusb;
pub mod legacy_peer;
pub mod modbus_slave;
pub mod nut;
pub mod proc_stats;
pub mod smartups;

mod bridge;
mod cluster;
mod disk;
mod harness;
mod node;
mod pki;
mod plans;
mod spec;
mod watch;

pub use bridge::*;
pub use cluster::*;
pub use disk::*;
pub use harness::*;
pub use node::*;
pub use pki::*;
pub use plans::*;
pub use spec::*;
pub use watch::*;
