//! The production path: streams over `wss://` and REST over `https://`.
//! `cargo bench --bench tls` (`RAN_BENCH_QUICK=1` for a short smoke run).
//!
//! The same method as `benches/streams.rs` and `benches/rest.rs`: ours and a same-run
//! baseline, alternating, medians of several repetitions, `RATIO <name> <ours ÷ baseline>`
//! lines after the table (higher is better).
//!
//! - ours: the public API, a `Core` built with `.base_url("https://127.0.0.1:PORT/..")`
//!   and `.add_root_certificate_pem(..)` of the bench's self-signed certificate.
//! - stream baseline: a hand-written single-threaded tungstenite client over a blocking
//!   rustls `StreamOwned`, with the same rustls configuration as the crate (the same
//!   crypto provider, protocol versions and roots: Mozilla's plus the bench certificate),
//!   that decodes each frame with `serde_json` and writes the same ack.
//! - REST baseline: a bare `ureq` agent trusting the same roots, one connection reused.
//! - the stream server: a minimal rustls + tungstenite server in this process with a
//!   certificate made by `rcgen` at run time. So that it costs next to nothing beside the
//!   client, it encrypts the frames it will send ahead of the timed part (right after the
//!   handshake, on the connection's own keys and record sequence) and only writes the
//!   ready records while timed; the replies it decrypts and counts from frame headers.
//!
//! The idle-memory figure runs its servers (plain and TLS) in a child process, this same
//! binary with `--serve-idle` or `--serve-idle-tls`, so only the client is counted.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ran_routing::{Core, UpstreamAck, UpstreamMessage, UpstreamReply};
use ran_routing_emulator::Emulator;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use support::frames::{downlinks, encode, upstream_json, FrameCounter};
use support::{median, micros, percentile, size, thread_cpu, Report};
use tungstenite::{Bytes, Message, WebSocket};

const TOKEN: &str = "bench-token";

type ServerTls = rustls::StreamOwned<ServerConnection, TcpStream>;
type ClientTls = rustls::StreamOwned<ClientConnection, TcpStream>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve-idle") {
        return serve_idle(None);
    }
    if args.iter().any(|a| a == "--serve-idle-tls") {
        return serve_idle(Some(Tls::generate()));
    }
    if let Some(i) = args.iter().position(|a| a == "--idle-client") {
        let arg = |k: usize| {
            args.get(i + k)
                .expect("--idle-client plain|tls COUNT WINDOW_MS")
        };
        return idle_client(
            arg(1) == "tls",
            arg(2).parse().unwrap(),
            Duration::from_millis(arg(3).parse().unwrap()),
        );
    }

    let reps = size(5, 1);
    let tls = Tls::generate();
    let mut report = Report::default();
    println!(
        "TLS benchmarks: {} repetitions each, ours and baseline alternating{}",
        reps,
        if support::quick() {
            " (RAN_BENCH_QUICK: smoke run, figures not comparable)"
        } else {
            ""
        }
    );

    if support::selected("tls_upstream_ack_throughput") {
        upstream_ack_throughput(&tls, &mut report, reps, size(100_000, 3_000));
    }
    if support::selected("tls_ack_round_trip") {
        ack_round_trip(&tls, &mut report, reps, size(5_000, 300));
    }
    if support::selected("tls_downstream_send_throughput") {
        downstream_send_throughput(&tls, &mut report, reps, size(100_000, 3_000));
    }
    if support::selected("tls_rest_insert_select") {
        rest_insert_select(&mut report, size(7, 1), size(10_000, 300));
    }
    if support::selected("tls_connect") {
        connect(&tls, &mut report, reps, size(200, 20));
    }
    if support::selected("tls_idle") {
        idle_connections(&mut report, 100, Duration::from_secs(size(10, 2) as u64));
    }

    report.print();
}

// ---------------------------------------------------------------------------------------
// Certificates and TLS configurations
// ---------------------------------------------------------------------------------------

/// The bench server's self-signed certificate and configuration, and the client
/// configuration the baselines use.
struct Tls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    pem: String,
}

impl Tls {
    fn generate() -> Self {
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).expect("rcgen");
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let pem = certified.cert.pem();
        Self {
            server: Arc::new(server),
            client: client_config(&pem),
            pem,
        }
    }
}

/// The provider the crate picks when the process installed none (*ring*, deprecated in
/// rustls 0.23.48 for lacking post-quantum key exchange, supported through 0.23).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// What `Core` builds for its streams (src/tls.rs): the Mozilla roots plus ours.
fn client_config(pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn core(tls: &Tls, port: u16) -> Core {
    Core::builder(TOKEN)
        .base_url(&format!("https://127.0.0.1:{port}/api/v1"))
        .add_root_certificate_pem(tls.pem.as_bytes())
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// The loopback TLS server
// ---------------------------------------------------------------------------------------

fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Accepts one WebSocket over TLS; any path and query are fine.
fn accept(listener: &TcpListener, config: &Arc<ServerConfig>) -> WebSocket<ServerTls> {
    let (tcp, _) = listener.accept().expect("accept");
    tcp.set_nodelay(true).unwrap();
    let conn = ServerConnection::new(config.clone()).unwrap();
    match tungstenite::accept(rustls::StreamOwned::new(conn, tcp)) {
        Ok(ws) => ws,
        Err(_) => panic!("bench server: TLS or WebSocket handshake failed"),
    }
}

fn drain<S: Read + Write>(ws: &mut WebSocket<S>) {
    while ws.read().is_ok() {}
}

/// A connection that has completed both handshakes, ready to have records sealed ahead
/// of time. Anything the handshake left to send (session tickets) is sent first.
fn ready(ws: WebSocket<ServerTls>) -> ServerTls {
    let mut s = ws.into_inner();
    while s.conn.wants_write() {
        s.conn.write_tls(&mut s.sock).expect("bench server: write");
    }
    s.conn.set_buffer_limit(None);
    s
}

/// The TLS records carrying `plain`, encrypted now on the connection's keys, to be
/// written later in the order they were sealed.
fn seal(conn: &mut ServerConnection, plain: &[u8]) -> Vec<u8> {
    conn.writer().write_all(plain).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

struct ServerRun {
    elapsed: Duration,
    /// The server's CPU while timed.
    cpu: Duration,
    /// The server's CPU before: its handshakes and sealing the records ahead.
    setup: Duration,
}

/// Writes the pre-sealed records of every frame from one thread as fast as the socket
/// takes them, and counts `n` replies on another.
fn serve_flood_once(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    wire: Arc<Vec<u8>>,
    n: usize,
) -> ServerRun {
    let setup = thread_cpu();
    let mut s = ready(accept(&listener, &config));
    let sealed = seal(&mut s.conn, &wire);
    let setup = thread_cpu() - setup;
    let mut tx = s.sock.try_clone().unwrap();
    let start = Instant::now();
    let writer = thread::spawn(move || {
        let cpu = thread_cpu();
        tx.write_all(&sealed).expect("bench server: write");
        thread_cpu() - cpu
    });
    let cpu = thread_cpu();
    let mut acks = FrameCounter::new(s);
    acks.read(n);
    let elapsed = start.elapsed();
    let cpu = thread_cpu() - cpu + writer.join().unwrap();
    drain(&mut acks.finish());
    ServerRun {
        elapsed,
        cpu,
        setup,
    }
}

/// One frame at a time (each sealed ahead in its own record): write it, wait for its
/// reply; the time of each round trip.
fn serve_round_trips(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    frames: Arc<Vec<Vec<u8>>>,
) -> Vec<Duration> {
    let mut s = ready(accept(&listener, &config));
    let sealed: Vec<Vec<u8>> = frames.iter().map(|f| seal(&mut s.conn, f)).collect();
    let mut tx = s.sock.try_clone().unwrap();
    let mut acks = FrameCounter::new(s);
    let mut times = Vec::with_capacity(sealed.len());
    for record in &sealed {
        let start = Instant::now();
        tx.write_all(record).expect("bench server: write");
        acks.read(1);
        times.push(start.elapsed());
    }
    drain(&mut acks.finish());
    times
}

/// Reads `n` frames and reports when the last one arrived and the server's CPU time.
fn serve_count(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    n: usize,
    done: mpsc::Sender<(Instant, Duration)>,
) {
    let s = ready(accept(&listener, &config));
    let cpu = thread_cpu();
    let mut frames = FrameCounter::new(s);
    frames.read(n);
    let _ = done.send((Instant::now(), thread_cpu() - cpu));
    drain(&mut frames.finish());
}

// ---------------------------------------------------------------------------------------
// The two stream clients
// ---------------------------------------------------------------------------------------

fn ours_acker(tls: &Tls, port: u16, n: usize) {
    let core = core(tls, port);
    let up = core.upstream().connect().unwrap();
    support::ack_each(&up, n);
    up.close();
    up.wait_closed();
}

fn raw_connect(config: &Arc<ClientConfig>, port: u16, stream: &str) -> WebSocket<ClientTls> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let url = format!("wss://127.0.0.1:{port}/api/v1/stream/{stream}/?access_token={TOKEN}");
    match tungstenite::client(url, rustls::StreamOwned::new(conn, tcp)) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("raw client: handshake failed: {e}"),
    }
}

fn raw_close(mut ws: WebSocket<ClientTls>) {
    let _ = ws.close(None);
    while ws.read().is_ok() {}
}

fn raw_acker(config: &Arc<ClientConfig>, port: u16, n: usize) {
    let mut ws = raw_connect(config, port, "upstream");
    let mut seen = 0;
    while seen < n {
        let frame = match ws.read().unwrap() {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            _ => continue,
        };
        let m: UpstreamMessage = serde_json::from_slice(&frame).unwrap();
        let ack = UpstreamReply::from(UpstreamAck::new(
            m.transaction_id,
            m.dev_euis[0],
            m.mic_challenge[0],
        ));
        ws.send(Message::text(serde_json::to_string(&ack).unwrap()))
            .unwrap();
        seen += 1;
    }
    raw_close(ws);
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ours,
    Baseline,
}

fn order(rep: usize) -> Vec<Side> {
    let both = if rep.is_multiple_of(2) {
        [Side::Ours, Side::Baseline]
    } else {
        [Side::Baseline, Side::Ours]
    };
    both.into_iter()
        .filter(|&side| support::side_selected(side == Side::Ours))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------

fn upstream_ack_throughput(tls: &Tls, report: &mut Report, reps: usize, n: usize) {
    let wire = Arc::new(encode((1..=n as u64).map(upstream_json)));
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    let (mut ours_server, mut base_server) = (Vec::new(), Vec::new());
    let (mut ours_client, mut base_client) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        for side in order(rep) {
            let (listener, port) = listen();
            let (wire, config) = (wire.clone(), tls.server.clone());
            let cpu = support::process_cpu_ns();
            let server = thread::spawn(move || serve_flood_once(listener, config, wire, n));
            match side {
                Side::Ours => ours_acker(tls, port, n),
                Side::Baseline => raw_acker(&tls.client, port, n),
            }
            let run = server.join().unwrap();
            // The client alone: the server's handshake, sealing and timed work taken out.
            let client_cpu =
                micros(support::process_cpu_ns() - cpu - run.cpu - run.setup) / n as f64;
            let rate = n as f64 / run.elapsed.as_secs_f64();
            let server_cpu = micros(run.cpu) / n as f64;
            match side {
                Side::Ours => (
                    ours.push(rate),
                    ours_server.push(server_cpu),
                    ours_client.push(client_cpu),
                ),
                Side::Baseline => (
                    base.push(rate),
                    base_server.push(server_cpu),
                    base_client.push(client_cpu),
                ),
            };
        }
    }
    let (ours, base) = (median(&mut ours), median(&mut base));
    report.figure(
        "tls_upstream_ack_throughput",
        format!("{:.0} acks/s ({:.2} µs/msg)", ours, 1e6 / ours),
        format!("{:.0} acks/s ({:.2} µs/msg)", base, 1e6 / base),
        ours / base,
        ">= 0.95",
    );
    let (oc, bc) = (median(&mut ours_client), median(&mut base_client));
    report.info(
        "tls_client_cpu_per_message",
        format!("{oc:.2} µs ours, {bc:.2} µs baseline"),
        "report",
    );
    report.note(format!(
        "tls_upstream_ack_throughput: N = {n} frames of {} bytes; client CPU per frame includes its TLS handshake (about 1/N of a run); server (writer + ack decrypt and count) {:.2} µs per frame with ours, {:.2} µs with the baseline",
        upstream_json(1).len(),
        median(&mut ours_server),
        median(&mut base_server),
    ));
}

fn ack_round_trip(tls: &Tls, report: &mut Report, reps: usize, n: usize) {
    let warmup = n / 10;
    let frames: Arc<Vec<Vec<u8>>> = Arc::new(
        (1..=(n + warmup) as u64)
            .map(|id| encode([upstream_json(id)]))
            .collect(),
    );
    let (mut o50, mut o99, mut b50, mut b99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        for side in order(rep) {
            let (listener, port) = listen();
            let (frames, config) = (frames.clone(), tls.server.clone());
            let server = thread::spawn(move || serve_round_trips(listener, config, frames));
            match side {
                Side::Ours => ours_acker(tls, port, n + warmup),
                Side::Baseline => raw_acker(&tls.client, port, n + warmup),
            }
            let mut times = server.join().unwrap().split_off(warmup);
            times.sort();
            let (p50, p99) = (
                micros(percentile(&times, 50.0)),
                micros(percentile(&times, 99.0)),
            );
            match side {
                Side::Ours => (o50.push(p50), o99.push(p99)),
                Side::Baseline => (b50.push(p50), b99.push(p99)),
            };
        }
    }
    let (o50, o99, b50, b99) = (
        median(&mut o50),
        median(&mut o99),
        median(&mut b50),
        median(&mut b99),
    );
    report.figure(
        "tls_ack_round_trip",
        format!("p50 {o50:.1} µs, p99 {o99:.1} µs"),
        format!("p50 {b50:.1} µs, p99 {b99:.1} µs"),
        b50 / o50,
        "p50 >= 0.85",
    );
    report.note(format!(
        "tls_ack_round_trip: {n} round trips per run after {warmup} warm-up, one TLS record per Upstream, median over runs of each run's percentiles; p99 ratio {:.2}",
        b99 / o99
    ));
}

fn downstream_send_throughput(tls: &Tls, report: &mut Report, reps: usize, n: usize) {
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    let (mut ours_server, mut base_server) = (Vec::new(), Vec::new());
    let template = downlinks(n);
    for rep in 0..reps {
        for side in order(rep) {
            let (listener, port) = listen();
            let (done_tx, done_rx) = mpsc::channel();
            let config = tls.server.clone();
            let server = thread::spawn(move || serve_count(listener, config, n, done_tx));
            let (started, done, cpu) = match side {
                Side::Ours => {
                    let core = core(tls, port);
                    let down = core.downstream().connect().unwrap();
                    let messages = template.clone();
                    let started = Instant::now();
                    for m in messages {
                        down.send(m).unwrap();
                    }
                    let (done, cpu) = done_rx.recv().unwrap();
                    down.close();
                    down.wait_closed();
                    (started, done, cpu)
                }
                Side::Baseline => {
                    let mut ws = raw_connect(&tls.client, port, "downstream");
                    let started = Instant::now();
                    for m in &template {
                        let text = serde_json::to_string(m).unwrap();
                        ws.send(Message::text(text)).unwrap();
                    }
                    let (done, cpu) = done_rx.recv().unwrap();
                    raw_close(ws);
                    (started, done, cpu)
                }
            };
            server.join().unwrap();
            let rate = n as f64 / (done - started).as_secs_f64();
            let server_cpu = micros(cpu) / n as f64;
            match side {
                Side::Ours => (ours.push(rate), ours_server.push(server_cpu)),
                Side::Baseline => (base.push(rate), base_server.push(server_cpu)),
            };
        }
    }
    let (ours, base) = (median(&mut ours), median(&mut base));
    report.figure(
        "tls_downstream_send_throughput",
        format!("{:.0} msgs/s ({:.2} µs/msg)", ours, 1e6 / ours),
        format!("{:.0} msgs/s ({:.2} µs/msg)", base, 1e6 / base),
        ours / base,
        ">= 0.95",
    );
    report.note(format!(
        "tls_downstream_send_throughput: N = {n} downlinks, each serialized by both sides; server (decrypt + count) CPU per frame {:.2} µs with ours, {:.2} µs with the baseline",
        median(&mut ours_server),
        median(&mut base_server),
    ));
}

/// `connect()` until it returns (TCP, TLS and WebSocket handshakes) against the same
/// three handshakes by hand; the server takes one connection at a time.
fn connect(tls: &Tls, report: &mut Report, reps: usize, n: usize) {
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        for side in order(rep) {
            let (listener, port) = listen();
            let config = tls.server.clone();
            let server = thread::spawn(move || {
                for _ in 0..n {
                    drain(&mut accept(&listener, &config));
                }
            });
            let core = core(tls, port);
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                match side {
                    Side::Ours => {
                        let up = core.upstream().connect().unwrap();
                        times.push(start.elapsed());
                        up.close();
                        up.wait_closed();
                    }
                    Side::Baseline => {
                        let ws = raw_connect(&tls.client, port, "upstream");
                        times.push(start.elapsed());
                        raw_close(ws);
                    }
                }
            }
            server.join().unwrap();
            times.sort();
            let p50 = micros(percentile(&times, 50.0));
            match side {
                Side::Ours => ours.push(p50),
                Side::Baseline => base.push(p50),
            }
        }
    }
    let (ours, base) = (median(&mut ours), median(&mut base));
    report.figure(
        "tls_connect",
        format!("p50 {ours:.0} µs"),
        format!("p50 {base:.0} µs"),
        base / ours,
        ">= 0.9",
    );
    report.note(format!(
        "tls_connect: {n} connections one after the other per run (TCP + TLS 1.3 + WebSocket upgrade, the server's side included, session resumption as each config allows), median over runs of each run's p50"
    ));
}

// ---------------------------------------------------------------------------------------
// REST over HTTPS
// ---------------------------------------------------------------------------------------

/// Ours: a `Core` trusting the bench's certificate.
fn rest_ours(emu: &Emulator, pem: &str, n: usize) -> u64 {
    let core = Core::builder(emu.token())
        .base_url(&emu.base_url())
        .add_root_certificate_pem(pem.as_bytes())
        .build()
        .unwrap();
    support::rest::ours(emu, &core, n)
}

/// The baseline: a ureq agent trusting the same roots.
fn rest_baseline(emu: &Emulator, pem: &str, n: usize) -> u64 {
    let roots: Vec<ureq::tls::Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()))
        .chain(
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .map(|c| ureq::tls::Certificate::from_der(c.unwrap().as_ref()).to_owned()),
        )
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                .build(),
        )
        .build()
        .into();
    support::rest::baseline(emu, &agent, n)
}

fn rest_insert_select(report: &mut Report, reps: usize, n: usize) {
    let emu = Emulator::builder()
        .tls(true)
        .device_limit(n + 1)
        .start()
        .unwrap();
    let pem = emu
        .certificate_pem()
        .expect("a TLS emulator has a certificate");
    assert!(emu.base_url().starts_with("https://"));
    let cleaner = Core::builder(emu.token())
        .base_url(&emu.base_url())
        .add_root_certificate_pem(pem.as_bytes())
        .build()
        .unwrap();
    let requests = (2 * n + 1) as f64;
    let (mut ours_rates, mut base_rates) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut base_cpu) = (Vec::new(), Vec::new());
    let mut ours_connections = Vec::new();
    for rep in 0..reps {
        for side in order(rep) {
            cleaner.routing_table().delete_all().unwrap();
            let start = Instant::now();
            let cpu = thread_cpu();
            let connections = match side {
                Side::Ours => rest_ours(&emu, &pem, n),
                Side::Baseline => rest_baseline(&emu, &pem, n),
            };
            let cpu = micros(thread_cpu() - cpu) / requests;
            let rate = requests / start.elapsed().as_secs_f64();
            match side {
                Side::Ours => {
                    ours_rates.push(rate);
                    ours_cpu.push(cpu);
                    ours_connections.push(connections);
                }
                Side::Baseline => {
                    base_rates.push(rate);
                    base_cpu.push(cpu);
                }
            }
        }
    }
    let (ours, base) = (median(&mut ours_rates), median(&mut base_rates));
    let max_connections = ours_connections.iter().copied().max().unwrap_or(0);
    report.figure(
        "tls_rest_insert_select",
        format!(
            "{ours:.0} req/s ({:.1} µs/req), {max_connections} TCP connection(s)",
            1e6 / ours
        ),
        format!("{base:.0} req/s ({:.1} µs/req)", 1e6 / base),
        ours / base,
        ">= 0.9, 1 connection",
    );
    report.note(format!(
        "tls_rest_insert_select: {n} inserts + {n} selects + 1 full select over HTTPS per run, {reps} runs; client CPU per request {:.1} µs ours, {:.1} µs baseline (the emulator's threads not counted)",
        median(&mut ours_cpu),
        median(&mut base_cpu)
    ));
    if !ours_connections.is_empty() {
        assert_eq!(
            max_connections, 1,
            "ours opened more than one TCP connection in a run"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Idle connections, against servers in a child process
// ---------------------------------------------------------------------------------------

/// Runs this binary as a server; returns the child, its port and, for TLS, the PEM of
/// its certificate.
fn spawn_server(arg: &str) -> (Child, u16, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the server process");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line.trim().parse().expect("the server's port");
    let mut pem = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 || line.trim() == "END" {
            break;
        }
        pem.push_str(&line);
    }
    (child, port, pem)
}

fn stop_server(mut child: Child) {
    // Closing its stdin tells the server to exit.
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `--serve-idle` / `--serve-idle-tls`: prints its port (and certificate, then `END`),
/// accepts WebSockets and holds them open without a word until stdin closes.
fn serve_idle(tls: Option<Tls>) {
    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let (listener, port) = listen();
    let mut out = std::io::stdout();
    writeln!(out, "{port}").unwrap();
    if let Some(tls) = &tls {
        write!(out, "{}", tls.pem).unwrap();
    }
    writeln!(out, "END").unwrap();
    out.flush().unwrap();
    let mut plain = Vec::new();
    let mut held = Vec::new();
    loop {
        match &tls {
            Some(tls) => held.push(accept(&listener, &tls.server)),
            None => {
                let (tcp, _) = listener.accept().expect("accept");
                plain.push(tungstenite::accept(tcp).expect("handshake"));
            }
        }
    }
}

/// Resident memory per idle connection over plain TCP and over TLS, and the CPU the
/// TLS ones take while idle. Each side runs in a fresh child process of its own (with
/// its server in a grandchild): in one process the second side would reuse the memory
/// and the thread stacks the first one freed.
fn idle_connections(report: &mut Report, count: usize, window: Duration) {
    let mut figures = Vec::new();
    for side in ["plain", "tls"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--idle-client",
                side,
                &count.to_string(),
                &window.as_millis().to_string(),
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("running the idle client");
        assert!(out.status.success(), "the idle client failed");
        let line = String::from_utf8(out.stdout).unwrap();
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        figures.push(f);
    }
    let (plain, tls) = (&figures[0], &figures[1]);
    let per = |f: &[u64]| f[1].saturating_sub(f[0]) as f64 / count as f64;
    report.info(
        "tls_idle_rss_per_connection",
        format!(
            "{:.0} KiB TLS ({} -> {} KiB), {:.0} KiB plain ({} -> {} KiB), {count} each",
            per(tls),
            tls[0],
            tls[1],
            per(plain),
            plain[0],
            plain[1]
        ),
        "report",
    );
    report.info(
        "tls_idle_cpu",
        format!(
            "{:.2}% of one core TLS, {:.2}% plain ({count} idle connections, {:.1} s)",
            100.0 * tls[2] as f64 / tls[3] as f64,
            100.0 * plain[2] as f64 / plain[3] as f64,
            tls[3] as f64 / 1e6
        ),
        "< 1%",
    );
}

/// `--idle-client plain|tls COUNT WINDOW_MS`: opens COUNT idle upstream connections to a
/// fresh server and prints `RSS_BEFORE RSS_AFTER CPU_US WALL_US` (KiB, microseconds).
fn idle_client(tls: bool, count: usize, window: Duration) {
    let (child, port, pem) = spawn_server(if tls {
        "--serve-idle-tls"
    } else {
        "--serve-idle"
    });
    let core = if tls {
        Core::builder(TOKEN)
            .base_url(&format!("https://127.0.0.1:{port}/api/v1"))
            .add_root_certificate_pem(pem.as_bytes())
            .build()
            .unwrap()
    } else {
        Core::new(TOKEN, &format!("http://127.0.0.1:{port}/api/v1")).unwrap()
    };
    thread::sleep(Duration::from_millis(200));
    let rss_before = support::status_kib("VmRSS");
    let conns: Vec<_> = (0..count)
        .map(|_| core.upstream().connect().unwrap())
        .collect();
    thread::sleep(Duration::from_millis(500));
    let rss_after = support::status_kib("VmRSS");
    let cpu_before = support::process_cpu();
    let wall = Instant::now();
    thread::sleep(window);
    let cpu = support::process_cpu() - cpu_before;
    let wall = wall.elapsed();
    println!(
        "{rss_before} {rss_after} {} {}",
        cpu.as_micros(),
        wall.as_micros()
    );
    for c in &conns {
        c.close();
    }
    drop(conns);
    core.close();
    stop_server(child);
}
