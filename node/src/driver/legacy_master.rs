//! `legacy-master`: a UPS whose state an unmodified apcupsd 3.10/3.12 master pushes to
//! this node as to one of its slaves (`UPSCLASS netmaster`, `SLAVE this-host`,
//! `NETPORT`). The wire side is `upsilon_legacy_bridge::ms_slave`; this module owns the
//! `[[ups]]` keys and turns the latest packet into a reading. A packet with `ShutDown`
//! set reads as a low-battery signal (that UPS is critical for the hosts it feeds); a
//! master that goes silent (or closes its connection) is comm loss, never by itself a
//! shutdown while on mains; one not heard from yet, or whose first contact carries no
//! reading, leaves the UPS unknown (the monitor waits) until the timeout.
//! Failures are events in apcupsd's words, each with what to change.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use upsilon_core::config::{ConfigError, UpsSection};
use upsilon_core::events::EventKind;
use upsilon_core::reading::UpsReading;
use upsilon_legacy_bridge::ms_slave::{
    MASTER_TIMEOUT, MasterState, Slave, SlaveConfig, SlaveEvent,
};
use upsilon_legacy_bridge::netdata::MAX_USER_MAGIC;

use super::{DriverError, UpsCommand, UpsDriver};

/// The `[[ups]]` keys of a UPS pushed by a legacy master.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen for the master: apcupsd's NISIP:NETPORT (NETPORT has no default).
    pub listen: SocketAddr,
    /// The master's address (apcupsd's MASTER): connections from anywhere else are
    /// refused unread.
    pub master: IpAddr,
    /// This slave's USERMAGIC (at most 19 bytes; empty by default, as apcupsd's).
    #[serde(default)]
    pub user_magic: String,
    /// Seconds without a packet before the master counts as lost (apcupsd: 120).
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_timeout() -> u64 {
    MASTER_TIMEOUT.as_secs()
}

/// Checks the keys; nothing is bound until the first poll.
pub fn open(section: &UpsSection) -> Result<Box<dyn UpsDriver>, ConfigError> {
    let cfg: Config = super::settings(
        section,
        &[
            ("listen", "listen = \"0.0.0.0:6666\""),
            ("master", "master = \"192.0.2.10\""),
            ("user_magic", "user_magic = \"rack1\""),
            ("timeout_s", "timeout_s = 120"),
        ],
    )?;
    if cfg.user_magic.len() > MAX_USER_MAGIC {
        return Err(section.origin.error(
            "user_magic",
            format!(
                "UPS {:?}: user_magic is {} bytes; apcupsd's field holds at most {MAX_USER_MAGIC}",
                section.name,
                cfg.user_magic.len()
            ),
        ));
    }
    if cfg.timeout_s == 0 {
        return Err(section.origin.error(
            "timeout_s",
            format!("UPS {:?}: timeout_s must be at least 1", section.name),
        ));
    }
    Ok(Box::new(LegacyMasterDriver { cfg, slave: None }))
}

pub struct LegacyMasterDriver {
    cfg: Config,
    slave: Option<Arc<Slave>>,
}

impl LegacyMasterDriver {
    fn slave(&mut self) -> &Arc<Slave> {
        let cfg = &self.cfg;
        self.slave.get_or_insert_with(|| {
            Slave::start(SlaveConfig {
                listen: cfg.listen,
                master: cfg.master,
                user_magic: cfg.user_magic.clone(),
                timeout: Duration::from_secs(cfg.timeout_s),
            })
        })
    }
}

#[async_trait::async_trait]
impl UpsDriver for LegacyMasterDriver {
    fn kind(&self) -> &'static str {
        "legacy-master"
    }

    async fn poll(&mut self) -> Result<UpsReading, DriverError> {
        match self.slave().latest() {
            MasterState::Packet(p) => Ok(p.reading(SystemTime::now())),
            // Not yet heard: the monitor keeps what it had (nothing at start: unknown).
            MasterState::Waiting(why) => Err(DriverError::Retrying(why)),
            MasterState::Lost(why) => Err(DriverError::CommLost(why)),
        }
    }

    fn take_events(&mut self) -> Vec<(EventKind, String)> {
        let Some(s) = &self.slave else {
            return Vec::new();
        };
        s.take_events()
            .into_iter()
            .map(|e| match e {
                SlaveEvent::Connected(m) => (EventKind::MasterConnect, m),
                SlaveEvent::Failure(m) => (EventKind::Notice, m),
                SlaveEvent::MasterTimeout(m) => (EventKind::MasterTimeout, m),
            })
            .collect()
    }

    async fn command(&mut self, cmd: UpsCommand) -> Result<String, DriverError> {
        Err(DriverError::Unsupported(match cmd {
            UpsCommand::KillPower { .. } => {
                "kill power through a legacy master (its apcupsd cuts the UPS at its own halt)"
            }
            UpsCommand::SelfTest => "self tests through a legacy master",
            UpsCommand::Simulate(_) => "simulated changes (it is a real UPS)",
        }))
    }

    async fn wait_for_change(&mut self, max: Duration) -> bool {
        // A master pushes every second during a power event: follow it.
        tokio::time::sleep(max.min(Duration::from_secs(1))).await;
        true
    }
}
