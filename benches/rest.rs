//! REST benchmark: `cargo bench --bench rest` (`RAN_BENCH_QUICK=1` for a short smoke run).
//!
//! `rest_insert_select`: N device inserts, then N single-device selects and one select of
//! the whole table, against the in-process emulator on loopback.
//! - ours: `core.routing_table().insert(..)` / `.select(Select::dev_euis(..))` / `.select()`, which
//!   serialize the bodies with serde and decode every answer into `Device`s;
//! - baseline: a bare `ureq` agent with hand-built JSON bodies and query strings, reading
//!   each answer's bytes without decoding them.
//!
//! Both run in this process against the same emulator, alternating, with the table
//! emptied between runs; `RATIO rest_insert_select <ours ÷ baseline>` (requests per
//! second), higher is better. Ours must also use one TCP connection for the whole run
//! (`Emulator::accepted_connections`).

mod support;

use std::time::Instant;

use ran_routing::Core;
use ran_routing_emulator::Emulator;
use support::{median, size, Report};

fn main() {
    let reps = size(7, 1);
    let n = size(10_000, 500);
    let emu = Emulator::builder().device_limit(n + 1).start().unwrap();
    let cleaner = Core::new(emu.token(), &emu.base_url()).unwrap();
    println!(
        "REST benchmark: {n} inserts + {n} selects + 1 full select, {reps} repetitions, ours and baseline alternating{}",
        if support::quick() {
            " (RAN_BENCH_QUICK: smoke run, figures not comparable)"
        } else {
            ""
        }
    );
    let requests = (2 * n + 1) as f64;
    let (mut ours_rates, mut base_rates) = (Vec::new(), Vec::new());
    let mut ours_connections = Vec::new();
    let (mut ours_cpu, mut base_cpu) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let order: [bool; 2] = if rep % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_ours in order {
            if !support::side_selected(is_ours) {
                continue;
            }
            cleaner.routing_table().delete_all().unwrap();
            let start = Instant::now();
            let cpu = support::thread_cpu();
            let connections = if is_ours {
                support::rest::ours(&emu, &Core::new(emu.token(), &emu.base_url()).unwrap(), n)
            } else {
                support::rest::baseline(&emu, &ureq::Agent::new_with_defaults(), n)
            };
            let cpu = support::micros(support::thread_cpu() - cpu) / requests;
            let rate = requests / start.elapsed().as_secs_f64();
            if is_ours {
                ours_rates.push(rate);
                ours_connections.push(connections);
                ours_cpu.push(cpu);
            } else {
                base_rates.push(rate);
                base_cpu.push(cpu);
            }
        }
    }
    let (ours, base) = (median(&mut ours_rates), median(&mut base_rates));
    let max_connections = ours_connections.iter().copied().max().unwrap_or(0);
    let mut report = Report::default();
    report.figure(
        "rest_insert_select",
        format!(
            "{ours:.0} req/s ({:.1} µs/req), {max_connections} TCP connection(s)",
            1e6 / ours
        ),
        format!("{base:.0} req/s ({:.1} µs/req)", 1e6 / base),
        ours / base,
        ">= 0.9, 1 connection",
    );
    report.note(format!(
        "rest_insert_select: client CPU per request {:.1} µs ours, {:.1} µs baseline (the emulator's threads not counted)",
        median(&mut ours_cpu),
        median(&mut base_cpu)
    ));
    report.print();
    if ours_connections.is_empty() {
        return;
    }
    assert_eq!(
        max_connections, 1,
        "ours opened more than one TCP connection in a run"
    );
}
