//! The two URL mistakes a first deployment makes: plain text to a remote host (refused
//! before anything is sent, unless opted in) and the wrong scheme for the server (a hint
//! that names the right one).

use crate::common;

use ran_routing::{Core, Endpoints, Error, Select};
use ran_routing_emulator::Emulator;

/// The text of an [`Error::Config`], or a panic naming what came instead.
fn config_error<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Config(e)) => e.detail().to_owned(),
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

#[test]
fn plain_text_to_a_remote_host_is_refused_before_anything_is_sent() {
    for base in [
        "http://eu.cloud.everynet.io/api/v1",
        "http://10.1.2.3:8080/api/v1",
        "http://[fe80::1]:8080/api/v1",
        // Routes to this machine on Linux, but not by any standard: not loopback.
        "http://0.0.0.0:8080/api/v1",
    ] {
        let text = config_error(Core::new("a-secret-token", base));
        assert!(text.contains("clear text"), "{base}: {text}");
        assert!(text.contains("use https://"), "{base}: {text}");
        assert!(
            text.contains("allow_insecure_remote(true)"),
            "{base}: {text}"
        );
        assert!(!text.contains("a-secret-token"), "{text}");
    }
    // Explicit endpoints: one plain stream URL is enough to refuse.
    let endpoints = Endpoints::new(
        "https://rest.example.com/api/v1/",
        "https://rest.example.com/api/v1/multicast/",
        "wss://up.example.com/stream/upstream/",
        "ws://down.example.com/stream/downstream/",
    )
    .unwrap();
    let text = config_error(Core::builder("token").endpoints(endpoints).build());
    assert!(
        text.contains("ws://down.example.com") && text.contains("use wss://"),
        "{text}"
    );
    // Loopback in every spelling, and TLS anywhere, need no opt-in.
    for base in [
        "http://127.0.0.1:8080/api/v1",
        "http://127.3.2.1:8080/api/v1",
        "http://localhost:8080/api/v1",
        "http://[::1]:8080/api/v1",
        "https://eu.cloud.everynet.io/api/v1",
        "eu.cloud.everynet.io/api/v1",
    ] {
        Core::new("token", base).unwrap_or_else(|e| panic!("{base}: {e}"));
    }
}

#[test]
fn the_opt_in_reaches_a_plain_text_server_that_is_not_loopback() {
    // 0.0.0.0 is not loopback by name, yet Linux connects it to this machine: a real
    // server to reach once opted in.
    let emu = Emulator::builder()
        .bind("0.0.0.0:0".parse().unwrap())
        .start()
        .unwrap();
    let base = format!("http://0.0.0.0:{}/api/v1", emu.local_addr().port());
    config_error(Core::new(emu.token(), &base));
    let ran = Core::builder(emu.token())
        .base_url(&base)
        .allow_insecure_remote(true)
        .request_timeout(common::CALL_TIMEOUT)
        .build()
        .unwrap();
    assert!(ran
        .routing_table()
        .select(Select::all())
        .unwrap()
        .is_empty());
}

#[test]
fn plain_http_to_a_tls_server_says_so() {
    let emu = common::tls_emulator();
    let https = emu.base_url();
    let http = https.replacen("https://", "http://", 1);
    let ran = Core::builder(emu.token())
        .base_url(&http)
        .request_timeout(common::CALL_TIMEOUT)
        .build()
        .unwrap();
    let err = ran.routing_table().select(Select::all()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the server speaks TLS: use an https:// URL?"),
        "{text}"
    );
    assert!(text.contains(&http), "{text}");
    assert!(!text.contains(emu.token()), "{text}");
    // The stream handshake says the same, naming the URL without the token.
    let err = ran.upstream().connect().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the server speaks TLS: use an https:// URL?"),
        "{text}"
    );
    assert!(
        text.contains("ws://") && text.contains("/stream/upstream/"),
        "{text}"
    );
    assert!(!text.contains(emu.token()), "{text}");
}
