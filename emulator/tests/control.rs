//! The control API under `/emulator/`: driven with the typed [`ControlClient`] as a user
//! of the `ran-emulator` binary would, and checked raw where its wire answers (statuses,
//! error bodies) are the point.

mod support;

use ran_routing::{
    DevEui, DownstreamRequest, DownstreamResultCode, UpstreamMessage, UpstreamReply,
};
use ran_routing_emulator::{ControlClient, Emulator, Error};
use serde_json::json;
use support::*;

#[test]
fn control_api_drives_the_streams() {
    let emu = Emulator::start().unwrap();
    let api = Api::new(&emu);
    let control = ControlClient::new(emu.control_url());
    let raw = Control::new(&emu);
    assert!(control.url().ends_with("/emulator/"), "{}", control.url());

    // No upstream connection yet.
    let frame: UpstreamMessage = serde_json::from_value(upstream_frame(11)).unwrap();
    assert!(matches!(
        control.send_upstream(&frame),
        Err(Error::Closed(_))
    ));
    assert_error(
        &raw.post("upstream", &upstream_frame(11).to_string()),
        503,
        "Emulator.NoUpstreamConnection",
    );

    let mut up = connect(&emu, "upstream");
    let mut down = connect(&emu, "downstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    assert!(emu.wait_downstream_connections(1, TIMEOUT));
    let status = control.status().unwrap();
    assert_eq!(status.upstream_connections, 1);
    assert_eq!(status.downstream_connections, 1);
    assert_eq!(status.base_url, emu.base_url());
    assert_eq!(status.invalid_frames, 0);

    // Inject an upstream frame; it arrives as the reference writes it, big numbers
    // intact, through the typed client and raw alike.
    control.send_upstream(&frame).unwrap();
    assert_eq!(next_json(&mut up), upstream_frame(11));
    assert_eq!(raw.post("upstream", &upstream_frame(11).to_string()).0, 200);
    assert_eq!(next_json(&mut up), upstream_frame(11));
    assert!(matches!(
        control.send_upstream_raw("{\"TransactionID\": 1}"),
        Ok(())
    ));
    assert_eq!(next_json(&mut up), json!({"TransactionID": 1}));
    assert_error(
        &raw.post("upstream", "{\"TransactionID\": 1}"),
        422,
        "ValidationFailed",
    );
    assert_error(&raw.post("upstream", "nope"), 422, "ValidationFailed");
    control.send_upstream_raw("nope").unwrap();
    assert_eq!(
        up.read().unwrap(),
        tungstenite::Message::text("nope"),
        "raw frames go out as they are"
    );

    // Replies are listed as the frames the LNS sent.
    let ack = json!({"ProtocolVersion": 1, "TransactionID": 11, "DevEUI": 8844537008791951183u64, "MIC": 1308830714});
    send_json(&mut up, ack.clone());
    assert!(emu.wait_upstream_reply(TIMEOUT).is_some());
    assert_eq!(raw.get("upstream/replies"), (200, json!([ack])));
    let replies = control.upstream_replies().unwrap();
    assert_eq!(replies.len(), 1);
    let UpstreamReply::Ack(reply) = &replies[0] else {
        panic!("{replies:?}");
    };
    assert_eq!(
        (reply.transaction_id, reply.dev_eui, reply.mic),
        (11, DevEui::new(8844537008791951183), 1308830714)
    );

    // Result codes, for all, per device and per transaction; the received downlinks.
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000005", "DevAddr": "00000001"}),
    );
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000006", "DevAddr": "00000001"}),
    );
    control
        .set_downstream_result(DownstreamResultCode::TooLate)
        .unwrap();
    control
        .set_downstream_result_for_device(DevEui::new(6), DownstreamResultCode::NoAck)
        .unwrap();
    control
        .set_downstream_result_for_transaction(3, DownstreamResultCode::WindowNotFound)
        .unwrap();
    for bad in [
        r#"{}"#,
        r#"{"code": ""}"#,
        r#"{"code": "TooLate", "dev_eui": "zz"}"#,
        r#"{"code": "TooLate", "dev_eui": "0000000000000001", "transaction_id": 1}"#,
        r#"{"code": "TooLate", "other": 1}"#,
    ] {
        assert_error(
            &raw.post("downstream/result-code", bad),
            422,
            "ValidationFailed",
        );
    }
    let results = |down: &mut Ws, tx: u64| -> String {
        assert_eq!(next_json(down)["TransactionID"], tx, "ack first");
        let result = next_json(down);
        assert_eq!(result["TransactionID"], tx);
        result["ResultCode"].as_str().unwrap().to_owned()
    };
    send_json(&mut down, downstream_frame(1, 5));
    assert_eq!(results(&mut down, 1), "TooLate");
    send_json(&mut down, downstream_frame(2, 6));
    assert_eq!(results(&mut down, 2), "NoAck");
    send_json(&mut down, downstream_frame(3, 5));
    assert_eq!(results(&mut down, 3), "WindowNotFound");
    control.reset_downstream_results().unwrap();
    // A class A Delay counts from the device's last acknowledged uplink.
    control
        .send_upstream(&serde_json::from_value(upstream_frame(12)).unwrap())
        .unwrap();
    assert_eq!(next_json(&mut up)["TransactionID"], 12);
    send_json(
        &mut up,
        json!({"ProtocolVersion": 1, "TransactionID": 12, "DevEUI": 5, "MIC": 1}),
    );
    send_json(&mut down, downstream_frame(4, 5));
    assert_eq!(results(&mut down, 4), "Success");
    let received = control.downstream_received().unwrap();
    assert_eq!(received.len(), 4);
    let DownstreamRequest::Unicast(first) = &received[0] else {
        panic!("{received:?}");
    };
    assert_eq!((first.transaction_id, first.dev_eui), (1, DevEui::new(5)));
    assert_eq!(raw.get("downstream/received").1[0], downstream_frame(1, 5));

    // State inspection.
    let devices = control.devices().unwrap();
    assert_eq!(devices, emu.devices());
    assert_eq!(devices.len(), 2);
    assert!(control.multicast_groups().unwrap().is_empty());

    // Clearing records, dropping and closing streams.
    control.clear_records().unwrap();
    assert!(control.upstream_replies().unwrap().is_empty());
    assert!(control.downstream_received().unwrap().is_empty());
    control.drop_stream_connections().unwrap();
    assert!(ends(&mut up));
    assert!(eventually(|| emu.upstream_connections() == 0));
    let _up = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    control.close_stream_connections().unwrap();
    assert!(eventually(|| emu.upstream_connections() == 0));
}

#[test]
fn control_api_errors_and_independence_from_the_base_path() {
    let emu = Emulator::builder().base_path("/").start().unwrap();
    let raw = Control::new(&emu);
    assert_error(&raw.get("nope"), 404, "Unknown");
    assert_error(&raw.get("upstream"), 405, "Unknown");
    assert_error(&raw.post("status", ""), 405, "Unknown");
    // No token needed, and the API at the root does not hide the control API.
    assert_eq!(raw.get("status").0, 200);
    let api = Api::new(&emu);
    assert_eq!(api.get("devices/select", &[]).0, 200);

    // The typed client maps refusals to the emulator's error type.
    let control = ControlClient::new(emu.control_url().trim_end_matches('/'));
    assert_eq!(control.status().unwrap().base_url, emu.base_url());
    assert!(matches!(
        control.set_mic_challenge_size(1, 2),
        Err(Error::Invalid(_))
    ));
    assert_eq!(control.played_upstream(5).unwrap(), None);
    assert!(!control.remove_radio_device(DevEui::new(1)).unwrap());
    drop(emu);
    assert!(matches!(control.status(), Err(Error::Transport(_))));
}
