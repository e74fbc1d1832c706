//! LoRaWAN 1.0.x data downlinks: what an LNS sends a device, signed and encrypted, and
//! the device's side that checks and reads one.

use super::cipher::{encrypt_frm_payload, Direction};
use super::compute::{data_mic_with, split_mic};
use super::frame::{MType, DATA_HEADER_LEN, MAX_MESSAGE_LEN};
use super::{AesKey, MicError};
use crate::ids::DevAddr;

/// The most FOpts bytes a frame carries: FOptsLen is four bits.
pub const MAX_FOPTS_LEN: usize = 15;

const FCTRL_ADR: u8 = 0x80;
const FCTRL_ACK: u8 = 0x20;
const FCTRL_F_PENDING: u8 = 0x10;

/// A LoRaWAN 1.0.x data downlink to build (the LNS's side) or read back (the device's).
///
/// [`build`](Self::build) lays out MHDR (unconfirmed or confirmed data down), FHDR
/// (DevAddr, FCtrl, the low 16 bits of FCntDown, FOpts), FPort and the FRMPayload
/// encrypted under the AppSKey (the NwkSKey on FPort 0), then the MIC: the CMAC under
/// the NwkSKey over the B0 block, which carries the downlink direction and the full
/// 32-bit FCntDown. With no [`payload`](Self::payload) the frame has no FPort.
///
/// An LNS answering a confirmed uplink with an ACK and two bytes for FPort 10, the
/// counter taken from the device's session in the key store:
///
/// ```
/// use ran_routing::mic::{AesKey, DataDownlink, Keys, Session};
/// use ran_routing::{DevAddr, DevEui};
///
/// let dev_eui = DevEui::new(0x0004a30b001c0530);
/// let (nwk_s_key, app_s_key) = (AesKey::new([1; 16]), AesKey::new([2; 16]));
/// let keys = Keys::new();
/// keys.set_session(dev_eui, Session::new(nwk_s_key).with_app_s_key(app_s_key));
///
/// let (session, fcnt_down) = keys.next_fcnt_down(dev_eui).expect("a session");
/// let addr = DevAddr::new(0x26011bda);
/// let frame = DataDownlink::new(addr, fcnt_down)
///     .ack(true)
///     .payload(10, [0x01, 0x02])
///     .build(&session.nwk_s_key, session.app_s_key.as_ref().unwrap())?;
/// assert_eq!(frame[0], 0x60); // unconfirmed data down
///
/// // The device's side: it checks the MIC with the full counter and decrypts.
/// let read = DataDownlink::decrypt(&session.nwk_s_key, session.app_s_key.as_ref().unwrap(), &frame, 0)?;
/// assert_eq!((read.ack, read.fport, read.frm_payload.as_slice()), (true, Some(10), &[1u8, 2][..]));
/// // The next downlink gets the next counter, from any thread sharing the store.
/// assert_eq!(keys.next_fcnt_down(dev_eui).unwrap().1, 1);
/// # Ok::<(), ran_routing::mic::MicError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataDownlink {
    /// The device's address in its session.
    pub dev_addr: DevAddr,
    /// The full 32-bit downlink counter; the frame carries its low 16 bits.
    pub fcnt_down: u32,
    /// A confirmed (the device acks it) rather than unconfirmed downlink.
    pub confirmed: bool,
    /// The ACK bit: this downlink acknowledges the device's last confirmed uplink.
    pub ack: bool,
    /// The ADR bit: the network controls the device's data rate.
    pub adr: bool,
    /// The FPending bit: the network has more to send.
    pub f_pending: bool,
    /// The FPort, when the frame has a payload section.
    pub fport: Option<u8>,
    /// The FRMPayload in clear, sent only with an FPort.
    pub frm_payload: Vec<u8>,
    /// MAC commands piggybacked in the FHDR, at most [`MAX_FOPTS_LEN`] bytes (private so
    /// the bound holds).
    fopts: Vec<u8>,
}

impl DataDownlink {
    /// An unconfirmed downlink to `dev_addr` with counter `fcnt_down`, every FCtrl bit
    /// clear, no FOpts, no FPort and no payload.
    pub fn new(dev_addr: DevAddr, fcnt_down: u32) -> Self {
        Self {
            dev_addr,
            fcnt_down,
            confirmed: false,
            ack: false,
            adr: false,
            f_pending: false,
            fport: None,
            frm_payload: Vec::new(),
            fopts: Vec::new(),
        }
    }

    /// Makes the downlink confirmed or unconfirmed.
    pub fn confirmed(mut self, confirmed: bool) -> Self {
        self.confirmed = confirmed;
        self
    }

    /// Sets the ACK bit, acknowledging the device's last confirmed uplink.
    pub fn ack(mut self, ack: bool) -> Self {
        self.ack = ack;
        self
    }

    /// Sets the ADR bit.
    pub fn adr(mut self, adr: bool) -> Self {
        self.adr = adr;
        self
    }

    /// Sets the FPending bit.
    pub fn f_pending(mut self, f_pending: bool) -> Self {
        self.f_pending = f_pending;
        self
    }

    /// Sets the MAC commands carried in the FHDR (FOpts), sent in clear.
    ///
    /// # Errors
    ///
    /// [`MicError::TooLong`] for more than [`MAX_FOPTS_LEN`] bytes: send longer MAC
    /// commands as the payload of FPort 0 instead.
    pub fn fopts(mut self, fopts: impl Into<Vec<u8>>) -> Result<Self, MicError> {
        let fopts = fopts.into();
        if fopts.len() > MAX_FOPTS_LEN {
            return Err(MicError::TooLong {
                what: "FOpts",
                len: fopts.len(),
                max: MAX_FOPTS_LEN,
            });
        }
        self.fopts = fopts;
        Ok(self)
    }

    /// The MAC commands carried in the FHDR (FOpts).
    pub fn mac_commands(&self) -> &[u8] {
        &self.fopts
    }

    /// Sets the FPort and the FRMPayload in clear (which may be empty). FPort 0 carries
    /// MAC commands, encrypted under the NwkSKey.
    pub fn payload(mut self, fport: u8, frm_payload: impl Into<Vec<u8>>) -> Self {
        self.fport = Some(fport);
        self.frm_payload = frm_payload.into();
        self
    }

    /// The frame, signed with `nwk_s_key`, its FRMPayload encrypted under `app_s_key`
    /// (under `nwk_s_key` on FPort 0).
    ///
    /// # Errors
    ///
    /// [`MicError::TooLong`] when the frame without MIC would exceed [`MAX_MESSAGE_LEN`]
    /// bytes (send less per downlink), and [`MicError::MacCommandsTwice`] for FOpts with
    /// FPort 0 (LoRaWAN allows MAC commands in one place per frame: put them in one).
    pub fn build(&self, nwk_s_key: &AesKey, app_s_key: &AesKey) -> Result<Vec<u8>, MicError> {
        if self.fport == Some(0) && !self.fopts.is_empty() {
            return Err(MicError::MacCommandsTwice);
        }
        let len = DATA_HEADER_LEN
            + self.fopts.len()
            + self.fport.map_or(0, |_| 1 + self.frm_payload.len());
        if len > MAX_MESSAGE_LEN {
            return Err(MicError::TooLong {
                what: "data downlink",
                len,
                max: MAX_MESSAGE_LEN,
            });
        }
        let mtype = if self.confirmed {
            MType::ConfirmedDataDown
        } else {
            MType::UnconfirmedDataDown
        };
        let fctrl = self.fctrl();
        let mut frame = Vec::with_capacity(len + 4);
        frame.push(mtype.mhdr());
        frame.extend_from_slice(&self.dev_addr.get().to_le_bytes());
        frame.push(fctrl);
        frame.extend_from_slice(&(self.fcnt_down as u16).to_le_bytes());
        frame.extend_from_slice(&self.fopts);
        if let Some(fport) = self.fport {
            let key = if fport == 0 { nwk_s_key } else { app_s_key };
            frame.push(fport);
            frame.extend(encrypt_frm_payload(
                key,
                self.dev_addr,
                self.fcnt_down,
                Direction::Downlink,
                &self.frm_payload,
            ));
        }
        let mic = data_mic_with(
            &mut nwk_s_key.cmac(),
            Direction::Downlink,
            self.dev_addr,
            self.fcnt_down,
            &frame,
        );
        frame.extend_from_slice(&mic.to_be_bytes());
        Ok(frame)
    }

    /// The DevAddr and the low 16 bits of FCntDown of a data downlink, read without keys:
    /// what a device looks at before it checks the MIC with the full counter it infers.
    ///
    /// # Errors
    ///
    /// [`MicError::WrongMType`] for a frame that is not a data downlink, and the length
    /// errors of [`decrypt`](Self::decrypt).
    pub fn addressee(phy_payload: &[u8]) -> Result<(DevAddr, u16), MicError> {
        let (msg, _) = split_mic(phy_payload)?;
        let header = Header::parse(msg)?;
        Ok((header.dev_addr, header.fcnt16))
    }

    /// The device's side: checks the MIC of `phy_payload` under `nwk_s_key` with the
    /// full counter `fcnt_down`, and decrypts its FRMPayload.
    ///
    /// # Errors
    ///
    /// [`MicError::FCntMismatch`] when `fcnt_down` does not end in the frame's 16 bits,
    /// [`MicError::MicMismatch`] for another key or counter epoch (or a forged frame),
    /// [`MicError::WrongMType`] for a frame that is not a data downlink,
    /// [`MicError::UnsupportedMajor`], [`MicError::TooShort`] and [`MicError::TooLong`]
    /// for a malformed one.
    pub fn decrypt(
        nwk_s_key: &AesKey,
        app_s_key: &AesKey,
        phy_payload: &[u8],
        fcnt_down: u32,
    ) -> Result<Self, MicError> {
        let (msg, mic) = split_mic(phy_payload)?;
        let header = Header::parse(msg)?;
        if fcnt_down as u16 != header.fcnt16 {
            return Err(MicError::FCntMismatch {
                fcnt: fcnt_down,
                fcnt16: header.fcnt16,
            });
        }
        let expected = data_mic_with(
            &mut nwk_s_key.cmac(),
            Direction::Downlink,
            header.dev_addr,
            fcnt_down,
            msg,
        );
        if expected != mic {
            return Err(MicError::MicMismatch);
        }
        let fctrl = header.fctrl;
        let fopts_end = DATA_HEADER_LEN + usize::from(fctrl & 0x0F);
        let fport = msg.get(fopts_end).copied();
        let frm_payload = match fport {
            Some(port) => encrypt_frm_payload(
                if port == 0 { nwk_s_key } else { app_s_key },
                header.dev_addr,
                fcnt_down,
                Direction::Downlink,
                &msg[fopts_end + 1..],
            ),
            None => Vec::new(),
        };
        Ok(Self {
            dev_addr: header.dev_addr,
            fcnt_down,
            confirmed: header.confirmed,
            ack: fctrl & FCTRL_ACK != 0,
            adr: fctrl & FCTRL_ADR != 0,
            f_pending: fctrl & FCTRL_F_PENDING != 0,
            fport,
            frm_payload,
            fopts: msg[DATA_HEADER_LEN..fopts_end].to_vec(),
        })
    }

    fn fctrl(&self) -> u8 {
        let bit = |on: bool, bit: u8| if on { bit } else { 0 };
        bit(self.adr, FCTRL_ADR)
            | bit(self.ack, FCTRL_ACK)
            | bit(self.f_pending, FCTRL_F_PENDING)
            // At most 15 bytes, checked by `fopts`.
            | self.fopts.len() as u8
    }
}

/// The FHDR fields of a data downlink without its MIC.
struct Header {
    confirmed: bool,
    dev_addr: DevAddr,
    fctrl: u8,
    fcnt16: u16,
}

impl Header {
    fn parse(msg: &[u8]) -> Result<Self, MicError> {
        let &mhdr = msg.first().ok_or(MicError::TooShort {
            what: "data downlink",
            len: 0,
            min: DATA_HEADER_LEN,
        })?;
        if mhdr & 0x03 != 0 {
            return Err(MicError::UnsupportedMajor(mhdr & 0x03));
        }
        let confirmed = match MType::from_mhdr(mhdr) {
            MType::UnconfirmedDataDown => false,
            MType::ConfirmedDataDown => true,
            got => {
                return Err(MicError::WrongMType {
                    expected: MType::UnconfirmedDataDown,
                    got,
                })
            }
        };
        let too_short = |min| MicError::TooShort {
            what: "data downlink",
            len: msg.len(),
            min,
        };
        if msg.len() < DATA_HEADER_LEN {
            return Err(too_short(DATA_HEADER_LEN));
        }
        if msg.len() > MAX_MESSAGE_LEN {
            return Err(MicError::TooLong {
                what: "data downlink",
                len: msg.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let fctrl = msg[5];
        let with_fopts = DATA_HEADER_LEN + usize::from(fctrl & 0x0F);
        if msg.len() < with_fopts {
            return Err(too_short(with_fopts));
        }
        Ok(Self {
            confirmed,
            dev_addr: DevAddr::new(u32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]])),
            fctrl,
            fcnt16: u16::from_le_bytes([msg[6], msg[7]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_every_field() {
        let (nwk, app) = (AesKey::new([3; 16]), AesKey::new([4; 16]));
        let down = DataDownlink::new(DevAddr::new(0x0102_0304), 0x0003_0007)
            .confirmed(true)
            .ack(true)
            .adr(true)
            .f_pending(true)
            .fopts([0x02, 0x07, 0x01])
            .unwrap()
            .payload(42, b"payload".to_vec());
        let frame = down.build(&nwk, &app).unwrap();
        assert_eq!(frame[5], 0x80 | 0x20 | 0x10 | 3);
        assert_eq!(
            DataDownlink::decrypt(&nwk, &app, &frame, 0x0003_0007),
            Ok(down)
        );
        assert_eq!(
            DataDownlink::addressee(&frame),
            Ok((DevAddr::new(0x0102_0304), 7))
        );
        assert_eq!(
            DataDownlink::decrypt(&nwk, &app, &frame, 0x0004_0007),
            Err(MicError::MicMismatch)
        );
        assert_eq!(
            DataDownlink::decrypt(&nwk, &app, &frame, 8),
            Err(MicError::FCntMismatch { fcnt: 8, fcnt16: 7 })
        );
    }

    #[test]
    fn typed_errors() {
        let key = AesKey::new([0; 16]);
        assert!(matches!(
            DataDownlink::new(DevAddr::new(1), 0).fopts(vec![0; 16]),
            Err(MicError::TooLong {
                what: "FOpts",
                len: 16,
                max: 15
            })
        ));
        let twice = DataDownlink::new(DevAddr::new(1), 0)
            .fopts([2])
            .unwrap()
            .payload(0, [3]);
        assert_eq!(twice.build(&key, &key), Err(MicError::MacCommandsTwice));
        let long = DataDownlink::new(DevAddr::new(1), 0).payload(1, vec![0; 247]);
        assert!(matches!(
            long.build(&key, &key),
            Err(MicError::TooLong { len: 256, .. })
        ));
        let up = [0x40, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert!(matches!(
            DataDownlink::addressee(&up),
            Err(MicError::WrongMType {
                got: MType::UnconfirmedDataUp,
                ..
            })
        ));
        // FOptsLen 5 with 2 bytes after the header.
        let short = [0x60, 1, 0, 0, 0, 5, 0, 0, 1, 2, 9, 9, 9, 9];
        assert!(matches!(
            DataDownlink::addressee(&short),
            Err(MicError::TooShort { min: 13, .. })
        ));
        assert!(DataDownlink::addressee(&[0x60]).is_err());
    }
}
