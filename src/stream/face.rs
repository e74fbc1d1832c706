//! The typed faces of the generic [`Connection`](super::Connection): `connection_face!`
//! declares a face's own struct (`UpstreamConnection`, `DownstreamConnection`), the
//! methods every face has, and the `connect` of its builder, so that each face's rustdoc
//! page lists every method it has and the methods are written once.

/// Declares a face: `$name` wraps a `Connection<$in, $out>` opened by
/// `Core::$open().connect()`. The face's own methods go in an `impl $name` of its module.
macro_rules! connection_face {
    ($(#[$doc:meta])* $name:ident, $in:ty, $out:ty, $open:literal) => {
        $(#[$doc])*
        pub struct $name {
            pub(crate) inner: $crate::stream::Connection<$in, $out>,
        }

        impl $crate::stream::StreamBuilder<'_, $in, $out> {
            #[doc = concat!("Opens a [`", stringify!($name), "`]; blocks until the WebSocket handshake is done.")]
            /// By default the first failure is returned at once; see
            /// [`retry_first_connect`](Self::retry_first_connect) to retry it. Once open, the
            /// connection reconnects by itself (see [`reconnect`](Self::reconnect)) and needs
            /// nothing from the `Core` but its [`close`](crate::Core::close): dropping the
            /// `Core` does not close it.
            ///
            /// # Errors
            ///
            /// - [`Error::Api`](crate::Error::Api) with
            ///   [`ApiError::Unauthorized`](crate::ApiError::Unauthorized): the token was
            ///   refused. Check it; retrying does not help.
            /// - [`Error::Closed`](crate::Error::Closed) with
            ///   [`Closed::Core`](crate::Closed::Core): the `Core` is closed.
            /// - [`Error::Config`](crate::Error::Config): the stream URL cannot work; fix the
            ///   base URL or the endpoints.
            /// - [`Error::WebSocket`](crate::Error::WebSocket) with
            ///   [`StreamErrorKind::Handshake`](crate::StreamErrorKind::Handshake): the URL
            ///   leads to something that is not the RAN's stream (a proxy, another
            ///   service); check the base URL.
            /// - Otherwise the transport error of the (last) attempt,
            ///   [`Error::Io`](crate::Error::Io), [`Error::Timeout`](crate::Error::Timeout) or
            ///   [`Error::Tls`](crate::Error::Tls): check that the service is reachable, or
            ///   retry the first connect.
            pub fn connect(&self) -> $crate::Result<$name> {
                self.open().map(|inner| $name { inner })
            }
        }

        impl $name {
            /// Sends a message; returns once it has been written to the socket.
            ///
            /// # Errors
            ///
            /// Nothing was sent when the error is one of these
            /// ([`Error::nothing_sent`](crate::Error::nothing_sent)):
            ///
            /// - [`Error::Invalid`](crate::Error::Invalid): the message broke a value rule
            ///   of the API (checked first). Fix the message.
            /// - [`Error::NotConnected`](crate::Error::NotConnected): the connection is down
            ///   and reconnecting, having ended for the [`CloseReason`](crate::CloseReason)
            ///   it carries. Send again once it is back
            ///   ([`is_connected`](Self::is_connected),
            ///   [`ConnectionEvent::Connected`](crate::ConnectionEvent::Connected)).
            /// - [`Error::Closed`](crate::Error::Closed): the connection ended for good
            ///   (after [`close`](Self::close), or reconnection gave up or is off), with
            ///   why. Open a new connection if the reason is not yours.
            ///
            /// Otherwise the write failed ([`Error::Io`](crate::Error::Io),
            /// [`Error::Timeout`](crate::Error::Timeout) for a peer that took no data, or
            /// [`Error::WebSocket`](crate::Error::WebSocket)): the message may or may not
            /// have reached the server, and the connection is replaced (or ends, without
            /// reconnection).
            pub fn send(&self, message: impl Into<$out>) -> $crate::Result<()> {
                self.inner.send(message)
            }

            /// Blocks until a message arrives. Fails once the connection has ended and
            /// every message received before has been handed out.
            pub fn recv(&self) -> Result<$in, $crate::RecvError> {
                self.inner.recv()
            }

            /// Like [`recv`](Self::recv), waiting at most `timeout`.
            pub fn recv_timeout(
                &self,
                timeout: std::time::Duration,
            ) -> Result<$in, $crate::RecvTimeoutError> {
                self.inner.recv_timeout(timeout)
            }

            /// Takes a message if one is waiting, without blocking.
            pub fn try_recv(&self) -> Result<$in, $crate::TryRecvError> {
                self.inner.try_recv()
            }

            /// A blocking iterator over received messages. It ends when the connection
            /// has ended and every message received before has been handed out.
            ///
            /// With reconnection on (the default) a failure or a server's close does not
            /// end it: the connection is replaced and the loop goes on; it ends after
            /// [`close`](Self::close) (yours, or [`Core::close`](crate::Core::close)) or
            /// when reconnection gives up (a refused token, or
            /// [`Reconnect::max_attempts`](crate::Reconnect::max_attempts) failed
            /// attempts). With [`no_reconnect`](crate::StreamBuilder::no_reconnect) it ends
            /// at the first failure. Either way, after the loop
            /// [`close_reason`](Self::close_reason) (or [`wait_closed`](Self::wait_closed))
            /// tells a failure from a close:
            ///
            /// ```no_run
            /// use ran_routing::{CloseReason, Core};
            ///
            /// let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
            #[doc = concat!("let connection = ran.", $open, "().connect()?;")]
            /// for message in connection.iter() {
            ///     // ... handle it
            /// #   let _ = message;
            /// }
            /// match connection.wait_closed() {
            ///     CloseReason::Local => println!("closed by us"),
            ///     CloseReason::Error(e) => eprintln!("the stream failed ({:?}): {e}", e.kind()),
            ///     other => eprintln!("the stream ended: {other}"),
            /// }
            /// # Ok::<(), ran_routing::Error>(())
            /// ```
            pub fn iter(&self) -> $crate::Iter<'_, $in, $out> {
                self.inner.iter()
            }

            /// An iterator over the messages waiting now; it never blocks.
            pub fn try_iter(&self) -> $crate::TryIter<'_, $in, $out> {
                self.inner.try_iter()
            }

            /// How many received messages are waiting for the consumer, including those
            /// kept after [`close`](Self::close) beyond the channel.
            pub fn len(&self) -> usize {
                self.inner.len()
            }

            /// Whether no received message is waiting.
            pub fn is_empty(&self) -> bool {
                self.inner.is_empty()
            }

            /// A snapshot of this connection's counters since it was opened, across
            /// reconnections, and of its gauges now; see
            /// [`StreamStats`](crate::StreamStats).
            ///
            /// Cheap: a few dozen relaxed loads. Counting itself is a relaxed atomic add
            /// per event.
            pub fn stats(&self) -> $crate::StreamStats {
                self.inner.stats()
            }

            /// Starts closing the connection and returns at once. Messages already
            /// received are still handed out by the receiving methods; sends fail from
            /// now on. While the server's close reply is awaited, what it still sends is
            /// kept up to one more channel's worth
            /// ([`capacity`](crate::StreamBuilder::capacity)); then reading stops, so a
            /// server that floods cannot grow memory while closing.
            pub fn close(&self) {
                self.inner.close()
            }

            /// Blocks until the connection's threads have exited, and says why it ended.
            /// With reconnection on, that is after [`close`](Self::close) or once
            /// reconnection gave up.
            pub fn wait_closed(&self) -> $crate::CloseReason {
                self.inner.wait_closed()
            }

            /// Like [`wait_closed`](Self::wait_closed), waiting at most `timeout`; `None`
            /// if the connection is still running.
            pub fn wait_closed_timeout(
                &self,
                timeout: std::time::Duration,
            ) -> Option<$crate::CloseReason> {
                self.inner.wait_closed_timeout(timeout)
            }

            /// Whether the connection is closed or closing for good (a connection that is
            /// reconnecting is not closed).
            pub fn is_closed(&self) -> bool {
                self.inner.is_closed()
            }

            /// Whether the WebSocket is up right now.
            pub fn is_connected(&self) -> bool {
                self.inner.is_connected()
            }

            /// Why the connection ended, once it has. The first reason is kept: a
            /// connection that failed or that the server closed says so even after
            /// [`close`](Self::close).
            pub fn close_reason(&self) -> Option<$crate::CloseReason> {
                self.inner.close_reason()
            }

            /// Where this connection stands: connected, reconnecting (with the attempt) or
            /// closed (with why), and the age of its last frame.
            /// [`Core::health`](crate::Core::health) gathers this for every connection.
            pub fn health(&self) -> $crate::ConnectionHealth {
                self.inner.health()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.inner, f)
            }
        }

        impl<'a> IntoIterator for &'a $name {
            type Item = $in;
            type IntoIter = $crate::Iter<'a, $in, $out>;

            fn into_iter(self) -> Self::IntoIter {
                self.iter()
            }
        }
    };
}

pub(crate) use connection_face;
