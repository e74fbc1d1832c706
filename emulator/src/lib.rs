//! A local Everynet RAN Routing API server, for testing LoRaWAN Network Server code
//! without the live service: as a library ([`Emulator`], in-process, for test suites) and as
//! the `ran-emulator` binary (see the README).
//!
//! [`Emulator`] speaks the service's protocol over real sockets: the REST routing table
//! and multicast groups with the live service's rules and error codes, and the upstream
//! and downstream WebSockets. Any client of the API works against it by changing only the
//! base URL. A test drives the radio side through the handle: it injects upstream
//! messages, waits for the LNS's acks, looks at the downlinks the LNS sent and chooses
//! their result codes.
//!
//! The same controls are served over HTTP under `/emulator/` (loopback clients only, with
//! the emulator's own `Host`, no foreign `Origin`, JSON bodies as `application/json`, and
//! [`EmulatorBuilder::control_token`] if set), for the binary and for tests in other
//! languages; [`ControlClient`] is a typed Rust client of them:
//!
//! | call | does |
//! |---|---|
//! | `POST /emulator/upstream` | sends one Upstream frame (stream JSON) to the next upstream connection; 503 `Emulator.NoUpstreamConnection` if none |
//! | `POST /emulator/upstream/raw` | sends the body as it is, valid or not |
//! | `GET /emulator/upstream/replies` | the UpstreamAck / UpstreamReject frames received (the newest [`EmulatorBuilder::max_records`]), as a JSON array |
//! | `GET /emulator/downstream/received` | the Downstream / MulticastDownstream frames received |
//! | `POST /emulator/downstream/result-code` | `{"code": "TooLate"}`, optionally with `"dev_eui"` or `"transaction_id"`: the result code to answer with |
//! | `DELETE /emulator/downstream/result-code` | back to `Success` for everything |
//! | `GET /emulator/devices`, `GET /emulator/multicast-groups` | the stored rows |
//! | `GET /emulator/status` | base URL, open stream connections, accepted TCP connections, invalid frames, connection slots, refused connections, dropped records |
//! | `POST /emulator/streams/drop`, `POST /emulator/streams/close` | cut every stream connection (TCP) or close it (WebSocket close frame, code 1001 "server restart") |
//! | `POST /emulator/records/clear` | forget recorded replies and downlinks |
//! | `POST /emulator/radio/devices` | puts a device with keys on the air: `{"dev_eui", "join_eui", "app_key"}` (OTAA) and/or `{"dev_eui", "dev_addr", "nwk_s_key", "fcnt"}` (a session), keys as 32 hex digits; 409 for one already there unless `"replace": true` |
//! | `GET /emulator/radio/devices`, `DELETE /emulator/radio/devices/{dev_eui}` | the devices on the air (no keys); take one off |
//! | `POST /emulator/radio/join-request` | `{"dev_eui"}`: the device sends its next join request; answers the played upstream (with `"copies"` > 1, the RAN delivers it that many times, `"copies_spacing_ms"` apart (default 0), new TransactionIDs listed under `copies`) |
//! | `POST /emulator/radio/uplink` | `{"dev_eui", "fport", "payload_hex", "confirmed"}`: the device sends its next data uplink (`"copies"` as for join requests, default 1) |
//! | `GET /emulator/radio/upstreams/{transaction_id}` | a played upstream: true DevEUI and MIC, verdict on the LNS's answer |
//! | `GET /emulator/radio/downlinks/{transaction_id}` | what a radio device made of a downlink: joined, received, ignored (why), not transmitted |
//! | `GET /emulator/radio/stats` | played upstreams counted by verdict |
//! | `POST /emulator/radio/challenge-size` | `{"min", "max"}`: MIC candidates per challenge (2 to 4096) |
//!
//! The four lists (`upstream/replies`, `downstream/received`, `devices`,
//! `multicast-groups`) take `?offset=` and `?limit=`, and like every answer are capped at
//! [`EmulatorBuilder::max_response_size`]: a larger one is refused with 400
//! `Emulator.ResponseTooLarge`, to be paged.
//!
//! Devices with real keys ([`RadioDevice`], [`Emulator::add_radio_device`]) make the
//! upstreams realistic: [`Emulator::play_join_request`] and [`Emulator::play_uplink`]
//! send a correctly signed frame whose true MIC hides among decoys, and the LNS's ack is
//! checked against it ([`Emulator::played_upstream`], [`Emulator::mic_stats`]). OTAA
//! devices join on a valid join accept from the LNS and talk in their new session
//! ([`Emulator::downlink_verdict`]).
//!
//! The service's routing rules are enforced, each switchable off on the builder
//! ([`EmulatorBuilder::lenient`] for all): only subscribed devices' played traffic reaches
//! the LNS ([`EmulatorBuilder::subscription_gate`]), a join accept needs
//! `TargetDevAddr` ([`EmulatorBuilder::require_target_dev_addr`]), class A downlinks are
//! timed from the device's last acknowledged uplink and answered after their transmission
//! time ([`EmulatorBuilder::judge_downlink_timing`], [`EmulatorBuilder::time_scale`]),
//! and late uplinks carry `Outdated` ([`EmulatorBuilder::mark_outdated`]).
//!
//! Behaviour the service leaves open, and what the emulator does:
//! - HTTP statuses: `Unauthorized` 401, `ValidationFailed` 422, `*.AlreadyExists` and
//!   `AlreadyContainsTheDevice` 409, `*.NotFound` 404, `Device.LimitExhausted` 403;
//!   unknown paths 404 with an `Unknown` error body.
//! - Request bodies are checked strictly: unknown keys are refused with
//!   `ValidationFailed`, so a misspelt key fails here instead of being ignored.
//! - Dropping a device removes it from its multicast groups.
//! - `Details` must be a string of JSON of at most 16 KiB.
//! - A downlink to a device not in the routing table (or to an unknown multicast group)
//!   is acknowledged, then discarded: its `DownstreamResult` has `GatewayNotFound` and a
//!   message saying why.
//! - Stream frames from the LNS are decoded strictly (the specification's keys and no
//!   others, `ProtocolVersion` 1, the value rules); anything else is logged, counted
//!   ([`Emulator::invalid_frames`]) and left unanswered.
//!
//! The emulator uses only the public API of the `ran-routing` client crate (its model
//! types and MIC builders) and has its own codec for every frame, so the client's tests
//! against it check the client's codec against an independent one.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod client;
mod control;
mod error;
mod http;
mod limits;
mod radio;
mod rest;
mod server;
mod store;
mod streams;
mod sync;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use ran_routing::{
    DevEui, Device, DownstreamRequest, DownstreamResultCode, MulticastGroup, UpstreamMessage,
    UpstreamReply,
};
use server::{Config, Server, Shared, Token};
use streams::Kind;

pub use client::{ControlClient, RadioDeviceInfo, Status};
pub use error::{Error, Result};
pub use radio::{
    Copies, DeviceClass, DownlinkVerdict, IgnoredReason, MicStats, Play, PlayedUpstream,
    RadioDevice, ReceivedDownlink, UpstreamVerdict, MAX_COPIES,
};

/// The base URL of the API an emulator serves.
fn base_url(shared: &Shared) -> String {
    let scheme = if shared.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let addr = shared.local_addr;
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!(
        "{scheme}://{host}:{}{}",
        addr.port(),
        shared.config.base_path
    )
}

/// A WebSocket frame for [`Emulator::send_upstream_frame`], sent exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawFrame {
    /// A text frame carrying these bytes, valid UTF-8 or not.
    Text(Vec<u8>),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// A running RAN Routing API emulator. It stops, closing every connection, when dropped
/// or on [`shutdown`](Self::shutdown).
///
/// ```
/// use ran_routing_emulator::Emulator;
/// use serde_json::{json, Value};
///
/// let emu = Emulator::start()?;
/// // Any HTTP client works; the emulator checks the token like the service does.
/// let body = json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4"});
/// let text = ureq::post(format!("{}/devices/insert", emu.base_url()))
///     .header("Authorization", format!("Bearer {}", emu.token()))
///     .header("Content-Type", "application/json")
///     .send(body.to_string())?
///     .body_mut()
///     .read_to_string()?;
/// let device: Value = serde_json::from_str(&text)?;
/// assert_eq!(device["DevEUI"], "7abe1b8c93d7174f");
/// assert_eq!(device["ActiveDevAddr"], Value::Null);
/// assert_eq!(emu.devices().len(), 1);
///
/// // No LNS is connected to the upstream stream yet.
/// assert_eq!(emu.upstream_connections(), 0);
/// assert!(emu.wait_upstream_reply(std::time::Duration::from_millis(10)).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Emulator {
    server: Mutex<Server>,
    shared: std::sync::Arc<Shared>,
    certificate_pem: Option<String>,
}

impl Emulator {
    /// Starts an emulator on `127.0.0.1` with an ephemeral port, plain HTTP and a random
    /// token.
    pub fn start() -> Result<Emulator> {
        Self::builder().start()
    }

    /// A builder to choose TLS, the token, the address, the base path and limits.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The API's base URL, e.g. `http://127.0.0.1:41234/api/v1` (`https` with TLS): give
    /// it to a client as the service's URL.
    pub fn base_url(&self) -> String {
        base_url(&self.shared)
    }

    /// The URL of the control API, e.g. `http://127.0.0.1:41234/emulator/`.
    pub fn control_url(&self) -> String {
        let base = self.base_url();
        let root = base
            .strip_suffix(&self.shared.config.base_path)
            .unwrap_or(&base);
        format!("{root}/emulator/")
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The access token clients must present.
    pub fn token(&self) -> &str {
        self.shared.config.token.expose()
    }

    /// The token the control API asks for, if one was set
    /// ([`EmulatorBuilder::control_token`]).
    pub fn control_token(&self) -> Option<&str> {
        self.shared.config.control_token.as_ref().map(Token::expose)
    }

    /// How many connections are open now (HTTP and streams), each holding one of the
    /// [`max_connections`](EmulatorBuilder::max_connections) slots.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// How many connections are served at once: [`EmulatorBuilder::max_connections`],
    /// or fewer when the descriptor limit cannot cover that many.
    pub fn connection_slots(&self) -> usize {
        self.shared.slots
    }

    /// How many recorded frames (replies, downlinks received) were dropped, oldest
    /// first, to keep each record within [`EmulatorBuilder::max_records`].
    pub fn records_dropped(&self) -> u64 {
        self.shared.hub.records_dropped()
    }

    /// The PEM of the self-signed certificate when TLS is on, for clients to trust. It is
    /// valid for `127.0.0.1`, `::1` and `localhost`.
    pub fn certificate_pem(&self) -> Option<String> {
        self.certificate_pem.clone()
    }

    /// How many TCP connections the server has accepted so far, of any kind. A client
    /// that reuses its connections keeps this low.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Stops the server: no new connections, every open one closed, every thread
    /// joined. Dropping the emulator does the same; calling it twice is harmless.
    pub fn shutdown(&self) {
        sync::lock(&self.server).stop();
    }

    // --- upstream ------------------------------------------------------------------

    /// Sends an upstream message to the next open upstream connection (round-robin
    /// over them, like the service's load balancing); returns once it is written to the
    /// socket. A connection whose handshake is still finishing on the server side is
    /// waited for (up to 2 s), so a client may send right after connecting. Fails with
    /// [`Error::Closed`] when no upstream connection is open.
    ///
    /// The message goes out as given, whatever the routing table (only played upstreams
    /// are routed); the RAN counts it as heard now, so an ack naming a DevEUI starts that
    /// device's class A windows.
    pub fn send_upstream(&self, message: &UpstreamMessage) -> Result<()> {
        self.shared
            .hub
            .send_upstream_tracked(message, std::time::Instant::now())
    }

    /// Sends upstream messages in order to the next open upstream connection, as
    /// [`send_upstream`](Self::send_upstream) does one, and returns once every one is
    /// written to the socket. The connection's thread is handed the whole batch at once,
    /// so a test feeding many uplinks runs at the speed of the socket rather than at one
    /// thread switch per message. If that connection fails midway, the rest go to the
    /// next one; fails with [`Error::Closed`] when no upstream connection is open.
    pub fn send_upstreams(&self, messages: &[UpstreamMessage]) -> Result<()> {
        self.shared
            .hub
            .send_upstreams_tracked(messages, std::time::Instant::now())
    }

    /// Sends any text as an upstream frame, valid or not: for testing how a client copes
    /// with frames it cannot read.
    pub fn send_upstream_raw(&self, text: &str) -> Result<()> {
        self.shared.hub.send_upstream(text)
    }

    /// Sends one WebSocket frame as it is (a text frame need not even be UTF-8) to the
    /// next open upstream connection: for testing how a client copes with hostile input.
    /// Unlike the other sends, a connection that fails on it is not replaced by the next
    /// one: the error is returned.
    pub fn send_upstream_frame(&self, frame: RawFrame) -> Result<()> {
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        use tungstenite::protocol::frame::Frame;
        let (data, opcode) = match frame {
            RawFrame::Text(data) => (data, Data::Text),
            RawFrame::Binary(data) => (data, Data::Binary),
        };
        let frame = Frame::message(data, OpCode::Data(opcode), true);
        self.shared
            .hub
            .send_upstream_message(tungstenite::Message::Frame(frame), false)
    }

    /// Every UpstreamAck and UpstreamReject received so far, in order.
    pub fn upstream_replies(&self) -> Vec<UpstreamReply> {
        self.shared.hub.replies()
    }

    /// Waits up to `timeout` for the next reply not yet returned by this method; `None`
    /// on timeout.
    pub fn wait_upstream_reply(&self, timeout: Duration) -> Option<UpstreamReply> {
        self.shared.hub.wait_reply(timeout)
    }

    /// How many upstream connections are open.
    pub fn upstream_connections(&self) -> usize {
        self.shared.hub.connections(Kind::Upstream)
    }

    /// Waits up to `timeout` until at least `n` upstream connections are open.
    pub fn wait_upstream_connections(&self, n: usize, timeout: Duration) -> bool {
        self.shared.hub.wait_connections(Kind::Upstream, n, timeout)
    }

    // --- downstream ----------------------------------------------------------------

    /// Every Downstream and MulticastDownstream received so far, in order.
    pub fn downstream_received(&self) -> Vec<DownstreamRequest> {
        self.shared.hub.received()
    }

    /// Waits up to `timeout` for the next downlink not yet returned by this method;
    /// `None` on timeout.
    pub fn wait_downstream(&self, timeout: Duration) -> Option<DownstreamRequest> {
        self.shared.hub.wait_received(timeout)
    }

    /// The result code for every downlink from now on (default `Success`). Per-device
    /// and per-transaction codes take precedence.
    pub fn set_downstream_result(&self, code: DownstreamResultCode) {
        self.shared.hub.set_result(code, None, None, None);
    }

    /// The result code for downlinks to `dev_eui`.
    pub fn set_downstream_result_for_device(&self, dev_eui: DevEui, code: DownstreamResultCode) {
        self.shared.hub.set_result(code, None, Some(dev_eui), None);
    }

    /// The result code for the downlink with this transaction id.
    pub fn set_downstream_result_for_transaction(
        &self,
        transaction_id: u64,
        code: DownstreamResultCode,
    ) {
        self.shared
            .hub
            .set_result(code, None, None, Some(transaction_id));
    }

    /// The result code and message for the downlink with this transaction id: any code,
    /// one the client crate does not know included (`DownstreamResultCode::Unknown`), and
    /// any message (`"TOO_EARLY"` makes
    /// [`DownstreamResult::is_too_early`](ran_routing::DownstreamResult::is_too_early)
    /// true with a code other than `Success` or `TooLate`).
    pub fn set_downstream_result_message_for_transaction(
        &self,
        transaction_id: u64,
        code: DownstreamResultCode,
        message: impl Into<String>,
    ) {
        self.shared
            .hub
            .set_result(code, Some(message.into()), None, Some(transaction_id));
    }

    /// Back to `Success` for every downlink.
    pub fn reset_downstream_results(&self) {
        self.shared.hub.reset_results();
    }

    /// How many downstream connections are open.
    pub fn downstream_connections(&self) -> usize {
        self.shared.hub.connections(Kind::Downstream)
    }

    /// Waits up to `timeout` until at least `n` downstream connections are open.
    pub fn wait_downstream_connections(&self, n: usize, timeout: Duration) -> bool {
        self.shared
            .hub
            .wait_connections(Kind::Downstream, n, timeout)
    }

    // --- both streams --------------------------------------------------------------

    /// Cuts every stream connection at the TCP level, without a close frame, as a
    /// network failure would: for testing reconnection.
    pub fn drop_stream_connections(&self) {
        self.shared.hub.drop_connections();
    }

    /// Closes every stream connection with a WebSocket close frame, as a server restart
    /// would: code 1001 (going away), reason `"server restart"`.
    pub fn close_stream_connections(&self) {
        self.shared.hub.close_connections();
    }

    /// How many stream connections (upstream and downstream) have been opened so far,
    /// closed ones included: with [`upstream_connections`](Self::upstream_connections),
    /// tells a test that a client has reconnected and its old connection is gone.
    pub fn stream_connections_opened(&self) -> u64 {
        self.shared.hub.opened()
    }

    /// How many stream frames were not valid messages (logged and ignored).
    pub fn invalid_frames(&self) -> u64 {
        self.shared.hub.invalid_frames()
    }

    /// Forgets the recorded upstream replies and downlinks.
    pub fn clear_records(&self) {
        self.shared.hub.clear_records();
    }

    // --- state ---------------------------------------------------------------------

    /// The routing table, in insertion order.
    pub fn devices(&self) -> Vec<Device> {
        self.store().select(None, 0, None)
    }

    /// The multicast groups, in creation order.
    pub fn multicast_groups(&self) -> Vec<MulticastGroup> {
        self.store().groups(&[])
    }

    fn store(&self) -> std::sync::MutexGuard<'_, store::Store> {
        sync::lock(&self.shared.store)
    }
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.base_url())
            .field("tls", &self.certificate_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Configures an [`Emulator`]; see [`Emulator::builder`].
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    bind: SocketAddr,
    token: Option<Token>,
    tls: bool,
    device_limit: Option<usize>,
    base_path: String,
    ping_interval: Duration,
    pong_timeout: Duration,
    idle_timeout: Duration,
    max_body_size: usize,
    max_connections: usize,
    rules: radio::Rules,
    request_timeout: Duration,
    write_timeout: Duration,
    rest_latency: Duration,
    max_response_size: usize,
    max_records: usize,
    control_token: Option<Token>,
}

/// The default of [`EmulatorBuilder::device_limit`].
pub const DEFAULT_DEVICE_LIMIT: usize = 200_000;

/// The default of [`EmulatorBuilder::max_response_size`]: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 16 * 1024 * 1024;

/// The default of [`EmulatorBuilder::max_records`].
pub const DEFAULT_MAX_RECORDS: usize = 100_000;

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            tls: false,
            device_limit: Some(DEFAULT_DEVICE_LIMIT),
            base_path: "/api/v1".into(),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_body_size: http::Limits::default().max_body,
            max_connections: 1024,
            rules: radio::Rules::default(),
            request_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(10),
            rest_latency: Duration::ZERO,
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            max_records: DEFAULT_MAX_RECORDS,
            control_token: None,
        }
    }
}

impl EmulatorBuilder {
    /// Serves `https` and `wss` with a freshly generated self-signed certificate (see
    /// [`Emulator::certificate_pem`]). Default: plain `http` and `ws`.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The access token to accept. Default: 32 random hex digits.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::unchecked(token.into()));
        self
    }

    /// The most devices the routing table takes; one more is refused with
    /// `Device.LimitExhausted`. `None` lifts the limit. Default
    /// [`DEFAULT_DEVICE_LIMIT`] (200 000), which bounds the memory a runaway sync can
    /// take.
    pub fn device_limit(mut self, limit: impl Into<Option<usize>>) -> Self {
        self.device_limit = limit.into();
        self
    }

    /// The largest answer, in bytes of JSON: a REST `devices/select`, and the control
    /// API's lists (`devices`, `multicast-groups`, `upstream/replies`,
    /// `downstream/received`). One that would be larger is refused with 400
    /// `Emulator.ResponseTooLarge` and must be paged with `offset` and `limit`; it is
    /// never truncated. This also bounds what one connection holds while its answer is
    /// written. Default [`DEFAULT_MAX_RESPONSE_SIZE`] (16 MiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// How many frames each record keeps (the replies to upstreams, the downlinks
    /// received): past that the oldest is dropped and counted
    /// ([`Emulator::records_dropped`]). Default [`DEFAULT_MAX_RECORDS`] (100 000).
    pub fn max_records(mut self, n: usize) -> Self {
        self.max_records = n.max(1);
        self
    }

    /// How long writing one HTTP response may take; a client that reads it slower
    /// than that, or not at all, is disconnected, so clients that never read cannot
    /// hold the connection slots. Default 10 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long reading one HTTP request, head and body, may take; a client slower than
    /// that gets 408 and is disconnected. A new connection's first request counts from
    /// the accept. Default 20 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// A delay before each REST API request is answered, standing in for a WAN link.
    /// The control API and the streams are not delayed. Default none.
    pub fn rest_latency(mut self, latency: Duration) -> Self {
        self.rest_latency = latency;
        self
    }

    /// Makes the control API ask for this token, as `Authorization: Bearer <token>`
    /// ([`ControlClient::with_token`]). Default: none; the control API still answers
    /// loopback clients only and checks `Host`, `Origin` and the content type.
    pub fn control_token(mut self, token: impl Into<String>) -> Self {
        self.control_token = Some(Token::unchecked(token.into()));
        self
    }

    /// The address to listen on. Default `127.0.0.1:0` (an ephemeral port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The path the API is served under. Default `/api/v1`; `/` serves it at the root.
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        self.base_path = path.into();
        self
    }

    /// How often the server pings each stream connection. Default 30 s.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// How long a stream connection may stay silent after a ping before the server
    /// drops it as dead. Default 10 s.
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// How long an HTTP connection may stay idle before the server closes it.
    /// Default 120 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The largest request body accepted, in bytes; larger ones get 413. Default 1 MiB.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The most connections served at once (each has a thread); one more is answered
    /// 503 and closed at once. Default 1024. At start the soft descriptor limit
    /// (`ulimit -n`) is raised to the hard one where allowed; if it still cannot cover
    /// this many connections (five descriptors each, at most), fewer are served (see
    /// [`Emulator::connection_slots`]) and a warning says so.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Turns every routing rule off (see the README's "Routing rules"): played
    /// upstreams reach the LNS whatever the routing table says, join accepts need no
    /// `TargetDevAddr`, downlinks are answered at once whatever their window, and no
    /// upstream is marked `Outdated`. The setters below turn single rules back on.
    pub fn lenient(mut self) -> Self {
        self.rules = radio::Rules {
            time_scale: self.rules.time_scale,
            ..radio::Rules::lenient()
        };
        self
    }

    /// Rule: a played join request reaches the LNS only if its DevEUI is in the routing
    /// table with its JoinEUI, a played data uplink only if a row has its DevAddr as
    /// active or target address (`DevEUIs` lists those rows); others are withheld and
    /// counted. Default on.
    pub fn subscription_gate(mut self, on: bool) -> Self {
        self.rules.subscription = on;
        self
    }

    /// Rule: a join accept (a Downstream whose PHYPayload is one) without
    /// `TargetDevAddr` is refused with a `GatewayError` result saying why. Default on.
    pub fn require_target_dev_addr(mut self, on: bool) -> Self {
        self.rules.security_contexts = on;
        self
    }

    /// Rule: a class A `Delay` counts from the last acknowledged uplink of the
    /// downlink's DevEUI (`WindowNotFound` without one, `TooLate` once the window has
    /// passed), a join accept reaches a radio device only in its join-accept windows,
    /// and every result is sent after the transmission ends (window plus time on air).
    /// Off: results at once, `Success` unless chosen otherwise. Default on.
    pub fn judge_downlink_timing(mut self, on: bool) -> Self {
        self.rules.downlink_timing = on;
        self
    }

    /// Rule: played upstreams heard over 2.5 s before delivery carry `Outdated: true`.
    /// Default on.
    pub fn mark_outdated(mut self, on: bool) -> Self {
        self.rules.outdated = on;
        self
    }

    /// How fast emulated time runs, as real seconds per emulated second: 0.1 makes a
    /// 5 s join-accept window 0.5 s, and results arrive ten times sooner; 0 answers at
    /// once (windows then pass at once too). Applies to transmission windows, times on
    /// air and `Play::heard_ago`. Default 1 (real time).
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.rules.time_scale = scale;
        self
    }

    /// Binds the socket and starts serving.
    pub fn start(self) -> Result<Emulator> {
        if !self.rules.time_scale.is_finite() || self.rules.time_scale < 0.0 {
            return Err(Error::Config(format!(
                "the time scale must be a finite number >= 0, not {}",
                self.rules.time_scale
            )));
        }
        let token = match self.token {
            Some(token) => token.checked()?,
            None => Token::unchecked(tls::random_token()),
        };
        let base_path = normalize_base_path(&self.base_path)?;
        if self.ping_interval.is_zero()
            || self.pong_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.request_timeout.is_zero()
            || self.write_timeout.is_zero()
        {
            return Err(Error::Config(
                "the ping interval, pong timeout, idle timeout, request timeout and write \
                 timeout must be positive"
                    .into(),
            ));
        }
        let control_token = self.control_token.map(Token::checked).transpose()?;
        let tls = if self.tls {
            Some(tls::Tls::generate()?)
        } else {
            None
        };
        let certificate_pem = tls.as_ref().map(|t| t.certificate_pem.clone());
        let config = Config {
            token,
            base_path,
            tls,
            limits: http::Limits {
                max_body: self.max_body_size,
                ..http::Limits::default()
            },
            ping_interval: self.ping_interval,
            pong_timeout: self.pong_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            request_timeout: self.request_timeout,
            write_timeout: self.write_timeout,
            rest_latency: self.rest_latency,
            max_response_bytes: self.max_response_size,
            max_records: self.max_records,
            control_token,
        };
        let server = Server::start(config, self.bind, store::Store::new(self.device_limit))?;
        let shared = server.shared.clone();
        shared.radio.set_rules(self.rules);
        log::info!("emulator: serving {}", base_url(&shared));
        Ok(Emulator {
            server: Mutex::new(server),
            shared,
            certificate_pem,
        })
    }
}

/// `"/api/v1/"` → `"/api/v1"`, `"/"` → `""`; only plain path characters.
fn normalize_base_path(path: &str) -> Result<String> {
    let trimmed = path.trim().trim_matches('/');
    let ok = trimmed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    if !ok || trimmed.contains("//") {
        return Err(Error::Config(format!("bad base path {path:?}")));
    }
    if trimmed == "emulator" || trimmed.starts_with("emulator/") {
        return Err(Error::Config(
            "the base path cannot be under /emulator, where the control API lives".into(),
        ));
    }
    Ok(if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_shareable() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Emulator>();
        send_sync::<EmulatorBuilder>();
    }

    #[test]
    fn the_token_never_appears_in_debug() {
        let builder = Emulator::builder().token("s3cret-token");
        assert!(!format!("{builder:?}").contains("s3cret"), "{builder:?}");
        let emu = builder.start().unwrap();
        assert_eq!(emu.token(), "s3cret-token");
        assert!(!format!("{emu:?}").contains("s3cret"));
        assert!(matches!(
            Emulator::builder().token("two words").start(),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn base_paths() {
        assert_eq!(normalize_base_path("/api/v1/").unwrap(), "/api/v1");
        assert_eq!(normalize_base_path("api").unwrap(), "/api");
        assert_eq!(normalize_base_path("/").unwrap(), "");
        for bad in ["/a b", "/a?x", "/a//b", "/emulator", "/emulator/x"] {
            assert!(normalize_base_path(bad).is_err(), "{bad}");
        }
    }
}
