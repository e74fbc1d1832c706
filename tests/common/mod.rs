//! Helpers shared by the integration tests: REST clients and raw HTTP servers here,
//! stream helpers in [`streams`].
#![allow(dead_code)] // Each test binary uses its own subset.

pub mod streams;

use std::time::Duration;

use ran_routing::{Core, CoreBuilder, Select};
use ran_routing_emulator::Emulator;

/// Bounds every REST call of a test, so a bug fails instead of hanging.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A builder pointed at the emulator, with its token and test timeouts.
pub fn builder(emu: &Emulator) -> CoreBuilder {
    Core::builder(emu.token())
        .base_url(&emu.base_url())
        .request_timeout(CALL_TIMEOUT)
        .connect_timeout(CALL_TIMEOUT)
}

/// A client for the emulator; TLS emulators have their certificate trusted.
pub fn core(emu: &Emulator) -> Core {
    let mut builder = builder(emu);
    if let Some(pem) = emu.certificate_pem() {
        builder = builder.add_root_certificate_pem(pem.as_bytes());
    }
    builder.build().expect("client for the emulator")
}

pub fn emulator() -> Emulator {
    Emulator::start().expect("emulator starts")
}

pub fn tls_emulator() -> Emulator {
    Emulator::builder().tls(true).start().expect("TLS emulator")
}

/// The service's error code, from a call expected to fail with one.
pub fn api_error<T: std::fmt::Debug>(
    result: Result<T, ran_routing::Error>,
) -> ran_routing::ApiError {
    match result {
        Err(ran_routing::Error::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The token the raw servers below are called with.
pub const RAW_TOKEN: &str = "raw-s3cr3t-t0ken";

/// Serves one HTTP request on loopback, answering with `status` and `body` (or, when
/// `echo` is set, with the request's own bytes after `body`, as proxies' error pages do),
/// and returns the server's URL.
pub fn raw_http_server(status: u16, body: &str, echo: bool) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let body = body.to_owned();
    std::thread::spawn(move || {
        let Ok((mut tcp, _)) = listener.accept() else {
            return;
        };
        tcp.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        }
        let mut answer = body.into_bytes();
        if echo {
            answer.extend_from_slice(&request);
        }
        let head = format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            answer.len()
        );
        let _ = tcp.write_all(head.as_bytes());
        let _ = tcp.write_all(&answer);
    });
    url
}

/// What a REST call makes of an error answer with this status and body, served by a real
/// server over loopback.
pub fn api_error_from(status: u16, body: &str) -> ran_routing::ApiError {
    let url = raw_http_server(status, body, false);
    let ran = Core::builder(RAW_TOKEN)
        .base_url(&url)
        .request_timeout(CALL_TIMEOUT)
        .build()
        .unwrap();
    match ran.routing_table().select(Select::all()) {
        Err(ran_routing::Error::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}
