//! The emulator over TLS: `https` with `ureq` trusting only the emulator's certificate,
//! `wss` with `tungstenite` over rustls.

mod emulator_support;

use emulator_support::*;
use ran_routing::emulator::Emulator;
use serde_json::json;

fn tls_agent(pem: &str) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
        .build();
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .tls_config(tls)
            .build(),
    )
}

#[test]
fn https_and_wss_with_the_generated_certificate() {
    let emu = Emulator::builder().tls(true).start().unwrap();
    assert!(
        emu.base_url().starts_with("https://127.0.0.1:"),
        "{}",
        emu.base_url()
    );
    let pem = emu.certificate_pem().expect("a certificate");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    let mut api = Api::new(&emu);
    api.agent = tls_agent(&pem);
    let before = emu.accepted_connections();
    for i in 0..10 {
        api.ok(
            "devices/insert",
            json!({"DevEUI": format!("{i:016x}"), "DevAddr": "00000001"}),
        );
    }
    assert_error(
        &api.post("devices/insert", json!({"DevEUI": "0000000000000001"})),
        422,
        "ValidationFailed",
    );
    // One TLS connection for all of it.
    assert_eq!(emu.accepted_connections() - before, 1);
    // `localhost` is in the certificate too.
    let localhost = api.base.replace("127.0.0.1", "localhost");
    let resp = api
        .agent
        .get(format!("{localhost}/devices/select"))
        .header("Authorization", format!("Bearer {}", api.token))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);

    // wss: upstream out, reply back.
    let mut ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    let message = serde_json::from_value(upstream_frame(1)).unwrap();
    emu.send_upstream(&message).unwrap();
    assert_eq!(next_json(&mut ws), upstream_frame(1));
    send_json(
        &mut ws,
        json!({"ProtocolVersion": 1, "TransactionID": 1, "ResultCode": "MICFailed"}),
    );
    assert!(emu.wait_upstream_reply(TIMEOUT).is_some());
    // And a bad token is refused over wss too.
    let err = try_connect(&emu, &stream_url(&emu, "downstream", "nope")).unwrap_err();
    assert!(matches!(err, tungstenite::Error::Http(r) if r.status() == 401));
}

#[test]
fn untrusted_clients_fail_the_handshake() {
    let emu = Emulator::builder().tls(true).start().unwrap();
    // The default agent trusts only public roots.
    let err = agent()
        .get(format!("{}/devices/select", emu.base_url()))
        .call()
        .unwrap_err();
    assert!(
        matches!(
            err,
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Io(_)
        ),
        "{err:?}"
    );
    // Another emulator's certificate is not this one's.
    let other = Emulator::builder().tls(true).start().unwrap();
    let err = tls_agent(&other.certificate_pem().unwrap())
        .get(format!("{}/devices/select", emu.base_url()))
        .call()
        .unwrap_err();
    assert!(!matches!(err, ureq::Error::StatusCode(_)), "{err:?}");
    // Plain HTTP to a TLS port gets nothing usable, and the server keeps serving.
    let answer = raw_exchange(&emu, b"GET /api/v1/devices/select HTTP/1.1\r\n\r\n");
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(Emulator::start().unwrap().certificate_pem().is_none());
    let mut api = Api::new(&emu);
    api.agent = tls_agent(&emu.certificate_pem().unwrap());
    assert_eq!(api.get("devices/select", &[]).0, 200);
}
