//! Every exact frame of the reference document decodes, and encodes back to the same JSON.

use ran_routing::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(frame: Value) -> T {
    let text = frame.to_string();
    let decoded: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let encoded = serde_json::to_value(&decoded).unwrap();
    assert_eq!(encoded, frame, "re-encoded frame differs for {decoded:?}");
    decoded
}

#[test]
fn upstream_frame() {
    let m: UpstreamMessage = round_trip(
        json!({"ProtocolVersion": 1, "TransactionID": 4, "Outdated": true, "DevEUIs": [8844537008791951183u64],
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
        json!({"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": 18446744073709551615u64, "MIC": 4294967295u32}),
    );
    assert_eq!(
        r,
        UpstreamReply::Ack(UpstreamAck::new(3, DevEui::new(u64::MAX), u32::MAX))
    );
    let r: UpstreamReply =
        round_trip(json!({"ProtocolVersion": 1, "TransactionID": 3, "ResultCode": "MICFailed"}));
    assert_eq!(
        r,
        UpstreamReply::Reject(UpstreamReject::new(3, UpstreamRejectResultCode::MicFailed))
    );
}

#[test]
fn downstream_frames() {
    let d: DownstreamRequest = round_trip(
        json!({"ProtocolVersion": 1, "TransactionID": 1, "DevEUI": 5, "TargetDevAddr": 7,
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
        json!({"ProtocolVersion": 1, "TransactionID": 2, "Addr": 4010043934u32,
     "TxWindow": {"Radio": {"Frequency": 868300000, "FSK": {"FrequencyDeviation": 5000, "BitRate": 50000}}, "TMMS": [1, 2]},
     "PHYPayload": [104, 105]}),
    );
    assert!(matches!(m, DownstreamRequest::Multicast(_)));
    let a: DownstreamReply =
        round_trip(json!({"ProtocolVersion": 1, "TransactionID": 1, "MailboxID": 1}));
    assert!(matches!(a, DownstreamReply::Ack(_)));
    let r: DownstreamReply = round_trip(
        json!({"ProtocolVersion": 1, "TransactionID": 1, "ResultCode": "TooLate", "ResultMessage": "x", "MailboxID": 9}),
    );
    assert!(matches!(
        r,
        DownstreamReply::Result(DownstreamResult {
            result_code: DownstreamResultCode::TooLate,
            ..
        })
    ));
}
