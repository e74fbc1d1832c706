//! The routing table side: desired devices, the plan, and applying it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::run::{for_each, Call, Kind, Progress, Report, Target, Tracker};
use super::{Fleet, OrphanPolicy};
use crate::error::{ApiError, Error, InvalidInput, Result};
use crate::ids::{DevAddr, DevEui, JoinEui};
use crate::model::{Device, DeviceUpdate, NewDevice};
use crate::sync::lock;
use crate::Select;

/// How the LNS knows a device: OTAA with its JoinEUI (and the address it was given
/// when it joined), or ABP with its fixed address. The RAN's `TargetDevAddr` is
/// transient (it becomes active with the device's first uplink) and is not reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesiredIdentity {
    /// Over-the-air activation.
    Otaa {
        /// The device's JoinEUI.
        join_eui: JoinEui,
        /// The address the RAN must route by: `None` until the device has joined.
        active_dev_addr: Option<DevAddr>,
    },
    /// Activation by personalization.
    Abp {
        /// The device's fixed address.
        dev_addr: DevAddr,
    },
}

/// A device as the LNS wants it in the routing table.
///
/// ```
/// use ran_routing::fleet::DesiredDevice;
/// use ran_routing::{DevAddr, DevEui, JoinEui};
///
/// let eui = DevEui::new(0x0004a30b001c0530);
/// let not_joined = DesiredDevice::otaa(eui, JoinEui::new(0x70b3d57ed0000000));
/// let joined = DesiredDevice::joined(eui, JoinEui::new(0x70b3d57ed0000000), DevAddr::new(0x260b1234));
/// let abp = DesiredDevice::abp(eui, DevAddr::new(0x260b1234));
/// assert_eq!(joined.to_string(), "0004a30b001c0530 OTAA 70b3d57ed0000000 active 260b1234");
/// assert_eq!(abp.to_string(), "0004a30b001c0530 ABP 260b1234");
/// # let _ = not_joined;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DesiredDevice {
    /// The device's EUI (the key: two desired devices never share one).
    pub dev_eui: DevEui,
    /// OTAA or ABP.
    pub identity: DesiredIdentity,
}

impl DesiredDevice {
    /// A device with this identity.
    pub fn new(dev_eui: impl Into<DevEui>, identity: DesiredIdentity) -> Self {
        Self {
            dev_eui: dev_eui.into(),
            identity,
        }
    }

    /// An OTAA device that has not joined yet: in the table with no address.
    pub fn otaa(dev_eui: impl Into<DevEui>, join_eui: impl Into<JoinEui>) -> Self {
        Self::new(
            dev_eui,
            DesiredIdentity::Otaa {
                join_eui: join_eui.into(),
                active_dev_addr: None,
            },
        )
    }

    /// An OTAA device that has joined and uses `active_dev_addr`.
    pub fn joined(
        dev_eui: impl Into<DevEui>,
        join_eui: impl Into<JoinEui>,
        active_dev_addr: impl Into<DevAddr>,
    ) -> Self {
        Self::new(
            dev_eui,
            DesiredIdentity::Otaa {
                join_eui: join_eui.into(),
                active_dev_addr: Some(active_dev_addr.into()),
            },
        )
    }

    /// An ABP device with its fixed address.
    pub fn abp(dev_eui: impl Into<DevEui>, dev_addr: impl Into<DevAddr>) -> Self {
        Self::new(
            dev_eui,
            DesiredIdentity::Abp {
                dev_addr: dev_addr.into(),
            },
        )
    }

    /// The insert that creates this device (an OTAA device's address needs an update
    /// after it: [`Self::address_after_insert`]).
    fn new_device(&self, details: Option<&str>) -> NewDevice {
        let device = match self.identity {
            DesiredIdentity::Otaa { join_eui, .. } => NewDevice::otaa(self.dev_eui, join_eui),
            DesiredIdentity::Abp { dev_addr } => NewDevice::abp(self.dev_eui, dev_addr),
        };
        match details {
            Some(details) => device.with_details(details),
            None => device,
        }
    }

    /// The update a joined OTAA device needs after its insert.
    fn address_after_insert(&self) -> Option<DeviceUpdate> {
        match self.identity {
            DesiredIdentity::Otaa {
                join_eui,
                active_dev_addr: Some(addr),
            } => Some(DeviceUpdate::new(self.dev_eui, join_eui).with_active_dev_addr(addr)),
            _ => None,
        }
    }

    /// REST calls to create this device: the insert, and the update of a joined device.
    fn insert_calls(&self) -> usize {
        1 + usize::from(self.address_after_insert().is_some())
    }
}

impl fmt::Display for DesiredDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.identity {
            DesiredIdentity::Otaa {
                join_eui,
                active_dev_addr,
            } => {
                write!(f, "{} OTAA {join_eui}", self.dev_eui)?;
                if let Some(addr) = active_dev_addr {
                    write!(f, " active {addr}")?;
                }
                Ok(())
            }
            DesiredIdentity::Abp { dev_addr } => write!(f, "{} ABP {dev_addr}", self.dev_eui),
        }
    }
}

/// Why a device must be deleted and inserted again rather than updated: `update`
/// finds a device by its (DevEUI, JoinEUI) pair, cannot change the JoinEUI or touch an
/// ABP device, and cannot clear an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecreateReason {
    /// The OTAA device's JoinEUI changed (the RAN has `from`).
    JoinEuiChanged {
        /// The JoinEUI in the RAN.
        from: JoinEui,
    },
    /// The RAN has the device as ABP, the LNS as OTAA.
    AbpToOtaa,
    /// The RAN has the device as OTAA, the LNS as ABP.
    OtaaToAbp,
    /// The ABP device's address changed.
    DevAddrChanged {
        /// The address in the RAN (`None` for a row without one).
        from: Option<DevAddr>,
    },
    /// The OTAA device has not joined (for the LNS) but the RAN still routes `from`.
    ActiveDevAddrDropped {
        /// The active address in the RAN.
        from: DevAddr,
    },
}

impl fmt::Display for RecreateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecreateReason::JoinEuiChanged { from } => write!(f, "JoinEUI was {from}"),
            RecreateReason::AbpToOtaa => f.write_str("was ABP"),
            RecreateReason::OtaaToAbp => f.write_str("was OTAA"),
            RecreateReason::DevAddrChanged { from: Some(from) } => {
                write!(f, "DevAddr was {from}")
            }
            RecreateReason::DevAddrChanged { from: None } => f.write_str("had no DevAddr"),
            RecreateReason::ActiveDevAddrDropped { from } => {
                write!(f, "not joined, RAN routes {from}")
            }
        }
    }
}

/// An OTAA device whose active address is set in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressUpdate {
    /// The device.
    pub dev_eui: DevEui,
    /// Its JoinEUI (the same in the RAN and the LNS).
    pub join_eui: JoinEui,
    /// The active address in the RAN, if any.
    pub from: Option<DevAddr>,
    /// The active address the LNS gave it.
    pub to: DevAddr,
}

/// A device deleted and inserted again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recreation {
    /// The row in the RAN; its `Details` are kept on the new row.
    pub current: Device,
    /// The device as the LNS wants it.
    pub desired: DesiredDevice,
    /// Why an update does not do.
    pub reason: RecreateReason,
}

/// What must change in the routing table to make it equal to the LNS's devices: made by
/// [`Fleet::plan`] without writing anything, carried out by [`Fleet::apply`] (or just
/// dropped).
///
/// `Display` is a one-line summary; [`DevicePlan::listing`] lists every change. Each
/// list is sorted by DevEUI.
///
/// ```no_run
/// use ran_routing::fleet::{DesiredDevice, Fleet};
/// use ran_routing::{Core, DevEui, JoinEui};
///
/// let ran = Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
/// let fleet = Fleet::new(&ran);
/// let plan = fleet.plan([DesiredDevice::otaa(DevEui::new(1), JoinEui::new(2))])?;
/// println!("{plan}");
/// for device in plan.inserts() {
///     println!("will insert {device}");
/// }
/// print!("{}", plan.listing());
/// # Ok::<(), ran_routing::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevicePlan {
    inserts: Vec<DesiredDevice>,
    updates: Vec<AddressUpdate>,
    recreations: Vec<Recreation>,
    deletions: Vec<Device>,
    kept: Vec<DevEui>,
    unchanged: Vec<DevEui>,
    pages: usize,
    read: usize,
}

impl DevicePlan {
    /// Devices only the LNS has, to insert (joined OTAA devices then get their address).
    pub fn inserts(&self) -> &[DesiredDevice] {
        &self.inserts
    }

    /// OTAA devices whose active address is set in place.
    pub fn updates(&self) -> &[AddressUpdate] {
        &self.updates
    }

    /// Devices deleted and inserted again.
    pub fn recreations(&self) -> &[Recreation] {
        &self.recreations
    }

    /// Devices only the RAN has, to delete ([`OrphanPolicy::Delete`]).
    pub fn deletions(&self) -> &[Device] {
        &self.deletions
    }

    /// Devices only the RAN has, left alone ([`OrphanPolicy::Keep`]).
    pub fn kept_orphans(&self) -> &[DevEui] {
        &self.kept
    }

    /// Devices already as the LNS wants them: no call is made for them.
    pub fn unchanged(&self) -> &[DevEui] {
        &self.unchanged
    }

    /// How many changes the plan has (unchanged devices and kept orphans are not
    /// changes).
    pub fn changes(&self) -> usize {
        self.inserts.len() + self.updates.len() + self.recreations.len() + self.deletions.len()
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.changes() == 0
    }

    /// How many `select` pages the plan read.
    pub fn pages_read(&self) -> usize {
        self.pages
    }

    /// How many devices the routing table held as the plan read it (each counted once):
    /// what a [`DeletionLimit`](super::DeletionLimit) share is taken of.
    pub fn devices_read(&self) -> usize {
        self.read
    }

    /// The fewest REST calls that carry the plan out with deletions in batches of
    /// `batch`: one `devices/drop` per batch (re-created devices included), one insert
    /// per new or re-created device plus one update for each of them that has joined,
    /// one update per address change. An apply without races makes exactly this many.
    pub fn write_calls(&self, batch: usize) -> usize {
        let drops = (self.deletions.len() + self.recreations.len()).div_ceil(batch.max(1));
        let inserts: usize = self
            .inserts
            .iter()
            .chain(self.recreations.iter().map(|r| &r.desired))
            .map(DesiredDevice::insert_calls)
            .sum();
        drops + inserts + self.updates.len()
    }

    /// One line per change: `+` insert, `~` update, `!` re-create, `-` delete; kept
    /// orphans as `?` and a count of unchanged devices at the end.
    pub fn listing(&self) -> impl fmt::Display + '_ {
        Listing(self)
    }
}

/// `devices: 3 to insert, 2 to update, 1 to re-create, 4 to delete, 90 unchanged, 0 orphans kept`
impl fmt::Display for DevicePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "devices: {} to insert, {} to update, {} to re-create, {} to delete, {} unchanged, {} orphans kept",
            self.inserts.len(),
            self.updates.len(),
            self.recreations.len(),
            self.deletions.len(),
            self.unchanged.len(),
            self.kept.len(),
        )
    }
}

struct Listing<'a>(&'a DevicePlan);

/// A row of the RAN as the listing prints it.
struct Row<'a>(&'a Device);

impl fmt::Display for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        match (d.join_eui, d.active_dev_addr) {
            (Some(join), Some(addr)) => write!(f, "{} OTAA {join} active {addr}", d.dev_eui),
            (Some(join), None) => write!(f, "{} OTAA {join}", d.dev_eui),
            (None, Some(addr)) => write!(f, "{} ABP {addr}", d.dev_eui),
            (None, None) => write!(f, "{}", d.dev_eui),
        }
    }
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        for d in &plan.inserts {
            writeln!(f, "+ {d}")?;
        }
        for u in &plan.updates {
            match u.from {
                Some(from) => writeln!(f, "~ {} active {from} -> {}", u.dev_eui, u.to)?,
                None => writeln!(f, "~ {} active none -> {}", u.dev_eui, u.to)?,
            }
        }
        for r in &plan.recreations {
            writeln!(f, "! {} ({}) -> {}", Row(&r.current), r.reason, r.desired)?;
        }
        for d in &plan.deletions {
            writeln!(f, "- {}", Row(d))?;
        }
        for eui in &plan.kept {
            writeln!(f, "? {eui} (only in the RAN, kept)")?;
        }
        writeln!(f, "= {} unchanged", plan.unchanged.len())
    }
}

/// What a row needs to match a desired identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Unchanged,
    Update { from: Option<DevAddr>, to: DevAddr },
    Recreate(RecreateReason),
}

fn decide(current: &Device, desired: &DesiredIdentity) -> Step {
    match (*desired, current.join_eui) {
        (
            DesiredIdentity::Otaa {
                join_eui,
                active_dev_addr,
            },
            Some(current_join),
        ) if current_join == join_eui => match (active_dev_addr, current.active_dev_addr) {
            (want, have) if want == have => Step::Unchanged,
            (Some(to), from) => Step::Update { from, to },
            (None, Some(from)) => Step::Recreate(RecreateReason::ActiveDevAddrDropped { from }),
            (None, None) => Step::Unchanged,
        },
        (DesiredIdentity::Otaa { .. }, Some(from)) => {
            Step::Recreate(RecreateReason::JoinEuiChanged { from })
        }
        (DesiredIdentity::Otaa { .. }, None) => Step::Recreate(RecreateReason::AbpToOtaa),
        (DesiredIdentity::Abp { dev_addr }, None) if current.active_dev_addr == Some(dev_addr) => {
            Step::Unchanged
        }
        (DesiredIdentity::Abp { .. }, None) => Step::Recreate(RecreateReason::DevAddrChanged {
            from: current.active_dev_addr,
        }),
        (DesiredIdentity::Abp { .. }, Some(_)) => Step::Recreate(RecreateReason::OtaaToAbp),
    }
}

fn already_exists(e: &Error) -> bool {
    matches!(e.api_error(), Some(ApiError::DeviceAlreadyExists { .. }))
}

fn not_found(e: &Error) -> bool {
    matches!(e.api_error(), Some(ApiError::DeviceNotFound { .. }))
}

/// How often a change that meets a race re-reads its device and tries again.
const CONVERGE_ATTEMPTS: usize = 3;

impl Fleet {
    /// Reads the whole routing table, page by page, and works out what must change for it
    /// to hold exactly `desired`; writes nothing. Memory grows with the desired fleet
    /// and the changes, not with the pages: each page is compared and dropped.
    ///
    /// A DevEUI listed twice with different identities fails with
    /// [`InvalidInput::DuplicateDevEui`] before anything is sent (listed twice the same
    /// is fine). Pages are read by offset, so a device inserted or deleted by someone
    /// else while the plan reads may be missed or seen twice; [`Fleet::apply`] resolves
    /// what that leaves behind, and the next plan catches the rest.
    pub fn plan(&self, desired: impl IntoIterator<Item = DesiredDevice>) -> Result<DevicePlan> {
        let mut want: HashMap<DevEui, DesiredIdentity> = HashMap::new();
        for device in desired {
            match want.entry(device.dev_eui) {
                Entry::Vacant(slot) => {
                    slot.insert(device.identity);
                }
                Entry::Occupied(slot) if *slot.get() != device.identity => {
                    return Err(InvalidInput::DuplicateDevEui(device.dev_eui).into());
                }
                Entry::Occupied(_) => {}
            }
        }
        let mut plan = DevicePlan::default();
        // Every DevEUI read so far: a row seen twice (the table moved under the offsets)
        // must not count as an orphan the second time.
        let mut seen: HashSet<DevEui> = HashSet::with_capacity(want.len());
        let table = self.core.routing_table();
        let page_size = self.page_size as u64;
        let mut offset = 0u64;
        loop {
            let page = table.select(Select::all().offset(offset).limit(page_size))?;
            plan.pages += 1;
            let len = page.len() as u64;
            let mut new = 0;
            for device in page {
                if !seen.insert(device.dev_eui) {
                    continue;
                }
                new += 1;
                match want.remove(&device.dev_eui) {
                    Some(identity) => match decide(&device, &identity) {
                        Step::Unchanged => plan.unchanged.push(device.dev_eui),
                        Step::Update { from, to } => plan.updates.push(AddressUpdate {
                            dev_eui: device.dev_eui,
                            join_eui: device.join_eui.expect("decided on a JoinEUI"),
                            from,
                            to,
                        }),
                        Step::Recreate(reason) => plan.recreations.push(Recreation {
                            desired: DesiredDevice::new(device.dev_eui, identity),
                            current: device,
                            reason,
                        }),
                    },
                    None => match self.orphans {
                        OrphanPolicy::Delete => plan.deletions.push(device),
                        OrphanPolicy::Keep => plan.kept.push(device.dev_eui),
                    },
                }
            }
            if len < page_size {
                break;
            }
            if new == 0 {
                // A full page of rows already seen: the service ignores `offset`, and
                // reading on would never end.
                return Err(Error::decode(
                    "devices/select response",
                    format!(
                        "page at offset {offset} repeats earlier rows; paging does not advance"
                    ),
                ));
            }
            offset += len;
        }
        plan.read = seen.len();
        plan.inserts = want
            .into_iter()
            .map(|(dev_eui, identity)| DesiredDevice { dev_eui, identity })
            .collect();
        plan.inserts.sort_unstable_by_key(|d| d.dev_eui);
        plan.updates.sort_unstable_by_key(|u| u.dev_eui);
        plan.recreations.sort_unstable_by_key(|r| r.desired.dev_eui);
        plan.deletions.sort_unstable_by_key(|d| d.dev_eui);
        plan.kept.sort_unstable();
        plan.unchanged.sort_unstable();
        Ok(plan)
    }

    /// Carries a plan out, unless it deletes more devices than the
    /// [`DeletionLimit`](super::DeletionLimit) allows: deletions first, in batches of up to `batch` DevEUIs per
    /// `devices/drop` (the old rows of re-created devices included), then inserts,
    /// updates and the inserts of re-created devices, on `concurrency` threads over the
    /// `Core`'s shared connection pool. `progress` is called after every finished change
    /// or batch, one call at a time.
    ///
    /// One device's failure never stops the run: it is listed in the report with its
    /// error (a failed batch lists each of its devices, and a re-created device whose
    /// deletion failed is not inserted). Races with other writers converge: an insert
    /// that meets `Device.AlreadyExists`, or an update that meets `Device.NotFound`,
    /// re-reads the device and does what it then needs; a device already deleted counts
    /// as deleted.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::TooManyDeletions`] before anything is written, when the plan
    /// deletes more devices than [`Fleet::max_deletions`] allows (see
    /// [`Fleet::check_deletions`]): check the desired list for an empty or truncated
    /// export, and raise the limit only when the deletions are meant. Failures of
    /// single changes are in the [`Report`], not here.
    ///
    /// ```no_run
    /// use ran_routing::fleet::{DesiredDevice, Fleet};
    /// use ran_routing::{Core, DevAddr, DevEui};
    ///
    /// let ran = Core::builder("access-token")
    ///     .base_url("https://eu.cloud.everynet.io/api/v1")
    ///     .max_idle_connections(16)
    ///     .build()?;
    /// let fleet = Fleet::new(&ran).concurrency(16);
    /// let plan = fleet.plan([DesiredDevice::abp(DevEui::new(1), DevAddr::new(2))])?;
    /// let report = fleet.apply(&plan, |progress| eprintln!("{progress}"))?;
    /// println!("{report}");
    /// for failure in report.failures() {
    ///     eprintln!("{failure}");
    /// }
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn apply(
        &self,
        plan: &DevicePlan,
        mut progress: impl FnMut(&Progress) + Send,
    ) -> Result<Report> {
        self.check_deletions(plan)?;
        self.check_pool();
        let started = Instant::now();
        let totals = [
            (Kind::Delete, plan.deletions.len()),
            (Kind::Insert, plan.inserts.len()),
            (Kind::Update, plan.updates.len()),
            (Kind::Recreate, plan.recreations.len()),
        ];
        let tracker = Tracker::new(&totals, &mut progress);
        let table = self.core.routing_table();

        // 1. Every deletion, in batches; a re-created device's insert must wait for it.
        let doomed: Vec<(DevEui, bool)> = plan
            .deletions
            .iter()
            .map(|d| (d.dev_eui, false))
            .chain(plan.recreations.iter().map(|r| (r.desired.dev_eui, true)))
            .collect();
        let batches: Vec<&[(DevEui, bool)]> = doomed.chunks(self.batch).collect();
        let not_deleted: Mutex<HashSet<DevEui>> = Mutex::new(HashSet::new());
        for_each(self.concurrency, &batches, |batch| {
            let euis = batch.iter().map(|(eui, _)| *eui);
            // Unknown DevEUIs are ignored by the service: a device someone else already
            // deleted counts as deleted.
            match tracker.call(Call::Drop, || table.delete(euis)) {
                Ok(_) => tracker.done(Kind::Delete, batch.iter().filter(|(_, r)| !r).count()),
                Err(e) => {
                    let e = Arc::new(e);
                    let (recreated, orphans): (Vec<_>, Vec<_>) =
                        batch.iter().partition(|(_, recreate)| *recreate);
                    lock(&not_deleted).extend(recreated.iter().map(|(eui, _)| *eui));
                    tracker.failed(
                        Kind::Delete,
                        orphans.iter().map(|(eui, _)| Target::Device(*eui)),
                        Arc::clone(&e),
                    );
                    tracker.failed(
                        Kind::Recreate,
                        recreated.iter().map(|(eui, _)| Target::Device(*eui)),
                        e,
                    );
                }
            }
        });

        // 2. Inserts, updates and re-inserts, one device per task.
        let not_deleted = not_deleted
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        enum Task<'p> {
            Insert(&'p DesiredDevice),
            Update(&'p AddressUpdate),
            Recreate(&'p Recreation),
        }
        let tasks: Vec<Task<'_>> = plan
            .inserts
            .iter()
            .map(Task::Insert)
            .chain(plan.updates.iter().map(Task::Update))
            .chain(
                plan.recreations
                    .iter()
                    .filter(|r| !not_deleted.contains(&r.desired.dev_eui))
                    .map(Task::Recreate),
            )
            .collect();
        let worker = Worker {
            fleet: self,
            tracker: &tracker,
        };
        for_each(self.concurrency, &tasks, |task| match task {
            Task::Insert(desired) => tracker.outcome(
                Kind::Insert,
                Target::Device(desired.dev_eui),
                worker.insert(desired, None),
            ),
            Task::Update(update) => {
                let desired = DesiredDevice::joined(update.dev_eui, update.join_eui, update.to);
                tracker.outcome(
                    Kind::Update,
                    Target::Device(update.dev_eui),
                    worker.update(&desired),
                );
            }
            Task::Recreate(r) => tracker.outcome(
                Kind::Recreate,
                Target::Device(r.desired.dev_eui),
                worker.insert(&r.desired, r.current.details.as_deref()),
            ),
        });
        Ok(tracker.finish(started.elapsed()))
    }
}

/// The calls of one device's change, counted by the tracker.
struct Worker<'a, 'f> {
    fleet: &'a Fleet,
    tracker: &'a Tracker<'f>,
}

impl Worker<'_, '_> {
    /// Insert (then set the address of a joined device); converges on a race.
    fn insert(&self, desired: &DesiredDevice, details: Option<&str>) -> Result<()> {
        match self.create(desired, details) {
            Err(e) if already_exists(&e) || not_found(&e) => self.converge(desired, details, e),
            other => other,
        }
    }

    /// Update an OTAA device's active address; converges on a race.
    fn update(&self, desired: &DesiredDevice) -> Result<()> {
        let update = desired
            .address_after_insert()
            .expect("an update has an address");
        match self.call_update(update) {
            Err(e) if not_found(&e) => self.converge(desired, None, e),
            other => other,
        }
    }

    fn create(&self, desired: &DesiredDevice, details: Option<&str>) -> Result<()> {
        let table = self.fleet.core.routing_table();
        self.tracker
            .call(Call::Insert, || table.insert(desired.new_device(details)))?;
        match desired.address_after_insert() {
            Some(update) => self.call_update(update),
            None => Ok(()),
        }
    }

    fn call_update(&self, update: DeviceUpdate) -> Result<()> {
        let table = self.fleet.core.routing_table();
        self.tracker
            .call(Call::Update, || table.update(update))
            .map(drop)
    }

    /// Someone else changed the device since the plan: read it again and do what it
    /// needs now, a few times over if the races go on.
    fn converge(&self, desired: &DesiredDevice, details: Option<&str>, first: Error) -> Result<()> {
        self.tracker.converged();
        let table = self.fleet.core.routing_table();
        let mut last = first;
        for _ in 0..CONVERGE_ATTEMPTS {
            let current = self
                .tracker
                .call(Call::Select, || {
                    table.select(Select::dev_euis([desired.dev_eui]))
                })?
                .into_iter()
                .find(|d| d.dev_eui == desired.dev_eui);
            let result = match &current {
                None => self.create(desired, details),
                Some(current) => match decide(current, &desired.identity) {
                    Step::Unchanged => return Ok(()),
                    Step::Update { to, .. } => {
                        let join_eui = current.join_eui.expect("decided on a JoinEUI");
                        self.call_update(
                            DeviceUpdate::new(desired.dev_eui, join_eui).with_active_dev_addr(to),
                        )
                    }
                    Step::Recreate(_) => {
                        self.tracker
                            .call(Call::Drop, || table.delete([desired.dev_eui]))?;
                        // Details the LNS did not set survive, as in a planned re-creation.
                        let details = details.or(current.details.as_deref());
                        self.create(desired, details)
                    }
                },
            };
            match result {
                Err(e) if already_exists(&e) || not_found(&e) => last = e,
                other => return other,
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(join: Option<u64>, active: Option<u32>) -> Device {
        Device {
            dev_eui: DevEui::new(0x0004a30b001c0530),
            join_eui: join.map(JoinEui::new),
            active_dev_addr: active.map(DevAddr::new),
            target_dev_addr: Some(DevAddr::new(0xdead)),
            details: None,
            created_at: time::macros::datetime!(2026-11-30 06:00),
        }
    }

    fn otaa(join: u64, active: Option<u32>) -> DesiredIdentity {
        DesiredIdentity::Otaa {
            join_eui: JoinEui::new(join),
            active_dev_addr: active.map(DevAddr::new),
        }
    }

    fn abp(addr: u32) -> DesiredIdentity {
        DesiredIdentity::Abp {
            dev_addr: DevAddr::new(addr),
        }
    }

    #[test]
    fn every_decision() {
        use RecreateReason::*;
        let a = DevAddr::new(0xa);
        let cases = [
            (row(Some(1), None), otaa(1, None), Step::Unchanged),
            (row(Some(1), Some(0xa)), otaa(1, Some(0xa)), Step::Unchanged),
            (row(None, Some(0xa)), abp(0xa), Step::Unchanged),
            (
                row(Some(1), None),
                otaa(1, Some(0xa)),
                Step::Update { from: None, to: a },
            ),
            (
                row(Some(1), Some(0xb)),
                otaa(1, Some(0xa)),
                Step::Update {
                    from: Some(DevAddr::new(0xb)),
                    to: a,
                },
            ),
            (
                row(Some(1), Some(0xb)),
                otaa(1, None),
                Step::Recreate(ActiveDevAddrDropped {
                    from: DevAddr::new(0xb),
                }),
            ),
            (
                row(Some(2), None),
                otaa(1, None),
                Step::Recreate(JoinEuiChanged {
                    from: JoinEui::new(2),
                }),
            ),
            (
                row(None, Some(0xa)),
                otaa(1, None),
                Step::Recreate(AbpToOtaa),
            ),
            (row(Some(1), Some(0xa)), abp(0xa), Step::Recreate(OtaaToAbp)),
            (
                row(None, Some(0xb)),
                abp(0xa),
                Step::Recreate(DevAddrChanged {
                    from: Some(DevAddr::new(0xb)),
                }),
            ),
        ];
        for (i, (current, desired, step)) in cases.into_iter().enumerate() {
            assert_eq!(decide(&current, &desired), step, "case {i}");
        }
    }

    #[test]
    fn write_calls_count_batches_and_addresses() {
        let mut plan = DevicePlan::default();
        assert_eq!(plan.write_calls(100), 0);
        plan.inserts = vec![
            DesiredDevice::otaa(1u64, 1u64),
            DesiredDevice::joined(2u64, 1u64, 5u32),
            DesiredDevice::abp(3u64, 5u32),
        ];
        plan.deletions = (0..150).map(|_| row(None, Some(1))).collect();
        plan.recreations = vec![Recreation {
            current: row(Some(2), None),
            desired: DesiredDevice::joined(4u64, 1u64, 5u32),
            reason: RecreateReason::AbpToOtaa,
        }];
        plan.updates = vec![AddressUpdate {
            dev_eui: DevEui::new(5),
            join_eui: JoinEui::new(1),
            from: None,
            to: DevAddr::new(1),
        }];
        // 2 drops (151 DevEUIs), 4 inserts + 2 address updates, 1 update.
        assert_eq!(plan.write_calls(100), 2 + 6 + 1);
        assert_eq!(plan.write_calls(0), 151 + 6 + 1);
        assert_eq!(plan.changes(), 3 + 150 + 1 + 1);
        assert_eq!(
            plan.to_string(),
            "devices: 3 to insert, 1 to update, 1 to re-create, 150 to delete, 0 unchanged, 0 orphans kept"
        );
        let listing = plan.listing().to_string();
        assert!(listing.starts_with(
            "+ 0000000000000001 OTAA 0000000000000001\n\
             + 0000000000000002 OTAA 0000000000000001 active 00000005\n\
             + 0000000000000003 ABP 00000005\n\
             ~ 0000000000000005 active none -> 00000001\n\
             ! 0004a30b001c0530 OTAA 0000000000000002 (was ABP) -> 0000000000000004 OTAA 0000000000000001 active 00000005\n\
             - 0004a30b001c0530 ABP 00000001\n"
        ), "{listing}");
        assert!(listing.ends_with("= 0 unchanged\n"), "{listing}");
    }
}
