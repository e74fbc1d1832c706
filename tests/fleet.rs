//! Fleet reconciliation (`ran_routing::fleet`) against the emulator over real sockets:
//! every kind of change, leading-zero DevEUIs, paging, races with another writer, partial
//! failures, the orphan policy, idempotence, the multicast side, and the number of REST
//! calls, counted independently of the fleet module from the client's own DEBUG log line
//! per REST call (one logger per process: this binary installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, Once};

use ran_routing::fleet::*;
use ran_routing::*;
use ran_routing_emulator::{Emulator, EmulatorBuilder};

// --- counting REST calls from the client's log -------------------------------------

/// REST calls seen in `ran_routing::rest::call`'s DEBUG lines, by the emulator base URL
/// they went to (each test has its own emulator, hence its own port).
struct CallLog(Mutex<BTreeMap<String, usize>>);

impl log::Log for CallLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "ran_routing::rest::call"
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // "POST http://127.0.0.1:41234/api/v1/devices/insert -> 200 (..) in .."
        let line = record.args().to_string();
        let Some(url) = line.split(' ').nth(1) else {
            return;
        };
        let Some(base) = url.find("/api/v1").map(|i| &url[..i]) else {
            return;
        };
        *self.0.lock().unwrap().entry(base.to_owned()).or_default() += 1;
    }

    fn flush(&self) {}
}

static CALLS: CallLog = CallLog(Mutex::new(BTreeMap::new()));

fn install_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CALLS).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// REST calls made so far to this emulator.
fn calls(emu: &Emulator) -> usize {
    let base = emu.base_url();
    let base = &base[..base.find("/api/v1").unwrap()];
    CALLS.0.lock().unwrap().get(base).copied().unwrap_or(0)
}

// --- helpers ---------------------------------------------------------------------

const CONCURRENCY: usize = 4;

struct Setup {
    emu: Emulator,
    core: Core,
}

fn setup_with(builder: EmulatorBuilder) -> Setup {
    install_logger();
    let emu = builder.start().unwrap();
    let core = Core::builder(emu.token())
        .base_url(&emu.base_url())
        .max_idle_connections(CONCURRENCY)
        .build()
        .unwrap();
    Setup { emu, core }
}

fn setup() -> Setup {
    setup_with(Emulator::builder())
}

impl Setup {
    fn fleet(&self) -> Fleet {
        Fleet::new(&self.core).concurrency(CONCURRENCY).page_size(7)
    }

    fn otaa(&self, eui: u64, join: u64, active: Option<u32>) {
        let table = self.core.routing_table();
        table.insert(NewDevice::otaa(eui, join)).unwrap();
        if let Some(addr) = active {
            table
                .update(DeviceUpdate::new(eui, join).with_active_dev_addr(addr))
                .unwrap();
        }
    }

    fn abp(&self, eui: u64, addr: u32) {
        self.core
            .routing_table()
            .insert(NewDevice::abp(eui, addr))
            .unwrap();
    }

    /// The table as (JoinEUI, active address) by DevEUI.
    fn table(&self) -> BTreeMap<DevEui, (Option<JoinEui>, Option<DevAddr>)> {
        self.emu
            .devices()
            .into_iter()
            .map(|d| (d.dev_eui, (d.join_eui, d.active_dev_addr)))
            .collect()
    }
}

/// What the table must hold for `desired`.
fn expected(desired: &[DesiredDevice]) -> BTreeMap<DevEui, (Option<JoinEui>, Option<DevAddr>)> {
    desired
        .iter()
        .map(|d| {
            let row = match d.identity {
                DesiredIdentity::Otaa {
                    join_eui,
                    active_dev_addr,
                } => (Some(join_eui), active_dev_addr),
                DesiredIdentity::Abp { dev_addr } => (None, Some(dev_addr)),
            };
            (d.dev_eui, row)
        })
        .collect()
}

fn euis(list: impl IntoIterator<Item = u64>) -> Vec<DevEui> {
    list.into_iter().map(DevEui::new).collect()
}

const J1: u64 = 0x70b3_d57e_d000_0001;
const J2: u64 = 0x70b3_d57e_d000_0002;

// --- the routing table ---------------------------------------------------------------

#[test]
fn every_kind_of_change_then_nothing_left_to_do() {
    let s = setup();
    // Unchanged: OTAA not joined, OTAA joined, ABP; an OTAA device with a pending
    // TargetDevAddr (transient, not reconciled).
    s.otaa(0x0004_a30b_0000_0001, J1, None);
    s.otaa(0x0004_a30b_0000_0002, J1, Some(0x0000_0102));
    s.abp(0x0004_a30b_0000_0003, 0x0000_0103);
    s.otaa(0x0004_a30b_0000_0004, J1, None);
    s.core
        .routing_table()
        .update(
            DeviceUpdate::new(0x0004_a30b_0000_0004u64, J1).with_target_dev_addr(0x0000_0999u32),
        )
        .unwrap();
    // Updates: an address newly known, an address changed.
    s.otaa(0x0004_a30b_0000_0010, J1, None);
    s.otaa(0x0004_a30b_0000_0011, J1, Some(0x0000_0111));
    // Re-creations: JoinEUI changed, ABP -> OTAA, OTAA -> ABP, ABP address changed, an
    // active address that must go away. One has details, which survive.
    s.core
        .routing_table()
        .insert(NewDevice::otaa(0x0004_a30b_0000_0020u64, J2).with_details(r#"{"site": 7}"#))
        .unwrap();
    s.abp(0x0004_a30b_0000_0021, 0x0000_0121);
    s.otaa(0x0004_a30b_0000_0022, J1, None);
    s.abp(0x0004_a30b_0000_0023, 0x0000_0123);
    s.otaa(0x0004_a30b_0000_0024, J1, Some(0x0000_0124));
    // Orphans, one with only zeros in front.
    s.abp(0x0004_a30b_0000_0030, 0x0000_0130);
    s.otaa(0x0000_0000_0000_0031, J1, None);

    let desired = vec![
        DesiredDevice::otaa(0x0004_a30b_0000_0001u64, J1),
        DesiredDevice::joined(0x0004_a30b_0000_0002u64, J1, 0x0000_0102u32),
        DesiredDevice::abp(0x0004_a30b_0000_0003u64, 0x0000_0103u32),
        DesiredDevice::otaa(0x0004_a30b_0000_0004u64, J1),
        DesiredDevice::joined(0x0004_a30b_0000_0010u64, J1, 0x0000_0210u32),
        DesiredDevice::joined(0x0004_a30b_0000_0011u64, J1, 0x0000_0211u32),
        DesiredDevice::otaa(0x0004_a30b_0000_0020u64, J1),
        DesiredDevice::otaa(0x0004_a30b_0000_0021u64, J1),
        DesiredDevice::abp(0x0004_a30b_0000_0022u64, 0x0000_0222u32),
        DesiredDevice::abp(0x0004_a30b_0000_0023u64, 0x0000_0223u32),
        DesiredDevice::otaa(0x0004_a30b_0000_0024u64, J1),
        // Inserts: not joined, joined, ABP.
        DesiredDevice::otaa(0x0004_a30b_0000_0040u64, J1),
        DesiredDevice::joined(0x0004_a30b_0000_0041u64, J1, 0x0000_0241u32),
        DesiredDevice::abp(0x0000_0000_0000_0042u64, 0x0000_0242u32),
    ];
    // The same device twice, identically, is fine.
    let mut listed = desired.clone();
    listed.push(desired[0]);

    let fleet = s.fleet();
    let before = calls(&s.emu);
    let plan = fleet.plan(listed).unwrap();
    // 13 rows, 7 per page: two pages, the second short.
    assert_eq!(plan.pages_read(), 2);
    assert_eq!(calls(&s.emu) - before, 2, "planning only reads");

    assert_eq!(
        plan.unchanged(),
        euis([
            0x0004_a30b_0000_0001,
            0x0004_a30b_0000_0002,
            0x0004_a30b_0000_0003,
            0x0004_a30b_0000_0004
        ])
    );
    assert_eq!(
        plan.updates(),
        [
            AddressUpdate {
                dev_eui: DevEui::new(0x0004_a30b_0000_0010),
                join_eui: JoinEui::new(J1),
                from: None,
                to: DevAddr::new(0x0000_0210)
            },
            AddressUpdate {
                dev_eui: DevEui::new(0x0004_a30b_0000_0011),
                join_eui: JoinEui::new(J1),
                from: Some(DevAddr::new(0x0000_0111)),
                to: DevAddr::new(0x0000_0211)
            },
        ]
    );
    let reasons: Vec<(DevEui, RecreateReason)> = plan
        .recreations()
        .iter()
        .map(|r| (r.desired.dev_eui, r.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                DevEui::new(0x0004_a30b_0000_0020),
                RecreateReason::JoinEuiChanged {
                    from: JoinEui::new(J2)
                }
            ),
            (
                DevEui::new(0x0004_a30b_0000_0021),
                RecreateReason::AbpToOtaa
            ),
            (
                DevEui::new(0x0004_a30b_0000_0022),
                RecreateReason::OtaaToAbp
            ),
            (
                DevEui::new(0x0004_a30b_0000_0023),
                RecreateReason::DevAddrChanged {
                    from: Some(DevAddr::new(0x0000_0123))
                }
            ),
            (
                DevEui::new(0x0004_a30b_0000_0024),
                RecreateReason::ActiveDevAddrDropped {
                    from: DevAddr::new(0x0000_0124)
                }
            ),
        ]
    );
    let deleted: Vec<DevEui> = plan.deletions().iter().map(|d| d.dev_eui).collect();
    assert_eq!(
        deleted,
        euis([0x0000_0000_0000_0031, 0x0004_a30b_0000_0030])
    );
    let inserted: Vec<DevEui> = plan.inserts().iter().map(|d| d.dev_eui).collect();
    assert_eq!(
        inserted,
        euis([
            0x0000_0000_0000_0042,
            0x0004_a30b_0000_0040,
            0x0004_a30b_0000_0041
        ])
    );
    assert_eq!(
        plan.to_string(),
        "devices: 3 to insert, 2 to update, 5 to re-create, 2 to delete, 4 unchanged, 0 orphans kept"
    );
    let listing = plan.listing().to_string();
    assert!(
        listing.contains("+ 0000000000000042 ABP 00000242\n"),
        "{listing}"
    );
    assert!(
        listing.contains("- 0000000000000031 OTAA 70b3d57ed0000001\n"),
        "{listing}"
    );
    assert!(listing.ends_with("= 4 unchanged\n"), "{listing}");
    // Nothing was written: the table is as seeded.
    assert_eq!(s.emu.devices().len(), 13);

    // 1 drop (7 DevEUIs), 3 + 5 inserts, 1 + 0 address updates after them, 2 updates.
    assert_eq!(plan.write_calls(Fleet::DEFAULT_BATCH), 1 + 8 + 1 + 2);
    let mut seen = Vec::new();
    let before = calls(&s.emu);
    let report = fleet.apply(&plan, |p| seen.push(p.clone())).unwrap();
    assert!(report.is_success(), "{}", report.failure_listing());
    assert_eq!(
        calls(&s.emu) - before,
        plan.write_calls(Fleet::DEFAULT_BATCH)
    );
    assert_eq!(
        report.calls().total(),
        plan.write_calls(Fleet::DEFAULT_BATCH)
    );
    assert_eq!(report.calls().drop, 1);
    assert_eq!(report.converged(), 0);
    for (kind, total) in [
        (Kind::Insert, 3),
        (Kind::Update, 2),
        (Kind::Recreate, 5),
        (Kind::Delete, 2),
    ] {
        assert_eq!(
            report.count(kind),
            Count {
                done: total,
                failed: 0,
                total
            },
            "{kind}"
        );
    }
    // Progress only grows, one step per finished change or batch, and ends complete.
    assert!(seen.windows(2).all(|w| w[0].finished() < w[1].finished()));
    assert_eq!(seen.last().unwrap().finished(), 12);
    assert_eq!(seen.last().unwrap().total(), 12);

    assert_eq!(s.table(), expected(&desired));
    let kept = s
        .emu
        .devices()
        .into_iter()
        .find(|d| d.dev_eui == DevEui::new(0x0004_a30b_0000_0020))
        .unwrap();
    assert_eq!(kept.details.as_deref(), Some(r#"{"site": 7}"#));

    // Idempotence: nothing left to do, and doing nothing makes no call.
    let again = fleet.plan(desired.clone()).unwrap();
    assert!(again.is_empty(), "{}", again.listing());
    assert_eq!(again.unchanged().len(), desired.len());
    let before = calls(&s.emu);
    let report = fleet
        .apply(&again, |_| panic!("no progress for an empty plan"))
        .unwrap();
    assert_eq!(calls(&s.emu) - before, 0);
    assert_eq!(report.calls().total(), 0);
    assert!(report.is_success());
}

#[test]
fn leading_zero_dev_euis_survive_paging() {
    let s = setup();
    // 49 devices whose DevEUIs start with zeros, 7 per page: 7 full pages, then an empty
    // one. Keyed by value, none of them looks orphaned.
    let desired: Vec<DesiredDevice> = (0..49u64)
        .map(|i| {
            let eui = if i % 2 == 0 {
                0x0004_a30b_001c_0000 | i
            } else {
                i
            };
            DesiredDevice::otaa(eui, J1)
        })
        .collect();
    for d in &desired {
        s.otaa(d.dev_eui.get(), J1, None);
    }
    let plan = s.fleet().plan(desired.clone()).unwrap();
    assert_eq!(plan.pages_read(), 8);
    assert!(plan.is_empty(), "{}", plan.listing());
    assert_eq!(plan.unchanged().len(), 49);
    assert!(plan.unchanged().contains(&DevEui::new(1)));
}

#[test]
fn races_with_another_writer_converge() {
    let s = setup();
    // Planned: inserts of A and A2, an update of B, a deletion of C, a re-creation of D.
    const A: u64 = 0x0004_a30b_0000_00a0;
    const A2: u64 = 0x0004_a30b_0000_00a2;
    const B: u64 = 0x0004_a30b_0000_00b0;
    const C: u64 = 0x0004_a30b_0000_00c0;
    const D: u64 = 0x0004_a30b_0000_00d0;
    const E: u64 = 0x0004_a30b_0000_00e0;
    s.otaa(B, J1, None);
    s.abp(C, 0x0c);
    s.otaa(D, J2, None);
    s.otaa(E, J1, None);
    let desired = vec![
        DesiredDevice::joined(A, J1, 0x0au32),
        DesiredDevice::joined(A2, J1, 0xa2u32),
        DesiredDevice::joined(B, J1, 0x0bu32),
        DesiredDevice::otaa(D, J1),
        DesiredDevice::joined(E, J1, 0x0eu32),
    ];
    let fleet = s.fleet();
    let plan = fleet.plan(desired.clone()).unwrap();
    assert_eq!(plan.inserts().len(), 2);
    assert_eq!(plan.updates().len(), 2);
    assert_eq!(plan.deletions().len(), 1);
    assert_eq!(plan.recreations().len(), 1);

    // Someone else, between plan and apply: inserts A exactly as desired, inserts A2
    // as ABP, deletes B and C and D, and re-inserts E as ABP (so its update by the
    // pair (DevEUI, JoinEUI) finds nothing).
    s.otaa(A, J1, Some(0x0a));
    s.abp(A2, 0xff);
    s.core.routing_table().delete(euis([B, C, D, E])).unwrap();
    s.abp(E, 0xee);

    let before = calls(&s.emu);
    let report = fleet.apply(&plan, |_| {}).unwrap();
    assert!(report.is_success(), "{}", report.failure_listing());
    // A (AlreadyExists), A2 (AlreadyExists), B (NotFound) and E (NotFound) re-read.
    assert_eq!(report.converged(), 4);
    assert_eq!(
        report.count(Kind::Delete).done,
        1,
        "C, already gone, counts as deleted"
    );
    assert_eq!(calls(&s.emu) - before, report.calls().total());
    assert_eq!(report.calls().select, 4);
    assert_eq!(s.table(), expected(&desired));
    assert!(fleet.plan(desired).unwrap().is_empty());
}

#[test]
fn device_limit_half_way_fails_only_the_devices_over_it() {
    let s = setup_with(Emulator::builder().device_limit(5));
    let desired: Vec<DesiredDevice> = (0..10u64)
        .map(|i| DesiredDevice::abp(0x0004_a30b_0000_0100 + i, 0x100 + i as u32))
        .collect();
    let fleet = s.fleet();
    let plan = fleet.plan(desired.clone()).unwrap();
    let report = fleet.apply(&plan, |_| {}).unwrap();
    assert_eq!(
        report.count(Kind::Insert),
        Count {
            done: 5,
            failed: 5,
            total: 10
        }
    );
    // Every device was tried: one failure does not stop the run.
    assert_eq!(report.calls().insert, 10);
    let failed: BTreeSet<DevEui> = report
        .failures()
        .iter()
        .map(|f| {
            assert_eq!(f.kind, Kind::Insert);
            assert!(
                matches!(
                    f.error.api_error(),
                    Some(ApiError::DevicesLimitExhausted { .. })
                ),
                "{f}"
            );
            match f.target {
                Target::Device(eui) => eui,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(failed.len(), 5);
    let in_table: BTreeSet<DevEui> = s.emu.devices().iter().map(|d| d.dev_eui).collect();
    assert_eq!(in_table.len(), 5);
    assert!(failed.is_disjoint(&in_table));
    let all: BTreeSet<DevEui> = desired.iter().map(|d| d.dev_eui).collect();
    assert_eq!(&failed | &in_table, all);
    let listing = report.failure_listing().to_string();
    assert_eq!(listing.lines().count(), 5);
    assert!(listing.contains("devices limit exhausted"), "{listing}");
    assert!(
        report.to_string().contains("insert 5/10 (5 failed)"),
        "{report}"
    );
    // What is left is planned again, and only that.
    let again = fleet.plan(desired).unwrap();
    assert_eq!(again.inserts().len(), 5);
    assert_eq!(again.unchanged().len(), 5);
}

#[test]
fn keep_orphans_leaves_the_ran_only_devices_alone() {
    let s = setup();
    s.abp(0x0004_a30b_0000_0001, 1);
    s.abp(0x0004_a30b_0000_0002, 2);
    let fleet = s.fleet().orphans(OrphanPolicy::Keep);
    let desired = [DesiredDevice::abp(0x0004_a30b_0000_0001u64, 1u32)];
    let plan = fleet.plan(desired).unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.kept_orphans(), euis([0x0004_a30b_0000_0002]));
    assert!(plan
        .listing()
        .to_string()
        .contains("? 0004a30b00000002 (only in the RAN, kept)"));
    let before = calls(&s.emu);
    fleet.apply(&plan, |_| {}).unwrap();
    assert_eq!(calls(&s.emu), before);
    assert_eq!(s.emu.devices().len(), 2);
    // The default policy deletes it.
    let plan = s.fleet().plan(desired).unwrap();
    assert_eq!(plan.deletions().len(), 1);
}

#[test]
fn deletions_go_out_in_batches_and_the_pool_is_reused() {
    let s = setup();
    for i in 0..25u64 {
        s.abp(0x0004_a30b_0000_0000 + i, 1);
    }
    // 20 of the 25 devices go: meant here, so over the default limit on purpose.
    let fleet = s.fleet().batch(10).max_deletions(DeletionLimit::Unlimited);
    // 25 orphans, 5 of them re-created as OTAA: 25 DevEUIs in 3 drops, then 5 inserts.
    let desired: Vec<DesiredDevice> = (0..5u64)
        .map(|i| DesiredDevice::otaa(0x0004_a30b_0000_0000 + i, J1))
        .chain((0..40u64).map(|i| DesiredDevice::abp(0x0004_a30b_0001_0000 + i, 2u32)))
        .collect();
    let plan = fleet.plan(desired.clone()).unwrap();
    assert_eq!(plan.write_calls(10), 3 + 5 + 40);
    let accepted = s.emu.accepted_connections();
    let before = calls(&s.emu);
    let report = fleet.apply(&plan, |_| {}).unwrap();
    assert!(report.is_success(), "{}", report.failure_listing());
    assert_eq!(report.calls().drop, 3);
    assert_eq!(calls(&s.emu) - before, plan.write_calls(10));
    // The workers share the Core's pool, built to keep CONCURRENCY connections.
    let opened = s.emu.accepted_connections() - accepted;
    assert!(opened <= CONCURRENCY as u64, "{opened} connections opened");
    assert_eq!(s.table(), expected(&desired));
}

#[test]
fn a_truncated_export_is_refused_before_anything_is_written() {
    let s = setup();
    for i in 0..50u64 {
        s.otaa(0x0004_a30b_0000_0000 + i, J1, None);
    }
    let before = s.table();
    let fleet = s.fleet();
    // A header-only export: every device would go.
    let empty = read_csv("DevEUI,JoinEUI,DevAddr\n").unwrap();
    let plan = fleet.plan(empty).unwrap();
    assert_eq!((plan.deletions().len(), plan.devices_read()), (50, 50));
    let refused = |result: Result<Report>| match result {
        Err(Error::Invalid(InvalidInput::TooManyDeletions {
            what,
            planned,
            held,
            allowed,
        })) => (what, planned, held, allowed),
        other => panic!("expected TooManyDeletions, got {other:?}"),
    };
    assert!(fleet.check_deletions(&plan).is_err());
    let calls_before = calls(&s.emu);
    let err = fleet.apply(&plan, |_| panic!("no progress for a refused plan"));
    assert_eq!(refused(err), ("devices", 50, 50, 5));
    // A cut-short export with new devices: the inserts are not made either.
    let truncated: Vec<DesiredDevice> = (0..10u64)
        .map(|i| DesiredDevice::otaa(0x0004_a30b_0000_0000 + i, J1))
        .chain([DesiredDevice::abp(0x0004_a30b_0001_0000u64, 1u32)])
        .collect();
    let plan = fleet.plan(truncated).unwrap();
    assert_eq!(refused(fleet.apply(&plan, |_| {})), ("devices", 40, 50, 5));
    assert_eq!(
        calls(&s.emu),
        calls_before + plan.pages_read(),
        "only the plan's selects"
    );
    assert_eq!(s.table(), before);
    let text = fleet.apply(&plan, |_| {}).unwrap_err().to_string();
    assert!(
        text.contains("deletes 40 of the 50 devices")
            && text.contains("Nothing was written")
            && text.contains("Fleet::max_deletions"),
        "{text}"
    );

    // Day-to-day churn passes the default: 5 of 50 is 10 %.
    let churn: Vec<DesiredDevice> = (5..50u64)
        .map(|i| DesiredDevice::otaa(0x0004_a30b_0000_0000 + i, J1))
        .collect();
    let plan = fleet.plan(churn).unwrap();
    assert!(fleet.apply(&plan, |_| {}).unwrap().is_success());
    assert_eq!(s.table().len(), 45);
    // The explicit override carries a wipe out.
    let plan = fleet.plan([]).unwrap();
    assert_eq!(refused(fleet.apply(&plan, |_| {})).1, 45);
    let wipe = fleet.clone().max_deletions(DeletionLimit::Count(45));
    assert!(wipe.apply(&plan, |_| {}).unwrap().is_success());
    assert!(s.table().is_empty());
}

#[test]
fn deleting_every_group_is_refused_too() {
    let s = setup();
    for addr in [G1, G2] {
        s.core
            .multicast_groups()
            .create("g", MulticastAddr::new(addr))
            .unwrap();
    }
    let fleet = s.fleet();
    let plan = fleet.plan_groups([]).unwrap();
    assert_eq!((plan.deletions().len(), plan.groups_read()), (2, 2));
    let err = fleet.apply_groups(&plan, |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid(InvalidInput::TooManyDeletions {
                what: "multicast groups",
                planned: 2,
                held: 2,
                allowed: 1
            })
        ),
        "{err:?}"
    );
    assert_eq!(groups_of(&s.emu).len(), 2);
    let report = fleet
        .max_deletions(DeletionLimit::Unlimited)
        .apply_groups(&plan, |_| {})
        .unwrap();
    assert!(report.is_success());
    assert!(groups_of(&s.emu).is_empty());
}

#[test]
fn csv_exports_in_any_shape() {
    // A spreadsheet's export: BOM, CRLF, its own column order, an extra column with a
    // comma inside quotes, quoted ids.
    let text = "\u{feff}Name,devaddr,DevEUI,JoinEUI\r\n\
                \"lamp, north\",\"260B0001\",\"7ABE1B8C93D7174F\",\r\n\
                gate,,0004a30b001c0530,\"70b3d57ed0000000\"\r\n\
                \r\n\
                \"meter \"\"B\"\"\",00000002,0004a30b001c0531,70b3d57ed0000000\r\n";
    assert_eq!(
        read_csv(text).unwrap(),
        [
            DesiredDevice::abp(0x7abe1b8c93d7174fu64, 0x260b0001u32),
            DesiredDevice::otaa(0x0004a30b001c0530u64, 0x70b3d57ed0000000u64),
            DesiredDevice::joined(0x0004a30b001c0531u64, 0x70b3d57ed0000000u64, 2u32),
        ]
    );
    // A quoted field across lines: the next row keeps its own line number.
    let err = read_csv(
        "DevEUI,JoinEUI,DevAddr,Note\n\
         0004a30b001c0530,70b3d57ed0000000,,\"two\nlines\"\n\
         0004a30b001c0530,70b3d57ed0000000,,\n",
    )
    .unwrap_err();
    assert_eq!(
        err.rows,
        [RowError {
            line: 4,
            kind: RowErrorKind::Duplicate { first_line: 2 }
        }]
    );
    assert_eq!(
        err.to_string(),
        "1 bad row in the fleet CSV\n  line 4: DevEUI already listed on line 2"
    );
    // A header that misses a column, or names one twice.
    for header in ["DevEUI,JoinEUI", "DevEUI,JoinEUI,DevAddr,deveui"] {
        let err =
            read_csv(&format!("{header}\n0004a30b001c0530,70b3d57ed0000000,,\n")).unwrap_err();
        assert!(
            matches!(
                &err.rows[..],
                [RowError {
                    line: 1,
                    kind: RowErrorKind::Header { .. }
                }]
            ),
            "{err}"
        );
    }
    let err =
        read_csv("DevEUI,JoinEUI,DevAddr\n0004a30b001c0530,70b3d57ed0000000,,extra\n").unwrap_err();
    assert_eq!(
        err.rows[0].kind,
        RowErrorKind::FieldCount {
            found: 4,
            expected: 3
        }
    );
}

#[test]
fn bad_input_is_refused_before_the_network() {
    // Nothing listens on port 9: a call would fail with an I/O error, not these.
    let core = Core::new("token", "http://127.0.0.1:9/api/v1").unwrap();
    let fleet = Fleet::new(&core);
    let err = fleet
        .plan([
            DesiredDevice::otaa(0x0004_a30b_0000_0001u64, J1),
            DesiredDevice::abp(0x0004_a30b_0000_0001u64, 1u32),
        ])
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(InvalidInput::DuplicateDevEui(eui)) if eui == DevEui::new(0x0004_a30b_0000_0001)
    ));
    let err = fleet
        .plan_groups([DesiredGroup::new(1u32, "a"), DesiredGroup::new(1u32, "b")])
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(InvalidInput::DuplicateGroup(_))
    ));
    let err = fleet
        .plan_groups([DesiredGroup::new(1u32, "x".repeat(256))])
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(InvalidInput::GroupNameTooLong { len: 256 })
    ));
    // And a network failure while planning is an error, not a partial plan.
    assert!(matches!(fleet.plan([]), Err(Error::Io(_))));
}

// --- multicast groups ----------------------------------------------------------------

const G1: u32 = 0xef04_6a01;
const G2: u32 = 0xef04_6a02;
const G3: u32 = 0xef04_6a03;
const G4: u32 = 0xef04_6a04;

fn groups_of(emu: &Emulator) -> BTreeMap<MulticastAddr, (String, BTreeSet<DevEui>)> {
    emu.multicast_groups()
        .into_iter()
        .map(|g| (g.addr, (g.name, g.devices.into_iter().collect())))
        .collect()
}

#[test]
fn multicast_groups_every_kind_of_change() {
    let s = setup();
    let d: Vec<u64> = (1..=4).map(|i| 0x0004_a30b_0000_0000 + i).collect();
    for &eui in &d {
        s.abp(eui, 1);
    }
    let groups = s.core.multicast_groups();
    groups.create("old name", G1).unwrap();
    groups.add_device(G1, d[0]).unwrap();
    groups.add_device(G1, d[1]).unwrap();
    groups.create("orphan", G2).unwrap();
    groups.create("same", G3).unwrap();
    groups.add_device(G3, d[0]).unwrap();

    const NOT_IN_TABLE: u64 = 0x0004_a30b_0000_0099;
    let desired = vec![
        DesiredGroup::new(G1, "new name").with_members(euis([d[1], d[2], NOT_IN_TABLE])),
        DesiredGroup::new(G3, "same").with_members(euis([d[0]])),
        DesiredGroup::new(G4, "created").with_members(euis([d[0], d[3]])),
    ];
    let fleet = s.fleet();
    let before = calls(&s.emu);
    let plan = fleet.plan_groups(desired.clone()).unwrap();
    // One get, one select to check the members to add.
    assert_eq!(calls(&s.emu) - before, 2);
    let member = |g: u32, eui: u64| Member {
        group: MulticastAddr::new(g),
        dev_eui: DevEui::new(eui),
    };
    assert_eq!(plan.creates(), &desired[2..]);
    assert_eq!(
        plan.renames(),
        [Rename {
            addr: MulticastAddr::new(G1),
            from: "old name".into(),
            to: "new name".into()
        }]
    );
    assert_eq!(
        plan.adds(),
        [member(G1, d[2]), member(G4, d[0]), member(G4, d[3])]
    );
    assert_eq!(plan.removes(), [member(G1, d[0])]);
    assert_eq!(plan.deletions().len(), 1);
    assert_eq!(plan.deletions()[0].addr, MulticastAddr::new(G2));
    assert_eq!(plan.unchanged(), [MulticastAddr::new(G3)]);
    assert_eq!(plan.not_in_table(), [member(G1, NOT_IN_TABLE)]);
    assert_eq!(s.emu.multicast_groups().len(), 3, "planning writes nothing");

    let before = calls(&s.emu);
    let report = fleet.apply_groups(&plan, |_| {}).unwrap();
    assert!(report.is_success(), "{}", report.failure_listing());
    assert_eq!(
        calls(&s.emu) - before,
        plan.write_calls(Fleet::DEFAULT_BATCH)
    );
    assert_eq!(plan.write_calls(Fleet::DEFAULT_BATCH), 1 + 1 + 1 + 3 + 1);
    assert_eq!(report.count(Kind::AddMember).done, 3);

    let mut want: BTreeMap<MulticastAddr, (String, BTreeSet<DevEui>)> = desired
        .iter()
        .map(|g| (g.addr, (g.name.clone(), g.members.clone())))
        .collect();
    want.get_mut(&MulticastAddr::new(G1))
        .unwrap()
        .1
        .remove(&DevEui::new(NOT_IN_TABLE));
    assert_eq!(groups_of(&s.emu), want);

    // Idempotence: the member not in the table is reported again, and nothing else.
    let again = fleet.plan_groups(desired.clone()).unwrap();
    assert!(again.is_empty(), "{}", again.listing());
    assert_eq!(again.not_in_table(), [member(G1, NOT_IN_TABLE)]);

    // A re-created device left its groups; the next group plan puts it back.
    let device_plan = fleet
        .plan(
            d.iter()
                .map(|&eui| {
                    if eui == d[3] {
                        DesiredDevice::otaa(eui, J1)
                    } else {
                        DesiredDevice::abp(eui, 1u32)
                    }
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(device_plan.recreations().len(), 1);
    assert!(fleet.apply(&device_plan, |_| {}).unwrap().is_success());
    let back = fleet.plan_groups(desired).unwrap();
    assert_eq!(back.adds(), [member(G4, d[3])]);
    assert!(fleet.apply_groups(&back, |_| {}).unwrap().is_success());

    // Keep: a group only the RAN has is left alone.
    groups.create("someone else's", G2).unwrap();
    let kept = fleet
        .clone()
        .orphans(OrphanPolicy::Keep)
        .plan_groups(Vec::new())
        .unwrap();
    assert!(kept.deletions().is_empty());
    assert_eq!(kept.kept_orphans().len(), 4);
}

#[test]
fn multicast_races_converge() {
    let s = setup();
    let d1 = 0x0004_a30b_0000_0001u64;
    let d2 = 0x0004_a30b_0000_0002u64;
    s.abp(d1, 1);
    s.abp(d2, 1);
    let groups = s.core.multicast_groups();
    groups.create("renamed away", G1).unwrap();
    groups.create("to delete", G2).unwrap();
    groups.add_device(G2, d1).unwrap();
    groups.create("member leaves", G4).unwrap();
    groups.add_device(G4, d2).unwrap();
    let desired = vec![
        DesiredGroup::new(G1, "wanted").with_members(euis([d1])),
        DesiredGroup::new(G3, "new").with_members(euis([d1, d2])),
        DesiredGroup::new(G4, "member leaves"),
    ];
    let fleet = s.fleet();
    let plan = fleet.plan_groups(desired.clone()).unwrap();
    assert_eq!(plan.creates().len(), 1);
    assert_eq!(plan.renames().len(), 1);
    assert_eq!(plan.removes().len(), 1);

    // Someone else: creates G3 under another name with d1 in it, deletes G1 and G2, and
    // takes d2 out of G4.
    groups.create("not the name", G3).unwrap();
    groups.add_device(G3, d1).unwrap();
    groups
        .delete([MulticastAddr::new(G1), MulticastAddr::new(G2)])
        .unwrap();
    groups.remove_device(G4, d2).unwrap();

    let report = fleet.apply_groups(&plan, |_| {}).unwrap();
    assert!(report.is_success(), "{}", report.failure_listing());
    // G3 exists (create -> get -> rename), G1 is gone (rename -> create), d1 already in
    // G3 (add -> already there).
    assert_eq!(report.converged(), 3);
    let got = groups_of(&s.emu);
    assert_eq!(got[&MulticastAddr::new(G3)].0, "new");
    assert_eq!(
        got[&MulticastAddr::new(G3)].1,
        euis([d1, d2]).into_iter().collect()
    );
    assert_eq!(got[&MulticastAddr::new(G1)].0, "wanted");
    assert!(!got.contains_key(&MulticastAddr::new(G2)));
    // G1 was re-created, then got its planned member.
    assert_eq!(
        got[&MulticastAddr::new(G1)].1,
        euis([d1]).into_iter().collect()
    );
    assert_eq!(got[&MulticastAddr::new(G4)].1, BTreeSet::new());
    let next = fleet.plan_groups(desired).unwrap();
    assert!(next.is_empty(), "{}", next.listing());
}

#[test]
fn a_member_that_left_the_table_is_reported() {
    let s = setup();
    let d1 = 0x0004_a30b_0000_0001u64;
    s.abp(d1, 1);
    let fleet = s.fleet();
    let plan = fleet
        .plan_groups([DesiredGroup::new(G1, "g").with_members(euis([d1]))])
        .unwrap();
    // The device leaves the table before the apply: the add fails with the service's
    // error, reported for that member.
    s.core.routing_table().delete(euis([d1])).unwrap();
    let report = fleet.apply_groups(&plan, |_| {}).unwrap();
    assert_eq!(report.count(Kind::CreateGroup).done, 1);
    assert_eq!(report.count(Kind::AddMember).failed, 1);
    let failure = &report.failures()[0];
    assert_eq!(
        failure.target,
        Target::Member {
            group: MulticastAddr::new(G1),
            dev_eui: DevEui::new(d1)
        }
    );
    assert!(failure.error.api_error().is_some(), "{failure}");
}

#[test]
fn failed_steps_fail_what_depends_on_them() {
    let s = setup();
    let d1 = 0x0004_a30b_0000_0001u64;
    let d2 = 0x0004_a30b_0000_0002u64;
    s.abp(d1, 1);
    s.abp(d2, 2);
    let fleet = s.fleet();
    let devices = fleet.plan([DesiredDevice::otaa(d2, J1)]).unwrap();
    assert_eq!(
        (devices.deletions().len(), devices.recreations().len()),
        (1, 1)
    );
    let groups = fleet
        .plan_groups([DesiredGroup::new(G1, "g").with_members(euis([d1]))])
        .unwrap();
    // Every call now fails before it is sent.
    s.core.close();
    let report = fleet.apply(&devices, |_| {}).unwrap();
    assert_eq!(report.count(Kind::Delete).failed, 1);
    assert_eq!(report.count(Kind::Recreate).failed, 1);
    // The re-created device's old row was not deleted: it is not inserted either.
    assert_eq!((report.calls().drop, report.calls().insert), (1, 0));
    assert!(report
        .failures()
        .iter()
        .all(|f| matches!(*f.error, Error::Closed(_))));
    let report = fleet.apply_groups(&groups, |_| {}).unwrap();
    assert_eq!(report.count(Kind::CreateGroup).failed, 1);
    assert_eq!(report.count(Kind::AddMember).failed, 1);
    assert_eq!(
        report.calls().group_add,
        0,
        "no add to a group that was not created"
    );
    assert_eq!(report.failures().len(), 2);
    assert_eq!(s.emu.devices().len(), 2);
}

#[test]
fn emulator_rest_latency_delays_rest_calls_only() {
    let latency = std::time::Duration::from_secs(2);
    let s = setup_with(Emulator::builder().rest_latency(latency));
    let started = std::time::Instant::now();
    s.core.routing_table().select(Select::all()).unwrap();
    assert!(started.elapsed() >= latency);
    // The control API answers without the delay.
    let started = std::time::Instant::now();
    let status = ureq::get(format!("{}status", s.emu.control_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(started.elapsed() < latency, "{status}");
}

// --- a server that pages badly -------------------------------------------------------

/// A raw HTTP server for `devices/select` whose answer is `page(offset)`: for paging
/// that a moving table (or a broken server) gets wrong.
fn paging_server(page: impl Fn(u64) -> Vec<(u64, u64)> + Send + 'static) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut out = stream;
            loop {
                let mut request = String::new();
                if reader.read_line(&mut request).unwrap_or(0) == 0 {
                    break;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let offset = request
                    .split(['?', '&', ' '])
                    .find_map(|p| p.strip_prefix("offset="))
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(0);
                let rows: Vec<String> = page(offset)
                    .into_iter()
                    .map(|(eui, join)| {
                        format!(
                            r#"{{"DevEUI":"{eui:016x}","JoinEUI":"{join:016x}","ActiveDevAddr":null,"TargetDevAddr":null,"Details":null,"CreatedAt":"2026-11-30T06:00:00.000000"}}"#
                        )
                    })
                    .collect();
                let body = format!("[{}]", rows.join(","));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                if out
                    .write_all(head.as_bytes())
                    .and_then(|_| out.write_all(body.as_bytes()))
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    url
}

#[test]
fn a_row_seen_twice_across_pages_is_not_an_orphan() {
    // The table moved between two pages: B comes again at the top of page 2.
    let (a, b, c) = (
        0x0004_a30b_0000_000au64,
        0x0004_a30b_0000_000bu64,
        0x0004_a30b_0000_000cu64,
    );
    let url = paging_server(move |offset| match offset {
        0 => vec![(a, J1), (b, J1)],
        2 => vec![(b, J1), (c, J1)],
        _ => vec![],
    });
    let core = Core::new("token", &url).unwrap();
    let plan = Fleet::new(&core)
        .page_size(2)
        .plan([a, b, c].map(|eui| DesiredDevice::otaa(eui, J1)))
        .unwrap();
    assert!(plan.is_empty(), "{}", plan.listing());
    assert_eq!(plan.unchanged(), euis([a, b, c]));
    assert_eq!(plan.pages_read(), 3);
}

#[test]
fn a_server_that_ignores_the_offset_is_an_error_not_a_hang() {
    let url = paging_server(|_| vec![(1, J1), (2, J1)]);
    let core = Core::new("token", &url).unwrap();
    let err = Fleet::new(&core).page_size(2).plan([]).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains("paging does not advance"), "{err}");
}
