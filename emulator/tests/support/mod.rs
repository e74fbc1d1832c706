//! Raw-protocol helpers for the emulator's tests: plain `ureq` and `tungstenite`, no code
//! of the crate's client, so a codec bug cannot hide on both sides.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ran_routing_emulator::Emulator;
use serde_json::Value;
use tungstenite::{Message, WebSocket};

/// Every blocking wait in these tests ends after this long, so a bug fails instead of
/// hanging.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .build(),
    )
}

/// An HTTP client of one emulator, with its token.
pub struct Api {
    pub base: String,
    pub token: String,
    pub agent: ureq::Agent,
}

impl Api {
    pub fn new(emu: &Emulator) -> Self {
        Self {
            base: emu.base_url(),
            token: emu.token().to_owned(),
            agent: agent(),
        }
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// POSTs a JSON body; returns the status and the JSON answer.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .agent
            .post(format!("{}/{path}", self.base))
            .header("Authorization", self.auth())
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("request failed");
        read(resp)
    }

    /// POSTs raw bytes as JSON.
    pub fn post_raw(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let resp = self
            .agent
            .post(format!("{}/{path}", self.base))
            .header("Authorization", self.auth())
            .header("Content-Type", "application/json")
            .send(body)
            .expect("request failed");
        read(resp)
    }

    pub fn post_empty(&self, path: &str) -> (u16, Value) {
        let resp = self
            .agent
            .post(format!("{}/{path}", self.base))
            .header("Authorization", self.auth())
            .send_empty()
            .expect("request failed");
        read(resp)
    }

    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self
            .agent
            .get(format!("{}/{path}", self.base))
            .header("Authorization", self.auth());
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        read(req.call().expect("request failed"))
    }

    /// Asserts a successful call and returns its answer.
    pub fn ok(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.post(path, body);
        assert_eq!(status, 200, "{path}: {value}");
        value
    }
}

pub fn read(mut resp: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Asserts the service's error body with this code, and returns it.
pub fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["detail"]["error_code"], code, "{body}");
    assert!(
        body["detail"]["error_description"].is_string(),
        "no description: {body}"
    );
    if code == "ValidationFailed" {
        let detail = body["detail"]["error_detail"]
            .as_array()
            .unwrap_or_else(|| panic!("no error_detail: {body}"));
        assert!(!detail.is_empty(), "{body}");
        for entry in detail {
            assert!(entry["loc"].is_array(), "{entry}");
            assert!(entry["msg"].is_string(), "{entry}");
            assert!(entry["type"].is_string(), "{entry}");
        }
    } else {
        assert!(body["detail"].get("error_detail").is_none(), "{body}");
    }
}

/// Waits up to [`TIMEOUT`] for `cond`.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// A stream client's socket: TCP or TLS over TCP.
#[derive(Debug)]
pub enum Socket {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Socket::Plain(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Plain(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Socket::Plain(s) => s.flush(),
            Socket::Tls(s) => s.flush(),
        }
    }
}

pub type Ws = WebSocket<Socket>;

/// The `ws(s)://` URL of a stream (`"upstream"` or `"downstream"`) with a token.
pub fn stream_url(emu: &Emulator, stream: &str, token: &str) -> String {
    let base = emu.base_url().replacen("http", "ws", 1);
    format!("{base}/stream/{stream}/?access_token={token}")
}

fn tcp(emu: &Emulator) -> TcpStream {
    let tcp = TcpStream::connect_timeout(&emu.local_addr(), TIMEOUT).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    tcp
}

/// A rustls client trusting only `pem`, on *ring* (deprecated in rustls 0.23.48 for
/// lacking post-quantum key exchange, which a loopback test does not need).
#[allow(deprecated)]
pub fn tls_client(pem: &str) -> Arc<rustls::ClientConfig> {
    let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).expect("PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert.der().to_vec()))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Opens a stream connection, or returns the handshake error.
pub fn try_connect(emu: &Emulator, url: &str) -> Result<Ws, tungstenite::Error> {
    let tcp = tcp(emu);
    let socket = match emu.certificate_pem() {
        None => Socket::Plain(tcp),
        Some(pem) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(tls_client(&pem), name).unwrap();
            Socket::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    tungstenite::client::client(url, socket)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => panic!("handshake timed out"),
        })
}

/// Opens a stream connection with the emulator's token.
pub fn connect(emu: &Emulator, stream: &str) -> Ws {
    try_connect(emu, &stream_url(emu, stream, emu.token())).expect("stream handshake")
}

/// The next data frame as JSON, skipping control frames; panics after [`TIMEOUT`].
pub fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("reading a frame") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            Message::Binary(data) => return serde_json::from_slice(&data).expect("JSON frame"),
            _ => continue,
        }
    }
}

/// Whether a data frame arrives within `wait` (control frames are skipped).
pub fn frame_within(ws: &mut Ws, wait: Duration) -> Option<Value> {
    set_read_timeout(ws, Some(wait));
    let result = loop {
        match ws.read() {
            Ok(Message::Text(text)) => break serde_json::from_str(&text).ok(),
            Ok(Message::Binary(data)) => break serde_json::from_slice(&data).ok(),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    set_read_timeout(ws, Some(TIMEOUT));
    result
}

pub fn set_read_timeout(ws: &Ws, timeout: Option<Duration>) {
    let tcp = match ws.get_ref() {
        Socket::Plain(s) => s,
        Socket::Tls(s) => &s.sock,
    };
    tcp.set_read_timeout(timeout).unwrap();
}

pub fn set_write_timeout(ws: &Ws, timeout: Option<Duration>) {
    let tcp = match ws.get_ref() {
        Socket::Plain(s) => s,
        Socket::Tls(s) => &s.sock,
    };
    tcp.set_write_timeout(timeout).unwrap();
}

pub fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).expect("send");
}

/// A raw HTTP exchange on a fresh TCP connection: sends `request`, reads until the
/// server closes (or [`TIMEOUT`]).
pub fn raw_exchange(emu: &Emulator, request: &[u8]) -> String {
    let mut tcp = tcp(emu);
    tcp.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The Upstream frame of the reference document.
pub fn upstream_frame(transaction_id: u64) -> Value {
    serde_json::json!({
        "ProtocolVersion": 1, "TransactionID": transaction_id, "Outdated": true,
        "DevEUIs": [8844537008791951183u64],
        "Radio": {"Frequency": 868100000, "LoRa": {"Spreading": 12, "Bandwidth": 125000},
                  "RSSI": -52.0, "SNR": -3.0},
        "PHYPayloadNoMIC": [64, 184], "MICChallenge": [1308830714, 114830713],
        "GPS": {"Lat": 1.5, "Lng": 2.5, "Alt": 3.0}
    })
}

/// A class A Downstream frame to `dev_eui`.
pub fn downstream_frame(transaction_id: u64, dev_eui: u64) -> Value {
    serde_json::json!({
        "ProtocolVersion": 1, "TransactionID": transaction_id, "DevEUI": dev_eui,
        "TxWindow": {"Radio": {"Frequency": 868300000,
                               "LoRa": {"Spreading": 12, "Bandwidth": 125000}},
                     "Delay": 1},
        "PHYPayload": [104, 105]
    })
}

/// Reads until the server ends the connection (close frame, EOF or reset): `true`, or
/// `false` if it is still open after [`TIMEOUT`] or sends data.
pub fn ends(ws: &mut Ws) -> bool {
    loop {
        match ws.read() {
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => continue,
            Ok(_) => return false,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A plain HTTP client of the emulator's control API, rooted at `url`.
pub struct Control {
    pub url: String,
    pub agent: ureq::Agent,
}

impl Control {
    /// The control API at `/emulator/`.
    pub fn new(emu: &Emulator) -> Self {
        Self::at(emu.control_url())
    }

    /// A control API below `url`, e.g. `/emulator/radio/`.
    pub fn at(url: String) -> Self {
        Self {
            url,
            agent: agent(),
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        read(
            self.agent
                .get(format!("{}{path}", self.url))
                .call()
                .unwrap(),
        )
    }

    /// POSTs `body` as it is, valid JSON or not.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        read(
            self.agent
                .post(format!("{}{path}", self.url))
                .header("Content-Type", "application/json")
                .send(body)
                .unwrap(),
        )
    }

    pub fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        self.post(path, &body.to_string())
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        read(
            self.agent
                .delete(format!("{}{path}", self.url))
                .call()
                .unwrap(),
        )
    }
}
