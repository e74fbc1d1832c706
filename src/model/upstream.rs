//! Upstream stream messages: uplinks in, acks and rejects out.

use serde::{Deserialize, Deserializer, Serialize};

use super::{
    check_transaction_id, protocol_version, Gps, UpstreamRadio, UpstreamRejectResultCode,
    PROTOCOL_VERSION,
};
use crate::error::InvalidInput;
use crate::ids::DevEui;
use crate::wire;

/// An uplink or join request heard by the RAN (RAN → LNS, upstream stream).
///
/// Every upstream message must be answered with exactly one [`UpstreamAck`] or
/// [`UpstreamReject`] carrying its `transaction_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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
    /// An upstream message as the RAN sends it: not outdated, no GPS position (see
    /// [`with_outdated`](Self::with_outdated) and [`with_gps`](Self::with_gps)). For
    /// tests and emulators; an LNS only receives them.
    pub fn new(
        transaction_id: u64,
        dev_euis: Vec<DevEui>,
        radio: UpstreamRadio,
        phy_payload_no_mic: impl Into<Vec<u8>>,
        mic_challenge: Vec<u32>,
    ) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            transaction_id,
            outdated: None,
            dev_euis,
            radio,
            phy_payload_no_mic: phy_payload_no_mic.into(),
            mic_challenge,
            gps: None,
        }
    }

    /// Sets the `Outdated` flag (`Some(true)`: heard more than 2.5 s ago).
    #[must_use]
    pub fn with_outdated(mut self, outdated: Option<bool>) -> Self {
        self.outdated = outdated;
        self
    }

    /// Sets the receiving gateway's position.
    #[must_use]
    pub fn with_gps(mut self, gps: Option<Gps>) -> Self {
        self.gps = gps;
        self
    }

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
#[non_exhaustive]
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
#[non_exhaustive]
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
