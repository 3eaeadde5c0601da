//! UPS commands: `ups self-test|kill-power|power-off|release`, `sim set`.

use anyhow::anyhow;
use clap::Subcommand;
use upsilon_client::rpc;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;

use crate::conn::ConnArgs;

#[derive(Subcommand, Debug)]
pub enum UpsCmd {
    /// Start a battery self test (the result shows as SELFTEST in `status --json`).
    SelfTest {
        #[arg(long)]
        ups: Option<String>,
    },
    /// Cut the UPS output after its grace delay; it returns when mains return
    /// (apcupsd --killpower). Everything on the UPS loses power.
    KillPower {
        #[arg(long)]
        ups: Option<String>,
        /// Required: this cuts power to everything on the UPS.
        #[arg(long)]
        confirm: bool,
    },
    /// Free a UPS name in the cluster: the next node to report a UPS of that name owns
    /// it (moving a UPS to another host, or ending a clash of two UPSes with one name).
    Release { name: String },
    /// Turn the UPS off after its grace delay; it stays off (apcupsd --power-off).
    PowerOff {
        #[arg(long)]
        ups: Option<String>,
        /// Required: this cuts power to everything on the UPS until someone turns it on.
        #[arg(long)]
        confirm: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Change the simulated UPS; unset options are left as they are.
    Set(SimSetArgs),
}

#[derive(clap::Args, Debug)]
pub struct SimSetArgs {
    /// Which simulated UPS (needed when the node has several).
    #[arg(long)]
    ups: Option<String>,
    /// Mains fail: the UPS runs on battery.
    #[arg(long, conflicts_with = "on_line")]
    on_battery: bool,
    /// Mains return.
    #[arg(long)]
    on_line: bool,
    /// Set the charge, percent.
    #[arg(long)]
    charge: Option<f64>,
    /// Set the load, percent.
    #[arg(long)]
    load: Option<f64>,
    /// Force the UPS's low-battery signal on or off.
    #[arg(long, value_name = "on|off")]
    low_battery: Option<OnOff>,
    /// The UPS stops answering.
    #[arg(long, conflicts_with = "comm_ok")]
    comm_lost: bool,
    /// The UPS answers again.
    #[arg(long)]
    comm_ok: bool,
    #[arg(long, value_name = "on|off")]
    replace_battery: Option<OnOff>,
    #[arg(long, value_name = "on|off")]
    battery_present: Option<OnOff>,
    /// Charge drain on battery, percent per second.
    #[arg(long)]
    drain: Option<f64>,
    /// Start a UPS self test.
    #[arg(long)]
    self_test: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn b(self) -> bool {
        matches!(self, OnOff::On)
    }
}

pub async fn sim_set(conn: &ConnArgs, a: SimSetArgs) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let req = pb::SimSetRequest {
        ups_name: a.ups.unwrap_or_default(),
        on_battery: if a.on_battery {
            Some(true)
        } else if a.on_line {
            Some(false)
        } else {
            None
        },
        charge_percent: a.charge,
        load_percent: a.load,
        low_battery: a.low_battery.map(OnOff::b),
        comm_lost: if a.comm_lost {
            Some(true)
        } else if a.comm_ok {
            Some(false)
        } else {
            None
        },
        replace_battery: a.replace_battery.map(OnOff::b),
        battery_present: a.battery_present.map(OnOff::b),
        drain_percent_per_second: a.drain,
        start_self_test: a.self_test,
    };
    let (reply, via) = to_owner(&opts, |ch| {
        let req = req.clone();
        async move { AdminServiceClient::new(ch).sim_set(req).await }
    })
    .await?;
    println!("{}: {}{via}", reply.ups_name, reply.state);
    Ok(())
}

/// Sends an order for a UPS to the node that drives it: a node that does not answers
/// with the owner's address, and the call follows it (as it follows a leader). The
/// note says where it went when that is not where it was sent.
async fn to_owner<T, F, Fut>(
    opts: &upsilon_client::rpc::ClientOptions,
    call: F,
) -> anyhow::Result<(T, String)>
where
    F: FnMut(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let (reply, at) = rpc::on_leader(opts, call).await.map_err(|e| anyhow!(e))?;
    let via = if at == opts.endpoint {
        String::new()
    } else {
        format!(" (on {at}, which drives it)")
    };
    Ok((reply, via))
}

pub async fn release(conn: &ConnArgs, name: String) -> anyhow::Result<()> {
    let opts = conn.resolve()?;
    let (reply, _) = rpc::on_leader(&opts, |ch| {
        let req = pb::ReleaseUpsRequest {
            ups_name: name.clone(),
        };
        async move { AdminServiceClient::new(ch).release_ups(req).await }
    })
    .await
    .map_err(|e| anyhow!(e))?;
    println!(
        "{name}: released (was owned by {}); the next node to report it owns it",
        reply.previous_owner
    );
    Ok(())
}

pub async fn command(conn: &ConnArgs, cmd: UpsCmd) -> anyhow::Result<()> {
    let (ups, kind, confirmed) = match cmd {
        UpsCmd::Release { .. } => unreachable!("handled above"),
        UpsCmd::SelfTest { ups } => (ups, pb::UpsCommandKind::SelfTest, true),
        UpsCmd::KillPower { ups, confirm } => (ups, pb::UpsCommandKind::KillPower, confirm),
        UpsCmd::PowerOff { ups, confirm } => (ups, pb::UpsCommandKind::PowerOff, confirm),
    };
    if !confirmed {
        anyhow::bail!(
            "this cuts power to everything on the UPS; add --confirm if that is what you want"
        );
    }
    let opts = conn.resolve()?;
    let req = pb::UpsCommandRequest {
        ups_name: ups.unwrap_or_default(),
        kind: kind as i32,
    };
    let (reply, via) = to_owner(&opts, |ch| {
        let req = req.clone();
        async move { AdminServiceClient::new(ch).ups_command(req).await }
    })
    .await?;
    println!("{}: {}{via}", reply.ups_name, reply.result);
    Ok(())
}
