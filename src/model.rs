//! The domain model: everything the RAN Routing API carries.
//!
//! Names follow the API specification and the Python client (`Device`, `UpstreamMessage`,
//! `TransmissionWindow`, ...), so its documentation maps 1:1. Where the specification says
//! "exactly one of", the type is an enum: a radio has one [`Modulation`], a
//! [`TransmissionWindow`] one [`TxTiming`], a new device one [`DeviceIdentity`].
//!
//! Stream messages serialize with serde into the exact stream frames (CamelCase keys,
//! numeric EUIs, byte arrays); [`Device`] and [`MulticastGroup`] into the REST objects.
//!
//! ```
//! use ran_routing::model::*;
//!
//! let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
//! let window = TransmissionWindow::class_a(radio, 1);
//! assert!(window.validate().is_ok());
//! assert_eq!(
//!     serde_json::to_value(&window).unwrap(),
//!     serde_json::json!({
//!         "Radio": {"Frequency": 868300000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}},
//!         "Delay": 1
//!     })
//! );
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::PrimitiveDateTime;

use crate::error::InvalidInput;
use crate::ids::{DevAddr, DevEui, JoinEui, MulticastAddr};
use crate::wire::{self, PROTOCOL_VERSION};

mod decode;

// ---------------------------------------------------------------------------------------
// Routing table and multicast groups (REST)
// ---------------------------------------------------------------------------------------

/// A row of the routing table: one subscribed device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Device {
    /// The device's EUI, unique in the routing table.
    #[serde(rename = "DevEUI")]
    pub dev_eui: DevEui,
    /// The JoinEUI of an OTAA device; `None` for ABP devices.
    #[serde(rename = "JoinEUI", default)]
    pub join_eui: Option<JoinEui>,
    /// The address the RAN routes uplinks by. An ABP device starts with its `DevAddr`; an
    /// OTAA device has none until the LNS sets one.
    #[serde(rename = "ActiveDevAddr", default)]
    pub active_dev_addr: Option<DevAddr>,
    /// The address handed out in a join accept; it becomes active once the device sends
    /// its first uplink with it.
    #[serde(rename = "TargetDevAddr", default)]
    pub target_dev_addr: Option<DevAddr>,
    /// Free-form details the LNS stored with the device (a string of JSON).
    #[serde(rename = "Details", default)]
    pub details: Option<String>,
    /// When the device was inserted (naive UTC, as the service reports it).
    #[serde(rename = "CreatedAt", with = "wire::timestamp")]
    pub created_at: PrimitiveDateTime,
}

impl Device {
    /// The device's identity: OTAA when it has a JoinEUI, ABP otherwise.
    ///
    /// Returns `None` only for a row with neither, which the service does not produce.
    pub fn identity(&self) -> Option<DeviceIdentity> {
        match (self.join_eui, self.active_dev_addr) {
            (Some(join_eui), _) => Some(DeviceIdentity::Otaa { join_eui }),
            (None, Some(dev_addr)) => Some(DeviceIdentity::Abp { dev_addr }),
            (None, None) => None,
        }
    }
}

/// How a new device joins the network: over the air with a JoinEUI, or personalized
/// with a fixed DevAddr. The service takes exactly one of the two.
///
/// `JoinEui` and `DevAddr` convert into it, so
/// `routing_table.insert(dev_eui, JoinEui::new(..))` reads like the Python client's
/// `insert(dev_eui=.., join_eui=..)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceIdentity {
    /// Over-the-air activation.
    Otaa {
        /// The device's JoinEUI.
        join_eui: JoinEui,
    },
    /// Activation by personalization.
    Abp {
        /// The device's fixed address.
        dev_addr: DevAddr,
    },
}

impl From<JoinEui> for DeviceIdentity {
    fn from(join_eui: JoinEui) -> Self {
        Self::Otaa { join_eui }
    }
}

impl From<DevAddr> for DeviceIdentity {
    fn from(dev_addr: DevAddr) -> Self {
        Self::Abp { dev_addr }
    }
}

/// A multicast group: an address that many devices listen on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MulticastGroup {
    /// The group's address.
    pub addr: MulticastAddr,
    /// When the group was created (naive UTC).
    #[serde(with = "wire::timestamp")]
    pub created_at: PrimitiveDateTime,
    /// The group's name, at most [`MulticastGroup::MAX_NAME_LEN`] characters.
    pub name: String,
    /// The devices in the group.
    #[serde(default)]
    pub devices: Vec<DevEui>,
}

impl MulticastGroup {
    /// The longest name the service accepts, in characters.
    pub const MAX_NAME_LEN: usize = 255;

    /// Checks a group name before it is sent.
    pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
        let len = name.chars().count();
        if len > Self::MAX_NAME_LEN {
            return Err(InvalidInput::GroupNameTooLong { len });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Radio
// ---------------------------------------------------------------------------------------

/// LoRa modulation parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
pub struct DownstreamRadio {
    /// Centre frequency in Hz.
    #[serde(rename = "Frequency")]
    pub frequency: u32,
    /// The modulation.
    #[serde(flatten)]
    pub modulation: Modulation,
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

// ---------------------------------------------------------------------------------------
// Transmission window
// ---------------------------------------------------------------------------------------

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
    /// Class C: the unix time (seconds) by which to transmit, at most now + 512 s.
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
/// Decoding rejects a window with no timing key or with more than one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TransmissionWindow {
    /// Radio parameters for the transmission.
    #[serde(rename = "Radio")]
    pub radio: DownstreamRadio,
    /// The timing: class A, B or C.
    #[serde(flatten)]
    pub timing: TxTiming,
}

impl TransmissionWindow {
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

    /// A class C window: transmit by `deadline` (unix seconds, at most now + 512 s).
    pub fn class_c(radio: DownstreamRadio, deadline: u64) -> Self {
        Self {
            radio,
            timing: TxTiming::Deadline(deadline),
        }
    }

    /// Checks every value rule of the radio and the timing.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        self.radio.modulation.validate()?;
        self.timing.validate()
    }
}

// ---------------------------------------------------------------------------------------
// Result codes
// ---------------------------------------------------------------------------------------

macro_rules! result_code {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$doc])*
        ///
        /// A code this crate does not know yet is kept as `Unknown` instead of failing the
        /// whole message.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A code this version of the crate does not know, as the server sent it.
            Unknown(String),
        }

        impl $name {
            /// The code as it travels on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Unknown(code) => code,
                }
            }
        }

        impl From<&str> for $name {
            fn from(code: &str) -> Self {
                match code {
                    $($wire => Self::$variant,)*
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = std::borrow::Cow::<str>::deserialize(d)?;
                Ok(Self::from(code.as_ref()))
            }
        }
    };
}

result_code!(
    /// Why the LNS rejects an upstream message.
    UpstreamRejectResultCode {
        /// No candidate of the MIC challenge matched the LNS's keys.
        MicFailed = "MICFailed",
        /// Any other reason.
        Other = "Other",
    }
);

result_code!(
    /// The outcome of a downlink.
    DownstreamResultCode {
        /// Transmitted.
        Success = "Success",
        /// No transmission window could be found.
        WindowNotFound = "WindowNotFound",
        /// No gateway could reach the device.
        GatewayNotFound = "GatewayNotFound",
        /// The window had passed when the downlink was scheduled.
        TooLate = "TooLate",
        /// The device did not acknowledge.
        NoAck = "NoAck",
        /// The gateway failed to transmit.
        GatewayError = "GatewayError",
    }
);

impl DownstreamResultCode {
    /// Whether the downlink went out.
    pub fn is_success(&self) -> bool {
        *self == Self::Success
    }
}

// ---------------------------------------------------------------------------------------
// Stream messages
// ---------------------------------------------------------------------------------------

fn protocol_version() -> u32 {
    PROTOCOL_VERSION
}

/// An uplink or join request heard by the RAN (RAN → LNS, upstream stream).
///
/// Every upstream message must be answered with exactly one [`UpstreamAck`] or
/// [`UpstreamReject`] carrying its `transaction_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamMessage {
    /// Protocol version of the frame (1).
    #[serde(rename = "ProtocolVersion", default = "protocol_version")]
    pub protocol_version: u32,
    /// Identifies this message in the ack or reject.
    #[serde(rename = "TransactionID")]
    pub transaction_id: u64,
    /// `Some(true)` when the uplink is more than 2.5 s old; usually omitted otherwise.
    #[serde(rename = "Outdated", default, skip_serializing_if = "Option::is_none")]
    pub outdated: Option<bool>,
    /// The subscribed devices the frame may belong to (several may share a DevAddr).
    #[serde(
        rename = "DevEUIs",
        serialize_with = "wire::num_vec",
        deserialize_with = "wire::num_in_vec"
    )]
    pub dev_euis: Vec<DevEui>,
    /// How the frame was heard.
    #[serde(rename = "Radio")]
    pub radio: UpstreamRadio,
    /// The PHYPayload without its 4-byte MIC.
    #[serde(rename = "PHYPayloadNoMIC")]
    pub phy_payload_no_mic: Vec<u8>,
    /// Candidate MICs; the true one is among them.
    #[serde(rename = "MICChallenge")]
    pub mic_challenge: Vec<u32>,
    /// The receiving gateway's position, when known.
    #[serde(rename = "GPS", default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<Gps>,
}

impl UpstreamMessage {
    /// Whether the RAN flagged the uplink as more than 2.5 s old.
    pub fn is_outdated(&self) -> bool {
        self.outdated == Some(true)
    }

    /// The full PHYPayload the candidate `mic` stands for: the payload with the MIC's
    /// big-endian bytes appended.
    pub fn phy_payload_with_mic(&self, mic: u32) -> Vec<u8> {
        let mut frame = Vec::with_capacity(self.phy_payload_no_mic.len() + 4);
        frame.extend_from_slice(&self.phy_payload_no_mic);
        frame.extend_from_slice(&mic.to_be_bytes());
        frame
    }

    /// The ack for this message, naming the device and the true MIC.
    pub fn ack(&self, dev_eui: DevEui, mic: u32) -> UpstreamAck {
        UpstreamAck::new(self.transaction_id, dev_eui, mic)
    }

    /// The reject for this message.
    pub fn reject(&self, result_code: UpstreamRejectResultCode) -> UpstreamReject {
        UpstreamReject::new(self.transaction_id, result_code)
    }
}

/// The LNS solved the MIC challenge of an upstream message (LNS → RAN).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpstreamAck {
    /// Protocol version (1).
    #[serde(rename = "ProtocolVersion", default = "protocol_version")]
    pub protocol_version: u32,
    /// The upstream message's transaction id.
    #[serde(rename = "TransactionID")]
    pub transaction_id: u64,
    /// The device the frame belongs to, one of the message's `dev_euis`.
    #[serde(
        rename = "DevEUI",
        serialize_with = "wire::num",
        deserialize_with = "wire::num_in"
    )]
    pub dev_eui: DevEui,
    /// The true MIC, one of the message's `mic_challenge`.
    #[serde(rename = "MIC")]
    pub mic: u32,
}

impl UpstreamAck {
    /// An ack for `transaction_id`.
    pub fn new(transaction_id: u64, dev_eui: DevEui, mic: u32) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            transaction_id,
            dev_eui,
            mic,
        }
    }

    /// Checks the value rules before sending.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        check_transaction_id(self.transaction_id)
    }
}

/// The LNS refuses an upstream message (LNS → RAN).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpstreamReject {
    /// Protocol version (1).
    #[serde(rename = "ProtocolVersion", default = "protocol_version")]
    pub protocol_version: u32,
    /// The upstream message's transaction id.
    #[serde(rename = "TransactionID")]
    pub transaction_id: u64,
    /// Why.
    #[serde(rename = "ResultCode")]
    pub result_code: UpstreamRejectResultCode,
    /// An optional human-readable explanation.
    #[serde(
        rename = "ResultMessage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub result_message: Option<String>,
}

impl UpstreamReject {
    /// A reject for `transaction_id` with no message.
    pub fn new(transaction_id: u64, result_code: UpstreamRejectResultCode) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            transaction_id,
            result_code,
            result_message: None,
        }
    }

    /// Adds a human-readable explanation.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.result_message = Some(message.into());
        self
    }

    /// Checks the value rules before sending.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        check_transaction_id(self.transaction_id)?;
        if let UpstreamRejectResultCode::Unknown(code) = &self.result_code {
            return Err(InvalidInput::ResultCode(code.clone()));
        }
        Ok(())
    }
}

/// What the LNS answers to an upstream message: the frame the upstream stream carries
/// from LNS to RAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum UpstreamReply {
    /// MIC challenge solved.
    Ack(UpstreamAck),
    /// Refused.
    Reject(UpstreamReject),
}

impl UpstreamReply {
    /// The transaction id of the upstream message answered.
    pub fn transaction_id(&self) -> u64 {
        match self {
            Self::Ack(m) => m.transaction_id,
            Self::Reject(m) => m.transaction_id,
        }
    }

    /// Checks the value rules before sending.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match self {
            Self::Ack(m) => m.validate(),
            Self::Reject(m) => m.validate(),
        }
    }
}

impl<'de> Deserialize<'de> for UpstreamReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A frame with `ResultCode` is a reject, as the reference client decides it.
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "ProtocolVersion", default = "protocol_version")]
            protocol_version: u32,
            #[serde(rename = "TransactionID")]
            transaction_id: u64,
            #[serde(rename = "ResultCode")]
            result_code: Option<UpstreamRejectResultCode>,
            #[serde(rename = "ResultMessage")]
            result_message: Option<String>,
            #[serde(rename = "DevEUI", default, deserialize_with = "wire::num_in_opt")]
            dev_eui: Option<DevEui>,
            #[serde(rename = "MIC")]
            mic: Option<u32>,
        }
        let raw = Raw::deserialize(d)?;
        if let Some(result_code) = raw.result_code {
            return Ok(Self::Reject(UpstreamReject {
                protocol_version: raw.protocol_version,
                transaction_id: raw.transaction_id,
                result_code,
                result_message: raw.result_message,
            }));
        }
        let dev_eui = raw
            .dev_eui
            .ok_or_else(|| serde::de::Error::missing_field("DevEUI"))?;
        let mic = raw
            .mic
            .ok_or_else(|| serde::de::Error::missing_field("MIC"))?;
        Ok(Self::Ack(UpstreamAck {
            protocol_version: raw.protocol_version,
            transaction_id: raw.transaction_id,
            dev_eui,
            mic,
        }))
    }
}

impl From<UpstreamAck> for UpstreamReply {
    fn from(m: UpstreamAck) -> Self {
        Self::Ack(m)
    }
}

impl From<UpstreamReject> for UpstreamReply {
    fn from(m: UpstreamReject) -> Self {
        Self::Reject(m)
    }
}

/// A downlink or join accept for one device (LNS → RAN, downstream stream).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DownstreamMessage {
    /// Protocol version (1).
    #[serde(rename = "ProtocolVersion", default = "protocol_version")]
    pub protocol_version: u32,
    /// Chosen by the LNS, unique across unicast and multicast downlinks; echoed in the
    /// ack and the result.
    #[serde(rename = "TransactionID")]
    pub transaction_id: u64,
    /// The device.
    #[serde(
        rename = "DevEUI",
        serialize_with = "wire::num",
        deserialize_with = "wire::num_in"
    )]
    pub dev_eui: DevEui,
    /// For join accepts: the address the device will use after the join.
    #[serde(
        rename = "TargetDevAddr",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::num_opt",
        deserialize_with = "wire::num_in_opt"
    )]
    pub target_dev_addr: Option<DevAddr>,
    /// When and how to transmit.
    #[serde(rename = "TxWindow")]
    pub tx_window: TransmissionWindow,
    /// The full PHYPayload.
    #[serde(rename = "PHYPayload")]
    pub phy_payload: Vec<u8>,
}

impl DownstreamMessage {
    /// A downlink to `dev_eui`.
    pub fn new(
        transaction_id: u64,
        dev_eui: DevEui,
        tx_window: TransmissionWindow,
        phy_payload: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            transaction_id,
            dev_eui,
            target_dev_addr: None,
            tx_window,
            phy_payload: phy_payload.into(),
        }
    }

    /// Makes this a join accept that hands out `target_dev_addr`.
    pub fn with_target_dev_addr(mut self, target_dev_addr: DevAddr) -> Self {
        self.target_dev_addr = Some(target_dev_addr);
        self
    }

    /// Checks the value rules before sending.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        check_transaction_id(self.transaction_id)?;
        self.tx_window.validate()
    }
}

/// A downlink to a multicast group (LNS → RAN, downstream stream).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MulticastDownstreamMessage {
    /// Protocol version (1).
    #[serde(rename = "ProtocolVersion", default = "protocol_version")]
    pub protocol_version: u32,
    /// Unique across unicast and multicast downlinks.
    #[serde(rename = "TransactionID")]
    pub transaction_id: u64,
    /// The group's address.
    #[serde(
        rename = "Addr",
        serialize_with = "wire::num",
        deserialize_with = "wire::num_in"
    )]
    pub addr: MulticastAddr,
    /// When and how to transmit.
    #[serde(rename = "TxWindow")]
    pub tx_window: TransmissionWindow,
    /// The full PHYPayload.
    #[serde(rename = "PHYPayload")]
    pub phy_payload: Vec<u8>,
}

impl MulticastDownstreamMessage {
    /// A downlink to the group at `addr`.
    pub fn new(
        transaction_id: u64,
        addr: MulticastAddr,
        tx_window: TransmissionWindow,
        phy_payload: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            transaction_id,
            addr,
            tx_window,
            phy_payload: phy_payload.into(),
        }
    }

    /// Checks the value rules before sending.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        check_transaction_id(self.transaction_id)?;
        self.tx_window.validate()
    }
}

/// A frame the downstream stream carries from LNS to RAN: unicast or multicast.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum DownstreamRequest {
    /// To one device.
    Unicast(DownstreamMessage),
    /// To a multicast group.
    Multicast(MulticastDownstreamMessage),
}

impl DownstreamRequest {
    /// The LNS-chosen transaction id.
    pub fn transaction_id(&self) -> u64 {
        match self {
            Self::Unicast(m) => m.transaction_id,
            Self::Multicast(m) => m.transaction_id,
        }
    }

    /// Checks the value rules before sending.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match self {
            Self::Unicast(m) => m.validate(),
            Self::Multicast(m) => m.validate(),
        }
    }
}

impl<'de> Deserialize<'de> for DownstreamRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A frame with `Addr` is multicast (any DevEUI or TargetDevAddr is then ignored),
        // otherwise unicast. One pass over the frame, no intermediate JSON tree.
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "ProtocolVersion", default = "protocol_version")]
            protocol_version: u32,
            #[serde(rename = "TransactionID")]
            transaction_id: u64,
            #[serde(rename = "Addr", default, deserialize_with = "wire::num_in_opt")]
            addr: Option<MulticastAddr>,
            #[serde(rename = "DevEUI", default, deserialize_with = "wire::num_in_opt")]
            dev_eui: Option<DevEui>,
            #[serde(
                rename = "TargetDevAddr",
                default,
                deserialize_with = "wire::num_in_opt"
            )]
            target_dev_addr: Option<DevAddr>,
            #[serde(rename = "TxWindow")]
            tx_window: TransmissionWindow,
            #[serde(rename = "PHYPayload")]
            phy_payload: Vec<u8>,
        }
        let raw = Raw::deserialize(d)?;
        if let Some(addr) = raw.addr {
            return Ok(Self::Multicast(MulticastDownstreamMessage {
                protocol_version: raw.protocol_version,
                transaction_id: raw.transaction_id,
                addr,
                tx_window: raw.tx_window,
                phy_payload: raw.phy_payload,
            }));
        }
        Ok(Self::Unicast(DownstreamMessage {
            protocol_version: raw.protocol_version,
            transaction_id: raw.transaction_id,
            dev_eui: raw
                .dev_eui
                .ok_or_else(|| serde::de::Error::missing_field("DevEUI"))?,
            target_dev_addr: raw.target_dev_addr,
            tx_window: raw.tx_window,
            phy_payload: raw.phy_payload,
        }))
    }
}

impl From<DownstreamMessage> for DownstreamRequest {
    fn from(m: DownstreamMessage) -> Self {
        Self::Unicast(m)
    }
}

impl From<MulticastDownstreamMessage> for DownstreamRequest {
    fn from(m: MulticastDownstreamMessage) -> Self {
        Self::Multicast(m)
    }
}

/// The RAN received a downlink and scheduled it (RAN → LNS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DownstreamAck {
    /// Protocol version (1).
    #[serde(rename = "ProtocolVersion", default = "protocol_version")]
    pub protocol_version: u32,
    /// The downlink's transaction id.
    #[serde(rename = "TransactionID")]
    pub transaction_id: u64,
    /// Where the downlink's history can be found later.
    #[serde(rename = "MailboxID")]
    pub mailbox_id: u64,
}

/// The RAN finished with a downlink (RAN → LNS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DownstreamResult {
    /// Protocol version (1).
    #[serde(rename = "ProtocolVersion", default = "protocol_version")]
    pub protocol_version: u32,
    /// The downlink's transaction id.
    #[serde(rename = "TransactionID")]
    pub transaction_id: u64,
    /// The outcome.
    #[serde(rename = "ResultCode")]
    pub result_code: DownstreamResultCode,
    /// A human-readable description of the outcome.
    #[serde(
        rename = "ResultMessage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub result_message: Option<String>,
    /// Where the downlink's history can be found later.
    #[serde(rename = "MailboxID", default, skip_serializing_if = "Option::is_none")]
    pub mailbox_id: Option<u64>,
}

/// What the downstream stream yields: an ack ("received, scheduled") or a result
/// ("done"), for unicast and multicast downlinks alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum DownstreamReply {
    /// The downlink was received and scheduled.
    Ack(DownstreamAck),
    /// The downlink was processed.
    Result(DownstreamResult),
}

impl DownstreamReply {
    /// The transaction id of the downlink this is about.
    pub fn transaction_id(&self) -> u64 {
        match self {
            Self::Ack(m) => m.transaction_id,
            Self::Result(m) => m.transaction_id,
        }
    }
}

impl<'de> Deserialize<'de> for DownstreamReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A frame with `ResultCode` is a result, otherwise an ack (as the reference).
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "ProtocolVersion", default = "protocol_version")]
            protocol_version: u32,
            #[serde(rename = "TransactionID")]
            transaction_id: u64,
            #[serde(rename = "ResultCode")]
            result_code: Option<DownstreamResultCode>,
            #[serde(rename = "ResultMessage")]
            result_message: Option<String>,
            #[serde(rename = "MailboxID")]
            mailbox_id: Option<u64>,
        }
        let raw = Raw::deserialize(d)?;
        match raw.result_code {
            Some(result_code) => Ok(Self::Result(DownstreamResult {
                protocol_version: raw.protocol_version,
                transaction_id: raw.transaction_id,
                result_code,
                result_message: raw.result_message,
                mailbox_id: raw.mailbox_id,
            })),
            None => Ok(Self::Ack(DownstreamAck {
                protocol_version: raw.protocol_version,
                transaction_id: raw.transaction_id,
                mailbox_id: raw
                    .mailbox_id
                    .ok_or_else(|| serde::de::Error::missing_field("MailboxID"))?,
            })),
        }
    }
}

impl From<DownstreamAck> for DownstreamReply {
    fn from(m: DownstreamAck) -> Self {
        Self::Ack(m)
    }
}

impl From<DownstreamResult> for DownstreamReply {
    fn from(m: DownstreamResult) -> Self {
        Self::Result(m)
    }
}

fn check_transaction_id(id: u64) -> Result<(), InvalidInput> {
    if id == 0 {
        return Err(InvalidInput::TransactionId);
    }
    Ok(())
}
