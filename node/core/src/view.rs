//! What the node knows about one of its UPSes, as of the last poll: the plain view the
//! monitor, the status sentence and the API read (a cluster member builds the same view
//! from the replicated record).

use std::time::{Duration, SystemTime};

use crate::policy::ShutdownRule;
use crate::reading::UpsReading;

/// What the node knows about one of its UPSes, as of the last poll.
#[derive(Debug, Clone)]
pub struct UpsView {
    pub name: String,
    pub driver: String,
    pub reading: Option<UpsReading>,
    pub statflag: u32,
    pub comm_lost: bool,
    /// Why comm is lost, from the driver.
    pub comm_error: Option<String>,
    pub on_battery: bool,
    pub time_on_battery: Duration,
    pub transfers: u32,
    pub shutdown: Option<(ShutdownRule, SystemTime)>,
}
