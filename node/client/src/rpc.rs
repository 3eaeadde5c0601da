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

/// gRPC metadata naming the leader's API address on a "not the leader" refusal.
pub const LEADER_HEADER: &str = "x-upsilon-leader";
/// Metadata on a refusal naming the member that drives the UPS an order was for.
pub const OWNER_HEADER: &str = "x-upsilon-owner";

/// Calls `call` on the node in `opts`, following "not the leader" refusals to the
/// leader (at most 3 hops) with the same certificate: cluster-wide operator actions run
/// on the leader, which checks the caller's certificate itself. Returns the reply and
/// the endpoint that answered.
pub async fn on_leader<T, F, Fut>(opts: &ClientOptions, call: F) -> Result<(T, String), String>
where
    F: FnMut(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let channel = |endpoint: String| {
        let opts = ClientOptions {
            endpoint,
            ..opts.clone()
        };
        async move { connect(&opts).await.map_err(|e| e.0) }
    };
    follow_leader(&opts.endpoint, channel, call).await
}

/// Calls `call` on a channel to `start` (from `channel`), and while the answer is a
/// refusal naming the leader ([`LEADER_HEADER`]) or a UPS's owner ([`OWNER_HEADER`]),
/// again on that node (at most 3 hops). Returns the reply and the endpoint that answered. [`on_leader`] is this for
/// a client's options; a node joining through a seed uses it with its own channels.
pub async fn follow_leader<T, C, CFut, F, Fut>(
    start: &str,
    mut channel: C,
    mut call: F,
) -> Result<(T, String), String>
where
    C: FnMut(String) -> CFut,
    CFut: std::future::Future<Output = Result<Channel, String>>,
    F: FnMut(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut at = start.to_string();
    for _ in 0..4 {
        let ch = channel(at.clone()).await?;
        match call(ch).await {
            Ok(r) => return Ok((r.into_inner(), at)),
            Err(s) => match leader_named(&s).or_else(|| owner_named(&s)) {
                Some(l) if l != at => {
                    tracing::debug!("{at} sends this to {l}");
                    at = l;
                }
                _ => return Err(explain_status(&s, &at)),
            },
        }
    }
    Err(format!(
        "the leader kept moving while {start} was asked; try again"
    ))
}

/// The leader a "not the leader" refusal names ([`LEADER_HEADER`]), if any.
pub fn leader_named(status: &tonic::Status) -> Option<String> {
    named(status, LEADER_HEADER)
}

fn named(status: &tonic::Status, header: &str) -> Option<String> {
    status
        .metadata()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The member a "not driven here" refusal names ([`OWNER_HEADER`]), if any.
pub fn owner_named(status: &tonic::Status) -> Option<String> {
    named(status, OWNER_HEADER)
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
