//! The handle on one Redis database: a small pool of blocking connections, a key prefix,
//! and the few commands the shared state needs.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{StoreError, StoreErrorKind};
use crate::error::{ConfigErrorKind, Error, Result};
use crate::sync::lock;

/// The oldest Redis that has `SET key value NX GET` (7.0), which the shared
/// de-duplication relies on to claim an uplink and read its answer in one round trip.
const MIN_SERVER_MAJOR: u64 = 7;

/// Connections kept open between uses; more are opened while the pool is empty and
/// closed on return once it holds this many.
const IDLE_CONNECTIONS: usize = 4;

/// A handle on the Redis database that several processes share state in: uplink
/// de-duplication ([`UpstreamBuilder::dedup_in`](crate::UpstreamBuilder::dedup_in)) and
/// LoRaWAN sessions ([`RedisKeys`](super::RedisKeys)).
///
/// Cheap to clone: clones share one small pool of blocking connections. Every key the
/// crate writes starts with the [prefix](RedisStore::prefix) (`ran:` by default), so
/// several networks can share one Redis.
///
/// The URL may carry a password (`redis://:secret@host:6379/0`): like the access token,
/// it never appears in `Debug` output, logs or errors, which name the host and port only.
///
/// ```no_run
/// use ran_routing::redis::RedisStore;
///
/// let store = RedisStore::open("redis://127.0.0.1:6379/0")?.prefix("eu868:");
/// # Ok::<(), ran_routing::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pool: Arc<Pool>,
    prefix: Arc<[u8]>,
}

struct Pool {
    client: redis::Client,
    /// `host:port` (or the socket path) for logs and errors: never the password.
    target: String,
    idle: Mutex<Vec<redis::Connection>>,
    timeout: Duration,
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[:password@]host[:port][/db]`, or
    /// `redis+unix:///path`) and checks that it answers and is Redis 7.0 or later.
    ///
    /// Each command waits at most one second (see [`RedisStore::timeout`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not a Redis URL; [`Error::Store`] when the
    /// server cannot be reached, refuses the password, or is older than 7.0. An
    /// unreachable Redis at start is an error on purpose: start Redis first, or retry.
    pub fn open(url: &str) -> Result<RedisStore> {
        let client = redis::Client::open(url).map_err(|_| {
            Error::config(
                ConfigErrorKind::Url,
                "not a Redis URL (redis://host:port/db)",
            )
        })?;
        let target = target_of(client.get_connection_info());
        let store = RedisStore {
            pool: Arc::new(Pool {
                client,
                target,
                idle: Mutex::new(Vec::new()),
                timeout: Duration::from_secs(1),
            }),
            prefix: Arc::from(&b"ran:"[..]),
        };
        store.check_server()?;
        Ok(store)
    }

    /// Puts every key under `prefix` instead of `ran:`: stores with different prefixes
    /// share nothing, so one Redis can serve several networks or territories.
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.prefix = Arc::from(prefix.as_ref());
        self
    }

    /// How long one command may take, connecting included (default 1 s). A command that
    /// runs out is an [`Error::Store`]; de-duplication then falls back to the process.
    ///
    /// Applies to this handle and its clones made afterwards.
    pub fn timeout(self, timeout: Duration) -> Self {
        let pool = Arc::new(Pool {
            client: self.pool.client.clone(),
            target: self.pool.target.clone(),
            idle: Mutex::new(Vec::new()),
            timeout,
        });
        Self { pool, ..self }
    }

    /// Whether Redis answers a `PING` now.
    pub fn ping(&self) -> Result<()> {
        self.run(|con| redis::cmd("PING").query::<()>(con))
    }

    fn check_server(&self) -> Result<()> {
        let info: String = self.run(|con| redis::cmd("INFO").arg("server").query(con))?;
        let version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .trim();
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(0);
        if major < MIN_SERVER_MAJOR {
            return Err(StoreError::new(
                &self.pool.target,
                StoreErrorKind::TooOld {
                    version: version.to_owned(),
                },
                None,
            )
            .into());
        }
        Ok(())
    }

    /// The key `prefix` + `kind` + `id`.
    pub(crate) fn key(&self, kind: &[u8], id: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + kind.len() + id.len());
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(kind);
        key.extend_from_slice(id);
        key
    }

    /// Runs `f` on a pooled connection. A connection that failed is dropped, not
    /// returned, so the next call opens a fresh one (this is how the store recovers
    /// once Redis is back).
    pub(crate) fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut con = match lock(&self.pool.idle).pop() {
            Some(con) => con,
            None => self.connect()?,
        };
        match f(&mut con) {
            Ok(value) => {
                let mut idle = lock(&self.pool.idle);
                if idle.len() < IDLE_CONNECTIONS {
                    idle.push(con);
                }
                Ok(value)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    fn connect(&self) -> Result<redis::Connection> {
        let timeout = self.pool.timeout;
        let con = self
            .pool
            .client
            .get_connection_with_timeout(timeout)
            .map_err(|e| self.error(e))?;
        con.set_read_timeout(Some(timeout))
            .and_then(|()| con.set_write_timeout(Some(timeout)))
            .map_err(|e| self.error(e))?;
        Ok(con)
    }

    /// A store error naming the server, never the URL (it may hold the password).
    fn error(&self, e: redis::RedisError) -> Error {
        let kind = if e.is_timeout() {
            StoreErrorKind::Timeout
        } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
            StoreErrorKind::Unreachable
        } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
            StoreErrorKind::Auth
        } else {
            StoreErrorKind::Command
        };
        StoreError::new(&self.pool.target, kind, Some(e)).into()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.pool.target)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish_non_exhaustive()
    }
}

fn target_of(info: &redis::ConnectionInfo) -> String {
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        redis::ConnectionAddr::Unix(path) => path.display().to_string(),
        _ => "redis".to_owned(),
    }
}
