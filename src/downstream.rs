//! The downstream stream: downlinks and join accepts out, acks and results in.
//!
//! ```no_run
//! use ran_routing::{Core, DevEui, DownstreamRadio, DownstreamReply, LoRaModulation, TransmissionWindow};
//!
//! let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
//! let downstream = ran.downstream().connect()?;
//! let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
//! downstream.send_downstream(
//!     1,
//!     DevEui::new(0x7ABE1B8C93D7174F),
//!     TransmissionWindow::class_a(radio, 1),
//!     b"phy-payload-from-lns".to_vec(),
//!     None,
//! )?;
//! for reply in downstream.iter() {
//!     match reply {
//!         DownstreamReply::Ack(ack) => println!("scheduled: {}", ack.transaction_id),
//!         DownstreamReply::Result(result) => println!("done: {}", result.result_code),
//!     }
//! }
//! # Ok::<(), ran_routing::Error>(())
//! ```

use crate::error::Result;
use crate::ids::{DevAddr, DevEui, MulticastAddr};
use crate::model::{
    DownstreamMessage, DownstreamReply, DownstreamRequest, MulticastDownstreamMessage,
    TransmissionWindow,
};
use crate::stream::{Connection, StreamBuilder};

/// A connection to the downstream stream: sends downlinks to devices and multicast
/// groups, and yields a [`DownstreamReply`] (ack, then result) for each.
///
/// Open it with [`Core::downstream`](crate::Core::downstream). Transaction ids are chosen
/// by the LNS and must be unique across unicast and multicast downlinks.
pub type DownstreamConnection = Connection<DownstreamReply, DownstreamRequest>;

impl Connection<DownstreamReply, DownstreamRequest> {
    /// Sends a downlink (or, with `target_dev_addr`, a join accept) to `dev_eui`.
    pub fn send_downstream(
        &self,
        transaction_id: u64,
        dev_eui: DevEui,
        tx_window: TransmissionWindow,
        phy_payload: impl Into<Vec<u8>>,
        target_dev_addr: Option<DevAddr>,
    ) -> Result<()> {
        let mut message = DownstreamMessage::new(transaction_id, dev_eui, tx_window, phy_payload);
        message.target_dev_addr = target_dev_addr;
        self.send(message)
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

/// Opens [`DownstreamConnection`]s; see [`StreamBuilder`].
pub type DownstreamBuilder<'a> = StreamBuilder<'a, DownstreamReply, DownstreamRequest>;

impl crate::Core {
    /// The downstream stream: `core.downstream().connect()` opens a connection.
    pub fn downstream(&self) -> DownstreamBuilder<'_> {
        StreamBuilder::new(self, "downstream", self.endpoints().downstream())
    }
}
