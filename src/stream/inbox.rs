//! The receiving side of a connection: what consumers take from.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::read::Room;

/// The receiving side: the channel, then (once it is disconnected) what the reader
/// stashed after the owner closed. Consumers only take from here; nothing else of a
/// connection's received messages waits anywhere.
pub(super) struct Inbox<T> {
    pub(super) rx: Receiver<T>,
    pub(super) stash: Arc<Mutex<VecDeque<T>>>,
    pub(super) room: Arc<Room>,
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
        crate::sync::lock(&self.stash)
            .pop_front()
            .ok_or(disconnected)
    }

    pub(super) fn try_next(&self) -> Result<T, TryRecvError> {
        match self.rx.try_recv() {
            Ok(item) => Ok(self.took(item)),
            Err(TryRecvError::Disconnected) => self.after_channel(TryRecvError::Disconnected),
            Err(TryRecvError::Empty) => Err(TryRecvError::Empty),
        }
    }

    pub(super) fn next(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let got = match deadline {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => self.rx.recv_deadline(deadline),
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
        self.rx.len() + crate::sync::lock(&self.stash).len()
    }
}
