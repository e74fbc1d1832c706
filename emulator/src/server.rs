//! The server: accept loop, one thread per connection, routing, shutdown.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::http::{HttpConn, Limits, Next, Request, Response, Timeouts};
use crate::limits::{out_of_descriptors, Spare, Warning, WARNING_PERIOD};
use crate::radio::Radio;
use crate::store::Store;
use crate::streams::{self, Hub, Kind};
use crate::sync::lock;
use crate::tls::Tls;
use crate::{control, rest};

/// The access token the server accepts. Its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Token(String);

impl Token {
    /// A token not checked yet; see [`checked`](Self::checked).
    pub(crate) fn unchecked(token: String) -> Self {
        Self(token)
    }

    /// The token, if it can travel in a header and a query: non-empty visible ASCII.
    pub(crate) fn checked(self) -> Result<Self> {
        if self.0.is_empty() || !self.0.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(
                "the access token must be non-empty visible ASCII".into(),
            ));
        }
        Ok(self)
    }

    /// The secret itself.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A byte stream a connection is served on: TCP, or TLS over TCP.
pub(crate) trait Socket: std::io::Read + std::io::Write + Send + 'static {
    /// The TCP stream underneath, for readiness, shutdown and options.
    fn tcp(&self) -> &TcpStream;
}

impl<T: Socket> Timeouts for T {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// How the server behaves; fixed once it runs.
pub(crate) struct Config {
    pub(crate) token: Token,
    /// `""` for the root, else `/segment[/segment...]` without a trailing slash.
    pub(crate) base_path: String,
    pub(crate) tls: Option<Tls>,
    pub(crate) limits: Limits,
    pub(crate) ping_interval: Duration,
    /// How long a stream peer may stay silent after a ping before it is dropped.
    pub(crate) pong_timeout: Duration,
    /// How long a connection may sit idle between requests (or mid-request).
    pub(crate) idle_timeout: Duration,
    /// How long reading one request, head and body, may take (a new connection's
    /// first request counts from the accept).
    pub(crate) request_timeout: Duration,
    /// How long writing one response may take before the connection is cut.
    pub(crate) write_timeout: Duration,
    /// Most connections served at once as asked; the server serves fewer if the
    /// descriptor limit cannot cover that many (see [`Shared::slots`]).
    pub(crate) max_connections: usize,
    /// A delay before each REST API request is handled, standing in for a WAN link.
    pub(crate) rest_latency: Duration,
    /// The largest answer of any kind (a `devices/select`, a control API list), in
    /// bytes of JSON.
    pub(crate) max_response_bytes: usize,
    /// Most frames each record (replies, downlinks received) keeps, oldest dropped.
    pub(crate) max_records: usize,
    /// When set, the control API asks for `Authorization: Bearer <it>`.
    pub(crate) control_token: Option<Token>,
}

/// What every connection thread shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: Mutex<Store>,
    pub(crate) hub: Hub,
    /// Emulated devices with keys, and the verdicts on the answers to their upstreams.
    pub(crate) radio: Radio,
    pub(crate) accepted: AtomicU64,
    pub(crate) local_addr: SocketAddr,
    stopping: AtomicBool,
    /// Open connections, to cut them all on shutdown.
    conns: Mutex<HashMap<u64, Conn>>,
    /// Connections served at once: `max_connections`, or fewer when the descriptor
    /// limit cannot cover that many.
    pub(crate) slots: usize,
    /// Connections answered 503 because every slot was taken.
    pub(crate) refused_busy: AtomicU64,
}

struct Conn {
    tcp: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl Shared {
    /// Connections open now (HTTP and streams), each holding one of the
    /// `max_connections` slots.
    pub(crate) fn open_connections(&self) -> usize {
        lock(&self.conns).len()
    }
}

/// A connection's slot: given back when its thread ends, however it ends.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Dropping the registered clone closes the descriptor too.
        lock(&self.shared.conns).remove(&self.id);
    }
}

/// A running server.
pub(crate) struct Server {
    pub(crate) shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(config: Config, bind: SocketAddr, store: Store) -> Result<Server> {
        let slots = crate::limits::connection_slots(config.max_connections);
        let max_records = config.max_records;
        let listener = TcpListener::bind(bind)?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            slots,
            refused_busy: AtomicU64::new(0),
            config,
            store: Mutex::new(store),
            hub: Hub::new(max_records),
            radio: Radio::default(),
            accepted: AtomicU64::new(0),
            local_addr,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("ran-emulator-accept".into())
                .spawn(move || accept_loop(&shared, &listener))?
        };
        Ok(Server {
            shared,
            accept: Some(accept),
        })
    }

    /// Stops accepting, cuts every connection and joins every thread. Idempotent.
    pub(crate) fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The accept loop blocks in accept(): one connection wakes it to see the flag.
        let mut wake = self.shared.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = accept.join();
        let conns: Vec<Conn> = lock(&self.shared.conns).drain().map(|(_, c)| c).collect();
        for conn in &conns {
            let _ = conn.tcp.shutdown(Shutdown::Both);
        }
        for conn in conns {
            if let Some(thread) = conn.thread {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    static ACCEPT_FAILED: Warning = Warning::new(WARNING_PERIOD);
    let mut spare = Spare::new();
    let mut next_id = 0u64;
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let tcp = match incoming {
            Ok(tcp) => tcp,
            Err(e) if out_of_descriptors(&e) => {
                // The client would wait in the backlog for an answer that never comes:
                // the spare descriptor takes it, to be told 503 at once.
                match spare.accept(listener) {
                    Some(tcp) => {
                        refuse_busy(shared, tcp);
                        spare.restore();
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
                continue;
            }
            Err(e) => {
                // A connection reset before accept, say: keep serving.
                ACCEPT_FAILED.warn(|| format!("emulator: accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        next_id += 1;
        let id = next_id;
        let mut conns = lock(&shared.conns);
        if conns.len() >= shared.slots {
            drop(conns);
            refuse_busy(shared, tcp);
            continue;
        }
        let Ok(registered) = tcp.try_clone() else {
            drop(conns);
            refuse_busy(shared, tcp);
            continue;
        };
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("ran-emulator-conn-{id}"))
                .spawn(move || in_slot(Slot { shared, id }, tcp, connection))
        };
        match thread {
            Ok(thread) => {
                conns.insert(
                    id,
                    Conn {
                        tcp: registered,
                        thread: Some(thread),
                    },
                );
            }
            Err(e) => log::warn!("emulator: cannot start a connection thread: {e}"),
        }
    }
}

/// Serves a connection in its slot. A bug in one connection must cost that connection
/// only: the slot and the descriptor are given back even if `serve` panics.
fn in_slot(slot: Slot, tcp: TcpStream, serve: fn(&Arc<Shared>, TcpStream)) {
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve(&slot.shared, tcp);
    }));
    if served.is_err() {
        log::error!("emulator: connection {} panicked; it is closed", slot.id);
    }
}

/// Answers a connection over the limit without reading it (TLS clients see a failed
/// handshake, which is as clear). The answer fits any empty socket buffer, so the
/// write does not wait for the peer; the timeout only bounds the unforeseen.
fn refuse_busy(shared: &Shared, mut tcp: TcpStream) {
    static BUSY: Warning = Warning::new(WARNING_PERIOD);
    shared.refused_busy.fetch_add(1, Ordering::Relaxed);
    BUSY.warn(|| "emulator: too many connections; refusing one".into());
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = Response::error(503, "Unknown", "too many connections", None).write_to(&mut tcp, true);
    let _ = tcp.shutdown(Shutdown::Both);
}

fn connection(shared: &Arc<Shared>, tcp: TcpStream) {
    let Ok(peer) = tcp.peer_addr() else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(shared.config.idle_timeout));
    // Every write is bounded; a response's writes share one deadline (`write_within`).
    let _ = tcp.set_write_timeout(Some(shared.config.write_timeout));
    match &shared.config.tls {
        None => {
            serve(shared, tcp, peer);
        }
        Some(tls) => {
            let conn = match rustls::ServerConnection::new(tls.config.clone()) {
                Ok(conn) => conn,
                Err(e) => {
                    log::warn!("emulator: cannot start TLS: {e}");
                    return;
                }
            };
            if let Some(mut stream) = serve(shared, rustls::StreamOwned::new(conn, tcp), peer) {
                // Mid-handshake, a flush would try to finish the handshake and wait for
                // a peer that already failed it.
                if !stream.conn.is_handshaking() {
                    stream.conn.send_close_notify();
                    let _ = std::io::Write::flush(&mut stream);
                }
            }
        }
    }
}

/// Serves requests until the connection ends; gives the stream back unless it became a
/// WebSocket.
fn serve<S: Socket>(shared: &Arc<Shared>, stream: S, peer: SocketAddr) -> Option<S> {
    let mut conn = HttpConn::new(stream, shared.config.limits)
        .with_timeouts(shared.config.idle_timeout, shared.config.request_timeout);
    loop {
        let req = match conn.next_request() {
            Next::Request(req) => req,
            Next::Closed => return Some(conn.stream),
            Next::Reject(response) => {
                let _ = response.write_within(&mut conn.stream, true, shared.config.write_timeout);
                return Some(conn.stream);
            }
        };
        match route(shared, &req, peer) {
            Routed::Respond(response) => {
                let keep = req.keep_alive() && !shared.stopping.load(Ordering::SeqCst);
                let written =
                    response.write_within(&mut conn.stream, !keep, shared.config.write_timeout);
                if let Err(e) = written {
                    log::debug!("emulator: cannot write a response: {e}");
                    return None;
                }
                if !keep {
                    return Some(conn.stream);
                }
            }
            Routed::Stream(kind) => {
                streams::serve(shared, kind, conn, &req);
                return None;
            }
        }
    }
}

enum Routed {
    Respond(Response),
    Stream(Kind),
}

/// The path with runs of `/` collapsed, so `base + "/devices"` with a base that ends in
/// `/` still finds its route.
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

fn route(shared: &Arc<Shared>, req: &Request, peer: SocketAddr) -> Routed {
    let path = normalize(&req.path);
    if let Some(rest) = path
        .strip_prefix("/emulator")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    {
        return Routed::Respond(control::handle(shared, rest.trim_matches('/'), req, peer));
    }
    let base = &shared.config.base_path;
    let Some(route) = path
        .strip_prefix(base.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .map(|r| r.trim_end_matches('/'))
    else {
        return Routed::Respond(not_found(req));
    };
    let stream = match route {
        "stream/upstream" => Some(Kind::Upstream),
        "stream/downstream" => Some(Kind::Downstream),
        _ => None,
    };
    if let Some(kind) = stream {
        // Which of several tokens counts is a guess a proxy may make differently.
        if req.query_values("access_token").len() > 1 {
            return Routed::Respond(Response::error(
                400,
                "Unknown",
                "access_token given more than once",
                None,
            ));
        }
        return Routed::Stream(kind);
    }
    if !shared.config.rest_latency.is_zero() {
        std::thread::sleep(shared.config.rest_latency);
    }
    let authorize = |req: &Request| authorize(shared.config.token.expose(), req);
    Routed::Respond(
        rest::handle(
            &shared.store,
            route,
            req,
            authorize,
            shared.config.max_response_bytes,
        )
        .unwrap_or_else(|| not_found(req)),
    )
}

fn not_found(req: &Request) -> Response {
    Response::error(
        404,
        "Unknown",
        format!(
            "no such endpoint: {} {}",
            req.method,
            req.path.chars().take(200).collect::<String>()
        ),
        None,
    )
}

/// Checks `Authorization: Bearer <token>`.
fn authorize(token: &str, req: &Request) -> std::result::Result<(), Response> {
    let given = req.header("Authorization").and_then(|h| {
        let (scheme, value) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
    });
    match given {
        Some(given) if given == token => Ok(()),
        Some(_) => Err(Response::error(
            401,
            "Unauthorized",
            "invalid access token",
            None,
        )),
        None => Err(Response::error(
            401,
            "Unauthorized",
            "missing bearer token in the Authorization header",
            None,
        )),
    }
    .map_err(|r| r.with_header("WWW-Authenticate", "Bearer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_connection_gives_its_slot_back() {
        let emu = crate::Emulator::start().unwrap();
        let shared = emu.shared.clone();
        // A socket pair of its own, so the emulator's accept loop plays no part.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let slot = |id: u64| {
            let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (tcp, _) = listener.accept().unwrap();
            let conn = Conn {
                tcp: tcp.try_clone().unwrap(),
                thread: None,
            };
            lock(&shared.conns).insert(id, conn);
            let slot = Slot {
                shared: shared.clone(),
                id,
            };
            (slot, tcp)
        };
        let held = |id| lock(&shared.conns).contains_key(&id);
        let (a, tcp) = slot(u64::MAX);
        let thread = std::thread::spawn(move || {
            in_slot(a, tcp, |_, _| panic!("a bug in one connection"));
        });
        assert!(
            thread.join().is_ok(),
            "the panic is caught at the thread's edge"
        );
        assert!(!held(u64::MAX), "the slot is given back");
        let (b, tcp) = slot(u64::MAX - 1);
        assert!(held(u64::MAX - 1));
        in_slot(b, tcp, |_, _| {});
        assert!(!held(u64::MAX - 1));
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(
            normalize("/api/v1//devices/insert"),
            "/api/v1/devices/insert"
        );
        assert_eq!(normalize("//x///y/"), "/x/y/");
    }
}
