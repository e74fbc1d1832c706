//! The domain model: everything the RAN Routing API carries, one file per concern. Its
//! items are re-exported at the crate root.

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
