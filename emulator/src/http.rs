//! HTTP/1.1 transport: reads requests with `httparse`, writes responses, keeps connections
//! alive.
//!
//! Bodies come with `Content-Length` or chunked transfer coding (chunk sizes parsed by
//! `httparse` too); heads and bodies have size limits so a hostile client costs bounded
//! memory, and a whole request has a deadline so a slow one costs bounded time. Anything
//! malformed gets a 4xx and the connection is closed, since after a framing error the
//! next request's start cannot be found. Framing is read as RFC 9112 section 6 asks of a
//! server that must not be fooled into seeing two requests where a proxy saw one:
//! `Content-Length` is digits only and single-valued, `Transfer-Encoding` is `chunked`
//! alone, never with `Content-Length` and never in HTTP/1.0.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The service's error body: `{"detail": {"error_code", "error_description",
/// "error_detail"?}}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    detail: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    error_code: &'a str,
    error_description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_detail: Option<Vec<FieldError>>,
}

/// One failed field of a `ValidationFailed` answer, in the shape of the service's
/// validation layer: `{"loc": ["body", "DevEUI"], "msg": ..., "type": ...}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FieldError {
    pub(crate) loc: Vec<String>,
    pub(crate) msg: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
}

/// Size limits for one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Request line plus headers, in bytes.
    pub(crate) max_head: usize,
    /// Body, in bytes (after chunked decoding).
    pub(crate) max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: 16 * 1024,
            max_body: 1024 * 1024,
        }
    }
}

const MAX_HEADERS: usize = 64;

/// A stream whose reads and writes can be given a timeout, so reading a request and
/// writing a response can each have a deadline.
pub(crate) trait Timeouts {
    /// Sets the timeout of the next reads (`None`: wait forever).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Sets the timeout of the next writes (`None`: wait forever).
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

/// The most written in one call while a response's deadline runs, so the deadline is
/// checked between calls even when each call makes a little progress.
const WRITE_CHUNK: usize = 64 * 1024;

/// One parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query string, percent-encoded as received.
    pub(crate) path: String,
    /// The raw query string (after `?`), if any.
    pub(crate) query: Option<String>,
    /// HTTP minor version: 0 or 1.
    pub(crate) version: u8,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// The first header with this name, as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether a comma-separated header (`Connection`, `Upgrade`) lists `token`.
    pub(crate) fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the client wants the connection kept open after the response.
    pub(crate) fn keep_alive(&self) -> bool {
        if self.header_has_token("Connection", "close") {
            return false;
        }
        self.version >= 1 || self.header_has_token("Connection", "keep-alive")
    }

    /// The decoded values of query parameter `name`, in order.
    pub(crate) fn query_values(&self, name: &str) -> Vec<String> {
        query_pairs(self.query.as_deref().unwrap_or(""))
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    }
}

/// `application/x-www-form-urlencoded` pairs of a query string.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k), form_decode(v))
    })
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A response about to be written.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub(crate) fn json(status: u16, value: &impl Serialize) -> Self {
        // Serializing our own plain data types cannot fail.
        let body = serde_json::to_vec(value).unwrap_or_default();
        Self {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body,
        }
    }

    /// The service's error body: `{"detail": {"error_code", "error_description", ...}}`.
    pub(crate) fn error(
        status: u16,
        code: &str,
        description: impl Into<String>,
        detail: Option<Vec<FieldError>>,
    ) -> Self {
        Self::json(
            status,
            &ErrorBody {
                detail: ErrorDetail {
                    error_code: code,
                    error_description: description.into(),
                    error_detail: detail,
                },
            },
        )
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The status line and headers; `close` adds `Connection: close`.
    fn head(&self, close: bool) -> Vec<u8> {
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        head.push_str("Server: ran-emulator\r\n");
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// Writes the response; `close` adds `Connection: close`.
    pub(crate) fn write_to(&self, w: &mut impl Write, close: bool) -> io::Result<()> {
        let mut out = self.head(close);
        out.extend_from_slice(&self.body);
        w.write_all(&out)?;
        w.flush()
    }

    /// Writes the response, giving up once `limit` has passed: a peer that reads too
    /// slowly, or not at all, loses its connection instead of holding a slot (and the
    /// body) for as long as it likes. The body is written from where it lies, never
    /// copied.
    pub(crate) fn write_within<W: Write + Timeouts>(
        &self,
        w: &mut W,
        close: bool,
        limit: Duration,
    ) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        write_by(w, &self.head(close), deadline)?;
        write_by(w, &self.body, deadline)?;
        w.set_write_timeout(Some(left_until(deadline)?))?;
        w.flush()
    }
}

/// The time left until `deadline`, or the error a missed deadline is.
fn left_until(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer did not read the answer in time",
        ));
    }
    Ok(left)
}

/// Writes all of `buf` by `deadline`, a chunk at a time.
fn write_by<W: Write + Timeouts>(w: &mut W, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        w.set_write_timeout(Some(left_until(deadline)?))?;
        match w.write(&buf[..buf.len().min(WRITE_CHUNK)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `[item, ...]` as JSON, or gives up once it would pass `max_bytes`, holding at
/// most that much (the items are not copied).
pub(crate) fn json_list<'a, T: Serialize + 'a>(
    items: impl Iterator<Item = &'a T>,
    max_bytes: usize,
) -> Option<Vec<u8>> {
    let mut out = vec![b'['];
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Serializing our own plain data types cannot fail.
        serde_json::to_writer(&mut out, item).ok()?;
        if out.len() >= max_bytes {
            return None;
        }
    }
    out.push(b']');
    Some(out)
}

impl Response {
    /// A JSON list written by [`json_list`], or the refusal of one over `max_bytes`.
    pub(crate) fn json_list(body: Option<Vec<u8>>, max_bytes: usize) -> Response {
        match body {
            Some(body) => Response {
                status: 200,
                headers: vec![("Content-Type", "application/json".into())],
                body,
            },
            None => Response::error(
                400,
                "Emulator.ResponseTooLarge",
                format!(
                    "the answer would be larger than {max_bytes} bytes: ask for less with \
                     offset and limit"
                ),
                None,
            ),
        }
    }
}

/// What reading the next request gave.
pub(crate) enum Next {
    Request(Request),
    /// The peer closed (or timed out) between requests.
    Closed,
    /// The request is unusable: answer this and close.
    Reject(Response),
}

/// A connection being read request by request.
pub(crate) struct HttpConn<S> {
    pub(crate) stream: S,
    /// Bytes read past the current request (the next pipelined request, or the first
    /// WebSocket frames after an upgrade request).
    pub(crate) buf: Vec<u8>,
    limits: Limits,
    /// How long the connection may wait for a request's first byte; `None`: no limit.
    idle_timeout: Option<Duration>,
    /// How long reading one request, head and body, may take; `None`: no limit.
    request_timeout: Option<Duration>,
    /// When the request being read must be complete. A new connection's first request
    /// runs from the accept; a later one from its first byte.
    deadline: Option<Instant>,
}

/// Why reading more bytes failed.
enum FillError {
    /// The request's deadline passed.
    Deadline,
    Io(io::Error),
}

/// Why a request could not be read to its end.
enum Abort {
    Closed,
    Reject(Response),
}

impl From<Abort> for Next {
    fn from(a: Abort) -> Next {
        match a {
            Abort::Closed => Next::Closed,
            Abort::Reject(r) => Next::Reject(r),
        }
    }
}

fn reject(status: u16, description: &str) -> Abort {
    Abort::Reject(Response::error(status, "Unknown", description, None))
}

impl<S: Read + Write + Timeouts> HttpConn<S> {
    pub(crate) fn new(stream: S, limits: Limits) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            limits,
            idle_timeout: None,
            request_timeout: None,
            deadline: None,
        }
    }

    /// Bounds the wait between requests (`idle`) and the time to read one request
    /// (`request`), counting from now for the first request.
    pub(crate) fn with_timeouts(mut self, idle: Duration, request: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self.request_timeout = Some(request);
        self.deadline = Instant::now().checked_add(request);
        self
    }

    /// Reads more bytes into the buffer; `Ok(false)` at end of stream.
    fn fill(&mut self) -> Result<bool, FillError> {
        let mut chunk = [0u8; 8192];
        loop {
            let timeout = match self.deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(FillError::Deadline);
                    }
                    Some(self.idle_timeout.map_or(left, |idle| idle.min(left)))
                }
                None => self.idle_timeout,
            };
            if timeout.is_some() {
                self.stream
                    .set_read_timeout(timeout)
                    .map_err(FillError::Io)?;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && self.deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    return Err(FillError::Deadline)
                }
                Err(e) => return Err(FillError::Io(e)),
            }
        }
    }

    /// Reads the next request, body included.
    pub(crate) fn next_request(&mut self) -> Next {
        let next = self.read_request();
        // The request is read (or abandoned): the next one gets a deadline of its own,
        // and a WebSocket taking the stream over finds the idle timeout back.
        self.deadline = None;
        if self.idle_timeout.is_some() {
            let _ = self.stream.set_read_timeout(self.idle_timeout);
        }
        next
    }

    fn read_request(&mut self) -> Next {
        let mut head = loop {
            if self.deadline.is_none() && !self.buf.is_empty() {
                self.deadline = self
                    .request_timeout
                    .and_then(|t| Instant::now().checked_add(t));
            }
            if !self.buf.is_empty() {
                match parse_head(&self.buf) {
                    Ok(Some((_, len))) if len > self.limits.max_head => {
                        return reject(431, "request head too large").into();
                    }
                    Ok(Some((head, len))) => {
                        self.buf.drain(..len);
                        break head;
                    }
                    Ok(None) if self.buf.len() > self.limits.max_head => {
                        return reject(431, "request head too large").into();
                    }
                    Ok(None) => {}
                    Err(httparse::Error::TooManyHeaders) => {
                        return reject(431, "too many headers").into();
                    }
                    Err(e) => return reject(400, &format!("malformed request: {e}")).into(),
                }
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return Next::Closed,
                Ok(false) => return reject(400, "connection closed mid-request").into(),
                Err(FillError::Deadline) => return request_timeout().into(),
                Err(FillError::Io(e)) => {
                    log::debug!("emulator: read failed: {e}");
                    return Next::Closed;
                }
            }
        };
        match self.read_body(&head) {
            Ok(body) => {
                head.body = body;
                Next::Request(head)
            }
            Err(abort) => abort.into(),
        }
    }

    fn read_body(&mut self, req: &Request) -> Result<Vec<u8>, Abort> {
        match framing(req)? {
            Framing::None => Ok(Vec::new()),
            Framing::Chunked => {
                self.send_continue(req)?;
                self.read_chunked()
            }
            Framing::Length(len) => {
                if len > self.limits.max_body {
                    return Err(reject(413, "request body too large"));
                }
                if len > 0 {
                    self.send_continue(req)?;
                }
                while self.buf.len() < len {
                    self.fill_or_closed()?;
                }
                Ok(self.buf.drain(..len).collect())
            }
        }
    }

    /// Answers `Expect: 100-continue` so clients that wait for it send their body.
    fn send_continue(&mut self, req: &Request) -> Result<(), Abort> {
        if req
            .header("Expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && req.version >= 1
        {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| self.stream.flush())
                .map_err(|_| Abort::Closed)?;
        }
        Ok(())
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, Abort> {
        let mut body = Vec::new();
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.drain(..used);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() > self.limits.max_head => {
                        return Err(reject(400, "bad chunk header"));
                    }
                    Ok(httparse::Status::Partial) => self.fill_or_closed()?,
                    Err(_) => return Err(reject(400, "bad chunk size")),
                }
            };
            if size == 0 {
                return self.skip_trailers().map(|()| body);
            }
            // A hostile size (up to 2^64 - 1) must not overflow the sums below.
            let size = usize::try_from(size)
                .ok()
                .filter(|s| {
                    body.len()
                        .checked_add(*s)
                        .is_some_and(|total| total <= self.limits.max_body)
                })
                .ok_or_else(|| reject(413, "request body too large"))?;
            let framed = size
                .checked_add(2)
                .ok_or_else(|| reject(413, "request body too large"))?;
            while self.buf.len() < framed {
                self.fill_or_closed()?;
            }
            if &self.buf[size..framed] != b"\r\n" {
                return Err(reject(400, "chunk not terminated by CRLF"));
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    fn skip_trailers(&mut self) -> Result<(), Abort> {
        loop {
            if self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
                return Ok(());
            }
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                self.buf.drain(..end + 4);
                return Ok(());
            }
            if self.buf.len() > self.limits.max_head {
                return Err(reject(431, "trailers too large"));
            }
            self.fill_or_closed()?;
        }
    }

    fn fill_or_closed(&mut self) -> Result<(), Abort> {
        match self.fill() {
            Ok(true) => Ok(()),
            Err(FillError::Deadline) => Err(request_timeout()),
            _ => Err(Abort::Closed),
        }
    }
}

fn request_timeout() -> Abort {
    reject(408, "the request took too long to arrive")
}

/// How a request's body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// Reads the framing headers strictly (RFC 9112 6.1-6.3): anything a proxy in front could
/// read differently is refused, and the connection closed with it.
fn framing(req: &Request) -> Result<Framing, Abort> {
    let values = |name: &str| -> Vec<&[u8]> {
        req.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_ascii())
            .collect()
    };
    let codings = values("Transfer-Encoding");
    let lengths = values("Content-Length");
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(reject(
                400,
                "Content-Length and Transfer-Encoding together are refused",
            ));
        }
        if req.version < 1 {
            return Err(reject(400, "Transfer-Encoding is not allowed in HTTP/1.0"));
        }
        let list: Vec<String> = codings
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        return match list.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked),
            [.., last] if last == "chunked" => {
                Err(reject(501, "only the chunked transfer coding is supported"))
            }
            // Chunked missing or not last: the body's end cannot be found.
            _ if list.iter().all(|t| t != "chunked") && !list.is_empty() => {
                Err(reject(501, "only the chunked transfer coding is supported"))
            }
            _ => Err(reject(400, "bad Transfer-Encoding")),
        };
    }
    let Some(first) = lengths.first() else {
        return Ok(Framing::None);
    };
    if lengths.iter().any(|l| l != first) {
        return Err(reject(400, "conflicting Content-Length headers"));
    }
    // 1*DIGIT: no sign, no spaces inside, no list, and no overflow.
    if first.is_empty() || !first.iter().all(u8::is_ascii_digit) {
        return Err(reject(400, "bad Content-Length"));
    }
    std::str::from_utf8(first)
        .ok()
        .and_then(|t| t.parse().ok())
        .map(Framing::Length)
        .ok_or_else(|| reject(413, "request body too large"))
}

/// Parses a request head; `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(buf)? else {
        return Ok(None);
    };
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let request = Request {
        method: parsed.method.unwrap_or("").to_owned(),
        path,
        query,
        version: parsed.version.unwrap_or(1),
        headers: parsed
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        body: Vec::new(),
    };
    Ok(Some((request, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory duplex: reads from `input`, collects writes.
    struct Pipe {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte at a time exercises every partial-parse path.
            let n = buf.len().min(1);
            self.input.read(&mut buf[..n])
        }
    }

    impl Timeouts for Pipe {
        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
        fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn(input: &str) -> HttpConn<Pipe> {
        HttpConn::new(
            Pipe {
                input: io::Cursor::new(input.as_bytes().to_vec()),
                output: Vec::new(),
            },
            Limits {
                max_head: 256,
                max_body: 64,
            },
        )
    }

    fn request(c: &mut HttpConn<Pipe>) -> Request {
        match c.next_request() {
            Next::Request(r) => r,
            Next::Closed => panic!("closed"),
            Next::Reject(r) => panic!("rejected {}", r.status),
        }
    }

    fn rejected(c: &mut HttpConn<Pipe>) -> u16 {
        match c.next_request() {
            Next::Reject(r) => r.status,
            _ => panic!("not rejected"),
        }
    }

    #[test]
    fn pipelined_requests_with_bodies() {
        let mut c = conn(
            "POST /a?x=1&DevEUIs=a%20b&DevEUIs=c+d HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
             POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n\
             2\r\nhe\r\n3;ext=1\r\nllo\r\n0\r\nX-Trailer: 1\r\n\r\n\
             GET /c HTTP/1.0\r\n\r\n",
        );
        let a = request(&mut c);
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/a"));
        assert_eq!(a.body, b"abc");
        assert_eq!(a.query_values("DevEUIs"), ["a b", "c d"]);
        assert!(a.keep_alive());
        let b = request(&mut c);
        assert_eq!(b.body, b"hello");
        assert!(c.stream.output.starts_with(b"HTTP/1.1 100 Continue"));
        let g = request(&mut c);
        assert_eq!(g.path, "/c");
        assert!(!g.keep_alive());
        assert!(matches!(c.next_request(), Next::Closed));
    }

    #[test]
    fn limits_and_malformed_input() {
        assert_eq!(
            rejected(&mut conn("GET / HTTP/1.1\r\nX: 1\n\0\r\n\r\n")),
            400
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(300));
        assert_eq!(rejected(&mut conn(&long)), 431);
        assert_eq!(
            rejected(&mut conn("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n")),
            413
        );
        assert_eq!(
            rejected(&mut conn(
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            )),
            400
        );
        assert_eq!(
            rejected(&mut conn(
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"
            )),
            501
        );
        assert_eq!(
            rejected(&mut conn(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            )),
            400
        );
        assert_eq!(
            rejected(&mut conn(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n"
            )),
            413
        );
        assert_eq!(rejected(&mut conn("GET / HTTP/1.1\r\n")), 400);
    }

    #[test]
    fn hostile_chunk_sizes_do_not_overflow() {
        for size in ["ffffffffffffffff", "fffffffffffffffe", "7fffffffffffffff"] {
            let input = format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n{size}\r\n"
            );
            assert_eq!(rejected(&mut conn(&input)), 413, "{size}");
        }
    }

    #[test]
    fn framing_is_strict() {
        let post = |headers: &str| format!("POST / HTTP/1.1\r\n{headers}\r\n");
        for (headers, status) in [
            ("Content-Length: 1\r\nTransfer-Encoding: chunked\r\n", 400),
            ("Content-Length: +1\r\n", 400),
            ("Content-Length: -1\r\n", 400),
            ("Content-Length: 1 1\r\n", 400),
            ("Content-Length: \r\n", 400),
            ("Content-Length: 99999999999999999999999\r\n", 413),
            ("Transfer-Encoding: gzip, chunked\r\n", 501),
            ("Transfer-Encoding: chunked, gzip\r\n", 400),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                501,
            ),
            ("Transfer-Encoding: ,\r\n", 400),
        ] {
            assert_eq!(rejected(&mut conn(&post(headers))), status, "{headers:?}");
        }
        let old = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(rejected(&mut conn(old)), 400);
        // Well-formed framings still read.
        let ok = "POST / HTTP/1.1\r\nContent-Length:  2 \r\n\r\nab\
                  POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nc\r\n0\r\n\r\n";
        let mut c = conn(ok);
        assert_eq!(request(&mut c).body, b"ab");
        assert_eq!(request(&mut c).body, b"c");
    }

    #[test]
    fn response_format() {
        let mut out = Vec::new();
        Response::error(404, "Unknown", "nope", None)
            .write_to(&mut out, true)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with(r#"{"detail":{"error_code":"Unknown","error_description":"nope"}}"#));
    }
}
