//! One `upsilon-bridge` process: its config, start, restart and log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use upsilon_client::pki::{IssueRequest, Role};

use crate::{TestPki, bin, wait_for};

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

impl crate::TestCluster {
    /// A bridge following the cluster's nodes `follow` (in that order), as
    /// [`BridgeProc::start`] says.
    pub fn bridge(
        &self,
        follow: &[usize],
        name: &str,
        bridge_keys: &str,
        rest: &str,
    ) -> BridgeProc {
        let nodes: Vec<SocketAddr> = follow.iter().map(|i| self.addr(*i)).collect();
        BridgeProc::start(&self.pki, &nodes, name, bridge_keys, rest)
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        self.kill();
    }
}
