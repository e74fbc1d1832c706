//! The upstream and downstream WebSockets: the upgrade, then one [`Link`] per connection.
//!
//! The [`Hub`] knows every live stream connection and keeps what tests look at: replies
//! to upstream messages, downlinks received, and the result codes to answer with.
//!
//! - Upstream: injected messages go to the live upstream connections in turn
//!   (round-robin), like the service's load balancing; acks and rejects are recorded.
//! - Downstream: every valid downlink is recorded and answered with a `DownstreamAck`,
//!   then a `DownstreamResult`. A downlink for a device that is not in the routing table
//!   (or a multicast group that does not exist) is discarded, as the service documents,
//!   and its result says so with `GatewayNotFound`.
//! - A frame that is not a valid message is logged and counted, and gets no answer: the
//!   service has no error frame to send.

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Bytes, Message};

use super::http::{HttpConn, Request, Response};
use super::server::Shared;
use crate::error::{Error, Result};
use crate::ids::DevEui;
use crate::model::{
    DownstreamAck, DownstreamReply, DownstreamRequest, DownstreamResult, DownstreamResultCode,
    UpstreamReply,
};
use crate::stream::link::{Link, LinkOptions, Outbox};
use crate::stream::socket::Socket;
use crate::sync::lock;
use crate::wire::{DEFAULT_MAX_FRAME_SIZE, PROTOCOL_VERSION};

/// How long a send waits for upstream connections still finishing their handshake.
const HANDSHAKE_GRACE: Duration = Duration::from_secs(2);

/// Which stream a connection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Upstream,
    Downstream,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Upstream => "upstream",
            Kind::Downstream => "downstream",
        }
    }
}

struct Peer {
    id: u64,
    kind: Kind,
    link: Arc<Link>,
    tcp: TcpStream,
}

/// Downstream result codes: one for all, overridden per device, overridden per
/// transaction.
#[derive(Debug, Clone)]
struct ResultCodes {
    default: DownstreamResultCode,
    by_device: HashMap<DevEui, DownstreamResultCode>,
    by_transaction: HashMap<u64, DownstreamResultCode>,
}

/// Frames recorded for tests, each list with a cursor for the "wait for the next one"
/// calls.
#[derive(Default)]
struct Records {
    replies: Vec<UpstreamReply>,
    replies_taken: usize,
    received: Vec<DownstreamRequest>,
    received_taken: usize,
    invalid_frames: u64,
}

struct HubState {
    peers: Vec<Peer>,
    /// Upstream connections between their 101 answer and their registration: a client
    /// may already see itself connected, so a send waits for them instead of failing.
    upstream_handshakes: usize,
    /// Stream connections registered so far, of both kinds.
    opened: u64,
    next_upstream: usize,
    records: Records,
    codes: ResultCodes,
}

/// Every live stream connection and what went over them.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    /// Signalled on every new record and every connection change.
    changed: Condvar,
    next_id: AtomicU64,
    next_mailbox: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            state: Mutex::new(HubState {
                peers: Vec::new(),
                upstream_handshakes: 0,
                opened: 0,
                next_upstream: 0,
                records: Records::default(),
                codes: ResultCodes {
                    default: DownstreamResultCode::Success,
                    by_device: HashMap::new(),
                    by_transaction: HashMap::new(),
                },
            }),
            changed: Condvar::new(),
            next_id: AtomicU64::new(1),
            next_mailbox: AtomicU64::new(1),
        }
    }
}

impl Hub {
    /// Waits until `ready` holds for the state or `timeout` passes; returns its last value.
    fn wait_for<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&mut HubState) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        loop {
            if let Some(v) = ready(&mut state) {
                return Some(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn update<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        let out = f(&mut lock(&self.state));
        self.changed.notify_all();
        out
    }

    /// Sends one upstream frame to the next live upstream connection in turn.
    pub(crate) fn send_upstream(&self, text: &str) -> Result<()> {
        self.send_upstream_message(Message::text(text), true)
    }

    /// Sends any WebSocket message to the next live upstream connection in turn. With
    /// `retry`, a connection that fails is skipped for the next one; a hostile frame must
    /// not be, or it would go on to kill every reconnecting client in turn.
    pub(crate) fn send_upstream_message(&self, message: Message, retry: bool) -> Result<()> {
        loop {
            let next = self.wait_for(HANDSHAKE_GRACE, |state| {
                let upstream: Vec<(u64, Arc<Link>)> = state
                    .peers
                    .iter()
                    .filter(|p| p.kind == Kind::Upstream && !p.link.is_closed())
                    .map(|p| (p.id, p.link.clone()))
                    .collect();
                if upstream.is_empty() {
                    return (state.upstream_handshakes == 0).then_some(None);
                }
                let i = state.next_upstream % upstream.len();
                state.next_upstream = state.next_upstream.wrapping_add(1);
                Some(Some(upstream[i].clone()))
            });
            let Some(Some((id, link))) = next else {
                return Err(Error::Closed("no upstream connection is open".into()));
            };
            match link.send_message(message.clone()) {
                Ok(()) => return Ok(()),
                Err(e) if !retry => return Err(e),
                // That connection just died: the next one gets the message.
                Err(e) => log::debug!("emulator: upstream connection {id} failed: {e}"),
            }
        }
    }

    pub(crate) fn connections(&self, kind: Kind) -> usize {
        lock(&self.state)
            .peers
            .iter()
            .filter(|p| p.kind == kind && !p.link.is_closed())
            .count()
    }

    pub(crate) fn wait_connections(&self, kind: Kind, n: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| {
            let live = s
                .peers
                .iter()
                .filter(|p| p.kind == kind && !p.link.is_closed())
                .count();
            (live >= n).then_some(())
        })
        .is_some()
    }

    /// Cuts every stream connection at the TCP level, as a network failure would.
    pub(crate) fn drop_connections(&self) {
        for peer in lock(&self.state).peers.iter() {
            let _ = peer.tcp.shutdown(Shutdown::Both);
        }
    }

    /// Closes every stream connection with a WebSocket close frame.
    pub(crate) fn close_connections(&self) {
        let links: Vec<Arc<Link>> = lock(&self.state)
            .peers
            .iter()
            .map(|p| p.link.clone())
            .collect();
        for link in links {
            link.close();
        }
    }

    pub(crate) fn replies(&self) -> Vec<UpstreamReply> {
        lock(&self.state).records.replies.clone()
    }

    pub(crate) fn wait_reply(&self, timeout: Duration) -> Option<UpstreamReply> {
        self.wait_for(timeout, |s| {
            let r = &mut s.records;
            let next = r.replies.get(r.replies_taken).cloned()?;
            r.replies_taken += 1;
            Some(next)
        })
    }

    pub(crate) fn received(&self) -> Vec<DownstreamRequest> {
        lock(&self.state).records.received.clone()
    }

    pub(crate) fn wait_received(&self, timeout: Duration) -> Option<DownstreamRequest> {
        self.wait_for(timeout, |s| {
            let r = &mut s.records;
            let next = r.received.get(r.received_taken).cloned()?;
            r.received_taken += 1;
            Some(next)
        })
    }

    /// How many stream connections were ever registered, of both kinds.
    pub(crate) fn opened(&self) -> u64 {
        lock(&self.state).opened
    }

    pub(crate) fn invalid_frames(&self) -> u64 {
        lock(&self.state).records.invalid_frames
    }

    /// Forgets every recorded frame.
    pub(crate) fn clear_records(&self) {
        self.update(|s| s.records = Records::default());
    }

    pub(crate) fn set_result(
        &self,
        code: DownstreamResultCode,
        dev_eui: Option<DevEui>,
        transaction_id: Option<u64>,
    ) {
        self.update(|s| match (dev_eui, transaction_id) {
            (_, Some(tx)) => {
                s.codes.by_transaction.insert(tx, code);
            }
            (Some(dev_eui), None) => {
                s.codes.by_device.insert(dev_eui, code);
            }
            (None, None) => s.codes.default = code,
        });
    }

    pub(crate) fn reset_results(&self) {
        self.update(|s| {
            s.codes.default = DownstreamResultCode::Success;
            s.codes.by_device.clear();
            s.codes.by_transaction.clear();
        });
    }

    fn add(&self, peer: Peer) {
        self.update(|s| {
            s.peers.push(peer);
            s.opened += 1;
        });
    }

    fn remove(&self, id: u64) {
        self.update(|s| s.peers.retain(|p| p.id != id));
    }

    fn invalid(&self) {
        self.update(|s| s.records.invalid_frames += 1);
    }
}

/// An upstream handshake in progress, counted until dropped.
struct Handshake<'a> {
    hub: &'a Hub,
    counted: bool,
}

impl<'a> Handshake<'a> {
    fn start(hub: &'a Hub, kind: Kind) -> Self {
        let counted = kind == Kind::Upstream;
        if counted {
            hub.update(|s| s.upstream_handshakes += 1);
        }
        Self { hub, counted }
    }
}

impl Drop for Handshake<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.hub.update(|s| s.upstream_handshakes -= 1);
        }
    }
}

/// Refuses a handshake with a response, or returns the key to accept it with.
fn check_handshake(shared: &Shared, req: &Request) -> std::result::Result<String, Response> {
    if req.method != "GET" {
        return Err(
            Response::error(405, "Unknown", "streams are opened with GET", None)
                .with_header("Allow", "GET"),
        );
    }
    let token = req.query_values("access_token");
    if token.last().map(String::as_str) != Some(shared.config.token.as_str()) {
        let why = if token.is_empty() {
            "missing access_token query parameter"
        } else {
            "invalid access token"
        };
        return Err(Response::error(401, "Unauthorized", why, None));
    }
    let upgrade_required = |why: &str| {
        Response::error(426, "Unknown", why, None)
            .with_header("Upgrade", "websocket")
            .with_header("Sec-WebSocket-Version", "13")
    };
    if req.version < 1
        || !req.header_has_token("Upgrade", "websocket")
        || !req.header_has_token("Connection", "upgrade")
    {
        return Err(upgrade_required("this is a WebSocket endpoint"));
    }
    if req.header("Sec-WebSocket-Version") != Some("13") {
        return Err(upgrade_required("unsupported WebSocket version"));
    }
    match req.header("Sec-WebSocket-Key") {
        Some(key) if !key.is_empty() => {
            Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
        }
        _ => Err(Response::error(
            400,
            "Unknown",
            "missing Sec-WebSocket-Key",
            None,
        )),
    }
}

/// Serves one stream connection until it ends: the handshake on the parsed upgrade
/// request, then frames.
pub(crate) fn serve<S: Socket>(
    shared: &Arc<Shared>,
    kind: Kind,
    mut conn: HttpConn<S>,
    req: &Request,
) {
    let accept = match check_handshake(shared, req) {
        Ok(accept) => accept,
        Err(response) => {
            let _ = response.write_to(&mut conn.stream, true);
            return;
        }
    };
    let pending = Handshake::start(&shared.hub, kind);
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nServer: ran-emulator\r\n\r\n"
    );
    if let Err(e) = std::io::Write::write_all(&mut conn.stream, head.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut conn.stream))
    {
        log::debug!("emulator: {} handshake failed: {e}", kind.name());
        return;
    }
    if let Err(e) = run(shared, kind, conn, pending) {
        log::debug!("emulator: {} connection failed: {e}", kind.name());
    }
}

fn run<S: Socket>(
    shared: &Arc<Shared>,
    kind: Kind,
    conn: HttpConn<S>,
    pending: Handshake<'_>,
) -> Result<()> {
    let tcp = conn.stream.tcp().try_clone().map_err(Error::Io)?;
    tcp.set_read_timeout(None).map_err(Error::Io)?;
    tcp.set_write_timeout(None).map_err(Error::Io)?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(DEFAULT_MAX_FRAME_SIZE))
        .max_frame_size(Some(DEFAULT_MAX_FRAME_SIZE))
        .write_buffer_size(0);
    let (tx, rx) = crossbeam_channel::bounded::<Bytes>(1024);
    let stash = Arc::new(Mutex::new(VecDeque::new()));
    let outbox = Outbox {
        tx,
        stash: stash.clone(),
    };
    let options = LinkOptions {
        name: format!("emulator-{}", kind.name()),
        close_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(10),
        // The service pings its clients; one that stops answering is dropped.
        ping_interval: Some(shared.config.ping_interval),
        pong_timeout: shared.config.pong_timeout,
    };
    let link = Arc::new(Link::spawn(
        conn.stream,
        conn.buf,
        Role::Server,
        config,
        options,
        Some,
        outbox,
    )?);
    let id = shared.hub.next_id.fetch_add(1, Ordering::Relaxed);
    shared.hub.add(Peer {
        id,
        kind,
        link: link.clone(),
        tcp,
    });
    drop(pending);
    log::debug!("emulator: {} connection {id} open", kind.name());

    // Ends when the link's reader exits and drops the channel's sender.
    for frame in rx.iter() {
        handle_frame(shared, kind, &link, &frame);
    }
    // Frames read after a local close still count as received.
    let rest: Vec<Bytes> = lock(&stash).drain(..).collect();
    for frame in rest {
        handle_frame(shared, kind, &link, &frame);
    }
    shared.hub.remove(id);
    link.close();
    let reason = link.wait_closed();
    log::debug!("emulator: {} connection {id} ended: {reason}", kind.name());
    Ok(())
}

fn handle_frame(shared: &Shared, kind: Kind, link: &Link, frame: &[u8]) {
    match kind {
        Kind::Upstream => match serde_json::from_slice::<UpstreamReply>(frame) {
            Ok(reply) => {
                shared.radio.check(&reply);
                shared.hub.update(|s| s.records.replies.push(reply));
            }
            Err(e) => invalid(shared, kind, frame, &e.to_string()),
        },
        Kind::Downstream => {
            let request = serde_json::from_slice::<serde_json::Value>(frame)
                .map_err(|e| e.to_string())
                .and_then(|v| exactly_one_of_each(&v).map(|()| v))
                .and_then(|v| {
                    serde_json::from_value::<DownstreamRequest>(v).map_err(|e| e.to_string())
                })
                .and_then(|r| r.validate().map(|()| r).map_err(|e| e.to_string()));
            match request {
                Ok(request) => answer_downstream(shared, link, request),
                Err(e) => invalid(shared, kind, frame, &e),
            }
        }
    }
}

/// The "exactly one of" rules of a transmission window, which decoding into the model
/// alone would not enforce (it takes the first key it recognises).
fn exactly_one_of_each(frame: &serde_json::Value) -> std::result::Result<(), String> {
    let window = &frame["TxWindow"];
    let count =
        |v: &serde_json::Value, keys: &[&str]| keys.iter().filter(|k| v.get(**k).is_some()).count();
    if window.is_object() && count(window, &["Delay", "TMMS", "Deadline"]) != 1 {
        return Err("TxWindow needs exactly one of Delay, TMMS and Deadline".into());
    }
    let radio = &window["Radio"];
    if radio.is_object() && count(radio, &["LoRa", "FSK", "FHSS"]) != 1 {
        return Err("Radio needs exactly one of LoRa, FSK and FHSS".into());
    }
    Ok(())
}

fn invalid(shared: &Shared, kind: Kind, frame: &[u8], why: &str) {
    let text = String::from_utf8_lossy(&frame[..frame.len().min(200)]);
    log::warn!(
        "emulator: ignoring an invalid {} frame ({why}): {text}",
        kind.name()
    );
    shared.hub.invalid();
}

fn answer_downstream(shared: &Shared, link: &Link, request: DownstreamRequest) {
    let transaction_id = request.transaction_id();
    let (code, message) = result_for(shared, &request);
    shared
        .hub
        .update(|s| s.records.received.push(request.clone()));
    let mailbox_id = shared.hub.next_mailbox.fetch_add(1, Ordering::Relaxed);
    let ack = DownstreamReply::Ack(DownstreamAck {
        protocol_version: PROTOCOL_VERSION,
        transaction_id,
        mailbox_id,
    });
    let result = DownstreamReply::Result(DownstreamResult {
        protocol_version: PROTOCOL_VERSION,
        transaction_id,
        result_code: code,
        result_message: Some(message),
        mailbox_id: Some(mailbox_id),
    });
    for reply in [ack, result] {
        let Ok(text) = serde_json::to_string(&reply) else {
            continue;
        };
        if let Err(e) = link.send_text(text) {
            log::debug!("emulator: cannot answer downlink {transaction_id}: {e}");
            return;
        }
    }
}

/// The result code and message for a downlink: a per-transaction code, else a
/// per-device one, else `GatewayNotFound` for an unknown target, else the default.
fn result_for(shared: &Shared, request: &DownstreamRequest) -> (DownstreamResultCode, String) {
    let codes = lock(&shared.hub.state).codes.clone();
    let describe = |code: DownstreamResultCode| {
        let message = if code.is_success() {
            "Success".to_owned()
        } else {
            format!("emulated failure: {code}")
        };
        (code, message)
    };
    if let Some(code) = codes.by_transaction.get(&request.transaction_id()) {
        return describe(code.clone());
    }
    let store = lock(&shared.store);
    match request {
        DownstreamRequest::Unicast(m) => {
            if let Some(code) = codes.by_device.get(&m.dev_eui) {
                return describe(code.clone());
            }
            if store.device(m.dev_eui).is_none() {
                return (
                    DownstreamResultCode::GatewayNotFound,
                    format!(
                        "device {} is not in the routing table: downlink discarded",
                        m.dev_eui
                    ),
                );
            }
        }
        DownstreamRequest::Multicast(m) => {
            if store.group(m.addr).is_none() {
                return (
                    DownstreamResultCode::GatewayNotFound,
                    format!("multicast group {} not found: downlink discarded", m.addr),
                );
            }
        }
    }
    describe(codes.default)
}
