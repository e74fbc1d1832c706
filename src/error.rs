//! Errors: the crate's one [`Error`] type and the kinds it carries.
//!
//! This module depends only on the data types whose errors it carries (identifiers, the
//! model's downstream ack and, with the `mic` feature, the MIC solver's errors); parsing the
//! service's error bodies lives with the REST calls.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::ParseIdError;

mod stream;
pub use stream::{CloseReason, Closed, StreamError, StreamErrorKind};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call.
///
/// One type for every call, with variants a caller can match on and that keep
/// apart what went wrong where:
///
/// - [`Error::Invalid`]: the input broke a rule of the API; nothing was sent.
/// - [`Error::Api`]: the service answered with one of its error codes ([`ApiError`]).
/// - [`Error::Io`], [`Error::Timeout`], [`Error::Tls`], [`Error::WebSocket`]: the transport
///   failed.
/// - [`Error::Decode`]: the service answered something this crate cannot read.
/// - [`Error::Closed`] (with what is closed: the `Core` or the connection, and why) and
///   [`Error::NotConnected`] (with why the connection went down): the stream connection
///   is closed or reconnecting; nothing was sent.
///
/// No error text ever contains the access token: server-provided text (error bodies, a
/// refused stream handshake's answer) is scrubbed of it before it is kept.
///
/// Every error type a call of this crate returns converts into `Error` with `?`, so a
/// program can use `fn main() -> Result<(), ran_routing::Error>`:
///
/// ```
/// use ran_routing::{DevEui, Error, TimeoutKind};
///
/// fn parse(text: &str) -> Result<DevEui, Error> {
///     Ok(text.parse::<DevEui>()?)
/// }
/// assert!(matches!(parse("7abe1b"), Err(Error::Invalid(_))));
/// # let _ = TimeoutKind::Connect;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input broke a rule of the API; it was caught before anything was sent.
    #[error("invalid input: {0}")]
    Invalid(#[from] InvalidInput),
    /// The client was configured with something unusable (a bad URL, a bad certificate);
    /// [`ConfigError::kind`] says which setting.
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// The service refused the request with one of its error codes.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A network error: connection refused, reset, unreachable host, ...
    #[error("network error: {0}")]
    Io(#[source] std::io::Error),
    /// Something did not happen in time; `kind` says which wait ran out.
    #[error("timed out ({kind}): {detail}")]
    Timeout {
        /// Which timeout fired.
        kind: TimeoutKind,
        /// What was being waited for, and for how long.
        detail: String,
    },
    /// The TLS handshake failed, for example because the server's certificate is not
    /// trusted or the server does not speak TLS at all. The `rustls` error, when there is
    /// one, is the [`source`](std::error::Error::source). (Boxed: it is large, and rare.)
    #[error(transparent)]
    Tls(Box<TlsError>),
    /// The WebSocket protocol failed: the server's answer to the upgrade is not one, or
    /// it broke the protocol on an established connection; [`StreamError::kind`] says
    /// which.
    #[error("WebSocket error: {0}")]
    WebSocket(StreamError),
    /// The service answered something this crate cannot read.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// What was being decoded, e.g. `"devices/insert response"`.
        what: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// The `Core` or the stream connection is closed for good ([`Closed`] says which,
    /// and why the connection ended); nothing was sent.
    #[error("{0}")]
    Closed(Closed),
    /// The stream connection is down and reconnecting, having ended for this reason;
    /// nothing was sent. Send again once it is back
    /// (the connection's `is_connected()`, or
    /// [`ConnectionEvent::Connected`](crate::ConnectionEvent::Connected)).
    #[error("not connected: reconnecting after: {0}")]
    NotConnected(CloseReason),
    /// A downlink was sent but its result did not arrive in time.
    #[error(
        "no result for downlink {transaction_id} in time ({})",
        if ack.is_some() { "the RAN acknowledged it" } else { "not even acknowledged" }
    )]
    DownstreamTimeout {
        /// The downlink's transaction id.
        transaction_id: u64,
        /// The RAN's ack, if it came.
        ack: Option<crate::model::DownstreamAck>,
    },
    /// A downlink was sent, but the connection ended before its result came.
    #[error(
        "the connection ended before the result of downlink {transaction_id} came ({}): {reason}",
        if ack.is_some() { "the RAN acknowledged it" } else { "it may have been sent" }
    )]
    DownstreamInterrupted {
        /// The downlink's transaction id.
        transaction_id: u64,
        /// The RAN's ack, if it came before the end.
        ack: Option<crate::model::DownstreamAck>,
        /// Why the connection ended (boxed: keeps `Error` at 64 bytes).
        reason: Box<CloseReason>,
    },
    /// A MIC could not be computed, or no candidate of a challenge matched.
    #[cfg(feature = "mic")]
    #[error(transparent)]
    Mic(#[from] crate::mic::MicError),
    /// Redis, where several processes share state, failed or cannot be reached
    /// (feature `redis`). Boxed: it is large, and rare.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Store(Box<StoreError>),
}

/// An unusable setting, in an [`Error::Config`]: which kind of setting, and what is wrong
/// with it (naming the URL or value, never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ConfigError {
    kind: ConfigErrorKind,
    detail: String,
}

impl ConfigError {
    pub(crate) fn new(kind: ConfigErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// Which setting is unusable.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// What is wrong with it.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Which setting is unusable, in a [`ConfigError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A base URL, endpoint or stream URL: no URL, a bad one, a scheme the API does not
    /// speak, no host.
    Url,
    /// Plain `http://` or `ws://` to a host that is not loopback, which would send the
    /// token in clear text (see `CoreBuilder::allow_insecure_remote`).
    InsecureRemote,
    /// A root certificate that cannot be read or used as a trust anchor, or a TLS setup
    /// it makes impossible.
    Certificate,
    /// The proxy URL.
    Proxy,
    /// The access token or the user agent: empty, or not visible ASCII.
    Credentials,
    /// A timeout of zero.
    Timeout,
}

/// A TLS failure, in an [`Error::Tls`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS error: {detail}")]
pub struct TlsError {
    detail: String,
    #[source]
    source: Option<rustls::Error>,
}

impl TlsError {
    /// What failed, naming the URL.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The TLS library's error, when there is one.
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        self.source.as_ref()
    }
}

/// Which wait ran out, in an [`Error::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Setting up the TCP connection (name resolution included).
    Connect,
    /// The TLS handshake.
    TlsHandshake,
    /// The stream's WebSocket upgrade (HTTP request and answer).
    WebSocketHandshake,
    /// A REST call, from the start to the last byte of the answer.
    Request,
    /// Writing to a stream connection whose peer takes no data.
    Write,
    /// Waiting for a stream message (`recv_timeout`, or `try_recv` with nothing queued).
    Receive,
    /// Keepalive: nothing arrived within the pong timeout after a ping (in a
    /// [`StreamErrorKind::Timeout`]).
    Keepalive,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::TlsHandshake => "TLS handshake",
            TimeoutKind::WebSocketHandshake => "WebSocket handshake",
            TimeoutKind::Request => "request",
            TimeoutKind::Write => "write",
            TimeoutKind::Receive => "receive",
            TimeoutKind::Keepalive => "keepalive",
        })
    }
}

impl Error {
    /// The service's error, if this is one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// Which timeout fired, if this is a timeout.
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        match self {
            Error::Timeout { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether the failure was caught before anything went on the wire.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_) | Error::Config(_) | Error::Closed(_) | Error::NotConnected(_)
        )
    }

    pub(crate) fn config(kind: ConfigErrorKind, detail: impl Into<String>) -> Self {
        Error::Config(ConfigError::new(kind, detail))
    }

    pub(crate) fn decode(what: &'static str, message: impl fmt::Display) -> Self {
        Error::Decode {
            what,
            message: message.to_string(),
        }
    }

    pub(crate) fn timeout(kind: TimeoutKind, detail: impl fmt::Display) -> Self {
        Error::Timeout {
            kind,
            detail: detail.to_string(),
        }
    }

    /// A TLS failure at `context` (a method and URL, or a URL), keeping the `rustls`
    /// error as the source and saying plainly when the server does not speak TLS.
    pub(crate) fn tls(context: impl fmt::Display, error: rustls::Error) -> Self {
        let detail = if speaks_no_tls(&error) {
            format!("{context}: the server does not speak TLS: use an http:// URL? ({error})")
        } else {
            format!("{context}: {error}")
        };
        Error::Tls(Box::new(TlsError {
            detail,
            source: Some(error),
        }))
    }

    /// A TLS failure without a `rustls` error.
    pub(crate) fn tls_text(detail: String) -> Self {
        Error::Tls(Box::new(TlsError {
            detail,
            source: None,
        }))
    }

    /// The same error, naming `url` (which must not hold the token) where it does not yet.
    pub(crate) fn at(self, url: &str) -> Self {
        match self {
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), format!("{url}: {e}"))),
            Error::Timeout { kind, detail } => Error::Timeout {
                kind,
                detail: format!("{url}: {detail}"),
            },
            Error::Tls(mut tls) => {
                tls.detail = format!("{url}: {}", tls.detail);
                Error::Tls(tls)
            }
            Error::WebSocket(e) => Error::WebSocket(e.prefixed(url)),
            other => other,
        }
    }
}

/// Whether a TLS failure is a plain-text answer read as TLS records: the first bytes of
/// `HTTP/1.1 400` make no valid record header.
fn speaks_no_tls(error: &rustls::Error) -> bool {
    use rustls::InvalidMessage::{InvalidContentType, UnknownProtocolVersion};
    matches!(
        error,
        rustls::Error::InvalidMessage(InvalidContentType | UnknownProtocolVersion)
    )
}

impl From<ParseIdError> for Error {
    fn from(e: ParseIdError) -> Self {
        Error::Invalid(InvalidInput::Id(e))
    }
}

#[cfg(feature = "mic")]
impl From<crate::mic::ParseKeyError> for Error {
    fn from(e: crate::mic::ParseKeyError) -> Self {
        Error::Invalid(InvalidInput::Key(e))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<crossbeam_channel::RecvTimeoutError> for Error {
    fn from(e: crossbeam_channel::RecvTimeoutError) -> Self {
        match e {
            crossbeam_channel::RecvTimeoutError::Timeout => Error::timeout(
                TimeoutKind::Receive,
                "no message arrived within the receive timeout",
            ),
            crossbeam_channel::RecvTimeoutError::Disconnected => receive_closed(),
        }
    }
}

impl From<crossbeam_channel::RecvError> for Error {
    fn from(_: crossbeam_channel::RecvError) -> Self {
        receive_closed()
    }
}

impl From<crossbeam_channel::TryRecvError> for Error {
    fn from(e: crossbeam_channel::TryRecvError) -> Self {
        match e {
            crossbeam_channel::TryRecvError::Empty => {
                Error::timeout(TimeoutKind::Receive, "no message is waiting")
            }
            crossbeam_channel::TryRecvError::Disconnected => receive_closed(),
        }
    }
}

fn receive_closed() -> Error {
    Error::Closed(Closed::Drained)
}

/// An input that breaks a rule of the API, caught before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A LoRa spreading factor above 12.
    #[error("spreading factor {0} is out of range 0..=12")]
    Spreading(u8),
    /// A class A delay outside 1..=15 seconds.
    #[error("class A delay {0} s is out of range 1..=15")]
    Delay(u8),
    /// A class B window with no slots or more than 8.
    #[error("class B needs 1 to 8 TMMS slots, got {0}")]
    TmmsSlots(usize),
    /// A class C deadline of zero, more than 512 s ahead, or (built from a `SystemTime`)
    /// already past.
    #[error(
        "class C deadline {deadline} must be Unix seconds from now ({now}) to now + 512 s, \
         or 1 for as soon as possible"
    )]
    Deadline {
        /// The deadline given, unix seconds.
        deadline: u64,
        /// The system clock when it was checked, unix seconds.
        now: u64,
    },
    /// An instant GPS time cannot express: before the GPS epoch (1980-01-06T00:00:00 UTC,
    /// unix second 315964800), or too far ahead for a class B slot in u64 milliseconds.
    #[error("unix second {unix_secs} is outside GPS time (from 1980-01-06T00:00:00 UTC)")]
    OutsideGpsTime {
        /// The instant, in whole unix seconds (rounded down; negative before 1970).
        unix_secs: i64,
    },
    /// A transaction id of zero; the service requires positive ids.
    #[error("transaction id must be positive")]
    TransactionId,
    /// A transaction id another `send_and_wait` on the same connection is waiting for.
    #[error("transaction id {0} is already awaited by another call")]
    TransactionIdInUse(u64),
    /// A result code this crate does not know cannot be sent.
    #[error("unknown result code {0:?}")]
    ResultCode(String),
    /// A multicast group name longer than 255 characters.
    #[error("multicast group name has {len} characters, at most 255 are allowed")]
    GroupNameTooLong {
        /// The name's length in characters.
        len: usize,
    },
    /// An update that changes nothing.
    #[error("nothing to update: give at least one of {0}")]
    NothingToUpdate(&'static str),
    /// Device details that are not a JSON document.
    #[error("device details must be a string of JSON: {0}")]
    DetailsNotJson(String),
    /// A DevEUI given twice, with different contents, in a desired fleet
    /// ([`fleet`](crate::fleet)).
    #[error("DevEUI {0} is listed twice with different identities")]
    DuplicateDevEui(crate::ids::DevEui),
    /// A multicast address given twice, with different contents, in a desired fleet.
    #[error("multicast group {0} is listed twice with different contents")]
    DuplicateGroup(crate::ids::MulticastAddr),
    /// A fleet plan that deletes more than the fleet's
    /// [`DeletionLimit`](crate::fleet::DeletionLimit) allows: an empty or truncated
    /// export would otherwise wipe the RAN. Nothing was written.
    #[error(
        "the plan deletes {planned} of the {held} {what} the RAN holds, more than the \
         {allowed} the deletion limit allows: is the desired list empty or cut short? \
         Nothing was written; raise the limit (Fleet::max_deletions) if this is meant"
    )]
    TooManyDeletions {
        /// What is deleted: `"devices"` or `"multicast groups"`.
        what: &'static str,
        /// How many the plan deletes.
        planned: usize,
        /// How many the RAN held when the plan was made.
        held: usize,
        /// How many the limit allows.
        allowed: usize,
    },
    /// An identifier that is not exactly its number of hex digits.
    #[error(transparent)]
    Id(ParseIdError),
    /// An AES-128 key that is not 32 hex digits.
    #[cfg(feature = "mic")]
    #[error(transparent)]
    Key(crate::mic::ParseKeyError),
    /// A value serde could not encode as JSON (a custom message type's `Serialize`).
    #[error("cannot encode as JSON: {0}")]
    Encode(String),
}

/// An error answer of the service, by its `error_code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The access token was refused: the service's `Unauthorized`, or any HTTP 401 or 403
    /// whose body names none of the other documented codes (a proxy's page, an empty
    /// body, an undocumented code).
    #[error("unauthorized: {description}")]
    Unauthorized {
        /// The service's description.
        description: String,
    },
    /// The request did not pass the service's validation (`ValidationFailed`).
    #[error(
        "validation failed: {description}{}{}",
        FieldErrors(detail),
        if *omitted > 0 { format!("; and {omitted} more") } else { String::new() }
    )]
    ValidationFailed {
        /// The service's description.
        description: String,
        /// Which fields failed, and why: as many as fit in the 2 KiB this crate keeps of
        /// any server-provided text.
        detail: Vec<FieldError>,
        /// How many more field errors the answer listed, left out to keep the error small.
        omitted: usize,
    },
    /// The DevEUI is already in the routing table (`Device.AlreadyExists`).
    #[error("device already exists: {description}")]
    DeviceAlreadyExists {
        /// The service's description.
        description: String,
    },
    /// No such device (`Device.NotFound`).
    #[error("device not found: {description}")]
    DeviceNotFound {
        /// The service's description.
        description: String,
    },
    /// The account's device limit is reached (`Device.LimitExhausted`).
    #[error("devices limit exhausted: {description}")]
    DevicesLimitExhausted {
        /// The service's description.
        description: String,
    },
    /// A group with this address exists (`MulticastGroup.AlreadyExists`).
    #[error("multicast group already exists: {description}")]
    MulticastGroupAlreadyExists {
        /// The service's description.
        description: String,
    },
    /// No such multicast group (`MulticastGroup.NotFound`).
    #[error("multicast group not found: {description}")]
    MulticastGroupNotFound {
        /// The service's description.
        description: String,
    },
    /// The device is already in the group (`MulticastGroup.AlreadyContainsTheDevice`).
    #[error("multicast group already contains the device: {description}")]
    MulticastGroupAlreadyContainsDevice {
        /// The service's description.
        description: String,
    },
    /// Any other answer: the `Unknown` code, an unknown code, a 5xx, or a 4xx whose body
    /// is not the documented error object.
    #[error("unexpected answer (HTTP {status}{}): {body}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Unknown {
        /// The HTTP status.
        status: u16,
        /// The `error_code`, when the body had one.
        code: Option<String>,
        /// The response body (or its description), truncated to a sane length.
        body: String,
    },
}

impl ApiError {
    /// The service's `error_code` for this error (`"Device.NotFound"`, ...).
    pub fn code(&self) -> &str {
        match self {
            ApiError::Unauthorized { .. } => "Unauthorized",
            ApiError::ValidationFailed { .. } => "ValidationFailed",
            ApiError::DeviceAlreadyExists { .. } => "Device.AlreadyExists",
            ApiError::DeviceNotFound { .. } => "Device.NotFound",
            ApiError::DevicesLimitExhausted { .. } => "Device.LimitExhausted",
            ApiError::MulticastGroupAlreadyExists { .. } => "MulticastGroup.AlreadyExists",
            ApiError::MulticastGroupNotFound { .. } => "MulticastGroup.NotFound",
            ApiError::MulticastGroupAlreadyContainsDevice { .. } => {
                "MulticastGroup.AlreadyContainsTheDevice"
            }
            ApiError::Unknown { code, .. } => code.as_deref().unwrap_or("Unknown"),
        }
    }
}

/// One failed field of a `ValidationFailed` answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FieldError {
    /// Where the field is, e.g. `["body", "DevEUI"]` (list indices as their decimal text).
    #[serde(deserialize_with = "loc_segments")]
    pub loc: Vec<String>,
    /// What is wrong with it.
    #[serde(default)]
    pub msg: String,
    /// The kind of failure, e.g. `"value_error"`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl FieldError {
    /// A failed field: where it is, what is wrong, and the kind of failure. For tests
    /// and emulators; the client reads them from the service's answers.
    pub fn new(
        loc: impl IntoIterator<Item = impl Into<String>>,
        msg: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Self {
            loc: loc.into_iter().map(Into::into).collect(),
            msg: msg.into(),
            kind: kind.into(),
        }
    }
}

fn loc_segments<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Segment {
        Name(String),
        Index(i64),
    }
    Ok(Vec::<Segment>::deserialize(d)?
        .into_iter()
        .map(|s| match s {
            Segment::Name(n) => n,
            Segment::Index(i) => i.to_string(),
        })
        .collect())
}

struct FieldErrors<'a>(&'a [FieldError]);

impl fmt::Display for FieldErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.0 {
            write!(f, "; {}: {}", e.loc.join("."), e.msg)?;
        }
        Ok(())
    }
}

#[cfg(feature = "redis")]
pub use store_error::{StoreError, StoreErrorKind};

#[cfg(feature = "redis")]
mod store_error {
    use std::fmt;

    /// A Redis command that failed, in an [`Error::Store`](super::Error::Store). Names the
    /// server by host and port, never by URL: the URL may carry a password.
    #[derive(Debug, thiserror::Error)]
    #[error("Redis at {target}: {kind}")]
    pub struct StoreError {
        target: String,
        kind: StoreErrorKind,
        #[source]
        source: Option<redis::RedisError>,
    }

    impl StoreError {
        pub(crate) fn new(
            target: &str,
            kind: StoreErrorKind,
            source: Option<redis::RedisError>,
        ) -> Self {
            Self {
                target: target.to_owned(),
                kind,
                source,
            }
        }

        /// What went wrong.
        pub fn kind(&self) -> &StoreErrorKind {
            &self.kind
        }
    }

    /// What went wrong talking to Redis.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum StoreErrorKind {
        /// No connection: refused, reset or unreachable. Retry once Redis is back.
        Unreachable,
        /// Redis did not answer within `RedisStore::timeout`.
        Timeout,
        /// Redis refused the credentials in the URL.
        Auth,
        /// The server is older than Redis 7.0.
        TooOld {
            /// The version the server reported.
            version: String,
        },
        /// Redis answered a command with an error.
        Command,
    }

    impl fmt::Display for StoreErrorKind {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Unreachable => f.write_str("unreachable"),
                Self::Timeout => f.write_str("timed out"),
                Self::Auth => f.write_str("authentication failed"),
                Self::TooOld { version } => write!(f, "version {version}; 7.0 or later is needed"),
                Self::Command => f.write_str("command failed"),
            }
        }
    }

    impl From<StoreError> for super::Error {
        fn from(e: StoreError) -> Self {
            super::Error::Store(Box::new(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_errors_convert_to_what_they_mean() {
        let timeout = Error::from(crossbeam_channel::RecvTimeoutError::Timeout);
        assert_eq!(timeout.timeout_kind(), Some(TimeoutKind::Receive));
        let empty = Error::from(crossbeam_channel::TryRecvError::Empty);
        assert_eq!(empty.timeout_kind(), Some(TimeoutKind::Receive));
        for closed in [
            Error::from(crossbeam_channel::RecvTimeoutError::Disconnected),
            Error::from(crossbeam_channel::TryRecvError::Disconnected),
            Error::from(crossbeam_channel::RecvError),
        ] {
            assert!(
                matches!(closed, Error::Closed(Closed::Drained)),
                "{closed:?}"
            );
        }
    }

    #[test]
    fn tls_errors_keep_the_rustls_error_and_name_plain_http() {
        let err = Error::tls(
            "GET https://host/x",
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert!(
            err.to_string()
                .contains("GET https://host/x: the server does not speak TLS: use an http:// URL?"),
            "{err}"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<rustls::Error>().is_some());
        let err = Error::tls("x", rustls::Error::DecryptError).at("wss://host/stream/");
        assert_eq!(
            err.to_string(),
            "TLS error: wss://host/stream/: x: cannot decrypt peer's message"
        );
    }

    #[cfg(feature = "mic")]
    #[test]
    fn mic_errors_convert() {
        let key: Result<crate::mic::AesKey, _> = "2b7e".parse();
        assert!(matches!(
            Error::from(key.unwrap_err()),
            Error::Invalid(InvalidInput::Key(_))
        ));
        let err = Error::from(crate::mic::MicError::ChallengeSize { candidates: 1 });
        assert!(matches!(err, Error::Mic(_)), "{err:?}");
    }
}
