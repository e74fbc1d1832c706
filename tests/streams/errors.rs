//! The typed errors of real stream failures against the emulator: what a program matches
//! on (the variant, the [`StreamErrorKind`], what is closed) and the cause kept as the
//! source, for a refused port, a server that closes or drops the connection, a refused
//! token, TLS spoken to a plain port, hostile frames and reconnection giving up.

use std::error::Error as _;
use std::io;
use std::net::TcpListener;
use std::time::Duration;

use crate::common::streams::{core_at, fast_reconnect, uplink, WAIT};
use crate::common::{self};

use ran_routing::{
    ApiError, CloseReason, Closed, Core, Error, Select, StreamError, StreamErrorKind, UpstreamAck,
    UpstreamBuilder, UpstreamConnection,
};
use ran_routing_emulator::{Emulator, RawFrame};

fn ack() -> UpstreamAck {
    UpstreamAck::new(1, ran_routing::DevEui::new(1), 1)
}

/// The failure a connection ended with.
fn failure(reason: &CloseReason) -> &StreamError {
    reason
        .error()
        .unwrap_or_else(|| panic!("not a failure: {reason:?}"))
}

/// Connects and waits until the emulator has the connection.
fn open(emu: &Emulator, builder: UpstreamBuilder<'_>) -> UpstreamConnection {
    let up = builder.connect().unwrap();
    assert!(emu.wait_upstream_connections(1, WAIT));
    up
}

/// A loopback port nothing listens on.
fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[test]
fn a_refused_port_is_an_io_error_of_that_kind() {
    let core = core_at(
        "token",
        &format!("http://127.0.0.1:{}/api/v1", refused_port()),
    );
    let err = core.upstream().connect().unwrap_err();
    let Error::Io(io) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert!(err.to_string().contains("/stream/upstream/"), "{err}");
}

#[test]
fn a_server_close_is_remote_and_later_sends_say_so() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let up = open(&emu, core.upstream().no_reconnect());
    emu.close_stream_connections();
    let reason = up
        .wait_closed_timeout(WAIT)
        .expect("the close was not seen");
    let CloseReason::Remote { code, reason: text } = &reason else {
        panic!("{reason:?}")
    };
    assert_eq!((*code, text.as_str()), (1001, "server restart"));
    let err = up.send(ack()).unwrap_err();
    assert!(
        matches!(&err, Error::Closed(Closed::Connection(r)) if *r == reason),
        "{err:?}"
    );
    assert!(err.nothing_sent());
}

#[test]
fn a_dropped_connection_is_an_io_failure_and_sends_meanwhile_are_not_connected() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let up = open(&emu, core.upstream().no_reconnect());
    emu.drop_stream_connections();
    let reason = up.wait_closed_timeout(WAIT).expect("the drop was not seen");
    let failure = failure(&reason);
    assert_eq!(failure.kind(), StreamErrorKind::Io, "{failure:?}");
    let io = failure.source().and_then(|s| s.downcast_ref::<io::Error>());
    assert!(io.is_some(), "the io::Error is not the source: {failure:?}");

    // With reconnection on, a send while the connection is down names why it went down.
    let slow = fast_reconnect().initial_delay(Duration::from_secs(60));
    let up = open(&emu, core.upstream().reconnect(slow));
    emu.drop_stream_connections();
    let err = loop {
        match up.send(ack()) {
            Err(err @ Error::NotConnected(_)) => break err,
            Ok(()) => std::thread::sleep(Duration::from_millis(5)),
            Err(other) => panic!("{other:?}"),
        }
    };
    let Error::NotConnected(after) = &err else {
        unreachable!()
    };
    assert_eq!(failure_kind(after), StreamErrorKind::Io, "{err}");
    assert!(err.nothing_sent());
}

fn failure_kind(reason: &CloseReason) -> StreamErrorKind {
    failure(reason).kind()
}

#[test]
fn a_refused_token_is_the_api_unauthorized_answer() {
    let emu = common::emulator();
    let core = core_at("not-the-token", &emu.base_url());
    let err = core.upstream().connect().unwrap_err();
    assert!(
        matches!(err, Error::Api(ApiError::Unauthorized { .. })),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("not-the-token"));
}

#[test]
fn tls_spoken_to_a_plain_port_is_a_tls_error() {
    let emu = common::emulator();
    let base = emu.base_url().replacen("http://", "https://", 1);
    let core = core_at(emu.token(), &base);
    let err = core.upstream().connect().unwrap_err();
    let Error::Tls(tls) = &err else {
        panic!("{err:?}")
    };
    assert!(tls.rustls_error().is_some(), "{err:?}");
    assert!(err.to_string().contains("does not speak TLS"), "{err}");
}

#[test]
fn hostile_frames_end_the_connection_with_their_kind() {
    let emu = common::emulator();
    let core = common::core(&emu);
    // A text frame that is not UTF-8 breaks the protocol.
    let up = open(&emu, core.upstream().no_reconnect());
    emu.send_upstream_frame(RawFrame::Text(vec![0xff, 0xfe]))
        .unwrap();
    let reason = up
        .wait_closed_timeout(WAIT)
        .expect("the bad frame was kept");
    assert_eq!(failure_kind(&reason), StreamErrorKind::Protocol, "{reason}");
    drop(up);

    // A frame larger than the connection takes.
    let up = open(&emu, core.upstream().no_reconnect().max_frame_size(1024));
    emu.send_upstream_frame(RawFrame::Binary(vec![b' '; 4096]))
        .unwrap();
    let reason = up
        .wait_closed_timeout(WAIT)
        .expect("the big frame was kept");
    assert_eq!(
        failure_kind(&reason),
        StreamErrorKind::FrameTooLarge,
        "{reason}"
    );
}

#[test]
fn reconnection_gives_up_with_the_last_attempts_error_as_source() {
    let emu = Emulator::start().unwrap();
    let core = core_at(emu.token(), &emu.base_url());
    let up = open(
        &emu,
        core.upstream()
            .reconnect(fast_reconnect().max_attempts(Some(2))),
    );
    emu.send_upstream(&uplink(1)).unwrap();
    assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 1);
    drop(emu);
    let reason = up.wait_closed_timeout(WAIT).expect("never gave up");
    let failure = failure(&reason);
    assert_eq!(
        failure.kind(),
        StreamErrorKind::GaveUp { attempts: 2 },
        "{failure}"
    );
    let last = failure.source().and_then(|s| s.downcast_ref::<Error>());
    assert!(
        matches!(last, Some(Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionRefused),
        "{failure:?}"
    );
}

#[test]
fn a_closed_core_is_named_as_such() {
    let emu = common::emulator();
    let core: Core = common::core(&emu);
    let up = core.upstream().connect().unwrap();
    core.close();
    let err = core.upstream().connect().unwrap_err();
    assert!(matches!(err, Error::Closed(Closed::Core)), "{err:?}");
    let err = core.routing_table().select(Select::all()).unwrap_err();
    assert!(matches!(err, Error::Closed(Closed::Core)), "{err:?}");
    let err = up.send(ack()).unwrap_err();
    assert!(
        matches!(err, Error::Closed(Closed::Connection(CloseReason::Local))),
        "{err:?}"
    );
}
