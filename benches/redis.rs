//! Shared de-duplication through Redis (feature `redis`), against a real `redis-server`
//! on loopback started by the bench.
//!
//! - `redis_dedup_ack_throughput`: the crate's upstream ack loop with `.dedup_in(store)`
//!   (ours) against the same loop with in-process `.dedup(60 s)` (baseline), same frames,
//!   none a duplicate: what sharing the claim and the answer through Redis costs.
//! - `redis_dedup_scaling`: the same loop as two consumers' processes (two `Core`s, two
//!   store handles, the frames dealt between their connections) against one: what
//!   running more LNS processes buys.
//!
//! `RATIO <name> <ours ÷ baseline>` lines follow the table, higher is better.

#[path = "../tests/common/redis.rs"]
mod redis_server;
mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ran_routing::redis::RedisStore;
use ran_routing::Core;
use support::frames::{encode, upstream_json, FrameCounter};
use support::{median, size, Report};
use tungstenite::WebSocket;

const TOKEN: &str = "bench-token";

fn main() {
    let redis = redis_server::RedisServer::start();
    let pairs = size(11, 1);
    let n = size(20_000, 1_000);
    let mut report = Report::default();
    println!(
        "redis benchmarks: {pairs} pairs, ours and baseline alternating{}",
        if support::quick() {
            " (RAN_BENCH_QUICK: smoke run, figures not comparable)"
        } else {
            ""
        }
    );
    let (mut shared, mut local, mut two) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..pairs {
        // A fresh prefix per run: no claim of an earlier run is found.
        let store = || {
            RedisStore::open(&redis.url())
                .unwrap()
                .prefix(format!("bench{rep}:"))
        };
        // Alternate which side goes first, so drift in machine load hits both alike.
        if rep % 2 == 0 {
            shared.push(run(n, &[Some(store())]));
            local.push(run(n, &[None]));
        } else {
            local.push(run(n, &[None]));
            shared.push(run(n, &[Some(store())]));
        }
        let store2 = || {
            RedisStore::open(&redis.url())
                .unwrap()
                .prefix(format!("bench{rep}b:"))
        };
        two.push(run(n, &[Some(store2()), Some(store2())]));
    }
    let ratio = support::paired_ratio(&shared, &local);
    let scaling = support::paired_ratio(&two, &shared);
    let (shared, local, two) = (median(&mut shared), median(&mut local), median(&mut two));
    report.figure(
        "redis_dedup_ack_throughput",
        format!("{shared:.0} acks/s ({:.1} µs/msg)", 1e6 / shared),
        format!(
            "{local:.0} acks/s ({:.1} µs/msg), in-process dedup",
            1e6 / local
        ),
        ratio,
        ">= 0.3",
    );
    report.figure(
        "redis_dedup_scaling",
        format!("{two:.0} acks/s, two processes"),
        format!("{shared:.0} acks/s, one process"),
        scaling,
        "reported",
    );
    report.note(format!(
        "N = {n} distinct uplinks per run; medians and ratios over {pairs} pairs; one redis-server on loopback"
    ));
    report.print();
}

/// Floods `n` distinct uplinks to as many connections as `stores` has entries (dealt in
/// turn, as the API's round robin does), each acked by the crate's loop with `dedup_in`
/// (`Some`) or in-process `dedup` (`None`); acks per second.
fn run(n: usize, stores: &[Option<RedisStore>]) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let k = stores.len();
    let per = n / k;
    let clients: Vec<_> = stores
        .iter()
        .cloned()
        .map(|store| thread::spawn(move || acker(port, per, store)))
        .collect();
    let sockets: Vec<WebSocket<TcpStream>> = (0..k).map(|_| accept(&listener)).collect();
    let start = Instant::now();
    let counters: Vec<_> = sockets
        .iter()
        .enumerate()
        .map(|(i, ws)| {
            let first = (i * per) as u64 + 1;
            let wire = encode((first..first + per as u64).map(upstream_json));
            let mut tx = ws.get_ref().try_clone().unwrap();
            let rx = ws.get_ref().try_clone().unwrap();
            thread::spawn(move || {
                let writer = thread::spawn(move || tx.write_all(&wire).unwrap());
                FrameCounter::new(rx).read(per);
                writer.join().unwrap();
            })
        })
        .collect();
    for c in counters {
        c.join().unwrap();
    }
    let rate = (per * k) as f64 / start.elapsed().as_secs_f64();
    drop(sockets);
    for c in clients {
        c.join().unwrap();
    }
    rate
}

fn acker(port: u16, n: usize, store: Option<RedisStore>) {
    let core = Core::new(TOKEN, &format!("http://127.0.0.1:{port}/api/v1")).unwrap();
    let builder = core.upstream().no_reconnect();
    let builder = match &store {
        Some(store) => builder.dedup_in(store, Duration::from_secs(60)),
        None => builder.dedup(Duration::from_secs(60)),
    };
    let up = builder.connect().unwrap();
    let seen = support::ack_each(&up, n);
    assert_eq!(seen, n, "the connection ended: {:?}", up.close_reason());
    up.close();
}

fn accept(listener: &TcpListener) -> WebSocket<TcpStream> {
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_nodelay(true).unwrap();
    tungstenite::accept(tcp).unwrap_or_else(|_| panic!("bench server: handshake failed"))
}
