//! Downstream stream messages: downlinks out, acks and results in.

use serde::{Deserialize, Deserializer, Serialize};

use super::{
    check_transaction_id, protocol_version, DownstreamResultCode, TransmissionWindow,
    PROTOCOL_VERSION,
};
use crate::error::InvalidInput;
use crate::ids::{DevAddr, DevEui, MulticastAddr};
use crate::wire;

/// A downlink or join accept for one device (LNS → RAN, downstream stream).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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

impl DownstreamAck {
    /// An ack as the RAN sends it. For tests and emulators; an LNS only receives them.
    pub fn new(transaction_id: u64, mailbox_id: u64) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            transaction_id,
            mailbox_id,
        }
    }
}

impl DownstreamResult {
    /// A result as the RAN sends it, with no message or mailbox yet (see the `with_`
    /// methods). For tests and emulators; an LNS only receives them.
    pub fn new(transaction_id: u64, result_code: DownstreamResultCode) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            transaction_id,
            result_code,
            result_message: None,
            mailbox_id: None,
        }
    }

    /// Sets the human-readable description.
    #[must_use]
    pub fn with_result_message(mut self, message: Option<String>) -> Self {
        self.result_message = message;
        self
    }

    /// Sets the mailbox id.
    #[must_use]
    pub fn with_mailbox_id(mut self, mailbox_id: Option<u64>) -> Self {
        self.mailbox_id = mailbox_id;
        self
    }
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
