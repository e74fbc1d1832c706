//! The stream connections' errors: why a connection ended ([`CloseReason`]), what failed
//! when it failed ([`StreamError`] and its [`StreamErrorKind`]), and what is closed when a
//! call finds it so ([`Closed`]).
//!
//! They live with [`Error`](super::Error), which carries them, so that the error module
//! needs nothing of the stream engine.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use super::TimeoutKind;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// We closed it: `close()` on the connection, `Drop`, or
    /// [`Core::close`](crate::Core::close).
    Local,
    /// The server closed it with a close frame.
    Remote {
        /// The WebSocket close code (1000 is a normal closure; 1005 means none given).
        code: u16,
        /// The reason text the server gave.
        reason: String,
    },
    /// The transport or the WebSocket protocol failed, or reconnection gave up;
    /// [`StreamError::kind`] says which.
    Error(StreamError),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed by the client"),
            CloseReason::Remote { code, reason } if reason.is_empty() => {
                write!(f, "closed by the server (code {code})")
            }
            CloseReason::Remote { code, reason } => {
                write!(f, "closed by the server (code {code}: {reason})")
            }
            CloseReason::Error(e) => write!(f, "connection failed: {e}"),
        }
    }
}

impl CloseReason {
    /// The failure, if the connection failed.
    pub fn error(&self) -> Option<&StreamError> {
        match self {
            CloseReason::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// What is closed, in an [`Error::Closed`](super::Error::Closed): the call sent nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Closed {
    /// The `Core` was closed ([`Core::close`](crate::Core::close)): its REST calls and
    /// new connections fail from now on. A program that means to go on needs a new
    /// `Core`.
    Core,
    /// The stream connection ended for good, for this reason: closed, or (with
    /// reconnection on) reconnection gave up. Open a new connection if the reason is
    /// not yours.
    Connection(CloseReason),
    /// A receiving method found the connection ended and every message it received
    /// handed out (a channel error converted with `?`);
    /// the connection's `close_reason()` says why it ended.
    Drained,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Core => f.write_str("the Core is closed"),
            Closed::Connection(reason) => write!(f, "the connection is closed: {reason}"),
            Closed::Drained => {
                f.write_str("the connection is closed and every message was handed out")
            }
        }
    }
}

/// Why a stream connection failed: in a [`CloseReason::Error`], and in an
/// [`Error::WebSocket`](super::Error::WebSocket) for a handshake or protocol failure.
///
/// [`kind`](Self::kind) is what to match on; the underlying error, when there is one (an
/// `std::io::Error`, a `rustls::Error`, the service's [`ApiError`](crate::ApiError), the
/// last attempt's [`Error`](crate::Error)), is the [`source`](StdError::source). The
/// text names what failed (and, for a handshake, the URL), never the token. Cheap to
/// clone; two are equal when their kind and text are.
#[derive(Clone)]
pub struct StreamError {
    inner: Arc<Inner>,
}

struct Inner {
    kind: StreamErrorKind,
    detail: String,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

/// What failed, in a [`StreamError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamErrorKind {
    /// The network under the connection failed: reset, broken pipe, unreachable. The
    /// `std::io::Error` is the source. Reconnection (on by default) retries it.
    Io,
    /// A wait ran out: a write the peer took no data for
    /// ([`TimeoutKind::Write`]), or keepalive heard nothing within the pong timeout
    /// after a ping ([`TimeoutKind::Keepalive`]: a half-open connection, a dropped NAT
    /// mapping).
    Timeout(TimeoutKind),
    /// The TLS session failed (a bad record, a failed decryption); the `rustls::Error`
    /// is the source.
    Tls,
    /// The server's answer to the WebSocket upgrade is not one: malformed, too large,
    /// or an upgrade that does not match the request. Check the stream URL: it may lead
    /// to something that is not the RAN's stream (a proxy, another service).
    Handshake,
    /// The server broke the WebSocket protocol: a malformed frame, a text frame that is
    /// not UTF-8, ...
    Protocol,
    /// The server sent a frame larger than
    /// [`max_frame_size`](crate::StreamBuilder::max_frame_size).
    FrameTooLarge,
    /// Reconnection gave up because the token was refused: by the API's own
    /// `Unauthorized` answer (the [`ApiError`](crate::ApiError) is the source), or by
    /// [`Reconnect::MAX_REFUSALS`](crate::Reconnect::MAX_REFUSALS) bare 401 or 403
    /// answers in a row. Check the token; retrying with it does not help.
    TokenRefused,
    /// Reconnection gave up after
    /// [`Reconnect::max_attempts`](crate::Reconnect::max_attempts) failed attempts in a
    /// row; the last attempt's [`Error`](crate::Error) is the source.
    GaveUp {
        /// How many attempts failed.
        attempts: u32,
    },
}

impl StreamError {
    pub(crate) fn new(kind: StreamErrorKind, detail: impl Into<String>) -> Self {
        Self::build(kind, detail.into(), None)
    }

    pub(crate) fn with_source(
        kind: StreamErrorKind,
        detail: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::build(kind, detail.into(), Some(Arc::new(source)))
    }

    fn build(
        kind: StreamErrorKind,
        detail: String,
        source: Option<Arc<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                detail,
                source,
            }),
        }
    }

    /// A failure of the network under a connection, `what` saying what was being done.
    pub(crate) fn io(what: &str, error: std::io::Error) -> Self {
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned();
        match tls {
            // rustls reports a failed record through the socket's read.
            Some(tls) => Self::with_source(StreamErrorKind::Tls, format!("{what}: {tls}"), tls),
            None => Self::with_source(StreamErrorKind::Io, format!("{what}: {error}"), error),
        }
    }

    /// A WebSocket failure on an established connection, `what` saying what was being
    /// done.
    pub(crate) fn websocket(what: &str, error: tungstenite::Error) -> Self {
        use tungstenite::error::ProtocolError::ResetWithoutClosingHandshake;
        let kind = match error {
            tungstenite::Error::Io(e) => return Self::io(what, e),
            // The TCP connection ended under the WebSocket: a network failure, not the
            // peer speaking the protocol wrong.
            tungstenite::Error::Protocol(ResetWithoutClosingHandshake) => {
                let detail = format!("{what}: {error}");
                let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, error);
                return Self::with_source(StreamErrorKind::Io, detail, reset);
            }
            tungstenite::Error::Capacity(_) => StreamErrorKind::FrameTooLarge,
            _ => StreamErrorKind::Protocol,
        };
        Self::with_source(kind, format!("{what}: {error}"), error)
    }

    /// A failed write, from the error the sender got.
    pub(crate) fn write_failed(error: &super::Error) -> Self {
        let detail = format!("write failed: {error}");
        match error {
            super::Error::Io(e) => Self::with_source(
                StreamErrorKind::Io,
                detail,
                std::io::Error::new(e.kind(), e.to_string()),
            ),
            super::Error::Timeout { kind, .. } => {
                Self::new(StreamErrorKind::Timeout(*kind), detail)
            }
            super::Error::WebSocket(e) => e.prefixed("write failed"),
            _ => Self::new(StreamErrorKind::Protocol, detail),
        }
    }

    /// The same error, its text prefixed with `context` (a URL, or what was being done).
    pub(crate) fn prefixed(&self, context: impl fmt::Display) -> Self {
        let detail = format!("{context}: {}", self.inner.detail);
        Self::build(self.inner.kind, detail, self.inner.source.clone())
    }

    /// What failed.
    pub fn kind(&self) -> StreamErrorKind {
        self.inner.kind
    }

    /// What failed, in words: the same text as `Display`.
    pub fn detail(&self) -> &str {
        &self.inner.detail
    }
}

impl fmt::Debug for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamError")
            .field("kind", &self.inner.kind)
            .field("detail", &self.inner.detail)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.detail)
    }
}

impl StdError for StreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let source = self.inner.source.as_ref()?;
        Some(&**source as &(dyn StdError + 'static))
    }
}

impl PartialEq for StreamError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.kind == other.inner.kind && self.inner.detail == other.inner.detail)
    }
}

impl Eq for StreamError {}
