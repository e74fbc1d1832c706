//! A connection's life across links, in one place: its [`Phase`] (connected,
//! reconnecting, closing, closed), changed only under one lock by the transitions below,
//! and the session's thread, which waits for each link's end (running the link's writer
//! loop meanwhile, see `Link::drive`) and, with reconnection on, replaces it (see
//! `reconnect.rs`). Two threads per connection: the link's reader and this one.
//!
//! Every link of a session delivers into the same channel, and a new link only starts
//! once the previous one's reader has ended, so the consumers see one ordered stream with
//! nothing lost at the seams.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::health::{ConnectionHealth, ConnectionState};
use super::link::Link;
use super::reconnect::{first_link, supervise, FirstRetry, Reconnect};
use super::stats::StreamCounters;
use super::CloseReason;
use crate::error::{Closed, Error, Result, StreamError};
use crate::sync::lock;

/// A change in a connection's state, reported to the callback given to
/// [`StreamBuilder::on_event`](super::StreamBuilder::on_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection is up (first connect or a reconnect).
    Connected,
    /// The connection went down, with or without reconnection on (not reported after a
    /// local close).
    Disconnected(CloseReason),
    /// A reconnect attempt will start after `delay`.
    Reconnecting {
        /// 1 for the first retry after a failure.
        attempt: u32,
        /// How long until the attempt.
        delay: Duration,
    },
    /// A reconnect handshake was refused with HTTP 401 or 403, but not by the API's own
    /// `Unauthorized` answer (a proxy's error page, say): retried like any failure until
    /// [`Reconnect::MAX_REFUSALS`] refusals in a row.
    Refused {
        /// Refusals in a row so far.
        refusals: u32,
        /// What the refusal said.
        description: String,
    },
    /// Reconnection stopped for good: the token was refused
    /// ([`StreamErrorKind::TokenRefused`](crate::StreamErrorKind::TokenRefused)) or the
    /// attempts ran out ([`StreamErrorKind::GaveUp`](crate::StreamErrorKind::GaveUp)).
    /// The connection's [`CloseReason`] is this error.
    GaveUp(StreamError),
}

impl fmt::Display for ConnectionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionEvent::Connected => f.write_str("connected"),
            ConnectionEvent::Disconnected(reason) => write!(f, "disconnected: {reason}"),
            ConnectionEvent::Reconnecting { attempt, delay } => {
                write!(f, "reconnecting (attempt {attempt}) in {delay:?}")
            }
            ConnectionEvent::Refused {
                refusals,
                description,
            } => write!(f, "refused ({refusals} in a row): {description}"),
            ConnectionEvent::GaveUp(why) => write!(f, "gave up reconnecting: {why}"),
        }
    }
}

pub(crate) type EventHandler = Arc<dyn Fn(&ConnectionEvent) + Send + Sync>;

/// Why opening a link failed.
pub(crate) struct OpenError {
    pub(crate) error: Error,
    /// The handshake was refused by the API's own `Unauthorized` answer: the token is
    /// refused for good. A bare 401 or 403 (a proxy's page) is not.
    pub(crate) by_api: bool,
}

impl From<Error> for OpenError {
    fn from(error: Error) -> Self {
        Self {
            error,
            by_api: false,
        }
    }
}

/// Opens a link and starts its reader thread.
pub(crate) type Opener = Box<dyn FnMut() -> std::result::Result<Link, OpenError> + Send>;

/// Where a connection stands. (Connecting is the caller's `connect()`: a session exists
/// only once its first link is up.)
///
/// | from → to | by |
/// |---|---|
/// | Connected → Reconnecting | the session's thread, when the link ends (reconnection on) |
/// | Connected → Closed | the session's thread, when the link ends (reconnection off) |
/// | Reconnecting → Connected | the session's thread, when a new link is up |
/// | Reconnecting → Closed | the session's thread, giving up |
/// | Connected, Reconnecting → Closing | `close()`, from any thread |
/// | Closing → Closed | the session's thread, as it exits |
enum Phase {
    /// A link is up, or has just ended and the session's thread has not yet seen it.
    Connected(Arc<Link>),
    /// The last link ended with `after`; attempt `attempt` waits for its delay or is
    /// under way.
    Reconnecting { attempt: u32, after: CloseReason },
    /// Closed by the owner; `link`, if any, is finishing its close.
    Closing {
        reason: CloseReason,
        link: Option<Arc<Link>>,
    },
    /// Ended for good.
    Closed(CloseReason),
}

/// A snapshot of a connection's [`Phase`], from [`Session::state`]: the one getter every
/// question about reasons, health and closed-ness is answered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    Connected,
    /// Between links: the last one ended with `after`.
    Reconnecting {
        attempt: u32,
        after: CloseReason,
    },
    /// Closing or closed, for good.
    Closed(CloseReason),
}

impl State {
    /// Why the connection ended for good, once it has.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        match self {
            State::Closed(reason) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Why the last link went down, if it has: what a call cut short by it reports.
    pub(crate) fn interruption(&self) -> Option<&CloseReason> {
        match self {
            State::Connected => None,
            State::Reconnecting { after, .. } => Some(after),
            State::Closed(reason) => Some(reason),
        }
    }
}

pub(crate) struct Session {
    name: String,
    phase: Mutex<Phase>,
    /// Dropped on close, to cut a backoff wait short.
    wake: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Disconnects when the session's thread exits, so waits need no polling.
    thread_done: Receiver<()>,
    events: Option<EventHandler>,
    reconnects: bool,
    stats: Arc<StreamCounters>,
}

impl Session {
    /// Opens the first link (retrying it under `first`, if given) and starts the
    /// session's thread.
    pub(crate) fn start(
        name: &str,
        mut open: Opener,
        reconnect: Option<Reconnect>,
        events: Option<EventHandler>,
        stats: Arc<StreamCounters>,
        first: Option<&FirstRetry>,
    ) -> Result<Arc<Session>> {
        let link = Arc::new(first_link(name, &mut open, first, events.as_ref())?);
        stats.connected(false);
        let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(0);
        let (alive, thread_done) = crossbeam_channel::bounded::<()>(0);
        let session = Arc::new(Session {
            name: name.to_owned(),
            phase: Mutex::new(Phase::Connected(link.clone())),
            wake: Mutex::new(Some(wake_tx)),
            thread: Mutex::new(None),
            thread_done,
            events,
            reconnects: reconnect.is_some(),
            stats,
        });
        session.emit(ConnectionEvent::Connected);
        // The thread holds only a weak reference: dropping the connection must still
        // drop the session.
        let weak = Arc::downgrade(&session);
        let thread_name = match reconnect {
            Some(_) => format!("ran-{name}-reconnect"),
            None => format!("ran-{name}-watch"),
        };
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let _alive = alive;
                match reconnect {
                    Some(policy) => supervise(weak.clone(), link, open, policy, wake_rx),
                    None => watch(&weak, link),
                }
                if let Some(s) = weak.upgrade() {
                    s.finished();
                }
            })
            .map_err(Error::Io)?;
        *lock(&session.thread) = Some(handle);
        Ok(session)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn emit(&self, event: ConnectionEvent) {
        match &event {
            ConnectionEvent::Disconnected(reason) if !self.reconnects => {
                log::warn!(
                    "{}: the stream ended ({reason}); reconnection is off",
                    self.name
                )
            }
            ConnectionEvent::Disconnected(_)
            | ConnectionEvent::GaveUp(_)
            | ConnectionEvent::Refused { .. } => log::warn!("{}: {event}", self.name),
            _ => log::info!("{}: {event}", self.name),
        }
        if let Some(handler) = &self.events {
            handler(&event);
        }
    }

    /// Where the connection stands; see [`State`].
    pub(crate) fn state(&self) -> State {
        match &*lock(&self.phase) {
            Phase::Connected(link) => match link.reason() {
                None => State::Connected,
                Some(after) if self.reconnects => State::Reconnecting { attempt: 1, after },
                Some(reason) => State::Closed(reason),
            },
            Phase::Reconnecting { attempt, after } => State::Reconnecting {
                attempt: *attempt,
                after: after.clone(),
            },
            Phase::Closing { reason, .. } | Phase::Closed(reason) => State::Closed(reason.clone()),
        }
    }

    pub(crate) fn send_text(&self, text: String) -> Result<()> {
        let link = match &*lock(&self.phase) {
            Phase::Connected(link) => link.clone(),
            Phase::Reconnecting { after, .. } => return Err(Error::NotConnected(after.clone())),
            Phase::Closing { reason, .. } | Phase::Closed(reason) => {
                return Err(Error::Closed(Closed::Connection(reason.clone())))
            }
        };
        link.send_text(text).map_err(|e| match e {
            // A link that just failed is about to be replaced: say so, not "closed".
            Error::Closed(Closed::Connection(why)) if self.reconnects && !self.is_closed() => {
                Error::NotConnected(why)
            }
            other => other,
        })
    }

    /// Connected or Reconnecting → Closing. A connection that had already ended keeps
    /// its reason; one that is reconnecting had not ended: closing is what ends it.
    pub(crate) fn close(&self) {
        let link = {
            let mut phase = lock(&self.phase);
            let (reason, link) = match &*phase {
                Phase::Connected(link) => {
                    let ended = link.reason().filter(|_| !self.reconnects);
                    (ended.unwrap_or(CloseReason::Local), Some(link.clone()))
                }
                Phase::Reconnecting { .. } => (CloseReason::Local, None),
                Phase::Closing { link, .. } => (CloseReason::Local, link.clone()),
                Phase::Closed(_) => (CloseReason::Local, None),
            };
            if matches!(*phase, Phase::Connected(_) | Phase::Reconnecting { .. }) {
                *phase = Phase::Closing {
                    reason,
                    link: link.clone(),
                };
            }
            link
        };
        lock(&self.wake).take();
        if let Some(link) = link {
            link.close();
        }
    }

    /// The session's thread saw `link` end: Connected → Reconnecting (or Closed without
    /// reconnection). `false`: the connection is closing, the thread stops.
    pub(crate) fn link_ended(&self, link: &Arc<Link>, reason: CloseReason) -> bool {
        self.stats.disconnected();
        {
            let mut phase = lock(&self.phase);
            if !matches!(&*phase, Phase::Connected(l) if Arc::ptr_eq(l, link)) {
                return false;
            }
            *phase = match self.reconnects {
                true => Phase::Reconnecting {
                    attempt: 1,
                    after: reason.clone(),
                },
                false => Phase::Closed(reason.clone()),
            };
        }
        self.emit(ConnectionEvent::Disconnected(reason));
        true
    }

    /// Attempt `attempt` waits `delay`. `false`: the connection is closing.
    pub(crate) fn reconnecting(&self, attempt: u32, delay: Duration) -> bool {
        {
            let mut phase = lock(&self.phase);
            let Phase::Reconnecting { attempt: at, .. } = &mut *phase else {
                return false;
            };
            *at = attempt;
        }
        self.emit(ConnectionEvent::Reconnecting { attempt, delay });
        true
    }

    /// Reconnecting → Connected. `false`: a close came first; `link` is closing, and the
    /// caller, its writer, must finish it.
    pub(crate) fn connected(&self, link: &Arc<Link>) -> bool {
        {
            let mut phase = lock(&self.phase);
            if let Phase::Reconnecting { .. } = &*phase {
                *phase = Phase::Connected(link.clone());
            } else {
                if let Phase::Closing { link: slot, .. } = &mut *phase {
                    *slot = Some(link.clone());
                }
                drop(phase);
                link.close();
                return false;
            }
        }
        self.stats.connected(true);
        self.emit(ConnectionEvent::Connected);
        true
    }

    /// Reconnecting → Closed: reconnection stopped for good.
    pub(crate) fn give_up(&self, why: StreamError) {
        {
            let mut phase = lock(&self.phase);
            if !matches!(*phase, Phase::Reconnecting { .. }) {
                return;
            }
            *phase = Phase::Closed(CloseReason::Error(why.clone()));
        }
        self.emit(ConnectionEvent::GaveUp(why));
    }

    /// Closing → Closed, as the session's thread exits.
    fn finished(&self) {
        let mut phase = lock(&self.phase);
        if let Phase::Closing { reason, .. } = &*phase {
            *phase = Phase::Closed(reason.clone());
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state(), State::Closed(_))
    }

    /// Whether a link is up right now.
    pub(crate) fn is_connected(&self) -> bool {
        self.state() == State::Connected
    }

    /// The link that may still be running, if any.
    pub(super) fn link(&self) -> Option<Arc<Link>> {
        match &*lock(&self.phase) {
            Phase::Connected(link) => Some(link.clone()),
            Phase::Closing { link, .. } => link.clone(),
            _ => None,
        }
    }

    pub(crate) fn wait_closed(&self) -> CloseReason {
        let thread = lock(&self.thread).take();
        if let Some(handle) = thread {
            // The session's thread itself may drop the last reference; it cannot join
            // itself.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        let link_reason = self.link().map(|l| l.wait_closed());
        self.state()
            .close_reason()
            .or(link_reason)
            .unwrap_or(CloseReason::Local)
    }

    pub(crate) fn wait_closed_timeout(&self, timeout: Duration) -> Option<CloseReason> {
        let deadline = Instant::now() + timeout;
        if let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            self.thread_done.recv_deadline(deadline)
        {
            return None;
        }
        if let Some(link) = self.link() {
            link.wait_closed_timeout(deadline.saturating_duration_since(Instant::now()))?;
        }
        Some(self.wait_closed())
    }

    /// Connected, reconnecting or closed, and the age of the last frame.
    pub(crate) fn health(&self) -> ConnectionHealth {
        let state = match self.state() {
            State::Connected => ConnectionState::Connected,
            State::Reconnecting { attempt, .. } => ConnectionState::Reconnecting {
                attempt: attempt.max(1),
            },
            State::Closed(reason) => ConnectionState::Closed { reason },
        };
        ConnectionHealth {
            stream: self.stats.stream(),
            state,
            since_last_frame: self.stats.since_last_frame(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
        self.wait_closed();
        self.stats.disconnected();
    }
}

impl crate::rest::StreamCloser for Session {
    fn close_stream(&self) {
        self.close();
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Without reconnection: waits for the link's end (running its writer) and records it.
fn watch(session: &Weak<Session>, link: Arc<Link>) {
    let reason = link.wait_closed();
    if let Some(s) = session.upgrade() {
        s.link_ended(&link, reason);
    }
}
