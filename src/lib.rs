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
//! `Send + Sync`: share it between threads. [`Core::close`] closes it and every stream it
//! opened; dropping the last clone leaves the streams it opened running.
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
//! consumer pushes back down to TCP instead of growing memory), and a second thread that
//! writes keepalive pings and the replies to the server's pings and closes, and
//! reconnects after a failure. Receiving speaks crossbeam's vocabulary: `recv`, `recv_timeout`,
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
//! let keys = Keys::new();
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
//! When `iter()` ends, `close_reason()` ([`UpstreamConnection::close_reason`]) tells a
//! close ([`CloseReason::Local`]) from a failure, whose [`StreamErrorKind`] says what failed.
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
//! ## Observability
//!
//! Counters, gauges and health of the stream connections and the REST calls, for an
//! operator who must see without reading logs whether uplinks flow, how they are
//! answered, whether downlinks succeed and whether the streams stay up.
//!
//! - [`UpstreamConnection::stats`] (and the downstream's) gives a [`StreamStats`] snapshot of one stream connection,
//!   counted since it was opened, across reconnections.
//! - [`Core::rest_stats`] gives a [`RestStats`] snapshot of the REST calls made through a
//!   `Core` (and its clones), by operation and outcome.
//! - [`Core::health`] and a connection's `health()` answer "is this LNS connected to the RAN
//!   right now", ready to map to a readiness probe.
//!
//! Counting costs a relaxed atomic add per event in one shared allocation per
//! connection: no lock, no allocation.
//!
//! ### Metrics
//!
//! With the cargo feature `metrics`, the same counters and gauges are also published
//! through the [`metrics`](https://docs.rs/metrics) facade, so whatever exporter the
//! application installed picks them up. The crate installs no recorder and runs no
//! exporter. Handles are registered when a connection opens (install the recorder
//! before opening connections); without the feature nothing of this is compiled.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `ran_routing_stream_frames_received_total` | counter | `stream` | message frames read from the server |
//! | `ran_routing_stream_frames_skipped_total` | counter | `stream` | frames that did not decode as a message, logged and skipped |
//! | `ran_routing_stream_messages_handed_out_total` | counter | `stream` | messages taken by the application (receiving methods or a waiting `send_and_wait`) |
//! | `ran_routing_stream_received_bytes_total` | counter | `stream` | payload bytes of the message frames received |
//! | `ran_routing_stream_sent_bytes_total` | counter | `stream` | payload bytes of the messages sent |
//! | `ran_routing_stream_send_errors_total` | counter | `stream` | sends that failed after the message was valid (not connected, closed, write failure) |
//! | `ran_routing_stream_reconnections_total` | counter | `stream` | successful reconnections |
//! | `ran_routing_stream_connected` | gauge | `stream` | connections of this stream that are up now |
//! | `ran_routing_stream_messages_waiting` | gauge | `stream` | received messages waiting for the application |
//! | `ran_routing_stream_last_frame_timestamp_seconds` | gauge | `stream` | Unix time of the last message frame received |
//! | `ran_routing_upstream_acks_sent_total` | counter | | upstream acks sent |
//! | `ran_routing_upstream_rejects_sent_total` | counter | `code` | upstream rejects sent, by result code (`MICFailed`, `Other`, `unknown`) |
//! | `ran_routing_downstream_downlinks_sent_total` | counter | `kind` | downlinks sent, `unicast` or `multicast` |
//! | `ran_routing_downstream_acks_received_total` | counter | | downstream acks received |
//! | `ran_routing_downstream_results_received_total` | counter | `code` | downstream results received, by result code (`Success`, `TooLate`, ..., `unknown`) |
//! | `ran_routing_rest_requests_total` | counter | `operation`, `outcome` | REST calls; `outcome` is `ok`, the API's error code (`Device.NotFound`, ...), `transport` or `decode` |
//! | `ran_routing_rest_request_duration_seconds` | histogram | `operation` | time of each REST call, from the request to the decoded answer |
//!
//! `stream` is `upstream` or `downstream`; `operation` is one of [`RestOperation`]'s
//! names (`insert`, `select`, ..., `multicast_remove_device`).
//!
//! ## Errors
//!
//! One [`Error`] type keeps apart input rejected before anything was sent
//! ([`Error::Invalid`]), the service's error codes ([`Error::Api`] with an [`ApiError`]
//! per code), transport failures (`Io`, `Timeout` with the [`TimeoutKind`] that fired,
//! `Tls` with the `rustls` error as its source, `WebSocket` with a [`StreamError`]), answers
//! that cannot be decoded, and closed connections (`Closed` with what is closed and why,
//! `NotConnected` with why the connection went down). The access token never appears in any
//! error, `Debug` output or log line of this crate, nor in `tungstenite`'s (the crate
//! writes the stream handshake, whose URL carries the token, itself). One caveat outside
//! this crate's control: `ureq`'s own `TRACE` log dumps raw request bytes, the
//! `Authorization` header included, as hex; keep the `ureq_proto` target below `TRACE`
//! in production.
//!
//! ## What is where
//!
//! The client's items live at the crate root, each at one path. By concern:
//!
//! | concern | items |
//! | --- | --- |
//! | the client | [`Core`], [`CoreBuilder`], [`Endpoints`], [`AccessToken`] |
//! | REST calls | [`RoutingTable`], [`Select`], [`MulticastGroups`] |
//! | identifiers | [`DevEui`], [`JoinEui`], [`DevAddr`], [`MulticastAddr`], [`ParseIdError`] |
//! | REST objects | [`Device`], [`NewDevice`], [`DeviceIdentity`], [`DeviceUpdate`], [`MulticastGroup`], [`MulticastGroupUpdate`] |
//! | radio and timing | [`UpstreamRadio`], [`DownstreamRadio`], [`Modulation`] ([`LoRaModulation`], [`FskModulation`], [`FhssModulation`]), [`Gps`], [`TransmissionWindow`], [`TxTiming`] |
//! | upstream | [`UpstreamConnection`], [`UpstreamBuilder`], [`UpstreamMessage`], [`UpstreamReply`] ([`UpstreamAck`], [`UpstreamReject`], [`UpstreamRejectResultCode`]), [`Dedup`], [`DedupStats`] |
//! | downstream | [`DownstreamConnection`], [`DownstreamBuilder`], [`DownstreamRequest`] ([`DownstreamMessage`], [`MulticastDownstreamMessage`]), [`DownstreamReply`] ([`DownstreamAck`], [`DownstreamResult`], [`DownstreamResultCode`]), [`DownlinkTracker`], [`Tracked`] |
//! | both streams | [`StreamBuilder`], [`StreamFrame`], [`Reconnect`], [`ConnectionEvent`], [`CloseReason`], [`Iter`], [`TryIter`], [`RecvError`], [`RecvTimeoutError`], [`TryRecvError`], [`PROTOCOL_VERSION`] |
//! | observability | [`StreamStats`], [`RejectCounts`], [`ResultCounts`], [`RestStats`], [`RestOperation`], [`RestOperationStats`], [`Health`], [`ConnectionHealth`], [`ConnectionState`] |
//! | errors | [`Error`], [`Result`], [`ApiError`], [`ConfigError`], [`ConfigErrorKind`], [`FieldError`], [`InvalidInput`], [`TimeoutKind`], [`TlsError`], [`StreamError`], [`StreamErrorKind`], [`Closed`] |
//!
//! Where the specification says "exactly one of", the type is an enum: a radio has one
//! [`Modulation`], a [`TransmissionWindow`] one [`TxTiming`], a new device one
//! [`DeviceIdentity`]. Stream messages serialize with serde into the exact stream frames
//! (CamelCase keys, numeric EUIs, byte arrays); [`Device`] and [`MulticastGroup`] into
//! the REST objects.
//!
//! Four modules are namespaces of their own; their items are reached only through them:
//!
//! - [`fleet`]: keeps the routing table and multicast groups equal to the LNS's devices,
//!   and indexes them by address for bridges ([`fleet::Directory`]);
//! - [`timing`]: GPS time with leap seconds, for class B slots and class C deadlines from
//!   `SystemTime` ([`TransmissionWindow::class_b_at`], [`TransmissionWindow::class_c_by`]);
//! - `mic` (feature `mic`): the MIC challenge solver, LoRaWAN 1.0.x MICs, and signed,
//!   encrypted data downlinks;
//! - `redis` (feature `redis`): de-duplication and sessions shared by several LNS
//!   processes through Redis (`RedisStore`, `RedisKeys`,
//!   `UpstreamBuilder::dedup_in`).
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod downstream;
mod error;
pub mod fleet;
mod ids;
#[cfg(feature = "mic")]
pub mod mic;
mod model;
#[cfg(feature = "redis")]
pub mod redis;
mod rest;
mod stream;
mod sync;
pub mod timing;
mod upstream;
mod wire;

pub use downstream::{DownlinkTracker, DownstreamBuilder, DownstreamConnection, Tracked};
pub use error::{
    ApiError, CloseReason, Closed, ConfigError, ConfigErrorKind, Error, FieldError, InvalidInput,
    Result, StreamError, StreamErrorKind, TimeoutKind, TlsError,
};
pub use ids::{DevAddr, DevEui, JoinEui, MulticastAddr, ParseIdError};
pub use model::{
    Device, DeviceIdentity, DeviceUpdate, DownstreamAck, DownstreamMessage, DownstreamRadio,
    DownstreamReply, DownstreamRequest, DownstreamResult, DownstreamResultCode, FhssModulation,
    FskModulation, Gps, LoRaModulation, Modulation, MulticastDownstreamMessage, MulticastGroup,
    MulticastGroupUpdate, NewDevice, TransmissionWindow, TxTiming, UpstreamAck, UpstreamMessage,
    UpstreamRadio, UpstreamReject, UpstreamRejectResultCode, UpstreamReply, PROTOCOL_VERSION,
};
pub use rest::{
    AccessToken, Core, CoreBuilder, Endpoints, MulticastGroups, RestOperation, RestOperationStats,
    RestStats, RoutingTable, Select,
};
pub use stream::{
    ConnectionEvent, ConnectionHealth, ConnectionState, DedupStats, Health, Iter, Reconnect,
    RecvError, RecvTimeoutError, RejectCounts, ResultCounts, StreamBuilder, StreamFrame,
    StreamStats, TryIter, TryRecvError,
};
pub use upstream::{Dedup, UpstreamBuilder, UpstreamConnection};

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
