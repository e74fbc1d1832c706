//! Fleet reconciliation: keep the RAN's routing table and multicast groups equal to the
//! LNS's own devices.
//!
//! Every integration does this at start-up and then periodically. [`Fleet`] does it in
//! two steps, so that nothing is written before it can be looked at:
//!
//! 1. [`Fleet::plan`] reads the whole routing table, page by page, and compares it with
//!    the devices the LNS has ([`DesiredDevice`]: a DevEUI and OTAA or ABP). The answer,
//!    a [`DevicePlan`], lists what must be inserted, updated (an OTAA device's active
//!    address), re-created (deleted then inserted: a JoinEUI change, OTAA <-> ABP, a new
//!    ABP address, or an address that must go away, which `update` cannot do), deleted
//!    (devices only the RAN has, unless [`OrphanPolicy::Keep`]), and what is unchanged.
//!    Devices are keyed by the [`DevEui`](crate::DevEui) value, so `0004a30b...` is never
//!    confused with `4a30b...`.
//! 2. [`Fleet::apply`] refuses a plan that deletes more than the [`DeletionLimit`] (by
//!    default 10 % of the table: a truncated export must not wipe the RAN), then carries
//!    the plan out on a few threads over the `Core`'s
//!    connection pool, in as few calls as the plan allows (deletions in batches, nothing
//!    for unchanged devices), and returns a [`Report`] that lists each failed change
//!    with its error instead of stopping at the first one. Changes that meet a race with
//!    another writer re-read the device and converge.
//!
//! Multicast groups go the same way with [`Fleet::plan_groups`] and
//! [`Fleet::apply_groups`]. Plan them after the devices are applied: deleting a device
//! (a re-creation too) takes it out of its groups, and a group only takes devices that
//! are in the routing table.
//!
//! ```no_run
//! use ran_routing::fleet::{DesiredDevice, DesiredGroup, Fleet};
//! use ran_routing::{Core, DevAddr, DevEui, JoinEui, MulticastAddr};
//!
//! // The pool keeps as many connections as the fleet has threads.
//! let ran = Core::builder("access-token")
//!     .base_url("https://eu.cloud.everynet.io/api/v1")
//!     .max_idle_connections(16)
//!     .build()?;
//! let fleet = Fleet::new(&ran).concurrency(16);
//!
//! let lns_devices = vec![
//!     DesiredDevice::otaa(DevEui::new(0x0004a30b001c0530), JoinEui::new(0x70b3d57ed0000000)),
//!     DesiredDevice::abp(DevEui::new(0x7abe1b8c93d7174f), DevAddr::new(0x260b1234)),
//! ];
//! let plan = fleet.plan(lns_devices)?;
//! println!("{plan}");
//! let report = fleet.apply(&plan, |progress| eprintln!("{progress}"))?;
//! println!("{report}");
//! print!("{}", report.failure_listing());
//!
//! let groups = [DesiredGroup::new(MulticastAddr::new(0xef046a1e), "street lights")
//!     .with_members([DevEui::new(0x7abe1b8c93d7174f)])];
//! let plan = fleet.plan_groups(groups)?;
//! let report = fleet.apply_groups(&plan, |_| {})?;
//! assert!(report.is_success());
//! # Ok::<(), ran_routing::Error>(())
//! ```
//!
//! The LNS's device list can come from a CSV file ([`read_csv`]).
//!
//! A bridge that must tell which device (or group) a downlink's DevAddr is for keeps a
//! [`Directory`]: the table and groups indexed by address, in step with the plans
//! applied here and with the join flow.

mod csv;
mod devices;
mod directory;
mod groups;
mod guard;
mod run;

pub use csv::{read_csv, CsvError, RowError, RowErrorKind};
pub use devices::{
    AddressUpdate, DesiredDevice, DesiredIdentity, DevicePlan, RecreateReason, Recreation,
};
pub use directory::{Addresses, Directory, Recipient};
pub use groups::{DesiredGroup, GroupPlan, Member, Rename};
pub use guard::DeletionLimit;
pub use run::{Calls, Count, Failure, Kind, Progress, Report, Target};

use crate::Core;

/// What to do with devices (and groups) only the RAN has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OrphanPolicy {
    /// Delete them: the RAN then routes exactly the LNS's devices (the default).
    #[default]
    Delete,
    /// Leave them alone, for a RAN account shared with another LNS or devices added by
    /// hand. They are listed in the plan as kept.
    Keep,
}

/// Plans and applies the reconciliation of a [`Core`]'s routing table and multicast
/// groups with the LNS's devices; see the [module documentation](self).
///
/// Settings: the `select` page size, the number of worker threads, the deletion batch
/// size, the [`OrphanPolicy`] and the [`DeletionLimit`]. Build the `Core` with
/// [`max_idle_connections`](crate::CoreBuilder::max_idle_connections) at least the
/// concurrency, or the pool closes the connections it cannot keep and the workers
/// connect again and again (a warning is logged when it is smaller).
#[derive(Debug, Clone)]
pub struct Fleet {
    core: Core,
    page_size: usize,
    concurrency: usize,
    batch: usize,
    orphans: OrphanPolicy,
    max_deletions: DeletionLimit,
}

impl Fleet {
    /// Default for [`Fleet::page_size`].
    pub const DEFAULT_PAGE_SIZE: usize = 1000;
    /// Default for [`Fleet::concurrency`].
    pub const DEFAULT_CONCURRENCY: usize = 8;
    /// Default for [`Fleet::batch`].
    pub const DEFAULT_BATCH: usize = 100;

    /// A reconciler for `core` (a clone of it is kept) with default settings.
    pub fn new(core: &Core) -> Self {
        Self {
            core: core.clone(),
            page_size: Self::DEFAULT_PAGE_SIZE,
            concurrency: Self::DEFAULT_CONCURRENCY,
            batch: Self::DEFAULT_BATCH,
            orphans: OrphanPolicy::Delete,
            max_deletions: DeletionLimit::DEFAULT,
        }
    }

    /// How many devices one `select` page asks for while planning (default 1000, at
    /// least 1).
    pub fn page_size(mut self, devices: usize) -> Self {
        self.page_size = devices.max(1);
        self
    }

    /// How many REST calls an apply keeps in flight, one per worker thread (default 8,
    /// at least 1).
    pub fn concurrency(mut self, threads: usize) -> Self {
        self.concurrency = threads.max(1);
        self
    }

    /// How many DevEUIs (or group addresses) one deletion call carries (default 100, at
    /// least 1).
    pub fn batch(mut self, size: usize) -> Self {
        self.batch = size.max(1);
        self
    }

    /// What to do with devices and groups only the RAN has (default
    /// [`OrphanPolicy::Delete`]).
    pub fn orphans(mut self, policy: OrphanPolicy) -> Self {
        self.orphans = policy;
        self
    }

    /// Warns when the pool keeps fewer idle connections than the workers use.
    fn check_pool(&self) {
        let kept = self.core.agent().config().max_idle_connections_per_host();
        if kept < self.concurrency {
            log::warn!(
                "fleet: {} workers but the Core keeps {kept} idle connections per host; \
                 build it with max_idle_connections({}) to reuse them all",
                self.concurrency,
                self.concurrency
            );
        }
    }
}
