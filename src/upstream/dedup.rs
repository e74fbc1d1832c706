//! Uplink de-duplication: a [`Hook`] on an upstream connection.
//!
//! The RAN may deliver the same uplink more than once (several gateways, several
//! routes): the same `PHYPayloadNoMIC` under new transaction ids. The layer hands the
//! first copy to the application and keeps the others; once the application acks the
//! first copy, every copy gets the matching answer. A reject is never passed on: the
//! payload without its MIC is public and predictable (a join request's above all), so a
//! forged copy with a wrong MIC can arrive first, and its reject must not stand for the
//! genuine frame; the next copy of a rejected uplink goes to the application instead.
//! Payloads longer than a LoRaWAN PHYPayload (255 bytes) are handed out unremembered, so
//! that what is remembered stays bounded. All its state sits behind one mutex
//! touched once per uplink (as a receiving method takes it) and once per answer, both on
//! the application's threads; a small thread per connection sends the answers found
//! while receiving and only wakes on a timer for copies still waiting on an unanswered
//! first copy.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use hashbrown::HashTable;

use crate::ids::DevEui;
use crate::model::{
    UpstreamAck, UpstreamMessage, UpstreamReject, UpstreamRejectResultCode, UpstreamReply,
};
use crate::stream::stats::DedupStats;
use crate::stream::{Hook, HookDeliver, HookSend};

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
    /// The longest payload remembered: a LoRaWAN PHYPayload is at most 255 bytes, so a
    /// longer `PHYPayloadNoMIC` is no frame a device sent; it is handed out unremembered.
    pub const MAX_PAYLOAD: usize = 255;

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
    ///
    /// Memory: a remembered uplink takes about 55 bytes (its 48-byte entry and its share
    /// of the table) plus its payload, which is at most [`Dedup::MAX_PAYLOAD`] (255)
    /// bytes: a longer one is handed out unremembered ([`DedupStats::oversized`]). The
    /// byte ring may hold twice what it stores while it grows, so whatever the peer
    /// sends, an entry costs at most about 570 bytes up to 2^20 entries (the default
    /// 100 000: under 57 MB) and about 650 beyond. Copies held for an unanswered first
    /// copy keep their DevEUIs and MIC candidates on top, for at most
    /// [`Dedup::answer_within`]. Room for `entries` (at most 2^20) is
    /// reserved when the connection opens, as address space that pages fill as uplinks
    /// are remembered, so that filling up does not copy the ring or rehash the table over
    /// and over.
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// The de-duplication window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How long copies wait for the first copy's answer.
    #[cfg(feature = "redis")]
    pub(crate) fn answer_within_bound(&self) -> Duration {
        self.answer_within
    }
}

impl From<Duration> for Dedup {
    fn from(window: Duration) -> Self {
        Self::new(window)
    }
}

/// The answer to a copy, given the application's ack of its first copy: the same ack
/// where its MIC is among this copy's candidates, else `MICFailed`.
pub(crate) fn answer_copy(copy: &UpstreamMessage, (dev_eui, mic): (DevEui, u32)) -> UpstreamReply {
    if copy.mic_challenge.contains(&mic) && copy.dev_euis.contains(&dev_eui) {
        UpstreamAck::new(copy.transaction_id, dev_eui, mic).into()
    } else {
        UpstreamReject::new(copy.transaction_id, UpstreamRejectResultCode::MicFailed).into()
    }
}

/// The answer to a copy whose first copy went unanswered for `answer_within`.
pub(crate) fn give_up(copy: &UpstreamMessage) -> UpstreamReply {
    UpstreamReject::new(copy.transaction_id, UpstreamRejectResultCode::Other)
        .with_message("the first copy of this uplink was not answered in time")
        .into()
}

/// Whether, and how, a first copy was answered; an ack is kept in the entry. A reject
/// is not: the next copy becomes the first copy, and goes to the application.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answered {
    Not,
    Ack,
    Rejected,
}

/// One remembered uplink, 48 bytes. Kept small because memory touched for the first
/// time is most of what remembering costs (measured while the ring fills: a page fault
/// every few dozen uplinks, each dearer than the layer's own work on them).
struct Entry {
    hash: u64,
    /// Where its payload starts in [`State::payloads`], counted from the first byte ever
    /// stored there; `len` bytes long.
    start: u64,
    len: u8,
    /// When it arrived, in nanoseconds since [`State::origin`].
    seen: u64,
    first_transaction_id: u64,
    answered: Answered,
    /// The ack's DevEUI and MIC, when `answered` is `Ack`.
    dev_eui: DevEui,
    mic: u32,
}

impl Entry {
    /// How long ago it arrived, at `now` (nanoseconds since [`State::origin`]).
    fn age(&self, now: u64) -> Duration {
        Duration::from_nanos(now.saturating_sub(self.seen))
    }

    /// Its key in [`State::holding`]: when copies held for it give up.
    fn due(&self, answer_within: Duration) -> (u64, u64) {
        (
            self.seen.saturating_add(nanos_of(answer_within)),
            self.first_transaction_id,
        )
    }
}

/// Remembered uplinks sit in a ring in arrival order, which is also the order they
/// expire in, and their payloads back to back in a ring of bytes beside it (no
/// allocation per uplink); the maps hold sequence numbers into the ring. An uplink costs
/// one hash of its payload and one probe of the only big table, keyed by that hash (a
/// keyed SipHash: payloads are chosen over the air), so the table never hashes a payload
/// again as it grows; answering costs no probe of it.
struct State {
    origin: Instant,
    /// `ring[i]` has sequence number `base + i`.
    ring: VecDeque<Entry>,
    base: u64,
    /// `payloads[i]` is byte `payloads_base + i` of all payloads ever remembered.
    payloads: VecDeque<u8>,
    payloads_base: u64,
    hasher: RandomState,
    /// Remembered payloads: each slot is a sequence number's low 32 bits (the ring never
    /// holds 2^32 entries), found by the payload's hash kept in its entry.
    by_hash: HashTable<u32>,
    /// First copies not answered yet.
    by_transaction: U64Map<u64>,
    /// Copies waiting for their first copy's answer, by the first copy's sequence number.
    /// (Whole messages: after a rejected first copy they go to the application.)
    held: U64Map<Vec<UpstreamMessage>>,
    /// Entries with held copies, by when they give up (nanoseconds since `origin`).
    holding: BTreeMap<(u64, u64), u64>,
    stats: DedupStats,
}

/// A table keyed by transaction ids (from the RAN, not the air) or sequence numbers
/// (ours): a seeded multiply is hash enough.
type U64Map<V> = HashMap<u64, V, Seeded>;

/// Hashes the `u64` keys of a table with a multiply seeded per table.
#[derive(Clone, Copy)]
struct Seeded(u64);

impl Seeded {
    fn new(hasher: &RandomState) -> Self {
        Self(hasher.hash_one(0x5eed_u64))
    }
}

impl BuildHasher for Seeded {
    type Hasher = SeededHasher;

    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else rather than lose it.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, key: u64) {
        // The product's halves folded, as foldhash does.
        let product = u128::from(key ^ self.0) * u128::from(0x9e37_79b9_7f4a_7c15_u64);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

/// What became of an incoming uplink.
enum Seen {
    /// A new uplink, remembered: goes to the application.
    First,
    /// Goes to the application without being remembered (the cap was hit, another
    /// remembered payload shares its hash, or it is too long to be a LoRaWAN frame).
    Unremembered,
    /// A copy of an uplink whose first copy was rejected: goes to the application as
    /// the uplink's first copy now.
    AfterReject,
    /// A copy, answered or held. `true`: the first copy held for its uplink (the worker's
    /// next wake-up may be earlier).
    Copy(bool),
}

/// Entries reserved for up front in the ring and the payload table (memory is touched
/// only as they fill, but for the table's 1-byte control words), so that filling them
/// neither copies the ring nor rehashes the table over and over.
const RESERVE_ENTRIES: usize = 1 << 20;

impl State {
    fn new(config: &Dedup) -> Self {
        let hasher = RandomState::new();
        let reserve = config.max_entries.min(RESERVE_ENTRIES);
        let seeded = Seeded::new(&hasher);
        Self {
            origin: Instant::now(),
            ring: VecDeque::with_capacity(reserve),
            base: 0,
            payloads: VecDeque::new(),
            payloads_base: 0,
            by_hash: HashTable::with_capacity(reserve),
            by_transaction: HashMap::with_hasher(seeded),
            held: HashMap::with_hasher(seeded),
            hasher,
            holding: BTreeMap::new(),
            stats: DedupStats::default(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The ring index of the entry whose sequence number ends in `low`.
    fn slot(base: u64, low: u32) -> usize {
        low.wrapping_sub(base as u32) as usize
    }

    /// The payload hash of the entry a table slot points at (every slot points at a live
    /// entry; a miss is a bug, which must not become a panic on the consumer's thread).
    fn hash_at(ring: &VecDeque<Entry>, base: u64, low: u32) -> Option<u64> {
        ring.get(Self::slot(base, low)).map(|entry| entry.hash)
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (index < self.ring.len()).then_some(index)
    }

    /// When the next held copies give up.
    fn next_due(&self) -> Option<Instant> {
        let ((due, _), _) = self.holding.first_key_value()?;
        Some(self.origin + Duration::from_nanos(*due))
    }

    /// Takes one uplink in: remembers it, or answers or holds it as a copy.
    fn incoming(
        &mut self,
        message: &UpstreamMessage,
        now: Instant,
        config: &Dedup,
        out: &mut Vec<UpstreamReply>,
    ) -> Seen {
        let now = self.nanos(now);
        self.expire(now, config.window, out);
        let payload = message.phy_payload_no_mic.as_slice();
        if payload.len() > Dedup::MAX_PAYLOAD {
            self.stats.oversized += 1;
            log::debug!(
                "upstream: uplink {} has a {}-byte payload, longer than a LoRaWAN frame; \
                 not remembered",
                message.transaction_id,
                payload.len()
            );
            return Seen::Unremembered;
        }
        let hash = self.hasher.hash_one(payload);
        let next = self.base + self.ring.len() as u64;
        let (ring, base) = (&self.ring, self.base);
        // A slot found is a live entry: `hash_at` saw it in the ring.
        let known = self
            .by_hash
            .find(hash, |&low| Self::hash_at(ring, base, low) == Some(hash))
            .map(|&low| Self::slot(base, low));
        if let Some(index) = known {
            let entry = &self.ring[index];
            if self.stored_payload_is((entry.start, entry.len), payload) {
                let seq = base + index as u64;
                if entry.answered == Answered::Rejected {
                    return self.first_again(index, seq, message);
                }
                return Seen::Copy(self.duplicate(seq, message, now, config, out));
            }
            // Two payloads, one 64-bit keyed hash: not worth a chain; the newcomer goes
            // out as if the cap were hit, never nowhere.
            log::debug!(
                "upstream: uplink {} shares a payload hash; not remembered",
                message.transaction_id
            );
            return Seen::Unremembered;
        }
        if self.ring.len() >= config.max_entries.min(u32::MAX as usize) {
            self.stats.cap_hits += 1;
            return Seen::Unremembered;
        }
        // At most MAX_PAYLOAD bytes, checked above, which fits the entry's byte.
        const _: () = assert!(Dedup::MAX_PAYLOAD <= u8::MAX as usize);
        let len = payload.len() as u8;
        let id = message.transaction_id;
        let start = self.payloads_base + self.payloads.len() as u64;
        self.payloads.extend(payload);
        self.ring.push_back(Entry {
            hash,
            start,
            len,
            seen: now,
            first_transaction_id: id,
            answered: Answered::Not,
            dev_eui: DevEui::new(0),
            mic: 0,
        });
        let ring = &self.ring;
        self.by_hash.insert_unique(hash, next as u32, |&low| {
            Self::hash_at(ring, base, low).unwrap_or_default()
        });
        self.by_transaction.insert(id, next);
        Seen::First
    }

    /// Whether the payload stored at `(start, len)` is `payload`.
    fn stored_payload_is(&self, (start, len): (u64, u8), payload: &[u8]) -> bool {
        let Some(from) = start
            .checked_sub(self.payloads_base)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return false;
        };
        let to = from + usize::from(len);
        usize::from(len) == payload.len()
            && to <= self.payloads.len()
            && self.payloads.range(from..to).eq(payload.iter())
    }

    /// A copy of an uplink whose first copy was rejected (the entry at `index`, sequence
    /// number `seq`): it becomes the first copy, for the application to answer, and
    /// later copies wait for that answer. The window still counts from the first
    /// sighting; so does [`Dedup::answer_within`] for copies held behind it.
    fn first_again(&mut self, index: usize, seq: u64, message: &UpstreamMessage) -> Seen {
        let entry = &mut self.ring[index];
        entry.answered = Answered::Not;
        entry.first_transaction_id = message.transaction_id;
        self.by_transaction.insert(message.transaction_id, seq);
        self.stats.after_reject += 1;
        Seen::AfterReject
    }

    /// Forgets entries older than the window; copies still held are rejected.
    fn expire(&mut self, now: u64, window: Duration, out: &mut Vec<UpstreamReply>) {
        while self.ring.front().is_some_and(|e| e.age(now) >= window) {
            let Some(entry) = self.ring.pop_front() else {
                break;
            };
            let seq = self.base;
            self.base += 1;
            // Payloads are stored in ring order: this one is at the front.
            self.payloads.drain(..usize::from(entry.len));
            self.payloads_base += u64::from(entry.len);
            if let Ok(slot) = self
                .by_hash
                .find_entry(entry.hash, |&low| low == seq as u32)
            {
                slot.remove();
            }
            match entry.answered {
                Answered::Not => {
                    let id = entry.first_transaction_id;
                    if self.by_transaction.get(&id) == Some(&seq) {
                        self.by_transaction.remove(&id);
                    }
                }
                Answered::Ack | Answered::Rejected => {}
            }
            if let Some(held) = self.held.remove(&seq) {
                self.holding.retain(|_, holder| *holder != seq);
                self.reject_unanswered(&held, out);
            }
        }
    }

    /// A copy of the uplink remembered as `seq` (which is live): answered at once if the
    /// first copy's answer is known (or overdue), else held for it. `true` if it is the
    /// first copy held for that uplink.
    fn duplicate(
        &mut self,
        seq: u64,
        message: &UpstreamMessage,
        now: u64,
        config: &Dedup,
        out: &mut Vec<UpstreamReply>,
    ) -> bool {
        self.stats.duplicates += 1;
        let Some(index) = self.index(seq) else {
            return false;
        };
        let entry = &self.ring[index];
        if entry.answered == Answered::Ack {
            out.push(answer_copy(message, (entry.dev_eui, entry.mic)));
            self.stats.answered += 1;
            return false;
        }
        if entry.age(now) >= config.answer_within {
            out.push(give_up(message));
            self.stats.expired_unanswered += 1;
            return false;
        }
        let due = entry.due(config.answer_within);
        let copies = self.held.entry(seq).or_default();
        copies.push(message.clone());
        let first_held = copies.len() == 1;
        if first_held {
            self.holding.insert(due, seq);
        }
        first_held
    }

    /// The application answered a first copy: remembers the answer for later copies
    /// and returns the answers of the copies held for it.
    /// Copies held for a rejected first copy go to `released`: handed back to the
    /// application through the receiving methods, the first of them is the uplink's
    /// first copy again (a reject is never copied).
    fn answered(
        &mut self,
        reply: &UpstreamReply,
        answer_within: Duration,
        released: &mut Vec<UpstreamMessage>,
    ) -> Vec<UpstreamReply> {
        let Some(seq) = self.by_transaction.remove(&reply.transaction_id()) else {
            return Vec::new();
        };
        let Some(index) = self.index(seq) else {
            return Vec::new();
        };
        let entry = &mut self.ring[index];
        match reply {
            UpstreamReply::Ack(ack) => {
                entry.answered = Answered::Ack;
                entry.dev_eui = ack.dev_eui;
                entry.mic = ack.mic;
            }
            UpstreamReply::Reject(_) => entry.answered = Answered::Rejected,
        }
        let due = entry.due(answer_within);
        let Some(held) = self.held.remove(&seq) else {
            return Vec::new();
        };
        self.holding.remove(&due);
        let UpstreamReply::Ack(ack) = reply else {
            // Counted as duplicates when held; they go to the application after all.
            self.stats.duplicates -= held.len() as u64;
            released.extend(held);
            return Vec::new();
        };
        let answers: Vec<UpstreamReply> = held
            .iter()
            .map(|copy| answer_copy(copy, (ack.dev_eui, ack.mic)))
            .collect();
        self.stats.answered += answers.len() as u64;
        answers
    }

    /// Rejects the copies whose first copy was not answered by now.
    fn give_up(&mut self, now: Instant, out: &mut Vec<UpstreamReply>) {
        let now = self.nanos(now);
        while let Some(((due, _), _)) = self.holding.first_key_value() {
            if *due > now {
                break;
            }
            let Some((_, seq)) = self.holding.pop_first() else {
                break;
            };
            if let Some(held) = self.held.remove(&seq) {
                self.reject_unanswered(&held, out);
            }
        }
    }

    /// Rejects copies whose first copy went unanswered, counted.
    fn reject_unanswered(&mut self, held: &[UpstreamMessage], out: &mut Vec<UpstreamReply>) {
        self.stats.expired_unanswered += held.len() as u64;
        out.extend(held.iter().map(give_up));
    }
}

fn nanos_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
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
    /// Hands copies of a rejected uplink back to the application; set by `start`.
    deliver: OnceLock<HookDeliver<UpstreamMessage>>,
}

impl DedupLayer {
    pub(crate) fn new(config: Dedup) -> Arc<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded();
        let worker = OnceLock::new();
        let _ = worker.set(rx);
        Arc::new(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(&config)),
                config,
            }),
            jobs,
            worker,
            deliver: OnceLock::new(),
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
    fn incoming(&self, message: UpstreamMessage, read_at: Instant) -> Option<UpstreamMessage> {
        let now = read_at;
        let mut out = Vec::new();
        let seen = self
            .inner
            .lock()
            .incoming(&message, now, &self.inner.config, &mut out);
        self.post(out);
        match seen {
            Seen::First | Seen::Unremembered | Seen::AfterReject => Some(message),
            Seen::Copy(first_held) => {
                if first_held {
                    let _ = self.jobs.send(Job::Wake);
                }
                None
            }
        }
    }

    fn sent(&self, reply: &UpstreamReply) -> Vec<UpstreamReply> {
        let answer_within = self.inner.config.answer_within;
        let mut released = Vec::new();
        let mut answers = self
            .inner
            .lock()
            .answered(reply, answer_within, &mut released);
        for copy in released {
            match self.deliver.get() {
                Some(deliver) => deliver(copy),
                // Not started: no way to the application; the copy is answered, not lost.
                None => answers.push(give_up(&copy)),
            }
        }
        answers
    }

    fn start(&self, send: HookSend<UpstreamReply>, deliver: HookDeliver<UpstreamMessage>) {
        let _ = self.deliver.set(deliver);
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

    fn dedup_stats(&self) -> Option<DedupStats> {
        Some(self.stats())
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
            state.next_due()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn uplink(id: u64, payload: &[u8]) -> UpstreamMessage {
        serde_json::from_value(serde_json::json!({
            "ProtocolVersion": 1,
            "TransactionID": id,
            "DevEUIs": [1],
            "Radio": {"Frequency": 868100000, "LoRa": {"Spreading": 7, "Bandwidth": 125000},
                      "RSSI": -52.0, "SNR": 9.25},
            "PHYPayloadNoMIC": payload,
            "MICChallenge": [7],
        }))
        .unwrap()
    }

    fn take(state: &mut State, id: u64, payload: &[u8], at: Instant) -> (Seen, Vec<UpstreamReply>) {
        let config = Dedup::new(Duration::from_secs(60));
        let mut out = Vec::new();
        let seen = state.incoming(&uplink(id, payload), at, &config, &mut out);
        (seen, out)
    }

    #[test]
    fn an_entry_stays_small() {
        assert!(std::mem::size_of::<Entry>() <= 48);
    }

    #[test]
    fn payloads_stay_matched_to_their_entries_as_older_ones_expire() {
        let config = Dedup::new(Duration::from_secs(60));
        let mut state = State::new(&config);
        let t0 = state.origin;
        assert!(matches!(take(&mut state, 1, &[1, 2, 3], t0).0, Seen::First));
        let t1 = t0 + Duration::from_secs(50);
        assert!(matches!(take(&mut state, 2, &[4, 5], t1).0, Seen::First));
        // The first entry (and its three bytes) expires; the second's bytes move to the
        // front of the byte ring and must still be found.
        let t2 = t0 + Duration::from_secs(61);
        let (seen, out) = take(&mut state, 3, &[4, 5], t2);
        assert!(
            matches!(seen, Seen::Copy(true)),
            "held for the unanswered first copy"
        );
        assert!(out.is_empty());
        assert!(matches!(take(&mut state, 4, &[1, 2, 3], t2).0, Seen::First));
        assert!(matches!(take(&mut state, 5, &[4, 5, 6], t2).0, Seen::First));
        assert_eq!(state.ring.len(), 3);
        assert_eq!(state.payloads.len(), 2 + 3 + 3);
    }

    #[test]
    fn sequence_numbers_past_32_bits_still_find_their_entries() {
        let config = Dedup::new(Duration::from_secs(60));
        let mut state = State::new(&config);
        // The table keeps sequence numbers' low 32 bits: start just below the wrap.
        state.base = u64::from(u32::MAX) - 1;
        let t0 = state.origin;
        for i in 0..4u8 {
            assert!(matches!(
                take(&mut state, u64::from(i), &[i], t0).0,
                Seen::First
            ));
        }
        for i in 0..4u8 {
            let (seen, _) = take(&mut state, 10 + u64::from(i), &[i], t0);
            assert!(matches!(seen, Seen::Copy(_)), "copy of uplink {i}");
        }
        // Expiry removes the right slots across the wrap too.
        take(&mut state, 20, &[9], t0 + Duration::from_secs(61));
        assert_eq!(state.ring.len(), 1);
        assert_eq!(state.by_hash.len(), 1);
        assert!(matches!(
            take(&mut state, 21, &[9], t0 + Duration::from_secs(61)).0,
            Seen::Copy(_)
        ));
    }

    #[test]
    fn another_payload_under_a_remembered_hash_is_handed_out_not_taken_for_a_copy() {
        let config = Dedup::new(Duration::from_secs(60));
        let mut state = State::new(&config);
        let t0 = state.origin;
        assert!(matches!(take(&mut state, 1, &[1, 2, 3], t0).0, Seen::First));
        // Pretend [9, 9] hashes like [1, 2, 3] (a 64-bit collision).
        let other = state.hasher.hash_one([9u8, 9].as_slice());
        state.ring[0].hash = other;
        let ring = &state.ring;
        state.by_hash.clear();
        state
            .by_hash
            .insert_unique(other, 0, |&low| ring[low as usize].hash);
        let (seen, out) = take(&mut state, 2, &[9, 9], t0);
        assert!(matches!(seen, Seen::Unremembered));
        assert!(out.is_empty());
        assert_eq!(state.stats.duplicates, 0);
    }

    #[test]
    fn a_payload_longer_than_a_lorawan_frame_is_handed_out_unremembered_and_counted() {
        let config = Dedup::new(Duration::from_secs(60));
        let mut state = State::new(&config);
        let t0 = state.origin;
        let longest = vec![1u8; Dedup::MAX_PAYLOAD];
        assert!(matches!(take(&mut state, 1, &longest, t0).0, Seen::First));
        assert!(matches!(take(&mut state, 2, &longest, t0).0, Seen::Copy(_)));
        let big = vec![0u8; Dedup::MAX_PAYLOAD + 1];
        for id in [3, 4] {
            assert!(matches!(
                take(&mut state, id, &big, t0).0,
                Seen::Unremembered
            ));
        }
        assert_eq!(state.ring.len(), 1);
        assert_eq!(state.payloads.len(), Dedup::MAX_PAYLOAD);
        assert_eq!((state.stats.oversized, state.stats.cap_hits), (2, 0));
    }

    #[test]
    fn an_ack_is_copied_from_the_compact_entry_a_reject_never() {
        let config = Dedup::new(Duration::from_secs(60));
        let mut state = State::new(&config);
        let t0 = state.origin;
        take(&mut state, 1, &[1], t0);
        take(&mut state, 2, &[2], t0);
        let ack: UpstreamReply = UpstreamAck::new(1, DevEui::new(1), 7).into();
        assert!(state
            .answered(&ack, config.answer_within, &mut Vec::new())
            .is_empty());
        let reject: UpstreamReply = UpstreamReject::new(2, UpstreamRejectResultCode::MicFailed)
            .with_message("forged")
            .into();
        assert!(state
            .answered(&reject, config.answer_within, &mut Vec::new())
            .is_empty());
        let (_, out) = take(&mut state, 11, &[1], t0);
        assert_eq!(out, vec![UpstreamAck::new(11, DevEui::new(1), 7).into()]);
        // The rejected uplink's next copy is the application's, as a first copy ...
        let (seen, out) = take(&mut state, 12, &[2], t0);
        assert!(matches!(seen, Seen::AfterReject));
        assert!(out.is_empty());
        // ... whose copies wait for its answer, and get its ack.
        let (seen, out) = take(&mut state, 13, &[2], t0);
        assert!(matches!(seen, Seen::Copy(true)));
        assert!(out.is_empty());
        let ack: UpstreamReply = UpstreamAck::new(12, DevEui::new(1), 7).into();
        assert_eq!(
            state.answered(&ack, config.answer_within, &mut Vec::new()),
            vec![UpstreamAck::new(13, DevEui::new(1), 7).into()]
        );
        assert_eq!(
            (state.stats.after_reject, state.stats.answered),
            (1, 2),
            "one copy handed out again, two answered"
        );
        assert!(state.by_transaction.is_empty());
        assert!(state.holding.is_empty());
    }

    #[test]
    fn copies_held_for_a_rejected_first_copy_go_back_to_the_application() {
        let config = Dedup::new(Duration::from_secs(60));
        let mut state = State::new(&config);
        let t0 = state.origin;
        take(&mut state, 1, &[5], t0);
        // Other workers took two copies while the first was being answered: held.
        assert!(matches!(take(&mut state, 2, &[5], t0).0, Seen::Copy(true)));
        assert!(matches!(take(&mut state, 3, &[5], t0).0, Seen::Copy(false)));
        let reject: UpstreamReply =
            UpstreamReject::new(1, UpstreamRejectResultCode::MicFailed).into();
        let mut released = Vec::new();
        let answers = state.answered(&reject, config.answer_within, &mut released);
        assert!(answers.is_empty(), "a reject was copied: {answers:?}");
        let ids: Vec<u64> = released.iter().map(|m| m.transaction_id).collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(state.stats.duplicates, 0);
        // Taken again: the first is the uplink's first copy now, the next waits for it.
        assert!(matches!(take(&mut state, 2, &[5], t0).0, Seen::AfterReject));
        assert!(matches!(take(&mut state, 3, &[5], t0).0, Seen::Copy(true)));
        let ack: UpstreamReply = UpstreamAck::new(2, DevEui::new(1), 7).into();
        assert_eq!(
            state.answered(&ack, config.answer_within, &mut released),
            vec![UpstreamAck::new(3, DevEui::new(1), 7).into()]
        );
        assert_eq!(released.len(), 2, "nothing more released");
    }
}
