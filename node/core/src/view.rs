//! What is known of one UPS at one moment, in one shape: [`UpsStatus`] is what the
//! owner's monitor saw at its last poll. The node's own view ([`UpsView`]), the report
//! an owner sends the cluster and the replicated record embed it (flattened, so the
//! stored JSON keeps its keys), and the API converts it in one place.

use serde::{Deserialize, Serialize};

use crate::policy::ShutdownRule;
use crate::reading::UpsReading;

/// One UPS's state as its owner's monitor saw it at its last poll.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpsStatus {
    /// The driver that reads it (`sim`, `apcsmart`, ...).
    pub driver: String,
    pub reading: Option<UpsReading>,
    /// STATFLAG as the owner computed it (UPS bits plus its monitor's local bits).
    pub statflag: u32,
    /// The owner cannot read the UPS (driver comm lost).
    pub comm_lost: bool,
    /// Why the owner's last poll failed, in its words (a missed link check, a busy or
    /// vanished device).
    #[serde(default)]
    pub comm_error: Option<String>,
    pub on_battery: bool,
    pub time_on_battery_s: u32,
    pub transfers: u32,
    /// The owner's monitor decided a shutdown: (rule, Unix ms).
    pub shutdown: Option<(ShutdownRule, i64)>,
}

/// What the node knows about one UPS: its own (from the driver) or, on a cluster
/// member, any UPS of the cluster (from the replicated record).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpsView {
    pub name: String,
    pub status: UpsStatus,
}
