//! Where the CLI connects and with which certificates: flags, then environment
//! variables, then a small client config file, then defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use upsilon_client::rpc::ClientOptions;

pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7443";

#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Node to talk to, host:port [default: 127.0.0.1:7443]
    #[arg(long, global = true, env = "UPSILON_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Cluster CA certificate (PEM)
    #[arg(long, global = true, env = "UPSILON_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Our client certificate (PEM), issued with `--role operator` (or `viewer`)
    #[arg(long, global = true, env = "UPSILON_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Our private key (PEM)
    #[arg(long, global = true, env = "UPSILON_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Client config file [default: ~/.config/upsilon/client.toml if it exists]
    #[arg(
        long,
        global = true,
        env = "UPSILON_CLIENT_CONFIG",
        value_name = "FILE"
    )]
    pub client_config: Option<PathBuf>,
}

/// The client config file: the same four settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    pub endpoint: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn default_client_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".config/upsilon/client.toml");
    p.exists().then_some(p)
}

fn load_file(path: &Path) -> anyhow::Result<ClientFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read client config {}", path.display()))?;
    let mut f: ClientFile = upsilon_core::config::parse_toml(path, &text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [&mut f.ca, &mut f.cert, &mut f.key].into_iter().flatten() {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(f)
}

impl ConnArgs {
    /// Resolves flags, environment and file into client options.
    pub fn resolve(&self) -> anyhow::Result<ClientOptions> {
        let file = match self.client_config.clone().or_else(default_client_file) {
            Some(p) => load_file(&p)?,
            None => ClientFile::default(),
        };
        let endpoint = self
            .endpoint
            .clone()
            .or(file.endpoint)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let Some(ca) = self.ca.clone().or(file.ca) else {
            bail!(
                "no CA certificate given: pass --ca FILE, set UPSILON_CA, or put `ca = ...` in ~/.config/upsilon/client.toml"
            );
        };
        let cert = self.cert.clone().or(file.cert);
        let key = self.key.clone().or(file.key);
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => bail!("--cert given without --key (UPSILON_KEY)"),
            (None, Some(_)) => bail!("--key given without --cert (UPSILON_CERT)"),
        };
        Ok(ClientOptions {
            endpoint,
            ca,
            identity,
        })
    }
}
