//! Emulated devices with real keys: they send correctly signed join requests and data
//! uplinks, each wrapped in a MIC challenge like the RAN's, and every ack the LNS sends
//! back is checked against the true MIC.
//!
//! The emulator plays the radio and the RAN at once: a [`RadioDevice`] holds the keys a
//! device was provisioned with, and [`Emulator::play_join_request`] /
//! [`Emulator::play_uplink`] build the frame it would transmit, then hide its MIC among
//! decoys as the RAN does. The true DevEUI and MIC of every played upstream are kept, so
//! the answer to it gets an [`UpstreamVerdict`].
//!
//! OTAA devices join for real: a join accept the LNS sends them is decrypted with the
//! device's AppKey, and a valid one, for the join request the device is waiting on, in
//! its join-accept windows, gives it the new DevAddr and session keys; every downlink to
//! a radio device gets a [`DownlinkVerdict`].

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ran_routing::mic::{MAX_CHALLENGE, MIN_CHALLENGE};
use ran_routing::{DevAddr, DevEui, MulticastAddr, UpstreamRejectResultCode, UpstreamReply};

use crate::error::{Error, Result};

#[cfg(doc)]
use crate::Emulator;

mod api;
mod device;
mod play;
mod receive;
pub(crate) mod routes;
mod rules;
mod verdict;

pub(crate) use rules::Rules;

pub(crate) use api::stats;
use device::RadioSession;
pub use device::{DeviceClass, RadioDevice};
use play::FIRST_TRANSACTION_ID;
pub(crate) use play::{play, play_copies};
pub use play::{Copies, Play, MAX_COPIES};
use receive::GroupSession;
pub(crate) use receive::Window;
pub use verdict::{
    DownlinkVerdict, IgnoredReason, MicStats, PlayedUpstream, ReceivedDownlink, UpstreamVerdict,
};

struct DeviceState {
    device: RadioDevice,
    /// Candidates of its next challenge: the RAN narrows the list while the LNS keeps
    /// solving, and widens it again after a failure.
    candidates: usize,
}

struct RadioState {
    devices: BTreeMap<DevEui, DeviceState>,
    played: HashMap<u64, PlayedUpstream>,
    /// What radio devices made of the downlinks sent to them, by the downlink's
    /// transaction id.
    downlinks: HashMap<u64, DownlinkVerdict>,
    /// The session keys multicast groups' members were provisioned with.
    groups: HashMap<MulticastAddr, GroupSession>,
    /// Each group's last downlink counter its members accepted.
    group_fcnt_down: HashMap<MulticastAddr, u32>,
    next_transaction_id: u64,
    min_candidates: usize,
    max_candidates: usize,
    stats: MicStats,
    rules: Rules,
}

/// The emulated air: devices, played upstreams and their verdicts.
pub(crate) struct Radio {
    state: Mutex<RadioState>,
    /// Signalled on every verdict.
    answered: Condvar,
    /// Held across building, sending and committing a play, so a play that cannot be
    /// sent uses up nothing and two plays never take the same counter.
    playing: Mutex<()>,
    /// Scatters decoys differently in every emulator.
    seed: u64,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

impl Default for Radio {
    fn default() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0);
        Self {
            state: Mutex::new(RadioState {
                devices: BTreeMap::new(),
                played: HashMap::new(),
                downlinks: HashMap::new(),
                groups: HashMap::new(),
                group_fcnt_down: HashMap::new(),
                next_transaction_id: FIRST_TRANSACTION_ID,
                min_candidates: MIN_CHALLENGE,
                max_candidates: MAX_CHALLENGE,
                stats: MicStats::default(),
                rules: Rules::default(),
            }),
            answered: Condvar::new(),
            playing: Mutex::new(()),
            seed: hasher.finish(),
        }
    }
}

impl Radio {
    fn lock(&self) -> MutexGuard<'_, RadioState> {
        crate::sync::lock(&self.state)
    }

    pub(crate) fn rules(&self) -> Rules {
        self.lock().rules
    }

    pub(crate) fn set_rules(&self, rules: Rules) {
        self.lock().rules = rules;
    }

    /// Puts a device on the air; with `replace` false, refuses one whose DevEUI is
    /// already there. Returns whether a device was replaced.
    pub(crate) fn add(&self, device: RadioDevice, replace: bool) -> Result<bool> {
        let mut s = self.lock();
        if !replace && s.devices.contains_key(&device.dev_eui) {
            return Err(invalid(format!(
                "radio device {} is already on the air: replace it explicitly to change \
                 its keys and counters",
                device.dev_eui
            )));
        }
        let candidates = s.max_candidates;
        Ok(s.devices
            .insert(device.dev_eui, DeviceState { device, candidates })
            .is_some())
    }

    pub(crate) fn remove(&self, dev_eui: DevEui) -> bool {
        self.lock().devices.remove(&dev_eui).is_some()
    }

    pub(crate) fn device(&self, dev_eui: DevEui) -> Option<RadioDevice> {
        self.lock().devices.get(&dev_eui).map(|d| d.device.clone())
    }

    pub(crate) fn devices(&self) -> Vec<(RadioDevice, usize)> {
        self.lock()
            .devices
            .values()
            .map(|d| (d.device.clone(), d.candidates))
            .collect()
    }

    /// The radio devices whose session has this DevAddr.
    pub(crate) fn devices_with_addr(&self, dev_addr: DevAddr) -> Vec<DevEui> {
        self.lock()
            .devices
            .values()
            .filter(|d| d.device.dev_addr() == Some(dev_addr))
            .map(|d| d.device.dev_eui)
            .collect()
    }

    pub(crate) fn set_challenge_size(&self, min: usize, max: usize) -> Result<()> {
        let range = MIN_CHALLENGE..=MAX_CHALLENGE;
        if !range.contains(&min) || !range.contains(&max) || min > max {
            return Err(invalid(format!(
                "a MIC challenge has {MIN_CHALLENGE} to {MAX_CHALLENGE} candidates: \
                 min {min} and max {max} must be in that range, min <= max"
            )));
        }
        let mut s = self.lock();
        s.min_candidates = min;
        s.max_candidates = max;
        for d in s.devices.values_mut() {
            d.candidates = max;
        }
        Ok(())
    }

    /// Judges an UpstreamAck or UpstreamReject; replies to upstreams the radio did not
    /// play are none of its business.
    pub(crate) fn check(&self, reply: &UpstreamReply) {
        let mut s = self.lock();
        let s = &mut *s;
        let Some(played) = s.played.get_mut(&reply.transaction_id()) else {
            return;
        };
        if played.verdict.is_answered() {
            s.stats.duplicate_replies += 1;
            log::warn!(
                "emulator: upstream {} answered again: {reply:?}",
                played.transaction_id
            );
            return;
        }
        let verdict = match reply {
            UpstreamReply::Ack(ack) if ack.dev_eui == played.dev_eui && ack.mic == played.mic => {
                s.stats.solved += 1;
                UpstreamVerdict::Solved
            }
            UpstreamReply::Ack(ack) => {
                s.stats.wrong_acks += 1;
                log::warn!(
                    "emulator: upstream {} acked with DevEUI {} MIC {:08x}, but it came from \
                     {} with MIC {:08x}",
                    played.transaction_id,
                    ack.dev_eui,
                    ack.mic,
                    played.dev_eui,
                    played.mic
                );
                UpstreamVerdict::WrongAck {
                    dev_eui: ack.dev_eui,
                    mic: ack.mic,
                }
            }
            UpstreamReply::Reject(reject) => {
                if reject.result_code == UpstreamRejectResultCode::MicFailed {
                    s.stats.mic_failed += 1;
                } else {
                    s.stats.other_rejects += 1;
                }
                UpstreamVerdict::Rejected(reject.result_code.clone())
            }
        };
        if let Some(device) = s.devices.get_mut(&played.dev_eui) {
            device.candidates = match verdict {
                UpstreamVerdict::Solved => (device.candidates / 2).max(s.min_candidates),
                _ => s.max_candidates,
            };
        }
        played.verdict = verdict;
        self.answered.notify_all();
    }

    pub(crate) fn downlink(&self, transaction_id: u64) -> Option<DownlinkVerdict> {
        self.lock().downlinks.get(&transaction_id).cloned()
    }

    pub(crate) fn played(&self, transaction_id: u64) -> Option<PlayedUpstream> {
        self.lock().played.get(&transaction_id).cloned()
    }

    pub(crate) fn stats(&self) -> MicStats {
        self.lock().stats
    }

    /// Waits until `done` holds or `timeout` passes; returns whether it held.
    fn wait(&self, timeout: Duration, mut done: impl FnMut(&RadioState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if done(&s) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .answered
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_sizes_are_checked() {
        let radio = Radio::default();
        assert!(radio.set_challenge_size(2, 4096).is_ok());
        assert!(radio.set_challenge_size(16, 16).is_ok());
        for (min, max) in [(1, 16), (2, 4097), (17, 16), (0, 0)] {
            assert!(radio.set_challenge_size(min, max).is_err(), "{min} {max}");
        }
    }
}
