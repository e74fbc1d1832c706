//! Hand-written decoders for the objects that hold exactly one of several keys: a radio
//! (one of `LoRa`, `FSK`, `FHSS`) and a transmission window (one of `Delay`, `TMMS`,
//! `Deadline`).
//!
//! serde's `flatten` would buffer the whole object, silently take the first matching key
//! when a frame has two, and report a missing one as an opaque "no variant found". These
//! visitors read the object in one pass and reject both cases with an error that names
//! the keys. Encoding stays derived (`flatten` writes exactly the reference's layout).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{
    DownstreamRadio, FhssModulation, FskModulation, LoRaModulation, Modulation, TransmissionWindow,
    TxTiming, UpstreamRadio,
};

/// A closed set of object keys, read without allocating; any other key is `Other`.
macro_rules! keys {
    ($name:ident { $($variant:ident = $wire:literal,)* }) => {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum $name {
            $($variant,)*
            Other,
        }

        impl $name {
            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Other => "",
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct KeyVisitor;

                impl Visitor<'_> for KeyVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a field name")
                    }

                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok(match v {
                            $($wire => $name::$variant,)*
                            _ => $name::Other,
                        })
                    }

                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<$name, E> {
                        match std::str::from_utf8(v) {
                            Ok(v) => self.visit_str(v),
                            Err(_) => Ok($name::Other),
                        }
                    }
                }

                d.deserialize_identifier(KeyVisitor)
            }
        }
    };
}

keys!(RadioKey {
    Frequency = "Frequency",
    LoRa = "LoRa",
    Fsk = "FSK",
    Fhss = "FHSS",
    Rssi = "RSSI",
    Snr = "SNR",
});

keys!(WindowKey {
    Radio = "Radio",
    Delay = "Delay",
    Tmms = "TMMS",
    Deadline = "Deadline",
});

/// Reads the value of a key that may appear once.
fn next_once<'de, A, T>(
    map: &mut A,
    slot: &mut Option<T>,
    key: &'static str,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(de::Error::duplicate_field(key));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// Fails when the one-of slot is already taken: by the same key (a duplicate) or by
/// another one (`what` then says what there must be exactly one of).
fn check_one_of<T, E: de::Error>(
    slot: &Option<(&'static str, T)>,
    key: &'static str,
    what: &str,
) -> Result<(), E> {
    match slot {
        None => Ok(()),
        Some((first, _)) if *first == key => Err(E::duplicate_field(key)),
        Some((first, _)) => Err(E::custom(format_args!(
            "exactly one {what} expected, found both `{first}` and `{key}`"
        ))),
    }
}

/// What a radio object holds; `signal` only when the visitor reads RSSI and SNR.
struct RadioParts {
    frequency: u32,
    modulation: Modulation,
    signal: Option<(f64, f64)>,
}

/// Reads a radio object. An upstream radio also has `RSSI` and `SNR`; for a downstream
/// radio they are unknown keys like any other.
struct RadioVisitor {
    with_signal: bool,
}

impl<'de> Visitor<'de> for RadioVisitor {
    type Value = RadioParts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a radio object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RadioParts, A::Error> {
        let mut frequency = None;
        let mut modulation: Option<(&'static str, Modulation)> = None;
        let mut rssi = None;
        let mut snr = None;
        while let Some(key) = map.next_key::<RadioKey>()? {
            match key {
                RadioKey::Frequency => next_once(&mut map, &mut frequency, key.as_str())?,
                RadioKey::LoRa | RadioKey::Fsk | RadioKey::Fhss => {
                    check_one_of(&modulation, key.as_str(), "modulation per radio")?;
                    let value = match key {
                        RadioKey::LoRa => Modulation::LoRa(map.next_value::<LoRaModulation>()?),
                        RadioKey::Fsk => Modulation::Fsk(map.next_value::<FskModulation>()?),
                        _ => Modulation::Fhss(map.next_value::<FhssModulation>()?),
                    };
                    modulation = Some((key.as_str(), value));
                }
                RadioKey::Rssi if self.with_signal => next_once(&mut map, &mut rssi, "RSSI")?,
                RadioKey::Snr if self.with_signal => next_once(&mut map, &mut snr, "SNR")?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let frequency = frequency.ok_or_else(|| de::Error::missing_field("Frequency"))?;
        let (_, modulation) = modulation.ok_or_else(|| {
            de::Error::custom("missing modulation: a radio needs one of `LoRa`, `FSK`, `FHSS`")
        })?;
        let signal = if self.with_signal {
            Some((
                rssi.ok_or_else(|| de::Error::missing_field("RSSI"))?,
                snr.ok_or_else(|| de::Error::missing_field("SNR"))?,
            ))
        } else {
            None
        };
        Ok(RadioParts {
            frequency,
            modulation,
            signal,
        })
    }
}

impl<'de> Deserialize<'de> for UpstreamRadio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parts = d.deserialize_map(RadioVisitor { with_signal: true })?;
        // The visitor requires both when `with_signal` is set.
        let (rssi, snr) = parts.signal.unwrap_or_default();
        Ok(UpstreamRadio {
            frequency: parts.frequency,
            modulation: parts.modulation,
            rssi,
            snr,
        })
    }
}

impl<'de> Deserialize<'de> for DownstreamRadio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parts = d.deserialize_map(RadioVisitor { with_signal: false })?;
        Ok(DownstreamRadio {
            frequency: parts.frequency,
            modulation: parts.modulation,
        })
    }
}

struct WindowVisitor;

impl<'de> Visitor<'de> for WindowVisitor {
    type Value = TransmissionWindow;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a transmission window object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TransmissionWindow, A::Error> {
        let mut radio = None;
        let mut timing: Option<(&'static str, TxTiming)> = None;
        while let Some(key) = map.next_key::<WindowKey>()? {
            match key {
                WindowKey::Radio => next_once(&mut map, &mut radio, key.as_str())?,
                WindowKey::Delay | WindowKey::Tmms | WindowKey::Deadline => {
                    check_one_of(&timing, key.as_str(), "timing per window")?;
                    let value = match key {
                        WindowKey::Delay => TxTiming::Delay(map.next_value()?),
                        WindowKey::Tmms => TxTiming::Tmms(map.next_value()?),
                        _ => TxTiming::Deadline(map.next_value()?),
                    };
                    timing = Some((key.as_str(), value));
                }
                WindowKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let radio = radio.ok_or_else(|| de::Error::missing_field("Radio"))?;
        let (_, timing) = timing.ok_or_else(|| {
            de::Error::custom("missing timing: a window needs one of `Delay`, `TMMS`, `Deadline`")
        })?;
        Ok(TransmissionWindow { radio, timing })
    }
}

impl<'de> Deserialize<'de> for TransmissionWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(WindowVisitor)
    }
}
