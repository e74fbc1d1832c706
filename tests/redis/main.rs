//! State shared through a real `redis-server` on loopback (feature `redis`): sessions
//! here, de-duplication across processes in `dedup.rs`.
#![cfg(feature = "redis")]

#[path = "../common/redis.rs"]
mod server;

mod dedup;
mod keys;
