//! What became of played upstreams and of downlinks to radio devices.

use ran_routing::mic::DataDownlink;
use ran_routing::{DevAddr, DevEui, DownstreamResultCode, UpstreamRejectResultCode};

#[cfg(doc)]
use crate::{Emulator, RadioDevice};

/// What became of a played upstream: how the LNS answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamVerdict {
    /// No ack or reject yet.
    Unanswered,
    /// Acked with the true MIC and the DevEUI of the device that sent the frame.
    Solved,
    /// Acked with another MIC or another DevEUI: the LNS got the challenge wrong.
    WrongAck {
        /// The DevEUI the ack named.
        dev_eui: DevEui,
        /// The MIC the ack named.
        mic: u32,
    },
    /// Rejected, with this code (`MICFailed` is the right answer for a device whose key
    /// the LNS does not have).
    Rejected(UpstreamRejectResultCode),
    /// Not delivered: no row of the routing table routes it to the LNS (a join request
    /// whose DevEUI and JoinEUI are not subscribed, a data uplink from a DevAddr no row
    /// has as active or target address), as the service withholds it. The device still
    /// transmitted it, so its DevNonce or FCnt is used.
    Withheld,
}

impl UpstreamVerdict {
    /// Whether the upstream is settled: answered by the LNS, or never delivered.
    pub fn is_answered(&self) -> bool {
        *self != Self::Unanswered
    }
}

/// An upstream the emulator played for a [`RadioDevice`], and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlayedUpstream {
    /// The upstream's transaction id.
    pub transaction_id: u64,
    /// The device that sent the frame.
    pub dev_eui: DevEui,
    /// The frame's true MIC, one of the challenge's candidates.
    pub mic: u32,
    /// The full uplink counter of a data uplink; `None` for a join request.
    pub fcnt: Option<u32>,
    /// The DevNonce of a join request; `None` for a data uplink.
    pub dev_nonce: Option<u16>,
    /// How many candidates the MIC challenge had, the true MIC included.
    pub candidates: usize,
    /// Whether it was delivered with `Outdated: true`.
    pub outdated: bool,
    /// The LNS's answer so far.
    pub verdict: UpstreamVerdict,
}

/// Why a radio device ignored a downlink the RAN transmitted to it, as a real device
/// would: it stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IgnoredReason {
    /// A join accept whose MIC the device's AppKey does not give, or a data downlink
    /// whose MIC its NwkSKey (a multicast group's, for a group downlink) does not give
    /// with the next FCntDown: another key, another counter epoch, or a corrupted or
    /// forged frame.
    MicMismatch,
    /// A data downlink whose MIC verifies only with a counter at or below the last
    /// FCntDown the device accepted: a replay, or an LNS that reuses counters.
    ReplayedFCnt,
    /// A class A data downlink outside RX1 and RX2 of the device's latest uplink (with
    /// the timing rule on): timed from an older uplink, or a `Delay` other than the
    /// device's RX1 delay (1 s unless its join accept said otherwise) or one more.
    OutsideReceiveWindow,
    /// A class B or C downlink to a device that does not listen then: a `TMMS` downlink
    /// to a device not in class B, or a `Deadline` one to a device not in class C.
    NotListening,
    /// A join accept that answers no join request the device is waiting on: it sent none,
    /// a later one, or (with the timing rule on) the uplink the downlink was timed from is
    /// not its latest join request. The device derives keys only for the DevNonce it sent.
    UnknownDevNonce,
    /// A join accept outside the device's join-accept windows: with the timing rule on, a
    /// class A `Delay` other than JoinAcceptDelay1 (5 s, RX1) or JoinAcceptDelay2 (6 s,
    /// RX2) after its join request, or not class A at all.
    OutsideJoinWindow,
    /// A data downlink addressed to another DevAddr than the device's session, or sent to a
    /// device with no session.
    NotForThisDevice,
    /// Not a LoRaWAN 1.0 frame the device can read (too short, an uplink MType, a join
    /// accept of the wrong length).
    Malformed,
}

/// What a radio device made of a downlink sent to it; see [`Emulator::downlink_verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownlinkVerdict {
    /// The RAN did not transmit it; its `DownstreamResult` had this code.
    NotTransmitted(DownstreamResultCode),
    /// A valid join accept: the device adopted this DevAddr and the derived session keys,
    /// reset its frame counter and sends its next uplinks in that session.
    Joined {
        /// The DevAddr from the join accept.
        dev_addr: DevAddr,
        /// The DevNonce of the join request it answered (the keys are derived from it).
        dev_nonce: u16,
    },
    /// A data downlink the device took: addressed to it, its MIC right, its counter new,
    /// in a window it listens in.
    Received(ReceivedDownlink),
    /// A multicast downlink: what each member of the group on the air made of it.
    Multicast(Vec<(DevEui, DownlinkVerdict)>),
    /// Transmitted, and ignored by the device.
    Ignored(IgnoredReason),
}

/// Counts of played upstreams by verdict; see [`Emulator::mic_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MicStats {
    /// Upstreams played (sent to an upstream connection).
    pub played: u64,
    /// Acked with the true MIC and DevEUI.
    pub solved: u64,
    /// Acked with a wrong MIC or DevEUI.
    pub wrong_acks: u64,
    /// Rejected with `MICFailed`.
    pub mic_failed: u64,
    /// Rejected with another code.
    pub other_rejects: u64,
    /// Answers to an upstream that was already answered (ignored, not counted above).
    pub duplicate_replies: u64,
    /// Acks and rejects naming a transaction the emulator never sent (logged at warn).
    pub unknown_replies: u64,
    /// Upstreams the devices transmitted that the routing table did not route to the
    /// LNS ([`UpstreamVerdict::Withheld`]; not counted in `played`).
    pub withheld: u64,
    /// Join accepts that made a device join.
    pub joins: u64,
    /// Downlinks to radio devices that the RAN transmitted and the device ignored.
    pub ignored_downlinks: u64,
}

impl MicStats {
    /// Played upstreams not answered yet.
    pub fn unanswered(&self) -> u64 {
        self.played
            .saturating_sub(self.solved + self.wrong_acks + self.mic_failed + self.other_rejects)
    }
}

/// A data downlink as the device read it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedDownlink {
    /// The full downlink counter the device took it with.
    pub fcnt_down: u32,
    /// Its FPort, if it had a payload section.
    pub fport: Option<u8>,
    /// Its FRMPayload decrypted; `None` when the device has no AppSKey to decrypt an
    /// application payload with.
    pub frm_payload: Option<Vec<u8>>,
    /// The ACK bit: it acknowledges the device's last confirmed uplink.
    pub ack: bool,
    /// A confirmed downlink.
    pub confirmed: bool,
}

impl ReceivedDownlink {
    pub(crate) fn new(down: &DataDownlink, decrypted: bool) -> Self {
        Self {
            fcnt_down: down.fcnt_down,
            fport: down.fport,
            frm_payload: (decrypted || down.fport == Some(0)).then(|| down.frm_payload.clone()),
            ack: down.ack,
            confirmed: down.confirmed,
        }
    }
}
