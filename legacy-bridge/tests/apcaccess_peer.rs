//! Real peer: Debian's unmodified `apcaccess` reads status from this crate's NIS server
//! and renderer, and prints exactly our records. Needs the
//! `apcupsd` package (tests/run-all.sh installs it).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use tokio::net::TcpListener;
use upsilon_legacy_bridge::apcaccess::{self, StatusInput};
use upsilon_legacy_bridge::nis_server::{NisPolicy, NisServer, NisView};

fn input() -> StatusInput {
    StatusInput {
        date: "2026-11-24 10:00:00 +0000".into(),
        hostname: "rack1".into(),
        version: "3.14.14 (31 May 2016) upsilon".into(),
        upsname: "ups1".into(),
        cable: "Ethernet Link".into(),
        driver: "Upsilon cluster".into(),
        upsmode: "Stand Alone".into(),
        starttime: "2026-11-24 09:00:00 +0000".into(),
        model: Some("Smart-UPS 1500".into()),
        status: "ONBATT LOWBATT".into(),
        linev: Some(0.0),
        loadpct: Some(35.0),
        bcharge: Some(12.5),
        timeleft: Some(4.2),
        mbattchg: 10,
        mintimel: 5,
        maxtime: 0,
        battv: Some(22.1),
        lastxfer: Some("Low line voltage".into()),
        numxfers: 1,
        xonbatt: Some("2026-11-24 09:58:00 +0000".into()),
        tonbatt: 120,
        cumonbatt: 120,
        statflag: 0x0506_0050,
        serialno: Some("SIM0000001".into()),
        end_apc: "2026-11-24 10:00:01 +0000".into(),
        ..Default::default()
    }
}

/// Serves our records (and no events file) through the library's NIS server.
struct Records(Vec<String>);

impl NisView for Records {
    fn status(&self, _peer: SocketAddr) -> Vec<String> {
        self.0.clone()
    }
    fn events(&self, _peer: SocketAddr) -> Option<Vec<String>> {
        None
    }
}

fn apcaccess(args: &[&str]) -> std::process::Output {
    Command::new("apcaccess").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run apcaccess ({e}): install Debian's apcupsd package (tests/run-all.sh does)")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmodified_apcaccess_reads_our_status_byte_for_byte() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = NisServer::new(
        Arc::new(Records(apcaccess::render(&input()))),
        NisPolicy::default(),
        "test",
    );
    tokio::spawn(server.serve(listener, std::future::pending()));
    let host = format!("127.0.0.1:{port}");

    let o = tokio::task::spawn_blocking({
        let host = host.clone();
        move || apcaccess(&["status", &host])
    })
    .await
    .unwrap();
    assert!(
        o.status.success(),
        "apcaccess failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let printed = String::from_utf8(o.stdout).unwrap();
    assert_eq!(printed, apcaccess::render_text(&input()));

    // -p prints one value; -u strips the unit apcaccess knows.
    let h = host.clone();
    let o = tokio::task::spawn_blocking(move || apcaccess(&["-h", &h, "-p", "BCHARGE"]))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "12.5 Percent\n");
    let h = host.clone();
    let o = tokio::task::spawn_blocking(move || apcaccess(&["-h", &h, "-p", "TIMELEFT", "-u"]))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "4.2\n");
    let h = host.clone();
    let o = tokio::task::spawn_blocking(move || apcaccess(&["-h", &h, "-p", "STATUS"]))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ONBATT LOWBATT \n");

    // Our own client reads it back through the parser.
    let bin = env!("CARGO_BIN_EXE_upsilon-bridge");
    let h = host.clone();
    let o = tokio::task::spawn_blocking(move || {
        Command::new(bin).args(["query", &h]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        apcaccess::render_text(&input())
    );

    let h = host.clone();
    let o = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["query", &h, "events"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "Not available\n\0");
}

#[test]
fn bridge_query_reports_unreachable_server_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = Command::new(env!("CARGO_BIN_EXE_upsilon-bridge"))
        .args(["query", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("cannot connect") && e.contains("refused"), "{e}");
}
