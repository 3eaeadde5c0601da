//! The slave side of apcupsd 3.10/3.12's master/slave protocol (docs/protocols/master-slave.md §4):
//! listen on NETPORT, accept only the master's address, answer a first contact or a
//! reconnect with our magics and the persistent-slave marker, check every other
//! packet's user magic, and keep the latest packet for the node's `legacy-master`
//! driver. Failures are reported in apcupsd's words (each once per failure streak, as
//! apcupsd logs them), each followed by what to change.
//!
//! As a real 3.12.4 slave does (docs/compat.md, "The legacy-master driver"): before a master has
//! sent anything it is waiting, not timed out (`mastertimeout` only once the timeout
//! has really passed since the start); a master that closes its connection is lost at
//! once (a read failure, then `mastertimeout`); and a master's first contact sent
//! before it read its UPS (OnBatt, BattChg and TimeLeft all 0) carries no reading: it is
//! answered, but what the UPS does stays unknown until a packet with data comes.
//!
//! Unlike a 3.12 slave, a packet may arrive in pieces (it is read to its 100 bytes
//! within the timeout), and a master reconnecting while an old connection lingers
//! replaces it at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::netdata::{NetData, PACKET_LEN};

/// apcupsd's MASTER_TIMEOUT: no packet for this long means the master is lost.
pub const MASTER_TIMEOUT: Duration = Duration::from_secs(120);

/// What the slave is.
#[derive(Debug, Clone)]
pub struct SlaveConfig {
    /// NISIP:NETPORT.
    pub listen: SocketAddr,
    /// The only address a master may connect from.
    pub master: IpAddr,
    /// Our USERMAGIC (empty when unset, as apcupsd's).
    pub user_magic: String,
    pub timeout: Duration,
}

/// Something worth an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaveEvent {
    /// A good packet after none or after a failure: apcupsd's `masterconnect`.
    Connected(String),
    /// A failure in apcupsd's words, with what to change: a log line.
    Failure(String),
    /// No packet within the timeout: apcupsd's `mastertimeout`.
    MasterTimeout(String),
}

/// What the master last told, as the driver reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterState {
    /// The latest packet with data, recent enough.
    Packet(NetData),
    /// No data yet, and the timeout has not passed: waiting, not lost.
    Waiting(String),
    /// The master is lost (silent past the timeout, its connection closed, or the port
    /// could not be bound).
    Lost(String),
}

#[derive(Debug, Default)]
struct Inner {
    latest: Option<(NetData, Instant)>,
    /// The last good packet of any kind (a first contact included).
    heard: Option<Instant>,
    /// The master closed its connection and sent no data since: lost at once.
    closed: Option<String>,
    events: Vec<SlaveEvent>,
    /// The last call succeeded: the next failure is logged (apcupsd's streak rule).
    last_ok: bool,
    /// The kind of failure logged last in this streak (another kind is logged too).
    last_failure: Option<&'static str>,
    /// A timeout was reported in this streak.
    timed_out: bool,
    /// The master is connected and sending (a `Connected` was reported).
    connected: bool,
    bind_error: Option<String>,
}

/// The listener's findings, shared with the driver.
pub struct Slave {
    cfg: SlaveConfig,
    inner: Mutex<Inner>,
    started: Instant,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Slave {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
    }
}

impl Slave {
    /// Starts listening (in a task on the current runtime).
    pub fn start(cfg: SlaveConfig) -> Arc<Slave> {
        let s = Arc::new(Slave {
            cfg,
            inner: Mutex::new(Inner {
                last_ok: true,
                ..Default::default()
            }),
            started: Instant::now(),
            task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&s);
        let listen = s.cfg.listen;
        let task = tokio::spawn(async move {
            let l = match bind(listen).await {
                Ok(l) => l,
                Err(e) => {
                    if let Some(s) = weak.upgrade() {
                        s.lock().bind_error = Some(e);
                    }
                    return;
                }
            };
            accept_loop(weak, l).await;
        });
        *s.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the master last told: a recent packet with data, waiting for the first
    /// one, or lost (also raising the `mastertimeout` event once per streak).
    pub fn latest(&self) -> MasterState {
        let mut g = self.lock();
        if let Some(e) = &g.bind_error {
            return MasterState::Lost(e.clone());
        }
        let since = g.heard.unwrap_or(self.started);
        let why = if let Some(closed) = &g.closed {
            format!("Master not responding. ({closed})")
        } else if since.elapsed() >= self.cfg.timeout {
            format!(
                "Master not responding. (no packet from {} for {} s: is its apcupsd running with UPSCLASS netmaster, SLAVE naming this host and NETPORT {}?)",
                self.cfg.master,
                self.cfg.timeout.as_secs(),
                self.cfg.listen.port()
            )
        } else if let Some((p, _)) = &g.latest {
            return MasterState::Packet(p.clone());
        } else {
            return MasterState::Waiting(format!(
                "waiting for the first reading from master {} (NETPORT {}; it is lost after {} s without a packet)",
                self.cfg.master,
                self.cfg.listen.port(),
                self.cfg.timeout.as_secs()
            ));
        };
        if !g.timed_out {
            g.timed_out = true;
            g.connected = false;
            g.events.push(SlaveEvent::MasterTimeout(why.clone()));
        }
        MasterState::Lost(why)
    }

    /// The events since the last call.
    pub fn take_events(&self) -> Vec<SlaveEvent> {
        std::mem::take(&mut self.lock().events)
    }

    /// A failure in apcupsd's words: logged once per streak, as apcupsd does, except
    /// that a failure of another kind within the streak is logged too.
    fn fail(&self, kind: &'static str, msg: String) {
        let mut g = self.lock();
        if g.last_ok || g.last_failure != Some(kind) {
            g.events.push(SlaveEvent::Failure(msg));
        }
        g.last_ok = false;
        g.last_failure = Some(kind);
    }

    fn accepted(&self, p: NetData, peer: IpAddr) {
        let mut g = self.lock();
        if !g.connected {
            g.events.push(SlaveEvent::Connected(format!(
                "Connect from master {peer} succeeded"
            )));
        }
        let now = Instant::now();
        g.connected = true;
        g.last_ok = true;
        g.last_failure = None;
        g.heard = Some(now);
        // A first contact sent before the master read its UPS says nothing about it.
        let no_reading = p.remote_state == crate::netdata::remote_state::NOT_CONNECTED
            && p.on_batt == 0
            && p.batt_chg == 0
            && p.time_left == 0;
        if no_reading {
            return;
        }
        g.timed_out = false;
        g.closed = None;
        g.latest = Some((p, now));
    }

    fn lost(&self) {
        self.lock().connected = false;
    }

    /// The master closed the connection: lost now, as a 3.12 slave reports it.
    fn closed(&self, why: String) {
        let mut g = self.lock();
        g.connected = false;
        g.closed = Some(why);
    }
}

async fn bind(listen: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another program holds NETPORT: an apcupsd slave still running? `ss -ltnp` names it; stop it or pick another port on both ends)"
        } else {
            ""
        };
        format!("Cannot bind to port {}: {e}{hint}", listen.port())
    })
}

async fn accept_loop(slave: std::sync::Weak<Slave>, l: TcpListener) {
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let accepted = l.accept().await;
        let Some(s) = slave.upgrade() else { return };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                s.fail("accept", format!("Socket accept error: {e}"));
                drop(s);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), IpAddr::V4),
            v4 => v4,
        };
        if ip != s.cfg.master {
            s.fail(
                "unauthorised",
                format!(
                "Unauthorised attempt from master {ip} (connection closed unread; this slave's master is {}: if {ip} is the master now, set master = \"{ip}\")",
                s.cfg.master
            ),
            );
            drop(stream);
            continue;
        }
        // The master reconnects only when it gave the old connection up.
        if let Some(old) = current.take() {
            old.abort();
        }
        current = Some(tokio::spawn(connection(
            std::sync::Arc::downgrade(&s),
            stream,
            ip,
        )));
    }
}

/// One master connection: packets until it fails.
async fn connection(slave: std::sync::Weak<Slave>, mut stream: TcpStream, peer: IpAddr) {
    let (timeout, own_magic) = match slave.upgrade() {
        Some(s) => (s.cfg.timeout, s.cfg.user_magic.clone()),
        None => return,
    };
    let mut buf = [0u8; PACKET_LEN];
    loop {
        let read = tokio::time::timeout(timeout, stream.read_exact(&mut buf)).await;
        let Some(s) = slave.upgrade() else { return };
        match read {
            Err(_) => {
                // Silence on an open connection: `latest()` reports the timeout.
                s.lost();
                return;
            }
            Ok(Err(e)) => {
                let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    format!(
                        "the master at {peer} closed the connection (it reconnects by itself; if not, check its apcupsd)"
                    )
                } else {
                    format!("{e} (master {peer})")
                };
                s.fail("read", format!("Read failure from socket. ERR={why}"));
                s.closed(why);
                return;
            }
            Ok(Ok(_)) => {}
        }
        let p = NetData::decode(&buf).expect("a full packet");
        if !p.apc_magic_ok() {
            s.fail(
                "apc magic",
                format!(
                "Bad APC magic from master: {} (the peer at {peer} is not an apcupsd 3.x master: check it runs apcupsd 3.10/3.12 with UPSCLASS netmaster, and that its NETPORT is not a NIS port)",
                p.apc_magic_text()
            ),
            );
            s.lost();
            return;
        }
        if p.wants_reply() {
            let reply = p.slave_reply(&own_magic).encode();
            if let Err(e) = stream.write_all(&reply).await {
                s.fail(
                    "read",
                    format!("Read failure from socket. ERR={e} (master {peer})"),
                );
                s.lost();
                return;
            }
        } else if p.user_magic_text()
            != crate::netdata::magic_text(&crate::netdata::magic_field(&own_magic))
        {
            s.fail(
                "user magic",
                format!(
                "Bad user magic from master: {} (the master still holds an older USERMAGIC of this slave: restart apcupsd on the master so it learns {:?} again)",
                p.user_magic_text(),
                own_magic
            ),
            );
            s.lost();
            return;
        }
        s.accepted(p, peer);
    }
}
