//! Observability: counters, gauges and health of the stream connections and the REST
//! calls, and their publication through `metrics` (the crate docs list the names).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use crate::error::{ApiError, Error};
use crate::model::{DownstreamResultCode, UpstreamRejectResultCode};
use crate::stream::CloseReason;

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

// ---------------------------------------------------------------------------------------
// Streams

const REJECT_CODES: usize = 3;
const RESULT_CODES: usize = 7;

fn reject_index(code: &UpstreamRejectResultCode) -> usize {
    match code {
        UpstreamRejectResultCode::MicFailed => 0,
        UpstreamRejectResultCode::Other => 1,
        _ => 2,
    }
}

#[cfg(feature = "metrics")]
const REJECT_LABELS: [&str; REJECT_CODES] = ["MICFailed", "Other", "unknown"];

fn result_index(code: &DownstreamResultCode) -> usize {
    match code {
        DownstreamResultCode::Success => 0,
        DownstreamResultCode::WindowNotFound => 1,
        DownstreamResultCode::GatewayNotFound => 2,
        DownstreamResultCode::TooLate => 3,
        DownstreamResultCode::NoAck => 4,
        DownstreamResultCode::GatewayError => 5,
        _ => 6,
    }
}

#[cfg(feature = "metrics")]
const RESULT_LABELS: [&str; RESULT_CODES] = [
    "Success",
    "WindowNotFound",
    "GatewayNotFound",
    "TooLate",
    "NoAck",
    "GatewayError",
    "unknown",
];

/// Keeps what one thread writes off the cache lines other threads write: the reader,
/// the consumers and the senders each count on their own lines, so counting adds no
/// cache-line ping-pong between them.
#[repr(align(128))]
#[derive(Default)]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Written by the reader thread.
#[derive(Default)]
struct Reading {
    frames_received: AtomicU64,
    frames_skipped: AtomicU64,
    bytes_in: AtomicU64,
    /// Microseconds since `epoch` of the last message frame, plus one; 0: none yet.
    last_frame: AtomicU64,
    downstream_acks: AtomicU64,
    results: [AtomicU64; RESULT_CODES],
}

/// Written by the threads that send.
#[derive(Default)]
struct Sending {
    bytes_out: AtomicU64,
    acks_sent: AtomicU64,
    rejects_sent: [AtomicU64; REJECT_CODES],
    unicast_sent: AtomicU64,
    multicast_sent: AtomicU64,
    send_errors: AtomicU64,
}

/// The live counters of one stream connection, shared by its threads.
pub(crate) struct StreamCounters {
    stream: &'static str,
    epoch: Instant,
    reading: Line<Reading>,
    /// Written by the threads that receive.
    handed_out: Line<AtomicU64>,
    sending: Line<Sending>,
    reconnections: AtomicU64,
    /// A link is up: keeps the published `connected` gauge balanced.
    up: AtomicBool,
    #[cfg(feature = "metrics")]
    metrics: published::StreamMetrics,
}

impl StreamCounters {
    pub(crate) fn new(stream: &'static str) -> Self {
        Self {
            stream,
            epoch: Instant::now(),
            reading: Line::default(),
            handed_out: Line::default(),
            sending: Line::default(),
            reconnections: AtomicU64::new(0),
            up: AtomicBool::new(false),
            #[cfg(feature = "metrics")]
            metrics: published::StreamMetrics::new(stream),
        }
    }

    /// A message frame of `bytes` came in (decoded or not).
    #[inline]
    pub(crate) fn frame_received(&self, bytes: usize) {
        self.reading.frames_received.fetch_add(1, Relaxed);
        self.reading.bytes_in.fetch_add(bytes as u64, Relaxed);
        let at = self.epoch.elapsed().as_micros() as u64 + 1;
        self.reading.last_frame.store(at, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.frame_received(bytes);
    }

    /// The frame did not decode and was skipped.
    #[inline]
    pub(crate) fn frame_skipped(&self) {
        self.reading.frames_skipped.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.frames_skipped.increment(1);
    }

    /// A decoded message goes to the channel for the application.
    #[inline]
    pub(crate) fn queued(&self) {
        #[cfg(feature = "metrics")]
        self.metrics.waiting.increment(1.0);
    }

    /// The application took a message from the channel.
    #[inline]
    pub(crate) fn dequeued(&self) {
        self.handed_out.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        {
            self.metrics.handed_out.increment(1);
            self.metrics.waiting.decrement(1.0);
        }
    }

    /// The connection itself took a message from the channel: a duplicate uplink it
    /// answers on the application's behalf (not handed out).
    #[inline]
    pub(crate) fn taken_by_connection(&self) {
        #[cfg(feature = "metrics")]
        self.metrics.waiting.decrement(1.0);
    }

    /// A waiting sender took a reply routed to it (it never was in the channel).
    #[inline]
    pub(crate) fn handed_to_waiter(&self) {
        self.handed_out.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.handed_out.increment(1);
    }

    /// A message of `bytes` was written.
    #[inline]
    pub(crate) fn sent(&self, bytes: usize) {
        self.sending.bytes_out.fetch_add(bytes as u64, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.bytes_out.increment(bytes as u64);
    }

    #[inline]
    pub(crate) fn send_failed(&self) {
        self.sending.send_errors.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.send_errors.increment(1);
    }

    #[inline]
    pub(crate) fn ack_sent(&self) {
        self.sending.acks_sent.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.acks_sent.increment(1);
    }

    #[inline]
    pub(crate) fn reject_sent(&self, code: &UpstreamRejectResultCode) {
        let i = reject_index(code);
        self.sending.rejects_sent[i].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.rejects_sent[i].increment(1);
    }

    #[inline]
    pub(crate) fn downlink_sent(&self, multicast: bool) {
        if multicast {
            self.sending.multicast_sent.fetch_add(1, Relaxed);
        } else {
            self.sending.unicast_sent.fetch_add(1, Relaxed);
        }
        #[cfg(feature = "metrics")]
        self.metrics.downlinks_sent[multicast as usize].increment(1);
    }

    #[inline]
    pub(crate) fn downstream_ack_received(&self) {
        self.reading.downstream_acks.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.acks_received.increment(1);
    }

    #[inline]
    pub(crate) fn result_received(&self, code: &DownstreamResultCode) {
        let i = result_index(code);
        self.reading.results[i].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.results[i].increment(1);
    }

    /// A link came up; `reconnect` when it replaced a failed one.
    pub(crate) fn connected(&self, reconnect: bool) {
        if reconnect {
            self.reconnections.fetch_add(1, Relaxed);
            #[cfg(feature = "metrics")]
            self.metrics.reconnections.increment(1);
        }
        if !self.up.swap(true, Relaxed) {
            #[cfg(feature = "metrics")]
            self.metrics.connected.increment(1.0);
        }
    }

    /// The link that was up went down (idempotent).
    pub(crate) fn disconnected(&self) {
        if self.up.swap(false, Relaxed) {
            #[cfg(feature = "metrics")]
            self.metrics.connected.decrement(1.0);
        }
    }

    /// The connection is gone: what still waited in its channel waits no more.
    pub(crate) fn dropped(&self, waiting: usize) {
        #[cfg(feature = "metrics")]
        self.metrics.waiting.decrement(waiting as f64);
        let _ = waiting;
    }

    pub(crate) fn stream(&self) -> &'static str {
        self.stream
    }

    pub(crate) fn since_last_frame(&self) -> Option<Duration> {
        match self.reading.last_frame.load(Relaxed) {
            0 => None,
            at => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_micros(at - 1)),
            ),
        }
    }

    pub(crate) fn snapshot(&self, connected: bool, waiting: usize) -> StreamStats {
        let get = |a: &AtomicU64| a.load(Relaxed);
        let r = &self.sending.rejects_sent;
        let d = &self.reading.results;
        StreamStats {
            stream: self.stream,
            frames_received: get(&self.reading.frames_received),
            frames_skipped: get(&self.reading.frames_skipped),
            messages_handed_out: get(&self.handed_out),
            bytes_received: get(&self.reading.bytes_in),
            bytes_sent: get(&self.sending.bytes_out),
            acks_sent: get(&self.sending.acks_sent),
            rejects_sent: RejectCounts {
                mic_failed: get(&r[0]),
                other: get(&r[1]),
                unknown: get(&r[2]),
            },
            downlinks_sent: get(&self.sending.unicast_sent),
            multicast_downlinks_sent: get(&self.sending.multicast_sent),
            downstream_acks_received: get(&self.reading.downstream_acks),
            results_received: ResultCounts {
                success: get(&d[0]),
                window_not_found: get(&d[1]),
                gateway_not_found: get(&d[2]),
                too_late: get(&d[3]),
                no_ack: get(&d[4]),
                gateway_error: get(&d[5]),
                unknown: get(&d[6]),
            },
            send_errors: get(&self.sending.send_errors),
            reconnections: get(&self.reconnections),
            connected,
            waiting,
            since_last_frame: self.since_last_frame(),
            awaiting_results: 0,
            dedup: None,
        }
    }
}

/// Upstream rejects sent, by result code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RejectCounts {
    /// `MICFailed`.
    pub mic_failed: u64,
    /// `Other`.
    pub other: u64,
    /// Any code this crate does not know.
    pub unknown: u64,
}

impl RejectCounts {
    /// All rejects.
    pub fn total(&self) -> u64 {
        self.mic_failed + self.other + self.unknown
    }
}

/// Downstream results received, by result code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResultCounts {
    /// `Success`.
    pub success: u64,
    /// `WindowNotFound`.
    pub window_not_found: u64,
    /// `GatewayNotFound`.
    pub gateway_not_found: u64,
    /// `TooLate`.
    pub too_late: u64,
    /// `NoAck`.
    pub no_ack: u64,
    /// `GatewayError`.
    pub gateway_error: u64,
    /// Any code this crate does not know.
    pub unknown: u64,
}

impl ResultCounts {
    /// All results.
    pub fn total(&self) -> u64 {
        self.success
            + self.window_not_found
            + self.gateway_not_found
            + self.too_late
            + self.no_ack
            + self.gateway_error
            + self.unknown
    }

    /// Results other than `Success`.
    pub fn failed(&self) -> u64 {
        self.total() - self.success
    }
}

/// A snapshot of one stream connection's counters, from
/// [`Connection::stats`](crate::Connection::stats).
///
/// Counters run from the connection's opening, across reconnections. Fields that do not
/// apply to a stream stay 0 (no acks are sent on the downstream). Once nothing is in
/// flight, `frames_received == frames_skipped + messages_handed_out + waiting`.
///
/// ```no_run
/// # let ran = ran_routing::Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
/// let upstream = ran.upstream().connect()?;
/// let stats = upstream.stats();
/// println!("{stats}");
/// println!("{}", serde_json::to_string(&stats).unwrap());
/// # Ok::<(), ran_routing::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StreamStats {
    /// `"upstream"` or `"downstream"`.
    pub stream: &'static str,
    /// Message frames read from the server (text or binary), decodable or not.
    pub frames_received: u64,
    /// Frames that did not decode as a message: logged and skipped.
    pub frames_skipped: u64,
    /// Messages taken by the application: through the receiving methods, or by a
    /// `send_and_wait` waiting for them.
    pub messages_handed_out: u64,
    /// Payload bytes of the message frames received.
    pub bytes_received: u64,
    /// Payload bytes of the messages sent.
    pub bytes_sent: u64,
    /// Upstream acks sent.
    pub acks_sent: u64,
    /// Upstream rejects sent, by code.
    pub rejects_sent: RejectCounts,
    /// Unicast downlinks sent.
    pub downlinks_sent: u64,
    /// Multicast downlinks sent.
    pub multicast_downlinks_sent: u64,
    /// Downstream acks received.
    pub downstream_acks_received: u64,
    /// Downstream results received, by code.
    pub results_received: ResultCounts,
    /// Sends that failed although the message was valid: not connected, closed, or the
    /// write failed. (An invalid message is refused before it counts as a send.)
    pub send_errors: u64,
    /// Times the connection was replaced after a failure.
    pub reconnections: u64,
    /// Whether the WebSocket is up now.
    pub connected: bool,
    /// Received messages waiting for the application now.
    pub waiting: usize,
    /// Time since the last message frame arrived; `None` before the first one. Serialized
    /// in seconds.
    #[serde(serialize_with = "opt_secs")]
    pub since_last_frame: Option<Duration>,
    /// Downlinks sent whose result is awaited now, by `send_and_wait` or a
    /// [`DownlinkTracker`](crate::DownlinkTracker) (downstream only).
    pub awaiting_results: usize,
    /// De-duplication's counters, when it is on
    /// ([`StreamBuilder::dedup`](crate::StreamBuilder::dedup)).
    pub dedup: Option<crate::DedupStats>,
}

impl fmt::Display for StreamStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} frames in ({} skipped, {} handed out, {} waiting)",
            self.stream,
            self.frames_received,
            self.frames_skipped,
            self.messages_handed_out,
            self.waiting
        )?;
        if self.acks_sent + self.rejects_sent.total() > 0 {
            write!(
                f,
                ", {} acks / {} rejects sent",
                self.acks_sent,
                self.rejects_sent.total()
            )?;
        }
        if let Some(dedup) = &self.dedup {
            write!(
                f,
                ", {} duplicates ({} answered, {} expired unanswered)",
                dedup.duplicates, dedup.answered, dedup.expired_unanswered
            )?;
        }
        if self.awaiting_results > 0 {
            write!(f, ", {} downlinks awaiting results", self.awaiting_results)?;
        }
        if self.downlinks_sent + self.multicast_downlinks_sent > 0
            || self.downstream_acks_received + self.results_received.total() > 0
        {
            write!(
                f,
                ", {} + {} multicast downlinks sent, {} acks / {} results ({} failed) received",
                self.downlinks_sent,
                self.multicast_downlinks_sent,
                self.downstream_acks_received,
                self.results_received.total(),
                self.results_received.failed()
            )?;
        }
        write!(
            f,
            ", {} send errors, {} reconnections, {}",
            self.send_errors,
            self.reconnections,
            if self.connected { "up" } else { "down" }
        )?;
        if let Some(age) = self.since_last_frame {
            write!(f, ", last frame {:.1}s ago", age.as_secs_f64())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Health

/// Where a stream connection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    /// The WebSocket is up.
    Connected,
    /// The last link failed; reconnection is under way.
    Reconnecting {
        /// The attempt under way or waiting for its delay (1 for the first retry).
        attempt: u32,
    },
    /// The connection ended for good.
    Closed {
        /// Why.
        #[serde(serialize_with = "reason_text")]
        reason: CloseReason,
    },
}

fn reason_text<S: Serializer>(r: &CloseReason, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionState::Connected => f.write_str("connected"),
            ConnectionState::Reconnecting { attempt } => {
                write!(f, "reconnecting (attempt {attempt})")
            }
            ConnectionState::Closed { reason } => write!(f, "closed ({reason})"),
        }
    }
}

/// The health of one stream connection, from
/// [`Connection::health`](crate::Connection::health).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConnectionHealth {
    /// `"upstream"` or `"downstream"`.
    pub stream: &'static str,
    /// Connected, reconnecting or closed.
    #[serde(flatten)]
    pub state: ConnectionState,
    /// Time since the last message frame arrived; `None` before the first one. A quiet
    /// stream can be healthy (keepalive pings do not count here): judge it against the
    /// traffic you expect. Serialized in seconds.
    #[serde(serialize_with = "opt_secs")]
    pub since_last_frame: Option<Duration>,
}

impl ConnectionHealth {
    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.state == ConnectionState::Connected
    }
}

impl fmt::Display for ConnectionHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.stream, self.state)?;
        if let Some(age) = self.since_last_frame {
            write!(f, ", last frame {:.1}s ago", age.as_secs_f64())?;
        }
        Ok(())
    }
}

/// The health of every live stream connection a [`Core`](crate::Core) opened, from
/// [`Core::health`](crate::Core::health).
///
/// ```no_run
/// # let ran = ran_routing::Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
/// let upstream = ran.upstream().connect()?;
/// let health = ran.health();
/// // e.g. a readiness probe: 200 when ready, 503 with the one-liner otherwise.
/// let (status, body) = if health.is_ready() { (200, "ok".to_owned()) } else { (503, health.to_string()) };
/// # let _ = (status, body, upstream);
/// # Ok::<(), ran_routing::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// One entry per connection that has not been dropped, in the order they were opened.
    pub connections: Vec<ConnectionHealth>,
}

impl Health {
    /// Ready: at least one stream connection, and every one of them connected. A
    /// connection that is reconnecting or closed (even by a local close) makes the LNS
    /// not ready; drop connections you closed on purpose.
    pub fn is_ready(&self) -> bool {
        !self.connections.is_empty() && self.connections.iter().all(|c| c.is_connected())
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_ready() {
            "ready"
        } else {
            "not ready"
        })?;
        if self.connections.is_empty() {
            return f.write_str(": no stream connection");
        }
        for (i, c) in self.connections.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// REST

/// A REST operation of the API, as counted in [`RestStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RestOperation {
    /// `devices/insert`.
    Insert,
    /// `devices/select`.
    Select,
    /// `devices/update`.
    Update,
    /// `devices/drop`.
    Delete,
    /// `devices/drop-all`.
    DeleteAll,
    /// `multicast-groups/create`.
    MulticastCreate,
    /// `multicast-groups/get`.
    MulticastGet,
    /// `multicast-groups/update`.
    MulticastUpdate,
    /// `multicast-groups/delete`.
    MulticastDelete,
    /// `multicast-groups/add-device`.
    MulticastAddDevice,
    /// `multicast-groups/remove-device`.
    MulticastRemoveDevice,
}

const OPERATIONS: usize = 11;

impl RestOperation {
    /// Every operation, in index order.
    pub const ALL: [RestOperation; OPERATIONS] = [
        RestOperation::Insert,
        RestOperation::Select,
        RestOperation::Update,
        RestOperation::Delete,
        RestOperation::DeleteAll,
        RestOperation::MulticastCreate,
        RestOperation::MulticastGet,
        RestOperation::MulticastUpdate,
        RestOperation::MulticastDelete,
        RestOperation::MulticastAddDevice,
        RestOperation::MulticastRemoveDevice,
    ];

    /// The name in [`RestStats`] and in the `operation` label: `insert`, `select`,
    /// `update`, `delete`, `delete_all`, `multicast_create`, `multicast_get`,
    /// `multicast_update`, `multicast_delete`, `multicast_add_device`,
    /// `multicast_remove_device`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RestOperation::Insert => "insert",
            RestOperation::Select => "select",
            RestOperation::Update => "update",
            RestOperation::Delete => "delete",
            RestOperation::DeleteAll => "delete_all",
            RestOperation::MulticastCreate => "multicast_create",
            RestOperation::MulticastGet => "multicast_get",
            RestOperation::MulticastUpdate => "multicast_update",
            RestOperation::MulticastDelete => "multicast_delete",
            RestOperation::MulticastAddDevice => "multicast_add_device",
            RestOperation::MulticastRemoveDevice => "multicast_remove_device",
        }
    }

    /// The operation of a REST path (below its service's base).
    pub(crate) fn from_path(path: &str) -> Option<RestOperation> {
        Some(match path {
            "devices/insert" => RestOperation::Insert,
            "devices/select" => RestOperation::Select,
            "devices/update" => RestOperation::Update,
            "devices/drop" => RestOperation::Delete,
            "devices/drop-all" => RestOperation::DeleteAll,
            "multicast-groups/create" => RestOperation::MulticastCreate,
            "multicast-groups/get" => RestOperation::MulticastGet,
            "multicast-groups/update" => RestOperation::MulticastUpdate,
            "multicast-groups/delete" => RestOperation::MulticastDelete,
            "multicast-groups/add-device" => RestOperation::MulticastAddDevice,
            "multicast-groups/remove-device" => RestOperation::MulticastRemoveDevice,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RestOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The API error codes counted one by one; anything else is `unknown`.
const API_CODES: [&str; 9] = [
    "Unauthorized",
    "ValidationFailed",
    "Device.AlreadyExists",
    "Device.NotFound",
    "Device.LimitExhausted",
    "MulticastGroup.AlreadyExists",
    "MulticastGroup.NotFound",
    "MulticastGroup.AlreadyContainsTheDevice",
    "unknown",
];

fn api_index(e: &ApiError) -> usize {
    match e {
        ApiError::Unauthorized { .. } => 0,
        ApiError::ValidationFailed { .. } => 1,
        ApiError::DeviceAlreadyExists { .. } => 2,
        ApiError::DeviceNotFound { .. } => 3,
        ApiError::DevicesLimitExhausted { .. } => 4,
        ApiError::MulticastGroupAlreadyExists { .. } => 5,
        ApiError::MulticastGroupNotFound { .. } => 6,
        ApiError::MulticastGroupAlreadyContainsDevice { .. } => 7,
        _ => 8,
    }
}

/// Outcome slots: ok, the API codes, transport, decode.
const OUTCOMES: usize = 1 + API_CODES.len() + 2;
const OK: usize = 0;
const TRANSPORT: usize = 1 + API_CODES.len();
const DECODE: usize = TRANSPORT + 1;

/// The outcome of one REST call that went to the network.
pub(crate) enum Outcome<'a> {
    Ok,
    Failed(&'a Error),
}

fn outcome_index(outcome: &Outcome<'_>) -> usize {
    match outcome {
        Outcome::Ok => OK,
        Outcome::Failed(Error::Api(e)) => 1 + api_index(e),
        Outcome::Failed(Error::Decode { .. }) => DECODE,
        Outcome::Failed(_) => TRANSPORT,
    }
}

#[cfg(feature = "metrics")]
fn outcome_label(i: usize) -> &'static str {
    match i {
        OK => "ok",
        TRANSPORT => "transport",
        DECODE => "decode",
        i => API_CODES[i - 1],
    }
}

/// The live REST counters of a `Core` and its clones.
pub(crate) struct RestCounters {
    calls: [[AtomicU64; OUTCOMES]; OPERATIONS],
    micros: [AtomicU64; OPERATIONS],
}

impl RestCounters {
    pub(crate) fn new() -> Self {
        Self {
            calls: Default::default(),
            micros: Default::default(),
        }
    }

    /// Counts a call of `op` that took `elapsed`.
    pub(crate) fn record(&self, op: RestOperation, outcome: Outcome<'_>, elapsed: Duration) {
        let o = outcome_index(&outcome);
        self.calls[op.index()][o].fetch_add(1, Relaxed);
        self.micros[op.index()].fetch_add(elapsed.as_micros() as u64, Relaxed);
        #[cfg(feature = "metrics")]
        {
            // Not a hot path: a REST call costs a round trip, a registry look-up is noise.
            metrics::counter!(
                "ran_routing_rest_requests_total",
                "operation" => op.as_str(),
                "outcome" => outcome_label(o),
            )
            .increment(1);
            metrics::histogram!(
                "ran_routing_rest_request_duration_seconds",
                "operation" => op.as_str(),
            )
            .record(elapsed.as_secs_f64());
        }
    }

    pub(crate) fn snapshot(&self) -> RestStats {
        let operations = RestOperation::ALL
            .iter()
            .map(|op| {
                let c = &self.calls[op.index()];
                let get = |i: usize| c[i].load(Relaxed);
                let api_errors = API_CODES
                    .iter()
                    .enumerate()
                    .map(|(i, code)| (*code, get(1 + i)))
                    .filter(|(_, n)| *n > 0)
                    .collect::<BTreeMap<_, _>>();
                let stats = RestOperationStats {
                    calls: (0..OUTCOMES).map(get).sum(),
                    ok: get(OK),
                    api_errors,
                    transport_errors: get(TRANSPORT),
                    decode_errors: get(DECODE),
                    total_time: Duration::from_micros(self.micros[op.index()].load(Relaxed)),
                };
                (op.as_str(), stats)
            })
            .collect();
        RestStats { operations }
    }
}

/// The REST calls of one operation, in [`RestStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestOperationStats {
    /// Calls that went to the network (a call refused before, for bad input or a closed
    /// `Core`, is not counted).
    pub calls: u64,
    /// Calls answered with success.
    pub ok: u64,
    /// Calls the API answered with an error, by its error code
    /// ([`ApiError::code`], or `unknown`); only codes seen are listed.
    pub api_errors: BTreeMap<&'static str, u64>,
    /// Calls that failed in transport: connect, TLS, timeout, I/O.
    pub transport_errors: u64,
    /// Calls answered with success whose body did not decode.
    pub decode_errors: u64,
    /// Time spent in all the calls, from the request to the answer's last byte.
    /// Serialized in seconds.
    #[serde(serialize_with = "secs")]
    pub total_time: Duration,
}

impl RestOperationStats {
    /// Calls that failed, for any reason.
    pub fn errors(&self) -> u64 {
        self.calls - self.ok
    }

    /// The mean time of a call; `None` before the first.
    pub fn mean_time(&self) -> Option<Duration> {
        (self.calls > 0).then(|| self.total_time / self.calls as u32)
    }
}

/// A snapshot of a `Core`'s REST calls, from [`Core::rest_stats`](crate::Core::rest_stats):
/// counted since the `Core` was built, over all its clones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestStats {
    /// Every operation by [its name](RestOperation::as_str), called or not.
    pub operations: BTreeMap<&'static str, RestOperationStats>,
}

impl RestStats {
    /// The counters of `op`.
    pub fn operation(&self, op: RestOperation) -> &RestOperationStats {
        &self.operations[op.as_str()]
    }

    /// Calls of every operation.
    pub fn calls(&self) -> u64 {
        self.operations.values().map(|o| o.calls).sum()
    }

    /// Failed calls of every operation.
    pub fn errors(&self) -> u64 {
        self.operations.values().map(|o| o.errors()).sum()
    }
}

impl fmt::Display for RestStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time: Duration = self.operations.values().map(|o| o.total_time).sum();
        write!(
            f,
            "rest: {} calls, {} failed, {:.3}s total",
            self.calls(),
            self.errors(),
            time.as_secs_f64()
        )
    }
}

#[cfg(feature = "metrics")]
mod published {
    use metrics::{counter, gauge, Counter, Gauge};

    use super::{REJECT_CODES, REJECT_LABELS, RESULT_CODES, RESULT_LABELS};

    /// Handles registered once per connection, so a count costs what the recorder's
    /// handle costs (an atomic add for the usual exporters), with no look-up.
    pub(super) struct StreamMetrics {
        frames_received: Counter,
        pub(super) frames_skipped: Counter,
        pub(super) handed_out: Counter,
        bytes_in: Counter,
        pub(super) bytes_out: Counter,
        pub(super) send_errors: Counter,
        pub(super) reconnections: Counter,
        pub(super) connected: Gauge,
        pub(super) waiting: Gauge,
        last_frame: Gauge,
        pub(super) acks_sent: Counter,
        pub(super) rejects_sent: [Counter; REJECT_CODES],
        pub(super) downlinks_sent: [Counter; 2],
        pub(super) acks_received: Counter,
        pub(super) results: [Counter; RESULT_CODES],
    }

    impl StreamMetrics {
        pub(super) fn new(stream: &'static str) -> Self {
            let upstream = stream == "upstream";
            // Each stream registers only its own families, so an exporter does not show
            // upstream series with a downstream label.
            let only = |yes: bool, make: &dyn Fn() -> Counter| {
                if yes {
                    make()
                } else {
                    Counter::noop()
                }
            };
            Self {
                frames_received: counter!("ran_routing_stream_frames_received_total", "stream" => stream),
                frames_skipped: counter!("ran_routing_stream_frames_skipped_total", "stream" => stream),
                handed_out: counter!("ran_routing_stream_messages_handed_out_total", "stream" => stream),
                bytes_in: counter!("ran_routing_stream_received_bytes_total", "stream" => stream),
                bytes_out: counter!("ran_routing_stream_sent_bytes_total", "stream" => stream),
                send_errors: counter!("ran_routing_stream_send_errors_total", "stream" => stream),
                reconnections: counter!("ran_routing_stream_reconnections_total", "stream" => stream),
                connected: gauge!("ran_routing_stream_connected", "stream" => stream),
                waiting: gauge!("ran_routing_stream_messages_waiting", "stream" => stream),
                last_frame: gauge!("ran_routing_stream_last_frame_timestamp_seconds", "stream" => stream),
                acks_sent: only(upstream, &|| counter!("ran_routing_upstream_acks_sent_total")),
                rejects_sent: REJECT_LABELS.map(|code| {
                    only(upstream, &|| {
                        counter!("ran_routing_upstream_rejects_sent_total", "code" => code)
                    })
                }),
                downlinks_sent: ["unicast", "multicast"].map(|kind| {
                    only(!upstream, &|| {
                        counter!("ran_routing_downstream_downlinks_sent_total", "kind" => kind)
                    })
                }),
                acks_received: only(!upstream, &|| {
                    counter!("ran_routing_downstream_acks_received_total")
                }),
                results: RESULT_LABELS.map(|code| {
                    only(!upstream, &|| {
                        counter!("ran_routing_downstream_results_received_total", "code" => code)
                    })
                }),
            }
        }

        #[inline]
        pub(super) fn frame_received(&self, bytes: usize) {
            self.frames_received.increment(1);
            self.bytes_in.increment(bytes as u64);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_frame.set(now);
        }
    }
}
