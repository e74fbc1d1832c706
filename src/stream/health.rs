//! The health of stream connections: one connection's, and every connection a
//! [`Core`](crate::Core) opened.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::builder::Pending;
use super::session::Session;
use super::stats::opt_secs;
use super::CloseReason;

/// Where a stream connection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    /// The WebSocket is up.
    Connected,
    /// The last link failed; reconnection is under way.
    Reconnecting {
        /// The attempt under way or waiting for its delay (1 for the first retry).
        attempt: u32,
    },
    /// The connection ended for good.
    Closed {
        /// Why.
        #[serde(serialize_with = "reason_text")]
        reason: CloseReason,
    },
}

fn reason_text<S: Serializer>(r: &CloseReason, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionState::Connected => f.write_str("connected"),
            ConnectionState::Reconnecting { attempt } => {
                write!(f, "reconnecting (attempt {attempt})")
            }
            ConnectionState::Closed { reason } => write!(f, "closed ({reason})"),
        }
    }
}

/// The health of one stream connection, from
/// [`UpstreamConnection::health`](crate::UpstreamConnection::health) (and the downstream's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConnectionHealth {
    /// `"upstream"` or `"downstream"`.
    pub stream: &'static str,
    /// Connected, reconnecting or closed.
    #[serde(flatten)]
    pub state: ConnectionState,
    /// Time since the last message frame arrived; `None` before the first one. A quiet
    /// stream can be healthy (keepalive pings do not count here): judge it against the
    /// traffic you expect. Serialized in seconds.
    #[serde(serialize_with = "opt_secs")]
    pub since_last_frame: Option<Duration>,
}

impl ConnectionHealth {
    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.state == ConnectionState::Connected
    }
}

impl fmt::Display for ConnectionHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.stream, self.state)?;
        if let Some(age) = self.since_last_frame {
            write!(f, ", last frame {:.1}s ago", age.as_secs_f64())?;
        }
        Ok(())
    }
}

/// The health of every live stream connection a [`Core`](crate::Core) opened, from
/// [`Core::health`](crate::Core::health).
///
/// ```no_run
/// # let ran = ran_routing::Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
/// let upstream = ran.upstream().connect()?;
/// let health = ran.health();
/// // e.g. a readiness probe: 200 when ready, 503 with the one-liner otherwise.
/// let (status, body) = if health.is_ready() { (200, "ok".to_owned()) } else { (503, health.to_string()) };
/// # let _ = (status, body, upstream);
/// # Ok::<(), ran_routing::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// One entry per connection that has not been dropped, in the order they were opened.
    pub connections: Vec<ConnectionHealth>,
}

impl Health {
    /// Ready: at least one stream connection, and every one of them connected. A
    /// connection that is reconnecting or closed (even by a local close) makes the LNS
    /// not ready; drop connections you closed on purpose.
    pub fn is_ready(&self) -> bool {
        !self.connections.is_empty() && self.connections.iter().all(|c| c.is_connected())
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_ready() {
            "ready"
        } else {
            "not ready"
        })?;
        if self.connections.is_empty() {
            return f.write_str(": no stream connection");
        }
        for (i, c) in self.connections.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl crate::Core {
    /// The health of every stream connection opened from this `Core` and not dropped:
    /// connected, reconnecting (with the attempt) or closed (with why), and the age of
    /// its last frame. [`Health::is_ready`] maps it to a readiness probe; its `Display`
    /// is a one-line summary. After [`Core::close`](crate::Core::close) it lists no
    /// connection (and is not ready).
    pub fn health(&self) -> Health {
        let streams = self.live_streams();
        Health {
            connections: streams
                .iter()
                .filter_map(|s| {
                    let any = s.as_any();
                    any.downcast_ref::<Session>()
                        .map(Session::health)
                        .or_else(|| any.downcast_ref::<Pending>().map(Pending::health))
                })
                .collect(),
        }
    }
}
