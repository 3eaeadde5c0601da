//! What the model predicts, line by line: a stage's start and reason, a host's halt
//! and battery left, a UPS's kill order and cut, the timeline in words.

use std::collections::BTreeMap;

use super::super::NodeId;
use super::super::endgame;

/// One step of the model: the default UPS poll and liveness interval. Predictions are
/// good to within a tick (and the hosts' real acknowledgement latencies).
pub const TICK_MS: i64 = 1000;
/// How long a UPS owner cut off from the quorum waits before it finishes alone: six
/// election timeouts at the default 750 ms (the node's `finish_alone`).
pub const ALONE_GRACE_MS: i64 = 4_500;
/// The longest the model looks ahead.
pub const MAX_HORIZON_MS: i64 = 6 * 3_600_000;

/// How a host goes down in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltPath {
    /// Its stage started and it halted.
    Stage,
    /// A UPS owner: after carrying out its kill power.
    AfterKill,
    /// A host a bridge runs on: once the bridge's legacy hosts are down.
    AfterBridge,
    /// Its own local fallback, cut off from the quorum.
    Fallback,
    /// A UPS owner whose own UPS got no order while one that feeds it was ordered cut:
    /// it halts uncut.
    FeedCut,
    /// Already down when the model started.
    Before,
    /// Not before the model's horizon.
    Never,
}

/// One host in the model. Times are milliseconds after the model's start.
#[derive(Debug, Clone, PartialEq)]
pub struct HostLine {
    pub id: NodeId,
    pub name: String,
    /// The stage that selects it, if one does.
    pub stage: Option<usize>,
    /// The shutdown time the plan counts on (the larger of declared and measured).
    pub shutdown_s: u32,
    /// What it does before it halts (a deferred halt): the kill power of the UPSes it
    /// owns, the legacy hosts of the bridge it runs.
    pub duties: Vec<endgame::Duty>,
    pub halting_ms: Option<i64>,
    pub down_ms: Option<i64>,
    pub how: HaltPath,
    /// Seconds of its supply left when it is down (negative: it ran out first); `None`
    /// when its supply has no runtime to go by, or never runs out.
    pub margin_s: Option<f64>,
}

/// One stage in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct StageLine {
    pub index: usize,
    pub name: String,
    /// When it starts (`None`: not before the horizon, or never without a quorum).
    pub start_ms: Option<i64>,
    /// Why it starts (the coordinator's reason), or why it does not.
    pub reason: String,
    pub hosts: Vec<NodeId>,
    /// The hosts the next stage waits for (not those with a deferred halt).
    pub waits_for: Vec<NodeId>,
    /// When the next stage may start: every host waited for acknowledged halting, or
    /// the stage's `ack_timeout_s` passed.
    pub done_ms: Option<i64>,
}

/// A UPS's kill power in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct KillLine {
    pub ordered_ms: i64,
    pub delay_s: u32,
    /// Cut by its owner alone, without a quorum.
    pub alone: bool,
}

impl KillLine {
    pub fn cut_ms(&self) -> i64 {
        self.ordered_ms + i64::from(self.delay_s) * 1000
    }
}

/// One UPS in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsLine {
    pub name: String,
    pub owner: NodeId,
    /// Runtime and charge at the start, and whether it drains in the model.
    pub runtime_s: Option<f64>,
    pub charge: Option<f64>,
    pub on_battery: bool,
    pub kill: Option<KillLine>,
}

impl UpsLine {
    /// Seconds of battery left when the kill power cuts (negative: it ran out first).
    pub fn margin_s(&self) -> Option<f64> {
        let k = self.kill.as_ref()?;
        Some(self.runtime_s? - k.cut_ms() as f64 / 1000.0)
    }
}

/// The predicted end game.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Unix ms of the model's start ("now").
    pub t0_ms: i64,
    /// An outage was already going on (its started stages keep their times, before 0).
    pub outage_going: bool,
    pub upses: Vec<UpsLine>,
    pub stages: Vec<StageLine>,
    pub hosts: BTreeMap<NodeId, HostLine>,
    /// When fewer than a quorum of voters is left up.
    pub quorum_lost_ms: Option<i64>,
    /// Every UPS on battery cut and every host in a stage down before the horizon.
    pub finished: bool,
    pub end_ms: i64,
}

/// Milliseconds as whole seconds in words, e.g. `42 s`.
pub fn seconds(ms: i64) -> String {
    format!("{} s", (ms as f64 / 1000.0).round() as i64)
}

impl Timeline {
    /// The timeline in order of time, one line per event, as `upsilon shutdown
    /// --dry-run` prints it.
    pub fn events(&self) -> Vec<String> {
        let name = |id: &NodeId| {
            self.hosts
                .get(id)
                .map_or(id.to_string(), |h| h.name.clone())
        };
        let mut ev: Vec<(i64, usize, String)> = Vec::new();
        if !self.outage_going {
            ev.push((0, 0, "mains fail on every UPS: an outage begins".into()));
        }
        for st in &self.stages {
            if let Some(t) = st.start_ms.filter(|t| *t >= 0) {
                ev.push((
                    t,
                    1,
                    format!(
                        "stage {} ({}) starts: {}; hosts: {}",
                        st.index + 1,
                        st.name,
                        st.reason,
                        st.hosts.iter().map(name).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        for h in self.hosts.values() {
            let (Some(halting), Some(down)) = (h.halting_ms, h.down_ms) else {
                continue;
            };
            match h.how {
                HaltPath::AfterKill => ev.push((
                    halting,
                    3,
                    format!(
                        "{} halts after the kill power of {}",
                        h.name,
                        endgame::kills(&h.duties).join(", ")
                    ),
                )),
                HaltPath::AfterBridge => ev.push((
                    halting,
                    3,
                    format!(
                        "{} halts: its bridge's hosts {} are down",
                        h.name,
                        endgame::bridged_hosts(&h.duties).join(", ")
                    ),
                )),
                HaltPath::Fallback => ev.push((
                    halting,
                    3,
                    format!("{} falls back to its own shutdown (no quorum)", h.name),
                )),
                HaltPath::FeedCut => ev.push((
                    halting,
                    3,
                    format!(
                        "{} halts without cutting {}: a UPS feeding it is ordered cut first",
                        h.name,
                        endgame::kills(&h.duties).join(", ")
                    ),
                )),
                _ => {}
            }
            ev.push((down, 2, format!("{} has halted", h.name)));
        }
        for u in &self.upses {
            if let Some(k) = &u.kill {
                let by = if k.alone {
                    format!(" by {} alone (no quorum)", name(&u.owner))
                } else {
                    String::new()
                };
                ev.push((
                    k.ordered_ms,
                    2,
                    format!(
                        "UPS {} is told{by} to cut power in {} s (returning with mains)",
                        u.name, k.delay_s
                    ),
                ));
            }
            if let (Some(r), true) = (u.runtime_s, u.on_battery) {
                let empty = (r * 1000.0) as i64;
                if u.kill.as_ref().is_none_or(|k| k.cut_ms() > empty) && empty <= self.end_ms {
                    ev.push((empty, 4, format!("UPS {} runs out of battery", u.name)));
                }
            }
        }
        if let Some(q) = self.quorum_lost_ms {
            ev.push((
                q,
                2,
                "fewer than a quorum of voters is up: nothing more is committed".into(),
            ));
        }
        ev.sort_by_key(|(t, order, _)| (*t, *order));
        let mut out: Vec<String> = ev
            .into_iter()
            .map(|(t, _, what)| format!("+{} s: {what}", t / 1000))
            .collect();
        if !self.finished {
            out.push(format!("(the model stops at +{} s)", self.end_ms / 1000));
        }
        out
    }
}
