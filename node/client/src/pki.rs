//! The cluster's certificates: create the CA, issue node/client/bridge certificates,
//! load them, and read a peer certificate's name and role.
//!
//! A certificate's subject carries the holder's name as CN and its role as exactly one
//! OU (`node`, `operator`, `viewer` or `bridge`; `client`, the old name of `operator`,
//! is still read), so a server can tell a node from an operator's CLI.
//! Files are PEM: `ca.pem`/`ca.key` for the CA, `<name>.pem`/`<name>.key` for a holder.
//! Private keys are written mode 0600.

use std::fmt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// What a certificate's holder may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An `upsilond`: Raft traffic and its own reports, bound to the member whose name
    /// it carries.
    Node,
    /// An operator: membership, plan, UPS commands, revocation, plus everything a viewer
    /// may do.
    Operator,
    /// Read only: status, watch, events, plan.
    Viewer,
    /// The legacy bridge: read, and acknowledge its own legacy hosts.
    Bridge,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Node, Role::Operator, Role::Viewer, Role::Bridge];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Bridge => "bridge",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "node" => Ok(Role::Node),
            // Certificates issued before roles were split say `client`.
            "operator" | "client" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "bridge" => Ok(Role::Bridge),
            other => Err(format!(
                "unknown role {other:?}: use node, operator, viewer or bridge"
            )),
        }
    }
}

/// The longest validity `upsilon cert issue` accepts, in days (about 100 years).
pub const MAX_DAYS: i64 = 36_500;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; remove it first if you really mean to replace it")]
    Exists { path: PathBuf },
    #[error("{path}: not a valid PEM {what}: {detail}")]
    BadPem {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_new(path: &Path, data: &str, mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => PkiError::Exists {
                path: path.to_path_buf(),
            },
            _ => PkiError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
    f.write_all(data.as_bytes()).map_err(io_err(path))
}

/// Paths of the CA files in a certificate directory.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// Paths of a holder's files in a certificate directory.
pub fn holder_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// Creates a new cluster CA in `dir` (valid 10 years). Refuses to overwrite one.
pub fn init_ca(dir: &Path, cluster: &str) -> Result<PathBuf, PkiError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let (cert_path, key_path) = ca_paths(dir);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(PkiError::Exists { path: p.clone() });
        }
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Upsilon cluster CA ({cluster})"),
    );
    dn.push(DnType::OrganizationName, "Upsilon");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(cert_path)
}

/// What to put in a new certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub name: String,
    pub role: Role,
    /// Extra subject alternative names (DNS names or IP addresses) a node answers on.
    pub sans: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl IssueRequest {
    /// A certificate valid from an hour ago for `days` days (clamped to 1..=MAX_DAYS).
    pub fn new(name: &str, role: Role, sans: Vec<String>, days: i64) -> Self {
        let days = days.clamp(1, MAX_DAYS);
        let now = OffsetDateTime::now_utc();
        IssueRequest {
            name: name.to_string(),
            role,
            sans,
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// Issues a certificate signed by the CA in `dir`; writes `<name>.pem` and `<name>.key`
/// there and returns their paths.
pub fn issue(dir: &Path, req: &IssueRequest) -> Result<(PathBuf, PathBuf), PkiError> {
    if !upsilon_core::config::valid_name(&req.name) {
        return Err(PkiError::Invalid(format!(
            "{:?} is not a valid name: use 1-63 letters, digits, '-', '_' or '.'",
            req.name
        )));
    }
    let (ca_cert, ca_key) = ca_paths(dir);
    let ca_pem = std::fs::read_to_string(&ca_cert).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PkiError::Invalid(format!(
            "no CA in {}: run `upsilon cert init --dir {}` first",
            dir.display(),
            dir.display()
        )),
        _ => PkiError::Io {
            path: ca_cert.clone(),
            source: e,
        },
    })?;
    let key_pem = std::fs::read_to_string(&ca_key).map_err(io_err(&ca_key))?;
    let signing = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::BadPem {
        path: ca_key.clone(),
        what: "private key",
        detail: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, signing).map_err(|e| PkiError::BadPem {
        path: ca_cert.clone(),
        what: "CA certificate",
        detail: e.to_string(),
    })?;

    let mut sans = vec![req.name.clone()];
    if req.role == Role::Node {
        // The CLI's default endpoint is 127.0.0.1:7443: a node must answer there.
        sans.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    }
    sans.extend(req.sans.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    let mut params = CertificateParams::default();
    for s in &sans {
        let san = match s.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(s.clone().try_into().map_err(|_| {
                PkiError::Invalid(format!("{s:?} is neither an IP address nor a DNS name"))
            })?),
        };
        params.subject_alt_names.push(san);
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.name.clone());
    dn.push(DnType::OrganizationalUnitName, req.role.as_str());
    dn.push(DnType::OrganizationName, "Upsilon");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match req.role {
        Role::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Operator | Role::Viewer | Role::Bridge => {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        }
    };
    params.not_before = req.not_before;
    params.not_after = req.not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = holder_paths(dir, &req.name);
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok((cert_path, key_path))
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::BadPem {
            path: path.to_path_buf(),
            what: "certificate",
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::BadPem {
            path: path.to_path_buf(),
            what: "certificate",
            detail: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Reads a private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| PkiError::BadPem {
        path: path.to_path_buf(),
        what: "private key",
        detail: e.to_string(),
    })
}

/// The holder of a certificate, as read from its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// The serial number, lower-case hex without separators (what revocation lists).
    pub serial: String,
}

/// Reads name (CN), role (the one OU), validity and serial from a DER certificate.
pub fn identity(der: &[u8]) -> Result<Identity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or("certificate has no common name")?;
    let ous: Vec<&str> = subject
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let ou = match ous.as_slice() {
        [one] => *one,
        [] => {
            return Err(
                "certificate has no role (OU); issue it with `upsilon cert issue --role`".into(),
            );
        }
        many => {
            return Err(format!(
                "certificate has {} roles (OU {}); a certificate must carry exactly one: issue a new one with `upsilon cert issue --role`",
                many.len(),
                many.join(", ")
            ));
        }
    };
    Ok(Identity {
        name: cn.to_string(),
        role: ou.parse()?,
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        serial: serial_hex(cert.raw_serial()),
    })
}

/// A serial number as lower-case hex, leading zero bytes dropped.
pub fn serial_hex(raw: &[u8]) -> String {
    let trimmed: &[u8] = match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &raw[raw.len().saturating_sub(1)..],
    };
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises a serial typed by an operator (`0A:1b:...`, `0x0a1b`, spaces) to the form
/// [`Identity::serial`] uses.
pub fn normalize_serial(s: &str) -> Result<String, String> {
    let t = s.trim().trim_start_matches("0x").trim_start_matches("0X");
    let hex: String = t
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) || hex.len() > 64 {
        return Err(format!(
            "{s:?} is not a certificate serial: give the hex digits `upsilon cert show` prints"
        ));
    }
    let hex = hex.to_ascii_lowercase();
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    };
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
        .collect();
    Ok(serial_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_issue_and_read_identity() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path(), "test").unwrap();
        assert!(matches!(
            init_ca(dir.path(), "test"),
            Err(PkiError::Exists { .. })
        ));
        let (cert, key) = issue(
            dir.path(),
            &IssueRequest::new("node1", Role::Node, vec!["127.0.0.2".into()], 30),
        )
        .unwrap();
        let certs = load_certs(&cert).unwrap();
        load_key(&key).unwrap();
        let id = identity(&certs[0]).unwrap();
        assert_eq!((id.name.as_str(), id.role), ("node1", Role::Node));
        // A node answers on the CLI's default endpoint, 127.0.0.1, and on ::1.
        let (_, x509) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
        let names = x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>();
        assert_eq!(
            names,
            [
                "DNSName(\"node1\")",
                "DNSName(\"localhost\")",
                "IPAddress([127, 0, 0, 1])",
                "IPAddress([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])",
                "IPAddress([127, 0, 0, 2])",
            ]
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn issue_without_ca_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = issue(
            dir.path(),
            &IssueRequest::new("x", Role::Operator, vec![], 1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("upsilon cert init"), "{e}");
    }

    #[test]
    fn roles_parse_and_old_client_certificates_are_operators() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert_eq!("client".parse::<Role>().unwrap(), Role::Operator);
        let e = "admin".parse::<Role>().unwrap_err();
        assert!(e.contains("node, operator, viewer or bridge"), "{e}");
    }

    #[test]
    fn a_certificate_with_two_roles_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path(), "test").unwrap();
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(dir.path().join("ca.key")).unwrap())
                .unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "two");
        dn.push(DnType::OrganizationalUnitName, "viewer");
        // rcgen keys names by type: the second OU goes in under OU's raw OID.
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 11]), "operator");
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let e = identity(cert.der()).unwrap_err();
        assert!(e.contains("2 roles") && e.contains("exactly one"), "{e}");
    }

    #[test]
    fn huge_validity_is_clamped_not_a_panic_and_serials_normalise() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path(), "test").unwrap();
        let (cert, _) = issue(
            dir.path(),
            &IssueRequest::new("long", Role::Viewer, vec![], 99_999_999),
        )
        .unwrap();
        let id = identity(&load_certs(&cert).unwrap()[0]).unwrap();
        assert_eq!(id.role, Role::Viewer);
        assert!(id.not_after_unix > id.not_before_unix);
        assert!(!id.serial.is_empty());
        let colons: String = id
            .serial
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(normalize_serial(&colons).unwrap(), id.serial);
        assert_eq!(normalize_serial("0x00ff").unwrap(), "ff");
        assert!(normalize_serial("zz").is_err());
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pem");
        std::fs::write(&p, "hello").unwrap();
        let e = load_certs(&p).unwrap_err().to_string();
        assert!(e.contains("bad.pem") && e.contains("no CERTIFICATE"), "{e}");
        assert!(load_key(&p).is_err());
    }
}
