//! The receiving side of a connection: what consumers take from.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError};

use super::read::Room;

/// The receiving side: the channel, then (once it is disconnected) what the reader
/// stashed after the owner closed. Consumers only take from here; nothing else of a
/// connection's received messages waits anywhere.
pub(super) struct Inbox<T> {
    pub(super) rx: Receiver<T>,
    pub(super) stash: Arc<Mutex<VecDeque<T>>>,
    pub(super) room: Arc<Room>,
    /// Messages a hook held and hands out later (a copy of an uplink that became the
    /// first copy once its first copy was rejected); taken before the channel. `None`
    /// without a hook.
    pub(super) released: Option<Receiver<T>>,
    /// Keeps `released` connected as long as the inbox, whether or not the hook keeps
    /// its way to deliver: a disconnected `released` would end every receive.
    pub(super) _release: Option<Sender<T>>,
}

/// What the receiving methods take: a message and when its read pass was.
pub(super) type Taken<In> = super::read::Stamped<In>;

impl<T> Inbox<T> {
    /// Counts a message taken, waking a reader that waits for room once the channel is
    /// half empty.
    #[inline]
    fn took(&self, item: T) -> T {
        let capacity = self.rx.capacity().unwrap_or(usize::MAX);
        self.room.taken(self.rx.len(), capacity);
        item
    }

    /// The stash comes after the channel, and only once nothing can enter the channel.
    fn after_channel<E>(&self, disconnected: E) -> Result<T, E> {
        if let Some(item) = self.take_released() {
            return Ok(item);
        }
        crate::sync::lock(&self.stash)
            .pop_front()
            .ok_or(disconnected)
    }

    fn take_released(&self) -> Option<T> {
        self.released.as_ref()?.try_recv().ok()
    }

    pub(super) fn try_next(&self) -> Result<T, TryRecvError> {
        if let Some(item) = self.take_released() {
            return Ok(item);
        }
        match self.rx.try_recv() {
            Ok(item) => Ok(self.took(item)),
            Err(TryRecvError::Disconnected) => self.after_channel(TryRecvError::Disconnected),
            Err(TryRecvError::Empty) => Err(TryRecvError::Empty),
        }
    }

    pub(super) fn next(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let got = match (&self.released, deadline) {
            (None, None) => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            (None, Some(deadline)) => self.rx.recv_deadline(deadline),
            (Some(released), deadline) => {
                if let Ok(item) = released.try_recv() {
                    return Ok(item);
                }
                // A message already queued is taken without a `Select`, which costs more
                // than the rest of a de-duplicated receive; the order rule (released
                // first) holds at the moment of each check.
                if let Ok(item) = self.rx.try_recv() {
                    return Ok(self.took(item));
                }
                let mut select = Select::new();
                let channel = select.recv(&self.rx);
                let hook = select.recv(released);
                let ready = match deadline {
                    None => Ok(select.select()),
                    Some(deadline) => select
                        .select_deadline(deadline)
                        .map_err(|_| RecvTimeoutError::Timeout),
                };
                match ready {
                    Ok(op) if op.index() == hook => {
                        // Never disconnected: the inbox keeps a sender (`_release`).
                        return op
                            .recv(released)
                            .map_err(|_| RecvTimeoutError::Disconnected);
                    }
                    Ok(op) => {
                        debug_assert_eq!(op.index(), channel);
                        op.recv(&self.rx)
                            .map_err(|_| RecvTimeoutError::Disconnected)
                    }
                    Err(timeout) => Err(timeout),
                }
            }
        };
        match got {
            Ok(item) => Ok(self.took(item)),
            Err(RecvTimeoutError::Disconnected) => {
                self.after_channel(RecvTimeoutError::Disconnected)
            }
            Err(RecvTimeoutError::Timeout) => Err(RecvTimeoutError::Timeout),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rx.len()
            + crate::sync::lock(&self.stash).len()
            + self.released.as_ref().map_or(0, Receiver::len)
    }
}
