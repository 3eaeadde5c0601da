//! `upsilon legacy check FILE`: the apcupsd manual's "Master/Slave Connection Not
//! Working" list, walked for every legacy peer a config names. A `bridge.toml`: each
//! master-slave host (its slave) is probed as its master would (`--handshake` also
//! sends a first contact carrying the values the bridge sends, to check the magics);
//! the NIS addresses must be free or the bridge's. A node config: each
//! `legacy-master` UPS's NETPORT must be free or this node's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use upsilon_client::pb_impl;
use upsilon_core::config::NodeConfig;
use upsilon_legacy_bridge::daemon::config::BridgeConfig;
use upsilon_legacy_bridge::daemon::slaves::packet_of;
use upsilon_legacy_bridge::ms_check::{Finding, port_holder, probe_slave};

use crate::conn::ConnArgs;

fn print(peer: &str, findings: &[Finding]) -> bool {
    let mut all_ok = true;
    for f in findings {
        let mark = if f.ok { "ok  " } else { "FAIL" };
        println!("{mark} {peer}: {}: {}", f.item, f.text);
        all_ok &= f.ok;
    }
    all_ok
}

/// A port this config wants to listen on: free, or held by the program named `ours`.
fn port_free(addr: std::net::SocketAddr, what: &str, ours: &str) -> Finding {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Finding {
            ok: true,
            item: "port free",
            text: format!("{what} {addr} can be bound"),
        },
        Err(e) => {
            let holder = port_holder(addr.port());
            let ok = holder.as_deref().is_some_and(|h| h.starts_with(ours));
            Finding {
                ok,
                item: "port free",
                text: match holder {
                    Some(h) if ok => {
                        format!("{what} {addr} is held by {h}: the running {ours} itself")
                    }
                    Some(h) => format!(
                        "{what} {addr} is already taken by {h}: stop it (an apcupsd still running?) or move one of them to another port"
                    ),
                    None => format!("{what} {addr} cannot be bound: {e}"),
                },
            }
        }
    }
}

pub async fn check(conn: &ConnArgs, file: PathBuf, handshake: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let value: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not TOML: {}", file.display(), e.message()))?;
    let ok = if value.contains_key("bridge") {
        check_bridge(conn, &file, handshake).await?
    } else {
        check_node(&file)?
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check_bridge(conn: &ConnArgs, file: &Path, handshake: bool) -> anyhow::Result<bool> {
    let cfg = BridgeConfig::load(file)?;
    let mut all_ok = true;
    for addr in &cfg.nis.listen {
        all_ok &= print("bridge NIS", &[port_free(*addr, "NIS", "upsilon-bridge")]);
    }
    // The values the bridge would send, from the cluster, for a handshake.
    let status = if handshake {
        Some(super::fetch_status(&conn.resolve()?).await.map_err(|e| {
            anyhow::anyhow!(
                "--handshake sends what the bridge would send, read from the cluster: {e}"
            )
        })?)
    } else {
        None
    };
    let mut probed = 0;
    for h in &cfg.hosts {
        if let Some(own) = h.listen {
            all_ok &= print(
                &h.name,
                &[port_free(own, "its own NIS address", "upsilon-bridge")],
            );
        }
        if h.protocol != "master-slave" {
            continue;
        }
        let (Some(ip), Some(port)) = (h.addresses.first(), h.netport) else {
            continue;
        };
        probed += 1;
        let packet = match &status {
            Some(s) => {
                let rec = s
                    .legacy_hosts
                    .iter()
                    .find(|l| l.name == h.name)
                    .map(pb_impl::legacy_host_from_pb)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "the cluster has no legacy host {:?} yet (is the bridge running?): without it --handshake would send made-up values",
                            h.name
                        )
                    })?;
                Some(packet_of(&rec, cfg.bridge.nettime(), None))
            }
            None => None,
        };
        let addr = std::net::SocketAddr::new(*ip, port);
        let f = probe_slave(addr, packet, h.user_magic.as_deref()).await;
        all_ok &= print(&format!("{} ({addr})", h.name), &f);
    }
    if probed == 0 {
        println!(
            "(no master-slave host in {}: NIS hosts poll the bridge, nothing to probe)",
            file.display()
        );
    }
    Ok(all_ok)
}

fn check_node(file: &Path) -> anyhow::Result<bool> {
    let cfg = NodeConfig::load(file)?;
    upsilon_node::driver::check_all(&cfg)?;
    let mut all_ok = true;
    let mut any = false;
    for u in cfg.ups.iter().filter(|u| u.driver == "legacy-master") {
        any = true;
        let c: upsilon_node::driver::legacy_master::Config =
            serde::Deserialize::deserialize(toml::Value::Table(u.settings.clone()))?;
        all_ok &= print(&u.name, &[port_free(c.listen, "NETPORT", "upsilond")]);
        println!(
            "note {}: the master at {} must have `SLAVE` naming this host and `NETPORT {}`; its connections from any other address are refused",
            u.name,
            c.master,
            c.listen.port()
        );
    }
    if !any {
        println!("(no legacy-master UPS in {})", file.display());
    }
    Ok(all_ok)
}
