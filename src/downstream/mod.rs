//! The downstream stream: downlinks and join accepts out, acks and results in.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ids::{DevEui, MulticastAddr};
use crate::model::{
    DownstreamMessage, DownstreamReply, DownstreamRequest, DownstreamResult,
    MulticastDownstreamMessage, TransmissionWindow,
};
use crate::stream::{connection_face, StreamBuilder};

mod tracker;
pub use tracker::{DownlinkTracker, Tracked};

connection_face! {
/// A connection to the downstream stream: sends downlinks to devices and multicast
/// groups, and yields a [`DownstreamReply`] (ack, then result) for each.
///
/// Open it with [`Core::downstream`](crate::Core::downstream). Transaction ids are chosen
/// by the LNS and must be unique across unicast and multicast downlinks.
///
/// ```no_run
/// use ran_routing::{Core, DevEui, DownstreamRadio, DownstreamReply, LoRaModulation, TransmissionWindow};
///
/// let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
/// let downstream = ran.downstream().connect()?;
/// let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
/// downstream.send_downstream(
///     1,
///     DevEui::new(0x7ABE1B8C93D7174F),
///     TransmissionWindow::class_a(radio, 1),
///     b"phy-payload-from-lns".to_vec(),
/// )?;
/// for reply in downstream.iter() {
///     match reply {
///         DownstreamReply::Ack(ack) => println!("scheduled: {}", ack.transaction_id),
///         DownstreamReply::Result(result) => println!("done: {}", result.result_code),
///     }
/// }
/// # Ok::<(), ran_routing::Error>(())
/// ```
DownstreamConnection, DownstreamReply, DownstreamRequest, "downstream"
}

impl DownstreamConnection {
    /// Sends a downlink to `dev_eui`. A join accept also names the address it hands out:
    /// send a [`DownstreamMessage`] with
    /// [`with_target_dev_addr`](DownstreamMessage::with_target_dev_addr) through
    /// [`send`](Self::send).
    pub fn send_downstream(
        &self,
        transaction_id: u64,
        dev_eui: DevEui,
        tx_window: TransmissionWindow,
        phy_payload: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.send(DownstreamMessage::new(
            transaction_id,
            dev_eui,
            tx_window,
            phy_payload,
        ))
    }

    /// Sends a downlink to the multicast group at `addr`.
    pub fn send_multicast_downstream(
        &self,
        transaction_id: u64,
        addr: MulticastAddr,
        tx_window: TransmissionWindow,
        phy_payload: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.send(MulticastDownstreamMessage::new(
            transaction_id,
            addr,
            tx_window,
            phy_payload,
        ))
    }
}

impl DownstreamConnection {
    /// Sends a downlink (unicast or multicast) and waits up to `timeout` for its
    /// [`DownstreamResult`].
    ///
    /// The ack and the result for this transaction go to this call only; every other
    /// reply still reaches [`iter`](Self::iter), so a thread can iterate while
    /// others wait, and many threads may wait at once. On timeout the error is
    /// [`Error::DownstreamTimeout`], saying whether the ack came; when the connection
    /// ends first it is [`Error::DownstreamInterrupted`], with the ack if it came. In both
    /// cases the downlink was sent ([`Error::nothing_sent`] is `false`): resending it may
    /// deliver it twice.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use ran_routing::{Core, DevEui, DownstreamMessage, DownstreamRadio, LoRaModulation, TransmissionWindow};
    ///
    /// let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let downstream = ran.downstream().connect()?;
    /// let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
    /// let downlink = DownstreamMessage::new(
    ///     ran.next_transaction_id(),
    ///     DevEui::new(0x7ABE1B8C93D7174F),
    ///     TransmissionWindow::class_a(radio, 1),
    ///     b"payload".to_vec(),
    /// );
    /// let result = downstream.send_and_wait(downlink, Duration::from_secs(10))?;
    /// println!("{}", result.result_code);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn send_and_wait(
        &self,
        request: impl Into<DownstreamRequest>,
        timeout: Duration,
    ) -> Result<DownstreamResult> {
        let request = request.into();
        let transaction_id = request.transaction_id();
        let collected = self
            .inner
            .send_and_collect(transaction_id, request, timeout)?;
        let mut ack = None;
        for reply in collected.replies {
            match reply {
                DownstreamReply::Ack(a) => ack = Some(a),
                DownstreamReply::Result(result) => return Ok(result),
            }
        }
        match collected.ended {
            Some(reason) => Err(Error::DownstreamInterrupted {
                transaction_id,
                ack,
                reason: reason.into(),
            }),
            None => Err(Error::DownstreamTimeout {
                transaction_id,
                ack,
            }),
        }
    }
}

/// Opens [`DownstreamConnection`]s; see [`StreamBuilder`].
pub type DownstreamBuilder<'a> = StreamBuilder<'a, DownstreamReply, DownstreamRequest>;

impl crate::Core {
    /// The downstream stream: `core.downstream().connect()` opens a connection.
    pub fn downstream(&self) -> DownstreamBuilder<'_> {
        StreamBuilder::new(self, "downstream", self.endpoints().downstream())
    }
}
