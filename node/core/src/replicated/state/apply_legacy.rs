//! Applying a bridge's declaration of its legacy hosts and what it saw of them.

use super::super::NodeId;
use super::super::legacy::{
    LEGACY_ID_BASE, LegacyHost, LegacyHostDecl, LegacyState, MAX_LEGACY_HOSTS,
};
use super::command::CommandResult;
use super::power::PowerState;

impl PowerState {
    pub(super) fn apply_legacy_declare(
        &mut self,
        bridge: &str,
        hosts: &[LegacyHostDecl],
        runs_on: Option<&str>,
        at_ms: i64,
    ) -> CommandResult {
        let mut changed = Vec::new();
        let mut refused = Vec::new();
        for d in hosts {
            if let Err(e) = d.validate() {
                refused.push(e);
                continue;
            }
            if self.nodes.values().any(|n| n.name == d.name) {
                refused.push(format!(
                    "legacy host {:?}: a node of the cluster has that name",
                    d.name
                ));
                continue;
            }
            let existing = self
                .legacy
                .iter()
                .find(|(_, l)| l.host.name == d.name)
                .map(|(id, _)| *id);
            match existing {
                Some(id) => {
                    let l = self.legacy.get_mut(&id).expect("found above");
                    if !l.matches(d, bridge, runs_on) {
                        let mut fresh = LegacyHost::new(id, d, bridge, runs_on, at_ms);
                        fresh.state = l.state;
                        fresh.state_since_ms = l.state_since_ms;
                        fresh.host.last_seen_ms = l.host.last_seen_ms;
                        fresh.polled = l.polled;
                        *l = fresh;
                        changed.push(d.name.clone());
                    }
                }
                None if self.legacy.len() >= MAX_LEGACY_HOSTS => refused.push(format!(
                    "legacy host {:?}: the cluster already has {MAX_LEGACY_HOSTS} legacy hosts",
                    d.name
                )),
                None => {
                    self.legacy_ids_used += 1;
                    let id = LEGACY_ID_BASE + self.legacy_ids_used;
                    self.legacy
                        .insert(id, LegacyHost::new(id, d, bridge, runs_on, at_ms));
                    changed.push(d.name.clone());
                }
            }
        }
        let gone: Vec<NodeId> = self
            .legacy
            .iter()
            .filter(|(_, l)| l.bridge == bridge && !hosts.iter().any(|d| d.name == l.host.name))
            .map(|(id, _)| *id)
            .collect();
        let mut removed = Vec::new();
        for id in gone {
            if let Some(l) = self.legacy.remove(&id) {
                self.halted.remove(&id);
                removed.push(l.host.name);
            }
        }
        if changed.is_empty() && removed.is_empty() && refused.is_empty() {
            return CommandResult::ignored();
        }
        let mut words = Vec::new();
        if !changed.is_empty() {
            words.push(format!("declares legacy hosts {}", changed.join(", ")));
        }
        if !removed.is_empty() {
            words.push(format!("no longer declares {}", removed.join(", ")));
        }
        if !refused.is_empty() {
            words.push(format!("refused: {}", refused.join("; ")));
        }
        self.push_event(
            at_ms,
            "notice",
            "",
            &format!("Bridge {bridge} {}.", words.join("; ")),
            bridge,
        );
        CommandResult::done()
    }

    pub(super) fn apply_legacy_seen(
        &mut self,
        bridge: &str,
        name: &str,
        state: LegacyState,
        at_ms: i64,
    ) -> CommandResult {
        let Some((id, prev)) = self
            .legacy
            .iter()
            .find(|(_, l)| l.host.name == name)
            .map(|(id, l)| (*id, l.state))
        else {
            return CommandResult::ignored();
        };
        if matches!(state, LegacyState::Told | LegacyState::Halted) {
            // An acknowledgement for the stage of the latest outage that holds it.
            let stage = self.outage.as_ref().and_then(|o| {
                o.stages
                    .iter()
                    .position(|r| r.hosts.contains(&id))
                    .map(|k| (o.id, k))
            });
            let Some((outage, k)) = stage else {
                return CommandResult::ignored();
            };
            let halting = state == LegacyState::Halted;
            // "Halted" also records "shutting down" if that never came (ignored if it did).
            let mut applied = self
                .apply_node_ack(&outage, &k, &id, &false, &at_ms)
                .applied;
            if halting {
                applied |= self.apply_node_ack(&outage, &k, &id, &true, &at_ms).applied;
            }
            if !applied && prev == state {
                return CommandResult::ignored();
            }
        } else if prev == state {
            // The bridge saw a first poll from a host declared and never seen: it is
            // connected (its state stays "polling").
            let l = self.legacy.get_mut(&id).expect("found above");
            if state == LegacyState::Polling && !l.polled {
                l.polled = true;
                l.host.last_seen_ms = l.host.last_seen_ms.max(at_ms);
                self.push_event(
                    at_ms,
                    "notice",
                    "",
                    &format!("Legacy host {name} polls bridge {bridge}."),
                    name,
                );
                return CommandResult::done();
            }
            return CommandResult::ignored();
        } else if prev == LegacyState::Halted && state == LegacyState::Polling {
            if self.halted.remove(&id) {
                self.push_event(
                    at_ms,
                    "notice",
                    "",
                    &format!("{name} is back up: it polls bridge {bridge} again."),
                    name,
                );
            }
        } else if state == LegacyState::Silent {
            self.push_event(
                at_ms,
                "notice",
                "",
                &format!("Legacy host {name} stopped polling bridge {bridge}."),
                name,
            );
        } else if prev == LegacyState::Silent {
            self.push_event(
                at_ms,
                "notice",
                "",
                &format!("Legacy host {name} polls bridge {bridge} again."),
                name,
            );
        }
        let l = self.legacy.get_mut(&id).expect("found above");
        l.state = state;
        l.state_since_ms = at_ms;
        l.host.last_seen_ms = l.host.last_seen_ms.max(at_ms);
        // Polling, told or halted: it has polled.
        l.polled |= state != LegacyState::Silent;
        CommandResult::done()
    }
}
