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

impl RealApcupsd {
    pub fn start(dir: &Path, link: &Path, nis: SocketAddr) -> RealApcupsd {
        let scripts = dir.join("scripts");
        std::fs::create_dir_all(&scripts).unwrap();
        std::fs::create_dir_all(dir.join("lock")).unwrap();
        let apccontrol = scripts.join("apccontrol");
        std::fs::write(
            &apccontrol,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexit 0\n",
                dir.join("apccontrol.log").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&apccontrol, std::fs::Permissions::from_mode(0o755)).unwrap();
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
        let child = Command::new("apcupsd")
            .arg("-b")
            .arg("-f")
            .arg(&conf)
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
