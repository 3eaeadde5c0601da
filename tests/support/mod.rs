//! Helpers for the workspace integration tests: find the built binaries, make
//! certificates, write configs, and run `upsilond` / `upsilon` as real processes on
//! loopback. Every process is killed when its handle drops.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use upsilon_client::pki::{self, IssueRequest, Role};

pub mod apcupsd;
pub mod fakeusb;
pub mod legacy_peer;
pub mod modbus_slave;
pub mod nut;
pub mod proc_stats;
pub mod smartups;

/// `target/debug` (or whichever profile the tests were built with).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    // Test binaries live in target/<profile>/deps, other binaries in target/<profile>.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A workspace binary; the README's test command builds them before the tests.
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the integration tests (tests/run-all.sh does)",
        p.display()
    );
    p
}

/// A free loopback port (bound, then released), never one this process handed out
/// before: two ports asked for in a row must differ even though the first is not bound
/// yet.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the real-process tests of one test binary one at a time (they share the
/// machine's two cores and their timing matters); a test that panicked does not block
/// the rest.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A directory with a cluster CA, a node certificate and a client certificate.
pub struct TestPki {
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        pki::init_ca(&certs, "test").unwrap();
        pki::issue(
            &certs,
            &IssueRequest::new("node1", Role::Node, vec!["127.0.0.1".into()], 30),
        )
        .unwrap();
        pki::issue(
            &certs,
            &IssueRequest::new("operator", Role::Operator, vec![], 30),
        )
        .unwrap();
        TestPki { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// `(ca, cert, key)` for a holder in this PKI.
    pub fn files(&self, name: &str) -> (PathBuf, PathBuf, PathBuf) {
        let c = self.certs();
        (
            c.join("ca.pem"),
            c.join(format!("{name}.pem")),
            c.join(format!("{name}.key")),
        )
    }

    /// Issues one more certificate in this PKI.
    pub fn issue(&self, req: &IssueRequest) {
        pki::issue(&self.certs(), req).unwrap();
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `upsilond`, killed on drop. Its stderr (the log) goes to a file.
pub struct NodeProc {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where it serves apcupsd's NIS (unless the test's own `[nis]` says otherwise).
    pub nis: SocketAddr,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl NodeProc {
    /// Writes `node.toml` into `pki`'s directory with `extra` appended and starts it.
    pub fn start(pki: &TestPki, extra: &str) -> Self {
        Self::start_at(pki, "127.0.0.1", extra)
    }

    /// Like [`Self::start`], listening on loopback address `ip`.
    pub fn start_at(pki: &TestPki, ip: &str, extra: &str) -> Self {
        let port = free_port();
        let nis: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let nis_section = if extra.contains("[nis]") {
            String::new()
        } else {
            format!("\n[nis]\nlisten = \"{nis}\"\n")
        };
        let config = pki.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"node1\"\nlisten = \"{ip}:{port}\"\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node1.pem\"\nkey = \"certs/node1.key\"\n\n{extra}\n{nis_section}"
            ),
        )
        .unwrap();
        let log = pki.path().join("upsilond.log");
        let child = Command::new(bin("upsilond"))
            .arg("--config")
            .arg(&config)
            .env(
                "UPSILON_LOG",
                std::env::var("UPSILON_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // A usbhid or USB modbus UPS is the emulated device a test serves here.
            .env("UPSILON_USB_EMULATOR", pki.path().join("usb.sock"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let mut node = NodeProc {
            child,
            addr,
            nis,
            log,
            config,
        };
        node.wait_listening();
        node
    }

    fn wait_listening(&mut self) {
        if let Err(e) = self.try_wait_listening() {
            panic!("{e}");
        }
    }

    /// Waits until the node listens; an early exit is an error carrying its status.
    pub fn try_wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Err(format!(
                    "upsilond exited early ({st}); log:\n{}",
                    self.log_text()
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "upsilond did not listen on {} in 20 s; log:\n{}",
            self.addr,
            self.log_text()
        ))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `upsilon` against `addr` with the named client's certificate from `pki`
/// (`None`: no client certificate) and returns its output.
pub fn upsilon(pki: &TestPki, addr: SocketAddr, client: Option<&str>, args: &[&str]) -> Output {
    let (ca, _, _) = pki.files("node1");
    let mut cmd = Command::new(bin("upsilon"));
    cmd.args(args)
        .env("UPSILON_ENDPOINT", addr.to_string())
        .env("UPSILON_CA", ca)
        .env_remove("UPSILON_CERT")
        .env_remove("UPSILON_KEY")
        .env_remove("UPSILON_CLIENT_CONFIG")
        .env("HOME", pki.path());
    if let Some(name) = client {
        let (_, cert, key) = pki.files(name);
        cmd.env("UPSILON_CERT", cert).env("UPSILON_KEY", key);
    }
    cmd.output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `upsilon status --json` as a JSON value; panics with the CLI's stderr on failure.
pub fn status_json(pki: &TestPki, addr: SocketAddr) -> serde_json::Value {
    let o = upsilon(pki, addr, Some("operator"), &["status", "--json"]);
    assert!(o.status.success(), "upsilon status failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("status --json is JSON")
}

/// Polls `f` until it returns Some or the timeout passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
    configs: Vec<String>,
    faults: bool,
    /// Nodes log with the daemon's default filter (no `UPSILON_LOG`).
    default_log: bool,
}

/// How a test cluster is laid out.
pub struct ClusterSpec {
    pub nodes: usize,
    pub voters: usize,
    /// Nodes (1-based) that own a simulated UPS named `ups<i>`.
    pub ups_on: Vec<usize>,
    /// Extra TOML appended to every node's config (e.g. a `[policy]` section).
    pub extra: String,
    /// Poll interval of the simulated UPSes, ms.
    pub poll_ms: u64,
    /// Extra `[cluster]` keys per node (index 0 is node 1), e.g. feeds and labels.
    pub cluster_extra: Vec<String>,
    /// `[[ups]]` TOML for a node (1-based) instead of the simulated `ups<i>`, e.g. an
    /// apcsmart UPS on a pty.
    pub ups_toml: Vec<(usize, String)>,
    /// Extra `[executor]` keys for every node (e.g. `ups_commands = "send"`).
    pub executor_extra: String,
    /// More `[executor]` keys for one node (1-based), after `executor_extra`.
    pub executor_of: Vec<(usize, String)>,
    /// The `[cluster]` timing keys of every node: the fast test settings by default;
    /// empty for the daemon's defaults (benchmarks of idle cost).
    pub timing: String,
    /// Whether the nodes get a fault file (`UPSILON_FAULT_FILE`, for partitions). True
    /// for tests; benchmarks turn it off, since each Raft call then reads that file,
    /// which no deployment does.
    pub faults: bool,
    /// A node's (1-based) data directory instead of `data-n<i>` beside its config, e.g.
    /// on tmpfs to take the shared disk out of a benchmark.
    pub data_dirs: Vec<(usize, std::path::PathBuf)>,
    /// Start the nodes with the daemon's default log filter instead of the tests'
    /// (`info,openraft=warn`, or `UPSILON_TEST_LOG`): for tests of the logs themselves.
    pub default_log: bool,
}

/// The `[cluster]` timing of test clusters: elections and stale UPSes found in a few
/// seconds rather than the defaults' longer times.
pub const TEST_TIMING: &str =
    "heartbeat_ms = 500\nstale_after_ms = 3000\nelection_timeout_ms = 500";

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 3,
            voters: 3,
            ups_on: vec![1],
            extra: String::new(),
            poll_ms: 200,
            cluster_extra: vec![],
            ups_toml: vec![],
            executor_extra: String::new(),
            executor_of: vec![],
            timing: TEST_TIMING.to_string(),
            faults: true,
            data_dirs: vec![],
            default_log: false,
        }
    }
}

impl TestCluster {
    pub fn start(spec: ClusterSpec) -> Self {
        let pki = TestPki::new();
        let port = free_port();
        let nis_port = free_port();
        let mut configs = Vec::new();
        for i in 1..=spec.nodes {
            pki.issue(&IssueRequest::new(
                &format!("n{i}"),
                Role::Node,
                vec![format!("127.0.0.{i}")],
                30,
            ));
            let ups = if let Some((_, t)) = spec.ups_toml.iter().find(|(n, _)| *n == i) {
                t.clone()
            } else if spec.ups_on.contains(&i) {
                format!(
                    "[[ups]]\nname = \"ups{i}\"\ndriver = \"sim\"\npoll_interval_ms = {}\n",
                    spec.poll_ms
                )
            } else {
                String::new()
            };
            let seeds = if i == 1 {
                "[]".to_string()
            } else {
                format!("[\"127.0.0.1:{port}\"]")
            };
            let own: Vec<&str> = spec
                .executor_of
                .iter()
                .filter(|(n, _)| *n == i)
                .map(|(_, t)| t.as_str())
                .collect();
            let executor = format!("{}\n{}", spec.executor_extra, own.join("\n"));
            configs.push(format!(
                "[node]\nname = \"n{i}\"\nlisten = \"127.0.0.{i}:{port}\"\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/n{i}.pem\"\nkey = \"certs/n{i}.key\"\n\n{ups}\n{extra}\n{nis}\n[executor]\nrecord_file = \"record-n{i}.jsonl\"\n{ex}\n\n[cluster]\nid = {i}\ndata_dir = \"{data_dir}\"\nbootstrap = {boot}\nseeds = {seeds}\nvoter = {voter}\n{timing}\n{cx}\n",
                timing = spec.timing,
                data_dir = spec
                    .data_dirs
                    .iter()
                    .find(|(n, _)| *n == i)
                    .map_or_else(|| format!("data-n{i}"), |(_, d)| d.display().to_string()),
                extra = spec.extra,
                nis = if spec.extra.contains("[nis]") {
                    String::new()
                } else {
                    format!("\n[nis]\nlisten = \"127.0.0.{i}:{nis_port}\"\n")
                },
                ex = executor,
                boot = i == 1,
                voter = i <= spec.voters,
                cx = spec.cluster_extra.get(i - 1).cloned().unwrap_or_default(),
            ));
        }
        let mut c = TestCluster {
            pki,
            port,
            nis_port,
            voters: spec.voters,
            nodes: (0..spec.nodes).map(|_| None).collect(),
            configs,
            faults: spec.faults,
            default_log: spec.default_log,
        };
        for i in 1..=spec.nodes {
            c.start_node(i);
        }
        c
    }

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

/// The `p`th percentile (0-100) of sorted values, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Every node's `Watch` events, as (node number, event name, arrival time), for the
/// latency benches. The watch tasks stop when this is dropped.
pub struct EventWatch {
    rx: tokio::sync::mpsc::UnboundedReceiver<(usize, String, Instant)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    nodes: usize,
}

impl EventWatch {
    /// Opens a `Watch` stream on nodes 1..=`nodes` of `c`.
    pub async fn start(c: &TestCluster, nodes: usize) -> EventWatch {
        use upsilon_proto::v1 as pb;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for i in 1..=nodes {
            let o = c.operator_options(i);
            let ch = upsilon_client::rpc::connect(&o).await.expect("connect");
            let mut stream = pb::power_service_client::PowerServiceClient::new(ch)
                .watch(pb::WatchRequest {})
                .await
                .expect("watch")
                .into_inner();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(u)) = stream.message().await {
                    if let Some(pb::watch_update::Update::Event(e)) = u.update {
                        let _ = tx.send((i, e.name, Instant::now()));
                    }
                }
            }));
        }
        EventWatch { rx, tasks, nodes }
    }

    /// Forgets the events received so far.
    pub fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Waits until every node has delivered event `want`; returns each node's delay
    /// after `t0` in milliseconds, in arrival order (the last is "applied on every node").
    pub async fn until_all(&mut self, want: &str, t0: Instant, timeout: Duration) -> Vec<f64> {
        let mut seen = vec![false; self.nodes + 1];
        let mut delays = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while delays.len() < self.nodes {
            let Ok(Some((i, name, at))) = tokio::time::timeout_at(deadline, self.rx.recv()).await
            else {
                panic!(
                    "only {} of {} nodes applied {want} within {timeout:?}",
                    delays.len(),
                    self.nodes
                );
            };
            if name == want && !seen[i] {
                seen[i] = true;
                delays.push(at.duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
        delays
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A tmpfs of `size` mounted at `dir` for the test's lifetime (needs root, as the
/// README's test command is run).
pub struct SmallDisk {
    pub dir: std::path::PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            o.status.success(),
            "this test mounts a small tmpfs and needs root (run the README's test command as root): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills the disk to the last byte.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }

    pub fn free(&self) {
        let _ = std::fs::remove_file(self.dir.join("filler"));
    }

    /// Makes the directory read-only (`true`) or writable again, with a read-only bind
    /// mount over it: creating, renaming or removing files fails with EROFS (even for
    /// root), while files the node already holds open stay writable (a tmpfs cannot be
    /// remounted read-only under open files).
    pub fn read_only(&self, ro: bool) {
        let run = |args: &[&str]| {
            let o = std::process::Command::new(args[0])
                .args(&args[1..])
                .arg(&self.dir)
                .args(if args[0] == "mount" && args.contains(&"--bind") {
                    vec![self.dir.clone()]
                } else {
                    vec![]
                })
                .output()
                .expect("run mount");
            assert!(
                o.status.success(),
                "{args:?} {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        if ro {
            run(&["mount", "--bind"]);
            run(&["mount", "-o", "remount,bind,ro"]);
        } else {
            run(&["umount"]);
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

impl TestCluster {
    /// Moves node `i`'s data directory onto a tmpfs of `size` (stopping and restarting
    /// the node), for full-disk faults.
    pub fn put_data_on_small_disk(&mut self, i: usize, size: &str) -> SmallDisk {
        self.stop(i, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("n{i} did not stop on SIGTERM"));
        let data = self.data_dir(i);
        let saved = self.pki.path().join(format!("data-n{i}.saved"));
        std::fs::rename(&data, &saved).unwrap();
        let disk = SmallDisk::mount(&data, size);
        copy_dir(&saved, &data);
        std::fs::remove_dir_all(&saved).unwrap();
        self.start_node(i);
        disk
    }
}

/// The first UPS of a status (`upsilon status --json`).
pub fn ups_of(v: &serde_json::Value) -> serde_json::Value {
    v["ups"][0].clone()
}

/// Waits until the node's first UPS shows status `what`.
pub fn wait_ups_status(pki: &TestPki, node: &NodeProc, what: &str, secs: u64) -> serde_json::Value {
    wait_status(pki, node, Duration::from_secs(secs), what, |v| {
        ups_of(v)["status"] == what
    })
}

/// A node with `ups_toml` whose UPS orders reach the UPS (`ups_commands = "send"`);
/// host shutdowns are still only recorded.
pub fn sending_node(pki: &TestPki, ups_toml: &str) -> NodeProc {
    NodeProc::start(
        pki,
        &format!(
            "{ups_toml}\n[executor]\nups_commands = \"send\"\nrecord_file = \"record.jsonl\"\n"
        ),
    )
}

/// An operator's `upsilon ups kill-power --confirm`, which must reach UPS `ups`.
pub fn kill_power_sent(pki: &TestPki, node: &NodeProc, ups: &str) {
    let o = upsilon(
        pki,
        node.addr,
        Some("operator"),
        &["ups", "kill-power", "--confirm"],
    );
    assert!(
        stdout(&o).contains(&format!("{ups}: sent to the UPS")),
        "{o:?}\n{}",
        node.log_text()
    );
}

/// The node's event history as `upsilon events` prints it.
pub fn events_text(pki: &TestPki, node: &NodeProc) -> String {
    stdout(&upsilon(pki, node.addr, Some("operator"), &["events"]))
}

/// A 3-node cluster whose node 1 owns UPS `ups` (its `[[ups]]` TOML given) feeding
/// every host, hosts recorded and UPS orders sent, with a two-stage plan (apps = n2
/// and n3 after 1 s on battery, core = n1 after 3 s; each host's shutdown takes 1 s),
/// once the plan and the UPS's ONLINE status have reached node 2.
pub fn two_stage_cluster(ups: &str, ups_toml: String) -> TestCluster {
    let feeds = format!("feeds = [\"{ups}\"]\nshutdown_s = 1");
    let c = TestCluster::start(ClusterSpec {
        nodes: 3,
        voters: 3,
        ups_on: vec![],
        ups_toml: vec![(1, ups_toml)],
        extra: "[policy]\nbattery_level = 0\nminutes = 0\n".into(),
        // The UPS gets the real orders; host shutdowns are only recorded.
        executor_extra: "ups_commands = \"send\"".into(),
        executor_of: vec![],
        cluster_extra: vec![
            format!("{feeds}\nlabels = [\"core\"]\nplan = \"plan.toml\""),
            format!("{feeds}\nlabels = [\"apps\"]"),
            format!("{feeds}\nlabels = [\"apps\"]"),
        ],
        ..Default::default()
    });
    std::fs::write(
        c.pki.path().join("plan.toml"),
        "kill_power_delay_s = 1\nruntime_floor_s = 0\n\n[[stage]]\nname = \"apps\"\nhosts = [\"label:apps\"]\ntrigger = { on_battery_s = 1 }\nack_timeout_s = 30\n\n[[stage]]\nname = \"core\"\nhosts = [\"label:core\"]\ntrigger = { on_battery_s = 3 }\nack_timeout_s = 30\n",
    )
    .unwrap();
    c.wait_formed(1, 3, 0, Duration::from_secs(40));
    wait_for(Duration::from_secs(20), || {
        let v: serde_json::Value =
            serde_json::from_slice(&c.cli(2, &["plan", "--json"]).stdout).ok()?;
        let online = c
            .status(2)
            .is_some_and(|s| s["ups"][0]["status"] == "ONLINE");
        (v["has_plan"] == true && online).then_some(())
    })
    .unwrap_or_else(|| panic!("plan or UPS never replicated\n{}", c.logs()));
    c
}

/// How many shutdowns host `i` recorded.
pub fn shutdowns(c: &TestCluster, i: usize) -> usize {
    c.records(i)
        .iter()
        .filter(|r| r["action"] == "shutdown")
        .count()
}

/// A staged-shutdown plan's TOML: kill power 5 s after the last stage, no runtime
/// floor, and one `[[stage]]` per `(name, hosts, trigger, ack_timeout_s)`, e.g.
/// `("batch", r#""label:batch""#, "on_battery_s = 2", 30)`.
pub fn plan_text(stages: &[(&str, &str, &str, u64)]) -> String {
    let mut t = String::from("kill_power_delay_s = 5\nruntime_floor_s = 0\n");
    for (name, hosts, trigger, ack) in stages {
        t.push_str(&format!(
            "\n[[stage]]\nname = \"{name}\"\nhosts = [{hosts}]\ntrigger = {{ {trigger} }}\nack_timeout_s = {ack}\n"
        ));
    }
    t
}

/// Seconds after the outage began at which each stage started, from the cluster's
/// history.
pub fn committed_stage_starts(h: &[EventLine]) -> Vec<f64> {
    let t0 = h
        .iter()
        .rfind(|l| l.message.starts_with("Outage") && l.message.contains("began"))
        .map(|l| l.at_ms)
        .expect("an outage began");
    h.iter()
        .filter(|l| {
            l.at_ms >= t0 && l.message.starts_with("Stage ") && l.message.contains(") started")
        })
        .map(|l| (l.at_ms - t0) as f64 / 1000.0)
        .collect()
}

/// The stage start times `plan check` predicts, in seconds ("stage K name: starts at +N s").
pub fn predicted_stage_starts(check: &str) -> Vec<f64> {
    check
        .lines()
        .filter(|l| l.starts_with("stage ") && l.contains(": starts at +"))
        .map(|l| {
            let rest = &l[l.find(": starts at +").unwrap() + 13..];
            rest[..rest.find(' ').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The plan most cluster tests play: `batch`, then `apps` after `on_battery_s` on
/// battery each, then `core` when the charge falls below `charge_below`; `hosts` are
/// each stage's TOML host list.
pub fn three_stage_plan(
    hosts: [&str; 3],
    on_battery_s: [u64; 2],
    charge_below: u32,
    ack_timeout_s: [u64; 3],
) -> String {
    plan_text(&[
        (
            "batch",
            hosts[0],
            &format!("on_battery_s = {}", on_battery_s[0]),
            ack_timeout_s[0],
        ),
        (
            "apps",
            hosts[1],
            &format!("on_battery_s = {}", on_battery_s[1]),
            ack_timeout_s[1],
        ),
        (
            "core",
            hosts[2],
            &format!("charge_below = {charge_below}"),
            ack_timeout_s[2],
        ),
    ])
}

/// The stage hosts by label: `label:batch`, `label:apps`, `label:core`.
pub const BY_LABEL: [&str; 3] = ["\"label:batch\"", "\"label:apps\"", "\"label:core\""];

/// Waits up to `timeout` for `node`'s status (`upsilon status --json`) to satisfy
/// `ok`, and returns it; panics saying `what` was awaited, with the last status and the
/// node's log.
pub fn wait_status(
    pki: &TestPki,
    node: &NodeProc,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(timeout, || {
        let v = status_json(pki, node.addr);
        ok(&v).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "status never showed {what}; last {}\nlog:\n{}",
            status_json(pki, node.addr),
            node.log_text()
        )
    })
}

/// An `upsilon-bridge` process following the nodes at `nodes` (in that order), with
/// a certificate of role bridge named `name`. Killed on drop.
pub struct BridgeProc {
    pub child: std::process::Child,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl BridgeProc {
    /// Starts a bridge whose config is `[bridge]` with `nodes` and `bridge_keys`,
    /// `[tls]` for `name`, then `rest` (`[nis]`, `[[host]]`s).
    pub fn start(
        pki: &TestPki,
        nodes: &[SocketAddr],
        name: &str,
        bridge_keys: &str,
        rest: &str,
    ) -> BridgeProc {
        if !pki.certs().join(format!("{name}.pem")).exists() {
            pki.issue(&IssueRequest::new(name, Role::Bridge, vec![], 30));
        }
        let nodes: Vec<String> = nodes.iter().map(|a| format!("\"{a}\"")).collect();
        let config = pki.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[bridge]\nnodes = [{}]\n{bridge_keys}\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/{name}.pem\"\nkey = \"certs/{name}.key\"\n\n{rest}\n",
                nodes.join(", ")
            ),
        )
        .unwrap();
        let log = pki.path().join(format!("{name}.log"));
        let mut b = BridgeProc {
            child: Command::new("true").spawn().unwrap(),
            config,
            log,
        };
        b.restart();
        b
    }

    /// (Re)starts the process with the same config; its log is appended to.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Command::new(bin("upsilon-bridge"))
            .arg("--config")
            .arg(&self.config)
            .env("UPSILON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        // Listening once this run logged it (the log is appended to across runs).
        let runs = self
            .log_text()
            .matches("legacy host(s) for the cluster")
            .count();
        let up = wait_for(Duration::from_secs(20), || {
            (self
                .log_text()
                .matches("legacy host(s) for the cluster")
                .count()
                > runs)
                .then_some(())
        });
        assert!(up.is_some(), "bridge did not start:\n{}", self.log_text());
    }

    /// Kills the process at once (SIGKILL: no goodbye to anyone).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One line of `upsilon events --json`.
#[derive(Debug, Clone)]
pub struct EventLine {
    pub at_ms: i64,
    pub name: String,
    pub message: String,
}

/// The most recent events (up to 1000) as the node at `addr` lists them, oldest first.
pub fn event_lines(pki: &TestPki, addr: SocketAddr) -> Vec<EventLine> {
    let o = upsilon(
        pki,
        addr,
        Some("operator"),
        &["events", "--json", "-n", "1000"],
    );
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| EventLine {
            at_ms: v["at_unix_ms"].as_i64().unwrap_or(0),
            name: v["name"].as_str().unwrap_or("").to_string(),
            message: v["message"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}
