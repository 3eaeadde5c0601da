//! `upsilon-bridge`: speaks apcupsd's wire formats. Today it is a NIS client that
//! queries an apcupsd (or compatible) NIS server, like `apcaccess` does; serving the
//! cluster's state to unmodified apcupsd and NUT clients comes with the bridge daemon.

use std::process::ExitCode;

use upsilon_legacy_bridge::apcaccess::StatusText;
use upsilon_legacy_bridge::{net_client, nis};

const USAGE: &str = "usage: upsilon-bridge query HOST[:PORT] [status|events]\n\
    Asks an apcupsd NIS server (default port 3551) for its status or events and prints\n\
    the reply the way `apcaccess` does; a status reply is checked with the parser.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (target, what) = match args.as_slice() {
        [cmd, host] if cmd == "query" => (host.clone(), "status".to_string()),
        [cmd, host, what] if cmd == "query" && (what == "status" || what == "events") => {
            (host.clone(), what.clone())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let target = if target.contains(':') {
        target
    } else {
        format!("{target}:3551")
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("upsilon-bridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(query(&target, &what)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("upsilon-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn query(target: &str, what: &str) -> Result<String, String> {
    let msgs = net_client::request(target, what.as_bytes(), nis::READ_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let text: String = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    if what == "status" {
        StatusText::parse(text.as_bytes())
            .map_err(|e| format!("the reply from {target} is not apcupsd status text: {e}"))?;
    }
    Ok(text)
}
