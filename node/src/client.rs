//! Connecting to a node as a client (the CLI, the bridge, tests): mTLS channel setup
//! and turning RPC failures into sentences.

use std::path::PathBuf;

use tonic::transport::Channel;

use crate::tls::{self, ConnectError};

/// Where a node is and which certificates to use.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` of the node.
    pub endpoint: String,
    pub ca: PathBuf,
    /// Our certificate and key; `None` connects without one (the server will refuse).
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Opens an mTLS channel to the node.
pub async fn connect(opts: &ClientOptions) -> Result<Channel, ConnectError> {
    if let Some((cert, _)) = &opts.identity {
        tls::check_own_certificate(cert)?;
    }
    let cfg = tls::client_config(
        &opts.ca,
        opts.identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .map_err(|e| ConnectError(e.to_string()))?;
    tls::connect(&opts.endpoint, cfg).await
}

/// An RPC failure in words: TLS refusals are named, server messages passed through.
pub fn explain_status(status: &tonic::Status, endpoint: &str) -> String {
    match status.code() {
        tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Internal
            if std::error::Error::source(status).is_some() =>
        {
            tls::explain_client_error(status, endpoint)
        }
        tonic::Code::Unknown | tonic::Code::Unavailable => {
            let text = tls::explain_client_error(status, endpoint);
            if text.starts_with("cannot talk to") {
                format!("{endpoint}: {}", status.message())
            } else {
                text
            }
        }
        tonic::Code::PermissionDenied => {
            format!("{endpoint} refused the call: {}", status.message())
        }
        tonic::Code::Unauthenticated => {
            format!("{endpoint} could not authenticate us: {}", status.message())
        }
        _ => format!("{endpoint}: {}", status.message()),
    }
}
