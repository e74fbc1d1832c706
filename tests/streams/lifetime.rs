//! What a connection's life depends on: not on the `Core` value it was opened from (only
//! on `Core::close` or its own `close`), and, when asked, not on the service being up at
//! the first `connect()`.

use crate::common::streams::{core_at, eventually, fast_reconnect, uplink, Events, WAIT};
use crate::common::{self};

use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use ran_routing::{ApiError, ConnectionEvent, ConnectionState, Core, Error, Reconnect};
use ran_routing_emulator::Emulator;

#[test]
fn a_connection_outlives_the_core_it_was_opened_from() {
    let emu = common::emulator();
    // The temporary Core is dropped at the end of the statement.
    let up = Core::new(emu.token(), &emu.base_url())
        .unwrap()
        .upstream()
        .reconnect(fast_reconnect())
        .connect()
        .unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    emu.send_upstream(&uplink(1)).unwrap();
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 1);
    assert!(!up.is_closed());
    assert_eq!(up.close_reason(), None);
    // It keeps what reconnecting needs.
    let opened = emu.stream_connections_opened();
    emu.drop_stream_connections();
    assert!(eventually(WAIT, || emu.stream_connections_opened()
        > opened
        && emu.upstream_connections() == 1));
    emu.send_upstream(&uplink(2)).unwrap();
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 2);
    // Its own close still closes it.
    up.close();
    assert!(up.is_closed());
    assert!(eventually(WAIT, || emu.upstream_connections() == 0));
}

#[test]
fn core_close_still_closes_every_connection_of_every_clone() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let down = core.clone().downstream().connect().unwrap();
    let up = core.upstream().connect().unwrap();
    let keeper = core.clone();
    drop(core);
    assert!(!up.is_closed() && !down.is_closed());
    keeper.close();
    assert!(up.is_closed() && down.is_closed());
    assert!(up.iter().next().is_none());
}

/// A loopback address where nothing listens yet.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn the_first_connect_fails_at_once_unless_told_to_retry() {
    let addr = free_addr();
    let core = core_at("token", &format!("http://{addr}/api/v1"));
    let started = Instant::now();
    let err = core.upstream().connect().unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Retrying: the emulator comes up on that address after a while.
    let events = Events::default();
    let connecting = {
        let core = core.clone();
        let handler = events.handler();
        thread::spawn(move || {
            core.upstream()
                .reconnect(fast_reconnect())
                .retry_first_connect()
                .on_event(handler)
                .connect()
        })
    };
    assert!(events.wait(2, |e| matches!(e, ConnectionEvent::Reconnecting { .. })));
    let health = core.health();
    assert!(
        matches!(
            health.connections[..],
            [ref c] if matches!(c.state, ConnectionState::Reconnecting { attempt } if attempt >= 2)
        ),
        "{health:?}"
    );
    let emu = Emulator::builder()
        .bind(addr)
        .token("token")
        .start()
        .unwrap();
    let up = connecting.join().unwrap().unwrap();
    assert_eq!(events.connects(), 1);
    assert!(emu.wait_upstream_connections(1, WAIT));
    emu.send_upstream(&uplink(7)).unwrap();
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 7);
    assert!(core.health().is_ready());
}

#[test]
fn a_retried_first_connect_ends_with_the_policy_the_token_or_the_core() {
    // The attempts run out: the last error.
    let addr = free_addr();
    let core = core_at("token", &format!("http://{addr}/api/v1"));
    let events = Events::default();
    let err = core
        .upstream()
        .reconnect(fast_reconnect().max_attempts(Some(3)))
        .retry_first_connect()
        .on_event(events.handler())
        .connect()
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert_eq!(
        events.count(|e| matches!(e, ConnectionEvent::Reconnecting { .. })),
        2,
        "three attempts, two waits"
    );
    assert!(core.health().connections.is_empty());

    // A token the API refuses: at once.
    let emu = common::emulator();
    let wrong = core_at("not-the-token", &emu.base_url());
    let started = Instant::now();
    let err = wrong
        .upstream()
        .reconnect(Reconnect::default())
        .retry_first_connect()
        .connect()
        .unwrap_err();
    assert!(
        matches!(err, Error::Api(ApiError::Unauthorized { .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Core::close, from another thread (a signal handler's, say), ends a wait that
    // would last forever.
    let connecting = {
        let core = core.clone();
        thread::spawn(move || {
            core.upstream()
                .reconnect(Reconnect::default().initial_delay(Duration::from_secs(60)))
                .retry_first_connect()
                .connect()
        })
    };
    assert!(eventually(WAIT, || core.health().connections.len() == 1));
    let closed_at = Instant::now();
    core.close();
    let err = connecting.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed(_)), "{err:?}");
    assert!(closed_at.elapsed() < Duration::from_secs(2));
}
