//! `nis-bench [SECONDS] [POLLTIME]`: NIS `status` requests per second from upsilond,
//! from `upsilon-bridge` and from a real apcupsd serving the same simulated UPS,
//! measured in one run; then the time from a stage start to legacy apcupsd clients'
//! `doshutdown` at their POLLTIME.
//!
//! The Smart-UPS simulator runs on a pty; Debian's apcupsd drives it and serves NIS;
//! a node (a one-node cluster) reads that apcupsd with its `net` driver and serves NIS
//! for its host; a bridge follows the node and serves NIS too. Each server is asked
//! `status` for SECONDS (default 5) per mode: a new connection per request (what
//! `apcaccess` and apcupsd's net driver do), and many requests on one connection (what
//! monitoring tools that keep a socket do). Every reply is read to its end marker and
//! checked to be a status. Then four apcupsd `net` clients of the bridge (POLLTIME
//! default 60 s, apcupsd's default), all in one stage, see mains fail at the simulator.
//! Needs root (apcupsd).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::TcpStream;
use upsilon_legacy_bridge::nis;
use upsilon_tests::apcupsd::RealApcupsd;
use upsilon_tests::smartups::{SmartUps, SmartUpsOptions};
use upsilon_tests::{
    BridgeProc, NodeProc, TestPki, event_lines, free_port, operator, plan_text, status_json,
    wait_for,
};

/// One `status` request and its whole reply (read through a buffer: a reply is about 50
/// small messages, and reading each with its own system call would time the client).
async fn one_status(c: &mut BufReader<TcpStream>) -> usize {
    nis::write_message(c.get_mut(), b"status")
        .await
        .expect("send status");
    let reply = nis::read_reply(c, 64 * 1024, Duration::from_secs(5))
        .await
        .expect("a status reply");
    assert!(
        reply
            .first()
            .is_some_and(|h| h.starts_with(b"APC      : 001,")),
        "not a status reply"
    );
    reply.len()
}

/// Requests per second with a new connection for each.
async fn per_connection(addr: SocketAddr, secs: f64) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut c = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
        one_status(&mut c).await;
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Requests per second with a new connection for each, from `clients` clients at once.
async fn per_connection_parallel(addr: SocketAddr, secs: f64, clients: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed().as_secs_f64() < secs {
                    let mut c = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
                    one_status(&mut c).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Requests per second on one connection (reconnecting when the server closes it).
async fn shared_connection(addr: SocketAddr, secs: f64) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    let mut c = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    while start.elapsed().as_secs_f64() < secs {
        one_status(&mut c).await;
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let polltime: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let pki = TestPki::new();
    let link = pki.path().join("ttyUPS");
    let sim = SmartUps::start(SmartUpsOptions::new(&link)).expect("pty simulator");
    let apcupsd_nis: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let apcupsd = RealApcupsd::start(&pki.path().join("apcupsd"), &link, apcupsd_nis);
    let node = NodeProc::start(
        &pki,
        &format!(
            "[[ups]]\nname = \"ups1\"\ndriver = \"net\"\ndevice = \"{apcupsd_nis}\"\npoll_interval_ms = 1000\n\n[cluster]\nid = 1\ndata_dir = \"data\"\nbootstrap = true\nseeds = []\nvoter = true\nheartbeat_ms = 500\nelection_timeout_ms = 500\n"
        ),
    );
    wait_for(Duration::from_secs(30), || {
        (status_json(&pki, node.addr)["ups"][0]["status"] == "ONLINE").then_some(())
    })
    .unwrap_or_else(|| panic!("the node never read apcupsd\n{}", apcupsd.log()));

    let free = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let bridge_nis = free();
    let hosts: Vec<(String, SocketAddr)> =
        (1..=4).map(|i| (format!("legacy{i}"), free())).collect();
    let mut rest = format!("[nis]\nlisten = \"{bridge_nis}\"\n");
    for (name, own) in &hosts {
        rest.push_str(&format!(
            "\n[[host]]\nname = \"{name}\"\nlisten = \"{own}\"\nlabels = [\"legacy\"]\nfeeds = [\"ups1\"]\n"
        ));
    }
    let bridge = BridgeProc::start(&pki, &[node.addr], "bridge1", "halt_silence_s = 5", &rest);
    wait_for(Duration::from_secs(30), || {
        let v = status_json(&pki, node.addr);
        (v["legacy_hosts"].as_array().map_or(0, |a| a.len()) == hosts.len()).then_some(())
    })
    .unwrap_or_else(|| panic!("the bridge never declared its hosts\n{}", bridge.log_text()));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| server | new connection per request, 1 client | same, 8 clients at once | many requests on one connection |"
    );
    println!("|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, addr) in [
        ("apcupsd 3.14.14", apcupsd_nis),
        ("upsilond", node.nis),
        ("upsilon-bridge", bridge_nis),
    ] {
        let fresh = rt.block_on(per_connection(addr, secs));
        let parallel = rt.block_on(per_connection_parallel(addr, secs, 8));
        let shared = rt.block_on(shared_connection(addr, secs));
        println!("| {name} | {fresh:.0} req/s | {parallel:.0} req/s | {shared:.0} req/s |");
        rows.push((fresh, parallel, shared));
    }
    for (k, name) in [(1, "upsilond"), (2, "upsilon-bridge")] {
        println!(
            "\n{name} / apcupsd: {:.1}x new connection per request (1 client), {:.1}x (8 clients), {:.1}x on one connection",
            rows[k].0 / rows[0].0,
            rows[k].1 / rows[0].1,
            rows[k].2 / rows[0].2
        );
    }

    // Stage start -> doshutdown: four apcupsd net clients of the bridge, one stage.
    let clients: Vec<RealApcupsd> = hosts
        .iter()
        .map(|(name, own)| RealApcupsd::net_client(&pki.path().join(name), *own, polltime))
        .collect();
    let plan = pki.path().join("plan.toml");
    std::fs::write(
        &plan,
        plan_text(&[("legacy", "\"label:legacy\"", "on_battery_s = 0", 300)]),
    )
    .unwrap();
    let o = operator(&pki, &node, &["plan", "apply", plan.to_str().unwrap()]);
    assert!(o.status.success(), "plan apply failed");
    // Let every client make its first poll (at its start) before mains fail.
    std::thread::sleep(Duration::from_secs(3));
    sim.mains(true);
    let stage_at = wait_for(Duration::from_secs(60), || {
        event_lines(&pki, node.addr)
            .into_iter()
            .find(|e| e.message.contains("Stage 1 (legacy) started"))
            .map(|e| e.at_ms)
    })
    .expect("the stage started");
    let mut waits: Vec<f64> = Vec::new();
    for c in &clients {
        let at = wait_for(Duration::from_secs(u64::from(polltime) + 30), || {
            c.apccontrol_calls()
                .into_iter()
                .find(|(_, e)| e == "doshutdown")
                .map(|(t, _)| t)
        })
        .unwrap_or_else(|| panic!("a client never shut down\n{}", c.log()));
        waits.push((at - stage_at) as f64 / 1000.0);
    }
    waits.sort_by(f64::total_cmp);
    println!(
        "\nstage start -> legacy doshutdown, POLLTIME {polltime} s, {} clients: {}",
        waits.len(),
        waits
            .iter()
            .map(|w| format!("{w:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
