//! The access token never shows: not in `Debug`, not in errors, not in the log (this
//! crate's and ureq's, up to DEBUG; ureq documents TRACE as an unredacted wire dump).

use crate::common;

use std::sync::Mutex;

use ran_routing::{Core, DevAddr, DevEui, DeviceUpdate, JoinEui, NewDevice, Select};

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.target(), record.args());
            self.0.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn the_token_never_shows() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Debug);

    let emu = ran_routing_emulator::Emulator::builder()
        .token("the-real-secret-token")
        .start()
        .unwrap();
    let ran = common::core(&emu);
    let table = ran.routing_table();
    table
        .insert(NewDevice::new(DevEui::new(1), JoinEui::new(2)))
        .unwrap();
    let mut shown = vec![format!("{ran:?}")];
    for err in [
        table
            .insert(NewDevice::new(DevEui::new(1), DevAddr::new(2)))
            .unwrap_err(),
        table
            .update(
                DeviceUpdate::new(DevEui::new(1), JoinEui::new(3))
                    .with_active_dev_addr(DevAddr::new(1)),
            )
            .unwrap_err(),
    ] {
        shown.push(format!("{err}"));
        shown.push(format!("{err:?}"));
    }

    let wrong = Core::builder("a-wrong-secret-token")
        .base_url(&emu.base_url())
        .request_timeout(common::CALL_TIMEOUT)
        .build()
        .unwrap();
    let err = wrong.routing_table().select(Select::all()).unwrap_err();
    shown.extend([format!("{err}"), format!("{err:?}"), format!("{wrong:?}")]);
    ran.close();
    drop(emu);
    // A base URL without a scheme means https, and the log says so.
    let assumed = Core::new("a-wrong-secret-token", "ran.example.com/api/v1").unwrap();
    assert_eq!(
        assumed.endpoints().routing(),
        "https://ran.example.com/api/v1/"
    );

    let logged = LOG.0.lock().unwrap().clone();
    assert!(
        logged.iter().any(|l| l.contains(
            "\"ran.example.com/api/v1\" has no scheme: using \"https://ran.example.com/api/v1\""
        )),
        "the assumed scheme is logged: {logged:#?}"
    );
    assert!(
        logged.iter().any(|l| l.contains("devices/select")),
        "the calls are logged: {logged:#?}"
    );
    for text in shown.iter().chain(&logged) {
        for secret in ["the-real-secret-token", "a-wrong-secret-token"] {
            assert!(!text.contains(secret), "{secret:?} in {text:?}");
        }
    }
}

/// A token whose percent-encoded form differs from the raw one.
const ECHOED_TOKEN: &str = "echo/t0ken+s3cr3t=";

/// No spelling of the token in the error; when the error keeps the server's text
/// (`echoed`), the token's place shows as `***`.
fn assert_scrubbed(err: &ran_routing::Error, echoed: bool) {
    for text in [err.to_string(), format!("{err:?}")] {
        if echoed {
            assert!(text.contains("***"), "nothing echoed? {text}");
        }
        for spelling in [ECHOED_TOKEN, "echo%2Ft0ken", "t0ken", "s3cr3t"] {
            assert!(!text.contains(spelling), "{spelling} in {text}");
        }
    }
}

#[test]
fn servers_echoing_the_request_do_not_leak_the_token_into_errors() {
    // A proxy's error page that echoes the request: the REST call's Authorization header.
    for status in [401, 404, 502] {
        let url = common::raw_http_server(status, "bad gateway, you sent:\n", true);
        let ran = Core::builder(ECHOED_TOKEN)
            .base_url(&url)
            .request_timeout(common::CALL_TIMEOUT)
            .build()
            .unwrap();
        let err = ran.routing_table().select(Select::all()).unwrap_err();
        assert_scrubbed(&err, true);
    }
    // The stream handshake's request line carries the token percent-encoded in its
    // query; a refusal that echoes it. (A 401 or 403 without the service's error body
    // becomes a plain Unauthorized that keeps nothing of the body.)
    for (status, echoed) in [(400, true), (403, false), (502, true)] {
        let url = common::raw_http_server(status, "refused:\n", true);
        let ran = Core::builder(ECHOED_TOKEN)
            .base_url(&url)
            .connect_timeout(common::CALL_TIMEOUT)
            .build()
            .unwrap();
        let err = ran.upstream().connect().unwrap_err();
        assert_scrubbed(&err, echoed);
    }
}

#[test]
fn stream_connect_errors_name_the_url_without_the_token() {
    // Nothing listens on the port once the listener is dropped.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let ran = Core::new(ECHOED_TOKEN, &format!("http://127.0.0.1:{port}/api/v1")).unwrap();
    let err = ran.downstream().connect().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("ws://127.0.0.1:{port}/api/v1/stream/downstream/")),
        "{text}"
    );
    assert!(
        !text.contains("t0ken") && !text.contains("access_token"),
        "{text}"
    );
}
