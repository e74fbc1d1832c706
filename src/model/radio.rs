//! Radio settings: modulations, upstream and downstream radios, GPS.

use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;

/// LoRa modulation parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoRaModulation {
    /// Spreading factor, 0 to 12 (LoRa itself uses 5 to 12).
    #[serde(rename = "Spreading")]
    pub spreading: u8,
    /// Signal bandwidth in Hz.
    #[serde(rename = "Bandwidth")]
    pub bandwidth: u32,
}

impl LoRaModulation {
    /// The highest spreading factor the API accepts.
    pub const MAX_SPREADING: u8 = 12;

    /// LoRa with the given spreading factor and bandwidth (Hz).
    pub const fn new(spreading: u8, bandwidth: u32) -> Self {
        Self {
            spreading,
            bandwidth,
        }
    }
}

/// FSK modulation parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FskModulation {
    /// Frequency deviation in Hz.
    #[serde(rename = "FrequencyDeviation")]
    pub frequency_deviation: u32,
    /// Bit rate in bits per second.
    #[serde(rename = "BitRate")]
    pub bit_rate: u32,
}

impl FskModulation {
    /// FSK with the given frequency deviation (Hz) and bit rate (bit/s).
    pub const fn new(frequency_deviation: u32, bit_rate: u32) -> Self {
        Self {
            frequency_deviation,
            bit_rate,
        }
    }
}

/// LR-FHSS modulation parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FhssModulation {
    /// Operating channel width in Hz.
    #[serde(rename = "OCW")]
    pub ocw: u32,
    /// Coding rate, e.g. `"1/3"`.
    #[serde(rename = "CodingRate")]
    pub coding_rate: String,
}

impl FhssModulation {
    /// LR-FHSS with the given operating channel width (Hz) and coding rate.
    pub fn new(ocw: u32, coding_rate: impl Into<String>) -> Self {
        Self {
            ocw,
            coding_rate: coding_rate.into(),
        }
    }
}

/// The one modulation of a radio: on the wire, exactly one of the `LoRa`, `FSK` and
/// `FHSS` keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Modulation {
    /// LoRa.
    #[serde(rename = "LoRa")]
    LoRa(LoRaModulation),
    /// FSK.
    #[serde(rename = "FSK")]
    Fsk(FskModulation),
    /// LR-FHSS.
    #[serde(rename = "FHSS")]
    Fhss(FhssModulation),
}

impl Modulation {
    /// Checks the value rules the type cannot hold (the spreading factor's range).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match self {
            Modulation::LoRa(lora) if lora.spreading > LoRaModulation::MAX_SPREADING => {
                Err(InvalidInput::Spreading(lora.spreading))
            }
            _ => Ok(()),
        }
    }
}

impl From<LoRaModulation> for Modulation {
    fn from(m: LoRaModulation) -> Self {
        Self::LoRa(m)
    }
}

impl From<FskModulation> for Modulation {
    fn from(m: FskModulation) -> Self {
        Self::Fsk(m)
    }
}

impl From<FhssModulation> for Modulation {
    fn from(m: FhssModulation) -> Self {
        Self::Fhss(m)
    }
}

/// How an uplink was heard.
///
/// Decoding rejects a radio with no modulation key or with more than one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct UpstreamRadio {
    /// Centre frequency in Hz.
    #[serde(rename = "Frequency")]
    pub frequency: u32,
    /// The modulation.
    #[serde(flatten)]
    pub modulation: Modulation,
    /// Received signal strength, dBm.
    #[serde(rename = "RSSI")]
    pub rssi: f64,
    /// Signal to noise ratio, dB.
    #[serde(rename = "SNR")]
    pub snr: f64,
}

/// How a downlink is to be sent.
///
/// Decoding rejects a radio with no modulation key or with more than one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct DownstreamRadio {
    /// Centre frequency in Hz.
    #[serde(rename = "Frequency")]
    pub frequency: u32,
    /// The modulation.
    #[serde(flatten)]
    pub modulation: Modulation,
}

impl UpstreamRadio {
    /// How an uplink was heard: on `frequency` Hz with the given modulation, at `rssi`
    /// dBm and `snr` dB.
    pub fn new(frequency: u32, modulation: impl Into<Modulation>, rssi: f64, snr: f64) -> Self {
        Self {
            frequency,
            modulation: modulation.into(),
            rssi,
            snr,
        }
    }
}

impl Gps {
    /// A position in degrees, with the altitude in metres when known.
    pub fn new(lat: f64, lng: f64, alt: Option<f64>) -> Self {
        Self { lat, lng, alt }
    }
}

impl DownstreamRadio {
    /// A radio on `frequency` Hz with the given modulation.
    pub fn new(frequency: u32, modulation: impl Into<Modulation>) -> Self {
        Self {
            frequency,
            modulation: modulation.into(),
        }
    }
}

/// Where the gateway that heard an uplink is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Gps {
    /// Latitude, degrees.
    #[serde(rename = "Lat")]
    pub lat: f64,
    /// Longitude, degrees.
    #[serde(rename = "Lng")]
    pub lng: f64,
    /// Altitude, metres.
    #[serde(rename = "Alt", default, skip_serializing_if = "Option::is_none")]
    pub alt: Option<f64>,
}
