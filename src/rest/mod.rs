//! The REST side: the client ([`Core`]) and its builder, where the service is and the
//! access token, the trusted roots (shared with the streams), the host-name cache, one
//! REST call's path, and the routing table and multicast groups built on it.
//!
//! Nothing here depends on the stream side: streams register with the [`Core`] that
//! opened them through [`StreamCloser`], so closing the `Core` closes them.

mod call;
mod client;
mod config;
mod multicast;
mod resolver;
mod routing_table;
mod stats;
pub(crate) mod tls;

pub(crate) use call::{api_error, get, is_services_unauthorized, post, route, Route, Service};
pub(crate) use client::StreamCloser;
pub use client::{Core, CoreBuilder};
pub use config::{AccessToken, Endpoints};
pub use multicast::MulticastGroups;
pub use routing_table::{RoutingTable, Select};
pub use stats::{RestOperation, RestOperationStats, RestStats};
