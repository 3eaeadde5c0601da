//! `bridge.toml`: where the cluster is, the bridge's certificate, where it serves NIS,
//! and the legacy hosts it speaks for. Errors name the file, line and key.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use upsilon_core::config::{
    ConfigError, TlsSection, line_of_key, networks, one_or_many, parse_toml,
};
use upsilon_core::replicated::legacy::LegacyHostDecl;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    pub bridge: BridgeSection,
    /// The cluster CA and the bridge's own certificate (role `bridge`), as a node's.
    pub tls: TlsSection,
    pub nis: NisSection,
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostSection>,
}

/// `[bridge]`: the cluster and the timing of what the bridge reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    /// The cluster's nodes (their API `host:port`): the bridge follows one and moves
    /// to the next when it stops answering.
    #[serde(deserialize_with = "one_or_many")]
    pub nodes: Vec<String>,
    /// A host told to shut down that has not polled for this long has halted.
    #[serde(default = "default_halt_silence")]
    pub halt_silence_s: u64,
    /// A host that has not polled for this long (outside a shutdown) is silent.
    #[serde(default = "default_silent_after")]
    pub silent_after_s: u64,
    /// With no word from the cluster for this long, legacy hosts read COMMLOST.
    #[serde(default = "default_cluster_timeout")]
    pub cluster_timeout_s: u64,
    /// How often a master/slave host gets a packet outside a power event (apcupsd's
    /// NETTIME; every second while its supply is on battery).
    #[serde(default = "default_nettime")]
    pub nettime_s: u64,
    /// The cluster node whose host runs this bridge, if one does: in an outage that
    /// node's halt waits until this bridge's legacy hosts are down (no stage waits for
    /// it), so the hosts are told and followed to the end wherever the plan puts it.
    #[serde(default)]
    pub runs_on: Option<String>,
}

fn default_nettime() -> u64 {
    60
}

fn default_halt_silence() -> u64 {
    30
}
fn default_silent_after() -> u64 {
    300
}
fn default_cluster_timeout() -> u64 {
    10
}

impl BridgeSection {
    pub fn halt_silence(&self) -> Duration {
        Duration::from_secs(self.halt_silence_s)
    }
    pub fn silent_after(&self) -> Duration {
        Duration::from_secs(self.silent_after_s)
    }
    pub fn cluster_timeout(&self) -> Duration {
        Duration::from_secs(self.cluster_timeout_s)
    }
    pub fn nettime(&self) -> Duration {
        Duration::from_secs(self.nettime_s)
    }
}

/// `[nis]`: where legacy hosts (and `apcaccess`) reach the bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NisSection {
    /// Addresses to listen on, e.g. `"192.0.2.5:3551"` (required: a bridge serves
    /// other machines, and 127.0.0.1:3551 is the local node's own NIS).
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<SocketAddr>,
    /// Client networks allowed to connect; empty allows any peer that reaches `listen`.
    #[serde(default, deserialize_with = "networks")]
    pub allow: Vec<ipnet::IpNet>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The cluster UPS that peers which are no declared host read (`apcaccess` from an
    /// operator's desk); the first UPS by name if unset.
    #[serde(default)]
    pub ups: Option<String>,
}

fn default_max_connections() -> usize {
    64
}

/// One `[[host]]`: a machine running an unmodified apcupsd `net` client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    pub name: String,
    /// The addresses its requests come from (IP addresses).
    #[serde(default, deserialize_with = "ip_addresses")]
    pub addresses: Vec<IpAddr>,
    /// A listen address of its own: whoever connects there is this host (for hosts
    /// behind NAT or sharing an address).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub labels: Vec<String>,
    pub feeds: Vec<String>,
    #[serde(default = "one")]
    pub min_supplies: u32,
    #[serde(default = "nis")]
    pub protocol: String,
    /// `master-slave`: the slave's NETPORT (no default, as in apcupsd).
    #[serde(default)]
    pub netport: Option<u16>,
    /// `master-slave`: the slave's USERMAGIC, if it has one to check.
    #[serde(default)]
    pub user_magic: Option<String>,
    /// Seconds it takes to shut down once told (the cluster measures it too).
    #[serde(default = "default_shutdown_s")]
    pub shutdown_s: u32,
}

fn default_shutdown_s() -> u32 {
    upsilon_core::replicated::state::DEFAULT_SHUTDOWN_S
}

/// IP addresses, one or many; names are refused (they are not resolved).
fn ip_addresses<'de, D>(d: D) -> Result<Vec<IpAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v: Vec<String> = one_or_many(d)?;
    v.iter()
        .map(|s| {
            s.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{s:?} is not an IP address (requests are matched by the address they come from; names are not resolved)"
                ))
            })
        })
        .collect()
}

fn one() -> u32 {
    1
}
fn nis() -> String {
    "nis".into()
}

impl HostSection {
    /// The declaration the cluster records.
    pub fn decl(&self) -> LegacyHostDecl {
        let mut addresses: Vec<String> = self.addresses.iter().map(|a| a.to_string()).collect();
        if let Some(l) = self.listen {
            addresses.push(format!("via {l}"));
        }
        LegacyHostDecl {
            name: self.name.clone(),
            addresses,
            labels: self.labels.clone(),
            feeds: self.feeds.clone(),
            min_supplies: self.min_supplies,
            protocol: self.protocol.clone(),
            shutdown_s: self.shutdown_s,
        }
    }
}

impl BridgeConfig {
    /// Reads, parses and checks `path`; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: BridgeConfig = parse_toml(path, &text)?;
        cfg.validate(path, &text)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for p in [&mut cfg.tls.ca, &mut cfg.tls.cert, &mut cfg.tls.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |key: &str, line: Option<usize>, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line.unwrap_or_else(|| line_of_key(text, key)),
            key: key.to_string(),
            message,
        };
        if self.bridge.nodes.is_empty() {
            return Err(err(
                "bridge.nodes",
                None,
                "lists no node: name the cluster's nodes, e.g. nodes = [\"10.0.0.1:7000\"]".into(),
            ));
        }
        for (key, v) in [
            ("bridge.halt_silence_s", self.bridge.halt_silence_s),
            ("bridge.silent_after_s", self.bridge.silent_after_s),
            ("bridge.cluster_timeout_s", self.bridge.cluster_timeout_s),
            ("bridge.nettime_s", self.bridge.nettime_s),
        ] {
            if v == 0 {
                return Err(err(key, None, "must be at least 1 second".into()));
            }
        }
        if self.nis.listen.is_empty() {
            return Err(err(
                "nis.listen",
                None,
                "lists no address: where legacy hosts reach the bridge, e.g. \"192.0.2.5:3551\""
                    .into(),
            ));
        }
        let sections = upsilon_core::config::array_sections(text, "host");
        let mut names = std::collections::BTreeSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let line = sections.get(i).map(|(l, _)| *l);
            let key = |k: &str| format!("host.{k}");
            h.decl()
                .validate()
                .map_err(|e| err(&key("name"), line, e))?;
            if !names.insert(h.name.clone()) {
                return Err(err(
                    &key("name"),
                    line,
                    format!("legacy host {:?} is declared twice", h.name),
                ));
            }
            if h.protocol == "master-slave" {
                let why = if h.netport.is_none() {
                    Some(
                        "needs the slave's netport (its NETPORT; apcupsd has no default, its sample says 6666)",
                    )
                } else if h.addresses.is_empty() {
                    Some(
                        "needs the slave's address (addresses = [\"192.0.2.30\"]): the bridge connects to it",
                    )
                } else if h.listen.is_some() {
                    Some("takes no listen address: the bridge connects to the slave")
                } else if h.user_magic.as_ref().is_some_and(|m| m.len() > 19) {
                    Some("user_magic holds at most 19 bytes")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(err(
                        &key("protocol"),
                        line,
                        format!("legacy host {:?} (master-slave) {why}", h.name),
                    ));
                }
            } else if h.netport.is_some() || h.user_magic.is_some() {
                return Err(err(
                    &key("netport"),
                    line,
                    format!(
                        "legacy host {:?}: netport and user_magic are for protocol = \"master-slave\"",
                        h.name
                    ),
                ));
            }
            if h.addresses.is_empty() && h.listen.is_none() {
                return Err(err(
                    &key("addresses"),
                    line,
                    format!(
                        "legacy host {:?}: give the addresses its requests come from (addresses = [\"192.0.2.20\"]) or a listen address of its own",
                        h.name
                    ),
                ));
            }
            if let Some(l) = h.listen
                && self.nis.listen.contains(&l)
            {
                return Err(err(
                    &key("listen"),
                    line,
                    format!(
                        "legacy host {:?}: {l} is also in nis.listen; a host's own address must be another one",
                        h.name
                    ),
                ));
            }
            // NIS requests are matched by their source address: one host per address.
            let nis_pair =
                |a: &HostSection, b: &HostSection| a.protocol == "nis" && b.protocol == "nis";
            for (j, other) in self.hosts.iter().enumerate().take(i) {
                if !nis_pair(h, other) {
                    continue;
                }
                if let Some(a) = h.addresses.iter().find(|a| other.addresses.contains(a)) {
                    return Err(err(
                        &key("addresses"),
                        line,
                        format!(
                            "legacy hosts {:?} and {:?} (host {}) both claim {a}: requests from it must name one host; give one of them a listen address of its own",
                            h.name,
                            other.name,
                            j + 1
                        ),
                    ));
                }
                if h.listen.is_some() && h.listen == other.listen {
                    return Err(err(
                        &key("listen"),
                        line,
                        format!(
                            "legacy hosts {:?} and {:?} share a listen address",
                            h.name, other.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<BridgeConfig, String> {
        let dir = std::env::temp_dir().join(format!("bridge-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("b{}.toml", text.len()));
        std::fs::write(&p, text).unwrap();
        BridgeConfig::load(&p).map_err(|e| e.to_string())
    }

    const HEAD: &str = r#"
[bridge]
nodes = ["127.0.0.1:7000"]
[tls]
ca = "ca.pem"
cert = "bridge.pem"
key = "bridge.key"
[nis]
listen = "127.0.0.1:3555"
"#;

    #[test]
    fn the_shipped_example_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/bridge.toml");
        let cfg = BridgeConfig::load(&p).unwrap();
        assert!(!cfg.hosts.is_empty());
        assert!(cfg.tls.ca.is_absolute());
    }

    #[test]
    fn hosts_default_and_are_checked() {
        let cfg = load(&format!(
            "{HEAD}\n[[host]]\nname = \"old1\"\naddresses = \"127.0.0.5\"\nfeeds = [\"ups1\"]\n"
        ))
        .unwrap();
        assert_eq!(cfg.hosts[0].min_supplies, 1);
        assert_eq!(cfg.hosts[0].protocol, "nis");
        assert_eq!(cfg.bridge.halt_silence_s, 30);

        let e = load(&format!(
            "{HEAD}\n[[host]]\nname = \"old1\"\nfeeds = [\"ups1\"]\n"
        ))
        .unwrap_err();
        assert!(e.contains(":11: host.addresses:"), "{e}");
        let e = load(&format!(
            "{HEAD}\n[[host]]\nname = \"a\"\naddresses = \"127.0.0.5\"\nfeeds = [\"u\"]\n\n[[host]]\nname = \"b\"\naddresses = [\"127.0.0.5\"]\nfeeds = [\"u\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.contains(":16: host.addresses:") && e.contains("both claim 127.0.0.5"),
            "{e}"
        );
        let e = load(&format!(
            "{HEAD}\n[[host]]\nname = \"a\"\naddresses = \"old-box\"\nfeeds = [\"u\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("host.addresses") && e.contains("is not an IP address"),
            "{e}"
        );
        let e = load(&HEAD.replace("nodes = [\"127.0.0.1:7000\"]", "nodes = []")).unwrap_err();
        assert!(e.contains("bridge.nodes: lists no node"), "{e}");
        let e = load(&format!(
            "{HEAD}\n[[host]]\nname = \"a\"\nlisten = \"127.0.0.1:3555\"\nfeeds = [\"u\"]\n"
        ))
        .unwrap_err();
        assert!(e.contains("also in nis.listen"), "{e}");
    }
}
