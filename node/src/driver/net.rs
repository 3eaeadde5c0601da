//! `net`: a UPS read from an apcupsd NIS server (apcupsd's `UPSTYPE net`), so a UPS on a
//! machine that keeps running apcupsd (USB, serial, SNMP, whatever it supports) feeds
//! the cluster. The wire side is `upsilon_legacy_bridge::net_client`; this module owns
//! the `[[ups]]` keys and the cadence.
//!
//! As apcupsd's net driver: a fresh connection per poll, STATFLAG drives the flags,
//! polls every second while on battery (or while the server shows no battery), and a
//! server that does not answer, answers garbage, or has itself lost its UPS (COMMLOST)
//! is a comm failure. A server that is shutting down reads as a UPS signalling low
//! battery (that apcupsd will cut the UPS at its halt). It never sends anything to the
//! UPS: kill power and self tests belong to the apcupsd that drives it.

use std::time::{Duration, SystemTime};

use upsilon_core::config::{ConfigError, UpsSection};
use upsilon_core::reading::{UpsReading, statflag};
use upsilon_legacy_bridge::net_client::{query_status, reading_of, with_default_port};

use super::{DriverError, UpsCommand, UpsDriver};

/// The `[[ups]]` keys of a UPS read over NIS.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The NIS server, `host` or `host:port` (apcupsd's DEVICE; port 3551 if unset).
    pub device: String,
}

/// How long one poll may take, connection included.
const POLL_DEADLINE: Duration = Duration::from_secs(5);
/// apcupsd's fast poll while on battery.
const FAST_POLL: Duration = Duration::from_secs(1);

/// Checks a net section's keys and builds its driver (no connection until the first
/// poll: a server that is down is a comm failure then, not a start-up error).
pub fn open(section: &UpsSection) -> Result<Box<dyn UpsDriver>, ConfigError> {
    let cfg: Config = super::settings(section, &[("device", "device = \"ups-host:3551\"")])?;
    if cfg.device.trim().is_empty() {
        return Err(section.origin.error(
            "device",
            format!(
                "UPS {:?}: the net driver needs the NIS server's address, e.g. device = \"ups-host:3551\"",
                section.name
            ),
        ));
    }
    Ok(Box::new(NetDriver {
        addr: with_default_port(&cfg.device),
        fast: false,
    }))
}

/// The driver: one NIS server.
pub struct NetDriver {
    addr: String,
    /// The last reading was on battery or showed no battery: poll every second.
    fast: bool,
}

#[async_trait::async_trait]
impl UpsDriver for NetDriver {
    fn kind(&self) -> &'static str {
        "net"
    }

    async fn poll(&mut self) -> Result<UpsReading, DriverError> {
        let text = match query_status(&self.addr, POLL_DEADLINE).await {
            Ok(t) => t,
            Err(e) => {
                // apcupsd's net driver retries failed polls every second.
                self.fast = true;
                return Err(DriverError::CommLost(e.to_string()));
            }
        };
        let (reading, flag) = reading_of(&text, SystemTime::now());
        self.fast = flag & (statflag::ONBATT | statflag::FASTPOLL) != 0
            || flag & statflag::BATTPRESENT == 0;
        if flag & statflag::COMMLOST != 0 {
            return Err(DriverError::CommLost(format!(
                "the NIS server at {} has lost its own UPS (STATUS COMMLOST)",
                self.addr
            )));
        }
        Ok(reading)
    }

    async fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError> {
        Err(DriverError::Unsupported(match cmd {
            UpsCommand::KillPower { .. } => {
                "kill power over NIS (the apcupsd that drives the UPS does it at its own shutdown)"
            }
            UpsCommand::SelfTest => "self tests over NIS (run them on the apcupsd that drives it)",
            UpsCommand::Simulate(_) => "simulated changes (it is a real UPS)",
        }))
    }

    async fn wait_for_change(&mut self, max: Duration) -> bool {
        if self.fast && max > FAST_POLL {
            tokio::time::sleep(FAST_POLL).await;
            return true;
        }
        tokio::time::sleep(max).await;
        false
    }

    fn poll_timeout(&self) -> Duration {
        POLL_DEADLINE + Duration::from_secs(1)
    }
}
