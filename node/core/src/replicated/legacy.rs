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

use serde::{Deserialize, Serialize};

use super::NodeId;
use super::plan::{self, Plan};
use super::state::NodeRecord;
use crate::view::UpsStatus;

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
    #[serde(default = "super::state::default_shutdown_s")]
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

/// What a legacy host is served: its supply under its main feed's name, and the
/// shutdown bits once its stage started.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyServed {
    pub ups_name: String,
    pub status: UpsStatus,
    pub shutting_down: bool,
    /// The plan's stage that selects it (1-based number and name), if one does.
    pub stage: Option<(usize, String)>,
}

/// What legacy host `id` is served at `now_ms`, from the replicated state alone (so
/// every node, and a restarted bridge, serves the same).
pub fn served(state: &super::PowerState, id: NodeId, now_ms: i64) -> Option<LegacyServed> {
    let rec = state.legacy.get(&id)?;
    let no_plan = Plan::default();
    let p = state.plan.as_ref().unwrap_or(&no_plan);
    let status = match plan::supply(&rec.host, state, p, now_ms) {
        Some(s) => plan::supply_status(&s, state, now_ms),
        None => UpsStatus::default(),
    };
    // Shutting down while a started stage of the open outage holds it.
    let shutting_down = state
        .outage
        .as_ref()
        .filter(|o| o.ended_ms.is_none())
        .is_some_and(|o| o.stages.iter().any(|r| r.hosts.contains(&id)));
    let hosts = state.hosts();
    let stage = state.plan.as_ref().and_then(|p| {
        (0..p.stages.len())
            .find(|&k| p.stage_hosts(k, &hosts).contains(&id))
            .map(|k| (k + 1, p.stages[k].name.clone()))
    });
    Some(LegacyServed {
        ups_name: rec.host.feeds.first().cloned().unwrap_or_default(),
        status,
        shutting_down,
        stage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::UpsReading;
    use crate::replicated::plan::decide;
    use crate::replicated::state::{Command, PowerState, UpsReport};

    const T0: i64 = 1_700_000_000_000;

    fn decl(name: &str, labels: &[&str]) -> LegacyHostDecl {
        LegacyHostDecl {
            name: name.into(),
            addresses: vec!["127.0.0.1".into()],
            labels: labels.iter().map(|s| s.to_string()).collect(),
            feeds: vec!["ups1".into()],
            min_supplies: 1,
            protocol: "nis".into(),
            shutdown_s: 120,
        }
    }

    fn report(seq: u64, on_battery: bool, at_ms: i64) -> Command {
        let r = UpsReading::basic(on_battery, 80.0, 1200.0, crate::time::from_unix_ms(at_ms));
        Command::UpsReport(Box::new(UpsReport {
            ups: "ups1".into(),
            owner: 1,
            seq,
            at_ms,
            status: UpsStatus {
                driver: "sim".into(),
                reading: Some(r),
                on_battery,
                ..Default::default()
            },
            events: vec![],
        }))
    }

    /// One node owning ups1; plan: stage "old" (label:old), then stage "rest" (oldB).
    fn cluster() -> PowerState {
        let mut s = PowerState::default();
        s.apply(&Command::NodeUp {
            id: 1,
            name: "owner".into(),
            addr: "127.0.0.1:7000".into(),
            labels: vec![],
            version: "test".into(),
            feeds: vec!["ups1".into()],
            min_supplies: 1,
            shutdown_s: 120,
            at_ms: T0,
        });
        let plan: Plan = toml::from_str(
            r#"
            [[stage]]
            name = "old"
            hosts = ["label:old"]
            trigger = { on_battery_s = 0 }
            [[stage]]
            name = "rest"
            hosts = ["oldB"]
            trigger = { on_battery_s = 0 }
            "#,
        )
        .unwrap();
        s.apply(&Command::SetPlan {
            plan,
            at_ms: T0,
            by: "test".into(),
        });
        s.apply(&report(1, false, T0));
        s
    }

    fn declare(s: &mut PowerState, bridge: &str, hosts: Vec<LegacyHostDecl>) -> bool {
        s.apply(&Command::LegacyHostsDeclare {
            bridge: bridge.into(),
            hosts,
            at_ms: T0,
            runs_on: None,
        })
        .applied
    }

    fn seen(s: &mut PowerState, name: &str, state: LegacyState, at_ms: i64) -> bool {
        s.apply(&Command::LegacyHostSeen {
            bridge: "br".into(),
            name: name.into(),
            state,
            at_ms,
        })
        .applied
    }

    /// Runs the coordinator until it proposes nothing more at `now`.
    fn settle(s: &mut PowerState, now: i64) {
        for _ in 0..10 {
            let cmds = decide(s, now);
            if cmds.is_empty() {
                return;
            }
            for c in cmds {
                s.apply(&c);
            }
        }
    }

    fn id(s: &PowerState, name: &str) -> NodeId {
        s.legacy_host(name).unwrap().host.id
    }

    #[test]
    fn declarations_are_checked() {
        assert!(decl("a", &[]).validate().is_ok());
        let mut d = decl("label:x", &[]);
        assert!(d.validate().unwrap_err().contains("label:"));
        d = decl("a", &[]);
        d.feeds.clear();
        assert!(d.validate().unwrap_err().contains("names no feeds"));
        d = decl("a", &[]);
        d.min_supplies = 2;
        assert!(d.validate().unwrap_err().contains("min_supplies = 2"));
        d = decl("a", &[]);
        d.protocol = "snmp".into();
        assert!(
            d.validate()
                .unwrap_err()
                .contains("use one of: nis, master-slave")
        );
    }

    #[test]
    fn a_host_never_seen_polling_is_told_apart_until_its_first_poll() {
        let mut s = cluster();
        assert!(declare(&mut s, "br", vec![decl("oldA", &[])]));
        assert!(
            !s.legacy_host("oldA").unwrap().polled,
            "declared, never seen"
        );
        let seen = |s: &mut PowerState, state| {
            s.apply(&Command::LegacyHostSeen {
                bridge: "br".into(),
                name: "oldA".into(),
                state,
                at_ms: 5_000,
            })
            .applied
        };
        // Silent says nothing about a poll.
        assert!(seen(&mut s, LegacyState::Silent));
        assert!(!s.legacy_host("oldA").unwrap().polled);
        assert!(seen(&mut s, LegacyState::Polling));
        assert!(s.legacy_host("oldA").unwrap().polled);
        // A host still polling: the first poll is recorded once, with an event.
        let mut s = cluster();
        declare(&mut s, "br", vec![decl("oldA", &[])]);
        assert!(seen(&mut s, LegacyState::Polling));
        assert!(s.legacy_host("oldA").unwrap().polled);
        let last = s.events.back().unwrap().message.clone();
        assert_eq!(last, "Legacy host oldA polls bridge br.");
        assert!(!seen(&mut s, LegacyState::Polling), "once");
    }

    #[test]
    fn a_redeclaration_changes_nothing_and_a_dropped_host_is_forgotten() {
        let mut s = cluster();
        assert!(declare(
            &mut s,
            "br",
            vec![decl("oldA", &["old"]), decl("oldB", &[])]
        ));
        let a = id(&s, "oldA");
        assert!(a > LEGACY_ID_BASE);
        // A restarted bridge declares the same: nothing is written.
        assert!(!declare(
            &mut s,
            "br",
            vec![decl("oldA", &["old"]), decl("oldB", &[])]
        ));
        // A name clash with a node is refused, the rest applies.
        assert!(declare(
            &mut s,
            "br",
            vec![decl("oldA", &["old"]), decl("owner", &[])]
        ));
        assert!(s.legacy_host("owner").is_none());
        assert!(
            s.legacy_host("oldB").is_none(),
            "oldB was no longer declared"
        );
        assert_eq!(id(&s, "oldA"), a, "a host keeps its id");
        let last = s.events.back().unwrap().message.clone();
        assert!(last.contains("no longer declares oldB"), "{last}");
        assert!(
            last.contains("a node of the cluster has that name"),
            "{last}"
        );
    }

    #[test]
    fn legacy_hosts_are_told_in_stage_order_and_their_acks_move_the_plan() {
        let mut s = cluster();
        declare(
            &mut s,
            "br",
            vec![decl("oldA", &["old"]), decl("oldB", &[])],
        );
        let (a, b) = (id(&s, "oldA"), id(&s, "oldB"));
        let quiet = served(&s, a, T0).unwrap();
        assert_eq!(quiet.ups_name, "ups1");
        assert!(!quiet.status.on_battery && !quiet.shutting_down);
        assert_eq!(quiet.stage, Some((1, "old".to_string())));

        // Power fails: stage 1 (label:old) starts; only oldA is told.
        let t = T0 + 10_000;
        s.apply(&report(2, true, t));
        settle(&mut s, t);
        let o = s.outage.as_ref().unwrap();
        assert_eq!(o.stages.len(), 1);
        assert_eq!(o.stages[0].hosts, vec![a]);
        assert!(served(&s, a, t).unwrap().shutting_down);
        let sb = served(&s, b, t).unwrap();
        assert!(sb.status.on_battery && !sb.shutting_down);

        // Told, then halted: the next stage starts without waiting for the timeout.
        assert!(seen(&mut s, "oldA", LegacyState::Told, t + 1000));
        assert!(
            !seen(&mut s, "oldA", LegacyState::Told, t + 1500),
            "told once"
        );
        settle(&mut s, t + 2000);
        assert_eq!(s.outage.as_ref().unwrap().stages.len(), 1);
        assert!(seen(&mut s, "oldA", LegacyState::Halted, t + 3000));
        settle(&mut s, t + 4000);
        let o = s.outage.as_ref().unwrap();
        assert_eq!(o.stages.len(), 2);
        assert_eq!(o.stages[1].hosts, vec![b]);
        assert!(served(&s, b, t + 4000).unwrap().shutting_down);
        assert!(s.halted.contains(&a));
        assert_eq!(s.legacy_host("oldA").unwrap().state, LegacyState::Halted);

        // Mains return; oldA polls again after its power cycle: back up.
        s.apply(&report(3, false, t + 60_000));
        settle(&mut s, t + 60_000);
        assert!(!served(&s, b, t + 60_000).unwrap().shutting_down);
        assert!(seen(&mut s, "oldA", LegacyState::Polling, t + 90_000));
        assert!(!s.halted.contains(&a));
    }

    #[test]
    fn told_before_the_stage_starts_is_refused() {
        let mut s = cluster();
        declare(&mut s, "br", vec![decl("oldA", &["old"])]);
        assert!(!seen(&mut s, "oldA", LegacyState::Told, T0));
        assert_eq!(s.legacy_host("oldA").unwrap().state, LegacyState::Polling);
        assert!(seen(&mut s, "oldA", LegacyState::Silent, T0));
        assert!(!seen(&mut s, "nobody", LegacyState::Silent, T0));
    }
}
