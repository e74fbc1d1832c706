//! LoRaWAN 1.0.x join accepts and the session keys they establish.
//!
//! The network answers a join request with a join accept: the AppNonce it picked, its
//! NetID, the device's new DevAddr and radio settings, signed and encrypted with the
//! device's AppKey. Both sides then derive the session keys from the two nonces; no
//! session key is ever sent.

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::Aes128;
use cmac::Mac;

use super::frame::MType;
use super::{AesKey, MicError, Session};
use crate::ids::DevAddr;

/// A join accept's length without CFList: MHDR, 12 bytes of fields, MIC.
const LEN_WITHOUT_CF_LIST: usize = 1 + 12 + 4;
/// A join accept's length with a CFList.
const LEN_WITH_CF_LIST: usize = LEN_WITHOUT_CF_LIST + CF_LIST_LEN;
/// The CFList's length.
const CF_LIST_LEN: usize = 16;
/// The largest value a 3-byte field (AppNonce, NetID) holds.
const MAX_U24: u32 = 0x00ff_ffff;
/// The largest RxDelay: the field's low four bits (its high four are RFU).
const MAX_RX_DELAY: u8 = 15;

/// A LoRaWAN 1.0.x join accept: what the network grants a device that asked to join.
///
/// Built with [`JoinAccept::new`] and the `with_*` setters, which check every field, so
/// [`encrypt`](Self::encrypt) cannot fail. [`decrypt`](Self::decrypt) is the device's
/// side: it checks the MIC and reads the fields back. Multi-byte fields are numbers
/// here and little-endian on air, as in [`join_request`](super::join_request).
///
/// The network's side, answering a join request with DevNonce `0xcc85`:
///
/// ```
/// use ran_routing::mic::{AesKey, JoinAccept, Keys};
/// use ran_routing::{DevAddr, DevEui};
///
/// let app_key: AesKey = "b6b53f4a168a7a88bdf7ea135ce9cfca".parse()?;
/// let accept = JoinAccept::new(0xe5063a, 0x000013, DevAddr::new(0x26012e43))?
///     .with_dl_settings(0x03)
///     .with_rx_delay(1)?;
/// let phy_payload = accept.encrypt(&app_key);
/// assert_eq!(phy_payload.len(), 17);
///
/// // The LNS keeps the session, so the solver can answer the device's data uplinks.
/// let session_keys = accept.session_keys(&app_key, 0xcc85);
/// let keys = Keys::new();
/// keys.set_session(DevEui::new(0x00afee7cf5ed6f1e), session_keys.session());
///
/// // The device's side: the same fields, and the same keys.
/// let received = JoinAccept::decrypt(&app_key, &phy_payload)?;
/// assert_eq!(received, accept);
/// assert_eq!(received.session_keys(&app_key, 0xcc85), session_keys);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JoinAccept {
    app_nonce: u32,
    net_id: u32,
    dev_addr: DevAddr,
    dl_settings: u8,
    rx_delay: u8,
    cf_list: Option<[u8; CF_LIST_LEN]>,
}

impl JoinAccept {
    /// A join accept granting `dev_addr`, with the network's `app_nonce` (JoinNonce in
    /// LoRaWAN 1.0.4) and `net_id`, both 24-bit; DLSettings 0, RxDelay 1, no CFList.
    ///
    /// Fails with [`MicError::OutOfRange`] when `app_nonce` or `net_id` does not fit in
    /// 24 bits.
    pub fn new(app_nonce: u32, net_id: u32, dev_addr: DevAddr) -> Result<Self, MicError> {
        check_range("AppNonce", app_nonce.into(), MAX_U24.into())?;
        check_range("NetID", net_id.into(), MAX_U24.into())?;
        Ok(Self {
            app_nonce,
            net_id,
            dev_addr,
            dl_settings: 0,
            rx_delay: 1,
            cf_list: None,
        })
    }

    /// Sets DLSettings: RX1DROffset in bits 6..4, RX2DataRate in bits 3..0 (bit 7 is
    /// RFU in LoRaWAN 1.0.x).
    pub fn with_dl_settings(mut self, dl_settings: u8) -> Self {
        self.dl_settings = dl_settings;
        self
    }

    /// Sets RxDelay, the delay of the first receive window after an uplink in seconds,
    /// 0 to 15 (0 means 1 s).
    ///
    /// Fails with [`MicError::OutOfRange`] above 15: the byte's high bits are RFU.
    pub fn with_rx_delay(mut self, rx_delay: u8) -> Result<Self, MicError> {
        check_range("RxDelay", rx_delay.into(), MAX_RX_DELAY.into())?;
        self.rx_delay = rx_delay;
        Ok(self)
    }

    /// Adds a CFList: exactly 16 bytes, as they go on air (for EU868, five 24-bit
    /// frequencies in units of 100 Hz, little-endian, and a CFListType byte).
    ///
    /// Fails with [`MicError::Length`] for any other length.
    pub fn with_cf_list(mut self, cf_list: impl AsRef<[u8]>) -> Result<Self, MicError> {
        let cf_list = cf_list.as_ref();
        self.cf_list = Some(cf_list.try_into().map_err(|_| MicError::Length {
            what: "CFList",
            len: cf_list.len(),
            expected: "16",
        })?);
        Ok(self)
    }

    /// The network's nonce, 24 bits (AppNonce; JoinNonce in LoRaWAN 1.0.4).
    pub fn app_nonce(&self) -> u32 {
        self.app_nonce
    }

    /// The network's identifier, 24 bits.
    pub fn net_id(&self) -> u32 {
        self.net_id
    }

    /// The address the device uses in its new session.
    pub fn dev_addr(&self) -> DevAddr {
        self.dev_addr
    }

    /// DLSettings: RX1DROffset in bits 6..4, RX2DataRate in bits 3..0.
    pub fn dl_settings(&self) -> u8 {
        self.dl_settings
    }

    /// RxDelay as sent, 0 to 15.
    pub fn rx_delay(&self) -> u8 {
        self.rx_delay
    }

    /// The delay of the first receive window after an uplink, in seconds: RxDelay, with
    /// 0 meaning 1.
    pub fn rx1_delay_secs(&self) -> u8 {
        self.rx_delay.max(1)
    }

    /// The CFList, if the join accept has one.
    pub fn cf_list(&self) -> Option<&[u8; CF_LIST_LEN]> {
        self.cf_list.as_ref()
    }

    /// The PHYPayload to send the device: MHDR, then the fields and their MIC encrypted
    /// with `app_key`.
    ///
    /// As LoRaWAN 1.0.x specifies: the MIC is `cmac(AppKey, MHDR | AppNonce | NetID |
    /// DevAddr | DLSettings | RxDelay | CFList)`, its first four bytes, and everything
    /// after the MHDR is encrypted with the AES *decrypt* operation in ECB mode, so the
    /// device needs only AES encryption to read it. 17 bytes, or 33 with a CFList.
    pub fn encrypt(&self, app_key: &AesKey) -> Vec<u8> {
        let mut frame = self.signed(app_key);
        let cipher = Aes128::new(&(*app_key.expose()).into());
        for block in frame[1..].chunks_exact_mut(16) {
            let mut b = block_of(block);
            cipher.decrypt_block(&mut b);
            block.copy_from_slice(&b);
        }
        frame
    }

    /// Reads a join accept as the device does: decrypts `phy_payload` with `app_key`
    /// (the AES *encrypt* operation), checks its MIC, and returns its fields.
    ///
    /// Fails with a typed [`MicError`]: [`Length`](MicError::Length) unless 17 or 33
    /// bytes, [`WrongMType`](MicError::WrongMType) or
    /// [`UnsupportedMajor`](MicError::UnsupportedMajor) for another MHDR,
    /// [`MicMismatch`](MicError::MicMismatch) when the MIC is not the one `app_key`
    /// gives (the wrong key, or a corrupted or forged frame), and
    /// [`OutOfRange`](MicError::OutOfRange) for an RxDelay with RFU bits set.
    pub fn decrypt(app_key: &AesKey, phy_payload: &[u8]) -> Result<Self, MicError> {
        let len = phy_payload.len();
        if len != LEN_WITHOUT_CF_LIST && len != LEN_WITH_CF_LIST {
            return Err(MicError::Length {
                what: "join accept",
                len,
                expected: "17 or 33",
            });
        }
        let mhdr = phy_payload[0];
        match (MType::from_mhdr(mhdr), mhdr & 0x03) {
            (MType::JoinAccept, 0) => {}
            (MType::JoinAccept, major) => return Err(MicError::UnsupportedMajor(major)),
            (got, _) => {
                return Err(MicError::WrongMType {
                    expected: MType::JoinAccept,
                    got,
                })
            }
        }
        let mut plain = phy_payload.to_vec();
        let cipher = Aes128::new(&(*app_key.expose()).into());
        for block in plain[1..].chunks_exact_mut(16) {
            let mut b = block_of(block);
            cipher.encrypt_block(&mut b);
            block.copy_from_slice(&b);
        }
        let (signed, mic) = plain.split_at(len - 4);
        let expected = cmac4(app_key, signed);
        // Fold every byte, as `AesKey`'s comparison does, so timing tells nothing.
        if mic
            .iter()
            .zip(expected)
            .fold(0, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(MicError::MicMismatch);
        }
        let p = signed;
        let u24 = |at: usize| u32::from_le_bytes([p[at], p[at + 1], p[at + 2], 0]);
        let rx_delay = p[12];
        check_range("RxDelay", rx_delay.into(), MAX_RX_DELAY.into())?;
        Ok(Self {
            app_nonce: u24(1),
            net_id: u24(4),
            dev_addr: DevAddr::new(u32::from_le_bytes([p[7], p[8], p[9], p[10]])),
            dl_settings: p[11],
            rx_delay,
            cf_list: (len == LEN_WITH_CF_LIST).then(|| block_array(&p[13..29])),
        })
    }

    /// The session keys this join accept establishes for the join request that carried
    /// `dev_nonce` (the number whose little-endian bytes the request carries, as in
    /// [`join_request`](super::join_request)):
    ///
    /// `NwkSKey = aes128_encrypt(AppKey, 0x01 | AppNonce | NetID | DevNonce | pad16)`,
    /// `AppSKey` the same with `0x02`.
    pub fn session_keys(&self, app_key: &AesKey, dev_nonce: u16) -> SessionKeys {
        let cipher = Aes128::new(&(*app_key.expose()).into());
        let derive = |kind: u8| {
            let mut block = [0u8; 16];
            block[0] = kind;
            block[1..4].copy_from_slice(&self.app_nonce.to_le_bytes()[..3]);
            block[4..7].copy_from_slice(&self.net_id.to_le_bytes()[..3]);
            block[7..9].copy_from_slice(&dev_nonce.to_le_bytes());
            let mut b = block.into();
            cipher.encrypt_block(&mut b);
            AesKey::new(b.into())
        };
        SessionKeys {
            nwk_s_key: derive(0x01),
            app_s_key: derive(0x02),
        }
    }

    /// MHDR | fields | CFList | MIC, in clear.
    fn signed(&self, app_key: &AesKey) -> Vec<u8> {
        let mut frame = Vec::with_capacity(LEN_WITH_CF_LIST);
        frame.push(MType::JoinAccept.mhdr());
        frame.extend_from_slice(&self.app_nonce.to_le_bytes()[..3]);
        frame.extend_from_slice(&self.net_id.to_le_bytes()[..3]);
        frame.extend_from_slice(&self.dev_addr.get().to_le_bytes());
        frame.push(self.dl_settings);
        frame.push(self.rx_delay);
        if let Some(cf_list) = &self.cf_list {
            frame.extend_from_slice(cf_list);
        }
        let mic = cmac4(app_key, &frame);
        frame.extend_from_slice(&mic);
        frame
    }
}

/// The keys of a LoRaWAN 1.0.x session, derived from a join accept by both sides.
///
/// Its `Debug` shows no key (see [`AesKey`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// The network session key: signs data frames (and encrypts MAC commands on port 0).
    pub nwk_s_key: AesKey,
    /// The application session key: encrypts the application payload.
    pub app_s_key: AesKey,
}

impl SessionKeys {
    /// A fresh [`Session`] with both keys, which has seen no uplink and sent no downlink yet: what an
    /// LNS stores with [`Keys::set_session`](super::Keys::set_session) once it sends the
    /// join accept.
    pub fn session(&self) -> Session {
        Session::new(self.nwk_s_key.clone()).with_app_s_key(self.app_s_key.clone())
    }
}

fn check_range(field: &'static str, value: u64, max: u64) -> Result<(), MicError> {
    if value > max {
        return Err(MicError::OutOfRange { field, value, max });
    }
    Ok(())
}

/// The first four bytes of `cmac(key, msg)`.
fn cmac4(key: &AesKey, msg: &[u8]) -> [u8; 4] {
    let mut mac = key.cmac();
    mac.update(msg);
    let tag = mac.finalize().into_bytes();
    [tag[0], tag[1], tag[2], tag[3]]
}

fn block_array(bytes: &[u8]) -> [u8; 16] {
    let mut block = [0u8; 16];
    block.copy_from_slice(bytes);
    block
}

fn block_of(bytes: &[u8]) -> aes::Block {
    block_array(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mic::tests::hex;

    fn key(s: &str) -> AesKey {
        s.parse().unwrap()
    }

    /// A join accept captured on The Things Network (EU868) and decoded by Arjan van
    /// Bentem, "Deciphering a LoRaWAN OTAA Join Accept"
    /// (https://runkit.com/avbentem/deciphering-a-lorawan-otaa-join-accept, referred to
    /// from https://github.com/anthonykirby/lora-packet/issues/10): fields, MIC 55121DE0 and both
    /// session keys as published there, re-checked with lora-packet 0.9.3.
    #[test]
    fn published_ttn_join_accept() {
        let app_key = key("b6b53f4a168a7a88bdf7ea135ce9cfca");
        let wire = hex("204dd85ae608b87fc4889970b7d2042c9e72959b0057aed6094b16003df12de145");
        let cf_list = hex("184f84e85684b85e84886684586e8400");
        let accept = JoinAccept::new(0xe5063a, 0x000013, DevAddr::new(0x26012e43))
            .unwrap()
            .with_dl_settings(0x03)
            .with_rx_delay(1)
            .unwrap()
            .with_cf_list(&cf_list)
            .unwrap();
        assert_eq!(accept.encrypt(&app_key), wire);
        // The MIC in clear, as published.
        assert_eq!(accept.signed(&app_key)[29..], hex("55121de0"));

        let received = JoinAccept::decrypt(&app_key, &wire).unwrap();
        assert_eq!(received, accept);
        assert_eq!(received.cf_list().unwrap()[..], cf_list);

        // The join request it answered, 00DC0000D07ED5B3701E6FEDF57CEEAF0085CC587FE913:
        // DevNonce CC85.
        let keys = accept.session_keys(&app_key, 0xcc85);
        assert_eq!(keys.nwk_s_key, key("2c96f7028184bb0be8aa49275290d4fc"));
        assert_eq!(keys.app_s_key, key("f3a5c8f0232a38c144029c165865802c"));
    }

    /// Encrypted join accepts and session keys produced by the lora-packet npm package,
    /// version 0.9.3 (`fromFields` with MType "Join Accept" and the AppKey, then
    /// `getPHYPayload`; `generateSessionKeys10`), in a throwaway script. Its nonces,
    /// NetID and DevAddr are given big-endian, so they read as the numbers here.
    #[test]
    fn lora_packet_vectors() {
        struct Vector {
            app_key: &'static str,
            app_nonce: u32,
            net_id: u32,
            dev_addr: u32,
            dl_settings: u8,
            rx_delay: u8,
            cf_list: &'static str,
            dev_nonce: u16,
            wire: &'static str,
            nwk_s_key: &'static str,
            app_s_key: &'static str,
        }
        for v in [
            Vector {
                app_key: "2b7e151628aed2a6abf7158809cf4f3c",
                app_nonce: 0xc1a2e3,
                net_id: 0x000013,
                dev_addr: 0x26011bda,
                dl_settings: 0x03,
                rx_delay: 1,
                cf_list: "",
                dev_nonce: 0x1234,
                wire: "204a3c12adc1cc715ec9ae96f035003886",
                nwk_s_key: "4149ff3c3cceb86cbd7266dc49323187",
                app_s_key: "cad422323e57e564b975b2d3fbc8476a",
            },
            Vector {
                app_key: "000102030405060708090a0b0c0d0e0f",
                app_nonce: 0xffffff,
                net_id: 0x60000b,
                dev_addr: 0xfc00ac12,
                dl_settings: 0x5a,
                rx_delay: 15,
                cf_list: "184f84e85684b85e84886684586e8400",
                dev_nonce: 0xbeef,
                wire: "20603592934bab809bf7d674d21cfe6ce1662584b49628d7ce1d13f4dd7e1bdf88",
                nwk_s_key: "fedc798125c79c9c30c644704eda29ec",
                app_s_key: "4b5f6c5968a9dfab86796764028b1ee8",
            },
            Vector {
                app_key: "ffeeddccbbaa99887766554433221100",
                app_nonce: 0,
                net_id: 0,
                dev_addr: 0,
                dl_settings: 0,
                rx_delay: 0,
                cf_list: "00000000000000000000000000000000",
                dev_nonce: 0,
                wire: "20ac3717112a9fddc738692f97e219c356684c35f55ed64a506bc4c8643863c803",
                nwk_s_key: "9490fb34e9656d4af3a594f98742c7e2",
                app_s_key: "043fa88ce942d11e50274deb77be286d",
            },
        ] {
            let app_key = key(v.app_key);
            let mut accept = JoinAccept::new(v.app_nonce, v.net_id, DevAddr::new(v.dev_addr))
                .unwrap()
                .with_dl_settings(v.dl_settings)
                .with_rx_delay(v.rx_delay)
                .unwrap();
            if !v.cf_list.is_empty() {
                accept = accept.with_cf_list(hex(v.cf_list)).unwrap();
            }
            assert_eq!(accept.encrypt(&app_key), hex(v.wire), "{}", v.wire);
            assert_eq!(
                JoinAccept::decrypt(&app_key, &hex(v.wire)),
                Ok(accept.clone())
            );
            let keys = accept.session_keys(&app_key, v.dev_nonce);
            assert_eq!(keys.nwk_s_key, key(v.nwk_s_key));
            assert_eq!(keys.app_s_key, key(v.app_s_key));
            assert_eq!(
                keys.session(),
                Session::new(key(v.nwk_s_key)).with_app_s_key(key(v.app_s_key))
            );
        }
    }

    #[test]
    fn builder_checks_every_field() {
        let addr = DevAddr::new(1);
        assert!(JoinAccept::new(MAX_U24, MAX_U24, addr).is_ok());
        assert_eq!(
            JoinAccept::new(0x0100_0000, 0, addr),
            Err(MicError::OutOfRange {
                field: "AppNonce",
                value: 0x0100_0000,
                max: 0xff_ffff
            })
        );
        assert!(matches!(
            JoinAccept::new(0, u32::MAX, addr),
            Err(MicError::OutOfRange { field: "NetID", .. })
        ));
        let accept = JoinAccept::new(1, 2, addr).unwrap();
        assert_eq!((accept.rx_delay(), accept.rx1_delay_secs()), (1, 1));
        assert_eq!(accept.clone().with_rx_delay(0).unwrap().rx1_delay_secs(), 1);
        assert_eq!(
            accept.clone().with_rx_delay(15).unwrap().rx1_delay_secs(),
            15
        );
        assert_eq!(
            accept.clone().with_rx_delay(16),
            Err(MicError::OutOfRange {
                field: "RxDelay",
                value: 16,
                max: 15
            })
        );
        for len in [0, 15, 17, 32] {
            assert_eq!(
                accept.clone().with_cf_list(vec![0; len]),
                Err(MicError::Length {
                    what: "CFList",
                    len,
                    expected: "16"
                })
            );
        }
        assert_eq!(accept.cf_list(), None);
        let with = accept.with_cf_list([7; 16]).unwrap();
        assert_eq!(with.cf_list(), Some(&[7; 16]));
        assert_eq!(with.encrypt(&AesKey::new([1; 16])).len(), 33);
    }

    #[test]
    fn the_device_refuses_a_bad_join_accept() {
        let app_key = key("b6b53f4a168a7a88bdf7ea135ce9cfca");
        let accept = JoinAccept::new(0xe5063a, 0x13, DevAddr::new(0x26012e43)).unwrap();
        let wire = accept.encrypt(&app_key);

        // Another key, or any flipped bit after the MHDR, fails the MIC.
        assert_eq!(
            JoinAccept::decrypt(&AesKey::new([0; 16]), &wire),
            Err(MicError::MicMismatch)
        );
        for at in 1..wire.len() {
            let mut corrupt = wire.clone();
            corrupt[at] ^= 0x01;
            assert_eq!(
                JoinAccept::decrypt(&app_key, &corrupt),
                Err(MicError::MicMismatch),
                "byte {at}"
            );
        }
        // The MHDR is covered by the MIC as well (its RFU bits included).
        let mut rfu = wire.clone();
        rfu[0] |= 0x04;
        assert_eq!(
            JoinAccept::decrypt(&app_key, &rfu),
            Err(MicError::MicMismatch)
        );
        let mut major = wire.clone();
        major[0] |= 0x01;
        assert_eq!(
            JoinAccept::decrypt(&app_key, &major),
            Err(MicError::UnsupportedMajor(1))
        );
        let mut data_down = wire.clone();
        data_down[0] = MType::UnconfirmedDataDown.mhdr();
        assert_eq!(
            JoinAccept::decrypt(&app_key, &data_down),
            Err(MicError::WrongMType {
                expected: MType::JoinAccept,
                got: MType::UnconfirmedDataDown
            })
        );
        for len in [0, 1, 16, 18, 32, 34, 64] {
            let frame = vec![0x20; len];
            assert_eq!(
                JoinAccept::decrypt(&app_key, &frame),
                Err(MicError::Length {
                    what: "join accept",
                    len,
                    expected: "17 or 33"
                })
            );
        }
    }

    #[test]
    fn an_rx_delay_with_rfu_bits_is_refused_even_with_a_good_mic() {
        let app_key = AesKey::new([9; 16]);
        let accept = JoinAccept::new(1, 2, DevAddr::new(3)).unwrap();
        // Sign a frame whose RxDelay byte has RFU bits set, as a buggy network would.
        let mut plain = accept.signed(&app_key);
        plain[12] = 0x21;
        let mic = cmac4(&app_key, &plain[..13]);
        plain[13..].copy_from_slice(&mic);
        let cipher = Aes128::new(&(*app_key.expose()).into());
        let mut b = block_of(&plain[1..]);
        cipher.decrypt_block(&mut b);
        plain[1..].copy_from_slice(&b);
        assert_eq!(
            JoinAccept::decrypt(&app_key, &plain),
            Err(MicError::OutOfRange {
                field: "RxDelay",
                value: 0x21,
                max: 15
            })
        );
    }

    #[test]
    fn session_keys_depend_on_every_input_and_hide_in_debug() {
        let app_key = AesKey::new([5; 16]);
        let accept = JoinAccept::new(0x010203, 0x040506, DevAddr::new(7)).unwrap();
        let base = accept.session_keys(&app_key, 0x0809);
        assert_ne!(base.nwk_s_key, base.app_s_key);
        for other in [
            accept.session_keys(&AesKey::new([6; 16]), 0x0809),
            accept.session_keys(&app_key, 0x0908),
            JoinAccept::new(0x010204, 0x040506, DevAddr::new(7))
                .unwrap()
                .session_keys(&app_key, 0x0809),
            JoinAccept::new(0x010203, 0x040507, DevAddr::new(7))
                .unwrap()
                .session_keys(&app_key, 0x0809),
        ] {
            assert_ne!(other.nwk_s_key, base.nwk_s_key);
            assert_ne!(other.app_s_key, base.app_s_key);
        }
        // The DevAddr and radio settings are not key material.
        let same = JoinAccept::new(0x010203, 0x040506, DevAddr::new(8))
            .unwrap()
            .with_dl_settings(0x11)
            .session_keys(&app_key, 0x0809);
        assert_eq!(same, base);
        assert_eq!(
            format!("{base:?}"),
            "SessionKeys { nwk_s_key: AesKey(***), app_s_key: AesKey(***) }"
        );
    }
}
