//! APC Modbus (SMT, SMX, SMC, SRT) without the port: RTU frames with their CRC (and
//! without it, as the USB transport carries them), responses checked against the
//! request, exception codes, the frame length a reader waits for, and the register map
//! (docs/hardware/modbus.md) made into a [`UpsReading`]. Pure; every bad frame is an error.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::reading::{UpsFlags, UpsReading};

/// The unit's address on the line (APC: 1).
pub const SLAVE: u8 = 1;
/// The longest frame Modbus RTU allows.
pub const MAX_FRAME: usize = 256;

/// CRC-16/Modbus: poly 0xA001 reflected, init 0xFFFF; sent low byte first.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for b in bytes {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// What the driver asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Function 0x03.
    ReadHolding { addr: u16, count: u16 },
    /// Function 0x10 (apcupsd writes with it, even one register).
    WriteMultiple { addr: u16, values: Vec<u16> },
}

impl Request {
    fn function(&self) -> u8 {
        match self {
            Request::ReadHolding { .. } => 0x03,
            Request::WriteMultiple { .. } => 0x10,
        }
    }

    /// The frame without its CRC (as the USB transport sends it).
    pub fn pdu(&self, slave: u8) -> Vec<u8> {
        let mut f = vec![slave, self.function()];
        match self {
            Request::ReadHolding { addr, count } => {
                f.extend(addr.to_be_bytes());
                f.extend(count.to_be_bytes());
            }
            Request::WriteMultiple { addr, values } => {
                f.extend(addr.to_be_bytes());
                f.extend((values.len() as u16).to_be_bytes());
                f.push((values.len() * 2) as u8);
                for v in values {
                    f.extend(v.to_be_bytes());
                }
            }
        }
        f
    }

    /// The RTU frame, CRC appended.
    pub fn frame(&self, slave: u8) -> Vec<u8> {
        let mut f = self.pdu(slave);
        let crc = crc16(&f);
        f.extend(crc.to_le_bytes());
        f
    }
}

/// What a response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Registers(Vec<u16>),
    Written { addr: u16, count: u16 },
}

/// A frame that cannot be the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModbusError {
    #[error("Modbus: {0} bytes is too short for a response")]
    Short(usize),
    #[error("Modbus: bad CRC (got {got:#06x}, computed {want:#06x}): noise on the line?")]
    Crc { got: u16, want: u16 },
    #[error("Modbus: answer from unit {got}, asked unit {want}")]
    WrongSlave { want: u8, got: u8 },
    #[error("Modbus: function {got:#04x} answered to {want:#04x}")]
    WrongFunction { want: u8, got: u8 },
    #[error("Modbus: the UPS refused with exception {code} ({})", exception_text(*code))]
    Exception { code: u8 },
    #[error("Modbus: the response's length does not match: {0}")]
    Length(String),
    /// The line itself failed (port gone, USB unplugged): the driver opens it again.
    #[error("Modbus link: {0}")]
    Link(String),
}

/// Standard exception codes in words.
pub fn exception_text(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        _ => "unknown exception",
    }
}

/// How many bytes the whole response to `req` will be, once `head` (its first bytes)
/// is known; `None` while fewer than 3 bytes arrived. `with_crc`: RTU (2 more bytes).
pub fn response_len(req: &Request, head: &[u8], with_crc: bool) -> Option<usize> {
    let crc = if with_crc { 2 } else { 0 };
    let fc = *head.get(1)?;
    if fc & 0x80 != 0 {
        return Some(3 + crc);
    }
    match req {
        Request::ReadHolding { .. } => Some(3 + usize::from(*head.get(2)?) + crc),
        Request::WriteMultiple { .. } => Some(6 + crc),
    }
}

/// Like [`response_len`], from the request frame's function code alone (what a
/// transport knows): how long the response starting with `head` will be.
pub fn response_len_for(request: &[u8], head: &[u8], with_crc: bool) -> Option<usize> {
    let crc = if with_crc { 2 } else { 0 };
    let fc = *head.get(1)?;
    if fc & 0x80 != 0 {
        return Some(3 + crc);
    }
    match request.get(1)? {
        0x03 => Some(3 + usize::from(*head.get(2)?) + crc),
        0x06 | 0x10 => Some(6 + crc),
        _ => None,
    }
}

/// Checks `frame` as the answer to `req` from `slave` and decodes it.
pub fn decode_response(
    req: &Request,
    slave: u8,
    frame: &[u8],
    with_crc: bool,
) -> Result<Response, ModbusError> {
    if frame.len() < if with_crc { 5 } else { 3 } || frame.len() > MAX_FRAME {
        return Err(ModbusError::Short(frame.len()));
    }
    let body = if with_crc {
        let (b, c) = frame.split_at(frame.len() - 2);
        let got = u16::from_le_bytes([c[0], c[1]]);
        let want = crc16(b);
        if got != want {
            return Err(ModbusError::Crc { got, want });
        }
        b
    } else {
        frame
    };
    if body[0] != slave {
        return Err(ModbusError::WrongSlave {
            want: slave,
            got: body[0],
        });
    }
    let fc = body[1];
    if fc == req.function() | 0x80 {
        return Err(ModbusError::Exception { code: body[2] });
    }
    if fc != req.function() {
        return Err(ModbusError::WrongFunction {
            want: req.function(),
            got: fc,
        });
    }
    match req {
        Request::ReadHolding { count, .. } => {
            let n = usize::from(body[2]);
            if n != usize::from(*count) * 2 || body.len() != 3 + n {
                return Err(ModbusError::Length(format!(
                    "{n} data bytes in a {}-byte frame for {count} registers",
                    body.len()
                )));
            }
            Ok(Response::Registers(
                body[3..]
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect(),
            ))
        }
        Request::WriteMultiple { addr, values } => {
            if body.len() != 6 {
                return Err(ModbusError::Length(format!("{} bytes, want 6", body.len())));
            }
            let a = u16::from_be_bytes([body[2], body[3]]);
            let n = u16::from_be_bytes([body[4], body[5]]);
            if a != *addr || usize::from(n) != values.len() {
                return Err(ModbusError::Length(format!(
                    "wrote {n} at {a}, asked {} at {addr}",
                    values.len()
                )));
            }
            Ok(Response::Written { addr: a, count: n })
        }
    }
}

/// Register addresses (docs/hardware/modbus.md).
pub mod reg {
    pub const UPS_STATUS: u16 = 0;
    pub const SIMPLE_SIGNALING_STATUS: u16 = 18;
    pub const BATTERY_SYSTEM_ERROR: u16 = 22;
    pub const RUNTIME: u16 = 128;
    pub const STATE_OF_CHARGE: u16 = 130;
    pub const BATTERY_VOLTAGE: u16 = 131;
    pub const BATTERY_TEMPERATURE: u16 = 135;
    pub const OUTPUT_POWER: u16 = 136;
    pub const OUTPUT_VOLTAGE: u16 = 142;
    pub const OUTPUT_FREQUENCY: u16 = 144;
    pub const INPUT_VOLTAGE: u16 = 151;
    pub const FIRMWARE: u16 = 516;
    pub const MODEL: u16 = 532;
    pub const SERIAL: u16 = 564;
    /// Main outlet group turn-off delay setting, seconds.
    pub const MOG_OFF_DELAY: u16 = 1029;
    pub const SIMPLE_SIGNALING_COMMAND: u16 = 1540;
    pub const REPLACE_BATTERY_TEST_COMMAND: u16 = 1541;
}

/// The kill-power write: SimpleSignalingCommand = 1 (request shutdown; the UPS returns
/// with utility power), or 2 (remote off) when it must stay off.
pub fn kill_request(return_on_mains: bool) -> Request {
    Request::WriteMultiple {
        addr: reg::SIMPLE_SIGNALING_COMMAND,
        values: vec![if return_on_mains { 1 } else { 2 }],
    }
}

/// The registers read so far, by address.
pub type Registers = BTreeMap<u16, u16>;

fn fixed(regs: &Registers, at: u16, shift: u32, signed: bool) -> Option<f64> {
    let v = *regs.get(&at)?;
    let v = if signed {
        f64::from(v as i16)
    } else {
        f64::from(v)
    };
    Some(v / f64::from(1u32 << shift))
}

fn text(regs: &Registers, at: u16, count: u16) -> String {
    let mut s = String::new();
    for a in at..at + count {
        let Some(v) = regs.get(&a) else { break };
        for b in v.to_be_bytes() {
            if b.is_ascii_graphic() || b == b' ' {
                s.push(b as char);
            }
        }
    }
    s.trim().to_string()
}

/// The reading apcupsd's modbus driver makes of these registers.
pub fn reading(regs: &Registers, at: SystemTime) -> UpsReading {
    let status = regs
        .get(&reg::UPS_STATUS)
        .zip(regs.get(&(reg::UPS_STATUS + 1)))
        .map(|(hi, lo)| (u32::from(*hi) << 16) | u32::from(*lo));
    let bit = |v: Option<u32>, n: u32| v.is_some_and(|v| v >> n & 1 == 1);
    let signal = regs
        .get(&reg::SIMPLE_SIGNALING_STATUS)
        .map(|v| u32::from(*v));
    let batt_err = regs.get(&reg::BATTERY_SYSTEM_ERROR).map(|v| u32::from(*v));
    let on_battery = bit(status, 2);
    let flags = UpsFlags {
        online: bit(status, 1) || (status.is_some() && !on_battery),
        on_battery,
        low_battery: bit(signal, 1),
        replace_battery: bit(batt_err, 2),
        battery_present: !bit(batt_err, 0),
        ..Default::default()
    };
    let mut r = UpsReading::empty(flags, at);
    r.runtime_s = regs
        .get(&reg::RUNTIME)
        .zip(regs.get(&(reg::RUNTIME + 1)))
        .map(|(hi, lo)| f64::from((u32::from(*hi) << 16) | u32::from(*lo)));
    r.charge_percent = fixed(regs, reg::STATE_OF_CHARGE, 9, false);
    r.battery_voltage = fixed(regs, reg::BATTERY_VOLTAGE, 5, true);
    r.internal_temp_c = fixed(regs, reg::BATTERY_TEMPERATURE, 7, true);
    r.load_percent = fixed(regs, reg::OUTPUT_POWER, 8, false);
    r.output_voltage = fixed(regs, reg::OUTPUT_VOLTAGE, 6, false);
    r.line_frequency_hz = fixed(regs, reg::OUTPUT_FREQUENCY, 7, false);
    r.line_voltage = fixed(regs, reg::INPUT_VOLTAGE, 6, false);
    r.firmware = text(regs, reg::FIRMWARE, 8);
    r.model = text(regs, reg::MODEL, 16);
    r.serial_number = text(regs, reg::SERIAL, 8);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_recorded_examples() {
        // docs/hardware/modbus.md: read status, read runtime + charge, kill power.
        assert_eq!(
            Request::ReadHolding { addr: 0, count: 2 }.frame(SLAVE),
            [0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xc4, 0x0b]
        );
        assert_eq!(
            Request::ReadHolding {
                addr: 128,
                count: 3
            }
            .frame(SLAVE),
            [0x01, 0x03, 0x00, 0x80, 0x00, 0x03, 0x04, 0x23]
        );
        assert_eq!(
            kill_request(true).frame(SLAVE),
            [
                0x01, 0x10, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x01, 0x00, 0x14
            ]
        );
        assert_eq!(
            kill_request(true).pdu(SLAVE),
            [0x01, 0x10, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x01],
            "the USB transport drops the CRC"
        );
    }

    fn answer(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend(crc16(body).to_le_bytes());
        f
    }

    #[test]
    fn responses_are_checked_against_the_request() {
        let req = Request::ReadHolding { addr: 0, count: 2 };
        let ok = answer(&[1, 3, 4, 0x00, 0x00, 0x00, 0x04]);
        assert_eq!(response_len(&req, &ok[..3], true), Some(ok.len()));
        assert_eq!(
            decode_response(&req, SLAVE, &ok, true),
            Ok(Response::Registers(vec![0, 4]))
        );
        let mut bad = ok.clone();
        bad[4] ^= 1;
        assert!(matches!(
            decode_response(&req, SLAVE, &bad, true),
            Err(ModbusError::Crc { .. })
        ));
        let ex = answer(&[1, 0x83, 2]);
        assert_eq!(response_len(&req, &ex, true), Some(5));
        let e = decode_response(&req, SLAVE, &ex, true).unwrap_err();
        assert_eq!(e, ModbusError::Exception { code: 2 });
        assert!(e.to_string().contains("illegal data address"));
        assert!(matches!(
            decode_response(&req, SLAVE, &answer(&[2, 3, 4, 0, 0, 0, 4]), true),
            Err(ModbusError::WrongSlave { .. })
        ));
        assert!(matches!(
            decode_response(&req, SLAVE, &answer(&[1, 3, 2, 0, 0]), true),
            Err(ModbusError::Length(_))
        ));
        assert!(matches!(
            decode_response(&req, SLAVE, &[1, 3], true),
            Err(ModbusError::Short(2))
        ));
        // Without CRC (USB).
        assert_eq!(
            decode_response(&req, SLAVE, &[1, 3, 4, 0, 0, 0, 4], false),
            Ok(Response::Registers(vec![0, 4]))
        );
        let w = kill_request(true);
        assert_eq!(
            decode_response(&w, SLAVE, &answer(&[1, 0x10, 0x06, 0x04, 0, 1]), true),
            Ok(Response::Written {
                addr: 1540,
                count: 1
            })
        );
    }

    #[test]
    fn registers_make_apcupsds_reading() {
        let mut regs = Registers::new();
        // On battery (bit 2), runtime 1830 s, 81.5 % charge, 54.5 V battery, 25.5 °C,
        // 35 % load, 230 V out, 50 Hz, 0 V in; low battery signalled.
        regs.insert(0, 0);
        regs.insert(1, 1 << 2);
        regs.insert(18, 1 << 1);
        regs.insert(128, 0);
        regs.insert(129, 1830);
        regs.insert(130, (81.5 * 512.0) as u16);
        regs.insert(131, (54.5 * 32.0) as u16);
        regs.insert(135, (25.5 * 128.0) as u16);
        regs.insert(136, 35 * 256);
        regs.insert(142, 230 * 64);
        regs.insert(144, 50 * 128);
        regs.insert(151, 0);
        for (i, pair) in "SMT1500RMI2U    ".as_bytes().chunks(2).enumerate() {
            regs.insert(532 + i as u16, u16::from_be_bytes([pair[0], pair[1]]));
        }
        let r = reading(&regs, SystemTime::UNIX_EPOCH);
        assert!(r.flags.on_battery && !r.flags.online && r.flags.low_battery);
        assert_eq!(r.runtime_s, Some(1830.0));
        assert_eq!(r.charge_percent, Some(81.5));
        assert_eq!(r.battery_voltage, Some(54.5));
        assert_eq!(r.internal_temp_c, Some(25.5));
        assert_eq!(r.load_percent, Some(35.0));
        assert_eq!(r.output_voltage, Some(230.0));
        assert_eq!(r.line_frequency_hz, Some(50.0));
        assert_eq!(r.model, "SMT1500RMI2U");
        // On line.
        regs.insert(1, 1 << 1);
        regs.insert(18, 0);
        let r = reading(&regs, SystemTime::UNIX_EPOCH);
        assert!(r.flags.online && !r.flags.on_battery && !r.flags.low_battery);
    }
}

/// What the line (serial RTU, or the USB HID reports) gives the protocol: one request
/// out, one response back (`None` when nothing came within the response timeout).
pub trait ModbusTransport {
    /// Whether frames carry their CRC (serial) or not (USB).
    fn with_crc(&self) -> bool;
    fn exchange(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, ModbusError>;
}

impl<T: ModbusTransport + ?Sized> ModbusTransport for Box<T> {
    fn with_crc(&self) -> bool {
        (**self).with_crc()
    }
    fn exchange(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, ModbusError> {
        (**self).exchange(frame)
    }
}

/// The register blocks a poll reads: status, signalling, battery errors, the dynamic
/// block (NUT reads 128-171 in one request), and the strings once.
pub const POLL_BLOCKS: [(u16, u16); 3] = [(0, 2), (18, 5), (128, 24)];
pub const STRING_BLOCKS: [(u16, u16); 3] = [(516, 8), (532, 16), (564, 8)];

/// A Modbus UPS over any transport.
pub struct ModbusUps<T: ModbusTransport> {
    pub transport: T,
    pub regs: Registers,
}

impl<T: ModbusTransport> ModbusUps<T> {
    pub fn new(transport: T) -> Self {
        ModbusUps {
            transport,
            regs: Registers::new(),
        }
    }

    /// One request and its checked response; no answer is an error too.
    pub fn request(&mut self, req: &Request) -> Result<Response, ModbusError> {
        let crc = self.transport.with_crc();
        let frame = if crc {
            req.frame(SLAVE)
        } else {
            req.pdu(SLAVE)
        };
        let answer = self
            .transport
            .exchange(&frame)?
            .ok_or_else(|| ModbusError::Length("no answer within the response timeout".into()))?;
        decode_response(req, SLAVE, &answer, crc)
    }

    fn read_block(&mut self, addr: u16, count: u16) -> Result<(), ModbusError> {
        if let Response::Registers(v) = self.request(&Request::ReadHolding { addr, count })? {
            for (k, x) in v.into_iter().enumerate() {
                self.regs.insert(addr + k as u16, x);
            }
        }
        Ok(())
    }

    /// Reads the strings (once, at start) — a unit without them answers an exception.
    pub fn read_strings(&mut self) {
        for (a, n) in STRING_BLOCKS {
            let _ = self.read_block(a, n);
        }
    }

    /// Reads the poll blocks and returns the reading.
    pub fn poll(&mut self, at: SystemTime) -> Result<UpsReading, ModbusError> {
        for (a, n) in POLL_BLOCKS {
            self.read_block(a, n)?;
        }
        Ok(reading(&self.regs, at))
    }

    /// Kill power: SimpleSignalingCommand (1: return with mains; 2: stay off).
    pub fn kill(&mut self, return_on_mains: bool) -> Result<(), ModbusError> {
        self.request(&kill_request(return_on_mains)).map(|_| ())
    }

    /// Sets the main outlet group's turn-off delay (the UPS waits this long after a
    /// kill order), in seconds.
    pub fn set_off_delay(&mut self, delay_s: u16) -> Result<(), ModbusError> {
        self.request(&Request::WriteMultiple {
            addr: reg::MOG_OFF_DELAY,
            values: vec![delay_s],
        })
        .map(|_| ())
    }

    /// Starts a battery self test (ReplaceBatteryTestCommand bit 0).
    pub fn self_test(&mut self) -> Result<(), ModbusError> {
        self.request(&Request::WriteMultiple {
            addr: reg::REPLACE_BATTERY_TEST_COMMAND,
            values: vec![1],
        })
        .map(|_| ())
    }
}

/// A Modbus slave in memory (the unit under test's other end): a register table, the
/// writes it got, and faults to inject.
#[derive(Debug, Clone, Default)]
pub struct FakeModbus {
    pub regs: Registers,
    pub writes: Vec<(u16, Vec<u16>)>,
    pub crc: bool,
    /// Corrupt the next answer's CRC (serial) or answer nothing.
    pub corrupt_next: bool,
    pub silent: bool,
}

impl FakeModbus {
    /// The slave's answer to `frame`, as a real unit would give it.
    pub fn answer(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        if self.silent {
            return None;
        }
        let body = if self.crc {
            let (b, c) = frame.split_at(frame.len().checked_sub(2)?);
            if u16::from_le_bytes([c[0], c[1]]) != crc16(b) {
                return None; // a real slave ignores a bad frame
            }
            b
        } else {
            frame
        };
        let (&unit, rest) = body.split_first()?;
        let (&fc, data) = rest.split_first()?;
        let be = |i: usize| data.get(i..i + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
        let mut out = vec![unit];
        match fc {
            0x03 => {
                let (addr, count) = (be(0)?, be(2)?);
                let vals: Option<Vec<u16>> = (addr..addr.checked_add(count)?)
                    .map(|a| self.regs.get(&a).copied())
                    .collect();
                match vals {
                    Some(v) if count > 0 && count <= 125 => {
                        out.extend([0x03, (v.len() * 2) as u8]);
                        for x in v {
                            out.extend(x.to_be_bytes());
                        }
                    }
                    _ => out.extend([0x83, 2]),
                }
            }
            0x10 => {
                let (addr, count) = (be(0)?, be(2)?);
                let vals: Vec<u16> = (0..count as usize).filter_map(|k| be(5 + 2 * k)).collect();
                self.writes.push((addr, vals.clone()));
                for (k, v) in vals.iter().enumerate() {
                    self.regs.insert(addr + k as u16, *v);
                }
                out.push(0x10);
                out.extend(addr.to_be_bytes());
                out.extend(count.to_be_bytes());
            }
            other => out.extend([other | 0x80, 1]),
        }
        if self.crc {
            let c = crc16(&out);
            out.extend(c.to_le_bytes());
            if std::mem::take(&mut self.corrupt_next) {
                let n = out.len();
                out[n - 1] ^= 0xFF;
            }
        }
        Some(out)
    }
}

impl ModbusTransport for &mut FakeModbus {
    fn with_crc(&self) -> bool {
        self.crc
    }
    fn exchange(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, ModbusError> {
        Ok(self.answer(frame))
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    fn smt1500(on_battery: bool) -> FakeModbus {
        let mut f = FakeModbus {
            crc: true,
            ..Default::default()
        };
        for a in 0..200u16 {
            f.regs.insert(a, 0);
        }
        f.regs.insert(1, if on_battery { 1 << 2 } else { 1 << 1 });
        f.regs.insert(129, 1830);
        f.regs.insert(130, 100 * 512);
        // 16 registers of model, space-padded as the units send it.
        for (i, pair) in format!("{:<32}", "SMT1500RMI2U")
            .as_bytes()
            .chunks(2)
            .enumerate()
        {
            f.regs
                .insert(532 + i as u16, u16::from_be_bytes([pair[0], pair[1]]));
        }
        f
    }

    #[test]
    fn a_fake_smt_polls_and_is_killed_with_simple_signalling() {
        let mut dev = smt1500(false);
        let mut ups = ModbusUps::new(&mut dev);
        ups.read_strings();
        let r = ups.poll(SystemTime::UNIX_EPOCH).unwrap();
        assert!(r.flags.online);
        assert_eq!((r.charge_percent, r.runtime_s), (Some(100.0), Some(1830.0)));
        assert_eq!(r.model, "SMT1500RMI2U");
        ups.kill(true).unwrap();
        drop(ups);
        assert_eq!(dev.writes, [(1540, vec![1])]);
    }

    #[test]
    fn bad_crc_silence_and_exceptions_are_errors() {
        let mut dev = smt1500(true);
        dev.corrupt_next = true;
        let mut ups = ModbusUps::new(&mut dev);
        assert!(matches!(
            ups.poll(SystemTime::UNIX_EPOCH),
            Err(ModbusError::Crc { .. })
        ));
        let r = ups.poll(SystemTime::UNIX_EPOCH).unwrap();
        assert!(r.flags.on_battery);
        // Registers it does not have: exception 2.
        assert_eq!(
            ups.request(&Request::ReadHolding {
                addr: 9000,
                count: 1
            }),
            Err(ModbusError::Exception { code: 2 })
        );
        drop(ups);
        dev.silent = true;
        let mut ups = ModbusUps::new(&mut dev);
        assert!(ups.poll(SystemTime::UNIX_EPOCH).is_err());
        // Over USB, frames carry no CRC.
        let mut dev = smt1500(false);
        dev.crc = false;
        let mut ups = ModbusUps::new(&mut dev);
        assert!(ups.poll(SystemTime::UNIX_EPOCH).unwrap().flags.online);
    }
}
