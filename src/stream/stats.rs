//! Counters and gauges of the stream connections, and their publication through
//! `metrics` (the crate docs list the names).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use crate::model::{DownstreamResultCode, UpstreamRejectResultCode};

/// A duration as seconds, `None` as null.
pub(super) fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

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
/// [`UpstreamConnection::stats`](crate::UpstreamConnection::stats) (and the downstream's).
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
    pub dedup: Option<DedupStats>,
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

/// Counters of uplink de-duplication; see
/// [`UpstreamConnection::dedup_stats`](crate::UpstreamConnection::dedup_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DedupStats {
    /// Duplicate copies received (never handed to the application).
    pub duplicates: u64,
    /// Duplicates answered after the application's ack of the first copy: the same ack,
    /// or a `MICFailed` reject where that ack does not fit the copy.
    pub answered: u64,
    /// Duplicates rejected with `Other` because the first copy was not answered in
    /// time ([`Dedup::answer_within`](crate::Dedup::answer_within)).
    pub expired_unanswered: u64,
    /// Uplinks handed out unremembered because [`Dedup::max_entries`](crate::Dedup::max_entries) was reached.
    pub cap_hits: u64,
    /// Copies handed to the application because their first copy was rejected.
    pub after_reject: u64,
    /// Uplinks handed out unremembered: longer than [`Dedup::MAX_PAYLOAD`](crate::Dedup::MAX_PAYLOAD).
    pub oversized: u64,
    /// Failed calls to the Redis store of `dedup_in`, each followed by in-process de-dup.
    pub store_failures: u64,
    /// Uplinks remembered now.
    pub entries: usize,
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
