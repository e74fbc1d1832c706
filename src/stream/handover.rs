//! The socket lock: the one WebSocket of a link, shared by its reader thread and every
//! sender, with a fair hand-over from the reader to the senders waiting for it.
//!
//! A `Mutex` alone is unfair: the reader, which takes the socket again as soon as data
//! arrives, can take it straight back after every pass, and under a flood a send waited
//! for tens of seconds. So a sender takes a ticket before it locks and counts a grant
//! once it holds the lock, and the reader, before each pass, lets every sender that held
//! a ticket at that moment have the socket first (not those that come later, so busy
//! senders cannot hold the reader off).
//!
//! **Invariant (checked by the loom model in this file):** a sender that has taken its
//! ticket before the reader begins a pass has written before that pass reads.
//!
//! The wait is bounded by [`HAND_OVER`] in real builds, in case a waiting sender's thread
//! gets no CPU; under loom it is unbounded, so the model checks the protocol itself.

#[cfg(all(test, loom))]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(all(test, loom))]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(all(test, loom)))]
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(all(test, loom)))]
use std::sync::{Mutex, MutexGuard};

/// How long the reader leaves the socket to a waiting sender before taking it again
/// regardless; only reached if that sender's thread does not get a CPU meanwhile.
#[cfg(not(all(test, loom)))]
const HAND_OVER: std::time::Duration = std::time::Duration::from_millis(20);

/// A link's WebSocket behind the fair hand-over described in the module docs.
pub(crate) struct SocketLock<T> {
    inner: Mutex<T>,
    /// Senders that started waiting for the socket, and those that got it.
    tickets: AtomicUsize,
    grants: AtomicUsize,
    /// Model checks only: the deliberately broken variant that skips the hand-over.
    #[cfg(all(test, loom))]
    unfair: bool,
}

impl<T> SocketLock<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner: Mutex::new(inner),
            tickets: AtomicUsize::new(0),
            grants: AtomicUsize::new(0),
            #[cfg(all(test, loom))]
            unfair: false,
        }
    }

    /// Takes the socket to write: counted, so the reader hands it over.
    pub(crate) fn lock_to_write(&self) -> MutexGuard<'_, T> {
        self.tickets.fetch_add(1, Ordering::SeqCst);
        let guard = lock(&self.inner);
        self.grants.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// Takes the socket to read, after every sender waiting now has had it.
    pub(crate) fn lock_to_read(&self) -> MutexGuard<'_, T> {
        self.hand_over_to_writers();
        lock(&self.inner)
    }

    fn hand_over_to_writers(&self) {
        #[cfg(all(test, loom))]
        if self.unfair {
            return;
        }
        let waiting = self.tickets.load(Ordering::SeqCst);
        // Wrapping: the counters may wrap around on a very long-lived link.
        let served = |grants: usize| grants.wrapping_sub(waiting) as isize >= 0;
        if served(self.grants.load(Ordering::SeqCst)) {
            return;
        }
        #[cfg(not(all(test, loom)))]
        let started = std::time::Instant::now();
        while !served(self.grants.load(Ordering::SeqCst)) {
            #[cfg(not(all(test, loom)))]
            if started.elapsed() >= HAND_OVER {
                return;
            }
            #[cfg(not(all(test, loom)))]
            std::thread::yield_now();
            #[cfg(all(test, loom))]
            loom::thread::yield_now();
        }
    }
}

#[cfg(not(all(test, loom)))]
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    crate::sync::lock(m)
}

#[cfg(all(test, loom))]
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap()
}

/// The model check, which `.ci/run` runs:
/// `RUSTFLAGS="--cfg loom" cargo test --lib stream::handover`.
///
/// Loom runs every interleaving of a reader pass and a sender. It fails on the
/// deliberately broken variant (`unfair`: the reader skips the hand-over), which the
/// second test runs and expects loom to catch, so the model is shown to be able to fail.
#[cfg(all(test, loom))]
mod model {
    use super::*;
    use loom::sync::Arc;

    /// One sender, one reader pass: if the sender's ticket was out before the pass began,
    /// its write is in the socket before the pass reads.
    fn sender_waiting_at_a_pass_writes_first(unfair: bool) {
        loom::model(move || {
            let mut socket = SocketLock::new(Vec::new());
            socket.unfair = unfair;
            let socket = Arc::new(socket);
            let sender = {
                let socket = socket.clone();
                loom::thread::spawn(move || socket.lock_to_write().push("sent"))
            };
            // What the reader can know before its pass: whether a ticket is out.
            let waiting = socket.tickets.load(Ordering::SeqCst);
            {
                let read = socket.lock_to_read();
                if waiting == 1 {
                    assert_eq!(*read, ["sent"], "a waiting sender was passed over");
                }
            }
            sender.join().unwrap();
        });
    }

    #[test]
    fn a_waiting_sender_writes_before_the_next_pass() {
        sender_waiting_at_a_pass_writes_first(false);
    }

    #[test]
    #[should_panic(expected = "a waiting sender was passed over")]
    fn the_model_catches_a_reader_that_skips_the_hand_over() {
        sender_waiting_at_a_pass_writes_first(true);
    }
}
