//! A legacy host's record and declaration: what a bridge declares ([`LegacyHostDecl`],
//! checked), the replicated [`LegacyHost`] (a host record like a node's, under an id of
//! its own range) and what the bridge saw of it ([`LegacyState`]).

use serde::{Deserialize, Serialize};

use super::super::NodeId;
use super::super::plan;
use super::super::records::NodeRecord;

/// Legacy hosts get ids from here up, far above any node id.
pub const LEGACY_ID_BASE: NodeId = 1 << 48;
/// At most this many legacy hosts in the cluster.
pub const MAX_LEGACY_HOSTS: usize = 1024;
/// Addresses, labels and feeds per legacy host, at most.
pub const MAX_HOST_LIST: usize = 16;

/// A legacy host as a bridge declares it (`[[host]]` in `bridge.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyHostDecl {
    pub name: String,
    /// The addresses its requests come from.
    pub addresses: Vec<String>,
    pub labels: Vec<String>,
    /// The UPSes that power it, and how many must be on line.
    pub feeds: Vec<String>,
    pub min_supplies: u32,
    /// How the bridge talks to it: `nis` (an apcupsd `net` client polls the bridge) or
    /// `master-slave` (the bridge pushes to an apcupsd 3.10/3.12 slave's NETPORT).
    pub protocol: String,
    /// How long it takes to shut down (declared; the cluster measures it too).
    #[serde(default = "super::super::records::default_shutdown_s")]
    pub shutdown_s: u32,
}

/// The protocols a legacy host may speak.
pub const PROTOCOLS: &[&str] = &["nis", "master-slave"];

impl LegacyHostDecl {
    /// Checks one declaration; the message names the host and what to fix.
    pub fn validate(&self) -> Result<(), String> {
        let at = format!("legacy host {:?}", self.name);
        if self.name.is_empty() || self.name.len() > plan::MAX_NAME {
            return Err(format!(
                "{at}: a name of 1 to {} bytes is needed",
                plan::MAX_NAME
            ));
        }
        if self.name.starts_with("label:") || self.name.chars().any(char::is_whitespace) {
            return Err(format!(
                "{at}: a name may not start with \"label:\" or contain spaces"
            ));
        }
        for (what, list) in [
            ("addresses", &self.addresses),
            ("labels", &self.labels),
            ("feeds", &self.feeds),
        ] {
            if list.len() > MAX_HOST_LIST {
                return Err(format!(
                    "{at}: {} {what}; at most {MAX_HOST_LIST}",
                    list.len()
                ));
            }
            if let Some(bad) = list.iter().find(|s| s.is_empty() || s.len() > 128) {
                return Err(format!("{at}: {what} entry {bad:?} must be 1 to 128 bytes"));
            }
        }
        if self.feeds.is_empty() {
            return Err(format!(
                "{at}: names no feeds: list the UPSes that power it (feeds = [\"ups1\"])"
            ));
        }
        if self.min_supplies as usize > self.feeds.len() {
            return Err(format!(
                "{at}: min_supplies = {} but it has {} feed(s)",
                self.min_supplies,
                self.feeds.len()
            ));
        }
        if !PROTOCOLS.contains(&self.protocol.as_str()) {
            return Err(format!(
                "{at}: protocol {:?} is not supported; use one of: {}",
                self.protocol,
                PROTOCOLS.join(", ")
            ));
        }
        Ok(())
    }
}

/// What the bridge last saw of a legacy host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LegacyState {
    /// It fetches its status (or the bridge has not been silent long enough to say).
    #[default]
    Polling,
    /// It stopped fetching its status outside a shutdown.
    Silent,
    /// It fetched a status carrying the shutdown bits: its apcupsd is shutting down.
    Told,
    /// It stayed silent after being told: it has halted.
    Halted,
}

impl LegacyState {
    pub fn as_str(self) -> &'static str {
        match self {
            LegacyState::Polling => "polling",
            LegacyState::Silent => "silent",
            LegacyState::Told => "told",
            LegacyState::Halted => "halted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            LegacyState::Polling,
            LegacyState::Silent,
            LegacyState::Told,
            LegacyState::Halted,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A legacy host as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyHost {
    /// Its host record: name, labels, feeds, `min_supplies`, as a plan reads hosts;
    /// `addr` is its first address, `last_seen_ms` the last report about it.
    pub host: NodeRecord,
    pub addresses: Vec<String>,
    pub protocol: String,
    /// The bridge that declared it last (its certificate's name).
    pub bridge: String,
    pub state: LegacyState,
    pub state_since_ms: i64,
    /// The bridge has seen it poll (or be told) since it was declared: false for a host
    /// that never connected.
    #[serde(default)]
    pub polled: bool,
    /// The cluster node its bridge runs on (`[bridge] runs_on`), if the bridge says:
    /// that node's halt waits until this host is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<String>,
}

impl LegacyHost {
    pub fn new(
        id: NodeId,
        d: &LegacyHostDecl,
        bridge: &str,
        runs_on: Option<&str>,
        at_ms: i64,
    ) -> Self {
        LegacyHost {
            host: NodeRecord {
                id,
                name: d.name.clone(),
                addr: d.addresses.first().cloned().unwrap_or_default(),
                labels: d.labels.clone(),
                last_seen_ms: at_ms,
                version: format!("legacy ({})", d.protocol),
                feeds: d.feeds.clone(),
                min_supplies: d.min_supplies,
                shutdown_s: d.shutdown_s,
            },
            addresses: d.addresses.clone(),
            protocol: d.protocol.clone(),
            bridge: bridge.to_string(),
            state: LegacyState::Polling,
            state_since_ms: at_ms,
            polled: false,
            runs_on: runs_on.map(str::to_string),
        }
    }

    /// Whether the record already says what `d` declares (a bridge restart changes
    /// nothing and writes no event).
    pub fn matches(&self, d: &LegacyHostDecl, bridge: &str, runs_on: Option<&str>) -> bool {
        self.bridge == bridge
            && self.runs_on.as_deref() == runs_on
            && self.addresses == d.addresses
            && self.host.labels == d.labels
            && self.host.feeds == d.feeds
            && self.host.min_supplies == d.min_supplies
            && self.protocol == d.protocol
    }
}
