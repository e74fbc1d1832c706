//! The control API under `/emulator/`, over plain HTTP, as a test in another language
//! or a user of the `ran-emulator` binary would drive it.

mod emulator_support;

use emulator_support::*;
use ran_routing::emulator::Emulator;
use serde_json::json;

#[test]
fn control_api_drives_the_streams() {
    let emu = Emulator::start().unwrap();
    let api = Api::new(&emu);
    let control = Control::new(&emu);
    assert!(control.url.ends_with("/emulator/"), "{}", control.url);

    // No upstream connection yet.
    let frame = upstream_frame(11).to_string();
    assert_error(
        &control.post("upstream", &frame),
        503,
        "Emulator.NoUpstreamConnection",
    );

    let mut up = connect(&emu, "upstream");
    let mut down = connect(&emu, "downstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    assert!(emu.wait_downstream_connections(1, TIMEOUT));
    let (status, body) = control.get("status");
    assert_eq!(status, 200);
    assert_eq!(body["upstream_connections"], 1);
    assert_eq!(body["downstream_connections"], 1);
    assert_eq!(body["base_url"], emu.base_url());

    // Inject an upstream frame; it arrives as sent, big numbers intact.
    assert_eq!(control.post("upstream", &frame).0, 200);
    assert_eq!(next_json(&mut up), upstream_frame(11));
    assert_error(
        &control.post("upstream", "{\"TransactionID\": 1}"),
        422,
        "ValidationFailed",
    );
    assert_error(&control.post("upstream", "nope"), 422, "ValidationFailed");
    assert_eq!(control.post("upstream/raw", "nope").0, 200);
    assert_eq!(
        up.read().unwrap(),
        tungstenite::Message::text("nope"),
        "raw frames go out as they are"
    );

    // Replies are listed as the frames the LNS sent.
    let ack = json!({"ProtocolVersion": 1, "TransactionID": 11, "DevEUI": 8844537008791951183u64, "MIC": 1308830714});
    send_json(&mut up, ack.clone());
    assert!(emu.wait_upstream_reply(TIMEOUT).is_some());
    assert_eq!(control.get("upstream/replies"), (200, json!([ack])));

    // Result codes, for all and per device; the list of received downlinks.
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000005", "DevAddr": "00000001"}),
    );
    assert_eq!(
        control
            .post("downstream/result-code", r#"{"code": "TooLate"}"#)
            .0,
        200
    );
    assert_eq!(
        control
            .post(
                "downstream/result-code",
                r#"{"code": "NoAck", "dev_eui": "0000000000000006"}"#
            )
            .0,
        200
    );
    assert_eq!(
        control
            .post(
                "downstream/result-code",
                r#"{"code": "WindowNotFound", "transaction_id": 3}"#
            )
            .0,
        200
    );
    for bad in [
        r#"{}"#,
        r#"{"code": ""}"#,
        r#"{"code": "TooLate", "dev_eui": "zz"}"#,
        r#"{"code": "TooLate", "dev_eui": "0000000000000001", "transaction_id": 1}"#,
        r#"{"code": "TooLate", "other": 1}"#,
    ] {
        assert_error(
            &control.post("downstream/result-code", bad),
            422,
            "ValidationFailed",
        );
    }
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000006", "DevAddr": "00000001"}),
    );
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
    let reset = read(
        control
            .agent
            .delete(format!("{}downstream/result-code", control.url))
            .call()
            .unwrap(),
    );
    assert_eq!(reset.0, 200);
    send_json(&mut down, downstream_frame(4, 5));
    assert_eq!(results(&mut down, 4), "Success");
    let (status, received) = control.get("downstream/received");
    assert_eq!(status, 200);
    assert_eq!(received.as_array().unwrap().len(), 4);
    assert_eq!(received[0], downstream_frame(1, 5));

    // State inspection.
    let (_, devices) = control.get("devices");
    assert_eq!(devices.as_array().unwrap().len(), 2);
    assert_eq!(control.get("multicast-groups"), (200, json!([])));

    // Clearing records, dropping streams.
    assert_eq!(control.post("records/clear", "").0, 200);
    assert_eq!(control.get("upstream/replies"), (200, json!([])));
    assert_eq!(control.post("streams/drop", "").0, 200);
    assert!(ends(&mut up));
    assert!(eventually(|| emu.upstream_connections() == 0));
    let _up = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    assert_eq!(control.post("streams/close", "").0, 200);
    assert!(eventually(|| emu.upstream_connections() == 0));
}

#[test]
fn control_api_errors_and_independence_from_the_base_path() {
    let emu = Emulator::builder().base_path("/").start().unwrap();
    let control = Control::new(&emu);
    assert_error(&control.get("nope"), 404, "Unknown");
    assert_error(&control.get("upstream"), 405, "Unknown");
    assert_error(&control.post("status", ""), 405, "Unknown");
    // No token needed, and the API at the root does not hide the control API.
    assert_eq!(control.get("status").0, 200);
    let api = Api::new(&emu);
    assert_eq!(api.get("devices/select", &[]).0, 200);
}
