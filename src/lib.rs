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
//! synchronous programs: no async runtime, just threads, channels and iterators. Names
//! follow the API specification and the Python client, so their documentation maps 1:1.
//!
//! ## The client: [`Core`]
//!
//! A [`Core`] holds the access token, the endpoints derived from one base URL per
//! territory, and one shared HTTP agent with connection reuse. It is cheap to clone and
//! `Send + Sync`: share it between threads. [`Core::close`] (or dropping the last clone)
//! closes it and every stream it opened.
//!
//! ```no_run
//! use std::time::Duration;
//! use ran_routing::Core;
//!
//! let ran = Core::builder("access-token")
//!     .base_url("https://eu.cloud.everynet.io/api/v1")
//!     .request_timeout(Duration::from_secs(10))
//!     .build()?;
//! # Ok::<(), ran_routing::Error>(())
//! ```
//!
//! ## The routing table and multicast groups
//!
//! The RAN routes a radio frame to its LNS by `DevAddr`, or for join requests by
//! `(DevEUI, JoinEUI)`. Subscribing a device is inserting a row in the routing table
//! ([`Core::routing_table`]); [`Core::multicast_groups`] manages groups of devices that
//! share a multicast address. Identifiers are newtypes ([`DevEui`], [`JoinEui`],
//! [`DevAddr`], [`MulticastAddr`]) that print as the API's hex, and a new device is OTAA
//! *or* ABP by type ([`DeviceIdentity`]): passing a `JoinEui` or a `DevAddr` picks one.
//!
//! ## Streams: threads, channels, iterators
//!
//! [`Core::upstream`] and [`Core::downstream`] open WebSocket connections. Each
//! connection runs a reader thread, which decodes frames into a bounded channel (a slow
//! consumer pushes back down to TCP instead of growing memory), and a writer thread that
//! owns every write. Receiving speaks crossbeam's vocabulary: `recv`, `recv_timeout`,
//! `try_recv`, `iter`, `try_iter`. A send returns once the frame is written to the
//! socket. Connections are `Send + Sync`, so worker threads can share one iterator.
//! Several connections to one stream share its traffic round-robin.
//!
//! Every [`UpstreamMessage`] must be answered with an ack or a reject. The ack names the
//! true MIC among the message's `mic_challenge` candidates: the *MIC challenge*, by which
//! the RAN, holding no keys, checks that the LNS owns the device. The `mic` feature
//! solves it (the `mic` module). Downlinks get a [`DownstreamReply::Ack`] ("scheduled") then
//! a [`DownstreamReply::Result`]; [`DownstreamConnection::send_and_wait`] returns the
//! result of one downlink while other threads iterate the rest.
//!
//! The whole walkthrough, here against the emulator (the `ran-routing-emulator` crate), which
//! plays the RAN and the radio:
//!
//! ```
//! # #[cfg(feature = "mic")] {
//! use std::time::Duration;
//! use ran_routing_emulator::Emulator;
//! use ran_routing::mic::{self, AesKey, Keys};
//! use ran_routing::*;
//!
//! // The emulator is test scaffolding with errors of its own: `expect` them.
//! let emulator = Emulator::start().expect("emulator");
//! let ran = Core::new(emulator.token(), &emulator.base_url())?;
//! let (dev_eui, join_eui) = (DevEui::new(0x7ABE1B8C93D7174F), JoinEui::new(0x3CEDCF624F8B68F4));
//! ran.routing_table().insert(NewDevice::otaa(dev_eui, join_eui))?;
//!
//! let upstream = ran.upstream().connect()?;
//! let downstream = ran.downstream().connect()?;
//!
//! // The radio side: the device sends a join request, its MIC among 64 candidates.
//! let app_key: AesKey = "2b7e151628aed2a6abf7158809cf4f3c".parse()?;
//! let frame = mic::join_request(&app_key, join_eui, dev_eui, 1);
//! emulator.wait_upstream_connections(1, Duration::from_secs(5));
//! let played = mic::upstream_with_challenge(&frame, 1, vec![dev_eui], 63, 7)?;
//! emulator.send_upstream(&played).expect("no upstream connection");
//!
//! // The LNS side: solve the challenge and answer.
//! let mut keys = Keys::new();
//! keys.set_join_key(dev_eui, app_key);
//! let uplink = upstream.recv_timeout(Duration::from_secs(5))?;
//! upstream.send(mic::Solver::new().reply(&keys, &uplink))?;
//!
//! // A class A downlink, and its result.
//! let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
//! let downlink = DownstreamMessage::new(
//!     ran.next_transaction_id(),
//!     dev_eui,
//!     TransmissionWindow::class_a(radio, 1),
//!     b"join-accept".to_vec(),
//! );
//! let result = downstream.send_and_wait(downlink, Duration::from_secs(5))?;
//! assert!(result.result_code.is_success());
//!
//! ran.routing_table().delete([dev_eui])?;
//! ran.close();
//! assert_eq!(upstream.wait_closed(), CloseReason::Local);
//! # }
//! # Ok::<(), ran_routing::Error>(())
//! ```
//!
//! Every error type a call returns (`ParseIdError`, `mic::ParseKeyError`,
//! `mic::MicError`, the channel errors of `recv_timeout`, ...) converts into [`Error`],
//! so `?` works in a `fn main() -> Result<(), ran_routing::Error>`.
//!
//! ## Shutdown
//!
//! `close()` on a connection returns at once; messages already received are still
//! handed out by `iter()`, which then ends. `wait_closed()` blocks until the threads have
//! exited and says why the connection ended ([`CloseReason`]). `Drop` closes and joins.
//!
//! ## Staying connected
//!
//! An LNS runs for months. Streams reconnect by themselves after a failure, with
//! exponential backoff and jitter ([`StreamBuilder::reconnect`] tunes it,
//! [`StreamBuilder::no_reconnect`] turns it off); meanwhile `iter()` keeps waiting and
//! sends fail fast with [`Error::NotConnected`]. A refused token is final. Keepalive pings
//! detect a dead peer (half-open TCP, a dropped NAT mapping); [`StreamBuilder::on_event`]
//! reports every state change, and every end is logged at warn level with its reason.
//! When `iter()` ends, [`Connection::close_reason`] tells a close
//! ([`CloseReason::Local`]) from a failure.
//!
//! ```no_run
//! use std::time::Duration;
//! use ran_routing::{Core, Reconnect};
//!
//! let ran = Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
//! let upstream = ran
//!     .upstream()
//!     .reconnect(Reconnect::default())
//!     .keepalive(Duration::from_secs(30), Duration::from_secs(10))
//!     .on_event(|event| eprintln!("upstream: {event}"))
//!     .connect()?;
//! # Ok::<(), ran_routing::Error>(())
//! ```
//!
//! ## Errors
//!
//! One [`Error`] type keeps apart input rejected before anything was sent
//! ([`Error::Invalid`]), the service's error codes ([`Error::Api`] with an [`ApiError`]
//! per code), transport failures (`Io`, `Timeout` with the [`TimeoutKind`] that fired,
//! `Tls` with the `rustls` error as its source, `WebSocket`), answers that
//! cannot be decoded, and closed connections. The access token never appears in any
//! error, `Debug` output or log line of this crate, nor in `tungstenite`'s (the crate
//! writes the stream handshake, whose URL carries the token, itself). One caveat outside
//! this crate's control: `ureq`'s own `TRACE` log dumps raw request bytes, the
//! `Authorization` header included, as hex; keep the `ureq_proto` target below `TRACE`
//! in production.
//!
//! ## Modules
//!
//! - [`client`]: the client, [`Core`], and its builder;
//! - [`routing_table`] and [`multicast`]: the REST calls, reached from a `Core`;
//! - [`fleet`]: keeps the routing table and multicast groups equal to the LNS's devices;
//! - [`upstream`], [`downstream`] and [`stream`]: the stream connections;
//! - [`ids`]: `DevEui`, `JoinEui`, `DevAddr`, `MulticastAddr`, printed as hex;
//! - [`model`]: devices, groups, radios, transmission windows and stream messages;
//! - [`config`]: endpoints derived from a base URL, and the access token;
//! - [`timing`]: GPS time with leap seconds, class B slots and class C deadlines from
//!   `SystemTime`;
//! - [`error`]: one error type with variants to match on;
//! - `mic` (feature `mic`): the MIC challenge solver and LoRaWAN 1.0.x MICs;
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod client;
pub mod config;
pub mod downstream;
pub mod error;
pub mod fleet;
pub mod ids;
#[cfg(feature = "mic")]
pub mod mic;
pub mod model;
pub mod multicast;
mod resolver;
mod rest;
pub mod routing_table;
pub mod stats;
pub mod stream;
mod sync;
pub mod timing;
mod tls;
pub mod tracker;
pub mod upstream;
mod wire;

pub use client::{Core, CoreBuilder};
pub use config::{AccessToken, Endpoints};
pub use downstream::{DownstreamBuilder, DownstreamConnection};
pub use error::{ApiError, Error, FieldError, InvalidInput, Result, TimeoutKind, TlsError};
pub use ids::{DevAddr, DevEui, JoinEui, MulticastAddr, ParseIdError};
pub use model::{
    Device, DeviceIdentity, DeviceUpdate, DownstreamAck, DownstreamMessage, DownstreamRadio,
    DownstreamReply, DownstreamRequest, DownstreamResult, DownstreamResultCode, FhssModulation,
    FskModulation, Gps, LoRaModulation, Modulation, MulticastDownstreamMessage, MulticastGroup,
    MulticastGroupUpdate, NewDevice, TransmissionWindow, TxTiming, UpstreamAck, UpstreamMessage,
    UpstreamRadio, UpstreamReject, UpstreamRejectResultCode, UpstreamReply,
};
pub use multicast::MulticastGroups;
pub use routing_table::{RoutingTable, Select};
pub use stats::{
    ConnectionHealth, ConnectionState, Health, RejectCounts, RestOperation, RestOperationStats,
    RestStats, ResultCounts, StreamStats,
};
pub use stream::{CloseReason, Connection, ConnectionEvent, Reconnect, StreamBuilder, StreamFrame};
pub use tracker::{DownlinkTracker, Tracked};
pub use upstream::{Dedup, DedupStats, UpstreamBuilder, UpstreamConnection};

/// The README's first example, compiled as it is shown (the `mic` feature brings its
/// solver); a unit test below checks the README still shows exactly this code.
#[cfg(all(doctest, feature = "mic"))]
#[doc = "```no_run"]
#[doc = include_str!("../tests/readme/first_look.rs")]
#[doc = "```"]
pub struct ReadmeFirstLook;

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_shows_the_compiled_first_example() {
        let readme = include_str!("../README.md");
        let snippet = include_str!("../tests/readme/first_look.rs");
        assert!(
            readme.contains(&format!("```rust,no_run\n{snippet}```")),
            "README.md's \"A first look\" differs from tests/readme/first_look.rs"
        );
    }

    #[test]
    fn errors_stay_cheap_to_return() {
        // As ureq does: a bigger Error slows every Result of the crate down.
        assert_eq!(std::mem::size_of::<crate::Error>(), 64);
    }
}
