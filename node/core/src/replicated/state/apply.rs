//! [`PowerState::apply`]: one command at a time, deterministic (every time comes from
//! the command), refusing what is stale or already done. Nodes, UPS reports, the plan
//! and membership here; an outage's course in `apply_outage`, bridges' hosts in
//! `apply_legacy`.

use super::super::NodeId;
use super::super::plan::Plan;
use super::super::records::*;
use super::command::{Command, CommandResult, UpsReport};
use super::power::PowerState;

impl PowerState {
    pub(super) fn touch(&mut self, id: NodeId, at_ms: i64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.last_seen_ms = n.last_seen_ms.max(at_ms);
        }
    }

    /// Records a refused report from a second node claiming an owned UPS name; the
    /// event is written once per rival, not once per report.
    pub(super) fn refuse_rival(&mut self, r: &UpsReport) {
        let owner_name = self.upses.get(&r.ups).map(|u| self.node_name(u.owner));
        let rival_name = self.node_name(r.owner);
        let Some(u) = self.upses.get_mut(&r.ups) else {
            return;
        };
        let new_rival = u.rival.as_ref().is_none_or(|x| x.node != r.owner);
        if new_rival {
            u.rival = Some(RivalOwner {
                node: r.owner,
                since_ms: r.at_ms,
                last_ms: r.at_ms,
            });
        } else if let Some(x) = u.rival.as_mut() {
            x.last_ms = x.last_ms.max(r.at_ms);
        }
        self.touch(r.owner, r.at_ms);
        if new_rival {
            let owner = owner_name.unwrap_or_default();
            let ups = r.ups.clone();
            self.push_event(
                r.at_ms,
                "ownerconflict",
                &ups,
                &format!(
                    "Node {rival_name} reports a UPS named {ups}, which {owner} owns: its reports are refused. Rename one of them, or run `upsilon ups release {ups}` to move it."
                ),
                &rival_name,
            );
        }
    }

    /// Applies one command. Deterministic: reads nothing but its arguments. Each command
    /// has its own `apply_*` function below.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::NodeUp {
                id,
                name,
                addr,
                labels,
                version,
                feeds,
                min_supplies,
                shutdown_s,
                at_ms,
            } => self.apply_node_up(NodeRecord {
                id: *id,
                name: name.clone(),
                addr: addr.clone(),
                labels: labels.clone(),
                last_seen_ms: *at_ms,
                version: version.clone(),
                feeds: feeds.clone(),
                min_supplies: *min_supplies,
                shutdown_s: *shutdown_s,
            }),
            Command::Heartbeat { id, at_ms } => self.apply_heartbeat(id, at_ms),
            Command::Seen { seen, .. } => {
                for (id, at_ms) in seen {
                    self.touch(*id, *at_ms);
                }
                CommandResult::applied(true)
            }
            Command::UpsReport(r) => self.apply_ups_report(r),
            Command::UpsStale {
                ups,
                owner,
                seq,
                at_ms,
            } => self.apply_ups_stale(ups, owner, seq, at_ms),
            Command::NodeRemoved { id, at_ms } => self.apply_node_removed(id, at_ms),
            Command::SetPlan { plan, at_ms, by } => self.apply_set_plan(plan, at_ms, by),
            Command::OutageStart { id, at_ms } => self.apply_outage_start(id, at_ms),
            Command::DrillStart {
                id,
                upses,
                by,
                at_ms,
            } => self.apply_drill_start(*id, upses, by, *at_ms),
            Command::StageStart {
                outage,
                stage,
                name,
                hosts,
                reason,
                at_ms,
            } => self.apply_stage_start(outage, stage, name, hosts, reason, at_ms),
            Command::NodeAck {
                outage,
                stage,
                node,
                halting,
                at_ms,
            } => self.apply_node_ack(outage, stage, node, halting, at_ms),
            Command::HostHalted { node, at_ms } => self.apply_host_halted(*node, *at_ms),
            Command::HostDown {
                outage,
                node,
                how,
                last_seen_ms,
                at_ms,
            } => self.apply_host_down(*outage, *node, *how, *last_seen_ms, *at_ms),
            Command::KillPower {
                outage,
                ups,
                delay_s,
                at_ms,
            } => self.apply_kill_power(outage, ups, delay_s, at_ms),
            Command::ArmKillPower {
                outage,
                orders,
                at_ms,
            } => self.apply_arm(*outage, orders, *at_ms),
            Command::KillPowerAlone {
                outage,
                ups,
                delay_s,
                ordered_ms,
                ok,
                result,
                at_ms,
            } => {
                let run = ActionRun {
                    ordered_ms: *ordered_ms,
                    delay_s: *delay_s,
                    done_ms: Some(*at_ms),
                    result: result.clone(),
                };
                self.apply_kill_alone(*outage, ups, run, *ok)
            }
            Command::PowerCycle { ups, at_ms } => self.apply_power_cycle(ups, at_ms),
            Command::UpsActionDone {
                ups,
                power_cycle,
                ok,
                result,
                at_ms,
            } => self.apply_ups_action_done(ups, power_cycle, ok, result, at_ms),
            Command::OutageEnd { id, at_ms, reason } => self.apply_outage_end(id, at_ms, reason),
            Command::VoterSeat { id, owed, .. } => {
                let changed = if *owed {
                    self.seats_owed.insert(*id)
                } else {
                    self.seats_owed.remove(id)
                };
                CommandResult::applied(changed)
            }
            Command::MemberProblem { id, problem, at_ms } => {
                self.apply_member_problem(id, problem, at_ms)
            }
            Command::RevokeCert {
                serial,
                name,
                reason,
                by,
                at_ms,
            } => self.apply_revoke_cert(serial, name, reason, by, at_ms),
            Command::UpsRelease { ups, by, at_ms } => self.apply_ups_release(ups, by, at_ms),
            Command::Notice {
                at_ms,
                node,
                message,
            } => self.apply_notice(at_ms, node, message),
            Command::LegacyHostsDeclare {
                bridge,
                hosts,
                at_ms,
                runs_on,
            } => self.apply_legacy_declare(bridge, hosts, runs_on.as_deref(), *at_ms),
            Command::LegacyHostSeen {
                bridge,
                name,
                state,
                at_ms,
            } => self.apply_legacy_seen(bridge, name, *state, *at_ms),
        }
    }

    pub(super) fn apply_node_up(&mut self, node: NodeRecord) -> CommandResult {
        if self.halted.remove(&node.id) {
            let name = node.name.clone();
            self.push_event(
                node.last_seen_ms,
                "notice",
                "",
                &format!("{name} is back up."),
                &name,
            );
        }
        self.nodes.insert(node.id, node);
        CommandResult::done()
    }

    pub(super) fn apply_heartbeat(&mut self, id: &NodeId, at_ms: &i64) -> CommandResult {
        self.touch(*id, *at_ms);
        CommandResult::applied(self.nodes.contains_key(id))
    }

    pub(super) fn apply_ups_report(&mut self, r: &UpsReport) -> CommandResult {
        if let Some(cur) = self.upses.get(&r.ups) {
            // Same owner: only newer reports.
            if cur.owner == r.owner && r.seq <= cur.seq && !cur.stale {
                return CommandResult::ignored();
            }
            // One owner per UPS name: another node takes it over only once the
            // owner went stale (silent for `stale_after_ms`), left the cluster,
            // or an operator released the name.
            if cur.owner != r.owner && !cur.stale && self.nodes.contains_key(&cur.owner) {
                self.refuse_rival(r);
                return CommandResult::ignored();
            }
        }
        let node = self.node_name(r.owner);
        let was_stale = self.upses.get(&r.ups).is_some_and(|u| u.stale);
        let prev_lost = self.upses.get(&r.ups).and_then(|u| u.comm_lost_since_ms);
        // A refused rival stays on record while it keeps reporting.
        let rival = self
            .upses
            .get(&r.ups)
            .filter(|u| u.owner == r.owner)
            .and_then(|u| u.rival.clone())
            .filter(|x| r.at_ms - x.last_ms < RIVAL_FORGET_MS);
        if was_stale {
            self.push_event(
                r.at_ms,
                "commok",
                &r.ups,
                &format!("Communications with UPS restored: its owner {node} reports again."),
                &node,
            );
        }
        for e in &r.events {
            self.push_event(e.at_ms, &e.name, &r.ups, &e.message, &node);
        }
        self.upses.insert(
            r.ups.clone(),
            UpsRecord {
                name: r.ups.clone(),
                owner: r.owner,
                seq: r.seq,
                status: r.status.clone(),
                stale: false,
                last_report_ms: r.at_ms,
                on_battery_since_ms: r
                    .status
                    .on_battery
                    .then(|| r.at_ms - i64::from(r.status.time_on_battery_s) * 1000),
                comm_lost_since_ms: if r.status.comm_lost {
                    prev_lost.or(Some(r.at_ms))
                } else {
                    None
                },
                rival,
            },
        );
        self.touch(r.owner, r.at_ms);
        CommandResult::done()
    }

    pub(super) fn apply_ups_stale(
        &mut self,
        ups: &String,
        owner: &NodeId,
        seq: &u64,
        at_ms: &i64,
    ) -> CommandResult {
        match self.upses.get_mut(ups) {
            Some(u) if u.owner == *owner && !u.stale && u.seq == *seq => {
                u.stale = true;
                u.comm_lost_since_ms.get_or_insert(*at_ms);
                let node = self.node_name(*owner);
                self.push_event(
                    *at_ms,
                    "commfailure",
                    ups,
                    &format!("Communications with UPS lost: its owner {node} stopped reporting."),
                    &node,
                );
                CommandResult::done()
            }
            _ => CommandResult::ignored(),
        }
    }

    pub(super) fn apply_node_removed(&mut self, id: &NodeId, at_ms: &i64) -> CommandResult {
        let name = self.node_name(*id);
        self.member_problems.remove(id);
        let removed = self.nodes.remove(id).is_some();
        if removed {
            self.push_event(
                *at_ms,
                "notice",
                "",
                &format!("Node {name} left the cluster."),
                &name,
            );
        }
        CommandResult::applied(removed)
    }

    pub(super) fn apply_set_plan(&mut self, plan: &Plan, at_ms: &i64, by: &str) -> CommandResult {
        self.plan = Some(plan.clone());
        let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        self.push_event(
            *at_ms,
            "notice",
            "",
            &format!("Shutdown plan set by {by}: {}.", names.join(" -> ")),
            by,
        );
        CommandResult::done()
    }

    pub(super) fn apply_member_problem(
        &mut self,
        id: &NodeId,
        problem: &Option<String>,
        at_ms: &i64,
    ) -> CommandResult {
        let name = self.node_name(*id);
        match problem {
            Some(p) => {
                if self.member_problems.get(id) == Some(p) {
                    return CommandResult::ignored();
                }
                self.member_problems.insert(*id, p.clone());
                self.push_event(*at_ms, "memberrefused", "", p, &name);
            }
            None => {
                if self.member_problems.remove(id).is_none() {
                    return CommandResult::ignored();
                }
                self.push_event(
                    *at_ms,
                    "notice",
                    "",
                    &format!("{name} accepts replication again."),
                    &name,
                );
            }
        }
        CommandResult::done()
    }

    pub(super) fn apply_revoke_cert(
        &mut self,
        serial: &String,
        name: &String,
        reason: &String,
        by: &String,
        at_ms: &i64,
    ) -> CommandResult {
        if self.revoked.contains_key(serial) || self.revoked.len() >= MAX_REVOKED {
            return CommandResult::ignored();
        }
        self.revoked.insert(
            serial.clone(),
            RevokedCert {
                name: name.clone(),
                reason: reason.clone(),
                by: by.clone(),
                at_ms: *at_ms,
            },
        );
        let who = if name.is_empty() {
            String::new()
        } else {
            format!(" ({name})")
        };
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        self.push_event(
            *at_ms,
            "notice",
            "",
            &format!("Certificate {serial}{who} revoked by {by}{why}."),
            by,
        );
        CommandResult::done()
    }

    pub(super) fn apply_ups_release(&mut self, ups: &str, by: &str, at_ms: &i64) -> CommandResult {
        let Some(u) = self.upses.get_mut(ups) else {
            return CommandResult::ignored();
        };
        u.stale = true;
        u.comm_lost_since_ms.get_or_insert(*at_ms);
        let owner = u.owner;
        let owner = self.node_name(owner);
        self.push_event(
            *at_ms,
            "notice",
            ups,
            &format!(
                "UPS {ups} released by {by}: it was owned by {owner}; the next node to report it owns it."
            ),
            by,
        );
        CommandResult::done()
    }

    pub(super) fn apply_notice(&mut self, at_ms: &i64, node: &str, message: &str) -> CommandResult {
        self.push_event(*at_ms, "notice", "", message, node);
        CommandResult::done()
    }
}
