//! A worker pool sharing one key store: `cargo bench --features mic --bench keys`
//! (`RAN_BENCH_QUICK=1` for a short smoke run).
//!
//! Four workers each take an uplink, solve its MIC challenge, record the counter, take the
//! device's next FCntDown and sign an ACK, over 64 devices. Two ways to share the store:
//! `Arc<Keys>` as is (shards and a lock per device: workers meet only on one device), and
//! `Arc<Mutex<Keys>>`, the one lock every pool needed while `Keys` took `&mut self` (held
//! for the solve, as the `lns` example did). Prints the uplinks answered per second for
//! both and `RATIO keys_shared <Arc<Keys> ÷ Mutex<Keys>>`, higher is better; both run in
//! this process on the same uplinks, so the ratio holds on a machine with as many cores.
//! With one core it is about 1: the lock only costs when workers run at once.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ran_routing::mic::{self, AesKey, DataDownlink, Keys, Session, Solver};
use ran_routing::{DevAddr, DevEui, UpstreamMessage};

const WORKERS: usize = 4;
const DEVICES: u64 = 64;

fn keys() -> Keys {
    let keys = Keys::new();
    for n in 0..DEVICES {
        keys.set_session(
            DevEui::new(n),
            Session::new(AesKey::new([n as u8; 16])).with_app_s_key(AesKey::new([1; 16])),
        );
    }
    keys
}

/// Per device, uplinks with counters 0, 1, 2, ... and 16-candidate challenges.
fn uplinks(per_device: u32) -> Vec<UpstreamMessage> {
    let mut out = Vec::new();
    for fcnt in 0..per_device {
        for n in 0..DEVICES {
            let frame = mic::DataUplink::new(DevAddr::new(n as u32), fcnt)
                .confirmed(true)
                .payload(1, *b"21.5")
                .build(&AesKey::new([n as u8; 16]))
                .unwrap();
            let tid = u64::from(fcnt) * DEVICES + n + 1;
            out.push(
                mic::upstream_with_challenge(&frame, tid, vec![DevEui::new(n)], 15, tid).unwrap(),
            );
        }
    }
    out
}

/// One worker's answer to an uplink: solve, record, sign the ACK.
fn answer(keys: &Keys, msg: &UpstreamMessage) -> Vec<u8> {
    let solved = Solver::new().solve(keys, msg).unwrap();
    keys.record(&solved);
    let (session, fcnt) = keys.next_fcnt_down(solved.dev_eui).unwrap();
    let dev_addr = solved.frame.dev_addr().unwrap();
    DataDownlink::new(dev_addr, fcnt)
        .ack(true)
        .build(&session.nwk_s_key, session.app_s_key.as_ref().unwrap())
        .unwrap()
}

/// Runs the uplinks through `WORKERS` threads, each taking every `WORKERS`-th one; returns
/// the time taken.
fn run(
    uplinks: &Arc<Vec<UpstreamMessage>>,
    work: impl Fn(&UpstreamMessage) + Send + Sync + Clone + 'static,
) -> Duration {
    let start = Instant::now();
    let threads: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (uplinks, work) = (Arc::clone(uplinks), work.clone());
            std::thread::spawn(move || {
                for msg in uplinks.iter().skip(w).step_by(WORKERS) {
                    work(msg);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

fn main() {
    let per_device = support::size(200, 10) as u32;
    let uplinks = Arc::new(uplinks(per_device));
    let rounds = support::size(5, 1);
    // Warm up (threads, caches, the CPU's AES detection) before either side is timed.
    let warm = Arc::new(keys());
    run(&uplinks, move |msg| {
        std::hint::black_box(answer(&warm, msg));
    });
    let (mut shared_best, mut locked_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        let shared = Arc::new(keys());
        let elapsed = run(&uplinks, move |msg| {
            std::hint::black_box(answer(&shared, msg));
        });
        shared_best = shared_best.min(elapsed);

        let locked = Arc::new(Mutex::new(keys()));
        let elapsed = run(&uplinks, move |msg| {
            let keys = locked.lock().unwrap();
            std::hint::black_box(answer(&keys, msg));
        });
        locked_best = locked_best.min(elapsed);
    }
    let rate = |d: Duration| uplinks.len() as f64 / d.as_secs_f64();
    println!(
        "{WORKERS} workers answering {} uplinks of {DEVICES} devices (best of {rounds}; {} \
         cores){}:",
        uplinks.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if support::quick() {
            " (RAN_BENCH_QUICK: smoke run, figures not comparable)"
        } else {
            ""
        }
    );
    println!(
        "  Arc<Keys>, per-device locks   {:>10.0} uplinks/s",
        rate(shared_best)
    );
    println!(
        "  Arc<Mutex<Keys>>, one lock    {:>10.0} uplinks/s",
        rate(locked_best)
    );
    println!(
        "RATIO keys_shared {:.2}",
        locked_best.as_secs_f64() / shared_best.as_secs_f64()
    );
}
