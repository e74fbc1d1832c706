//! Solving the RAN's MIC challenge (cargo feature `mic`).
//!
//! The RAN sends each uplink without its MIC and with a list of 2 to 4096 candidate MICs;
//! the LNS proves it owns the device by naming the true one, computed with the device's
//! key. This module computes and verifies LoRaWAN 1.0.x uplink MICs, solves challenges
//! against a [`KeyStore`], and builds correctly signed frames and realistic challenges for
//! tests and the emulator.
//!
//! - [`Solver`] / [`solve`]: which candidate, which device, which frame counter;
//!   [`reply`] turns the outcome into the [`UpstreamReply`] to send.
//! - [`KeyStore`], [`Keys`], [`Session`]: where keys come from; [`AesKey`] holds one and
//!   never prints it.
//! - [`join_request_mic`], [`data_uplink_mic`], [`verify_join_request`],
//!   [`verify_data_uplink`], [`Uplink::parse`]: the LoRaWAN pieces.
//! - [`join_request`], [`DataUplink`], [`upstream_with_challenge`]: frames and challenges.
//! - [`DataDownlink`]: the signed, encrypted data downlink an LNS sends (and the device's
//!   side that reads one); [`encrypt_frm_payload`] reads an uplink's application payload.
//! - [`Keys::next_fcnt_down`]: one downlink counter per downlink, across a worker pool.
//! - [`JoinAccept`], [`SessionKeys`]: the join accept that answers a join request, and the
//!   session keys both sides derive from it.
//!
//! An LNS's upstream loop, on a join request:
//!
//! ```
//! use ran_routing::mic::{self, AesKey, Keys};
//! use ran_routing::{DevEui, JoinEui, UpstreamReply, UpstreamRejectResultCode};
//!
//! let dev_eui = DevEui::new(0x0004a30b001c0530);
//! let app_key: AesKey = "2b7e151628aed2a6abf7158809cf4f3c".parse()?;
//! let keys = Keys::new();
//! keys.set_join_key(dev_eui, app_key.clone());
//!
//! // A join request as the RAN delivers it: its true MIC among 4096 candidates.
//! let frame = mic::join_request(&app_key, JoinEui::new(0x70b3d57ed0000001), dev_eui, 0x1234);
//! let msg = mic::upstream_with_challenge(&frame, 1, vec![dev_eui], 4095, 7)?;
//!
//! let solved = mic::solve(&keys, &msg)?;
//! assert_eq!(solved.dev_eui, dev_eui);
//! assert!(msg.mic_challenge.contains(&solved.mic));
//! // `upstream.send_upstream_ack(msg.transaction_id, solved.dev_eui, solved.mic)`, or the
//! // whole reply in one step, for `upstream.send(reply)`:
//! assert_eq!(mic::Solver::new().reply(&keys, &msg), UpstreamReply::Ack(msg.ack(dev_eui, solved.mic)));
//!
//! // A device the LNS has the wrong key for gets a MICFailed reject.
//! keys.set_join_key(dev_eui, AesKey::new([0; 16]));
//! let outcome = mic::solve(&keys, &msg);
//! assert!(matches!(outcome, Err(mic::MicError::NoMatch { .. })));
//! assert_eq!(
//!     mic::reply(&msg, &outcome),
//!     UpstreamReply::Reject(msg.reject(UpstreamRejectResultCode::MicFailed))
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod build;
mod cipher;
mod compute;
mod downlink;
mod frame;
mod join;
mod key;
mod keys;
mod solver;

pub use build::{
    challenge, join_request, upstream_with_challenge, DataUplink, MAX_CHALLENGE, MIN_CHALLENGE,
};
pub use cipher::{encrypt_frm_payload, Direction};
pub use compute::{
    data_uplink_mic, join_request_mic, split_mic, verify_data_uplink, verify_join_request,
};
pub use downlink::{DataDownlink, MAX_FOPTS_LEN};
pub use frame::{MType, Uplink, MAX_MESSAGE_LEN};
pub use join::{JoinAccept, SessionKeys};
pub use key::{AesKey, ParseKeyError};
pub use keys::{KeyStore, Keys, Session};
pub use solver::{fcnt_candidates, FCntCandidates, FrameKind, Solved, Solver};

use crate::model::{UpstreamMessage, UpstreamRejectResultCode, UpstreamReply};

/// Why a MIC could not be computed, checked, or found among the candidates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MicError {
    /// The payload is shorter than its message type needs (FOpts included).
    #[error("{what} of {len} bytes is too short: it needs at least {min}")]
    TooShort {
        /// What was being read: `"join request"`, `"data uplink"`, ...
        what: &'static str,
        /// The payload's length.
        len: usize,
        /// The least the payload needs.
        min: usize,
    },
    /// The payload is longer than its message type allows.
    #[error("{what} of {len} bytes is too long: it may have at most {max}")]
    TooLong {
        /// What was being read or built.
        what: &'static str,
        /// The payload's length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// Not an uplink with a LoRaWAN 1.0.x MIC: a downlink, a rejoin request or a
    /// proprietary frame.
    #[error("{0} frames are not uplinks with a LoRaWAN 1.0.x MIC")]
    UnsupportedMType(MType),
    /// A major version other than LoRaWAN R1 in the MHDR.
    #[error("LoRaWAN major version {0} is not supported, only R1 (0)")]
    UnsupportedMajor(u8),
    /// A full frame counter whose low 16 bits differ from the frame's FCnt.
    #[error("FCnt {fcnt:#010x} does not end in the frame's FCnt {fcnt16:#06x}")]
    FCntMismatch {
        /// The full counter given.
        fcnt: u32,
        /// The low 16 bits the frame carries.
        fcnt16: u16,
    },
    /// A frame of another message type than the one asked for.
    #[error("expected a {expected} frame, got {got}")]
    WrongMType {
        /// The type asked for.
        expected: MType,
        /// The frame's type.
        got: MType,
    },
    /// A frame or field of a length its type does not allow.
    #[error("{what} of {len} bytes: it must be {expected} bytes")]
    Length {
        /// What was being read or built: `"join accept"`, `"CFList"`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The lengths allowed.
        expected: &'static str,
    },
    /// A field value its bits cannot carry.
    #[error("{field} {value} is out of range 0..={max}")]
    OutOfRange {
        /// The field: `"AppNonce"`, `"NetID"`, `"RxDelay"`.
        field: &'static str,
        /// The value given or received.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// A frame whose MIC is not the one the key gives: the wrong key, or a corrupted or
    /// forged frame.
    #[error("the MIC does not match: wrong key, or a corrupted or forged frame")]
    MicMismatch,
    /// MAC commands in both FOpts and an FPort 0 payload, which LoRaWAN forbids: a
    /// device ignores such a frame.
    #[error("MAC commands in both FOpts and an FPort 0 payload: put them in one place")]
    MacCommandsTwice,
    /// A challenge size outside the API's 2 to 4096 candidates.
    #[error("a MIC challenge has 2 to 4096 candidates, not {candidates}")]
    ChallengeSize {
        /// The candidates asked for, true MIC included.
        candidates: usize,
    },
    /// No key of any candidate device produces a MIC in the challenge: the wrong key, an
    /// unknown device, or a frame counter outside the solver's window.
    #[error(
        "no MIC candidate matches: {guesses} MICs computed with the keys of \
         {devices_with_keys} of {devices} devices"
    )]
    NoMatch {
        /// The message's candidate devices.
        devices: usize,
        /// How many of them the key store has a key for.
        devices_with_keys: usize,
        /// How many MICs were computed (devices times frame counters tried).
        guesses: usize,
    },
}

impl MicError {
    /// The reject code to answer with: `MICFailed` when no candidate matched, `Other`
    /// when the payload could not be checked at all.
    pub fn reject_code(&self) -> UpstreamRejectResultCode {
        match self {
            Self::NoMatch { .. } => UpstreamRejectResultCode::MicFailed,
            _ => UpstreamRejectResultCode::Other,
        }
    }
}

/// Solves `msg` against `keys` with the default [`Solver`].
pub fn solve<K: KeyStore + ?Sized>(keys: &K, msg: &UpstreamMessage) -> Result<Solved, MicError> {
    Solver::new().solve(keys, msg)
}

/// The answer to `msg` for a solve `outcome`: an ack naming the device and the true MIC,
/// or a reject with [`MicError::reject_code`] (an `Other` reject carries the error text,
/// which never contains a key).
///
/// A payload that cannot be checked is logged as a warning, a failed challenge at debug
/// level.
pub fn reply(msg: &UpstreamMessage, outcome: &Result<Solved, MicError>) -> UpstreamReply {
    match outcome {
        Ok(solved) => msg.ack(solved.dev_eui, solved.mic).into(),
        Err(err @ MicError::NoMatch { .. }) => {
            log::debug!(
                "upstream {}: MIC challenge failed: {err}",
                msg.transaction_id
            );
            msg.reject(err.reject_code()).into()
        }
        Err(err) => {
            log::warn!(
                "upstream {}: cannot check the MIC: {err}",
                msg.transaction_id
            );
            msg.reject(err.reject_code())
                .with_message(err.to_string())
                .into()
        }
    }
}

#[cfg(test)]
mod tests {
    /// Bytes from a hex string of test vectors.
    pub(super) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
