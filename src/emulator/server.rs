//! The server: accept loop, one thread per connection, routing, shutdown.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::http::{HttpConn, Limits, Next, Request, Response};
use super::radio::Radio;
use super::store::Store;
use super::streams::{self, Hub, Kind};
use super::tls::Tls;
use super::{control, rest};
use crate::error::{Error, Result};
use crate::stream::socket::Socket;
use crate::sync::lock;

/// How the server behaves; fixed once it runs.
pub(crate) struct Config {
    pub(crate) token: String,
    /// `""` for the root, else `/segment[/segment...]` without a trailing slash.
    pub(crate) base_path: String,
    pub(crate) tls: Option<Tls>,
    pub(crate) limits: Limits,
    pub(crate) ping_interval: Duration,
    /// How long a stream peer may stay silent after a ping before it is dropped.
    pub(crate) pong_timeout: Duration,
    /// How long a connection may sit idle between requests (or mid-request).
    pub(crate) idle_timeout: Duration,
    /// Most connections served at once; one more is answered 503 and closed.
    pub(crate) max_connections: usize,
    /// Added before every REST answer (a WAN link's round trip); outside the store's lock.
    pub(crate) rest_latency: Duration,
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
}

struct Conn {
    tcp: TcpStream,
    thread: Option<JoinHandle<()>>,
}

/// A running server.
pub(crate) struct Server {
    pub(crate) shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(config: Config, bind: SocketAddr, store: Store) -> Result<Server> {
        let listener = TcpListener::bind(bind).map_err(Error::Io)?;
        let local_addr = listener.local_addr().map_err(Error::Io)?;
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(store),
            hub: Hub::default(),
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
                .spawn(move || accept_loop(&shared, &listener))
                .map_err(Error::Io)?
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
    let mut next_id = 0u64;
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let tcp = match incoming {
            Ok(tcp) => tcp,
            Err(e) => {
                // Out of descriptors, or a connection reset before accept: keep serving.
                log::warn!("emulator: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        next_id += 1;
        let id = next_id;
        let Ok(registered) = tcp.try_clone() else {
            continue;
        };
        let mut conns = lock(&shared.conns);
        if conns.len() >= shared.config.max_connections {
            drop(conns);
            refuse_busy(tcp);
            continue;
        }
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("ran-emulator-conn-{id}"))
                .spawn(move || {
                    connection(&shared, tcp);
                    lock(&shared.conns).remove(&id);
                })
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

/// Answers a connection over the limit without reading it (TLS clients see a failed
/// handshake, which is as clear).
fn refuse_busy(mut tcp: TcpStream) {
    log::warn!("emulator: too many connections; refusing one");
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = Response::error(503, "Unknown", "too many connections", None).write_to(&mut tcp, true);
    let _ = tcp.shutdown(Shutdown::Both);
}

fn connection(shared: &Arc<Shared>, tcp: TcpStream) {
    let Ok(peer) = tcp.peer_addr() else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(shared.config.idle_timeout));
    let _ = tcp.set_write_timeout(Some(shared.config.idle_timeout));
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
    let mut conn = HttpConn::new(stream, shared.config.limits);
    loop {
        let req = match conn.next_request() {
            Next::Request(req) => req,
            Next::Closed => return Some(conn.stream),
            Next::Reject(response) => {
                let _ = response.write_to(&mut conn.stream, true);
                return Some(conn.stream);
            }
        };
        match route(shared, &req, peer) {
            Routed::Respond(response) => {
                let keep = req.keep_alive() && !shared.stopping.load(Ordering::SeqCst);
                if let Err(e) = response.write_to(&mut conn.stream, !keep) {
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
    match route {
        "stream/upstream" => return Routed::Stream(Kind::Upstream),
        "stream/downstream" => return Routed::Stream(Kind::Downstream),
        _ => {}
    }
    let authorize = |req: &Request| authorize(&shared.config.token, req);
    if !shared.config.rest_latency.is_zero() {
        std::thread::sleep(shared.config.rest_latency);
    }
    Routed::Respond(
        rest::handle(&shared.store, route, req, authorize).unwrap_or_else(|| not_found(req)),
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
    fn normalizes_paths() {
        assert_eq!(
            normalize("/api/v1//devices/insert"),
            "/api/v1/devices/insert"
        );
        assert_eq!(normalize("//x///y/"), "/x/y/");
    }
}
