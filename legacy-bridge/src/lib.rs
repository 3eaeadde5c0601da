//! upsilon-legacy-bridge: the wire formats of the machines Upsilon must keep talking
//! to, as pure parsers and formatters, plus the `upsilon-bridge` daemon.
//!
//! - [`nis`]: apcupsd's Network Information Server framing (2-byte big-endian length,
//!   0-length end marker) and its commands and fixed replies (docs/protocols/nis.md §1-2).
//! - [`apcaccess`]: the `apcaccess status` text: rendering it byte for byte like
//!   apcupsd 3.14, and parsing it the way apcupsd's `net` driver does (§2, §3.2).
//!
//! - [`nis_server`]: one NIS server over a view given to it; [`host`]: what one host is
//!   told; [`net_client`]: reading a NIS server like apcupsd's `net` driver.
//! - `daemon` (feature `daemon`, on by default): the `upsilon-bridge` daemon.
//!
//! Framing is separate from meaning: `nis` knows nothing of status keys, `apcaccess`
//! nothing of sockets.

pub mod apcaccess;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod host;
pub mod ms_check;
pub mod ms_master;
pub mod ms_slave;
pub mod net_client;
pub mod netdata;
pub mod nis;
pub mod nis_server;
