//! The MIC challenge solver: which candidate is the true MIC, and whose.

use super::compute::{data_mic_with, join_mic_with};
use super::frame::Uplink;
use super::{Direction, KeyStore, MicError};
use crate::ids::{DevAddr, DevEui, JoinEui};
use crate::model::{UpstreamMessage, UpstreamReply};

/// A solved MIC challenge: what [`UpstreamMessage::ack`] needs, what the frame is, and
/// its frame counter, so a worker acts on it without parsing the frame again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Solved {
    /// The device whose key produced the MIC, one of the message's `dev_euis`.
    pub dev_eui: DevEui,
    /// The true MIC, one of the message's `mic_challenge`.
    pub mic: u32,
    /// The full 32-bit uplink counter that produced it; `None` for a join request. It may
    /// be at or below the session's last counter (a retransmission or a replay): what
    /// to accept is the LNS's decision.
    pub fcnt: Option<u32>,
    /// What the frame is: a join request, or an unconfirmed or confirmed data uplink.
    pub frame: FrameKind,
}

/// What a solved frame is, with the fields an LNS acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// A join request: answer it with a join accept.
    JoinRequest {
        /// The JoinEUI it names.
        join_eui: JoinEui,
        /// Its DevNonce, which the session keys are derived from.
        dev_nonce: u16,
    },
    /// An unconfirmed data uplink.
    UnconfirmedData {
        /// The DevAddr it was sent from.
        dev_addr: DevAddr,
        /// Its FPort, if it has a payload section.
        fport: Option<u8>,
    },
    /// A confirmed data uplink: the device waits for a downlink with the ACK bit.
    ConfirmedData {
        /// The DevAddr it was sent from.
        dev_addr: DevAddr,
        /// Its FPort, if it has a payload section.
        fport: Option<u8>,
    },
}

impl FrameKind {
    /// Whether the device asked for an acknowledgement (a confirmed data uplink).
    pub fn is_confirmed(&self) -> bool {
        matches!(self, Self::ConfirmedData { .. })
    }

    /// The DevAddr a data uplink was sent from; `None` for a join request.
    pub fn dev_addr(&self) -> Option<DevAddr> {
        match self {
            Self::UnconfirmedData { dev_addr, .. } | Self::ConfirmedData { dev_addr, .. } => {
                Some(*dev_addr)
            }
            Self::JoinRequest { .. } => None,
        }
    }
}

/// Solves MIC challenges against a [`KeyStore`].
///
/// For a join request it computes one CMAC per candidate device with a join key. For a
/// data uplink it reconstructs the 32-bit frame counter from the 16 bits on air and the
/// session's last counter, trying up to [`fcnt_window`](Self::fcnt_window) counters per
/// device, nearest to the expected one first and the devices in turn, and stops at the
/// first match. Each CMAC is followed by a scan of the candidates, so solving costs one
/// CMAC plus one pass over at most 4096 numbers when the counter is where it should be.
///
/// ```
/// use ran_routing::mic::{self, AesKey, DataUplink, Keys, Session, Solver};
/// use ran_routing::{DevAddr, DevEui, UpstreamReply};
///
/// let dev_eui = DevEui::new(0x0004a30b001c0530);
/// let nwk_s_key: AesKey = "000102030405060708090a0b0c0d0e0f".parse()?;
/// let keys = Keys::new();
/// keys.set_session(dev_eui, Session::new(nwk_s_key.clone()).with_fcnt_up(0x0001_fffe));
///
/// // What the RAN sends: the frame without MIC, the true MIC hidden among 4095 decoys.
/// let frame = DataUplink::new(DevAddr::new(0x26011bda), 0x0001_ffff)
///     .payload(1, *b"hello")
///     .build(&nwk_s_key)?;
/// let msg = mic::upstream_with_challenge(&frame, 7, vec![dev_eui], 4095, 42)?;
///
/// let solved = Solver::new().solve(&keys, &msg)?;
/// assert_eq!((solved.dev_eui, solved.fcnt), (dev_eui, Some(0x0001_ffff)));
/// keys.record(&solved);
///
/// // Or straight to the answer for the upstream stream:
/// let reply = Solver::new().reply(&keys, &msg);
/// assert_eq!(reply, UpstreamReply::Ack(msg.ack(dev_eui, solved.mic)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solver {
    fcnt_window: usize,
}

impl Default for Solver {
    fn default() -> Self {
        Self::new()
    }
}

impl Solver {
    /// How many 32-bit counters the solver tries per device unless told otherwise: the
    /// four nearest the expected one, which covers a retransmission of the last uplink
    /// and over 65536 lost ones.
    pub const DEFAULT_FCNT_WINDOW: usize = 4;

    /// A solver with the default counter window.
    pub const fn new() -> Self {
        Self {
            fcnt_window: Self::DEFAULT_FCNT_WINDOW,
        }
    }

    /// Tries up to `window` full counters per device (at least 1), in the order of
    /// [`fcnt_candidates`]. A wider window finds devices that lost more uplinks, at the
    /// cost of one CMAC per extra counter and device when nothing matches.
    pub const fn fcnt_window(mut self, window: usize) -> Self {
        self.fcnt_window = if window == 0 { 1 } else { window };
        self
    }

    /// Finds the true MIC of `msg` and the device it belongs to.
    ///
    /// Fails with [`MicError::NoMatch`] when no key of any of `msg.dev_euis` produces a
    /// candidate, and with a parsing error for a payload that is not a LoRaWAN 1.0.x join
    /// request or data uplink. [`MicError::reject_code`] maps either to the reject to send.
    pub fn solve<K: KeyStore + ?Sized>(
        &self,
        keys: &K,
        msg: &UpstreamMessage,
    ) -> Result<Solved, MicError> {
        self.solve_parts(
            keys,
            &msg.dev_euis,
            &msg.phy_payload_no_mic,
            &msg.mic_challenge,
        )
    }

    /// [`solve`](Self::solve) on the parts of a message: candidate devices, PHYPayload
    /// without MIC and candidate MICs.
    pub fn solve_parts<K: KeyStore + ?Sized>(
        &self,
        keys: &K,
        dev_euis: &[DevEui],
        phy_payload_no_mic: &[u8],
        mic_challenge: &[u32],
    ) -> Result<Solved, MicError> {
        match Uplink::parse(phy_payload_no_mic)? {
            Uplink::JoinRequest {
                dev_eui,
                join_eui,
                dev_nonce,
            } => {
                let frame = FrameKind::JoinRequest {
                    join_eui,
                    dev_nonce,
                };
                solve_join(keys, dev_eui, dev_euis, phy_payload_no_mic, mic_challenge).map(
                    |(dev_eui, mic)| Solved {
                        dev_eui,
                        mic,
                        fcnt: None,
                        frame,
                    },
                )
            }
            Uplink::Data {
                confirmed,
                dev_addr,
                fcnt16,
                fport,
                ..
            } => {
                let frame = if confirmed {
                    FrameKind::ConfirmedData { dev_addr, fport }
                } else {
                    FrameKind::UnconfirmedData { dev_addr, fport }
                };
                let mut tries: Vec<_> = dev_euis
                    .iter()
                    .filter_map(|&dev_eui| {
                        let session = keys.session(dev_eui)?;
                        Some((
                            dev_eui,
                            session.nwk_s_key.cmac(),
                            fcnt_candidates(session.fcnt_up, fcnt16),
                        ))
                    })
                    .collect();
                let mut guesses = 0;
                // Round-robin over devices: every device's likeliest counter comes before
                // any device's less likely one.
                for _ in 0..self.fcnt_window {
                    let mut tried = false;
                    for (dev_eui, mac, fcnts) in &mut tries {
                        let Some(fcnt) = fcnts.next() else { continue };
                        tried = true;
                        guesses += 1;
                        let mic = data_mic_with(
                            mac,
                            Direction::Uplink,
                            dev_addr,
                            fcnt,
                            phy_payload_no_mic,
                        );
                        if is_candidate(mic_challenge, mic) {
                            return Ok(Solved {
                                dev_eui: *dev_eui,
                                mic,
                                fcnt: Some(fcnt),
                                frame,
                            });
                        }
                    }
                    if !tried {
                        break;
                    }
                }
                Err(MicError::NoMatch {
                    devices: dev_euis.len(),
                    devices_with_keys: tries.len(),
                    guesses,
                })
            }
        }
    }

    /// The answer to `msg`: an ack with the solved device and MIC, or the reject that
    /// [`MicError::reject_code`] gives. See [`reply`](super::reply).
    pub fn reply<K: KeyStore + ?Sized>(&self, keys: &K, msg: &UpstreamMessage) -> UpstreamReply {
        super::reply(msg, &self.solve(keys, msg))
    }
}

fn solve_join<K: KeyStore + ?Sized>(
    keys: &K,
    frame_dev_eui: DevEui,
    dev_euis: &[DevEui],
    msg: &[u8],
    mic_challenge: &[u32],
) -> Result<(DevEui, u32), MicError> {
    // The DevEUI the frame names goes first: should two devices share an AppKey (test
    // fleets do), the MIC alone cannot tell them apart.
    let named = dev_euis.iter().filter(|&&d| d == frame_dev_eui);
    let others = dev_euis.iter().filter(|&&d| d != frame_dev_eui);
    let mut devices_with_keys = 0;
    for &dev_eui in named.chain(others) {
        let Some(key) = keys.join_key(dev_eui) else {
            continue;
        };
        devices_with_keys += 1;
        let mic = join_mic_with(&mut key.cmac(), msg);
        if is_candidate(mic_challenge, mic) {
            return Ok((dev_eui, mic));
        }
    }
    Err(MicError::NoMatch {
        devices: dev_euis.len(),
        devices_with_keys,
        guesses: devices_with_keys,
    })
}

/// Whether `mic` is among the candidates.
///
/// A linear scan: each computed MIC is looked up once or a few times, and a vectorized
/// pass over at most 4096 `u32`s costs far less than hashing them into a set first.
fn is_candidate(mic_challenge: &[u32], mic: u32) -> bool {
    mic_challenge.contains(&mic)
}

/// The full 32-bit counters an uplink carrying the low 16 bits `fcnt16` may have, nearest
/// first to the counter expected after `last_fcnt_up` (0 for a session with no uplink).
///
/// Counters at or after the expected one come before those behind it at the same
/// distance. With `last_fcnt_up = Some(0x1_fffe)` and `fcnt16 = 0x0003` the first
/// candidates are `0x2_0003` (four uplinks lost across the rollover), `0x1_0003` and
/// `0x3_0003`:
///
/// ```
/// let guesses: Vec<u32> = ran_routing::mic::fcnt_candidates(Some(0x1_fffe), 0x0003)
///     .take(3)
///     .collect();
/// assert_eq!(guesses, [0x2_0003, 0x1_0003, 0x3_0003]);
/// ```
pub fn fcnt_candidates(last_fcnt_up: Option<u32>, fcnt16: u16) -> FCntCandidates {
    let expected = last_fcnt_up.map_or(0, |last| u64::from(last) + 1);
    let mut forward = (expected & !0xFFFF) | u64::from(fcnt16);
    if forward < expected {
        forward += 0x1_0000;
    }
    FCntCandidates {
        expected,
        forward,
        backward: forward.checked_sub(0x1_0000),
    }
}

/// The iterator of [`fcnt_candidates`]: at most 65536 counters, all within `u32`.
#[derive(Debug, Clone)]
pub struct FCntCandidates {
    expected: u64,
    /// The next counter at or after `expected`, if still within `u32`.
    forward: u64,
    /// The next counter before `expected`, if any.
    backward: Option<u64>,
}

impl Iterator for FCntCandidates {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let forward = (self.forward <= u64::from(u32::MAX)).then_some(self.forward);
        let take_forward = match (forward, self.backward) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(f), Some(b)) => f - self.expected <= self.expected - b,
        };
        let next = if take_forward {
            self.forward += 0x1_0000;
            forward
        } else {
            let b = self.backward;
            self.backward = b.and_then(|b| b.checked_sub(0x1_0000));
            b
        };
        // Every value yielded was checked against u32::MAX or is below `expected`, which
        // is at most u32::MAX + 1.
        next.map(|c| c as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fcnt_candidates_nearest_first() {
        let take = |last, fcnt16, n| fcnt_candidates(last, fcnt16).take(n).collect::<Vec<_>>();
        // Fresh session: only forward, from 0.
        assert_eq!(take(None, 5, 3), [5, 0x1_0005, 0x2_0005]);
        // The next counter, then one rollover either side.
        assert_eq!(take(Some(9), 10, 3), [10, 0x1_000a, 0x2_000a]);
        // At equal distance the counter ahead comes first.
        assert_eq!(take(Some(0x3_0009), 10, 3), [0x3_000a, 0x4_000a, 0x2_000a]);
        // A retransmission of the last uplink is one step behind the expected counter.
        assert_eq!(take(Some(0x3_0009), 9, 2), [0x3_0009, 0x4_0009]);
        // Across the 16-bit rollover.
        assert_eq!(take(Some(0xffff), 0, 2), [0x1_0000, 0x2_0000]);
        assert_eq!(take(Some(0x1_ffff), 0xffff, 2), [0x1_ffff, 0x2_ffff]);
        // At the top of the counter space nothing overflows.
        assert_eq!(
            take(Some(u32::MAX - 1), 0xffff, 3),
            [u32::MAX, 0xfffe_ffff, 0xfffd_ffff]
        );
        assert_eq!(take(Some(u32::MAX), 0, 2), [0xffff_0000, 0xfffe_0000]);
        assert_eq!(fcnt_candidates(Some(0x1234_5678), 0).count(), 65536);
        assert_eq!(fcnt_candidates(None, 0).count(), 65536);
        assert_eq!(fcnt_candidates(Some(u32::MAX), 0xffff).count(), 65536);
    }
}
