//! apcupsd 3.10/3.12's master/slave packet, `struct netdata` (docs/protocols/master-slave.md §3):
//! 100 bytes, fifteen big-endian 32-bit integers, then the APC magic and the user
//! magic, each a 20-byte NUL-padded field. The same layout travels both ways: the
//! master pushes its UPS state, a slave answers a first contact (or a reconnect) with
//! the same buffer carrying its own magics. Pure: no sockets.

use std::fmt;

/// Every packet is exactly this long; a slave reads it with one `read()`.
pub const PACKET_LEN: usize = 100;
/// The APC magic of every 3.9.9-3.12.4 peer.
pub const APC_MAGIC: &str = "apcupsd-linux-6.0";
/// Each magic field's size.
pub const MAGIC_FIELD: usize = 20;
/// The longest user magic that fits (the field keeps a terminating NUL).
pub const MAX_USER_MAGIC: usize = MAGIC_FIELD - 1;
/// A slave's reply carries this in ChangeBatt: "keep the connection open".
pub const PERSISTENT_SLAVE: i32 = 1000;

/// The master's per-slave connection state, as sent in `remote_state`.
pub mod remote_state {
    pub const NOT_CONNECTED: i32 = 0;
    pub const CONNECTED: i32 = 1;
    pub const RECONNECT: i32 = 2;
}

/// One packet, field by field (raw values: a slave echoes what it does not own).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetData {
    pub on_batt: i32,
    pub batt_low: i32,
    /// Never set by a real master (its stack garbage); ignored on reading.
    pub battery_up: i32,
    /// Whole percent.
    pub batt_chg: i32,
    /// 0, or the master's Unix time (seconds) when it began shutting down.
    pub shutdown: i32,
    pub nettime: i32,
    /// Whole minutes.
    pub time_left: i32,
    /// The master's replace-battery flag; [`PERSISTENT_SLAVE`] in a slave's reply.
    pub change_batt: i32,
    pub load: i32,
    pub timedout: i32,
    pub timelout: i32,
    pub emergencydown: i32,
    pub remote_state: i32,
    pub cap_battlev: i32,
    pub cap_runtim: i32,
    pub apc_magic: [u8; MAGIC_FIELD],
    pub user_magic: [u8; MAGIC_FIELD],
}

/// Why bytes are not a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("a packet is {PACKET_LEN} bytes; got {0}")]
    Length(usize),
}

/// A magic field as text: up to its first NUL (the last byte counts as one), with
/// anything unprintable escaped, for logs.
pub fn magic_text(field: &[u8; MAGIC_FIELD]) -> String {
    let end = field[..MAGIC_FIELD - 1]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(MAGIC_FIELD - 1);
    field[..end]
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

/// `s` as a NUL-padded magic field (cut to [`MAX_USER_MAGIC`] bytes).
pub fn magic_field(s: &str) -> [u8; MAGIC_FIELD] {
    let mut f = [0u8; MAGIC_FIELD];
    let b = s.as_bytes();
    let n = b.len().min(MAX_USER_MAGIC);
    f[..n].copy_from_slice(&b[..n]);
    f
}

impl NetData {
    /// Parses exactly one packet.
    pub fn decode(b: &[u8]) -> Result<NetData, PacketError> {
        if b.len() != PACKET_LEN {
            return Err(PacketError::Length(b.len()));
        }
        let int =
            |i: usize| i32::from_be_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        let mut apc_magic = [0u8; MAGIC_FIELD];
        apc_magic.copy_from_slice(&b[60..80]);
        let mut user_magic = [0u8; MAGIC_FIELD];
        user_magic.copy_from_slice(&b[80..100]);
        Ok(NetData {
            on_batt: int(0),
            batt_low: int(1),
            battery_up: int(2),
            batt_chg: int(3),
            shutdown: int(4),
            nettime: int(5),
            time_left: int(6),
            change_batt: int(7),
            load: int(8),
            timedout: int(9),
            timelout: int(10),
            emergencydown: int(11),
            remote_state: int(12),
            cap_battlev: int(13),
            cap_runtim: int(14),
            apc_magic,
            user_magic,
        })
    }

    /// The 100 bytes on the wire.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        let ints = [
            self.on_batt,
            self.batt_low,
            self.battery_up,
            self.batt_chg,
            self.shutdown,
            self.nettime,
            self.time_left,
            self.change_batt,
            self.load,
            self.timedout,
            self.timelout,
            self.emergencydown,
            self.remote_state,
            self.cap_battlev,
            self.cap_runtim,
        ];
        for (i, v) in ints.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        out[60..80].copy_from_slice(&self.apc_magic);
        out[80..100].copy_from_slice(&self.user_magic);
        out
    }

    /// The APC magic as a peer compares it (byte 19 forced to NUL).
    pub fn apc_magic_text(&self) -> String {
        magic_text(&self.apc_magic)
    }

    pub fn user_magic_text(&self) -> String {
        magic_text(&self.user_magic)
    }

    /// Whether the APC magic is apcupsd 3.x's.
    pub fn apc_magic_ok(&self) -> bool {
        self.apc_magic_text() == APC_MAGIC
    }

    /// A slave's answer to a first contact or a reconnect: the same buffer with the
    /// APC magic, the slave's user magic and the persistent-slave marker.
    pub fn slave_reply(&self, user_magic: &str) -> NetData {
        NetData {
            apc_magic: magic_field(APC_MAGIC),
            user_magic: magic_field(user_magic),
            change_batt: PERSISTENT_SLAVE,
            ..self.clone()
        }
    }

    /// Whether the master expects a reply (first contact or reconnect).
    pub fn wants_reply(&self) -> bool {
        matches!(
            self.remote_state,
            remote_state::NOT_CONNECTED | remote_state::RECONNECT
        )
    }
}

impl NetData {
    /// What a slave reads from a master's packet, as a UPS reading: on battery, low
    /// battery, charge and runtime (whole percent and minutes, where the master has the
    /// capability). `ShutDown` set means the master is shutting down: that UPS is
    /// critical for the hosts it feeds, so it reads as a low-battery signal.
    pub fn reading(&self, read_at: std::time::SystemTime) -> upsilon_core::reading::UpsReading {
        use upsilon_core::reading::{UpsFlags, UpsReading};
        let on_battery = self.on_batt != 0;
        let mut r = UpsReading::empty(
            UpsFlags {
                online: !on_battery,
                on_battery,
                low_battery: self.batt_low != 0 || self.shutdown != 0,
                replace_battery: self.change_batt == 1,
                battery_present: true,
                ..Default::default()
            },
            read_at,
        );
        if self.cap_battlev != 0 {
            r.charge_percent = Some(f64::from(self.batt_chg));
        }
        if self.cap_runtim != 0 {
            r.runtime_s = Some(f64::from(self.time_left) * 60.0);
        }
        r.model = "Network Slave".into();
        if self.shutdown != 0 {
            r.details.insert(
                "MASTER SHUTDOWN".into(),
                format!(
                    "the master began shutting down at Unix time {}",
                    self.shutdown
                ),
            );
        }
        r
    }
}

impl fmt::Display for NetData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OnBatt={} BattLow={} BattChg={} TimeLeft={} ShutDown={} remote_state={} magic={:?}/{:?}",
            self.on_batt,
            self.batt_low,
            self.batt_chg,
            self.time_left,
            self.shutdown,
            self.remote_state,
            self.apc_magic_text(),
            self.user_magic_text()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The first packet of a real 3.12.4 master (docs/protocols/master-slave.md §6), NETTIME 10.
    fn first_contact() -> Vec<u8> {
        let mut b = hex(
            "00000000 00000000 00000000 00000000 00000000 0000000a 00000000 00000000 \
             00000000 00000000 00000000 00000000 00000000 00000001 00000001",
        );
        b.extend(b"apcupsd-linux-6.0\0\0\0");
        b.extend([0u8; 20]);
        b
    }

    #[test]
    fn golden_first_contact_from_a_real_master() {
        let b = first_contact();
        assert_eq!(b.len(), PACKET_LEN);
        let p = NetData::decode(&b).unwrap();
        assert_eq!(p.nettime, 10);
        assert_eq!((p.cap_battlev, p.cap_runtim), (1, 1));
        assert_eq!(p.remote_state, remote_state::NOT_CONNECTED);
        assert!(p.apc_magic_ok() && p.wants_reply());
        assert_eq!(p.user_magic_text(), "");
        assert_eq!(p.encode().to_vec(), b, "encode is decode's inverse");
    }

    #[test]
    fn golden_slave_reply_echoes_all_but_its_own_fields() {
        // The observed reply to a packet with BattChg 100, nettime 10, TimeLeft 45.
        let mut p = NetData::decode(&first_contact()).unwrap();
        p.batt_chg = 100;
        p.time_left = 45;
        let r = p.slave_reply("slaveMagic123");
        let mut want = hex(
            "00000000 00000000 00000000 00000064 00000000 0000000a 0000002d 000003e8 \
             00000000 00000000 00000000 00000000 00000000 00000001 00000001",
        );
        want.extend(b"apcupsd-linux-6.0\0\0\0");
        want.extend(b"slaveMagic123\0\0\0\0\0\0\0");
        assert_eq!(r.encode().to_vec(), want);
    }

    #[test]
    fn byte_order_and_every_field_in_place() {
        let p = NetData {
            on_batt: 1,
            batt_low: 2,
            battery_up: 3,
            batt_chg: 4,
            shutdown: 1_795_524_484,
            nettime: 6,
            time_left: 7,
            change_batt: 8,
            load: 9,
            timedout: 10,
            timelout: 11,
            emergencydown: 12,
            remote_state: 13,
            cap_battlev: 14,
            cap_runtim: 15,
            apc_magic: magic_field(APC_MAGIC),
            user_magic: magic_field("u"),
        };
        let b = p.encode();
        assert_eq!(&b[16..20], &1_795_524_484i32.to_be_bytes());
        for (i, want) in [1, 2, 3, 4].into_iter().enumerate() {
            assert_eq!(b[i * 4 + 3], want);
        }
        assert_eq!(b[59], 15);
        assert_eq!(&b[80..82], b"u\0");
        assert_eq!(NetData::decode(&b).unwrap(), p);
    }

    #[test]
    fn magics_tolerate_garbage_after_the_nul_and_a_full_field() {
        // 3.10.0-3.10.12 masters left bytes after the terminator undefined.
        let mut b = first_contact();
        b[78] = 0xAA;
        b[79] = 0x55;
        assert!(NetData::decode(&b).unwrap().apc_magic_ok());
        // A field with no NUL: byte 19 counts as one.
        b[60..80].copy_from_slice(b"ABCDEFGHIJKLMNOPQRST");
        let p = NetData::decode(&b).unwrap();
        assert_eq!(p.apc_magic_text(), "ABCDEFGHIJKLMNOPQRS");
        assert!(!p.apc_magic_ok());
        b[60..64].copy_from_slice(b"\x01\xff\n\0");
        assert_eq!(
            NetData::decode(&b).unwrap().apc_magic_text(),
            "\\x01\\xff\\n"
        );
        assert_eq!(
            magic_text(&magic_field("a-very-long-user-magic-text")).len(),
            MAX_USER_MAGIC
        );
    }

    #[test]
    fn short_and_long_input_is_refused() {
        assert_eq!(NetData::decode(&[0; 99]), Err(PacketError::Length(99)));
        assert_eq!(NetData::decode(&[0; 101]), Err(PacketError::Length(101)));
        assert_eq!(NetData::decode(&[]), Err(PacketError::Length(0)));
    }
}
