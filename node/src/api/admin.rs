//! `AdminService`: operator actions. Only role `operator` may call it, except that a
//! node may ask to join the cluster as itself (the name in its certificate).
//!
//! Cluster-wide actions (membership, plan, UPS names, revocation) run on the leader
//! only: any other node answers with the leader's address (metadata
//! `x-upsilon-leader`) and the client asks the leader itself, so the leader checks the
//! operator's own certificate, never a node's word for it. UPS and simulator commands
//! run on the node that drives that UPS.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_server::AdminService;

use crate::cluster::ClusterNode;
use crate::cluster::handle::{Cluster, LeaderOp, LeaderReply};
use crate::driver::UpsCommand;
use crate::shared::NodeShared;
use upsilon_client::pki::Role;
use upsilon_client::tls::authorize;
use upsilon_core::ups::sim::SimChange;

/// The UPS a request names, or the node's only one when it names none.
/// The UPS an order is for: the one named, if this node drives it, or this node's only
/// one. A UPS another member drives is refused with that member's address
/// (`x-upsilon-owner`), so the CLI asks it instead: an order is never silently lost.
fn pick_ups<'a>(
    requested: &str,
    names: impl Iterator<Item = &'a String>,
    what: &str,
    shared: &NodeShared,
) -> Result<String, Status> {
    let mut names: Vec<&String> = names.collect();
    names.sort();
    if !requested.is_empty() {
        if names.iter().any(|n| n.as_str() == requested) {
            return Ok(requested.to_string());
        }
        let owner = shared.cluster.as_ref().and_then(|c| {
            c.read(|s| {
                let u = s.upses.get(requested)?;
                let n = s.nodes.get(&u.owner)?;
                Some((n.name.clone(), n.addr.clone()))
            })
        });
        return Err(match owner {
            Some((node, addr)) => {
                let mut st = Status::failed_precondition(format!(
                    "{what} {requested} is driven by {node} ({addr}), not by {}: ask {node}",
                    shared.name
                ));
                if let Ok(v) = addr.parse() {
                    st.metadata_mut()
                        .insert(upsilon_client::rpc::OWNER_HEADER, v);
                }
                st
            }
            None => Status::not_found(format!(
                "{} drives no {what} named {requested}{}",
                shared.name,
                if names.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (it drives {})",
                        names
                            .iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )),
        });
    }
    match names.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Status::failed_precondition(format!(
            "this node has no {what}"
        ))),
        _ => Err(Status::invalid_argument(format!(
            "this node has several {what}es ({}); name one with --ups",
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

const OPERATOR: &[Role] = &[Role::Operator];

pub struct AdminApi {
    shared: Arc<NodeShared>,
}

impl AdminApi {
    pub fn new(shared: Arc<NodeShared>) -> Self {
        AdminApi { shared }
    }

    fn cluster(&self) -> Result<&Arc<Cluster>, Status> {
        self.shared.cluster.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this node is standalone: add a [cluster] section to its config",
            )
        })
    }

    /// Runs a cluster-wide action here if this node leads, else sends the caller to
    /// the leader.
    async fn on_leader(&self, op: LeaderOp) -> Result<LeaderReply, Status> {
        super::on_leader(self.cluster()?, op).await
    }

    async fn membership(&self, op: LeaderOp) -> Result<Response<pb::MembershipReply>, Status> {
        match self.on_leader(op).await? {
            LeaderReply::Membership { voters, learners } => {
                Ok(Response::new(pb::MembershipReply { voters, learners }))
            }
            LeaderReply::Written(_) => {
                Err(Status::internal("unexpected reply to a membership change"))
            }
        }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn sim_set(
        &self,
        req: Request<pb::SimSetRequest>,
    ) -> Result<Response<pb::SimSetReply>, Status> {
        let who = authorize(&req, OPERATOR)?;
        let r = req.into_inner();
        let sims: Vec<String> = self
            .shared
            .ups_views()
            .into_iter()
            .filter(|v| v.status.driver == "sim" && self.shared.ups_orders.contains_key(&v.name))
            .map(|v| v.name)
            .collect();
        let name = pick_ups(&r.ups_name, sims.iter(), "simulated UPS", &self.shared)?;
        for (what, v, max) in [
            ("charge", r.charge_percent, 100.0),
            ("load", r.load_percent, 200.0),
            ("drain", r.drain_percent_per_second, 100.0),
        ] {
            if let Some(v) = v
                && !(0.0..=max).contains(&v)
            {
                return Err(Status::invalid_argument(format!(
                    "{what} {v} is out of range 0-{max}"
                )));
            }
        }
        let change = SimChange {
            on_battery: r.on_battery,
            charge: r.charge_percent,
            load: r.load_percent,
            low_battery: r.low_battery.map(Some),
            comm_lost: r.comm_lost,
            replace_battery: r.replace_battery,
            battery_present: r.battery_present,
            drain_percent_per_second: r.drain_percent_per_second,
            start_self_test: r.start_self_test,
        };
        let state = self
            .shared
            .order(&name, UpsCommand::Simulate(change))
            .await
            .map_err(|e| Status::unavailable(format!("simulated UPS {name}: {e}")))?;
        tracing::info!(ups = %name, by = %who.name, "simulator changed: {state}");
        Ok(Response::new(pb::SimSetReply {
            ups_name: name,
            state,
        }))
    }

    async fn join_node(
        &self,
        req: Request<pb::JoinNodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let who = authorize(&req, &[Role::Operator, Role::Node])?;
        let r = req.into_inner();
        if who.role == Role::Node && r.name != who.name {
            tracing::warn!(
                "refused: certificate {:?} (role node) asked to join as {:?}",
                who.name,
                r.name
            );
            return Err(Status::permission_denied(format!(
                "a node certificate may only join as itself: certificate {:?} asked to join as {:?}",
                who.name, r.name
            )));
        }
        if r.id == 0 || r.name.is_empty() || r.address.is_empty() {
            return Err(Status::invalid_argument(
                "join needs an id above 0, a name and an address",
            ));
        }
        let op = LeaderOp::AddLearner {
            id: r.id,
            node: ClusterNode {
                name: r.name.clone(),
                addr: r.address.clone(),
                incarnation: r.incarnation,
            },
        };
        tracing::info!(by = %who.name, "adding {}({}) at {} as a learner", r.name, r.id, r.address);
        self.membership(op).await
    }

    async fn set_voter(
        &self,
        req: Request<pb::SetVoterRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let who = authorize(&req, OPERATOR)?;
        let r = req.into_inner();
        tracing::info!(by = %who.name, "setting node {} voter={}", r.id, r.voter);
        self.membership(LeaderOp::SetVoter {
            id: r.id,
            voter: r.voter,
        })
        .await
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let who = authorize(&req, OPERATOR)?;
        let r = req.into_inner();
        tracing::info!(by = %who.name, "removing node {}", r.id);
        self.membership(LeaderOp::Remove { id: r.id }).await
    }

    async fn ups_command(
        &self,
        req: Request<pb::UpsCommandRequest>,
    ) -> Result<Response<pb::UpsCommandReply>, Status> {
        let who = authorize(&req, OPERATOR)?;
        let r = req.into_inner();
        let name = pick_ups(
            &r.ups_name,
            self.shared.ups_orders.keys(),
            "UPS",
            &self.shared,
        )?;
        let (cmd, what) = match pb::UpsCommandKind::try_from(r.kind) {
            Ok(pb::UpsCommandKind::SelfTest) => (UpsCommand::SelfTest, "self test"),
            Ok(pb::UpsCommandKind::KillPower) => (
                UpsCommand::KillPower {
                    delay_s: 0,
                    return_on_mains: true,
                },
                "kill power",
            ),
            Ok(pb::UpsCommandKind::PowerOff) => (
                UpsCommand::KillPower {
                    delay_s: 0,
                    return_on_mains: false,
                },
                "power off",
            ),
            _ => return Err(Status::invalid_argument("unknown UPS command kind")),
        };
        tracing::warn!(ups = %name, by = %who.name, "{what} requested by an operator");
        let (ok, result) = if cmd == UpsCommand::SelfTest {
            match self.shared.order(&name, cmd).await {
                Ok(_) => (true, "sent to the UPS".to_string()),
                Err(e) => (false, e),
            }
        } else {
            let send = || async { self.shared.order(&name, cmd).await.map(|_| ()) };
            self.shared.executor.ups_action(&name, what, send).await
        };
        if !ok {
            return Err(Status::unavailable(format!("{what} on {name}: {result}")));
        }
        Ok(Response::new(pb::UpsCommandReply {
            ups_name: name,
            result,
        }))
    }

    async fn release_ups(
        &self,
        req: Request<pb::ReleaseUpsRequest>,
    ) -> Result<Response<pb::ReleaseUpsReply>, Status> {
        let who = authorize(&req, OPERATOR)?;
        let r = req.into_inner();
        let cluster = self.cluster()?;
        let owner = cluster
            .read(|s| {
                s.upses.get(&r.ups_name).map(|u| {
                    s.nodes
                        .get(&u.owner)
                        .map_or_else(|| format!("node-{}", u.owner), |n| n.name.clone())
                })
            })
            .ok_or_else(|| {
                Status::not_found(format!("the cluster knows no UPS named {:?}", r.ups_name))
            })?;
        let cmd = crate::cluster::Command::UpsRelease {
            ups: r.ups_name.clone(),
            by: who.name.clone(),
            at_ms: upsilon_core::time::now_ms(),
        };
        self.on_leader(LeaderOp::Write(cmd)).await?;
        tracing::warn!(ups = %r.ups_name, by = %who.name, "UPS name released (was owned by {owner})");
        Ok(Response::new(pb::ReleaseUpsReply {
            previous_owner: owner,
        }))
    }

    async fn drill(
        &self,
        req: Request<pb::DrillRequest>,
    ) -> Result<Response<pb::DrillReply>, Status> {
        let who = authorize(&req, OPERATOR)?;
        let r = req.into_inner();
        let cluster = self.cluster()?;
        let now = upsilon_core::time::now_ms();
        if r.stop {
            let id = cluster
                .read(|s| {
                    s.outage
                        .as_ref()
                        .filter(|o| o.ended_ms.is_none() && o.is_drill())
                        .map(|o| o.id)
                })
                .ok_or_else(|| Status::failed_precondition("no fire drill is running"))?;
            let cmd = crate::cluster::Command::OutageEnd {
                id,
                at_ms: now,
                reason: format!("stopped by {}", who.name),
            };
            self.on_leader(LeaderOp::Write(cmd)).await?;
            return Ok(Response::new(pb::DrillReply { id }));
        }
        if r.upses.is_empty() || r.upses.len() > 64 {
            return Err(Status::invalid_argument(
                "name 1 to 64 UPSes to drill (upsilon drill --ups NAME)",
            ));
        }
        let (id, problem) = cluster.read(|s| {
            let problem = if s.plan.is_none() {
                Some(
                    "the cluster has no plan to drill: set one with `upsilon plan apply FILE`"
                        .to_string(),
                )
            } else if let Some(o) = s.outage.as_ref().filter(|o| o.ended_ms.is_none()) {
                Some(if o.is_drill() {
                    format!(
                        "fire drill {} is running (stop it with `upsilon drill --stop`)",
                        o.id
                    )
                } else {
                    format!("outage {} is going on: no drill during a real outage", o.id)
                })
            } else {
                r.upses
                    .iter()
                    .find(|u| !s.upses.contains_key(*u))
                    .map(|u| format!("the cluster knows no UPS named {u:?}"))
            };
            (s.next_outage_id + 1, problem)
        });
        if let Some(p) = problem {
            return Err(Status::failed_precondition(p));
        }
        let cmd = crate::cluster::Command::DrillStart {
            id,
            upses: r.upses.clone(),
            by: who.name.clone(),
            at_ms: now,
        };
        let reply = self.on_leader(LeaderOp::Write(cmd)).await?;
        if let LeaderReply::Written(res) = reply
            && !res.applied
        {
            return Err(Status::aborted(
                "the drill was not started (an outage or another drill began at the same moment); try again",
            ));
        }
        tracing::warn!(by = %who.name, "fire drill {id} started on {}", r.upses.join(", "));
        Ok(Response::new(pb::DrillReply { id }))
    }

    async fn revoke_cert(
        &self,
        req: Request<pb::RevokeCertRequest>,
    ) -> Result<Response<pb::RevokeCertReply>, Status> {
        let who = authorize(&req, OPERATOR)?;
        let r = req.into_inner();
        let serial =
            upsilon_client::pki::normalize_serial(&r.serial).map_err(Status::invalid_argument)?;
        for (what, v, max) in [("name", &r.name, 256), ("reason", &r.reason, 256)] {
            if v.len() > max {
                return Err(Status::invalid_argument(format!(
                    "the {what} is {} bytes; at most {max}",
                    v.len()
                )));
            }
        }
        let cluster = self.cluster()?;
        let cmd = crate::cluster::Command::RevokeCert {
            serial: serial.clone(),
            name: r.name.clone(),
            reason: r.reason.clone(),
            by: who.name.clone(),
            at_ms: upsilon_core::time::now_ms(),
        };
        self.on_leader(LeaderOp::Write(cmd)).await?;
        tracing::warn!(by = %who.name, "certificate {serial} ({}) revoked", r.name);
        let revoked = cluster.read(|s| s.revoked.len()) as u32;
        Ok(Response::new(pb::RevokeCertReply { revoked }))
    }

    async fn set_plan(
        &self,
        req: Request<pb::SetPlanRequest>,
    ) -> Result<Response<pb::SetPlanReply>, Status> {
        let who = authorize(&req, OPERATOR)?;
        let r = req.into_inner();
        let source = if r.source.is_empty() {
            "plan".to_string()
        } else {
            r.source.clone()
        };
        if r.toml.len() > upsilon_core::replicated::plan::MAX_PLAN_BYTES {
            return Err(Status::invalid_argument(format!(
                "{source}: the plan is {} bytes; a plan may be at most {} bytes",
                r.toml.len(),
                upsilon_core::replicated::plan::MAX_PLAN_BYTES
            )));
        }
        let plan: upsilon_core::replicated::plan::Plan =
            upsilon_core::config::parse_toml(std::path::Path::new(&source), &r.toml)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        plan.validate()
            .map_err(|e| Status::invalid_argument(format!("{source}: {e}")))?;
        let cluster = self.cluster()?;
        let voters: Vec<u64> = cluster.metrics().membership_config.voter_ids().collect();
        let review = cluster.read(|s| {
            let mut r = plan.review(&s.hosts());
            // The quorum rule: no host may be left to a stage nothing can start.
            match upsilon_core::replicated::endgame::quorum_words(s, &plan, &voters) {
                Err(e) => r.refusals.push(e),
                Ok(Some(w)) => r.warnings.push(w),
                Ok(None) => {}
            }
            r
        });
        if !review.refusals.is_empty() && !r.force {
            return Err(Status::invalid_argument(format!(
                "{source}: {}; add --force to apply it anyway",
                review.refusals.join("; ")
            )));
        }
        if self.shared.cluster.is_none() {
            return Err(Status::failed_precondition(
                "this node is standalone: a plan needs a [cluster]",
            ));
        }
        let stages = plan.stages.iter().map(|s| s.name.clone()).collect();
        let cmd = crate::cluster::Command::SetPlan {
            plan,
            at_ms: upsilon_core::time::now_ms(),
            by: who.name.clone(),
        };
        self.on_leader(LeaderOp::Write(cmd)).await?;
        let mut warnings = review.warnings;
        if r.force {
            warnings.extend(review.refusals.into_iter().map(|x| format!("forced: {x}")));
        }
        Ok(Response::new(pb::SetPlanReply { stages, warnings }))
    }
}
