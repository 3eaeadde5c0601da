//! A stand-in for an unmodified apcupsd 3.12 master, written from PROTOCOLS.md §4 (the
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
