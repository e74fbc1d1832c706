//! The wire format: how values travel in REST bodies and stream frames.
//!
//! The domain types in [`crate::model`] serialize with serde straight into the exact JSON the
//! service speaks, so `serde_json::to_string(&message)` *is* the encoder. This module holds
//! the pieces that differ between the two encodings and the small bodies that only REST
//! uses:
//!
//! - REST carries EUIs and addresses as hex strings, streams as JSON numbers (the
//!   identifiers serialize as hex; stream fields opt into numbers with the helpers below,
//!   and read back only numbers: a hex string in a stream frame is a type error);
//! - REST timestamps are naive ISO-8601 with microseconds, no zone;
//!
//! Decoding never goes through `f64` for integers, so the full `u64` range survives; an
//! integer field given a float (`1.0`, `1e3`) or a number out of its type's range is a
//! decode error, never rounded or truncated. Floats (RSSI, SNR, GPS) read back bit-exact
//! what was written (serde_json's `float_roundtrip`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::PrimitiveDateTime;

/// Largest stream frame the client accepts by default (1 MiB). A MIC challenge of 4096
/// candidates is about 45 KiB of JSON, so this leaves wide room.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 1 << 20;

/// The protocol version this crate speaks and stamps on every frame it sends.
pub const PROTOCOL_VERSION: u32 = 1;

/// Values that stream frames carry as a plain JSON integer.
pub(crate) trait AsWireInt {
    /// The integer sent on the wire.
    fn wire_int(&self) -> u64;
}

/// `serialize_with` helper: an identifier as a JSON number.
pub(crate) fn num<T: AsWireInt, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.wire_int())
}

/// `serialize_with` helper: an optional identifier as a JSON number (use with
/// `skip_serializing_if = "Option::is_none"`).
pub(crate) fn num_opt<T: AsWireInt, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_u64(v.wire_int()),
        None => s.serialize_none(),
    }
}

/// `serialize_with` helper: a list of identifiers as JSON numbers.
pub(crate) fn num_vec<T: AsWireInt, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(AsWireInt::wire_int))
}

/// Identifiers that stream frames carry as a plain JSON integer, read back.
///
/// The identifiers' own `Deserialize` also takes hex strings (the REST form); stream
/// fields read with the helpers below take only integers, so a hex string where the
/// protocol puts a number is a type error instead of being read as hex.
pub(crate) trait FromWireInt: From<Self::Int> {
    /// The integer type on the wire; its range check rejects wider values.
    type Int: for<'de> Deserialize<'de>;
}

/// `deserialize_with` helper: an identifier from a JSON number.
pub(crate) fn num_in<'de, T: FromWireInt, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    T::Int::deserialize(d).map(T::from)
}

/// `deserialize_with` helper: an optional identifier from a JSON number or `null` (use
/// with `default`).
pub(crate) fn num_in_opt<'de, T: FromWireInt, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Option::<T::Int>::deserialize(d)?.map(T::from))
}

/// `deserialize_with` helper: a list of identifiers from JSON numbers.
pub(crate) fn num_in_vec<'de, T: FromWireInt, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Vec::<T::Int>::deserialize(d)?
        .into_iter()
        .map(T::from)
        .collect())
}

time::serde::format_description!(
    rest_timestamp_out,
    PrimitiveDateTime,
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
);

const TIMESTAMP_IN: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
);

/// Serde helpers for REST timestamps: written with exactly six fractional digits like the
/// service, read with any number of them (or none).
pub(crate) mod timestamp {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &PrimitiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        rest_timestamp_out::serialize(v, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<PrimitiveDateTime, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Parses a naive ISO-8601 timestamp as the service writes it.
    pub(crate) fn parse(text: &str) -> Result<PrimitiveDateTime, time::error::Parse> {
        PrimitiveDateTime::parse(text, TIMESTAMP_IN)
    }

    /// Formats a timestamp as the service writes it.
    #[cfg(test)]
    pub(crate) fn format(v: &PrimitiveDateTime) -> String {
        let mut out = Vec::with_capacity(26);
        // Writing into a Vec cannot fail and the format only holds valid components.
        let _ = rest_timestamp_out::serialize(v, &mut serde_json::Serializer::new(&mut out));
        String::from_utf8_lossy(&out).trim_matches('"').to_owned()
    }
}

/// `{"deleted": n}`, the answer to the delete calls.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct Deleted {
    pub(crate) deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_microseconds() {
        let t = timestamp::parse("2022-05-31T07:12:02.875460").unwrap();
        assert_eq!(timestamp::format(&t), "2022-05-31T07:12:02.875460");
        let t = timestamp::parse("2022-05-31T07:12:02").unwrap();
        assert_eq!(timestamp::format(&t), "2022-05-31T07:12:02.000000");
        let t = timestamp::parse("2022-05-31T07:12:02.5").unwrap();
        assert_eq!(timestamp::format(&t), "2022-05-31T07:12:02.500000");
        assert!(timestamp::parse("2022-05-31 07:12:02").is_err());
        assert!(timestamp::parse("yesterday").is_err());
    }
}
