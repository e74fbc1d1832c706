//! Wire codec edge cases. Exactly one modulation and one timing; wrong types, out-of-range numbers, floats
//! for integers.

use ran_routing::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::support::*;

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
