//! The master side of apcupsd 3.10/3.12's master/slave protocol (docs/protocols/master-slave.md
//! §4-5), one [`SlaveLink`] per slave: a first contact (`remote_state` 0, empty user
//! magic) learns the slave's user magic from its reply; a persistent slave (ChangeBatt
//! 1000 in the reply) keeps one connection, a disconnecting one gets a connection per
//! packet; after a failure the next contact is a reconnect (`remote_state` 2) whose
//! reply must carry the learned magic. Every packet goes out in one write. What to send
//! and when is the caller's: this module only speaks the protocol.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::netdata::{APC_MAGIC, NetData, PACKET_LEN, PERSISTENT_SLAVE, magic_field, remote_state};

/// A 3.10.14+ master's connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a master waits for a slave's answer to a first contact or reconnect.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a packet did not reach a slave, in apcupsd's words with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaveError {
    #[error("Connect to slave {addr} failed. ERR={why} (is apcupsd running there as UPSCLASS netslave with NETPORT {port}, and does its firewall let this host in?)", port = addr.port())]
    Connect { addr: SocketAddr, why: String },
    #[error("Cannot read magic from slave {addr}. ({why})")]
    Magic { addr: SocketAddr, why: String },
    #[error(
        "Bad user magic from slave {addr}: {got:?}, expected {want:?} (set user_magic of this host to the slave's USERMAGIC)"
    )]
    UserMagic {
        addr: SocketAddr,
        got: String,
        want: String,
    },
    #[error("Cannot write to slave {addr}. ERR={why}")]
    Write { addr: SocketAddr, why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    NotConnected,
    Connected,
    Reconnect,
}

/// One slave, as a master keeps it.
#[derive(Debug)]
pub struct SlaveLink {
    addr: SocketAddr,
    state: LinkState,
    stream: Option<TcpStream>,
    /// The slave's user magic, learned at first contact.
    learned: Option<String>,
    /// The user magic the operator expects, if configured.
    expected: Option<String>,
    /// The slave answered without ChangeBatt 1000: a connection per packet.
    disconnecting: bool,
}

impl SlaveLink {
    pub fn new(addr: SocketAddr, expected: Option<String>) -> Self {
        SlaveLink {
            addr,
            state: LinkState::NotConnected,
            stream: None,
            learned: None,
            expected,
            disconnecting: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The slave answered and no write has failed since.
    pub fn connected(&self) -> bool {
        self.state == LinkState::Connected
    }

    /// Closes the connection; the next packet reconnects (as after a failure).
    pub fn close(&mut self) {
        self.stream = None;
        if self.state == LinkState::Connected {
            self.state = LinkState::Reconnect;
        }
    }

    /// Sends `p` (its `remote_state`, magics and ChangeBatt are set here): connecting
    /// and handshaking first when needed. `Ok` once the packet was written.
    pub async fn send(&mut self, mut p: NetData) -> Result<(), SlaveError> {
        p.apc_magic = magic_field(APC_MAGIC);
        let handshake = self.state != LinkState::Connected;
        if self.stream.is_none() {
            let s = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(self.failed_connect(e.to_string())),
                Err(_) => {
                    return Err(self.failed_connect(format!(
                        "no answer within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    )));
                }
            };
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut().expect("connected above");
        if handshake {
            p.remote_state = match self.state {
                LinkState::Reconnect => remote_state::RECONNECT,
                _ => remote_state::NOT_CONNECTED,
            };
            p.user_magic = match self.state {
                LinkState::Reconnect => magic_field(self.learned.as_deref().unwrap_or("")),
                _ => [0; 20],
            };
        } else {
            p.remote_state = remote_state::CONNECTED;
            p.user_magic = magic_field(self.learned.as_deref().unwrap_or(""));
        }
        if let Err(e) = stream.write_all(&p.encode()).await {
            return Err(self.failed_write(e.to_string()));
        }
        if handshake {
            let mut buf = [0u8; PACKET_LEN];
            let read = tokio::time::timeout(REPLY_TIMEOUT, stream.read_exact(&mut buf)).await;
            let why = match read {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("no reply: {e}")),
                Err(_) => Some(format!("no reply within {} s", REPLY_TIMEOUT.as_secs())),
            };
            if let Some(why) = why {
                self.stream = None;
                return Err(SlaveError::Magic {
                    addr: self.addr,
                    why: format!(
                        "{why}; is NETPORT {} apcupsd's, not another program's?",
                        self.addr.port()
                    ),
                });
            }
            let r = NetData::decode(&buf).expect("a full packet");
            if !r.apc_magic_ok() {
                self.stream = None;
                return Err(SlaveError::Magic {
                    addr: self.addr,
                    why: format!(
                        "it answered {:?}: not an apcupsd 3.x slave",
                        r.apc_magic_text()
                    ),
                });
            }
            let got = r.user_magic_text();
            let want = match self.state {
                LinkState::Reconnect => self.learned.clone(),
                _ => self.expected.clone(),
            };
            if let Some(want) = want
                && want != got
            {
                self.stream = None;
                return Err(SlaveError::UserMagic {
                    addr: self.addr,
                    got,
                    want,
                });
            }
            self.learned = Some(got);
            self.disconnecting = r.change_batt != PERSISTENT_SLAVE;
            self.state = LinkState::Connected;
        }
        if self.disconnecting {
            self.stream = None;
        }
        Ok(())
    }

    fn failed_connect(&mut self, why: String) -> SlaveError {
        self.stream = None;
        if self.state == LinkState::Connected {
            self.state = LinkState::Reconnect;
        }
        SlaveError::Connect {
            addr: self.addr,
            why,
        }
    }

    fn failed_write(&mut self, why: String) -> SlaveError {
        self.stream = None;
        if self.state == LinkState::Connected {
            self.state = LinkState::Reconnect;
        }
        SlaveError::Write {
            addr: self.addr,
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A slave that answers handshakes like 3.12.4 (echo, its magic, ChangeBatt
    /// `change_batt`) and returns every packet it read.
    async fn slave(
        l: TcpListener,
        magic: &'static str,
        change_batt: i32,
        n: usize,
    ) -> Vec<NetData> {
        let (mut s, _) = l.accept().await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; PACKET_LEN];
        while out.len() < n {
            if s.read_exact(&mut buf).await.is_err() {
                let (s2, _) = l.accept().await.unwrap();
                s = s2;
                continue;
            }
            let p = NetData::decode(&buf).unwrap();
            if p.wants_reply() {
                let mut r = p.slave_reply(magic);
                r.change_batt = change_batt;
                s.write_all(&r.encode()).await.unwrap();
            }
            out.push(p);
        }
        out
    }

    #[tokio::test]
    async fn first_contact_learns_the_magic_then_packets_carry_it() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let peer = tokio::spawn(slave(l, "rack1", PERSISTENT_SLAVE, 3));
        let mut link = SlaveLink::new(addr, None);
        for chg in [100, 99, 98] {
            link.send(NetData {
                batt_chg: chg,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let got = peer.await.unwrap();
        assert_eq!(got[0].remote_state, remote_state::NOT_CONNECTED);
        assert_eq!(got[0].user_magic_text(), "");
        assert_eq!(got[1].remote_state, remote_state::CONNECTED);
        assert_eq!(got[2].user_magic_text(), "rack1");
        assert_eq!(got[2].batt_chg, 98);
        assert!(got.iter().all(|p| p.apc_magic_ok()));
        assert!(link.connected());
    }

    #[tokio::test]
    async fn a_disconnecting_slave_gets_a_connection_per_packet_and_a_reconnect_checks_the_magic() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // ChangeBatt 0 in the reply: an old "disconnecting" slave.
        let peer = tokio::spawn(slave(l, "old", 0, 3));
        let mut link = SlaveLink::new(addr, None);
        for _ in 0..3 {
            link.send(NetData::default()).await.unwrap();
        }
        let got = peer.await.unwrap();
        let states: Vec<i32> = got.iter().map(|p| p.remote_state).collect();
        assert_eq!(
            states,
            vec![0, 1, 1],
            "one handshake, then packets on new connections"
        );
        assert!(got[1..].iter().all(|p| p.user_magic_text() == "old"));

        // After a failure the next contact is a reconnect carrying the learned magic.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let peer = tokio::spawn(slave(l, "rack1", PERSISTENT_SLAVE, 2));
        let mut link = SlaveLink::new(addr, None);
        link.send(NetData::default()).await.unwrap();
        link.close();
        link.send(NetData::default()).await.unwrap();
        let got = peer.await.unwrap();
        assert_eq!(got[1].remote_state, remote_state::RECONNECT);
        assert_eq!(got[1].user_magic_text(), "rack1");
        // A slave whose magic changed since is refused at the reconnect.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for magic in ["first", "second"] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; PACKET_LEN];
                s.read_exact(&mut buf).await.unwrap();
                let r = NetData::decode(&buf).unwrap().slave_reply(magic);
                s.write_all(&r.encode()).await.unwrap();
            }
        });
        let mut link = SlaveLink::new(addr, None);
        link.send(NetData::default()).await.unwrap();
        link.close();
        let e = link.send(NetData::default()).await.unwrap_err();
        assert_eq!(
            e,
            SlaveError::UserMagic {
                addr,
                got: "second".into(),
                want: "first".into()
            }
        );
    }

    #[tokio::test]
    async fn an_expected_magic_is_checked_and_a_dead_slave_is_named() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(slave(l, "other", PERSISTENT_SLAVE, 1));
        let mut link = SlaveLink::new(addr, Some("rack1".into()));
        let e = link.send(NetData::default()).await.unwrap_err();
        assert!(matches!(e, SlaveError::UserMagic { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("Bad user magic from slave {addr}"))
        );

        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = l.local_addr().unwrap();
        drop(l);
        let e = SlaveLink::new(gone, None)
            .send(NetData::default())
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("Connect to slave {gone} failed. ERR=")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_peer_that_is_not_apcupsd_fails_the_magic() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; PACKET_LEN];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&[b'x'; PACKET_LEN]).await.unwrap();
        });
        let e = SlaveLink::new(addr, None)
            .send(NetData::default())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("Cannot read magic from slave"),
            "{e}"
        );
        assert!(e.to_string().contains("not an apcupsd 3.x slave"), "{e}");
    }
}
