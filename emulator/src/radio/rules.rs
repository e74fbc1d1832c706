//! The routing rules the service enforces, each switchable off for a lenient emulator.

use std::time::Duration;

/// Uplinks heard longer ago than this are delivered with `Outdated: true` (the spec).
pub(crate) const OUTDATED_AFTER: Duration = Duration::from_millis(2500);

/// Which of the service's rules the emulator enforces, and how fast emulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rules {
    /// Played upstreams reach the LNS only through a routing-table row.
    pub(crate) subscription: bool,
    /// A join accept needs `TargetDevAddr`.
    pub(crate) security_contexts: bool,
    /// Downlinks are judged against their transmission window, and answered after
    /// their transmission time.
    pub(crate) downlink_timing: bool,
    /// Played upstreams heard over 2.5 s ago carry `Outdated: true`.
    pub(crate) outdated: bool,
    /// Emulated seconds per real second, inverted: 0.1 makes a 5 s window 0.5 s.
    pub(crate) time_scale: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            subscription: true,
            security_contexts: true,
            downlink_timing: true,
            outdated: true,
            time_scale: 1.0,
        }
    }
}

impl Rules {
    /// Every rule off, time unscaled.
    pub(crate) fn lenient() -> Self {
        Self {
            subscription: false,
            security_contexts: false,
            downlink_timing: false,
            outdated: false,
            time_scale: 1.0,
        }
    }

    /// An emulated duration in real time.
    pub(crate) fn scale(&self, emulated: Duration) -> Duration {
        emulated.mul_f64(self.time_scale)
    }
}
