//! Cluster membership: `nodes`, `nodes join|promote|demote|remove`.

use anyhow::anyhow;
use clap::Subcommand;
use upsilon_client::rpc;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;

use super::fetch_status;
use crate::conn::ConnArgs;
use crate::output;

#[derive(Subcommand, Debug, Clone)]
pub enum NodesCommand {
    /// Admit a node as a learner (it receives the log but does not vote).
    Join {
        /// Its Raft id ([cluster] id in its config).
        #[arg(long)]
        id: u64,
        /// Its name (the CN of its certificate).
        #[arg(long)]
        name: String,
        /// host:port of its API.
        #[arg(long)]
        address: String,
    },
    /// Make a member a voter.
    Promote { id: u64 },
    /// Make a voter a learner.
    Demote { id: u64 },
    /// Remove a member from the cluster.
    Remove { id: u64 },
}

pub async fn list(conn: &ConnArgs, json: bool) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let s = fetch_status(&opts).await?;
    if json {
        let v = output::status_json(&s);
        let out = serde_json::json!({
            "nodes": v["nodes"],
            "legacy_hosts": v["legacy_hosts"],
            "cluster": v["cluster"],
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!(
            "{}",
            output::nodes_table(&s.nodes, s.generated_at_unix_ms, true)
        );
        if !s.legacy_hosts.is_empty() {
            print!(
                "{}",
                output::legacy_table(&s.legacy_hosts, s.generated_at_unix_ms, true)
            );
        }
        match s.cluster.as_ref().filter(|c| c.enabled) {
            Some(c) => print!("{}", output::cluster_line(c)),
            None => println!("(node {} is standalone: no [cluster] section)", s.node_name),
        }
    }
    Ok(())
}

pub async fn change(conn: &ConnArgs, cmd: NodesCommand) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let (reply, _) = rpc::on_leader(&opts, |ch| {
        let cmd = cmd.clone();
        async move {
            let mut admin = AdminServiceClient::new(ch);
            match cmd {
                NodesCommand::Join { id, name, address } => {
                    admin
                        .join_node(pb::JoinNodeRequest {
                            id,
                            name,
                            address,
                            incarnation: 0,
                        })
                        .await
                }
                NodesCommand::Promote { id } => {
                    admin
                        .set_voter(pb::SetVoterRequest { id, voter: true })
                        .await
                }
                NodesCommand::Demote { id } => {
                    admin
                        .set_voter(pb::SetVoterRequest { id, voter: false })
                        .await
                }
                NodesCommand::Remove { id } => {
                    admin.remove_node(pb::RemoveNodeRequest { id }).await
                }
            }
        }
    })
    .await
    .map_err(|e| anyhow!(e))?;
    println!("voters:   {}", reply.voters.join(", "));
    let learners = if reply.learners.is_empty() {
        "-".to_string()
    } else {
        reply.learners.join(", ")
    };
    println!("learners: {learners}");
    Ok(())
}
