//! State shared by several processes through Redis (feature `redis`).
//!
//! The API balances load by round robin: "several websocket clients connected to the same
//! URL will be served on a round robin basis" (the specification, Streams). Copies of one
//! uplink then land in different processes, and each process's frame counters go stale.
//! A [`RedisStore`] is where those processes meet: uplink de-duplication
//! ([`UpstreamBuilder::dedup_in`](crate::UpstreamBuilder::dedup_in)) and LoRaWAN session
//! counters ([`RedisKeys`]) live there, as ChirpStack and The Things Stack keep theirs.
//!
//! Redis 7.0 or later; the blocking `redis` client, no async runtime. Keys at rest in
//! Redis (session keys) are as safe as the Redis that holds them: protect it with a
//! password, TLS or a private network as any LNS's Redis.

mod dedup;
mod keys;
mod shared;
mod store;
#[cfg(test)]
mod tests;

pub use crate::error::{StoreError, StoreErrorKind};
pub use keys::RedisKeys;
pub use store::RedisStore;
