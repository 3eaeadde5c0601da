//! USB HID power devices (APC Back-UPS and Smart-UPS, and the class's other vendors),
//! without the device: the report descriptor (`descriptor`) and the values in reports
//! (`report`), what they mean as a reading (`values`), and the writes that cut power
//! (`kill`). The `usbhid` driver in
//! `upsilon-node` owns the USB transport.

pub mod descriptor;
pub mod fixtures;
pub mod kill;
pub mod report;
pub mod session;
pub mod values;

#[cfg(test)]
mod tests;
