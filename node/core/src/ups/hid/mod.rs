//! USB HID power devices (APC Back-UPS and Smart-UPS, and the class's other vendors),
//! without the device: the report descriptor (`descriptor`) and the values in reports
//! (`report`), and what they mean as a reading (`values`). The `usbhid` driver in
//! `upsilon-node` owns the USB transport.

pub mod descriptor;
pub mod report;
pub mod values;

#[cfg(test)]
mod tests;
