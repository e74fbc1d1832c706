//! Every exact frame and object of the reference document (../shared/ran-routing-api.md,
//! sections 4 and 5) decodes, and encodes back to the same JSON value.

use ran_routing::*;
use serde_json::json;

use crate::common;
use crate::support::round_trip;

#[test]
fn upstream_frame() {
    let m: UpstreamMessage = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 4, "Outdated": true, "DevEUIs": [8844537008791951183u64],
     "Radio": {"Frequency": 868100000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}, "RSSI": -52.0, "SNR": -3.0},
     "PHYPayloadNoMIC": [64, 184], "MICChallenge": [1308830714, 114830713],
     "GPS": {"Lat": 1.5, "Lng": 2.5, "Alt": 3.0}}),
    );
    assert_eq!(m.dev_euis, vec![DevEui::new(0x7ABE1B8C93D7174F)]);
    assert!(m.is_outdated());
}

#[test]
fn upstream_replies() {
    let r: UpstreamReply = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": 18446744073709551615u64, "MIC": 4294967295u32}),
    );
    assert_eq!(
        r,
        UpstreamReply::Ack(UpstreamAck::new(3, DevEui::new(u64::MAX), u32::MAX))
    );
    let r: UpstreamReply =
        round_trip(&json!({"ProtocolVersion": 1, "TransactionID": 3, "ResultCode": "MICFailed"}));
    assert_eq!(
        r,
        UpstreamReply::Reject(UpstreamReject::new(3, UpstreamRejectResultCode::MicFailed))
    );
}

#[test]
fn downstream_frames() {
    let d: DownstreamRequest = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 1, "DevEUI": 5, "TargetDevAddr": 7,
     "TxWindow": {"Radio": {"Frequency": 868300000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}}, "Delay": 1},
     "PHYPayload": [104, 105]}),
    );
    let radio = DownstreamRadio::new(868300000, LoRaModulation::new(12, 125000));
    assert_eq!(
        d,
        DownstreamRequest::Unicast(
            DownstreamMessage::new(
                1,
                DevEui::new(5),
                TransmissionWindow::class_a(radio, 1),
                *b"hi"
            )
            .with_target_dev_addr(DevAddr::new(7))
        )
    );
    let m: DownstreamRequest = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 2, "Addr": 4010043934u32,
     "TxWindow": {"Radio": {"Frequency": 868300000, "FSK": {"FrequencyDeviation": 5000, "BitRate": 50000}}, "TMMS": [1, 2]},
     "PHYPayload": [104, 105]}),
    );
    assert!(matches!(m, DownstreamRequest::Multicast(_)));
    let a: DownstreamReply =
        round_trip(&json!({"ProtocolVersion": 1, "TransactionID": 1, "MailboxID": 1}));
    assert!(matches!(a, DownstreamReply::Ack(_)));
    let r: DownstreamReply = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 1, "ResultCode": "TooLate", "ResultMessage": "x", "MailboxID": 9}),
    );
    assert!(matches!(
        r,
        DownstreamReply::Result(DownstreamResult {
            result_code: DownstreamResultCode::TooLate,
            ..
        })
    ));
}

#[test]
fn each_frame_round_trips_through_its_own_type() {
    let _: UpstreamAck = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": 18446744073709551615u64, "MIC": 4294967295u32}),
    );
    let _: UpstreamReject =
        round_trip(&json!({"ProtocolVersion": 1, "TransactionID": 3, "ResultCode": "MICFailed"}));
    let _: DownstreamMessage = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 1, "DevEUI": 5, "TargetDevAddr": 7,
     "TxWindow": {"Radio": {"Frequency": 868300000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}}, "Delay": 1},
     "PHYPayload": [104, 105]}),
    );
    let m: MulticastDownstreamMessage = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 2, "Addr": 4010043934u32,
     "TxWindow": {"Radio": {"Frequency": 868300000, "FSK": {"FrequencyDeviation": 5000, "BitRate": 50000}}, "TMMS": [1, 2]},
     "PHYPayload": [104, 105]}),
    );
    assert_eq!(m.addr, MulticastAddr::new(0xef046a1e));
    assert_eq!(m.tx_window.timing, TxTiming::Tmms(vec![1, 2]));
    let _: DownstreamAck =
        round_trip(&json!({"ProtocolVersion": 1, "TransactionID": 1, "MailboxID": 1}));
    let r: DownstreamResult = round_trip(
        &json!({"ProtocolVersion": 1, "TransactionID": 1, "ResultCode": "TooLate", "ResultMessage": "x", "MailboxID": 9}),
    );
    assert_eq!(r.mailbox_id, Some(9));
}

#[test]
fn device_object() {
    let d: Device = round_trip(
        &json!({"DevEUI": "ffffffffffffffff", "JoinEUI": null, "ActiveDevAddr": "ffffffff",
     "TargetDevAddr": null, "Details": null, "CreatedAt": "2022-05-31T07:14:04.473749"}),
    );
    assert_eq!(d.dev_eui, DevEui::new(u64::MAX));
    assert_eq!(
        d.identity(),
        Some(DeviceIdentity::Abp {
            dev_addr: DevAddr::new(u32::MAX)
        })
    );
    assert_eq!(
        d.created_at,
        time::macros::datetime!(2022-05-31 07:14:04.473749)
    );
}

#[test]
fn multicast_group_object() {
    let g: MulticastGroup = round_trip(
        &json!({"addr": "dafa0c11", "created_at": "2022-08-26T13:35:30.969638",
     "name": "My first multicast group", "devices": ["fafafafafafafafa"]}),
    );
    assert_eq!(g.addr, MulticastAddr::new(0xdafa0c11));
    assert_eq!(g.devices, [DevEui::new(0xfafafafafafafafa)]);
}

#[test]
fn error_object() {
    let entry: FieldError =
        round_trip(&json!({"loc": ["body", "DevEUI"], "msg": "...", "type": "..."}));
    let body = json!({"detail": {"error_code": "Device.AlreadyExists", "error_description": "text",
            "error_detail": [{"loc": ["body", "DevEUI"], "msg": "...", "type": "..."}]}});
    assert_eq!(
        common::api_error_from(409, &body.to_string()),
        ApiError::DeviceAlreadyExists {
            description: "text".into()
        }
    );
    let body = json!({"detail": {"error_code": "ValidationFailed", "error_description": "text",
            "error_detail": [{"loc": ["body", "DevEUI"], "msg": "...", "type": "..."}]}});
    assert_eq!(
        common::api_error_from(422, &body.to_string()),
        ApiError::ValidationFailed {
            description: "text".into(),
            detail: vec![entry],
            omitted: 0,
        }
    );
}
