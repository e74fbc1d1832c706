//! What the benchmarks share: run sizes, statistics, the report table and `RATIO` lines,
//! and readings of this process's CPU time and memory.

#![allow(dead_code)] // each bench uses a different part

use std::time::Duration;

pub mod frames;
pub mod rest;

/// The user loop of the crate's documentation: acks each uplink `up` hands out until
/// `n` are acked or the connection ends; how many were acked.
pub fn ack_each(up: &ran_routing::UpstreamConnection, n: usize) -> usize {
    let mut seen = 0;
    for m in up.iter() {
        up.send_upstream_ack(m.transaction_id, m.dev_euis[0], m.mic_challenge[0])
            .unwrap();
        seen += 1;
        if seen == n {
            break;
        }
    }
    seen
}

/// `RAN_BENCH_QUICK=1`: a short smoke run (CI), with figures too noisy to compare.
pub fn quick() -> bool {
    std::env::var_os("RAN_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty())
}

/// `full` normally, `smoke` under `RAN_BENCH_QUICK`.
pub fn size(full: usize, smoke: usize) -> usize {
    if quick() {
        smoke
    } else {
        full
    }
}

/// `RAN_BENCH_ONLY=a,b`: run only the named figures (all by default).
pub fn selected(name: &str) -> bool {
    match std::env::var("RAN_BENCH_ONLY") {
        Ok(only) if !only.is_empty() => only.split(',').any(|n| name.starts_with(n.trim())),
        _ => true,
    }
}

/// `RAN_BENCH_SIDE=ours` or `=baseline`: run one side only, e.g. under a profiler (the
/// ratios are then meaningless).
pub fn side_selected(ours: bool) -> bool {
    match std::env::var("RAN_BENCH_SIDE").as_deref() {
        Ok("ours") => ours,
        Ok("baseline") => !ours,
        _ => true,
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The median of `ours[i] / base[i]`: each pair ran back to back, so the machine's
/// drift between pairs (often larger than an overhead being measured) cancels out.
pub fn paired_ratio(ours: &[f64], base: &[f64]) -> f64 {
    if ours.len() != base.len() {
        return f64::NAN;
    }
    let mut ratios: Vec<f64> = ours.iter().zip(base).map(|(o, b)| o / b).collect();
    median(&mut ratios)
}

/// The `p`-th percentile (0..=100) by nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The report: one row per figure, then the `RATIO` lines.
#[derive(Default)]
pub struct Report {
    rows: Vec<[String; 5]>,
    ratios: Vec<(String, f64)>,
    notes: Vec<String>,
}

impl Report {
    /// A figure with a same-run baseline; `ratio` is ours ÷ baseline, higher is better.
    pub fn figure(&mut self, name: &str, ours: String, baseline: String, ratio: f64, target: &str) {
        self.rows.push([
            name.into(),
            ours,
            baseline,
            format!("{ratio:.2}"),
            target.into(),
        ]);
        self.ratios.push((name.into(), ratio));
    }

    /// A figure without a ratio.
    pub fn info(&mut self, name: &str, value: String, target: &str) {
        self.rows
            .push([name.into(), value, "-".into(), "-".into(), target.into()]);
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub fn print(&self) {
        let head = ["figure", "ours", "baseline (same run)", "ratio", "target"];
        let mut width = head.map(str::len);
        for row in &self.rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; 5]| {
            let mut out = String::from("|");
            for (cell, w) in cells.iter().zip(width) {
                out.push_str(&format!(" {cell:<w$} |"));
            }
            println!("{out}");
        };
        println!();
        line(&head.map(String::from));
        line(&width.map(|w| "-".repeat(w)));
        for row in &self.rows {
            line(row);
        }
        for note in &self.notes {
            println!("  {note}");
        }
        println!();
        for (name, ratio) in &self.ratios {
            println!("RATIO {name} {ratio:.3}");
        }
    }
}

/// CPU time of the calling thread.
#[allow(unsafe_code)]
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of this whole process (all threads), to the nanosecond.
#[allow(unsafe_code)]
pub fn process_cpu_ns() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// User + system CPU time of this process from `/proc/self/stat`, in clock ticks turned
/// into a duration.
#[allow(unsafe_code)]
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces; the fields after it are fixed.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// A field of `/proc/self/status` in KiB, e.g. `VmRSS` or `VmHWM`.
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}
