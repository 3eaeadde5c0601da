//! The node's TOML configuration: the schema with its defaults, and errors that name
//! the file, the line and the key.
//!
//! Relative paths in the file are resolved against the file's own directory, so a
//! config and the certificates beside it can move together. Every section but `[node]`
//! and `[tls]` may be left out; the defaults are apcupsd's where the names match.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::Policy;

/// A whole node configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub tls: TlsSection,
    #[serde(default)]
    pub ups: Vec<UpsSection>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub events: EventsSection,
    #[serde(default)]
    pub hooks: HooksSection,
    #[serde(default)]
    pub executor: ExecutorSection,
    /// Cluster membership; without it the node runs standalone.
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
    /// apcupsd's NIS for this host (on by default, like apcupsd's NETSERVER).
    #[serde(default)]
    pub nis: NisSection,
}

/// `[nis]`: apcupsd's Network Information Server for this host, so `apcaccess`,
/// monitoring tools and apcupsd `net` clients read it as they read apcupsd.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NisSection {
    /// `false` serves no NIS (apcupsd's `NETSERVER off`).
    pub enabled: bool,
    /// Where to listen (apcupsd's NISIP:NISPORT): one address or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<SocketAddr>,
    /// Client networks allowed to connect, e.g. `["10.0.0.0/8", "192.0.2.7"]`; empty
    /// allows any peer that reaches `listen` (loopback only by default).
    #[serde(deserialize_with = "networks")]
    pub allow: Vec<ipnet::IpNet>,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for NisSection {
    fn default() -> Self {
        NisSection {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 3551))],
            allow: Vec::new(),
            max_connections: 64,
        }
    }
}

/// A value written as one item or a list of them.
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(x) => vec![x],
        OneOrMany::Many(v) => v,
    })
}

/// A list of client networks (see [`parse_network`]), one or many.
pub fn networks<'de, D>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v: Vec<String> = one_or_many(d)?;
    v.iter()
        .map(|s| parse_network(s).map_err(serde::de::Error::custom))
        .collect()
}

/// A client network: `10.0.0.0/8`, `fd00::/8`, or one address (`192.0.2.7`).
pub fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| {
            format!(
                "{s:?} is neither an address nor a network: write e.g. \"10.0.0.0/8\" or \"192.0.2.7\""
            )
        })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's name; it must match the CN of its certificate.
    pub name: String,
    /// Address the gRPC API listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Threads of the daemon's async runtime (storage and device I/O have threads of
    /// their own). 1 costs least when idle; 2 (the default) keeps the API and Raft
    /// answering while one thread is busy (a big plan or snapshot being encoded).
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
}

fn default_worker_threads() -> usize {
    2
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}

/// `[tls]`: the cluster CA and this daemon's own certificate and key (a node's has role
/// `node`, a bridge's role `bridge`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This daemon's certificate (PEM).
    pub cert: PathBuf,
    /// This daemon's private key (PEM).
    pub key: PathBuf,
}

/// One `[[ups]]` section: what every driver shares. The driver's own keys (`scenario`,
/// `device`, ...) stay in `settings`; the driver named by `driver` parses and checks
/// them (`upsilon-node`'s `driver` module), so adding a driver never touches this file.
#[derive(Debug, Clone, Deserialize)]
pub struct UpsSection {
    /// The UPS's name (apcupsd UPSNAME): in events, hooks and the status table.
    pub name: String,
    /// Which driver reaches it (`sim`, `apcsmart`, ...).
    pub driver: String,
    /// Poll interval in milliseconds (apcupsd polls once a second during an outage).
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// The driver's own keys, as written.
    #[serde(flatten)]
    pub settings: toml::Table,
    /// Where the section was written, for the driver's located errors and paths.
    #[serde(skip)]
    pub origin: SectionOrigin,
}

/// Where a config section was written: the file, the line of its header and its
/// text, so code outside this module can report `file:line: key: message` and
/// resolve a relative path the way the rest of the file's paths are resolved.
#[derive(Debug, Clone, Default)]
pub struct SectionOrigin {
    pub path: PathBuf,
    /// The line of the section's header (1-based).
    pub line: usize,
    /// The section's own lines, header first.
    pub text: String,
    /// The `[[table]]` name, e.g. `ups`.
    pub table: String,
}

impl SectionOrigin {
    /// A located error for `key` of this section (the line that sets it, else the
    /// header's line).
    pub fn error(&self, key: &str, message: String) -> ConfigError {
        let offset = self.text.lines().position(|l| {
            l.trim()
                .split_once('=')
                .is_some_and(|(k, _)| k.trim() == key)
        });
        ConfigError::Invalid {
            path: self.path.clone(),
            line: self.line + offset.unwrap_or(0),
            key: format!("{}.{key}", self.table),
            message,
        }
    }

    /// `p` made absolute against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_relative() {
            self.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
                .join(p)
        } else {
            p.to_path_buf()
        }
    }
}

/// The header line and text of each `[[table]]` section in `text`, in order.
pub fn array_sections(text: &str, table: &str) -> Vec<(usize, String)> {
    let header = format!("[[{table}]]");
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut inside = false;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            inside = t.replace(' ', "") == header;
            if inside {
                out.push((i + 1, String::new()));
            }
        }
        if inside && let Some((_, s)) = out.last_mut() {
            s.push_str(l);
            s.push('\n');
        }
    }
    out
}

fn default_poll_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// apcupsd's EVENTSFILE; unset writes no file.
    pub file: Option<PathBuf>,
    /// apcupsd's EVENTSFILEMAX in KiB; 0 = unlimited.
    pub max_kib: u64,
    /// How many recent events the node keeps in memory for `upsilon events`.
    pub keep: usize,
}

impl Default for EventsSection {
    fn default() -> Self {
        EventsSection {
            file: None,
            max_kib: 10,
            keep: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksSection {
    /// apcupsd's SCRIPTDIR: `<dir>/<event>` runs with `<upsname> <connected> <powered>`;
    /// exit status 99 means "handled, skip the default action".
    pub script_dir: Option<PathBuf>,
    /// An apccontrol-style program run as `<program> <event> <upsname> <connected>
    /// <powered>`. Only run in `live` mode: the stock apccontrol halts the machine itself.
    pub apccontrol: Option<PathBuf>,
    /// Seconds a hook may run before it is killed.
    pub timeout_s: u64,
}

impl Default for HooksSection {
    fn default() -> Self {
        HooksSection {
            script_dir: None,
            apccontrol: None,
            timeout_s: 60,
        }
    }
}

/// What the executor does with shutdown commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorMode {
    /// Record what would run; never run the shutdown command. The default.
    Record,
    /// Really run the shutdown command.
    Live,
}

impl ExecutorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorMode::Record => "record",
            ExecutorMode::Live => "live",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorSection {
    pub mode: ExecutorMode,
    /// The command that halts this host, as argv.
    pub shutdown_command: Vec<String>,
    /// Where record mode appends what it would have run (one JSON object per line).
    pub record_file: Option<PathBuf>,
    /// apcupsd's PWRFAILDIR: when a cluster shutdown reaches this host and it owns a UPS
    /// on battery, an empty `powerfail` file is written here so the OS halt script can
    /// run the UPS kill-power late in the halt, as with apcupsd. Unset: not written.
    pub powerfail_dir: Option<PathBuf>,
    /// Whether kill-power and power-cycle orders reach the UPS: `send` or `record`.
    /// Unset follows `mode`. `send` with `mode = "record"` is for a simulated UPS (the
    /// apcsmart pty simulator in tests and demos): the UPS gets the real byte sequence
    /// while host shutdowns are only recorded.
    pub ups_commands: Option<UpsCommands>,
    /// Record mode only: what stands in for the host's own halt after a recorded
    /// cluster shutdown: `report` (send the late "halted" the package's shutdown hook
    /// sends), `exit` (the daemon exits, so the cluster sees the host fall silent), or
    /// `none` (the host keeps running and is never seen down).
    pub record_halt: RecordHalt,
    /// Record mode only: how long the stand-in halt waits after the halting
    /// acknowledgement (the simulated shutdown's duration), in milliseconds.
    pub record_halt_after_ms: u64,
}

/// See [`ExecutorSection::record_halt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordHalt {
    Report,
    Exit,
    None,
}

/// See [`ExecutorSection::ups_commands`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsCommands {
    Send,
    Record,
}

impl Default for ExecutorSection {
    fn default() -> Self {
        ExecutorSection {
            ups_commands: None,
            mode: ExecutorMode::Record,
            shutdown_command: vec!["shutdown".into(), "-h".into(), "now".into()],
            record_file: None,
            powerfail_dir: None,
            record_halt: RecordHalt::Report,
            record_halt_after_ms: 0,
        }
    }
}

/// A configuration problem, located as precisely as the file allows.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Line number (1-based) of byte offset `pos` in `text`.
pub fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key a TOML line sets, given the table headers above it.
fn key_at_line(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut key = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            key.clear();
        } else if let Some((k, _)) = t.split_once('=') {
            key = k.trim().to_string();
        }
        if i + 1 == line {
            if t.starts_with('[') || key.is_empty() {
                return if table.is_empty() {
                    "(top level)".into()
                } else {
                    table
                };
            }
            return if table.is_empty() {
                key
            } else {
                format!("{table}.{key}")
            };
        }
    }
    "(end of file)".into()
}

/// The line where `dotted` (e.g. `policy.battery_level`) is set, or the table's line.
pub fn line_of_key(text: &str, dotted: &str) -> usize {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut cur = String::new();
    let mut table_line = 1;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            cur = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if cur == table {
                table_line = i + 1;
            }
        } else if cur == table
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == key
        {
            return i + 1;
        }
    }
    table_line
}

/// Parses TOML `text` into `T`, turning serde errors into located [`ConfigError`]s.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            key: key_at_line(text, line),
            message: e.message().trim().to_string(),
        }
    })
}

impl NodeConfig {
    /// Reads, parses and validates a config file; relative paths become absolute.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: NodeConfig = parse_toml(path, &text)?;
        for (u, (line, section)) in cfg.ups.iter_mut().zip(array_sections(&text, "ups")) {
            u.origin = SectionOrigin {
                path: path.to_path_buf(),
                line,
                text: section,
                table: "ups".into(),
            };
        }
        cfg.validate(path, &text)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve_paths(&base);
        Ok(cfg)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of_key(text, key),
            key: key.to_string(),
            message,
        };
        if !valid_name(&self.node.name) {
            return Err(err(
                "node.name",
                format!(
                    "{:?} is not a valid node name: use 1-63 letters, digits, '-', '_' or '.'",
                    self.node.name
                ),
            ));
        }
        if !(1..=16).contains(&self.node.worker_threads) {
            return Err(err(
                "node.worker_threads",
                format!(
                    "{} worker threads: use 1-16 (2 is the default)",
                    self.node.worker_threads
                ),
            ));
        }
        let p = &self.policy;
        if p.battery_level > 100 {
            return Err(err(
                "policy.battery_level",
                format!("{} is not a percentage: use 0-100", p.battery_level),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.ups.iter().enumerate() {
            let key = |k: &str| format!("ups.{k}");
            if !valid_name(&u.name) {
                return Err(err(
                    &key("name"),
                    format!(
                        "UPS #{} name {:?}: use 1-63 letters, digits, '-', '_' or '.'",
                        i + 1,
                        u.name
                    ),
                ));
            }
            if !seen.insert(u.name.clone()) {
                return Err(err(
                    &key("name"),
                    format!("UPS name {:?} is used twice", u.name),
                ));
            }
            if !(100..=3_600_000).contains(&u.poll_interval_ms) {
                return Err(err(
                    &key("poll_interval_ms"),
                    format!("{} ms is out of range: use 100-3600000", u.poll_interval_ms),
                ));
            }
        }
        if self.executor.shutdown_command.is_empty() {
            return Err(err(
                "executor.shutdown_command",
                "must name a program, e.g. [\"shutdown\", \"-h\", \"now\"]".into(),
            ));
        }
        if let Some(c) = &self.cluster {
            if c.id == 0 {
                return Err(err(
                    "cluster.id",
                    "must be above 0 (and unique in the cluster)".into(),
                ));
            }
            for (key, list) in [("cluster.labels", &c.labels), ("cluster.feeds", &c.feeds)] {
                if list.len() > 32 {
                    return Err(err(key, format!("{} entries; at most 32", list.len())));
                }
                if let Some(bad) = list.iter().find(|x| !valid_name(x)) {
                    return Err(err(
                        key,
                        format!(
                            "{:?} is not a valid name: use 1-63 letters, digits, '-', '_' or '.'",
                            bad.chars().take(80).collect::<String>()
                        ),
                    ));
                }
            }
            if c.min_supplies == 0
                || (!c.feeds.is_empty() && c.min_supplies as usize > c.feeds.len())
            {
                return Err(err(
                    "cluster.min_supplies",
                    format!(
                        "{} must be between 1 and the number of feeds ({})",
                        c.min_supplies,
                        c.feeds.len()
                    ),
                ));
            }
            if c.heartbeat_ms < 100 {
                return Err(err(
                    "cluster.heartbeat_ms",
                    format!("{} ms is too short: use at least 100", c.heartbeat_ms),
                ));
            }
            if c.stale_after_ms <= c.heartbeat_ms {
                return Err(err(
                    "cluster.stale_after_ms",
                    format!(
                        "{} ms must be longer than heartbeat_ms ({})",
                        c.stale_after_ms, c.heartbeat_ms
                    ),
                ));
            }
            if !(100..=60_000).contains(&c.election_timeout_ms) {
                return Err(err(
                    "cluster.election_timeout_ms",
                    format!(
                        "{} ms is out of range: use 100-60000",
                        c.election_timeout_ms
                    ),
                ));
            }
            if !(10..=1_000_000).contains(&c.snapshot_logs) {
                return Err(err(
                    "cluster.snapshot_logs",
                    format!("{} is out of range: use 10-1000000", c.snapshot_logs),
                ));
            }
            if c.advertise.is_none() && self.node.listen.ip().is_unspecified() {
                return Err(err(
                    "cluster.advertise",
                    format!(
                        "[node] listen is {}: set advertise to the address other nodes reach this one on",
                        self.node.listen
                    ),
                ));
            }
        }
        if self.nis.enabled && self.nis.listen.is_empty() {
            return Err(err(
                "nis.listen",
                "is empty: give an address such as \"127.0.0.1:3551\", or set enabled = false"
                    .into(),
            ));
        }
        if self.nis.max_connections == 0 {
            return Err(err("nis.max_connections", "must be at least 1".into()));
        }
        if self.events.keep == 0 {
            return Err(err("events.keep", "must be at least 1".into()));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.ca);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        if let Some(f) = self.events.file.as_mut() {
            fix(f);
        }
        if let Some(d) = self.hooks.script_dir.as_mut() {
            fix(d);
        }
        if let Some(d) = self.hooks.apccontrol.as_mut() {
            fix(d);
        }
        if let Some(f) = self.executor.record_file.as_mut() {
            fix(f);
        }
        if let Some(f) = self.executor.powerfail_dir.as_mut() {
            fix(f);
        }
        if let Some(c) = self.cluster.as_mut() {
            fix(&mut c.data_dir);
            if let Some(p) = c.plan.as_mut() {
                fix(p);
            }
        }
    }
}

impl NodeConfig {
    /// The directories this node writes to at run time, with the key that names each
    /// and whether the node creates it itself (data directories) or needs it to exist.
    fn written_dirs(&self) -> Vec<(&'static str, PathBuf, bool)> {
        let parent = |f: &Path| {
            f.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let mut v = Vec::new();
        if let Some(f) = &self.executor.record_file {
            v.push(("executor.record_file", parent(f), false));
        }
        if let Some(d) = &self.executor.powerfail_dir {
            v.push(("executor.powerfail_dir", d.clone(), false));
        }
        if let Some(f) = &self.events.file {
            v.push(("events.file", parent(f), false));
        }
        if let Some(c) = &self.cluster {
            v.push(("cluster.data_dir", c.data_dir.clone(), true));
            if let Some(m) = &c.marker_dir {
                v.push(("cluster.marker_dir", m.clone(), true));
            }
        }
        v
    }

    /// Checks, without changing anything, that every directory the node will write to
    /// exists (or can be created, for the ones it creates) and is writable: a missing
    /// directory for the record file must not first show up at shutdown time.
    pub fn check_writable(&self) -> Result<(), String> {
        for (key, dir, creates) in self.written_dirs() {
            let target = if dir.exists() {
                dir.clone()
            } else if creates {
                // The nearest existing ancestor must let us create it.
                match dir.ancestors().skip(1).find(|a| a.exists()) {
                    Some(a) => a.to_path_buf(),
                    None => PathBuf::from("."),
                }
            } else {
                return Err(format!(
                    "{key}: the directory {} does not exist: create it, or point {key} elsewhere",
                    dir.display()
                ));
            };
            if !target.is_dir() {
                return Err(format!("{key}: {} is not a directory", target.display()));
            }
            let probe = target.join(format!(".upsilon-write-check-{}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) => {
                    return Err(format!(
                        "{key}: cannot write in {}: {e} (check its owner and mode, or that the disk is not full or read-only)",
                        target.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The `[cluster]` section of a node's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's Raft id: unique in the cluster, never reused.
    pub id: u64,
    /// Where the Raft log and snapshots are kept.
    pub data_dir: PathBuf,
    /// Address other nodes reach this node's API on; default: `[node] listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Create a new one-node cluster with this node as its first voter (once).
    #[serde(default)]
    pub bootstrap: bool,
    /// API addresses of existing members to ask for admission.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Ask to become a voter after joining (otherwise stay a learner).
    #[serde(default)]
    pub voter: bool,
    /// Labels for staged shutdown plans.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The UPSes (by name) that power this host.
    #[serde(default)]
    pub feeds: Vec<String>,
    /// How many of `feeds` must be on line for this host to count as on line.
    #[serde(default = "default_min_supplies")]
    pub min_supplies: u32,
    /// How long this host takes to shut down, from its shutdown command to power off:
    /// a UPS is not cut before it has had this long (or the longer time the cluster
    /// measured in a real outage).
    #[serde(default = "default_shutdown_s")]
    pub shutdown_s: u32,
    /// A plan file to propose when the cluster has no plan yet (usually on the
    /// bootstrap node); later changes go through `upsilon plan apply`.
    #[serde(default)]
    pub plan: Option<PathBuf>,
    /// Where this host keeps its "stage already run" markers (default: data_dir).
    #[serde(default)]
    pub marker_dir: Option<PathBuf>,
    /// How often a node (and each UPS owner) reports even when nothing changed.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A UPS whose owner has not reported for this long is marked comm-lost.
    #[serde(default = "default_stale_ms")]
    pub stale_after_ms: u64,
    /// Raft election timeout (minimum; the maximum is twice this).
    #[serde(default = "default_election_ms")]
    pub election_timeout_ms: u64,
    /// A snapshot is taken after this many log entries; a member that falls further
    /// behind than the entries kept after it (a quarter of this, at most 500) catches
    /// up from the snapshot.
    #[serde(default = "default_snapshot_logs")]
    pub snapshot_logs: u64,
    /// What to do at start with a damaged store (one sled cannot open, one that lost
    /// its contents or entries it had committed): `set-aside` (the default) moves it
    /// aside in the data directory and starts a new store that rejoins the cluster by
    /// itself; `refuse` exits with status 70 for an operator to look. A node that
    /// would bootstrap, or has no seeds, always refuses (a new store would found a new
    /// cluster).
    #[serde(default)]
    pub damaged_store: DamagedStore,
}

/// `[cluster] damaged_store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DamagedStore {
    #[default]
    SetAside,
    Refuse,
}

fn default_snapshot_logs() -> u64 {
    2000
}

fn default_min_supplies() -> u32 {
    1
}

/// A host's shutdown time when it declares none.
pub const DEFAULT_SHUTDOWN_S: u32 = 120;

fn default_shutdown_s() -> u32 {
    DEFAULT_SHUTDOWN_S
}

fn default_heartbeat_ms() -> u64 {
    1000
}
fn default_stale_ms() -> u64 {
    5000
}
fn default_election_ms() -> u64 {
    750
}

/// Node and UPS names: 1-63 of `[A-Za-z0-9._-]`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "node1"
listen = "127.0.0.1:7443"

[tls]
ca = "ca.pem"
cert = "node1.pem"
key = "node1.key"

[[ups]]
name = "ups1"
driver = "sim"
scenario = "power-failure.toml"

[policy]
battery_level = 20
"#;

    fn load_text(text: &str) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, text).unwrap();
        NodeConfig::load(&p)
    }

    #[test]
    fn good_config_has_defaults_and_resolved_paths() {
        let c = load_text(GOOD).unwrap();
        assert_eq!(c.policy.battery_level, 20);
        assert_eq!(c.policy.minutes, 5);
        assert_eq!(c.policy.on_battery_delay, 6);
        assert_eq!(c.executor.mode, ExecutorMode::Record);
        assert!(c.tls.ca.is_absolute());
        assert_eq!(c.ups[0].poll_interval_ms, 1000);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = GOOD.replace("battery_level = 20", "battery_level = 20\nbatery_levle = 3");
        let e = load_text(&text).unwrap_err().to_string();
        assert!(
            e.contains("node.toml:18: policy.batery_levle: unknown field `batery_levle`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = GOOD.replace("battery_level = 20", "battery_level = \"lots\"");
        let e = load_text(&text).unwrap_err().to_string();
        assert!(e.contains(":17: policy.battery_level: invalid type"), "{e}");
    }

    #[test]
    fn out_of_range_value_names_the_key() {
        let text = GOOD.replace("battery_level = 20", "battery_level = 120");
        let e = load_text(&text).unwrap_err().to_string();
        assert!(
            e.contains(":17: policy.battery_level: 120 is not a percentage"),
            "{e}"
        );
    }

    #[test]
    fn worker_threads_default_to_two_and_zero_is_refused() {
        assert_eq!(load_text(GOOD).unwrap().node.worker_threads, 2);
        let text = GOOD.replacen("[node]\n", "[node]\nworker_threads = 0\n", 1);
        let e = load_text(&text).unwrap_err().to_string();
        assert!(
            e.contains("node.worker_threads: 0 worker threads: use 1-16"),
            "{e}"
        );
    }

    #[test]
    fn missing_section_and_bad_syntax_are_reported() {
        let e = load_text("[node]\nname = \"a\"\n").unwrap_err().to_string();
        assert!(e.contains("missing field `tls`"), "{e}");
        let e = load_text("[node\nname = 1").unwrap_err().to_string();
        assert!(e.contains("node.toml:1:"), "{e}");
    }

    #[test]
    fn nis_takes_one_address_or_a_list_and_checks_networks() {
        let c = load_text(GOOD).unwrap();
        assert!(c.nis.enabled);
        assert_eq!(c.nis.listen, vec!["127.0.0.1:3551".parse().unwrap()]);
        let c = load_text(&format!(
            "{GOOD}\n[nis]\nlisten = \"0.0.0.0:3551\"\nallow = \"10.0.0.0/8\"\n"
        ))
        .unwrap();
        assert_eq!(c.nis.listen.len(), 1);
        assert_eq!(c.nis.allow[0].to_string(), "10.0.0.0/8");
        let c = load_text(&format!(
            "{GOOD}\n[nis]\nlisten = [\"127.0.0.1:3551\", \"[::1]:3551\"]\nallow = [\"192.0.2.7\", \"10.1.2.3/8\"]\n"
        ))
        .unwrap();
        assert_eq!(c.nis.listen.len(), 2);
        assert_eq!(c.nis.allow[0].to_string(), "192.0.2.7/32");
        assert_eq!(c.nis.allow[1].to_string(), "10.0.0.0/8");
        let e = load_text(&format!("{GOOD}\n[nis]\nallow = [\"lan\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nis.allow") && e.contains("neither an address nor a network"),
            "{e}"
        );
        let e = load_text(&format!("{GOOD}\n[nis]\nlisten = []\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nis.listen: is empty"), "{e}");
        let c = load_text(&format!("{GOOD}\n[nis]\nenabled = false\nlisten = []\n")).unwrap();
        assert!(!c.nis.enabled);
    }

    #[test]
    fn driver_keys_are_kept_for_the_driver_with_their_place() {
        let c = load_text(&GOOD.replace(
            "driver = \"sim\"",
            "driver = \"apcsmart\"\ndevice = \"/dev/ttyS0\"",
        ))
        .unwrap();
        let u = &c.ups[0];
        assert_eq!(u.driver, "apcsmart");
        assert_eq!(u.settings["device"].as_str(), Some("/dev/ttyS0"));
        assert_eq!(u.settings["scenario"].as_str(), Some("power-failure.toml"));
        let e = u.origin.error("device", "bad".into()).to_string();
        assert!(e.ends_with("node.toml:14: ups.device: bad"), "{e}");
        assert_eq!(
            u.origin.resolve(Path::new("x.toml")),
            u.origin.path.parent().unwrap().join("x.toml")
        );
        let e =
            load_text(&GOOD.replace("[policy]", "[executor]\nups_commands = \"yes\"\n\n[policy]"))
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("executor.ups_commands: unknown variant `yes`"),
            "{e}"
        );
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/node.toml");
        let c = NodeConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.executor.mode, ExecutorMode::Record);
        assert_eq!(c.policy, Policy::default());
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = NodeConfig::load(Path::new("/no/such/node.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/no/such/node.toml"), "{e}");
    }
}
