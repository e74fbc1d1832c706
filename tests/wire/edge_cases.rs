//! Edge cases of the wire codec: extreme values, optional and unknown fields, and every
//! way a frame or body can be wrong, each rejected with its own error.

mod common;

use ran_routing::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Decodes through text, as frames arrive.
fn decode<T: DeserializeOwned>(frame: &Value) -> Result<T, serde_json::Error> {
    serde_json::from_str(&frame.to_string())
}

fn decode_ok<T: DeserializeOwned>(frame: &Value) -> T {
    decode(frame).unwrap_or_else(|e| panic!("{e}: {frame}"))
}

/// Decodes, re-encodes and checks the JSON value is unchanged.
fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(frame: &Value) -> T {
    let decoded: T = decode_ok(frame);
    let encoded = serde_json::to_value(&decoded).unwrap();
    assert_eq!(&encoded, frame, "re-encoded differs for {decoded:?}");
    decoded
}

/// The decode error's text; panics when the frame decodes.
fn decode_err<T: DeserializeOwned + std::fmt::Debug>(frame: &Value) -> String {
    match decode::<T>(frame) {
        Ok(v) => panic!("decoded {v:?} from {frame}"),
        Err(e) => e.to_string(),
    }
}

/// `frame` with the value at JSON pointer `path` replaced (or its last key added).
fn with(frame: &Value, path: &str, value: Value) -> Value {
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
fn without(frame: &Value, path: &str) -> Value {
    let mut frame = frame.clone();
    let (parent, key) = path.rsplit_once('/').unwrap();
    let removed = frame
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(key));
    assert!(removed.is_some(), "{path} not in frame");
    frame
}

const LOSSY_EUI: u64 = 18446744073709551557; // not representable as f64

fn upstream() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 4, "Outdated": true, "DevEUIs": [8844537008791951183u64],
     "Radio": {"Frequency": 868100000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}, "RSSI": -52.0, "SNR": -3.0},
     "PHYPayloadNoMIC": [64, 184], "MICChallenge": [1308830714, 114830713],
     "GPS": {"Lat": 1.5, "Lng": 2.5, "Alt": 3.0}})
}

fn ack() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": 18446744073709551615u64, "MIC": 4294967295u32})
}

fn reject() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 3, "ResultCode": "MICFailed"})
}

fn downstream() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 1, "DevEUI": 5, "TargetDevAddr": 7,
     "TxWindow": {"Radio": {"Frequency": 868300000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}}, "Delay": 1},
     "PHYPayload": [104, 105]})
}

fn multicast() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 2, "Addr": 4010043934u32,
     "TxWindow": {"Radio": {"Frequency": 868300000, "FSK": {"FrequencyDeviation": 5000, "BitRate": 50000}}, "TMMS": [1, 2]},
     "PHYPayload": [104, 105]})
}

fn ds_ack() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 1, "MailboxID": 1})
}

fn ds_result() -> Value {
    json!({"ProtocolVersion": 1, "TransactionID": 1, "ResultCode": "TooLate", "ResultMessage": "x", "MailboxID": 9})
}

fn device_abp() -> Value {
    json!({"DevEUI": "ffffffffffffffff", "JoinEUI": null, "ActiveDevAddr": "ffffffff",
     "TargetDevAddr": null, "Details": null, "CreatedAt": "2022-05-31T07:14:04.473749"})
}

fn group() -> Value {
    json!({"addr": "dafa0c11", "created_at": "2022-08-26T13:35:30.969638",
     "name": "My first multicast group", "devices": ["fafafafafafafafa"]})
}

fn lora() -> Value {
    json!({"Spreading": 12, "Bandwidth": 125000})
}

fn fsk() -> Value {
    json!({"FrequencyDeviation": 5000, "BitRate": 50000})
}

fn fhss() -> Value {
    json!({"OCW": 137000, "CodingRate": "1/3"})
}

// ---------------------------------------------------------------------------------------
// Extreme identifiers and transaction ids
// ---------------------------------------------------------------------------------------

#[test]
fn dev_eui_extremes_in_stream_frames() {
    for eui in [0, 1, LOSSY_EUI, u64::MAX - 1, u64::MAX] {
        let m: UpstreamMessage =
            round_trip(&with(&upstream(), "/DevEUIs", json!([eui, 0, u64::MAX])));
        assert_eq!(
            m.dev_euis,
            [DevEui::new(eui), DevEui::new(0), DevEui::new(u64::MAX)]
        );

        let r: UpstreamReply = round_trip(&with(&ack(), "/DevEUI", json!(eui)));
        assert!(matches!(r, UpstreamReply::Ack(a) if a.dev_eui == DevEui::new(eui)));

        let d: DownstreamRequest = round_trip(&with(&downstream(), "/DevEUI", json!(eui)));
        assert!(matches!(d, DownstreamRequest::Unicast(m) if m.dev_eui.get() == eui));
    }
}

#[test]
fn dev_addr_extremes_in_stream_frames() {
    for addr in [0, 1, u32::MAX] {
        let d: DownstreamRequest = round_trip(&with(&downstream(), "/TargetDevAddr", json!(addr)));
        assert!(matches!(d,
            DownstreamRequest::Unicast(m) if m.target_dev_addr == Some(DevAddr::new(addr))));
        let d: DownstreamRequest = round_trip(&with(&multicast(), "/Addr", json!(addr)));
        assert!(matches!(d,
            DownstreamRequest::Multicast(m) if m.addr == MulticastAddr::new(addr)));
    }
}

#[test]
fn eui_extremes_in_rest_hex_strings() {
    for (eui, hex) in [
        (0, "0000000000000000"),
        (u64::MAX, "ffffffffffffffff"),
        (LOSSY_EUI, "ffffffffffffffc5"),
    ] {
        let otaa = json!({"DevEUI": hex, "JoinEUI": hex, "ActiveDevAddr": null,
            "TargetDevAddr": null, "Details": null, "CreatedAt": "2022-05-31T07:14:04.473749"});
        let d: Device = round_trip(&otaa);
        assert_eq!(d.dev_eui, DevEui::new(eui));
        assert_eq!(d.join_eui, Some(JoinEui::new(eui)));

        let g: MulticastGroup = round_trip(&with(&group(), "/devices", json!([hex, hex])));
        assert_eq!(g.devices, [DevEui::new(eui); 2]);
    }
    for (addr, hex) in [(0, "00000000"), (u32::MAX, "ffffffff")] {
        let d: Device = round_trip(&with(
            &with(&device_abp(), "/ActiveDevAddr", json!(hex)),
            "/TargetDevAddr",
            json!(hex),
        ));
        assert_eq!(d.active_dev_addr, Some(DevAddr::new(addr)));
        assert_eq!(d.target_dev_addr, Some(DevAddr::new(addr)));
        let g: MulticastGroup = round_trip(&with(&group(), "/addr", json!(hex)));
        assert_eq!(g.addr, MulticastAddr::new(addr));
    }
}

#[test]
fn rest_hex_is_read_in_any_case_and_written_lower_case() {
    let d: Device = decode_ok(&with(&device_abp(), "/DevEUI", json!("7ABE1B8C93D7174F")));
    assert_eq!(d.dev_eui, DevEui::new(0x7abe1b8c93d7174f));
    assert_eq!(
        serde_json::to_value(&d).unwrap()["DevEUI"],
        "7abe1b8c93d7174f"
    );
}

#[test]
fn transaction_ids_near_u64_max() {
    for id in [u64::MAX, u64::MAX - 1, LOSSY_EUI] {
        let m: UpstreamMessage = round_trip(&with(&upstream(), "/TransactionID", json!(id)));
        assert_eq!(m.transaction_id, id);
        let r: UpstreamReply = round_trip(&with(&ack(), "/TransactionID", json!(id)));
        assert_eq!(r.transaction_id(), id);
        let r: UpstreamReply = round_trip(&with(&reject(), "/TransactionID", json!(id)));
        assert_eq!(r.transaction_id(), id);
        let d: DownstreamRequest = round_trip(&with(&downstream(), "/TransactionID", json!(id)));
        assert_eq!(d.transaction_id(), id);
        let d: DownstreamRequest = round_trip(&with(&multicast(), "/TransactionID", json!(id)));
        assert_eq!(d.transaction_id(), id);
        let a: DownstreamReply = round_trip(&with(&ds_ack(), "/TransactionID", json!(id)));
        assert_eq!(a.transaction_id(), id);
        let r: DownstreamReply = round_trip(&with(&ds_result(), "/TransactionID", json!(id)));
        assert_eq!(r.transaction_id(), id);
        // Mailbox ids, class C deadlines and class B slots are u64 too.
        let a: DownstreamReply = round_trip(&with(&ds_ack(), "/MailboxID", json!(id)));
        assert!(matches!(a, DownstreamReply::Ack(a) if a.mailbox_id == id));
        let window = json!({"Radio": {"Frequency": 1, "LoRa": lora()}, "Deadline": id});
        let d: DownstreamRequest = round_trip(&with(&downstream(), "/TxWindow", window));
        let DownstreamRequest::Unicast(d) = d else {
            panic!()
        };
        assert_eq!(d.tx_window.timing, TxTiming::Deadline(id));
        let window = json!({"Radio": {"Frequency": 1, "LoRa": lora()}, "TMMS": [id, 0, id - 1]});
        let w: TransmissionWindow = round_trip(&window);
        assert_eq!(w.timing, TxTiming::Tmms(vec![id, 0, id - 1]));
    }
}

#[test]
fn lossy_f64_values_are_rejected_not_rounded() {
    // 2^64 does not fit; serde_json reads it as a float, which no integer field accepts.
    let too_big = "18446744073709551616";
    for text in [
        upstream().to_string().replace(
            "\"TransactionID\":4",
            &format!("\"TransactionID\":{too_big}"),
        ),
        upstream()
            .to_string()
            .replace("8844537008791951183", too_big),
    ] {
        assert_ne!(text, upstream().to_string());
        assert!(
            serde_json::from_str::<UpstreamMessage>(&text).is_err(),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Signal values and floats
// ---------------------------------------------------------------------------------------

#[test]
fn negative_rssi_and_snr() {
    for (rssi, snr) in [
        (-140.5, -20.25),
        (-0.0, -0.5),
        (-1e-7, -123.456789),
        (5.0, 12.5),
    ] {
        let frame = with(
            &with(&upstream(), "/Radio/RSSI", json!(rssi)),
            "/Radio/SNR",
            json!(snr),
        );
        let m: UpstreamMessage = round_trip(&frame);
        assert_eq!(m.radio.rssi.to_bits(), f64::to_bits(rssi));
        assert_eq!(m.radio.snr.to_bits(), f64::to_bits(snr));
    }
    // Servers may write whole numbers without a fraction.
    let m: UpstreamMessage = decode_ok(&with(&upstream(), "/Radio/RSSI", json!(-52)));
    assert_eq!(m.radio.rssi, -52.0);
}

#[test]
fn floats_survive_exactly() {
    // The shortest decimal form of these is not parsed back to the same bits by a
    // best-effort float parser.
    for x in [
        -203.99663742566142,
        6.72810706537036e-246,
        48.85837009999999,
        f64::MAX,
    ] {
        let frame = with(&upstream(), "/GPS", json!({"Lat": x, "Lng": -x, "Alt": x}));
        let m: UpstreamMessage = round_trip(&frame);
        let gps = m.gps.unwrap();
        assert_eq!(gps.lat.to_bits(), x.to_bits(), "{x}");
        assert_eq!(gps.lng.to_bits(), (-x).to_bits(), "{x}");
    }
}

// ---------------------------------------------------------------------------------------
// Optional fields
// ---------------------------------------------------------------------------------------

#[test]
fn missing_optional_fields() {
    let m: UpstreamMessage = round_trip(&without(&upstream(), "/Outdated"));
    assert_eq!(m.outdated, None);
    assert!(!m.is_outdated());
    let m: UpstreamMessage = round_trip(&without(&upstream(), "/GPS"));
    assert_eq!(m.gps, None);
    let m: UpstreamMessage = round_trip(&without(&upstream(), "/GPS/Alt"));
    assert_eq!(m.gps.unwrap().alt, None);
    let m: UpstreamMessage = round_trip(&with(&upstream(), "/Outdated", json!(false)));
    assert_eq!(m.outdated, Some(false));

    let d: DownstreamRequest = round_trip(&without(&downstream(), "/TargetDevAddr"));
    assert!(matches!(d, DownstreamRequest::Unicast(m) if m.target_dev_addr.is_none()));

    let r: UpstreamReply = round_trip(&reject());
    assert!(matches!(r, UpstreamReply::Reject(r) if r.result_message.is_none()));
    let r: UpstreamReply = round_trip(&with(&reject(), "/ResultMessage", json!("bad key")));
    assert!(
        matches!(r, UpstreamReply::Reject(r) if r.result_message.as_deref() == Some("bad key"))
    );

    let r: DownstreamReply = round_trip(&without(&ds_result(), "/ResultMessage"));
    assert!(matches!(r, DownstreamReply::Result(r) if r.result_message.is_none()));
    let r: DownstreamReply = round_trip(&without(&ds_result(), "/MailboxID"));
    assert!(matches!(r, DownstreamReply::Result(r) if r.mailbox_id.is_none()));
}

#[test]
fn null_optional_fields_read_as_absent() {
    for path in ["/Outdated", "/GPS", "/GPS/Alt"] {
        let m: UpstreamMessage = decode_ok(&with(&upstream(), path, Value::Null));
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            without(&upstream(), path),
            "{path}"
        );
    }
    let d: DownstreamRequest = decode_ok(&with(&downstream(), "/TargetDevAddr", Value::Null));
    assert!(matches!(d, DownstreamRequest::Unicast(m) if m.target_dev_addr.is_none()));
    let r: DownstreamReply = decode_ok(&with(&ds_result(), "/ResultMessage", Value::Null));
    assert!(matches!(r, DownstreamReply::Result(r) if r.result_message.is_none()));
}

#[test]
fn missing_protocol_version_means_version_1() {
    for frame in [
        upstream(),
        ack(),
        reject(),
        downstream(),
        multicast(),
        ds_ack(),
        ds_result(),
    ] {
        let frame = without(&frame, "/ProtocolVersion");
        let encoded = match frame.get("Radio") {
            Some(_) => serde_json::to_value(decode_ok::<UpstreamMessage>(&frame)),
            None if frame.get("TxWindow").is_some() => {
                serde_json::to_value(decode_ok::<DownstreamRequest>(&frame))
            }
            None if frame.get("MailboxID").is_some() || frame.get("ResultMessage").is_some() => {
                serde_json::to_value(decode_ok::<DownstreamReply>(&frame))
            }
            None => serde_json::to_value(decode_ok::<UpstreamReply>(&frame)),
        }
        .unwrap();
        assert_eq!(encoded["ProtocolVersion"], 1, "{frame}");
    }
}

#[test]
fn rest_device_without_optional_keys() {
    let minimal = json!({"DevEUI": "0000000000000001", "CreatedAt": "2022-05-31T07:14:04.473749"});
    let d: Device = decode_ok(&minimal);
    assert_eq!(d.join_eui, None);
    assert_eq!(d.active_dev_addr, None);
    assert_eq!(d.target_dev_addr, None);
    assert_eq!(d.details, None);
    assert_eq!(d.identity(), None);
    let g: MulticastGroup = decode_ok(&without(&group(), "/devices"));
    assert!(g.devices.is_empty());
}

// ---------------------------------------------------------------------------------------
// Unknown fields
// ---------------------------------------------------------------------------------------

fn extra() -> Value {
    json!({"nested": [1, {"deep": null}], "big": 18446744073709551616u128.to_string()})
}

/// Adds an unknown key to the object at `path` and checks decoding ignores it.
fn ignores_unknown_at<T: Serialize + DeserializeOwned + std::fmt::Debug>(
    frame: &Value,
    path: &str,
) {
    let expected = serde_json::to_value(decode_ok::<T>(frame)).unwrap();
    for (key, value) in [
        ("FutureField", extra()),
        ("x", json!(1.5)),
        ("ProtocolVersion2", json!("2")),
    ] {
        let extended = with(frame, &format!("{path}/{key}"), value);
        let decoded: T = decode(&extended).unwrap_or_else(|e| panic!("{e}: {extended}"));
        assert_eq!(serde_json::to_value(&decoded).unwrap(), expected, "{path}");
    }
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    for path in ["", "/Radio", "/Radio/LoRa", "/GPS"] {
        ignores_unknown_at::<UpstreamMessage>(&upstream(), path);
    }
    let fsk_up = with(&without(&upstream(), "/Radio/LoRa"), "/Radio/FSK", fsk());
    ignores_unknown_at::<UpstreamMessage>(&fsk_up, "/Radio/FSK");
    let fhss_up = with(&without(&upstream(), "/Radio/LoRa"), "/Radio/FHSS", fhss());
    ignores_unknown_at::<UpstreamMessage>(&fhss_up, "/Radio/FHSS");

    ignores_unknown_at::<UpstreamReply>(&ack(), "");
    ignores_unknown_at::<UpstreamReply>(&reject(), "");

    for path in ["", "/TxWindow", "/TxWindow/Radio", "/TxWindow/Radio/LoRa"] {
        ignores_unknown_at::<DownstreamRequest>(&downstream(), path);
        ignores_unknown_at::<DownstreamMessage>(&downstream(), path);
    }
    for path in ["", "/TxWindow", "/TxWindow/Radio", "/TxWindow/Radio/FSK"] {
        ignores_unknown_at::<DownstreamRequest>(&multicast(), path);
        ignores_unknown_at::<MulticastDownstreamMessage>(&multicast(), path);
    }
    ignores_unknown_at::<DownstreamReply>(&ds_ack(), "");
    ignores_unknown_at::<DownstreamReply>(&ds_result(), "");
    ignores_unknown_at::<DownstreamAck>(&ds_ack(), "");
    ignores_unknown_at::<DownstreamResult>(&ds_result(), "");

    ignores_unknown_at::<Device>(&device_abp(), "");
    ignores_unknown_at::<MulticastGroup>(&group(), "");
}

#[test]
fn signal_keys_in_a_downstream_radio_are_unknown_fields() {
    let frame = with(&downstream(), "/TxWindow/Radio/RSSI", json!("not a number"));
    let d: DownstreamRequest = decode_ok(&frame);
    assert_eq!(serde_json::to_value(d).unwrap(), downstream());
}

#[test]
fn unknown_fields_in_error_bodies_are_ignored() {
    let body = json!({"detail": {"error_code": "ValidationFailed", "error_description": "bad",
        "error_detail": [{"loc": ["body", "DevEUIs", 0], "msg": "not hex", "type": "value_error",
                          "ctx": {"limit_value": 255}}],
        "request_id": "abc"}, "trace": [1, 2]});
    let err = common::api_error_from(422, &body.to_string());
    assert_eq!(
        err,
        ApiError::ValidationFailed {
            description: "bad".into(),
            detail: vec![FieldError {
                loc: vec!["body".into(), "DevEUIs".into(), "0".into()],
                msg: "not hex".into(),
                kind: "value_error".into(),
            }],
            omitted: 0,
        }
    );
}

// ---------------------------------------------------------------------------------------
// Missing mandatory fields
// ---------------------------------------------------------------------------------------

/// Removing the key at `path` is a decode error that names `key`.
fn requires<T: DeserializeOwned + std::fmt::Debug>(frame: &Value, path: &str, key: &str) {
    let err = decode_err::<T>(&without(frame, path));
    assert!(
        err.contains(key),
        "removing {path}: {err:?} should name {key}"
    );
}

#[test]
fn every_mandatory_upstream_field_is_required() {
    for path in [
        "/TransactionID",
        "/DevEUIs",
        "/Radio",
        "/PHYPayloadNoMIC",
        "/MICChallenge",
        "/Radio/Frequency",
        "/Radio/RSSI",
        "/Radio/SNR",
        "/Radio/LoRa/Spreading",
        "/Radio/LoRa/Bandwidth",
        "/GPS/Lat",
        "/GPS/Lng",
    ] {
        let key = path.rsplit('/').next().unwrap();
        requires::<UpstreamMessage>(&upstream(), path, key);
    }
    let fsk_up = with(&without(&upstream(), "/Radio/LoRa"), "/Radio/FSK", fsk());
    requires::<UpstreamMessage>(
        &fsk_up,
        "/Radio/FSK/FrequencyDeviation",
        "FrequencyDeviation",
    );
    requires::<UpstreamMessage>(&fsk_up, "/Radio/FSK/BitRate", "BitRate");
    let fhss_up = with(&without(&upstream(), "/Radio/LoRa"), "/Radio/FHSS", fhss());
    requires::<UpstreamMessage>(&fhss_up, "/Radio/FHSS/OCW", "OCW");
    requires::<UpstreamMessage>(&fhss_up, "/Radio/FHSS/CodingRate", "CodingRate");
}

#[test]
fn a_radio_without_modulation_is_rejected() {
    let err = decode_err::<UpstreamMessage>(&without(&upstream(), "/Radio/LoRa"));
    assert!(err.contains("modulation"), "{err}");
    let err = decode_err::<DownstreamRequest>(&without(&downstream(), "/TxWindow/Radio/LoRa"));
    assert!(err.contains("modulation"), "{err}");
    let err = decode_err::<DownstreamRadio>(&json!({"Frequency": 1}));
    assert!(err.contains("modulation"), "{err}");
    // A key that merely looks like one is not a modulation.
    let err = decode_err::<DownstreamRadio>(&json!({"Frequency": 1, "lora": lora()}));
    assert!(err.contains("modulation"), "{err}");
}

#[test]
fn every_mandatory_reply_field_is_required() {
    requires::<UpstreamReply>(&ack(), "/TransactionID", "TransactionID");
    requires::<UpstreamReply>(&ack(), "/DevEUI", "DevEUI");
    requires::<UpstreamReply>(&ack(), "/MIC", "MIC");
    requires::<UpstreamReply>(&reject(), "/TransactionID", "TransactionID");
    requires::<UpstreamAck>(&ack(), "/DevEUI", "DevEUI");
    requires::<UpstreamAck>(&ack(), "/MIC", "MIC");
    requires::<UpstreamReject>(&reject(), "/ResultCode", "ResultCode");
    // A reject without its code reads as an ack, which then lacks its DevEUI.
    requires::<UpstreamReply>(&reject(), "/ResultCode", "DevEUI");

    requires::<DownstreamReply>(&ds_ack(), "/TransactionID", "TransactionID");
    requires::<DownstreamReply>(&ds_ack(), "/MailboxID", "MailboxID");
    requires::<DownstreamReply>(&ds_result(), "/TransactionID", "TransactionID");
    requires::<DownstreamAck>(&ds_ack(), "/MailboxID", "MailboxID");
    requires::<DownstreamResult>(&ds_result(), "/ResultCode", "ResultCode");
}

#[test]
fn every_mandatory_downstream_field_is_required() {
    for path in [
        "/TransactionID",
        "/DevEUI",
        "/TxWindow",
        "/PHYPayload",
        "/TxWindow/Radio",
        "/TxWindow/Radio/Frequency",
        "/TxWindow/Radio/LoRa/Spreading",
        "/TxWindow/Radio/LoRa/Bandwidth",
    ] {
        let key = path.rsplit('/').next().unwrap();
        requires::<DownstreamRequest>(&downstream(), path, key);
        requires::<DownstreamMessage>(&downstream(), path, key);
    }
    for path in [
        "/TransactionID",
        "/Addr",
        "/TxWindow",
        "/PHYPayload",
        "/TxWindow/Radio",
        "/TxWindow/Radio/FSK/FrequencyDeviation",
        "/TxWindow/Radio/FSK/BitRate",
    ] {
        let key = path.rsplit('/').next().unwrap();
        requires::<MulticastDownstreamMessage>(&multicast(), path, key);
    }
    // Without `Addr` a frame is unicast, so it needs a DevEUI.
    requires::<DownstreamRequest>(&multicast(), "/Addr", "DevEUI");
    for path in [
        "/TransactionID",
        "/TxWindow",
        "/PHYPayload",
        "/TxWindow/Radio",
    ] {
        let key = path.rsplit('/').next().unwrap();
        requires::<DownstreamRequest>(&multicast(), path, key);
    }
}

#[test]
fn a_window_without_timing_is_rejected() {
    let err = decode_err::<DownstreamRequest>(&without(&downstream(), "/TxWindow/Delay"));
    assert!(err.contains("timing"), "{err}");
    let err = decode_err::<DownstreamRequest>(&without(&multicast(), "/TxWindow/TMMS"));
    assert!(err.contains("timing"), "{err}");
}

#[test]
fn every_mandatory_rest_field_is_required() {
    requires::<Device>(&device_abp(), "/DevEUI", "DevEUI");
    requires::<Device>(&device_abp(), "/CreatedAt", "CreatedAt");
    requires::<MulticastGroup>(&group(), "/addr", "addr");
    requires::<MulticastGroup>(&group(), "/created_at", "created_at");
    requires::<MulticastGroup>(&group(), "/name", "name");
}

// ---------------------------------------------------------------------------------------
// Exactly one modulation, exactly one timing
// ---------------------------------------------------------------------------------------

#[test]
fn two_modulations_in_one_radio_are_rejected() {
    for (a, va, b, vb) in [
        ("LoRa", lora(), "FSK", fsk()),
        ("FSK", fsk(), "LoRa", lora()),
        ("LoRa", lora(), "FHSS", fhss()),
        ("FHSS", fhss(), "FSK", fsk()),
    ] {
        let radio = json!({"Frequency": 868100000, a: va, b: vb, "RSSI": -1.0, "SNR": 1.0});
        for err in [
            decode_err::<UpstreamMessage>(&with(&upstream(), "/Radio", radio.clone())),
            decode_err::<UpstreamRadio>(&radio),
            decode_err::<DownstreamRadio>(&radio),
            decode_err::<DownstreamRequest>(&with(&downstream(), "/TxWindow/Radio", radio.clone())),
            decode_err::<DownstreamRequest>(&with(&multicast(), "/TxWindow/Radio", radio.clone())),
        ] {
            assert!(err.contains("exactly one modulation"), "{err}");
            assert!(err.contains(a) && err.contains(b), "{err}");
        }
    }
    // The same modulation twice is a duplicate key, not a second modulation.
    let text = r#"{"Frequency": 1, "LoRa": {"Spreading": 7, "Bandwidth": 125000},
                   "LoRa": {"Spreading": 7, "Bandwidth": 125000}}"#;
    let err = serde_json::from_str::<DownstreamRadio>(text).unwrap_err();
    assert!(err.to_string().contains("duplicate field `LoRa`"), "{err}");
}

#[test]
fn two_timings_in_one_window_are_rejected() {
    let radio = json!({"Frequency": 868300000, "LoRa": lora()});
    for (a, va, b, vb) in [
        ("Delay", json!(1), "TMMS", json!([1])),
        ("TMMS", json!([1]), "Delay", json!(1)),
        ("Delay", json!(1), "Deadline", json!(1)),
        ("Deadline", json!(1), "TMMS", json!([1])),
    ] {
        let window = json!({"Radio": radio, a: va, b: vb});
        for err in [
            decode_err::<TransmissionWindow>(&window),
            decode_err::<DownstreamRequest>(&with(&downstream(), "/TxWindow", window.clone())),
            decode_err::<DownstreamRequest>(&with(&multicast(), "/TxWindow", window.clone())),
            decode_err::<DownstreamMessage>(&with(&downstream(), "/TxWindow", window.clone())),
        ] {
            assert!(err.contains("exactly one timing"), "{err}");
            assert!(err.contains(a) && err.contains(b), "{err}");
        }
    }
    let text = r#"{"Radio": {"Frequency": 1, "LoRa": {"Spreading": 7, "Bandwidth": 1}},
                   "Delay": 1, "Delay": 2}"#;
    let err = serde_json::from_str::<TransmissionWindow>(text).unwrap_err();
    assert!(err.to_string().contains("duplicate field `Delay`"), "{err}");
}

#[test]
fn every_modulation_and_timing_round_trips() {
    for (key, m) in [("LoRa", lora()), ("FSK", fsk()), ("FHSS", fhss())] {
        for (tkey, t) in [
            ("Delay", json!(15)),
            ("TMMS", json!([1, 2, 3, 4, 5, 6, 7, 8])),
            ("Deadline", json!(1_700_000_000u64)),
        ] {
            let window = json!({"Radio": {"Frequency": 923300000, key: m}, tkey: t});
            let w: TransmissionWindow = round_trip(&window);
            let d: DownstreamRequest =
                round_trip(&with(&downstream(), "/TxWindow", window.clone()));
            assert!(matches!(&d, DownstreamRequest::Unicast(d) if d.tx_window == w));
            let d: DownstreamRequest = round_trip(&with(&multicast(), "/TxWindow", window));
            assert!(matches!(&d, DownstreamRequest::Multicast(d) if d.tx_window == w));
        }
        let up = with(
            &without(&upstream(), "/Radio/LoRa"),
            &format!("/Radio/{key}"),
            m,
        );
        let _: UpstreamMessage = round_trip(&up);
    }
}

#[test]
fn radio_keys_may_come_in_any_order() {
    let text = r#"{"SNR": -3.0, "LoRa": {"Bandwidth": 125000, "Spreading": 12},
                   "RSSI": -52.0, "Frequency": 868100000}"#;
    let r: UpstreamRadio = serde_json::from_str(text).unwrap();
    assert_eq!(
        r.modulation,
        Modulation::LoRa(LoRaModulation::new(12, 125000))
    );
    let text = r#"{"Delay": 3, "Radio": {"FSK": {"BitRate": 1, "FrequencyDeviation": 2},
                   "Frequency": 5}}"#;
    let w: TransmissionWindow = serde_json::from_str(text).unwrap();
    assert_eq!(
        w,
        TransmissionWindow::class_a(DownstreamRadio::new(5, FskModulation::new(2, 1)), 3)
    );
}

#[test]
fn encoding_is_byte_identical_to_the_reference() {
    // Key order and number formatting as the reference client writes them.
    let radio = DownstreamRadio::new(868300000, LoRaModulation::new(12, 125000));
    let m = DownstreamMessage::new(
        1,
        DevEui::new(5),
        TransmissionWindow::class_a(radio, 1),
        *b"hi",
    )
    .with_target_dev_addr(DevAddr::new(7));
    assert_eq!(
        serde_json::to_string(&m).unwrap(),
        r#"{"ProtocolVersion":1,"TransactionID":1,"DevEUI":5,"TargetDevAddr":7,"TxWindow":{"Radio":{"Frequency":868300000,"LoRa":{"Spreading":12,"Bandwidth":125000}},"Delay":1},"PHYPayload":[104,105]}"#
    );
    let m: UpstreamMessage = decode_ok(&upstream());
    assert_eq!(
        serde_json::to_string(&m).unwrap(),
        r#"{"ProtocolVersion":1,"TransactionID":4,"Outdated":true,"DevEUIs":[8844537008791951183],"Radio":{"Frequency":868100000,"LoRa":{"Spreading":12,"Bandwidth":125000},"RSSI":-52.0,"SNR":-3.0},"PHYPayloadNoMIC":[64,184],"MICChallenge":[1308830714,114830713],"GPS":{"Lat":1.5,"Lng":2.5,"Alt":3.0}}"#
    );
    let w = TransmissionWindow::class_c(
        DownstreamRadio::new(1, FhssModulation::new(137000, "1/3")),
        9,
    );
    assert_eq!(
        serde_json::to_string(&w).unwrap(),
        r#"{"Radio":{"Frequency":1,"FHSS":{"OCW":137000,"CodingRate":"1/3"}},"Deadline":9}"#
    );
}

// ---------------------------------------------------------------------------------------
// Wrong types, out-of-range numbers, floats for integers
// ---------------------------------------------------------------------------------------

/// Each replacement at `path` is a decode error.
fn rejects<T: DeserializeOwned + std::fmt::Debug>(frame: &Value, path: &str, bad: &[Value]) {
    for value in bad {
        decode_err::<T>(&with(frame, path, value.clone()));
    }
}

#[test]
fn wrong_types_are_rejected() {
    let up = upstream();
    rejects::<UpstreamMessage>(
        &up,
        "/TransactionID",
        &[json!("4"), json!(null), json!(true), json!([4])],
    );
    rejects::<UpstreamMessage>(
        &up,
        "/DevEUIs",
        &[json!(5), json!("5"), json!({}), json!(null)],
    );
    // Stream frames carry EUIs as numbers: a hex string is a wrong type, not hex.
    rejects::<UpstreamMessage>(
        &up,
        "/DevEUIs",
        &[json!(["7abe1b8c93d7174f"]), json!(["10"])],
    );
    rejects::<UpstreamMessage>(&up, "/Outdated", &[json!("yes"), json!(1)]);
    rejects::<UpstreamMessage>(&up, "/Radio", &[json!([]), json!("LoRa"), json!(null)]);
    rejects::<UpstreamMessage>(&up, "/Radio/Frequency", &[json!("868100000"), json!(null)]);
    rejects::<UpstreamMessage>(&up, "/Radio/RSSI", &[json!("-52"), json!(null), json!([])]);
    rejects::<UpstreamMessage>(&up, "/Radio/SNR", &[json!(false)]);
    rejects::<UpstreamMessage>(
        &up,
        "/Radio/LoRa",
        // (serde's derived structs also read the positional array form, e.g.
        // `[12, 125000]`; harmless, as every element is still type-checked.)
        &[json!(null), json!(12), json!("SF12")],
    );
    rejects::<UpstreamMessage>(&up, "/Radio/LoRa/Spreading", &[json!("12")]);
    rejects::<UpstreamMessage>(
        &up,
        "/PHYPayloadNoMIC",
        &[json!("QLg="), json!("40b8"), json!(null)],
    );
    rejects::<UpstreamMessage>(
        &up,
        "/PHYPayloadNoMIC",
        &[json!([-1]), json!([256]), json!(["a"])],
    );
    rejects::<UpstreamMessage>(&up, "/MICChallenge", &[json!([-1]), json!(["1"]), json!(1)]);
    rejects::<UpstreamMessage>(&up, "/GPS", &[json!(["1.5", 2.5]), json!("here")]);
    rejects::<UpstreamMessage>(&up, "/GPS/Lat", &[json!("1.5")]);
    rejects::<UpstreamMessage>(&up, "/GPS/Alt", &[json!("3")]);
    rejects::<UpstreamMessage>(&up, "/ProtocolVersion", &[json!("1"), json!(-1)]);

    rejects::<UpstreamReply>(
        &ack(),
        "/DevEUI",
        &[json!("ffffffffffffffff"), json!(-1), json!([1])],
    );
    rejects::<UpstreamReply>(&ack(), "/MIC", &[json!("1"), json!(-1)]);
    rejects::<UpstreamReply>(&reject(), "/ResultCode", &[json!(1), json!(["MICFailed"])]);
    rejects::<UpstreamReply>(&reject(), "/ResultMessage", &[json!(1)]);

    let down = downstream();
    rejects::<DownstreamRequest>(&down, "/DevEUI", &[json!("5"), json!(-5), json!(null)]);
    rejects::<DownstreamRequest>(&down, "/TargetDevAddr", &[json!("7"), json!(-7)]);
    rejects::<DownstreamRequest>(&down, "/TxWindow", &[json!(1), json!(null)]);
    rejects::<DownstreamRequest>(
        &down,
        "/TxWindow/Delay",
        &[json!("1"), json!(-1), json!(null)],
    );
    rejects::<DownstreamRequest>(&down, "/PHYPayload", &[json!("aGk="), json!([1, "2"])]);
    let mc = multicast();
    rejects::<DownstreamRequest>(&mc, "/Addr", &[json!("ef046a1e"), json!(-1)]);
    rejects::<DownstreamRequest>(
        &mc,
        "/TxWindow/TMMS",
        &[json!(1), json!(["1"]), json!([-1])],
    );
    let fhss_window = json!({"Radio": {"Frequency": 1, "FHSS": fhss()}, "Deadline": 1});
    rejects::<TransmissionWindow>(&fhss_window, "/Deadline", &[json!("1"), json!(-1)]);
    rejects::<TransmissionWindow>(&fhss_window, "/Radio/FHSS/CodingRate", &[json!(3)]);
    rejects::<TransmissionWindow>(&fhss_window, "/Radio/FHSS", &[json!("1/3")]);

    rejects::<DownstreamReply>(&ds_ack(), "/MailboxID", &[json!("1"), json!(-1)]);
    rejects::<DownstreamReply>(&ds_result(), "/ResultCode", &[json!(0)]);
    rejects::<DownstreamReply>(&ds_result(), "/MailboxID", &[json!("9")]);

    let dev = device_abp();
    rejects::<Device>(
        &dev,
        "/DevEUI",
        &[json!(true), json!(null), json!([]), json!("xyz")],
    );
    rejects::<Device>(&dev, "/JoinEUI", &[json!(false), json!("not hex")]);
    rejects::<Device>(&dev, "/ActiveDevAddr", &[json!([1]), json!("ffffffffff")]);
    rejects::<Device>(
        &dev,
        "/CreatedAt",
        &[json!(5), json!(null), json!("yesterday")],
    );
    rejects::<Device>(&dev, "/Details", &[json!(5), json!({"a": 1})]);
    let g = group();
    rejects::<MulticastGroup>(&g, "/addr", &[json!(true), json!("dafa0c11aa")]);
    rejects::<MulticastGroup>(&g, "/name", &[json!(5), json!(null)]);
    rejects::<MulticastGroup>(&g, "/devices", &[json!("fafafafafafafafa"), json!([true])]);
    rejects::<MulticastGroup>(&g, "/created_at", &[json!("2022-08-26")]);
}

#[test]
fn the_frame_itself_must_be_an_object() {
    for frame in [
        json!(null),
        json!([]),
        json!(1),
        json!("x"),
        json!([upstream()]),
    ] {
        decode_err::<UpstreamMessage>(&frame);
        decode_err::<UpstreamReply>(&frame);
        decode_err::<DownstreamRequest>(&frame);
        decode_err::<DownstreamReply>(&frame);
        decode_err::<Device>(&frame);
        decode_err::<MulticastGroup>(&frame);
    }
}

#[test]
fn numbers_above_range_are_rejected() {
    let two_32 = json!(1u64 << 32);
    rejects::<DownstreamRequest>(
        &downstream(),
        "/TargetDevAddr",
        std::slice::from_ref(&two_32),
    );
    rejects::<DownstreamRequest>(&multicast(), "/Addr", std::slice::from_ref(&two_32));
    rejects::<UpstreamReply>(&ack(), "/MIC", std::slice::from_ref(&two_32));
    rejects::<UpstreamMessage>(&upstream(), "/MICChallenge", &[json!([1, 1u64 << 32])]);
    rejects::<UpstreamMessage>(
        &upstream(),
        "/Radio/Frequency",
        std::slice::from_ref(&two_32),
    );
    rejects::<UpstreamMessage>(
        &upstream(),
        "/Radio/LoRa/Bandwidth",
        std::slice::from_ref(&two_32),
    );
    rejects::<UpstreamMessage>(
        &upstream(),
        "/Radio/LoRa/Spreading",
        &[json!(256), json!(-1)],
    );
    rejects::<UpstreamMessage>(
        &upstream(),
        "/ProtocolVersion",
        std::slice::from_ref(&two_32),
    );
    rejects::<DownstreamRequest>(&downstream(), "/TxWindow/Delay", &[json!(256)]);
    rejects::<DownstreamRequest>(
        &downstream(),
        "/TxWindow/Radio/LoRa/Spreading",
        &[json!(256)],
    );
    rejects::<DownstreamRequest>(&downstream(), "/PHYPayload", &[json!([256])]);
    rejects::<DownstreamRequest>(
        &multicast(),
        "/TxWindow/Radio/FSK/BitRate",
        std::slice::from_ref(&two_32),
    );
    // REST hex with more digits than the identifier holds.
    rejects::<Device>(&device_abp(), "/ActiveDevAddr", &[json!("100000000")]);
    rejects::<Device>(&device_abp(), "/DevEUI", &[json!("10000000000000000")]);
    rejects::<MulticastGroup>(&group(), "/addr", &[json!("100000000")]);
    // 2^64 and beyond in text (serde_json reads them as floats).
    for text in [
        r#"{"ProtocolVersion":1,"TransactionID":1,"MailboxID":18446744073709551616}"#,
        r#"{"ProtocolVersion":1,"TransactionID":1e30,"MailboxID":1}"#,
    ] {
        assert!(
            serde_json::from_str::<DownstreamReply>(text).is_err(),
            "{text}"
        );
    }
}

#[test]
fn floats_where_integers_are_expected_are_rejected() {
    let up = upstream();
    for path in [
        "/TransactionID",
        "/Radio/Frequency",
        "/Radio/LoRa/Spreading",
        "/ProtocolVersion",
    ] {
        rejects::<UpstreamMessage>(&up, path, &[json!(4.0), json!(4.5)]);
    }
    rejects::<UpstreamMessage>(
        &up,
        "/DevEUIs",
        &[json!([1.0]), json!([8844537008791951183.0f64])],
    );
    rejects::<UpstreamMessage>(&up, "/MICChallenge", &[json!([1.0, 2])]);
    rejects::<UpstreamMessage>(&up, "/PHYPayloadNoMIC", &[json!([64.0])]);
    rejects::<UpstreamReply>(&ack(), "/MIC", &[json!(1.0)]);
    rejects::<UpstreamReply>(&ack(), "/DevEUI", &[json!(1.0)]);
    rejects::<UpstreamReply>(&ack(), "/TransactionID", &[json!(3.0)]);
    rejects::<DownstreamRequest>(&downstream(), "/DevEUI", &[json!(5.0)]);
    rejects::<DownstreamRequest>(&downstream(), "/TargetDevAddr", &[json!(7.0)]);
    rejects::<DownstreamRequest>(&downstream(), "/TxWindow/Delay", &[json!(1.0)]);
    rejects::<DownstreamRequest>(
        &downstream(),
        "/TxWindow/Radio/Frequency",
        &[json!(8.683e8)],
    );
    rejects::<DownstreamRequest>(&multicast(), "/Addr", &[json!(4010043934.0)]);
    rejects::<DownstreamRequest>(&multicast(), "/TxWindow/TMMS", &[json!([1.0])]);
    let window = json!({"Radio": {"Frequency": 1, "LoRa": lora()}, "Deadline": 1});
    rejects::<TransmissionWindow>(&window, "/Deadline", &[json!(1.0)]);
    rejects::<DownstreamReply>(&ds_ack(), "/MailboxID", &[json!(1.0)]);
    rejects::<DownstreamReply>(&ds_result(), "/MailboxID", &[json!(9.0)]);
    // Exponent notation is a float too.
    let text = upstream()
        .to_string()
        .replace("\"TransactionID\":4", "\"TransactionID\":4e0");
    assert!(serde_json::from_str::<UpstreamMessage>(&text).is_err());
}

#[test]
fn a_dev_eui_beyond_f64_precision_survives() {
    // 18446744073709551557 as f64 is 18446744073709551616: a float path would corrupt it.
    assert_ne!(LOSSY_EUI as f64 as u128, LOSSY_EUI as u128);
    let text = r#"{"ProtocolVersion":1,"TransactionID":18446744073709551557,"DevEUIs":[18446744073709551557,9007199254740993],"Radio":{"Frequency":868100000,"LoRa":{"Spreading":12,"Bandwidth":125000},"RSSI":-52.0,"SNR":-3.0},"PHYPayloadNoMIC":[64],"MICChallenge":[1]}"#;
    let m: UpstreamMessage = serde_json::from_str(text).unwrap();
    assert_eq!(m.transaction_id, LOSSY_EUI);
    assert_eq!(
        m.dev_euis,
        [DevEui::new(LOSSY_EUI), DevEui::new(9007199254740993)]
    );
    assert_eq!(serde_json::to_string(&m).unwrap(), text);

    let ack = m.ack(DevEui::new(LOSSY_EUI), 1);
    let text = serde_json::to_string(&ack).unwrap();
    assert_eq!(
        text,
        r#"{"ProtocolVersion":1,"TransactionID":18446744073709551557,"DevEUI":18446744073709551557,"MIC":1}"#
    );
    assert_eq!(
        serde_json::from_str::<UpstreamReply>(&text).unwrap(),
        UpstreamReply::Ack(ack)
    );
}

// ---------------------------------------------------------------------------------------
// REST objects
// ---------------------------------------------------------------------------------------

#[test]
fn rest_device_examples() {
    let abp: Device = round_trip(&device_abp());
    assert_eq!(
        abp.identity(),
        Some(DeviceIdentity::Abp {
            dev_addr: DevAddr::new(u32::MAX)
        })
    );
    let otaa = json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "0000000000000001",
        "ActiveDevAddr": null, "TargetDevAddr": "627bb8bb",
        "Details": "{\"owner\": \"me\"}", "CreatedAt": "2022-05-31T07:12:02.875460"});
    let otaa: Device = round_trip(&otaa);
    assert_eq!(
        otaa.identity(),
        Some(DeviceIdentity::Otaa {
            join_eui: JoinEui::new(1)
        })
    );
    assert_eq!(otaa.target_dev_addr, Some(DevAddr::new(0x627bb8bb)));
    assert_eq!(otaa.details.as_deref(), Some("{\"owner\": \"me\"}"));
    assert_eq!(
        otaa.created_at,
        time::macros::datetime!(2022-05-31 07:12:02.875460)
    );
    let list: Vec<Device> =
        round_trip(&json!([device_abp(), serde_json::to_value(&otaa).unwrap()]));
    assert_eq!(list.len(), 2);
    let empty: Vec<Device> = round_trip(&json!([]));
    assert!(empty.is_empty());
}

#[test]
fn timestamps_with_6_3_0_fractional_digits() {
    use time::macros::datetime;
    for (text, expected, written) in [
        (
            "2022-05-31T07:14:04.473749",
            datetime!(2022-05-31 07:14:04.473749),
            "2022-05-31T07:14:04.473749",
        ),
        (
            "2022-05-31T07:14:04.473",
            datetime!(2022-05-31 07:14:04.473),
            "2022-05-31T07:14:04.473000",
        ),
        (
            "2022-05-31T07:14:04",
            datetime!(2022-05-31 07:14:04),
            "2022-05-31T07:14:04.000000",
        ),
        (
            "2022-05-31T07:14:04.000000",
            datetime!(2022-05-31 07:14:04),
            "2022-05-31T07:14:04.000000",
        ),
        (
            "2022-05-31T07:14:04.1",
            datetime!(2022-05-31 07:14:04.1),
            "2022-05-31T07:14:04.100000",
        ),
        (
            "1970-01-01T00:00:00.000001",
            datetime!(1970-01-01 00:00:00.000001),
            "1970-01-01T00:00:00.000001",
        ),
    ] {
        let d: Device = decode_ok(&with(&device_abp(), "/CreatedAt", json!(text)));
        assert_eq!(d.created_at, expected, "{text}");
        assert_eq!(serde_json::to_value(&d).unwrap()["CreatedAt"], written);
        let g: MulticastGroup = decode_ok(&with(&group(), "/created_at", json!(text)));
        assert_eq!(g.created_at, expected, "{text}");
        assert_eq!(serde_json::to_value(&g).unwrap()["created_at"], written);
    }
    for bad in [
        "2022-05-31 07:14:04",
        "2022-05-31T07:14:04.",
        "2022-05-31T07:14",
        "2022-13-01T00:00:00",
        "2022-02-30T00:00:00",
        "2022-05-31T24:00:00",
        "",
    ] {
        decode_err::<Device>(&with(&device_abp(), "/CreatedAt", json!(bad)));
    }
}

#[test]
fn rest_multicast_group_example() {
    let g: MulticastGroup = round_trip(&group());
    assert_eq!(g.addr, MulticastAddr::new(0xdafa0c11));
    assert_eq!(g.devices, [DevEui::new(0xfafafafafafafafa)]);
    let unicode = with(&group(), "/name", json!("Grüße, 世界 🛰"));
    let g: MulticastGroup = round_trip(&unicode);
    assert_eq!(g.name, "Grüße, 世界 🛰");
    let list: Vec<MulticastGroup> =
        round_trip(&json!([group(), with(&group(), "/devices", json!([]))]));
    assert_eq!(list.len(), 2);
}

#[test]
fn error_bodies() {
    let body = |code: &str| {
        json!({"detail": {"error_code": code, "error_description": "text"}}).to_string()
    };
    let d = || "text".to_owned();
    for (code, expected) in [
        ("Unauthorized", ApiError::Unauthorized { description: d() }),
        (
            "Device.AlreadyExists",
            ApiError::DeviceAlreadyExists { description: d() },
        ),
        (
            "Device.LimitExhausted",
            ApiError::DevicesLimitExhausted { description: d() },
        ),
        (
            "Device.NotFound",
            ApiError::DeviceNotFound { description: d() },
        ),
        (
            "MulticastGroup.AlreadyExists",
            ApiError::MulticastGroupAlreadyExists { description: d() },
        ),
        (
            "MulticastGroup.NotFound",
            ApiError::MulticastGroupNotFound { description: d() },
        ),
        (
            "MulticastGroup.AlreadyContainsTheDevice",
            ApiError::MulticastGroupAlreadyContainsDevice { description: d() },
        ),
        (
            "ValidationFailed",
            ApiError::ValidationFailed {
                description: d(),
                detail: vec![],
                omitted: 0,
            },
        ),
    ] {
        let err = common::api_error_from(400, &body(code));
        assert_eq!(err, expected);
        assert_eq!(err.code(), code);
    }
    let err = common::api_error_from(400, &body("Unknown"));
    assert_eq!(err.code(), "Unknown");
    assert!(matches!(err, ApiError::Unknown { status: 400, .. }));

    // ValidationFailed with error_detail, loc mixing names and list indices.
    let body = json!({"detail": {"error_code": "ValidationFailed", "error_description": "invalid",
    "error_detail": [
        {"loc": ["body", "DevEUIs", 3], "msg": "bad hex", "type": "value_error"},
        {"loc": ["query", "limit"], "msg": "must be >= 0", "type": "value_error.number"},
        {"loc": [], "msg": "x"}
    ]}});
    let err = common::api_error_from(422, &body.to_string());
    let ApiError::ValidationFailed {
        description,
        detail,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(description, "invalid");
    assert_eq!(detail.len(), 3);
    assert_eq!(detail[0].loc, ["body", "DevEUIs", "3"]);
    assert_eq!(detail[0].kind, "value_error");
    assert_eq!(detail[1].loc, ["query", "limit"]);
    assert!(detail[2].loc.is_empty());
    assert_eq!(detail[2].kind, "");
    assert_eq!(
        err.to_string(),
        "validation failed: invalid; body.DevEUIs.3: bad hex; query.limit: must be >= 0; : x"
    );
    let null_detail = json!({"detail": {"error_code": "ValidationFailed", "error_description": "v",
        "error_detail": null}});
    assert_eq!(
        common::api_error_from(422, &null_detail.to_string()),
        ApiError::ValidationFailed {
            description: "v".into(),
            detail: vec![],
            omitted: 0,
        }
    );

    // An undocumented code keeps the code; its description is bounded like any body.
    let long =
        json!({"detail": {"error_code": "Shiny.New", "error_description": "é".repeat(5000)}});
    let err = common::api_error_from(409, &long.to_string());
    let ApiError::Unknown {
        status: 409,
        code: Some(code),
        body,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(code, "Shiny.New");
    assert!(body.len() <= 2048 + '…'.len_utf8(), "{}", body.len());
    assert!(body.starts_with("ééé"));

    // Bodies that are not the documented shape keep status and text.
    for (status, text) in [
        (404, r#"{"detail": "Not Found"}"#),
        (400, r#"{"detail": {"error_description": "no code"}}"#),
        (400, r#"{"detail": {"error_code": 5}}"#),
        (400, "not json"),
        (401, ""),
        (
            500,
            r#"{"detail": {"error_code": "Device.NotFound", "error_description": "x"}}"#,
        ),
        (
            302,
            r#"{"detail": {"error_code": "Device.NotFound", "error_description": "x"}}"#,
        ),
    ] {
        assert_eq!(
            common::api_error_from(status, text),
            ApiError::Unknown {
                status,
                code: None,
                body: text.into()
            },
            "{status} {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Validation: each invalid input with its specific error
// ---------------------------------------------------------------------------------------

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn radio(spreading: u8) -> DownstreamRadio {
    DownstreamRadio::new(868_100_000, LoRaModulation::new(spreading, 125_000))
}

#[test]
fn window_validation() {
    for sf in [0, 5, 7, 12] {
        assert_eq!(TransmissionWindow::class_a(radio(sf), 1).validate(), Ok(()));
    }
    for sf in [13, 255] {
        assert_eq!(
            TransmissionWindow::class_a(radio(sf), 1).validate(),
            Err(InvalidInput::Spreading(sf))
        );
    }
    for delay in [1, 15] {
        assert_eq!(
            TransmissionWindow::class_a(radio(7), delay).validate(),
            Ok(())
        );
    }
    for delay in [0, 16, 255] {
        assert_eq!(
            TransmissionWindow::class_a(radio(7), delay).validate(),
            Err(InvalidInput::Delay(delay))
        );
    }
    for slots in [1, 8] {
        let w = TransmissionWindow::class_b(radio(7), vec![u64::MAX; slots]);
        assert_eq!(w.validate(), Ok(()));
    }
    for slots in [0, 9, 100] {
        let w = TransmissionWindow::class_b(radio(7), vec![1; slots]);
        assert_eq!(w.validate(), Err(InvalidInput::TmmsSlots(slots)));
    }
    let t = now();
    for deadline in [1, t, t + 500] {
        assert_eq!(
            TransmissionWindow::class_c(radio(7), deadline).validate(),
            Ok(()),
            "{deadline}"
        );
    }
    for deadline in [0, t + 10_000, u64::MAX] {
        let err = TransmissionWindow::class_c(radio(7), deadline)
            .validate()
            .unwrap_err();
        assert!(
            matches!(err, InvalidInput::Deadline { deadline: d, now } if d == deadline && now >= t),
            "{err:?}"
        );
    }
    // FSK and FHSS have no value rules the type does not hold.
    let fsk = DownstreamRadio::new(1, FskModulation::new(0, 0));
    assert_eq!(TransmissionWindow::class_a(fsk, 1).validate(), Ok(()));
    let fhss = DownstreamRadio::new(1, FhssModulation::new(0, ""));
    assert_eq!(TransmissionWindow::class_a(fhss, 1).validate(), Ok(()));
    // The radio is checked before the timing.
    assert_eq!(
        TransmissionWindow::class_a(radio(13), 0).validate(),
        Err(InvalidInput::Spreading(13))
    );
}

#[test]
fn downstream_validation() {
    let ok = TransmissionWindow::class_a(radio(7), 1);
    let uni =
        |id, w: &TransmissionWindow| DownstreamMessage::new(id, DevEui::new(1), w.clone(), [1]);
    let multi = |id, w: &TransmissionWindow| {
        MulticastDownstreamMessage::new(id, MulticastAddr::new(1), w.clone(), [1])
    };
    assert_eq!(uni(1, &ok).validate(), Ok(()));
    assert_eq!(multi(u64::MAX, &ok).validate(), Ok(()));
    assert_eq!(uni(0, &ok).validate(), Err(InvalidInput::TransactionId));
    assert_eq!(multi(0, &ok).validate(), Err(InvalidInput::TransactionId));
    assert_eq!(
        DownstreamRequest::from(uni(0, &ok)).validate(),
        Err(InvalidInput::TransactionId)
    );
    let t = now();
    for (window, expected) in [
        (
            TransmissionWindow::class_a(radio(13), 1),
            InvalidInput::Spreading(13),
        ),
        (
            TransmissionWindow::class_a(radio(7), 0),
            InvalidInput::Delay(0),
        ),
        (
            TransmissionWindow::class_a(radio(7), 16),
            InvalidInput::Delay(16),
        ),
        (
            TransmissionWindow::class_b(radio(7), vec![]),
            InvalidInput::TmmsSlots(0),
        ),
        (
            TransmissionWindow::class_b(radio(7), vec![1; 9]),
            InvalidInput::TmmsSlots(9),
        ),
    ] {
        assert_eq!(uni(1, &window).validate(), Err(expected.clone()));
        assert_eq!(multi(1, &window).validate(), Err(expected.clone()));
        assert_eq!(
            DownstreamRequest::from(multi(1, &window)).validate(),
            Err(expected)
        );
    }
    for deadline in [0, t + 10_000] {
        let window = TransmissionWindow::class_c(radio(7), deadline);
        for result in [uni(1, &window).validate(), multi(1, &window).validate()] {
            assert!(
                matches!(result, Err(InvalidInput::Deadline { deadline: d, .. }) if d == deadline),
                "{result:?}"
            );
        }
    }
}

#[test]
fn upstream_reply_validation() {
    assert_eq!(UpstreamAck::new(1, DevEui::new(0), 0).validate(), Ok(()));
    assert_eq!(
        UpstreamAck::new(0, DevEui::new(1), 1).validate(),
        Err(InvalidInput::TransactionId)
    );
    assert_eq!(
        UpstreamReject::new(u64::MAX, UpstreamRejectResultCode::MicFailed).validate(),
        Ok(())
    );
    assert_eq!(
        UpstreamReject::new(1, UpstreamRejectResultCode::Other).validate(),
        Ok(())
    );
    assert_eq!(
        UpstreamReject::new(0, UpstreamRejectResultCode::Other).validate(),
        Err(InvalidInput::TransactionId)
    );
    let unknown = UpstreamRejectResultCode::from("Shiny");
    assert_eq!(
        UpstreamReject::new(1, unknown.clone()).validate(),
        Err(InvalidInput::ResultCode("Shiny".into()))
    );
    assert_eq!(
        UpstreamReply::from(UpstreamReject::new(1, unknown)).validate(),
        Err(InvalidInput::ResultCode("Shiny".into()))
    );
    assert_eq!(
        UpstreamReply::from(UpstreamAck::new(0, DevEui::new(1), 1)).validate(),
        Err(InvalidInput::TransactionId)
    );
}

#[test]
fn unknown_result_codes_decode_for_forward_compatibility() {
    let r: UpstreamReply = round_trip(&with(&reject(), "/ResultCode", json!("NewReason")));
    assert!(matches!(&r,
        UpstreamReply::Reject(r) if r.result_code == UpstreamRejectResultCode::Unknown("NewReason".into())));
    // ... but this crate will not send one.
    assert_eq!(
        r.validate(),
        Err(InvalidInput::ResultCode("NewReason".into()))
    );
    let r: DownstreamReply = round_trip(&with(&ds_result(), "/ResultCode", json!("Queued")));
    assert!(matches!(r,
        DownstreamReply::Result(r) if r.result_code == DownstreamResultCode::Unknown("Queued".into())));
    for code in [
        "Success",
        "WindowNotFound",
        "GatewayNotFound",
        "TooLate",
        "NoAck",
        "GatewayError",
    ] {
        let r: DownstreamReply = round_trip(&with(&ds_result(), "/ResultCode", json!(code)));
        let DownstreamReply::Result(r) = r else {
            panic!()
        };
        assert!(
            !matches!(r.result_code, DownstreamResultCode::Unknown(_)),
            "{code}"
        );
        assert_eq!(r.result_code.is_success(), code == "Success");
    }
}

#[test]
fn group_name_length_counts_characters() {
    assert_eq!(MulticastGroup::validate_name(""), Ok(()));
    assert_eq!(MulticastGroup::validate_name(&"a".repeat(255)), Ok(()));
    // 255 two-byte characters are 510 bytes: still fine.
    assert_eq!(MulticastGroup::validate_name(&"é".repeat(255)), Ok(()));
    assert_eq!(MulticastGroup::validate_name(&"🛰".repeat(255)), Ok(()));
    assert_eq!(
        MulticastGroup::validate_name(&"a".repeat(256)),
        Err(InvalidInput::GroupNameTooLong { len: 256 })
    );
    assert_eq!(
        MulticastGroup::validate_name(&"é".repeat(256)),
        Err(InvalidInput::GroupNameTooLong { len: 256 })
    );
}

#[test]
fn id_parse_errors() {
    for (bad, kind) in [
        ("", "DevEUI"),
        ("0x", "DevEUI"),
        ("10000000000000000", "DevEUI"),
        ("7abe1b8c93d7174g", "DevEUI"),
        ("-1", "DevEUI"),
        ("+1", "DevEUI"),
        (" 1", "DevEUI"),
        ("1 ", "DevEUI"),
        ("é", "DevEUI"),
        ("0x0x1", "DevEUI"),
    ] {
        let err = bad.parse::<DevEui>().unwrap_err();
        assert_eq!(err.kind(), kind, "{bad:?}");
        assert!(err.to_string().contains("16 hex digits"), "{err}");
    }
    assert_eq!(
        "1ffffffff".parse::<DevAddr>().unwrap_err().kind(),
        "DevAddr"
    );
    assert_eq!("xyz".parse::<JoinEui>().unwrap_err().kind(), "JoinEUI");
    assert_eq!(
        "100000000".parse::<MulticastAddr>().unwrap_err().kind(),
        "multicast address"
    );
    let err = "1ffffffff".parse::<DevAddr>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid DevAddr \"1ffffffff\": expected exactly 8 hex digits"
    );
    // A long input is cut in the message.
    let err = "z".repeat(1000).parse::<DevEui>().unwrap_err();
    assert!(err.to_string().len() < 120, "{err}");
    // Leading zeros beyond the width are still too many digits.
    assert!("000000000000000001".parse::<DevEui>().is_err());
    assert_eq!("0X00000000000000FF".parse::<DevEui>(), Ok(DevEui::new(255)));
}

#[test]
fn deeply_nested_input() {
    let frame = |depth: usize| {
        let text = upstream().to_string();
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        format!("{{\"Deep\":{nested},{}", &text[1..])
    };
    // Unknown fields are skipped without recursion, however deep.
    for depth in [100, 200, 100_000] {
        let m: UpstreamMessage = serde_json::from_str(&frame(depth)).unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap(), upstream());
    }
    let deep_in_radio = format!(
        "{{\"Frequency\":1,\"LoRa\":{{\"Spreading\":7,\"Bandwidth\":1}},\"X\":{}1{}}}",
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    assert!(serde_json::from_str::<DownstreamRadio>(&deep_in_radio).is_ok());
    // Unclosed nesting is an error, not a hang.
    let unclosed = format!("{{\"Deep\":{}", "[".repeat(100_000));
    assert!(serde_json::from_str::<UpstreamMessage>(&unclosed).is_err());
    // Where a decoder does recurse (the loc list of an error body), serde_json's
    // recursion limit turns deep nesting into an unknown error, not a stack overflow.
    for depth in [120, 200, 100_000] {
        let loc = format!("{}\"x\"{}", "[".repeat(depth), "]".repeat(depth));
        let body = format!(
            r#"{{"detail": {{"error_code": "ValidationFailed", "error_description": "d",
                "error_detail": [{{"loc": {loc}, "msg": "m", "type": "t"}}]}}}}"#
        );
        let err = common::api_error_from(422, &body);
        assert!(
            matches!(err, ApiError::Unknown { status: 422, .. }),
            "{depth}"
        );
    }
}

#[test]
fn standalone_modulation_and_timing_take_exactly_one_key() {
    assert!(serde_json::from_value::<Modulation>(json!({"LoRa": lora(), "FSK": fsk()})).is_err());
    assert!(serde_json::from_str::<Modulation>(
        r#"{"LoRa": {"Spreading": 7, "Bandwidth": 1}, "FSK": {"FrequencyDeviation": 1, "BitRate": 1}}"#
    )
    .is_err());
    assert!(serde_json::from_str::<TxTiming>(r#"{"Delay": 1, "TMMS": [1]}"#).is_err());
    assert_eq!(
        serde_json::from_str::<TxTiming>(r#"{"TMMS": [1]}"#).unwrap(),
        TxTiming::Tmms(vec![1])
    );
}
