//! The REST API, one binary: the routing table and multicast groups against the
//! emulator, transport failures against raw servers, and the token kept out of sight.

#[path = "../common/mod.rs"]
mod common;

mod multicast;
mod routing_table;
mod secrets;
mod transport;
mod url_mistakes;
