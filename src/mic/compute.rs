//! LoRaWAN 1.0.x uplink MICs: AES-128 CMAC, first four bytes of the tag.

use aes::Aes128;
use cmac::{Cmac, Mac};

use super::frame::{b0, Uplink};
use super::{AesKey, Direction, MicError};
use crate::ids::DevAddr;

/// The MIC of a join request: `cmac(AppKey, MHDR | JoinEUI | DevEUI | DevNonce)`.
///
/// `phy_payload_no_mic` is the 19-byte frame without its MIC. The MIC is the number `c`
/// whose `c.to_be_bytes()` are the frame's last four bytes, as in a MIC challenge.
pub fn join_request_mic(app_key: &AesKey, phy_payload_no_mic: &[u8]) -> Result<u32, MicError> {
    match Uplink::parse(phy_payload_no_mic)? {
        Uplink::JoinRequest { .. } => Ok(join_mic_with(&mut app_key.cmac(), phy_payload_no_mic)),
        other => Err(MicError::UnsupportedMType(other.mtype())),
    }
}

/// The MIC of a data uplink: `cmac(NwkSKey, B0 | msg)`, where B0 carries the device
/// address and the full 32-bit frame counter `fcnt`.
///
/// `fcnt` must end in the 16 bits the frame carries, or this fails with
/// [`MicError::FCntMismatch`]: such a pair can never be a device's true MIC.
pub fn data_uplink_mic(
    nwk_s_key: &AesKey,
    phy_payload_no_mic: &[u8],
    fcnt: u32,
) -> Result<u32, MicError> {
    match Uplink::parse(phy_payload_no_mic)? {
        Uplink::Data {
            dev_addr, fcnt16, ..
        } => {
            if fcnt as u16 != fcnt16 {
                return Err(MicError::FCntMismatch { fcnt, fcnt16 });
            }
            Ok(data_mic_with(
                &mut nwk_s_key.cmac(),
                Direction::Uplink,
                dev_addr,
                fcnt,
                phy_payload_no_mic,
            ))
        }
        other => Err(MicError::UnsupportedMType(other.mtype())),
    }
}

/// Whether a full join request frame (MIC included) carries the MIC `app_key` gives.
pub fn verify_join_request(app_key: &AesKey, phy_payload: &[u8]) -> Result<bool, MicError> {
    let (msg, mic) = split_mic(phy_payload)?;
    Ok(join_request_mic(app_key, msg)? == mic)
}

/// Whether a full data uplink frame (MIC included) carries the MIC `nwk_s_key` gives
/// with the full frame counter `fcnt`.
pub fn verify_data_uplink(
    nwk_s_key: &AesKey,
    phy_payload: &[u8],
    fcnt: u32,
) -> Result<bool, MicError> {
    let (msg, mic) = split_mic(phy_payload)?;
    Ok(data_uplink_mic(nwk_s_key, msg, fcnt)? == mic)
}

/// Splits a full frame into the payload without MIC and its MIC as a challenge number
/// (the `c` with `c.to_be_bytes()` equal to the last four bytes).
///
/// Fails only on a frame shorter than four bytes.
pub fn split_mic(phy_payload: &[u8]) -> Result<(&[u8], u32), MicError> {
    let at = phy_payload.len().checked_sub(4).ok_or(MicError::TooShort {
        what: "PHYPayload with MIC",
        len: phy_payload.len(),
        min: 5,
    })?;
    let (msg, mic) = phy_payload.split_at(at);
    Ok((msg, u32::from_be_bytes([mic[0], mic[1], mic[2], mic[3]])))
}

/// A join request MIC with an already keyed CMAC, which is left ready for reuse.
pub(crate) fn join_mic_with(mac: &mut Cmac<Aes128>, msg: &[u8]) -> u32 {
    mac.update(msg);
    first_four(mac)
}

/// A data frame MIC with an already keyed CMAC, which is left ready for reuse.
///
/// `msg` must be at most [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN) bytes (its length
/// is one byte of B0), as every parser and builder here ensures.
pub(crate) fn data_mic_with(
    mac: &mut Cmac<Aes128>,
    direction: Direction,
    dev_addr: DevAddr,
    fcnt: u32,
    msg: &[u8],
) -> u32 {
    debug_assert!(msg.len() <= super::MAX_MESSAGE_LEN);
    mac.update(&b0(direction, dev_addr, fcnt, msg.len() as u8));
    mac.update(msg);
    first_four(mac)
}

fn first_four(mac: &mut Cmac<Aes128>) -> u32 {
    let tag = mac.finalize_reset().into_bytes();
    u32::from_be_bytes([tag[0], tag[1], tag[2], tag[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mic::tests::hex;

    /// RFC 4493, section 4: the CMAC primitive itself, so a wrong MIC below points at the
    /// framing rather than the cipher.
    #[test]
    fn rfc4493_examples() {
        let key: AesKey = "2b7e151628aed2a6abf7158809cf4f3c".parse().unwrap();
        let m = hex(concat!(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
        ));
        let mut mac = key.cmac();
        for (len, tag) in [
            (0, "bb1d6929e95937287fa37d129b756746"),
            (16, "070a16b46b4d4144f79bdd9dd04a287c"),
            (40, "dfa66747de9ae63030ca32611497c827"),
            (64, "51f0bebf7e3b9d92fc49741779363cfe"),
        ] {
            mac.update(&m[..len]);
            assert_eq!(mac.finalize_reset().into_bytes().to_vec(), hex(tag));
        }
    }

    #[test]
    fn fcnt_must_end_in_the_frame_counter() {
        let key = AesKey::new([7; 16]);
        let frame = [0x40, 4, 3, 2, 1, 0, 0x05, 0x00, 1, 0xaa];
        assert!(data_uplink_mic(&key, &frame, 0x0001_0005).is_ok());
        assert_eq!(
            data_uplink_mic(&key, &frame, 0x0001_0006),
            Err(MicError::FCntMismatch {
                fcnt: 0x0001_0006,
                fcnt16: 5
            })
        );
        assert_eq!(
            join_request_mic(&key, &frame),
            Err(MicError::UnsupportedMType(
                super::super::MType::UnconfirmedDataUp
            ))
        );
        assert!(matches!(
            verify_data_uplink(&key, &[1, 2, 3], 0),
            Err(MicError::TooShort { len: 3, .. })
        ));
    }
}
