//! Uplink frames with correct MICs, and MIC challenges built around them: what a device
//! and the RAN would produce, for tests, examples and the emulator.

use std::collections::HashSet;

use super::cipher::{encrypt_frm_payload, Direction};
use super::compute::{data_mic_with, join_mic_with, split_mic};
use super::frame::{MType, DATA_HEADER_LEN, MAX_MESSAGE_LEN};
use super::{AesKey, MicError};
use crate::ids::{DevAddr, DevEui, JoinEui};
use crate::model::{LoRaModulation, UpstreamMessage, UpstreamRadio};
use crate::wire::PROTOCOL_VERSION;

/// The fewest candidates a MIC challenge has.
pub const MIN_CHALLENGE: usize = 2;
/// The most candidates a MIC challenge has.
pub const MAX_CHALLENGE: usize = 4096;

/// A join request frame, MIC included, as a device with `app_key` sends it.
///
/// ```
/// use ran_routing::mic::{self, AesKey};
/// use ran_routing::{DevEui, JoinEui};
///
/// let app_key = AesKey::new([0x2b; 16]);
/// let frame = mic::join_request(&app_key, JoinEui::new(1), DevEui::new(2), 0x1234);
/// assert_eq!(frame.len(), 23);
/// assert!(mic::verify_join_request(&app_key, &frame).unwrap());
/// ```
pub fn join_request(
    app_key: &AesKey,
    join_eui: JoinEui,
    dev_eui: DevEui,
    dev_nonce: u16,
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(23);
    frame.push(MType::JoinRequest.mhdr());
    frame.extend_from_slice(&join_eui.get().to_le_bytes());
    frame.extend_from_slice(&dev_eui.get().to_le_bytes());
    frame.extend_from_slice(&dev_nonce.to_le_bytes());
    let mic = join_mic_with(&mut app_key.cmac(), &frame);
    frame.extend_from_slice(&mic.to_be_bytes());
    frame
}

/// A data uplink to build: header fields and payload, without FOpts.
///
/// With an [`app_s_key`](Self::app_s_key) the FRMPayload is encrypted as a device does
/// (under the AppSKey, or the NwkSKey on FPort 0); without one it goes on air as given.
/// The MIC covers the bytes on air either way.
///
/// ```
/// use ran_routing::mic::{self, AesKey, DataUplink};
/// use ran_routing::DevAddr;
///
/// let nwk_s_key = AesKey::new([0x44; 16]);
/// let frame = DataUplink::new(DevAddr::new(0x26011bda), 70_000)
///     .confirmed(true)
///     .payload(2, [1, 2, 3])
///     .build(&nwk_s_key)?;
/// assert_eq!(frame[0], 0x80);
/// assert!(mic::verify_data_uplink(&nwk_s_key, &frame, 70_000)?);
/// # Ok::<(), mic::MicError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUplink {
    /// The device's address.
    pub dev_addr: DevAddr,
    /// The full 32-bit uplink counter; the frame carries its low 16 bits.
    pub fcnt: u32,
    /// A confirmed rather than unconfirmed uplink.
    pub confirmed: bool,
    /// The FPort, when the frame has a payload section.
    pub fport: Option<u8>,
    /// The FRMPayload in clear, sent only with an FPort.
    pub frm_payload: Vec<u8>,
    /// The AppSKey that encrypts the FRMPayload; `None` sends it as given.
    pub app_s_key: Option<AesKey>,
}

impl DataUplink {
    /// An unconfirmed uplink from `dev_addr` with counter `fcnt`, no FPort and no payload.
    pub fn new(dev_addr: DevAddr, fcnt: u32) -> Self {
        Self {
            dev_addr,
            fcnt,
            confirmed: false,
            fport: None,
            frm_payload: Vec::new(),
            app_s_key: None,
        }
    }

    /// Makes the uplink confirmed or unconfirmed.
    pub fn confirmed(mut self, confirmed: bool) -> Self {
        self.confirmed = confirmed;
        self
    }

    /// Sets the FPort and the FRMPayload (which may be empty).
    pub fn payload(mut self, fport: u8, frm_payload: impl Into<Vec<u8>>) -> Self {
        self.fport = Some(fport);
        self.frm_payload = frm_payload.into();
        self
    }

    /// Encrypts the FRMPayload under `app_s_key` (FPort 1 to 255) or the NwkSKey given to
    /// [`build`](Self::build) (FPort 0), as a device in a session does.
    pub fn app_s_key(mut self, app_s_key: AesKey) -> Self {
        self.app_s_key = Some(app_s_key);
        self
    }

    /// The frame, MIC included, signed with `nwk_s_key`.
    ///
    /// # Errors
    ///
    /// [`MicError::TooLong`] when the frame without MIC would exceed [`MAX_MESSAGE_LEN`]
    /// bytes: send a shorter payload.
    pub fn build(&self, nwk_s_key: &AesKey) -> Result<Vec<u8>, MicError> {
        let len = DATA_HEADER_LEN + self.fport.map_or(0, |_| 1 + self.frm_payload.len());
        if len > MAX_MESSAGE_LEN {
            return Err(MicError::TooLong {
                what: "data uplink",
                len,
                max: MAX_MESSAGE_LEN,
            });
        }
        let mtype = if self.confirmed {
            MType::ConfirmedDataUp
        } else {
            MType::UnconfirmedDataUp
        };
        let mut frame = Vec::with_capacity(len + 4);
        frame.push(mtype.mhdr());
        frame.extend_from_slice(&self.dev_addr.get().to_le_bytes());
        frame.push(0); // FCtrl: no ADR, no ACK, FOptsLen 0.
        frame.extend_from_slice(&(self.fcnt as u16).to_le_bytes());
        if let Some(fport) = self.fport {
            frame.push(fport);
            match &self.app_s_key {
                Some(app_s_key) => frame.extend(encrypt_frm_payload(
                    if fport == 0 { nwk_s_key } else { app_s_key },
                    self.dev_addr,
                    self.fcnt,
                    Direction::Uplink,
                    &self.frm_payload,
                )),
                None => frame.extend_from_slice(&self.frm_payload),
            }
        }
        let mic = data_mic_with(
            &mut nwk_s_key.cmac(),
            Direction::Uplink,
            self.dev_addr,
            self.fcnt,
            &frame,
        );
        frame.extend_from_slice(&mic.to_be_bytes());
        Ok(frame)
    }
}

/// An upstream message as the RAN would send it for the full frame `phy_payload`: the
/// frame without its MIC, and the true MIC at a random position among `decoys` distinct
/// random candidates.
///
/// `seed` makes the challenge reproducible: the same arguments give the same message.
/// The radio is a plausible EU868 SF7 reception; the fields are public to change it.
/// `decoys` must be 1 to 4095, so the challenge has [`MIN_CHALLENGE`] to
/// [`MAX_CHALLENGE`] candidates as the API specifies. The frame is not parsed, so
/// malformed frames can be wrapped too; it needs at least one byte before its MIC.
///
/// ```
/// use ran_routing::mic::{self, AesKey};
/// use ran_routing::{DevEui, JoinEui};
///
/// let frame = mic::join_request(&AesKey::new([1; 16]), JoinEui::new(1), DevEui::new(2), 7);
/// let msg = mic::upstream_with_challenge(&frame, 1, vec![DevEui::new(2)], 99, 5)?;
/// assert_eq!(msg.mic_challenge.len(), 100);
/// assert_eq!(msg.phy_payload_with_mic(mic::split_mic(&frame)?.1), frame);
/// # Ok::<(), mic::MicError>(())
/// ```
pub fn upstream_with_challenge(
    phy_payload: &[u8],
    transaction_id: u64,
    dev_euis: Vec<DevEui>,
    decoys: usize,
    seed: u64,
) -> Result<UpstreamMessage, MicError> {
    let (payload, mic) = split_mic(phy_payload)?;
    if payload.is_empty() {
        return Err(MicError::TooShort {
            what: "PHYPayload with MIC",
            len: phy_payload.len(),
            min: 5,
        });
    }
    Ok(UpstreamMessage {
        protocol_version: PROTOCOL_VERSION,
        transaction_id,
        outdated: None,
        dev_euis,
        radio: UpstreamRadio {
            frequency: 868_100_000,
            modulation: LoRaModulation::new(7, 125_000).into(),
            rssi: -67.0,
            snr: 8.5,
        },
        phy_payload_no_mic: payload.to_vec(),
        mic_challenge: challenge(mic, decoys, seed)?,
        gps: None,
    })
}

/// `true_mic` at a random position among `decoys` (1 to 4095) distinct random candidates,
/// reproducibly for a given `seed`.
pub fn challenge(true_mic: u32, decoys: usize, seed: u64) -> Result<Vec<u32>, MicError> {
    let candidates = decoys.saturating_add(1);
    if !(MIN_CHALLENGE..=MAX_CHALLENGE).contains(&candidates) {
        return Err(MicError::ChallengeSize { candidates });
    }
    let mut rng = XorShift64::new(seed);
    let mut seen = HashSet::with_capacity(candidates);
    seen.insert(true_mic);
    let mut out = Vec::with_capacity(candidates);
    while out.len() < decoys {
        let decoy = rng.next_u32();
        if seen.insert(decoy) {
            out.push(decoy);
        }
    }
    out.insert(rng.below(candidates), true_mic);
    Ok(out)
}

/// xorshift64* (Vigna 2016): small, fast and good enough to scatter decoys; not for
/// anything secret.
#[derive(Debug, Clone)]
pub(crate) struct XorShift64(u64);

impl XorShift64 {
    /// A generator whose stream depends on every bit of `seed`; any seed, 0 included,
    /// works (a splitmix64 step spreads it and the state is never zero).
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        // The high half of xorshift64* is the better half.
        (self.next_u64() >> 32) as u32
    }

    /// A number in `0..n`, for `n` of at most `u32::MAX` (multiply-shift, no modulo bias
    /// worth the name at these sizes).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u64::from(self.next_u32()) * n as u64) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_is_distinct_reproducible_and_hides_the_mic_anywhere() {
        let a = challenge(0xdead_beef, 4095, 1).unwrap();
        assert_eq!(a, challenge(0xdead_beef, 4095, 1).unwrap());
        assert_ne!(a, challenge(0xdead_beef, 4095, 2).unwrap());
        assert_eq!(a.len(), 4096);
        assert_eq!(a.iter().collect::<HashSet<_>>().len(), 4096);
        assert_eq!(a.iter().filter(|&&c| c == 0xdead_beef).count(), 1);
        let positions: HashSet<usize> = (0..200)
            .map(|seed| {
                let c = challenge(7, 3, seed).unwrap();
                c.iter().position(|&m| m == 7).unwrap()
            })
            .collect();
        assert_eq!(positions.len(), 4, "every slot is used: {positions:?}");
        assert_eq!(challenge(7, 1, 0).unwrap().len(), 2);
        assert_eq!(
            challenge(7, 0, 0),
            Err(MicError::ChallengeSize { candidates: 1 })
        );
        assert_eq!(
            challenge(7, 4096, 0),
            Err(MicError::ChallengeSize { candidates: 4097 })
        );
        assert!(challenge(7, usize::MAX, 0).is_err());
    }

    #[test]
    fn xorshift_seed_zero_is_not_stuck() {
        let mut rng = XorShift64::new(0);
        let first = rng.next_u64();
        assert_ne!(first, 0);
        assert_ne!(first, rng.next_u64());
    }

    #[test]
    fn builder_rejects_oversized_frames() {
        let key = AesKey::new([0; 16]);
        let up = |n: usize| DataUplink::new(DevAddr::new(1), 1).payload(1, vec![0; n]);
        assert_eq!(up(246).build(&key).unwrap().len(), 255 + 4);
        assert_eq!(
            up(247).build(&key),
            Err(MicError::TooLong {
                what: "data uplink",
                len: 256,
                max: 255
            })
        );
    }
}
