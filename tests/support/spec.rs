//! How a test cluster is laid out, said once: [`ClusterSpec`] is the one builder every
//! multi-node test and bench starts its cluster with, and it alone writes the nodes'
//! configs.

use std::path::PathBuf;
use std::time::Duration;

use upsilon_client::pki::{IssueRequest, Role};

use crate::{TestCluster, TestPki, free_port};

/// The `[cluster]` timing of test clusters: elections and stale UPSes found in a few
/// seconds rather than the defaults' longer times.
pub const TEST_TIMING: &str =
    "heartbeat_ms = 500\nstale_after_ms = 3000\nelection_timeout_ms = 500";

/// A test cluster's layout. Node `i` (1-based) has Raft id `i`, listens on 127.0.0.`i`;
/// node 1 bootstraps and the others join through it; nodes `1..=voters` are voters.
///
/// ```ignore
/// let c = ClusterSpec::new(4, 3)
///     .local_thresholds_off()
///     .feeds(&["ups1"])
///     .labels(&["core", "core", "apps", "batch"])
///     .plan(&plan)
///     .start_formed();
/// ```
#[derive(Clone)]
pub struct ClusterSpec {
    nodes: usize,
    voters: usize,
    ups_on: Vec<usize>,
    poll_ms: u64,
    policy: Vec<String>,
    sections: Vec<String>,
    /// `[cluster]` keys: node 0 stands for every node.
    cluster_keys: Vec<(usize, String)>,
    ups_toml: Vec<(usize, String)>,
    /// `[executor]` keys: node 0 stands for every node.
    executor_keys: Vec<(usize, String)>,
    plan: Option<String>,
    timing: String,
    faults: bool,
    data_dirs: Vec<(usize, PathBuf)>,
    default_log: bool,
}

impl ClusterSpec {
    /// `nodes` nodes of which the first `voters` are voters; node 1 owns a simulated
    /// UPS `ups1` polled every 200 ms; the fast test timing; fault files on.
    pub fn new(nodes: usize, voters: usize) -> Self {
        assert!(
            voters >= 1 && voters <= nodes,
            "{voters} voters of {nodes} nodes"
        );
        ClusterSpec {
            nodes,
            voters,
            ups_on: vec![1],
            poll_ms: 200,
            policy: vec![],
            sections: vec![],
            cluster_keys: vec![],
            ups_toml: vec![],
            executor_keys: vec![],
            plan: None,
            timing: TEST_TIMING.to_string(),
            faults: true,
            data_dirs: vec![],
            default_log: false,
        }
    }

    /// The nodes that own a simulated UPS, named `ups<i>` (none: `&[]`).
    pub fn ups_on(mut self, nodes: &[usize]) -> Self {
        self.ups_on = nodes.to_vec();
        self
    }

    /// The simulated UPSes' poll interval.
    pub fn poll_ms(mut self, ms: u64) -> Self {
        self.poll_ms = ms;
        self
    }

    /// Node `i`'s `[[ups]]` TOML, instead of a simulated UPS (an apcsmart UPS on a pty,
    /// an emulated USB device...).
    pub fn ups_toml(mut self, i: usize, toml: impl Into<String>) -> Self {
        self.ups_on.retain(|n| *n != i);
        self.ups_toml.push((i, toml.into()));
        self
    }

    /// `[policy]` keys of every node.
    pub fn policy(mut self, keys: &str) -> Self {
        self.policy.push(keys.to_string());
        self
    }

    /// Every node's own apcupsd-style thresholds off (`battery_level = 0`,
    /// `minutes = 0`): the plan decides who shuts down when.
    pub fn local_thresholds_off(self) -> Self {
        self.policy("battery_level = 0\nminutes = 0")
    }

    /// Every node runs the event scripts in `hooks/` beside its config.
    pub fn hooks(self) -> Self {
        self.toml("[hooks]\nscript_dir = \"hooks\"")
    }

    /// More TOML sections for every node (a `[nis]` here replaces the default one).
    pub fn toml(mut self, sections: &str) -> Self {
        self.sections.push(sections.to_string());
        self
    }

    /// `[cluster]` keys of every node.
    pub fn every_node(mut self, keys: &str) -> Self {
        self.cluster_keys.push((0, keys.to_string()));
        self
    }

    /// `[cluster]` keys of node `i`.
    pub fn node(mut self, i: usize, keys: &str) -> Self {
        self.cluster_keys.push((i, keys.to_string()));
        self
    }

    /// Every node is fed by these UPSes.
    pub fn feeds(self, ups: &[&str]) -> Self {
        let list: Vec<String> = ups.iter().map(|u| format!("\"{u}\"")).collect();
        self.every_node(&format!("feeds = [{}]", list.join(", ")))
    }

    /// One label per node, in node order.
    pub fn labels(mut self, labels: &[&str]) -> Self {
        for (i, l) in labels.iter().enumerate() {
            self = self.node(i + 1, &format!("labels = [\"{l}\"]"));
        }
        self
    }

    /// Each node's declared shutdown time, in node order.
    pub fn shutdown_s(mut self, secs: &[u64]) -> Self {
        for (i, s) in secs.iter().enumerate() {
            self = self.node(i + 1, &format!("shutdown_s = {s}"));
        }
        self
    }

    /// A staged plan: written to `plan.toml` before the nodes start, and node 1
    /// proposes it (`plan = "plan.toml"`).
    pub fn plan(mut self, toml: &str) -> Self {
        self.plan = Some(toml.to_string());
        self.node(1, "plan = \"plan.toml\"")
    }

    /// `[executor]` keys of every node (e.g. `ups_commands = "send"`).
    pub fn executor(mut self, keys: &str) -> Self {
        self.executor_keys.push((0, keys.to_string()));
        self
    }

    /// `[executor]` keys of node `i`, after every node's.
    pub fn executor_of(mut self, i: usize, keys: &str) -> Self {
        self.executor_keys.push((i, keys.to_string()));
        self
    }

    /// The `[cluster]` timing keys of every node instead of [`TEST_TIMING`]; empty for
    /// the daemon's defaults (benchmarks of idle cost).
    pub fn timing(mut self, keys: &str) -> Self {
        self.timing = keys.to_string();
        self
    }

    /// No fault file (`UPSILON_FAULT_FILE`): benchmarks, since each Raft call then
    /// reads that file, which no deployment does. Partitions need it.
    pub fn no_faults(mut self) -> Self {
        self.faults = false;
        self
    }

    /// Node `i`'s data directory instead of `data-n<i>` beside its config (e.g. on
    /// tmpfs, to take the shared disk out of a benchmark).
    pub fn data_dir(mut self, i: usize, dir: PathBuf) -> Self {
        self.data_dirs.push((i, dir));
        self
    }

    /// The daemon's default log filter instead of the tests' (`info,openraft=warn`, or
    /// `UPSILON_TEST_LOG`): for tests of the logs themselves.
    pub fn default_log(mut self) -> Self {
        self.default_log = true;
        self
    }

    /// Writes the certificates, configs and plan, and starts every node (each listening).
    pub fn start(self) -> TestCluster {
        let pki = TestPki::new();
        let port = free_port();
        let nis_port = free_port();
        let configs: Vec<String> = (1..=self.nodes)
            .map(|i| {
                pki.issue(&IssueRequest::new(
                    &format!("n{i}"),
                    Role::Node,
                    vec![format!("127.0.0.{i}")],
                    30,
                ));
                self.config_of(i, port, nis_port)
            })
            .collect();
        if let Some(plan) = &self.plan {
            std::fs::write(pki.path().join("plan.toml"), plan).unwrap();
        }
        let mut c = TestCluster {
            pki,
            port,
            nis_port,
            voters: self.voters,
            nodes: (0..self.nodes).map(|_| None).collect(),
            configs,
            faults: self.faults,
            default_log: self.default_log,
        };
        for i in 1..=self.nodes {
            c.start_node(i);
        }
        c
    }

    /// [`Self::start`], then waits until node 1 sees every voter and learner and
    /// accepts writes.
    pub fn start_formed(self) -> TestCluster {
        let timeout = Duration::from_secs(30 + 10 * self.nodes as u64);
        self.start_formed_within(timeout)
    }

    /// [`Self::start_formed`] with a deadline of its own (benchmarks with the daemon's
    /// slower default timing).
    pub fn start_formed_within(self, timeout: Duration) -> TestCluster {
        let (voters, learners) = (self.voters as u64, (self.nodes - self.voters) as u64);
        let c = self.start();
        c.wait_formed(1, voters, learners, timeout);
        c
    }

    /// Node `i`'s config file.
    fn config_of(&self, i: usize, port: u16, nis_port: u16) -> String {
        let ups = if let Some((_, t)) = self.ups_toml.iter().find(|(n, _)| *n == i) {
            t.clone()
        } else if self.ups_on.contains(&i) {
            format!(
                "[[ups]]\nname = \"ups{i}\"\ndriver = \"sim\"\npoll_interval_ms = {}\n",
                self.poll_ms
            )
        } else {
            String::new()
        };
        let of = |keys: &[(usize, String)]| -> String {
            keys.iter()
                .filter(|(n, _)| *n == 0 || *n == i)
                .map(|(_, k)| format!("{k}\n"))
                .collect()
        };
        let policy = if self.policy.is_empty() {
            String::new()
        } else {
            format!("[policy]\n{}\n", self.policy.join("\n"))
        };
        let sections = self.sections.join("\n\n");
        let nis = if sections.contains("[nis]") {
            String::new()
        } else {
            format!("[nis]\nlisten = \"127.0.0.{i}:{nis_port}\"\n")
        };
        let seeds = if i == 1 {
            "[]".to_string()
        } else {
            format!("[\"127.0.0.1:{port}\"]")
        };
        let data_dir = self
            .data_dirs
            .iter()
            .find(|(n, _)| *n == i)
            .map_or_else(|| format!("data-n{i}"), |(_, d)| d.display().to_string());
        format!(
            "[node]\nname = \"n{i}\"\nlisten = \"127.0.0.{i}:{port}\"\n\n\
             [tls]\nca = \"certs/ca.pem\"\ncert = \"certs/n{i}.pem\"\nkey = \"certs/n{i}.key\"\n\n\
             {ups}\n{policy}\n{sections}\n\n{nis}\n\
             [executor]\nrecord_file = \"record-n{i}.jsonl\"\n{executor}\n\
             [cluster]\nid = {i}\ndata_dir = \"{data_dir}\"\nbootstrap = {boot}\nseeds = {seeds}\n\
             voter = {voter}\n{timing}\n{cluster}",
            executor = of(&self.executor_keys),
            boot = i == 1,
            voter = i <= self.voters,
            timing = self.timing,
            cluster = of(&self.cluster_keys),
        )
    }
}
