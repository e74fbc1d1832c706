//! Non-blocking downlink tracking: downlinks tagged with the caller's ids, their outcomes
//! from one receiver.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvError, RecvTimeoutError, Sender, TryRecvError};

use crate::error::{CloseReason, Closed, Error};
use crate::model::{DownstreamAck, DownstreamReply, DownstreamRequest, DownstreamResult};
use crate::stream::correlate::Correlator;
use crate::stream::Outlet;

/// The outcome of one tagged downlink, from a [`DownlinkTracker`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Tracked<T> {
    /// The tag it was sent with.
    pub tag: T,
    /// Its transaction id.
    pub transaction_id: u64,
    /// Its [`DownstreamResult`] (check
    /// [`result_code`](DownstreamResult::result_code) and
    /// [`is_too_early`](DownstreamResult::is_too_early)), or why there is none:
    ///
    /// - [`Error::DownstreamTimeout`]: no result within the tracker's timeout, with the
    ///   RAN's ack if it came;
    /// - [`Error::DownstreamInterrupted`]: the connection closed for good first;
    /// - any other error: the downlink was not sent (invalid, transaction id in use,
    ///   not connected, the write failed).
    pub outcome: Result<DownstreamResult, Error>,
}

struct Entry<T> {
    tag: T,
    deadline: Instant,
    ack: Option<DownstreamAck>,
}

struct State<T> {
    entries: HashMap<u64, Entry<T>>,
    /// Deadlines in send order (one timeout for all, so they are sorted); entries
    /// answered already are skipped when their turn comes.
    order: VecDeque<(Instant, u64)>,
    ready: VecDeque<Tracked<T>>,
}

/// Tracks tagged downlinks on a [`DownstreamConnection`](crate::DownstreamConnection)
/// without a thread per downlink; create it with
/// [`DownstreamConnection::tracker`](crate::DownstreamConnection::tracker).
///
/// [`send_and_wait`](crate::DownstreamConnection::send_and_wait) blocks a thread per
/// downlink. A tracker does not: [`send`](Self::send) returns once the downlink is
/// written, and the outcomes come, one per tagged downlink, from [`recv`](Self::recv),
/// [`recv_timeout`](Self::recv_timeout), [`try_recv`](Self::try_recv),
/// [`iter`](Self::iter) and [`try_iter`](Self::try_iter).
///
/// Every [`send`](Self::send) yields exactly one [`Tracked`] outcome: the downlink's
/// result, a timeout (with the ack if one came), the end of the connection, or the send
/// error. Entries expire on their own after the tracker's timeout, checked by whoever
/// receives; [`in_flight`](Self::in_flight) counts those still waiting.
///
/// The tracker is `Send + Sync`: many threads may send while one receives (receiving
/// calls take turns). Replies to tracked downlinks go to the tracker only, never to the
/// connection's own [`iter`](crate::DownstreamConnection::iter); a reply that comes after its downlink
/// timed out goes to the connection's `iter()`. Tracking survives reconnection: a
/// result that comes on the new link still finds its downlink. Transaction ids are the
/// caller's, e.g. from [`Core::next_transaction_id`](crate::Core::next_transaction_id);
/// one in use (tracked, or awaited by `send_and_wait`) is refused.
///
/// ```no_run
/// use std::time::Duration;
/// use ran_routing::{Core, DevEui, DownstreamMessage, DownstreamRadio, LoRaModulation, TransmissionWindow};
///
/// let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
/// let downstream = ran.downstream().connect()?;
/// let tracker = downstream.tracker::<&str>(Duration::from_secs(10));
/// let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
/// let downlink = DownstreamMessage::new(
///     ran.next_transaction_id(),
///     DevEui::new(0x7ABE1B8C93D7174F),
///     TransmissionWindow::class_a(radio, 1),
///     b"payload".to_vec(),
/// );
/// tracker.send("queue-item-17", downlink);
/// for tracked in tracker.try_iter() {
///     match tracked.outcome {
///         Ok(result) => println!("{}: {}", tracked.tag, result.result_code),
///         Err(e) => eprintln!("{}: {e}", tracked.tag),
///     }
/// }
/// # Ok::<(), ran_routing::Error>(())
/// ```
pub struct DownlinkTracker<T> {
    /// Sends through the connection's one counted path, without keeping it alive.
    outlet: Outlet<DownstreamRequest>,
    correlator: Arc<Correlator<DownstreamReply>>,
    timeout: Duration,
    replies_tx: Sender<DownstreamReply>,
    replies: Receiver<DownstreamReply>,
    failures_tx: Sender<Tracked<T>>,
    failures: Receiver<Tracked<T>>,
    state: Mutex<State<T>>,
    receiving: Mutex<()>,
}

impl crate::DownstreamConnection {
    /// A [`DownlinkTracker`] on this connection whose downlinks time out after
    /// `timeout` without a result. Several trackers may share a connection.
    pub fn tracker<T: Send + 'static>(&self, timeout: Duration) -> DownlinkTracker<T> {
        let (outlet, correlator) = self.inner.tracking_parts();
        let (replies_tx, replies) = crossbeam_channel::unbounded();
        let (failures_tx, failures) = crossbeam_channel::unbounded();
        DownlinkTracker {
            outlet,
            correlator,
            timeout,
            replies_tx,
            replies,
            failures_tx,
            failures,
            state: Mutex::new(State {
                entries: HashMap::new(),
                order: VecDeque::new(),
                ready: VecDeque::new(),
            }),
            receiving: Mutex::new(()),
        }
    }
}

impl<T: Send + 'static> DownlinkTracker<T> {
    /// Sends a downlink (unicast or multicast) tagged with `tag`. Returns once it is
    /// written; its outcome, and any error in sending it, comes from the receiving
    /// methods, exactly once.
    pub fn send(&self, tag: T, request: impl Into<DownstreamRequest>) {
        let request = request.into();
        let id = request.transaction_id();
        if let Err(e) = request.validate() {
            return self.fail(tag, id, Error::Invalid(e));
        }
        if let Some(why) = self.outlet.ended() {
            return self.fail(tag, id, Error::Closed(Closed::Connection(why)));
        }
        {
            let mut state = self.lock();
            // Registered before sending, so a fast reply cannot slip past to iter().
            if let Err(e) = self
                .correlator
                .register_to(id, self.replies_tx.clone(), true)
            {
                drop(state);
                return self.fail(tag, id, e);
            }
            let deadline = Instant::now() + self.timeout;
            state.entries.insert(
                id,
                Entry {
                    tag,
                    deadline,
                    ack: None,
                },
            );
            state.order.push_back((deadline, id));
        }
        if let Err(e) = self.outlet.send(&request) {
            let entry = {
                let mut state = self.lock();
                self.correlator.unregister(id);
                state.entries.remove(&id)
            };
            // None: it already had its outcome (it timed out while the write waited).
            if let Some(entry) = entry {
                self.fail(entry.tag, id, e);
            }
        }
    }

    /// Tracked downlinks still waiting for their outcome.
    pub fn in_flight(&self) -> usize {
        self.lock().entries.len()
    }

    /// How long a tracked downlink waits for its result.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Blocks until an outcome is ready. Fails once the connection has closed for good
    /// and every outcome has been handed out.
    pub fn recv(&self) -> Result<Tracked<T>, RecvError> {
        self.receive(None, true).map_err(|_| RecvError)
    }

    /// Like [`recv`](Self::recv), waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Tracked<T>, RecvTimeoutError> {
        self.receive(Some(Instant::now() + timeout), true)
    }

    /// Takes an outcome if one is ready (expiring what is due), without blocking.
    pub fn try_recv(&self) -> Result<Tracked<T>, TryRecvError> {
        self.receive(None, false).map_err(|e| match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// A blocking iterator over outcomes; ends like [`recv`](Self::recv).
    pub fn iter(&self) -> impl Iterator<Item = Tracked<T>> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// An iterator over the outcomes ready now; it never blocks.
    pub fn try_iter(&self) -> impl Iterator<Item = Tracked<T>> + '_ {
        std::iter::from_fn(move || self.try_recv().ok())
    }

    fn receive(
        &self,
        deadline: Option<Instant>,
        block: bool,
    ) -> Result<Tracked<T>, RecvTimeoutError> {
        // One receiver at a time: a reply taken off the channel is matched before
        // anyone can expire its entry.
        let _turn = crate::sync::lock(&self.receiving);
        loop {
            if let Ok(failed) = self.failures.try_recv() {
                return Ok(failed);
            }
            let now = Instant::now();
            let wake = {
                let mut state = self.lock();
                self.settle(&mut state, now);
                if let Some(outcome) = state.ready.pop_front() {
                    return Ok(outcome);
                }
                if state.entries.is_empty() && self.closed_for_good().is_some() {
                    return Err(RecvTimeoutError::Disconnected);
                }
                // Nothing in flight: whatever is sent from now expires after `timeout`.
                state
                    .order
                    .front()
                    .map_or(now + self.timeout, |(due, _)| *due)
            };
            if !block || deadline.is_some_and(|d| now >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            let until = deadline.map_or(wake, |d| d.min(wake));
            select! {
                recv(self.replies) -> reply => {
                    if let Ok(reply) = reply {
                        let mut state = self.lock();
                        Self::handle(&mut state, reply);
                    }
                }
                recv(self.failures) -> failed => {
                    if let Ok(failed) = failed {
                        return Ok(failed);
                    }
                }
                default(until.saturating_duration_since(now)) => {}
            }
        }
    }

    /// Matches the replies that came, then gives the due entries their timeout (or all
    /// entries their interruption, once the connection is closed for good).
    fn settle(&self, state: &mut State<T>, now: Instant) {
        let ended = self.closed_for_good();
        let mut due = Vec::new();
        while let Some(&(deadline, id)) = state.order.front() {
            if ended.is_none() && deadline > now {
                break;
            }
            state.order.pop_front();
            if state
                .entries
                .get(&id)
                .is_some_and(|e| e.deadline == deadline)
            {
                // From here on its replies go to the connection's iter().
                self.correlator.unregister(id);
                due.push(id);
            }
        }
        // What raced in before unregistering still counts.
        for reply in self.replies.try_iter() {
            Self::handle(state, reply);
        }
        for id in due {
            let Some(entry) = state.entries.remove(&id) else {
                continue;
            };
            let outcome = Err(match &ended {
                Some(reason) => Error::DownstreamInterrupted {
                    transaction_id: id,
                    ack: entry.ack,
                    reason: Box::new(reason.clone()),
                },
                None => Error::DownstreamTimeout {
                    transaction_id: id,
                    ack: entry.ack,
                },
            });
            state.ready.push_back(Tracked {
                tag: entry.tag,
                transaction_id: id,
                outcome,
            });
        }
    }

    fn handle(state: &mut State<T>, reply: DownstreamReply) {
        match reply {
            DownstreamReply::Ack(ack) => match state.entries.get_mut(&ack.transaction_id) {
                Some(entry) => entry.ack = Some(ack),
                None => log::debug!(
                    "downstream: ack {} for no tracked downlink",
                    ack.transaction_id
                ),
            },
            DownstreamReply::Result(result) => {
                let id = result.transaction_id;
                match state.entries.remove(&id) {
                    Some(entry) => state.ready.push_back(Tracked {
                        tag: entry.tag,
                        transaction_id: id,
                        outcome: Ok(result),
                    }),
                    None => log::debug!("downstream: result {id} for no tracked downlink"),
                }
            }
        }
    }

    /// Why the connection ended, once it has for good (not while reconnecting).
    fn closed_for_good(&self) -> Option<CloseReason> {
        self.outlet.ended()
    }

    fn fail(&self, tag: T, transaction_id: u64, error: Error) {
        let _ = self.failures_tx.send(Tracked {
            tag,
            transaction_id,
            outcome: Err(error),
        });
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        crate::sync::lock(&self.state)
    }
}

impl<T> Drop for DownlinkTracker<T> {
    fn drop(&mut self) {
        // Replies to downlinks nobody tracks any more go to the connection's iter().
        let state = crate::sync::lock(&self.state);
        for id in state.entries.keys() {
            self.correlator.unregister(*id);
        }
    }
}

impl<T> fmt::Debug for DownlinkTracker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DownlinkTracker")
            .field("timeout", &self.timeout)
            .field("in_flight", &crate::sync::lock(&self.state).entries.len())
            .finish()
    }
}
