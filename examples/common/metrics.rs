//! The examples' Prometheus endpoint: with `RAN_METRICS_ADDR` set (e.g. `127.0.0.1:9898`,
//! or port 0 for any free port), the crate's counters (cargo feature `metrics`) are
//! served as Prometheus text at `http://ADDR/metrics`, and `/ready` answers 200 or 503
//! from the `Core`'s health view.
//!
//! The exporter is `metrics-exporter-prometheus` without its HTTP listener (no hyper, no
//! tokio): it renders the text, and a tiny blocking responder here serves it. The library
//! itself installs no recorder and serves nothing.
#![allow(dead_code)] // Each user takes its own subset.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Answers a readiness probe: ready or not, and a one-line reason.
pub type ReadyFn = Arc<dyn Fn() -> (bool, String) + Send + Sync>;

/// A running endpoint; it serves until the process ends.
pub struct MetricsServer {
    addr: SocketAddr,
    handle: PrometheusHandle,
}

impl MetricsServer {
    /// Installs the Prometheus recorder as the process's global one (do it before
    /// opening connections: they register their counters when they open) and serves it
    /// at `addr`.
    pub fn start(addr: &str, ready: Option<ReadyFn>) -> Result<MetricsServer, Box<dyn Error>> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
        let served = handle.clone();
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                for tcp in listener.incoming().flatten() {
                    // One at a time: a scrape is small, and a slow client only delays
                    // the next scrape.
                    if let Err(e) = answer(tcp, &served, ready.as_ref()) {
                        eprintln!("metrics endpoint: {e}");
                    }
                }
            })?;
        Ok(MetricsServer { addr, handle })
    }

    /// From `RAN_METRICS_ADDR`; `None` when it is not set.
    pub fn from_env(ready: Option<ReadyFn>) -> Result<Option<MetricsServer>, Box<dyn Error>> {
        match std::env::var("RAN_METRICS_ADDR") {
            Ok(addr) => Self::start(&addr, ready).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Prometheus text now.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

fn answer(
    mut tcp: TcpStream,
    handle: &PrometheusHandle,
    ready: Option<&ReadyFn>,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    // The request head, bounded: only its first line matters.
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tcp.read(&mut chunk)? {
            0 => break,
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", handle.render()),
        ("GET", "/ready") => match ready {
            Some(ready) => match ready() {
                (true, line) => ("200 OK", line + "\n"),
                (false, line) => ("503 Service Unavailable", line + "\n"),
            },
            None => ("404 Not Found", "no readiness check\n".into()),
        },
        ("GET", _) => ("404 Not Found", "try /metrics or /ready\n".into()),
        _ => ("405 Method Not Allowed", "GET only\n".into()),
    };
    write!(
        tcp,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tcp.flush()
}

/// Runs `tick` every `interval` on its own thread until dropped: the examples' periodic
/// one-line stats summary.
pub struct Every {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Every {
    pub fn start(interval: Duration, tick: impl Fn() + Send + 'static) -> Every {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(interval)
            {
                tick();
            }
        });
        Every {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Every {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `RAN_STATS_SECS` (default 10): how often the examples print their stats line.
pub fn stats_interval() -> Duration {
    std::env::var("RAN_STATS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_secs_f64)
}
