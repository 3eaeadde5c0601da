//! One `upsilond` process and the `upsilon` CLI run against it: start, wait until it
//! listens, read its log, status and events.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{TestPki, bin, free_port, wait_for};

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

/// Runs `upsilon` against `node` as the operator.
pub fn operator(pki: &TestPki, node: &NodeProc, args: &[&str]) -> Output {
    upsilon(pki, node.addr, Some("operator"), args)
}

/// `text` (a command's output, a log) says `needle`; the failure shows the whole text.
#[track_caller]
pub fn assert_says(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
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
