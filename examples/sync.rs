//! Fleet reconciliation: make the RAN's routing table equal to the LNS's device list.
//!
//! ```sh
//! cargo run --example sync -- [FILE] [--apply] [--keep-orphans] [--allow-mass-delete]
//! ```
//!
//! FILE is a CSV export of the LNS's devices whose header names the columns `DevEUI`,
//! `JoinEUI` and `DevAddr` (any order, other columns ignored, quoted or not; hex, either
//! case; an empty JoinEUI means ABP, an empty DevAddr an OTAA device that has not joined
//! yet). The example prints the plan; with `--apply` it carries it out, printing progress
//! and the report; without it nothing is written. Devices only the RAN has are deleted
//! unless `--keep-orphans`. A file with bad rows is refused as a whole, each bad row
//! reported by its line number. A plan that deletes more than 10 % of the routing table
//! (an empty or truncated export) is refused before anything is written, unless
//! `--allow-mass-delete`.
//!
//! Runs against `RAN_URL`/`RAN_TOKEN` when set (see `examples/common/mod.rs`), otherwise
//! against the embedded emulator; with no FILE it then generates a fleet and a routing
//! table that differs from it in every way a real one does.

#[macro_use]
mod common;

use ran_routing::fleet::{read_csv, DeletionLimit, DesiredDevice, Fleet, OrphanPolicy, Progress};
use ran_routing::CoreBuilder;

const USAGE: &str = "usage: sync [FILE] [--apply] [--keep-orphans] [--allow-mass-delete]";

struct Args {
    file: Option<String>,
    apply: bool,
    keep_orphans: bool,
    allow_mass_delete: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        file: None,
        apply: false,
        keep_orphans: false,
        allow_mass_delete: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--apply" => args.apply = true,
            "--keep-orphans" => args.keep_orphans = true,
            "--allow-mass-delete" => args.allow_mass_delete = true,
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}\n{USAGE}")),
            file if args.file.is_none() => args.file = Some(file.to_owned()),
            _ => return Err(USAGE.into()),
        }
    }
    Ok(args)
}

fn main() -> common::Outcome {
    common::log_to_stderr();
    let args = args().map_err(|e| {
        eprintln!("{e}");
        "bad arguments"
    })?;
    // The file is read and checked before anything connects: a bad row stops here.
    let desired = match &args.file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let desired = read_csv(&text).map_err(|e| {
                eprintln!("{path}: {e}");
                "the fleet file has bad rows: nothing applied"
            })?;
            println!("{path}: {} devices", desired.len());
            Some(desired)
        }
        None => None,
    };
    let ran = common::connect()?;
    let outcome = run(&ran, &args, desired);
    ran.core.close();
    outcome
}

fn run(ran: &common::Ran, args: &Args, desired: Option<Vec<DesiredDevice>>) -> common::Outcome {
    let policy = if args.keep_orphans {
        OrphanPolicy::Keep
    } else {
        OrphanPolicy::Delete
    };
    // `common::connect` builds the Core with the default pool: as many workers as it
    // keeps connections. A program of your own would raise both together.
    let limit = if args.allow_mass_delete {
        DeletionLimit::Unlimited
    } else {
        DeletionLimit::DEFAULT
    };
    let fleet = Fleet::new(&ran.core)
        .concurrency(CoreBuilder::DEFAULT_MAX_IDLE_CONNECTIONS)
        .orphans(policy)
        .max_deletions(limit);
    let desired = match desired {
        Some(desired) => desired,
        None if ran.is_remote() && args.apply => {
            return Err("a generated fleet is only applied to the emulator: give a FILE".into())
        }
        None => generate(ran, &fleet)?,
    };

    let plan = fleet.plan(desired.iter().copied())?;
    let pages = plan.pages_read();
    let noun = if pages == 1 { "page" } else { "pages" };
    println!("plan: {plan} ({pages} {noun} read)");
    print_sample(&plan.listing().to_string(), 3);
    let guard = fleet.check_deletions(&plan);
    if !args.apply {
        if let Err(e) = guard {
            println!("--apply would refuse this plan: {e}");
            println!("(add --allow-mass-delete if these deletions are meant)");
        }
        println!("dry run: nothing written (add --apply to carry the plan out)");
        return Ok(());
    }
    if let Err(e) = guard {
        eprintln!("refused: {e}");
        eprintln!("check the file; add --allow-mass-delete only if these deletions are meant");
        return Err("the plan deletes too many devices: nothing applied".into());
    }

    let step = (plan.changes() / 10).max(1);
    let report = fleet.apply(&plan, |p: &Progress| {
        if p.finished().is_multiple_of(step) || p.finished() == p.total() {
            println!("  {p}");
        }
    })?;
    println!("{report}");
    print!("{}", report.failure_listing());
    ensure!(
        report.calls().total() >= plan.write_calls(Fleet::DEFAULT_BATCH),
        "fewer calls than the plan needs"
    );
    if !report.is_success() {
        return Err(format!("{} changes failed", report.failures().len()).into());
    }
    let after = fleet.plan(desired)?;
    println!("after: {after}");
    ensure!(after.is_empty(), "a second plan should find nothing to do");
    Ok(())
}

/// On the emulator without a FILE: a fleet of 1000 devices (DevEUIs with leading zeros,
/// as real ones often have) and a routing table that has most of them right, some with
/// an old address, some with an old JoinEUI, some missing, plus devices the LNS no
/// longer has. The table is written with the fleet module itself.
fn generate(
    ran: &common::Ran,
    fleet: &Fleet,
) -> Result<Vec<DesiredDevice>, Box<dyn std::error::Error>> {
    const JOIN_EUI: u64 = 0x70b3_d57e_d000_0000;
    let eui = |i: u64| 0x0004_a30b_0000_0000 | i;
    let desired: Vec<DesiredDevice> = (0..1000u64)
        .map(|i| match i % 10 {
            0..=5 => DesiredDevice::otaa(eui(i), JOIN_EUI),
            6 | 7 => DesiredDevice::joined(eui(i), JOIN_EUI, 0x2600_0000 | i as u32),
            _ => DesiredDevice::abp(eui(i), 0x2700_0000 | i as u32),
        })
        .collect();
    let table: Vec<DesiredDevice> = desired
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 20 != 3) // 50 missing: inserts
        .map(|(i, d)| match (i % 50, d.identity) {
            // 40 with an old address: updates.
            (6 | 7, _) => DesiredDevice::joined(d.dev_eui, JOIN_EUI, 0x2500_0000 | i as u32),
            // 40 with another JoinEUI: re-creations.
            (0 | 1, _) => DesiredDevice::otaa(d.dev_eui, JOIN_EUI + 1),
            _ => *d,
        })
        .chain((0..30u64).map(|i| DesiredDevice::otaa(eui(10_000 + i), JOIN_EUI))) // orphans
        .collect();
    let seed = fleet.clone().orphans(OrphanPolicy::Delete);
    let report = seed.apply(&seed.plan(table)?, |_| {})?;
    ensure!(report.is_success(), "seeding failed: {report}");
    println!(
        "generated a fleet of {} devices and a routing table of {} (on the emulator)",
        desired.len(),
        ran.emulator.as_ref().map_or(0, |e| e.devices().len())
    );
    Ok(desired)
}

/// The first `n` lines of each kind of change (the listing's first character).
fn print_sample(listing: &str, n: usize) {
    let mut kind = None;
    let mut shown = 0;
    let mut hidden = 0;
    for line in listing.lines() {
        let first = line.chars().next();
        if first != kind {
            if hidden > 0 {
                println!("    ... and {hidden} more");
            }
            (kind, shown, hidden) = (first, 0, 0);
        }
        if shown < n {
            println!("  {line}");
            shown += 1;
        } else {
            hidden += 1;
        }
    }
}
