//! The deletion guard: a plan that deletes more than a bound is refused before anything
//! is written. A truncated or empty export of the LNS's devices plans the deletion of
//! every device it lost, and an apply would carry that out.

use super::{DevicePlan, Fleet, GroupPlan};
use crate::error::{InvalidInput, Result};

/// How many devices (or multicast groups) only the RAN has an apply may delete; a plan
/// that deletes more is refused with [`InvalidInput::TooManyDeletions`] before anything
/// is written. Re-created devices do not count: they are inserted again.
///
/// The default, 10 % of what the RAN held when the plan was made (rounded up), lets the
/// day-to-day churn through and stops a wipe of any table of two devices or more.
///
/// ```
/// use ran_routing::fleet::DeletionLimit;
///
/// assert_eq!(DeletionLimit::default().allowed(1000), 100);
/// assert_eq!(DeletionLimit::default().allowed(5), 1);
/// assert_eq!(DeletionLimit::Count(3).allowed(1000), 3);
/// assert_eq!(DeletionLimit::Unlimited.allowed(1000), 1000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeletionLimit {
    /// At most this share, in percent, of what the RAN held when the plan was made,
    /// rounded up (100 or more: no limit).
    Percent(u8),
    /// At most this many.
    Count(usize),
    /// Any number: the explicit override, for a deliberate clean-up.
    Unlimited,
}

impl DeletionLimit {
    /// The default: [`DeletionLimit::Percent`] of 10.
    pub const DEFAULT: DeletionLimit = DeletionLimit::Percent(10);

    /// How many deletions this limit allows when the RAN holds `held`.
    pub fn allowed(self, held: usize) -> usize {
        match self {
            DeletionLimit::Percent(p) if p >= 100 => held,
            DeletionLimit::Percent(p) => (held * usize::from(p)).div_ceil(100),
            DeletionLimit::Count(n) => n,
            DeletionLimit::Unlimited => held,
        }
    }

    fn check(self, what: &'static str, planned: usize, held: usize) -> Result<()> {
        let allowed = self.allowed(held);
        if planned <= allowed {
            return Ok(());
        }
        Err(InvalidInput::TooManyDeletions {
            what,
            planned,
            held,
            allowed,
        }
        .into())
    }
}

impl Default for DeletionLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Fleet {
    /// How many devices and groups only the RAN has an apply may delete (default
    /// [`DeletionLimit::DEFAULT`], 10 % of what the RAN holds). [`Fleet::apply`] and
    /// [`Fleet::apply_groups`] refuse a plan over it before writing anything.
    pub fn max_deletions(mut self, limit: DeletionLimit) -> Self {
        self.max_deletions = limit;
        self
    }

    /// Whether [`Fleet::apply`] would carry `plan` out or refuse it for deleting too
    /// many devices: for a dry run, to say so before anyone adds the flag that applies.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::TooManyDeletions`] when the plan deletes more devices than the
    /// [`DeletionLimit`] allows. Check the desired list first (an empty or truncated
    /// export); raise the limit with [`Fleet::max_deletions`] only when the deletions
    /// are meant.
    pub fn check_deletions(&self, plan: &DevicePlan) -> Result<()> {
        self.max_deletions
            .check("devices", plan.deletions().len(), plan.devices_read())
    }

    /// [`Fleet::check_deletions`] for a group plan, as [`Fleet::apply_groups`] checks
    /// it.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::TooManyDeletions`] when the plan deletes more groups than the
    /// [`DeletionLimit`] allows; see [`Fleet::check_deletions`].
    pub fn check_group_deletions(&self, plan: &GroupPlan) -> Result<()> {
        self.max_deletions.check(
            "multicast groups",
            plan.deletions().len(),
            plan.groups_read(),
        )
    }
}
