//! Wire codec edge cases. Optional, unknown and missing mandatory fields.

use ran_routing::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common;
use crate::support::*;

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
            detail: vec![FieldError::new(
                ["body", "DevEUIs", "0"],
                "not hex",
                "value_error"
            )],
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
