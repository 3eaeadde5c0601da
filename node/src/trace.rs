//! Tracing targets of the node's measurements.

/// The latency trace points: a UPS report queued and sent on its owner, an entry
/// proposed and committed on the leader, appended (written and flushed) and applied on
/// every member, each with a microsecond wall-clock stamp (`t_us`).
/// `UPSILON_LOG=info,upsilon::latency=trace` turns them on; `cluster-bench` reads them
/// from the nodes' logs to split a change's way into stages.
pub const LATENCY: &str = "upsilon::latency";
