//! Generated protobuf and gRPC code for Upsilon's public and management APIs.
//!
//! The `.proto` files under `proto/` are the source of truth; this crate only compiles
//! them. Conversions between these messages and the node's own types live in the node
//! crate (`upsilon_node::pb_impl`), not here.

/// `upsilon.v1`: PowerService (public API) and AdminService (management).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("upsilon.v1");
}
