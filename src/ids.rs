//! LoRaWAN identifiers: EUIs and addresses, as newtypes printed and parsed as hex.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a string is not a valid identifier: not exactly its number of hex digits (16
/// for an EUI, 8 for an address), after an optional `0x`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: expected exactly {digits} hex digits")]
pub struct ParseIdError {
    kind: &'static str,
    digits: usize,
    input: String,
}

impl ParseIdError {
    /// The identifier type that failed to parse, e.g. `"DevEUI"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// How many hex digits the identifier takes: 16 for an EUI, 8 for an address.
    pub fn expected_digits(&self) -> usize {
        self.digits
    }
}

/// Parses exactly `digits` hex digits, with an optional `0x` prefix, in either case. A
/// digit too few or too many is an error, never another identifier: a typo in a device
/// list must not subscribe someone else's device.
fn parse_hex(kind: &'static str, digits: usize, input: &str) -> Result<u64, ParseIdError> {
    let err = || ParseIdError {
        kind,
        digits,
        input: input.chars().take(40).collect(),
    };
    let hex = input
        .strip_prefix("0x")
        .or_else(|| input.strip_prefix("0X"))
        .unwrap_or(input);
    if hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err());
    }
    u64::from_str_radix(hex, 16).map_err(|_| err())
}

macro_rules! identifier {
    (
        $(#[$doc:meta])* $name:ident($int:ty), $kind:literal, $digits:literal
        $(, example: $(#[$example:meta])+)?
    ) => {
        $(#[$doc])*
        ///
        /// A newtype over the integer the LoRaWAN specification defines, so one kind of
        /// identifier cannot be passed where another is expected. It prints and parses as
        /// the API's lower-case, zero-padded hex and converts from and to the plain integer
        /// the Python client uses.
        ///
        #[doc = concat!("Parsing takes exactly ", $digits, " hex digits, in either case, with an optional `0x`")]
        /// prefix: a digit too few or too many is an error, never another identifier.
        ///
        /// With serde it serializes as the REST API's hex string and deserializes from either
        /// a hex string (by the same rule) or a JSON number. (Stream frames, where the
        /// protocol puts numbers, read their identifier fields as numbers only.)
        $($(#[$example])+)?
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name($int);

        impl $name {
            /// Wraps the integer value.
            pub const fn new(value: $int) -> Self {
                Self(value)
            }

            /// The integer value.
            pub const fn get(self) -> $int {
                self.0
            }

            /// The value as big-endian bytes, the order LoRaWAN documents print them in.
            pub const fn to_be_bytes(self) -> [u8; $digits / 2] {
                self.0.to_be_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!("{:0", $digits, "x}"), self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:0", $digits, "x})"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl fmt::UpperHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::UpperHex::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // The digit check bounds the value, so the cast cannot truncate.
                parse_hex($kind, $digits, s).map(|v| Self(v as $int))
            }
        }

        impl From<$int> for $name {
            fn from(value: $int) -> Self {
                Self(value)
            }
        }

        impl From<$name> for $int {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct IdVisitor;

                impl Visitor<'_> for IdVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", $kind, " as a hex string or an integer"))
                    }

                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }

                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        <$int>::try_from(v)
                            .map($name)
                            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
                    }

                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        <$int>::try_from(v)
                            .map($name)
                            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                    }
                }

                deserializer.deserialize_any(IdVisitor)
            }
        }

        impl crate::wire::AsWireInt for $name {
            fn wire_int(&self) -> u64 {
                u64::from(self.0)
            }
        }

        impl crate::wire::FromWireInt for $name {
            type Int = $int;
        }
    };
}

identifier!(
    /// A device's 64-bit extended unique identifier (DevEUI).
    DevEui(u64), "DevEUI", 16, example:
    ///
    /// ```
    /// use ran_routing::{DevAddr, DevEui};
    ///
    /// let dev_eui = DevEui::new(0x7ABE1B8C93D7174F);
    /// assert_eq!(dev_eui.to_string(), "7abe1b8c93d7174f");
    /// assert_eq!("7ABE1B8C93D7174F".parse::<DevEui>().unwrap(), dev_eui);
    /// assert!("7abe1b".parse::<DevEui>().is_err());
    /// assert_eq!(u64::from(dev_eui), 0x7ABE1B8C93D7174F);
    ///
    /// let addr: DevAddr = 0x627bb8bb.into();
    /// assert_eq!(format!("{addr:?}"), "DevAddr(627bb8bb)");
    /// ```
);
identifier!(
    /// A 64-bit join server identifier (JoinEUI, AppEUI in LoRaWAN 1.0).
    JoinEui(u64), "JoinEUI", 16
);
identifier!(
    /// A 32-bit device address (DevAddr).
    DevAddr(u32), "DevAddr", 8
);
identifier!(
    /// A multicast group's 32-bit address (`McAddr`), which devices hear as a DevAddr.
    MulticastAddr(u32), "multicast address", 8
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_zero_padded_lower_hex() {
        assert_eq!(DevEui::new(0).to_string(), "0000000000000000");
        assert_eq!(DevEui::new(u64::MAX).to_string(), "ffffffffffffffff");
        assert_eq!(DevAddr::new(0xab).to_string(), "000000ab");
        assert_eq!(
            format!("{:?}", JoinEui::new(1)),
            "JoinEui(0000000000000001)"
        );
        assert_eq!(format!("{:#x}", DevAddr::new(0xab)), "0xab");
    }

    #[test]
    fn parses_hex_in_any_case_with_optional_prefix() {
        assert_eq!(
            "FFFFFFFFFFFFFFFF".parse::<DevEui>(),
            Ok(DevEui::new(u64::MAX))
        );
        assert_eq!(
            "0x627bb8bb".parse::<DevAddr>(),
            Ok(DevAddr::new(0x627bb8bb))
        );
        assert_eq!(
            "0X00000001".parse::<MulticastAddr>(),
            Ok(MulticastAddr::new(1))
        );
        assert_eq!(
            "0x7ABE1B8C93D7174F".parse::<JoinEui>(),
            Ok(JoinEui::new(0x7abe1b8c93d7174f))
        );
    }

    #[test]
    fn rejects_bad_hex() {
        for bad in ["", "0x", "xyz", "1ffffffff", "-1", " 1", "+1"] {
            let err = bad.parse::<DevAddr>().unwrap_err();
            assert_eq!(err.kind(), "DevAddr", "{bad:?}");
        }
        assert!("10000000000000000".parse::<DevEui>().is_err());
    }

    #[test]
    fn missing_or_extra_digits_are_errors_not_other_devices() {
        // 15 digits, 6 digits, 17 digits: typos, not 07abe1b8c93d7174f and friends.
        for bad in [
            "7abe1b8c93d7174",
            "7abe1b",
            "07abe1b8c93d7174f0",
            "0x7abe1b8c93d7174",
        ] {
            let err = bad.parse::<DevEui>().unwrap_err();
            assert_eq!(
                (err.kind(), err.expected_digits()),
                ("DevEUI", 16),
                "{bad:?}"
            );
            assert!(err.to_string().contains("exactly 16 hex digits"), "{err}");
        }
        for bad in ["1", "627bb8b", "0x627bb8b", "627bb8bb0"] {
            let err = bad.parse::<DevAddr>().unwrap_err();
            assert_eq!(err.expected_digits(), 8, "{bad:?}");
            assert!(bad.parse::<MulticastAddr>().is_err());
        }
        // Serde reads REST hex by the same rule; numbers stay numbers.
        assert!(serde_json::from_str::<DevEui>("\"7abe1b8c93d7174\"").is_err());
        assert!(serde_json::from_str::<DevAddr>("\"1\"").is_err());
        assert_eq!(
            serde_json::from_str::<DevAddr>("\"0x627bb8bb\"").unwrap(),
            DevAddr::new(0x627bb8bb)
        );
        assert_eq!(
            serde_json::from_str::<DevAddr>("1").unwrap(),
            DevAddr::new(1)
        );
        // `?` turns it into the crate's error, as invalid input.
        fn parse(text: &str) -> crate::Result<DevEui> {
            Ok(text.parse()?)
        }
        assert!(matches!(
            parse("7abe1b"),
            Err(crate::Error::Invalid(crate::InvalidInput::Id(_)))
        ));
    }

    #[test]
    fn serde_hex_out_hex_or_number_in() {
        let eui = DevEui::new(0x7abe1b8c93d7174f);
        assert_eq!(serde_json::to_string(&eui).unwrap(), "\"7abe1b8c93d7174f\"");
        assert_eq!(
            serde_json::from_str::<DevEui>("\"7abe1b8c93d7174f\"").unwrap(),
            eui
        );
        assert_eq!(
            serde_json::from_str::<DevEui>("18446744073709551615").unwrap(),
            DevEui::new(u64::MAX)
        );
        assert!(serde_json::from_str::<DevAddr>("4294967296").is_err());
        assert!(serde_json::from_str::<DevAddr>("-1").is_err());
        assert!(serde_json::from_str::<DevAddr>("1.5").is_err());
    }
}
