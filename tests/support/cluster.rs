//! A cluster of real `upsilond` processes on 127.0.0.x: start, stop, kill, partition
//! and ask each node; how it is laid out is [`ClusterSpec`]'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{NodeProc, TestPki, bin, stderr, stdout, upsilon, wait_for};

/// A cluster of real `upsilond` processes: node `i` (1-based) has Raft id `i`, listens
/// on 127.0.0.`i`, and its certificate names that address. Node 1 bootstraps; the
/// others join through it. Processes are SIGKILLed when dropped.
pub struct TestCluster {
    pub pki: TestPki,
    pub port: u16,
    /// Node i serves apcupsd's NIS on 127.0.0.i at this port.
    pub nis_port: u16,
    /// Nodes 1..=voters are meant to be voters.
    pub voters: usize,
    pub nodes: Vec<Option<NodeProc>>,
    /// Node `i`'s config file is `configs[i - 1]`.
    pub(crate) configs: Vec<String>,
    /// Nodes get a fault file (`UPSILON_FAULT_FILE`).
    pub(crate) faults: bool,
    /// Nodes log with the daemon's default filter (no `UPSILON_LOG`).
    pub(crate) default_log: bool,
}

impl TestCluster {
    pub fn addr(&self, i: usize) -> SocketAddr {
        format!("127.0.0.{i}:{}", self.port).parse().unwrap()
    }

    /// Starts (or restarts) node `i` with its config; its log is appended to.
    pub fn start_node(&mut self, i: usize) {
        if let Err(e) = self.try_start_node(i) {
            panic!("{e}");
        }
    }

    /// Like [`Self::start_node`], but an early exit is returned (with the log) instead of
    /// a panic.
    pub fn try_start_node(&mut self, i: usize) -> Result<(), String> {
        let config = self.pki.path().join(format!("n{i}.toml"));
        std::fs::write(&config, &self.configs[i - 1]).unwrap();
        let log = self.pki.path().join(format!("n{i}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(bin("upsilond"));
        if self.faults {
            cmd.env(
                "UPSILON_FAULT_FILE",
                self.pki.path().join(format!("fault-n{i}")),
            );
        }
        if self.default_log {
            cmd.env_remove("UPSILON_LOG");
        } else {
            cmd.env(
                "UPSILON_LOG",
                std::env::var("UPSILON_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            );
        }
        let child = cmd
            .arg("--config")
            .arg(&config)
            .env(
                "UPSILON_USB_EMULATOR",
                self.pki.path().join(format!("usb-n{i}.sock")),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut node = NodeProc {
            child,
            addr: self.addr(i),
            nis: format!("127.0.0.{i}:{}", self.nis_port).parse().unwrap(),
            log,
            config,
        };
        node.try_wait_listening()?;
        self.nodes[i - 1] = Some(node);
        Ok(())
    }

    /// Adds `[executor]` keys to node `i`'s config (taking effect at its next start).
    pub fn set_executor(&mut self, i: usize, keys: &str) {
        let cfg = &mut self.configs[i - 1];
        *cfg = cfg.replacen("[executor]\n", &format!("[executor]\n{keys}\n"), 1);
    }

    /// Adds `[[ups]]` TOML to node `i`'s config (taking effect at its next start).
    pub fn add_ups(&mut self, i: usize, ups: &str) {
        let cfg = &mut self.configs[i - 1];
        *cfg = cfg.replacen("[executor]\n", &format!("{ups}\n[executor]\n"), 1);
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.pki.path().join(format!("data-n{i}"))
    }

    /// Node `i`'s log file.
    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.pki.path().join(format!("n{i}.log"))).unwrap_or_default()
    }

    /// Stops node `i` with SIGTERM and waits (at most `timeout`) for it to exit.
    pub fn stop(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut n = self.nodes[i - 1].take()?;
        unsafe {
            libc::kill(n.child.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(st)) = n.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = n.child.kill();
        let _ = n.child.wait();
        None
    }

    /// Client options for the operator's certificate against node `i` (for in-process
    /// gRPC clients such as the benches).
    pub fn operator_options(&self, i: usize) -> upsilon_client::rpc::ClientOptions {
        let (ca, cert, key) = self.pki.files("operator");
        upsilon_client::rpc::ClientOptions {
            endpoint: self.addr(i).to_string(),
            ca,
            identity: Some((cert, key)),
        }
    }

    /// Cuts the network between the two groups of nodes (both ways), by fault injection.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for (side, other) in [(a, b), (b, a)] {
            let lines: String = other
                .iter()
                .map(|j| format!("{}\n", self.addr(*j)))
                .collect();
            for i in side {
                std::fs::write(self.pki.path().join(format!("fault-n{i}")), &lines).unwrap();
            }
        }
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i - 1].take() {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i - 1].is_some()
    }

    /// What node `i`'s executor recorded or ran (one JSON object per line).
    pub fn records(&self, i: usize) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.pki.path().join(format!("record-n{i}.jsonl")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `upsilon status --json` from node `i`, or None if it cannot be asked.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let o = upsilon(
            &self.pki,
            self.addr(i),
            Some("operator"),
            &["status", "--json"],
        );
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// Event names (without notices) as node `i` sees them.
    pub fn events(&self, i: usize) -> Vec<(String, String)> {
        let o = upsilon(
            &self.pki,
            self.addr(i),
            Some("operator"),
            &["events", "--json", "-n", "1000"],
        );
        stdout(&o)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["name"] != "notice")
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or("").to_string(),
                    v["ups"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Runs `upsilon` against node `i` as the operator.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        upsilon(&self.pki, self.addr(i), Some("operator"), args)
    }

    /// The leader's id as node `i` reports it, when it says writes are accepted.
    pub fn writable_leader(&self, i: usize) -> Option<u64> {
        let s = self.status(i)?;
        (s["cluster"]["writable"] == true)
            .then(|| s["cluster"]["leader_id"].as_u64())
            .flatten()
    }

    /// Waits until every running node shows its first UPS with status `status`.
    pub fn wait_ups_everywhere(&self, status: &str, timeout: Duration) {
        wait_for(timeout, || {
            (1..=self.nodes.len())
                .filter(|i| self.is_up(*i))
                .all(|i| {
                    self.status(i)
                        .is_some_and(|s| s["ups"][0]["status"] == status)
                })
                .then_some(())
        })
        .unwrap_or_else(|| panic!("not every node showed the UPS {status}\n{}", self.logs()));
    }

    /// `upsilon plan apply` of `toml` (written to `name` beside the configs) on node `i`.
    pub fn apply_plan(&self, i: usize, toml: &str, name: &str) -> Output {
        let path = self.pki.path().join(name);
        std::fs::write(&path, toml).unwrap();
        self.cli(i, &["plan", "apply", path.to_str().unwrap()])
    }

    /// [`Self::apply_plan`] on node 1 until it is accepted (the hosts it names may not
    /// have announced themselves yet).
    pub fn apply_plan_until_accepted(&self, toml: &str, name: &str) {
        wait_for(Duration::from_secs(20), || {
            self.apply_plan(1, toml, name)
                .status
                .success()
                .then_some(())
        })
        .unwrap_or_else(|| {
            let o = self.apply_plan(1, toml, name);
            panic!(
                "plan {name} never accepted: {}\n{}",
                stderr(&o),
                self.logs()
            )
        });
    }

    /// The last log index node `i` applied, or None if it cannot be asked.
    pub fn applied(&self, i: usize) -> Option<u64> {
        self.status(i)?["cluster"]["last_applied"].as_u64()
    }

    /// Waits until node `i` applied `more` entries beyond what node 1 had applied when
    /// asked (it replicates, acknowledging entries).
    pub fn wait_applied_beyond(&self, i: usize, more: u64) {
        let at = self.applied(1).expect("node 1's status");
        self.wait_applied(i, at + more + 1, Duration::from_secs(20));
    }

    /// Waits until node `i` has applied every entry node `from` had applied when asked.
    pub fn wait_caught_up(&self, i: usize, from: usize) {
        let target = self
            .applied(from)
            .unwrap_or_else(|| panic!("node {from} has no status"));
        self.wait_applied(i, target, Duration::from_secs(30));
    }

    /// Waits until node `i` applied log index `target`.
    fn wait_applied(&self, i: usize, target: u64, timeout: Duration) {
        wait_for(timeout, || (self.applied(i)? >= target).then_some(()))
            .unwrap_or_else(|| panic!("node {i} never applied entry {target}\n{}", self.logs()));
    }

    /// Waits until node `i` knows a staged plan (`upsilon plan --json`).
    pub fn wait_plan(&self, i: usize) {
        wait_for(Duration::from_secs(20), || {
            let v: serde_json::Value =
                serde_json::from_slice(&self.cli(i, &["plan", "--json"]).stdout).ok()?;
            (v["has_plan"] == true).then_some(())
        })
        .unwrap_or_else(|| panic!("node {i} never knew the plan\n{}", self.logs()));
    }

    /// Waits until node `i` sees `voters` voters and `learners` learners and accepts writes.
    pub fn wait_formed(&self, i: usize, voters: u64, learners: u64, timeout: Duration) {
        let ok = wait_for(timeout, || {
            let s = self.status(i)?;
            let c = &s["cluster"];
            // Nodes promote themselves only up to 3 voters (whichever ask first); an
            // operator promotes the rest, one at a time.
            if voters > 3
                && c["voters"]
                    .as_u64()
                    .is_some_and(|v| (3..voters).contains(&v))
            {
                let learner = s["nodes"].as_array().and_then(|ns| {
                    ns.iter().find_map(|n| {
                        let id = n["id"].as_u64()?;
                        (n["role"] == "learner" && id as usize <= self.voters).then_some(id)
                    })
                });
                if let Some(id) = learner {
                    self.cli(i, &["nodes", "promote", &id.to_string()]);
                }
            }
            (c["voters"] == voters && c["learners"] == learners && c["writable"] == true)
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "cluster did not form ({voters} voters, {learners} learners) within {timeout:?}; node {i} says {:?}\nlogs:\n{}",
            self.status(i).map(|s| s["cluster"].clone()),
            self.logs()
        );
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.nodes.len() {
            let text = std::fs::read_to_string(self.pki.path().join(format!("n{i}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- n{i} ---\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}
