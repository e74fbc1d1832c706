//! Transmission windows: when and how a downlink goes out.

use serde::{Deserialize, Serialize};

use super::DownstreamRadio;
use crate::error::InvalidInput;

/// When a downlink goes out: exactly one of a class A delay, class B slots or a class C
/// deadline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxTiming {
    /// Class A: seconds after the last acknowledged uplink of the device, 1 to 15.
    #[serde(rename = "Delay")]
    Delay(u8),
    /// Class B: 1 to 8 GPS-time transmission slots.
    #[serde(rename = "TMMS")]
    Tmms(Vec<u64>),
    /// Class C: the Unix time in whole seconds by which to transmit, at most now + 512 s,
    /// or [`DEADLINE_ASAP`](Self::DEADLINE_ASAP) for "as soon as possible".
    ///
    /// This is the crate's one reading of the field; the emulator judges by it too.
    /// The specification (`docs/markdown/specification.md` of
    /// `everynet/ran.routing.pyclient`, "Transmission Window") types `Deadline` only as a
    /// "Timestamp": "RAN will schedule downlink till the deadline (if possible). Default
    /// and maximum deadline value is now + 512 seconds"; the reference client takes any
    /// integer above 0 (`conint(gt=0)` in `ran/routing/core/domains.py`). Unix seconds
    /// is the one unit in which "now + 512 seconds" is a plausible number (a millisecond
    /// timestamp is 1000 times too far ahead and is refused by
    /// [`validate`](Self::validate)). Neither official bridge computes a deadline: both
    /// `everynet/ran.routing.tts` and `everynet/ran.routing.chirpstack.v4` send
    /// `Deadline = 1` for every class C downlink (`as_transmission_window` in
    /// `src/lib/traffic/ran.py`, with a TODO to send a "send not before" time "when ran
    /// supports it"), and the service transmits those. So:
    ///
    /// - `1` ([`DEADLINE_ASAP`](Self::DEADLINE_ASAP),
    ///   [`TransmissionWindow::class_c_asap`]) asks for the next opportunity;
    /// - any other value is the last Unix second the downlink may go out in: one that has
    ///   already passed when the RAN gets the downlink cannot be met (the emulator
    ///   answers `TooLate`), and one beyond now + 512 s is the maximum instead (the
    ///   emulator transmits and says so in the result message);
    /// - [`TransmissionWindow::class_c_by`](crate::timing) builds one from a
    ///   `SystemTime`.
    #[serde(rename = "Deadline")]
    Deadline(u64),
}

impl TxTiming {
    /// The allowed class A delays, in seconds.
    pub const DELAY_RANGE: std::ops::RangeInclusive<u8> = 1..=15;
    /// The most class B slots one downlink may name.
    pub const MAX_TMMS_SLOTS: usize = 8;
    /// How far ahead a class C deadline may be, in seconds.
    pub const MAX_DEADLINE_AHEAD_SECS: u64 = 512;
    /// The class C deadline that means "as soon as possible": what both official bridges
    /// send (see [`TxTiming::Deadline`]).
    pub const DEADLINE_ASAP: u64 = 1;

    /// Checks the value rules; a class C deadline is checked against the system clock.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match self {
            TxTiming::Delay(d) if !Self::DELAY_RANGE.contains(d) => Err(InvalidInput::Delay(*d)),
            TxTiming::Tmms(slots) if slots.is_empty() || slots.len() > Self::MAX_TMMS_SLOTS => {
                Err(InvalidInput::TmmsSlots(slots.len()))
            }
            TxTiming::Deadline(deadline) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if *deadline == 0 || *deadline > now + Self::MAX_DEADLINE_AHEAD_SECS {
                    Err(InvalidInput::Deadline {
                        deadline: *deadline,
                        now,
                    })
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// When and how a downlink is transmitted.
///
/// Serializes into the stream frame's object, its [`TxTiming`] flattened beside the radio:
///
/// ```
/// use ran_routing::{DownstreamRadio, LoRaModulation, TransmissionWindow};
///
/// let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
/// let window = TransmissionWindow::class_a(radio, 1);
/// assert!(window.validate().is_ok());
/// assert_eq!(
///     serde_json::to_value(&window).unwrap(),
///     serde_json::json!({
///         "Radio": {"Frequency": 868300000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}},
///         "Delay": 1
///     })
/// );
/// ```
///
/// Decoding rejects a window with no timing key or with more than one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct TransmissionWindow {
    /// Radio parameters for the transmission.
    #[serde(rename = "Radio")]
    pub radio: DownstreamRadio,
    /// The timing: class A, B or C.
    #[serde(flatten)]
    pub timing: TxTiming,
}

impl TransmissionWindow {
    /// A window with the given radio and timing.
    pub fn new(radio: DownstreamRadio, timing: TxTiming) -> Self {
        Self { radio, timing }
    }

    /// A class A window: `delay` seconds (1 to 15) after the device's last acknowledged
    /// uplink.
    pub fn class_a(radio: DownstreamRadio, delay: u8) -> Self {
        Self {
            radio,
            timing: TxTiming::Delay(delay),
        }
    }

    /// A class B window in the given GPS-time slots (1 to 8 of them).
    pub fn class_b(radio: DownstreamRadio, tmms: impl Into<Vec<u64>>) -> Self {
        Self {
            radio,
            timing: TxTiming::Tmms(tmms.into()),
        }
    }

    /// A class C window: transmit by `deadline` (Unix seconds, at most now + 512 s; see
    /// [`TxTiming::Deadline`]).
    pub fn class_c(radio: DownstreamRadio, deadline: u64) -> Self {
        Self {
            radio,
            timing: TxTiming::Deadline(deadline),
        }
    }

    /// A class C window for "as soon as possible": `Deadline` 1, as both official
    /// bridges send (see [`TxTiming::Deadline`]).
    ///
    /// ```
    /// use ran_routing::{DownstreamRadio, LoRaModulation, TransmissionWindow, TxTiming};
    ///
    /// let radio = DownstreamRadio::new(869_525_000, LoRaModulation::new(9, 125_000));
    /// let window = TransmissionWindow::class_c_asap(radio);
    /// assert_eq!(window.timing, TxTiming::Deadline(TxTiming::DEADLINE_ASAP));
    /// assert!(window.validate().is_ok());
    /// ```
    pub fn class_c_asap(radio: DownstreamRadio) -> Self {
        Self::class_c(radio, TxTiming::DEADLINE_ASAP)
    }

    /// Checks every value rule of the radio and the timing.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        self.radio.modulation.validate()?;
        self.timing.validate()
    }
}
