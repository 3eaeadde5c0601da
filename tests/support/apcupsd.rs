//! Debian's unmodified apcupsd as a test peer (the `apcupsd` package; tests/run-all.sh
//! installs it), run the safe way: its own config file, a private run directory, a
//! recording `apccontrol` (never the system's), loopback only, never the system service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::wait_for;

/// Debian's unmodified apcupsd driving the project's Smart-UPS simulator on a pty and
/// serving NIS on loopback: its own config, a private run directory, a recording
/// `apccontrol` (never the system's), thresholds out of the way. Killed on drop.
pub struct RealApcupsd {
    child: std::process::Child,
    dir: PathBuf,
}

/// Writes the recording `apccontrol` into `dir/scripts`: each call appends
/// `<unix ms> <event> <args>` to `dir/apccontrol.log`. With `halt`, `doshutdown` also
/// stops the calling apcupsd (SIGTERM to the pid file's process), as the host's halt
/// would: it polls no more.
fn recording_apccontrol(dir: &Path, halt: bool) {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::create_dir_all(dir.join("lock")).unwrap();
    let apccontrol = scripts.join("apccontrol");
    let halt = if halt {
        format!(
            "if [ \"$1\" = doshutdown ]; then kill -TERM \"$(cat '{}')\"; fi\n",
            dir.join("apcupsd.pid").display()
        )
    } else {
        String::new()
    };
    std::fs::write(
        &apccontrol,
        format!(
            "#!/bin/sh\necho \"$(date +%s%3N) $*\" >> '{}'\n{halt}exit 0\n",
            dir.join("apccontrol.log").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&apccontrol, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl RealApcupsd {
    /// An apcupsd `net` client (`UPSTYPE net`) of the NIS server at `server`, polling
    /// every `polltime_s` (1 s on battery), its own thresholds out of the way so that
    /// only the server's bits shut it down; no NIS of its own. Its `doshutdown` stops
    /// it, as the host's halt would.
    pub fn net_client(dir: &Path, server: SocketAddr, polltime_s: u32) -> RealApcupsd {
        recording_apccontrol(dir, true);
        let d = dir.display();
        let conf = dir.join("apcupsd.conf");
        std::fs::write(
            &conf,
            format!(
                "## apcupsd.conf v1.1 ##\nUPSNAME legacy\nUPSCABLE ether\nUPSTYPE net\nDEVICE {server}\nPOLLTIME {polltime_s}\nLOCKFILE {d}/lock\nSCRIPTDIR {d}/scripts\nPWRFAILDIR {d}\nNOLOGINDIR {d}\nONBATTERYDELAY 1\nBATTERYLEVEL 0\nMINUTES 0\nTIMEOUT 0\nKILLDELAY 0\nNETSERVER off\nEVENTSFILE {d}/events\nEVENTSFILEMAX 10\nUPSCLASS standalone\nUPSMODE disable\nSTATTIME 0\nLOGSTATS off\nDATATIME 0\n"
            ),
        )
        .unwrap();
        Self::spawn(dir, &conf)
    }

    /// The `apccontrol` calls so far: (unix ms, event name).
    pub fn apccontrol_calls(&self) -> Vec<(i64, String)> {
        std::fs::read_to_string(self.dir.join("apccontrol.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let at = w.next()?.parse().ok()?;
                Some((at, w.next()?.to_string()))
            })
            .collect()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn start(dir: &Path, link: &Path, nis: SocketAddr) -> RealApcupsd {
        recording_apccontrol(dir, false);
        let d = dir.display();
        let conf = dir.join("apcupsd.conf");
        std::fs::write(
            &conf,
            format!(
                "## apcupsd.conf v1.1 ##\nUPSNAME simups\nUPSCABLE smart\nUPSTYPE apcsmart\nDEVICE {}\nLOCKFILE {d}/lock\nSCRIPTDIR {d}/scripts\nPWRFAILDIR {d}\nNOLOGINDIR {d}\nONBATTERYDELAY 1\nBATTERYLEVEL 0\nMINUTES 0\nTIMEOUT 0\nKILLDELAY 0\nNETSERVER on\nNISIP {}\nNISPORT {}\nEVENTSFILE {d}/events\nEVENTSFILEMAX 10\nUPSCLASS standalone\nUPSMODE disable\nSTATTIME 0\nSTATFILE {d}/status\nLOGSTATS off\nDATATIME 0\n",
                link.display(),
                nis.ip(),
                nis.port()
            ),
        )
        .unwrap();
        Self::spawn(dir, &conf)
    }

    fn spawn(dir: &Path, conf: &Path) -> RealApcupsd {
        let child = Command::new("apcupsd")
            .arg("-b")
            .arg("-f")
            .arg(conf)
            .arg("-P")
            .arg(dir.join("apcupsd.pid"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("apcupsd.err")).unwrap())
            .spawn()
            .expect("run apcupsd (is the apcupsd package installed?)");
        RealApcupsd {
            child,
            dir: dir.to_path_buf(),
        }
    }

    pub fn stop(&mut self) {
        // SIGTERM, as its init script would; it removes its own lock and pid files.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its stderr and events file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("apcupsd.err")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.join("events")).unwrap_or_default()
    }
}

impl Drop for RealApcupsd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `apcaccess status` against `addr`: its records as (key, value), or its stderr.
pub fn apcaccess(addr: SocketAddr) -> Result<Vec<(String, String)>, String> {
    let o = Command::new("apcaccess")
        .args(["-f", "/dev/null", "-h", &addr.to_string(), "status"])
        .output()
        .map_err(|e| format!("cannot run apcaccess (is the apcupsd package installed?): {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    if !o.status.success() || out.is_empty() {
        return Err(format!(
            "apcaccess failed ({}): {}{out}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(out
        .lines()
        .map(|l| {
            assert!(
                l.len() >= 11 && &l[9..11] == ": ",
                "not an apcupsd record: {l:?}"
            );
            (
                l[..9].trim_end().to_string(),
                l[11..].trim_end().to_string(),
            )
        })
        .collect())
}

pub fn get<'a>(recs: &'a [(String, String)], key: &str) -> &'a str {
    recs.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {recs:?}"))
}

pub fn number(recs: &[(String, String)], key: &str) -> f64 {
    get(recs, key)
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number in {recs:?}"))
}

/// Waits until `apcaccess` against `addr` shows STATUS `want`.
pub fn wait_nis_status(
    addr: SocketAddr,
    want: &str,
    secs: u64,
    log: impl Fn() -> String,
) -> Vec<(String, String)> {
    let mut last = String::new();
    wait_for(Duration::from_secs(secs), || match apcaccess(addr) {
        Ok(r) if get(&r, "STATUS") == want => Some(r),
        Ok(r) => {
            last = format!("{r:?}");
            None
        }
        Err(e) => {
            last = e;
            None
        }
    })
    .unwrap_or_else(|| {
        panic!(
            "NIS never showed STATUS {want}; last: {last}\nlog:\n{}",
            log()
        )
    })
}
