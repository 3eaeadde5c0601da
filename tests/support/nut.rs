//! Network UPS Tools 2.8 as a test peer: Debian's unmodified `apcupsd-ups` driver,
//! `upsd` and `upsmon` (a secondary whose SHUTDOWNCMD only writes a file), and `upsc`,
//! run from the binaries tests/run-all.sh unpacks from their .deb packages into
//! `target/nut` (nut-client conflicts with apcupsd, so they are not installed). Each
//! chain has its own directory, config and ports on loopback; killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for};

/// Where the unpacked packages are: `UPSILON_NUT_ROOT`, else `target/nut`.
pub fn nut_root() -> PathBuf {
    let root = std::env::var_os("UPSILON_NUT_ROOT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nut"),
        PathBuf::from,
    );
    assert!(
        root.join("lib/nut/apcupsd-ups").exists(),
        "NUT's binaries are not unpacked in {}: run tests/run-all.sh (it unpacks nut-server, nut-client and libupsclient6 there)",
        root.display()
    );
    root
}

fn nut_command(program: &Path, dir: &Path) -> Command {
    let root = nut_root();
    let mut c = Command::new(program);
    c.env("NUT_CONFPATH", dir)
        .env("NUT_STATEPATH", dir.join("state"))
        .env("NUT_ALTPIDPATH", dir.join("state"))
        .env("LD_LIBRARY_PATH", root.join("lib/x86_64-linux-gnu"))
        .stdin(Stdio::null());
    c
}

/// One monitored UPS as NUT sees it through apcupsd's NIS at `nis`: the apcupsd-ups
/// driver, upsd on its own loopback port, upsmon as a secondary.
pub struct NutChain {
    dir: PathBuf,
    pub upsd: SocketAddr,
    children: Vec<Child>,
}

impl NutChain {
    pub fn start(dir: &Path, nis: SocketAddr) -> NutChain {
        let root = nut_root();
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let port = free_port();
        let upsd: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let d = dir.display();
        let files = [
            (
                "ups.conf",
                format!("[legacy]\n  driver = apcupsd-ups\n  port = {nis}\n  pollinterval = 1\n"),
            ),
            ("upsd.conf", format!("LISTEN 127.0.0.1 {port}\n")),
            (
                "upsd.users",
                "[mon]\n  password = pw\n  upsmon secondary\n".to_string(),
            ),
            (
                "upsmon.conf",
                format!(
                    "RUN_AS_USER root\nMONITOR legacy@127.0.0.1:{port} 1 mon pw secondary\nMINSUPPLIES 1\nSHUTDOWNCMD \"/bin/touch {d}/shutdown\"\nPOLLFREQ 1\nPOLLFREQALERT 1\nFINALDELAY 0\nPOWERDOWNFLAG {d}/killpower\nNOTIFYCMD /bin/true\n"
                ),
            ),
            ("nut.conf", "MODE=netserver\n".to_string()),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        for f in ["upsd.users", "upsmon.conf"] {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let mut children = vec![];
        children.push(
            nut_command(&root.join("lib/nut/apcupsd-ups"), dir)
                .args(["-a", "legacy", "-u", "root", "-F"])
                .stdout(log("driver.out"))
                .stderr(log("driver.err"))
                .spawn()
                .expect("start apcupsd-ups"),
        );
        // upsd refuses to start until the driver's socket exists.
        let sock = dir.join("state/apcupsd-ups-legacy");
        wait_for(Duration::from_secs(10), || sock.exists().then_some(())).unwrap_or_else(|| {
            panic!(
                "apcupsd-ups never started: {}",
                Self::read(dir, "driver.err")
            )
        });
        children.push(
            nut_command(&root.join("lib/nut/upsd"), dir)
                .args(["-u", "root", "-F"])
                .stdout(log("upsd.out"))
                .stderr(log("upsd.err"))
                .spawn()
                .expect("start upsd"),
        );
        children.push(
            nut_command(&root.join("lib/nut/upsmon"), dir)
                .args(["-p", "-F"])
                .stdout(log("upsmon.out"))
                .stderr(log("upsmon.err"))
                .spawn()
                .expect("start upsmon"),
        );
        NutChain {
            dir: dir.to_path_buf(),
            upsd,
            children,
        }
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap_or_default()
    }

    /// Every variable `upsc` lists for the UPS (empty while upsd has no data).
    pub fn upsc(&self) -> Vec<(String, String)> {
        let root = nut_root();
        let o = nut_command(&root.join("bin/upsc"), &self.dir)
            .arg(format!("legacy@{}", self.upsd))
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One `upsc` variable, if upsd has it.
    pub fn var(&self, name: &str) -> Option<String> {
        self.upsc()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Whether upsmon ran its SHUTDOWNCMD.
    pub fn shut_down(&self) -> bool {
        self.dir.join("shutdown").exists()
    }

    /// The three programs' output, for failure messages.
    pub fn logs(&self) -> String {
        ["driver.err", "upsd.err", "upsmon.err", "upsmon.out"]
            .iter()
            .map(|f| format!("--- {f}\n{}", Self::read(&self.dir, f)))
            .collect()
    }
}

impl Drop for NutChain {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
