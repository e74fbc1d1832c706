//! The hook a connection may carry (de-duplication): what it sees and how it answers.

use std::sync::Arc;
use std::time::Instant;

use super::stats::DedupStats;
use crate::error::Result;

/// A layer that sees a connection's traffic: each incoming message as the receiving
/// methods take it off the channel, and each outgoing message after it was written.
/// Optional: a connection without one pays a single branch. `incoming` runs on the
/// consumer's thread, not the reader's: the one that answers also takes the next
/// message, so in-process state is not fought over by two threads per message. Work
/// that waits on the network per message instead belongs in `screen`, paid once per
/// read pass on the reader thread.
pub(crate) trait Hook<In, Out>: Send + Sync + 'static {
    /// On the reader thread, before a read pass's messages are delivered: the hook may
    /// take some of them (those left go to the channel, in their order). For work that
    /// is a network round trip better paid once per pass than once per message (shared
    /// de-duplication); it delays reading, so it must be bounded in time.
    fn screen(&self, _batch: &mut Vec<(In, Instant)>) {}
    /// `Some` goes to the application; `None` was taken care of by the hook. `read_at`:
    /// when the message's read pass was (one clock reading per pass, not per message).
    fn incoming(&self, message: In, read_at: Instant) -> Option<In>;
    /// `message` was written; returns what must be sent after it.
    fn sent(&self, message: &Out) -> Vec<Out>;
    /// Called once the connection is up, with a way to send on it and a way to hand a
    /// message it held to the application later (the receiving methods take it before
    /// the channel's next message, and pass it to [`incoming`](Self::incoming) again).
    fn start(&self, send: HookSend<Out>, deliver: HookDeliver<In>);
    /// The layer's de-duplication counters, for `Connection::stats`.
    fn dedup_stats(&self) -> Option<DedupStats> {
        None
    }
}

/// Sends one message on the connection a [`Hook`] belongs to (through `Outlet::send`).
pub(crate) type HookSend<Out> = Box<dyn Fn(&Out) -> Result<()> + Send + Sync>;
/// Hands a message a [`Hook`] held to the application, through the receiving methods.
pub(crate) type HookDeliver<In> = Box<dyn Fn(In) + Send + Sync>;
/// Makes the [`Hook`] of each connection a builder opens.
pub(crate) type HookFactory<In, Out> = Arc<dyn Fn() -> Arc<dyn Hook<In, Out>> + Send + Sync>;
