//! A soak: uplinks acked through one reconnecting upstream connection while it keeps
//! being cut, in turn by the server at the TCP level, by the server with a close frame,
//! and by a proxy on the way that drops whatever it holds (a middlebox dying). The
//! connection runs through that proxy, which tears a flow down once either side ends
//! it, so every kind of cut can lose what is in flight.
//!
//! The guarantee checked, precisely: every uplink the client read from its socket comes
//! out of `iter()` exactly once and in order, across every reconnection, and resident
//! memory stays flat. An uplink the server wrote to a socket that died before the client
//! read it is lost in flight: TCP cannot tell the writer which bytes the peer read, so
//! no client can deliver those. The service covers that side by delivering again what
//! was not answered; here the producer plays that part, honestly limited to what a
//! server can know: after each reconnection it sends a marker uplink, the consumer says
//! where it is when the marker comes out of `iter()` (every uplink of the old connection
//! comes out before anything of the new one), and the producer sends again from there.
//! End to end, uplinks `0..N` reach the consumer exactly once, in order; the uplinks
//! sent again are counted and reported.
//!
//! The producer hands the emulator uplinks in batches (one hand-over to its connection
//! thread per batch) and keeps a bounded window in flight, as a RAN does: the run is
//! paced by the client, and a cut finds at most a window's worth in flight.
//!
//! CI runs 20 000 uplinks with a cut every 2 000. The full run, 1 000 000 with a cut
//! every 100 000, is ignored by default:
//! `cargo test --release --all-features --test soak -- --ignored --nocapture`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::streams::*;
use ran_routing::{ConnectionEvent, DevEui, Error};
use ran_routing_emulator::Emulator;

/// Transaction ids from here on are markers, not uplinks.
const MARKER: u64 = 1 << 60;
/// Uplinks handed to the emulator at once: one hand-over to its connection thread each.
const BATCH: u64 = 64;
/// Most uplinks sent beyond what the consumer has taken, as a RAN bounds what it has in
/// flight. A cut loses at most this many, so the acks refused while reconnecting stay
/// under `WINDOW` per cut instead of growing with the socket buffers.
const WINDOW: u64 = 256;

/// How far the consumer got, so the producer can keep at most [`WINDOW`] uplinks in
/// flight without polling: the consumer wakes it once the mark it waits for is passed.
struct Progress {
    taken: AtomicU64,
    wake_at: AtomicU64,
    producer: thread::Thread,
}

impl Progress {
    fn new() -> Self {
        Self {
            taken: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            producer: thread::current(),
        }
    }

    /// Called by the consumer: `n` uplinks taken so far.
    fn taken(&self, n: u64) {
        self.taken.store(n, Ordering::SeqCst);
        if n >= self.wake_at.load(Ordering::SeqCst) {
            self.wake_at.store(u64::MAX, Ordering::SeqCst);
            self.producer.unpark();
        }
    }

    /// Called by the producer: waits until `n` uplinks are taken; false on timeout.
    fn wait_taken(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            // Store then load, against the consumer's store then load: one of the two
            // sees the other's write, so a wake-up is never lost.
            self.wake_at.store(n, Ordering::SeqCst);
            if self.taken.load(Ordering::SeqCst) >= n {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            thread::park_timeout(left);
        }
    }
}

struct Report {
    elapsed: Duration,
    cuts: u64,
    sent_again: u64,
    acks_sent: u64,
    acks_recorded: u64,
    acks_refused: u64,
    acks_failed: u64,
    rss_kib: Vec<(u64, u64)>,
}

fn soak(total: u64, cut_every: u64) -> Report {
    return_large_buffers_to_the_os();
    let started = Instant::now();
    let emu = Emulator::start().unwrap();
    let proxy = Proxy::start(emu.local_addr());
    let core = core_at(emu.token(), &proxy.base_url());
    let events = Events::default();
    let up = Arc::new(
        core.upstream()
            .reconnect(fast_reconnect())
            .on_event(events.handler())
            .connect()
            .unwrap(),
    );
    assert!(emu.wait_upstream_connections(1, WAIT));

    let (position_tx, position_rx) = mpsc::channel::<(u64, u64)>();
    let progress = Arc::new(Progress::new());
    let consumer = {
        let up = up.clone();
        let progress = progress.clone();
        thread::spawn(move || -> Result<(u64, u64, u64), String> {
            let mut expected = 0u64;
            let (mut acked, mut refused, mut failed) = (0u64, 0u64, 0u64);
            while expected < total {
                let m = up
                    .recv_timeout(WAIT * 3)
                    .map_err(|e| format!("after {expected}: {e:?}"))?;
                let id = m.transaction_id;
                if id >= MARKER {
                    let _ = position_tx.send((id, expected));
                } else if id != expected + 1 {
                    return Err(format!("got {id}, expected {}", expected + 1));
                } else {
                    expected += 1;
                    progress.taken(expected);
                }
                match up.send_upstream_ack(id, DevEui::new(DEV_EUI), id as u32) {
                    Ok(()) => acked += 1,
                    // Reconnecting: the ack is refused at once, never queued.
                    Err(Error::NotConnected(_)) | Err(Error::Closed(_)) => refused += 1,
                    // The connection died under the write: maybe sent, maybe not.
                    Err(Error::Io(_)) => failed += 1,
                    Err(e) => return Err(format!("ack {id}: {e}")),
                }
            }
            Ok((acked, refused, failed))
        })
    };

    let mut rss = vec![(0, rss_kib().unwrap_or(0))];
    let (mut next, mut sent_since_cut, mut cuts, mut marker) = (0u64, 0u64, 0u64, MARKER);
    let (mut sent_again, mut acks, mut epoch_start) = (0u64, 0u64, 0u64);
    while next < total {
        while next < total && sent_since_cut < cut_every {
            let n = BATCH.min(total - next).min(cut_every - sent_since_cut);
            if !progress.wait_taken((next + n).saturating_sub(WINDOW), WAIT * 3) {
                panic!("the consumer stalled: {:?}", consumer.join().unwrap());
            }
            // Transaction ids start at 1.
            let batch: Vec<_> = (next + 1..=next + n).map(uplink).collect();
            let sent = emu.send_upstreams(&batch);
            // Some of a failed batch may have gone out: the marker tells.
            next += n;
            sent_since_cut += n;
            if sent.is_err() {
                break; // Not a planned cut; resynchronise all the same.
            }
        }
        if next == total {
            break;
        }
        let opened = emu.stream_connections_opened();
        match cuts % 3 {
            0 => emu.drop_stream_connections(),
            1 => emu.close_stream_connections(),
            _ => proxy.cut(),
        }
        cuts += 1;
        sent_since_cut = 0;
        if !wait_replaced(&emu, opened) {
            let consumer = consumer.join().unwrap();
            panic!("not replaced; consumer: {consumer:?}; {:?}", events.all());
        }
        let mut attempts = 0;
        let position = loop {
            attempts += 1;
            assert!(attempts <= 5, "no marker came through: {:?}", events.all());
            marker += 1;
            if emu.send_upstream(&uplink(marker)).is_err() {
                assert!(emu.wait_upstream_connections(1, WAIT));
                continue;
            }
            let deadline = Instant::now() + WAIT;
            let found = loop {
                match position_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok((m, position)) if m == marker => break Some(position),
                    Ok(_) => continue,
                    Err(mpsc::RecvTimeoutError::Timeout) => break None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        panic!("consumer failed: {:?}", consumer.join().unwrap())
                    }
                }
            };
            if let Some(position) = found {
                break position;
            }
        };
        assert!(position <= next, "{position} > {next}");
        sent_again += next - position;
        next = position;
        epoch_start = position;
        // Acks arriving between the two calls escape the count: a lower bound.
        acks += emu.upstream_replies().len() as u64;
        emu.clear_records();
        rss.push((next, rss_kib().unwrap_or(0)));
    }
    let (acked, refused, failed) = consumer
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}; events {:?}", events.all()));
    // The connection stayed up since the last cut: every ack of it arrives.
    assert!(eventually(WAIT, || {
        emu.upstream_replies().len() as u64 >= total - epoch_start
    }));
    acks += emu.upstream_replies().len() as u64;
    // Sampled like the others: without the emulator's record of the last acks.
    emu.clear_records();
    rss.push((total, rss_kib().unwrap_or(0)));
    assert!(up.is_connected(), "{:?}", up.close_reason());
    assert_eq!(
        events.connects() as u64,
        cuts + 1,
        "one reconnection per cut: {:?}",
        events.all()
    );
    assert!(!events
        .all()
        .iter()
        .any(|e| matches!(e, ConnectionEvent::GaveUp(_))));
    up.close();
    assert!(up.wait_closed_timeout(WAIT).is_some());
    Report {
        elapsed: started.elapsed(),
        cuts,
        sent_again,
        acks_sent: acked,
        acks_recorded: acks,
        acks_refused: refused,
        acks_failed: failed,
        rss_kib: rss,
    }
}

fn check(name: &str, total: u64, cut_every: u64, max_growth_kib: u64) {
    let r = soak(total, cut_every);
    let rss: Vec<String> = r
        .rss_kib
        .iter()
        .map(|(at, kib)| format!("{at}:{kib}"))
        .collect();
    eprintln!(
        "{name}: {total} uplinks in {:?}, {} cuts, {} sent again after a cut, \
         {} acks sent, {} refused while reconnecting, {} failed mid-write, \
         at least {} recorded by the server; \
         RSS KiB by uplink {}",
        r.elapsed,
        r.cuts,
        r.sent_again,
        r.acks_sent,
        r.acks_refused,
        r.acks_failed,
        r.acks_recorded,
        rss.join(" ")
    );
    // Uplinks sent again count towards the next cut, so there may be one more.
    assert!(r.cuts >= total.div_ceil(cut_every) - 1, "{} cuts", r.cuts);
    // From after the first cut (everything started, pools warm) to the end.
    let settled = r.rss_kib[1].1;
    let peak = r.rss_kib.iter().skip(1).map(|(_, kib)| *kib).max().unwrap();
    if settled > 0 {
        assert!(
            peak < settled + max_growth_kib,
            "RSS grew from {settled} KiB to {peak} KiB"
        );
    }
}

#[test]
fn soak_short() {
    check("soak (short)", 20_000, 2_000, 32 * 1024);
}

#[test]
#[ignore = "the full soak takes minutes; run it with --ignored"]
fn soak_full() {
    check("soak (full)", 1_000_000, 100_000, 32 * 1024);
}
