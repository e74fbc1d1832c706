//! Stream engine benchmarks: `cargo bench --bench streams` (`RAN_BENCH_QUICK=1` for a
//! short smoke run).
//!
//! Every figure with a ratio runs ours and its baseline in this process, against the same
//! loopback server and the same frames, alternating, and compares medians of several
//! repetitions; `RATIO <name> <ours ÷ baseline>` lines follow the table, higher is better.
//!
//! - ours: the public API, `Core::new(..)` then `core.upstream().connect()` and a user loop
//!   `for m in up.iter() { up.send_upstream_ack(..) }` (downstream: `send(..)`).
//! - baseline: a hand-written single-threaded tungstenite client on a blocking socket that
//!   decodes each frame with `serde_json` into the same struct and writes the same ack.
//! - the server: a minimal tungstenite server in this process that writes pre-encoded
//!   frames from its own thread and reads the replies from another; it reports its own
//!   CPU time per frame so one can check that it is not the bottleneck.
//!
//! Idle CPU, memory per idle connection and memory under a slow consumer are measured
//! against a server in a child process (this same binary with `--serve-idle` or
//! `--serve-flood`), so that only the client's threads and memory are counted.
//! De-duplication's memory per uplink is the other way round: the client runs in child
//! processes (`--dedup-rss on|off N`), one per setting, so that no earlier run's freed
//! memory is reused.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ran_routing::{Core, DownstreamRequest, UpstreamAck, UpstreamMessage, UpstreamReply};
use support::frames::{downlinks, encode, upstream_json, FrameCounter};
use support::{median, micros, percentile, size, thread_cpu, Report};
use tungstenite::{Bytes, Message, WebSocket};

const TOKEN: &str = "bench-token";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve-idle") {
        return serve_idle();
    }
    if let Some(i) = args.iter().position(|a| a == "--dedup-rss") {
        let dedup = args.get(i + 1).is_some_and(|a| a == "on");
        let n = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        return println!("{}", acker_rss_growth(dedup, n));
    }
    if let Some(i) = args.iter().position(|a| a == "--serve-flood") {
        let rate = args
            .get(i + 1)
            .and_then(|r| r.parse().ok())
            .unwrap_or(10_000);
        return serve_flood(rate);
    }

    let reps = size(5, 1);
    // Overheads of a feature (ours with it against ours without) are a few percent, less
    // than the drift between runs: more pairs, and the median of their ratios.
    let pairs = size(31, 1);
    let mut report = Report::default();
    println!(
        "stream benchmarks: {} repetitions each, ours and baseline alternating{}",
        reps,
        if support::quick() {
            " (RAN_BENCH_QUICK: smoke run, figures not comparable)"
        } else {
            ""
        }
    );

    if support::selected("upstream_ack_throughput") {
        upstream_ack_throughput(&mut report, reps, size(100_000, 5_000));
    }
    if support::selected("ack_round_trip") {
        ack_round_trip(&mut report, reps, size(5_000, 500));
    }
    if support::selected("downstream_send_throughput") {
        downstream_send_throughput(&mut report, reps, size(100_000, 5_000));
    }
    if support::selected("dedup_ack_throughput") {
        dedup_ack_throughput(&mut report, pairs, size(100_000, 5_000));
    }
    if support::selected("dedup_memory") {
        dedup_memory(&mut report, size(100_000, 5_000));
    }
    if support::selected("tracked_downstream_throughput") {
        tracked_downstream_throughput(&mut report, pairs, size(50_000, 2_000));
    }
    if support::selected("close_latency") {
        close_latency(&mut report, reps, size(200, 30));
    }
    if support::selected("idle") {
        idle_connections(&mut report, 100, Duration::from_secs(size(10, 2) as u64));
    }
    if support::selected("slow_consumer") {
        slow_consumer(&mut report, Duration::from_secs(size(6, 2) as u64));
    }

    report.print();
}

// ---------------------------------------------------------------------------------------
// The loopback server
// ---------------------------------------------------------------------------------------

fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Accepts one WebSocket; any path and query (the client's token) are fine.
fn accept(listener: &TcpListener) -> WebSocket<TcpStream> {
    let (tcp, _) = listener.accept().expect("accept");
    tcp.set_nodelay(true).unwrap();
    match tungstenite::accept(tcp) {
        Ok(ws) => ws,
        Err(_) => panic!("bench server: WebSocket handshake failed"),
    }
}

/// Reads until the client has closed, answering its close frame.
fn drain(ws: &mut WebSocket<TcpStream>) {
    while ws.read().is_ok() {}
}

struct ServerRun {
    /// From the first frame written to the last reply read.
    elapsed: Duration,
    /// CPU time of the server's threads.
    cpu: Duration,
}

/// Writes every frame as fast as the socket takes them (one thread, pre-encoded bytes),
/// and counts `n` replies on another.
fn serve_flood_once(listener: TcpListener, wire: Arc<Vec<u8>>, n: usize) -> ServerRun {
    let ws = accept(&listener);
    let mut tx = ws.get_ref().try_clone().unwrap();
    let start = Instant::now();
    let writer = thread::spawn(move || {
        let cpu = thread_cpu();
        tx.write_all(&wire).expect("bench server: write");
        thread_cpu() - cpu
    });
    let cpu = thread_cpu();
    let mut acks = FrameCounter::new(ws.get_ref().try_clone().unwrap());
    acks.read(n);
    let elapsed = start.elapsed();
    let cpu = thread_cpu() - cpu + writer.join().unwrap();
    drop(ws);
    drain(&mut acks.finish());
    ServerRun { elapsed, cpu }
}

/// One frame at a time: write it, wait for its reply; the time of each round trip.
fn serve_round_trips(listener: TcpListener, frames: Arc<Vec<Vec<u8>>>) -> Vec<Duration> {
    let ws = accept(&listener);
    let mut tx = ws.get_ref().try_clone().unwrap();
    let mut acks = FrameCounter::new(ws.get_ref().try_clone().unwrap());
    let mut times = Vec::with_capacity(frames.len());
    for frame in frames.iter() {
        let start = Instant::now();
        tx.write_all(frame).expect("bench server: write");
        acks.read(1);
        times.push(start.elapsed());
    }
    drop(ws);
    drain(&mut acks.finish());
    times
}

/// Reads `n` frames and reports when the last one arrived and the server's CPU time,
/// then waits for the client to close.
fn serve_count(listener: TcpListener, n: usize, done: mpsc::Sender<(Instant, Duration)>) {
    let ws = accept(&listener);
    let cpu = thread_cpu();
    let mut frames = FrameCounter::new(ws.get_ref().try_clone().unwrap());
    frames.read(n);
    let _ = done.send((Instant::now(), thread_cpu() - cpu));
    drop(ws);
    drain(&mut frames.finish());
}

fn base_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/api/v1")
}

fn stream_url(port: u16, stream: &str) -> String {
    format!("ws://127.0.0.1:{port}/api/v1/stream/{stream}/?access_token={TOKEN}")
}

// ---------------------------------------------------------------------------------------
// The two clients
// ---------------------------------------------------------------------------------------

/// Ours: the user loop of the crate's documentation, acking `n` messages.
fn ours_acker(port: u16, n: usize) {
    ours_acker_then(port, n, false, || ());
}

/// [`ours_acker`], with uplink de-duplication on or off, calling `then` after the last
/// ack, before closing.
fn ours_acker_then<R>(port: u16, n: usize, dedup: bool, then: impl FnOnce() -> R) -> R {
    let core = Core::new(TOKEN, &base_url(port)).unwrap();
    let builder = core.upstream();
    let builder = if dedup {
        builder.dedup(Duration::from_secs(60))
    } else {
        builder
    };
    let up = builder.connect().unwrap();
    support::ack_each(&up, n);
    let result = then();
    up.close();
    up.wait_closed();
    result
}

fn raw_connect(port: u16, stream: &str) -> WebSocket<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    match tungstenite::client(stream_url(port, stream), tcp) {
        Ok((ws, _)) => ws,
        Err(_) => panic!("raw client: handshake failed"),
    }
}

fn raw_close(mut ws: WebSocket<TcpStream>) {
    let _ = ws.close(None);
    while ws.read().is_ok() {}
}

/// The baseline: read a frame, decode it into the same struct, write the same ack.
fn raw_acker(port: u16, n: usize) {
    let mut ws = raw_connect(port, "upstream");
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

/// Alternates which side goes first, so drift in machine load hits both alike.
/// `RAN_BENCH_SIDE` may leave one side out, e.g. to profile the other.
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

fn upstream_ack_throughput(report: &mut Report, reps: usize, n: usize) {
    let wire = Arc::new(encode((1..=n as u64).map(upstream_json)));
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    let (mut ours_server, mut base_server) = (Vec::new(), Vec::new());
    let (mut ours_client, mut base_client) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        for side in order(rep) {
            let (listener, port) = listen();
            let wire = wire.clone();
            let cpu = support::process_cpu_ns();
            let server = thread::spawn(move || serve_flood_once(listener, wire, n));
            match side {
                Side::Ours => ours_acker(port, n),
                Side::Baseline => raw_acker(port, n),
            }
            let run = server.join().unwrap();
            let client_cpu = micros(support::process_cpu_ns() - cpu - run.cpu) / n as f64;
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
        "upstream_ack_throughput",
        format!("{:.0} acks/s ({:.2} µs/msg)", ours, 1e6 / ours),
        format!("{:.0} acks/s ({:.2} µs/msg)", base, 1e6 / base),
        ours / base,
        ">= 0.95",
    );
    report.note(format!(
        "upstream_ack_throughput: N = {n} frames of {} bytes; CPU per frame: client {:.2} µs ours, {:.2} µs baseline; server (writer + ack reader) {:.2} µs with ours, {:.2} µs with the baseline",
        upstream_json(1).len(),
        median(&mut ours_client),
        median(&mut base_client),
        median(&mut ours_server),
        median(&mut base_server),
    ));
}

fn ack_round_trip(report: &mut Report, reps: usize, n: usize) {
    let warmup = n / 10;
    let frames: Arc<Vec<Vec<u8>>> = Arc::new(
        (1..=(n + warmup) as u64)
            .map(|id| encode([upstream_json(id)]))
            .collect(),
    );
    // Percentiles of each run, then the median over runs: one run hit by a burst of
    // load from the machine's other tenants does not decide the figure.
    let (mut o50, mut o99, mut b50, mut b99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        for side in order(rep) {
            let (listener, port) = listen();
            let frames = frames.clone();
            let server = thread::spawn(move || serve_round_trips(listener, frames));
            match side {
                Side::Ours => ours_acker(port, n + warmup),
                Side::Baseline => raw_acker(port, n + warmup),
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
        "ack_round_trip",
        format!("p50 {o50:.1} µs, p99 {o99:.1} µs"),
        format!("p50 {b50:.1} µs, p99 {b99:.1} µs"),
        b50 / o50,
        "p50 >= 0.7",
    );
    report.note(format!(
        "ack_round_trip: {n} round trips per run after {warmup} warm-up, median over runs of each run's percentiles; p99 ratio {:.2}",
        b99 / o99
    ));
}

fn downstream_send_throughput(report: &mut Report, reps: usize, n: usize) {
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    let (mut ours_server, mut base_server) = (Vec::new(), Vec::new());
    let template = downlinks(n);
    for rep in 0..reps {
        for side in order(rep) {
            let (listener, port) = listen();
            let (done_tx, done_rx) = mpsc::channel();
            let server = thread::spawn(move || serve_count(listener, n, done_tx));
            let (started, done, cpu) = match side {
                Side::Ours => {
                    let core = Core::new(TOKEN, &base_url(port)).unwrap();
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
                    let mut ws = raw_connect(port, "downstream");
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
        "downstream_send_throughput",
        format!("{:.0} msgs/s ({:.2} µs/msg)", ours, 1e6 / ours),
        format!("{:.0} msgs/s ({:.2} µs/msg)", base, 1e6 / base),
        ours / base,
        ">= 0.9",
    );
    let sample = serde_json::to_string(&DownstreamRequest::from(template[0].clone())).unwrap();
    report.note(format!(
        "downstream_send_throughput: N = {n} downlinks of {} bytes, each serialized by both sides; server CPU per frame {:.2} µs with ours, {:.2} µs with the baseline",
        sample.len(),
        median(&mut ours_server),
        median(&mut base_server),
    ));
}

/// Acking with de-duplication on (ours) against off (baseline), same frames, none of
/// them a duplicate: what remembering each uplink and matching each ack costs.
fn dedup_ack_throughput(report: &mut Report, pairs: usize, n: usize) {
    let wire = Arc::new(encode((1..=n as u64).map(upstream_json)));
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for rep in 0..pairs {
        for side in order(rep) {
            let (listener, port) = listen();
            let wire = wire.clone();
            let server = thread::spawn(move || serve_flood_once(listener, wire, n));
            ours_acker_then(port, n, side == Side::Ours, || ());
            let run = server.join().unwrap();
            let rate = n as f64 / run.elapsed.as_secs_f64();
            match side {
                Side::Ours => ours.push(rate),
                Side::Baseline => base.push(rate),
            }
        }
    }
    let ratio = support::paired_ratio(&ours, &base);
    let (ours, base) = (median(&mut ours), median(&mut base));
    report.figure(
        "dedup_ack_throughput",
        format!("{:.0} acks/s ({:.2} µs/msg)", ours, 1e6 / ours),
        format!("{:.0} acks/s ({:.2} µs/msg), dedup off", base, 1e6 / base),
        ratio,
        ">= 0.9",
    );
    report.note(format!(
        "dedup_ack_throughput: N = {n} distinct uplinks, both sides the crate's upstream loop, ours with `.dedup(60 s)`; ratio: median over {pairs} back-to-back pairs"
    ));
}

/// Run in a child process of its own (`--dedup-rss on|off N`), so that no earlier run's
/// freed memory is reused: the growth of resident memory, in KiB, from before connecting
/// to after acking `n` distinct uplinks, with the connection still open.
fn acker_rss_growth(dedup: bool, n: usize) -> u64 {
    let wire = Arc::new(encode((1..=n as u64).map(upstream_json)));
    // Held here too, so that the frames stay resident until after the reading.
    let frames = wire.clone();
    let (listener, port) = listen();
    let server = thread::spawn(move || serve_flood_once(listener, wire, n));
    let before = support::status_kib("VmRSS");
    let after = ours_acker_then(port, n, dedup, || support::status_kib("VmRSS"));
    server.join().unwrap();
    drop(frames);
    after.saturating_sub(before)
}

/// What remembering an uplink costs in memory: resident growth with de-duplication on,
/// less the growth with it off, per uplink remembered.
fn dedup_memory(report: &mut Report, n: usize) {
    let growth = |dedup: &str| -> u64 {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--dedup-rss", dedup, &n.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let (on, off) = (growth("on"), growth("off"));
    let payload = support::frames::payload_len(&upstream_json(1));
    report.info(
        "dedup_memory_per_uplink",
        format!(
            "{:.0} bytes per remembered uplink of {payload} payload bytes ({on} KiB growth with dedup on, {off} KiB off, {n} uplinks)",
            (on.saturating_sub(off) * 1024) as f64 / n as f64
        ),
        &format!("about {} (55 + payload, as `Dedup::max_entries` says)", 55 + payload),
    );
}

/// Answers every downlink with an ack and a result, as the RAN does; stops after `n`.
fn serve_downlink_replies(listener: TcpListener, n: usize) {
    let mut ws = accept(&listener);
    let mut seen = 0;
    while seen < n {
        let frame = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(_) => continue,
            Err(_) => return,
        };
        let id = transaction_id(frame.as_str()).expect("bench server: a TransactionID");
        let ack = format!(r#"{{"ProtocolVersion":1,"TransactionID":{id},"MailboxID":1}}"#);
        let result = format!(
            r#"{{"ProtocolVersion":1,"TransactionID":{id},"ResultCode":"Success","ResultMessage":"ok","MailboxID":1}}"#
        );
        ws.write(Message::text(ack)).unwrap();
        ws.send(Message::text(result)).unwrap();
        seen += 1;
    }
    drain(&mut ws);
}

/// The TransactionID of a downlink's JSON, without a full decode.
fn transaction_id(json: &str) -> Option<u64> {
    let rest = &json[json.find(r#""TransactionID":"#)? + 16..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Downlinks sent through a `DownlinkTracker` and their outcomes taken from it (ours)
/// against plain sends whose acks and results are taken from `iter()` (baseline): one
/// thread sends, another receives, until every downlink's result is in.
fn tracked_downstream_throughput(report: &mut Report, pairs: usize, n: usize) {
    let template = downlinks(n);
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for rep in 0..pairs {
        for side in order(rep) {
            let (listener, port) = listen();
            let server = thread::spawn(move || serve_downlink_replies(listener, n));
            let core = Core::new(TOKEN, &base_url(port)).unwrap();
            let down = core.downstream().connect().unwrap();
            let messages = template.clone();
            let started = Instant::now();
            match side {
                Side::Ours => {
                    let tracker = down.tracker::<usize>(Duration::from_secs(600));
                    thread::scope(|s| {
                        s.spawn(|| {
                            for (i, m) in messages.into_iter().enumerate() {
                                tracker.send(i, m);
                            }
                        });
                        let mut results = 0;
                        for t in tracker.iter() {
                            assert!(t.outcome.is_ok(), "bench: {:?}", t.outcome);
                            results += 1;
                            if results == n {
                                break;
                            }
                        }
                    });
                }
                Side::Baseline => thread::scope(|s| {
                    s.spawn(|| {
                        for m in messages {
                            down.send(m).unwrap();
                        }
                    });
                    let mut results = 0;
                    for reply in down.iter() {
                        if matches!(reply, ran_routing::DownstreamReply::Result(_)) {
                            results += 1;
                            if results == n {
                                break;
                            }
                        }
                    }
                }),
            }
            let rate = n as f64 / started.elapsed().as_secs_f64();
            down.close();
            down.wait_closed();
            server.join().unwrap();
            match side {
                Side::Ours => ours.push(rate),
                Side::Baseline => base.push(rate),
            }
        }
    }
    let ratio = support::paired_ratio(&ours, &base);
    let (ours, base) = (median(&mut ours), median(&mut base));
    report.figure(
        "tracked_downstream_throughput",
        format!("{:.0} downlinks/s ({:.2} µs each)", ours, 1e6 / ours),
        format!(
            "{:.0} downlinks/s ({:.2} µs each), plain sends",
            base,
            1e6 / base
        ),
        ratio,
        ">= 0.8",
    );
    report.note(format!(
        "tracked_downstream_throughput: N = {n} downlinks, each answered by the server with an ack and a result; one thread sends while another takes results (tracker.iter() against down.iter()); ratio: median over {pairs} back-to-back pairs"
    ));
}

fn close_latency(report: &mut Report, reps: usize, n: usize) {
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let times = close_times(n);
        p50s.push(micros(percentile(&times, 50.0)));
        p99s.push(micros(percentile(&times, 99.0)));
    }
    let (p50, p99) = (median(&mut p50s), median(&mut p99s));
    let worst = p99s.iter().copied().fold(0.0, f64::max);
    report.figure(
        "close_latency",
        format!("p50 {p50:.0} µs, p99 {p99:.0} µs"),
        "10 ms (fixed)".into(),
        10_000.0 / p99,
        ">= 1 (p99 < 10 ms)",
    );
    report.note(format!(
        "close_latency: {reps} runs of {n} idle connections, median of each run's percentiles; worst run's p99 {worst:.0} µs"
    ));
}

/// Opens `n` connections one after the other and times `close()` to `wait_closed()` on
/// each, sorted.
fn close_times(n: usize) -> Vec<Duration> {
    let (listener, port) = listen();
    let server = thread::spawn(move || {
        let mut drains = Vec::new();
        for _ in 0..n {
            let mut ws = accept(&listener);
            drains.push(thread::spawn(move || drain(&mut ws)));
        }
        for d in drains {
            let _ = d.join();
        }
    });
    let core = Core::new(TOKEN, &base_url(port)).unwrap();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let up = core.upstream().connect().unwrap();
        // Idle: let both threads settle into their waits first.
        thread::sleep(Duration::from_millis(2));
        let start = Instant::now();
        up.close();
        up.wait_closed();
        times.push(start.elapsed());
    }
    server.join().unwrap();
    times.sort();
    times
}

// ---------------------------------------------------------------------------------------
// Idle connections and a slow consumer, against a server in a child process
// ---------------------------------------------------------------------------------------

/// Runs this binary as a server; returns the child and its port.
fn spawn_server(args: &[&str]) -> (Child, u16) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the server process");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server's port");
    (child, port)
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

/// Child process side: exit once the parent closes our stdin (or dies).
fn exit_with_parent() {
    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
}

fn announce(port: u16) {
    let mut out = std::io::stdout();
    writeln!(out, "{port}").unwrap();
    out.flush().unwrap();
}

/// `--serve-idle`: accepts WebSockets and holds them open without a word.
fn serve_idle() {
    exit_with_parent();
    let (listener, port) = listen();
    announce(port);
    let mut held = Vec::new();
    loop {
        held.push(accept(&listener));
    }
}

/// `--serve-flood RATE`: writes Upstream frames at RATE per second to one connection
/// until it goes away.
fn serve_flood(rate: u64) {
    exit_with_parent();
    let (listener, port) = listen();
    announce(port);
    let mut ws = accept(&listener);
    let mut tx = ws.get_ref().try_clone().unwrap();
    thread::spawn(move || drain(&mut ws));
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let start = Instant::now();
    let mut id = 1u64;
    for k in 1u32.. {
        let batch = encode((id..id + per_tick).map(upstream_json));
        id += per_tick;
        if tx.write_all(&batch).is_err() {
            return;
        }
        let next = start + tick * k;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn idle_connections(report: &mut Report, count: usize, window: Duration) {
    let (child, port) = spawn_server(&["--serve-idle"]);
    let core = Core::new(TOKEN, &base_url(port)).unwrap();
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
    let percent = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
    report.info(
        "idle_cpu",
        format!(
            "{percent:.2}% of one core ({count} idle connections, {:.1} s, {:?} CPU)",
            wall.as_secs_f64(),
            cpu
        ),
        "< 1%",
    );
    report.info(
        "idle_rss_per_connection",
        format!(
            "{:.0} KiB ({} KiB -> {} KiB for {count})",
            (rss_after.saturating_sub(rss_before)) as f64 / count as f64,
            rss_before,
            rss_after
        ),
        "report",
    );
    for c in &conns {
        c.close();
    }
    drop(conns);
    core.close();
    stop_server(child);
}

fn slow_consumer(report: &mut Report, window: Duration) {
    const SERVER_RATE: u64 = 10_000;
    let (child, port) = spawn_server(&["--serve-flood", &SERVER_RATE.to_string()]);
    let core = Core::new(TOKEN, &base_url(port)).unwrap();
    let up = core.upstream().connect().unwrap();
    // The default capacity of a connection's channel.
    let capacity = 1024;
    // Let the first frames arrive so allocator start-up is not counted as growth.
    let _ = up.recv_timeout(Duration::from_secs(5)).unwrap();
    let rss_start = support::status_kib("VmRSS");
    let peak = Arc::new(AtomicU64::new(rss_start));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let rss = support::status_kib("VmRSS");
                peak.fetch_max(rss, Ordering::Relaxed);
                samples.push(rss);
                thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let start = Instant::now();
    let mut consumed = 0u64;
    // Ten times slower than the server: 1 ms per message against 10 000 a second.
    let per_message = Duration::from_micros(1_000_000 * 10 / SERVER_RATE);
    while start.elapsed() < window {
        if up.recv_timeout(Duration::from_secs(5)).is_err() {
            break;
        }
        consumed += 1;
        thread::sleep(per_message);
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    let end = *samples.last().unwrap_or(&rss_start);
    let mid = samples.get(samples.len() / 2).copied().unwrap_or(rss_start);
    let peak = peak.load(Ordering::Relaxed);
    report.info(
        "slow_consumer_rss",
        format!(
            "start {rss_start} KiB, half-way {mid} KiB, end {end} KiB, peak {peak} KiB (+{} KiB)",
            peak.saturating_sub(rss_start)
        ),
        "flat, bounded by capacity",
    );
    report.note(format!(
        "slow_consumer: server offers {SERVER_RATE} msgs/s, consumer took {:.0} msgs/s over {elapsed:.1} s; \
         channel capacity {capacity} (an unbounded queue would have grown by ~{} frames)",
        consumed as f64 / elapsed,
        (SERVER_RATE as f64 * elapsed) as u64 - consumed
    ));
    up.close();
    up.wait_closed();
    stop_server(child);
}
