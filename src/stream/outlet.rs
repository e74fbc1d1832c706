//! The one counted send path of a connection, and [`Outlet`], the way to send on a
//! connection without owning it.

use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use super::session::Session;
use super::stats::StreamCounters;
use super::{CloseReason, StreamFrame};
use crate::error::{Closed, InvalidInput, Result};

fn encode<T: serde::Serialize>(message: &T) -> Result<String> {
    serde_json::to_string(message)
        .map_err(|e| crate::Error::Invalid(InvalidInput::Encode(e.to_string())))
}

/// Writes one message and counts it, or the failure. Every frame that leaves a
/// connection goes through here: acks, rejects, downlinks, tracked downlinks and the
/// de-duplication's answers (`stats().sent` counts them all).
pub(super) fn send_counted<Out: StreamFrame>(
    session: &Session,
    stats: &StreamCounters,
    message: &Out,
) -> Result<()> {
    let text = encode(message)?;
    let bytes = text.len();
    match session.send_text(text) {
        Ok(()) => {
            stats.sent(bytes);
            message.count_sent(stats);
            Ok(())
        }
        Err(e) => {
            stats.send_failed();
            Err(e)
        }
    }
}

/// Sends on a connection without keeping it alive: what a [`Hook`](super::Hook) and a
/// [`DownlinkTracker`](crate::DownlinkTracker) hold. Sends go through the one counted
/// path ([`send_counted`]); the value rules are the caller's to check.
pub(crate) struct Outlet<Out> {
    session: Weak<Session>,
    stats: Arc<StreamCounters>,
    _out: PhantomData<fn(Out)>,
}

impl<Out: StreamFrame> Outlet<Out> {
    pub(super) fn new(session: &Arc<Session>, stats: &Arc<StreamCounters>) -> Self {
        Self {
            session: Arc::downgrade(session),
            stats: stats.clone(),
            _out: PhantomData,
        }
    }

    /// Writes `message` on the connection and counts it; fails once the connection is
    /// gone (dropped: closed by its owner).
    pub(crate) fn send(&self, message: &Out) -> Result<()> {
        let session = self
            .session
            .upgrade()
            .ok_or(crate::Error::Closed(Closed::Connection(CloseReason::Local)))?;
        send_counted(&session, &self.stats, message)
    }

    /// Why the connection ended for good, once it has (not while it reconnects).
    pub(crate) fn ended(&self) -> Option<CloseReason> {
        match self.session.upgrade() {
            // Dropped by its owner.
            None => Some(CloseReason::Local),
            Some(session) => session.state().close_reason(),
        }
    }
}
