//! Opening connections: [`StreamBuilder`].

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::connect::ConnectParams;
use super::session::EventHandler;
use super::{Connection, ConnectionEvent, HookFactory, Reconnect, StreamFrame, StreamOptions};
use crate::error::Result;

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
    /// [`Reconnect::default`]. While reconnecting, [`iter`](Connection::iter) keeps
    /// waiting and sends fail at once with
    /// [`Error::NotConnected`](crate::Error::NotConnected).
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.options.reconnect = Some(policy);
        self
    }

    /// Turns automatic reconnection off: the connection ends at the first failure or
    /// server close, and [`iter`](Connection::iter) ends once every message received
    /// before has been handed out. [`Connection::close_reason`] then says why.
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

    /// Opens a connection; blocks until the WebSocket handshake is done.
    ///
    /// A refused token is [`ApiError::Unauthorized`](crate::ApiError::Unauthorized).
    pub fn connect(&self) -> Result<Connection<In, Out>> {
        if self.core.is_closed() {
            return Err(crate::Error::Closed("the Core is closed".into()));
        }
        let params = ConnectParams {
            url: self.url.clone(),
            token: self.core.token().clone(),
            tls: self.core.tls_client_config(),
            connect_timeout: self.core.connect_timeout(),
            user_agent: self.core.user_agent().to_owned(),
            max_frame_size: self.options.max_frame_size,
        };
        let hook = self.hook.as_ref().map(|make| make());
        let connection =
            Connection::open_with(&params, self.name, &self.options, self.events.clone(), hook)?;
        let closer: std::sync::Weak<dyn crate::rest::StreamCloser> = connection.closer();
        self.core.track_stream(closer);
        Ok(connection)
    }
}
