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

/// One raw request to the emulator; the answer's status.
fn raw_status(emu: &Emulator, request: String) -> u16 {
    let answer = raw_exchange(emu, request.as_bytes());
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|a| a.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer:?}"))
}

/// Before: the control API checked only that the peer was on loopback, which a web page
/// in a local browser is too; any Host, any Origin and a `text/plain` body (which a page
/// may send cross-origin without asking) were served.
#[test]
fn the_control_api_refuses_what_a_web_page_would_send() {
    let emu = Emulator::start().unwrap();
    let port = emu.local_addr().port();
    let get = |host: Option<&str>, origin: Option<&str>| {
        let mut request = "GET /emulator/status HTTP/1.1\r\nConnection: close\r\n".to_owned();
        if let Some(host) = host {
            request.push_str(&format!("Host: {host}\r\n"));
        }
        if let Some(origin) = origin {
            request.push_str(&format!("Origin: {origin}\r\n"));
        }
        raw_status(&emu, request + "\r\n")
    };
    // Its own names, with its port.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("127.0.0.2:{port}"),
    ] {
        assert_eq!(get(Some(&host), None), 200, "{host}");
    }
    // A rebound DNS name, another port, no port, no Host, junk.
    for host in [
        format!("attacker.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:+{port}"),
        format!("[::1]x:{port}"),
        "localhost.attacker.example".to_owned(),
    ] {
        assert_eq!(get(Some(&host), None), 403, "{host}");
    }
    assert_eq!(get(None, None), 403, "no Host");
    let host = format!("127.0.0.1:{port}");
    assert_eq!(
        get(Some(&host), Some(&format!("http://localhost:{port}"))),
        200
    );
    assert_eq!(
        get(Some(&host), Some(&format!("http://127.0.0.1:{port}"))),
        200
    );
    for origin in [
        "http://attacker.example".to_owned(),
        "null".to_owned(),
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}.attacker.example"),
        format!("http://attacker.example:{port}"),
    ] {
        assert_eq!(get(Some(&host), Some(&origin)), 403, "{origin}");
    }

    // Bodies must be JSON, as declared.
    let post = |content_type: Option<&str>| {
        let body = r#"{"code": "TooLate"}"#;
        let mut request = format!(
            "POST /emulator/downstream/result-code HTTP/1.1\r\nHost: {host}\r\n\
             Connection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = content_type {
            request.push_str(&format!("Content-Type: {t}\r\n"));
        }
        raw_status(&emu, format!("{request}\r\n{body}"))
    };
    assert_eq!(post(None), 415);
    assert_eq!(post(Some("text/plain")), 415);
    assert_eq!(post(Some("application/x-www-form-urlencoded")), 415);
    assert_eq!(post(Some("application/jsonp")), 415);
    assert_eq!(post(Some("application/json")), 200);
    assert_eq!(post(Some("Application/JSON; charset=utf-8")), 200);
    // A POST without a body needs no type.
    let clear = format!(
        "POST /emulator/records/clear HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    );
    assert_eq!(raw_status(&emu, clear), 200);
    let refused = raw_exchange(
        &emu,
        b"GET /emulator/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(refused.contains("Emulator.Forbidden"), "{refused}");

    // The REST API keeps the service's behaviour: no Host or Origin rule.
    let select = format!(
        "GET /api/v1/devices/select HTTP/1.1\r\nHost: attacker.example\r\n\
         Origin: http://attacker.example\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        emu.token()
    );
    assert_eq!(raw_status(&emu, select), 200);
}

#[test]
fn a_control_token_is_asked_for_when_set() {
    let emu = Emulator::builder()
        .control_token("c0ntrol-secret")
        .start()
        .unwrap();
    assert_eq!(emu.control_token(), Some("c0ntrol-secret"));
    let host = format!("127.0.0.1:{}", emu.local_addr().port());
    let status = |auth: &str| {
        raw_status(
            &emu,
            format!(
                "GET /emulator/status HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
            ),
        )
    };
    assert_eq!(status(""), 401);
    assert_eq!(status("Authorization: Bearer wrong\r\n"), 401);
    assert_eq!(
        status(&format!("Authorization: Bearer {}\r\n", emu.token())),
        401
    );
    assert_eq!(status("Authorization: Bearer c0ntrol-secret\r\n"), 200);

    let control = ControlClient::new(emu.control_url());
    assert!(matches!(
        control.status(),
        Err(Error::Control { status: 401, ref code, .. }) if code == "Emulator.Unauthorized"
    ));
    let control = control.with_token("c0ntrol-secret");
    assert!(!format!("{control:?}").contains("c0ntrol"), "{control:?}");
    assert_eq!(control.status().unwrap().base_url, emu.base_url());
    control
        .set_downstream_result(DownstreamResultCode::TooLate)
        .unwrap();
    assert!(control.devices().unwrap().is_empty());
    // The REST API still takes the access token, not the control token.
    assert_eq!(Api::new(&emu).get("devices/select", &[]).0, 200);
    // A token that cannot travel in a header is refused at start.
    assert!(matches!(
        Emulator::builder().control_token("two words").start(),
        Err(Error::Config(_))
    ));
    assert!(
        !format!("{:?}", Emulator::builder().control_token("c0ntrol-secret")).contains("c0ntrol")
    );
}
