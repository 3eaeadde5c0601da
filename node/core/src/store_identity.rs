//! The store identity record's form: who a data directory belongs to (node id, a random
//! incarnation, the cluster id), kept in a small file beside sled's own files with a
//! checksum, so that a store whose files lost their contents is told from a new one.
//! Pure encoding and decoding here; the node's `cluster::store` reads and writes it.
//!
//! The file is two lines: the record as JSON, then `fnv64 <16 hex digits>`, the FNV-1a
//! 64-bit hash of the first line's bytes.

use serde::{Deserialize, Serialize};

/// Who a data directory belongs to: written once, when the store is created. A store
/// that was wiped (or a disk that was replaced) comes back with a new incarnation, so the
/// cluster can tell it is not the member it knew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    /// The Raft id the store was created for.
    pub node_id: u64,
    /// Random, never 0; new with every new store.
    pub incarnation: u64,
    /// The cluster this store belongs to, once known (set at bootstrap, or learned from
    /// the first leader that replicates to it).
    #[serde(default)]
    pub cluster_id: Option<String>,
    pub created_ms: i64,
}

/// What is wrong with an identity record's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("is cut short")]
    CutShort,
    #[error("fails its checksum")]
    Checksum,
    #[error("is not an identity record: {0}")]
    NotARecord(String),
}

/// FNV-1a, 64 bits: enough to tell a damaged record from a whole one.
pub fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The file's text for `id`.
pub fn encode(id: &StoreIdentity) -> String {
    // A struct of integers and an optional string always serializes.
    let json = serde_json::to_string(id).unwrap_or_default();
    format!("{json}\nfnv64 {:016x}\n", fnv64(json.as_bytes()))
}

/// The record in a file's bytes, or what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<StoreIdentity, IdentityError> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let (Some(json), Some(sum)) = (lines.next(), lines.next()) else {
        return Err(IdentityError::CutShort);
    };
    if sum != format!("fnv64 {:016x}", fnv64(json.as_bytes())) {
        return Err(IdentityError::Checksum);
    }
    serde_json::from_str(json).map_err(|e| IdentityError::NotARecord(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoreIdentity {
        StoreIdentity {
            node_id: 4,
            incarnation: 0x3e8d_0000_1234_abcd,
            cluster_id: Some("a562c66cc1c3396e".into()),
            created_ms: 1_765_000_000_000,
        }
    }

    /// The stored form, byte for byte: a store written by this build is read by the next.
    #[test]
    fn golden_form() {
        let text = encode(&sample());
        assert_eq!(
            text,
            "{\"node_id\":4,\"incarnation\":4507258802373176269,\"cluster_id\":\"a562c66cc1c3396e\",\"created_ms\":1765000000000}\nfnv64 a9d681451e3f512f\n"
        );
        assert_eq!(decode(text.as_bytes()), Ok(sample()));
        // An older record without a cluster id still reads.
        let old = "{\"node_id\":2,\"incarnation\":7,\"created_ms\":5}";
        let text = format!("{old}\nfnv64 {:016x}\n", fnv64(old.as_bytes()));
        assert_eq!(decode(text.as_bytes()).unwrap().cluster_id, None);
    }

    #[test]
    fn damage_is_named() {
        let text = encode(&sample());
        assert_eq!(decode(b""), Err(IdentityError::CutShort));
        assert_eq!(
            decode(text.lines().next().unwrap().as_bytes()),
            Err(IdentityError::CutShort)
        );
        let flipped = text.replacen("\"node_id\":4", "\"node_id\":5", 1);
        assert_eq!(decode(flipped.as_bytes()), Err(IdentityError::Checksum));
        let zeroes = vec![0u8; text.len()];
        assert!(decode(&zeroes).is_err());
        let not_json = format!("nope\nfnv64 {:016x}\n", fnv64(b"nope"));
        assert!(matches!(
            decode(not_json.as_bytes()),
            Err(IdentityError::NotARecord(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn round_trips_and_never_panics(
            node_id: u64, incarnation: u64, created_ms: i64,
            cluster in proptest::option::of("[ -~]{0,40}"),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let id = StoreIdentity { node_id, incarnation, cluster_id: cluster, created_ms };
            proptest::prop_assert_eq!(decode(encode(&id).as_bytes()), Ok(id));
            let _ = decode(&junk);
        }
    }
}
