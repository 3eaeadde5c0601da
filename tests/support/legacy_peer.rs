//! A stand-in for an unmodified apcupsd 3.12 master, written from docs/protocols/master-slave.md (the
//! observed 3.12.4 transcripts, not this project's codec): it connects to a slave's
//! NETPORT from a chosen loopback address, sends 100-byte packets (fifteen big-endian
//! int32 and two NUL-padded 20-byte magics) in one write each, and reads the slave's
//! 100-byte answer to a first contact or a reconnect.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// The fields a master sends, by name (everything else 0).
#[derive(Debug, Clone, Default)]
pub struct MasterPacket {
    pub on_batt: i32,
    pub batt_low: i32,
    pub batt_chg: i32,
    pub shutdown: i32,
    pub nettime: i32,
    pub time_left: i32,
    pub remote_state: i32,
    pub apc_magic: String,
    pub user_magic: String,
}

impl MasterPacket {
    /// A 3.12 master's packet: NETTIME 10, both capabilities, the APC magic.
    pub fn new(remote_state: i32, user_magic: &str) -> Self {
        MasterPacket {
            nettime: 10,
            remote_state,
            apc_magic: "apcupsd-linux-6.0".into(),
            user_magic: user_magic.into(),
            ..Default::default()
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let ints = [
            self.on_batt,
            self.batt_low,
            0, // BatteryUp: never set by a real master
            self.batt_chg,
            self.shutdown,
            self.nettime,
            self.time_left,
            0, // ChangeBatt
            0,
            0,
            0,
            0,
            self.remote_state,
            1, // cap_battlev
            1, // cap_runtim
        ];
        let mut b: Vec<u8> = ints.iter().flat_map(|v| v.to_be_bytes()).collect();
        for m in [&self.apc_magic, &self.user_magic] {
            let mut f = m.as_bytes().to_vec();
            f.resize(20, 0);
            b.extend(f);
        }
        b
    }
}

/// One master connection to a slave.
pub struct FakeMaster {
    pub stream: TcpStream,
}

impl FakeMaster {
    /// Connects from `from` to the slave at `slave`.
    pub fn connect(from: IpAddr, slave: SocketAddr) -> std::io::Result<FakeMaster> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(from, 0))?;
            s.connect(slave).await
        })?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(FakeMaster { stream })
    }

    pub fn send(&mut self, p: &MasterPacket) -> std::io::Result<()> {
        self.stream.write_all(&p.bytes())
    }

    /// The slave's 100-byte answer.
    pub fn reply(&mut self) -> std::io::Result<Vec<u8>> {
        let mut b = vec![0u8; 100];
        self.stream.read_exact(&mut b)?;
        Ok(b)
    }

    /// Whether the slave closed the connection (EOF within 5 s).
    pub fn closed_by_slave(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
            || matches!(self.stream.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

/// A big-endian int32 field of a packet.
pub fn field(b: &[u8], index: usize) -> i32 {
    i32::from_be_bytes([
        b[index * 4],
        b[index * 4 + 1],
        b[index * 4 + 2],
        b[index * 4 + 3],
    ])
}

/// A magic field as text (up to its NUL).
pub fn magic(b: &[u8], offset: usize) -> String {
    let f = &b[offset..offset + 20];
    let end = f.iter().position(|&c| c == 0).unwrap_or(20);
    String::from_utf8_lossy(&f[..end]).into_owned()
}

/// A stand-in for an unmodified apcupsd 3.12 slave (docs/protocols/master-slave.md §4, §6): listens
/// on its NETPORT, keeps one master connection, reads 100-byte packets and answers a
/// `remote_state` 0 or 2 packet with the same buffer carrying the APC magic, its user
/// magic and ChangeBatt 1000. Every packet read is kept with the time it arrived.
/// [`FakeSlave::halt`] closes everything, as the machine going down would.
/// Packets a fake slave read: (Unix ms, bytes).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(i64, Vec<u8>)>>>;

pub struct FakeSlave {
    pub addr: SocketAddr,
    packets: Received,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSlave {
    pub fn start(user_magic: &str) -> FakeSlave {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let packets: Received = Default::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s, magic) = (packets.clone(), stop.clone(), user_magic.to_string());
        let thread = std::thread::spawn(move || {
            let mut conn: Option<TcpStream> = None;
            while !s.load(Ordering::SeqCst) {
                if let Ok((c, _)) = l.accept() {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    conn = Some(c); // one master connection: a new one replaces it
                }
                let Some(c) = conn.as_mut() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let mut b = vec![0u8; 100];
                let mut got = 0;
                while got < 100 && !s.load(Ordering::SeqCst) {
                    match c.read(&mut b[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut =>
                        {
                            if got == 0 {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                if got == 0 {
                    // Nothing now, or the master closed: keep listening.
                    let mut probe = [0u8; 1];
                    if matches!(c.peek(&mut probe), Ok(0)) {
                        conn = None;
                    }
                    continue;
                }
                if got < 100 {
                    conn = None;
                    continue;
                }
                let rs = field(&b, 12);
                if rs == 0 || rs == 2 {
                    let mut r = b.clone();
                    r[28..32].copy_from_slice(&1000i32.to_be_bytes());
                    let mut m = b"apcupsd-linux-6.0".to_vec();
                    m.resize(20, 0);
                    r[60..80].copy_from_slice(&m);
                    let mut u = magic.as_bytes().to_vec();
                    u.resize(20, 0);
                    r[80..100].copy_from_slice(&u);
                    let _ = c.write_all(&r);
                }
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                p.lock().unwrap().push((now_ms, b));
            }
        });
        FakeSlave {
            addr,
            packets,
            stop,
            thread: Some(thread),
        }
    }

    /// Every packet so far: (Unix ms when read, bytes).
    pub fn packets(&self) -> Vec<(i64, Vec<u8>)> {
        self.packets.lock().unwrap().clone()
    }

    /// The machine goes down: the port refuses, the connection is gone.
    pub fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeSlave {
    fn drop(&mut self) {
        self.halt();
    }
}
