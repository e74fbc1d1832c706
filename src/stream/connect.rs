//! Opening a client WebSocket: TCP with a connect timeout, optional TLS, the upgrade
//! with the token in the query string, then a [`Link`] on top.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocketConfig;
use tungstenite::Bytes;

use super::link::{Link, LinkOptions};
use super::read::{Outbox, Stamped};
use super::session::OpenError;
use super::socket::{wait_ready, would_block, Interest, Socket};
use crate::error::{
    ApiError, ConfigErrorKind, Error, Result, StreamError, StreamErrorKind, TimeoutKind,
};
use crate::AccessToken;

/// Everything needed to open one stream connection.
#[derive(Clone)]
pub(crate) struct ConnectParams {
    /// `ws://` or `wss://` URL of the stream, without the token.
    pub(crate) url: String,
    pub(crate) token: AccessToken,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// Bounds each step of opening: TCP connect, TLS and WebSocket handshakes.
    pub(crate) connect_timeout: Duration,
    pub(crate) user_agent: String,
    pub(crate) max_frame_size: usize,
}

/// Opens the connection and starts its threads. Errors name the URL (never the token).
pub(crate) fn open_link<T, D>(
    params: &ConnectParams,
    options: LinkOptions,
    decode: D,
    outbox: Outbox<Stamped<T>>,
) -> std::result::Result<Link, OpenError>
where
    T: Send + 'static,
    D: Fn(Bytes) -> Option<T> + Send + 'static,
{
    open_link_unnamed(params, options, decode, outbox).map_err(|e| OpenError {
        error: e.error.at(&params.url),
        by_api: e.by_api,
    })
}

fn open_link_unnamed<T, D>(
    params: &ConnectParams,
    options: LinkOptions,
    decode: D,
    outbox: Outbox<Stamped<T>>,
) -> std::result::Result<Link, OpenError>
where
    T: Send + 'static,
    D: Fn(Bytes) -> Option<T> + Send + 'static,
{
    let uri: http::Uri = params.url.parse().map_err(|e| {
        Error::config(
            ConfigErrorKind::Url,
            format!("bad stream URL {:?}: {e}", params.url),
        )
    })?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => {
            return Err(Error::config(
                ConfigErrorKind::Url,
                format!("stream URL {:?} must be ws:// or wss://", params.url),
            )
            .into())
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| {
            Error::config(
                ConfigErrorKind::Url,
                format!("stream URL {:?} has no host", params.url),
            )
        })?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = connect_tcp(&host, port, params.connect_timeout)?;
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            Error::config(
                ConfigErrorKind::Url,
                format!("bad TLS server name {host:?}: {e}"),
            )
        })?;
        let conn = rustls::ClientConnection::new(params.tls.clone(), name)
            .map_err(|e| Error::tls("TLS setup", e))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let mut sock = UntilDeadline {
            io: &mut stream.sock,
            deadline: Instant::now() + params.connect_timeout,
        };
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut sock)
                .map_err(|e| tls_error(e, params.connect_timeout))?;
        }
        upgrade(params, &uri, stream, options, decode, outbox)
    } else {
        upgrade(params, &uri, tcp, options, decode, outbox)
    }
}

/// The WebSocket upgrade on a connected (and, for `wss`, secured) socket, then the
/// connection's threads.
fn upgrade<S, T, D>(
    params: &ConnectParams,
    uri: &http::Uri,
    stream: S,
    options: LinkOptions,
    decode: D,
    outbox: Outbox<Stamped<T>>,
) -> std::result::Result<Link, OpenError>
where
    S: Socket,
    T: Send + 'static,
    D: Fn(Bytes) -> Option<T> + Send + 'static,
{
    let (stream, rest) = handshake(params, uri, stream)?;
    Ok(Link::spawn(
        stream,
        rest,
        ws_config(params),
        options,
        decode,
        outbox,
    )?)
}

/// A socket in non-blocking mode used as a blocking one whose every read and write waits
/// at most until the deadline. A timeout per call alone would not bound the handshake:
/// rustls and the upgrade both read until they are done, so a server dripping a byte at a
/// time could stretch them without end. Readiness waits on the descriptor instead of
/// socket timeouts: setting `SO_RCVTIMEO`/`SO_SNDTIMEO` before every call (and clearing
/// them for the link) cost a system call each.
struct UntilDeadline<'a, S> {
    io: &'a mut S,
    deadline: Instant,
}

impl<S: Socket> UntilDeadline<'_, S> {
    /// Waits for `interest` until the deadline; `TimedOut` once it has passed.
    fn wait(&self, interest: Interest) -> std::io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait_ready(self.io.tcp(), interest, Some(left))? {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        Ok(())
    }

    /// Runs `op` until it does not report "not ready", waiting for `interest` between.
    fn retry<R>(
        &mut self,
        interest: Interest,
        mut op: impl FnMut(&mut S) -> std::io::Result<R>,
    ) -> std::io::Result<R> {
        loop {
            match op(self.io) {
                Err(e) if would_block(&e) => self.wait(interest)?,
                other => return other,
            }
        }
    }
}

impl<S: Socket> Read for UntilDeadline<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.retry(Interest::Read, |io| io.read(buf))
    }
}

impl<S: Socket> Write for UntilDeadline<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.retry(Interest::Write, |io| io.write(buf))
    }

    /// rustls writes the records it has queued as one vector: without this, each would
    /// be a system call and a TCP segment of its own (the client's last handshake flight
    /// is two records).
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.retry(Interest::Write, |io| io.write_vectored(bufs))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.retry(Interest::Write, |io| io.flush())
    }
}

fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs = (host, port).to_socket_addrs().map_err(Error::Io)?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => {
                // Acks are small and latency-bound; Nagle would hold them back.
                tcp.set_nodelay(true).map_err(Error::Io)?;
                // The handshakes wait for readiness until their deadline (`UntilDeadline`);
                // the link needs the socket non-blocking anyway.
                tcp.set_nonblocking(true).map_err(Error::Io)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Error::timeout(TimeoutKind::Connect, format!("connecting to {host}:{port}"))
        }
        Some(e) => Error::Io(e),
        None => Error::Io(std::io::Error::other(format!(
            "{host} resolved to no address"
        ))),
    })
}

fn tls_error(e: std::io::Error, timeout: Duration) -> Error {
    if would_block(&e) || e.kind() == std::io::ErrorKind::TimedOut {
        return Error::timeout(
            TimeoutKind::TlsHandshake,
            format!("TLS handshake took longer than {timeout:?}"),
        );
    }
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::tls("TLS handshake", tls.clone()),
        None => Error::Io(e),
    }
}

/// Most bytes of a handshake response head, and of the body of a refusal.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// How much a stream connection reads at most per read call.
pub(super) const READ_BUFFER_SIZE: usize = 16 * 1024;

fn ws_config(params: &ConnectParams) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(params.max_frame_size))
        .max_frame_size(Some(params.max_frame_size))
        // Each send is flushed at once; buffering would only delay acks.
        .write_buffer_size(0)
        // tungstenite zero-fills the free part of its read buffer before every read: at
        // its default 128 KiB that memset cost more than the read itself (a lone
        // message's round trip: ratio 0.80 -> 0.92-0.95). 16 KiB still takes a TLS
        // record's plaintext in one read, and a flood 30 frames per read.
        .read_buffer_size(READ_BUFFER_SIZE)
}

/// The WebSocket upgrade, written and read here: tungstenite's client would log the whole
/// request at TRACE, and the request line carries the token in its query string. Returns
/// the socket and what was read past the answer.
fn handshake<S: Socket>(
    params: &ConnectParams,
    uri: &http::Uri,
    mut stream: S,
) -> std::result::Result<(S, Vec<u8>), OpenError> {
    let deadline = Instant::now() + params.connect_timeout;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let separator = if path.contains('?') { '&' } else { '?' };
    // Only host and port: any userinfo in the URL is not for the Host header.
    let host = uri
        .authority()
        .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""));
    let key = tungstenite::handshake::client::generate_key();
    let mut request = format!(
        "GET {path}{separator}access_token={} HTTP/1.1\r\nHost: {host}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: {key}\r\n",
        percent_encode(params.token.expose())
    );
    if http::HeaderValue::from_str(&params.user_agent).is_ok() {
        request.push_str(&format!("User-Agent: {}\r\n", params.user_agent));
    }
    request.push_str("\r\n");
    let timeout = || {
        Error::timeout(
            TimeoutKind::WebSocketHandshake,
            format!(
                "WebSocket handshake took longer than {:?}",
                params.connect_timeout
            ),
        )
    };
    let fail = |e: std::io::Error| {
        if would_block(&e) || e.kind() == std::io::ErrorKind::TimedOut {
            timeout()
        } else {
            Error::Io(e)
        }
    };
    // Each operation waits at most for the time left (see `UntilDeadline`).
    let mut io = UntilDeadline {
        io: &mut stream,
        deadline,
    };
    io.write_all(request.as_bytes()).map_err(fail)?;
    io.flush().map_err(fail)?;

    let mut buf = Vec::with_capacity(1024);
    let mut read_more = |buf: &mut Vec<u8>| -> Result<bool> {
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).map_err(fail)?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    };
    let head_len = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(handshake_failed("response head too large").into());
        }
        if !read_more(&mut buf)? {
            let why = if speaks_tls(&buf) {
                "the server speaks TLS: use an https:// URL? (it answered the WebSocket \
                 handshake with a TLS record and closed the connection)"
            } else {
                "the server closed the connection during the WebSocket handshake"
            };
            let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why);
            return Err(Error::Io(eof).into());
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(
        response.parse(&buf[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        return Err(handshake_failed("malformed HTTP").into());
    }
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    if status != 101 {
        let length = header("Content-Length").and_then(|v| v.parse::<usize>().ok());
        let limit = length.unwrap_or(MAX_REFUSAL_BODY).min(MAX_REFUSAL_BODY);
        let mut body = buf.split_off(head_len);
        // Without a length the body ends with the connection; either way, bounded.
        while body.len() < limit {
            match read_more(&mut body) {
                Ok(true) => {}
                Ok(false) | Err(_) => break,
            }
        }
        body.truncate(limit);
        let body = String::from_utf8_lossy(&body);
        return Err(refusal(status, &body, &params.token));
    }
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if !has_token("Upgrade", "websocket")
        || !has_token("Connection", "upgrade")
        || header("Sec-WebSocket-Accept") != Some(accept.as_str())
    {
        return Err(handshake_failed("the server did not accept the upgrade").into());
    }
    // Frames the server sent right after its answer are the WebSocket's to read.
    let rest = buf.split_off(head_len);
    Ok((stream, rest))
}

fn handshake_failed(why: &str) -> Error {
    Error::WebSocket(StreamError::new(
        StreamErrorKind::Handshake,
        format!("handshake failed: {why}"),
    ))
}

/// Whether the answer to a plain-text handshake starts like a TLS record (an alert or a
/// handshake, protocol version 3.x): a TLS server reading our request as a bad
/// ClientHello.
fn speaks_tls(answer: &[u8]) -> bool {
    matches!(answer, [0x15 | 0x16, 0x03, ..])
}

/// The error for a refused upgrade. A 401 or 403 is always `Unauthorized` (a first
/// connect fails with it, see `rest::api_error`); whether the API itself said so, rather
/// than a proxy's page, decides whether a reconnect gives up at once (see
/// `reconnect.rs`).
fn refusal(status: u16, body: &str, token: &AccessToken) -> OpenError {
    let error = crate::rest::api_error(status, body, token);
    if status == 401 || status == 403 {
        let description = match error {
            ApiError::Unauthorized { description } => description,
            other => format!("the stream handshake was refused with HTTP {status}: {other}"),
        };
        OpenError {
            error: Error::Api(ApiError::Unauthorized { description }),
            by_api: crate::rest::is_services_unauthorized(status, body),
        }
    } else {
        Error::Api(error).into()
    }
}

/// What a query value keeps as it is: RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value.
fn percent_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}
