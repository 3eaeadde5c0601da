//! Reading commands: `status`, `watch`, `events`.

use tokio_stream::StreamExt;
use upsilon_proto::v1 as pb;

use super::{fetch_status, power, rpc_err};
use crate::conn::ConnArgs;
use crate::output;

pub async fn status(conn: &ConnArgs, json: bool, long: bool) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let reply = fetch_status(&opts).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::status_json(&reply))?
        );
    } else {
        print!("{}", output::status_table(&reply, long));
    }
    Ok(())
}

pub async fn watch(conn: &ConnArgs, json: bool) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let mut stream = power(&opts)
        .await?
        .watch(pb::WatchRequest {})
        .await
        .map_err(rpc_err(&opts))?
        .into_inner();
    let mut last_line = String::new();
    while let Some(item) = stream.next().await {
        let upd = item.map_err(rpc_err(&opts))?;
        match upd.update {
            Some(pb::watch_update::Update::Event(e)) => {
                if json {
                    println!("{}", serde_json::json!({"event": output::event_json(&e)}));
                } else {
                    println!("{}", output::event_line(&e));
                }
            }
            Some(pb::watch_update::Update::Status(s)) => {
                if json {
                    println!("{}", serde_json::json!({"status": output::status_json(&s)}));
                } else {
                    let line = s
                        .ups
                        .iter()
                        .map(|u| {
                            format!(
                                "{} {} charge {} runtime {}",
                                u.ups_name,
                                u.status_text,
                                u.charge_percent.map_or("-".into(), |c| format!("{c:.0} %")),
                                u.runtime_seconds
                                    .map_or("-".into(), |r| format!("{:.1} min", r / 60.0))
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    let pending = s
                        .pending
                        .map(|p| output::action_kind(p.kind))
                        .unwrap_or("?");
                    let line = format!("status: {line}; action: {pending}");
                    // Only print when something other than the drain changed.
                    let key: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
                    if key != last_line {
                        println!("{line}");
                        last_line = key;
                    }
                }
            }
            None => {}
        }
    }
    eprintln!("upsilon: {} closed the watch stream", opts.endpoint);
    Ok(())
}

pub async fn events(conn: &ConnArgs, limit: u32, json: bool) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let reply = power(&opts)
        .await?
        .list_events(pb::ListEventsRequest { limit })
        .await
        .map_err(rpc_err(&opts))?
        .into_inner();
    for e in &reply.events {
        if json {
            println!("{}", output::event_json(e));
        } else {
            println!("{}", output::event_line(e));
        }
    }
    Ok(())
}
