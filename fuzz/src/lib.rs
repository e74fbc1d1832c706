//! What every fuzz target checks besides "no panic": a decoded value encodes, and the
//! encoding decodes back to the same value and the same text.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes `data` as `T`; when it decodes, checks the encode/decode round trip and
/// returns the value.
pub fn check_round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let first: T = serde_json::from_slice(data).ok()?;
    let text = serde_json::to_string(&first).expect("a decoded value encodes");
    let second: T = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("own encoding does not decode: {e}: {text}"));
    assert_eq!(first, second, "round trip changed the value: {text}");
    assert_eq!(
        serde_json::to_string(&second).unwrap(),
        text,
        "encoding is not stable"
    );
    Some(first)
}

/// Like [`check_round_trip`] for values that encoding may normalize once (REST
/// timestamps are written with microseconds): only the second trip must be exact.
pub fn check_stable_encoding<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let first: T = serde_json::from_slice(data).ok()?;
    let text = serde_json::to_string(&first).expect("a decoded value encodes");
    check_round_trip::<T>(text.as_bytes()).expect("own encoding decodes");
    Some(first)
}
