//! Wire codec edge cases. Validation: each invalid input with its specific error.

use ran_routing::*;
use serde_json::json;

use crate::common;
use crate::support::*;

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
