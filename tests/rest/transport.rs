//! How REST calls fail and reuse connections: a server that is down, one that never
//! answers, TLS with and without the emulator's certificate, closing, odd answers.

use crate::common::{self, tls_emulator};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ran_routing::{
    ApiError, Core, DevAddr, DevEui, Endpoints, Error, JoinEui, MulticastAddr, NewDevice, Select,
};

fn client(addr: SocketAddr, timeout: Duration) -> Core {
    Core::builder("token")
        .base_url(&format!("http://{addr}/api/v1"))
        .request_timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .unwrap()
}

#[test]
fn server_down_is_a_fast_clear_io_error() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let ran = client(addr, common::CALL_TIMEOUT);
    let started = Instant::now();
    let err = ran.routing_table().select(Select::all()).unwrap_err();
    let Error::Io(io) = &err else {
        panic!("expected Error::Io, got {err:?}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("devices/select"),
        "{text}"
    );
    // Refused at once, not after the connect timeout.
    assert!(
        started.elapsed() < common::CALL_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}

/// A server that accepts connections and never answers. Dropping it stops it.
struct Silent {
    addr: SocketAddr,
    stop: mpsc::Sender<()>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = mpsc::channel::<()>();
        thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let mut held = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                match stopped.recv_timeout(Duration::from_millis(10)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
        });
        Silent { addr, stop }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

#[test]
fn a_server_that_never_answers_times_out() {
    let silent = Silent::start();
    let timeout = Duration::from_millis(300);
    let ran = client(silent.addr, timeout);
    let started = Instant::now();
    let err = ran.routing_table().select(Select::all()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: ran_routing::TimeoutKind::Request,
                ..
            }
        ),
        "{err:?}"
    );
    let err = ran
        .routing_table()
        .insert(NewDevice::new(DevEui::new(1), JoinEui::new(2)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: ran_routing::TimeoutKind::Request,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("devices/insert"), "{err}");
    assert!(err.to_string().contains("request timeout (300ms)"), "{err}");
    // The stream handshake to the same silent server: its own kind of timeout, naming
    // the URL.
    let err = ran.upstream().connect().unwrap_err();
    assert_eq!(
        err.timeout_kind(),
        Some(ran_routing::TimeoutKind::WebSocketHandshake),
        "{err:?}"
    );
    assert!(err.to_string().contains("/stream/upstream/"), "{err}");
    assert!(started.elapsed() >= timeout);
    assert!(
        started.elapsed() < common::CALL_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn close_fails_calls_in_flight_and_later_ones() {
    let silent = Silent::start();
    let ran = client(silent.addr, Duration::from_secs(60));
    let (done, result) = mpsc::channel();
    let worker = {
        let ran = ran.clone();
        thread::spawn(move || {
            let _ = done.send(ran.routing_table().select(Select::all()));
        })
    };
    // Let the call reach the server; closing earlier would fail it as well.
    thread::sleep(Duration::from_millis(200));
    ran.close();
    let err = result
        .recv_timeout(common::CALL_TIMEOUT)
        .expect("the call in flight ends when the client closes")
        .unwrap_err();
    assert!(matches!(err, Error::Closed(_)), "{err:?}");
    worker.join().unwrap();

    let err = ran.multicast_groups().get([]).unwrap_err();
    assert!(
        matches!(err, Error::Closed(_)) && err.nothing_sent(),
        "{err:?}"
    );
}

#[test]
fn one_connection_for_a_burst_of_calls() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    for i in 0..100u64 {
        match i % 4 {
            0 => drop(
                ran.routing_table()
                    .insert(NewDevice::new(DevEui::new(i), DevAddr::new(1)))
                    .unwrap(),
            ),
            1 => drop(
                ran.routing_table()
                    .select(Select::all().offset(0).limit(10))
                    .unwrap(),
            ),
            2 => drop(ran.multicast_groups().get([]).unwrap()),
            _ => drop(ran.routing_table().delete([DevEui::new(i - 3)]).unwrap()),
        }
    }
    assert_eq!(emu.accepted_connections(), 1);
}

#[test]
fn explicit_endpoints_instead_of_a_base_url() {
    let emu = common::emulator();
    let base = emu.base_url();
    let ws = base.replacen("http", "ws", 1);
    let endpoints = Endpoints::new(
        &base,
        &format!("{base}/multicast"),
        &format!("{ws}/stream/upstream/"),
        &format!("{ws}/stream/downstream/"),
    )
    .unwrap();
    let ran = Core::builder(emu.token())
        .endpoints(endpoints)
        .request_timeout(common::CALL_TIMEOUT)
        .build()
        .unwrap();
    assert_eq!(ran.endpoints().routing(), format!("{base}/"));
    ran.routing_table()
        .insert(NewDevice::new(DevEui::new(1), DevAddr::new(2)))
        .unwrap();
    ran.multicast_groups()
        .create("g", MulticastAddr::new(3))
        .unwrap();
    assert_eq!(emu.devices().len(), 1);
    assert_eq!(emu.multicast_groups().len(), 1);
}

#[test]
fn clones_share_the_pool_across_threads() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let ran = ran.clone();
            thread::spawn(move || {
                for i in 0..10 {
                    ran.routing_table()
                        .insert(NewDevice::new(DevEui::new(t * 100 + i), DevAddr::new(1)))
                        .unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(ran.routing_table().select(Select::all()).unwrap().len(), 40);
    // At most one connection per thread at a time, and never one per call.
    assert!(
        emu.accepted_connections() <= 5,
        "{}",
        emu.accepted_connections()
    );
}

#[test]
fn tls_with_the_emulator_certificate_as_root() {
    let emu = tls_emulator();
    assert!(emu.base_url().starts_with("https://"), "{}", emu.base_url());
    let ran = common::core(&emu);
    let device = ran
        .routing_table()
        .insert(NewDevice::new(DevEui::new(1), JoinEui::new(2)))
        .unwrap();
    assert_eq!(ran.routing_table().select(Select::all()).unwrap(), [device]);
    let group = ran
        .multicast_groups()
        .create("tls", MulticastAddr::new(1))
        .unwrap();
    assert_eq!(ran.multicast_groups().get([]).unwrap(), [group]);
    assert_eq!(ran.routing_table().delete_all().unwrap(), 1);
    assert_eq!(emu.accepted_connections(), 1);
}

#[test]
fn tls_without_the_certificate_is_a_tls_error() {
    let emu = tls_emulator();
    let ran = common::builder(&emu).build().unwrap();
    let err = ran.routing_table().select(Select::all()).unwrap_err();
    let Error::Tls(tls) = &err else {
        panic!("expected Error::Tls, got {err:?}");
    };
    let detail = tls.detail();
    assert!(detail.to_lowercase().contains("certificate"), "{detail}");
    // The TLS library's own error stays reachable.
    let source = std::error::Error::source(&err).expect("a source");
    assert!(
        source.downcast_ref::<rustls::Error>().is_some(),
        "{source:?}"
    );
    let err = ran
        .multicast_groups()
        .create("x", MulticastAddr::new(1))
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[test]
fn tls_to_a_plain_http_server_says_so() {
    // A base URL without a scheme means https, as in the Python client; the emulator
    // speaks plain HTTP.
    let emu = common::emulator();
    let plain = emu.base_url();
    let url = plain.trim_start_matches("http://");
    let ran = Core::builder(emu.token())
        .base_url(url)
        .request_timeout(common::CALL_TIMEOUT)
        .build()
        .unwrap();
    assert!(ran.endpoints().routing().starts_with("https://"));
    let err = ran.routing_table().select(Select::all()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the server does not speak TLS: use an http:// URL?"),
        "{text}"
    );
    assert!(text.contains(url), "{text}");
    assert!(std::error::Error::source(&err)
        .is_some_and(|s| s.downcast_ref::<rustls::Error>().is_some()));
    // The stream handshake says the same, naming the URL without the token.
    let err = ran.upstream().connect().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the server does not speak TLS: use an http:// URL?"),
        "{text}"
    );
    assert!(
        text.contains("wss://") && text.contains("/stream/upstream/"),
        "{text}"
    );
    assert!(!text.contains(emu.token()), "{text}");
}

/// A one-shot HTTP server: answers every request with `response` and closes.
fn answering(response: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((conn, _)) => answer(conn, response),
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    addr
}

fn answer(conn: TcpStream, response: &str) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(conn);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut conn = reader.into_inner();
    let _ = conn.write_all(response.as_bytes());
}

#[test]
fn an_answer_that_is_not_the_expected_json_is_a_decode_error() {
    let addr = answering(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>",
    );
    let ran = client(addr, common::CALL_TIMEOUT);
    let err = ran.routing_table().select(Select::all()).unwrap_err();
    let Error::Decode { what, message } = &err else {
        panic!("expected Error::Decode, got {err:?}");
    };
    assert_eq!(*what, "devices/select response");
    assert!(message.contains("<html>"), "{message}");

    let addr = answering(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"deleted\": -1}",
    );
    let ran = client(addr, common::CALL_TIMEOUT);
    let err = ran.routing_table().delete_all().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Decode {
                what: "devices/drop-all response",
                ..
            }
        ),
        "{err:?}"
    );
    let err = ran.multicast_groups().add_device(1u32, 2u64).unwrap_err();
    assert!(
        err.to_string().contains("missing field `is_added`"),
        "{err}"
    );
}

#[test]
fn error_statuses_without_the_error_object_are_unknown() {
    let addr = answering(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom",
    );
    let err = client(addr, common::CALL_TIMEOUT)
        .routing_table()
        .select(Select::all())
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Api(ApiError::Unknown { status: 500, code: None, body }) if body == "boom"
        ),
        "{err:?}"
    );

    // Redirects are not followed: a POST is never re-sent somewhere else.
    let addr = answering(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let err = client(addr, common::CALL_TIMEOUT)
        .routing_table()
        .delete_all()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api(ApiError::Unknown { status: 307, .. })),
        "{err:?}"
    );
}

#[test]
fn refused_tokens_are_unauthorized_whatever_the_body() {
    let json = |code: &str| {
        format!(r#"{{"detail": {{"error_code": "{code}", "error_description": "no entry"}}}}"#)
    };
    for (status, body) in [
        (
            401,
            "<html><body>401 Authorization Required</body></html>".to_owned(),
        ),
        (401, String::new()),
        (401, json("Unauthorized")),
        (403, "<html><body>403 Forbidden</body></html>".to_owned()),
        (403, json("Unauthorized")),
        (403, json("Forbidden")),
        (403, json("Unknown")),
    ] {
        let err = common::api_error_from(status, &body);
        let ApiError::Unauthorized { description } = &err else {
            panic!("HTTP {status} {body:?}: {err:?}");
        };
        if body.contains("\"Unauthorized\"") {
            assert_eq!(description, "no entry");
        } else {
            assert!(
                description.contains(&format!("HTTP {status}")),
                "{description}"
            );
        }
        assert_eq!(err.code(), "Unauthorized");
    }
    // A documented code keeps its meaning whatever the status.
    let err = common::api_error_from(403, &json("Device.LimitExhausted"));
    assert!(
        matches!(err, ApiError::DevicesLimitExhausted { .. }),
        "{err:?}"
    );
}

#[test]
fn oversized_answers_are_refused() {
    let addr = answering(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\nConnection: close\r\n\r\n[{}, {}, {}, {}, {}]",
    );
    let ran = Core::builder("token")
        .base_url(&format!("http://{addr}/api/v1"))
        .request_timeout(common::CALL_TIMEOUT)
        .max_response_size(10)
        .build()
        .unwrap();
    let err = ran.routing_table().select(Select::all()).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { .. }) && err.to_string().contains("10-byte limit"),
        "{err:?}"
    );
}
