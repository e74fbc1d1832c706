//! Opening a client WebSocket: TCP with a connect timeout, optional TLS, the upgrade
//! with the token in the query string, then a [`Link`] on top.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, WebSocket};

use super::link::{Link, LinkOptions, Outbox};
use super::socket::Socket;
use crate::config::AccessToken;
use crate::error::{ApiError, Error, Result};

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

/// Opens the connection and starts its threads.
pub(crate) fn open_link<T, D>(
    params: &ConnectParams,
    options: LinkOptions,
    decode: D,
    outbox: Outbox<T>,
) -> Result<Link>
where
    T: Send + 'static,
    D: FnMut(Bytes) -> Option<T> + Send + 'static,
{
    let uri: http::Uri = params
        .url
        .parse()
        .map_err(|e| Error::Config(format!("bad stream URL {:?}: {e}", params.url)))?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => {
            return Err(Error::Config(format!(
                "stream URL {:?} must be ws:// or wss://",
                params.url
            )))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| Error::Config(format!("stream URL {:?} has no host", params.url)))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = connect_tcp(&host, port, params.connect_timeout)?;
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| Error::Config(format!("bad TLS server name {host:?}: {e}")))?;
        let conn = rustls::ClientConnection::new(params.tls.clone(), name)
            .map_err(|e| Error::Tls(e.to_string()))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| tls_error(e, params.connect_timeout))?;
        }
        let ws = handshake(params, stream)?;
        Link::spawn(ws, options, decode, outbox)
    } else {
        let ws = handshake(params, tcp)?;
        Link::spawn(ws, options, decode, outbox)
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
                tcp.set_read_timeout(Some(timeout)).map_err(Error::Io)?;
                tcp.set_write_timeout(Some(timeout)).map_err(Error::Io)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Error::Timeout(format!("connecting to {host}:{port}"))
        }
        Some(e) => Error::Io(e),
        None => Error::Io(std::io::Error::other(format!(
            "{host} resolved to no address"
        ))),
    })
}

fn tls_error(e: std::io::Error, timeout: Duration) -> Error {
    if super::socket::would_block(&e) || e.kind() == std::io::ErrorKind::TimedOut {
        return Error::Timeout(format!("TLS handshake took longer than {timeout:?}"));
    }
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::Tls(tls.to_string()),
        None => Error::Io(e),
    }
}

fn handshake<S: Socket>(params: &ConnectParams, stream: S) -> Result<WebSocket<S>> {
    let separator = if params.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{separator}access_token={}",
        params.url,
        percent_encode(params.token.expose())
    );
    let mut request = url
        .into_client_request()
        // The error text could quote the URL, which now holds the token.
        .map_err(|_| Error::Config(format!("bad stream URL {:?}", params.url)))?;
    if let Ok(agent) = params.user_agent.parse() {
        request
            .headers_mut()
            .insert(http::header::USER_AGENT, agent);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(params.max_frame_size))
        .max_frame_size(Some(params.max_frame_size))
        // Each send is flushed at once; buffering would only delay acks.
        .write_buffer_size(0);
    let (ws, _response) = tungstenite::client::client_with_config(request, stream, Some(config))
        .map_err(|e| handshake_error(e, params))?;
    ws.get_ref()
        .tcp()
        .set_read_timeout(None)
        .map_err(Error::Io)?;
    ws.get_ref()
        .tcp()
        .set_write_timeout(None)
        .map_err(Error::Io)?;
    Ok(ws)
}

fn handshake_error<S: std::io::Read + std::io::Write>(
    e: tungstenite::HandshakeError<tungstenite::ClientHandshake<S>>,
    params: &ConnectParams,
) -> Error {
    let e = match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => {
            return Error::Timeout(format!(
                "WebSocket handshake took longer than {:?}",
                params.connect_timeout
            ))
        }
    };
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            if status == 401 || status == 403 {
                let description = match ApiError::from_response(status, &body) {
                    ApiError::Unauthorized { description } => description,
                    _ => format!("the stream handshake was refused with HTTP {status}"),
                };
                Error::Api(ApiError::Unauthorized { description })
            } else {
                Error::Api(ApiError::from_response(status, &body))
            }
        }
        tungstenite::Error::Io(e)
            if super::socket::would_block(&e) || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            Error::Timeout(format!(
                "WebSocket handshake took longer than {:?}",
                params.connect_timeout
            ))
        }
        tungstenite::Error::Io(e) => Error::Io(e),
        // Only the kind: some variants quote the request URL, which holds the token.
        other => Error::WebSocket(format!("handshake failed: {}", describe(&other))),
    }
}

fn describe(e: &tungstenite::Error) -> &'static str {
    match e {
        tungstenite::Error::Url(_) => "bad URL",
        tungstenite::Error::Protocol(_) => "protocol error",
        tungstenite::Error::Capacity(_) => "response too large",
        tungstenite::Error::Tls(_) => "TLS error",
        tungstenite::Error::Utf8(_) => "invalid UTF-8",
        tungstenite::Error::HttpFormat(_) => "malformed HTTP",
        _ => "unexpected answer",
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass as they are).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
