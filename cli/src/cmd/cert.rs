//! Certificates: `cert init|issue|show|revoke`.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use upsilon_client::pki::{self, IssueRequest, Role};
use upsilon_client::rpc;
use upsilon_proto::v1 as pb;
use upsilon_proto::v1::admin_service_client::AdminServiceClient;

use crate::conn::ConnArgs;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Create a new cluster CA (ca.pem, ca.key) in DIR.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A name for the cluster, shown in the CA's subject.
        #[arg(long, default_value = "upsilon")]
        cluster: String,
    },
    /// Issue NAME.pem and NAME.key in DIR, signed by DIR's CA.
    Issue {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// node (an upsilond: Raft and its own reports), operator (membership, plan, UPS
        /// commands, revocation), viewer (read only) or bridge (the legacy bridge).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Extra DNS names or IP addresses the node answers on (repeatable).
        #[arg(long = "san", value_name = "NAME_OR_IP")]
        sans: Vec<String>,
        /// Validity in days (1 to 36500).
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
    /// Print a certificate's name, role, serial and validity.
    Show { file: PathBuf },
    /// Put a certificate on the cluster's deny list: every node refuses it from now on
    /// (a lost laptop, a retired host). Needs an operator certificate.
    Revoke {
        /// The certificate file (its serial is read from it).
        #[arg(conflicts_with = "serial", required_unless_present = "serial")]
        file: Option<PathBuf>,
        /// The serial in hex, as `upsilon cert show` prints it.
        #[arg(long)]
        serial: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn read_identity(file: &std::path::Path) -> anyhow::Result<pki::Identity> {
    let certs = pki::load_certs(file)?;
    pki::identity(&certs[0]).map_err(|e| anyhow!("{}: {e}", file.display()))
}

pub async fn run(conn: &ConnArgs, cmd: CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Init { dir, cluster } => {
            let p = pki::init_ca(&dir, &cluster)?;
            println!("created CA {} (keep ca.key private)", p.display());
        }
        CertCommand::Issue {
            dir,
            name,
            role,
            sans,
            days,
        } => {
            if !(1..=pki::MAX_DAYS).contains(&days) {
                return Err(anyhow!("--days must be between 1 and {}", pki::MAX_DAYS));
            }
            let (c, k) = pki::issue(&dir, &IssueRequest::new(&name, role, sans, days))
                .with_context(|| format!("cannot issue a certificate for {name}"))?;
            println!(
                "issued {} certificate {} and key {}",
                role,
                c.display(),
                k.display()
            );
        }
        CertCommand::Show { file } => {
            let id = read_identity(&file)?;
            let date = |t: i64| {
                upsilon_core::time::format_date(upsilon_core::time::from_unix_ms(
                    t.saturating_mul(1000),
                ))
            };
            println!("name:       {}", id.name);
            println!("role:       {}", id.role);
            println!("serial:     {}", id.serial);
            println!("not before: {}", date(id.not_before_unix));
            println!("not after:  {}", date(id.not_after_unix));
        }
        CertCommand::Revoke {
            file,
            serial,
            reason,
        } => {
            let (serial, name) = match (file, serial) {
                (Some(file), _) => {
                    let id = read_identity(&file)?;
                    (id.serial, id.name)
                }
                (None, Some(s)) => (
                    pki::normalize_serial(&s).map_err(|e| anyhow!(e))?,
                    String::new(),
                ),
                (None, None) => unreachable!("clap requires --cert or --serial"),
            };
            let opts = conn.resolve()?;
            let (reply, _) = rpc::on_leader(&opts, |ch| {
                let req = pb::RevokeCertRequest {
                    serial: serial.clone(),
                    name: name.clone(),
                    reason: reason.clone(),
                };
                async move { AdminServiceClient::new(ch).revoke_cert(req).await }
            })
            .await
            .map_err(|e| anyhow!(e))?;
            println!(
                "revoked {serial}{}; the cluster's deny list holds {} certificate(s)",
                if name.is_empty() {
                    String::new()
                } else {
                    format!(" ({name})")
                },
                reply.revoked
            );
        }
    }
    Ok(())
}
