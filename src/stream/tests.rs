//! Engine tests against a minimal tungstenite server on loopback, each server scripted
//! for one behaviour. Typed end-to-end tests against the emulator live in `tests/`.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::connect::ConnectParams;
use super::*;
use crate::{DevEui, StreamErrorKind, TimeoutKind, UpstreamMessage, UpstreamReply};

type Up = Connection<UpstreamMessage, UpstreamReply>;

const WAIT: Duration = Duration::from_secs(10);

fn upstream_frame(id: u64) -> String {
    format!(
        r#"{{"ProtocolVersion":1,"TransactionID":{id},"DevEUIs":[{id}],"Radio":{{"Frequency":868100000,"LoRa":{{"Spreading":12,"Bandwidth":125000}},"RSSI":-52.0,"SNR":-3.0}},"PHYPayloadNoMIC":[64,184],"MICChallenge":[1,2]}}"#
    )
}

fn client_tls() -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(crate::rest::tls::ring_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

/// Client params for a test server on `port`.
fn params_for(port: u16, token: &str) -> ConnectParams {
    ConnectParams {
        url: format!("ws://127.0.0.1:{port}/stream/upstream/"),
        token: crate::AccessToken::new(token).unwrap(),
        tls: client_tls(),
        connect_timeout: WAIT,
        user_agent: "test".into(),
        max_frame_size: 64 * 1024,
    }
}

/// Records every connection event, for assertions after the fact.
fn recorder() -> (
    Arc<std::sync::Mutex<Vec<ConnectionEvent>>>,
    session::EventHandler,
) {
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let handler: session::EventHandler =
        Arc::new(move |e: &ConnectionEvent| sink.lock().unwrap().push(e.clone()));
    (events, handler)
}

/// Starts a one-connection server running `script`; returns the client's params.
fn serve<F, R>(script: F) -> (ConnectParams, thread::JoinHandle<R>)
where
    F: FnOnce(WebSocket<TcpStream>) -> R + Send + 'static,
    R: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let ws = tungstenite::accept(tcp).unwrap();
        script(ws)
    });
    (params_for(port, "t0ken"), server)
}

/// Options for a connection that ends at the first failure, as most tests here need.
fn once() -> StreamOptions {
    StreamOptions {
        reconnect: None,
        ..StreamOptions::default()
    }
}

fn open(params: &ConnectParams, capacity: usize) -> Up {
    let options = StreamOptions { capacity, ..once() };
    Up::open(params, "test-upstream", &options, None).unwrap()
}

/// Reads until the client's close frame, answering it.
fn read_until_close(ws: &mut WebSocket<TcpStream>) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => got.push(t.to_string()),
            Ok(Message::Close(_)) => {}
            Ok(_) => {}
            Err(_) => return got,
        }
    }
}

#[test]
fn receives_in_order_and_sends_acks() {
    let (params, server) = serve(|mut ws| {
        for id in 1..=200 {
            ws.send(Message::text(upstream_frame(id))).unwrap();
        }
        let got = read_until_close(&mut ws);
        assert_eq!(got.len(), 200);
        for (i, text) in got.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["TransactionID"], i as u64 + 1);
            assert_eq!(v["MIC"], 2);
        }
    });
    let up = open(&params, 8);
    for (i, msg) in up.iter().take(200).enumerate() {
        assert_eq!(msg.transaction_id, i as u64 + 1);
        assert_eq!(msg.dev_euis, vec![DevEui::new(i as u64 + 1)]);
        up.send(msg.ack(msg.dev_euis[0], msg.mic_challenge[1]))
            .unwrap();
    }
    up.close();
    assert_eq!(up.wait_closed(), CloseReason::Local);
    server.join().unwrap();
}

#[test]
fn invalid_message_is_refused_before_sending() {
    let (params, server) = serve(|mut ws| {
        assert!(read_until_close(&mut ws).is_empty());
    });
    let up = open(&params, 8);
    let err = up
        .send(crate::UpstreamAck::new(0, DevEui::new(1), 1))
        .unwrap_err();
    assert!(matches!(
        err,
        crate::Error::Invalid(crate::InvalidInput::TransactionId)
    ));
    assert!(err.nothing_sent());
    up.close();
    up.wait_closed();
    server.join().unwrap();
}

#[test]
fn garbage_between_good_frames_is_skipped() {
    let (params, server) = serve(|mut ws| {
        ws.send(Message::text(upstream_frame(1))).unwrap();
        ws.send(Message::text("{not json")).unwrap();
        ws.send(Message::text(r#"{"TransactionID": "x"}"#)).unwrap();
        ws.send(Message::binary(upstream_frame(2).into_bytes()))
            .unwrap();
        read_until_close(&mut ws);
    });
    let up = open(&params, 8);
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 1);
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 2);
    assert!(!up.is_closed());
    up.close();
    up.wait_closed();
    server.join().unwrap();
}

#[test]
fn close_wakes_a_blocked_consumer_quickly() {
    let (params, server) = serve(|mut ws| {
        read_until_close(&mut ws);
    });
    let up = Arc::new(open(&params, 8));
    let consumer = {
        let up = up.clone();
        thread::spawn(move || up.iter().count())
    };
    thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    up.close();
    assert_eq!(up.wait_closed(), CloseReason::Local);
    assert_eq!(consumer.join().unwrap(), 0);
    // Generous: the point is "no poll interval", not a benchmark.
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    server.join().unwrap();
}

#[test]
fn close_delivers_everything_already_received() {
    let (params, server) = serve(|mut ws| {
        for id in 1..=50 {
            ws.send(Message::text(upstream_frame(id))).unwrap();
        }
        read_until_close(&mut ws);
    });
    // Capacity 25: half of the 50 sit in the socket or the stash when we close, which
    // holds up to a channel's worth.
    let up = open(&params, 25);
    let first = up.recv_timeout(WAIT).unwrap();
    assert_eq!(first.transaction_id, 1);
    // Let the reader fill the channel and block on it.
    thread::sleep(Duration::from_millis(100));
    up.close();
    up.wait_closed();
    let rest: Vec<u64> = up.iter().map(|m| m.transaction_id).collect();
    assert_eq!(rest, (2..=50).collect::<Vec<_>>());
    assert!(matches!(
        up.send(first.ack(DevEui::new(1), 1)),
        Err(crate::Error::Closed(_))
    ));
    server.join().unwrap();
}

#[test]
fn server_close_surfaces_its_code_and_ends_iteration() {
    let (params, server) = serve(|mut ws| {
        ws.send(Message::text(upstream_frame(7))).unwrap();
        ws.close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: "go away".into(),
        }))
        .unwrap();
        read_until_close(&mut ws);
    });
    let up = open(&params, 8);
    let ids: Vec<u64> = up.iter().map(|m| m.transaction_id).collect();
    assert_eq!(ids, vec![7]);
    assert_eq!(
        up.wait_closed(),
        CloseReason::Remote {
            code: 1008,
            reason: "go away".into()
        }
    );
    assert!(up.is_closed());
    server.join().unwrap();
}

#[test]
fn dropped_tcp_is_an_error_reason() {
    let (params, server) = serve(|ws| {
        drop(ws);
    });
    let up = open(&params, 8);
    assert!(up.recv_timeout(WAIT).is_err());
    assert!(matches!(up.wait_closed(), CloseReason::Error(_)));
    server.join().unwrap();
}

#[test]
fn answers_server_pings() {
    let (params, server) = serve(|mut ws| {
        ws.send(Message::Ping(b"are you there".to_vec().into()))
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no pong");
            if let Message::Pong(data) = ws.read().unwrap() {
                assert_eq!(&data[..], b"are you there");
                break;
            }
        }
        read_until_close(&mut ws);
    });
    let up = open(&params, 8);
    // The server only finishes once it has its pong.
    thread::sleep(Duration::from_millis(100));
    up.close();
    up.wait_closed();
    server.join().unwrap();
}

#[test]
fn send_does_not_wait_behind_an_idle_reader() {
    let (params, server) = serve(|mut ws| {
        let got = read_until_close(&mut ws);
        assert_eq!(got.len(), 100);
    });
    let up = open(&params, 8);
    // The reader is parked on an idle socket the whole time.
    for id in 1..=100 {
        up.send(crate::UpstreamAck::new(id, DevEui::new(id), 1))
            .unwrap();
    }
    up.close();
    up.wait_closed();
    server.join().unwrap();
}

#[test]
fn frame_over_the_limit_ends_the_connection() {
    let (params, server) = serve(|mut ws| {
        ws.send(Message::text(upstream_frame(1))).unwrap();
        let _ = ws.send(Message::text("x".repeat(200 * 1024)));
        read_until_close(&mut ws);
    });
    let up = open(&params, 8);
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 1);
    assert!(up.recv_timeout(WAIT).is_err());
    assert!(matches!(up.wait_closed(), CloseReason::Error(_)));
    server.join().unwrap();
}

#[test]
#[allow(clippy::result_large_err)]
fn unauthorized_handshake_is_an_api_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let refuse = |_: &tungstenite::handshake::server::Request,
                      _: tungstenite::handshake::server::Response| {
            Err(http::Response::builder()
                .status(401)
                .body(Some(
                    r#"{"detail":{"error_code":"Unauthorized","error_description":"bad token"}}"#
                        .into(),
                ))
                .unwrap())
        };
        let _ = tungstenite::accept_hdr(tcp, refuse);
    });
    let mut params = ConnectParams {
        max_frame_size: 1024,
        ..params_for(port, "wrong-s3cret")
    };
    let err = Up::open(&params, "test", &once(), None).unwrap_err();
    assert!(
        matches!(err, crate::Error::Api(crate::ApiError::Unauthorized { .. })),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("wrong-s3cret"));
    server.join().unwrap();
    // Nobody listens now: a clear, fast I/O error.
    params.url = format!("ws://127.0.0.1:{port}/stream/upstream/");
    let err = Up::open(&params, "test", &once(), None).unwrap_err();
    assert!(matches!(err, crate::Error::Io(_)), "{err:?}");
}

/// A one-connection server that reads the request head and hands it to `script` with
/// the socket, for handshakes tungstenite's server would not produce.
fn raw_server<F>(connect_timeout: Duration, script: F) -> (ConnectParams, thread::JoinHandle<()>)
where
    F: FnOnce(TcpStream, String) + Send + 'static,
{
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        script(tcp, String::from_utf8(head).unwrap());
    });
    let params = ConnectParams {
        connect_timeout,
        ..params_for(port, "t0k/en")
    };
    (params, server)
}

fn accept_key(head: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    tungstenite::handshake::derive_accept_key(key.trim().as_bytes())
}

#[test]
fn handshake_carries_the_token_and_keeps_frames_sent_with_the_answer() {
    use std::io::Write;
    let (params, server) = raw_server(WAIT, |mut tcp, head| {
        assert!(
            head.starts_with("GET /stream/upstream/?access_token=t0k%2Fen HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nHost: {}\r\n", tcp.local_addr().unwrap())));
        assert!(head.contains("\r\nUser-Agent: test\r\n"), "{head}");
        // The answer and a first frame in one write: the frame must not be lost.
        let frame = upstream_frame(1);
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&head)
        )
        .into_bytes();
        out.extend_from_slice(&[0x81, 126, (frame.len() >> 8) as u8, frame.len() as u8]);
        out.extend_from_slice(frame.as_bytes());
        tcp.write_all(&out).unwrap();
        let mut ws = WebSocket::from_raw_socket(tcp, tungstenite::protocol::Role::Server, None);
        read_until_close(&mut ws);
    });
    let up = open(&params, 8);
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 1);
    up.close();
    assert_eq!(up.wait_closed(), CloseReason::Local);
    server.join().unwrap();
}

#[test]
fn handshake_answers_are_checked_and_bounded() {
    use std::io::Write;
    let open_err = |params: &ConnectParams| Up::open(params, "test", &once(), None).unwrap_err();
    // An upgrade accepted with the wrong key.
    let (params, server) = raw_server(WAIT, |mut tcp, _| {
        let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n";
        tcp.write_all(answer.as_bytes()).unwrap();
    });
    let err = open_err(&params);
    assert!(
        matches!(&err, crate::Error::WebSocket(e) if e.kind() == StreamErrorKind::Handshake),
        "{err:?}"
    );
    server.join().unwrap();

    // A plain HTTP answer with a body larger than the client keeps.
    let (params, server) = raw_server(WAIT, |mut tcp, _| {
        let body = "x".repeat(1024 * 1024);
        let answer = format!(
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(answer.as_bytes());
    });
    let err = open_err(&params);
    let crate::Error::Api(crate::ApiError::Unknown { status, .. }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*status, 502);
    assert!(err.to_string().len() < 16 * 1024);
    server.join().unwrap();

    // A response head that never ends.
    let (params, server) = raw_server(WAIT, |mut tcp, _| {
        let _ = tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\n");
        for _ in 0..2000 {
            if tcp
                .write_all(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaa\r\n")
                .is_err()
            {
                break;
            }
        }
    });
    let err = open_err(&params);
    assert!(
        matches!(&err, crate::Error::WebSocket(e) if e.kind() == StreamErrorKind::Handshake),
        "{err:?}"
    );
    server.join().unwrap();

    // A server that says nothing, and one that drips a byte at a time: both are bounded
    // by the connect timeout.
    let timeout = Duration::from_millis(300);
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let (params, server) = raw_server(timeout, move |_tcp, _| {
        let _ = released.recv_timeout(WAIT);
    });
    let started = Instant::now();
    let err = open_err(&params);
    assert!(matches!(err, crate::Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < WAIT);
    drop(release);
    server.join().unwrap();
    let (params, server) = raw_server(timeout, |mut tcp, _| {
        for b in b"HTTP/1.1 101 Switching Protocols\r\n"
            .iter()
            .cycle()
            .take(400)
        {
            if tcp.write_all(&[*b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    let started = Instant::now();
    let err = open_err(&params);
    assert!(matches!(err, crate::Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < WAIT);
    server.join().unwrap();
}

#[test]
fn a_tls_server_that_drips_bytes_cannot_stretch_the_handshake() {
    use std::io::Read;
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let _ = tcp.read(&mut [0u8; 4096]); // the ClientHello
                                            // A handshake record announcing 16000 bytes, then one byte at a time: rustls
                                            // keeps reading until the record is whole.
        let _ = tcp.write_all(&[0x16, 0x03, 0x03, 0x3e, 0x80]);
        let started = Instant::now();
        while started.elapsed() < WAIT / 2 {
            if tcp.write_all(&[0]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let params = ConnectParams {
        url: format!("wss://127.0.0.1:{port}/stream/upstream/"),
        connect_timeout: Duration::from_millis(300),
        ..params_for(port, "t")
    };
    let started = Instant::now();
    let err = Up::open(&params, "test", &once(), None).unwrap_err();
    assert!(matches!(err, crate::Error::Timeout { .. }), "{err:?}");
    // Bounded by the connect timeout, not by the server's five seconds of dripping.
    assert!(started.elapsed() < WAIT / 4, "{:?}", started.elapsed());
    server.join().unwrap();
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn open_close_cycles_leak_no_threads() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        for _ in 0..100 {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(WAIT)).unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            read_until_close(&mut ws);
        }
    });
    let params = ConnectParams {
        max_frame_size: 1024,
        ..params_for(port, "t")
    };
    let before = thread_count();
    for _ in 0..100 {
        let up = open(&params, 8);
        up.close();
        up.wait_closed();
    }
    server.join().unwrap();
    // Other tests run in parallel threads; only a leak of ~200 would show.
    let after = thread_count();
    assert!(
        after < before + 20,
        "threads before {before}, after {after}"
    );
}

#[test]
fn keepalive_detects_a_silent_peer() {
    let (params, server) = serve(|ws| {
        // Holds the connection open but never reads, so never answers a ping.
        thread::sleep(Duration::from_secs(3));
        drop(ws);
    });
    let options = StreamOptions {
        ping_interval: Some(Duration::from_millis(100)),
        pong_timeout: Duration::from_millis(200),
        ..once()
    };
    let up = Up::open(&params, "test-upstream", &options, None).unwrap();
    let reason = up
        .wait_closed_timeout(WAIT)
        .expect("dead peer not detected");
    let CloseReason::Error(why) = reason else {
        panic!("{reason:?}")
    };
    assert_eq!(why.kind(), StreamErrorKind::Timeout(TimeoutKind::Keepalive));
    assert!(why.to_string().contains("ping"), "{why}");
    server.join().unwrap();
}

#[test]
fn keepalive_keeps_a_live_peer() {
    let (params, server) = serve(|mut ws| {
        // tungstenite answers pings while reading.
        read_until_close(&mut ws);
    });
    let options = StreamOptions {
        ping_interval: Some(Duration::from_millis(50)),
        pong_timeout: Duration::from_millis(500),
        ..once()
    };
    let up = Up::open(&params, "test-upstream", &options, None).unwrap();
    thread::sleep(Duration::from_millis(600));
    assert!(!up.is_closed(), "{:?}", up.close_reason());
    up.close();
    assert_eq!(up.wait_closed(), CloseReason::Local);
    server.join().unwrap();
}

#[test]
fn reconnects_and_keeps_the_order_across_drops() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        for round in 0..3u64 {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(WAIT)).unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            for id in 1..=5 {
                ws.send(Message::text(upstream_frame(round * 5 + id)))
                    .unwrap();
            }
            if round < 2 {
                // An abrupt drop, as a restarting server does.
                drop(ws);
            } else {
                read_until_close(&mut ws);
            }
        }
    });
    let params = params_for(port, "t");
    let options = StreamOptions {
        capacity: 2,
        reconnect: Some(Reconnect {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..Reconnect::default()
        }),
        ..once()
    };
    let (events, handler) = recorder();
    let up = Up::open(&params, "test-upstream", &options, Some(handler)).unwrap();
    let ids: Vec<u64> = (0..15)
        .map(|_| up.recv_timeout(WAIT).unwrap().transaction_id)
        .collect();
    assert_eq!(ids, (1..=15).collect::<Vec<_>>());
    assert!(!up.is_closed());
    up.close();
    assert_eq!(up.wait_closed(), CloseReason::Local);
    server.join().unwrap();
    let events = events.lock().unwrap();
    let connects = events
        .iter()
        .filter(|e| **e == ConnectionEvent::Connected)
        .count();
    assert_eq!(connects, 3, "{events:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, ConnectionEvent::Disconnected(CloseReason::Error(_)))));
    assert!(events
        .iter()
        .any(|e| matches!(e, ConnectionEvent::Reconnecting { attempt: 1, .. })));
}

#[test]
fn a_server_that_drops_every_connection_at_once_is_retried_with_growing_delays() {
    const DROPS: usize = 6;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        for _ in 0..DROPS {
            let (tcp, _) = listener.accept().unwrap();
            // Accepted, then closed at once: an overloaded or misconfigured server.
            let mut ws = tungstenite::accept(tcp).unwrap();
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        // The last one stays up, so the client stops retrying.
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        read_until_close(&mut tungstenite::accept(tcp).unwrap());
    });
    let params = params_for(port, "t");
    let initial = Duration::from_millis(5);
    let options = StreamOptions {
        reconnect: Some(Reconnect {
            initial_delay: initial,
            max_delay: Duration::from_secs(2),
            ..Reconnect::default()
        }),
        ..once()
    };
    let (events, handler) = recorder();
    let up = Up::open(&params, "test-upstream", &options, Some(handler)).unwrap();
    let deadline = Instant::now() + WAIT;
    let connects = || {
        let events = events.lock().unwrap();
        events
            .iter()
            .filter(|e| **e == ConnectionEvent::Connected)
            .count()
    };
    while connects() < DROPS + 1 {
        assert!(Instant::now() < deadline, "{:?}", events.lock().unwrap());
        thread::sleep(Duration::from_millis(5));
    }
    up.close();
    up.wait_closed();
    server.join().unwrap();
    let delays: Vec<Duration> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ConnectionEvent::Reconnecting { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), DROPS, "{delays:?}");
    // With jitter a delay is half to all of its base, and the base doubles each time a
    // connection ends as soon as it opened: the sixth is at least 5 ms * 2^5 / 2.
    assert!(delays[DROPS - 1] >= initial * 16, "{delays:?}");
}

/// A server that accepts the first handshake, then answers each later one with
/// `refusals[i]`: `Some((status, body))` refuses it, `None` accepts it (and the server
/// then waits for the client's close). `release` holds the second handshake back until
/// the test lets it go.
fn refusing_server(
    refusals: Vec<Option<(u16, &'static str)>>,
    release: crossbeam_channel::Receiver<()>,
) -> (ConnectParams, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let ws = tungstenite::accept(tcp).unwrap();
        drop(ws);
        let _ = release.recv_timeout(WAIT);
        for answer in refusals {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(WAIT)).unwrap();
            match answer {
                Some((status, body)) => {
                    #[allow(clippy::result_large_err)]
                    let refuse =
                        move |_: &tungstenite::handshake::server::Request,
                              _: tungstenite::handshake::server::Response| {
                            Err(http::Response::builder()
                                .status(status)
                                .body(Some(body.to_owned()))
                                .unwrap())
                        };
                    let _ = tungstenite::accept_hdr(tcp, refuse);
                }
                None => {
                    let mut ws = tungstenite::accept(tcp).unwrap();
                    ws.send(Message::text(upstream_frame(7))).unwrap();
                    read_until_close(&mut ws);
                }
            }
        }
    });
    // A token that the refusal bodies do not spell (the client scrubs it from them).
    (params_for(port, "s3cr3t-t0ken"), server)
}

const API_REFUSAL: &str =
    r#"{"detail": {"error_code": "Unauthorized", "error_description": "bad token"}}"#;
const PROXY_PAGE: &str = "<html><body>403 Forbidden</body></html>";

fn fast_retries() -> StreamOptions {
    StreamOptions {
        reconnect: Some(Reconnect {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            ..Reconnect::default()
        }),
        ..once()
    }
}

#[test]
fn gives_up_when_the_api_refuses_the_token_and_fails_sends_meanwhile() {
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let (params, server) = refusing_server(vec![Some((401, API_REFUSAL))], release_rx);
    let (events, handler) = recorder();
    let up = Up::open(&params, "test-upstream", &fast_retries(), Some(handler)).unwrap();
    let deadline = Instant::now() + WAIT;
    while up.is_connected() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    let err = up
        .send(crate::UpstreamAck::new(1, DevEui::new(1), 1))
        .unwrap_err();
    assert!(matches!(err, crate::Error::NotConnected(_)), "{err:?}");
    assert!(err.nothing_sent());
    release_tx.send(()).unwrap();
    let reason = up
        .wait_closed_timeout(WAIT)
        .unwrap_or_else(|| panic!("never gave up: {:?}", events.lock().unwrap()));
    assert!(
        matches!(&reason, CloseReason::Error(why) if why.kind() == StreamErrorKind::TokenRefused
            && why.detail().contains("refused") && why.detail().contains("bad token")),
        "{reason:?}"
    );
    assert!(up.is_closed());
    assert!(up.recv_timeout(WAIT).is_err());
    // The API's own answer is final at once: no retry was reported as a refusal.
    let events = events.lock().unwrap();
    assert!(!events
        .iter()
        .any(|e| matches!(e, ConnectionEvent::Refused { .. })));
    assert!(matches!(events.last(), Some(ConnectionEvent::GaveUp(_))));
    server.join().unwrap();
}

#[test]
fn one_403_after_a_good_connection_does_not_end_the_stream() {
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    release_tx.send(()).unwrap();
    let (params, server) = refusing_server(vec![Some((403, PROXY_PAGE)), None], release_rx);
    let (events, handler) = recorder();
    let up = Up::open(&params, "test-upstream", &fast_retries(), Some(handler)).unwrap();
    // The message of the link after the refusal arrives: the stream went on.
    let message = up.recv_timeout(WAIT).expect("the stream ended at the 403");
    assert_eq!(message.transaction_id, 7);
    assert!(!up.is_closed(), "{:?}", up.close_reason());
    {
        let events = events.lock().unwrap();
        assert!(
            events.iter().any(|e| matches!(
                e,
                ConnectionEvent::Refused { refusals: 1, description } if description.contains("403")
            )),
            "{events:?}"
        );
        assert!(!events
            .iter()
            .any(|e| matches!(e, ConnectionEvent::GaveUp(_))));
    }
    up.close();
    assert_eq!(up.wait_closed(), CloseReason::Local);
    server.join().unwrap();
}

#[test]
fn refusals_in_a_row_end_the_stream_after_the_documented_number() {
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    release_tx.send(()).unwrap();
    let refusals = (0..Reconnect::MAX_REFUSALS)
        .map(|_| Some((401, PROXY_PAGE)))
        .collect();
    let (params, server) = refusing_server(refusals, release_rx);
    let (events, handler) = recorder();
    let up = Up::open(&params, "test-upstream", &fast_retries(), Some(handler)).unwrap();
    let reason = up.wait_closed_timeout(WAIT).expect("never gave up");
    assert!(
        matches!(&reason, CloseReason::Error(why) if why.kind() == StreamErrorKind::TokenRefused
            && why.detail().contains("in a row")),
        "{reason:?}"
    );
    let refused = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ConnectionEvent::Refused { .. }))
        .count();
    assert_eq!(refused as u32, Reconnect::MAX_REFUSALS - 1);
    server.join().unwrap();
}

type Down = Connection<crate::DownstreamReply, crate::DownstreamRequest>;

/// The downstream face of an engine connection, for its `send_and_wait` and tracker.
fn face(inner: Down) -> crate::DownstreamConnection {
    crate::DownstreamConnection { inner }
}

fn downlink(id: u64) -> crate::DownstreamMessage {
    let radio = crate::DownstreamRadio::new(868_300_000, crate::LoRaModulation::new(12, 125_000));
    crate::DownstreamMessage::new(
        id,
        DevEui::new(1),
        crate::TransmissionWindow::class_a(radio, 1),
        vec![1],
    )
}

#[test]
fn wait_timeout_reports_the_ack_and_a_late_result_goes_to_iter() {
    let (params, server) = serve(|mut ws| {
        // Ack the downlink at once, answer its result only after the caller gave up.
        let Message::Text(text) = ws.read().unwrap() else {
            panic!("expected a downlink")
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let id = v["TransactionID"].as_u64().unwrap();
        ws.send(Message::text(format!(
            r#"{{"ProtocolVersion":1,"TransactionID":{id},"MailboxID":3}}"#
        )))
        .unwrap();
        thread::sleep(Duration::from_millis(400));
        ws.send(Message::text(format!(
            r#"{{"ProtocolVersion":1,"TransactionID":{id},"ResultCode":"Success","ResultMessage":"ok","MailboxID":3}}"#
        )))
        .unwrap();
        read_until_close(&mut ws);
    });
    let down = face(Down::open(&params, "test-downstream", &once(), None).unwrap());
    let err = down
        .send_and_wait(downlink(77), Duration::from_millis(150))
        .unwrap_err();
    let crate::Error::DownstreamTimeout {
        transaction_id,
        ack,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(transaction_id, 77);
    assert_eq!(ack.map(|a| a.mailbox_id), Some(3));
    // Nobody waits any more: the late result is the iterator's, and nothing else is.
    let late = down.recv_timeout(WAIT).unwrap();
    assert!(matches!(late, crate::DownstreamReply::Result(ref r) if r.transaction_id == 77));
    assert!(down.try_recv().is_err());
    down.close();
    down.wait_closed();
    server.join().unwrap();
}

#[test]
fn waiters_fail_fast_when_the_connection_drops() {
    let (params, server) = serve(|mut ws| {
        let _ = ws.read();
        drop(ws);
    });
    let down = face(Down::open(&params, "test-downstream", &once(), None).unwrap());
    let start = Instant::now();
    let err = down.send_and_wait(downlink(5), WAIT).unwrap_err();
    // Written before the end: it may have gone out, so it must not read as unsent.
    assert!(
        matches!(
            err,
            crate::Error::DownstreamInterrupted {
                transaction_id: 5,
                ack: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.nothing_sent());
    assert!(start.elapsed() < WAIT / 2, "{:?}", start.elapsed());
    server.join().unwrap();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|n| n.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A hostile server: after the handshake it writes `prefix`, then `unit` over and over
/// as fast as the client takes it, until the test stops it; it drains whatever the
/// client sends so that the client's writes are never held back by TCP.
fn flood_server(
    prefix: &'static [u8],
    unit: &'static [u8],
) -> (
    ConnectParams,
    Arc<std::sync::atomic::AtomicBool>,
    thread::JoinHandle<()>,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let ws = tungstenite::accept(tcp).unwrap();
        let mut out = ws.get_ref().try_clone().unwrap();
        let mut drain = ws.get_ref().try_clone().unwrap();
        let drainer = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
        });
        // Whole units, written as one endless stream whatever each write takes.
        let units = (64 * 1024 / unit.len()).max(1);
        let chunk: Vec<u8> = unit.repeat(units);
        out.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let _ = out.write_all(prefix);
        let mut at = 0;
        while !stopped.load(Ordering::Relaxed) {
            match out.write(&chunk[at..]) {
                Ok(n) => at = (at + n) % chunk.len(),
                Err(e)
                    if super::socket::would_block(&e)
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        let _ = out.shutdown(std::net::Shutdown::Both);
        drainer.join().unwrap();
        drop(ws);
    });
    (params_for(port, "t"), stop, server)
}

struct FloodFigures {
    send: Duration,
    close: Duration,
    rss_growth_kib: u64,
    most_commands: usize,
}

/// Floods a connection with `unit` frames; measures a send with a 2 s write timeout,
/// then a close (or drop) with a 500 ms close timeout, and meanwhile the memory the
/// process grew and the writer's command queue.
fn flood_probe(prefix: &'static [u8], unit: &'static [u8], by_drop: bool) -> FloodFigures {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (params, stop, server) = flood_server(prefix, unit);
    let options = StreamOptions {
        capacity: 64,
        write_timeout: Duration::from_secs(2),
        close_timeout: Duration::from_millis(500),
        ping_interval: None,
        ..once()
    };
    let up = Arc::new(Up::open(&params, "test-flood", &options, None).unwrap());
    let (sampling, most_commands) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sampler = {
        let (up, sampling, most) = (up.clone(), sampling.clone(), most_commands.clone());
        thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(link) = up.session.link() {
                    most.fetch_max(link.queued_commands(), Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib();
    // Each step runs on a thread of its own and is given up on after 20 s, so that a
    // starved send or close fails the test instead of hanging it.
    let bounded = |what: &str, step: Box<dyn FnOnce() -> String + Send>| {
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let started = Instant::now();
        thread::spawn(move || {
            let _ = done_tx.send(step());
        });
        match done.recv_timeout(Duration::from_secs(20)) {
            Ok(outcome) => (started.elapsed(), outcome),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!("{what} did not finish within 20 s");
            }
        }
    };
    let sender = up.clone();
    let (send, sent) = bounded(
        "the send",
        Box::new(move || {
            format!(
                "{:?}",
                sender.send(crate::UpstreamAck::new(1, DevEui::new(1), 1))
            )
        }),
    );
    // Keep flooding a while longer, so that a queue that grows shows.
    thread::sleep(Duration::from_secs(1));
    let rss_growth_kib = rss_kib().saturating_sub(rss_before);
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let (close, closed) = if by_drop {
        let up = Arc::into_inner(up).unwrap();
        bounded(
            "the drop",
            Box::new(move || {
                drop(up);
                "dropped".to_owned()
            }),
        )
    } else {
        bounded(
            "the close",
            Box::new(move || {
                up.close();
                format!("{:?}", up.wait_closed())
            }),
        )
    };
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let figures = FloodFigures {
        send,
        close,
        rss_growth_kib,
        most_commands: most_commands.load(Ordering::Relaxed),
    };
    eprintln!(
        "flood {unit:02x?}: send {:?} ({sent}), {} {:?} ({closed}), RSS +{} KiB, most queued commands {}",
        figures.send,
        if by_drop { "drop" } else { "close" },
        figures.close,
        figures.rss_growth_kib,
        figures.most_commands,
    );
    assert_eq!(sent, "Ok(())");
    if !by_drop {
        assert_eq!(closed, format!("{:?}", CloseReason::Local));
    }
    figures
}

#[test]
fn a_ping_flood_does_not_starve_a_send_or_the_close() {
    let f = flood_probe(&[], &[0x89, 0x00], false);
    // Generous bounds: the write timeout is 2 s, the close timeout 500 ms; before the
    // fix the send took 40 s and the command queue grew by a flush per read pass.
    assert!(f.send < Duration::from_secs(6), "send took {:?}", f.send);
    assert!(
        f.close < Duration::from_secs(10),
        "close took {:?}",
        f.close
    );
    assert!(f.most_commands <= 2, "{} commands queued", f.most_commands);
}

#[test]
fn an_empty_continuation_flood_does_not_starve_a_send_or_the_drop() {
    // A text message that never ends: a first fragment, then empty continuations, which
    // tungstenite reads in a loop of its own without returning a message.
    let f = flood_probe(&[0x01, 0x00], &[0x00, 0x00], true);
    // In a debug build on a loaded machine one batch of 2-byte frames takes up to about
    // a second to parse; before the fix neither the send nor the drop ever finished.
    assert!(f.send < Duration::from_secs(6), "send took {:?}", f.send);
    assert!(f.close < Duration::from_secs(10), "drop took {:?}", f.close);
    assert!(f.most_commands <= 2, "{} commands queued", f.most_commands);
}

#[test]
fn closing_against_a_flood_keeps_a_bounded_stash_that_len_counts() {
    use std::sync::atomic::Ordering;
    // Valid uplinks, as fast as the client takes them.
    let frame = upstream_frame(9);
    let mut wire = vec![0x81, 126, (frame.len() >> 8) as u8, frame.len() as u8];
    wire.extend_from_slice(frame.as_bytes());
    let unit: &'static [u8] = Box::leak(wire.into_boxed_slice());
    let (params, stop, server) = flood_server(&[], unit);
    let capacity = 8;
    let options = StreamOptions {
        capacity,
        close_timeout: Duration::from_secs(5),
        ping_interval: None,
        ..once()
    };
    let up = Up::open(&params, "test-flood", &options, None).unwrap();
    // Nobody consumes: the channel fills and the reader waits for room.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(up.len(), capacity);
    let started = Instant::now();
    up.close();
    // The reader stops once a channel's worth is stashed, instead of reading the flood
    // for the whole close timeout.
    assert_eq!(up.wait_closed_timeout(WAIT), Some(CloseReason::Local));
    let closing = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let waiting = up.len();
    // The channel, a channel's worth of stash, the rest of the batch in hand, and what
    // tungstenite had already read off the socket (at most its read buffer).
    let already_read = super::connect::READ_BUFFER_SIZE / unit.len() + 1;
    assert!(
        waiting >= 2 * capacity && waiting <= 2 * capacity + read::READ_BATCH + already_read,
        "{waiting} messages kept"
    );
    // len() counts the stash: exactly what the receiving side still hands out.
    assert_eq!(up.iter().count(), waiting);
    // Done as soon as the stash is full, not after the close timeout.
    assert!(closing < Duration::from_secs(5), "{closing:?}");
}

#[test]
fn a_close_after_the_server_closed_keeps_the_servers_reason() {
    let (params, server) = serve(|mut ws| {
        ws.close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: "go away".into(),
        }))
        .unwrap();
        read_until_close(&mut ws);
    });
    let up = open(&params, 8);
    assert!(up.recv_timeout(WAIT).is_err());
    up.close();
    let remote = CloseReason::Remote {
        code: 1008,
        reason: "go away".into(),
    };
    assert_eq!(up.close_reason(), Some(remote.clone()));
    assert_eq!(up.wait_closed(), remote);
    server.join().unwrap();
}

#[test]
fn a_close_after_a_keepalive_timeout_keeps_the_timeout() {
    let (params, server) = serve(|ws| {
        // Never reads, so never answers a ping.
        thread::sleep(Duration::from_secs(2));
        drop(ws);
    });
    let options = StreamOptions {
        ping_interval: Some(Duration::from_millis(50)),
        pong_timeout: Duration::from_millis(100),
        ..once()
    };
    let up = Up::open(&params, "test-upstream", &options, None).unwrap();
    assert!(up.recv_timeout(WAIT).is_err());
    up.close();
    let reason = up.wait_closed();
    assert!(
        matches!(&reason, CloseReason::Error(why)
            if why.kind() == StreamErrorKind::Timeout(TimeoutKind::Keepalive)),
        "{reason:?}"
    );
    assert_eq!(up.close_reason(), Some(reason));
    server.join().unwrap();
}

#[test]
fn send_and_wait_hands_over_the_ack_when_the_connection_ends_after_it() {
    for reconnect in [false, true] {
        let (params, server) = serve(|mut ws| {
            let Message::Text(text) = ws.read().unwrap() else {
                panic!("expected a downlink")
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let id = v["TransactionID"].as_u64().unwrap();
            ws.send(Message::text(format!(
                r#"{{"ProtocolVersion":1,"TransactionID":{id},"MailboxID":3}}"#
            )))
            .unwrap();
            ws.close(None).unwrap();
            read_until_close(&mut ws);
        });
        let options = if reconnect {
            StreamOptions::default()
        } else {
            once()
        };
        let down = face(Down::open(&params, "test-downstream", &options, None).unwrap());
        let err = down.send_and_wait(downlink(41), WAIT).unwrap_err();
        let crate::Error::DownstreamInterrupted {
            transaction_id,
            ack,
            reason,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*transaction_id, 41);
        assert_eq!(ack.as_ref().map(|a| a.mailbox_id), Some(3), "{err}");
        assert!(
            matches!(**reason, CloseReason::Remote { code: 1005, .. }),
            "{reason}"
        );
        // A caller that retries on "nothing sent" must not resend this one.
        assert!(!err.nothing_sent());
        down.close();
        down.wait_closed();
        server.join().unwrap();
    }
}

#[test]
fn reconnection_is_on_by_default() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        for id in 1..=2 {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(WAIT)).unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            ws.send(Message::text(upstream_frame(id))).unwrap();
            if id == 1 {
                // A server close ends this link, not the connection.
                ws.close(None).unwrap();
            }
            read_until_close(&mut ws);
        }
    });
    let options = StreamOptions::default();
    assert!(options.reconnect.is_some());
    let up = Up::open(&params_for(port, "t"), "test-upstream", &options, None).unwrap();
    // The first retry waits 250-500 ms.
    let ids: Vec<u64> = up.iter().take(2).map(|m| m.transaction_id).collect();
    assert_eq!(ids, vec![1, 2]);
    up.close();
    assert_eq!(up.wait_closed(), CloseReason::Local);
    server.join().unwrap();
}

#[test]
fn order_holds_for_one_consumer_through_bursts_pauses_and_timeouts() {
    // Bursts and pauses on both sides: the channel runs empty and fills up many times.
    const N: u64 = 3000;
    let (params, server) = serve(|mut ws| {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut id = 1;
        while id <= N {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for _ in 0..(rng % 40) {
                if id > N {
                    break;
                }
                ws.send(Message::text(upstream_frame(id))).unwrap();
                id += 1;
            }
            if rng.is_multiple_of(3) {
                thread::sleep(Duration::from_micros(rng % 9_000));
            }
        }
        read_until_close(&mut ws);
    });
    let up = Arc::new(open(&params, 16));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut seen = Vec::with_capacity(N as usize);
    let mut tries = 0;
    while seen.len() < N as usize {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let message = match rng % 4 {
            0 => up.try_recv().ok(),
            1 => up.recv_timeout(Duration::from_micros(rng % 3_000)).ok(),
            _ => Some(up.recv_timeout(WAIT).unwrap()),
        };
        if let Some(m) = message {
            seen.push(m.transaction_id);
        }
        if rng.is_multiple_of(50) {
            // A busy consumer: the reader reads ahead meanwhile.
            thread::sleep(Duration::from_micros(rng % 4_000));
        }
        tries += 1;
        assert!(tries < 10 * N, "stalled at {}", seen.len());
    }
    let first_wrong = seen.iter().zip(1..).position(|(&got, want)| got != want);
    assert_eq!(
        first_wrong,
        None,
        "out of order from there: {:?}",
        seen.iter()
            .skip(first_wrong.unwrap_or(0))
            .take(8)
            .collect::<Vec<_>>()
    );
    assert!(up.stats().waiting == 0);
    up.close();
    up.wait_closed();
    server.join().unwrap();
}

/// A server that sends `n` numbered uplinks in bursts with pauses between, then waits for
/// the client's close.
fn numbered_bursts(n: u64) -> (ConnectParams, thread::JoinHandle<()>) {
    serve(move |mut ws| {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut id = 1;
        while id <= n {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for _ in 0..(rng % 64) {
                if id > n {
                    break;
                }
                ws.send(Message::text(upstream_frame(id))).unwrap();
                id += 1;
            }
            if rng.is_multiple_of(4) {
                thread::sleep(Duration::from_micros(rng % 3_000));
            }
        }
        read_until_close(&mut ws);
    })
}

#[test]
fn several_consumers_with_tiny_timeouts_each_see_an_increasing_subsequence() {
    const N: u64 = 6000;
    for consumers in [2u64, 3] {
        let (params, server) = numbered_bursts(N);
        let up = Arc::new(open(&params, 32));
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(60);
        let workers: Vec<_> = (0..consumers)
            .map(|k| {
                let (up, taken) = (up.clone(), taken.clone());
                thread::spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (k << 7);
                    let mut seen = Vec::new();
                    while taken.load(std::sync::atomic::Ordering::SeqCst) < N {
                        assert!(Instant::now() < deadline, "stalled");
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let got = match rng % 4 {
                            0 => up.try_recv().ok(),
                            1 => up.recv_timeout(Duration::from_micros(rng % 2_000)).ok(),
                            _ => up.recv_timeout(Duration::from_micros(50)).ok(),
                        };
                        if let Some(m) = got {
                            seen.push(m.transaction_id);
                            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        if rng.is_multiple_of(64) {
                            // Busy with a message now and then.
                            thread::sleep(Duration::from_micros(rng % 8_000));
                        }
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            let seen = worker.join().unwrap();
            let backwards = seen.windows(2).position(|w| w[0] >= w[1]);
            assert_eq!(
                backwards,
                None,
                "{consumers} consumers: out of order at {:?}",
                backwards.map(|i| &seen[i..seen.len().min(i + 4)])
            );
            all.extend(seen);
        }
        all.sort_unstable();
        assert_eq!(all, (1..=N).collect::<Vec<_>>(), "lost or duplicated");
        up.close();
        up.wait_closed();
        server.join().unwrap();
    }
}

#[test]
fn a_consumer_waiting_in_recv_gets_what_arrives_while_another_is_busy() {
    const ROUNDS: u64 = 3;
    let (go_tx, go) = crossbeam_channel::unbounded::<()>();
    let (params, server) = serve(move |mut ws| {
        for round in 0..ROUNDS {
            // One message for the first consumer, which then waits for the next one...
            go.recv_timeout(WAIT).unwrap();
            ws.send(Message::text(upstream_frame(3 * round + 1)))
                .unwrap();
            // ...then, with the second waiting too, two in one burst: whoever takes the
            // first goes busy with it, and the other must get the second.
            go.recv_timeout(WAIT).unwrap();
            ws.send(Message::text(upstream_frame(3 * round + 2)))
                .unwrap();
            ws.send(Message::text(upstream_frame(3 * round + 3)))
                .unwrap();
        }
        read_until_close(&mut ws);
    });
    let up = Arc::new(open(&params, 16));
    let busy = Duration::from_secs(3);
    for _ in 0..ROUNDS {
        let (got_tx, got) = crossbeam_channel::unbounded();
        let consume = |first: bool| {
            let (up, got_tx) = (up.clone(), got_tx.clone());
            thread::spawn(move || {
                if first {
                    up.recv_timeout(WAIT)
                        .expect("the first message did not come");
                }
                let message = up.recv_timeout(WAIT).expect("nothing came");
                got_tx
                    .send((message.transaction_id, Instant::now()))
                    .unwrap();
                // Busy with it, far longer than the other may wait.
                thread::sleep(busy);
            })
        };
        let first = consume(true);
        go_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(100));
        let second = consume(false);
        // Both are waiting in recv before the burst.
        thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        go_tx.send(()).unwrap();
        for _ in 0..2 {
            let (_, at) = got
                .recv_timeout(WAIT)
                .expect("a waiting consumer did not get a queued message");
            assert!(
                at.duration_since(sent) < busy / 2,
                "a consumer waited {:?} for a message that had arrived",
                at.duration_since(sent)
            );
        }
        first.join().unwrap();
        second.join().unwrap();
    }
    assert_eq!(up.len(), 0);
    up.close();
    up.wait_closed();
    server.join().unwrap();
}

#[test]
fn server_pings_are_answered_while_the_only_consumer_works_on_a_message() {
    let (params, server) = serve(|mut ws| {
        ws.send(Message::text(upstream_frame(1))).unwrap();
        // The consumer waits for the next message: two come in one burst, and it works on
        // the first.
        thread::sleep(Duration::from_millis(50));
        ws.write(Message::text(upstream_frame(2))).unwrap();
        ws.write(Message::text(upstream_frame(3))).unwrap();
        ws.flush().unwrap();
        thread::sleep(Duration::from_millis(150));
        let mut answered = Vec::new();
        for _ in 0..3 {
            let sent = Instant::now();
            ws.send(Message::Ping(b"are you there".to_vec().into()))
                .unwrap();
            // `None`: the client closed before it answered.
            let answer = match ws.read() {
                Ok(Message::Pong(_)) => Some(sent.elapsed()),
                _ => None,
            };
            answered.push(answer);
            if answer.is_none() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        read_until_close(&mut ws);
        answered
    });
    let up = open(&params, 16);
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 1);
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 2);
    thread::sleep(Duration::from_secs(1));
    up.close();
    up.wait_closed();
    let answered = server.join().unwrap();
    assert!(
        answered
            .iter()
            .all(|t| t.is_some_and(|t| t < Duration::from_millis(100))),
        "pings answered after {answered:?} while the consumer worked (None: never)"
    );
}

#[test]
fn tracked_downlinks_count_in_stats_like_plain_ones() {
    let (params, server) = serve(|mut ws| read_until_close(&mut ws).len());
    let down = face(Down::open(&params, "test-downstream", &once(), None).unwrap());
    down.send(downlink(1)).unwrap();
    let tracker = down.tracker::<u8>(Duration::from_secs(5));
    tracker.send(2, downlink(2));
    assert_eq!(tracker.in_flight(), 1);
    let stats = down.stats();
    assert_eq!(stats.downlinks_sent, 2, "{stats:?}");
    assert_eq!(stats.send_errors, 0);
    assert!(stats.bytes_sent > 0);
    down.close();
    down.wait_closed();
    assert_eq!(server.join().unwrap(), 2);
}

/// A state-machine check of delivery against a reference model: the steps the reader
/// threads of successive links, the owner's `close()` and a consumer take, in every order
/// proptest picks, on the real [`read::Outbox`] and [`Inbox`]. Each step here is one
/// critical section of the real threads (a channel operation, the stash's lock, dropping
/// the stop signal or a link's sender), so any interleaving of the threads is one of these
/// sequences. The model: what was delivered, in order, each handed out once; nothing
/// handed out from the stash before the channel is drained; the stash within a channel's
/// worth.
///
/// It fails on a deliberately broken variant: with `Inbox::after_channel` consulted before
/// the channel (the stash first), proptest finds a close after a full channel and reports
/// the ids out of order (checked once by hand when the test was written).
mod delivery_model {
    use super::read::{Outbox, Room};
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// The current link's reader delivers its next message (a full channel blocks it
        /// until a consumer takes, unless the owner closed: then it stashes).
        Read,
        /// A consumer takes what is waiting, if anything.
        Take,
        /// The owner closes: the reader stops waiting for room.
        Close,
        /// The link ends and, unless closed, the session opens the next one, whose reader
        /// delivers into the same channel.
        Reconnect,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => Just(Step::Read),
            4 => Just(Step::Take),
            1 => Just(Step::Close),
            1 => Just(Step::Reconnect),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn every_message_is_handed_out_once_in_order(
            capacity in 1usize..6,
            steps in proptest::collection::vec(step(), 1..120),
        ) {
            let (tx, rx) = crossbeam_channel::bounded(capacity);
            let stash = Arc::new(Mutex::new(VecDeque::new()));
            let room = Arc::new(Room::default());
            let inbox = Inbox { rx, stash: stash.clone(), room: room.clone(), released: None, _release: None };
            // The session's opener holds one sender, each link's reader another.
            let mut opener = Some(Outbox {
                tx,
                stash,
                room,
                screen: None,
            });
            let mut reader = opener.clone();
            let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
            let mut stop_tx = Some(stop_tx);
            let mut stopped = false;
            let (mut next, mut delivered, mut taken) = (0u64, VecDeque::new(), Vec::new());
            for step in steps {
                match step {
                    Step::Read => {
                        let Some(outbox) = &reader else { continue };
                        // The real reader blocks on a full channel until the owner closes
                        // (a consumer's take is another step), and stops reading once
                        // closing with a channel's worth stashed.
                        let full = inbox.rx.len() == capacity;
                        if (full && stop_tx.is_some()) || (stopped && outbox.stash_full()) {
                            continue;
                        }
                        next += 1;
                        prop_assert!(outbox.deliver(next, &stop, &mut stopped));
                        delivered.push_back(next);
                    }
                    Step::Take => match inbox.try_next() {
                        Ok(id) => {
                            prop_assert_eq!(Some(id), delivered.pop_front(), "out of order");
                            taken.push(id);
                        }
                        Err(TryRecvError::Empty) => {
                            // Only the stash may hold back, and only until the channel
                            // disconnects.
                            prop_assert_eq!(delivered.len(), crate::sync::lock(&inbox.stash).len());
                        }
                        Err(TryRecvError::Disconnected) => prop_assert!(delivered.is_empty()),
                    },
                    Step::Close => {
                        stop_tx = None;
                        // What the reader sees at its next look at the stop signal.
                        stopped = true;
                    }
                    Step::Reconnect => {
                        reader = if stop_tx.is_some() { opener.clone() } else { None };
                    }
                }
                prop_assert!(crate::sync::lock(&inbox.stash).len() <= capacity);
            }
            // The end: the owner closed, the reader ended, the opener is dropped.
            drop((reader, opener.take(), stop_tx));
            while let Ok(id) = inbox.try_next() {
                prop_assert_eq!(Some(id), delivered.pop_front(), "out of order at the end");
                taken.push(id);
            }
            prop_assert!(delivered.is_empty(), "lost: {:?}", delivered);
            prop_assert_eq!(taken, (1..=next).collect::<Vec<_>>());
        }
    }
}
