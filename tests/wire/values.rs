//! Wire codec edge cases. Extreme identifiers and transaction ids, signal values and floats.

use ran_routing::*;
use serde_json::json;

use crate::support::*;

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
