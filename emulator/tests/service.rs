//! The emulator as a network service facing hostile or careless peers over real
//! sockets: clients that never read their answers, answers too large to hold, records
//! and warnings a peer can multiply, and a WebSocket peer that sends frames that never
//! complete a message. Each bound is set small on the builder so the tests run in
//! seconds; the defaults are documented on the builder.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ran_routing_emulator::Emulator;
use serde_json::{json, Value};
use support::*;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

/// A request on a fresh connection; the status, or `None` if no answer came in `wait`.
fn status_of(addr: SocketAddr, request: &str, wait: Duration) -> Option<u16> {
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    tcp.set_read_timeout(Some(wait)).unwrap();
    tcp.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn control_get(addr: SocketAddr, path: &str) -> String {
    format!("GET /emulator/{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// Fills the routing table with devices carrying `details_bytes` of `Details` each.
fn fill_table(emu: &Emulator, devices: u64, details_bytes: usize) {
    let api = Api::new(emu);
    let details = serde_json::to_string(&json!({ "pad": "x".repeat(details_bytes) })).unwrap();
    for i in 0..devices {
        let row = json!({
            "DevEUI": format!("{:016x}", 0x7abe_0000_0000_0000u64 + i),
            "JoinEUI": "3cedcf624f8b68f4",
            "Details": details,
        });
        let (status, body) = api.post("devices/insert", row);
        assert_eq!(status, 200, "{body}");
    }
}

/// A client that pipelines requests for a large answer and never reads a byte.
fn never_reads(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Ok(mut tcp) = TcpStream::connect_timeout(&addr, TIMEOUT) else {
            return;
        };
        tcp.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let request = control_get(addr, "devices").replace("Connection: close\r\n", "");
        // Whole requests only: a request cut by a timed-out write and sent again from
        // its start would be malformed, and answered 400 and closed.
        let mut left: &[u8] = request.as_bytes();
        while !stop.load(Ordering::SeqCst) {
            if left.is_empty() {
                left = request.as_bytes();
            }
            match tcp.write(left) {
                Ok(n) => left = &left[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    })
}

/// Clients that pipeline requests and never read their answers take every slot. Each
/// response has a deadline for its whole write (not a timeout per blocked write, which
/// a client that never reads stretches to the idle timeout): the hogs are cut at it, and
/// a legitimate client, refused 503 meanwhile, is served again within about it.
#[test]
fn clients_that_never_read_hold_no_slot_past_the_write_deadline() {
    let slots = 4;
    let emu = Emulator::builder()
        .max_connections(slots)
        .write_timeout(Duration::from_millis(1000))
        .start()
        .unwrap();
    // 40 devices of 8 KiB: a 330 KB answer, more than loopback buffers take for long.
    fill_table(&emu, 40, 8 * 1024);
    // The filling client's kept-alive connection is gone before the hogs come.
    assert!(eventually(|| emu.open_connections() == 0));
    let addr = emu.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..slots)
        .map(|_| never_reads(addr, stop.clone()))
        .collect();
    assert!(
        eventually(|| emu.open_connections() == slots),
        "{}",
        emu.open_connections()
    );
    // Every slot is held: a legitimate client is refused at once, then served.
    let began = Instant::now();
    let mut refused = 0;
    let served = loop {
        match status_of(addr, &control_get(addr, "status"), TIMEOUT) {
            Some(200) => break Some(began.elapsed()),
            Some(503) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
        if began.elapsed() > Duration::from_secs(10) {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::SeqCst);
    for hog in hogs {
        hog.join().unwrap();
    }
    let served = served.expect("never served while the slow readers ran");
    assert!(refused > 0, "the slow readers never held every slot");
    let status = ran_routing_emulator::ControlClient::new(emu.control_url())
        .status()
        .unwrap();
    assert_eq!(status.refused_connections, refused);
    // Cut at the 1 s write deadline, once their answers filled the socket buffers.
    assert!(served < Duration::from_secs(8), "served after {served:?}");
}

/// Every answer has a size cap, the control API's lists included (a large table or
/// record would otherwise be pinned whole in memory while written), and every list
/// pages with `offset` and `limit` to get under it.
#[test]
fn every_list_answer_is_capped_and_pages() {
    let emu = Emulator::builder()
        .max_response_size(64 * 1024)
        .lenient()
        .start()
        .unwrap();
    fill_table(&emu, 20, 8 * 1024);
    let control = Control::new(&emu);
    let (status, body) = control.get("devices");
    assert_error(&(status, body), 400, "Emulator.ResponseTooLarge");
    let (status, page) = control.get("devices?offset=5&limit=3");
    assert_eq!(status, 200);
    let page = page.as_array().unwrap().clone();
    assert_eq!(page.len(), 3);
    assert_eq!(page[0]["DevEUI"], "7abe000000000005");
    let (status, body) = control.get("devices?limit=x");
    assert_error(&(status, body), 422, "ValidationFailed");

    // Downlinks received and upstream replies: large frames, the same cap.
    let mut down = connect(&emu, "downstream");
    for i in 0..20u64 {
        let mut frame = downstream_frame(100 + i, 0x7abe_0000_0000_0000);
        frame["PHYPayload"] = json!(vec![7u8; 2000]);
        send_json(&mut down, frame);
        next_json(&mut down);
    }
    assert!(eventually(|| emu.downstream_received().len() == 20));
    let (status, body) = control.get("downstream/received");
    assert_error(&(status, body), 400, "Emulator.ResponseTooLarge");
    let (status, page) = control.get("downstream/received?offset=18");
    assert_eq!(status, 200);
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["TransactionID"], 118);
    let (status, page) = control.get("upstream/replies");
    assert_eq!((status, page), (200, json!([])));

    // The REST select shares the cap.
    let api = Api::new(&emu);
    let (status, body) = api.get("devices/select", &[]);
    assert_error(&(status, body), 400, "Emulator.ResponseTooLarge");
}

/// The records of replies and downlinks keep the newest frames, drop the oldest and
/// count them, so memory stays bounded however long a test or a peer runs (1000 large
/// downlinks alone are tens of MiB).
#[test]
fn records_keep_the_newest_and_count_the_dropped() {
    let emu = Emulator::builder()
        .max_records(10)
        .lenient()
        .start()
        .unwrap();
    let mut up = connect(&emu, "upstream");
    let mut down = connect(&emu, "downstream");
    let batch: Vec<_> = (1..=25u64)
        .map(|i| serde_json::from_value(upstream_frame(i)).unwrap())
        .collect();
    emu.send_upstreams(&batch).unwrap();
    for i in 1..=25u64 {
        let got = next_json(&mut up);
        assert_eq!(got["TransactionID"], i, "in order, on one connection");
        send_json(
            &mut up,
            json!({"ProtocolVersion": 1, "TransactionID": i,
                   "DevEUI": 8844537008791951183u64, "MIC": 1308830714u32}),
        );
        send_json(&mut down, downstream_frame(1000 + i, 0x7abe_0000_0000_0000));
        next_json(&mut down);
    }
    assert!(eventually(|| emu.records_dropped() == 30));
    let replies = emu.upstream_replies();
    assert_eq!(replies.len(), 10);
    assert_eq!(replies[0].transaction_id(), 16);
    let received = emu.downstream_received();
    assert_eq!(received.len(), 10);
    assert_eq!(received[9].transaction_id(), 1025);
    let status = ran_routing_emulator::ControlClient::new(emu.control_url())
        .status()
        .unwrap();
    assert_eq!(status.records_dropped, 30);
    assert_eq!(status.connection_slots, emu.connection_slots());
}

/// Counts the warn lines this test binary logs that contain a marker.
struct WarnCounter;

static NEVER_SENT_WARNINGS: AtomicUsize = AtomicUsize::new(0);

impl log::Log for WarnCounter {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if record.level() == log::Level::Warn
            && record
                .args()
                .to_string()
                .contains("which the emulator never sent")
        {
            NEVER_SENT_WARNINGS.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn flush(&self) {}
}

/// A peer can send replies to unknown transactions at will: the warning is logged at
/// most once a second, saying how many it stands for, not once per reply.
#[test]
fn repeated_warnings_are_rate_limited() {
    static LOGGER: WarnCounter = WarnCounter;
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let emu = Emulator::start().unwrap();
    let mut up = connect(&emu, "upstream");
    let began = Instant::now();
    for i in 0..2000u64 {
        send_json(
            &mut up,
            json!({"ProtocolVersion": 1, "TransactionID": 1_000_000 + i,
                   "ResultCode": "MICFailed"}),
        );
    }
    assert!(eventually(|| emu.upstream_replies().len() == 2000));
    let lines = NEVER_SENT_WARNINGS.load(Ordering::SeqCst);
    let seconds = began.elapsed().as_secs() as usize;
    assert!(
        (1..=seconds + 1).contains(&lines),
        "{lines} warn lines for 2000 unknown replies in {seconds} s"
    );
}

/// A WebSocket peer sending endless empty continuation frames would keep one `read`
/// call of its connection's thread busy for good (tungstenite reads frames until a
/// message completes): past a bounded number of bytes without a message, the
/// connection is closed.
#[test]
fn endless_empty_continuation_frames_close_the_connection() {
    let emu = Emulator::start().unwrap();
    let mut ws = connect(&emu, "upstream");
    set_write_timeout(&ws, Some(Duration::from_millis(200)));
    let start = Frame::message(b"{".to_vec(), OpCode::Data(Data::Text), false);
    ws.write(Message::Frame(start)).unwrap();
    let began = Instant::now();
    let mut closed = false;
    while began.elapsed() < Duration::from_secs(30) {
        // Many frames a write call, so the flood is as fast as the server can read.
        let mut sent = Ok(());
        for _ in 0..1000 {
            let empty = Frame::message(Vec::new(), OpCode::Data(Data::Continue), false);
            sent = ws.write(Message::Frame(empty));
            if sent.is_err() {
                break;
            }
        }
        let sent = sent.and_then(|()| ws.flush());
        if let Err(e) = sent {
            if !matches!(&e, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.kind() == std::io::ErrorKind::TimedOut)
            {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "still open after {:?}", began.elapsed());
    // 2 MiB of flood: milliseconds in a release build, seconds in a debug one.
    assert!(eventually(|| emu.upstream_connections() == 0));
    let mut again = connect(&emu, "upstream");
    emu.send_upstream(&serde_json::from_value(upstream_frame(7)).unwrap())
        .unwrap();
    let got: Value = next_json(&mut again);
    assert_eq!(got["TransactionID"], 7);
}
