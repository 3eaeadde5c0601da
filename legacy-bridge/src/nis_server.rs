//! The NIS server: apcupsd's port-3551 protocol (docs/protocols/nis.md §2), serving
//! whatever [`NisView`] it is given, so the node (its own host) and the bridge (each
//! legacy host its own supply) share one implementation.
//!
//! Like apcupsd: several commands per connection, a connection dropped after
//! [`READ_TIMEOUT`](crate::nis::READ_TIMEOUT) without a command, a command longer than
//! 256 bytes closes it, `Invalid command` keeps it open. Unlike apcupsd: a bound on
//! connections (a client beyond it is closed at once), an allow-list of client
//! networks (a refused peer is logged with its address), and every reply leaves in one
//! write (apcupsd writes each line apart and meets delayed ACKs: ~23 requests/s on one
//! connection).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::nis::{self, Command, Frame, NisError};

/// apcupsd sends at most this many events-file lines (NLE).
pub const MAX_EVENT_LINES: usize = 50;

/// What a NIS server serves. Each call is for one request from `peer`, so a view may
/// answer each client differently (the bridge serves each legacy host its own supply).
pub trait NisView: Send + Sync + 'static {
    /// The `status` records in apcaccess order, each ending in `\n`, `END APC` last
    /// (the `APC` header is added here).
    fn status(&self, peer: SocketAddr) -> Vec<String>;
    /// The events file's lines, oldest first, each ending in `\n` (only the last 50
    /// are sent); `None` when there is no events file (`Not available`).
    fn events(&self, peer: SocketAddr) -> Option<Vec<String>>;
}

/// Who may connect and how much a server takes.
#[derive(Debug, Clone)]
pub struct NisPolicy {
    /// Client networks allowed to connect; empty allows any peer that reaches the
    /// listening address.
    pub allow: Vec<IpNet>,
    /// Connections served at once; more are closed at once (and logged).
    pub max_connections: usize,
    /// A connection without a command for this long is closed (apcupsd: 15 s).
    pub idle: Duration,
}

impl Default for NisPolicy {
    fn default() -> Self {
        NisPolicy {
            allow: Vec::new(),
            max_connections: 64,
            idle: nis::READ_TIMEOUT,
        }
    }
}

impl NisPolicy {
    /// Whether `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// Parses an allow-list entry: a network (`10.0.0.0/8`, `fd00::/8`) or one address.
pub use upsilon_core::config::parse_network as parse_allow;

/// The bytes answering one command, whole: sent in one write.
pub fn reply(view: &dyn NisView, peer: SocketAddr, cmd: Command) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |payload: &[u8]| match nis::encode(payload) {
        Ok(b) => out.extend(b),
        // A line longer than 65535 bytes cannot be framed; apcupsd's lines are short,
        // so this is a view's bug: send the rest rather than nothing.
        Err(e) => tracing::warn!("NIS: dropped a line from the reply: {e}"),
    };
    match cmd {
        Command::Status => {
            let records = view.status(peer);
            push(nis::status_header(&records).as_bytes());
            for r in &records {
                push(r.as_bytes());
            }
        }
        Command::Events => match view.events(peer) {
            Some(lines) => {
                let skip = lines.len().saturating_sub(MAX_EVENT_LINES);
                for l in &lines[skip..] {
                    push(l.as_bytes());
                }
            }
            None => push(nis::NOT_AVAILABLE),
        },
        Command::Invalid => push(nis::INVALID_COMMAND),
    }
    out.extend_from_slice(&nis::END);
    out
}

/// A NIS server on one or more listeners.
pub struct NisServer {
    view: Arc<dyn NisView>,
    policy: NisPolicy,
    slots: Arc<Semaphore>,
    /// Who serves (`upsilond`, `upsilon-bridge`), for the log.
    name: &'static str,
}

/// Binding a NIS listening address failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for NIS on {addr}: {source}{hint}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
    hint: &'static str,
}

impl BindError {
    /// The port is taken (an apcupsd still running during a migration, say).
    pub fn in_use(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AddrInUse
    }
}

/// Binds every address in `listen`.
pub async fn bind(listen: &[SocketAddr]) -> Result<Vec<TcpListener>, BindError> {
    let mut out = Vec::new();
    for addr in listen {
        match TcpListener::bind(addr).await {
            Ok(l) => out.push(l),
            Err(source) => {
                let hint = match source.kind() {
                    std::io::ErrorKind::AddrInUse => {
                        " (is apcupsd, or another NIS server, still running? stop it, or move one of them to another port)"
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    }
                    _ => "",
                };
                return Err(BindError {
                    addr: *addr,
                    source,
                    hint,
                });
            }
        }
    }
    Ok(out)
}

/// Serves each `(server, listener)` pair on a thread of its own running a
/// single-threaded runtime, each until its `stop` future completes. A NIS reply is small
/// and built synchronously; on a multi-threaded runtime most of a request's time went
/// to waking other workers (`perf`: 68 % in the kernel), so NIS keeps to one thread,
/// away from the daemon's other work.
pub fn serve_on_own_thread<F>(
    name: &str,
    pairs: Vec<(Arc<NisServer>, TcpListener, F)>,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    // A listener belongs to the runtime that registered it: hand them over as std ones.
    let pairs: Vec<(Arc<NisServer>, std::net::TcpListener, F)> = pairs
        .into_iter()
        .map(|(s, l, stop)| l.into_std().map(|l| (s, l, stop)))
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for (server, l, stop) in pairs {
                    match TcpListener::from_std(l) {
                        Ok(l) => {
                            tasks.spawn(server.serve(l, stop));
                        }
                        Err(e) => tracing::error!("NIS: cannot serve a listener: {e}"),
                    }
                }
                while tasks.join_next().await.is_some() {}
            });
        })
}

impl NisServer {
    pub fn new(view: Arc<dyn NisView>, policy: NisPolicy, name: &'static str) -> Arc<Self> {
        let slots = Arc::new(Semaphore::new(policy.max_connections.max(1)));
        Arc::new(NisServer {
            view,
            policy,
            slots,
            name,
        })
    }

    /// Accepts connections on `listener` until `stop` completes.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) {
        if let Ok(a) = listener.local_addr() {
            tracing::info!(server = self.name, "serving apcupsd NIS on {a}");
        }
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!("NIS: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if !self.policy.allows(peer.ip()) {
                tracing::warn!(%peer, "NIS: refused a client outside the allowed networks");
                continue;
            }
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                tracing::warn!(
                    %peer,
                    "NIS: refused a client: {} connections are open already",
                    self.policy.max_connections
                );
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.connection(stream, peer).await;
                drop(slot);
            });
        }
    }

    /// One client: commands until it closes, sends something unframeable, or idles.
    async fn connection(&self, mut stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        loop {
            let cmd = match nis::read_frame(&mut stream, nis::MAX_COMMAND, self.policy.idle).await {
                Ok(Frame::Message(m)) => Command::parse(&m),
                // An empty message: apcupsd reads it as end of input and closes.
                Ok(Frame::End) | Err(NisError::Closed) | Err(NisError::Timeout(_)) => return,
                Err(e) => {
                    tracing::debug!(%peer, "NIS: closing the connection: {e}");
                    return;
                }
            };
            let bytes = reply(self.view.as_ref(), peer, cmd);
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    struct Fixed;

    impl NisView for Fixed {
        fn status(&self, _peer: SocketAddr) -> Vec<String> {
            vec![
                "UPSNAME  : ups1\n".into(),
                "STATUS   : ONLINE \n".into(),
                "END APC  : 2026-12-02 10:00:00 +0000  \n".into(),
            ]
        }
        fn events(&self, _peer: SocketAddr) -> Option<Vec<String>> {
            Some((0..60).map(|i| format!("event {i}\n")).collect())
        }
    }

    struct NoEvents;

    impl NisView for NoEvents {
        fn status(&self, _peer: SocketAddr) -> Vec<String> {
            Vec::new()
        }
        fn events(&self, _peer: SocketAddr) -> Option<Vec<String>> {
            None
        }
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    fn frames(mut b: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some((f, n)) = nis::decode(b, 65535).unwrap() {
            out.push(f);
            b = &b[n..];
        }
        assert!(b.is_empty(), "trailing bytes {b:?}");
        out
    }

    #[test]
    fn golden_status_reply() {
        let b = reply(&Fixed, peer(), Command::Status);
        let mut want = nis::encode(b"APC      : 001,003,0074\n").unwrap();
        want.extend(nis::encode(b"UPSNAME  : ups1\n").unwrap());
        want.extend(nis::encode(b"STATUS   : ONLINE \n").unwrap());
        want.extend(nis::encode(b"END APC  : 2026-12-02 10:00:00 +0000  \n").unwrap());
        want.extend([0, 0]);
        assert_eq!(b, want);
    }

    #[test]
    fn events_are_the_last_50_and_missing_events_say_not_available() {
        let f = frames(&reply(&Fixed, peer(), Command::Events));
        assert_eq!(f.len(), 51);
        assert_eq!(f[0], Frame::Message(b"event 10\n".to_vec()));
        assert_eq!(f[50], Frame::End);
        let f = frames(&reply(&NoEvents, peer(), Command::Events));
        assert_eq!(
            f,
            vec![Frame::Message(b"Not available\n\0".to_vec()), Frame::End]
        );
        let f = frames(&reply(&NoEvents, peer(), Command::Invalid));
        assert_eq!(
            f,
            vec![Frame::Message(b"Invalid command\n\0".to_vec()), Frame::End]
        );
    }

    #[test]
    fn allow_list_parses_networks_and_addresses() {
        let p = NisPolicy {
            allow: vec![
                parse_allow("10.0.0.0/8").unwrap(),
                parse_allow("192.0.2.7").unwrap(),
                parse_allow("fd00::/8").unwrap(),
            ],
            ..Default::default()
        };
        assert!(p.allows("10.1.2.3".parse().unwrap()));
        assert!(p.allows("192.0.2.7".parse().unwrap()));
        assert!(p.allows("::ffff:10.9.9.9".parse().unwrap()));
        assert!(p.allows("fd12::1".parse().unwrap()));
        assert!(!p.allows("192.0.2.8".parse().unwrap()));
        assert!(!p.allows("127.0.0.1".parse().unwrap()));
        assert!(NisPolicy::default().allows("127.0.0.1".parse().unwrap()));
        let e = parse_allow("10.0.0/33").unwrap_err();
        assert!(e.contains("neither an address nor a network"), "{e}");
    }

    async fn start(view: Arc<dyn NisView>, policy: NisPolicy) -> SocketAddr {
        let l = bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap();
        let l = l.into_iter().next().unwrap();
        let addr = l.local_addr().unwrap();
        let server = NisServer::new(view, policy, "test");
        tokio::spawn(server.serve(l, std::future::pending()));
        addr
    }

    /// The server closes `c` (within 5 s) without sending anything more.
    async fn assert_closed(c: &mut TcpStream) {
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("the server should close the connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "the server should have closed the connection");
    }

    async fn ask(c: &mut TcpStream, cmd: &[u8]) -> Result<Vec<Vec<u8>>, NisError> {
        nis::write_message(c, cmd).await?;
        nis::read_reply(c, 65535, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn several_commands_on_one_connection_then_bad_input_closes_it() {
        let addr = start(Arc::new(Fixed), NisPolicy::default()).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            let r = ask(&mut c, b"status").await.unwrap();
            assert_eq!(r[0], b"APC      : 001,003,0074\n");
            assert_eq!(
                ask(&mut c, b"bogus").await.unwrap()[0],
                b"Invalid command\n\0"
            );
        }
        // 300 bytes announced: more than the 256 apcupsd takes; the server closes.
        c.write_all(&[0x01, 0x2c]).await.unwrap();
        c.write_all(&[b'x'; 300]).await.unwrap();
        assert_closed(&mut c).await;
        // Others are served as before.
        let mut d = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut d, b"status").await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn idle_and_one_byte_clients_are_dropped_and_the_bound_holds() {
        let policy = NisPolicy {
            max_connections: 2,
            idle: Duration::from_millis(300),
            ..Default::default()
        };
        let addr = start(Arc::new(Fixed), policy).await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        // Half a length prefix, then nothing.
        b.write_all(&[0x00]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A third is over the bound: closed at once, without a reply.
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_closed(&mut c).await;
        // The idle ones are dropped after the idle limit, freeing their slots.
        assert_closed(&mut a).await;
        assert_closed(&mut b).await;
        let mut d = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut d, b"status").await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_peer_outside_the_allow_list_is_closed_unanswered() {
        let policy = NisPolicy {
            allow: vec![parse_allow("192.0.2.0/24").unwrap()],
            ..Default::default()
        };
        let addr = start(Arc::new(Fixed), policy).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = nis::write_message(&mut c, b"status").await;
        assert_closed(&mut c).await;
    }

    #[tokio::test]
    async fn a_port_in_use_says_what_to_do() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let e = bind(&[addr]).await.unwrap_err();
        assert!(e.in_use());
        assert!(e.to_string().contains("is apcupsd"), "{e}");
    }
}
