//! Reconnection: the backoff policy, and the supervisor thread that replaces a failed
//! link with a new one.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::link::Link;
use super::session::{ConnectionEvent, EventHandler, OpenError, Opener, Session};
use crate::error::{ApiError, Closed, Error, StreamError, StreamErrorKind};

/// Automatic reconnection after a connection fails: exponential backoff with jitter. On
/// by default with [`Reconnect::default`]; tune it with
/// [`StreamBuilder::reconnect`](super::StreamBuilder::reconnect), turn it off with
/// [`StreamBuilder::no_reconnect`](super::StreamBuilder::no_reconnect).
///
/// A token refused by the API is final: the connection gives up at once instead of
/// retrying. A reconnect handshake refused with HTTP 401 or 403 whose body is not the
/// API's own `Unauthorized` answer (a proxy's error page, say) is retried like any other
/// failure and reported as [`ConnectionEvent::Refused`]; [`Reconnect::MAX_REFUSALS`] such refusals
/// in a row end the connection. The backoff starts over only after a connection stayed up for `max_delay`: one that the
/// server drops as soon as it opens does not reset it.
///
/// ```
/// use std::time::Duration;
/// use ran_routing::Reconnect;
///
/// let policy = Reconnect::default()
///     .initial_delay(Duration::from_millis(100))
///     .max_attempts(Some(20));
/// assert_eq!(policy.max_delay, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Reconnect {
    /// Delay before the first retry. Default 500 ms.
    pub initial_delay: Duration,
    /// Upper bound of the delay. Default 30 s.
    pub max_delay: Duration,
    /// Factor applied to the delay after each failed attempt. Default 2.
    pub multiplier: f64,
    /// Give up after this many failed attempts in a row; `None` retries forever.
    /// Default `None`.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// How many reconnect handshakes in a row may be refused with HTTP 401 or 403 before
    /// the connection gives up, when the refusal is not the API's own `Unauthorized`
    /// answer (which ends it at once). With the default backoff, five refusals span about
    /// 7 s: long enough to outlast a proxy's or a load balancer's passing error page,
    /// short enough that a revoked token behind a proxy that hides the API's answer is
    /// noticed.
    pub const MAX_REFUSALS: u32 = 5;

    /// Sets the delay before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the upper bound of the delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the factor applied to the delay after each failed attempt.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Gives up after this many failed attempts in a row; `None` retries forever.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The delay before attempt `attempt` (1-based), before jitter.
    fn base_delay(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        self.initial_delay
            .mul_f64(factor.min(1e9))
            .min(self.max_delay)
    }
}

/// The supervisor: waits for the link's end (running its writer meanwhile), then opens
/// new links with backoff until one is up, the connection is closed, or it gives up.
pub(crate) fn supervise(
    session: Weak<Session>,
    mut link: Arc<Link>,
    mut open: Opener,
    policy: Reconnect,
    wake: Receiver<()>,
) {
    let mut rng = Jitter::new();
    // The backoff step outlives a connection that did not last: a server that accepts
    // and at once drops every connection is retried with growing delays, not hammered
    // at the initial delay forever. One that stayed up longer than the longest delay
    // starts the backoff over.
    let mut step = 0u32;
    let mut up_since = Instant::now();
    loop {
        let reason = link.wait_closed();
        let Some(s) = session.upgrade() else { return };
        if !s.link_ended(&link, reason) {
            return;
        }
        drop(s);
        drop(link);
        if up_since.elapsed() >= policy.max_delay {
            step = 0;
        }
        let mut attempt = 0u32;
        let mut refusals = 0u32;
        link = loop {
            attempt += 1;
            step = step.saturating_add(1);
            let delay = rng.spread(policy.base_delay(step));
            {
                let Some(s) = session.upgrade() else { return };
                if !s.reconnecting(attempt, delay) {
                    return;
                }
            }
            // Close drops the sender, which ends the wait at once.
            if wake.recv_timeout(delay).is_err_and(|e| e.is_disconnected()) {
                return;
            }
            let Some(s) = session.upgrade() else { return };
            match open() {
                Ok(new) => {
                    let new = Arc::new(new);
                    if !s.connected(&new) {
                        // A close raced with the connect and must still win. This thread is
                        // the link's writer: the close goes out now.
                        drop(s);
                        new.wait_closed();
                        return;
                    }
                    up_since = Instant::now();
                    break new;
                }
                Err(OpenError {
                    error: Error::Api(ApiError::Unauthorized { description }),
                    by_api,
                }) => {
                    let refused = ApiError::Unauthorized {
                        description: description.clone(),
                    };
                    refusals += 1;
                    if by_api || refusals >= Reconnect::MAX_REFUSALS {
                        let why = match by_api {
                            true => format!("the token was refused: {description}"),
                            false => format!(
                                "the token was refused {refusals} times in a row: {description}"
                            ),
                        };
                        s.give_up(StreamError::with_source(
                            StreamErrorKind::TokenRefused,
                            why,
                            refused,
                        ));
                        return;
                    }
                    s.emit(ConnectionEvent::Refused {
                        refusals,
                        description: description.clone(),
                    });
                    if policy.max_attempts.is_some_and(|max| attempt >= max) {
                        let why =
                            format!("{attempt} attempts failed, the last refused: {description}");
                        s.give_up(StreamError::with_source(
                            StreamErrorKind::GaveUp { attempts: attempt },
                            why,
                            refused,
                        ));
                        return;
                    }
                }
                Err(OpenError { error, .. }) => {
                    refusals = 0;
                    log::debug!("{}: reconnect attempt {attempt} failed: {error}", s.name());
                    if policy.max_attempts.is_some_and(|max| attempt >= max) {
                        let why = format!("{attempt} attempts failed, the last with: {error}");
                        s.give_up(StreamError::with_source(
                            StreamErrorKind::GaveUp { attempts: attempt },
                            why,
                            error,
                        ));
                        return;
                    }
                }
            }
        };
    }
}

/// How a `connect()` that opted in
/// ([`StreamBuilder::retry_first_connect`](super::StreamBuilder::retry_first_connect))
/// retries its first connection.
pub(crate) struct FirstRetry {
    /// The connection's reconnect policy.
    pub(crate) policy: Reconnect,
    /// Disconnects when the `Core` closes: the retry stops at once.
    pub(crate) cancel: Receiver<()>,
    /// Failed attempts so far, for the `Core`'s health view.
    pub(crate) failed: Arc<AtomicU32>,
}

/// Opens a connection's first link. Without `retry`, one attempt. With it, a failed
/// attempt is retried with the policy's backoff, as a reconnect would be, until a link
/// is up, the attempts run out (the last error), the token is refused (at once when the
/// API refuses it, after [`Reconnect::MAX_REFUSALS`] bare refusals), the configuration
/// cannot work, or the `Core` closes ([`Error::Closed`] with [`Closed::Core`]; the last
/// failure was logged).
pub(crate) fn first_link(
    name: &str,
    open: &mut Opener,
    retry: Option<&FirstRetry>,
    events: Option<&EventHandler>,
) -> Result<Link, Error> {
    let Some(retry) = retry else {
        return open().map_err(|e| e.error);
    };
    let mut rng = Jitter::new();
    let mut refusals = 0u32;
    let mut failed = 0u32;
    loop {
        let error = match open() {
            Ok(link) => return Ok(link),
            Err(OpenError {
                error,
                by_api: true,
            }) => return Err(error),
            Err(OpenError { error, .. }) if matches!(error, Error::Config(_)) => return Err(error),
            Err(OpenError { error, .. }) => {
                let refused = matches!(error, Error::Api(ApiError::Unauthorized { .. }));
                refusals = if refused { refusals + 1 } else { 0 };
                if refusals >= Reconnect::MAX_REFUSALS {
                    return Err(error);
                }
                error
            }
        };
        failed += 1;
        retry.failed.store(failed, Ordering::Relaxed);
        if retry.policy.max_attempts.is_some_and(|max| failed >= max) {
            return Err(error);
        }
        let delay = rng.spread(retry.policy.base_delay(failed));
        log::warn!("{name}: connecting failed ({error}); attempt {failed} in {delay:?}");
        if let Some(handler) = events {
            handler(&ConnectionEvent::Reconnecting {
                attempt: failed,
                delay,
            });
        }
        if retry
            .cancel
            .recv_timeout(delay)
            .is_err_and(|e| e.is_disconnected())
        {
            log::debug!("{name}: the Core was closed while connecting (last failure: {error})");
            return Err(Error::Closed(Closed::Core));
        }
    }
}

/// Jitter for backoff delays: a small xorshift generator, so that many clients restarted
/// together do not retry in lockstep. Not for anything secret.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let here = &nanos as *const u64 as u64;
        Jitter((nanos ^ here.rotate_left(32)) | 1)
    }

    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// "Equal jitter": half the delay fixed, half random.
    fn spread(&mut self, delay: Duration) -> Duration {
        delay.mul_f64(0.5 + 0.5 * self.next_unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_bounded_jitter() {
        let policy = Reconnect {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            multiplier: 2.0,
            max_attempts: None,
        };
        assert_eq!(policy.base_delay(1), Duration::from_millis(100));
        assert_eq!(policy.base_delay(2), Duration::from_millis(200));
        assert_eq!(policy.base_delay(5), Duration::from_millis(1600));
        assert_eq!(policy.base_delay(6), Duration::from_secs(2));
        assert_eq!(policy.base_delay(u32::MAX), Duration::from_secs(2));
        let mut jitter = Jitter::new();
        for _ in 0..1000 {
            let d = jitter.spread(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }
}
