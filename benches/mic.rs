//! MIC challenge solver throughput: `cargo bench --features mic --bench mic`.
//!
//! Prints candidates per second for the solver on 4096-candidate challenges, the same for
//! the naive approach (rebuild each candidate's full frame and verify it with one CMAC,
//! stopping at the match), and `RATIO mic_solver <ours ÷ naive>`, higher is better. Both
//! run in this process on the same challenges, so the ratio holds across machines.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use ran_routing::mic::{self, AesKey, DataUplink, Keys, Session, Solver};
use ran_routing::{DevAddr, DevEui, UpstreamMessage};

const CANDIDATES: usize = 4096;
/// Challenges per round; the true MIC sits at a different random place in each, so the
/// naive scan's early exit averages out.
const CHALLENGES: usize = 16;

/// Runs `f` (which handles `CHALLENGES` challenges) for at least `min`, returns the time
/// per call.
fn time_per_call(min: Duration, mut f: impl FnMut()) -> Duration {
    f(); // warm up caches and the CPU feature detection
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < min {
        f();
        calls += 1;
    }
    start.elapsed() / calls
}

fn candidates_per_second(per_call: Duration) -> f64 {
    (CHALLENGES * CANDIDATES) as f64 / per_call.as_secs_f64()
}

fn main() {
    let min = Duration::from_millis(800);
    let dev_eui = DevEui::new(0x0004a30b001c0530);
    let nwk: AesKey = "000102030405060708090a0b0c0d0e0f".parse().unwrap();
    let addr = DevAddr::new(0x26011bda);
    let fcnt = 0x1_0005;
    let keys = Keys::new();
    keys.set_session(dev_eui, Session::new(nwk.clone()).with_fcnt_up(fcnt - 1));

    let challenges: Vec<(UpstreamMessage, u32)> = (0..CHALLENGES as u32)
        .map(|i| {
            let frame = DataUplink::new(addr, fcnt)
                .payload(1, *b"temperature=21.5")
                .build(&nwk)
                .unwrap();
            let msg = mic::upstream_with_challenge(
                &frame,
                u64::from(i) + 1,
                vec![dev_eui],
                CANDIDATES - 1,
                u64::from(i),
            )
            .unwrap();
            (msg, mic::split_mic(&frame).unwrap().1)
        })
        .collect();

    let solver = Solver::new();
    let ours = time_per_call(min, || {
        for (msg, true_mic) in &challenges {
            let solved = solver.solve(&keys, black_box(msg)).unwrap();
            assert_eq!(solved.mic, *true_mic);
        }
    });

    // The naive approach: the full frame of each candidate, verified by recomputing its
    // MIC. It is even told the full frame counter, which the solver has to reconstruct.
    let naive = time_per_call(min, || {
        for (msg, true_mic) in &challenges {
            let found = msg
                .mic_challenge
                .iter()
                .copied()
                .find(|&c| {
                    let frame = msg.phy_payload_with_mic(c);
                    mic::verify_data_uplink(&nwk, black_box(&frame), fcnt).unwrap()
                })
                .unwrap();
            assert_eq!(found, *true_mic);
        }
    });

    // Variants of the solver's own cost, for the record.
    let join_key: AesKey = "2b7e151628aed2a6abf7158809cf4f3c".parse().unwrap();
    let join_keys = Keys::new();
    join_keys.set_join_key(dev_eui, join_key.clone());
    let join_frame = mic::join_request(&join_key, 1.into(), dev_eui, 7);
    let joins: Vec<UpstreamMessage> = (0..CHALLENGES as u64)
        .map(|i| {
            mic::upstream_with_challenge(&join_frame, i + 1, vec![dev_eui], CANDIDATES - 1, i)
                .unwrap()
        })
        .collect();
    let join = time_per_call(min, || {
        for msg in &joins {
            black_box(solver.solve(&join_keys, black_box(msg)).unwrap());
        }
    });

    // Eight devices share the DevAddr; the frame's is the last one tried.
    let shared = Keys::new();
    let mut dev_euis = Vec::new();
    for i in 0..8u8 {
        let d = DevEui::new(0x1000 + u64::from(i));
        let k = if i == 7 {
            nwk.clone()
        } else {
            AesKey::new([i; 16])
        };
        shared.set_session(d, Session::new(k).with_fcnt_up(fcnt - 1));
        dev_euis.push(d);
    }
    let shared_msgs: Vec<UpstreamMessage> = challenges
        .iter()
        .map(|(m, _)| {
            let mut shared_msg = m.clone();
            shared_msg.dev_euis = dev_euis.clone();
            shared_msg
        })
        .collect();
    let eight = time_per_call(min, || {
        for msg in &shared_msgs {
            black_box(solver.solve(&shared, black_box(msg)).unwrap());
        }
    });

    // The worst case: a wrong key, so every counter of the window is tried.
    let wrong = Keys::new();
    wrong.set_session(
        dev_eui,
        Session::new(AesKey::new([0; 16])).with_fcnt_up(fcnt - 1),
    );
    let no_match = time_per_call(min, || {
        for (msg, _) in &challenges {
            assert!(solver.solve(&wrong, black_box(msg)).is_err());
        }
    });

    // The candidate lookup alone: a linear scan per computed MIC, against hashing the
    // candidates into a set first (what the solver's `is_candidate` chose between).
    let probes: Vec<u32> = challenges.iter().map(|(_, m)| *m).collect();
    let scan = time_per_call(min / 2, || {
        for (msg, _) in &challenges {
            for p in &probes[..4] {
                black_box(black_box(&msg.mic_challenge).contains(p));
            }
        }
    });
    let set = time_per_call(min / 2, || {
        for (msg, _) in &challenges {
            let set: HashSet<u32> = black_box(&msg.mic_challenge).iter().copied().collect();
            for p in &probes[..4] {
                black_box(set.contains(p));
            }
        }
    });

    let per = |d: Duration| d.as_secs_f64() * 1e6 / CHALLENGES as f64;
    println!("MIC challenge of {CANDIDATES} candidates (time per challenge, candidates/s):");
    println!(
        "  solver, data uplink, FCnt past 65535   {:>9.2} µs  {:>14.0} /s",
        per(ours),
        candidates_per_second(ours)
    );
    println!(
        "  solver, join request                   {:>9.2} µs  {:>14.0} /s",
        per(join),
        candidates_per_second(join)
    );
    println!(
        "  solver, 8 devices share the DevAddr    {:>9.2} µs  {:>14.0} /s",
        per(eight),
        candidates_per_second(eight)
    );
    println!(
        "  solver, wrong key (no match, {} FCnts)  {:>9.2} µs  {:>14.0} /s",
        Solver::DEFAULT_FCNT_WINDOW,
        per(no_match),
        candidates_per_second(no_match)
    );
    println!(
        "  naive: CMAC per candidate frame        {:>9.2} µs  {:>14.0} /s",
        per(naive),
        candidates_per_second(naive)
    );
    println!(
        "  lookup of 4 MICs: linear scan {:.2} µs, HashSet build + probe {:.2} µs",
        per(scan),
        per(set)
    );
    println!(
        "RATIO mic_solver {:.1}",
        naive.as_secs_f64() / ours.as_secs_f64()
    );
}
