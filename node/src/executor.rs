//! Carries out what the monitor decided: apccontrol-compatible hooks and the host's
//! shutdown command, in `record` mode (write down what would run) or `live` mode.
//!
//! Events run as apcupsd runs them (docs/compat.md has the table). apcupsd calls
//! `<SCRIPTDIR>/apccontrol <event> <upsname> <connected> <powered>`, and apccontrol
//! exports `SYSADMIN` and `APCUPSD_MAIL`, sources `<SCRIPTDIR>/config`, runs
//! `<SCRIPTDIR>/<event> <upsname> <connected> <powered>` if it is executable, and unless
//! that exits 99 does its default action (a `wall` message; for `doshutdown` a halt,
//! for `killpower` the UPS's kill). So when `script_dir` holds an `apccontrol` (it is an
//! apcupsd configuration directory), or `[hooks] apccontrol` names one, that program runs
//! for every event, unmodified, in both modes — except the two whose default action is
//! the executor's own (`doshutdown`, `killpower`): for those, and for every event when
//! there is no apccontrol, Upsilon does what apccontrol does itself (same environment,
//! `config` sourced, exit 99, the `wall` line when the directory has an apccontrol), and
//! then the shutdown command, which `record` mode only writes down. A drill runs event
//! scripts only, with `UPSILON_DRILL=1`. `connected` is 1 on the node that drives the
//! UPS and 0 elsewhere (apcupsd: 0 on a slave); `powered` is 1 (apcupsd's "plugged").
//! A hook that fails is logged with its exit status and the first lines of its stderr,
//! and becomes a notice in the node's events.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use upsilon_core::time::unix_ms;

use upsilon_core::config::{ExecutorMode, ExecutorSection, HooksSection};
use upsilon_core::events::{Event, EventKind};

/// One thing the executor ran or would have run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExecRecord {
    pub at_unix_ms: i64,
    /// `hook`, `apccontrol` or `shutdown`.
    pub action: String,
    pub argv: Vec<String>,
    pub event: String,
    /// True if it was really run; false if only recorded.
    pub ran: bool,
    /// Exit status if it ran and finished; a note otherwise.
    pub outcome: String,
}

impl ExecRecord {
    /// One line for humans, e.g. `recorded: shutdown -h now (doshutdown)`.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} ({}; {})",
            if self.ran { "ran" } else { "recorded" },
            self.argv.join(" "),
            self.event,
            self.outcome
        )
    }
}

/// Where a failed hook is reported: (UPS name, message) for the node's events.
pub type NoticeSink = Box<dyn Fn(&str, &str) + Send + Sync>;

/// Runs hooks and the shutdown command for events, in the order events arrive.
pub struct Executor {
    mode: ExecutorMode,
    record_halt: (upsilon_core::config::RecordHalt, std::time::Duration),
    send_ups_commands: bool,
    hooks: HooksSection,
    shutdown_command: Vec<String>,
    record_file: Option<PathBuf>,
    records: Mutex<Vec<ExecRecord>>,
    /// The UPSes this node drives (`connected` = 1 for their events).
    driven: Vec<String>,
    notices: std::sync::OnceLock<NoticeSink>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("mode", &self.mode)
            .field("hooks", &self.hooks)
            .field("driven", &self.driven)
            .finish_non_exhaustive()
    }
}

/// apccontrol's own line to `wall` for `doshutdown` (Debian's apccontrol, 3.14).
const DOSHUTDOWN_WALL: &str = "UPS ${2} initiated Shutdown Sequence";

/// The environment apccontrol gives the event scripts: `SYSADMIN` and `APCUPSD_MAIL`
/// exported (Debian's stock scripts mail with them), `WALL`, then `<SCRIPTDIR>/config`
/// sourced so an operator's overrides hold; then the program runs with the arguments.
const APCCONTROL_ENV: &str = "SYSADMIN=root; APCUPSD_MAIL=mail; WALL=wall; \
export SYSADMIN APCUPSD_MAIL; SCRIPTDIR=\"$1\"; shift; \
if [ -f \"$SCRIPTDIR/config\" ]; then . \"$SCRIPTDIR/config\"; fi; ";

/// Lines of a failed hook's stderr kept in its record and notice.
const STDERR_LINES: usize = 3;

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Executor {
    pub fn new(cfg: &ExecutorSection, hooks: &HooksSection) -> Self {
        Executor {
            mode: cfg.mode,
            send_ups_commands: match cfg.ups_commands {
                Some(u) => u == upsilon_core::config::UpsCommands::Send,
                None => cfg.mode == ExecutorMode::Live,
            },
            hooks: hooks.clone(),
            shutdown_command: cfg.shutdown_command.clone(),
            record_file: cfg.record_file.clone(),
            record_halt: (
                cfg.record_halt,
                std::time::Duration::from_millis(cfg.record_halt_after_ms),
            ),
            records: Mutex::new(Vec::new()),
            driven: Vec::new(),
            notices: std::sync::OnceLock::new(),
        }
    }

    /// The UPSes this node drives: their events pass `connected` = 1.
    pub fn with_driven(mut self, upses: Vec<String>) -> Self {
        self.driven = upses;
        self
    }

    /// Where failed hooks are reported (set once, by the node).
    pub fn set_notice_sink(&self, sink: NoticeSink) {
        let _ = self.notices.set(sink);
    }

    /// The apccontrol program that runs events: `[hooks] apccontrol`, or the one in
    /// `script_dir` (an apcupsd configuration directory).
    fn apccontrol(&self) -> Option<PathBuf> {
        self.hooks.apccontrol.clone().or_else(|| {
            self.hooks
                .script_dir
                .as_ref()
                .map(|d| d.join("apccontrol"))
                .filter(|p| is_executable(p))
        })
    }

    pub fn mode(&self) -> ExecutorMode {
        self.mode
    }

    /// In record mode, what stands in for the host's halt after a recorded cluster
    /// shutdown, and after how long; `None` in live mode (the host really halts).
    pub fn stand_in_halt(&self) -> Option<(upsilon_core::config::RecordHalt, std::time::Duration)> {
        (self.mode == ExecutorMode::Record).then_some(self.record_halt)
    }

    /// Everything run or recorded so far.
    pub fn records(&self) -> Vec<ExecRecord> {
        self.records.lock().expect("records lock").clone()
    }

    fn keep(&self, rec: ExecRecord) {
        match rec.ran {
            true => tracing::info!(event = %rec.event, "executor {}", rec.summary()),
            false => tracing::warn!(event = %rec.event, "executor {}", rec.summary()),
        }
        if let Some(path) = &self.record_file {
            let line = serde_json::to_string(&rec).expect("record serialises");
            let res = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())
                });
            if let Err(e) = res {
                tracing::error!(
                    "cannot append to executor record file {}: {e}",
                    path.display()
                );
            }
        }
        self.records.lock().expect("records lock").push(rec);
    }

    /// Handles one event: hooks first, then the default action unless a hook said 99.
    pub async fn handle(&self, ev: &Event) {
        self.handle_with(ev, None, &|| {}).await;
    }

    /// A cluster-ordered shutdown of this host: `remotedown` then `doshutdown`, whose
    /// default action runs `command` (a stage's) or the configured shutdown command.
    /// `launch` runs right before the shutdown command starts (or is recorded): the
    /// caller's point of no return.
    pub async fn cluster_shutdown(
        &self,
        ups: &str,
        reason: &str,
        command: Option<&[String]>,
        launch: &(dyn Fn() + Sync),
    ) {
        self.shutdown_events(ups, reason, command, launch, false)
            .await;
    }

    /// `remotedown` then `doshutdown` for `reason`.
    async fn shutdown_events(
        &self,
        ups: &str,
        reason: &str,
        command: Option<&[String]>,
        launch: &(dyn Fn() + Sync),
        drill: bool,
    ) {
        for kind in [EventKind::RemoteDown, EventKind::DoShutdown] {
            let ev = Event {
                seq: 0,
                at: SystemTime::now(),
                kind,
                ups_name: ups.to_string(),
                message: format!("{} {reason}", kind.message()),
            };
            self.handle_as(&ev, command, launch, drill).await;
        }
    }

    /// [`Self::handle`] for a `doshutdown` whose shutdown is claimed: `launch` runs right
    /// before the shutdown command starts (or is recorded).
    pub async fn handle_launching(&self, ev: &Event, launch: &(dyn Fn() + Sync)) {
        self.handle_with(ev, None, launch).await;
    }

    /// Carries out a kill-power or power-cycle order: with `ups_commands` = send (the
    /// default in `live` mode) `send` talks to the UPS; otherwise it is only written
    /// down. Returns (ok, what happened).
    pub async fn ups_action<F, Fut>(&self, ups: &str, what: &str, send: F) -> (bool, String)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let (ran, ok, outcome) = if !self.send_ups_commands {
            (false, true, "record mode: not sent to the UPS".to_string())
        } else {
            match send().await {
                Ok(()) => (true, true, "sent to the UPS".to_string()),
                Err(e) => (true, false, e),
            }
        };
        self.keep(ExecRecord {
            at_unix_ms: unix_ms(SystemTime::now()),
            action: what.replace(' ', ""),
            argv: vec![what.to_string(), ups.to_string()],
            event: "killpower".into(),
            ran,
            outcome: outcome.clone(),
        });
        (ok, outcome)
    }

    /// A fire drill's shutdown: hooks run with `UPSILON_DRILL=1`; apccontrol and the
    /// shutdown command are only recorded, whatever the mode.
    pub async fn drill_shutdown(&self, ups: &str, reason: &str, command: Option<&[String]>) {
        self.shutdown_events(ups, reason, command, &|| {}, true)
            .await;
    }

    /// A fire drill's kill-power order: recorded, never sent.
    pub fn drill_ups_action(&self, ups: &str, what: &str) -> (bool, String) {
        let outcome = "drill: not sent to the UPS".to_string();
        self.keep(ExecRecord {
            at_unix_ms: unix_ms(SystemTime::now()),
            action: what.replace(' ', ""),
            argv: vec![what.to_string(), ups.to_string()],
            event: "killpower".into(),
            ran: false,
            outcome: outcome.clone(),
        });
        (true, outcome)
    }

    async fn handle_with(
        &self,
        ev: &Event,
        command: Option<&[String]>,
        launch: &(dyn Fn() + Sync),
    ) {
        self.handle_as(ev, command, launch, false).await;
    }

    async fn handle_as(
        &self,
        ev: &Event,
        command: Option<&[String]>,
        launch: &(dyn Fn() + Sync),
        drill: bool,
    ) {
        // A drill runs like record mode, hooks told so.
        let mode = if drill {
            ExecutorMode::Record
        } else {
            self.mode
        };
        if !ev.kind.runs_hook() {
            return;
        }
        let shutdown_command: Vec<String> =
            command.map_or_else(|| self.shutdown_command.clone(), <[String]>::to_vec);
        let name = ev.kind.name();
        let connected = if self.driven.contains(&ev.ups_name) {
            "1"
        } else {
            "0"
        };
        let args = [ev.ups_name.clone(), connected.into(), "1".into()];
        let apccontrol = self.apccontrol();
        // Events apccontrol handles and whose default action is no halt or kill: it runs
        // them itself, as under apcupsd (3.12's master/slave events are not in 3.14's).
        let by_apccontrol = !drill
            && !matches!(
                ev.kind,
                EventKind::DoShutdown
                    | EventKind::KillPower
                    | EventKind::MasterTimeout
                    | EventKind::MasterConnect
            );
        if let (Some(prog), true) = (&apccontrol, by_apccontrol) {
            let mut argv = vec![prog.display().to_string(), name.to_string()];
            argv.extend(args.iter().cloned());
            self.run(&argv, ev, "apccontrol", drill).await;
            return;
        }
        let mut skip_default = false;
        if let Some(dir) = &self.hooks.script_dir {
            let script = dir.join(name);
            if is_executable(&script) {
                let mut argv = vec![script.display().to_string()];
                argv.extend(args.iter().cloned());
                let code = self.run_as_apccontrol(dir, &argv, ev, drill).await;
                skip_default |= code == Some(99);
            }
        }
        if let Some(prog) = &apccontrol {
            let mut argv = vec![prog.display().to_string(), name.to_string()];
            argv.extend(args.iter().cloned());
            self.keep(ExecRecord {
                at_unix_ms: unix_ms(SystemTime::now()),
                action: "apccontrol".into(),
                argv,
                event: name.into(),
                ran: false,
                outcome: if drill {
                    "drill: not run".into()
                } else {
                    format!("not run: the executor carries out {name}'s default action itself")
                },
            });
            // Its message to logged-in users, as apccontrol's default action sends it.
            if ev.kind == EventKind::DoShutdown
                && !skip_default
                && !drill
                && let Some(dir) = &self.hooks.script_dir
            {
                let argv = vec![
                    "/bin/sh".to_string(),
                    "-c".into(),
                    format!("{APCCONTROL_ENV}echo \"{DOSHUTDOWN_WALL}\" | ${{WALL}}"),
                    "apccontrol".into(),
                    dir.display().to_string(),
                    name.into(),
                    ev.ups_name.clone(),
                ];
                self.run(&argv, ev, "wall", drill).await;
            }
        }

        if ev.kind == EventKind::DoShutdown {
            if skip_default {
                self.keep(ExecRecord {
                    at_unix_ms: unix_ms(SystemTime::now()),
                    action: "shutdown".into(),
                    argv: shutdown_command.clone(),
                    event: name.into(),
                    ran: false,
                    outcome: "skipped: a hook exited 99".into(),
                });
                return;
            }
            launch();
            match mode {
                ExecutorMode::Live => {
                    self.run(&shutdown_command, ev, "shutdown", drill).await;
                }
                ExecutorMode::Record => self.keep(ExecRecord {
                    at_unix_ms: unix_ms(SystemTime::now()),
                    action: "shutdown".into(),
                    argv: shutdown_command.clone(),
                    event: name.into(),
                    ran: false,
                    outcome: if drill {
                        "drill: not executed"
                    } else {
                        "record mode: not executed"
                    }
                    .into(),
                }),
            }
        }
    }

    /// Runs an event script as apccontrol runs it: through `/bin/sh` with apccontrol's
    /// environment and `<dir>/config` sourced. The record shows the script's own argv.
    async fn run_as_apccontrol(
        &self,
        dir: &Path,
        argv: &[String],
        ev: &Event,
        drill: bool,
    ) -> Option<i32> {
        let mut full = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            format!("{APCCONTROL_ENV}exec \"$@\""),
            "apccontrol".into(),
            dir.display().to_string(),
        ];
        full.extend(argv.iter().cloned());
        self.run_shown(&full, argv, ev, "hook", drill).await
    }

    /// Runs a program with the hook timeout; returns its exit code if it exited.
    async fn run(&self, argv: &[String], ev: &Event, action: &str, drill: bool) -> Option<i32> {
        self.run_shown(argv, argv, ev, action, drill).await
    }

    /// Runs `argv`, recorded as `shown`. A start failure, a timeout, or an exit status
    /// other than 0 and 99 is a failure: logged and reported with the first lines of
    /// its stderr.
    async fn run_shown(
        &self,
        argv: &[String],
        shown: &[String],
        ev: &Event,
        action: &str,
        drill: bool,
    ) -> Option<i32> {
        let mut cmd = tokio::process::Command::new(&argv[0]);
        if drill {
            cmd.env("UPSILON_DRILL", "1");
        }
        cmd.args(&argv[1..])
            .env("UPSILON_EXECUTOR_MODE", self.mode.as_str())
            .env("UPSILON_EVENT", ev.kind.name())
            .env("UPSILON_MESSAGE", &ev.message)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let timeout = Duration::from_secs(self.hooks.timeout_s.max(1));
        let (code, outcome, stderr) = match cmd.spawn() {
            Err(e) => (None, format!("could not start: {e}"), String::new()),
            Ok(mut child) => {
                let err = child.stderr.take().map(|mut e| {
                    tokio::spawn(async move {
                        use tokio::io::AsyncReadExt;
                        let mut buf = Vec::new();
                        let _ = (&mut e).take(16 * 1024).read_to_end(&mut buf).await;
                        // Drain the rest so the program never blocks on a full pipe.
                        let _ = tokio::io::copy(&mut e, &mut tokio::io::sink()).await;
                        buf
                    })
                });
                let (code, outcome) = match tokio::time::timeout(timeout, child.wait()).await {
                    Ok(Ok(st)) => (
                        st.code(),
                        format!(
                            "exit status {}",
                            st.code().map_or("signal".into(), |c| c.to_string())
                        ),
                    ),
                    Ok(Err(e)) => (None, format!("wait failed: {e}")),
                    Err(_) => {
                        let _ = child.kill().await;
                        (
                            None,
                            format!("killed after {} s timeout", timeout.as_secs()),
                        )
                    }
                };
                let stderr = match err {
                    Some(task) => match tokio::time::timeout(Duration::from_secs(1), task).await {
                        Ok(Ok(buf)) => first_lines(&buf, STDERR_LINES),
                        _ => String::new(),
                    },
                    None => String::new(),
                };
                (code, outcome, stderr)
            }
        };
        let failed = !matches!(code, Some(0) | Some(99));
        let outcome = if stderr.is_empty() {
            outcome
        } else {
            format!("{outcome}; stderr: {stderr}")
        };
        if failed {
            let label = match action {
                "hook" => "Event script",
                "shutdown" => "Shutdown command",
                other => other,
            };
            let what = format!(
                "{label} {} ({}) failed: {outcome}",
                shown[0],
                ev.kind.name()
            );
            tracing::error!(event = %ev.kind.name(), "{what}");
            if let Some(sink) = self.notices.get() {
                sink(&ev.ups_name, &format!("{what}."));
            }
        } else if !stderr.is_empty() {
            tracing::warn!(event = %ev.kind.name(), "{action} {} wrote to stderr: {stderr}", shown[0]);
        }
        self.keep(ExecRecord {
            at_unix_ms: unix_ms(SystemTime::now()),
            action: action.into(),
            argv: shown.to_vec(),
            event: ev.kind.name().into(),
            ran: true,
            outcome,
        });
        code
    }
}

/// The first `n` non-empty lines of a program's output, joined with " | ".
fn first_lines(buf: &[u8], n: usize) -> String {
    String::from_utf8_lossy(buf)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 1,
            at: SystemTime::now(),
            kind,
            ups_name: "ups1".into(),
            message: kind.message().into(),
        }
    }

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn executor(dir: &Path, mode: ExecutorMode) -> Executor {
        Executor::new(
            &ExecutorSection {
                mode,
                shutdown_command: vec!["/bin/false".into(), "must-not-run".into()],
                record_file: Some(dir.join("record.jsonl")),
                powerfail_dir: None,
                ups_commands: None,
                ..Default::default()
            },
            &HooksSection {
                script_dir: Some(dir.to_path_buf()),
                apccontrol: None,
                timeout_s: 5,
            },
        )
        .with_driven(vec!["ups1".into()])
    }

    #[tokio::test]
    async fn record_mode_runs_hooks_with_apccontrol_args_but_only_records_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("args");
        script(
            dir.path(),
            "doshutdown",
            &format!("echo \"$@ $UPSILON_EXECUTOR_MODE\" > {}", out.display()),
        );
        let ex = executor(dir.path(), ExecutorMode::Record);
        ex.handle(&event(EventKind::DoShutdown)).await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "ups1 1 1 record\n");
        let recs = ex.records();
        assert_eq!(recs.len(), 2);
        assert!(recs[0].ran && recs[0].outcome == "exit status 0");
        assert_eq!(recs[1].action, "shutdown");
        assert!(!recs[1].ran);
        let file = std::fs::read_to_string(dir.path().join("record.jsonl")).unwrap();
        assert_eq!(file.lines().count(), 2);
    }

    #[tokio::test]
    async fn exit_99_skips_the_default_action() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "doshutdown", "exit 99");
        let ex = executor(dir.path(), ExecutorMode::Live);
        ex.handle(&event(EventKind::DoShutdown)).await;
        let recs = ex.records();
        assert_eq!(recs.last().unwrap().outcome, "skipped: a hook exited 99");
        assert!(!recs.iter().any(|r| r.action == "shutdown" && r.ran));
    }

    #[tokio::test]
    async fn live_mode_runs_the_shutdown_command() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("halted");
        let ex = Executor::new(
            &ExecutorSection {
                mode: ExecutorMode::Live,
                shutdown_command: vec!["/bin/touch".into(), marker.display().to_string()],
                record_file: None,
                powerfail_dir: None,
                ups_commands: None,
                ..Default::default()
            },
            &HooksSection::default(),
        );
        ex.handle(&event(EventKind::DoShutdown)).await;
        assert!(marker.exists());
    }

    #[tokio::test]
    async fn hook_timeout_kills_and_missing_hooks_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "onbattery", "sleep 30");
        let mut ex = executor(dir.path(), ExecutorMode::Record);
        ex.hooks.timeout_s = 1;
        ex.handle(&event(EventKind::OnBattery)).await;
        ex.handle(&event(EventKind::PowerOut)).await; // no script: nothing
        let recs = ex.records();
        assert_eq!(recs.len(), 1);
        assert!(
            recs[0].outcome.contains("killed after 1 s"),
            "{:?}",
            recs[0]
        );
    }

    #[tokio::test]
    async fn scripts_get_apccontrols_environment_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        script(
            dir.path(),
            "onbattery",
            &format!(
                "echo \"$1 $2 $3 $SYSADMIN $APCUPSD_MAIL $OPS\" > {}",
                out.display()
            ),
        );
        let ex = executor(dir.path(), ExecutorMode::Record);
        let mut ev = event(EventKind::OnBattery);
        ev.ups_name = "far".into();
        ex.handle(&ev).await;
        // Not a UPS this node drives: connected 0, as on an apcupsd slave.
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "far 0 1 root mail \n"
        );
        std::fs::write(
            dir.path().join("config"),
            "SYSADMIN=ops@example.org\nexport OPS=yes\n",
        )
        .unwrap();
        ex.handle(&event(EventKind::OnBattery)).await;
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "ups1 1 1 ops@example.org mail yes\n"
        );
        assert_eq!(ex.records()[1].argv[1..], ["ups1", "1", "1"]);
    }

    #[tokio::test]
    async fn an_apcupsd_directory_runs_its_apccontrol_except_for_the_executors_actions() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        script(
            dir.path(),
            "apccontrol",
            &format!("echo \"apccontrol $@\" >> {}", log.display()),
        );
        script(
            dir.path(),
            "doshutdown",
            &format!("echo \"doshutdown $@\" >> {}", log.display()),
        );
        script(
            dir.path(),
            "wall",
            &format!("echo \"wall $(cat)\" >> {}", log.display()),
        );
        std::fs::write(
            dir.path().join("config"),
            format!("WALL={}\n", dir.path().join("wall").display()),
        )
        .unwrap();
        let ex = executor(dir.path(), ExecutorMode::Record);
        ex.handle(&event(EventKind::OnBattery)).await;
        ex.handle(&event(EventKind::DoShutdown)).await;
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "apccontrol onbattery ups1 1 1\ndoshutdown ups1 1 1\nwall UPS ups1 initiated Shutdown Sequence\n"
        );
        let recs = ex.records();
        let shutdown = recs.iter().find(|r| r.action == "shutdown").unwrap();
        assert!(!shutdown.ran, "{recs:#?}");
        let ctl = recs
            .iter()
            .find(|r| r.action == "apccontrol" && r.event == "doshutdown")
            .unwrap();
        assert!(!ctl.ran && ctl.outcome.contains("not run"), "{ctl:?}");
    }

    #[tokio::test]
    async fn a_failing_hook_is_reported_with_its_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "commfailure",
            "echo 'mail: cannot send' >&2\necho second >&2\nexit 3",
        );
        let ex = executor(dir.path(), ExecutorMode::Record);
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        ex.set_notice_sink(Box::new(move |ups, m| {
            s2.lock().unwrap().push(format!("{ups}: {m}"))
        }));
        ex.handle(&event(EventKind::CommFailure)).await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].starts_with("ups1: Event script ")
                && seen[0].ends_with(
                    "commfailure (commfailure) failed: exit status 3; stderr: mail: cannot send | second."
                ),
            "{seen:?}"
        );
        assert!(ex.records()[0].outcome.contains("exit status 3"));
    }
}
