//! [`Plan`]: the staged shutdown plan's schema (stages, triggers, limits), its checks
//! against the known hosts, and how it reads in words. Data and validation only.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::super::NodeId;
use super::super::records::NodeRecord;

/// What starts a stage; any one of the set conditions on any of its hosts is enough.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The host's supply has been on battery this many seconds.
    pub on_battery_s: Option<u64>,
    /// The host's supply runtime is below this many seconds.
    pub runtime_below_s: Option<u64>,
    /// The host's supply charge is below this percentage.
    pub charge_below: Option<f64>,
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// Node names, or `label:NAME` for every node with that label.
    pub hosts: Vec<String>,
    pub trigger: Trigger,
    /// How long to wait for every host's "halting" before the next stage may start.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_s: u64,
    /// The command the hosts run instead of their own `shutdown_command`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How long this stage's hosts take to shut down, instead of what each declared.
    #[serde(default)]
    pub shutdown_s: Option<u32>,
}

fn default_ack_timeout() -> u64 {
    120
}

/// The largest plan accepted, as TOML text.
pub const MAX_PLAN_BYTES: usize = 256 * 1024;
/// At most this many stages.
pub const MAX_STAGES: usize = 64;
/// Stage names (and node names in selectors) at most this many bytes.
pub const MAX_NAME: usize = 64;
/// Host selectors per stage.
pub const MAX_SELECTORS: usize = 256;
/// A stage command's arguments and their total size.
pub const MAX_COMMAND_ARGS: usize = 64;
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// What [`Plan::review`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanReview {
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(rename = "stage")]
    pub stages: Vec<Stage>,
    /// A supply runtime under this many seconds is an emergency (every remaining stage
    /// starts at once).
    #[serde(default = "default_floor")]
    pub runtime_floor_s: u64,
    /// A feed on battery whose UPS is silent this long counts as exhausted.
    #[serde(default = "default_dead_time")]
    pub dead_time_s: u64,
    /// Seconds a UPS waits at least after the kill-power order before cutting its
    /// outlets (longer when a host it powers may still be shutting down).
    #[serde(default = "default_kill_delay")]
    pub kill_power_delay_s: u32,
    /// A host that acknowledged halting and is not heard from for this long is down.
    #[serde(default = "default_silence")]
    pub silence_s: u64,
}

impl Default for Plan {
    /// No stages, default limits (what supplies are judged by when no plan is set).
    fn default() -> Self {
        Plan {
            stages: vec![],
            runtime_floor_s: default_floor(),
            dead_time_s: default_dead_time(),
            kill_power_delay_s: default_kill_delay(),
            silence_s: default_silence(),
        }
    }
}

fn default_floor() -> u64 {
    120
}
fn default_dead_time() -> u64 {
    15
}
fn default_kill_delay() -> u32 {
    20
}
fn default_silence() -> u64 {
    10
}

impl Plan {
    /// Checks a plan; the message names the stage and what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.stages.is_empty() {
            return Err("the plan has no [[stage]]".into());
        }
        if self.stages.len() > MAX_STAGES {
            return Err(format!(
                "the plan has {} stages; at most {MAX_STAGES}",
                self.stages.len()
            ));
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.stages.iter().enumerate() {
            let at = format!("stage {} ({:?})", i + 1, s.name);
            if s.name.len() > MAX_NAME {
                return Err(format!(
                    "stage {}: its name is {} bytes; at most {MAX_NAME}",
                    i + 1,
                    s.name.len()
                ));
            }
            if s.name.is_empty() || !names.insert(s.name.clone()) {
                return Err(format!("{at}: every stage needs a unique name"));
            }
            if s.hosts.is_empty() {
                return Err(format!("{at}: names no hosts"));
            }
            if s.hosts.len() > MAX_SELECTORS {
                return Err(format!(
                    "{at}: {} host selectors; at most {MAX_SELECTORS}",
                    s.hosts.len()
                ));
            }
            if let Some(h) = s
                .hosts
                .iter()
                .find(|h| h.is_empty() || h.len() > MAX_NAME + 6)
            {
                return Err(format!(
                    "{at}: host selector {:?} must be 1 to {} bytes",
                    h.chars().take(40).collect::<String>(),
                    MAX_NAME + 6
                ));
            }
            if let Some(c) = &s.command {
                let total: usize = c.iter().map(String::len).sum();
                if c.len() > MAX_COMMAND_ARGS || total > MAX_COMMAND_BYTES {
                    return Err(format!(
                        "{at}: command has {} arguments and {total} bytes; at most {MAX_COMMAND_ARGS} and {MAX_COMMAND_BYTES}",
                        c.len()
                    ));
                }
            }
            let t = &s.trigger;
            if t.on_battery_s.is_none() && t.runtime_below_s.is_none() && t.charge_below.is_none() {
                return Err(format!(
                    "{at}: the trigger needs on_battery_s, runtime_below_s or charge_below"
                ));
            }
            if let Some(c) = t.charge_below
                && !(0.0..=100.0).contains(&c)
            {
                return Err(format!("{at}: charge_below {c} is not a percentage"));
            }
            if s.command.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(format!("{at}: command is empty"));
            }
        }
        Ok(())
    }

    /// Checks the plan against the nodes the cluster knows. `refusals` are refused
    /// unless the operator forces them (a host the cluster has never seen may be a typo;
    /// a zero timeout or delay leaves no time to act); `warnings` are only reported.
    pub fn review(&self, nodes: &[&NodeRecord]) -> PlanReview {
        let mut r = PlanReview::default();
        if self.kill_power_delay_s == 0 {
            r.refusals.push(
                "kill_power_delay_s = 0 cuts power the moment it is ordered, with no margin".into(),
            );
        }
        for (i, st) in self.stages.iter().enumerate() {
            let at = format!("stage {} ({})", i + 1, st.name);
            if st.ack_timeout_s == 0 {
                r.refusals.push(format!(
                    "{at}: ack_timeout_s = 0 starts the next stage without waiting for any host"
                ));
            }
            for sel in &st.hosts {
                match sel.strip_prefix("label:") {
                    Some(l) if !nodes.iter().any(|n| n.labels.iter().any(|x| x == l)) => r
                        .warnings
                        .push(format!("{at}: no node has the label {l:?} (yet)")),
                    None if !nodes.iter().any(|n| &n.name == sel) => r
                        .refusals
                        .push(format!("{at}: the cluster knows no node named {sel:?}")),
                    _ => {}
                }
            }
            if self.stage_hosts(i, nodes).is_empty() {
                r.warnings
                    .push(format!("{at}: selects no host of the cluster as it is now"));
            }
        }
        r
    }

    /// The node ids a stage names, in id order.
    pub fn stage_hosts(&self, stage: usize, nodes: &[&NodeRecord]) -> Vec<NodeId> {
        let Some(s) = self.stages.get(stage) else {
            return vec![];
        };
        let mut out = BTreeSet::new();
        for sel in &s.hosts {
            for n in nodes {
                let hit = match sel.strip_prefix("label:") {
                    Some(l) => n.labels.iter().any(|x| x == l),
                    None => &n.name == sel,
                };
                if hit {
                    out.insert(n.id);
                }
            }
        }
        out.into_iter().collect()
    }
}

impl Plan {
    /// Reads and checks a plan file (TOML: `[[stage]]` tables and the plan's settings).
    pub fn load(path: &std::path::Path) -> Result<Plan, crate::config::ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| crate::config::ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if text.len() > MAX_PLAN_BYTES {
            return Err(crate::config::ConfigError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                key: "stage".into(),
                message: format!("the plan is {} bytes; at most {MAX_PLAN_BYTES}", text.len()),
            });
        }
        let plan: Plan = crate::config::parse_toml(path, &text)?;
        plan.validate()
            .map_err(|message| crate::config::ConfigError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                key: "stage".into(),
                message,
            })?;
        Ok(plan)
    }
}

/// Words for a trigger, e.g. `on battery 30 s, or runtime < 600 s`.
pub fn trigger_words(t: &Trigger) -> String {
    let mut v = Vec::new();
    if let Some(s) = t.on_battery_s {
        v.push(format!("on battery {s} s"));
    }
    if let Some(s) = t.runtime_below_s {
        v.push(format!("runtime < {s} s"));
    }
    if let Some(c) = t.charge_below {
        v.push(format!("charge < {c} %"));
    }
    v.join(", or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example plan the package ships (batch, apps, then storage and consensus).
    fn plan() -> Plan {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/examples/plan.toml");
        Plan::load(&p).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn shipped_example_plan_is_valid() {
        assert_eq!(plan().stages.len(), 3);
    }

    #[test]
    fn plan_validation_names_the_stage() {
        let mut p = plan();
        p.stages[1].trigger = Trigger::default();
        assert!(p.validate().unwrap_err().contains("stage 2 (\"apps\")"));
        let mut p = plan();
        p.stages[0].hosts.clear();
        assert!(p.validate().unwrap_err().contains("names no hosts"));
    }
}
