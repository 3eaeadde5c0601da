//! `plan check`'s predicted timeline against a seeded simulation of the real
//! coordinator, on generated clusters: 1-30 hosts (some of them legacy hosts behind a
//! bridge), 1-4 UPSes owned by nodes placed anywhere in the plan, dual feeds with
//! `min_supplies`, 0-5 voters anywhere in the plan, declared and measured shutdown
//! times, triggers of every kind and the runtime floor.
//!
//! The simulation is event-driven to the millisecond and does what the nodes do, with
//! the timing the model leaves out: the leader's coordinator runs after every apply and
//! on a 500 ms timer of random phase; each UPS owner polls every second at a random
//! phase and reports through `UpsReport`; the leader records liveness (`Seen`) every
//! second; hosts acknowledge after a random latency, say "halted" after their shutdown
//! time, an owner cuts its UPS a few milliseconds after its order and halts after it;
//! once fewer than a quorum of voters is up nothing commits, an owner finishes alone
//! (probing every second, `alone_delay`) and the other hosts fall back after
//! `dead_time_s`. Every stage start, kill order and host down time must agree with the
//! prediction to within one tick (`TICK_MS`) plus the acknowledgement latencies the
//! simulation drew (and, once the quorum is gone, two ticks more, one for the owner's
//! once-a-second probes and one for the hosts' fallback loop that it waits for, and
//! one more per owner before it that cut alone; from the first stage held back until
//! the previous one's ack timeout runs out, half a tick more: the coordinator notices
//! the expiry on its 500 ms timer, after the previous stage's own lateness).
//! One thing no model can time: a quorum lost at the very moment
//! something else is committed (hosts going down together: one's "halted", a stage
//! start or a kill order it unblocks, and another taking the quorum): whichever the
//! leader sees first wins, so what follows such a race is not compared. A failure prints its seed.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use upsilon_core::reading::UpsReading;
use upsilon_core::replicated::NodeId;
use upsilon_core::replicated::endgame;
use upsilon_core::replicated::legacy::{LEGACY_ID_BASE, LegacyHostDecl};
use upsilon_core::replicated::plan::{self, Plan, Stage, Trigger};
use upsilon_core::replicated::state::{Command, MeasuredShutdown, PowerState, UpsReport};
use upsilon_core::replicated::timeline::{self, TICK_MS, Timeline};
use upsilon_core::testing::Rng;
use upsilon_core::view::UpsStatus;

const T0: i64 = 1_800_000_000_000;
/// The most a simulated host takes to acknowledge (each of its two acks).
const MAX_ACK_MS: u64 = 40;

/// A generated cluster: the state before the outage, its voters, and each UPS's
/// runtime and charge at the start.
struct Cluster {
    state: PowerState,
    voters: Vec<NodeId>,
    runtime: BTreeMap<String, (f64, f64)>,
}

fn report(
    ups: &str,
    owner: NodeId,
    seq: u64,
    at: i64,
    on_battery: bool,
    runtime: f64,
    charge: f64,
) -> Command {
    let r = UpsReading::basic(
        on_battery,
        charge,
        runtime,
        std::time::SystemTime::UNIX_EPOCH,
    );
    Command::UpsReport(Box::new(UpsReport {
        ups: ups.into(),
        owner,
        seq,
        at_ms: at,
        events: vec![],
        status: UpsStatus {
            driver: "sim".into(),
            reading: Some(r),
            on_battery,
            // Whole seconds, as a real owner reports them.
            time_on_battery_s: if on_battery {
                ((at - T0) / 1000) as u32
            } else {
                0
            },
            ..Default::default()
        },
    }))
}

fn generate(seed: u64) -> Cluster {
    let mut rng = Rng(seed);
    let nodes = 1 + rng.below(24);
    let legacy = if rng.chance(30) { 1 + rng.below(6) } else { 0 };
    let upses = 1 + rng.below(4);
    let ups_names: Vec<String> = (1..=upses).map(|u| format!("ups{u}")).collect();
    let mut s = PowerState::default();
    let mut at = T0 - 60_000;
    let mut host_names = Vec::new();
    let feeds_of = |rng: &mut Rng| {
        let mut f = vec![ups_names[rng.below(upses) as usize].clone()];
        if upses > 1 && rng.chance(30) {
            let other = ups_names[rng.below(upses) as usize].clone();
            if other != f[0] {
                f.push(other);
            }
        }
        let min = if f.len() == 2 && rng.chance(50) { 2 } else { 1 };
        (f, min)
    };
    for id in 1..=nodes {
        let (feeds, min_supplies) = feeds_of(&mut rng);
        let name = format!("n{id}");
        host_names.push(name.clone());
        s.apply(&Command::NodeUp {
            id,
            name,
            addr: format!("127.0.0.1:{}", 7000 + id),
            labels: vec![],
            version: "test".into(),
            feeds,
            min_supplies,
            shutdown_s: 1 + rng.below(40) as u32,
            at_ms: at,
        });
        at += 1;
    }
    let decls: Vec<LegacyHostDecl> = (1..=legacy)
        .map(|k| {
            let (feeds, min_supplies) = feeds_of(&mut rng);
            LegacyHostDecl {
                name: format!("legacy{k}"),
                addresses: vec![format!("127.0.1.{k}")],
                labels: vec![],
                feeds,
                min_supplies,
                protocol: "nis".into(),
                shutdown_s: 1 + rng.below(40) as u32,
            }
        })
        .collect();
    host_names.extend(decls.iter().map(|d| d.name.clone()));
    if !decls.is_empty() {
        // The bridge runs on one of the nodes, or its host is not said.
        let runs_on = rng.chance(60).then(|| format!("n{}", 1 + rng.below(nodes)));
        s.apply(&Command::LegacyHostsDeclare {
            bridge: "bridge1".into(),
            hosts: decls,
            at_ms: at,
            runs_on,
        });
    }
    let mut runtime = BTreeMap::new();
    for (k, u) in ups_names.iter().enumerate() {
        // Every UPS has an owner; a node may own two.
        let owner = 1 + (k as u64 + rng.below(nodes)) % nodes;
        let r = 300.0 + rng.below(1500) as f64;
        let c = 50.0 + rng.below(51) as f64;
        runtime.insert(u.clone(), (r, c));
        s.apply(&report(u, owner, 1, at, false, r, c));
    }
    // Measured shutdowns, some longer than declared.
    for id in 1..=nodes {
        if rng.chance(20) {
            s.shutdown_measured.insert(
                id,
                MeasuredShutdown {
                    outage: 0,
                    to_silence_ms: Some(rng.below(60_000) as i64),
                    to_halted_ms: None,
                },
            );
        }
    }
    // The plan: every host in one stage (a few in none), triggers of every kind.
    let stages = 1 + rng.below(5) as usize;
    let mut members: Vec<Vec<String>> = vec![vec![]; stages];
    for h in &host_names {
        if rng.chance(95) {
            members[rng.below(stages as u64) as usize].push(h.clone());
        }
    }
    let plan = Plan {
        stages: members
            .into_iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, hosts)| {
                let mut t = Trigger::default();
                match rng.below(4) {
                    0 => t.on_battery_s = Some(rng.below(120)),
                    1 => t.runtime_below_s = Some(100 + rng.below(1200)),
                    2 => t.charge_below = Some(10.0 + rng.below(80) as f64),
                    _ => {
                        t.on_battery_s = Some(rng.below(300));
                        t.runtime_below_s = Some(100 + rng.below(600));
                    }
                }
                Stage {
                    name: format!("s{k}"),
                    hosts,
                    trigger: t,
                    ack_timeout_s: 5 + rng.below(60),
                    command: None,
                    shutdown_s: rng.chance(20).then(|| 1 + rng.below(30) as u32),
                }
            })
            .collect(),
        runtime_floor_s: 30 + rng.below(120),
        dead_time_s: 15,
        kill_power_delay_s: 20,
        silence_s: 10,
    };
    s.apply(&Command::SetPlan {
        plan,
        at_ms: at,
        by: "test".into(),
    });
    let voters: Vec<NodeId> = match rng.below(4) {
        0 => vec![],
        1 => vec![1 + rng.below(nodes)],
        2 if nodes >= 3 => {
            let mut v: BTreeSet<NodeId> = BTreeSet::new();
            while v.len() < 3 {
                v.insert(1 + rng.below(nodes));
            }
            v.into_iter().collect()
        }
        _ if nodes >= 5 => {
            let mut v: BTreeSet<NodeId> = BTreeSet::new();
            while v.len() < 5 {
                v.insert(1 + rng.below(nodes));
            }
            v.into_iter().collect()
        }
        _ => vec![],
    };
    Cluster {
        state: s,
        voters,
        runtime,
    }
}

/// What the simulation saw, in the timeline's terms (ms after `T0`).
#[derive(Debug, Default)]
struct Seen {
    stage_start: BTreeMap<usize, i64>,
    kill: BTreeMap<String, (i64, u32)>,
    down: BTreeMap<NodeId, i64>,
    /// Acknowledgement latency drawn along the way (the model takes it as zero).
    latency_ms: i64,
}

#[derive(Debug, Clone)]
enum Ev {
    Coordinator,
    Poll(String),
    Seen,
    Ack(u64, usize, NodeId, bool),
    Halted(NodeId),
    Cut(String),
    FeedCut(NodeId),
    Release(NodeId),
    Probe,
}

struct Sim {
    c: Cluster,
    s: PowerState,
    rng: Rng,
    queue: Vec<(i64, u64, Ev)>,
    order: u64,
    up: BTreeMap<NodeId, bool>,
    seq: BTreeMap<String, u64>,
    seen: Seen,
    lost_at: Option<i64>,
    alone_cut: BTreeSet<String>,
    halting: BTreeSet<NodeId>,
    fallback_at: Option<i64>,
    /// Owners with a kill still to carry out alone, as of the last probe round.
    pending: BTreeSet<NodeId>,
    /// Hosts whose stage started while they had duties: they halt after them.
    deferred: BTreeSet<NodeId>,
}

impl Sim {
    fn at(&mut self, t: i64, e: Ev) {
        self.order += 1;
        self.queue.push((t, self.order, e));
    }

    fn lat(&mut self) -> i64 {
        let l = self.rng.below(MAX_ACK_MS + 1) as i64;
        self.seen.latency_ms += l;
        l
    }

    fn committable(&self) -> bool {
        self.lost_at.is_none()
    }

    fn quorum_check(&mut self, t: i64) {
        if self.lost_at.is_some() || self.c.voters.is_empty() {
            return;
        }
        let live = self.c.voters.iter().filter(|v| self.up[v]).count();
        if live < self.c.voters.len() / 2 + 1 {
            self.lost_at = Some(t);
            self.fallback_at = Some(t + self.plan().dead_time_s as i64 * 1000);
        }
    }

    fn plan(&self) -> Plan {
        self.s.plan.clone().expect("a plan")
    }

    fn apply(&mut self, c: &Command, t: i64) {
        if !self.committable() {
            return;
        }
        self.s.apply(c);
        self.react(c, t);
    }

    fn coordinate(&mut self, t: i64) {
        for _ in 0..64 {
            if !self.committable() {
                return;
            }
            let cmds = plan::decide(&self.s, t);
            if cmds.is_empty() {
                return;
            }
            for c in cmds {
                self.apply(&c, t);
            }
        }
    }

    fn react(&mut self, c: &Command, t: i64) {
        match c {
            Command::StageStart {
                outage,
                stage,
                hosts,
                ..
            } => {
                self.seen.stage_start.insert(*stage, t - T0);
                for h in hosts {
                    if !self.up[h] {
                        continue;
                    }
                    let l = self.lat();
                    self.at(t + l, Ev::Ack(*outage, *stage, *h, false));
                    if !endgame::duties(&self.s, *h).is_empty() {
                        // Its halt is deferred: after its kill power (an owner) or once
                        // its bridge's hosts are down (`release`).
                        self.deferred.insert(*h);
                        continue;
                    }
                    self.halting.insert(*h);
                    let took = self.shutdown_ms(*h) + self.lat();
                    if *h >= LEGACY_ID_BASE {
                        // The bridge acks halting once the host fell silent.
                        self.at(t + took, Ev::Halted(*h));
                    } else {
                        let l2 = self.lat();
                        self.at(t + l + l2, Ev::Ack(*outage, *stage, *h, true));
                        self.at(t + took, Ev::Halted(*h));
                    }
                }
            }
            Command::KillPower { ups, delay_s, .. } => {
                self.seen.kill.insert(ups.clone(), (t - T0, *delay_s));
                let l = self.lat();
                self.at(t + l, Ev::Cut(ups.clone()));
                // Other owners it feeds halt uncut unless their own order follows.
                let owner = self.s.upses[ups].owner;
                let fed: Vec<NodeId> = self
                    .s
                    .hosts()
                    .iter()
                    .filter(|n| n.id != owner && n.feeds.contains(ups))
                    .filter(|n| !endgame::duties(&self.s, n.id).is_empty())
                    .map(|n| n.id)
                    .collect();
                let plan = self.plan();
                let order = self
                    .s
                    .outage
                    .as_ref()
                    .and_then(|o| o.kill_power.get(ups).cloned());
                for h in fed {
                    let (Some(n), Some(k)) = (self.s.host(h), order.as_ref()) else {
                        continue;
                    };
                    let at = endgame::feed_cut_deadline_ms(&self.s, &plan, n, k);
                    self.at(at, Ev::FeedCut(h));
                }
            }
            _ => {}
        }
    }

    fn shutdown_ms(&self, h: NodeId) -> i64 {
        let plan = self.plan();
        let n = self.s.host(h).expect("a host");
        endgame::shutdown_s(&self.s, &plan, n) as i64 * 1000
    }

    fn stage_of(&self, h: NodeId) -> Option<(u64, usize)> {
        let o = self.s.outage.as_ref()?;
        let k = o.stages.iter().position(|r| r.hosts.contains(&h))?;
        Some((o.id, k))
    }

    /// A host a bridge runs on (and owning no UPS) sees its bridge's hosts down, as it
    /// polls the committed state: it halts.
    fn release(&mut self, t: i64) {
        if !self.committable() {
            return;
        }
        let free: Vec<NodeId> = self
            .deferred
            .iter()
            .copied()
            .filter(|h| self.up[h] && !self.halting.contains(h))
            .filter(|h| endgame::kills(&endgame::deferrable(&self.s, *h)).is_empty())
            .filter(|h| endgame::duties(&self.s, *h).is_empty())
            .collect();
        for h in free {
            self.deferred.remove(&h);
            let l = self.lat();
            self.at(t + l, Ev::Release(h));
        }
    }

    /// A host begins its halt now (an owner after its kill, or a fallback).
    fn halt(&mut self, h: NodeId, t: i64) {
        if !self.up[&h] || !self.halting.insert(h) {
            return;
        }
        if let Some((o, k)) = self.stage_of(h) {
            self.at(t, Ev::Ack(o, k, h, true));
        }
        let took = self.shutdown_ms(h);
        self.at(t + took, Ev::Halted(h));
    }

    fn handle(&mut self, t: i64, e: Ev) {
        match e {
            Ev::Coordinator => {
                self.coordinate(t);
                // The fallback loop ticks with it.
                self.fallback(t);
                self.at(t + 500, Ev::Coordinator);
            }
            Ev::Poll(u) => {
                let (r0, c0) = self.c.runtime[&u];
                let owner = self.s.upses[&u].owner;
                if self.up[&owner] && self.committable() {
                    let left = (r0 - (t - T0) as f64 / 1000.0).max(0.0);
                    let seq = self.seq.entry(u.clone()).or_insert(1);
                    *seq += 1;
                    let cmd = report(&u, owner, *seq, t, true, left, c0 * left / r0);
                    self.apply(&cmd, t);
                    self.coordinate(t);
                }
                self.at(t + 1000, Ev::Poll(u));
            }
            Ev::Seen => {
                let live: Vec<(NodeId, i64)> = self
                    .s
                    .nodes
                    .keys()
                    .filter(|id| self.up[id])
                    .map(|id| (*id, t))
                    .collect();
                self.apply(
                    &Command::Seen {
                        seen: live,
                        at_ms: t,
                    },
                    t,
                );
                // The bridge reports its live legacy hosts as seen.
                for (id, up) in self.up.clone() {
                    if up && let Some(l) = self.s.legacy.get_mut(&id) {
                        l.host.last_seen_ms = t;
                    }
                }
                self.coordinate(t);
                self.at(t + 1000, Ev::Seen);
            }
            Ev::Ack(o, k, h, halting) => {
                self.apply(
                    &Command::NodeAck {
                        outage: o,
                        stage: k,
                        node: h,
                        halting,
                        at_ms: t,
                    },
                    t,
                );
                self.coordinate(t);
            }
            Ev::Halted(h) => {
                if h >= LEGACY_ID_BASE {
                    if let Some((o, k)) = self.stage_of(h) {
                        self.apply(
                            &Command::NodeAck {
                                outage: o,
                                stage: k,
                                node: h,
                                halting: true,
                                at_ms: t,
                            },
                            t,
                        );
                    }
                } else {
                    self.apply(&Command::HostHalted { node: h, at_ms: t }, t);
                }
                self.up.insert(h, false);
                self.seen.down.entry(h).or_insert(t - T0);
                self.quorum_check(t);
                self.coordinate(t);
            }
            Ev::Cut(u) => {
                self.apply(
                    &Command::UpsActionDone {
                        ups: u.clone(),
                        power_cycle: false,
                        ok: true,
                        result: "simulated".into(),
                        at_ms: t,
                    },
                    t,
                );
                // The owner's marker says it is cut, committed or not.
                self.alone_cut.insert(u.clone());
                let owner = self.s.upses[&u].owner;
                let cut_all = endgame::kills(&endgame::duties(&self.s, owner))
                    .iter()
                    .all(|d| self.alone_cut.contains(*d));
                if cut_all && (self.stage_of(owner).is_some() || self.lost_at.is_some()) {
                    self.halt(owner, t);
                }
                self.coordinate(t);
            }
            Ev::FeedCut(h) => {
                let duties = endgame::duties(&self.s, h);
                let kills = endgame::kills(&duties);
                let ordered = kills
                    .iter()
                    .any(|u| self.seen.kill.contains_key(*u) || self.alone_cut.contains(*u));
                if !kills.is_empty() && !ordered {
                    self.halt(h, t);
                }
            }
            Ev::Release(h) => self.halt(h, t),
            Ev::Probe => {
                self.alone(t);
                self.at(t + 1000, Ev::Probe);
            }
        }
    }

    /// No quorum: owners finish alone from their probes, the others fall back.
    fn alone(&mut self, t: i64) {
        let Some(lost) = self.lost_at else { return };
        let plan = self.plan();
        let watching = lost + timeline::ALONE_GRACE_MS;
        let armed = self
            .s
            .outage
            .as_ref()
            .and_then(|o| o.armed.clone())
            .unwrap_or_default();
        let end = endgame::plan_end_reached(&self.s, &plan);
        let mut pending = BTreeSet::new();
        for order in armed {
            if self.alone_cut.contains(&order.ups)
                || self.seen.kill.contains_key(&order.ups)
                || !self.up[&order.owner]
            {
                continue;
            }
            if !end || t < watching {
                pending.insert(order.owner);
                continue;
            }
            let reached: BTreeMap<NodeId, i64> = self
                .up
                .iter()
                .map(|(id, up)| {
                    let last = if *up {
                        t
                    } else {
                        T0 + self.seen.down.get(id).copied().unwrap_or(0)
                    };
                    (*id, last)
                })
                .collect();
            let Some(d) = endgame::alone_delay(&self.s, &plan, &order, &reached, watching, t)
            else {
                pending.insert(order.owner);
                continue;
            };
            {
                self.seen.kill.insert(order.ups.clone(), (t - T0, d));
                self.alone_cut.insert(order.ups.clone());
                let owner = order.owner;
                let still = self
                    .s
                    .outage
                    .as_ref()
                    .and_then(|o| o.armed.clone())
                    .unwrap_or_default()
                    .iter()
                    .any(|k| {
                        k.owner == owner
                            && !self.alone_cut.contains(&k.ups)
                            && !self.seen.kill.contains_key(&k.ups)
                    });
                let in_stage = self.stage_of(owner).is_some();
                if !still && in_stage {
                    self.halt(owner, t);
                }
            }
        }
        self.pending = pending;
    }

    /// A host cut off from the quorum for `dead_time_s` shuts itself down (an owner
    /// with a kill still to carry out alone, after it).
    fn fallback(&mut self, t: i64) {
        let ids: Vec<NodeId> = self.up.keys().copied().collect();
        for h in ids {
            if self.pending.contains(&h) || self.halting.contains(&h) || !self.up[&h] {
                continue;
            }
            if t >= self.fallback_at.unwrap_or(i64::MAX) {
                self.halt(h, t);
            }
        }
    }

    fn run(c: Cluster, seed: u64) -> Seen {
        let mut rng = Rng(seed ^ 0x5eed);
        let s = c.state.clone();
        let up = s.hosts().iter().map(|n| (n.id, true)).collect();
        let mut sim = Sim {
            c,
            s,
            rng: Rng(rng.next_u64()),
            queue: vec![],
            order: 0,
            up,
            seq: BTreeMap::new(),
            seen: Seen::default(),
            lost_at: None,
            alone_cut: BTreeSet::new(),
            halting: BTreeSet::new(),
            fallback_at: None,
            pending: BTreeSet::new(),
            deferred: BTreeSet::new(),
        };
        // Mains fail on every UPS at T0: each owner reports it before the coordinator
        // runs (as the model assumes), then polls every second at a phase of its own.
        // Every host was heard from just now (the leader's `Seen`, the bridge's reports).
        let all: Vec<(NodeId, i64)> = sim.s.nodes.keys().map(|id| (*id, T0)).collect();
        sim.s.apply(&Command::Seen {
            seen: all,
            at_ms: T0,
        });
        for l in sim.s.legacy.values_mut() {
            l.host.last_seen_ms = T0;
        }
        let upses: Vec<String> = sim.s.upses.keys().cloned().collect();
        for u in &upses {
            let (r0, c0) = sim.c.runtime[u];
            let owner = sim.s.upses[u].owner;
            sim.seq.insert(u.clone(), 2);
            sim.s.apply(&report(u, owner, 2, T0, true, r0, c0));
            let next = T0 + 1 + sim.rng.below(1000) as i64;
            sim.at(next, Ev::Poll(u.clone()));
        }
        let phase = rng.below(500) as i64;
        sim.at(T0 + phase, Ev::Coordinator);
        sim.at(T0 + rng.below(1000) as i64, Ev::Seen);
        sim.at(T0 + rng.below(1000) as i64, Ev::Probe);
        // Once every battery is empty (and the longest halt over) nothing matters.
        let runtime = sim.c.runtime.values().map(|(r, _)| *r).fold(0.0, f64::max);
        let horizon = T0 + (runtime as i64 + 60 + 90) * 1000;
        while let Some(i) = (0..sim.queue.len()).min_by_key(|i| (sim.queue[*i].0, sim.queue[*i].1))
        {
            let (t, _, e) = sim.queue.swap_remove(i);
            if t > horizon {
                break;
            }
            sim.handle(t, e);
            sim.release(t);
            let done = sim.finished();
            if done {
                break;
            }
        }
        sim.seen
    }

    fn finished(&self) -> bool {
        let plan = self.plan();
        let hosts = self.s.hosts();
        let staged: BTreeSet<NodeId> = (0..plan.stages.len())
            .flat_map(|k| plan.stage_hosts(k, &hosts))
            .collect();
        let owners: BTreeSet<NodeId> = self.s.upses.values().map(|u| u.owner).collect();
        let all_down = staged.iter().chain(owners.iter()).all(|h| !self.up[h]);
        let all_cut = self.s.upses.keys().all(|u| self.seen.kill.contains_key(u));
        all_down && all_cut
    }
}

/// A UPS owner fed by another UPS whose order comes first halts uncut at a deadline
/// (`endgame::feed_cut_deadline_ms`) unless its own order comes before it: an own order
/// within the tolerance of that deadline is a tie the model and the simulation may
/// break either way (the host it waited for went down at that very moment).
fn feed_cut_tie(
    tl: &Timeline,
    seen: &Seen,
    feeds: &BTreeMap<NodeId, Vec<String>>,
    tol: i64,
) -> bool {
    tl.hosts.values().any(|h| {
        let own: Vec<i64> = endgame::kills(&h.duties)
            .iter()
            .filter_map(|u| {
                let p = tl
                    .upses
                    .iter()
                    .find(|x| x.name == *u)
                    .and_then(|x| x.kill.as_ref())
                    .map(|k| k.ordered_ms);
                let g = seen.kill.get(*u).map(|(at, _)| *at);
                p.into_iter().chain(g).min()
            })
            .collect();
        seen.kill.iter().any(|(f, (at, delay_s))| {
            let fed = feeds.get(&h.id).is_some_and(|v| v.contains(f));
            if !fed || endgame::kills(&h.duties).contains(&f.as_str()) {
                return false;
            }
            let needs = i64::from(h.shutdown_s) * 1000 + endgame::FEED_CUT_MARGIN_MS;
            let deadline = at + i64::from(*delay_s) * 1000 - needs;
            own.iter().any(|o| (o - deadline).abs() <= tol)
        })
    })
}

fn compare(
    seed: u64,
    tl: &Timeline,
    seen: &Seen,
    feeds: &BTreeMap<NodeId, Vec<String>>,
    ack_timeouts_ms: &[i64],
) -> Result<(), String> {
    let tol = TICK_MS + seen.latency_ms.min(2 * TICK_MS) + 1;
    // A stage held back until the previous one's ack timeout runs out starts, in the
    // model, exactly that timeout after the previous one; the coordinator notices the
    // expiry on its 500 ms timer (or the next apply), after the previous stage's own
    // lateness: from the first such stage on, half a tick more (seed
    // 955256269284746288: a stage 984 ms late, then 7 s of timeout, then 334 ms to the
    // next coordinator run).
    let timed_out = tl
        .stages
        .windows(2)
        .find_map(|w| {
            let (prev, next) = (w[0].start_ms?, w[1].start_ms?);
            let ack = *ack_timeouts_ms.get(w[0].index)?;
            (next == prev + ack).then_some(next)
        })
        .unwrap_or(i64::MAX);
    // Without a quorum an owner acts on its probes, once a second, on hosts that fall
    // back on a loop of their own: two ticks more, and one more for each owner before
    // it that cut alone (an owner may wait for another).
    let lost = tl.quorum_lost_ms.unwrap_or(i64::MAX);
    let alone: Vec<i64> = tl
        .upses
        .iter()
        .filter_map(|u| u.kill.as_ref().filter(|k| k.alone).map(|k| k.ordered_ms))
        .collect();
    // A quorum lost at the moment a kill order is decided is a race (which of the
    // hosts going down together is seen first): the model cannot time what follows,
    // so only what comes before it is compared.
    let race = tl.quorum_lost_ms.is_some_and(|q| {
        let near_q = |at: &i64| (at - q).abs() <= tol;
        let events = tl
            .upses
            .iter()
            .filter_map(|u| u.kill.as_ref().map(|k| k.ordered_ms))
            .chain(seen.kill.values().map(|(at, _)| *at))
            .chain(tl.stages.iter().filter_map(|s| s.start_ms))
            .chain(seen.stage_start.values().copied())
            .filter(near_q)
            .count();
        let downs = tl
            .hosts
            .values()
            .filter_map(|h| h.down_ms)
            .filter(near_q)
            .count();
        events > 0 || downs > 1
    });
    let cutoff = if race { lost - tol } else { i64::MAX };
    let near = |p: i64, g: i64| {
        if p.min(g) > cutoff {
            return true;
        }
        let mut extra = if p >= lost {
            TICK_MS * (2 + alone.iter().filter(|a| **a < p).count() as i64)
        } else {
            0
        };
        if p >= timed_out {
            extra += TICK_MS / 2;
        }
        (p - g).abs() <= tol + extra
    };
    for st in &tl.stages {
        let got = seen.stage_start.get(&st.index).copied();
        match (st.start_ms, got) {
            (Some(p), Some(g)) if near(p, g) => {}
            (None, None) => {}
            (Some(p), None) | (None, Some(p)) if p > cutoff => {}
            (p, g) => {
                return Err(format!(
                    "seed {seed}: stage {} predicted to start at {p:?} ms, simulated {g:?} ms (tolerance {tol} ms)",
                    st.index + 1
                ));
            }
        }
    }
    // Two UPSes free to cut at once (two feeds of a dual-fed host, or UPSes whose
    // hosts go down together): the coordinator orders one first, and that changes the
    // other (it waits for the host, or its delay counts an owner whose own order is not
    // given yet); which one goes first is a tie the model breaks by name and the
    // simulation by a few milliseconds. Kill orders (and what follows them) are
    // compared only without such a tie.
    let kill_times: Vec<i64> = tl
        .upses
        .iter()
        .filter_map(|u| u.kill.as_ref().map(|k| k.ordered_ms))
        .chain(seen.kill.values().map(|(at, _)| *at))
        .collect();
    let mismatch = tl
        .upses
        .iter()
        .any(|u| match (u.kill.as_ref(), seen.kill.get(&u.name)) {
            (Some(k), Some((g, d))) => (k.ordered_ms - g).abs() > tol || k.delay_s != *d,
            (None, None) => false,
            _ => true,
        });
    let tie = mismatch
        && kill_times
            .iter()
            .enumerate()
            .any(|(i, a)| kill_times[i + 1..].iter().any(|b| (a - b).abs() <= tol));
    if tie || feed_cut_tie(tl, seen, feeds, tol) {
        return Ok(());
    }
    for u in &tl.upses {
        let got = seen.kill.get(&u.name).copied();
        match (&u.kill, got) {
            (Some(k), Some((g, _))) if k.ordered_ms.min(g) > cutoff => {}
            // The delay may come out one owner's start longer in the model (a host seen
            // halting a few milliseconds earlier in the simulation), never shorter.
            (Some(k), Some((g, d)))
                if near(k.ordered_ms, g)
                    && i64::from(k.delay_s) + 1 + tol / 1000 >= i64::from(d)
                    && i64::from(k.delay_s)
                        <= i64::from(d) + 1 + tol / 1000 + i64::from(endgame::OWNER_START_S) => {}
            (None, None) => {}
            (Some(k), None) if k.ordered_ms > cutoff => {}
            (None, Some((g, _))) if g > cutoff => {}
            (k, g) => {
                return Err(format!(
                    "seed {seed}: UPS {} kill predicted {k:?}, simulated (at ms, delay s) {g:?} (tolerance {tol} ms)",
                    u.name
                ));
            }
        }
    }
    for h in tl.hosts.values() {
        let got = seen.down.get(&h.id).copied();
        match (h.down_ms, got) {
            (Some(p), Some(g)) if near(p, g) => {}
            (None, None) => {}
            (Some(p), None) | (None, Some(p)) if p > cutoff => {}
            (p, g) => {
                return Err(format!(
                    "seed {seed}: host {} predicted down at {p:?} ms, simulated {g:?} ms (tolerance {tol} ms)",
                    h.name
                ));
            }
        }
    }
    Ok(())
}

/// The two timelines, line by line, for a failure's message.
fn side_by_side(tl: &Timeline, seen: &Seen) -> String {
    let mut out = format!(
        "quorum lost (predicted) {:?}; simulated latency {} ms\n",
        tl.quorum_lost_ms, seen.latency_ms
    );
    for st in &tl.stages {
        out += &format!(
            "stage {} {:?}: predicted {:?} ({}), simulated {:?}; hosts {:?}\n",
            st.index + 1,
            st.name,
            st.start_ms,
            st.reason,
            seen.stage_start.get(&st.index),
            st.hosts
        );
    }
    for u in &tl.upses {
        out += &format!(
            "UPS {} (owner {}): predicted {:?}, simulated {:?}\n",
            u.name,
            u.owner,
            u.kill,
            seen.kill.get(&u.name)
        );
    }
    for h in tl.hosts.values() {
        out += &format!(
            "host {} stage {:?} duties {:?} {:?}: predicted halting {:?} down {:?}, simulated down {:?}\n",
            h.name,
            h.stage,
            h.duties,
            h.how,
            h.halting_ms,
            h.down_ms,
            seen.down.get(&h.id)
        );
    }
    out
}

fn one(seed: u64) -> Result<(), String> {
    let c = generate(seed);
    let tl = timeline::predict(&c.state, &c.voters, T0).expect("a plan");
    let feeds: BTreeMap<NodeId, Vec<String>> = c
        .state
        .hosts()
        .iter()
        .map(|n| (n.id, n.feeds.clone()))
        .collect();
    let ack_timeouts_ms: Vec<i64> = c
        .state
        .plan
        .as_ref()
        .map(|p| {
            p.stages
                .iter()
                .map(|s| s.ack_timeout_s as i64 * 1000)
                .collect()
        })
        .unwrap_or_default();
    let seen = Sim::run(c, seed);
    compare(seed, &tl, &seen, &feeds, &ack_timeouts_ms)
        .map_err(|e| format!("{e}\n{}", side_by_side(&tl, &seen)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn plan_check_predicts_the_seeded_simulation_of_the_coordinator(seed in any::<u64>()) {
        if let Err(e) = one(seed) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// Seeds that once failed, found by the random cases above, run every time.
#[test]
fn seeds_that_once_failed() {
    const SEEDS: &[u64] = &[
        // A stage held back by the previous one's 7 s ack timeout, that previous stage
        // 984 ms late, and the coordinator's timer 334 ms after the expiry.
        955_256_269_284_746_288,
    ];
    for seed in SEEDS {
        one(*seed).unwrap();
    }
}

/// Replays one seed, or a range: `UPSILON_TIMELINE_SEED=<seed>` or `=<from>..<to>`
/// `cargo test -p upsilon-core --test timeline_property replay`.
#[test]
fn replay() {
    let Ok(v) = std::env::var("UPSILON_TIMELINE_SEED") else {
        return;
    };
    let (from, to) = match v.split_once("..") {
        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
        None => {
            let s: u64 = v.parse().unwrap();
            (s, s + 1)
        }
    };
    for seed in from..to {
        one(seed).unwrap();
    }
}
