//! The emulator's upstream and downstream WebSockets, spoken raw with `tungstenite`:
//! handshake and token, round-robin, ack and result generation, result codes, invalid
//! frames, pings, dropped connections.

mod support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ran_routing::{
    DevEui, DownstreamRequest, DownstreamResultCode, UpstreamMessage, UpstreamReply,
};
use ran_routing_emulator::Emulator;
use serde_json::{json, Value};
use support::*;
use tungstenite::Message;

fn emulator() -> (Emulator, Api) {
    let emu = Emulator::start().expect("emulator");
    let api = Api::new(&emu);
    (emu, api)
}

fn upstream_message(transaction_id: u64) -> UpstreamMessage {
    serde_json::from_value(upstream_frame(transaction_id)).unwrap()
}

#[test]
fn handshake_needs_the_token() {
    let (emu, _api) = emulator();
    for stream in ["upstream", "downstream"] {
        for token in ["wrong", ""] {
            let err = try_connect(&emu, &stream_url(&emu, stream, token)).unwrap_err();
            let tungstenite::Error::Http(resp) = err else {
                panic!("expected an HTTP refusal, got {err}");
            };
            assert_eq!(resp.status(), 401);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["detail"]["error_code"], "Unauthorized");
        }
        let base = emu.base_url().replacen("http", "ws", 1);
        let err = try_connect(&emu, &format!("{base}/stream/{stream}/")).unwrap_err();
        assert!(matches!(err, tungstenite::Error::Http(r) if r.status() == 401));
        // With and without the trailing slash.
        let token = emu.token();
        try_connect(
            &emu,
            &format!("{base}/stream/{stream}/?access_token={token}"),
        )
        .unwrap();
        try_connect(
            &emu,
            &format!("{base}/stream/{stream}?access_token={token}"),
        )
        .unwrap();
    }
    let base = emu.base_url().replacen("http", "ws", 1);
    let err = try_connect(
        &emu,
        &format!("{base}/stream/sideways/?access_token={}", emu.token()),
    )
    .unwrap_err();
    assert!(matches!(err, tungstenite::Error::Http(r) if r.status() == 404));
    assert!(emu.wait_upstream_connections(0, TIMEOUT));
}

#[test]
fn plain_get_on_a_stream_is_refused() {
    let (emu, api) = emulator();
    let url = format!("{}/stream/upstream/?access_token={}", api.base, emu.token());
    let answer = read(api.agent.get(&url).call().unwrap());
    assert_error(&answer, 426, "Unknown");
    // A wrong WebSocket version.
    let request = format!(
        "GET /api/v1/stream/upstream/?access_token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 8\r\n\r\n",
        emu.token()
    );
    let answer = raw_exchange(&emu, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Version: 13"), "{answer}");
}

#[test]
fn upstream_goes_out_and_replies_come_back() {
    let (emu, _api) = emulator();
    assert!(
        emu.send_upstream(&upstream_message(1)).is_err(),
        "no connection yet"
    );
    // A send right after the client's handshake waits for the server to register it.
    let mut ws = connect(&emu, "upstream");
    emu.send_upstream(&upstream_message(4)).unwrap();
    // Exactly the reference frame.
    assert_eq!(next_json(&mut ws), upstream_frame(4));

    send_json(
        &mut ws,
        json!({"ProtocolVersion": 1, "TransactionID": 4, "DevEUI": 18446744073709551615u64, "MIC": 4294967295u32}),
    );
    let reply = emu.wait_upstream_reply(TIMEOUT).expect("ack");
    let UpstreamReply::Ack(ack) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(
        (ack.transaction_id, ack.dev_eui, ack.mic),
        (4, DevEui::new(u64::MAX), u32::MAX)
    );

    // A reject, sent as a binary frame.
    let reject = json!({"ProtocolVersion": 1, "TransactionID": 5, "ResultCode": "MICFailed"});
    ws.send(Message::binary(reject.to_string().into_bytes()))
        .unwrap();
    let reply = emu.wait_upstream_reply(TIMEOUT).expect("reject");
    assert!(
        matches!(reply, UpstreamReply::Reject(ref r) if r.transaction_id == 5),
        "{reply:?}"
    );

    // Frames that are not replies are ignored and counted; the connection stays up.
    for bad in ["not json", "{\"TransactionID\": 6}", "[]"] {
        ws.send(Message::text(bad)).unwrap();
    }
    send_json(
        &mut ws,
        json!({"ProtocolVersion": 1, "TransactionID": 7, "ResultCode": "Other"}),
    );
    let reply = emu
        .wait_upstream_reply(TIMEOUT)
        .expect("reply after bad frames");
    assert_eq!(reply.transaction_id(), 7);
    assert_eq!(emu.invalid_frames(), 3);
    assert!(emu.wait_upstream_reply(Duration::from_millis(20)).is_none());
    assert_eq!(emu.upstream_replies().len(), 3);

    // Raw frames go out as they are.
    emu.send_upstream_raw("{\"hello\": 1}").unwrap();
    assert_eq!(next_json(&mut ws), json!({"hello": 1}));
}

#[test]
fn upstream_is_shared_round_robin() {
    let (emu, _api) = emulator();
    let mut a = connect(&emu, "upstream");
    let mut b = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(2, TIMEOUT));
    assert_eq!(emu.upstream_connections(), 2);
    for id in 1..=6 {
        emu.send_upstream(&upstream_message(id)).unwrap();
    }
    let ids = |ws: &mut Ws| -> Vec<u64> {
        (0..3)
            .map(|_| next_json(ws)["TransactionID"].as_u64().unwrap())
            .collect()
    };
    let (from_a, from_b) = (ids(&mut a), ids(&mut b));
    let mut all: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort_unstable();
    assert_eq!(all, [1, 2, 3, 4, 5, 6], "{from_a:?} {from_b:?}");
    // Strict alternation: each connection got every other message.
    assert!(from_a.windows(2).all(|w| w[1] == w[0] + 2), "{from_a:?}");
    assert!(from_b.windows(2).all(|w| w[1] == w[0] + 2), "{from_b:?}");
    assert!(frame_within(&mut a, Duration::from_millis(50)).is_none());

    // When one goes away, the other gets everything.
    drop(a);
    assert!(eventually(|| emu.upstream_connections() == 1));
    for id in 7..=8 {
        emu.send_upstream(&upstream_message(id)).unwrap();
    }
    assert_eq!(next_json(&mut b)["TransactionID"], 7);
    assert_eq!(next_json(&mut b)["TransactionID"], 8);
}

/// Reads the ack and the result of one downlink; checks their shape.
fn ack_and_result(ws: &mut Ws, transaction_id: u64) -> Value {
    let ack = next_json(ws);
    assert_eq!(ack["ProtocolVersion"], 1, "{ack}");
    assert_eq!(ack["TransactionID"], transaction_id, "{ack}");
    let mailbox = ack["MailboxID"].as_u64().expect("MailboxID");
    assert!(mailbox > 0);
    assert!(ack.get("ResultCode").is_none(), "{ack}");
    let result = next_json(ws);
    assert_eq!(result["ProtocolVersion"], 1, "{result}");
    assert_eq!(result["TransactionID"], transaction_id, "{result}");
    assert_eq!(result["MailboxID"], mailbox, "{result}");
    assert!(result["ResultMessage"].is_string(), "{result}");
    result
}

/// An emulator whose emulated time runs ten times faster: an 8 s class A Delay opens
/// 800 ms after the uplink, time enough on a loaded machine.
fn fast_emulator() -> (Emulator, Api) {
    let emu = Emulator::builder()
        .time_scale(0.1)
        .start()
        .expect("emulator");
    let api = Api::new(&emu);
    (emu, api)
}

fn with_delay(mut frame: Value, delay: u64) -> Value {
    frame["TxWindow"]["Delay"] = json!(delay);
    frame
}

/// A class C downlink with a deadline `ahead` seconds from now.
fn class_c_frame(transaction_id: u64, dev_eui: u64, ahead: u64) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut frame = downstream_frame(transaction_id, dev_eui);
    let window = frame["TxWindow"].as_object_mut().unwrap();
    window.remove("Delay");
    window.insert("Deadline".into(), json!(now + ahead));
    frame
}

/// The LNS acks an upstream naming `dev_eui`: class A windows count from it.
fn acked_uplink(emu: &Emulator, up: &mut Ws, transaction_id: u64, dev_eui: u64) {
    let mut msg = upstream_message(transaction_id);
    msg.dev_euis = vec![DevEui::new(dev_eui)];
    emu.send_upstream(&msg).unwrap();
    assert_eq!(next_json(up)["TransactionID"], transaction_id);
    send_json(
        up,
        json!({"ProtocolVersion": 1, "TransactionID": transaction_id, "DevEUI": dev_eui, "MIC": 1}),
    );
    assert!(eventually(|| emu
        .upstream_replies()
        .iter()
        .any(|r| r.transaction_id() == transaction_id)));
}

#[test]
fn downlinks_get_an_ack_then_a_result() {
    let (emu, api) = fast_emulator();
    api.ok(
        "devices/insert",
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4"}),
    );
    let mut up = connect(&emu, "upstream");
    let mut ws = connect(&emu, "downstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    let dev = 0x7abe1b8c93d7174f_u64;
    acked_uplink(&emu, &mut up, 100, dev);
    send_json(&mut ws, with_delay(downstream_frame(1, dev), 8));
    assert_eq!(ack_and_result(&mut ws, 1)["ResultCode"], "Success");
    let got = emu.wait_downstream(TIMEOUT).expect("recorded");
    assert!(matches!(got, DownstreamRequest::Unicast(ref m) if m.dev_eui == DevEui::new(dev)));

    // A join accept with TargetDevAddr, as a binary frame; it becomes the row's target.
    acked_uplink(&emu, &mut up, 101, dev);
    let mut join_accept = with_delay(downstream_frame(2, dev), 8);
    join_accept["TargetDevAddr"] = json!(7);
    join_accept["PHYPayload"] = json!(vec![0x20; 17]);
    ws.send(Message::binary(join_accept.to_string().into_bytes()))
        .unwrap();
    assert_eq!(ack_and_result(&mut ws, 2)["ResultCode"], "Success");
    assert_eq!(
        emu.devices()[0].target_dev_addr,
        Some(ran_routing::DevAddr::new(7))
    );

    // Result codes: for all, per device, per transaction; chosen failures come at once.
    emu.set_downstream_result(DownstreamResultCode::TooLate);
    send_json(&mut ws, downstream_frame(3, dev));
    assert_eq!(ack_and_result(&mut ws, 3)["ResultCode"], "TooLate");
    emu.set_downstream_result_for_device(DevEui::new(dev), DownstreamResultCode::NoAck);
    send_json(&mut ws, downstream_frame(4, dev));
    assert_eq!(ack_and_result(&mut ws, 4)["ResultCode"], "NoAck");
    emu.set_downstream_result_for_transaction(5, DownstreamResultCode::GatewayError);
    send_json(&mut ws, downstream_frame(5, dev));
    assert_eq!(ack_and_result(&mut ws, 5)["ResultCode"], "GatewayError");
    emu.reset_downstream_results();
    acked_uplink(&emu, &mut up, 102, dev);
    send_json(&mut ws, with_delay(downstream_frame(6, dev), 8));
    assert_eq!(ack_and_result(&mut ws, 6)["ResultCode"], "Success");

    // Not in the routing table: discarded.
    send_json(&mut ws, downstream_frame(7, 0x99));
    let result = ack_and_result(&mut ws, 7);
    assert_eq!(result["ResultCode"], "GatewayNotFound");
    assert!(result["ResultMessage"]
        .as_str()
        .unwrap()
        .contains("discarded"));

    // Mailbox ids differ per downlink.
    send_json(&mut ws, class_c_frame(8, dev, 10));
    send_json(&mut ws, class_c_frame(9, dev, 10));
    let (ack8, ack9) = (next_json(&mut ws), next_json(&mut ws));
    assert_eq!(
        (&ack8["TransactionID"], &ack9["TransactionID"]),
        (&json!(8), &json!(9))
    );
    assert_ne!(ack8["MailboxID"], ack9["MailboxID"]);
    let (r8, r9) = (next_json(&mut ws), next_json(&mut ws));
    assert_eq!(
        (&r8["MailboxID"], &r9["MailboxID"]),
        (&ack8["MailboxID"], &ack9["MailboxID"])
    );
    assert_eq!(emu.downstream_received().len(), 9);
}

/// Routing rule: a class A Delay counts from the last acknowledged uplink of the
/// device; no such uplink is `WindowNotFound`, a window passed is `TooLate`, and a
/// result comes once the transmission would have ended, never before.
#[test]
fn class_a_downlinks_are_timed_from_the_last_acked_uplink() {
    let (emu, api) = fast_emulator();
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    let mut up = connect(&emu, "upstream");
    let mut down = connect(&emu, "downstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));

    // No uplink to time it from.
    send_json(&mut down, downstream_frame(1, 1));
    let result = ack_and_result(&mut down, 1);
    assert_eq!(result["ResultCode"], "WindowNotFound", "{result}");
    assert!(result["ResultMessage"]
        .as_str()
        .unwrap()
        .contains("no acknowledged uplink"));

    // A rejected uplink is no acknowledged one.
    let mut msg = upstream_message(10);
    msg.dev_euis = vec![DevEui::new(1)];
    emu.send_upstream(&msg).unwrap();
    next_json(&mut up);
    send_json(
        &mut up,
        json!({"ProtocolVersion": 1, "TransactionID": 10, "ResultCode": "MICFailed"}),
    );
    assert!(eventually(|| emu.upstream_replies().len() == 1));
    send_json(&mut down, downstream_frame(2, 1));
    assert_eq!(ack_and_result(&mut down, 2)["ResultCode"], "WindowNotFound");

    // On time: Delay 3 (300 ms here) after the uplink; the result comes after the
    // window opened and the frame was on air.
    let sent = Instant::now();
    acked_uplink(&emu, &mut up, 11, 1);
    send_json(&mut down, with_delay(downstream_frame(3, 1), 3));
    let result = ack_and_result(&mut down, 3);
    assert_eq!(result["ResultCode"], "Success", "{result}");
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "{:?}",
        sent.elapsed()
    );

    // Too late: the window 1 s (100 ms) after the uplink has passed.
    acked_uplink(&emu, &mut up, 12, 1);
    std::thread::sleep(Duration::from_millis(400));
    send_json(&mut down, downstream_frame(4, 1));
    let result = ack_and_result(&mut down, 4);
    assert_eq!(result["ResultCode"], "TooLate", "{result}");
    // The later window, RX2-like, is still open.
    send_json(&mut down, with_delay(downstream_frame(5, 1), 15));
    assert_eq!(ack_and_result(&mut down, 5)["ResultCode"], "Success");

    // A multicast group sends no uplink: class A cannot be timed.
    api.ok(
        "multicast/multicast-groups/create",
        json!({"name": "g", "addr": "00000009"}),
    );
    let mut multicast = downstream_frame(6, 1);
    multicast.as_object_mut().unwrap().remove("DevEUI");
    multicast["Addr"] = json!(9);
    send_json(&mut down, multicast);
    assert_eq!(ack_and_result(&mut down, 6)["ResultCode"], "WindowNotFound");
}

/// `Deadline` beyond now + 512 s is the spec's "default and maximum": clamped, and
/// answered; a past one means "as soon as possible".
#[test]
fn a_far_deadline_is_clamped_and_answered() {
    let (emu, api) = fast_emulator();
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    let mut down = connect(&emu, "downstream");
    send_json(&mut down, class_c_frame(1, 1, 100_000));
    let result = ack_and_result(&mut down, 1);
    assert_eq!(result["ResultCode"], "Success", "{result}");
    assert!(
        result["ResultMessage"]
            .as_str()
            .unwrap()
            .contains("clamped"),
        "{result}"
    );
    let mut asap = class_c_frame(2, 1, 0);
    asap["TxWindow"]["Deadline"] = json!(1);
    send_json(&mut down, asap);
    assert_eq!(ack_and_result(&mut down, 2)["ResultCode"], "Success");
    assert_eq!(emu.invalid_frames(), 0);
}

/// Routing rule: a join accept needs `TargetDevAddr`; without it the RAN refuses it with
/// a result the LNS sees, and the row is left as it was.
#[test]
fn a_join_accept_without_target_dev_addr_is_refused() {
    let (emu, api) = fast_emulator();
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "JoinEUI": "0000000000000002"}),
    );
    let mut up = connect(&emu, "upstream");
    let mut down = connect(&emu, "downstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    acked_uplink(&emu, &mut up, 10, 1);
    let mut join_accept = with_delay(downstream_frame(1, 1), 5);
    join_accept["PHYPayload"] = json!(vec![0x20; 17]);
    send_json(&mut down, join_accept.clone());
    let result = ack_and_result(&mut down, 1);
    assert_eq!(result["ResultCode"], "GatewayError", "{result}");
    assert!(result["ResultMessage"]
        .as_str()
        .unwrap()
        .contains("TargetDevAddr is mandatory"));
    assert_eq!(emu.devices()[0].target_dev_addr, None);
    // A data downlink needs none.
    let mut data = with_delay(downstream_frame(2, 1), 10);
    data["PHYPayload"] = json!([0x60, 1, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4]);
    send_json(&mut down, data);
    assert_eq!(ack_and_result(&mut down, 2)["ResultCode"], "Success");

    // The rule can be switched off.
    let emu = Emulator::builder()
        .time_scale(0.1)
        .require_target_dev_addr(false)
        .start()
        .unwrap();
    Api::new(&emu).ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "JoinEUI": "0000000000000002"}),
    );
    let mut up = connect(&emu, "upstream");
    let mut down = connect(&emu, "downstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    acked_uplink(&emu, &mut up, 10, 1);
    join_accept["TransactionID"] = json!(3);
    send_json(&mut down, join_accept);
    assert_eq!(ack_and_result(&mut down, 3)["ResultCode"], "Success");
}

/// With every rule off, a downlink is answered at once whatever its window.
#[test]
fn a_lenient_emulator_answers_every_downlink_at_once() {
    let emu = Emulator::builder().lenient().start().unwrap();
    Api::new(&emu).ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "JoinEUI": "0000000000000002"}),
    );
    let mut down = connect(&emu, "downstream");
    let mut join_accept = with_delay(downstream_frame(1, 1), 15);
    join_accept["PHYPayload"] = json!(vec![0x20; 17]);
    let sent = Instant::now();
    send_json(&mut down, join_accept);
    assert_eq!(ack_and_result(&mut down, 1)["ResultCode"], "Success");
    // Far below the 15 s the window would take.
    assert!(sent.elapsed() < Duration::from_secs(10));
}

/// A result code the client would read as `Unknown` is refused, unless the test says
/// it means one.
#[test]
fn a_misspelt_result_code_is_refused() {
    let emu = Emulator::start().unwrap();
    let control = Control::new(&emu);
    let answer = control.post("downstream/result-code", r#"{"code": "Toolate"}"#);
    assert_error(&answer, 422, "ValidationFailed");
    let text = answer.1.to_string();
    assert!(
        text.contains("TooLate") && text.contains("WindowNotFound"),
        "{text}"
    );
    let answer = control.post("downstream/result-code", r#"{"code": "TooLate"}"#);
    assert_eq!(answer.0, 200, "{}", answer.1);
    let answer = control.post(
        "downstream/result-code",
        r#"{"code": "Toolate", "unknown_code": true}"#,
    );
    assert_eq!(answer.0, 200, "{}", answer.1);
}

#[test]
fn multicast_downlinks() {
    let (emu, api) = emulator();
    api.ok(
        "multicast/multicast-groups/create",
        json!({"name": "g", "addr": "ef046a1e"}),
    );
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    api.ok(
        "multicast/multicast-groups/add-device",
        json!({"addr": "ef046a1e", "dev_eui": "0000000000000001"}),
    );
    let mut ws = connect(&emu, "downstream");
    // Class B slots in GPS milliseconds, the first 50 ms ahead.
    let gps_ms = ran_routing::timing::gps_time(std::time::SystemTime::now())
        .unwrap()
        .as_millis() as u64;
    let frame = |tx: u64, addr: u64| {
        json!({"ProtocolVersion": 1, "TransactionID": tx, "Addr": addr,
               "TxWindow": {"Radio": {"Frequency": 868300000,
                                      "FSK": {"FrequencyDeviation": 5000, "BitRate": 50000}},
                            "TMMS": [gps_ms + 50, gps_ms + 1050]},
               "PHYPayload": [104, 105]})
    };
    send_json(&mut ws, frame(1, 0xef046a1e));
    assert_eq!(ack_and_result(&mut ws, 1)["ResultCode"], "Success");
    send_json(&mut ws, frame(2, 0x1234));
    assert_eq!(ack_and_result(&mut ws, 2)["ResultCode"], "GatewayNotFound");
    let got = emu.wait_downstream(TIMEOUT).unwrap();
    assert!(matches!(got, DownstreamRequest::Multicast(ref m) if m.transaction_id == 1));
}

#[test]
fn invalid_downlinks_are_answered_when_they_name_a_transaction() {
    let (emu, api) = fast_emulator();
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    let mut ws = connect(&emu, "downstream");
    let mut bad_spreading = downstream_frame(2, 1);
    bad_spreading["TxWindow"]["Radio"]["LoRa"]["Spreading"] = json!(13);
    let mut two_timings = downstream_frame(3, 1);
    two_timings["TxWindow"]["TMMS"] = json!([1]);
    let mut no_payload = downstream_frame(4, 1);
    no_payload.as_object_mut().unwrap().remove("PHYPayload");
    let mut two_modulations = downstream_frame(5, 1);
    two_modulations["TxWindow"]["Radio"]["FSK"] = json!({"FrequencyDeviation": 1, "BitRate": 1});
    let mut zero_tx = downstream_frame(0, 1);
    zero_tx["TransactionID"] = json!(0);
    // What a lenient codec (the client's own) would take: an unknown key, no version,
    // a hex string for a number, a frame both unicast and multicast.
    let mut extra_key = downstream_frame(6, 1);
    extra_key["Priority"] = json!(1);
    let mut no_version = downstream_frame(7, 1);
    no_version
        .as_object_mut()
        .unwrap()
        .remove("ProtocolVersion");
    let mut hex_dev_eui = downstream_frame(8, 1);
    hex_dev_eui["DevEUI"] = json!("0000000000000001");
    let mut both_targets = downstream_frame(10, 1);
    both_targets["Addr"] = json!(1);
    let bad = [
        extra_key,
        no_version,
        hex_dev_eui,
        both_targets,
        Value::String("not json".into()),
        json!({}),
        bad_spreading,
        two_timings,
        two_modulations,
        no_payload,
        zero_tx,
    ];
    for frame in &bad {
        match frame {
            Value::String(s) => ws.send(Message::text(s.clone())).unwrap(),
            v => send_json(&mut ws, v.clone()),
        }
    }
    // Each bad frame that names its transaction gets a result saying why, and no ack
    // (it was not taken); the others cannot be answered.
    for (transaction_id, code) in [
        (6, "GatewayError"),
        (8, "GatewayError"),
        (10, "GatewayError"),
        (2, "GatewayError"),
        (3, "WindowNotFound"),
        (5, "GatewayError"),
        (4, "GatewayError"),
    ] {
        let result = next_json(&mut ws);
        assert_eq!(result["TransactionID"], transaction_id, "{result}");
        assert_eq!(result["ResultCode"], code, "{result}");
        assert!(result["ResultMessage"]
            .as_str()
            .unwrap()
            .starts_with("invalid Downstream"));
    }
    send_json(&mut ws, class_c_frame(9, 1, 10));
    assert_eq!(ack_and_result(&mut ws, 9)["ResultCode"], "Success");
    assert_eq!(emu.invalid_frames(), bad.len() as u64);
    assert_eq!(emu.downstream_received().len(), 1);
}

#[test]
fn pings_both_ways() {
    let emu = Emulator::builder()
        .ping_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let mut ws = connect(&emu, "upstream");
    // The server pings on its interval.
    let first = ws.read().expect("a ping before the timeout");
    assert!(matches!(first, Message::Ping(_)), "unexpected {first:?}");
    // And answers ours.
    ws.send(Message::Ping(b"hello"[..].into())).unwrap();
    loop {
        match ws.read().expect("a pong before the timeout") {
            Message::Pong(data) if &data[..] == b"hello" => break,
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(emu.upstream_connections(), 1);
}

#[test]
fn dropped_and_closed_connections() {
    let (emu, _api) = emulator();
    let mut up = connect(&emu, "upstream");
    let mut down = connect(&emu, "downstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    assert!(emu.wait_downstream_connections(1, TIMEOUT));
    emu.drop_stream_connections();
    assert!(ends(&mut up), "upstream not dropped");
    assert!(ends(&mut down), "downstream not dropped");
    assert!(eventually(
        || emu.upstream_connections() == 0 && emu.downstream_connections() == 0
    ));
    assert!(emu.send_upstream(&upstream_message(1)).is_err());

    // Reconnecting works, and a polite close sends a close frame.
    let mut up = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    emu.close_stream_connections();
    let closed = loop {
        match up.read() {
            Ok(Message::Close(_)) => break true,
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break false,
        }
    };
    assert!(closed, "no close frame");
    assert!(ends(&mut up));
    assert!(eventually(|| emu.upstream_connections() == 0));
}

#[test]
fn shutdown_ends_stream_connections() {
    let (emu, _api) = emulator();
    let mut ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    emu.shutdown();
    assert!(ends(&mut ws));
}

#[test]
fn silent_peers_are_dropped() {
    let emu = Emulator::builder()
        .ping_interval(std::time::Duration::from_millis(30))
        .pong_timeout(std::time::Duration::from_millis(100))
        .start()
        .unwrap();
    // This client never reads, so it never answers the server's pings.
    let mut ws = connect(&emu, "downstream");
    assert!(emu.wait_downstream_connections(1, TIMEOUT));
    assert!(eventually(|| emu.downstream_connections() == 0));
    assert!(ends(&mut ws));
}

/// The emulator over TLS: `https` with `ureq` trusting only the emulator's certificate,
/// `wss` with `tungstenite` over rustls.
mod tls {
    use super::*;

    fn tls_agent(pem: &str) -> ureq::Agent {
        let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).unwrap();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
            .build();
        ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(TIMEOUT))
                .tls_config(tls)
                .build(),
        )
    }

    #[test]
    fn https_and_wss_with_the_generated_certificate() {
        let emu = Emulator::builder().tls(true).start().unwrap();
        assert!(
            emu.base_url().starts_with("https://127.0.0.1:"),
            "{}",
            emu.base_url()
        );
        let pem = emu.certificate_pem().expect("a certificate");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

        let mut api = Api::new(&emu);
        api.agent = tls_agent(&pem);
        let before = emu.accepted_connections();
        for i in 0..10 {
            api.ok(
                "devices/insert",
                json!({"DevEUI": format!("{i:016x}"), "DevAddr": "00000001"}),
            );
        }
        assert_error(
            &api.post("devices/insert", json!({"DevEUI": "0000000000000001"})),
            422,
            "ValidationFailed",
        );
        // One TLS connection for all of it.
        assert_eq!(emu.accepted_connections() - before, 1);
        // `localhost` is in the certificate too.
        let localhost = api.base.replace("127.0.0.1", "localhost");
        let resp = api
            .agent
            .get(format!("{localhost}/devices/select"))
            .header("Authorization", format!("Bearer {}", api.token))
            .call()
            .unwrap();
        assert_eq!(resp.status(), 200);

        // wss: upstream out, reply back.
        let mut ws = connect(&emu, "upstream");
        assert!(emu.wait_upstream_connections(1, TIMEOUT));
        let message = serde_json::from_value(upstream_frame(1)).unwrap();
        emu.send_upstream(&message).unwrap();
        assert_eq!(next_json(&mut ws), upstream_frame(1));
        send_json(
            &mut ws,
            json!({"ProtocolVersion": 1, "TransactionID": 1, "ResultCode": "MICFailed"}),
        );
        assert!(emu.wait_upstream_reply(TIMEOUT).is_some());
        // And a bad token is refused over wss too.
        let err = try_connect(&emu, &stream_url(&emu, "downstream", "nope")).unwrap_err();
        assert!(matches!(err, tungstenite::Error::Http(r) if r.status() == 401));
    }

    #[test]
    fn untrusted_clients_fail_the_handshake() {
        let emu = Emulator::builder().tls(true).start().unwrap();
        // The default agent trusts only public roots.
        let err = agent()
            .get(format!("{}/devices/select", emu.base_url()))
            .call()
            .unwrap_err();
        assert!(
            matches!(
                err,
                ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Io(_)
            ),
            "{err:?}"
        );
        // Another emulator's certificate is not this one's.
        let other = Emulator::builder().tls(true).start().unwrap();
        let err = tls_agent(&other.certificate_pem().unwrap())
            .get(format!("{}/devices/select", emu.base_url()))
            .call()
            .unwrap_err();
        assert!(!matches!(err, ureq::Error::StatusCode(_)), "{err:?}");
        // Plain HTTP to a TLS port gets nothing usable, and the server keeps serving.
        let answer = raw_exchange(&emu, b"GET /api/v1/devices/select HTTP/1.1\r\n\r\n");
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(Emulator::start().unwrap().certificate_pem().is_none());
        let mut api = Api::new(&emu);
        api.agent = tls_agent(&emu.certificate_pem().unwrap());
        assert_eq!(api.get("devices/select", &[]).0, 200);
    }
}

/// Reads and writes of one connection take turns: a client that floods pings (and
/// drains what it gets) does not keep injected upstream frames from going out.
#[test]
fn a_ping_flood_does_not_starve_sends() {
    let (emu, _api) = emulator();
    let ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    let Socket::Plain(tcp) = ws.get_ref() else {
        unreachable!("plain emulator");
    };
    let mut writer = tcp.try_clone().unwrap();
    let mut reader = tcp.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Masked, empty client pings, back to back.
    let pings: Vec<u8> = [0x89u8, 0x80, 1, 2, 3, 4].repeat(10_000);
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                if writer.write_all(&pings).is_err() {
                    break;
                }
            }
        })
    };
    let drain = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Keep only what is not a pong (0x8a 0x00), to find the frames.
                    let mut i = 0;
                    while i < n {
                        if chunk[i] == 0x8a && chunk.get(i + 1) == Some(&0) {
                            i += 2;
                        } else {
                            seen.push(chunk[i]);
                            i += 1;
                        }
                    }
                    let text = String::from_utf8_lossy(&seen);
                    if text.contains("\"TransactionID\":20}")
                        || text.contains("\"TransactionID\":20,")
                    {
                        return true;
                    }
                }
            }
        }
        false
    });
    for tid in 1..=20 {
        emu.send_upstream(&upstream_message(tid))
            .unwrap_or_else(|e| panic!("upstream {tid} during a ping flood: {e}"));
    }
    let all_seen = drain.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    let _ = tcp.shutdown(std::net::Shutdown::Both);
    flood.join().unwrap();
    assert!(all_seen, "the upstream frames never reached the client");
}

/// A client that sends downlinks and never reads their answers stalls on TCP: the
/// emulator stops reading once its answers cannot be written, instead of buffering
/// without bound.
#[test]
fn a_client_that_never_reads_is_pushed_back() {
    let (emu, api) = emulator();
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    let mut ws = connect(&emu, "downstream");
    set_write_timeout(&ws, Some(Duration::from_secs(1)));
    const N: u64 = 1_000_000;
    let mut sent = 0;
    for tid in 1..=N {
        let frame = Message::text(downstream_frame(tid, 1).to_string());
        if ws.send(frame).is_err() {
            break;
        }
        sent = tid;
    }
    assert!(
        sent < N,
        "all {N} downlinks went through without being read"
    );
    // Whatever the emulator read, it could answer only part of: it holds no more than
    // one batch of answers beyond what the socket took.
    let received = emu.downstream_received().len() as u64;
    assert!(received <= sent, "{received} > {sent}");
    assert!(emu.downstream_connections() == 1);
}
