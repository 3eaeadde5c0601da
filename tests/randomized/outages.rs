//! Seeded randomized outages on one real cluster (4 `upsilond` processes: voters n1-n3,
//! learner n4 driving the UPS): each run fails mains on the UPS, injects one fault, lets
//! the plan finish, and returns mains. The faults, one per outage in turn:
//! - the leader SIGKILLed and restarted after a random pause;
//! - a voter frozen (SIGSTOP) for up to 3 s; the leader frozen for longer than the
//!   election timeout mid-stage, then resumed; the UPS owner frozen while on battery;
//! - a voter's disk filling up (it must exit or stop on SIGTERM in bounded time, then
//!   restart on the same directory); a voter's data directory turning read-only for a
//!   few seconds (it keeps running or exits and is restarted) — both with one core kept
//!   busy, the load under which a store thread's failure once went unseen;
//! - a voter's network slow (every call delayed) and stalling (calls to one peer hang
//!   until their timeout) rather than dropping cleanly (`UPSILON_FAULT_FILE`);
//! - before the outage, a voter's or the learner's data directory wiped (a reinstall),
//!   or replaced by an older copy of itself (a VM restored from an image): the cluster
//!   re-admits it with no operator, a voter's seat given up first.
//!
//! After each run the invariants are checked: every stage started once and in order,
//! kill power after every stage, once, and only after every host the UPS feeds was down
//! ("halted" or silent), every host acknowledged halting, no host shut down twice in
//! one outage; no event committed by an earlier run lost or changed on any node; no
//! term with two leaders in any node's log (a forgotten vote that counted would make
//! one). A failure prints the seed; replay a run with
//! `UPSILON_RANDOM_SEED=<seed> UPSILON_RANDOM_RUNS=1 cargo test -p upsilon-tests --test randomized`,
//! and run one kind of fault many times with `UPSILON_RANDOM_FAULTS=ReadOnlyDisk,FullDisk`.
//! The runs are split in two halves, each on a cluster of its own, in two test binaries
//! (`randomized`: the first seeds, `randomized_2`: the rest) that run side by side.

use std::collections::BTreeMap;
use std::time::Duration;

use upsilon_tests::*;

use upsilon_core::testing::Rng;

/// The fault injected into one outage.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    KillLeader,
    Freeze,
    FullDisk,
    WipeAndRejoin,
    FreezeLeader,
    FreezeOwner,
    SlowNetwork,
    ReadOnlyDisk,
    WipeLearner,
    RestoreVoter,
    RestoreLearner,
}

/// The faults in turn (a run's seed picks one). The read-only disk comes twice: it is
/// the race the disk faults exist to show gone.
const FAULTS: [Fault; 12] = [
    Fault::KillLeader,
    Fault::Freeze,
    Fault::FullDisk,
    Fault::WipeAndRejoin,
    Fault::ReadOnlyDisk,
    Fault::FreezeLeader,
    Fault::FreezeOwner,
    Fault::SlowNetwork,
    Fault::WipeLearner,
    Fault::ReadOnlyDisk,
    Fault::RestoreVoter,
    Fault::RestoreLearner,
];

impl Fault {
    /// The fault of run `seed`; `UPSILON_RANDOM_FAULTS` (names, comma-separated, as
    /// printed) narrows the rotation to those, to run one kind many times.
    fn of(seed: u64) -> Fault {
        let only = std::env::var("UPSILON_RANDOM_FAULTS").unwrap_or_default();
        let pick: Vec<Fault> = FAULTS
            .into_iter()
            .filter(|f| only.is_empty() || only.split(',').any(|o| o.trim() == format!("{f:?}")))
            .collect();
        assert!(
            !pick.is_empty(),
            "UPSILON_RANDOM_FAULTS names no fault: {only:?}"
        );
        pick[(seed % pick.len() as u64) as usize]
    }

    /// Disk faults run with one core kept busy: the race they look for (a store thread
    /// failing unseen) showed on a loaded machine.
    fn loads_the_machine(self) -> bool {
        matches!(self, Fault::FullDisk | Fault::ReadOnlyDisk)
    }
}

/// Keeps one core busy until dropped.
struct BusyCore(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl BusyCore {
    fn start() -> BusyCore {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        BusyCore(stop)
    }
}

impl Drop for BusyCore {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn freeze(c: &TestCluster, i: usize, for_ms: u64) {
    let pid = c.nodes[i - 1].as_ref().unwrap().child.id() as i32;
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    std::thread::sleep(Duration::from_millis(for_ms));
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
}

/// Empties a data directory (a mount point for the voters: it stays).
fn empty_dir(dir: &std::path::Path) -> Result<(), String> {
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let p = e.map_err(|e| e.to_string())?.path();
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

/// Wipes node `v`'s store (as a reinstall would) and waits for it to be back in its
/// place with no operator: the leader retires the old store, re-admits the new one as
/// a learner (a voter's seat given up first) and a voter promotes itself back once
/// caught up.
fn wipe_and_rejoin(c: &mut TestCluster, v: usize) -> Result<(), String> {
    c.kill(v);
    empty_dir(&c.data_dir(v))?;
    c.start_node(v);
    back_in_place(c, v, "wiped", 0)?;
    // The cluster says what it did.
    let said = history(c, any_up_node(c))
        .iter()
        .any(|(_, m)| m.starts_with(&format!("n{v} ")) && m.contains("new data directory"));
    if !said {
        return Err(format!(
            "no event says n{v} came back with a new data directory"
        ));
    }
    Ok(())
}

/// Puts an older copy of node `v`'s data directory back (as restoring a VM image
/// would): the copy is taken, the node acknowledges more entries, then it is killed
/// and the copy restored. It lost entries it had acknowledged, and (a voter) the votes
/// it gave since: the leader re-admits it like a wiped store, and it is back in place.
fn restore_old_copy(c: &mut TestCluster, v: usize) -> Result<(), String> {
    let backup = c.pki.path().join(format!("n{v}-copy"));
    let _ = std::fs::remove_dir_all(&backup);
    if c.stop(v, Duration::from_secs(15)).is_none() {
        return Err(format!("n{v} did not stop on SIGTERM"));
    }
    copy_dir(&c.data_dir(v), &backup);
    c.start_node(v);
    let leader = any_up_node(c);
    let at = c.applied(leader).unwrap_or(0);
    wait_for(Duration::from_secs(30), || {
        (c.applied(v)? > at + 5).then_some(())
    })
    .ok_or_else(|| format!("n{v} did not replicate past {at} before its copy was restored"))?;
    let acked = c.applied(v).unwrap_or(0);
    c.kill(v);
    empty_dir(&c.data_dir(v))?;
    copy_dir(&backup, &c.data_dir(v));
    c.start_node(v);
    back_in_place(c, v, "restored from an old copy", acked)?;
    // Re-admitted when the leader remembers what it acknowledged (the same leader);
    // a new leader only sees a follower behind, and it catches up.
    let readmitted = history(c, any_up_node(c))
        .iter()
        .any(|(_, m)| m.starts_with(&format!("n{v} ")) && m.contains("older copy"));
    eprintln!("n{v} restored from an old copy: re-admitted {readmitted}");
    Ok(())
}

/// Waits (60 s) for node `v` to be back as it was (3 voters, 1 learner, writable),
/// having applied at least `applied`.
fn back_in_place(c: &TestCluster, v: usize, how: &str, applied: u64) -> Result<(), String> {
    let other = (1..=4).find(|i| *i != v && c.is_up(*i)).unwrap_or(4);
    let back = wait_for(Duration::from_secs(60), || {
        let s = c.status(v)?;
        let cl = &s["cluster"];
        (cl["voters"] == 3
            && cl["learners"] == 1
            && cl["writable"] == true
            && cl["last_applied"].as_u64()? >= applied)
            .then_some(())
    });
    back.ok_or_else(|| {
        format!(
            "n{v} ({how}) did not come back in place having applied {applied}: it says {:?}; n{other} says {:?}\nn{v}'s log:\n{}",
            c.status(v).map(|s| s["cluster"].clone()),
            c.status(other).map(|s| s["cluster"].clone()),
            c.log_of(v)
        )
    })
}

/// batch (n3) and apps (n2) after 1 s and 2 s on battery, core (n1, n4) below 80 %.
fn plan() -> String {
    three_stage_plan(
        ["\"n3\"", "\"n2\"", "\"n1\", \"n4\""],
        [1, 2],
        80,
        [8, 8, 8],
    )
}

/// (name, message) of every replicated event, as node `i` sees it.
fn history(c: &TestCluster, i: usize) -> Vec<(String, String)> {
    numbered_history(c, i).into_values().collect()
}

/// Node `i`'s replicated events by sequence number.
fn numbered_history(c: &TestCluster, i: usize) -> BTreeMap<u64, (String, String)> {
    let o = c.cli(i, &["events", "--json", "-n", "1000"]);
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some((
                v["seq"].as_u64()?,
                (
                    v["name"].as_str().unwrap_or("").to_string(),
                    v["message"].as_str().unwrap_or("").to_string(),
                ),
            ))
        })
        .collect()
}

/// No committed entry lost: every event committed by the end of an earlier run is
/// still there, unchanged, on every node that is up (within the window each keeps).
fn no_committed_event_lost(
    c: &TestCluster,
    committed: &BTreeMap<u64, (String, String)>,
) -> Result<(), String> {
    for i in (1..=4).filter(|i| c.is_up(*i)) {
        let now = numbered_history(c, i);
        let Some(first) = now.keys().next().copied() else {
            return Err(format!("n{i} lists no events"));
        };
        for (seq, ev) in committed.range(first..) {
            if now.get(seq) != Some(ev) {
                return Err(format!(
                    "n{i} lost committed event {seq} {ev:?}: it has {:?}",
                    now.get(seq)
                ));
            }
        }
    }
    Ok(())
}

/// The copies agree: two nodes that applied the same log index hold the same state
/// (the digest of its stored form). Nodes are sampled until two met at one index.
fn copies_agree(c: &TestCluster) -> Result<(), String> {
    let mut seen: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    let mut compared = 0;
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while compared < 3 && std::time::Instant::now() < until {
        for i in (1..=4).filter(|i| c.is_up(*i)) {
            let Some(s) = c.status(i) else { continue };
            let (Some(index), Some(digest)) = (
                s["cluster"]["state_index"].as_u64(),
                s["cluster"]["state_digest"].as_str(),
            ) else {
                continue;
            };
            match seen.get(&index) {
                Some((d, by)) if d != digest => {
                    return Err(format!(
                        "the copies diverged: at index {index} n{by} holds state {d}, n{i} holds {digest}"
                    ));
                }
                Some((_, by)) if *by != i => compared += 1,
                Some(_) => {}
                None => {
                    seen.insert(index, (digest.to_string(), i));
                }
            }
        }
    }
    if compared == 0 {
        return Err("no two nodes were seen at the same applied index in 15 s".into());
    }
    Ok(())
}

/// No forgotten vote counts: a vote forgotten (a wiped or restored voter) that counted
/// would let two nodes lead in one term. Every node logs each leader it sees with its
/// term; no term may have two.
fn one_leader_per_term(c: &TestCluster) -> Result<(), String> {
    let mut leaders: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    for i in 1..=4 {
        for line in c.log_of(i).lines() {
            let Some(rest) = line.split("leader: ").nth(1) else {
                continue;
            };
            // "n2 (id 2), term 7"
            let id = rest
                .split("(id ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .map(str::to_string);
            let term = rest
                .split("term ")
                .nth(1)
                .and_then(|t| t.split(|ch: char| !ch.is_ascii_digit()).next())
                .and_then(|t| t.parse::<u64>().ok());
            let (Some(name), Some(term)) = (id, term) else {
                continue;
            };
            match leaders.get(&term) {
                Some((other, seen_by)) if *other != name => {
                    return Err(format!(
                        "two leaders in term {term}: node {other} (seen by n{seen_by}) and node {name} (seen by n{i})"
                    ));
                }
                Some(_) => {}
                None => {
                    leaders.insert(term, (name, i));
                }
            }
        }
    }
    if leaders.is_empty() {
        return Err("no node logged a leader: the check read nothing".into());
    }
    Ok(())
}

/// The events of outage `id` (from its start to its end).
fn outage_events(h: &[(String, String)], id: u64) -> Vec<(String, String)> {
    let start = format!("Outage {id} began");
    let end = format!("Outage {id} ended");
    let Some(a) = h.iter().position(|(_, m)| m.starts_with(&start)) else {
        return vec![];
    };
    let b = h
        .iter()
        .position(|(_, m)| m.starts_with(&end))
        .unwrap_or(h.len() - 1);
    h[a..=b].to_vec()
}

fn any_up_node(c: &TestCluster) -> usize {
    (1..=3)
        .find(|i| c.is_up(*i) && c.writable_leader(*i).is_some())
        .unwrap_or(4)
}

fn check(id: u64, ev: &[(String, String)]) -> Result<(), String> {
    let stages: Vec<&str> = ev
        .iter()
        .filter(|(n, _)| n == "stagestart")
        .map(|(_, m)| m.as_str())
        .collect();
    let want = ["Stage 1 (batch)", "Stage 2 (apps)", "Stage 3 (core)"];
    if stages.len() != 3 || !stages.iter().zip(want).all(|(m, w)| m.starts_with(w)) {
        return Err(format!("outage {id}: stages {stages:?}"));
    }
    let kills: Vec<usize> = ev
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n == "killpower")
        .map(|(i, _)| i)
        .collect();
    let last_stage = ev.iter().rposition(|(n, _)| n == "stagestart").unwrap();
    if kills.len() != 1 || kills[0] < last_stage {
        return Err(format!(
            "outage {id}: kill power at {kills:?}, last stage at {last_stage}"
        ));
    }
    // Kill power only once every host ups4 feeds but its owner (n4) was down.
    for host in ["n1", "n2", "n3"] {
        let down = ev.iter().position(|(n, m)| {
            n == "notice"
                && (m.starts_with(&format!("{host} halted ("))
                    || m.starts_with(&format!("{host} is down:")))
        });
        if down.is_none_or(|d| d > kills[0]) {
            return Err(format!(
                "outage {id}: kill power at {} before {host} was down (at {down:?})",
                kills[0]
            ));
        }
    }
    for host in ["n1", "n2", "n3", "n4"] {
        let halting = ev
            .iter()
            .filter(|(n, m)| n == "nodeack" && m.starts_with(&format!("{host} is halting")))
            .count();
        if halting != 1 {
            return Err(format!(
                "outage {id}: {host} acknowledged halting {halting} times"
            ));
        }
    }
    Ok(())
}

/// The voter (n1-n3) a running voter names as its writable leader, if any.
fn voter_leading(c: &TestCluster) -> Option<usize> {
    (1..=3)
        .filter(|i| c.is_up(*i))
        .find_map(|i| c.writable_leader(i))
        .map(|l| l as usize)
        .filter(|l| *l <= 3)
}

/// Runs half `half` (0 or 1) of the seeded runs on a cluster of its own: the first
/// half of the seeds from `UPSILON_RANDOM_SEED` (1), then the rest, of
/// `UPSILON_RANDOM_RUNS` (50) in all. The two halves are two test binaries, so they
/// run side by side.
pub fn run_half(half: usize) {
    let runs: u64 = std::env::var("UPSILON_RANDOM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let base: u64 = std::env::var("UPSILON_RANDOM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let first_half = runs.div_ceil(2);
    let (base, runs) = if half == 0 {
        (base, first_half)
    } else {
        (base + first_half, runs - first_half)
    };
    if runs == 0 {
        return;
    }
    // n1-n3 vote; n4 is a learner that drives the UPS, so killing a leader never
    // silences it.
    let mut c = ClusterSpec::new(4, 3)
        .ups_on(&[4])
        .local_thresholds_off()
        .feeds(&["ups4"])
        .plan(&plan())
        .start_formed();
    c.wait_plan(4);

    // The voters' data directories live on small disks, for the full-disk fault.
    let disks: BTreeMap<usize, SmallDisk> = (1..=3)
        .map(|i| {
            let d = c.put_data_on_small_disk(i, "24m");
            c.wait_formed(i, 3, 1, Duration::from_secs(30));
            (i, d)
        })
        .collect();

    let mut shutdowns_before: BTreeMap<usize, usize> = BTreeMap::new();
    // Every event committed by the end of the last run.
    let mut committed = numbered_history(&c, 4);
    for id in 1..=runs {
        let seed = base + id - 1;
        let mut rng = Rng(seed);
        let fail = |what: String, c: &TestCluster| -> ! {
            panic!(
                "seed {seed} (run {id}): {what}\nreplay: UPSILON_RANDOM_SEED={seed} UPSILON_RANDOM_RUNS=1 cargo test -p upsilon-tests --test randomized\n{}",
                c.logs()
            )
        };
        let fault = Fault::of(seed);
        eprintln!("run {id} (seed {seed}): {fault:?}");
        // Wipes and restores happen before the outage: the host is back in its place
        // when mains fail. n1 bootstraps and has no seeds, so it could not rejoin by
        // itself; n4 is the learner (and the UPS's owner).
        let voter = 2 + rng.below(2) as usize;
        let before = match fault {
            Fault::WipeAndRejoin => Some(wipe_and_rejoin(&mut c, voter)),
            Fault::WipeLearner => Some(wipe_and_rejoin(&mut c, 4)),
            Fault::RestoreVoter => {
                // Half the time the leader itself, if it is n2 or n3.
                let leader = c.writable_leader(any_up_node(&c)).map(|l| l as usize);
                let v = match leader {
                    Some(l @ 2..=3) if rng.below(2) == 0 => l,
                    _ => voter,
                };
                Some(restore_old_copy(&mut c, v))
            }
            Fault::RestoreLearner => Some(restore_old_copy(&mut c, 4)),
            _ => None,
        };
        if let Some(Err(e)) = before {
            fail(e, &c);
        }
        let busy = fault.loads_the_machine().then(BusyCore::start);
        for i in 1..=4 {
            shutdowns_before.insert(i, shutdowns(&c, i));
        }
        let o = c.cli(
            4,
            &[
                "sim",
                "set",
                "--on-battery",
                "--charge",
                "100",
                "--drain",
                "8",
            ],
        );
        if !o.status.success() {
            fail(format!("sim set failed: {}", stderr(&o)), &c);
        }
        // One fault at a random moment of the run.
        std::thread::sleep(Duration::from_millis(rng.below(5000)));
        let victim = 1 + rng.below(3) as usize;
        match fault {
            Fault::KillLeader => {
                if let Some(l) = voter_leading(&c) {
                    c.kill(l);
                    std::thread::sleep(Duration::from_millis(500 + rng.below(2500)));
                    c.start_node(l);
                }
            }
            Fault::Freeze => freeze(&c, victim, 500 + rng.below(2500)),
            Fault::FullDisk => {
                let disk = &disks[&victim];
                disk.fill();
                // It exits by itself once a write fails, or stops on SIGTERM; either
                // way within a bounded time.
                std::thread::sleep(Duration::from_millis(500 + rng.below(2500)));
                if c.stop(victim, Duration::from_secs(15)).is_none() {
                    fail(format!("n{victim} did not stop on a full disk"), &c);
                }
                disk.free();
                if let Err(e) = c.try_start_node(victim) {
                    fail(
                        format!("n{victim} did not restart after a full disk: {e}"),
                        &c,
                    );
                }
            }
            Fault::WipeAndRejoin
            | Fault::WipeLearner
            | Fault::RestoreVoter
            | Fault::RestoreLearner => {}
            Fault::FreezeLeader => {
                // Longer than the election timeout (500-1000 ms): a new leader takes
                // over while the old one is frozen, then it resumes as a follower.
                if let Some(l) = voter_leading(&c) {
                    freeze(&c, l, 1500 + rng.below(2500));
                }
            }
            Fault::FreezeOwner => freeze(&c, 4, 1000 + rng.below(3000)),
            Fault::SlowNetwork => {
                // Every call from the victim waits 150 ms, and calls to one peer hang
                // until their timeout, for a few seconds; then the network heals.
                let peer = 1 + (victim % 3);
                let file = c.pki.path().join(format!("fault-n{victim}"));
                std::fs::write(&file, format!("delay 150\nstall {}\n", c.addr(peer))).unwrap();
                std::thread::sleep(Duration::from_millis(2000 + rng.below(3000)));
                std::fs::write(&file, "").unwrap();
            }
            Fault::ReadOnlyDisk => {
                // Its data directory turns read-only for a while (no new file: no
                // stage marker, no snapshot, no peers file), then writable again; the
                // node keeps running throughout.
                let disk = &disks[&victim];
                disk.read_only(true);
                std::thread::sleep(Duration::from_millis(1000 + rng.below(3000)));
                disk.read_only(false);
                let exited = c.nodes[victim - 1]
                    .as_mut()
                    .is_none_or(|n| n.child.try_wait().is_ok_and(|s| s.is_some()));
                if exited {
                    // It may exit on a failed write: then it restarts, as systemd would.
                    if let Err(e) = c.try_start_node(victim) {
                        fail(
                            format!("n{victim} did not restart after a read-only directory: {e}"),
                            &c,
                        );
                    }
                }
            }
        }
        // The plan finishes: kill power carried out for this outage.
        let done = wait_for(Duration::from_secs(60), || {
            let h = history(&c, any_up_node(&c));
            let ev = outage_events(&h, id);
            ev.iter()
                .any(|(_, m)| m.contains("kill power done"))
                .then_some(())
        });
        if done.is_none() {
            fail(
                format!(
                    "outage {id} never reached kill power: {:?}",
                    outage_events(&history(&c, 4), id)
                ),
                &c,
            );
        }
        // Every host's halting ack lands (a restarted host finishes its stage).
        let acked = wait_for(Duration::from_secs(30), || {
            let ev = outage_events(&history(&c, 4), id);
            (ev.iter()
                .filter(|(n, m)| n == "nodeack" && m.contains("is halting"))
                .count()
                >= 4)
                .then_some(())
        });
        if acked.is_none() {
            fail(
                format!("acks missing: {:?}", outage_events(&history(&c, 4), id)),
                &c,
            );
        }
        let o = c.cli(4, &["sim", "set", "--on-line"]);
        if !o.status.success() {
            fail(format!("sim set failed: {}", stderr(&o)), &c);
        }
        let ended = wait_for(Duration::from_secs(30), || {
            let h = history(&c, 4);
            h.iter()
                .any(|(_, m)| m.starts_with(&format!("Outage {id} ended")))
                .then_some(h)
        });
        drop(busy);
        let Some(h) = ended else {
            fail(format!("outage {id} did not end after mains returned"), &c);
        };
        if let Err(e) = check(id, &outage_events(&h, id))
            .and_then(|_| no_committed_event_lost(&c, &committed))
            .and_then(|_| one_leader_per_term(&c))
            .and_then(|_| copies_agree(&c))
        {
            fail(e, &c);
        }
        committed = numbered_history(&c, 4);
        for i in 1..=4 {
            let ran = shutdowns(&c, i) - shutdowns_before[&i];
            if ran > 1 {
                fail(
                    format!("n{i} ran its shutdown {ran} times in outage {id}"),
                    &c,
                );
            }
        }
        // Let the halted hosts' power cycles settle before the next outage.
        std::thread::sleep(Duration::from_millis(1500));
    }
}
