//! `upsilon legacy check`'s probes: the apcupsd manual's "Master/Slave Connection Not
//! Working" list walked against unmodified peers, each item passing or failing with what
//! to change. Nothing here changes a peer's state: without a handshake packet a slave
//! is only sent a NIS request (a 3.12 slave closes on it, logging one read failure); the
//! handshake, when asked for, carries the values the bridge itself would send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ms_master::{CONNECT_TIMEOUT, REPLY_TIMEOUT};
use crate::netdata::{NetData, PACKET_LEN, PERSISTENT_SLAVE, remote_state};

/// One item of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub item: &'static str,
    /// What was seen and, for a failure, what to change.
    pub text: String,
}

fn ok(item: &'static str, text: impl Into<String>) -> Finding {
    Finding {
        ok: true,
        item,
        text: text.into(),
    }
}

fn fail(item: &'static str, text: impl Into<String>) -> Finding {
    Finding {
        ok: false,
        item,
        text: text.into(),
    }
}

/// Bytes as text for a message: printable ASCII kept, the rest escaped, cut short.
fn shown(b: &[u8]) -> String {
    b.iter()
        .take(40)
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

/// Probes the apcupsd 3.12 slave at `addr` as its master would, stopping at the first
/// failing item. With `handshake`, a first-contact packet carrying those values is
/// sent and the reply's magics checked against `expected_magic`.
pub async fn probe_slave(
    addr: SocketAddr,
    handshake: Option<NetData>,
    expected_magic: Option<&str>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut s = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            out.push(ok(
                "NETPORT reachable",
                format!("{addr} accepts connections"),
            ));
            s
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            out.push(fail(
                "NETPORT reachable",
                format!(
                    "{addr} refused the connection: apcupsd is not running there as UPSCLASS netslave, or its NETPORT is not {}; start it, or set this host's netport to the slave's NETPORT",
                    addr.port()
                ),
            ));
            return out;
        }
        Ok(Err(e)) => {
            out.push(fail(
                "NETPORT reachable",
                format!("{addr}: {e}: check the address and the route to it"),
            ));
            return out;
        }
        Err(_) => {
            out.push(fail(
                "NETPORT reachable",
                format!("{addr} did not answer within {} s: a firewall drops it, or the address is wrong", CONNECT_TIMEOUT.as_secs()),
            ));
            return out;
        }
    };
    // A 3.x slave waits for its master's packet; a program that speaks first is not one.
    let mut buf = vec![0u8; 512];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await
        && n > 0
    {
        out.push(fail(
            "speaks apcupsd 3.x",
            format!(
                "the program on {addr} speaks first ({:?}): it is not an apcupsd slave; netport names another service",
                shown(&buf[..n])
            ),
        ));
        return out;
    }
    // A NIS request: a NIS server answers it; a 3.12 slave reads a short packet and
    // closes (or, from an address that is not its MASTER, closes unread).
    let _ = s.write_all(b"\x00\x06status").await;
    let read = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
    let hint = if handshake.is_some() {
        ""
    } else {
        "; add --handshake to check the magics"
    };
    match read {
        Ok(Ok(n)) if n >= 5 && &buf[2..5] == b"APC" => {
            out.push(fail(
                "not a NIS port",
                format!(
                    "{addr} is an apcupsd NIS port (3.14's NISPORT answered `status`), not a 3.12 NETPORT: set netport to the slave's NETPORT"
                ),
            ));
            return out;
        }
        Ok(Ok(0)) | Ok(Err(_)) => out.push(ok(
            "not a NIS port",
            format!("it closed on a non-packet, as a 3.12 slave does (it logs one \"Read failure from socket\"){hint}"),
        )),
        Ok(Ok(n)) => {
            out.push(fail(
                "speaks apcupsd 3.x",
                format!("{addr} answered a NIS request with {:?}: not an apcupsd slave", shown(&buf[..n])),
            ));
            return out;
        }
        Err(_) => out.push(ok(
            "not a NIS port",
            format!("no answer to a NIS request (a 3.12 slave busy with its master's connection waits like this){hint}"),
        )),
    }
    drop(s);
    let Some(mut p) = handshake else {
        return out;
    };
    let mut s = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        _ => {
            out.push(fail(
                "handshake",
                format!("{addr} no longer accepts connections"),
            ));
            return out;
        }
    };
    p.remote_state = remote_state::NOT_CONNECTED;
    p.apc_magic = crate::netdata::magic_field(crate::netdata::APC_MAGIC);
    p.user_magic = [0; 20];
    if let Err(e) = s.write_all(&p.encode()).await {
        out.push(fail("handshake", format!("cannot write to {addr}: {e}")));
        return out;
    }
    let mut reply = [0u8; PACKET_LEN];
    let started = std::time::Instant::now();
    match tokio::time::timeout(REPLY_TIMEOUT, s.read_exact(&mut reply)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) if started.elapsed() < Duration::from_secs(1) => {
            out.push(fail(
                "authorised master",
                format!(
                    "{addr} closed the connection unread: the slave's MASTER is not this host's address (its log says \"Unauthorised attempt from master\"); run the check from the bridge's host, or set MASTER on the slave to the bridge's address"
                ),
            ));
            return out;
        }
        Ok(Err(e)) => {
            out.push(fail(
                "handshake",
                format!("{addr} closed without a reply: {e}: not an apcupsd 3.x slave"),
            ));
            return out;
        }
        Err(_) => {
            out.push(fail(
                "handshake",
                format!(
                    "no reply within {} s: the slave holds another master connection (the running bridge's?) and will not read ours, or it is not apcupsd",
                    REPLY_TIMEOUT.as_secs()
                ),
            ));
            return out;
        }
    }
    let r = NetData::decode(&reply).expect("a full packet");
    if !r.apc_magic_ok() {
        out.push(fail(
            "APC magic",
            format!(
                "the reply's APC magic is {:?}, not apcupsd 3.x's: the peer is not apcupsd 3.10-3.12 (a NIS port given as NETPORT?)",
                r.apc_magic_text()
            ),
        ));
        return out;
    }
    out.push(ok(
        "APC magic",
        "apcupsd-linux-6.0, as 3.9.9-3.12.4 send it",
    ));
    let got = r.user_magic_text();
    match expected_magic {
        Some(want) if want != got => {
            out.push(fail(
                "user magic",
                format!("the slave's USERMAGIC is {got:?}, the bridge expects {want:?}: set user_magic of this host to {got:?}, or USERMAGIC on the slave to {want:?}"),
            ));
            return out;
        }
        _ => out.push(ok("user magic", format!("{got:?}"))),
    }
    let kind = if r.change_batt == PERSISTENT_SLAVE {
        "persistent (keeps one connection)"
    } else {
        "disconnecting (a connection per packet)"
    };
    out.push(ok("slave kind", kind));
    out
}

/// The program listening on TCP `port` (Linux: from /proc), as "name (pid N)".
pub fn port_holder(port: u16) -> Option<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; st 0A is LISTEN; inode is field 9.
            let (Some(local), Some(st), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if p == Some(port) && *st == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.to_string_lossy() == *i)
            {
                let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", name.trim()));
            }
        }
    }
    Some("another program (the system does not say which)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_refused_port_and_a_program_that_speaks_first_fail_their_item() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = l.local_addr().unwrap();
        drop(l);
        let f = probe_slave(gone, None, None).await;
        assert_eq!(f.len(), 1);
        assert!(
            !f[0].ok && f[0].text.contains("refused the connection"),
            "{f:?}"
        );

        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let f = probe_slave(addr, None, None).await;
        assert!(!f[1].ok && f[1].text.contains("SSH-2.0"), "{f:?}");
    }

    #[test]
    fn the_holder_of_a_port_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let who = port_holder(port).unwrap();
        assert!(
            who.contains(&format!("pid {}", std::process::id())),
            "{who}"
        );
        drop(l);
        assert_eq!(port_holder(port), None);
    }
}
