//! A throwaway certificate authority per test: the cluster CA, node and client
//! certificates, in a temporary directory that also holds the test's configs and logs.

use std::path::{Path, PathBuf};

use upsilon_client::pki::{self, IssueRequest, Role};

/// A directory with a cluster CA, a node certificate and a client certificate.
pub struct TestPki {
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        pki::init_ca(&certs, "test").unwrap();
        pki::issue(
            &certs,
            &IssueRequest::new("node1", Role::Node, vec!["127.0.0.1".into()], 30),
        )
        .unwrap();
        pki::issue(
            &certs,
            &IssueRequest::new("operator", Role::Operator, vec![], 30),
        )
        .unwrap();
        TestPki { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// `(ca, cert, key)` for a holder in this PKI.
    pub fn files(&self, name: &str) -> (PathBuf, PathBuf, PathBuf) {
        let c = self.certs();
        (
            c.join("ca.pem"),
            c.join(format!("{name}.pem")),
            c.join(format!("{name}.key")),
        )
    }

    /// Issues one more certificate in this PKI.
    pub fn issue(&self, req: &IssueRequest) {
        pki::issue(&self.certs(), req).unwrap();
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}
