//! De-duplication shared through Redis: a [`Hook`] on each upstream connection that uses
//! [`UpstreamBuilder::dedup_in`](crate::UpstreamBuilder::dedup_in).
//!
//! The same rules as in the process (`upstream/dedup.rs`), with the first copy's claim and
//! answer kept in Redis (`shared.rs`), so they hold across connections and processes:
//! exactly one copy of an uplink reaches an application; a copy whose first copy was
//! acked gets that ack where its MIC fits, else `MICFailed`; a rejected first copy hands
//! the uplink to the next copy; copies left unanswered past `answer_within` are rejected
//! with `Other`.
//!
//! Threads: the connection's reader thread claims each read pass's uplinks before they
//! enter the channel (one pipelined round trip per pass, bounded by the store's
//! timeout), so copies never reach the channel. A worker thread per connection records
//! the application's answers (one pipelined round trip for all that are queued), sends
//! the answers of copies and polls Redis for the copies it holds. No lock of ours is
//! held across a round trip.
//!
//! While Redis cannot be reached, uplinks are de-duplicated in the process (an in-process
//! layer beside this one, logged and counted in `DedupStats::store_failures`); the store
//! is tried again after [`RETRY_AFTER`], and used again once it answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::shared::{Answered, Claim, ClaimToken};
use super::RedisStore;
use crate::model::{UpstreamMessage, UpstreamReply};
use crate::stream::{DedupStats, Hook, HookDeliver, HookSend};
use crate::sync::lock;
use crate::upstream::{answer_copy, give_up, Dedup, DedupLayer};

/// How long uplinks stay with the in-process layer after Redis failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often held copies ask Redis whether their first copy was answered.
const POLL: Duration = Duration::from_millis(5);

/// A claim this process holds: the payload's key and the token that proves it.
struct Claimed {
    payload: Vec<u8>,
    token: ClaimToken,
}

/// Whose copy a released copy is: it becomes that side's first copy as it is taken.
enum Released {
    /// Held through Redis: its claim is a first copy's now.
    Shared(Claimed),
    /// Held by the in-process layer (while Redis was away), which must see it again.
    Local,
}

/// A copy waiting for its first copy's answer in another connection or process.
struct Waiting {
    message: UpstreamMessage,
    give_up_at: Instant,
}

enum Job {
    Send(UpstreamReply),
    /// The application answered a first copy: record it for the copies.
    Record(Answered),
    /// A copy is held: poll.
    Wake,
}

struct Shared {
    store: RedisStore,
    config: Dedup,
    /// First copies with the application, by transaction id.
    firsts: Mutex<HashMap<u64, Claimed>>,
    /// Held copies that became first (their first copy was rejected), on their way to
    /// the application through the receiving methods.
    released: Mutex<HashMap<u64, Released>>,
    held: Mutex<Vec<Waiting>>,
    /// When Redis last failed, while uplinks go to the in-process layer.
    outage: Mutex<Option<Instant>>,
    duplicates: AtomicU64,
    answered: AtomicU64,
    expired_unanswered: AtomicU64,
    after_reject: AtomicU64,
    store_failures: AtomicU64,
}

impl Shared {
    /// Whether uplinks go to the in-process layer now (Redis failed lately).
    fn in_outage(&self, now: Instant) -> bool {
        let mut outage = lock(&self.outage);
        match *outage {
            Some(since) if now.saturating_duration_since(since) < RETRY_AFTER => true,
            Some(_) => {
                // Time to try Redis again; the next failure starts a new outage.
                *outage = None;
                false
            }
            None => false,
        }
    }

    fn failed(&self, what: &str, error: &crate::Error) {
        self.store_failures.fetch_add(1, Ordering::Relaxed);
        let mut outage = lock(&self.outage);
        if outage.is_none() {
            log::warn!(
                "upstream: shared de-duplication {what} failed ({error}); de-duplicating in \
                 this process for {RETRY_AFTER:?}"
            );
        }
        *outage = Some(Instant::now());
    }
}

/// Shared de-duplication of one upstream connection.
pub(crate) struct SharedDedup {
    shared: Arc<Shared>,
    /// De-duplicates while Redis is away.
    local: Arc<DedupLayer>,
    jobs: Sender<Job>,
    worker: OnceLock<Receiver<Job>>,
}

impl SharedDedup {
    pub(crate) fn new(store: RedisStore, config: Dedup) -> Arc<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded();
        let worker = OnceLock::new();
        let _ = worker.set(rx);
        Arc::new(Self {
            local: DedupLayer::new(config.clone()),
            shared: Arc::new(Shared {
                store,
                config,
                firsts: Mutex::default(),
                released: Mutex::default(),
                held: Mutex::default(),
                outage: Mutex::default(),
                duplicates: AtomicU64::new(0),
                answered: AtomicU64::new(0),
                expired_unanswered: AtomicU64::new(0),
                after_reject: AtomicU64::new(0),
                store_failures: AtomicU64::new(0),
            }),
            jobs,
            worker,
        })
    }
}

impl SharedDedup {
    /// While Redis is away: the in-process layer takes the batch's copies.
    fn screen_locally(&self, batch: &mut Vec<(UpstreamMessage, Instant)>) {
        let passed = std::mem::take(batch)
            .into_iter()
            .filter_map(|(message, at)| Some((self.local.incoming(message, at)?, at)));
        batch.extend(passed);
    }
}

impl Hook<UpstreamMessage, UpstreamReply> for SharedDedup {
    /// Claims a read pass's uplinks in one pipelined round trip on the reader thread
    /// (bounded by the store's timeout): first copies stay in the batch, copies are
    /// answered or held by the worker.
    fn screen(&self, batch: &mut Vec<(UpstreamMessage, Instant)>) {
        let shared = &self.shared;
        let Some(&(_, read_at)) = batch.first() else {
            return;
        };
        if shared.in_outage(read_at) {
            return self.screen_locally(batch);
        }
        let payloads: Vec<&[u8]> = batch
            .iter()
            .map(|(message, _)| message.phy_payload_no_mic.as_slice())
            .collect();
        let claims = match shared.store.claim(&payloads, shared.config.window()) {
            Ok(claims) => claims,
            Err(e) => {
                shared.failed("claim", &e);
                return self.screen_locally(batch);
            }
        };
        let mut claims = claims.into_iter();
        let mut firsts = Vec::new();
        let mut held = Vec::new();
        for (message, at) in std::mem::take(batch) {
            match claims.next() {
                Some(Claim::First(token)) => {
                    let claimed = Claimed {
                        payload: message.phy_payload_no_mic.clone(),
                        token,
                    };
                    firsts.push((message.transaction_id, claimed));
                    batch.push((message, at));
                }
                Some(Claim::Acked { dev_eui, mic }) => {
                    shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    shared.answered.fetch_add(1, Ordering::Relaxed);
                    let _ = self
                        .jobs
                        .send(Job::Send(answer_copy(&message, (dev_eui, mic))));
                }
                Some(Claim::Pending) | None => {
                    shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    let give_up_at = at + shared.config.answer_within_bound();
                    held.push(Waiting {
                        message,
                        give_up_at,
                    });
                }
            }
        }
        // First copies are known before the application can answer them.
        lock(&shared.firsts).extend(firsts);
        if !held.is_empty() {
            lock(&shared.held).extend(held);
            let _ = self.jobs.send(Job::Wake);
        }
    }

    /// Screened on the reader thread: only a copy released after a rejected first copy
    /// has something to do here (its claim becomes a first copy's).
    fn incoming(&self, message: UpstreamMessage, read_at: Instant) -> Option<UpstreamMessage> {
        let shared = &self.shared;
        let released = lock(&shared.released).remove(&message.transaction_id);
        match released {
            Some(Released::Shared(claimed)) => {
                lock(&shared.firsts).insert(message.transaction_id, claimed);
                Some(message)
            }
            Some(Released::Local) => self.local.incoming(message, read_at),
            None => Some(message),
        }
    }

    fn sent(&self, reply: &UpstreamReply) -> Vec<UpstreamReply> {
        let shared = &self.shared;
        let claimed = lock(&shared.firsts).remove(&reply.transaction_id());
        let Some(Claimed { payload, token }) = claimed else {
            // Not a first copy of ours: one the in-process layer took, if any.
            return self.local.sent(reply);
        };
        // Recorded by the worker, batched with others, off the application's thread.
        let ack = match reply {
            UpstreamReply::Ack(ack) => Some((ack.dev_eui, ack.mic)),
            UpstreamReply::Reject(_) => None,
        };
        let _ = self.jobs.send(Job::Record(Answered {
            payload,
            token,
            ack,
        }));
        Vec::new()
    }

    fn start(&self, send: HookSend<UpstreamReply>, deliver: HookDeliver<UpstreamMessage>) {
        let deliver = Arc::new(deliver);
        self.local.start(
            Box::new({
                let jobs = self.jobs.clone();
                move |reply: &UpstreamReply| {
                    let _ = jobs.send(Job::Send(reply.clone()));
                    Ok(())
                }
            }),
            Box::new({
                let (shared, deliver) = (self.shared.clone(), deliver.clone());
                move |copy: UpstreamMessage| {
                    lock(&shared.released).insert(copy.transaction_id, Released::Local);
                    deliver(copy);
                }
            }),
        );
        let Some(rx) = self.worker.get().cloned() else {
            return;
        };
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("ran-upstream-shared-dedup".into())
            .spawn(move || work(&shared, &rx, &send, &deliver));
        if let Err(e) = spawned {
            log::error!("upstream: cannot start the shared de-duplication thread: {e}");
        }
    }

    fn dedup_stats(&self) -> Option<DedupStats> {
        let shared = &self.shared;
        let local = self.local.stats();
        Some(DedupStats {
            duplicates: local.duplicates + shared.duplicates.load(Ordering::Relaxed),
            answered: local.answered + shared.answered.load(Ordering::Relaxed),
            expired_unanswered: local.expired_unanswered
                + shared.expired_unanswered.load(Ordering::Relaxed),
            after_reject: local.after_reject + shared.after_reject.load(Ordering::Relaxed),
            store_failures: shared.store_failures.load(Ordering::Relaxed),
            ..local
        })
    }
}

/// Sends the answers found, and polls Redis for held copies: answered (send the copy's
/// answer), first (the first copy was rejected: this copy goes to the application), or
/// overdue (rejected with `Other`). Ends when the connection is gone.
fn work(
    shared: &Shared,
    jobs: &Receiver<Job>,
    send: &HookSend<UpstreamReply>,
    deliver: &HookDeliver<UpstreamMessage>,
) {
    let send_one = |reply: UpstreamReply| {
        if let Err(e) = send(&reply) {
            log::warn!(
                "upstream: cannot answer duplicate {}: {e}",
                reply.transaction_id()
            );
        }
    };
    loop {
        let holding = !lock(&shared.held).is_empty();
        let job = if holding {
            jobs.recv_timeout(POLL)
        } else {
            jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let mut answers = Vec::new();
        let mut handle = |job| match job {
            Job::Send(reply) => send_one(reply),
            Job::Record(answer) => answers.push(answer),
            Job::Wake => {}
        };
        match job {
            Ok(job) => handle(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Whatever else is queued goes in the same round trip.
        jobs.try_iter().for_each(&mut handle);
        if !answers.is_empty() {
            if let Err(e) = shared.store.record_answers(&answers) {
                shared.failed("answer", &e);
            }
        }
        poll(shared, &send_one, deliver);
    }
}

fn poll(shared: &Shared, send_one: &dyn Fn(UpstreamReply), deliver: &HookDeliver<UpstreamMessage>) {
    let waiting = std::mem::take(&mut *lock(&shared.held));
    if waiting.is_empty() {
        return;
    }
    let payloads: Vec<&[u8]> = waiting
        .iter()
        .map(|w| w.message.phy_payload_no_mic.as_slice())
        .collect();
    let claims = match shared.store.claim(&payloads, shared.config.window()) {
        Ok(claims) => claims,
        Err(e) => {
            shared.failed("poll", &e);
            Vec::new()
        }
    };
    let now = Instant::now();
    let mut still = Vec::new();
    let mut claims = claims.into_iter();
    for waiting in waiting {
        match claims.next() {
            Some(Claim::Acked { dev_eui, mic }) => {
                shared.answered.fetch_add(1, Ordering::Relaxed);
                send_one(answer_copy(&waiting.message, (dev_eui, mic)));
            }
            Some(Claim::First(token)) => {
                // Counted as a duplicate when held; it goes to the application after all.
                shared.duplicates.fetch_sub(1, Ordering::Relaxed);
                shared.after_reject.fetch_add(1, Ordering::Relaxed);
                let claimed = Claimed {
                    payload: waiting.message.phy_payload_no_mic.clone(),
                    token,
                };
                lock(&shared.released)
                    .insert(waiting.message.transaction_id, Released::Shared(claimed));
                deliver(waiting.message);
            }
            Some(Claim::Pending) | None if now >= waiting.give_up_at => {
                shared.expired_unanswered.fetch_add(1, Ordering::Relaxed);
                send_one(give_up(&waiting.message));
            }
            Some(Claim::Pending) | None => still.push(waiting),
        }
    }
    lock(&shared.held).extend(still);
}

impl crate::UpstreamBuilder<'_> {
    /// De-duplication shared through Redis (feature `redis`): the rules of
    /// [`dedup`](Self::dedup), for every connection, in any process, that opens the same
    /// store and prefix. Use it when several LNS processes share one RAN account: the
    /// API deals copies of one uplink to its connections round robin, so each process's
    /// own de-duplication would let its copy through.
    ///
    /// Exactly one copy of an uplink reaches an application; every other copy, in
    /// whichever process it lands, is answered as the first was (an ack where its MIC
    /// fits the copy, else `MICFailed`; a reject is never copied: the next copy goes to
    /// an application), within [`Dedup::answer_within`]'s default bound. The reader
    /// thread claims what each read of the socket brought in one pipelined Redis round
    /// trip, before the uplinks enter the channel; answers are recorded in batches by a
    /// worker thread; copies held for an answer are polled every few milliseconds.
    ///
    /// If Redis fails while running, uplinks are de-duplicated in this process instead
    /// (logged, counted in [`DedupStats::store_failures`]), and Redis is tried again
    /// every second: it is used again once it answers.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use ran_routing::redis::RedisStore;
    /// use ran_routing::Core;
    ///
    /// let store = RedisStore::open("redis://127.0.0.1:6379/0")?;
    /// let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let upstream = ran.upstream().dedup_in(&store, Duration::from_secs(60)).connect()?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn dedup_in(mut self, store: &RedisStore, window: Duration) -> Self {
        let (store, config) = (store.clone(), Dedup::new(window));
        self.hook = Some(Arc::new(
            move || -> Arc<dyn Hook<UpstreamMessage, UpstreamReply>> {
                SharedDedup::new(store.clone(), config.clone())
            },
        ));
        self
    }
}
