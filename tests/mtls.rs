//! Mutual TLS refusals between real processes: no client certificate, another CA's
//! certificate, an expired certificate, a server the client does not trust, and a role
//! that may not call a service (BridgeService without a bridge certificate, a bridge
//! started with another role), a certificate not valid yet. Each refusal is explained
//! on both sides, and repeated refusals are logged once a minute per reason.

use std::time::Duration;

use upsilon_client::pki::{IssueRequest, Role};
use upsilon_tests::*;

fn started() -> (TestPki, NodeProc) {
    let pki = TestPki::new();
    let node = NodeProc::start(&pki, "[[ups]]\nname = \"ups1\"\ndriver = \"sim\"\n");
    (pki, node)
}

fn refused(o: &std::process::Output) -> String {
    assert!(
        !o.status.success(),
        "expected a refusal, got: {}",
        stdout(o)
    );
    let e = stderr(o);
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// A refusal said on both sides: the client's words contain each of `client_says`, and
/// the node logs `node_says` (within 5 s).
fn refused_on_both_sides(
    node: &NodeProc,
    o: &std::process::Output,
    client_says: &[&str],
    node_says: &str,
) {
    let e = refused(o);
    for want in client_says {
        assert!(e.contains(want), "client said: {e}");
    }
    assert!(
        node.wait_log(node_says, Duration::from_secs(5)),
        "server log:\n{}",
        node.log_text()
    );
}

#[test]
fn client_without_certificate_is_refused() {
    let (pki, node) = started();
    refused_on_both_sides(
        &node,
        &upsilon(&pki, node.addr, None, &["status"]),
        &["requires a client certificate"],
        "the client presented no certificate",
    );
    // A valid client still works afterwards.
    assert_eq!(status_json(&pki, node.addr)["node"], "node1");
}

#[test]
fn client_with_another_cas_certificate_is_refused() {
    let (pki, node) = started();
    let other = TestPki::new();
    // Present the other cluster's operator certificate, trusting our CA for the server.
    let (ca, _, _) = pki.files("node1");
    let (_, cert, key) = other.files("operator");
    let o = std::process::Command::new(bin("upsilon"))
        .arg("status")
        .env("UPSILON_ENDPOINT", node.addr.to_string())
        .env("UPSILON_CA", ca)
        .env("UPSILON_CERT", cert)
        .env("UPSILON_KEY", key)
        .output()
        .unwrap();
    refused_on_both_sides(
        &node,
        &o,
        &["not signed by that cluster's CA"],
        "the client's certificate is not signed by this cluster's CA",
    );
    assert_eq!(status_json(&pki, node.addr)["node"], "node1");
}

#[test]
fn expired_client_certificate_is_refused() {
    let (pki, node) = started();
    let now = time::OffsetDateTime::now_utc();
    pki.issue(&IssueRequest {
        name: "old-operator".into(),
        role: Role::Operator,
        sans: vec![],
        not_before: now - time::Duration::days(30),
        not_after: now - time::Duration::days(1),
    });
    refused_on_both_sides(
        &node,
        &upsilon(&pki, node.addr, Some("old-operator"), &["status"]),
        &["expired"],
        "the client's certificate has expired",
    );
}

#[test]
fn client_refuses_a_server_from_another_ca() {
    let (_pki, node) = started();
    let other = TestPki::new();
    let e = refused(&operator(&other, &node, &["status"]));
    assert!(e.contains("not signed by our CA"), "client said: {e}");
}

#[test]
fn bridge_role_may_read_but_not_drive_the_simulator() {
    let (pki, node) = started();
    pki.issue(&IssueRequest::new("bridge1", Role::Bridge, vec![], 1));
    let o = upsilon(&pki, node.addr, Some("bridge1"), &["status", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = refused(&upsilon(
        &pki,
        node.addr,
        Some("bridge1"),
        &["sim", "set", "--on-battery"],
    ));
    assert!(
        e.contains("has role bridge; this call needs role operator"),
        "{e}"
    );
}

#[test]
fn node_refuses_to_start_with_a_client_certificate() {
    let pki = TestPki::new();
    let cfg = pki.path().join("n.toml");
    std::fs::write(
        &cfg,
        "[node]\nname = \"node1\"\nlisten = \"127.0.0.1:0\"\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/operator.pem\"\nkey = \"certs/operator.key\"\n",
    )
    .unwrap();
    let o = std::process::Command::new(bin("upsilond"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_says(
        &stderr(&o),
        "a node needs a certificate issued with --role node",
    );
}

#[test]
fn refusals_are_logged_once_a_minute_per_reason_with_a_count() {
    let (pki, node) = started();
    for _ in 0..40 {
        refused(&upsilon(&pki, node.addr, None, &["status"]));
    }
    assert!(node.wait_log(
        "the client presented no certificate",
        Duration::from_secs(5)
    ));
    let lines = node
        .log_text()
        .lines()
        .filter(|l| l.contains("refused TLS connection"))
        .count();
    assert_eq!(lines, 1, "{}", node.log_text());
}

#[test]
fn a_not_yet_valid_certificate_is_called_that_and_huge_validity_is_refused() {
    let (pki, node) = started();
    let now = time::OffsetDateTime::now_utc();
    pki.issue(&IssueRequest {
        name: "future-operator".into(),
        role: Role::Operator,
        sans: vec![],
        not_before: now + time::Duration::days(2),
        not_after: now + time::Duration::days(30),
    });
    refused_on_both_sides(
        &node,
        &upsilon(&pki, node.addr, Some("future-operator"), &["status"]),
        &["not valid until", "not valid yet"],
        "the client's certificate is not valid yet",
    );
    let o = std::process::Command::new(bin("upsilon"))
        .args(["cert", "issue", "--dir"])
        .arg(pki.certs())
        .args([
            "--name", "forever", "--role", "viewer", "--days", "99999999",
        ])
        .output()
        .unwrap();
    let e = refused(&o);
    assert!(e.contains("--days must be between 1 and 36500"), "{e}");
    let o = std::process::Command::new(bin("upsilon"))
        .args(["cert", "issue", "--dir"])
        .arg(pki.certs())
        .args(["--name", "w", "--role", "admin"])
        .output()
        .unwrap();
    let e = refused(&o);
    assert!(e.contains("use node, operator, viewer or bridge"), "{e}");
}

#[test]
fn a_node_certificate_answers_on_127_0_0_1_and_a_wrong_address_is_named_on_both_sides() {
    // Issued the way the README's quick start does it, without --san 127.0.0.1: the
    // CLI's default endpoint is 127.0.0.1, so the first `upsilon status` must work.
    let pki = TestPki::new();
    std::fs::remove_file(pki.certs().join("node1.pem")).unwrap();
    std::fs::remove_file(pki.certs().join("node1.key")).unwrap();
    pki.issue(&IssueRequest::new("node1", Role::Node, vec![], 1));
    let node = NodeProc::start(&pki, "");
    assert_eq!(status_json(&pki, node.addr)["node"], "node1");
    drop(node);

    // The same certificate on an address it does not name.
    let node = NodeProc::start_at(&pki, "127.0.0.6", "");
    refused_on_both_sides(
        &node,
        &operator(&pki, &node, &["status"]),
        &["does not name this address"],
        "does not name the address the client dialled",
    );
    assert!(
        !node.log_text().contains("another cluster's CA"),
        "{}",
        node.log_text()
    );
}

/// BridgeService is a bridge's alone: an operator (or node) certificate is refused with
/// the role it needs, and `upsilon-bridge` refuses to start with a certificate of
/// another role.
#[test]
fn bridge_service_needs_a_bridge_certificate_and_the_bridge_one_of_its_own() {
    let (pki, node) = started();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let certs = pki.certs();
    let status = rt.block_on(async {
        let opts = upsilon_client::rpc::ClientOptions {
            endpoint: node.addr.to_string(),
            ca: certs.join("ca.pem"),
            identity: Some((certs.join("operator.pem"), certs.join("operator.key"))),
        };
        let ch = upsilon_client::rpc::connect(&opts).await.unwrap();
        upsilon_proto::v1::bridge_service_client::BridgeServiceClient::new(ch)
            .declare_hosts(upsilon_proto::v1::DeclareHostsRequest::default())
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("this call needs role bridge"),
        "{status:?}"
    );

    let cfg = pki.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[bridge]\nnodes = [\"{}\"]\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/operator.pem\"\nkey = \"certs/operator.key\"\n\n[nis]\nlisten = \"127.0.0.1:{}\"\n",
            node.addr,
            free_port()
        ),
    )
    .unwrap();
    let o = std::process::Command::new(bin("upsilon-bridge"))
        .arg("--check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", stdout(&o));
    assert_says(
        &stderr(&o),
        "has role operator; a bridge needs a certificate with role bridge",
    );
}
