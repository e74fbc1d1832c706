//! Helpers of the wire tests: decoding through text, round trips, editing frames by JSON
//! pointer, and one reference frame of each kind.
#![allow(dead_code)] // Each module uses its own subset.

use ran_routing::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// Decodes through text, as frames arrive.
pub fn decode<T: DeserializeOwned>(frame: &Value) -> Result<T, serde_json::Error> {
    serde_json::from_str(&frame.to_string())
}

pub fn decode_ok<T: DeserializeOwned>(frame: &Value) -> T {
    decode(frame).unwrap_or_else(|e| panic!("{e}: {frame}"))
}

/// Decodes, re-encodes and checks the JSON value is unchanged.
pub fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(frame: &Value) -> T {
    let decoded: T = decode_ok(frame);
    let encoded = serde_json::to_value(&decoded).unwrap();
    assert_eq!(&encoded, frame, "re-encoded differs for {decoded:?}");
    decoded
}

/// The decode error's text; panics when the frame decodes.
pub fn decode_err<T: DeserializeOwned + std::fmt::Debug>(frame: &Value) -> String {
    match decode::<T>(frame) {
        Ok(v) => panic!("decoded {v:?} from {frame}"),
        Err(e) => e.to_string(),
    }
}

/// `frame` with the value at JSON pointer `path` replaced (or its last key added).
pub fn with(frame: &Value, path: &str, value: Value) -> Value {
    let mut frame = frame.clone();
    let (parent, key) = path.rsplit_once('/').unwrap();
    let parent = frame
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{path}"));
    match parent {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        _ => panic!("{path}"),
    }
    frame
}

/// `frame` without the key at JSON pointer `path`.
pub fn without(frame: &Value, path: &str) -> Value {
    let mut frame = frame.clone();
    let (parent, key) = path.rsplit_once('/').unwrap();
    let removed = frame
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(key));
    assert!(removed.is_some(), "{path} not in frame");
    frame
}

pub const LOSSY_EUI: u64 = 18446744073709551557; // not representable as f64

pub fn upstream() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 4, "Outdated": true, "DevEUIs": [8844537008791951183u64],
     "Radio": {"Frequency": 868100000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}, "RSSI": -52.0, "SNR": -3.0},
     "PHYPayloadNoMIC": [64, 184], "MICChallenge": [1308830714, 114830713],
     "GPS": {"Lat": 1.5, "Lng": 2.5, "Alt": 3.0}})
}

pub fn ack() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": 18446744073709551615u64, "MIC": 4294967295u32})
}

pub fn reject() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 3, "ResultCode": "MICFailed"})
}

pub fn downstream() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 1, "DevEUI": 5, "TargetDevAddr": 7,
     "TxWindow": {"Radio": {"Frequency": 868300000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}}, "Delay": 1},
     "PHYPayload": [104, 105]})
}

pub fn multicast() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 2, "Addr": 4010043934u32,
     "TxWindow": {"Radio": {"Frequency": 868300000, "FSK": {"FrequencyDeviation": 5000, "BitRate": 50000}}, "TMMS": [1, 2]},
     "PHYPayload": [104, 105]})
}

pub fn ds_ack() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 1, "MailboxID": 1})
}

pub fn ds_result() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 1, "ResultCode": "TooLate", "ResultMessage": "x", "MailboxID": 9})
}

pub fn device_abp() -> Value {
    json!({"DevEUI": "ffffffffffffffff", "JoinEUI": null, "ActiveDevAddr": "ffffffff",
     "TargetDevAddr": null, "Details": null, "CreatedAt": "2022-05-31T07:14:04.473749"})
}

pub fn group() -> Value {
    json!({"addr": "dafa0c11", "created_at": "2022-08-26T13:35:30.969638",
     "name": "My first multicast group", "devices": ["fafafafafafafafa"]})
}

pub fn lora() -> Value {
    json!({"Spreading": 12, "Bandwidth": 125000})
}

pub fn fsk() -> Value {
    json!({"FrequencyDeviation": 5000, "BitRate": 50000})
}

pub fn fhss() -> Value {
    json!({"OCW": 137000, "CodingRate": "1/3"})
}
