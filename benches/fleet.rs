//! Fleet reconciliation benchmark: `cargo bench --bench fleet` (`RAN_BENCH_QUICK=1` for a
//! short smoke run).
//!
//! `sync_fleet`: a fleet of 100 000 devices against a routing table that has most of
//! them right (a realistic mix: 92% unchanged, 3% missing, 3% with a new active address,
//! 2% with a new JoinEUI, plus 2% devices the LNS no longer has), served by the emulator
//! with 20 ms of REST latency standing in for a WAN link. The emulator runs in this
//! process, on loopback.
//!
//! - `RATIO sync_fleet`: the apply's ideal wall time, `calls x latency / concurrency`
//!   (concurrency 32), over the measured one; target >= 0.8.
//! - The REST calls the apply made, counted from the client's own log line per call,
//!   against the fewest the plan needs (`DevicePlan::write_calls`); target: equal.
//! - Memory while planning. The process's peak resident size (`VmHWM`, reset before the
//!   plan, after freed memory is handed back to the system) includes the in-process
//!   emulator's table of 100 000 devices; the plan's own share is measured exactly by a
//!   counting allocator: the peak of live heap bytes during the plan over those live
//!   before it. Target < 100 MB.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ran_routing::fleet::{DesiredDevice, Fleet};
use ran_routing::Core;
use ran_routing_emulator::Emulator;
use support::{size, status_kib, Report};

const LATENCY: Duration = Duration::from_millis(20);
const CONCURRENCY: usize = 32;
/// Writing the starting table (one insert per device) is set-up, not measured: many
/// workers hide the latency.
const SEED_CONCURRENCY: usize = 256;
const JOIN_EUI: u64 = 0x70b3_d57e_d000_0000;

/// Counts the client's DEBUG line per REST call (target `ran_routing::rest::call`), when on.
struct CallCounter(AtomicUsize);

impl log::Log for CallCounter {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "ran_routing::rest::call"
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

static CALLS: CallCounter = CallCounter(AtomicUsize::new(0));

/// The system allocator, counting live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Hands freed heap memory back to the system, so that the resident size is live memory.
#[allow(unsafe_code)]
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn eui(i: usize) -> u64 {
    // Leading zeros, as real DevEUIs often have.
    0x0004_a30b_0000_0000 | i as u64
}

/// The LNS's fleet, and the table the RAN starts with.
fn fleets(n: usize) -> (Vec<DesiredDevice>, Vec<DesiredDevice>) {
    let desired: Vec<DesiredDevice> = (0..n)
        .map(|i| match i % 10 {
            0..=5 => DesiredDevice::otaa(eui(i), JOIN_EUI),
            6 | 7 => DesiredDevice::abp(eui(i), 0x2700_0000 | i as u32),
            _ => DesiredDevice::joined(eui(i), JOIN_EUI, 0x2600_0000 | i as u32),
        })
        .collect();
    let mut table = Vec::with_capacity(n);
    for (i, d) in desired.iter().enumerate() {
        match i % 100 {
            // 3%: missing (inserts), two thirds of them joined.
            0 | 8 | 9 => {}
            // 3%: OTAA devices the RAN knows with an older address or none (updates).
            10..=12 => table.push(DesiredDevice::otaa(d.dev_eui, JOIN_EUI)),
            // 2%: another JoinEUI (re-creations).
            20 | 21 => table.push(DesiredDevice::otaa(d.dev_eui, JOIN_EUI + 1)),
            _ => table.push(*d),
        }
    }
    // 2%: devices only the RAN has (deletions).
    table.extend((0..n / 50).map(|i| DesiredDevice::abp(eui(n + i), 0x2800_0000)));
    (desired, table)
}

fn desired_for_updates(mut desired: Vec<DesiredDevice>) -> Vec<DesiredDevice> {
    // The 3% the RAN knows without an address have joined for the LNS.
    for (i, d) in desired.iter_mut().enumerate() {
        if (10..=12).contains(&(i % 100)) {
            *d = DesiredDevice::joined(d.dev_eui, JOIN_EUI, 0x2500_0000 | i as u32);
        }
    }
    desired
}

/// Resets `VmHWM` to the current resident size (Linux 4.0+); false if refused.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn main() {
    let n = size(100_000, 2_000);
    log::set_logger(&CALLS).unwrap();
    log::set_max_level(log::LevelFilter::Off);

    let emu = Emulator::builder().rest_latency(LATENCY).start().unwrap();
    let (desired, table) = fleets(n);
    let desired = desired_for_updates(desired);
    println!(
        "fleet benchmark: {n} devices, REST latency {LATENCY:?}, concurrency {CONCURRENCY}; \
         the emulator runs in this process{}",
        if support::quick() {
            " (RAN_BENCH_QUICK: smoke run, figures not comparable)"
        } else {
            ""
        }
    );

    let seeder_core = Core::builder(emu.token())
        .base_url(&emu.base_url())
        .max_idle_connections(SEED_CONCURRENCY)
        .build()
        .unwrap();
    let seeder = Fleet::new(&seeder_core).concurrency(SEED_CONCURRENCY);
    let started = Instant::now();
    let seed = seeder.plan(table).unwrap();
    let seeded = seeder.apply(&seed, |_| {}).unwrap();
    assert!(seeded.is_success(), "{}", seeded.failure_listing());
    seeder_core.close();
    println!(
        "set-up: {} devices written in {:.1} s",
        emu.devices().len(),
        started.elapsed().as_secs_f64()
    );

    let core = Core::builder(emu.token())
        .base_url(&emu.base_url())
        .max_idle_connections(CONCURRENCY)
        .build()
        .unwrap();
    let fleet = Fleet::new(&core).concurrency(CONCURRENCY);

    // Plan, with the peak resident size and the heap peak reset before it.
    trim();
    let rss_before = status_kib("VmRSS");
    let peak_reset = reset_peak();
    let live_before = LIVE.load(Ordering::SeqCst);
    PEAK.store(live_before, Ordering::SeqCst);
    let started = Instant::now();
    let plan = fleet.plan(desired.iter().copied()).unwrap();
    let plan_time = started.elapsed();
    let peak = status_kib("VmHWM");
    let heap_peak = PEAK.load(Ordering::SeqCst) - live_before;
    let heap_kept = LIVE.load(Ordering::SeqCst).saturating_sub(live_before);
    println!(
        "plan: {plan} in {:.2} s ({} pages)",
        plan_time.as_secs_f64(),
        plan.pages_read()
    );

    // Apply, counting the calls from the client's log.
    let needed = plan.write_calls(Fleet::DEFAULT_BATCH);
    let accepted = emu.accepted_connections();
    CALLS.0.store(0, Ordering::SeqCst);
    log::set_max_level(log::LevelFilter::Debug);
    let started = Instant::now();
    let report = fleet.apply(&plan, |_| {}).unwrap();
    let measured = started.elapsed();
    log::set_max_level(log::LevelFilter::Off);
    let counted = CALLS.0.load(Ordering::SeqCst);
    let connections = emu.accepted_connections() - accepted;
    println!("apply: {report}");
    assert!(report.is_success(), "{}", report.failure_listing());
    let again = fleet.plan(desired.iter().copied()).unwrap();
    assert!(again.is_empty(), "second plan: {again}");

    let ideal = LATENCY.mul_f64(counted as f64 / CONCURRENCY as f64);
    let ratio = ideal.as_secs_f64() / measured.as_secs_f64();
    let mut out = Report::default();
    out.figure(
        "sync_fleet",
        format!("{:.2} s apply", measured.as_secs_f64()),
        format!(
            "{:.2} s ideal ({counted} calls x {LATENCY:?} / {CONCURRENCY})",
            ideal.as_secs_f64()
        ),
        ratio,
        ">= 0.8",
    );
    out.info(
        "sync_fleet_calls",
        format!("{counted} REST calls (report: {})", report.calls().total()),
        &format!("= {needed}, the fewest the plan needs"),
    );
    out.info(
        "sync_fleet_plan_heap",
        format!(
            "peak {:.1} MB of heap during the plan, the emulator's pages in flight included ({:.1} MB kept in the plan value)",
            heap_peak as f64 / 1048576.0,
            heap_kept as f64 / 1048576.0
        ),
        "< 100 MB",
    );
    out.info(
        "sync_fleet_plan_memory",
        if peak_reset {
            format!(
                "process peak {:.1} MB resident while planning, emulator included; {:.1} MB before (rise {:.1} MB)",
                peak as f64 / 1024.0,
                rss_before as f64 / 1024.0,
                peak.saturating_sub(rss_before) as f64 / 1024.0
            )
        } else {
            format!(
                "peak {:.1} MB resident since start (VmHWM could not be reset)",
                peak as f64 / 1024.0
            )
        },
        "-",
    );
    out.info(
        "sync_fleet_plan_time",
        format!(
            "{:.2} s for {} pages (latency alone: {:.2} s)",
            plan_time.as_secs_f64(),
            plan.pages_read(),
            (LATENCY * plan.pages_read() as u32).as_secs_f64()
        ),
        "-",
    );
    out.note(format!(
        "the emulator runs in this process: its table of {} devices is part of the resident size, \
         and its threads share the CPU with the client",
        emu.devices().len()
    ));
    out.note(format!(
        "apply opened {connections} TCP connections for {CONCURRENCY} workers (pool keeps {CONCURRENCY})"
    ));
    out.print();
    assert_eq!(counted, report.calls().total());
    assert_eq!(counted, needed, "more REST calls than the plan needs");
}
