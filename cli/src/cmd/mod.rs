//! One module per command group; what they share (connecting, fetching the status,
//! RPC errors in words) is here.

pub mod cert;
pub mod drill;
pub mod legacy;
pub mod nodes;
pub mod plan;
pub mod read;
pub mod ups;

use upsilon_client::rpc::{self, ClientOptions};
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::power_service_client::PowerServiceClient;

pub async fn power(
    opts: &ClientOptions,
) -> anyhow::Result<PowerServiceClient<tonic::transport::Channel>> {
    let ch = rpc::connect(opts).await?;
    Ok(PowerServiceClient::new(ch))
}

pub async fn fetch_status(opts: &ClientOptions) -> anyhow::Result<pb::StatusReply> {
    Ok(power(opts)
        .await?
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(rpc_err(opts))?
        .into_inner())
}

/// `GetPlan` with `req` (the replay, `plan check`), from the node `opts` names.
/// The plan with `plan check`'s report against the live batteries.
pub async fn fetch_checked_plan(opts: &ClientOptions) -> anyhow::Result<pb::PlanReply> {
    fetch_plan(
        opts,
        pb::GetPlanRequest {
            check: true,
            ..Default::default()
        },
    )
    .await
}

pub async fn fetch_plan(
    opts: &ClientOptions,
    req: pb::GetPlanRequest,
) -> anyhow::Result<pb::PlanReply> {
    Ok(power(opts)
        .await?
        .get_plan(req)
        .await
        .map_err(rpc_err(opts))?
        .into_inner())
}

pub fn rpc_err(opts: &ClientOptions) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow::anyhow!(rpc::explain_status(&s, &opts.endpoint))
}
