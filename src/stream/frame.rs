//! The message types a stream carries, and what the engine needs of each.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{InvalidInput, Result};

/// A message type that travels on a stream: [`UpstreamMessage`](crate::UpstreamMessage)
/// and [`UpstreamReply`](crate::UpstreamReply) on the upstream,
/// [`DownstreamRequest`](crate::DownstreamRequest) and
/// [`DownstreamReply`](crate::DownstreamReply) on the downstream. Sealed: the crate's
/// message types are the only ones.
pub trait StreamFrame: sealed::Frame + Serialize + DeserializeOwned + Send + 'static {}

impl<T: sealed::Frame + Serialize + DeserializeOwned + Send + 'static> StreamFrame for T {}

pub(crate) mod sealed {
    use crate::error::{InvalidInput, Result};

    /// What the engine needs of a message type; not nameable outside the crate, so
    /// nobody else can implement [`super::StreamFrame`].
    pub trait Frame {
        /// Checks the value rules; the default has none.
        fn validate(&self) -> Result<(), InvalidInput> {
            Ok(())
        }

        /// For replies a sender can wait for: the transaction id they answer, and
        /// whether this is the last reply for it. The default: not a reply.
        fn correlation(&self) -> Option<(u64, bool)> {
            None
        }

        /// Counts what kind of message came in, beyond the frame itself.
        // The counters stay crate-private; the trait is sealed anyway.
        #[allow(private_interfaces)]
        fn count_received(&self, _stats: &crate::stream::stats::StreamCounters) {}

        /// Counts what kind of message went out, beyond its bytes.
        // The counters stay crate-private; the trait is sealed anyway.
        #[allow(private_interfaces)]
        fn count_sent(&self, _stats: &crate::stream::stats::StreamCounters) {}
    }
}

impl sealed::Frame for crate::UpstreamMessage {}

impl sealed::Frame for crate::DownstreamReply {
    fn correlation(&self) -> Option<(u64, bool)> {
        Some((
            self.transaction_id(),
            matches!(self, crate::DownstreamReply::Result(_)),
        ))
    }

    // The counters stay crate-private; the trait is sealed anyway.
    #[allow(private_interfaces)]
    fn count_received(&self, stats: &super::stats::StreamCounters) {
        match self {
            crate::DownstreamReply::Ack(_) => stats.downstream_ack_received(),
            crate::DownstreamReply::Result(r) => stats.result_received(&r.result_code),
        }
    }
}

impl sealed::Frame for crate::UpstreamReply {
    fn validate(&self) -> Result<(), InvalidInput> {
        crate::UpstreamReply::validate(self)
    }

    // The counters stay crate-private; the trait is sealed anyway.
    #[allow(private_interfaces)]
    fn count_sent(&self, stats: &super::stats::StreamCounters) {
        match self {
            crate::UpstreamReply::Ack(_) => stats.ack_sent(),
            crate::UpstreamReply::Reject(r) => stats.reject_sent(&r.result_code),
        }
    }
}

impl sealed::Frame for crate::DownstreamRequest {
    fn validate(&self) -> Result<(), InvalidInput> {
        crate::DownstreamRequest::validate(self)
    }

    // The counters stay crate-private; the trait is sealed anyway.
    #[allow(private_interfaces)]
    fn count_sent(&self, stats: &super::stats::StreamCounters) {
        stats.downlink_sent(matches!(self, crate::DownstreamRequest::Multicast(_)));
    }
}
