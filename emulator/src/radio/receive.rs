//! A radio device receiving a downlink the RAN transmitted to it, as a real one would.

use ran_routing::mic::{JoinAccept, MicError};
use ran_routing::{DevAddr, DevEui, DownstreamResultCode};

use super::{DownlinkVerdict, IgnoredReason, Radio, RadioSession};

impl Radio {
    /// Whether this is a radio device (downlinks to others are not judged here).
    pub(crate) fn has(&self, dev_eui: DevEui) -> bool {
        self.lock().devices.contains_key(&dev_eui)
    }

    /// Records that the RAN did not transmit a downlink to a radio device.
    pub(crate) fn not_transmitted(&self, transaction_id: u64, code: DownstreamResultCode) {
        let mut s = self.lock();
        s.downlinks
            .insert(transaction_id, DownlinkVerdict::NotTransmitted(code));
        self.answered.notify_all();
    }

    /// A radio device receives a downlink the RAN transmitted to it, as a real device
    /// would: a join accept is checked and may make it join, a data downlink is taken if
    /// addressed to its session. `window` is the downlink's class A delay in seconds
    /// (`None` for class B or C), `timed_from` the transaction id of the uplink the RAN
    /// timed it from (`None` when the timing rule is off). Returns the verdict.
    pub(crate) fn receive(
        &self,
        dev_eui: DevEui,
        transaction_id: u64,
        phy_payload: &[u8],
        window: Option<u8>,
        timed_from: Option<u64>,
    ) -> DownlinkVerdict {
        let mut s = self.lock();
        let s = &mut *s;
        let timing = s.rules.downlink_timing;
        // The DevNonce of the join request the RAN timed this downlink from: any copy of
        // that request (the RAN may deliver one uplink several times) times it alike.
        let timed_nonce = timed_from
            .and_then(|t| s.played.get(&t))
            .filter(|p| p.dev_eui == dev_eui)
            .and_then(|p| p.dev_nonce);
        let Some(state) = s.devices.get_mut(&dev_eui) else {
            return DownlinkVerdict::Ignored(IgnoredReason::NotForThisDevice);
        };
        let device = &mut state.device;
        let verdict = match phy_payload.first().map(|mhdr| mhdr >> 5) {
            // Join accept.
            Some(0b001) => match &mut device.join {
                None => DownlinkVerdict::Ignored(IgnoredReason::UnknownDevNonce),
                Some(join) => match join.pending {
                    None => DownlinkVerdict::Ignored(IgnoredReason::UnknownDevNonce),
                    Some((nonce, tid))
                        if timing && timed_from != Some(tid) && timed_nonce != Some(nonce) =>
                    {
                        DownlinkVerdict::Ignored(IgnoredReason::UnknownDevNonce)
                    }
                    Some(_) if timing && !matches!(window, Some(5 | 6)) => {
                        DownlinkVerdict::Ignored(IgnoredReason::OutsideJoinWindow)
                    }
                    Some((dev_nonce, _)) => match JoinAccept::decrypt(&join.app_key, phy_payload) {
                        Ok(accept) => {
                            let keys = accept.session_keys(&join.app_key, dev_nonce);
                            join.pending = None;
                            device.session = Some(RadioSession {
                                dev_addr: accept.dev_addr(),
                                nwk_s_key: keys.nwk_s_key,
                                app_s_key: Some(keys.app_s_key),
                                fcnt: 0,
                            });
                            DownlinkVerdict::Joined {
                                dev_addr: accept.dev_addr(),
                                dev_nonce,
                            }
                        }
                        Err(MicError::MicMismatch) => {
                            DownlinkVerdict::Ignored(IgnoredReason::MicMismatch)
                        }
                        Err(_) => DownlinkVerdict::Ignored(IgnoredReason::Malformed),
                    },
                },
            },
            // Unconfirmed or confirmed data down: FHDR's DevAddr, little-endian.
            Some(0b011 | 0b101) if phy_payload.len() >= 12 => {
                let addr = DevAddr::new(u32::from_le_bytes([
                    phy_payload[1],
                    phy_payload[2],
                    phy_payload[3],
                    phy_payload[4],
                ]));
                if device.dev_addr() == Some(addr) {
                    DownlinkVerdict::Received
                } else {
                    DownlinkVerdict::Ignored(IgnoredReason::NotForThisDevice)
                }
            }
            _ => DownlinkVerdict::Ignored(IgnoredReason::Malformed),
        };
        match &verdict {
            DownlinkVerdict::Joined {
                dev_addr,
                dev_nonce,
            } => {
                s.stats.joins += 1;
                state.candidates = s.max_candidates;
                log::info!(
                    "emulator: radio device {dev_eui} joined as {dev_addr} (DevNonce {dev_nonce})"
                );
            }
            DownlinkVerdict::Ignored(reason) => {
                s.stats.ignored_downlinks += 1;
                log::warn!(
                    "emulator: radio device {dev_eui} ignored downlink {transaction_id}: \
                     {reason:?}"
                );
            }
            _ => {}
        }
        s.downlinks.insert(transaction_id, verdict.clone());
        self.answered.notify_all();
        verdict
    }
}
