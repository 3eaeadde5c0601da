//! `nis-bench [SECONDS]`: NIS `status` requests per second from upsilond and from a
//! real apcupsd serving the same simulated UPS, measured in one run.
//!
//! The Smart-UPS simulator runs on a pty; Debian's apcupsd drives it and serves NIS;
//! a node reads that apcupsd with its `net` driver and serves NIS for its host. Each
//! server is then asked `status` by one client for SECONDS (default 5) per mode: a new
//! connection per request (what `apcaccess` and apcupsd's net driver do), and many
//! requests on one connection (what monitoring tools that keep a socket do). Every
//! reply is read to its end marker and checked to be a status. Needs root (apcupsd).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::TcpStream;
use upsilon_legacy_bridge::nis;
use upsilon_tests::apcupsd::RealApcupsd;
use upsilon_tests::smartups::{SmartUps, SmartUpsOptions};
use upsilon_tests::{NodeProc, TestPki, free_port, status_json, wait_for};

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
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5.0);
    let pki = TestPki::new();
    let link = pki.path().join("ttyUPS");
    let _sim = SmartUps::start(SmartUpsOptions::new(&link)).expect("pty simulator");
    let apcupsd_nis: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let apcupsd = RealApcupsd::start(&pki.path().join("apcupsd"), &link, apcupsd_nis);
    let node = NodeProc::start(
        &pki,
        &format!(
            "[[ups]]\nname = \"ups1\"\ndriver = \"net\"\ndevice = \"{apcupsd_nis}\"\npoll_interval_ms = 1000\n"
        ),
    );
    wait_for(Duration::from_secs(30), || {
        (status_json(&pki, node.addr)["ups"][0]["status"] == "ONLINE").then_some(())
    })
    .unwrap_or_else(|| panic!("the node never read apcupsd\n{}", apcupsd.log()));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| server | new connection per request, 1 client | same, 8 clients at once | many requests on one connection |"
    );
    println!("|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, addr) in [("apcupsd 3.14.14", apcupsd_nis), ("upsilond", node.nis)] {
        let fresh = rt.block_on(per_connection(addr, secs));
        let parallel = rt.block_on(per_connection_parallel(addr, secs, 8));
        let shared = rt.block_on(shared_connection(addr, secs));
        println!("| {name} | {fresh:.0} req/s | {parallel:.0} req/s | {shared:.0} req/s |");
        rows.push((fresh, parallel, shared));
    }
    println!(
        "\nupsilond / apcupsd: {:.1}x new connection per request (1 client), {:.1}x (8 clients), {:.1}x on one connection",
        rows[1].0 / rows[0].0,
        rows[1].1 / rows[0].1,
        rows[1].2 / rows[0].2
    );
}
