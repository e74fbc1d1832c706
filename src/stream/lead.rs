//! Who reads the socket: the link's reader thread, or a consumer waiting in `recv`.
//!
//! When the reader thread reads and hands each message over a channel, every message
//! costs two thread wake-ups (the reader's from `poll`, then the consumer's from the
//! channel) and a read that finds nothing more. A consumer that waits for its next
//! message anyway can read the socket itself: one wake-up, as a hand-written
//! single-threaded client has. One read token keeps the order: only its holder reads.
//!
//! - The reader thread holds the token while nobody waits in `recv`, or while a consumer
//!   is busy elsewhere: it reads ahead into the channel as before.
//! - After the reader has handed a message to a consumer that was waiting for it, it lets
//!   go: the consumer's next `recv`, finding the channel empty, takes the token and reads
//!   itself. Between two `recv` calls it keeps the token without a word to anyone, so a
//!   busy loop costs no wake-up at all.
//! - The reader takes the token back once the consumer has been away for [`GRACE`] (it
//!   is busy: read ahead meanwhile), or when another consumer waits behind the one that
//!   reads. While a consumer waits in `recv` on an idle stream, the reader sleeps without
//!   a timer; the consumer wakes it when it leaves.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// How long a consumer may stay away from `recv` before the reader thread reads again
/// (pings, closes and read-ahead wait at most this long behind a busy consumer).
pub(crate) const GRACE: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Reader,
    Consumer,
}

#[derive(Debug)]
struct State {
    holder: Holder,
    /// A consumer holding the token is inside `recv`, reading or waiting on the socket.
    inside: bool,
    /// When the consumer holding the token last left `recv`.
    left: Instant,
    /// Messages consumers have read themselves, so the reader can tell a busy stream
    /// from an idle one without being told of each message.
    handed: u64,
    /// Consumers blocked on the channel.
    waiting: usize,
    /// Bumped when the reader lets go after serving the consumers waiting then: they
    /// no longer count as waiting, although their threads may not have woken yet.
    served: u64,
    /// A consumer found the reader holding the token and waited on the channel: it wants
    /// to read itself from its next `recv` on.
    wanted: bool,
    /// The reader sleeps without a timer: a consumer leaving `recv` must wake it.
    asleep: bool,
    /// The consumer left with messages it read ahead still to take: the reader waits
    /// until they are taken, as it waits for room in a full channel, so no more than a
    /// channel's worth waits.
    backlog: bool,
    /// The link is ending: the reader takes the token back for good.
    ending: bool,
}

/// The read token of one link.
#[derive(Debug)]
pub(crate) struct Token {
    state: Mutex<State>,
    turn: Condvar,
}

/// What [`Token::enter`] decided.
pub(crate) enum Entry {
    /// The caller holds the token and reads the socket itself.
    Lead,
    /// The caller waits on the channel; drop the guard once it stops waiting.
    Wait(Waiting),
}

impl Token {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                holder: Holder::Reader,
                inside: false,
                left: Instant::now(),
                handed: 0,
                waiting: 0,
                served: 0,
                wanted: false,
                asleep: false,
                backlog: false,
                ending: false,
            }),
            turn: Condvar::new(),
        }
    }

    /// A consumer found the channel empty: it takes the token if nobody reads, or is
    /// counted as waiting on the channel.
    pub(crate) fn enter(self: &std::sync::Arc<Self>) -> Entry {
        let mut state = lock(&self.state);
        if state.holder == Holder::Consumer && !state.inside && !state.ending {
            state.inside = true;
            state.wanted = false;
            state.backlog = false;
            return Entry::Lead;
        }
        state.waiting += 1;
        if state.holder == Holder::Reader {
            state.wanted = true;
        }
        Entry::Wait(Waiting(self.clone(), state.served))
    }

    /// The consumer leaves `recv` keeping the token; `handed` if it read a message,
    /// `backlog` if it read more that waits to be taken.
    pub(crate) fn leave(&self, handed: bool, backlog: bool) {
        let mut state = lock(&self.state);
        state.inside = false;
        state.backlog = backlog;
        state.left = Instant::now();
        if handed {
            state.handed = state.handed.wrapping_add(1);
        }
        if state.waiting > 0 {
            // Someone waits on the channel behind us: the reader serves them now.
            state.holder = Holder::Reader;
            self.turn.notify_all();
        } else if state.asleep {
            state.asleep = false;
            self.turn.notify_all();
        }
    }

    /// The last message read ahead has been taken: the grace starts now.
    pub(crate) fn drained(&self) {
        let mut state = lock(&self.state);
        if state.backlog {
            state.backlog = false;
            state.left = Instant::now();
            if state.asleep {
                state.asleep = false;
                self.turn.notify_all();
            }
        }
    }

    /// The consumer hands the token to the reader thread, which has work for it.
    pub(crate) fn hand_back(&self) {
        let mut state = lock(&self.state);
        state.holder = Holder::Reader;
        state.inside = false;
        self.turn.notify_all();
    }

    /// The consumer gives the token back: the link is ending (or it saw something only
    /// the reader handles).
    pub(crate) fn give_back(&self) {
        let mut state = lock(&self.state);
        state.holder = Holder::Reader;
        state.inside = false;
        state.ending = true;
        self.turn.notify_all();
    }

    /// The link is closing: the reader must read the rest itself.
    pub(crate) fn end(&self) {
        lock(&self.state).ending = true;
        self.turn.notify_all();
    }

    /// After the reader handed messages to the channel: lets go of the token if a
    /// consumer keeping up wants it. Returns whether it did.
    pub(crate) fn release(&self) -> bool {
        let mut state = lock(&self.state);
        if !state.wanted || state.waiting > 1 || state.ending {
            return false;
        }
        state.holder = Holder::Consumer;
        state.inside = false;
        state.wanted = false;
        state.waiting = 0;
        state.served = state.served.wrapping_add(1);
        state.left = Instant::now();
        true
    }

    /// The reader waits until it holds the token again (see the module docs).
    pub(crate) fn take(&self) {
        let mut state = lock(&self.state);
        let mut seen = state.handed;
        loop {
            if state.holder == Holder::Reader {
                return;
            }
            if !state.inside && !state.backlog {
                let due = state.left + GRACE;
                let now = Instant::now();
                if now >= due || state.waiting > 0 || state.ending {
                    state.holder = Holder::Reader;
                    return;
                }
                state = self
                    .turn
                    .wait_timeout(state, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            } else if !state.inside && (state.waiting > 0 || state.ending) {
                // A backlog, and someone waits behind it or the link ends.
                state.holder = Holder::Reader;
                return;
            } else if state.handed != seen && !state.backlog {
                // Messages flow: look again after a while rather than be told of each.
                seen = state.handed;
                state = self
                    .turn
                    .wait_timeout(state, GRACE)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            } else {
                // The consumer waits on an idle socket, or has a backlog to take: no
                // timer until it leaves or comes back for more.
                state.asleep = true;
                state = self.turn.wait(state).unwrap_or_else(|e| e.into_inner());
                state.asleep = false;
            }
        }
    }
}

/// A consumer counted as waiting on the channel; uncounted when dropped, unless the
/// reader has counted it served already.
pub(crate) struct Waiting(std::sync::Arc<Token>, u64);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        if state.served == self.1 {
            state.waiting -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_reader_holds_the_token_until_a_waiting_consumer_wants_it() {
        let token = Arc::new(Token::new());
        assert!(!token.release(), "nobody asked for it");
        let Entry::Wait(waiting) = token.enter() else {
            panic!("the reader holds the token");
        };
        assert!(token.release(), "one consumer waited: it reads from now on");
        drop(waiting);
        assert!(matches!(token.enter(), Entry::Lead));
        let Entry::Wait(_second) = token.enter() else {
            panic!("one consumer reads at a time");
        };
        token.leave(true, false);
        // The second consumer waits on the channel: the reader has it back at once.
        token.take();
    }

    /// A token the reader let go of after serving one waiting consumer.
    fn released() -> Arc<Token> {
        let token = Arc::new(Token::new());
        let Entry::Wait(waiting) = token.enter() else {
            unreachable!("the reader holds a new token")
        };
        assert!(token.release());
        drop(waiting);
        token
    }

    #[test]
    fn the_reader_takes_the_token_back_after_the_grace() {
        let token = released();
        let started = Instant::now();
        token.take();
        assert!(started.elapsed() >= GRACE);
        assert!(matches!(token.enter(), Entry::Wait(_)));
    }

    #[test]
    fn a_reader_asleep_behind_an_idle_consumer_wakes_when_it_leaves() {
        let token = released();
        assert!(matches!(token.enter(), Entry::Lead));
        let reader = {
            let token = token.clone();
            std::thread::spawn(move || token.take())
        };
        // Let the reader fall asleep, then leave: it must take over after the grace.
        std::thread::sleep(GRACE * 4);
        assert!(!reader.is_finished(), "the consumer is inside recv");
        token.leave(false, false);
        reader.join().unwrap();
    }

    #[test]
    fn an_ending_link_goes_back_to_the_reader() {
        let token = released();
        assert!(matches!(token.enter(), Entry::Lead));
        token.give_back();
        token.take();
        assert!(matches!(token.enter(), Entry::Wait(_)));
        assert!(!token.release());
    }
}
