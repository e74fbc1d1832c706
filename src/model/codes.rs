//! Result codes of upstream rejects and downlinks.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! result_code {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$doc])*
        ///
        /// A code this crate does not know yet is kept as `Unknown` instead of failing the
        /// whole message.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A code this version of the crate does not know, as the server sent it.
            Unknown(String),
        }

        impl $name {
            /// The code as it travels on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Unknown(code) => code,
                }
            }
        }

        impl From<&str> for $name {
            fn from(code: &str) -> Self {
                match code {
                    $($wire => Self::$variant,)*
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = std::borrow::Cow::<str>::deserialize(d)?;
                Ok(Self::from(code.as_ref()))
            }
        }
    };
}

result_code!(
    /// Why the LNS rejects an upstream message.
    UpstreamRejectResultCode {
        /// No candidate of the MIC challenge matched the LNS's keys.
        MicFailed = "MICFailed",
        /// Any other reason.
        Other = "Other",
    }
);

result_code!(
    /// The outcome of a downlink.
    DownstreamResultCode {
        /// Transmitted.
        Success = "Success",
        /// No transmission window could be found.
        WindowNotFound = "WindowNotFound",
        /// No gateway could reach the device.
        GatewayNotFound = "GatewayNotFound",
        /// The window had passed when the downlink was scheduled.
        TooLate = "TooLate",
        /// The device did not acknowledge.
        NoAck = "NoAck",
        /// The gateway failed to transmit.
        GatewayError = "GatewayError",
    }
);

impl DownstreamResultCode {
    /// Whether the downlink went out.
    pub fn is_success(&self) -> bool {
        *self == Self::Success
    }
}
