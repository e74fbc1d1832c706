//! Staying connected, shown against the emulator over real sockets: server restarts, a
//! peer that goes silent, disconnects with messages still buffered, a slow consumer under
//! keepalive, and hostile frames.

mod common;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::streams::*;
use ran_routing::RecvTimeoutError;
use ran_routing::*;
use ran_routing_emulator::{Emulator, RawFrame};

/// The memory test measures the whole process: it runs alone, the others together.
static MEMORY: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    MEMORY.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MEMORY.write().unwrap_or_else(|e| e.into_inner())
}

/// Receives until the connection ends; panics if it neither ends nor delivers within
/// [`WAIT`].
fn drain(up: &UpstreamConnection) -> Vec<u64> {
    let mut ids = Vec::new();
    loop {
        match up.recv_timeout(WAIT) {
            Ok(m) => ids.push(m.transaction_id),
            Err(RecvTimeoutError::Disconnected) => return ids,
            Err(RecvTimeoutError::Timeout) => panic!("still open after {ids:?}"),
        }
    }
}

fn expect_ids(up: &UpstreamConnection, ids: impl IntoIterator<Item = u64>) {
    for id in ids {
        match up.recv_timeout(WAIT) {
            Ok(m) => assert_eq!(m.transaction_id, id),
            Err(e) => panic!("waiting for {id}: {e:?}; closed: {:?}", up.close_reason()),
        }
    }
}

/// A new emulator on `addr` with `token`, as a restarted server. std sets SO_REUSEADDR
/// on Unix listeners, so the port's connections in TIME_WAIT do not stop the bind; the
/// retries cover another test taking the free port for a moment.
fn restart(addr: std::net::SocketAddr, token: &str) -> Emulator {
    let deadline = Instant::now() + WAIT;
    loop {
        match Emulator::builder().token(token).bind(addr).start() {
            Ok(emu) => return emu,
            Err(e) if Instant::now() < deadline => {
                eprintln!("rebinding {addr}: {e}; retrying");
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    }
}

#[test]
fn a_reconnecting_connection_survives_a_server_restart() {
    let _g = shared();
    let emu = Emulator::start().unwrap();
    let (addr, token) = (emu.local_addr(), emu.token().to_owned());
    let core = core(&emu);
    let events = Events::default();
    let up = core
        .upstream()
        .reconnect(fast_reconnect())
        .on_event(events.handler())
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    for id in 1..=5 {
        emu.send_upstream(&uplink(id)).unwrap();
    }
    for id in 1..=5 {
        assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, id);
        up.send_upstream_ack(id, DevEui::new(DEV_EUI), 7).unwrap();
    }
    for _ in 1..=5 {
        assert!(emu.wait_upstream_reply(WAIT).is_some());
    }

    // The server goes away, and stays away for several attempts.
    emu.shutdown();
    drop(emu);
    assert!(events.wait(1, |e| matches!(e, ConnectionEvent::Disconnected(_))));
    assert!(events.wait(3, |e| matches!(e, ConnectionEvent::Reconnecting { .. })));
    assert!(!up.is_connected());
    assert!(!up.is_closed(), "reconnecting is not closed");
    assert_eq!(up.close_reason(), None);
    let err = up
        .send_upstream_ack(5, DevEui::new(DEV_EUI), 7)
        .unwrap_err();
    assert!(matches!(err, Error::NotConnected(_)), "{err:?}");
    assert!(err.nothing_sent());

    let emu = restart(addr, &token);
    assert!(emu.wait_upstream_connections(1, WAIT));
    assert!(events.wait(2, |e| *e == ConnectionEvent::Connected));
    for id in 6..=10 {
        emu.send_upstream(&uplink(id)).unwrap();
    }
    for id in 6..=10 {
        assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, id);
        up.send_upstream_ack(id, DevEui::new(DEV_EUI), 7).unwrap();
    }
    for id in 6..=10 {
        let reply = emu
            .wait_upstream_reply(WAIT)
            .expect("ack after the restart");
        assert_eq!(reply.transaction_id(), id);
    }
    up.close();
    assert_eq!(up.wait_closed_timeout(WAIT), Some(CloseReason::Local));
    let events = events.all();
    assert_eq!(
        events.first(),
        Some(&ConnectionEvent::Connected),
        "{events:?}"
    );
    assert!(
        matches!(
            events.get(1),
            Some(ConnectionEvent::Disconnected(CloseReason::Error(_)))
        ),
        "{events:?}"
    );
}

#[test]
fn a_reconnecting_tls_connection_resumes_after_each_cut() {
    let _g = shared();
    let emu = Emulator::builder().tls(true).start().unwrap();
    let core = Core::builder(emu.token())
        .base_url(&emu.base_url())
        .add_root_certificate_pem(emu.certificate_pem().unwrap().as_bytes())
        .request_timeout(WAIT)
        .build()
        .unwrap();
    let up = core
        .upstream()
        .reconnect(fast_reconnect())
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    for round in 0..4u64 {
        emu.send_upstream(&uplink(round + 1)).unwrap();
        expect_ids(&up, [round + 1]);
        let opened = emu.stream_connections_opened();
        if round % 2 == 0 {
            emu.drop_stream_connections();
        } else {
            emu.close_stream_connections();
        }
        assert!(wait_replaced(&emu, opened), "round {round}");
    }
    emu.send_upstream(&uplink(5)).unwrap();
    expect_ids(&up, [5]);
}

#[test]
fn without_reconnection_a_server_restart_ends_the_connection_with_the_reason() {
    let _g = shared();
    // Cut without a close frame, as a crash or a network failure does.
    let emu = Emulator::start().unwrap();
    let core = core(&emu);
    let up = core.upstream().no_reconnect().connect().unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    for id in 1..=3 {
        emu.send_upstream(&uplink(id)).unwrap();
    }
    emu.shutdown();
    assert_eq!(drain(&up), vec![1, 2, 3]);
    let reason = up.wait_closed_timeout(WAIT).expect("the end is seen");
    assert!(matches!(reason, CloseReason::Error(_)), "{reason:?}");
    assert_eq!(up.close_reason(), Some(reason));
    assert!(up.is_closed());
    let err = up
        .send_upstream_ack(1, DevEui::new(DEV_EUI), 7)
        .unwrap_err();
    assert!(matches!(err, Error::Closed(_)), "{err:?}");

    // A graceful restart closes with a close frame, whose code is the reason.
    let emu = Emulator::start().unwrap();
    let core = common::core(&emu);
    let up = core.upstream().no_reconnect().connect().unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    emu.send_upstream(&uplink(1)).unwrap();
    emu.close_stream_connections();
    assert_eq!(drain(&up), vec![1]);
    let reason = up.wait_closed_timeout(WAIT).expect("the end is seen");
    assert!(matches!(reason, CloseReason::Remote { .. }), "{reason:?}");
}

#[test]
fn a_silent_peer_is_detected_within_ping_interval_plus_timeout() {
    let _g = shared();
    let (interval, timeout) = (Duration::from_millis(200), Duration::from_millis(400));
    let emu = Emulator::start().unwrap();
    let proxy = Proxy::start(emu.local_addr());
    let core = core_at(emu.token(), &proxy.base_url());
    let up = core
        .upstream()
        .no_reconnect()
        .keepalive(interval, timeout)
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    emu.send_upstream(&uplink(1)).unwrap();
    expect_ids(&up, [1]);
    // A live peer answers: several pings go by without a false alarm.
    thread::sleep(interval * 4);
    assert!(up.is_connected(), "{:?}", up.close_reason());

    proxy.freeze();
    let frozen_at = Instant::now();
    let reason = up
        .wait_closed_timeout(WAIT)
        .expect("the silent peer was never detected");
    let took = frozen_at.elapsed();
    let CloseReason::Error(why) = &reason else {
        panic!("{reason:?}")
    };
    assert_eq!(why.kind(), StreamErrorKind::Timeout(TimeoutKind::Keepalive));
    assert!(why.to_string().contains("ping"), "{why}");
    eprintln!("silent peer detected {took:?} after it went silent (interval {interval:?} + timeout {timeout:?})");
    // Due within interval + timeout; the slack only absorbs a loaded machine's
    // scheduling, it does not make the bound meaningless.
    assert!(
        took < interval + timeout + Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn a_reconnecting_connection_replaces_a_silent_peer_and_keeps_delivering() {
    let _g = shared();
    // The server pings too, so it also forgets the dead connection, as the service does.
    let emu = Emulator::builder()
        .ping_interval(Duration::from_millis(300))
        .pong_timeout(Duration::from_millis(600))
        .start()
        .unwrap();
    let proxy = Proxy::start(emu.local_addr());
    let core = core_at(emu.token(), &proxy.base_url());
    let events = Events::default();
    let up = core
        .upstream()
        .keepalive(Duration::from_millis(200), Duration::from_millis(400))
        .reconnect(fast_reconnect())
        .on_event(events.handler())
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    emu.send_upstream(&uplink(1)).unwrap();
    expect_ids(&up, [1]);
    let opened = emu.stream_connections_opened();

    proxy.freeze();
    assert!(events.wait(1, |e| matches!(
        e,
        ConnectionEvent::Disconnected(CloseReason::Error(why))
            if why.kind() == StreamErrorKind::Timeout(TimeoutKind::Keepalive)
    )));
    assert!(wait_replaced(&emu, opened), "{:?}", events.all());
    for id in 2..=4 {
        emu.send_upstream(&uplink(id)).unwrap();
    }
    expect_ids(&up, 2..=4);
    assert!(up.is_connected());
}

#[test]
fn messages_read_before_a_disconnect_are_all_delivered() {
    let _g = shared();
    for reconnect in [false, true] {
        let emu = Emulator::start().unwrap();
        let core = core(&emu);
        let events = Events::default();
        let mut builder = core.upstream().capacity(4).on_event(events.handler());
        builder = if reconnect {
            builder.reconnect(fast_reconnect())
        } else {
            builder.no_reconnect()
        };
        let up = builder.connect().unwrap();
        assert!(emu.wait_upstream_connections(1, WAIT));
        // Each send returns once written to the socket: all 200 are on their way, most
        // of them waiting in the socket buffers while the consumer is busy.
        for id in 1..=200 {
            emu.send_upstream(&uplink(id)).unwrap();
        }
        let opened = emu.stream_connections_opened();
        emu.drop_stream_connections();
        thread::sleep(Duration::from_millis(100));
        for id in 1..=200 {
            let m = up.recv_timeout(WAIT).unwrap_or_else(|e| {
                panic!(
                    "reconnect {reconnect}: {id} lost ({e:?}); {:?}",
                    events.all()
                )
            });
            assert_eq!(m.transaction_id, id, "reconnect {reconnect}");
            if id % 50 == 0 {
                thread::sleep(Duration::from_millis(20));
            }
        }
        assert!(events.wait(1, |e| matches!(e, ConnectionEvent::Disconnected(_))));
        if reconnect {
            assert!(wait_replaced(&emu, opened));
            for id in 201..=205 {
                emu.send_upstream(&uplink(id)).unwrap();
            }
            expect_ids(&up, 201..=205);
        } else {
            assert_eq!(drain(&up), Vec::<u64>::new());
            assert!(matches!(up.wait_closed(), CloseReason::Error(_)));
        }
    }
}

#[test]
fn a_slow_consumer_is_not_mistaken_for_a_dead_peer() {
    let _g = shared();
    let emu = Emulator::start().unwrap();
    let core = core(&emu);
    let events = Events::default();
    let (interval, timeout) = (Duration::from_millis(100), Duration::from_millis(200));
    let up = core
        .upstream()
        .capacity(2)
        .keepalive(interval, timeout)
        .on_event(events.handler())
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    for id in 1..=100 {
        emu.send_upstream(&uplink(id)).unwrap();
    }
    // Busy for far longer than interval + timeout: backpressure holds the reader, so
    // pongs wait unread in the socket like everything else. That is not a dead peer.
    thread::sleep((interval + timeout) * 5);
    expect_ids(&up, 1..=100);
    assert_eq!(events.disconnects(), 0, "{:?}", events.all());
    assert!(up.is_connected(), "{:?}", up.close_reason());
    // And keepalive still works afterwards.
    thread::sleep((interval + timeout) * 2);
    assert!(up.is_connected(), "{:?}", up.close_reason());
}

/// Hostile frames, each with whether it must end the connection: invalid UTF-8 in a text
/// frame fails the WebSocket by RFC 6455 and a frame over the size limit is refused
/// before it is buffered; everything else is logged and skipped.
fn hostile_frames() -> Vec<(&'static str, RawFrame, bool)> {
    let good = serde_json::to_string(&uplink(1)).unwrap();
    let with_id = |id: &str| {
        RawFrame::Text(
            good.replacen("\"TransactionID\":1", &format!("\"TransactionID\":{id}"), 1)
                .into_bytes(),
        )
    };
    assert!(good.contains("\"TransactionID\":1"));
    let mut noise = Vec::with_capacity(64 * 1024);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..64 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push(x as u8);
    }
    let mut ten_mb = b"{\"ProtocolVersion\":1,\"Junk\":\"".to_vec();
    ten_mb.resize(10 * 1024 * 1024, b'x');
    ten_mb.extend_from_slice(b"\"}");
    let mut under_limit = b"[".to_vec();
    under_limit.resize(1000 * 1024, b' ');
    under_limit.push(b']');
    vec![
        (
            "invalid UTF-8",
            RawFrame::Text(b"{\"ProtocolVersion\":1,\"x\":\"\xff\xfe\xc0\"}".to_vec()),
            true,
        ),
        (
            "truncated JSON",
            RawFrame::Text(good.as_bytes()[..good.len() / 2].to_vec()),
            false,
        ),
        (
            "wrong types",
            RawFrame::Text(
                br#"{"ProtocolVersion":"1","TransactionID":"7","DevEUIs":{},"Radio":[],
                    "PHYPayloadNoMIC":"x","MICChallenge":null}"#
                    .to_vec(),
            ),
            false,
        ),
        ("id over u64", with_id("18446744073709551616"), false),
        ("negative id", with_id("-1"), false),
        ("id 1e400", with_id("1e400"), false),
        ("id of 100k digits", with_id(&"9".repeat(100_000)), false),
        ("empty", RawFrame::Text(Vec::new()), false),
        ("null", RawFrame::Text(b"null".to_vec()), false),
        (
            "100k nested arrays",
            RawFrame::Text("[".repeat(100_000).into_bytes()),
            false,
        ),
        (
            "100k nested objects",
            RawFrame::Text("{\"a\":".repeat(100_000).into_bytes()),
            false,
        ),
        ("binary garbage", RawFrame::Binary(noise), false),
        (
            "just under the size limit",
            RawFrame::Text(under_limit),
            false,
        ),
        ("10 MB", RawFrame::Text(ten_mb), true),
    ]
}

/// Sends every hostile frame between two good uplinks; both good ones must come out, in
/// order, and the connection must survive or be replaced. Returns the next free id.
fn hostile_round(emu: &Emulator, up: &UpstreamConnection, events: &Events, mut id: u64) -> u64 {
    for (name, frame, ends) in hostile_frames() {
        let opened = emu.stream_connections_opened();
        let connects = events.connects();
        emu.send_upstream(&uplink(id)).unwrap();
        // A frame that kills the connection may fail to be written: that is expected.
        let _ = emu.send_upstream_frame(frame);
        if ends {
            assert!(wait_replaced(emu, opened), "{name}: {:?}", events.all());
        }
        emu.send_upstream(&uplink(id + 1)).unwrap();
        for want in [id, id + 1] {
            match up.recv_timeout(WAIT) {
                Ok(m) => assert_eq!(m.transaction_id, want, "{name}"),
                Err(e) => panic!("{name}: {want} not delivered: {e:?}; {:?}", events.all()),
            }
        }
        if ends {
            // The server may see the new connection before the client reports it.
            assert!(eventually(WAIT, || events.connects() > connects), "{name}");
        } else {
            assert_eq!(events.connects(), connects, "{name} ended the connection");
            assert!(up.is_connected(), "{name}: {:?}", up.close_reason());
        }
        id += 2;
    }
    id
}

fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn hostile_frames_neither_crash_hang_nor_grow_memory() {
    let _g = exclusive();
    return_large_buffers_to_the_os();
    let emu = Emulator::start().unwrap();
    let core = core(&emu);
    let events = Events::default();
    let up = core
        .upstream()
        .reconnect(fast_reconnect())
        .on_event(events.handler())
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    // One round first, so allocator pools and lazily started pieces are in place.
    let mut id = hostile_round(&emu, &up, &events, 1);
    let (rss_before, threads_before) = (rss_kib(), threads());
    const ROUNDS: usize = 8;
    for _ in 0..ROUNDS {
        id = hostile_round(&emu, &up, &events, id);
    }
    let (rss_after, threads_after) = (rss_kib(), threads());
    eprintln!(
        "hostile frames: {ROUNDS} rounds, RSS {rss_before:?} -> {rss_after:?} KiB, \
         threads {threads_before:?} -> {threads_after:?}, {} reconnects",
        events.connects() - 1
    );
    // Each round sends a 10 MB and a 1 MB frame and reconnects twice; RSS stays within
    // about 1 MB over 30 rounds here. A leak of the big frame would add 80 MB.
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        assert!(
            after < before + 16 * 1024,
            "RSS grew from {before} KiB to {after} KiB"
        );
    }
    if let (Some(before), Some(after)) = (threads_before, threads_after) {
        assert!(after <= before + 4, "threads {before} -> {after}");
    }
    up.close();
    assert_eq!(up.wait_closed_timeout(WAIT), Some(CloseReason::Local));
}

#[test]
fn reconnecting_many_times_leaks_neither_memory_nor_threads() {
    let _g = exclusive();
    return_large_buffers_to_the_os();
    let emu = Emulator::start().unwrap();
    let core = core(&emu);
    let up = core
        .upstream()
        .reconnect(fast_reconnect().max_delay(Duration::from_millis(1)))
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    let cut = |times: usize| {
        for _ in 0..times {
            let opened = emu.stream_connections_opened();
            emu.drop_stream_connections();
            assert!(wait_replaced(&emu, opened));
        }
    };
    cut(50);
    let (rss_before, threads_before) = (rss_kib(), threads());
    cut(300);
    let (rss_after, threads_after) = (rss_kib(), threads());
    // 1500 reconnections here kept RSS within 0.1 MB; a few KiB a reconnection would
    // show.
    eprintln!(
        "300 reconnections: RSS {rss_before:?} -> {rss_after:?} KiB, \
         threads {threads_before:?} -> {threads_after:?}"
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        assert!(after < before + 2 * 1024, "RSS {before} -> {after} KiB");
    }
    if let (Some(before), Some(after)) = (threads_before, threads_after) {
        assert!(after <= before + 2, "threads {before} -> {after}");
    }
    emu.send_upstream(&uplink(1)).unwrap();
    expect_ids(&up, [1]);
}
