//! Just enough of a LoRaWAN 1.0.x PHYPayload to compute an uplink's MIC.

use std::fmt;

use super::{Direction, MicError};
use crate::ids::{DevAddr, DevEui, JoinEui};

/// MHDR | JoinEUI | DevEUI | DevNonce: a join request is exactly this long without its MIC.
pub(crate) const JOIN_REQUEST_LEN: usize = 1 + 8 + 8 + 2;
/// MHDR | DevAddr | FCtrl | FCnt: the shortest data frame (no FOpts, no FPort).
pub(crate) const DATA_HEADER_LEN: usize = 1 + 4 + 1 + 2;
/// The longest message the B0 block can describe: its length is a single byte.
pub const MAX_MESSAGE_LEN: usize = 255;

/// The message type, the top three bits of the MHDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MType {
    /// `000`: join request (uplink).
    JoinRequest,
    /// `001`: join accept (downlink).
    JoinAccept,
    /// `010`: unconfirmed data uplink.
    UnconfirmedDataUp,
    /// `011`: unconfirmed data downlink.
    UnconfirmedDataDown,
    /// `100`: confirmed data uplink.
    ConfirmedDataUp,
    /// `101`: confirmed data downlink.
    ConfirmedDataDown,
    /// `110`: rejoin request (LoRaWAN 1.1; RFU in 1.0.x).
    RejoinRequest,
    /// `111`: proprietary.
    Proprietary,
}

impl MType {
    /// The message type of a frame whose first byte (the MHDR) is `mhdr`.
    pub const fn from_mhdr(mhdr: u8) -> Self {
        match mhdr >> 5 {
            0 => Self::JoinRequest,
            1 => Self::JoinAccept,
            2 => Self::UnconfirmedDataUp,
            3 => Self::UnconfirmedDataDown,
            4 => Self::ConfirmedDataUp,
            5 => Self::ConfirmedDataDown,
            6 => Self::RejoinRequest,
            _ => Self::Proprietary,
        }
    }

    /// The MHDR of this type for LoRaWAN R1 (major version 0, RFU bits clear).
    pub const fn mhdr(self) -> u8 {
        (self as u8) << 5
    }
}

impl fmt::Display for MType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The fields of an uplink that its MIC depends on, read from a PHYPayload without its
/// MIC (an [`UpstreamMessage`](crate::UpstreamMessage)'s `phy_payload_no_mic`).
///
/// ```
/// use ran_routing::mic::Uplink;
/// use ran_routing::DevAddr;
///
/// let frame = [0x40, 0xf1, 0x7d, 0xbe, 0x49, 0x00, 0x02, 0x00, 0x01, 0x95, 0x43, 0x78, 0x76];
/// match Uplink::parse(&frame).unwrap() {
///     Uplink::Data { dev_addr, fcnt16, fport, .. } => {
///         assert_eq!(dev_addr, DevAddr::new(0x49be7df1));
///         assert_eq!((fcnt16, fport), (2, Some(1)));
///     }
///     other => panic!("{other:?}"),
/// }
/// assert!(Uplink::parse(&frame[..5]).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uplink {
    /// A join request: MIC keyed with the device's AppKey.
    JoinRequest {
        /// The JoinEUI (AppEUI in LoRaWAN 1.0.0 to 1.0.2).
        join_eui: JoinEui,
        /// The device.
        dev_eui: DevEui,
        /// The device's nonce.
        dev_nonce: u16,
    },
    /// A data uplink: MIC keyed with the session's NwkSKey over a B0 block that carries
    /// the full 32-bit frame counter.
    Data {
        /// Confirmed (`100`) rather than unconfirmed (`010`).
        confirmed: bool,
        /// The device's address in the session.
        dev_addr: DevAddr,
        /// The FCtrl byte; its low nibble is FOptsLen.
        fctrl: u8,
        /// The low 16 bits of the uplink frame counter, as transmitted.
        fcnt16: u16,
        /// The FPort, when the frame has one.
        fport: Option<u8>,
    },
}

impl Uplink {
    /// Reads the MIC-relevant fields of `phy_payload_no_mic`.
    ///
    /// Fails with a typed [`MicError`], never a panic: on an empty or short payload, a
    /// join request of the wrong length, a message longer than [`MAX_MESSAGE_LEN`], a
    /// major version other than LoRaWAN R1, and any type that is not a join request or
    /// data uplink (downlinks, 1.1 rejoin requests, proprietary frames).
    pub fn parse(phy_payload_no_mic: &[u8]) -> Result<Self, MicError> {
        let p = phy_payload_no_mic;
        let &mhdr = p.first().ok_or(MicError::TooShort {
            what: "PHYPayload",
            len: 0,
            min: 1,
        })?;
        let major = mhdr & 0x03;
        if major != 0 {
            return Err(MicError::UnsupportedMajor(major));
        }
        let mtype = MType::from_mhdr(mhdr);
        let confirmed = match mtype {
            MType::JoinRequest => return parse_join_request(p),
            MType::UnconfirmedDataUp => false,
            MType::ConfirmedDataUp => true,
            other => return Err(MicError::UnsupportedMType(other)),
        };
        check_len("data uplink", p.len(), DATA_HEADER_LEN, MAX_MESSAGE_LEN)?;
        let fctrl = p[5];
        let header_len = DATA_HEADER_LEN + usize::from(fctrl & 0x0F);
        check_len("data uplink", p.len(), header_len, MAX_MESSAGE_LEN)?;
        Ok(Self::Data {
            confirmed,
            dev_addr: DevAddr::new(u32::from_le_bytes([p[1], p[2], p[3], p[4]])),
            fctrl,
            fcnt16: u16::from_le_bytes([p[6], p[7]]),
            fport: p.get(header_len).copied(),
        })
    }

    /// The message type.
    pub fn mtype(&self) -> MType {
        match self {
            Self::JoinRequest { .. } => MType::JoinRequest,
            Self::Data {
                confirmed: false, ..
            } => MType::UnconfirmedDataUp,
            Self::Data {
                confirmed: true, ..
            } => MType::ConfirmedDataUp,
        }
    }
}

fn parse_join_request(p: &[u8]) -> Result<Uplink, MicError> {
    check_len("join request", p.len(), JOIN_REQUEST_LEN, JOIN_REQUEST_LEN)?;
    let eui = |at: usize| {
        let mut le = [0u8; 8];
        le.copy_from_slice(&p[at..at + 8]);
        u64::from_le_bytes(le)
    };
    Ok(Uplink::JoinRequest {
        join_eui: JoinEui::new(eui(1)),
        dev_eui: DevEui::new(eui(9)),
        dev_nonce: u16::from_le_bytes([p[17], p[18]]),
    })
}

fn check_len(what: &'static str, len: usize, min: usize, max: usize) -> Result<(), MicError> {
    if len < min {
        Err(MicError::TooShort { what, len, min })
    } else if len > max {
        Err(MicError::TooLong { what, len, max })
    } else {
        Ok(())
    }
}

/// The B0 block that precedes a data frame's message in its CMAC: the direction, the
/// device address and the full 32-bit counter, so a frame signed for one direction or
/// counter epoch never verifies for another.
pub(crate) fn b0(direction: Direction, dev_addr: DevAddr, fcnt: u32, msg_len: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = 0x49;
    // b[1..5] stay zero.
    b[5] = direction.bit();
    b[6..10].copy_from_slice(&dev_addr.get().to_le_bytes());
    b[10..14].copy_from_slice(&fcnt.to_le_bytes());
    b[15] = msg_len;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtype_round_trips_through_mhdr() {
        for bits in 0u8..8 {
            let mtype = MType::from_mhdr(bits << 5 | 0x1c);
            assert_eq!(mtype.mhdr(), bits << 5);
        }
    }

    #[test]
    fn typed_errors() {
        assert!(matches!(
            Uplink::parse(&[]),
            Err(MicError::TooShort { len: 0, .. })
        ));
        assert_eq!(
            Uplink::parse(&[0x41; 20]),
            Err(MicError::UnsupportedMajor(1))
        );
        for mtype in [
            MType::JoinAccept,
            MType::UnconfirmedDataDown,
            MType::ConfirmedDataDown,
            MType::RejoinRequest,
            MType::Proprietary,
        ] {
            assert_eq!(
                Uplink::parse(&[mtype.mhdr(); 20]),
                Err(MicError::UnsupportedMType(mtype))
            );
        }
        assert_eq!(
            Uplink::parse(&[0; 18]),
            Err(MicError::TooShort {
                what: "join request",
                len: 18,
                min: 19
            })
        );
        assert!(matches!(
            Uplink::parse(&[0; 20]),
            Err(MicError::TooLong { len: 20, .. })
        ));
        // FOptsLen 3 announces 3 bytes of FOpts that are not there.
        assert_eq!(
            Uplink::parse(&[0x40, 1, 2, 3, 4, 0x03, 0, 0, 9, 9]),
            Err(MicError::TooShort {
                what: "data uplink",
                len: 10,
                min: 11
            })
        );
        assert!(matches!(
            Uplink::parse(&[0x80; 256]),
            Err(MicError::TooLong { max: 255, .. })
        ));
    }

    #[test]
    fn data_without_port_and_with_fopts() {
        let no_port = [0x40, 4, 3, 2, 1, 0x00, 0x34, 0x12];
        assert_eq!(
            Uplink::parse(&no_port).unwrap(),
            Uplink::Data {
                confirmed: false,
                dev_addr: DevAddr::new(0x01020304),
                fctrl: 0,
                fcnt16: 0x1234,
                fport: None
            }
        );
        let fopts_then_port = [0x80, 4, 3, 2, 1, 0x82, 1, 0, 0xee, 0xee, 7];
        let parsed = Uplink::parse(&fopts_then_port).unwrap();
        assert_eq!(parsed.mtype(), MType::ConfirmedDataUp);
        assert!(matches!(parsed, Uplink::Data { fport: Some(7), .. }));
    }
}
