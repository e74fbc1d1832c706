//! The upstream stream: uplinks and join requests in, acks and rejects out.

use crate::error::Result;
use crate::ids::DevEui;
use crate::model::{
    UpstreamAck, UpstreamMessage, UpstreamReject, UpstreamRejectResultCode, UpstreamReply,
};
mod dedup;

use crate::stream::{connection_face, DedupStats, Hook, StreamBuilder};
pub use dedup::Dedup;
pub(crate) use dedup::DedupLayer;
#[cfg(feature = "redis")]
pub(crate) use dedup::{answer_copy, give_up};
use std::sync::Arc;

connection_face! {
/// A connection to the upstream stream: yields [`UpstreamMessage`]s; every one must be
/// answered with [`send_upstream_ack`](Self::send_upstream_ack) or
/// [`send_upstream_reject`](Self::send_upstream_reject).
///
/// Receiving speaks crossbeam's vocabulary: [`recv`](Self::recv),
/// [`recv_timeout`](Self::recv_timeout), [`try_recv`](Self::try_recv),
/// [`iter`](Self::iter) and [`try_iter`](Self::try_iter). A connection is `Send + Sync`:
/// several worker threads can share one connection's iterator, and one thread can send
/// while another iterates.
///
/// Open it with [`Core::upstream`](crate::Core::upstream). Several connections share the
/// stream's traffic round-robin.
///
/// ```no_run
/// # fn solve(m: &ran_routing::UpstreamMessage) -> Option<(ran_routing::DevEui, u32)> { None }
/// use ran_routing::{Core, UpstreamRejectResultCode};
///
/// let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
/// let upstream = ran.upstream().connect()?;
/// for message in upstream.iter() {
///     match solve(&message) {
///         Some((dev_eui, mic)) => {
///             upstream.send_upstream_ack(message.transaction_id, dev_eui, mic)?
///         }
///         None => upstream
///             .send_upstream_reject(message.transaction_id, UpstreamRejectResultCode::MicFailed)?,
///     }
/// }
/// # Ok::<(), ran_routing::Error>(())
/// ```
UpstreamConnection, UpstreamMessage, UpstreamReply, "upstream"
}

impl UpstreamConnection {
    /// Acknowledges an upstream message: the MIC challenge is solved, the frame belongs
    /// to `dev_eui` and its true MIC is `mic`.
    pub fn send_upstream_ack(&self, transaction_id: u64, dev_eui: DevEui, mic: u32) -> Result<()> {
        self.send(UpstreamAck::new(transaction_id, dev_eui, mic))
    }

    /// Rejects an upstream message. To give a human-readable reason too, send an
    /// [`UpstreamReject`] with [`send`](Self::send):
    /// `upstream.send(UpstreamReject::new(id, code).with_message("..."))`.
    pub fn send_upstream_reject(
        &self,
        transaction_id: u64,
        result_code: UpstreamRejectResultCode,
    ) -> Result<()> {
        self.send(UpstreamReject::new(transaction_id, result_code))
    }

    /// De-duplication's counters, when it is on
    /// ([`StreamBuilder::dedup`] or `dedup_in`); `None` otherwise.
    pub fn dedup_stats(&self) -> Option<DedupStats> {
        self.inner.hook_dedup_stats()
    }
}

/// Opens [`UpstreamConnection`]s; see [`StreamBuilder`].
pub type UpstreamBuilder<'a> = StreamBuilder<'a, UpstreamMessage, UpstreamReply>;

impl StreamBuilder<'_, UpstreamMessage, UpstreamReply> {
    /// Turns on uplink de-duplication: the RAN may deliver one uplink several times
    /// (the same `PHYPayloadNoMIC`, a new transaction id each time). Within the window,
    /// only the first copy is handed out by [`iter`](UpstreamConnection::iter) and the `recv`
    /// methods; once the application answers it (by any send method), the connection
    /// answers every other copy, received already or later, the same way:
    ///
    /// - an ack is repeated with the same DevEUI and MIC where that MIC is among the
    ///   copy's candidates and that DevEUI among its DevEUIs; otherwise the copy is
    ///   rejected with `MICFailed`;
    /// - a reject is not repeated: the next copy goes to the application as the
    ///   uplink's first copy ([`DedupStats::after_reject`]), since a forged copy with a
    ///   wrong MIC may come first and its reject must not stand for the genuine frame.
    ///   A copy another thread took while the first was being answered waits for that
    ///   answer; after a reject it is handed out by the receiving methods in turn.
    ///
    /// No copy is left unanswered: copies still waiting when the first copy has gone
    /// unanswered for [`Dedup::answer_within`] are rejected with `Other`. Memory is
    /// bounded by the window (expired uplinks are dropped as new ones arrive), by
    /// [`Dedup::max_entries`] and by [`Dedup::MAX_PAYLOAD`]: a longer payload, which no
    /// LoRaWAN device sends, is handed out unremembered. Copies are matched per connection, as the receiving
    /// methods take them off the channel (times count from then), so the work is done on
    /// the application's thread; counters come from
    /// [`dedup_stats`](UpstreamConnection::dedup_stats). Takes a [`Dedup`] or a window.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use ran_routing::{Core, Dedup};
    ///
    /// let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let upstream = ran.upstream().dedup(Duration::from_secs(60)).connect()?;
    /// let strict = ran
    ///     .upstream()
    ///     .dedup(Dedup::new(Duration::from_secs(60)).answer_within(Duration::from_secs(5)))
    ///     .connect()?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn dedup(mut self, config: impl Into<Dedup>) -> Self {
        let config = config.into();
        self.hook = Some(Arc::new(
            move || -> Arc<dyn Hook<UpstreamMessage, UpstreamReply>> {
                DedupLayer::new(config.clone())
            },
        ));
        self
    }
}

impl crate::Core {
    /// The upstream stream: `core.upstream().connect()` opens a connection.
    pub fn upstream(&self) -> UpstreamBuilder<'_> {
        StreamBuilder::new(self, "upstream", self.endpoints().upstream())
    }
}
