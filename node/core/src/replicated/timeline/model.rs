//! [`predict`]: the coordinator played forward one tick at a time on a copy of the
//! state, with hosts that acknowledge, halt, fall silent and fall back as nodes do.

use std::collections::BTreeMap;

use super::super::NodeId;
use super::super::endgame;
use super::super::legacy::LEGACY_ID_BASE;
use super::super::plan::{self, Plan};
use super::super::state::{Command, PowerState};
use super::lines::*;

/// What the model schedules for later.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Due {
    /// A node's shutdown path says "halted" (it is down).
    Halted(NodeId),
    /// A bridge reports its legacy host halting: it fell silent.
    LegacyHalting(NodeId),
    /// A UPS owner halts once it cut its UPS (after whatever else is due then: its
    /// halting ack races with the voters going down, and the model takes the later).
    AfterKill(NodeId),
    /// A UPS that feeds this owner is ordered cut and it must start to be down now
    /// (`endgame::feed_cut_deadline_ms`): if no order for its own UPS came, it halts
    /// uncut.
    FeedCut(NodeId),
}

/// Each UPS's battery at the start.
#[derive(Debug, Clone, Copy)]
struct Battery {
    runtime_s: Option<f64>,
    charge: Option<f64>,
    on_battery: bool,
}

impl Battery {
    /// Seconds of runtime left at `dt_ms` after the start, unclamped (infinite on line).
    fn runtime_at(&self, dt_ms: i64) -> Option<f64> {
        if !self.on_battery {
            return Some(f64::INFINITY);
        }
        self.runtime_s.map(|r| r - dt_ms as f64 / 1000.0)
    }
}

struct Model<'a> {
    t0: i64,
    plan: Plan,
    voters: &'a [NodeId],
    bats: BTreeMap<String, Battery>,
    s: PowerState,
    due: Vec<(i64, Due)>,
    up: BTreeMap<NodeId, bool>,
    tl: Timeline,
}

/// Plays the end game forward from `state` at `now_ms`: as if mains failed now on every
/// UPS, or, during an outage, as it goes on. `voters` are the cluster's voters (empty:
/// unknown, the quorum is not modelled). `None` without a plan.
pub fn predict(state: &PowerState, voters: &[NodeId], now_ms: i64) -> Option<Timeline> {
    let plan = state.plan.clone()?;
    let mut s = state.clone();
    // A drill is not an outage: predict as if it were over.
    if let Some(o) = s
        .outage
        .as_mut()
        .filter(|o| o.ended_ms.is_none() && o.is_drill())
    {
        o.ended_ms = Some(now_ms);
    }
    let going = s.outage.as_ref().is_some_and(|o| o.ended_ms.is_none());
    let mut bats = BTreeMap::new();
    for u in s.upses.values_mut() {
        if !going && !u.status.on_battery {
            u.status.on_battery = true;
            u.on_battery_since_ms = Some(now_ms);
        }
        let r = u.status.reading.as_ref();
        bats.insert(
            u.name.clone(),
            Battery {
                runtime_s: r.and_then(|r| r.runtime_s),
                charge: r.and_then(|r| r.charge_percent),
                on_battery: u.status.on_battery,
            },
        );
    }
    let hosts: BTreeMap<NodeId, HostLine> = s
        .hosts()
        .into_iter()
        .map(|n| {
            let stage =
                (0..plan.stages.len()).find(|k| plan.stage_hosts(*k, &s.hosts()).contains(&n.id));
            let down = endgame::phase(&s, &plan, n, now_ms).is_down();
            (
                n.id,
                HostLine {
                    id: n.id,
                    name: n.name.clone(),
                    stage,
                    shutdown_s: endgame::shutdown_s(&s, &plan, n),
                    duties: endgame::deferrable(&s, n.id),
                    halting_ms: None,
                    down_ms: down.then_some(0),
                    how: if down {
                        HaltPath::Before
                    } else {
                        HaltPath::Never
                    },
                    margin_s: None,
                },
            )
        })
        .collect();
    let up = hosts
        .iter()
        .map(|(id, h)| (*id, h.down_ms.is_none()))
        .collect();
    let stages = plan
        .stages
        .iter()
        .enumerate()
        .map(|(k, st)| {
            let run = s
                .outage
                .as_ref()
                .filter(|_| going)
                .and_then(|o| o.stages.get(k));
            StageLine {
                index: k,
                name: st.name.clone(),
                start_ms: run.map(|r| r.started_ms - now_ms),
                reason: run.map_or(String::new(), |r| r.reason.clone()),
                hosts: run.map_or_else(|| plan.stage_hosts(k, &s.hosts()), |r| r.hosts.clone()),
                waits_for: vec![],
                done_ms: None,
            }
        })
        .collect();
    let upses = s
        .upses
        .values()
        .map(|u| {
            let b = bats[&u.name];
            UpsLine {
                name: u.name.clone(),
                owner: u.owner,
                runtime_s: b.runtime_s,
                charge: b.charge,
                on_battery: b.on_battery,
                kill: s.outage.as_ref().filter(|_| going).and_then(|o| {
                    o.kill_power.get(&u.name).map(|k| KillLine {
                        ordered_ms: k.ordered_ms - now_ms,
                        delay_s: k.delay_s,
                        alone: false,
                    })
                }),
            }
        })
        .collect();
    let mut m = Model {
        t0: now_ms,
        plan,
        voters,
        bats,
        s,
        due: vec![],
        up,
        tl: Timeline {
            t0_ms: now_ms,
            outage_going: going,
            upses,
            stages,
            hosts,
            quorum_lost_ms: None,
            finished: false,
            end_ms: 0,
        },
    };
    m.run();
    Some(m.tl)
}

impl Model<'_> {
    fn horizon_ms(&self) -> i64 {
        let runtime = self
            .bats
            .values()
            .filter(|b| b.on_battery)
            .filter_map(|b| b.runtime_s)
            .fold(0.0, f64::max);
        let longest = self
            .tl
            .hosts
            .values()
            .map(|h| h.shutdown_s)
            .max()
            .unwrap_or(0);
        if runtime > 0.0 {
            // Once every battery is empty nothing is left to predict.
            return ((runtime * 1000.0) as i64 + (i64::from(longest) + 60) * 1000)
                .min(MAX_HORIZON_MS);
        }
        let waits: u64 = self.plan.stages.iter().map(|s| s.ack_timeout_s).sum();
        let h = (waits as i64 + i64::from(longest) + 600) * 1000;
        h.min(MAX_HORIZON_MS)
    }

    fn run(&mut self) {
        let horizon = self.horizon_ms();
        let mut dt = 0;
        while dt <= horizon {
            let t = self.t0 + dt;
            self.tl.end_ms = dt;
            self.refresh(dt);
            self.fire_due(t);
            if self.quorum_lost_at(dt) {
                self.alone(t);
            } else {
                self.coordinate(t);
            }
            // What the coordinator's orders made due at once (an owner's halt).
            self.fire_due(t);
            if self.release(t) {
                self.fire_due(t);
            }
            self.note_done(t);
            if self.finished() {
                self.tl.finished = true;
                break;
            }
            dt += TICK_MS;
        }
        self.margins();
    }

    /// Readings drain; hosts that are up are heard from.
    fn refresh(&mut self, dt: i64) {
        let t = self.t0 + dt;
        for u in self.s.upses.values_mut() {
            let b = self.bats[&u.name];
            if !b.on_battery {
                continue;
            }
            u.last_report_ms = t;
            if let (Some(r0), Some(reading)) = (b.runtime_s, u.status.reading.as_mut()) {
                let left = b.runtime_at(dt).unwrap_or(0.0).max(0.0);
                reading.runtime_s = Some(left);
                if let Some(c0) = b.charge {
                    reading.charge_percent = Some(if r0 > 0.0 { c0 * left / r0 } else { 0.0 });
                }
            }
        }
        for (id, up) in &self.up {
            if !up {
                continue;
            }
            if let Some(n) = self.s.nodes.get_mut(id) {
                n.last_seen_ms = t;
            } else if let Some(l) = self.s.legacy.get_mut(id) {
                l.host.last_seen_ms = t;
            }
        }
    }

    fn committable(&self) -> bool {
        self.tl.quorum_lost_ms.is_none()
    }

    fn apply(&mut self, c: Command) {
        if self.committable() {
            self.s.apply(&c);
        }
    }

    /// What is due by `t`, in order; the coordinator runs after each (as after every
    /// apply), and a host going down may take the quorum with it.
    fn fire_due(&mut self, t: i64) {
        self.due.sort_by_key(|(at, _)| *at);
        while self.due.first().is_some_and(|(at, _)| *at <= t) {
            let (at, what) = self.due.remove(0);
            let dt = at - self.t0;
            let h = match what {
                Due::Halted(h) => {
                    self.apply(Command::HostHalted { node: h, at_ms: at });
                    h
                }
                Due::LegacyHalting(h) => {
                    if let Some((outage, stage)) = self.stage_of(h) {
                        self.apply(Command::NodeAck {
                            outage,
                            stage,
                            node: h,
                            halting: true,
                            at_ms: at,
                        });
                    }
                    h
                }
                Due::AfterKill(h) => {
                    self.start_halt(h, at, HaltPath::AfterKill);
                    continue;
                }
                Due::FeedCut(h) => {
                    let o = self.s.outage.as_ref();
                    let duties = endgame::duties(&self.s, h);
                    let kills = endgame::kills(&duties);
                    let ordered = kills
                        .iter()
                        .any(|u| o.is_some_and(|o| o.kill_power.contains_key(*u)));
                    if !kills.is_empty() && !ordered {
                        self.start_halt(h, at, HaltPath::FeedCut);
                    }
                    continue;
                }
            };
            self.down(h, dt);
            if !self.quorum_lost_at(dt) {
                self.coordinate(t);
            }
        }
    }

    /// Hosts whose halt was deferred and whose duties are all done halt now (a bridge
    /// host once its legacy hosts are down): whether one did.
    fn release(&mut self, t: i64) -> bool {
        if !self.committable() {
            return false;
        }
        let free: Vec<(NodeId, HaltPath)> = self
            .tl
            .hosts
            .values()
            .filter(|l| !l.duties.is_empty() && l.halting_ms.is_none())
            .filter(|l| self.up.get(&l.id).copied().unwrap_or(false))
            .filter(|l| self.stage_of(l.id).is_some())
            .filter(|l| endgame::duties(&self.s, l.id).is_empty())
            .map(|l| {
                let how = if endgame::kills(&l.duties).is_empty() {
                    HaltPath::AfterBridge
                } else {
                    HaltPath::AfterKill
                };
                (l.id, how)
            })
            .collect();
        for (h, how) in &free {
            self.start_halt(*h, t, *how);
        }
        if !free.is_empty() {
            self.coordinate(t);
        }
        !free.is_empty()
    }

    fn down(&mut self, h: NodeId, dt: i64) {
        self.up.insert(h, false);
        if let Some(l) = self.tl.hosts.get_mut(&h) {
            l.down_ms.get_or_insert(dt);
        }
    }

    /// The started stage (committed) that holds `h`.
    fn stage_of(&self, h: NodeId) -> Option<(u64, usize)> {
        let o = self.s.outage.as_ref()?;
        endgame::run_of(o, h).map(|(k, _)| (o.id, k))
    }

    /// A host begins its halt at `at`: halting now, down after its shutdown time.
    fn start_halt(&mut self, h: NodeId, at: i64, how: HaltPath) {
        if !self.up.get(&h).copied().unwrap_or(false) {
            return;
        }
        let Some(line) = self.tl.hosts.get_mut(&h) else {
            return;
        };
        if line.halting_ms.is_some() {
            return;
        }
        line.halting_ms = Some(at - self.t0);
        line.how = how;
        let took = i64::from(line.shutdown_s) * 1000;
        if let Some((outage, stage)) = self.stage_of(h) {
            for halting in [false, true] {
                self.apply(Command::NodeAck {
                    outage,
                    stage,
                    node: h,
                    halting,
                    at_ms: at,
                });
            }
        }
        self.due.push((at + took, Due::Halted(h)));
    }

    fn quorum_lost_at(&mut self, dt: i64) -> bool {
        if self.tl.quorum_lost_ms.is_some() {
            return true;
        }
        if self.voters.is_empty() {
            return false;
        }
        let live = self
            .voters
            .iter()
            .filter(|v| self.up.get(v).copied().unwrap_or(false))
            .count();
        if live < self.voters.len() / 2 + 1 {
            self.tl.quorum_lost_ms = Some(dt);
            return true;
        }
        false
    }

    /// The coordinator, as the leader runs it: after every apply, until it has nothing
    /// more to propose.
    fn coordinate(&mut self, t: i64) {
        for _ in 0..64 {
            let cmds = plan::decide(&self.s, t);
            if cmds.is_empty() {
                return;
            }
            for c in cmds {
                self.s.apply(&c);
                self.react(&c, t);
            }
        }
    }

    /// What the hosts do about a committed command.
    fn react(&mut self, c: &Command, t: i64) {
        let dt = t - self.t0;
        match c {
            Command::StageStart {
                outage,
                stage,
                hosts,
                reason,
                ..
            } => {
                let waits_for = hosts
                    .iter()
                    .filter(|h| endgame::duties(&self.s, **h).is_empty())
                    .copied()
                    .collect();
                if let Some(line) = self.tl.stages.get_mut(*stage) {
                    line.start_ms = Some(dt);
                    line.reason = reason.clone();
                    line.hosts = hosts.clone();
                    line.waits_for = waits_for;
                }
                for h in hosts {
                    if !self.up.get(h).copied().unwrap_or(false) {
                        continue;
                    }
                    let duties = endgame::duties(&self.s, *h);
                    if let Some(line) = self.tl.hosts.get_mut(h) {
                        line.stage = Some(*stage);
                        line.duties = duties.clone();
                    }
                    self.s.apply(&Command::NodeAck {
                        outage: *outage,
                        stage: *stage,
                        node: *h,
                        halting: false,
                        at_ms: t,
                    });
                    if !duties.is_empty() {
                        continue; // halts after its duties (`release`)
                    }
                    if *h >= LEGACY_ID_BASE {
                        // The bridge acknowledges halting once the host fell silent.
                        let took = self.tl.hosts.get(h).map_or(0, |l| l.shutdown_s);
                        if let Some(line) = self.tl.hosts.get_mut(h) {
                            line.halting_ms = Some(dt);
                            line.how = HaltPath::Stage;
                        }
                        self.due
                            .push((t + i64::from(took) * 1000, Due::LegacyHalting(*h)));
                    } else {
                        self.start_halt(*h, t, HaltPath::Stage);
                    }
                }
            }
            Command::KillPower { ups, delay_s, .. } => {
                self.record_kill(ups, dt, *delay_s, false);
                self.s.apply(&Command::UpsActionDone {
                    ups: ups.clone(),
                    power_cycle: false,
                    ok: true,
                    result: "predicted".into(),
                    at_ms: t,
                });
                // Its owner halts once nothing else is left for it to cut.
                let owner = self.s.upses.get(ups).map(|u| u.owner);
                if let Some(owner) = owner
                    && endgame::duties(&self.s, owner).is_empty()
                    && self.stage_of(owner).is_some()
                {
                    self.due.push((t, Due::AfterKill(owner)));
                }
                // Other owners it feeds must be down before it cuts: unless an order for
                // their own UPS follows, they halt uncut.
                let fed_owners: Vec<NodeId> = self
                    .s
                    .hosts()
                    .into_iter()
                    .filter(|n| Some(n.id) != owner && n.feeds.iter().any(|f| f == ups))
                    .filter(|n| !endgame::duties(&self.s, n.id).is_empty())
                    .map(|n| n.id)
                    .collect();
                let order = self
                    .s
                    .outage
                    .as_ref()
                    .and_then(|o| o.kill_power.get(ups).cloned());
                for h in fed_owners {
                    let (Some(n), Some(k)) = (self.s.host(h), order.as_ref()) else {
                        continue;
                    };
                    let at = endgame::feed_cut_deadline_ms(&self.s, &self.plan, n, k);
                    self.due.push((at, Due::FeedCut(h)));
                }
            }
            _ => {}
        }
    }

    fn record_kill(&mut self, ups: &str, dt: i64, delay_s: u32, alone: bool) {
        if let Some(u) = self.tl.upses.iter_mut().find(|u| u.name == ups) {
            u.kill.get_or_insert(KillLine {
                ordered_ms: dt,
                delay_s,
                alone,
            });
        }
    }

    /// No quorum: each UPS owner finishes alone from the committed facts and its
    /// probes; every other host still up falls back to its own shutdown after
    /// `dead_time_s` (an owner with a kill still to carry out, after it).
    fn alone(&mut self, t: i64) {
        let dt = t - self.t0;
        let lost = self.tl.quorum_lost_ms.unwrap_or(dt);
        let watching = self.t0 + lost + ALONE_GRACE_MS;
        let armed = self
            .s
            .outage
            .as_ref()
            .filter(|o| o.ended_ms.is_none())
            .and_then(|o| o.armed.clone())
            .unwrap_or_default();
        let end = endgame::plan_end_reached(&self.s, &self.plan);
        let mut pending: Vec<NodeId> = Vec::new();
        for order in &armed {
            let cut = self
                .tl
                .upses
                .iter()
                .any(|u| u.name == order.ups && (u.kill.is_some() || !u.on_battery));
            if cut || !self.up.get(&order.owner).copied().unwrap_or(false) {
                continue;
            }
            pending.push(order.owner);
            if !end || t < watching {
                continue;
            }
            // What the owner's probes saw: the hosts up answer, the others last
            // answered when they went down.
            let reached: BTreeMap<NodeId, i64> = self
                .tl
                .hosts
                .iter()
                .map(|(id, h)| {
                    let at = if self.up.get(id).copied().unwrap_or(false) {
                        t
                    } else {
                        self.t0 + h.down_ms.unwrap_or(0)
                    };
                    (*id, at)
                })
                .collect();
            if let Some(delay) =
                endgame::alone_delay(&self.s, &self.plan, order, &reached, watching, t)
            {
                self.record_kill(&order.ups, dt, delay, true);
                pending.pop();
            }
        }
        let fallback_at = self.t0 + lost + self.plan.dead_time_s as i64 * 1000;
        let ids: Vec<NodeId> = self.tl.hosts.keys().copied().collect();
        for h in ids {
            if !self.up.get(&h).copied().unwrap_or(false) || pending.contains(&h) {
                continue;
            }
            let line = &self.tl.hosts[&h];
            if line.halting_ms.is_some() {
                continue;
            }
            // A UPS owner whose stage started waits in it for its kill, then halts (a
            // bridge host falls back like any other: nothing is committed for it).
            let owner_in_stage =
                !endgame::kills(&line.duties).is_empty() && self.stage_of(h).is_some();
            if owner_in_stage {
                self.start_halt(h, t, HaltPath::AfterKill);
            } else if t >= fallback_at {
                self.start_halt(h, t, HaltPath::Fallback);
            }
        }
    }

    fn note_done(&mut self, t: i64) {
        let committable = self.committable();
        let Some(o) = self.s.outage.as_ref().filter(|o| o.ended_ms.is_none()) else {
            return;
        };
        for k in 0..o.stages.len() {
            let Some(line) = self.tl.stages.get_mut(k) else {
                continue;
            };
            if line.done_ms.is_some() {
                continue;
            }
            if committable && plan::stage_done(&self.s, &self.plan, k, t) {
                line.done_ms = Some(t - self.t0);
            }
        }
    }

    fn finished(&self) -> bool {
        let cut = self
            .tl
            .upses
            .iter()
            .filter(|u| u.on_battery)
            .all(|u| u.kill.is_some());
        let staged_down = self
            .tl
            .hosts
            .values()
            .filter(|h| h.stage.is_some() || !h.duties.is_empty())
            .all(|h| h.down_ms.is_some());
        cut && staged_down && self.due.is_empty()
    }

    /// Each host's supply runtime at its down time.
    fn margins(&mut self) {
        for h in self.tl.hosts.values_mut() {
            let Some(n) = self.s.host(h.id) else { continue };
            if n.feeds.is_empty() {
                continue;
            }
            let mut left: Vec<f64> = n
                .feeds
                .iter()
                .filter_map(|f| self.bats.get(f))
                .filter_map(|b| b.runtime_at(h.down_ms.unwrap_or(self.tl.end_ms)))
                .collect();
            left.sort_by(|a, b| b.total_cmp(a));
            let need = (n.min_supplies.max(1) as usize).min(left.len().max(1));
            h.margin_s = left.get(need - 1).copied().filter(|m| m.is_finite());
        }
    }
}
