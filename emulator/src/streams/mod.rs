//! The upstream and downstream WebSockets: the upgrade, then one connection thread each
//! (see `conn`), with frames read and written by the emulator's own codec (`frames`).
//!
//! The [`Hub`] knows every live stream connection and keeps what tests look at: replies
//! to upstream messages, downlinks received, and the result codes to answer with.
//!
//! - Upstream: injected messages go to the live upstream connections in turn
//!   (round-robin), like the service's load balancing; acks and rejects are recorded.
//! - Every upstream sent is remembered (a bounded log) with when the RAN heard it, so an
//!   ack can set the device's last acknowledged uplink (class A windows count from it)
//!   and switch its security context, and a reply to a transaction never sent is
//!   counted and logged.
//! - Downstream: every valid downlink is recorded and answered with a `DownstreamAck`,
//!   then a `DownstreamResult` judged by `judge` (routing table, join accept rules,
//!   transmission window), sent when the transmission would end.
//! - A frame that is not a valid message is logged and counted, and gets no answer: the
//!   service has no error frame to send.

mod conn;
mod frames;
mod judge;
mod records;

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ran_routing::{
    DevAddr, DevEui, DownstreamRequest, DownstreamResultCode, UpstreamMessage, UpstreamReply,
};
use tungstenite::Message;

use crate::error::{Error, Result};
use crate::http::{HttpConn, Request, Response};
use crate::limits::{Warning, WARNING_PERIOD};
use crate::server::{Shared, Socket};
use crate::sync::lock;
use conn::Handle;
use records::Record;

pub(crate) use frames::upstream_json;

/// How long a send waits for upstream connections still finishing their handshake.
const HANDSHAKE_GRACE: Duration = Duration::from_secs(2);

/// How many sent upstreams the hub remembers, oldest forgotten first.
const SENT_LOG: usize = 1 << 16;

/// A frame for a connection to write: at once, or when `at` comes (a DownstreamResult
/// after its transmission time).
pub(crate) struct Answer {
    pub(crate) at: Option<Instant>,
    pub(crate) text: String,
}

/// When the RAN heard an acknowledged uplink, and its transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heard {
    pub(crate) at: Instant,
    pub(crate) transaction_id: u64,
}

/// Most devices whose last acknowledged uplink the hub keeps. Acks name any DevEUI a
/// client likes, but only acks of remembered uplinks count, so the newest
/// [`SENT_LOG`] entries cover every uplink the hub can still judge a downlink against.
const LAST_ACKED: usize = 2 * SENT_LOG;

/// Records that `dev_eui`'s uplink heard at `heard.at` was acked, keeping the map
/// within [`LAST_ACKED`]: past it, the older half is forgotten (amortized, one pass per
/// `LAST_ACKED / 2` new devices).
fn record_ack(last_acked: &mut HashMap<DevEui, Heard>, dev_eui: DevEui, heard: Heard) {
    let last = last_acked.entry(dev_eui).or_insert(heard);
    if heard.at >= last.at {
        *last = heard;
    }
    if last_acked.len() > LAST_ACKED {
        let mut ats: Vec<Instant> = last_acked.values().map(|h| h.at).collect();
        let middle = ats.len() / 2;
        let cutoff = *ats.select_nth_unstable(middle).1;
        last_acked.retain(|_, h| h.at >= cutoff);
    }
}

/// An upstream the hub sent.
#[derive(Debug, Clone, Copy)]
struct SentUpstream {
    heard_at: Instant,
    /// A data uplink's DevAddr: an ack for it may switch the device's security context.
    dev_addr: Option<DevAddr>,
}

#[derive(Default)]
struct SentLog {
    map: HashMap<u64, SentUpstream>,
    order: VecDeque<u64>,
}

impl SentLog {
    fn insert(&mut self, transaction_id: u64, sent: SentUpstream) {
        if self.map.insert(transaction_id, sent).is_none() {
            self.order.push_back(transaction_id);
        }
        while self.order.len() > SENT_LOG {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    fn remove(&mut self, transaction_id: u64) {
        if self.map.remove(&transaction_id).is_some() {
            self.order.retain(|t| *t != transaction_id);
        }
    }
}

/// The DevAddr of a data uplink (MType 010 or 100), from its FHDR.
fn data_uplink_dev_addr(phy_payload_no_mic: &[u8]) -> Option<DevAddr> {
    match phy_payload_no_mic {
        [mhdr, a, b, c, d, ..] if matches!(mhdr >> 5, 0b010 | 0b100) => {
            Some(DevAddr::new(u32::from_le_bytes([*a, *b, *c, *d])))
        }
        _ => None,
    }
}
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
    handle: Arc<Handle>,
    tcp: TcpStream,
}

/// Downstream result codes: one for all, overridden per device, overridden per
/// transaction; each with the result message to send, if the test chose one.
#[derive(Debug, Clone)]
struct ResultCodes {
    default: ChosenResult,
    by_device: HashMap<DevEui, ChosenResult>,
    by_transaction: HashMap<u64, ChosenResult>,
}

/// A result a test chose: any code, known to the client crate or not, and the message to
/// send with it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChosenResult {
    pub(crate) code: DownstreamResultCode,
    pub(crate) message: Option<String>,
}

impl ChosenResult {
    fn success() -> Self {
        Self {
            code: DownstreamResultCode::Success,
            message: None,
        }
    }

    /// The result message: the chosen one, or one that says the failure was emulated.
    pub(crate) fn message(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| format!("emulated failure: {}", self.code))
    }
}

/// Frames recorded for tests, each bounded (see `records`).
#[derive(Default)]
struct Records {
    replies: Record<UpstreamReply>,
    received: Record<DownstreamRequest>,
    invalid_frames: u64,
}

pub(crate) struct HubState {
    peers: Vec<Peer>,
    /// Upstream connections between their 101 answer and their registration: a client
    /// may already see itself connected, so a send waits for them instead of failing.
    upstream_handshakes: usize,
    /// Stream connections registered so far, of both kinds.
    opened: u64,
    next_upstream: usize,
    records: Records,
    codes: ResultCodes,
    sent: SentLog,
    /// Each device's last acknowledged uplink: class A windows count from it.
    last_acked: HashMap<DevEui, Heard>,
    /// Downlinks whose DownstreamResult is not sent yet, by TransactionID, with when it
    /// will be: another downlink with one of these ids is refused.
    in_flight: HashMap<u64, Instant>,
    /// Replies naming a transaction the hub never sent.
    unknown_replies: u64,
    /// Threads waiting in [`Hub::wait_for`], so [`Hub::update`] wakes only when needed.
    waiters: usize,
}

/// Every live stream connection and what went over them.
pub(crate) struct Hub {
    pub(crate) state: Mutex<HubState>,
    /// Signalled on every new record and every connection change.
    changed: Condvar,
    next_id: AtomicU64,
    next_mailbox: AtomicU64,
    /// Most frames each record keeps.
    max_records: usize,
}

impl Hub {
    /// A hub whose records keep at most `max_records` frames each.
    pub(crate) fn new(max_records: usize) -> Self {
        Self {
            state: Mutex::new(HubState {
                peers: Vec::new(),
                upstream_handshakes: 0,
                opened: 0,
                next_upstream: 0,
                records: Records::default(),
                codes: ResultCodes {
                    default: ChosenResult::success(),
                    by_device: HashMap::new(),
                    by_transaction: HashMap::new(),
                },
                sent: SentLog::default(),
                last_acked: HashMap::new(),
                in_flight: HashMap::new(),
                unknown_replies: 0,
                waiters: 0,
            }),
            changed: Condvar::new(),
            next_id: AtomicU64::new(1),
            next_mailbox: AtomicU64::new(1),
            max_records,
        }
    }
    /// Waits until `ready` holds for the state or `timeout` passes; returns its last value.
    pub(crate) fn wait_for<T>(
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
            state.waiters += 1;
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            state.waiters -= 1;
        }
    }

    fn update<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        let mut state = lock(&self.state);
        let out = f(&mut state);
        // Waiters count themselves under the lock before they sleep, so none is missed;
        // with none, every reply and downlink skips a wake-up system call.
        let wake = state.waiters > 0;
        drop(state);
        if wake {
            self.changed.notify_all();
        }
        out
    }

    /// Sends one upstream frame, as given, to the next live upstream connection in
    /// turn; if it reads as an Upstream, it is remembered as heard now.
    pub(crate) fn send_upstream(&self, text: &str) -> Result<()> {
        match serde_json::from_str::<UpstreamMessage>(text) {
            Ok(msg) => self.send_tracked_all(&[(text.to_owned(), &msg)], Instant::now()),
            Err(_) => self.send_upstream_message(Message::text(text), true),
        }
    }

    /// Sends an Upstream the RAN heard at `heard_at`, and remembers it.
    pub(crate) fn send_upstream_tracked(
        &self,
        msg: &UpstreamMessage,
        heard_at: Instant,
    ) -> Result<()> {
        self.send_tracked_all(&[(upstream_json(msg), msg)], heard_at)
    }

    /// Sends Upstreams the RAN heard at `heard_at`, in order, with one hand-over to a
    /// connection for the lot, and remembers them.
    pub(crate) fn send_upstreams_tracked(
        &self,
        msgs: &[UpstreamMessage],
        heard_at: Instant,
    ) -> Result<()> {
        let frames: Vec<(String, &UpstreamMessage)> =
            msgs.iter().map(|m| (upstream_json(m), m)).collect();
        self.send_tracked_all(&frames, heard_at)
    }

    fn send_tracked_all(
        &self,
        frames: &[(String, &UpstreamMessage)],
        heard_at: Instant,
    ) -> Result<()> {
        {
            // Remembered first: an answer may come back before the send returns.
            let mut state = lock(&self.state);
            for (_, msg) in frames {
                let sent = SentUpstream {
                    heard_at,
                    dev_addr: data_uplink_dev_addr(&msg.phy_payload_no_mic),
                };
                state.sent.insert(msg.transaction_id, sent);
            }
        }
        let messages = frames.iter().map(|(text, _)| Message::text(text.as_str()));
        let (written, outcome) = self.send_upstream_messages(messages.collect(), true);
        if outcome.is_err() {
            let mut state = lock(&self.state);
            for (_, msg) in &frames[written..] {
                state.sent.remove(msg.transaction_id);
            }
        }
        outcome
    }

    /// Records an UpstreamAck or UpstreamReject; an ack makes its upstream the device's
    /// last acknowledged uplink. Returns the upstream it answers, `None` for a
    /// transaction the hub never sent (counted).
    /// The upstream sent with this transaction id, if the emulator sent it.
    fn sent_upstream(&self, transaction_id: u64) -> Option<SentUpstream> {
        lock(&self.state).sent.map.get(&transaction_id).copied()
    }

    fn on_reply(&self, reply: UpstreamReply, size: usize) -> Option<SentUpstream> {
        self.update(|s| {
            let sent = s.sent.map.get(&reply.transaction_id()).copied();
            match (&reply, sent) {
                (_, None) => s.unknown_replies += 1,
                (UpstreamReply::Ack(ack), Some(sent)) => {
                    let heard = Heard {
                        at: sent.heard_at,
                        transaction_id: reply.transaction_id(),
                    };
                    record_ack(&mut s.last_acked, ack.dev_eui, heard);
                }
                (UpstreamReply::Reject(_), Some(_)) => {}
            }
            s.records.replies.push(reply, size, self.max_records);
            sent
        })
    }

    pub(crate) fn unknown_replies(&self) -> u64 {
        lock(&self.state).unknown_replies
    }

    /// Sends any WebSocket message to the next live upstream connection in turn. With
    /// `retry`, a connection that fails is skipped for the next one; a hostile frame must
    /// not be, or it would go on to kill every reconnecting client in turn.
    pub(crate) fn send_upstream_message(&self, message: Message, retry: bool) -> Result<()> {
        self.send_upstream_messages(vec![message], retry).1
    }

    /// Sends messages in order to the next live upstream connection in turn, all to the
    /// same one unless it fails midway (then, with `retry`, the rest go to the next).
    /// Returns how many were written, and the failure that stopped the rest.
    fn send_upstream_messages(&self, messages: Vec<Message>, retry: bool) -> (usize, Result<()>) {
        let mut written = 0;
        while written < messages.len() {
            let next = self.wait_for(HANDSHAKE_GRACE, |state| {
                let upstream: Vec<(u64, Arc<Handle>)> = state
                    .peers
                    .iter()
                    .filter(|p| p.kind == Kind::Upstream && !p.handle.is_closed())
                    .map(|p| (p.id, p.handle.clone()))
                    .collect();
                if upstream.is_empty() {
                    return (state.upstream_handshakes == 0).then_some(None);
                }
                let i = state.next_upstream % upstream.len();
                state.next_upstream = state.next_upstream.wrapping_add(1);
                Some(Some(upstream[i].clone()))
            });
            let Some(Some((id, handle))) = next else {
                let none = Error::Closed("no upstream connection is open".into());
                return (written, Err(none));
            };
            let (n, outcome) = handle.send_all(messages[written..].iter().cloned());
            written += n;
            match outcome {
                Ok(()) => {}
                Err(e) if !retry => return (written, Err(e)),
                // That connection just died: the next one gets the rest.
                Err(e) => log::debug!("emulator: upstream connection {id} failed: {e}"),
            }
        }
        (written, Ok(()))
    }

    pub(crate) fn connections(&self, kind: Kind) -> usize {
        lock(&self.state)
            .peers
            .iter()
            .filter(|p| p.kind == kind && !p.handle.is_closed())
            .count()
    }

    pub(crate) fn wait_connections(&self, kind: Kind, n: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| {
            let live = s
                .peers
                .iter()
                .filter(|p| p.kind == kind && !p.handle.is_closed())
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
        for peer in lock(&self.state).peers.iter() {
            peer.handle.close();
        }
    }

    pub(crate) fn replies(&self) -> Vec<UpstreamReply> {
        lock(&self.state).records.replies.to_vec()
    }

    /// The frames recorded from one kind of stream (replies from the upstream ones,
    /// downlinks from the downstream ones) as a JSON list: from the `offset`th kept,
    /// at most `limit`, and `None` if that would pass `max_bytes`.
    pub(crate) fn recorded_json(
        &self,
        kind: Kind,
        offset: usize,
        limit: Option<usize>,
        max_bytes: usize,
    ) -> Option<Vec<u8>> {
        let state = lock(&self.state);
        let records = &state.records;
        match kind {
            Kind::Upstream => records.replies.json_page(offset, limit, max_bytes),
            Kind::Downstream => records.received.json_page(offset, limit, max_bytes),
        }
    }

    /// Recorded frames dropped, oldest first, to keep the records bounded, since they
    /// were last cleared.
    pub(crate) fn records_dropped(&self) -> u64 {
        let state = lock(&self.state);
        state.records.replies.dropped() + state.records.received.dropped()
    }

    pub(crate) fn wait_reply(&self, timeout: Duration) -> Option<UpstreamReply> {
        self.wait_for(timeout, |s| s.records.replies.take_next())
    }

    pub(crate) fn received(&self) -> Vec<DownstreamRequest> {
        lock(&self.state).records.received.to_vec()
    }

    pub(crate) fn wait_received(&self, timeout: Duration) -> Option<DownstreamRequest> {
        self.wait_for(timeout, |s| s.records.received.take_next())
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
        message: Option<String>,
        dev_eui: Option<DevEui>,
        transaction_id: Option<u64>,
    ) {
        let code = ChosenResult { code, message };
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
            s.codes.default = ChosenResult::success();
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
    if token.last().map(String::as_str) != Some(shared.config.token.expose()) {
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
    let id = shared.hub.next_id.fetch_add(1, Ordering::Relaxed);
    let started = conn::Conn::start(shared, kind, conn.stream, conn.buf).and_then(|c| {
        let tcp = c.tcp().try_clone()?;
        Ok((c, tcp))
    });
    let (connection, tcp) = match started {
        Ok(started) => started,
        Err(e) => {
            log::debug!("emulator: {} connection failed: {e}", kind.name());
            return;
        }
    };
    shared.hub.add(Peer {
        id,
        kind,
        handle: connection.handle(),
        tcp,
    });
    drop(pending);
    log::debug!("emulator: {} connection {id} open", kind.name());
    let reason = connection.run();
    shared.hub.remove(id);
    log::debug!("emulator: {} connection {id} ended: {reason}", kind.name());
}

/// Reads one frame an LNS sent: records and judges replies, answers downlinks; a frame
/// that is not a valid message is logged and counted.
fn handle_frame(shared: &Shared, kind: Kind, frame: &[u8]) -> Vec<Answer> {
    match kind {
        Kind::Upstream => match frames::upstream_reply(frame) {
            Ok(reply) => {
                // The first uplink a device sends from its target address switches its
                // security context. It switches before the verdict and the reply are
                // recorded, so whoever waits for either sees the new context.
                let transaction_id = reply.transaction_id();
                if let (UpstreamReply::Ack(ack), Some(sent)) =
                    (&reply, shared.hub.sent_upstream(transaction_id))
                {
                    if let Some(addr) = sent.dev_addr {
                        if lock(&shared.store).switch_context(ack.dev_eui, addr) {
                            log::info!(
                                "emulator: device {} sent its first uplink from {addr}: \
                                 now its active DevAddr",
                                ack.dev_eui
                            );
                        }
                    }
                }
                // The ack times the device's class A windows before its verdict shows:
                // whoever waits for the verdict may then send a downlink timed from it.
                let known = shared.hub.on_reply(reply.clone(), frame.len()).is_some();
                shared.radio.check(&reply);
                if !known {
                    static UNKNOWN: Warning = Warning::new(WARNING_PERIOD);
                    UNKNOWN.warn(|| {
                        format!(
                            "emulator: an upstream reply names transaction {transaction_id}, \
                             which the emulator never sent"
                        )
                    });
                }
                Vec::new()
            }
            Err(e) => {
                invalid(shared, kind, frame, &e);
                Vec::new()
            }
        },
        Kind::Downstream => match frames::downstream_request(frame) {
            Ok(request) => answer_downstream(shared, request, frame.len()),
            Err(e) => {
                invalid(shared, kind, frame, &e);
                // A downlink that breaks a value rule but names its transaction is
                // answered, so the LNS sees why it went nowhere: `WindowNotFound` for a
                // bad transmission window, `GatewayError` for anything else.
                let Some(transaction_id) = frames::transaction_id_of(frame) else {
                    return Vec::new();
                };
                let code = if e.starts_with("TxWindow") {
                    DownstreamResultCode::WindowNotFound
                } else {
                    DownstreamResultCode::GatewayError
                };
                let mailbox_id = shared.hub.next_mailbox.fetch_add(1, Ordering::Relaxed);
                vec![Answer {
                    at: None,
                    text: frames::downstream_result(
                        transaction_id,
                        &code,
                        &format!("invalid Downstream, not sent: {e}"),
                        mailbox_id,
                    ),
                }]
            }
        },
    }
}

fn invalid(shared: &Shared, kind: Kind, frame: &[u8], why: &str) {
    static INVALID: Warning = Warning::new(WARNING_PERIOD);
    INVALID.warn(|| {
        let text = String::from_utf8_lossy(&frame[..frame.len().min(200)]);
        format!(
            "emulator: ignoring an invalid {} frame ({why}): {text}",
            kind.name()
        )
    });
    shared.hub.invalid();
}

/// Records a downlink; returns its DownstreamAck (at once) and DownstreamResult (when
/// the transmission would end, with the timing rule on).
fn answer_downstream(shared: &Shared, request: DownstreamRequest, size: usize) -> Vec<Answer> {
    let arrival = Instant::now();
    let transaction_id = request.transaction_id();
    shared.hub.update(|s| {
        s.records
            .received
            .push(request.clone(), size, shared.hub.max_records)
    });
    let mailbox_id = shared.hub.next_mailbox.fetch_add(1, Ordering::Relaxed);
    let judged = judge::judge(shared, &request, arrival);
    vec![
        Answer {
            at: None,
            text: frames::downstream_ack(transaction_id, mailbox_id),
        },
        Answer {
            at: judged.at,
            text: frames::downstream_result(
                transaction_id,
                &judged.code,
                &judged.message,
                mailbox_id,
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_naming_ever_new_devices_keep_the_last_acked_map_bounded() {
        let mut last_acked = HashMap::new();
        let start = Instant::now();
        let n = 3 * LAST_ACKED as u64;
        for i in 0..n {
            let heard = Heard {
                at: start + Duration::from_micros(i),
                transaction_id: i,
            };
            record_ack(&mut last_acked, DevEui::new(i), heard);
            assert!(last_acked.len() <= LAST_ACKED);
        }
        // The newest acks are the ones kept.
        assert_eq!(last_acked[&DevEui::new(n - 1)].transaction_id, n - 1);
        assert!(last_acked.len() > LAST_ACKED / 2);
        // A device acked again keeps its newest uplink.
        let old = Heard {
            at: start,
            transaction_id: 0,
        };
        record_ack(&mut last_acked, DevEui::new(n - 1), old);
        assert_eq!(last_acked[&DevEui::new(n - 1)].transaction_id, n - 1);
    }
}
