//! Opening connections: [`StreamBuilder`].

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::connect::ConnectParams;
use super::health::{ConnectionHealth, ConnectionState};
use super::reconnect::FirstRetry;
use super::session::EventHandler;
use super::{Connection, ConnectionEvent, HookFactory, Reconnect, StreamFrame, StreamOptions};
use crate::error::Result;
use crate::rest::StreamCloser;

/// Opens connections to one stream; from [`Core::upstream`](crate::Core::upstream) or
/// [`Core::downstream`](crate::Core::downstream).
///
/// One builder can open several connections: the service shares a stream's traffic
/// between them round-robin. Every connection uses the `Core`'s TLS settings and is
/// closed by [`Core::close`](crate::Core::close).
#[must_use = "a builder does nothing until connect() is called"]
pub struct StreamBuilder<'a, In, Out> {
    core: &'a crate::Core,
    name: &'static str,
    url: String,
    options: StreamOptions,
    events: Option<EventHandler>,
    pub(crate) hook: Option<HookFactory<In, Out>>,
    retry_first_connect: bool,
    _types: PhantomData<fn(In, Out)>,
}

impl<'a, In: StreamFrame, Out: StreamFrame> StreamBuilder<'a, In, Out> {
    pub(crate) fn new(core: &'a crate::Core, name: &'static str, url: &str) -> Self {
        Self {
            core,
            name,
            url: url.to_owned(),
            options: StreamOptions::default(),
            events: None,
            hook: None,
            retry_first_connect: false,
            _types: PhantomData,
        }
    }

    /// How many received messages may wait for the consumer before the connection
    /// stops reading from the socket. Default 1024.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.options.capacity = capacity;
        self
    }

    /// The largest frame accepted from the server, in bytes. Default 1 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.options.max_frame_size = bytes;
        self
    }

    /// How long closing waits for the server's close reply. Default 1 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.options.close_timeout = timeout;
        self
    }

    /// How long a send may wait for the server to take data. Default 30 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.options.write_timeout = timeout;
        self
    }

    /// Keepalive: ping every `interval`, and declare the connection dead when nothing
    /// arrives within `pong_timeout` of a ping. Default 30 s and 10 s.
    pub fn keepalive(mut self, interval: Duration, pong_timeout: Duration) -> Self {
        self.options.ping_interval = Some(interval);
        self.options.pong_timeout = pong_timeout;
        self
    }

    /// Turns keepalive pings off (the server's own pings are still answered).
    pub fn no_keepalive(mut self) -> Self {
        self.options.ping_interval = None;
        self
    }

    /// The backoff policy of automatic reconnection, which is on by default with
    /// [`Reconnect::default`]. While reconnecting, `iter()` keeps waiting and sends fail
    /// at once with [`Error::NotConnected`](crate::Error::NotConnected), which says why
    /// the connection went down: send again once it is back.
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.options.reconnect = Some(policy);
        self
    }

    /// Turns automatic reconnection off: the connection ends at the first failure or
    /// server close, and `iter()` ends once every message received before has been
    /// handed out. `close_reason()` then says why
    /// ([`UpstreamConnection::close_reason`](crate::UpstreamConnection::close_reason)).
    pub fn no_reconnect(mut self) -> Self {
        self.options.reconnect = None;
        self
    }

    /// Calls `handler` on every state change (connected, disconnected, reconnecting,
    /// gave up), from the connection's own threads: keep it short.
    pub fn on_event(mut self, handler: impl Fn(&ConnectionEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(handler));
        self
    }

    /// Makes [`connect`](Self::connect) retry the first connection under the
    /// [`reconnect`](Self::reconnect) policy instead of failing at the first error
    /// (default off). For a program that starts before the service is reachable (a
    /// network still coming up, a restart of the service): `connect()` blocks until the
    /// connection is up, reporting each failed attempt as
    /// [`ConnectionEvent::Reconnecting`] and in the log at WARN, and fails only when the
    /// policy's [`max_attempts`](Reconnect::max_attempts) run out, the token is refused,
    /// the configuration cannot work, or [`Core::close`](crate::Core::close) is called
    /// (from a signal handler's thread, say): then with
    /// [`Error::Closed`](crate::Error::Closed) holding
    /// [`Closed::Core`](crate::Closed::Core). Meanwhile
    /// [`Core::health`](crate::Core::health) lists the connection as reconnecting. With
    /// [`no_reconnect`](Self::no_reconnect) there is no policy and nothing is retried.
    ///
    /// ```no_run
    /// use ran_routing::{Core, Reconnect};
    ///
    /// let ran = Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let upstream = ran
    ///     .upstream()
    ///     .reconnect(Reconnect::default().max_attempts(Some(20)))
    ///     .retry_first_connect()
    ///     .connect()?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn retry_first_connect(mut self) -> Self {
        self.retry_first_connect = true;
        self
    }

    /// Opens a connection, as each face's `connect` documents (see `face.rs`).
    pub(crate) fn open(&self) -> Result<Connection<In, Out>> {
        if self.core.is_closed() {
            return Err(crate::Error::Closed(crate::error::Closed::Core));
        }
        let pending = match &self.options.reconnect {
            Some(policy) if self.retry_first_connect => {
                Some(Pending::track(self.core, self.name, policy.clone()))
            }
            _ => None,
        };
        let params = ConnectParams {
            url: self.url.clone(),
            token: self.core.token().clone(),
            tls: self.core.tls_client_config(),
            connect_timeout: self.core.connect_timeout(),
            user_agent: self.core.user_agent().to_owned(),
            max_frame_size: self.options.max_frame_size,
        };
        let hook = self.hook.as_ref().map(|make| make());
        let connection = Connection::open_with(
            &params,
            self.name,
            &self.options,
            self.events.clone(),
            hook,
            pending.as_ref().map(|(_, retry)| retry),
        )?;
        let closer: std::sync::Weak<dyn crate::rest::StreamCloser> = connection.closer();
        self.core.track_stream(closer);
        Ok(connection)
    }
}

/// A `connect()` retrying its first connection, tracked by the `Core` like a connection:
/// [`Core::close`](crate::Core::close) stops it, [`Core::health`](crate::Core::health)
/// lists it. Dropped (and so untracked) when `connect()` returns.
pub(super) struct Pending {
    name: &'static str,
    /// Dropped by a close, which disconnects the retry's wait.
    cancel: Mutex<Option<Sender<()>>>,
    failed: Arc<AtomicU32>,
}

impl Pending {
    /// Tracks a retrying connect with `core`; the handle keeps it tracked.
    fn track(
        core: &crate::Core,
        name: &'static str,
        policy: Reconnect,
    ) -> (Arc<Pending>, FirstRetry) {
        let (tx, cancel) = crossbeam_channel::bounded(0);
        let failed = Arc::new(AtomicU32::new(0));
        let pending = Arc::new(Pending {
            name,
            cancel: Mutex::new(Some(tx)),
            failed: failed.clone(),
        });
        let closer: Arc<dyn StreamCloser> = pending.clone();
        core.track_stream(Arc::downgrade(&closer));
        let retry = FirstRetry {
            policy,
            cancel,
            failed,
        };
        (pending, retry)
    }
}

impl StreamCloser for Pending {
    fn close_stream(&self) {
        crate::sync::lock(&self.cancel).take();
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Pending {
    /// A connect still retrying its first connection reports as reconnecting.
    pub(super) fn health(&self) -> ConnectionHealth {
        ConnectionHealth {
            stream: self.name,
            state: ConnectionState::Reconnecting {
                attempt: self.failed.load(Ordering::Relaxed).max(1),
            },
            since_last_frame: None,
        }
    }
}
