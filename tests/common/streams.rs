//! Helpers shared by the stream, reliability, soak and log-capture tests: uplinks, event
//! recording, resident memory, and a TCP proxy that can turn a live connection into a
//! black hole.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ran_routing::{
    ConnectionEvent, Core, DevEui, DownstreamRadio, LoRaModulation, Reconnect, TransmissionWindow,
    UpstreamMessage, UpstreamRadio,
};
use ran_routing_emulator::Emulator;

/// Every blocking wait of these tests ends after this long, so a bug fails instead of
/// hanging.
pub const WAIT: Duration = Duration::from_secs(10);

/// The device every uplink of these tests comes from.
pub const DEV_EUI: u64 = 0x7ABE_1B8C_93D7_174F;

/// An uplink whose transaction id is `id`.
pub fn uplink(id: u64) -> UpstreamMessage {
    UpstreamMessage::new(
        id,
        vec![DevEui::new(DEV_EUI)],
        UpstreamRadio::new(868_100_000, LoRaModulation::new(12, 125_000), -52.0, -3.0),
        vec![64, 184, 174, 199, 1, 2, 3, 4],
        vec![1_308_830_714, 114_830_713],
    )
}

/// Class C, as soon as possible: the emulator answers a class A downlink that follows no
/// acknowledged uplink `WindowNotFound`.
pub fn asap() -> TransmissionWindow {
    TransmissionWindow::class_c(
        DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000)),
        1,
    )
}

/// Reconnection quick enough for tests: 10 ms, doubling up to 200 ms.
pub fn fast_reconnect() -> Reconnect {
    Reconnect::default()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(200))
}

/// A client of `base_url` with `token` and test timeouts (plain HTTP only).
pub fn core_at(token: &str, base_url: &str) -> Core {
    Core::builder(token)
        .base_url(base_url)
        .request_timeout(WAIT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// A client of the emulator.
#[allow(unused_imports)] // Binaries without stream tests.
pub use super::core;

/// Waits up to `timeout` for `cond`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// Waits until a client's reconnection has replaced its old connection on the server:
/// a stream connection opened since `opened_before`, and exactly one upstream
/// connection open. Only meaningful with one client.
pub fn wait_replaced(emu: &Emulator, opened_before: u64) -> bool {
    eventually(WAIT, || {
        emu.stream_connections_opened() > opened_before && emu.upstream_connections() == 1
    })
}

/// Records a connection's events, for `StreamBuilder::on_event`.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<ConnectionEvent>>>);

impl Events {
    pub fn handler(&self) -> impl Fn(&ConnectionEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |e: &ConnectionEvent| events.lock().unwrap().push(e.clone())
    }

    pub fn all(&self) -> Vec<ConnectionEvent> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, pred: impl Fn(&ConnectionEvent) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| pred(e)).count()
    }

    pub fn connects(&self) -> usize {
        self.count(|e| *e == ConnectionEvent::Connected)
    }

    pub fn disconnects(&self) -> usize {
        self.count(|e| matches!(e, ConnectionEvent::Disconnected(_)))
    }

    /// Waits up to [`WAIT`] until `pred` holds for at least `n` events.
    pub fn wait(&self, n: usize, pred: impl Fn(&ConnectionEvent) -> bool) -> bool {
        eventually(WAIT, || self.count(&pred) >= n)
    }
}

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`); `None`
/// where there is no procfs.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A TCP proxy in front of a server, to make the network fail the ways production
/// networks do: [`freeze`](Proxy::freeze) keeps every open connection up but passes no
/// more bytes either way (a half-open connection, a NAT mapping dropped silently).
pub struct Proxy {
    addr: SocketAddr,
    inner: Arc<ProxyInner>,
    accept: Option<JoinHandle<()>>,
}

struct ProxyInner {
    target: SocketAddr,
    stopping: AtomicBool,
    conns: Mutex<Vec<ProxyConn>>,
}

struct ProxyConn {
    sockets: [TcpStream; 2],
    frozen: Arc<AtomicBool>,
    pumps: Vec<JoinHandle<()>>,
}

impl ProxyConn {
    fn cut(&self) {
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        // A frozen pump does not read, so would never see the shutdown.
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(ProxyInner {
            target,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let accept = {
            let inner = inner.clone();
            thread::spawn(move || {
                for client in listener.incoming() {
                    if inner.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect_timeout(&inner.target, WAIT) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let frozen = Arc::new(AtomicBool::new(false));
                    let pumps = vec![
                        pump(&client, &server, &frozen, &inner),
                        pump(&server, &client, &frozen, &inner),
                    ];
                    let mut conns = inner.conns.lock().unwrap();
                    // An unjoined thread keeps its stack: reap connections that ended.
                    conns.retain_mut(|c| {
                        if c.pumps.iter().all(|p| p.is_finished()) {
                            c.pumps.drain(..).for_each(|p| p.join().unwrap());
                            false
                        } else {
                            true
                        }
                    });
                    conns.push(ProxyConn {
                        sockets: [client, server],
                        frozen,
                        pumps,
                    });
                }
            })
        };
        Proxy {
            addr,
            inner,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of an emulator reached through this proxy.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Stops passing bytes on every connection open now, both ways, without closing
    /// them. Later connections pass normally.
    pub fn freeze(&self) {
        for conn in self.inner.conns.lock().unwrap().iter() {
            conn.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Cuts every connection open now.
    pub fn cut(&self) {
        for conn in self.inner.conns.lock().unwrap().iter() {
            conn.cut();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let conns: Vec<ProxyConn> = self.inner.conns.lock().unwrap().drain(..).collect();
        for conn in &conns {
            conn.cut();
        }
        for conn in conns {
            for pump in conn.pumps {
                let _ = pump.join();
            }
        }
    }
}

/// Copies bytes `from` → `to` until either side ends; passes nothing while frozen.
fn pump(
    from: &TcpStream,
    to: &TcpStream,
    frozen: &Arc<AtomicBool>,
    inner: &Arc<ProxyInner>,
) -> JoinHandle<()> {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    let (frozen, inner) = (frozen.clone(), inner.clone());
    thread::spawn(move || {
        from.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while !inner.stopping.load(Ordering::SeqCst) {
            if frozen.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => break,
            }
        }
        // One side ended: tear the whole flow down, as a middlebox does. Keeping the
        // other direction half-open would leave a backpressured peer writing into
        // buffers nobody reads until its write timeout.
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    })
}

/// Makes RSS follow live memory: after freeing a large buffer, glibc raises its mmap
/// threshold and serves later large buffers from per-thread arenas that keep their pages,
/// so RSS climbs in buffer-sized steps up to the arena count however little is live.
/// A fixed threshold maps every large buffer on its own and unmaps it when freed.
pub fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only tunes the allocator; it is called before the measured work.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
