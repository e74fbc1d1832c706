//! Stats, health and metrics against the emulator: every counter is checked against what
//! the emulator recorded on its side (the frames it sent, the replies and downlinks it
//! received), across a reconnection and with a slow consumer.

use crate::common;
use crate::common::streams::{asap, fast_reconnect, WAIT};

use std::time::{Duration, Instant};

use ran_routing::*;

fn uplink(transaction_id: u64) -> UpstreamMessage {
    UpstreamMessage::new(
        transaction_id,
        vec![DevEui::new(0x7ABE1B8C93D7174F)],
        UpstreamRadio::new(868_100_000, LoRaModulation::new(12, 125_000), -52.0, -3.0),
        vec![64, 184, 174, 199],
        vec![1_308_830_714, 114_830_713],
    )
}

/// Polls `done` until it holds, failing the test after [`WAIT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the client wrote, byte for byte: the emulator's record re-encoded the way the
/// client encodes it.
fn reply_bytes(replies: &[UpstreamReply]) -> u64 {
    replies
        .iter()
        .map(|r| serde_json::to_string(r).unwrap().len() as u64)
        .sum()
}

#[test]
fn upstream_counters_match_the_emulator_across_a_reconnection() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let up = core
        .upstream()
        .reconnect(fast_reconnect())
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    let fresh = up.stats();
    assert_eq!(fresh.stream, "upstream");
    assert_eq!(fresh.frames_received, 0);
    assert_eq!(fresh.since_last_frame, None);
    assert!(fresh.connected);

    // Round 1: 10 uplinks and 2 frames that are not messages.
    let garbage = ["not json", r#"{"TransactionID":"x"}"#];
    for id in 1..=10 {
        emu.send_upstream(&uplink(id)).unwrap();
    }
    for text in garbage {
        emu.send_upstream_raw(text).unwrap();
    }
    let answer = |up: &UpstreamConnection, from: u64, to: u64| {
        for id in from..=to {
            let msg = up.recv_timeout(WAIT).unwrap();
            assert_eq!(msg.transaction_id, id);
            match id % 4 {
                0 => up
                    .send_upstream_reject(id, UpstreamRejectResultCode::MicFailed)
                    .unwrap(),
                1 => up
                    .send_upstream_reject(id, UpstreamRejectResultCode::Other)
                    .unwrap(),
                2 => up
                    .send(
                        UpstreamReject::new(id, UpstreamRejectResultCode::Other)
                            .with_message("why"),
                    )
                    .unwrap(),
                _ => up
                    .send_upstream_ack(id, DevEui::new(0x7ABE1B8C93D7174F), 0x1234)
                    .unwrap(),
            }
        }
    };
    answer(&up, 1, 10);
    wait_until("10 replies at the emulator", || {
        emu.upstream_replies().len() == 10
    });
    wait_until("the garbage frames to be read", || {
        up.stats().frames_received == 12
    });
    let s = up.stats();
    assert_eq!(s.frames_skipped, 2);
    assert_eq!(s.messages_handed_out, 10);
    assert_eq!(s.waiting, 0);
    assert_eq!(
        s.frames_received,
        s.frames_skipped + s.messages_handed_out + s.waiting as u64
    );
    let recorded = emu.upstream_replies();
    let acks = recorded
        .iter()
        .filter(|r| matches!(r, UpstreamReply::Ack(_)))
        .count() as u64;
    let rejects = |code: UpstreamRejectResultCode| {
        recorded
            .iter()
            .filter(|r| matches!(r, UpstreamReply::Reject(j) if j.result_code == code))
            .count() as u64
    };
    assert_eq!(s.acks_sent, acks);
    assert_eq!(s.acks_sent, 2);
    assert_eq!(
        s.rejects_sent.mic_failed,
        rejects(UpstreamRejectResultCode::MicFailed)
    );
    assert_eq!(
        s.rejects_sent.other,
        rejects(UpstreamRejectResultCode::Other)
    );
    assert_eq!(s.rejects_sent.other, 6);
    assert_eq!(s.rejects_sent.unknown, 0);
    assert_eq!(s.rejects_sent.total() + s.acks_sent, 10);
    assert_eq!(s.bytes_sent, reply_bytes(&recorded));
    assert_eq!(s.send_errors, 0);
    assert_eq!(s.reconnections, 0);
    assert!(s.since_last_frame.is_some());
    // Nothing of the downstream's on the upstream.
    assert_eq!(s.downlinks_sent + s.downstream_acks_received, 0);
    assert_eq!(s.results_received.total(), 0);

    // The bytes of frames the emulator sent as they are: exactly their lengths.
    let before = up.stats().bytes_received;
    emu.send_upstream_raw("[1,2,3]").unwrap();
    wait_until("the raw frame", || up.stats().frames_skipped == 3);
    assert_eq!(up.stats().bytes_received - before, 7);

    // A network failure: the connection is replaced and the counters go on.
    let opened = emu.stream_connections_opened();
    emu.drop_stream_connections();
    wait_until("the reconnection", || {
        emu.stream_connections_opened() > opened && up.stats().reconnections == 1
    });
    assert!(emu.wait_upstream_connections(1, WAIT));
    wait_until("connected again", || up.health().is_connected());
    for id in 11..=14 {
        emu.send_upstream(&uplink(id)).unwrap();
    }
    answer(&up, 11, 14);
    wait_until("14 replies at the emulator", || {
        emu.upstream_replies().len() == 14
    });
    let s = up.stats();
    let recorded = emu.upstream_replies();
    assert_eq!(s.reconnections, 1);
    assert_eq!(s.frames_received, 14 + 3);
    assert_eq!(s.messages_handed_out, 14);
    assert_eq!(s.acks_sent + s.rejects_sent.total(), recorded.len() as u64);
    assert_eq!(s.bytes_sent, reply_bytes(&recorded));
    assert!(s.connected);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["frames_received"], 17);
    assert_eq!(
        json["rejects_sent"]["mic_failed"],
        s.rejects_sent.mic_failed
    );
    assert!(json["since_last_frame"].as_f64().unwrap() >= 0.0);
    let line = s.to_string();
    assert!(line.starts_with("upstream: 17 frames in (3 skipped, 14 handed out, 0 waiting)"));
    assert!(line.contains("1 reconnections, up"), "{line}");
}

#[test]
fn the_waiting_gauge_rises_with_a_slow_consumer_and_falls_as_it_catches_up() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let up = core.upstream().capacity(8).connect().unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    for id in 1..=20 {
        emu.send_upstream(&uplink(id)).unwrap();
    }
    // Nobody reads: the channel fills up to its capacity and the reader holds back.
    wait_until("a full channel", || up.stats().waiting == 8);
    std::thread::sleep(Duration::from_millis(50));
    let held = up.stats();
    assert_eq!(held.waiting, 8);
    assert_eq!(held.messages_handed_out, 0);
    assert!(held.frames_received >= 8 && held.frames_received <= 20);
    // Catching up: the gauge falls back to zero, everything counted as handed out.
    let mut peak = 0;
    for id in 1..=20 {
        peak = peak.max(up.stats().waiting);
        assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, id);
    }
    assert_eq!(peak, 8);
    let s = up.stats();
    assert_eq!(s.waiting, 0);
    assert_eq!(s.frames_received, 20);
    assert_eq!(s.messages_handed_out, 20);
}

#[test]
fn downstream_counters_match_the_emulator() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let dev = DevEui::new(0x0102030405060708);
    core.routing_table()
        .insert(NewDevice::abp(dev, DevAddr::new(0x26011234)))
        .unwrap();
    let group = MulticastAddr::new(0xef046a1e);
    core.multicast_groups().create("obs", group).unwrap();
    // A group with no member reaches no device: its downlinks would not be sent.
    core.multicast_groups().add_device(group, dev).unwrap();
    let down = core.downstream().connect().unwrap();
    assert!(emu.wait_downstream_connections(1, WAIT));

    emu.set_downstream_result_for_transaction(2, DownstreamResultCode::TooLate);
    emu.set_downstream_result_for_transaction(3, DownstreamResultCode::NoAck);
    emu.set_downstream_result_for_transaction(4, DownstreamResultCode::Unknown("Martian".into()));
    for id in 1..=4 {
        down.send_downstream(id, dev, asap(), vec![1, 2, 3])
            .unwrap();
    }
    down.send_multicast_downstream(5, group, asap(), vec![4, 5])
        .unwrap();
    // One through send_and_wait: its replies go to the waiter, and count as handed out.
    let result = down
        .send_and_wait(DownstreamMessage::new(6, dev, asap(), vec![6]), WAIT)
        .unwrap();
    assert!(result.result_code.is_success());
    let mut replies = Vec::new();
    while replies.len() < 10 {
        replies.push(down.recv_timeout(WAIT).unwrap());
    }
    let sent = emu.downstream_received();
    assert_eq!(sent.len(), 6);
    let s = down.stats();
    let unicast = sent
        .iter()
        .filter(|r| matches!(r, DownstreamRequest::Unicast(_)))
        .count() as u64;
    assert_eq!(s.downlinks_sent, unicast);
    assert_eq!(s.downlinks_sent, 5);
    assert_eq!(s.multicast_downlinks_sent, sent.len() as u64 - unicast);
    let encoded: u64 = sent
        .iter()
        .map(|r| serde_json::to_string(r).unwrap().len() as u64)
        .sum();
    assert_eq!(s.bytes_sent, encoded);
    // Every downlink got an ack and a result from the emulator.
    assert_eq!(s.frames_received, 12);
    assert_eq!(s.downstream_acks_received, 6);
    assert_eq!(s.results_received.total(), 6);
    assert_eq!(s.results_received.success, 3);
    assert_eq!(s.results_received.too_late, 1);
    assert_eq!(s.results_received.no_ack, 1);
    assert_eq!(s.results_received.unknown, 1);
    assert_eq!(s.results_received.failed(), 3);
    assert_eq!(s.messages_handed_out, 12);
    assert_eq!(s.frames_skipped, 0);
    assert_eq!(s.waiting, 0);
    assert_eq!(s.acks_sent + s.rejects_sent.total(), 0);
    assert!(s.to_string().contains("5 + 1 multicast downlinks sent"));
}

#[test]
fn send_errors_and_health_follow_the_connection_state() {
    let emu = common::emulator();
    let core = common::core(&emu);
    assert!(!core.health().is_ready());
    assert_eq!(core.health().to_string(), "not ready: no stream connection");
    let up = core
        .upstream()
        .reconnect(fast_reconnect())
        .connect()
        .unwrap();
    let down = core.downstream().no_reconnect().connect().unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    let health = core.health();
    assert!(health.is_ready(), "{health}");
    assert_eq!(health.connections.len(), 2);
    assert_eq!(
        health.to_string(),
        "ready: upstream connected; downstream connected"
    );
    assert_eq!(up.health().state, ConnectionState::Connected);

    // The server goes away for good: the upstream keeps trying, the downstream ends.
    let addr = emu.local_addr();
    emu.shutdown();
    wait_until(
        "a second reconnect attempt",
        || matches!(up.health().state, ConnectionState::Reconnecting { attempt } if attempt >= 2),
    );
    wait_until("the downstream to end", || down.is_closed());
    let health = core.health();
    assert!(!health.is_ready());
    let line = health.to_string();
    assert!(
        line.starts_with("not ready: upstream reconnecting (attempt "),
        "{line}"
    );
    assert!(line.contains("; downstream closed ("), "{line}");
    match &down.health().state {
        ConnectionState::Closed { reason } => assert_ne!(*reason, CloseReason::Local),
        other => panic!("expected closed, got {other:?}"),
    }
    let json = serde_json::to_value(up.health()).unwrap();
    assert_eq!(json["state"], "reconnecting");
    assert!(json["attempt"].as_u64().unwrap() >= 2);

    // Sends fail while reconnecting or closed, and count as send errors; an invalid
    // message is refused before it counts.
    assert!(up
        .send_upstream_ack(1, DevEui::new(1), 0)
        .unwrap_err()
        .nothing_sent());
    assert!(down
        .send_downstream(1, DevEui::new(1), asap(), vec![1])
        .is_err());
    assert!(matches!(
        down.send_downstream(0, DevEui::new(1), asap(), vec![1]),
        Err(Error::Invalid(_))
    ));
    assert_eq!(up.stats().send_errors, 1);
    assert_eq!(up.stats().acks_sent, 0);
    assert!(!up.stats().connected);
    assert_eq!(down.stats().send_errors, 1);
    assert_eq!(down.stats().downlinks_sent, 0);

    // Closing locally: closed with its reason; a dropped connection leaves the view.
    up.close();
    assert_eq!(
        up.health().state,
        ConnectionState::Closed {
            reason: CloseReason::Local
        }
    );
    drop(down);
    let health = core.health();
    assert_eq!(health.connections.len(), 1);
    assert_eq!(
        health.to_string(),
        "not ready: upstream closed (closed by the client)"
    );
    let _ = addr;
}

#[test]
fn rest_counters_by_operation_and_outcome() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let dev = DevEui::new(0x0A0B0C0D0E0F0102);
    let table = core.routing_table();
    table
        .insert(NewDevice::otaa(dev, JoinEui::new(0x42)))
        .unwrap();
    let again = table.insert(NewDevice::otaa(dev, JoinEui::new(0x42)));
    assert!(matches!(
        again,
        Err(Error::Api(ApiError::DeviceAlreadyExists { .. }))
    ));
    table.select(Select::all()).unwrap();
    table
        .update(DeviceUpdate::new(dev, JoinEui::new(0x42)).with_active_dev_addr(DevAddr::new(7)))
        .unwrap();
    let groups = core.multicast_groups();
    let addr = MulticastAddr::new(0xef000001);
    groups.create("g", addr).unwrap();
    groups.get([addr]).unwrap();
    groups
        .update(MulticastGroupUpdate::new(addr).with_name("h"))
        .unwrap();
    groups.add_device(addr, dev).unwrap();
    groups.remove_device(addr, dev).unwrap();
    groups.delete([addr]).unwrap();
    table.delete([dev]).unwrap();
    table.delete_all().unwrap();
    // Refused before the network: not a call.
    assert!(groups.create(&"x".repeat(10_000), addr).is_err());

    let stats = core.rest_stats();
    let insert = stats.operation(RestOperation::Insert);
    assert_eq!(insert.calls, 2);
    assert_eq!(insert.ok, 1);
    assert_eq!(insert.api_errors.get("Device.AlreadyExists"), Some(&1));
    assert_eq!(insert.errors(), 1);
    assert!(insert.total_time > Duration::ZERO);
    assert!(insert.mean_time().unwrap() <= insert.total_time);
    for op in RestOperation::ALL {
        if op == RestOperation::Insert {
            continue;
        }
        let o = stats.operation(op);
        assert_eq!((o.calls, o.ok), (1, 1), "{op}");
        assert!(o.api_errors.is_empty() && o.transport_errors == 0 && o.decode_errors == 0);
    }
    assert_eq!(stats.calls(), 12);
    assert_eq!(stats.errors(), 1);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(
        json["operations"]["insert"]["api_errors"]["Device.AlreadyExists"],
        1
    );
    assert!(json["operations"]["select"]["total_time"].as_f64().unwrap() > 0.0);
    assert!(stats.to_string().starts_with("rest: 12 calls, 1 failed, "));
    // Clones share the counters.
    assert_eq!(core.clone().rest_stats(), stats);

    // A transport error: nothing listens at the address any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gone = Core::builder("token")
        .base_url(&format!("http://127.0.0.1:{port}/api/v1"))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(gone.routing_table().select(Select::all()).is_err());
    let select = gone.rest_stats().operation(RestOperation::Select).clone();
    assert_eq!((select.calls, select.transport_errors), (1, 1));

    // A success answer that does not decode; and an unknown error code.
    let url = common::raw_http_server(200, "{not json", false);
    let odd = Core::new("token", &url).unwrap();
    assert!(odd.routing_table().delete_all().is_err());
    let url = common::raw_http_server(
        409,
        r#"{"error_code":"Brand.New","description":"?"}"#,
        false,
    );
    let odd2 = Core::new("token", &url).unwrap();
    assert!(odd2.routing_table().delete_all().is_err());
    assert_eq!(
        odd.rest_stats()
            .operation(RestOperation::DeleteAll)
            .decode_errors,
        1
    );
    assert_eq!(
        odd2.rest_stats()
            .operation(RestOperation::DeleteAll)
            .api_errors
            .get("unknown"),
        Some(&1)
    );
}

#[cfg(feature = "metrics")]
#[path = "../../examples/common/metrics.rs"]
mod metrics_server;

/// The lns example's Prometheus endpoint, scraped over HTTP: every documented name is
/// there once a connection of each stream has carried traffic.
#[cfg(feature = "metrics")]
#[test]
fn the_prometheus_endpoint_serves_the_documented_names() {
    use std::io::{Read, Write};

    let server = metrics_server::MetricsServer::start("127.0.0.1:0", None).unwrap();
    let emu = common::emulator();
    let core = common::core(&emu);
    let up = core.upstream().connect().unwrap();
    let down = core.downstream().connect().unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    assert!(emu.wait_downstream_connections(1, WAIT));
    emu.send_upstream(&uplink(1)).unwrap();
    emu.send_upstream_raw("junk").unwrap();
    up.recv_timeout(WAIT).unwrap();
    up.send_upstream_ack(1, DevEui::new(1), 1).unwrap();
    down.send_and_wait(
        DownstreamMessage::new(1, DevEui::new(9), asap(), vec![1]),
        WAIT,
    )
    .unwrap();
    let _ = core.routing_table().select(Select::all());
    wait_until("the skipped frame", || up.stats().frames_skipped == 1);

    let scrape = |path: &str| {
        let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        write!(tcp, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).unwrap();
        text
    };
    let text = scrape("/metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Type: text/plain; version=0.0.4"));
    for line in [
        r#"ran_routing_stream_frames_received_total{stream="upstream"} "#,
        r#"ran_routing_stream_frames_received_total{stream="downstream"} "#,
        r#"ran_routing_stream_frames_skipped_total{stream="upstream"} "#,
        r#"ran_routing_stream_messages_handed_out_total{stream="upstream"} "#,
        r#"ran_routing_stream_received_bytes_total{stream="upstream"} "#,
        r#"ran_routing_stream_sent_bytes_total{stream="downstream"} "#,
        r#"ran_routing_stream_send_errors_total{stream="upstream"} "#,
        r#"ran_routing_stream_reconnections_total{stream="upstream"} "#,
        r#"ran_routing_stream_connected{stream="upstream"} "#,
        r#"ran_routing_stream_messages_waiting{stream="upstream"} "#,
        r#"ran_routing_stream_last_frame_timestamp_seconds{stream="upstream"} "#,
        "ran_routing_upstream_acks_sent_total ",
        r#"ran_routing_upstream_rejects_sent_total{code="MICFailed"} "#,
        r#"ran_routing_downstream_downlinks_sent_total{kind="unicast"} "#,
        "ran_routing_downstream_acks_received_total ",
        r#"ran_routing_downstream_results_received_total{code="GatewayNotFound"} "#,
        r#"ran_routing_rest_requests_total{operation="select",outcome="ok"} "#,
        "ran_routing_rest_request_duration_seconds",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let not_found = scrape("/nope");
    assert!(not_found.starts_with("HTTP/1.1 404 Not Found\r\n"));
}
