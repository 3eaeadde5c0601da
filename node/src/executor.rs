//! Carries out what the monitor decided: apccontrol-compatible hooks and the host's
//! shutdown command, in `record` mode (write down what would run) or `live` mode.
//!
//! Hooks behave as with apcupsd: `<script_dir>/<event>` runs with `<upsname>
//! <connected> <powered>` and exit status 99 means "handled, skip the default action";
//! an `apccontrol` program runs as `apccontrol <event> <upsname> <connected> <powered>`.
//! The only default action today is `doshutdown`'s: run the shutdown command. In
//! `record` mode the shutdown command and `apccontrol` (whose stock version halts the
//! machine itself) are recorded, never run; per-event scripts still run, with
//! `UPSILON_EXECUTOR_MODE=record` in their environment, so hook wiring can be tested.

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

/// Runs hooks and the shutdown command for events, in the order events arrive.
#[derive(Debug)]
pub struct Executor {
    mode: ExecutorMode,
    record_halt: (upsilon_core::config::RecordHalt, std::time::Duration),
    send_ups_commands: bool,
    hooks: HooksSection,
    shutdown_command: Vec<String>,
    record_file: Option<PathBuf>,
    records: Mutex<Vec<ExecRecord>>,
}

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
        }
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
        let mut skip_default = false;

        if let Some(dir) = &self.hooks.script_dir {
            let script = dir.join(name);
            if is_executable(&script) {
                let argv = vec![
                    script.display().to_string(),
                    ev.ups_name.clone(),
                    "1".into(),
                    "1".into(),
                ];
                let code = self.run(&argv, ev, "hook", drill).await;
                skip_default |= code == Some(99);
            }
        }
        if let Some(prog) = &self.hooks.apccontrol {
            let argv = vec![
                prog.display().to_string(),
                name.to_string(),
                ev.ups_name.clone(),
                "1".into(),
                "1".into(),
            ];
            match mode {
                ExecutorMode::Live => {
                    let code = self.run(&argv, ev, "apccontrol", drill).await;
                    skip_default |= code == Some(99);
                }
                ExecutorMode::Record => self.keep(ExecRecord {
                    at_unix_ms: unix_ms(SystemTime::now()),
                    action: "apccontrol".into(),
                    argv,
                    event: name.into(),
                    ran: false,
                    outcome: if drill { "drill" } else { "record mode" }.into(),
                }),
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

    /// Runs a program with the hook timeout; returns its exit code if it exited.
    async fn run(&self, argv: &[String], ev: &Event, action: &str, drill: bool) -> Option<i32> {
        let mut cmd = tokio::process::Command::new(&argv[0]);
        if drill {
            cmd.env("UPSILON_DRILL", "1");
        }
        cmd.args(&argv[1..])
            .env("UPSILON_EXECUTOR_MODE", self.mode.as_str())
            .env("UPSILON_EVENT", ev.kind.name())
            .env("UPSILON_MESSAGE", &ev.message)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let timeout = Duration::from_secs(self.hooks.timeout_s.max(1));
        let (code, outcome) = match cmd.spawn() {
            Err(e) => (None, format!("could not start: {e}")),
            Ok(mut child) => match tokio::time::timeout(timeout, child.wait()).await {
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
            },
        };
        self.keep(ExecRecord {
            at_unix_ms: unix_ms(SystemTime::now()),
            action: action.into(),
            argv: argv.to_vec(),
            event: ev.kind.name().into(),
            ran: true,
            outcome,
        });
        code
    }
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
    async fn apccontrol_is_recorded_not_run_in_record_mode() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        script(
            dir.path(),
            "apccontrol",
            &format!("touch {}", marker.display()),
        );
        let mut ex = executor(dir.path(), ExecutorMode::Record);
        ex.hooks.script_dir = None;
        ex.hooks.apccontrol = Some(dir.path().join("apccontrol"));
        ex.handle(&event(EventKind::PowerOut)).await;
        assert!(!marker.exists());
        assert_eq!(ex.records()[0].argv[1..], ["powerout", "ups1", "1", "1"]);
    }
}
