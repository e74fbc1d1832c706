//! What applying a plan shares between devices and groups: the worker pool, progress,
//! failures, call counting and the report.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ids::{DevEui, MulticastAddr};
use crate::sync::lock;

/// A kind of change, for [`Progress`], [`Failure`] and [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// A device only the RAN has, deleted.
    Delete,
    /// A device only the LNS has, inserted (and given its active address when joined).
    Insert,
    /// A device whose active address changed, updated in place.
    Update,
    /// A device deleted and inserted again (its JoinEUI or activation changed, or an
    /// address must go away).
    Recreate,
    /// A multicast group only the RAN has, deleted.
    DeleteGroup,
    /// A multicast group only the LNS has, created.
    CreateGroup,
    /// A multicast group renamed.
    RenameGroup,
    /// A device added to a multicast group.
    AddMember,
    /// A device removed from a multicast group.
    RemoveMember,
}

impl Kind {
    /// A short lower-case name: `insert`, `re-create`, `add member`, ...
    pub fn name(self) -> &'static str {
        match self {
            Kind::Delete => "delete",
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Recreate => "re-create",
            Kind::DeleteGroup => "delete group",
            Kind::CreateGroup => "create group",
            Kind::RenameGroup => "rename group",
            Kind::AddMember => "add member",
            Kind::RemoveMember => "remove member",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far one [`Kind`] of change has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Count {
    /// Changes carried out (a race resolved counts as done).
    pub done: usize,
    /// Changes that failed; each is in the report's [`failures`](Report::failures).
    pub failed: usize,
    /// Changes of this kind in the plan.
    pub total: usize,
}

impl Count {
    /// Whether every change of this kind is done or failed.
    pub fn is_finished(&self) -> bool {
        self.done + self.failed >= self.total
    }
}

/// Done / failed / total per kind of change, handed to the progress callback of an
/// apply after every finished change (or batch) and kept in the [`Report`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    counts: Vec<(Kind, Count)>,
}

impl Progress {
    pub(crate) fn new(totals: &[(Kind, usize)]) -> Self {
        Self {
            counts: totals
                .iter()
                .map(|&(kind, total)| {
                    (
                        kind,
                        Count {
                            total,
                            ..Count::default()
                        },
                    )
                })
                .collect(),
        }
    }

    /// The count of one kind (all zero for a kind this apply does not have).
    pub fn get(&self, kind: Kind) -> Count {
        self.counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or_else(Count::default, |(_, c)| *c)
    }

    /// Every kind this apply has, in the order they are carried out, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Kind, Count)> + '_ {
        self.counts.iter().copied()
    }

    /// Changes done or failed, all kinds together.
    pub fn finished(&self) -> usize {
        self.counts.iter().map(|(_, c)| c.done + c.failed).sum()
    }

    /// Changes in the plan, all kinds together.
    pub fn total(&self) -> usize {
        self.counts.iter().map(|(_, c)| c.total).sum()
    }

    fn count_mut(&mut self, kind: Kind) -> &mut Count {
        match self.counts.iter().position(|(k, _)| *k == kind) {
            Some(i) => &mut self.counts[i].1,
            None => {
                self.counts.push((kind, Count::default()));
                &mut self.counts.last_mut().expect("just pushed").1
            }
        }
    }
}

/// `insert 10/40, update 3/3 (1 failed), ...`
impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (kind, c) in self.counts.iter().filter(|(_, c)| c.total > 0) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{kind} {}/{}", c.done, c.total)?;
            if c.failed > 0 {
                write!(f, " ({} failed)", c.failed)?;
            }
        }
        if first {
            f.write_str("nothing to do")?;
        }
        Ok(())
    }
}

/// What a change was about: a device, a group, or a device in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A device of the routing table.
    Device(DevEui),
    /// A multicast group.
    Group(MulticastAddr),
    /// A device's membership of a group.
    Member {
        /// The group.
        group: MulticastAddr,
        /// The device.
        dev_eui: DevEui,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Device(eui) => write!(f, "device {eui}"),
            Target::Group(addr) => write!(f, "group {addr}"),
            Target::Member { group, dev_eui } => write!(f, "device {dev_eui} in group {group}"),
        }
    }
}

/// One change that failed, with the error that stopped it. The error is shared by the
/// devices of one failed batch (`Arc`); match on it with `&*failure.error`.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What was being done.
    pub kind: Kind,
    /// To what.
    pub target: Target,
    /// Why it failed.
    pub error: Arc<Error>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.target, self.error)
    }
}

/// One REST call an apply can make, for [`Calls`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    Select,
    Insert,
    Update,
    Drop,
    GroupGet,
    GroupCreate,
    GroupUpdate,
    GroupDelete,
    GroupAdd,
    GroupRemove,
}

const CALLS: usize = 10;

/// The REST calls an apply made, by endpoint (failed ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Calls {
    /// `devices/select`, to re-read a device after a race.
    pub select: usize,
    /// `devices/insert`.
    pub insert: usize,
    /// `devices/update`.
    pub update: usize,
    /// `devices/drop`, each with up to `batch` DevEUIs.
    pub drop: usize,
    /// `multicast-groups/get`, to re-read a group after a race.
    pub group_get: usize,
    /// `multicast-groups/create`.
    pub group_create: usize,
    /// `multicast-groups/update`.
    pub group_update: usize,
    /// `multicast-groups/delete`, each with up to `batch` addresses.
    pub group_delete: usize,
    /// `multicast-groups/add-device`.
    pub group_add: usize,
    /// `multicast-groups/remove-device`.
    pub group_remove: usize,
}

impl Calls {
    /// Every call, all endpoints together.
    pub fn total(&self) -> usize {
        self.select
            + self.insert
            + self.update
            + self.drop
            + self.group_get
            + self.group_create
            + self.group_update
            + self.group_delete
            + self.group_add
            + self.group_remove
    }
}

/// What an apply did: per kind, how many changes were done and failed; each failure
/// with its error; the REST calls made; how many races were resolved by re-reading.
///
/// `Display` is a one-line summary; [`Report::failure_listing`] lists the failures.
#[derive(Debug, Clone)]
pub struct Report {
    progress: Progress,
    failures: Vec<Failure>,
    calls: Calls,
    converged: usize,
    elapsed: Duration,
}

impl Report {
    /// Done / failed / total per kind.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The count of one kind.
    pub fn count(&self, kind: Kind) -> Count {
        self.progress.get(kind)
    }

    /// Every change that failed, by target.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Whether every change was carried out.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }

    /// The REST calls made.
    pub fn calls(&self) -> Calls {
        self.calls
    }

    /// How many changes met a race (a device inserted, changed or deleted by someone
    /// else since the plan was made) and were resolved by re-reading the target.
    pub fn converged(&self) -> usize {
        self.converged
    }

    /// How long the apply took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// One line per failure: `insert device 0004a30b001c0530: devices limit exhausted: ...`.
    pub fn failure_listing(&self) -> impl fmt::Display + '_ {
        FailureListing(&self.failures)
    }
}

struct FailureListing<'a>(&'a [Failure]);

impl fmt::Display for FailureListing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in self.0 {
            writeln!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// `applied in 1.234 s: insert 10/10, ...; 2 failed; 14 REST calls, 1 race converged`
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "applied in {:.3} s: {}; {} failed; {} REST calls",
            self.elapsed.as_secs_f64(),
            self.progress,
            self.failures.len(),
            self.calls.total()
        )?;
        if self.converged > 0 {
            write!(f, ", {} races converged", self.converged)?;
        }
        Ok(())
    }
}

struct State<'f> {
    progress: Progress,
    failures: Vec<Failure>,
    on_progress: &'f mut (dyn FnMut(&Progress) + Send),
}

/// The shared book-keeping of one apply: progress (callback called under the lock, so it
/// sees counts that only grow and need not be `Sync`), failures and call counters.
pub(crate) struct Tracker<'f> {
    state: Mutex<State<'f>>,
    calls: [AtomicUsize; CALLS],
    converged: AtomicUsize,
}

impl<'f> Tracker<'f> {
    pub(crate) fn new(
        totals: &[(Kind, usize)],
        on_progress: &'f mut (dyn FnMut(&Progress) + Send),
    ) -> Self {
        Self {
            state: Mutex::new(State {
                progress: Progress::new(totals),
                failures: Vec::new(),
                on_progress,
            }),
            calls: std::array::from_fn(|_| AtomicUsize::new(0)),
            converged: AtomicUsize::new(0),
        }
    }

    /// Counts a REST call, then makes it.
    pub(crate) fn call<T>(&self, call: Call, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.calls[call as usize].fetch_add(1, Ordering::Relaxed);
        f()
    }

    pub(crate) fn converged(&self) {
        self.converged.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn done(&self, kind: Kind, n: usize) {
        if n == 0 {
            return;
        }
        let mut state = lock(&self.state);
        state.progress.count_mut(kind).done += n;
        let State {
            progress,
            on_progress,
            ..
        } = &mut *state;
        on_progress(progress);
    }

    pub(crate) fn failed(
        &self,
        kind: Kind,
        targets: impl IntoIterator<Item = Target>,
        error: Arc<Error>,
    ) {
        let mut state = lock(&self.state);
        let before = state.failures.len();
        state
            .failures
            .extend(targets.into_iter().map(|target| Failure {
                kind,
                target,
                error: Arc::clone(&error),
            }));
        let n = state.failures.len() - before;
        if n == 0 {
            return;
        }
        state.progress.count_mut(kind).failed += n;
        let State {
            progress,
            on_progress,
            ..
        } = &mut *state;
        on_progress(progress);
    }

    /// Records one change's outcome.
    pub(crate) fn outcome(&self, kind: Kind, target: Target, result: Result<()>) {
        match result {
            Ok(()) => self.done(kind, 1),
            Err(e) => self.failed(kind, [target], Arc::new(e)),
        }
    }

    pub(crate) fn finish(self, elapsed: Duration) -> Report {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = |c: Call| self.calls[c as usize].load(Ordering::Relaxed);
        let mut failures = state.failures;
        failures.sort_by_key(|f| (f.kind, f.target));
        Report {
            progress: state.progress,
            failures,
            calls: Calls {
                select: n(Call::Select),
                insert: n(Call::Insert),
                update: n(Call::Update),
                drop: n(Call::Drop),
                group_get: n(Call::GroupGet),
                group_create: n(Call::GroupCreate),
                group_update: n(Call::GroupUpdate),
                group_delete: n(Call::GroupDelete),
                group_add: n(Call::GroupAdd),
                group_remove: n(Call::GroupRemove),
            },
            converged: self.converged.load(Ordering::Relaxed),
            elapsed,
        }
    }
}

/// Runs `work` on every item with up to `workers` threads, each taking the next item
/// when it is free (so one slow call does not hold up a fixed share of the work).
pub(crate) fn for_each<T: Sync>(workers: usize, items: &[T], work: impl Fn(&T) + Sync) {
    let workers = workers.clamp(1, items.len().max(1));
    if items.is_empty() {
        return;
    }
    let next = AtomicUsize::new(0);
    let run = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = items.get(i) else { break };
        work(item);
    };
    if workers == 1 {
        run();
        return;
    }
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(run);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_and_prints() {
        let mut seen = Vec::new();
        let mut callback = |p: &Progress| seen.push(p.finished());
        let tracker = Tracker::new(&[(Kind::Insert, 2), (Kind::Update, 1)], &mut callback);
        tracker.done(Kind::Insert, 1);
        tracker.outcome(
            Kind::Update,
            Target::Device(DevEui::new(1)),
            Err(Error::Closed(crate::error::Closed::Core)),
        );
        tracker.done(Kind::Insert, 1);
        let _ = tracker.call(Call::Drop, || Ok(()));
        let report = tracker.finish(Duration::from_millis(1500));
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(
            report.count(Kind::Insert),
            Count {
                done: 2,
                failed: 0,
                total: 2
            }
        );
        assert_eq!(report.count(Kind::Delete), Count::default());
        assert_eq!(report.calls().drop, 1);
        assert_eq!(report.calls().total(), 1);
        assert_eq!(
            report.progress().to_string(),
            "insert 2/2, update 0/1 (1 failed)"
        );
        assert_eq!(
            report.to_string(),
            "applied in 1.500 s: insert 2/2, update 0/1 (1 failed); 1 failed; 1 REST calls"
        );
        assert_eq!(
            report.failure_listing().to_string(),
            "update device 0000000000000001: the Core is closed\n"
        );
        assert!(!report.is_success());
    }

    #[test]
    fn pool_runs_every_item_once() {
        let items: Vec<usize> = (0..1000).collect();
        let sum = AtomicUsize::new(0);
        for workers in [0, 1, 7, 5000] {
            sum.store(0, Ordering::SeqCst);
            for_each(workers, &items, |i| {
                sum.fetch_add(*i, Ordering::SeqCst);
            });
            assert_eq!(sum.load(Ordering::SeqCst), 999 * 1000 / 2);
        }
        for_each(4, &[] as &[usize], |_| unreachable!());
    }
}
