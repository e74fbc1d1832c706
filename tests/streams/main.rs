//! The stream connections, one binary: upstream and downstream against the emulator,
//! downlink correlation, the runtime helpers (de-duplication, downlink tracking), stats
//! and health, and the token kept out of every log line.
//!
//! The reliability and soak tests keep binaries of their own: they measure the whole
//! process's memory and threads, which other tests running alongside would disturb.

#[path = "../common/mod.rs"]
mod common;

mod correlation;
mod errors;
mod lifetime;
mod observability;
mod runtime;
mod streams;
mod token_logs;
