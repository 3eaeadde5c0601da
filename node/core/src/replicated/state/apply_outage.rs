//! Applying an outage's course: its start (or a drill's), stages, acknowledgements,
//! halts and hosts down, kill orders (armed, carried out alone, ordered), power cycles
//! and its end.

use std::collections::BTreeMap;

use super::super::NodeId;
use super::super::records::*;
use super::command::CommandResult;
use super::power::PowerState;

impl PowerState {
    pub(super) fn apply_outage_start(&mut self, id: &u64, at_ms: &i64) -> CommandResult {
        let active = self.outage.as_ref().is_some_and(|o| o.ended_ms.is_none());
        if active || *id != self.next_outage_id + 1 {
            return CommandResult::ignored();
        }
        self.next_outage_id = *id;
        self.power_cycled.clear();
        self.outage = Some(Outage {
            id: *id,
            started_ms: *at_ms,
            stages: vec![],
            kill_power: BTreeMap::new(),
            ended_ms: None,
            end_reason: String::new(),
            armed: None,
            drill: None,
        });
        self.push_event(
            *at_ms,
            "outage",
            "",
            &format!("Outage {id} began: a supply is on battery."),
            "",
        );
        CommandResult::done()
    }

    pub(super) fn apply_drill_start(
        &mut self,
        id: u64,
        upses: &[String],
        by: &str,
        at_ms: i64,
    ) -> CommandResult {
        let active = self.outage.as_ref().is_some_and(|o| o.ended_ms.is_none());
        let known = !upses.is_empty() && upses.iter().all(|u| self.upses.contains_key(u));
        if active || id != self.next_outage_id + 1 || !known || self.plan.is_none() {
            return CommandResult::ignored();
        }
        self.next_outage_id = id;
        self.outage = Some(Outage {
            id,
            started_ms: at_ms,
            stages: vec![],
            kill_power: BTreeMap::new(),
            ended_ms: None,
            end_reason: String::new(),
            armed: None,
            drill: Some(upses.to_vec()),
        });
        self.push_event(
            at_ms,
            "notice",
            "",
            &format!(
                "Fire drill {id} started by {by}: the plan runs as if mains failed on {}; nothing is shut down or cut.",
                upses.join(", ")
            ),
            "",
        );
        CommandResult::done()
    }

    /// Whether the active outage is a drill.
    pub(super) fn in_drill(&self) -> bool {
        self.outage
            .as_ref()
            .is_some_and(|o| o.ended_ms.is_none() && o.is_drill())
    }

    pub(super) fn apply_stage_start(
        &mut self,
        outage: &u64,
        stage: &usize,
        name: &String,
        hosts: &[NodeId],
        reason: &String,
        at_ms: &i64,
    ) -> CommandResult {
        let names: Vec<String> = hosts.iter().map(|h| self.node_name(*h)).collect();
        let Some(o) = self.active_outage(*outage) else {
            return CommandResult::ignored();
        };
        // Exactly once and in order: only the next stage may start.
        if o.stages.len() != *stage {
            return CommandResult::ignored();
        }
        o.stages.push(StageRun {
            name: name.clone(),
            started_ms: *at_ms,
            reason: reason.clone(),
            hosts: hosts.to_vec(),
            acks: BTreeMap::new(),
        });
        self.push_event(
            *at_ms,
            "stagestart",
            "",
            &format!(
                "Stage {} ({name}) started: {reason}; hosts: {}.",
                stage + 1,
                names.join(", ")
            ),
            "",
        );
        CommandResult::done()
    }

    pub(super) fn apply_node_ack(
        &mut self,
        outage: &u64,
        stage: &usize,
        node: &NodeId,
        halting: &bool,
        at_ms: &i64,
    ) -> CommandResult {
        let name = self.node_name(*node);
        let drill = self.in_drill();
        let Some(run) = self
            .outage
            .as_mut()
            .filter(|o| o.id == *outage)
            .and_then(|o| o.stages.get_mut(*stage))
            .filter(|r| r.hosts.contains(node))
        else {
            return CommandResult::ignored();
        };
        let stage_name = run.name.clone();
        let ack = run.acks.entry(*node).or_default();
        let slot = if *halting {
            &mut ack.halting_ms
        } else {
            &mut ack.shutting_down_ms
        };
        if slot.is_some() {
            return CommandResult::ignored();
        }
        *slot = Some(*at_ms);
        if *halting && !drill {
            self.halted.insert(*node);
        }
        let what = if *halting {
            "is halting"
        } else {
            "is shutting down"
        };
        self.push_event(
            *at_ms,
            "nodeack",
            "",
            &format!("{name} {what} (stage {stage_name})."),
            &name,
        );
        CommandResult::done()
    }

    /// The active outage's stage run that holds `node`, and the outage id.
    pub(super) fn stage_of(&mut self, node: NodeId) -> Option<(u64, &mut StageRun)> {
        let o = self.outage.as_mut().filter(|o| o.ended_ms.is_none())?;
        let id = o.id;
        o.stages
            .iter_mut()
            .find(|r| r.hosts.contains(&node))
            .map(|r| (id, r))
    }

    pub(super) fn apply_host_halted(&mut self, node: NodeId, at_ms: i64) -> CommandResult {
        let name = self.node_name(node);
        let drill = self.in_drill();
        let Some((outage, run)) = self.stage_of(node) else {
            return CommandResult::ignored();
        };
        let ack = run.acks.entry(node).or_default();
        if ack.halted_ms.is_some() {
            return CommandResult::ignored();
        }
        ack.halted_ms = Some(at_ms);
        // A "halted" with no halting acknowledgement (it did not commit) stands for both.
        let halting = *ack.halting_ms.get_or_insert(at_ms);
        if ack.down_ms.is_none() {
            ack.down_ms = Some(at_ms);
            ack.down_how = Some(DownHow::Halted);
        }
        let after = (at_ms - halting).max(0) as f64 / 1000.0;
        if drill {
            self.push_event(
                at_ms,
                "notice",
                "",
                &format!(
                    "{name} would halt now (drill; {after:.1} s after its halting acknowledgement)."
                ),
                &name,
            );
            return CommandResult::done();
        }
        self.halted.insert(node);
        let m = self.shutdown_measured.entry(node).or_default();
        if m.outage != outage {
            *m = MeasuredShutdown {
                outage,
                ..Default::default()
            };
        }
        m.to_halted_ms = Some((at_ms - halting).max(0));
        self.push_event(
            at_ms,
            "notice",
            "",
            &format!("{name} halted ({after:.1} s after its halting acknowledgement)."),
            &name,
        );
        CommandResult::done()
    }

    pub(super) fn apply_host_down(
        &mut self,
        outage: u64,
        node: NodeId,
        how: DownHow,
        last_seen_ms: i64,
        at_ms: i64,
    ) -> CommandResult {
        let name = self.node_name(node);
        let drill = self.in_drill();
        let Some((o, run)) = self.stage_of(node) else {
            return CommandResult::ignored();
        };
        if o != outage {
            return CommandResult::ignored();
        }
        let ack = run.acks.entry(node).or_default();
        if ack.down_ms.is_some() {
            return CommandResult::ignored();
        }
        ack.down_ms = Some(at_ms);
        ack.down_how = Some(how);
        let halting = ack.halting_ms;
        let text = match (how, halting) {
            (DownHow::Silent, Some(h)) if !drill => {
                let m = self.shutdown_measured.entry(node).or_default();
                if m.outage != outage {
                    *m = MeasuredShutdown {
                        outage,
                        ..Default::default()
                    };
                }
                m.to_silence_ms = Some((last_seen_ms - h).max(0));
                format!(
                    "{name} is down: silent since {:.1} s after its halting acknowledgement.",
                    (last_seen_ms - h).max(0) as f64 / 1000.0
                )
            }
            _ => format!(
                "{name} is down: it never acknowledged halting, its stage timed out and it is silent."
            ),
        };
        self.push_event(at_ms, "notice", "", &text, &name);
        CommandResult::done()
    }

    pub(super) fn apply_arm(
        &mut self,
        outage: u64,
        orders: &[ArmedKill],
        at_ms: i64,
    ) -> CommandResult {
        let Some(o) = self.active_outage(outage) else {
            return CommandResult::ignored();
        };
        if o.armed.is_some() {
            return CommandResult::ignored();
        }
        o.armed = Some(orders.to_vec());
        let words: Vec<String> = orders
            .iter()
            .map(|k| {
                let names: Vec<String> = k.wait_for.iter().map(|h| self.node_name(*h)).collect();
                if names.is_empty() {
                    format!("{} (no host to wait for)", k.ups)
                } else {
                    format!("{} after {}", k.ups, names.join(", "))
                }
            })
            .collect();
        self.push_event(
            at_ms,
            "notice",
            "",
            &format!(
                "Kill orders committed before any host halts (owners finish alone if the quorum is gone): {}.",
                words.join("; ")
            ),
            "",
        );
        CommandResult::done()
    }

    pub(super) fn apply_kill_alone(
        &mut self,
        outage: u64,
        ups: &str,
        run: ActionRun,
        ok: bool,
    ) -> CommandResult {
        let Some(o) = self.outage.as_mut().filter(|o| o.id == outage) else {
            return CommandResult::ignored();
        };
        if o.kill_power.get(ups).is_some_and(|r| r.done_ms.is_some()) {
            return CommandResult::ignored();
        }
        let (at, delay, result) = (
            run.done_ms.unwrap_or(run.ordered_ms),
            run.delay_s,
            run.result.clone(),
        );
        o.kill_power.insert(ups.to_string(), run);
        let how = if ok { "done" } else { "FAILED" };
        self.push_event(
            at,
            "notice",
            ups,
            &format!("UPS {ups} kill power {how} by its owner alone (no quorum), {delay} s delay: {result}"),
            "",
        );
        CommandResult::done()
    }

    pub(super) fn apply_kill_power(
        &mut self,
        outage: &u64,
        ups: &String,
        delay_s: &u32,
        at_ms: &i64,
    ) -> CommandResult {
        let Some(o) = self.active_outage(*outage) else {
            return CommandResult::ignored();
        };
        if o.kill_power.contains_key(ups) {
            return CommandResult::ignored();
        }
        o.kill_power.insert(
            ups.clone(),
            ActionRun {
                ordered_ms: *at_ms,
                delay_s: *delay_s,
                done_ms: None,
                result: String::new(),
            },
        );
        self.push_event(
            *at_ms,
            "killpower",
            ups,
            &format!("UPS {ups} ordered to cut power in {delay_s} s and return with mains."),
            "",
        );
        CommandResult::done()
    }

    pub(super) fn apply_power_cycle(&mut self, ups: &str, at_ms: &i64) -> CommandResult {
        if self.power_cycled.contains_key(ups) {
            return CommandResult::ignored();
        }
        self.power_cycled.insert(
            ups.to_string(),
            ActionRun {
                ordered_ms: *at_ms,
                delay_s: 0,
                done_ms: None,
                result: String::new(),
            },
        );
        self.push_event(
            *at_ms,
            "powercycle",
            ups,
            &format!("UPS {ups} ordered to power-cycle its outlets to bring halted hosts back."),
            "",
        );
        CommandResult::done()
    }

    pub(super) fn apply_ups_action_done(
        &mut self,
        ups: &String,
        power_cycle: &bool,
        ok: &bool,
        result: &String,
        at_ms: &i64,
    ) -> CommandResult {
        let run = if *power_cycle {
            self.power_cycled.get_mut(ups)
        } else {
            self.outage.as_mut().and_then(|o| o.kill_power.get_mut(ups))
        };
        let Some(run) = run.filter(|r| r.done_ms.is_none()) else {
            return CommandResult::ignored();
        };
        run.done_ms = Some(*at_ms);
        run.result = result.clone();
        let what = if *power_cycle {
            "power cycle"
        } else {
            "kill power"
        };
        let how = if *ok { "done" } else { "FAILED" };
        self.push_event(
            *at_ms,
            "notice",
            ups,
            &format!("UPS {ups} {what} {how}: {result}"),
            "",
        );
        CommandResult::done()
    }

    pub(super) fn apply_outage_end(
        &mut self,
        id: &u64,
        at_ms: &i64,
        reason: &str,
    ) -> CommandResult {
        let Some(o) = self.active_outage(*id) else {
            return CommandResult::ignored();
        };
        o.ended_ms = Some(*at_ms);
        o.end_reason = reason.to_string();
        let drill = o.is_drill();
        let name = if reason.contains("cancelled") {
            "cancel"
        } else {
            "outageend"
        };
        let text = if drill {
            format!("Fire drill {id} ended: {reason}.")
        } else {
            format!("Outage {id} ended: {reason}.")
        };
        self.push_event(*at_ms, if drill { "notice" } else { name }, "", &text, "");
        CommandResult::done()
    }
}
