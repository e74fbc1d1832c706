//! The multicast side: desired groups, the plan, and applying it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::run::{for_each, Call, Kind, Progress, Report, Target, Tracker};
use super::{Fleet, OrphanPolicy};
use crate::error::{ApiError, Error, InvalidInput, Result};
use crate::ids::{DevEui, MulticastAddr};
use crate::model::{MulticastGroup, MulticastGroupUpdate};
use crate::sync::lock;
use crate::Select;

/// DevEUIs per `select` when checking that members are in the routing table: short
/// enough for any server's URL length limit (each is a 26-byte query pair).
const SELECT_CHUNK: usize = 100;

/// A multicast group as the LNS wants it.
///
/// ```
/// use ran_routing::fleet::DesiredGroup;
/// use ran_routing::{DevEui, MulticastAddr};
///
/// let group = DesiredGroup::new(MulticastAddr::new(0xef046a1e), "street lights")
///     .with_members([DevEui::new(0x0004a30b001c0530), DevEui::new(0x7abe1b8c93d7174f)]);
/// assert_eq!(group.members.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DesiredGroup {
    /// The group's address (the key).
    pub addr: MulticastAddr,
    /// Its name, at most [`MulticastGroup::MAX_NAME_LEN`] characters.
    pub name: String,
    /// The devices in it.
    pub members: BTreeSet<DevEui>,
}

impl DesiredGroup {
    /// A group with no members yet.
    pub fn new(addr: impl Into<MulticastAddr>, name: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            name: name.into(),
            members: BTreeSet::new(),
        }
    }

    /// Adds these members.
    #[must_use]
    pub fn with_members(mut self, members: impl IntoIterator<Item = DevEui>) -> Self {
        self.members.extend(members);
        self
    }
}

/// A group renamed in place.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rename {
    /// The group.
    pub addr: MulticastAddr,
    /// Its name in the RAN.
    pub from: String,
    /// The name the LNS gave it.
    pub to: String,
}

/// A device in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    /// The group.
    pub group: MulticastAddr,
    /// The device.
    pub dev_eui: DevEui,
}

/// What must change in the multicast groups: made by [`Fleet::plan_groups`] without
/// writing anything, carried out by [`Fleet::apply_groups`].
///
/// `Display` is a one-line summary; [`GroupPlan::listing`] lists every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPlan {
    creates: Vec<DesiredGroup>,
    renames: Vec<Rename>,
    adds: Vec<Member>,
    removes: Vec<Member>,
    deletions: Vec<MulticastGroup>,
    kept: Vec<MulticastAddr>,
    unchanged: Vec<MulticastAddr>,
    not_in_table: Vec<Member>,
    read: usize,
}

impl GroupPlan {
    /// Groups only the LNS has, to create (their members are in [`Self::adds`]).
    pub fn creates(&self) -> &[DesiredGroup] {
        &self.creates
    }

    /// Groups whose name changed.
    pub fn renames(&self) -> &[Rename] {
        &self.renames
    }

    /// Devices to add to a group, new groups' members included.
    pub fn adds(&self) -> &[Member] {
        &self.adds
    }

    /// Devices to take out of a group.
    pub fn removes(&self) -> &[Member] {
        &self.removes
    }

    /// Groups only the RAN has, to delete ([`OrphanPolicy::Delete`]).
    pub fn deletions(&self) -> &[MulticastGroup] {
        &self.deletions
    }

    /// Groups only the RAN has, left alone ([`OrphanPolicy::Keep`]).
    pub fn kept_orphans(&self) -> &[MulticastAddr] {
        &self.kept
    }

    /// Groups already as the LNS wants them (members not in the routing table aside).
    pub fn unchanged(&self) -> &[MulticastAddr] {
        &self.unchanged
    }

    /// Desired members that are not in the routing table: the service would refuse
    /// them, so they are reported here and not sent.
    pub fn not_in_table(&self) -> &[Member] {
        &self.not_in_table
    }

    /// How many groups the RAN held as the plan read them: what a
    /// [`DeletionLimit`](super::DeletionLimit) share is taken of.
    pub fn groups_read(&self) -> usize {
        self.read
    }

    /// How many changes the plan has.
    pub fn changes(&self) -> usize {
        self.creates.len()
            + self.renames.len()
            + self.adds.len()
            + self.removes.len()
            + self.deletions.len()
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.changes() == 0
    }

    /// The fewest REST calls that carry the plan out, with deletions in batches of
    /// `batch` addresses: an apply without races makes exactly this many.
    pub fn write_calls(&self, batch: usize) -> usize {
        self.deletions.len().div_ceil(batch.max(1)) + self.changes() - self.deletions.len()
    }

    /// One line per change: `+` create, `~` rename, `>` add, `<` remove, `-` delete;
    /// `?` kept orphans and `!` members not in the routing table.
    pub fn listing(&self) -> impl fmt::Display + '_ {
        Listing(self)
    }
}

/// `groups: 1 to create, 0 to rename, 3 members to add, ...`
impl fmt::Display for GroupPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "groups: {} to create, {} to rename, {} members to add, {} members to remove, \
             {} to delete, {} unchanged, {} orphans kept, {} members not in the routing table",
            self.creates.len(),
            self.renames.len(),
            self.adds.len(),
            self.removes.len(),
            self.deletions.len(),
            self.unchanged.len(),
            self.kept.len(),
            self.not_in_table.len(),
        )
    }
}

struct Listing<'a>(&'a GroupPlan);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        for g in &plan.creates {
            writeln!(f, "+ group {} {:?}", g.addr, g.name)?;
        }
        for r in &plan.renames {
            writeln!(f, "~ group {} {:?} -> {:?}", r.addr, r.from, r.to)?;
        }
        for m in &plan.adds {
            writeln!(f, "> group {} add {}", m.group, m.dev_eui)?;
        }
        for m in &plan.removes {
            writeln!(f, "< group {} remove {}", m.group, m.dev_eui)?;
        }
        for g in &plan.deletions {
            writeln!(f, "- group {} {:?}", g.addr, g.name)?;
        }
        for addr in &plan.kept {
            writeln!(f, "? group {addr} (only in the RAN, kept)")?;
        }
        for m in &plan.not_in_table {
            writeln!(
                f,
                "! group {}: {} is not in the routing table, not added",
                m.group, m.dev_eui
            )?;
        }
        writeln!(f, "= {} groups unchanged", plan.unchanged.len())
    }
}

fn api(e: &Error) -> Option<&ApiError> {
    e.api_error()
}

impl Fleet {
    /// Reads every multicast group and works out what must change for them to be
    /// exactly `desired`; writes nothing. Members to add are checked against the routing
    /// table (in `select` calls of up to 100 DevEUIs); those not in it are listed in
    /// [`GroupPlan::not_in_table`] and left out. Plan groups after applying the devices'
    /// plan: a deleted or re-created device has left its groups.
    ///
    /// A name longer than [`MulticastGroup::MAX_NAME_LEN`] fails with
    /// [`InvalidInput::GroupNameTooLong`], and an address listed twice with different
    /// contents with [`InvalidInput::DuplicateGroup`], before anything is sent.
    pub fn plan_groups(
        &self,
        desired: impl IntoIterator<Item = DesiredGroup>,
    ) -> Result<GroupPlan> {
        let mut want: BTreeMap<MulticastAddr, DesiredGroup> = BTreeMap::new();
        for group in desired {
            MulticastGroup::validate_name(&group.name)?;
            match want.entry(group.addr) {
                Entry::Vacant(slot) => {
                    slot.insert(group);
                }
                Entry::Occupied(slot) if *slot.get() != group => {
                    return Err(InvalidInput::DuplicateGroup(group.addr).into());
                }
                Entry::Occupied(_) => {}
            }
        }
        let mut plan = GroupPlan::default();
        let mut candidates: Vec<Member> = Vec::new();
        let current_groups = self.core.multicast_groups().get([])?;
        plan.read = current_groups.len();
        for current in current_groups {
            let Some(desired) = want.remove(&current.addr) else {
                match self.orphans {
                    OrphanPolicy::Delete => plan.deletions.push(current),
                    OrphanPolicy::Keep => plan.kept.push(current.addr),
                }
                continue;
            };
            let has: BTreeSet<DevEui> = current.devices.iter().copied().collect();
            let removes_before = plan.removes.len();
            plan.removes
                .extend(has.difference(&desired.members).map(|&dev_eui| Member {
                    group: current.addr,
                    dev_eui,
                }));
            let candidates_before = candidates.len();
            candidates.extend(desired.members.difference(&has).map(|&dev_eui| Member {
                group: current.addr,
                dev_eui,
            }));
            let renamed = current.name != desired.name;
            if renamed {
                plan.renames.push(Rename {
                    addr: current.addr,
                    from: current.name,
                    to: desired.name,
                });
            }
            if !renamed
                && plan.removes.len() == removes_before
                && candidates.len() == candidates_before
            {
                plan.unchanged.push(current.addr);
            }
        }
        for (addr, desired) in want {
            candidates.extend(desired.members.iter().map(|&dev_eui| Member {
                group: addr,
                dev_eui,
            }));
            plan.creates.push(desired);
        }
        // Only devices in the routing table can join a group.
        let wanted: BTreeSet<DevEui> = candidates.iter().map(|m| m.dev_eui).collect();
        let wanted: Vec<DevEui> = wanted.into_iter().collect();
        let mut in_table: HashSet<DevEui> = HashSet::new();
        let table = self.core.routing_table();
        for chunk in wanted.chunks(SELECT_CHUNK) {
            let found = table.select(Select::dev_euis(chunk.iter().copied()))?;
            in_table.extend(found.into_iter().map(|d| d.dev_eui));
        }
        for member in candidates {
            if in_table.contains(&member.dev_eui) {
                plan.adds.push(member);
            } else {
                plan.not_in_table.push(member);
            }
        }
        plan.adds.sort_unstable();
        plan.removes.sort_unstable();
        plan.not_in_table.sort_unstable();
        plan.renames.sort_by_key(|r| r.addr);
        plan.deletions.sort_by_key(|g| g.addr);
        plan.kept.sort_unstable();
        plan.unchanged.sort_unstable();
        Ok(plan)
    }

    /// Carries a group plan out: deletions (in batches of up to `batch` addresses),
    /// creations and renames first, then member additions and removals, on
    /// `concurrency` threads. Like [`Fleet::apply`], a failure is reported per change and
    /// never stops the run (a group that could not be created fails its additions too),
    /// and races converge: a group that already exists is read and renamed if needed, a
    /// rename of a group that is gone creates it, a member already in (or already out
    /// of) its group counts as done, a group already deleted counts as deleted.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::TooManyDeletions`] before
    /// anything is written, when the plan deletes more groups than
    /// [`Fleet::max_deletions`] allows (see [`Fleet::check_group_deletions`]).
    pub fn apply_groups(
        &self,
        plan: &GroupPlan,
        mut progress: impl FnMut(&Progress) + Send,
    ) -> Result<Report> {
        self.check_group_deletions(plan)?;
        self.check_pool();
        let started = Instant::now();
        let totals = [
            (Kind::DeleteGroup, plan.deletions.len()),
            (Kind::CreateGroup, plan.creates.len()),
            (Kind::RenameGroup, plan.renames.len()),
            (Kind::AddMember, plan.adds.len()),
            (Kind::RemoveMember, plan.removes.len()),
        ];
        let tracker = Tracker::new(&totals, &mut progress);
        let groups = self.core.multicast_groups();

        enum First<'p> {
            Delete(&'p [MulticastGroup]),
            Create(&'p DesiredGroup),
            Rename(&'p Rename),
        }
        let first: Vec<First<'_>> = plan
            .deletions
            .chunks(self.batch)
            .map(First::Delete)
            .chain(plan.creates.iter().map(First::Create))
            .chain(plan.renames.iter().map(First::Rename))
            .collect();
        let not_created: Mutex<HashMap<MulticastAddr, Arc<Error>>> = Mutex::new(HashMap::new());
        for_each(self.concurrency, &first, |task| match task {
            First::Delete(batch) => {
                let addrs = batch.iter().map(|g| g.addr);
                // Unknown addresses are ignored: a group already gone counts as deleted.
                match tracker.call(Call::GroupDelete, || groups.delete(addrs)) {
                    Ok(_) => tracker.done(Kind::DeleteGroup, batch.len()),
                    Err(e) => tracker.failed(
                        Kind::DeleteGroup,
                        batch.iter().map(|g| Target::Group(g.addr)),
                        Arc::new(e),
                    ),
                }
            }
            First::Create(group) => {
                let result = self.create_group(&tracker, group.addr, &group.name);
                if let Err(e) = result {
                    let e = Arc::new(e);
                    lock(&not_created).insert(group.addr, Arc::clone(&e));
                    tracker.failed(Kind::CreateGroup, [Target::Group(group.addr)], e);
                } else {
                    tracker.done(Kind::CreateGroup, 1);
                }
            }
            First::Rename(rename) => {
                let update = MulticastGroupUpdate::new(rename.addr).with_name(&rename.to);
                let result = match tracker.call(Call::GroupUpdate, || groups.update(update)) {
                    Err(e) if matches!(api(&e), Some(ApiError::MulticastGroupNotFound { .. })) => {
                        tracker.converged();
                        self.create_group(&tracker, rename.addr, &rename.to)
                    }
                    other => other.map(drop),
                };
                tracker.outcome(Kind::RenameGroup, Target::Group(rename.addr), result);
            }
        });

        let not_created = not_created
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (blocked, adds): (Vec<&Member>, Vec<&Member>) = plan
            .adds
            .iter()
            .partition(|m| not_created.contains_key(&m.group));
        for member in blocked {
            tracker.failed(
                Kind::AddMember,
                [Target::Member {
                    group: member.group,
                    dev_eui: member.dev_eui,
                }],
                Arc::clone(&not_created[&member.group]),
            );
        }
        let second: Vec<(Kind, &Member)> = adds
            .into_iter()
            .map(|m| (Kind::AddMember, m))
            .chain(plan.removes.iter().map(|m| (Kind::RemoveMember, m)))
            .collect();
        for_each(self.concurrency, &second, |&(kind, m)| {
            let result = if kind == Kind::AddMember {
                match tracker.call(Call::GroupAdd, || groups.add_device(m.group, m.dev_eui)) {
                    Err(e)
                        if matches!(
                            api(&e),
                            Some(ApiError::MulticastGroupAlreadyContainsDevice { .. })
                        ) =>
                    {
                        tracker.converged();
                        Ok(())
                    }
                    other => other.map(drop),
                }
            } else {
                // `false`: the device or the group is gone already, which is the goal.
                tracker
                    .call(Call::GroupRemove, || {
                        groups.remove_device(m.group, m.dev_eui)
                    })
                    .map(drop)
            };
            let target = Target::Member {
                group: m.group,
                dev_eui: m.dev_eui,
            };
            tracker.outcome(kind, target, result);
        });
        Ok(tracker.finish(started.elapsed()))
    }

    /// Creates a group; if someone else created it since the plan, reads it and
    /// renames it if needed.
    fn create_group(&self, tracker: &Tracker<'_>, addr: MulticastAddr, name: &str) -> Result<()> {
        let groups = self.core.multicast_groups();
        match tracker.call(Call::GroupCreate, || groups.create(name, addr)) {
            Err(e) if matches!(api(&e), Some(ApiError::MulticastGroupAlreadyExists { .. })) => {
                tracker.converged();
                let current = tracker.call(Call::GroupGet, || groups.get([addr]))?;
                match current.into_iter().find(|g| g.addr == addr) {
                    Some(g) if g.name == name => Ok(()),
                    _ => {
                        let update = MulticastGroupUpdate::new(addr).with_name(name);
                        tracker
                            .call(Call::GroupUpdate, || groups.update(update))
                            .map(drop)
                    }
                }
            }
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_listing_and_calls() {
        let addr = MulticastAddr::new(0xef046a1e);
        let member = |eui: u64| Member {
            group: addr,
            dev_eui: DevEui::new(eui),
        };
        let plan = GroupPlan {
            creates: vec![DesiredGroup::new(addr, "new")],
            renames: vec![Rename {
                addr: MulticastAddr::new(1),
                from: "a".into(),
                to: "b".into(),
            }],
            adds: vec![member(1), member(2)],
            removes: vec![member(3)],
            deletions: Vec::new(),
            kept: vec![MulticastAddr::new(2)],
            unchanged: Vec::new(),
            not_in_table: vec![member(4)],
            read: 2,
        };
        assert_eq!(plan.changes(), 5);
        assert_eq!(plan.write_calls(100), 5);
        assert_eq!(
            plan.to_string(),
            "groups: 1 to create, 1 to rename, 2 members to add, 1 members to remove, \
             0 to delete, 0 unchanged, 1 orphans kept, 1 members not in the routing table"
        );
        assert_eq!(
            plan.listing().to_string(),
            "+ group ef046a1e \"new\"\n\
             ~ group 00000001 \"a\" -> \"b\"\n\
             > group ef046a1e add 0000000000000001\n\
             > group ef046a1e add 0000000000000002\n\
             < group ef046a1e remove 0000000000000003\n\
             ? group 00000002 (only in the RAN, kept)\n\
             ! group ef046a1e: 0000000000000004 is not in the routing table, not added\n\
             = 0 groups unchanged\n"
        );
    }
}
