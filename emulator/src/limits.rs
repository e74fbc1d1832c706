//! What keeps the emulator a bounded network service whatever its peers do: connection
//! slots sized from the descriptor limit, a spare descriptor to refuse with when even
//! that runs out, and warnings that a flood cannot multiply.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Descriptors kept out of the slots' share: the listener, the spare, log files, TLS
/// and the embedding program's own.
const RESERVED_DESCRIPTORS: u64 = 32;

/// Descriptors one connection may hold: its socket and the server's clone of it, and
/// for a stream connection its thread's clone, readiness poller and wake-up.
const DESCRIPTORS_PER_SLOT: u64 = 5;

/// The soft limit is raised no higher than this, however high the hard limit is.
const MAX_RAISED_DESCRIPTORS: u64 = 1 << 20;

/// Connection slots for `asked`: the soft descriptor limit is first raised to the hard
/// one where the system allows, then the slots are as many as it covers, so `accept`
/// never fails for want of descriptors while a slot is free.
pub(crate) fn connection_slots(asked: usize) -> usize {
    match descriptor_limit() {
        Some(limit) => {
            let covered = limit.saturating_sub(RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_SLOT;
            let slots = usize::try_from(covered)
                .unwrap_or(usize::MAX)
                .clamp(1, asked);
            if slots < asked {
                log::warn!(
                    "emulator: the descriptor limit ({limit}) covers {slots} connections, \
                     not the {asked} asked for: serving {slots} at once (raise `ulimit -n`)"
                );
            }
            slots
        }
        None => asked,
    }
}

/// The soft descriptor limit after raising it as far as allowed; `None` if unbounded or
/// unknown.
#[cfg(unix)]
fn descriptor_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limits = getrlimit(Resource::Nofile);
    let wanted = limits
        .maximum
        .unwrap_or(u64::MAX)
        .min(MAX_RAISED_DESCRIPTORS);
    if limits.current.is_some_and(|soft| soft < wanted) {
        let raised = Rlimit {
            current: Some(wanted),
            maximum: limits.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            log::debug!("emulator: cannot raise the descriptor limit to {wanted}: {e}");
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(not(unix))]
fn descriptor_limit() -> Option<u64> {
    None
}

/// Whether `accept` failed because the process or the system is out of descriptors.
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    cfg!(unix) && matches!(e.raw_os_error(), Some(23 | 24))
}

/// A descriptor held in reserve: when `accept` fails for want of descriptors, the
/// waiting connection would stay in the backlog with no answer, its client hanging.
/// Giving the spare up lets the server take that connection, answer it 503 and close
/// it; the spare is then taken back.
pub(crate) struct Spare(Option<File>);

impl Spare {
    pub(crate) fn new() -> Self {
        Self(Self::open())
    }

    fn open() -> Option<File> {
        File::open(if cfg!(windows) { "NUL" } else { "/dev/null" }).ok()
    }

    /// Accepts one connection with the spare's descriptor; `None` if there is no spare
    /// to give up or the accept still fails.
    pub(crate) fn accept(&mut self, listener: &TcpListener) -> Option<TcpStream> {
        drop(self.0.take()?);
        let accepted = listener.accept().ok().map(|(tcp, _)| tcp);
        // Taken back after the refused connection is closed, by the caller's next call
        // or here if nothing was accepted.
        if accepted.is_none() {
            self.0 = Self::open();
        }
        accepted
    }

    /// Takes the descriptor back once the refused connection is closed.
    pub(crate) fn restore(&mut self) {
        if self.0.is_none() {
            self.0 = Self::open();
        }
    }
}

/// A warning that a peer can repeat at will (an unknown reply, an invalid frame, a
/// refused connection): logged at most once per period, with how many were left out.
pub(crate) struct Warning {
    period: Duration,
    suppressed: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Warning {
    pub(crate) const fn new(period: Duration) -> Self {
        Self {
            period,
            suppressed: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// Logs `message()` at warn level unless one was logged less than a period ago; a
    /// logged line says how many were left out since the last one.
    pub(crate) fn warn(&self, message: impl FnOnce() -> String) {
        let now = Instant::now();
        {
            let mut last = lock(&self.last);
            if last.is_some_and(|at| now.duration_since(at) < self.period) {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            *last = Some(now);
        }
        match self.suppressed.swap(0, Ordering::Relaxed) {
            0 => log::warn!("{}", message()),
            n => log::warn!("{} ({n} more like it not logged)", message()),
        }
    }
}

/// How often a repeated warning is logged at most.
pub(crate) const WARNING_PERIOD: Duration = Duration::from_secs(1);
