//! The client side of NIS, the way apcupsd's `net` driver reads a server
//! (docs/protocols/nis.md §5): a fresh connection per poll, `status`, the reply read to its end
//! marker; STATFLAG drives the flags and the values are read by key, `N/A` meaning
//! absent. Dates are not read, so every server from 3.10 on (whose date formats differ)
//! is understood.

use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use upsilon_core::reading::{UpsFlags, UpsReading, statflag};

use crate::apcaccess::{ParseError, StatusText};
use crate::nis::{self, NisError};

/// apcupsd's net driver connects within 5 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest status reply taken (apcupsd's own buffer is 4096 bytes; newer servers
/// with many keys, ours included, stay far below this).
pub const MAX_REPLY: usize = 16 * 1024;

/// Why a poll of a NIS server gave no reading.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot connect to the NIS server at {addr}: {why}")]
    Connect { addr: String, why: String },
    #[error("NIS server at {addr}: {source}")]
    Nis { addr: String, source: NisError },
    #[error("NIS server at {addr} did not finish its reply within {secs:.1} s")]
    Stalled { addr: String, secs: f64 },
    #[error("NIS server at {addr} sent something that is not apcupsd status: {source}")]
    Garbage { addr: String, source: ParseError },
}

/// `host:port` with apcupsd's default port (3551) when none is given.
pub fn with_default_port(device: &str) -> String {
    let d = device.trim();
    let has_port = if let Some(rest) = d.strip_prefix('[') {
        rest.contains("]:")
    } else {
        d.matches(':').count() == 1
    };
    if has_port {
        d.to_string()
    } else if d.contains(':') && !d.starts_with('[') {
        format!("[{d}]:3551")
    } else {
        format!("{d}:3551")
    }
}

/// One request: connect, send `command`, read the whole reply (its messages), close.
/// `deadline` bounds the exchange after the connection (connecting takes at most 5 s).
pub async fn request(
    addr: &str,
    command: &[u8],
    deadline: Duration,
) -> Result<Vec<Vec<u8>>, NetError> {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT.min(deadline), TcpStream::connect(addr));
    let mut conn = match connect.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(NetError::Connect {
                addr: addr.into(),
                why: e.to_string(),
            });
        }
        Err(_) => {
            return Err(NetError::Connect {
                addr: addr.into(),
                why: format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.min(deadline).as_secs()
                ),
            });
        }
    };
    let exchange = async {
        nis::write_message(&mut conn, command).await?;
        nis::read_reply(&mut conn, MAX_REPLY, deadline).await
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(NisError::Timeout(_))) | Err(_) => Err(NetError::Stalled {
            addr: addr.into(),
            secs: deadline.as_secs_f64(),
        }),
        Ok(Err(source)) => Err(NetError::Nis {
            addr: addr.into(),
            source,
        }),
    }
}

/// One poll: `status`, the whole reply, parsed.
pub async fn query_status(addr: &str, deadline: Duration) -> Result<StatusText, NetError> {
    let messages = request(addr, b"status", deadline).await?;
    StatusText::parse(&messages.concat()).map_err(|source| NetError::Garbage {
        addr: addr.into(),
        source,
    })
}

/// A server's status as a reading, and its STATFLAG.
///
/// A server that is shutting down (SHUTDOWN, or SHUT_REMOTE passed on from its own
/// master) reads as a UPS signalling low battery: apcupsd's own net clients shut down
/// then ("Shutdown because NIS master is shutting down"), and that apcupsd will cut the
/// UPS's power at its halt, so the hosts it feeds must go first.
pub fn reading_of(t: &StatusText, read_at: SystemTime) -> (UpsReading, u32) {
    let flag = t.statflag().unwrap_or(0);
    let bit = |b: u32| flag & b != 0;
    let master_down = bit(statflag::SHUTDOWN) || bit(statflag::SHUT_REMOTE);
    let mut r = UpsReading::empty(
        UpsFlags {
            calibration: bit(statflag::CALIBRATION),
            trim: bit(statflag::TRIM),
            boost: bit(statflag::BOOST),
            online: bit(statflag::ONLINE),
            on_battery: bit(statflag::ONBATT),
            overload: bit(statflag::OVERLOAD),
            low_battery: bit(statflag::BATTLOW) || master_down,
            replace_battery: bit(statflag::REPLACEBATT),
            battery_present: bit(statflag::BATTPRESENT),
        },
        read_at,
    );
    r.line_voltage = t.number("LINEV");
    r.load_percent = t.number("LOADPCT");
    r.charge_percent = t.number("BCHARGE");
    r.runtime_s = t.number("TIMELEFT").map(|m| m * 60.0);
    r.max_line_voltage = t.number("MAXLINEV");
    r.min_line_voltage = t.number("MINLINEV");
    r.output_voltage = t.number("OUTPUTV");
    r.internal_temp_c = t.number("ITEMP");
    r.battery_voltage = t.number("BATTV");
    r.line_frequency_hz = t.number("LINEFREQ");
    r.nominal_power_w = t
        .number("NOMPOWER")
        .filter(|w| *w >= 0.0 && *w <= f64::from(u32::MAX))
        .map(|w| w as u32);
    let text = |k: &str| {
        t.get(k)
            .filter(|v| *v != "N/A")
            .map(str::to_string)
            .unwrap_or_default()
    };
    r.model = text("MODEL");
    r.serial_number = text("SERIALNO");
    r.firmware = text("FIRMWARE");
    r.battery_date = text("BATTDATE");
    r.last_transfer = text("LASTXFER");
    r.self_test = text("SELFTEST")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    if master_down {
        r.details.insert(
            "NIS SHUTDOWN".into(),
            "the NIS server is shutting down; its UPS will be cut".into(),
        );
    }
    for k in [
        "UPSNAME", "HOSTNAME", "VERSION", "CABLE", "DRIVER", "STATUS",
    ] {
        let v = text(k);
        if !v.is_empty() {
            r.details.insert(format!("NIS {k}"), v);
        }
    }
    (r, flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// apcupsd 3.14.14 on a Smart-UPS, as `apcaccess` printed it.
    const APCUPSD_3_14: &str = "APC      : 001,036,0866\n\
DATE     : 2026-11-24 10:00:00 +0000  \n\
HOSTNAME : rack1\n\
VERSION  : 3.14.14 (31 May 2016) debian\n\
UPSNAME  : ups1\n\
CABLE    : Custom Cable Smart\n\
DRIVER   : APC Smart UPS (any)\n\
UPSMODE  : Stand Alone\n\
STARTTIME: 2026-11-24 09:00:00 +0000  \n\
MODEL    : Smart-UPS 1500\n\
STATUS   : ONBATT \n\
LINEV    : 0.0 Volts\n\
LOADPCT  : 35.0 Percent\n\
BCHARGE  : 81.5 Percent\n\
TIMELEFT : 30.5 Minutes\n\
MBATTCHG : 10 Percent\n\
MINTIMEL : 5 Minutes\n\
MAXTIME  : 0 Seconds\n\
MAXLINEV : 231.0 Volts\n\
MINLINEV : 0.0 Volts\n\
OUTPUTV  : 230.0 Volts\n\
ITEMP    : 29.2 C\n\
BATTV    : 26.1 Volts\n\
LINEFREQ : 50.0 Hz\n\
LASTXFER : Low line voltage\n\
NUMXFERS : 1\n\
XONBATT  : 2026-11-24 09:59:48 +0000  \n\
TONBATT  : 12 Seconds\n\
CUMONBATT: 12 Seconds\n\
XOFFBATT : N/A\n\
SELFTEST : NO\n\
STATFLAG : 0x05060010\n\
SERIALNO : AS1234567890\n\
BATTDATE : 2024-01-15\n\
NOMPOWER : 980 Watts\n\
FIRMWARE : 601.3.I\n\
END APC  : 2026-11-24 10:00:01 +0000  \n";

    /// apcupsd 3.12.4: the old date format, fewer keys.
    const APCUPSD_3_12: &str = "APC      : 001,031,0761\n\
DATE     : Mon Nov 24 10:00:00 UTC 2026\n\
HOSTNAME : oldbox\n\
RELEASE  : 3.12.4\n\
VERSION  : 3.12.4 (19 August 2006) debian\n\
UPSNAME  : ups1\n\
CABLE    : Custom Cable Smart\n\
MODEL    : Smart-UPS 700 \n\
UPSMODE  : Stand Alone\n\
STARTTIME: Mon Nov 24 09:00:00 UTC 2026\n\
STATUS   : ONLINE \n\
LINEV    : 229.0 Volts\n\
LOADPCT  :  12.0 Percent Load Capacity\n\
BCHARGE  : 100.0 Percent\n\
TIMELEFT :  55.0 Minutes\n\
MBATTCHG : 5 Percent\n\
MINTIMEL : 3 Minutes\n\
MAXTIME  : 0 Seconds\n\
OUTPUTV  : 229.0 Volts\n\
ITEMP    : N/A\n\
LASTXFER : No transfers since turnon\n\
NUMXFERS : 0\n\
TONBATT  : 0 seconds\n\
CUMONBATT: 0 seconds\n\
XOFFBATT : N/A\n\
STATFLAG : 0x02000008 Status Flag\n\
END APC  : Mon Nov 24 10:00:01 UTC 2026\n";

    #[test]
    fn golden_apcupsd_3_14_status_reads_as_the_net_driver_would() {
        let t = StatusText::parse(APCUPSD_3_14.as_bytes()).unwrap();
        let (r, flag) = reading_of(&t, SystemTime::UNIX_EPOCH);
        assert_eq!(flag, 0x0506_0010);
        assert!(r.flags.on_battery && !r.flags.online && r.flags.battery_present);
        assert!(!r.flags.low_battery);
        assert_eq!(r.charge_percent, Some(81.5));
        assert_eq!(r.runtime_s, Some(1830.0));
        assert_eq!(r.line_voltage, Some(0.0));
        assert_eq!(r.max_line_voltage, Some(231.0));
        assert_eq!(r.internal_temp_c, Some(29.2));
        assert_eq!(r.nominal_power_w, Some(980));
        assert_eq!(r.model, "Smart-UPS 1500");
        assert_eq!(r.last_transfer, "Low line voltage");
        assert_eq!(r.self_test, "NO");
        assert_eq!(r.serial_number, "AS1234567890");
        assert_eq!(r.details["NIS UPSNAME"], "ups1");
    }

    #[test]
    fn an_old_3_12_server_is_understood_without_dates_and_with_n_a() {
        let t = StatusText::parse(APCUPSD_3_12.as_bytes()).unwrap();
        let (r, flag) = reading_of(&t, SystemTime::UNIX_EPOCH);
        assert_eq!(flag, 0x0200_0008);
        assert!(r.flags.online && !r.flags.on_battery);
        // 3.12 servers lack the battery-present bit: the flag says what it says.
        assert!(!r.flags.battery_present);
        assert_eq!(r.load_percent, Some(12.0));
        assert_eq!(r.runtime_s, Some(3300.0));
        assert_eq!(r.internal_temp_c, None);
        assert_eq!(r.model, "Smart-UPS 700");
    }

    #[test]
    fn a_server_shutting_down_reads_as_low_battery() {
        let text = APCUPSD_3_14
            .replace("STATUS   : ONBATT \n", "STATUS   : SHUTTING DOWN\n")
            .replace("0x05060010", "0x05060210");
        let t = StatusText::parse(text.as_bytes()).unwrap();
        let (r, flag) = reading_of(&t, SystemTime::UNIX_EPOCH);
        assert_eq!(flag & statflag::SHUTDOWN, statflag::SHUTDOWN);
        assert!(r.flags.low_battery && r.flags.on_battery);
        assert!(r.details["NIS SHUTDOWN"].contains("shutting down"));
        let t = StatusText::parse(APCUPSD_3_14.as_bytes()).unwrap();
        assert!(!reading_of(&t, SystemTime::UNIX_EPOCH).0.flags.low_battery);
    }

    #[test]
    fn addresses_get_apcupsd_s_default_port() {
        assert_eq!(with_default_port("ups-host"), "ups-host:3551");
        assert_eq!(with_default_port("127.0.0.1:3552"), "127.0.0.1:3552");
        assert_eq!(with_default_port("::1"), "[::1]:3551");
        assert_eq!(with_default_port("[::1]:7000"), "[::1]:7000");
    }

    #[tokio::test]
    async fn garbage_a_stall_and_no_server_are_errors_that_say_so() {
        use tokio::io::AsyncWriteExt;
        use tokio::net::TcpListener;
        // Nothing listens.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let free = l.local_addr().unwrap().to_string();
        drop(l);
        let e = query_status(&free, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
        // A server that answers with something else.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut reply = nis::encode(b"HTTP/1.0 200 OK\r\n").unwrap();
            reply.extend(nis::END);
            c.write_all(&reply).await.unwrap();
            let _ = tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let e = query_status(&addr, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not apcupsd status"), "{e}");
        // One that accepts and never answers.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (_c, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let e = query_status(&addr, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("did not finish its reply"), "{e}");
    }
}
