//! A connection's life across links: the current [`Link`], and with reconnection on, a
//! supervisor thread that replaces it after a failure with exponential backoff (without,
//! a thread that reports its end). Either thread, while it waits for the link's end, runs
//! the link's writer loop (see `Link::drive`): two threads per connection, not three.
//!
//! Every link of a session delivers into the same channel, and a new link only starts
//! once the previous one's reader has handed over everything it read, so the consumer
//! sees one ordered stream with nothing lost at the seams.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::link::Link;
use super::spare::Early;
use super::CloseReason;
use crate::error::{ApiError, Error, Result};
use crate::stats::{ConnectionHealth, ConnectionState, StreamCounters};
use crate::sync::lock;

/// Automatic reconnection after a connection fails: exponential backoff with jitter. On
/// by default with [`Reconnect::default`]; tune it with
/// [`StreamBuilder::reconnect`](super::StreamBuilder::reconnect), turn it off with
/// [`StreamBuilder::no_reconnect`](super::StreamBuilder::no_reconnect).
///
/// A refused token is final: the connection gives up at once instead of retrying. The
/// backoff starts over only after a connection stayed up for `max_delay`: one that the
/// server drops as soon as it opens does not reset it.
///
/// ```
/// use std::time::Duration;
/// use ran_routing::Reconnect;
///
/// let policy = Reconnect::default()
///     .initial_delay(Duration::from_millis(100))
///     .max_attempts(Some(20));
/// assert_eq!(policy.max_delay, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Reconnect {
    /// Delay before the first retry. Default 500 ms.
    pub initial_delay: Duration,
    /// Upper bound of the delay. Default 30 s.
    pub max_delay: Duration,
    /// Factor applied to the delay after each failed attempt. Default 2.
    pub multiplier: f64,
    /// Give up after this many failed attempts in a row; `None` retries forever.
    /// Default `None`.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// Sets the delay before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the upper bound of the delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the factor applied to the delay after each failed attempt.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Gives up after this many failed attempts in a row; `None` retries forever.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The delay before attempt `attempt` (1-based), before jitter.
    fn base_delay(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        self.initial_delay
            .mul_f64(factor.min(1e9))
            .min(self.max_delay)
    }
}

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
    /// Reconnection stopped for good: the token was refused or the attempts ran out.
    GaveUp(String),
}

impl fmt::Display for ConnectionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionEvent::Connected => f.write_str("connected"),
            ConnectionEvent::Disconnected(reason) => write!(f, "disconnected: {reason}"),
            ConnectionEvent::Reconnecting { attempt, delay } => {
                write!(f, "reconnecting (attempt {attempt}) in {delay:?}")
            }
            ConnectionEvent::GaveUp(why) => write!(f, "gave up reconnecting: {why}"),
        }
    }
}

pub(crate) type EventHandler = Arc<dyn Fn(&ConnectionEvent) + Send + Sync>;
/// Opens a link, starting its threads (and any other [`Early`] asks for) where the
/// handshake waits for the server.
pub(crate) type Opener = Box<dyn FnMut(&mut Early) -> Result<Link> + Send>;

pub(crate) struct Session {
    name: String,
    current: Mutex<Option<Arc<Link>>>,
    closing: AtomicBool,
    /// Why the session as a whole ended, once it has: the first reason is kept, so a
    /// close after a failure or a server's close frame does not hide it.
    ended: Mutex<Option<CloseReason>>,
    /// Why the last link ended, kept when the supervisor lets go of it: a waiter woken by
    /// that end may look after the link is gone.
    last_link: Mutex<Option<CloseReason>>,
    /// Dropped on close, to cut a backoff wait short.
    wake: Mutex<Option<Sender<()>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// Disconnects when the supervisor thread exits, so waits need no polling.
    supervisor_done: Receiver<()>,
    events: Option<EventHandler>,
    reconnects: bool,
    stats: Arc<StreamCounters>,
}

impl Session {
    /// Opens the first link; with `reconnect`, starts the supervisor that replaces it.
    pub(crate) fn start(
        name: &str,
        mut open: Opener,
        reconnect: Option<Reconnect>,
        events: Option<EventHandler>,
        stats: Arc<StreamCounters>,
    ) -> Result<Arc<Session>> {
        let thread_name = match reconnect {
            Some(_) => format!("ran-{name}-reconnect"),
            None => format!("ran-{name}-watch"),
        };
        // The session's thread starts while the handshake waits for the server.
        let mut early = Early::new(name, Some(thread_name));
        let link = Arc::new(open(&mut early)?);
        stats.connected(false);
        let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(0);
        let (alive, supervisor_done) = crossbeam_channel::bounded::<()>(0);
        let session = Arc::new(Session {
            name: name.to_owned(),
            current: Mutex::new(Some(link.clone())),
            closing: AtomicBool::new(false),
            ended: Mutex::new(None),
            last_link: Mutex::new(None),
            wake: Mutex::new(Some(wake_tx)),
            supervisor: Mutex::new(None),
            supervisor_done,
            events,
            reconnects: reconnect.is_some(),
            stats,
        });
        session.emit(ConnectionEvent::Connected);
        // The supervisor holds only a weak reference: dropping the connection must still
        // drop the session. Without reconnection it only reports the end.
        let weak = Arc::downgrade(&session);
        let thread = early.session().map_err(Error::Io)?;
        let handle = match reconnect {
            Some(policy) => thread.run(move || {
                let _alive = alive;
                supervise(weak, link, open, policy, wake_rx)
            }),
            None => thread.run(move || {
                let _alive = alive;
                watch(&weak, &link)
            }),
        };
        *lock(&session.supervisor) = Some(handle);
        Ok(session)
    }

    fn emit(&self, event: ConnectionEvent) {
        match &event {
            ConnectionEvent::Disconnected(reason) if !self.reconnects => {
                log::warn!(
                    "{}: the stream ended ({reason}); reconnection is off",
                    self.name
                )
            }
            ConnectionEvent::Disconnected(_) | ConnectionEvent::GaveUp(_) => {
                log::warn!("{}: {event}", self.name)
            }
            _ => log::info!("{}: {event}", self.name),
        }
        if let Some(handler) = &self.events {
            handler(&event);
        }
    }

    pub(crate) fn link(&self) -> Option<Arc<Link>> {
        lock(&self.current).clone()
    }

    pub(crate) fn send_text(&self, text: String) -> Result<()> {
        match self.link() {
            // A link that just failed is about to be replaced: say so, not "closed".
            Some(link) => link.send_text(text).map_err(|e| match e {
                Error::Closed(why) if self.reconnects && !self.closing.load(Ordering::Acquire) => {
                    Error::NotConnected(format!("reconnecting after: {why}"))
                }
                other => other,
            }),
            None if self.closing.load(Ordering::Acquire) => {
                Err(Error::Closed("the connection is closed".into()))
            }
            None => Err(Error::NotConnected(
                "reconnecting; the message was not sent".into(),
            )),
        }
    }

    pub(crate) fn close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            // A connection that had already ended keeps its reason. One that is
            // reconnecting had not ended: closing is what ends it.
            let before = if self.reconnects {
                None
            } else {
                self.link().and_then(|l| l.reason())
            };
            self.settle(before.unwrap_or(CloseReason::Local));
        }
        lock(&self.wake).take();
        if let Some(link) = self.link() {
            link.close();
        }
    }

    /// Records why the session ended, unless it already had a reason.
    fn settle(&self, reason: CloseReason) {
        lock(&self.ended).get_or_insert(reason);
    }

    /// Why the last link ended, for errors of calls cut short by it.
    pub(crate) fn last_reason(&self) -> Option<CloseReason> {
        lock(&self.ended)
            .clone()
            .or_else(|| self.link().and_then(|l| l.reason()))
            .or_else(|| lock(&self.last_link).clone())
    }

    pub(crate) fn is_closed(&self) -> bool {
        if self.closing.load(Ordering::Acquire) || lock(&self.ended).is_some() {
            return true;
        }
        let reconnecting = self.reconnects && lock(&self.supervisor).is_some();
        match self.link() {
            Some(link) => !reconnecting && link.is_closed(),
            None => false,
        }
    }

    /// Whether a link is up right now.
    pub(crate) fn is_connected(&self) -> bool {
        self.link().is_some_and(|l| !l.is_closed())
    }

    pub(crate) fn wait_closed(&self) -> CloseReason {
        let supervisor = lock(&self.supervisor).take();
        if let Some(handle) = supervisor {
            // The supervisor itself may drop the last reference; it cannot join itself.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        let link_reason = self.link().map(|l| l.wait_closed());
        lock(&self.ended)
            .clone()
            .or(link_reason)
            .unwrap_or(CloseReason::Local)
    }

    pub(crate) fn wait_closed_timeout(&self, timeout: Duration) -> Option<CloseReason> {
        let deadline = std::time::Instant::now() + timeout;
        if let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            self.supervisor_done.recv_deadline(deadline)
        {
            return None;
        }
        if let Some(link) = self.link() {
            link.wait_closed_timeout(
                deadline.saturating_duration_since(std::time::Instant::now()),
            )?;
        }
        Some(self.wait_closed())
    }

    /// Connected, reconnecting or closed, and the age of the last frame.
    pub(crate) fn health(&self) -> ConnectionHealth {
        let state = if self.is_closed() {
            ConnectionState::Closed {
                reason: self.reason().unwrap_or(CloseReason::Local),
            }
        } else if self.is_connected() {
            ConnectionState::Connected
        } else {
            ConnectionState::Reconnecting {
                attempt: self.stats.attempt().max(1),
            }
        };
        ConnectionHealth {
            stream: self.stats.stream(),
            state,
            since_last_frame: self.stats.since_last_frame(),
        }
    }

    pub(crate) fn reason(&self) -> Option<CloseReason> {
        if let Some(reason) = lock(&self.ended).clone() {
            return Some(reason);
        }
        if self.closing.load(Ordering::Acquire) {
            return Some(CloseReason::Local);
        }
        if self.reconnects && lock(&self.supervisor).is_some() {
            return None;
        }
        self.link().and_then(|l| l.reason())
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

    fn health(&self) -> ConnectionHealth {
        Session::health(self)
    }
}

fn supervise(
    session: std::sync::Weak<Session>,
    mut link: Arc<Link>,
    mut open: Opener,
    policy: Reconnect,
    wake: Receiver<()>,
) {
    let mut rng = Jitter::new();
    // The backoff step outlives a connection that did not last: a server that accepts
    // and at once drops every connection is retried with growing delays, not hammered
    // at the initial delay forever. One that stayed up longer than the longest delay
    // starts the backoff over.
    let mut step = 0u32;
    let mut up_since = Instant::now();
    loop {
        let reason = link.wait_closed();
        let Some(s) = session.upgrade() else { return };
        s.stats.disconnected();
        if s.closing.load(Ordering::Acquire) {
            return;
        }
        *lock(&s.last_link) = Some(reason.clone());
        s.emit(ConnectionEvent::Disconnected(reason));
        *lock(&s.current) = None;
        drop(s);
        if up_since.elapsed() >= policy.max_delay {
            step = 0;
        }
        let mut attempt = 0u32;
        link = loop {
            attempt += 1;
            step = step.saturating_add(1);
            let delay = rng.spread(policy.base_delay(step));
            {
                let Some(s) = session.upgrade() else { return };
                s.stats.reconnecting(attempt);
                s.emit(ConnectionEvent::Reconnecting { attempt, delay });
            }
            // Close drops the sender, which ends the wait at once.
            if wake.recv_timeout(delay).is_err_and(|e| e.is_disconnected()) {
                return;
            }
            let Some(s) = session.upgrade() else { return };
            if s.closing.load(Ordering::Acquire) {
                return;
            }
            match open(&mut Early::new(&s.name, None)) {
                Ok(new) => {
                    let new = Arc::new(new);
                    s.stats.connected(true);
                    s.emit(ConnectionEvent::Connected);
                    *lock(&s.current) = Some(new.clone());
                    // A close that raced with the connect must still win.
                    if s.closing.load(Ordering::Acquire) {
                        new.close();
                        drop(s);
                        // This thread is the link's writer: the close goes out now.
                        new.wait_closed();
                        return;
                    }
                    up_since = Instant::now();
                    break new;
                }
                Err(Error::Api(ApiError::Unauthorized { description })) => {
                    let why = format!("the token was refused: {description}");
                    give_up(&s, why);
                    return;
                }
                Err(e) => {
                    log::debug!("{}: reconnect attempt {attempt} failed: {e}", s.name);
                    if policy.max_attempts.is_some_and(|max| attempt >= max) {
                        give_up(&s, format!("{attempt} attempts failed, the last with: {e}"));
                        return;
                    }
                }
            }
        };
    }
}

/// Without reconnection: records and reports the link's end, unless we closed it.
fn watch(session: &std::sync::Weak<Session>, link: &Link) {
    let reason = link.wait_closed();
    let Some(s) = session.upgrade() else { return };
    s.stats.disconnected();
    if !s.closing.load(Ordering::Acquire) {
        s.settle(reason.clone());
        s.emit(ConnectionEvent::Disconnected(reason));
    }
}

fn give_up(session: &Session, why: String) {
    session.settle(CloseReason::Error(why.clone()));
    session.emit(ConnectionEvent::GaveUp(why));
}

/// Jitter for backoff delays: a small xorshift generator, so that many clients restarted
/// together do not retry in lockstep. Not for anything secret.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let here = &nanos as *const u64 as u64;
        Jitter((nanos ^ here.rotate_left(32)) | 1)
    }

    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// "Equal jitter": half the delay fixed, half random.
    fn spread(&mut self, delay: Duration) -> Duration {
        delay.mul_f64(0.5 + 0.5 * self.next_unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_bounded_jitter() {
        let policy = Reconnect {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            multiplier: 2.0,
            max_attempts: None,
        };
        assert_eq!(policy.base_delay(1), Duration::from_millis(100));
        assert_eq!(policy.base_delay(2), Duration::from_millis(200));
        assert_eq!(policy.base_delay(5), Duration::from_millis(1600));
        assert_eq!(policy.base_delay(6), Duration::from_secs(2));
        assert_eq!(policy.base_delay(u32::MAX), Duration::from_secs(2));
        let mut jitter = Jitter::new();
        for _ in 0..1000 {
            let d = jitter.spread(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }
}
