//! Per UPS family, what can be known without the device: each family's wire codec or
//! model, and the orders any UPS takes. The drivers in `upsilon-node` (one folder per
//! family) own the port, the timing and their config section; the parsers here are
//! tested directly and fuzzed without building the daemon.

pub mod apcsmart;
pub mod hid;
pub mod modbus;
pub mod sim;

/// What a driver can be asked to do to its UPS.
#[derive(Debug, Clone, PartialEq)]
pub enum UpsCommand {
    /// Cut the output after `delay_s` seconds; restore it when mains return if
    /// `return_on_mains` (apcupsd's hibernate / `--killpower`), else stay off.
    KillPower { delay_s: u32, return_on_mains: bool },
    /// Start a battery self test.
    SelfTest,
    /// Change a simulated UPS at run time (`upsilon sim set`); real UPSes refuse it.
    Simulate(sim::SimChange),
}
