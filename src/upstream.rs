//! The upstream stream: uplinks and join requests in, acks and rejects out.
//!
//! ```no_run
//! # fn solve(m: &ran_routing::UpstreamMessage) -> Option<(ran_routing::DevEui, u32)> { None }
//! use ran_routing::{Core, UpstreamRejectResultCode};
//!
//! let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
//! let upstream = ran.upstream().connect()?;
//! for message in upstream.iter() {
//!     match solve(&message) {
//!         Some((dev_eui, mic)) => {
//!             upstream.send_upstream_ack(message.transaction_id, dev_eui, mic)?
//!         }
//!         None => upstream
//!             .send_upstream_reject(message.transaction_id, UpstreamRejectResultCode::MicFailed)?,
//!     }
//! }
//! # Ok::<(), ran_routing::Error>(())
//! ```

use crate::error::Result;
use crate::ids::DevEui;
use crate::model::{
    UpstreamAck, UpstreamMessage, UpstreamReject, UpstreamRejectResultCode, UpstreamReply,
};
use crate::stream::{Connection, StreamBuilder};

/// A connection to the upstream stream: yields [`UpstreamMessage`]s; every one must be
/// answered with [`send_upstream_ack`](Connection::send_upstream_ack) or
/// [`send_upstream_reject`](Connection::send_upstream_reject).
///
/// Open it with [`Core::upstream`](crate::Core::upstream). Several connections share the
/// stream's traffic round-robin.
pub type UpstreamConnection = Connection<UpstreamMessage, UpstreamReply>;

impl Connection<UpstreamMessage, UpstreamReply> {
    /// Acknowledges an upstream message: the MIC challenge is solved, the frame belongs
    /// to `dev_eui` and its true MIC is `mic`.
    pub fn send_upstream_ack(&self, transaction_id: u64, dev_eui: DevEui, mic: u32) -> Result<()> {
        self.send(UpstreamAck::new(transaction_id, dev_eui, mic))
    }

    /// Rejects an upstream message. To give a human-readable reason too, send an
    /// [`UpstreamReject`] with [`send`](Connection::send):
    /// `upstream.send(UpstreamReject::new(id, code).with_message("..."))`.
    pub fn send_upstream_reject(
        &self,
        transaction_id: u64,
        result_code: UpstreamRejectResultCode,
    ) -> Result<()> {
        self.send(UpstreamReject::new(transaction_id, result_code))
    }
}

/// Opens [`UpstreamConnection`]s; see [`StreamBuilder`].
pub type UpstreamBuilder<'a> = StreamBuilder<'a, UpstreamMessage, UpstreamReply>;

impl crate::Core {
    /// The upstream stream: `core.upstream().connect()` opens a connection.
    pub fn upstream(&self) -> UpstreamBuilder<'_> {
        StreamBuilder::new(self, "upstream", self.endpoints().upstream())
    }
}
