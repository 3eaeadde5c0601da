//! Mutual TLS for every gRPC connection: the server's accept loop, the client's
//! connector, peer authorization, and plain-words explanations of TLS failures.
//!
//! We do the TLS handshakes ourselves (tokio-rustls) instead of through tonic's TLS
//! options, because tonic reports every refusal as "transport error" on the client and
//! nothing on the server. Here the server logs who was refused and why, and the client
//! turns the TLS alert it received into a sentence that says what to fix.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::{Channel, Endpoint};

use crate::pki::{self, Identity, PkiError, Role};

/// Serials of revoked certificates (the cluster's replicated deny list, copied here after
/// every apply), checked on every TLS connection and on every RPC. One per process: a
/// process is one node, and the list is the same on every node of a cluster.
static REVOKED: std::sync::RwLock<std::collections::BTreeSet<String>> =
    std::sync::RwLock::new(std::collections::BTreeSet::new());

/// Replaces the revoked-serial list.
pub fn set_revoked(serials: impl IntoIterator<Item = String>) {
    let new: std::collections::BTreeSet<String> = serials.into_iter().collect();
    let mut cur = REVOKED.write().expect("revoked lock");
    if *cur != new {
        *cur = new;
    }
}

/// Whether a serial is on the deny list.
pub fn is_revoked(serial: &str) -> bool {
    REVOKED.read().expect("revoked lock").contains(serial)
}

static REFUSALS: upsilon_core::ratelimit::LogLimiter = upsilon_core::ratelimit::LogLimiter::new();

/// Logs a refused connection, rate-limited per reason (the peer's address is kept out of
/// the key so a scan from many ports is one line).
fn log_refusal(peer: SocketAddr, why: &str) {
    if let Some(n) = REFUSALS.note(why) {
        tracing::warn!(%peer, "refused TLS connection: {why}{}", upsilon_core::ratelimit::repeats(n));
    }
}

/// Installs ring as the process's rustls crypto provider (once; later calls no-op).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Certificate file paths for one side of a connection.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

fn roots(ca: &Path) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for c in pki::load_certs(ca)? {
        roots.add(c).map_err(|e| {
            PkiError::Invalid(format!(
                "{}: not a usable CA certificate: {e}",
                ca.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The server side: requires a client certificate signed by the cluster CA.
/// Returns the config and the server's own identity (from its certificate).
pub fn server_config(files: &TlsFiles) -> Result<(ServerConfig, Identity), PkiError> {
    install_crypto_provider();
    let roots = Arc::new(roots(&files.ca)?);
    let verifier = WebPkiClientVerifier::builder(roots)
        .build()
        .map_err(|e| PkiError::Invalid(format!("client verifier: {e}")))?;
    let certs = pki::load_certs(&files.cert)?;
    let ident = pki::identity(&certs[0])
        .map_err(|e| PkiError::Invalid(format!("{}: {e}", files.cert.display())))?;
    if ident.role != Role::Node {
        return Err(PkiError::Invalid(format!(
            "{} has role {}; a node needs a certificate issued with --role node",
            files.cert.display(),
            ident.role
        )));
    }
    let key = pki::load_key(&files.key)?;
    let mut cfg = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            PkiError::Invalid(format!(
                "{} and {} do not form a usable pair: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok((cfg, ident))
}

/// The client side: trusts only the cluster CA and presents our certificate, if any.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, PkiError> {
    install_crypto_provider();
    let builder = ClientConfig::builder().with_root_certificates(roots(ca)?);
    let mut cfg = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(pki::load_certs(cert)?, pki::load_key(key)?)
            .map_err(|e| {
                PkiError::Invalid(format!(
                    "{} and {} do not form a usable pair: {e}",
                    cert.display(),
                    key.display()
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Why the server refused a client, in words, from the rustls error.
pub fn explain_server_refusal(err: &std::io::Error) -> String {
    let text = err.to_string();
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());

    match inner {
        Some(rustls::Error::NoCertificatesPresented) => {
            "the client presented no certificate (clients need one from this cluster's CA)"
                .to_string()
        }
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature => {
                "the client's certificate is not signed by this cluster's CA".to_string()
            }
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                "the client's certificate has expired".to_string()
            }
            rustls::CertificateError::NotValidYet
            | rustls::CertificateError::NotValidYetContext { .. } => {
                "the client's certificate is not valid yet (check the clocks)".to_string()
            }
            other => format!("the client's certificate is invalid: {other:?}"),
        },
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA | rustls::AlertDescription::DecryptError,
        )) => "the client does not trust this node's certificate (is it configured with another cluster's CA?)"
            .to_string(),
        // What a client sends when the certificate is from its CA but does not name the
        // address it dialled (or is otherwise unusable to it).
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate)) => {
            "the client rejected this node's certificate: most often it does not name the address the client dialled (issue it with --san for that address); the client's message says which"
                .to_string()
        }
        _ => text,
    }
}

/// The running accept loop: TLS-handshaken connections, ready for tonic.
pub type TlsIncoming = tokio_stream::wrappers::ReceiverStream<
    Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>,
>;

/// Binds `addr` and hands each successfully authenticated connection to the returned
/// stream; refused handshakes are logged with the peer and the reason.
pub async fn serve_tls(
    addr: SocketAddr,
    config: ServerConfig,
    mut stop: crate::stop::Stop,
) -> std::io::Result<(SocketAddr, TlsIncoming)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.recv() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Small gRPC frames (a reply's headers, data and trailers) must not wait
            // for the client's delayed ACK: 40 ms per forwarded write without this.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let revoked = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| pki::identity(c).ok())
                            .filter(|id| is_revoked(&id.serial));
                        if let Some(id) = revoked {
                            log_refusal(
                                peer,
                                &format!(
                                    "certificate {:?} (serial {}) is revoked",
                                    id.name, id.serial
                                ),
                            );
                            return;
                        }
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        // A port probe or a client that gave up: nothing to explain.
                        tracing::debug!(%peer, "connection closed before the TLS handshake finished");
                    }
                    Ok(Err(e)) => log_refusal(peer, &explain_server_refusal(&e)),
                    Err(_) => log_refusal(peer, "handshake timed out after 10 s"),
                }
            });
        }
    });
    Ok((local, tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// The identity of the peer of a gRPC request, if it is allowed one of `roles`.
pub fn authorize<T>(req: &tonic::Request<T>, roles: &[Role]) -> Result<Identity, tonic::Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
    let first = certs
        .first()
        .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
    let id = pki::identity(first).map_err(tonic::Status::unauthenticated)?;
    if is_revoked(&id.serial) {
        return Err(tonic::Status::permission_denied(format!(
            "certificate {:?} (serial {}) has been revoked",
            id.name, id.serial
        )));
    }
    if !roles.contains(&id.role) {
        let allowed: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
        return Err(tonic::Status::permission_denied(format!(
            "certificate {:?} has role {}; this call needs role {}",
            id.name,
            id.role,
            allowed.join(" or ")
        )));
    }
    Ok(id)
}

/// An error connecting to or calling a node, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

/// Walks an error's source chain and explains the TLS or network failure inside it.
pub fn explain_client_error(err: &(dyn std::error::Error + 'static), endpoint: &str) -> String {
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return explain_rustls_client(r, endpoint);
        }
        // io::Error::source() skips the error it wraps, so look inside it.
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return explain_rustls_client(r, endpoint);
        }
        chain.push(e.to_string());
        cur = e.source();
    }
    let all = chain.join(": ");
    if all.contains("Connection refused") {
        return format!(
            "cannot connect to {endpoint}: connection refused (is upsilond running and listening there?)"
        );
    }
    if all.contains("CertificateRequired") {
        return format!(
            "{endpoint} refused the connection: it requires a client certificate (pass --cert and --key, or set UPSILON_CERT and UPSILON_KEY)"
        );
    }
    if all.contains("UnknownCA") || all.contains("BadCertificate") || all.contains("DecryptError") {
        return format!(
            "{endpoint} refused our certificate: it is not signed by that cluster's CA"
        );
    }
    if all.contains("CertificateExpired") {
        return format!(
            "{endpoint} refused our certificate: it has expired or is not valid yet (check its dates with `upsilon cert show` and both clocks; issue a new one with `upsilon cert issue`)"
        );
    }
    format!("cannot talk to {endpoint}: {all}")
}

fn explain_rustls_client(e: &rustls::Error, endpoint: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::AlertReceived(A::CertificateRequired) | E::AlertReceived(A::HandshakeFailure) => {
            format!(
                "{endpoint} refused the connection: it requires a client certificate (pass --cert and --key, or set UPSILON_CERT and UPSILON_KEY)"
            )
        }
        E::AlertReceived(A::UnknownCA)
        | E::AlertReceived(A::BadCertificate)
        | E::AlertReceived(A::DecryptError) => {
            format!("{endpoint} refused our certificate: it is not signed by that cluster's CA")
        }
        E::AlertReceived(A::CertificateExpired) => format!(
            "{endpoint} refused our certificate: it has expired or is not valid yet (check its dates with `upsilon cert show` and both clocks; issue a new one with `upsilon cert issue`)"
        ),
        E::InvalidCertificate(C::UnknownIssuer) | E::InvalidCertificate(C::BadSignature) => {
            format!(
                "{endpoint}'s certificate is not signed by our CA: check --ca (UPSILON_CA) names this cluster's ca.pem"
            )
        }
        E::InvalidCertificate(C::Expired) | E::InvalidCertificate(C::ExpiredContext { .. }) => {
            format!("{endpoint}'s certificate has expired")
        }
        E::InvalidCertificate(C::NotValidForName)
        | E::InvalidCertificate(C::NotValidForNameContext { .. }) => format!(
            "{endpoint}'s certificate does not name this address: issue the node certificate with --san for it"
        ),
        other => format!("TLS with {endpoint} failed: {other}"),
    }
}

/// Opens a gRPC channel to `endpoint` (`host:port`) over mutual TLS.
pub async fn connect(endpoint: &str, client: ClientConfig) -> Result<Channel, ConnectError> {
    if crate::fault::blocked(endpoint) {
        return Err(ConnectError(format!(
            "cannot connect to {endpoint}: blocked by fault injection"
        )));
    }
    let (host, port) = split_host_port(endpoint)?;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| ConnectError(format!("{endpoint}: {host:?} is not a valid host name")))?;
    let connector = TlsConnector::from(Arc::new(client));
    let target = format!("{host}:{port}");
    let ep = Endpoint::from_shared(format!("http://{}", bracket(&host, port)))
        .map_err(|e| ConnectError(format!("{endpoint}: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    let ep_name = endpoint.to_string();
    let channel = ep
        .connect_with_connector(tower::service_fn(move |_uri: tonic::transport::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let target = target.clone();
            async move {
                let tcp = TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                let stream = await_server_verdict(tls).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| ConnectError(explain_client_error(&e, &ep_name)))?;
    Ok(channel)
}

/// With TLS 1.3 the server judges our certificate only after our side of the handshake
/// is done, so a refusal arrives as an alert on the first read; if HTTP/2 writes first
/// it sees a broken pipe instead. The server speaks first (its HTTP/2 SETTINGS), so we
/// read once here: either the refusal surfaces as a clear TLS alert, or the bytes read
/// are replayed to HTTP/2 through [`Prefixed`].
async fn await_server_verdict(
    mut tls: tokio_rustls::client::TlsStream<TcpStream>,
) -> std::io::Result<Prefixed<tokio_rustls::client::TlsStream<TcpStream>>> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the server sent nothing for 10 s after the TLS handshake",
            ));
        }
    };
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the server closed the connection right after the TLS handshake",
        ));
    }
    buf.truncate(n);
    Ok(Prefixed {
        prefix: buf,
        pos: 0,
        inner: tls,
    })
}

/// A stream that first yields `prefix`, then reads from `inner`; writes go to `inner`.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn bracket(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn split_host_port(endpoint: &str) -> Result<(String, u16), ConnectError> {
    let bad = || {
        ConnectError(format!(
            "{endpoint:?} is not host:port (e.g. 127.0.0.1:7443)"
        ))
    };
    let (h, p) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    let port = p.parse().map_err(|_| bad())?;
    let host = h.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Checks our own certificate before connecting, so an expired or not yet valid one is
/// named as such.
pub fn check_own_certificate(cert: &Path) -> Result<(), ConnectError> {
    let certs = pki::load_certs(cert).map_err(|e| ConnectError(e.to_string()))?;
    let id =
        pki::identity(&certs[0]).map_err(|e| ConnectError(format!("{}: {e}", cert.display())))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let date = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map(|d| d.to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    // Warned, not refused here: the server refuses it too and says so in its log.
    if id.not_after_unix < now {
        tracing::warn!(
            "{} expired on {}; the server will refuse it: issue a new one with `upsilon cert issue`",
            cert.display(),
            date(id.not_after_unix)
        );
    }
    if id.not_before_unix > now {
        tracing::warn!(
            "{} is not valid until {}; the server will refuse it (is a clock wrong?)",
            cert.display(),
            date(id.not_before_unix)
        );
    }
    Ok(())
}
