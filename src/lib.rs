//! # ran-routing
//!
//! A blocking, thread-based client for the Everynet RAN Routing API.
//!
//! Everynet runs a neutral-host LoRaWAN radio access network (RAN). A LoRaWAN Network
//! Server (LNS) uses this API to subscribe devices in the RAN's *routing table*, manage
//! *multicast groups*, receive *upstream* messages (uplinks and join requests) over one
//! WebSocket and send *downstream* messages (downlinks and join accepts) over another.
//!
//! The crate mirrors the official asyncio Python client, made idiomatic Rust for plain
//! synchronous programs: no async runtime, just threads, channels and iterators.
//!
//! Modules, one concern each:
//! - [`core`]: the client, [`Core`], and its builder;
//! - [`routing_table`] and [`multicast`]: the REST calls, reached from a `Core`;
//! - [`ids`]: `DevEui`, `JoinEui`, `DevAddr`, `MulticastAddr`, printed as hex;
//! - [`model`]: devices, groups, radios, transmission windows and stream messages;
//! - [`config`]: endpoints derived from a base URL, and the access token;
//! - [`wire`]: the exact JSON the service speaks;
//! - [`error`]: one error type with variants to match on;
//! - `mic` (feature `mic`): the MIC challenge solver and LoRaWAN 1.0.x MICs.
//! - `emulator` (feature `emulator`): a local RAN Routing API server for tests.
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod config;
pub mod core;
pub mod downstream;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
pub mod ids;
#[cfg(feature = "mic")]
pub mod mic;
pub mod model;
pub mod multicast;
mod resolver;
mod rest;
pub mod routing_table;
pub mod stream;
mod tls;
pub mod upstream;
pub mod wire;

pub use crate::core::{Core, CoreBuilder};
pub use config::{AccessToken, Endpoints};
pub use downstream::{DownstreamBuilder, DownstreamConnection};
pub use error::{ApiError, Error, FieldError, InvalidInput, Result};
pub use ids::{DevAddr, DevEui, JoinEui, MulticastAddr, ParseIdError};
pub use model::{
    Device, DeviceIdentity, DownstreamAck, DownstreamMessage, DownstreamRadio, DownstreamReply,
    DownstreamRequest, DownstreamResult, DownstreamResultCode, FhssModulation, FskModulation, Gps,
    LoRaModulation, Modulation, MulticastDownstreamMessage, MulticastGroup, TransmissionWindow,
    TxTiming, UpstreamAck, UpstreamMessage, UpstreamRadio, UpstreamReject,
    UpstreamRejectResultCode, UpstreamReply,
};
pub use multicast::MulticastGroups;
pub use routing_table::{RoutingTable, Select};
pub use stream::{CloseReason, Connection, StreamBuilder, StreamFrame, StreamOptions};
pub use upstream::{UpstreamBuilder, UpstreamConnection};
