//! The HID report descriptor, parsed: every field of every Input, Output and Feature
//! report with its full usage (page << 16 | id), the usages of the collections around it,
//! its report ID, bit offset and size, logical and physical range, unit and exponent, and
//! the string index APC puts on string-valued usages. Pure: bytes in, fields out.
//!
//! Real APC descriptors have faults to tolerate (docs/hardware/usb-hid.md §4): a 16-bit field
//! whose logical maximum is written as one byte `25 ff` (-1 signed: read as unsigned
//! when the minimum would otherwise exceed it), 2-byte main items (`b2 a2 01`), and the
//! captures we hold start or stop mid-collection (unbalanced collections are warnings).

use std::collections::BTreeMap;

/// Which of the three report kinds a field belongs to (the GET_REPORT type, 1..3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReportType {
    Input = 1,
    Output = 2,
    Feature = 3,
}

/// One data field of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Full usage: page << 16 | id (e.g. 0x00850066 RemainingCapacity).
    pub usage: u32,
    /// The usages of the enclosing collections, outermost first.
    pub path: Vec<u32>,
    pub report_type: ReportType,
    pub report_id: u8,
    /// Bits after the report ID byte.
    pub bit_offset: u32,
    pub bit_size: u32,
    pub logical_min: i64,
    pub logical_max: i64,
    pub physical_min: i64,
    pub physical_max: i64,
    pub unit: u32,
    /// Signed, -8..=7 (the item's low nibble).
    pub unit_exponent: i8,
    /// APC's string-valued usages carry the string descriptor index here.
    pub string_index: Option<u8>,
    /// The main item's flags (bit 1 set: variable; bit 2: relative ...).
    pub flags: u32,
}

impl Field {
    /// Whether values are signed (the logical minimum is negative).
    pub fn signed(&self) -> bool {
        self.logical_min < 0
    }

    /// Whether a path element is `collection` (e.g. 0x0084001A Input).
    pub fn within(&self, collection: u32) -> bool {
        self.path.contains(&collection)
    }
}

/// The parsed descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportDescriptor {
    pub fields: Vec<Field>,
    /// Tolerated faults, in words (unbalanced collections, fixed-up ranges).
    pub warnings: Vec<String>,
    /// Bits per report (type, ID), after the ID byte.
    bits: BTreeMap<(ReportType, u8), u32>,
}

impl ReportDescriptor {
    /// The first field with `usage` of `kind`, optionally inside `collection`.
    pub fn find(&self, usage: u32, kind: ReportType, collection: Option<u32>) -> Option<&Field> {
        self.fields.iter().find(|f| {
            f.usage == usage && f.report_type == kind && collection.is_none_or(|c| f.within(c))
        })
    }

    /// A report's length in bytes, its ID byte included (0 bits: just the ID).
    pub fn report_len(&self, kind: ReportType, id: u8) -> usize {
        let bits = self.bits.get(&(kind, id)).copied().unwrap_or(0);
        1 + bits.div_ceil(8) as usize
    }
}

/// Why a descriptor cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("report descriptor: item at byte {at} runs past the end ({len} bytes)")]
    Truncated { at: usize, len: usize },
    #[error("report descriptor: more than {max} fields; refusing it as malformed")]
    TooManyFields { max: usize },
    #[error("report descriptor: Pop without a Push at byte {at}")]
    PopWithoutPush { at: usize },
    #[error("report descriptor: a report of {bits} bits at byte {at} is larger than any UPS sends")]
    TooLarge { at: usize, bits: u64 },
    #[error("report descriptor: nesting deeper than {max} at byte {at}")]
    TooDeep { at: usize, max: usize },
}

/// Limits that keep a malformed or hostile descriptor cheap.
pub const MAX_FIELDS: usize = 4096;
const MAX_DEPTH: usize = 32;
const MAX_REPORT_BITS: u64 = 8 * 4096;

#[derive(Debug, Clone, Default)]
struct Globals {
    page: u32,
    logical_min: i64,
    logical_max: i64,
    logical_max_raw: (u32, usize),
    physical_min: i64,
    physical_max: i64,
    unit_exponent: i8,
    unit: u32,
    size: u32,
    id: u8,
    count: u32,
}

#[derive(Debug, Clone, Default)]
struct Locals {
    usages: Vec<u32>,
    min: Option<u32>,
    max: Option<u32>,
    string_index: Option<u8>,
}

fn signed(data: u32, size: usize) -> i64 {
    match size {
        1 => i64::from(data as u8 as i8),
        2 => i64::from(data as u16 as i16),
        4 => i64::from(data as i32),
        _ => 0,
    }
}

impl ReportDescriptor {
    /// Parses a report descriptor.
    pub fn parse(bytes: &[u8]) -> Result<ReportDescriptor, DescriptorError> {
        let mut out = ReportDescriptor::default();
        let mut g = Globals::default();
        let mut stack: Vec<Globals> = Vec::new();
        let mut l = Locals::default();
        let mut path: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let at = i;
            let prefix = bytes[i];
            if prefix == 0xFE {
                // Long item: size, tag, data. None is defined; skip it.
                let size = *bytes.get(i + 1).ok_or(DescriptorError::Truncated {
                    at,
                    len: bytes.len(),
                })? as usize;
                i += 3 + size;
                if i > bytes.len() {
                    return Err(DescriptorError::Truncated {
                        at,
                        len: bytes.len(),
                    });
                }
                continue;
            }
            let size = [0, 1, 2, 4][(prefix & 3) as usize];
            let kind = (prefix >> 2) & 3;
            let tag = prefix >> 4;
            let raw = bytes
                .get(i + 1..i + 1 + size)
                .ok_or(DescriptorError::Truncated {
                    at,
                    len: bytes.len(),
                })?;
            let data = raw
                .iter()
                .rev()
                .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            i += 1 + size;
            match (kind, tag) {
                // Main items.
                (0, 0x8) | (0, 0x9) | (0, 0xB) => {
                    let rt = match tag {
                        0x8 => ReportType::Input,
                        0x9 => ReportType::Output,
                        _ => ReportType::Feature,
                    };
                    out.main_item(rt, data, &g, &l, &path, at)?;
                    l = Locals::default();
                }
                (0, 0xA) => {
                    if path.len() >= MAX_DEPTH {
                        return Err(DescriptorError::TooDeep { at, max: MAX_DEPTH });
                    }
                    let usage = l.usages.first().copied().unwrap_or(0);
                    path.push(usage);
                    l = Locals::default();
                }
                (0, 0xC) => {
                    if path.pop().is_none() {
                        out.warnings
                            .push(format!("End Collection without a Collection at byte {at}"));
                    }
                    l = Locals::default();
                }
                // Global items.
                (1, 0x0) => g.page = data,
                (1, 0x1) => g.logical_min = signed(data, size),
                (1, 0x2) => {
                    g.logical_max = signed(data, size);
                    g.logical_max_raw = (data, size);
                }
                (1, 0x3) => g.physical_min = signed(data, size),
                (1, 0x4) => g.physical_max = signed(data, size),
                (1, 0x5) => {
                    let n = (data & 0xF) as i8;
                    g.unit_exponent = if n > 7 { n - 16 } else { n };
                }
                (1, 0x6) => g.unit = data,
                (1, 0x7) => g.size = data,
                (1, 0x8) => g.id = data as u8,
                (1, 0x9) => g.count = data,
                (1, 0xA) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(DescriptorError::TooDeep { at, max: MAX_DEPTH });
                    }
                    stack.push(g.clone());
                }
                (1, 0xB) => g = stack.pop().ok_or(DescriptorError::PopWithoutPush { at })?,
                // Local items.
                (2, 0x0) => l.usages.push(full_usage(data, size, g.page)),
                (2, 0x1) => l.min = Some(full_usage(data, size, g.page)),
                (2, 0x2) => l.max = Some(full_usage(data, size, g.page)),
                (2, 0x7) => l.string_index = Some(data as u8),
                _ => {}
            }
        }
        if !path.is_empty() {
            out.warnings
                .push(format!("{} collection(s) left open at the end", path.len()));
        }
        Ok(out)
    }

    fn main_item(
        &mut self,
        rt: ReportType,
        flags: u32,
        g: &Globals,
        l: &Locals,
        path: &[u32],
        at: usize,
    ) -> Result<(), DescriptorError> {
        let offset = self.bits.entry((rt, g.id)).or_insert(0);
        let total = u64::from(*offset) + u64::from(g.size) * u64::from(g.count);
        if total > MAX_REPORT_BITS {
            return Err(DescriptorError::TooLarge { at, bits: total });
        }
        let start = *offset;
        *offset = total as u32;
        if flags & 1 == 1 {
            // Constant: padding.
            return Ok(());
        }
        let (mut min, max) = fix_range(g);
        if (min, max) != (g.logical_min, g.logical_max) {
            self.warnings.push(format!(
                "logical range {}..{} at byte {at} read as {min}..{max} (one-byte maximum)",
                g.logical_min, g.logical_max
            ));
        }
        if min > max {
            min = max;
        }
        let (pmin, pmax) = if g.physical_min == 0 && g.physical_max == 0 {
            (min, max)
        } else {
            (g.physical_min, g.physical_max)
        };
        // Usages for each of `count` fields: the list, else the min..max range, the last
        // one repeating.
        let mut usages = l.usages.clone();
        if let (Some(a), Some(b)) = (l.min, l.max) {
            // Bounded: a zero-size field can have any count (no bits), and a usage
            // range beyond MAX_FIELDS is refused below anyway (fuzzing found a 2 GB
            // allocation here).
            let n = b.saturating_sub(a).min(g.count).min(MAX_FIELDS as u32);
            usages.extend((0..=n).map(|k| a + k));
        }
        for k in 0..g.count {
            let Some(usage) = usages.get(k as usize).or(usages.last()).copied() else {
                break;
            };
            if self.fields.len() >= MAX_FIELDS {
                return Err(DescriptorError::TooManyFields { max: MAX_FIELDS });
            }
            self.fields.push(Field {
                usage,
                path: path.to_vec(),
                report_type: rt,
                report_id: g.id,
                bit_offset: start + k * g.size,
                bit_size: g.size,
                logical_min: min,
                logical_max: max,
                physical_min: pmin,
                physical_max: pmax,
                unit: g.unit,
                unit_exponent: g.unit_exponent,
                string_index: l.string_index,
                flags,
            });
        }
        Ok(())
    }
}

/// A one-byte (or two-byte) logical maximum read as signed can fall below the minimum
/// (`15 00 25 ff` for a 16-bit field): then it was meant unsigned.
fn fix_range(g: &Globals) -> (i64, i64) {
    let (raw, size) = g.logical_max_raw;
    if g.logical_min > g.logical_max && size > 0 && size < 4 {
        (g.logical_min, i64::from(raw))
    } else {
        (g.logical_min, g.logical_max)
    }
}

fn full_usage(data: u32, size: usize, page: u32) -> u32 {
    if size == 4 {
        data
    } else {
        (page << 16) | (data & 0xFFFF)
    }
}
