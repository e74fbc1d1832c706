//! The stream engine (see `ARCHITECTURE.md`): per connection one WebSocket at a time (a
//! [`link`]) whose reader thread delivers decoded messages over a bounded channel, and
//! the session's thread that runs the link's writer loop and reconnects. Consumers only
//! take from the channel; senders write on their own threads under the socket lock.
//! [`Connection`] takes its typed forms in `upstream` and `downstream`.
//!
//! The rest of the crate uses this small surface only:
//! - [`Hook`] and [`HookFactory`]: a layer on a connection's traffic (de-duplication);
//! - [`Outlet`]: sends on a connection without owning it, through the one counted send
//!   path ([`send_counted`]), and says why the connection ended (the tracker);
//! - [`correlate::Correlator`]: routes replies to the threads that wait for them;
//! - [`Connection::tracking_parts`] and [`Connection::hook`].

mod builder;
pub(crate) mod connect;
pub(crate) mod correlate;
mod face;
mod frame;
mod handover;
mod health;
mod hook;
mod inbox;
mod link;
mod outlet;
mod read;
mod reconnect;
mod session;
mod socket;
pub(crate) mod stats;
mod write;

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `crossbeam-channel`'s own error type, re-exported so that naming it needs no
/// dependency of yours: the receiving methods of a connection and a
/// [`DownlinkTracker`](crate::DownlinkTracker) fail as crossbeam's channels do. It
/// follows `crossbeam-channel` 0.5's API; each converts into [`Error`](crate::Error).
pub use crossbeam_channel::RecvError;
/// `crossbeam-channel`'s own error type, re-exported (see [`RecvError`]).
pub use crossbeam_channel::RecvTimeoutError;
/// `crossbeam-channel`'s own error type, re-exported (see [`RecvError`]).
pub use crossbeam_channel::TryRecvError;

pub use builder::StreamBuilder;
pub(crate) use face::connection_face;
pub use frame::StreamFrame;
pub use reconnect::Reconnect;
pub use session::ConnectionEvent;

pub(crate) use crate::error::CloseReason;
use crate::error::Result;
use crate::wire::DEFAULT_MAX_FRAME_SIZE;
use connect::ConnectParams;
pub use health::{ConnectionHealth, ConnectionState, Health};
pub(crate) use hook::{Hook, HookDeliver, HookFactory, HookSend};
use inbox::{Inbox, Taken};
use link::LinkOptions;
use outlet::send_counted;
pub(crate) use outlet::Outlet;
use read::{Outbox, Room, Screen};
use session::{EventHandler, Opener, Session};
use stats::StreamCounters;
pub use stats::{DedupStats, RejectCounts, ResultCounts, StreamStats};

/// Tuning of one stream connection, set through [`StreamBuilder`]'s methods.
#[derive(Debug, Clone)]
pub(crate) struct StreamOptions {
    /// How many received messages may wait for the consumer before the reader stops
    /// reading from the socket (backpressure). Default 1024.
    pub(crate) capacity: usize,
    /// Largest frame accepted from the server, in bytes; a larger one ends the
    /// connection instead of being buffered. Default 1 MiB.
    pub(crate) max_frame_size: usize,
    /// How long closing waits for the server's close reply. Default 1 s.
    pub(crate) close_timeout: Duration,
    /// How long a send may wait for the server to take data. Default 30 s.
    pub(crate) write_timeout: Duration,
    /// Keepalive: how often the client pings the server. `None` turns keepalive off.
    /// Default 30 s.
    pub(crate) ping_interval: Option<Duration>,
    /// Keepalive: how long after a ping the connection may stay silent before it is
    /// declared dead (half-open TCP, a dropped NAT mapping). Default 10 s. While a slow
    /// consumer holds the reader back, nothing is read, so that silence does not count.
    pub(crate) pong_timeout: Duration,
    /// Automatic reconnection after a failure (on by default); `None` ends the
    /// connection instead.
    pub(crate) reconnect: Option<Reconnect>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            close_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(30),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            reconnect: Some(Reconnect::default()),
        }
    }
}

/// What [`Connection::send_and_collect`] got.
pub(crate) struct Collected<In> {
    /// The replies correlated with the message, in order.
    pub(crate) replies: Vec<In>,
    /// The connection ended before the last reply: why. The message had been written.
    pub(crate) ended: Option<CloseReason>,
}

/// A stream connection receiving `In` and sending `Out`: one WebSocket, a reader thread
/// and a thread for pings, control replies and reconnection, messages delivered over a
/// bounded channel. Users see it through its typed faces
/// ([`UpstreamConnection`](crate::UpstreamConnection),
/// [`DownstreamConnection`](crate::DownstreamConnection), see `face.rs`), whose methods
/// document what these do.
pub(crate) struct Connection<In, Out> {
    session: Arc<Session>,
    stats: Arc<StreamCounters>,
    correlator: Arc<correlate::Correlator<In>>,
    inbox: Inbox<Taken<In>>,
    hook: Option<Arc<dyn Hook<In, Out>>>,
    _out: PhantomData<fn(Out)>,
}

impl<In: StreamFrame, Out: StreamFrame> Connection<In, Out> {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn open(
        params: &ConnectParams,
        name: &'static str,
        options: &StreamOptions,
        events: Option<EventHandler>,
    ) -> Result<Self> {
        Self::open_with(params, name, options, events, None, None)
    }

    /// [`open`](Self::open), with a [`Hook`] on the traffic, and the first connection
    /// retried under `first` if given.
    pub(crate) fn open_with(
        params: &ConnectParams,
        name: &'static str,
        options: &StreamOptions,
        events: Option<EventHandler>,
        hook: Option<Arc<dyn Hook<In, Out>>>,
        first: Option<&reconnect::FirstRetry>,
    ) -> Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Taken<In>>(options.capacity.max(1));
        let stash = Arc::new(Mutex::new(VecDeque::new()));
        let stats = Arc::new(StreamCounters::new(name));
        let room = Arc::new(Room::default());
        let outbox = Outbox {
            tx,
            stash: stash.clone(),
            room: room.clone(),
            screen: hook.clone().map(|hook| -> Screen<Taken<In>> {
                let stats = stats.clone();
                Arc::new(move |batch: &mut Vec<Taken<In>>| {
                    let before = batch.len();
                    hook.screen(batch);
                    for _ in batch.len()..before {
                        stats.taken_by_connection();
                    }
                })
            }),
        };
        let link_options = LinkOptions {
            name: name.to_owned(),
            close_timeout: options.close_timeout,
            write_timeout: options.write_timeout,
            ping_interval: options.ping_interval,
            pong_timeout: options.pong_timeout,
        };
        let params = params.clone();
        let log_name = name.to_owned();
        let correlator = correlate::Correlator::new();
        let link_correlator = correlator.clone();
        let link_stats = stats.clone();
        let open: Opener = Box::new(move || {
            let log_name = log_name.clone();
            let waiters = correlate::FailOnDrop(link_correlator.clone());
            let stats = link_stats.clone();
            let decode = move |frame: tungstenite::Bytes| {
                stats.frame_received(frame.len());
                match serde_json::from_slice::<In>(&frame) {
                    Ok(message) => {
                        message.count_received(&stats);
                        let message = waiters.0.route(message);
                        if message.is_some() {
                            stats.queued();
                        }
                        message
                    }
                    Err(e) => {
                        stats.frame_skipped();
                        log::warn!(
                            "{log_name}: skipping a frame that is not a valid message ({e}): {}",
                            preview(&frame)
                        );
                        None
                    }
                }
            };
            let link = connect::open_link(&params, link_options.clone(), decode, outbox.clone())?;
            log::debug!("{}: connected to {}", link_options.name, params.url);
            Ok(link)
        });
        let session = Session::start(
            name,
            open,
            options.reconnect.clone(),
            events,
            stats.clone(),
            first,
        )?;
        let (mut released, mut keep) = (None, None);
        if let Some(hook) = &hook {
            let outlet = Outlet::new(&session, &stats);
            let (release, rx) = crossbeam_channel::unbounded();
            released = Some(rx);
            keep = Some(release.clone());
            hook.start(
                Box::new(move |message: &Out| outlet.send(message)),
                Box::new(move |message: In| {
                    let _ = release.send((message, Instant::now()));
                }),
            );
        }
        Ok(Self {
            session,
            stats,
            correlator,
            inbox: Inbox {
                rx,
                stash,
                room,
                released,
                _release: keep,
            },
            hook,
            _out: PhantomData,
        })
    }

    /// Sends a message once its value rules pass; returns once it is written.
    pub(crate) fn send(&self, message: impl Into<Out>) -> Result<()> {
        let message = message.into();
        message.validate()?;
        send_counted(&self.session, &self.stats, &message)?;
        if let Some(hook) = &self.hook {
            for follow_up in hook.sent(&message) {
                if let Err(e) = send_counted(&self.session, &self.stats, &follow_up) {
                    log::warn!("cannot send a reply the connection owes: {e}");
                }
            }
        }
        Ok(())
    }

    /// The de-duplication counters of the connection's hook, if it de-duplicates.
    pub(crate) fn hook_dedup_stats(&self) -> Option<DedupStats> {
        self.hook.as_ref()?.dedup_stats()
    }

    /// The parts a [`DownlinkTracker`](crate::DownlinkTracker) sends and matches with.
    pub(crate) fn tracking_parts(&self) -> (Outlet<Out>, Arc<correlate::Correlator<In>>) {
        (
            Outlet::new(&self.session, &self.stats),
            self.correlator.clone(),
        )
    }

    /// Sends `message` and collects the replies correlated with `id` until the last one,
    /// the timeout, or the end of the connection; the replies go to this caller only,
    /// never to `iter()`. What arrived is returned in every case once the message was
    /// written: an error means nothing was sent.
    pub(crate) fn send_and_collect(
        &self,
        id: u64,
        message: Out,
        timeout: Duration,
    ) -> Result<Collected<In>> {
        message.validate()?;
        // Registered before sending, so a fast reply cannot slip past to iter().
        let replies = self.correlator.register(id)?;
        if let Err(e) = self.send(message) {
            self.correlator.unregister(id);
            return Err(e);
        }
        let is_last = |m: &In| m.correlation().is_some_and(|(_, last)| last);
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            match replies.recv_deadline(deadline) {
                Ok(reply) => {
                    self.stats.handed_to_waiter();
                    let last = is_last(&reply);
                    got.push(reply);
                    if last {
                        return Ok(Collected {
                            replies: got,
                            ended: None,
                        });
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.correlator.unregister(id);
                    // Whatever raced in before unregistering is ours, not iter()'s.
                    for reply in replies.try_iter() {
                        self.stats.handed_to_waiter();
                        got.push(reply);
                    }
                    return Ok(Collected {
                        replies: got,
                        ended: None,
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let why = self
                        .session
                        .state()
                        .interruption()
                        .cloned()
                        .unwrap_or(CloseReason::Local);
                    return Ok(Collected {
                        replies: got,
                        ended: Some(why),
                    });
                }
            }
        }
    }

    /// Blocks until a message arrives, or the connection has ended and is drained.
    pub(crate) fn recv(&self) -> Result<In, RecvError> {
        self.next(None).map_err(|_| RecvError)
    }

    /// Like [`recv`](Self::recv), waiting at most `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<In, RecvTimeoutError> {
        self.next(Some(Instant::now() + timeout))
    }

    fn next(&self, deadline: Option<Instant>) -> Result<In, RecvTimeoutError> {
        loop {
            if let Some(message) = self.pass(self.inbox.next(deadline)?) {
                return Ok(message);
            }
        }
    }

    /// Takes a message if one is waiting, without blocking.
    pub(crate) fn try_recv(&self) -> Result<In, TryRecvError> {
        loop {
            if let Some(message) = self.pass(self.inbox.try_next()?) {
                return Ok(message);
            }
        }
    }

    /// Whether `message`, just taken from the channel, goes to the application (the hook
    /// may take it: a duplicate the connection answers itself).
    #[inline]
    fn pass(&self, (message, read_at): Taken<In>) -> Option<In> {
        let passed = match &self.hook {
            None => Some(message),
            Some(hook) => hook.incoming(message, read_at),
        };
        if passed.is_some() {
            self.stats.dequeued();
        } else {
            self.stats.taken_by_connection();
        }
        passed
    }

    /// A blocking iterator over received messages.
    pub(crate) fn iter(&self) -> Iter<'_, In, Out> {
        Iter { conn: self }
    }

    /// An iterator over the messages waiting now; it never blocks.
    pub(crate) fn try_iter(&self) -> TryIter<'_, In, Out> {
        TryIter { conn: self }
    }

    /// How many received messages are waiting, the stash after close included.
    pub(crate) fn len(&self) -> usize {
        self.inbox.len()
    }

    /// Whether no received message is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the counters and gauges.
    pub(crate) fn stats(&self) -> StreamStats {
        let mut stats = self
            .stats
            .snapshot(self.session.is_connected(), self.inbox.len());
        stats.awaiting_results = self.correlator.awaiting();
        stats.dedup = self.hook.as_ref().and_then(|hook| hook.dedup_stats());
        stats
    }
}

impl<In, Out> Connection<In, Out> {
    /// Starts closing; returns at once.
    pub(crate) fn close(&self) {
        self.session.close();
    }

    /// Blocks until the threads have exited; why the connection ended.
    pub(crate) fn wait_closed(&self) -> CloseReason {
        self.session.wait_closed()
    }

    /// Like [`wait_closed`](Self::wait_closed), waiting at most `timeout`.
    pub(crate) fn wait_closed_timeout(&self, timeout: Duration) -> Option<CloseReason> {
        self.session.wait_closed_timeout(timeout)
    }

    /// Whether the connection is closed or closing for good.
    pub(crate) fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Whether the WebSocket is up right now.
    pub(crate) fn is_connected(&self) -> bool {
        self.session.is_connected()
    }

    /// Why the connection ended, once it has (the first reason).
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.session.state().close_reason()
    }

    /// Where this connection stands.
    pub(crate) fn health(&self) -> ConnectionHealth {
        self.session.health()
    }

    pub(crate) fn closer(&self) -> std::sync::Weak<Session> {
        Arc::downgrade(&self.session)
    }
}

impl<In, Out> Drop for Connection<In, Out> {
    fn drop(&mut self) {
        // Messages still waiting will never be taken: the published gauge forgets them.
        self.stats.dropped(self.inbox.len());
    }
}

impl<In, Out> fmt::Debug for Connection<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.session.is_closed())
            .field("waiting", &self.inbox.len())
            .finish()
    }
}

/// Blocking iterator over a connection's messages; see
/// [`UpstreamConnection::iter`](crate::UpstreamConnection::iter).
pub struct Iter<'a, In, Out> {
    conn: &'a Connection<In, Out>,
}

impl<In: StreamFrame, Out: StreamFrame> Iterator for Iter<'_, In, Out> {
    type Item = In;

    fn next(&mut self) -> Option<In> {
        self.conn.recv().ok()
    }
}

/// Non-blocking iterator over a connection's waiting messages; see
/// [`UpstreamConnection::try_iter`](crate::UpstreamConnection::try_iter).
pub struct TryIter<'a, In, Out> {
    conn: &'a Connection<In, Out>,
}

impl<In: StreamFrame, Out: StreamFrame> Iterator for TryIter<'_, In, Out> {
    type Item = In;

    fn next(&mut self) -> Option<In> {
        self.conn.try_recv().ok()
    }
}

/// At most 200 characters of a frame, for log lines.
fn preview(frame: &[u8]) -> String {
    let text = String::from_utf8_lossy(&frame[..frame.len().min(200)]);
    if frame.len() > 200 {
        format!("{text}… ({} bytes)", frame.len())
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests;
