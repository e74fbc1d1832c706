//! Uplink de-duplication: a [`Hook`] on an upstream connection.
//!
//! The RAN may deliver the same uplink more than once (several gateways, several
//! routes): the same `PHYPayloadNoMIC` under new transaction ids. The layer hands the
//! first copy to the application and keeps the others; once the application answers the
//! first copy, every copy gets the matching answer. All its state sits behind one mutex
//! touched once per uplink (as a receiving method takes it) and once per answer, both on
//! the application's threads; a small thread per connection sends the answers found
//! while receiving and only wakes on a timer for copies still waiting on an unanswered
//! first copy.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Hook, HookSend};
use crate::ids::DevEui;
use crate::model::{
    UpstreamAck, UpstreamMessage, UpstreamReject, UpstreamRejectResultCode, UpstreamReply,
};

/// Settings of uplink de-duplication; turn it on with
/// [`StreamBuilder::dedup`](crate::StreamBuilder::dedup).
///
/// ```
/// use std::time::Duration;
/// use ran_routing::Dedup;
///
/// let dedup = Dedup::new(Duration::from_secs(60))
///     .answer_within(Duration::from_secs(20))
///     .max_entries(100_000);
/// assert_eq!(dedup.window(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedup {
    window: Duration,
    answer_within: Duration,
    max_entries: usize,
}

impl Dedup {
    /// Copies of an uplink arriving within `window` of the first are duplicates (the
    /// official bridges use 60 s). The other settings start at their defaults.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            answer_within: Duration::from_secs(20),
            max_entries: 100_000,
        }
    }

    /// How long duplicates wait for the application to answer the first copy; then they
    /// are rejected with `Other` and counted in
    /// [`DedupStats::expired_unanswered`]. Default 20 s, as the bridges wait.
    pub fn answer_within(mut self, bound: Duration) -> Self {
        self.answer_within = bound;
        self
    }

    /// How many uplinks are remembered at most (default 100 000). At the cap a new
    /// uplink is handed out without being remembered, so its later copies are handed out
    /// too (each still gets the application's answer); counted in
    /// [`DedupStats::cap_hits`].
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// The de-duplication window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

impl From<Duration> for Dedup {
    fn from(window: Duration) -> Self {
        Self::new(window)
    }
}

/// Counters of uplink de-duplication; see
/// [`UpstreamConnection::dedup_stats`](crate::UpstreamConnection::dedup_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DedupStats {
    /// Duplicate copies received (never handed to the application).
    pub duplicates: u64,
    /// Duplicates answered after the application's answer to the first copy: the same
    /// ack, a `MICFailed` reject where that ack does not fit the copy, or the same
    /// reject.
    pub answered: u64,
    /// Duplicates rejected with `Other` because the first copy was not answered in
    /// time ([`Dedup::answer_within`]).
    pub expired_unanswered: u64,
    /// Uplinks handed out unremembered because [`Dedup::max_entries`] was reached.
    pub cap_hits: u64,
    /// Uplinks remembered now.
    pub entries: usize,
}

/// A copy waiting for the first copy's answer.
struct Held {
    transaction_id: u64,
    dev_euis: Vec<DevEui>,
    mic_challenge: Vec<u32>,
}

impl Held {
    fn of(message: &UpstreamMessage) -> Self {
        Self {
            transaction_id: message.transaction_id,
            dev_euis: message.dev_euis.clone(),
            mic_challenge: message.mic_challenge.clone(),
        }
    }

    /// The answer to this copy, given the application's answer to the first.
    fn answer(&self, first: &UpstreamReply) -> UpstreamReply {
        match first {
            UpstreamReply::Ack(ack)
                if self.mic_challenge.contains(&ack.mic)
                    && self.dev_euis.contains(&ack.dev_eui) =>
            {
                UpstreamAck::new(self.transaction_id, ack.dev_eui, ack.mic).into()
            }
            UpstreamReply::Ack(_) => {
                UpstreamReject::new(self.transaction_id, UpstreamRejectResultCode::MicFailed).into()
            }
            UpstreamReply::Reject(reject) => {
                let mut reject = reject.clone();
                reject.transaction_id = self.transaction_id;
                reject.into()
            }
        }
    }

    fn give_up(&self) -> UpstreamReply {
        UpstreamReject::new(self.transaction_id, UpstreamRejectResultCode::Other)
            .with_message("the first copy of this uplink was not answered in time")
            .into()
    }
}

/// One remembered uplink.
struct Entry {
    key: Key,
    first_transaction_id: u64,
    seen: Instant,
    answer: Option<UpstreamReply>,
    held: Vec<Held>,
}

type Key = Arc<[u8]>;

/// Remembered uplinks sit in a ring in arrival order, which is also the order they
/// expire in; the maps hold sequence numbers into it. An uplink costs one probe of the
/// only big table (by payload), and answering it none: the unanswered first copies are
/// few, and the newest entries of the ring are the ones still in cache.
#[derive(Default)]
struct State {
    /// `ring[i]` has sequence number `base + i`.
    ring: VecDeque<Entry>,
    base: u64,
    by_payload: HashMap<Key, u64>,
    /// First copies not answered yet.
    by_transaction: HashMap<u64, u64>,
    /// Entries with held copies, by when they give up.
    holding: BTreeMap<(Instant, u64), u64>,
    stats: DedupStats,
}

impl State {
    fn entry(&mut self, seq: u64) -> Option<&mut Entry> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.ring.get_mut(index)
    }

    /// Forgets entries older than the window; copies still held are rejected.
    fn expire(&mut self, now: Instant, window: Duration, out: &mut Vec<UpstreamReply>) {
        while self
            .ring
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.seen) >= window)
        {
            let Some(entry) = self.ring.pop_front() else {
                break;
            };
            let seq = self.base;
            self.base += 1;
            // A payload maps to its entry for as long as the entry lives.
            self.by_payload.remove(&entry.key);
            let id = entry.first_transaction_id;
            if self.by_transaction.get(&id) == Some(&seq) {
                self.by_transaction.remove(&id);
            }
            if !entry.held.is_empty() {
                self.holding.retain(|_, held| *held != seq);
                self.stats.expired_unanswered += entry.held.len() as u64;
                out.extend(entry.held.iter().map(Held::give_up));
            }
        }
    }

    /// A copy of the uplink remembered as `seq`: answered at once if the first copy's
    /// answer is known (or overdue), else held for it. `Some(true)` if it is the first
    /// copy held for that uplink (the worker's next wake-up may be earlier); `None` if
    /// nothing is remembered as `seq`.
    fn duplicate(
        &mut self,
        seq: u64,
        message: &UpstreamMessage,
        now: Instant,
        config: &Dedup,
        out: &mut Vec<UpstreamReply>,
    ) -> Option<bool> {
        let entry = self.entry(seq)?;
        let held = Held::of(message);
        let mut hold = None;
        if let Some(first) = &entry.answer {
            out.push(held.answer(first));
            self.stats.answered += 1;
        } else if now.saturating_duration_since(entry.seen) >= config.answer_within {
            out.push(held.give_up());
            self.stats.expired_unanswered += 1;
        } else {
            if entry.held.is_empty() {
                hold = Some((
                    entry.seen + config.answer_within,
                    entry.first_transaction_id,
                ));
            }
            entry.held.push(held);
        }
        self.stats.duplicates += 1;
        if let Some(due) = hold {
            self.holding.insert(due, seq);
        }
        Some(hold.is_some())
    }

    /// Rejects the copies whose first copy was not answered by now.
    fn give_up(&mut self, now: Instant, out: &mut Vec<UpstreamReply>) {
        while let Some(((due, _), _)) = self.holding.first_key_value() {
            if *due > now {
                break;
            }
            let Some((_, seq)) = self.holding.pop_first() else {
                break;
            };
            if let Some(entry) = self.entry(seq) {
                let given_up = entry.held.len() as u64;
                out.extend(entry.held.drain(..).map(|h| h.give_up()));
                self.stats.expired_unanswered += given_up;
            }
        }
    }
}

enum Job {
    Send(Vec<UpstreamReply>),
    /// A copy is held: the worker's next wake-up may be earlier.
    Wake,
}

struct Inner {
    config: Dedup,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

/// The de-duplication layer of one upstream connection.
pub(crate) struct DedupLayer {
    inner: Arc<Inner>,
    jobs: Sender<Job>,
    worker: OnceLock<Receiver<Job>>,
}

impl DedupLayer {
    pub(crate) fn new(config: Dedup) -> Arc<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded();
        let worker = OnceLock::new();
        let _ = worker.set(rx);
        Arc::new(Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
            }),
            jobs,
            worker,
        })
    }

    pub(crate) fn stats(&self) -> DedupStats {
        let state = self.inner.lock();
        DedupStats {
            entries: state.ring.len(),
            ..state.stats
        }
    }

    fn post(&self, replies: Vec<UpstreamReply>) {
        if !replies.is_empty() {
            let _ = self.jobs.send(Job::Send(replies));
        }
    }
}

impl Hook<UpstreamMessage, UpstreamReply> for DedupLayer {
    fn incoming(&self, message: UpstreamMessage) -> Option<UpstreamMessage> {
        let now = Instant::now();
        let config = &self.inner.config;
        let mut out = Vec::new();
        let mut wake = false;
        let deliver = {
            let mut state = self.inner.lock();
            let state = &mut *state;
            state.expire(now, config.window, &mut out);
            let key: Key = message.phy_payload_no_mic.as_slice().into();
            let next = state.base + state.ring.len() as u64;
            let full = state.ring.len() >= config.max_entries;
            match state.by_payload.entry(key) {
                std::collections::hash_map::Entry::Occupied(known) => {
                    let seq = *known.get();
                    match state.duplicate(seq, &message, now, config, &mut out) {
                        Some(held) => {
                            wake = held;
                            false
                        }
                        // A payload maps to a live entry; were it not so, the copy goes
                        // to the application, not nowhere.
                        None => true,
                    }
                }
                std::collections::hash_map::Entry::Vacant(_) if full => {
                    state.stats.cap_hits += 1;
                    true
                }
                std::collections::hash_map::Entry::Vacant(new) => {
                    let key = new.key().clone();
                    new.insert(next);
                    let id = message.transaction_id;
                    state.ring.push_back(Entry {
                        key,
                        first_transaction_id: id,
                        seen: now,
                        answer: None,
                        held: Vec::new(),
                    });
                    state.by_transaction.insert(id, next);
                    true
                }
            }
        };
        self.post(out);
        if wake {
            let _ = self.jobs.send(Job::Wake);
        }
        deliver.then_some(message)
    }

    fn sent(&self, reply: &UpstreamReply) -> Vec<UpstreamReply> {
        let answer_within = self.inner.config.answer_within;
        let mut state = self.inner.lock();
        let state = &mut *state;
        let Some(seq) = state.by_transaction.remove(&reply.transaction_id()) else {
            return Vec::new();
        };
        let Some(entry) = state.entry(seq) else {
            return Vec::new();
        };
        entry.answer = Some(reply.clone());
        if entry.held.is_empty() {
            return Vec::new();
        }
        let due = (entry.seen + answer_within, entry.first_transaction_id);
        let answers: Vec<UpstreamReply> = entry.held.drain(..).map(|h| h.answer(reply)).collect();
        state.holding.remove(&due);
        state.stats.answered += answers.len() as u64;
        answers
    }

    fn start(&self, send: HookSend<UpstreamReply>) {
        let Some(rx) = self.worker.get().cloned() else {
            return;
        };
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("ran-upstream-dedup".into())
            .spawn(move || work(&inner, &rx, &send));
        if let Err(e) = spawned {
            log::error!("upstream: cannot start the de-duplication thread: {e}");
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Sends the answers the reader found, and rejects held copies whose first copy was
/// not answered in time. Ends when the connection (and so the layer) is gone.
fn work(inner: &Inner, jobs: &Receiver<Job>, send: &HookSend<UpstreamReply>) {
    let send_all = |replies: Vec<UpstreamReply>| {
        for reply in replies {
            if let Err(e) = send(&reply) {
                log::warn!(
                    "upstream: cannot answer duplicate {}: {e}",
                    reply.transaction_id()
                );
            }
        }
    };
    loop {
        let now = Instant::now();
        let mut out = Vec::new();
        let next = {
            let mut state = inner.lock();
            state.give_up(now, &mut out);
            state.holding.first_key_value().map(|((due, _), _)| *due)
        };
        send_all(out);
        let wait = next.map_or(Duration::from_secs(3600), |due| {
            due.saturating_duration_since(Instant::now())
        });
        match jobs.recv_timeout(wait) {
            Ok(Job::Send(replies)) => send_all(replies),
            Ok(Job::Wake) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
