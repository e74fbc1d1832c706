//! The AES-128 root and session keys, kept out of logs.

use std::fmt;
use std::str::FromStr;

use aes::Aes128;
use cmac::{Cmac, KeyInit};

/// An AES-128 key: a device's AppKey (LoRaWAN 1.0.x root key, NwkKey in 1.1) or a session's
/// NwkSKey.
///
/// A secret like the access token: its `Debug` prints `AesKey(***)`, it has no `Display`,
/// and no error of this crate contains it. It parses from 32 hex digits, the form LNS
/// consoles show keys in:
///
/// ```
/// use ran_routing::mic::AesKey;
///
/// let key: AesKey = "2B7E151628AED2A6ABF7158809CF4F3C".parse().unwrap();
/// assert_eq!(format!("{key:?}"), "AesKey(***)");
/// assert_eq!(key.expose()[0], 0x2b);
/// assert!("2b7e".parse::<AesKey>().is_err());
/// ```
#[derive(Clone)]
pub struct AesKey([u8; 16]);

impl AesKey {
    /// Wraps the 16 key bytes, in the order they are written (most significant first).
    pub const fn new(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The key bytes, for code that needs the key itself (payload decryption, storage).
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }

    /// A CMAC instance keyed with this key, ready to take a message.
    pub(crate) fn cmac(&self) -> Cmac<Aes128> {
        // The key length is fixed by the type, so the conversion cannot fail.
        Cmac::<Aes128>::new(&self.0.into())
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(***)")
    }
}

impl PartialEq for AesKey {
    fn eq(&self, other: &Self) -> bool {
        // Fold every byte so the time taken does not tell how many leading bytes agree.
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for AesKey {}

impl From<[u8; 16]> for AesKey {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

/// Why a string is not an AES-128 key. It never repeats the input, which may be a
/// mistyped secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid AES-128 key: expected 32 hex digits, got {len} characters")]
pub struct ParseKeyError {
    len: usize,
}

impl FromStr for AesKey {
    type Err = ParseKeyError;

    /// Parses 32 hex digits in either case, with an optional `0x` prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseKeyError {
            len: s.chars().count(),
        };
        let hex = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s)
            .as_bytes();
        if hex.len() != 32 {
            return Err(err());
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let hi = hex_digit(pair[0]).ok_or_else(err)?;
            let lo = hex_digit(pair[1]).ok_or_else(err)?;
            *byte = hi << 4 | lo;
        }
        Ok(Self(bytes))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_redacts() {
        let key: AesKey = "0x000102030405060708090A0B0C0D0E0f".parse().unwrap();
        assert_eq!(
            key,
            AesKey::new([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
        );
        assert_eq!(format!("{key:?}"), "AesKey(***)");
        assert_eq!(format!("{:?}", Some(key.clone())), "Some(AesKey(***))");
        assert_ne!(key, AesKey::new([0; 16]));
    }

    #[test]
    fn rejects_bad_hex_without_echoing_it() {
        for bad in [
            "",
            "0x",
            "000102030405060708090a0b0c0d0e0",
            "000102030405060708090a0b0c0d0e0f00",
            "000102030405060708090a0b0c0d0e0g",
            "+00102030405060708090a0b0c0d0e0f",
            "00010203040506070809 a0b0c0d0e0f",
            "é00102030405060708090a0b0c0d0e0",
        ] {
            let err = bad.parse::<AesKey>().unwrap_err();
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
    }
}
