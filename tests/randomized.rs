//! Seeded randomized outages on one real cluster (4 `upsilond` processes): each run
//! fails mains on the UPS, injects one fault at a random moment, lets the plan finish,
//! and returns mains. The faults, one per outage in turn: the leader SIGKILLed and
//! restarted after a random pause; a voter frozen (SIGSTOP) for up to 3 s; a voter's
//! disk filling up (it must exit or stop on SIGTERM in bounded time, then restart on
//! the same directory); a voter's data directory wiped before the outage (the cluster
//! re-admits the new store by itself, giving up the old seat first, and it promotes
//! itself back, with no operator); the
//! leader frozen for longer than the election timeout mid-stage, then resumed; the UPS
//! owner frozen while on battery; a voter's network slow (every call delayed) and
//! stalling (calls to one peer hang until their timeout) rather than dropping cleanly
//! (the fault-injecting transport, `UPSILON_FAULT_FILE`); a voter's data directory
//! turning read-only mid-outage for a few seconds (no file can be created; it keeps
//! running or exits and is restarted). After each run the invariants are checked on the replicated history:
//! every stage started once and in order, kill power after every stage, once, and only
//! after every host the UPS feeds was down ("halted" or silent), every host
//! acknowledged halting, no host shut down twice in one outage. A failure prints the seed; replay a run with
//! `UPSILON_RANDOM_SEED=<seed> UPSILON_RANDOM_RUNS=1 cargo test -p upsilon-tests --test randomized`.

use std::collections::BTreeMap;
use std::time::Duration;

use upsilon_tests::*;

use upsilon_core::testing::Rng;

/// The fault injected into one outage.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    Freeze,
    FullDisk,
    WipeAndRejoin,
    FreezeLeader,
    FreezeOwner,
    SlowNetwork,
    ReadOnlyDisk,
}

impl Fault {
    fn of(seed: u64) -> Fault {
        [
            Fault::KillLeader,
            Fault::Freeze,
            Fault::FullDisk,
            Fault::WipeAndRejoin,
            Fault::FreezeLeader,
            Fault::FreezeOwner,
            Fault::SlowNetwork,
            Fault::ReadOnlyDisk,
        ][(seed % 8) as usize]
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

/// Wipes voter `v`'s store and brings it back the way an operator would: it is
/// refused, removed, rejoins as a new member and (the cluster then having 2 voters)
/// promotes itself.
fn wipe_and_rejoin(c: &mut TestCluster, v: usize) -> Result<(), String> {
    c.kill(v);
    // The directory is a mount point: empty it.
    for e in std::fs::read_dir(c.data_dir(v)).map_err(|e| e.to_string())? {
        let p = e.map_err(|e| e.to_string())?.path();
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| format!("{}: {e}", p.display()))?;
    }
    c.start_node(v);
    // No operator: the leader retires the old store, re-admits the new one as a learner
    // (its seat given up first) and it promotes itself back once caught up.
    let other = (1..=4).find(|i| *i != v && c.is_up(*i)).unwrap_or(4);
    let back = wait_for(Duration::from_secs(60), || {
        let s = c.status(v)?;
        let cl = &s["cluster"];
        (cl["voters"] == 3 && cl["learners"] == 1 && cl["writable"] == true).then_some(())
    });
    back.ok_or_else(|| {
        format!(
            "n{v} did not come back as a voter: it says {:?}; n{other} says {:?}\nn{v}'s log:\n{}",
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
    let o = c.cli(i, &["events", "--json", "-n", "1000"]);
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("").to_string(),
                v["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
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

#[test]
fn randomized_outages_with_leader_kills_keep_the_invariants() {
    let runs: u64 = std::env::var("UPSILON_RANDOM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let base: u64 = std::env::var("UPSILON_RANDOM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // n1-n3 vote; n4 is a learner that drives the UPS, so killing a leader never
    // silences it.
    let mut c = TestCluster::start(ClusterSpec {
        nodes: 4,
        voters: 3,
        ups_on: vec![4],
        extra: "[policy]\nbattery_level = 0\nminutes = 0\n".into(),
        poll_ms: 200,
        cluster_extra: vec![
            "feeds = [\"ups4\"]\nplan = \"plan.toml\"".into(),
            "feeds = [\"ups4\"]".into(),
            "feeds = [\"ups4\"]".into(),
            "feeds = [\"ups4\"]".into(),
        ],
        ups_toml: vec![],
        executor_extra: String::new(),
        executor_of: vec![],
        timing: upsilon_tests::TEST_TIMING.to_string(),
        ..Default::default()
    });
    std::fs::write(c.pki.path().join("plan.toml"), plan()).unwrap();
    c.wait_formed(1, 3, 1, Duration::from_secs(60));
    wait_for(Duration::from_secs(20), || {
        let v: serde_json::Value =
            serde_json::from_slice(&c.cli(4, &["plan", "--json"]).stdout).ok()?;
        (v["has_plan"] == true).then_some(())
    })
    .expect("plan replicated");

    // The voters' data directories live on small disks, for the full-disk fault.
    let disks: BTreeMap<usize, SmallDisk> = (1..=3)
        .map(|i| {
            let d = c.put_data_on_small_disk(i, "24m");
            c.wait_formed(i, 3, 1, Duration::from_secs(30));
            (i, d)
        })
        .collect();

    let mut shutdowns_before: BTreeMap<usize, usize> = BTreeMap::new();
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
        if let Fault::WipeAndRejoin = fault {
            // Before the outage: the host is back, as a new member, when mains fail.
            // n1 bootstraps and has no seeds, so it could not rejoin by itself.
            let v = 2 + rng.below(2) as usize;
            if let Err(e) = wipe_and_rejoin(&mut c, v) {
                fail(e, &c);
            }
        }
        for i in 1..=4 {
            shutdowns_before.insert(
                i,
                c.records(i)
                    .iter()
                    .filter(|r| r["action"] == "shutdown")
                    .count(),
            );
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
                let leader = (1..=3)
                    .filter(|i| c.is_up(*i))
                    .find_map(|i| c.writable_leader(i))
                    .map(|l| l as usize);
                if let Some(l) = leader.filter(|l| *l <= 3) {
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
            Fault::WipeAndRejoin => {}
            Fault::FreezeLeader => {
                // Longer than the election timeout (500-1000 ms): a new leader takes
                // over while the old one is frozen, then it resumes as a follower.
                let leader = (1..=3)
                    .filter(|i| c.is_up(*i))
                    .find_map(|i| c.writable_leader(i))
                    .map(|l| l as usize);
                if let Some(l) = leader.filter(|l| *l <= 3) {
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
        let Some(h) = ended else {
            fail(format!("outage {id} did not end after mains returned"), &c);
        };
        if let Err(e) = check(id, &outage_events(&h, id)) {
            fail(e, &c);
        }
        for i in 1..=4 {
            let now = c
                .records(i)
                .iter()
                .filter(|r| r["action"] == "shutdown")
                .count();
            let ran = now - shutdowns_before[&i];
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
