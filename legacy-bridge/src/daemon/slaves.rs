//! The bridge as an apcupsd 3.10/3.12 master: one task per `protocol = "master-slave"`
//! host pushes that host's own supply to its NETPORT, as a 3.12 master would (every
//! NETTIME, every second while its supply is on battery or its stage runs, a retry
//! every 10 s while the slave is down). Once its stage started the packets carry
//! ShutDown (the time the bridge first saw the order), and a written one is "told";
//! a slave that stops taking packets after that has halted (the reconciler's silence
//! rule). Without the cluster the bridge closes the connection and sends nothing: the
//! slave reports its master lost, never a healthy UPS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use upsilon_client::stop::Stop;
use upsilon_core::snapshot::LegacyHostSummary;

use super::BridgeState;
use super::config::HostSection;
use super::link;
use crate::ms_master::SlaveLink;
use crate::netdata::NetData;

/// A 3.12 master retries a slave that is down every 10 s.
const RETRY: Duration = Duration::from_secs(10);
/// ... and sends every second during a power event.
const FAST: Duration = Duration::from_secs(1);

/// The packet for `rec`: its supply, and ShutDown once its stage started.
pub fn packet_of(rec: &LegacyHostSummary, nettime: Duration, shutdown_at: Option<i64>) -> NetData {
    let st = &rec.served.status;
    let r = st.reading.as_ref();
    let charge = r.and_then(|r| r.charge_percent);
    let runtime = r.and_then(|r| r.runtime_s);
    NetData {
        on_batt: i32::from(st.on_battery),
        batt_low: i32::from(r.is_some_and(|r| r.flags.low_battery)),
        batt_chg: charge.map_or(0, |c| c.clamp(0.0, 100.0) as i32),
        shutdown: shutdown_at.map_or(0, |t| (t / 1000) as i32),
        nettime: nettime.as_secs().min(i32::MAX as u64) as i32,
        time_left: runtime.map_or(0, |s| (s / 60.0).clamp(0.0, i32::MAX as f64) as i32),
        change_batt: i32::from(r.is_some_and(|r| r.flags.replace_battery)),
        cap_battlev: i32::from(charge.is_some()),
        cap_runtim: i32::from(runtime.is_some()),
        ..Default::default()
    }
}

/// Pushes to one slave until `stop`.
pub async fn push(state: Arc<BridgeState>, h: HostSection, mut stop: Stop) {
    let (Some(addr), Some(port)) = (h.addresses.first(), h.netport) else {
        return;
    };
    let mut link = SlaveLink::new(std::net::SocketAddr::new(*addr, port), h.user_magic.clone());
    let nettime = state.cfg.bridge.nettime();
    let mut last_send: Option<Instant> = None;
    let mut failing: Option<String> = None;
    let mut shutdown_at: Option<i64> = None;
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let (picture, vouched) = state.picture();
        let rec = picture
            .as_ref()
            .and_then(|p| p.legacy.iter().find(|l| l.name == h.name))
            .cloned();
        let Some(rec) = rec.filter(|_| vouched) else {
            if link.connected() {
                tracing::warn!(
                    "slave {} ({}): the bridge has lost the cluster; closing the connection (the slave will report its master lost)",
                    h.name,
                    link.addr()
                );
                link.close();
            }
            continue;
        };
        let every = if !link.connected() {
            RETRY
        } else if rec.served.status.on_battery || rec.shutting_down {
            FAST
        } else {
            nettime
        };
        if last_send.is_some_and(|t| t.elapsed() < every) {
            continue;
        }
        last_send = Some(Instant::now());
        if rec.shutting_down {
            shutdown_at.get_or_insert_with(upsilon_core::time::now_ms);
        } else {
            shutdown_at = None;
        }
        let was_connected = link.connected();
        let sent = link.send(packet_of(&rec, nettime, shutdown_at)).await;
        state.slave_reached(&h.name, sent.is_ok());
        match sent {
            Ok(()) => {
                state.polled(&h.name, rec.shutting_down);
                if !was_connected {
                    tracing::info!("Connect to slave {} succeeded ({})", link.addr(), h.name);
                }
                failing = None;
            }
            Err(e) => {
                let msg = e.to_string();
                // Once per failure streak, as apcupsd logs it; into the cluster's history too.
                if failing.is_none() {
                    tracing::warn!("{msg}");
                    if let Some(endpoint) = state.endpoint()
                        && let Err(why) = link::notice(&state, &endpoint, &h.name, &msg).await
                    {
                        tracing::warn!("cannot record it in the cluster: {why}");
                    }
                }
                failing = Some(msg);
            }
        }
    }
}
