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

pub(crate) use dedup::SharedDedup;
pub use keys::RedisKeys;
pub use store::RedisStore;

use std::fmt;

/// A Redis command that failed, in an [`Error::Store`](crate::Error::Store). Names the
/// server by host and port, never by URL: the URL may carry a password.
#[derive(Debug, thiserror::Error)]
#[error("Redis at {target}: {kind}")]
pub struct StoreError {
    target: String,
    kind: StoreErrorKind,
    #[source]
    source: Option<redis::RedisError>,
}

impl StoreError {
    pub(crate) fn new(
        target: &str,
        kind: StoreErrorKind,
        source: Option<redis::RedisError>,
    ) -> Self {
        Self {
            target: target.to_owned(),
            kind,
            source,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &StoreErrorKind {
        &self.kind
    }
}

/// What went wrong talking to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// No connection: refused, reset or unreachable. Retry once Redis is back.
    Unreachable,
    /// Redis did not answer within [`RedisStore::timeout`].
    Timeout,
    /// Redis refused the credentials in the URL.
    Auth,
    /// The server is older than Redis 7.0.
    TooOld {
        /// The version the server reported.
        version: String,
    },
    /// Redis answered a command with an error.
    Command,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable => f.write_str("unreachable"),
            Self::Timeout => f.write_str("timed out"),
            Self::Auth => f.write_str("authentication failed"),
            Self::TooOld { version } => write!(f, "version {version}; 7.0 or later is needed"),
            Self::Command => f.write_str("command failed"),
        }
    }
}

impl From<StoreError> for crate::Error {
    fn from(e: StoreError) -> Self {
        crate::Error::Store(Box::new(e))
    }
}
