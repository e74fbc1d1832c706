//! The LNS's device list as CSV: the columns `DevEUI`, `JoinEUI` and `DevAddr`.
//!
//! It lives in the crate rather than in the example because exporting devices to a CSV
//! file is how most LNSs hand them over, and a parser that reads `0004a30b...` as
//! anything but that DevEUI is the bug this module exists to avoid: it should be tested
//! here once, not rewritten per integration. Exports differ in what surrounds the three
//! columns (their order, other columns, quoting, a byte order mark): the `csv` crate
//! reads them all; this module finds the columns by name and checks every row.

use std::collections::HashMap;
use std::fmt;

use super::devices::DesiredDevice;
use crate::ids::{DevAddr, DevEui, JoinEui, ParseIdError};

/// Why a row of a fleet CSV is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowErrorKind {
    /// The first line does not name each of the columns `DevEUI`, `JoinEUI` and
    /// `DevAddr` exactly once.
    Header {
        /// The line found (at most 80 characters of it).
        found: String,
    },
    /// Not as many fields as the header has columns.
    FieldCount {
        /// How many fields the row has.
        found: usize,
        /// How many columns the header has.
        expected: usize,
    },
    /// The DevEUI is not 16 hex digits.
    DevEui(ParseIdError),
    /// The JoinEUI is not empty nor 16 hex digits.
    JoinEui(ParseIdError),
    /// The DevAddr is not empty nor 8 hex digits.
    DevAddr(ParseIdError),
    /// Neither a JoinEUI (OTAA) nor a DevAddr (ABP).
    NoIdentity,
    /// The DevEUI was already on an earlier line.
    Duplicate {
        /// The line it was first on.
        first_line: usize,
    },
    /// The row is not CSV the reader can split into fields.
    Malformed {
        /// The CSV reader's error.
        message: String,
    },
}

impl fmt::Display for RowErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowErrorKind::Header { found } => write!(
                f,
                "expected a header naming the columns DevEUI, JoinEUI and DevAddr once each \
                 (in any order), found {found:?}"
            ),
            RowErrorKind::FieldCount { found, expected } => {
                write!(
                    f,
                    "expected {expected} fields as in the header, found {found}"
                )
            }
            RowErrorKind::DevEui(e) | RowErrorKind::JoinEui(e) | RowErrorKind::DevAddr(e) => {
                write!(f, "{e}")
            }
            RowErrorKind::NoIdentity => f.write_str(
                "neither a JoinEUI (OTAA) nor a DevAddr (ABP): the device has no identity",
            ),
            RowErrorKind::Duplicate { first_line } => {
                write!(f, "DevEUI already listed on line {first_line}")
            }
            RowErrorKind::Malformed { message } => write!(f, "not CSV: {message}"),
        }
    }
}

/// A refused row of a fleet CSV, by its line number (the header is line 1; a row whose
/// quoted field spans lines is numbered by its first line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: RowErrorKind,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

/// Every refused row of a fleet CSV. `Display` lists the first 20.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    /// The refused rows, in line order.
    pub rows: Vec<RowError>,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        let n = self.rows.len();
        let rows = if n == 1 { "row" } else { "rows" };
        write!(f, "{n} bad {rows} in the fleet CSV")?;
        for row in self.rows.iter().take(SHOWN) {
            write!(f, "\n  {row}")?;
        }
        if n > SHOWN {
            write!(f, "\n  ... and {} more", n - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for CsvError {}

/// The columns a fleet CSV must name, in the order [`Columns`] keeps them.
const COLUMNS: [&str; 3] = ["DevEUI", "JoinEUI", "DevAddr"];

/// Where the header put each of [`COLUMNS`], and how many columns it has.
struct Columns {
    at: [usize; 3],
    count: usize,
}

impl Columns {
    /// Finds each column by name (any case, surrounding spaces ignored); other columns
    /// are allowed and left unread. `None` when one is missing or named twice.
    fn find(header: &csv::StringRecord) -> Option<Columns> {
        let mut at = [None; 3];
        for (i, name) in header.iter().enumerate() {
            let name = name.trim();
            if let Some(col) = COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(name)) {
                if at[col].replace(i).is_some() {
                    return None;
                }
            }
        }
        Some(Columns {
            at: [at[0]?, at[1]?, at[2]?],
            count: header.len(),
        })
    }
}

/// Reads a fleet from CSV text whose header names the columns `DevEUI`, `JoinEUI` and
/// `DevAddr` (any case, any order; other columns are ignored): hex in either case (an
/// optional `0x`), fields quoted or not, surrounding spaces ignored, a UTF-8 byte order
/// mark and blank lines skipped. A row with a JoinEUI is OTAA, joined if it also has a
/// DevAddr; a row with only a DevAddr is ABP.
///
/// Every bad row is reported, with its line number, and then no device is returned:
/// a fleet file with a typo must not be half applied.
///
/// ```
/// use ran_routing::fleet::{read_csv, DesiredDevice, RowErrorKind};
/// use ran_routing::{DevAddr, DevEui, JoinEui};
///
/// let fleet = read_csv(
///     "DevEUI,JoinEUI,DevAddr\n\
///      0004A30B001C0530,70b3d57ed0000000,\n\
///      0004a30b001c0531,70b3d57ed0000000,260b1234\n\
///      7abe1b8c93d7174f,,260b0001\n",
/// )
/// .unwrap();
/// assert_eq!(fleet[0], DesiredDevice::otaa(DevEui::new(0x0004a30b001c0530), JoinEui::new(0x70b3d57ed0000000)));
/// assert_eq!(fleet[2], DesiredDevice::abp(DevEui::new(0x7abe1b8c93d7174f), DevAddr::new(0x260b0001)));
///
/// // Another export: its own column order, a name column, quoted fields.
/// let fleet = read_csv(
///     "name,DevAddr,DevEUI,JoinEUI\n\
///      \"lamp, north\",\"260b0001\",\"7abe1b8c93d7174f\",\"\"\n",
/// )
/// .unwrap();
/// assert_eq!(fleet, [DesiredDevice::abp(DevEui::new(0x7abe1b8c93d7174f), DevAddr::new(0x260b0001))]);
///
/// let bad = read_csv("DevEUI,JoinEUI,DevAddr\n4a30b001c0530,70b3d57ed0000000,\n7abe1b8c93d7174f,,\n").unwrap_err();
/// assert_eq!(bad.rows[0].line, 2);
/// assert!(matches!(bad.rows[0].kind, RowErrorKind::DevEui(_)));
/// assert_eq!((bad.rows[1].line, &bad.rows[1].kind), (3, &RowErrorKind::NoIdentity));
/// ```
pub fn read_csv(text: &str) -> Result<Vec<DesiredDevice>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        // Rows of the wrong length are reported here, by line, with the others.
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(header)) => Columns::find(&header),
        _ => None,
    };
    let Some(columns) = header else {
        let first = text.lines().next().unwrap_or("");
        return Err(CsvError {
            rows: vec![RowError {
                line: 1,
                kind: RowErrorKind::Header {
                    found: first.chars().take(80).collect(),
                },
            }],
        });
    };
    let mut errors = Vec::new();
    let mut devices = Vec::new();
    let mut first_seen: HashMap<DevEui, usize> = HashMap::new();
    for record in records {
        let (line, parsed) = match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line() as usize);
                // A line of spaces is one empty field: as blank as an empty line.
                if record.len() == 1 && record[0].is_empty() {
                    continue;
                }
                (line, row(&record, &columns))
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                let kind = RowErrorKind::Malformed {
                    message: e.to_string(),
                };
                (line, Err(kind))
            }
        };
        match parsed {
            Ok(device) => {
                if let Some(&first_line) = first_seen.get(&device.dev_eui) {
                    errors.push(RowError {
                        line,
                        kind: RowErrorKind::Duplicate { first_line },
                    });
                } else {
                    first_seen.insert(device.dev_eui, line);
                    devices.push(device);
                }
            }
            Err(kind) => errors.push(RowError { line, kind }),
        }
    }
    if errors.is_empty() {
        Ok(devices)
    } else {
        Err(CsvError { rows: errors })
    }
}

fn row(record: &csv::StringRecord, columns: &Columns) -> Result<DesiredDevice, RowErrorKind> {
    if record.len() != columns.count {
        return Err(RowErrorKind::FieldCount {
            found: record.len(),
            expected: columns.count,
        });
    }
    let [dev_eui, join_eui, dev_addr] = columns.at.map(|i| &record[i]);
    let dev_eui: DevEui = dev_eui.parse().map_err(RowErrorKind::DevEui)?;
    let join_eui: Option<JoinEui> = match join_eui {
        "" => None,
        text => Some(text.parse().map_err(RowErrorKind::JoinEui)?),
    };
    let dev_addr: Option<DevAddr> = match dev_addr {
        "" => None,
        text => Some(text.parse().map_err(RowErrorKind::DevAddr)?),
    };
    Ok(match (join_eui, dev_addr) {
        (Some(join_eui), None) => DesiredDevice::otaa(dev_eui, join_eui),
        (Some(join_eui), Some(addr)) => DesiredDevice::joined(dev_eui, join_eui, addr),
        (None, Some(addr)) => DesiredDevice::abp(dev_eui, addr),
        (None, None) => return Err(RowErrorKind::NoIdentity),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_identity_and_keeps_leading_zeros() {
        let fleet = read_csv(
            "\u{feff}devEUI, JoinEui ,DEVADDR\r\n\
             0004a30b001c0530,70B3D57ED0000000,\r\n\
             \r\n\
             0x0004a30b001c0531 , 70b3d57ed0000000 , 260B1234\n\
             00000000000000ff,,00000001",
        )
        .unwrap();
        assert_eq!(
            fleet,
            [
                DesiredDevice::otaa(0x0004a30b001c0530u64, 0x70b3d57ed0000000u64),
                DesiredDevice::joined(0x0004a30b001c0531u64, 0x70b3d57ed0000000u64, 0x260b1234u32),
                DesiredDevice::abp(0xffu64, 1u32),
            ]
        );
        assert_eq!(read_csv("DevEUI,JoinEUI,DevAddr\n").unwrap(), []);
    }

    #[test]
    fn reports_every_bad_row_by_line() {
        let err = read_csv(
            "DevEUI,JoinEUI,DevAddr\n\
             0004a30b001c0530,70b3d57ed0000000\n\
             4a30b001c0530,70b3d57ed0000000,\n\
             0004a30b001c053g,70b3d57ed0000000,\n\
             0004a30b001c0530,70b3d57ed000000,\n\
             0004a30b001c0530,,0260b1234\n\
             0004a30b001c0530,,\n\
             0004a30b001c0531,,00000001\n\
             0004a30b001c0531,,00000001\n",
        )
        .unwrap_err();
        let kinds: Vec<(usize, &str)> = err
            .rows
            .iter()
            .map(|r| {
                let kind = match &r.kind {
                    RowErrorKind::FieldCount {
                        found: 2,
                        expected: 3,
                    } => "fields",
                    RowErrorKind::DevEui(_) => "deveui",
                    RowErrorKind::JoinEui(_) => "joineui",
                    RowErrorKind::DevAddr(_) => "devaddr",
                    RowErrorKind::NoIdentity => "none",
                    RowErrorKind::Duplicate { first_line: 8 } => "dup",
                    other => panic!("{other:?}"),
                };
                (r.line, kind)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (2, "fields"),
                (3, "deveui"),
                (4, "deveui"),
                (5, "joineui"),
                (6, "devaddr"),
                (7, "none"),
                (9, "dup"),
            ]
        );
        let text = err.to_string();
        assert!(
            text.starts_with("7 bad rows in the fleet CSV\n  line 2: expected 3 fields as in the header, found 2"),
            "{text}"
        );
    }

    #[test]
    fn refuses_a_missing_header() {
        let err = read_csv("0004a30b001c0530,70b3d57ed0000000,\n").unwrap_err();
        assert_eq!(err.rows.len(), 1);
        assert!(matches!(err.rows[0].kind, RowErrorKind::Header { .. }));
        assert_eq!(err.rows[0].line, 1);
        assert!(read_csv("").is_err());
        let many = "DevEUI,JoinEUI,DevAddr\n".to_owned() + &"x\n".repeat(30);
        assert!(read_csv(&many)
            .unwrap_err()
            .to_string()
            .ends_with("... and 10 more"));
    }
}
