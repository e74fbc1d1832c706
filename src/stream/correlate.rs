//! Routing replies to the threads waiting for them.
//!
//! A thread that sends a downlink and waits for its result registers the transaction id
//! first; the reader thread hands every reply with a registered id to that waiter instead
//! of the connection's channel, and everything else goes on to `iter()` as before. A
//! reply is delivered to exactly one place, and a waiter that gives up takes what raced
//! in, so nothing is lost or seen twice.
//!
//! A [`DownlinkTracker`](crate::DownlinkTracker) registers its ids here too, all into
//! one channel of its own, and its registrations outlive a reconnection: a result that
//! comes on the new link still finds its downlink.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};

use super::StreamFrame;
use crate::error::{Error, InvalidInput, Result};

pub(crate) struct Correlator<In> {
    /// Lets the reader skip the lock while nobody waits, the common case.
    waiting: AtomicUsize,
    waiters: Mutex<HashMap<u64, Waiter<In>>>,
}

struct Waiter<In> {
    tx: Sender<In>,
    /// Kept when a link fails (a tracker's): the reply may come on the next link.
    lasting: bool,
}

impl<In: StreamFrame> Correlator<In> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            waiting: AtomicUsize::new(0),
            waiters: Mutex::new(HashMap::new()),
        })
    }

    /// Hands `message` to its waiter, or back to the caller when nobody waits for it.
    pub(crate) fn route(&self, message: In) -> Option<In> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Some(message);
        }
        let Some((id, last)) = message.correlation() else {
            return Some(message);
        };
        let mut waiters = self.lock();
        let Some(waiter) = waiters.get(&id) else {
            return Some(message);
        };
        // The waiter's channel is unbounded and its receiver lives until it unregisters,
        // so the send cannot block the reader.
        let _ = waiter.tx.send(message);
        if last {
            waiters.remove(&id);
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        None
    }

    /// Downlinks whose last reply is awaited now.
    pub(crate) fn awaiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Starts routing replies for `id` to the returned receiver.
    pub(crate) fn register(&self, id: u64) -> Result<Receiver<In>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.register_to(id, tx, false)?;
        Ok(rx)
    }

    /// Starts routing replies for `id` to `tx`; a `lasting` registration survives the
    /// failure of the link (see [`fail_all`](Self::fail_all)). `tx` must never block.
    pub(crate) fn register_to(&self, id: u64, tx: Sender<In>, lasting: bool) -> Result<()> {
        let mut waiters = self.lock();
        if waiters.contains_key(&id) {
            return Err(Error::Invalid(InvalidInput::TransactionIdInUse(id)));
        }
        waiters.insert(id, Waiter { tx, lasting });
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Stops routing replies for `id`.
    pub(crate) fn unregister(&self, id: u64) {
        if self.lock().remove(&id).is_some() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The link under the waiters is gone: their replies will not come on it, so every
    /// waiter is woken (its channel disconnects) to fail fast. Lasting registrations
    /// stay: their owner times them out itself.
    pub(crate) fn fail_all(&self) {
        let mut waiters = self.lock();
        let before = waiters.len();
        waiters.retain(|_, w| w.lasting);
        self.waiting
            .fetch_sub(before - waiters.len(), Ordering::AcqRel);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Waiter<In>>> {
        crate::sync::lock(&self.waiters)
    }
}

/// Lives in a link's reader: when the reader ends, the waiters on that link are failed.
pub(crate) struct FailOnDrop<In: StreamFrame>(pub(crate) Arc<Correlator<In>>);

impl<In: StreamFrame> Drop for FailOnDrop<In> {
    fn drop(&mut self) {
        self.0.fail_all();
    }
}
