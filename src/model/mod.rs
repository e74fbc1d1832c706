//! The domain model: everything the RAN Routing API carries.
//!
//! Names follow the API specification and the Python client (`Device`, `UpstreamMessage`,
//! `TransmissionWindow`, ...), so its documentation maps 1:1. Where the specification says
//! "exactly one of", the type is an enum: a radio has one [`Modulation`], a
//! [`TransmissionWindow`] one [`TxTiming`], a new device one [`DeviceIdentity`].
//!
//! Stream messages serialize with serde into the exact stream frames (CamelCase keys,
//! numeric EUIs, byte arrays); [`Device`] and [`MulticastGroup`] into the REST objects.
//!
//! ```
//! use ran_routing::model::*;
//!
//! let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
//! let window = TransmissionWindow::class_a(radio, 1);
//! assert!(window.validate().is_ok());
//! assert_eq!(
//!     serde_json::to_value(&window).unwrap(),
//!     serde_json::json!({
//!         "Radio": {"Frequency": 868300000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}},
//!         "Delay": 1
//!     })
//! );
//! ```

use crate::error::InvalidInput;
pub use crate::wire::PROTOCOL_VERSION;

mod codes;
mod decode;
mod downstream;
mod radio;
mod rows;
mod timing;
mod upstream;

pub use codes::*;
pub use downstream::*;
pub use radio::*;
pub use rows::*;
pub use timing::*;
pub use upstream::*;

fn protocol_version() -> u32 {
    PROTOCOL_VERSION
}

fn check_transaction_id(id: u64) -> Result<(), InvalidInput> {
    if id == 0 {
        return Err(InvalidInput::TransactionId);
    }
    Ok(())
}
