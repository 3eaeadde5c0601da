//! Modbus over the UPS's USB HID interface (apcupsd 3.14.13; docs/hardware/modbus.md): the
//! report IDs of the two vendor usages ModbusRTURx (0xFF8600FC, host to UPS) and
//! ModbusRTUTx (0xFF8600FD, UPS to host) come from the report descriptor; a request is
//! one 64-byte interrupt OUT report (ID, then the RTU frame without its CRC), the
//! answer an interrupt IN report with the Tx ID (others skipped), its length taken
//! from the PDU.

use std::time::{Duration, Instant};

use upsilon_core::ups::hid::descriptor::ReportDescriptor;
use upsilon_core::ups::hid::session::{HidError, HidTransport};
use upsilon_core::ups::modbus::{ModbusError, ModbusTransport, response_len_for};

const MODBUS_RTU_RX: u32 = 0xFF86_00FC;
const MODBUS_RTU_TX: u32 = 0xFF86_00FD;
const REPORT_LEN: usize = 64;
const RESPONSE: Duration = Duration::from_millis(500);

/// Modbus frames through a USB HID transport.
pub struct RtuUsb {
    hid: Box<dyn HidTransport + Send>,
    rx_id: u8,
    tx_id: u8,
}

fn link(e: HidError) -> ModbusError {
    ModbusError::Link(e.to_string())
}

impl RtuUsb {
    /// Reads the descriptor and finds the Modbus reports; a UPS without them speaks no
    /// Modbus over USB.
    pub fn new(mut hid: Box<dyn HidTransport + Send>) -> Result<Self, ModbusError> {
        let bytes = hid.report_descriptor().map_err(link)?;
        let desc = ReportDescriptor::parse(&bytes)
            .map_err(|e| ModbusError::Link(format!("report descriptor: {e}")))?;
        let id = |usage: u32| {
            desc.fields
                .iter()
                .find(|f| f.usage == usage)
                .map(|f| f.report_id)
        };
        match (id(MODBUS_RTU_RX), id(MODBUS_RTU_TX)) {
            (Some(rx_id), Some(tx_id)) => Ok(RtuUsb { hid, rx_id, tx_id }),
            _ => Err(ModbusError::Link(
                "this UPS has no Modbus reports on USB (ModbusRTURx/Tx): use driver = \"usbhid\", \
                 or enable Modbus on its front panel (Advanced, Configuration, Modbus)"
                    .into(),
            )),
        }
    }
}

impl ModbusTransport for RtuUsb {
    fn with_crc(&self) -> bool {
        false
    }

    fn exchange(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, ModbusError> {
        if frame.len() >= REPORT_LEN {
            return Err(ModbusError::Length(format!(
                "{} bytes do not fit one USB report",
                frame.len()
            )));
        }
        let mut report = vec![self.rx_id];
        report.extend_from_slice(frame);
        report.resize(REPORT_LEN, 0);
        self.hid.write_interrupt(&report).map_err(link)?;
        let deadline = Instant::now() + RESPONSE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let Some(got) = self.hid.read_interrupt(left).map_err(link)? else {
                return Ok(None);
            };
            // Status reports share the pipe: only the Tx report is the answer.
            if got.first() != Some(&self.tx_id) {
                continue;
            }
            let pdu = &got[1..];
            let len = response_len_for(frame, pdu, false).unwrap_or(pdu.len());
            return Ok(Some(pdu[..len.min(pdu.len())].to_vec()));
        }
    }
}
