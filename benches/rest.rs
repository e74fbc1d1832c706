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

use ran_routing::{Core, DevEui, JoinEui, NewDevice, Select};
use ran_routing_emulator::Emulator;
use support::{median, size, Report};

const JOIN_EUI: u64 = 0x3ced_cf62_4f8b_68f4;

fn dev_eui(i: usize) -> u64 {
    0x7abe_1b8c_0000_0000 | i as u64
}

/// Ours; returns the number of TCP connections it opened.
fn ours(emu: &Emulator, n: usize) -> u64 {
    let before = emu.accepted_connections();
    let core = Core::new(emu.token(), &emu.base_url()).unwrap();
    let table = core.routing_table();
    for i in 0..n {
        let device = table
            .insert(NewDevice::new(
                DevEui::new(dev_eui(i)),
                JoinEui::new(JOIN_EUI),
            ))
            .unwrap();
        assert_eq!(device.dev_eui, DevEui::new(dev_eui(i)));
    }
    for i in 0..n {
        let found = table
            .select(Select::dev_euis([DevEui::new(dev_eui(i))]))
            .unwrap();
        assert_eq!(found.len(), 1);
    }
    assert_eq!(table.select(Select::all()).unwrap().len(), n);
    emu.accepted_connections() - before
}

/// The baseline: the same requests by hand.
fn baseline(emu: &Emulator, n: usize) -> u64 {
    let before = emu.accepted_connections();
    let agent = ureq::Agent::new_with_defaults();
    let base = emu.base_url();
    let bearer = format!("Bearer {}", emu.token());
    let insert = format!("{base}/devices/insert");
    for i in 0..n {
        let body = format!(
            r#"{{"DevEUI":"{:016x}","JoinEUI":"{JOIN_EUI:016x}"}}"#,
            dev_eui(i)
        );
        let mut response = agent
            .post(&insert)
            .header("Authorization", &bearer)
            .content_type("application/json")
            .send(&body)
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.body_mut().read_to_vec().unwrap();
        assert!(!body.is_empty());
    }
    for i in 0..n {
        let url = format!("{base}/devices/select?DevEUIs={:016x}", dev_eui(i));
        let mut response = agent
            .get(&url)
            .header("Authorization", &bearer)
            .call()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.body_mut().read_to_vec().unwrap();
        assert!(body.len() > 2);
    }
    let mut response = agent
        .get(format!("{base}/devices/select"))
        .header("Authorization", &bearer)
        .call()
        .unwrap();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    assert!(body.len() > n * 100);
    emu.accepted_connections() - before
}

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
                ours(&emu, n)
            } else {
                baseline(&emu, n)
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
