//! The FRMPayload cipher of LoRaWAN 1.0.x: AES-128 in counter mode over the A blocks.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::Aes128;

use super::AesKey;
use crate::ids::DevAddr;

/// Which way a data frame travels: its MIC and its FRMPayload cipher both depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the device to the network.
    Uplink,
    /// From the network to the device.
    Downlink,
}

impl Direction {
    /// The direction byte of the B0 and A blocks: 0 up, 1 down.
    pub(crate) const fn bit(self) -> u8 {
        match self {
            Self::Uplink => 0,
            Self::Downlink => 1,
        }
    }
}

/// Encrypts or decrypts a data frame's FRMPayload (the cipher is its own inverse).
///
/// `key` is the AppSKey for FPort 1 to 255 and the NwkSKey for FPort 0; `fcnt` is the
/// frame's full 32-bit counter (FCntUp or FCntDown), of which the frame carries the low
/// 16 bits. The keystream is `aes128_encrypt(key, A_i)` for `i` from 1, where
/// `A_i = 0x01 | 0x00000000 | dir | DevAddr | FCnt | 0x00 | i` (LoRaWAN 1.0.x, 4.3.3).
///
/// An LNS reads an uplink's application payload with it:
///
/// ```
/// use ran_routing::mic::{encrypt_frm_payload, AesKey, DataUplink, Direction};
/// use ran_routing::DevAddr;
///
/// let (nwk_s_key, app_s_key) = (AesKey::new([1; 16]), AesKey::new([2; 16]));
/// let addr = DevAddr::new(0x26011bda);
/// let frame = DataUplink::new(addr, 70_000)
///     .payload(1, *b"21.5 C")
///     .app_s_key(app_s_key.clone())
///     .build(&nwk_s_key)?;
/// // MHDR, DevAddr, FCtrl, FCnt, FPort: 9 bytes; the MIC: the last 4.
/// let on_air = &frame[9..frame.len() - 4];
/// assert_ne!(on_air, b"21.5 C");
/// let clear = encrypt_frm_payload(&app_s_key, addr, 70_000, Direction::Uplink, on_air);
/// assert_eq!(clear, b"21.5 C");
/// # Ok::<(), ran_routing::mic::MicError>(())
/// ```
pub fn encrypt_frm_payload(
    key: &AesKey,
    dev_addr: DevAddr,
    fcnt: u32,
    direction: Direction,
    data: &[u8],
) -> Vec<u8> {
    let cipher = Aes128::new(&(*key.expose()).into());
    let mut a = [0u8; 16];
    a[0] = 0x01;
    a[5] = direction.bit();
    a[6..10].copy_from_slice(&dev_addr.get().to_le_bytes());
    a[10..14].copy_from_slice(&fcnt.to_le_bytes());
    let mut out = Vec::with_capacity(data.len());
    for (i, chunk) in data.chunks(16).enumerate() {
        // A PHYPayload is at most 255 bytes, 16 blocks: i + 1 fits the counter byte,
        // and wraps (as any implementation's u8 would) only past 4080 bytes.
        a[15] = (i + 1) as u8;
        let mut s = a.into();
        cipher.encrypt_block(&mut s);
        out.extend(chunk.iter().zip(s.iter()).map(|(d, k)| d ^ k));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mic::tests::hex;

    /// lora-packet (github.com/anthonykirby/lora-packet), test/decrypt: an uplink whose
    /// FRMPayload `95437876` decrypts to "test" under AppSKey `ec925802...`.
    #[test]
    fn published_uplink_payload() {
        let app_s_key: AesKey = "ec925802ae430ca77fd3dd73cb2cc588".parse().unwrap();
        let clear = encrypt_frm_payload(
            &app_s_key,
            DevAddr::new(0x49be7df1),
            2,
            Direction::Uplink,
            &hex("95437876"),
        );
        assert_eq!(clear, b"test");
    }

    #[test]
    fn own_inverse_and_direction_matters() {
        let key = AesKey::new([9; 16]);
        let addr = DevAddr::new(7);
        let data: Vec<u8> = (0..=40).collect();
        let up = encrypt_frm_payload(&key, addr, 1, Direction::Uplink, &data);
        let down = encrypt_frm_payload(&key, addr, 1, Direction::Downlink, &data);
        assert_ne!(up, down);
        assert_eq!(
            encrypt_frm_payload(&key, addr, 1, Direction::Uplink, &up),
            data
        );
        assert!(encrypt_frm_payload(&key, addr, 1, Direction::Uplink, &[]).is_empty());
    }
}
