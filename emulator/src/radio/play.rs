//! Devices transmitting: frames built with their keys, routed as the RAN would and
//! delivered with a MIC challenge, once or as several copies.

use std::time::{Duration, Instant};

use ran_routing::mic::{self, DataUplink};
use ran_routing::{DevAddr, DevEui, JoinEui, UpstreamMessage};

use super::{invalid, rules, PlayedUpstream, Radio, UpstreamVerdict};
use crate::error::Result;
use crate::server::Shared;

#[cfg(doc)]
use crate::Emulator;

/// The first transaction id of played upstreams. Far above the small ids tests inject by
/// hand, so replies to those are never mistaken for answers to played ones.
pub(super) const FIRST_TRANSACTION_ID: u64 = 1 << 32;

/// The EU868 default channels: played upstreams rotate over them.
const CHANNELS: [u32; 3] = [868_100_000, 868_300_000, 868_500_000];

/// What a device transmits, and how long ago the RAN heard it; see [`Emulator::play`].
///
/// ```
/// use std::time::Duration;
/// use ran_routing_emulator::Play;
///
/// let late = Play::confirmed_uplink(1, *b"hi").heard_ago(Duration::from_secs(3));
/// # let _ = (late, Play::join_request(), Play::uplink(2, Vec::new()));
/// ```
#[derive(Debug, Clone)]
pub struct Play {
    tx: Transmission,
    heard_ago: Duration,
}

impl Play {
    /// The device's next join request (it takes the next DevNonce).
    pub fn join_request() -> Self {
        Self {
            tx: Transmission::JoinRequest,
            heard_ago: Duration::ZERO,
        }
    }

    /// An unconfirmed data uplink with the next frame counter.
    pub fn uplink(fport: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            tx: Transmission::Data {
                fport,
                payload: payload.into(),
                confirmed: false,
            },
            heard_ago: Duration::ZERO,
        }
    }

    /// A confirmed data uplink, which the LNS answers with a downlink.
    pub fn confirmed_uplink(fport: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            tx: Transmission::Data {
                fport,
                payload: payload.into(),
                confirmed: true,
            },
            heard_ago: Duration::ZERO,
        }
    }

    /// The RAN heard the frame this long before it delivers it (in emulated time, see
    /// [`EmulatorBuilder::time_scale`](crate::EmulatorBuilder::time_scale)): over 2.5 s
    /// the upstream carries `Outdated: true`, and class A windows count from when it was
    /// heard, so they may have passed already.
    pub fn heard_ago(mut self, delay: Duration) -> Self {
        self.heard_ago = delay;
        self
    }
}

/// What a device transmits.
#[derive(Debug, Clone)]
pub(crate) enum Transmission {
    JoinRequest,
    Data {
        fport: u8,
        payload: Vec<u8>,
        confirmed: bool,
    },
}

/// A transmission built but not yet committed: committing advances the device's
/// counter and records the play.
pub(crate) struct Prepared {
    pub(crate) msg: UpstreamMessage,
    dev_eui: DevEui,
    mic: u32,
    fcnt: Option<u32>,
    dev_nonce: Option<u16>,
    candidates: usize,
    /// The DevAddr of a data uplink.
    pub(crate) dev_addr: Option<DevAddr>,
    /// The JoinEUI of a join request.
    pub(crate) join_eui: Option<JoinEui>,
}

impl Radio {
    /// Builds the device's next transmission as the RAN would deliver it, without using
    /// up its DevNonce or FCnt yet (see [`commit`](Self::commit)).
    fn prepare(&self, dev_eui: DevEui, tx: &Transmission) -> Result<Prepared> {
        let s = self.lock();
        let transaction_id = s.next_transaction_id;
        let state = s
            .devices
            .get(&dev_eui)
            .ok_or_else(|| invalid(format!("no radio device {dev_eui}")))?;
        let candidates = state.candidates;
        let (frame, dev_addr, fcnt, dev_nonce, join_eui) = match tx {
            Transmission::JoinRequest => {
                let join = state.device.join.as_ref().ok_or_else(|| {
                    invalid(format!("radio device {dev_eui} has no AppKey: not OTAA"))
                })?;
                let frame =
                    mic::join_request(&join.app_key, join.join_eui, dev_eui, join.dev_nonce);
                (frame, None, None, Some(join.dev_nonce), Some(join.join_eui))
            }
            Transmission::Data {
                fport,
                payload,
                confirmed,
            } => {
                let session = state.device.session.as_ref().ok_or_else(|| {
                    invalid(format!(
                        "radio device {dev_eui} has no session: not ABP or joined"
                    ))
                })?;
                let fcnt = session.fcnt;
                let mut uplink = DataUplink::new(session.dev_addr, fcnt)
                    .confirmed(*confirmed)
                    .payload(*fport, payload.clone());
                uplink.app_s_key = session.app_s_key.clone();
                let frame = uplink
                    .build(&session.nwk_s_key)
                    .map_err(|e| invalid(e.to_string()))?;
                (frame, Some(session.dev_addr), Some(fcnt), None, None)
            }
        };
        let seed = self.seed ^ transaction_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // DevEUIs are filled in by the routing (see `play`).
        let mut msg = mic::upstream_with_challenge(
            &frame,
            transaction_id,
            vec![dev_eui],
            candidates - 1,
            seed,
        )
        .map_err(|e| invalid(e.to_string()))?;
        msg.radio.frequency = CHANNELS[(transaction_id % CHANNELS.len() as u64) as usize];
        let (_, mic) = mic::split_mic(&frame).map_err(|e| invalid(e.to_string()))?;
        Ok(Prepared {
            msg,
            dev_eui,
            mic,
            fcnt,
            dev_nonce,
            candidates,
            dev_addr,
            join_eui,
        })
    }

    /// The device transmitted `prepared`: its DevNonce or FCnt is used, it now listens
    /// after this transmission only, and the play is recorded (as withheld when
    /// `delivered` is false). Returns the device's pending join request before, for
    /// [`rollback`](Self::rollback).
    fn commit(&self, prepared: &Prepared, delivered: bool) -> Option<(u16, u64)> {
        let mut s = self.lock();
        let transaction_id = prepared.msg.transaction_id;
        s.next_transaction_id += 1;
        let mut before = None;
        if let Some(state) = s.devices.get_mut(&prepared.dev_eui) {
            let device = &mut state.device;
            if let Some(join) = &mut device.join {
                before = join.pending.take();
            }
            match (prepared.dev_nonce, prepared.fcnt) {
                (Some(dev_nonce), _) => {
                    if let Some(join) = &mut device.join {
                        join.dev_nonce = dev_nonce.wrapping_add(1);
                        join.pending = Some((dev_nonce, transaction_id));
                    }
                }
                (None, Some(fcnt)) => {
                    if let Some(session) = &mut device.session {
                        session.fcnt = fcnt.wrapping_add(1);
                    }
                }
                (None, None) => {}
            }
        }
        let verdict = if delivered {
            s.stats.played += 1;
            UpstreamVerdict::Unanswered
        } else {
            s.stats.withheld += 1;
            UpstreamVerdict::Withheld
        };
        s.played.insert(
            transaction_id,
            PlayedUpstream {
                transaction_id,
                dev_eui: prepared.dev_eui,
                mic: prepared.mic,
                fcnt: prepared.fcnt,
                dev_nonce: prepared.dev_nonce,
                candidates: prepared.candidates,
                outdated: prepared.msg.outdated == Some(true),
                verdict,
            },
        );
        self.answered.notify_all();
        before
    }

    /// Undoes a [`commit`](Self::commit) of a play that could not be sent: the frame
    /// never went out, so it uses up no DevNonce, FCnt or transaction id.
    fn rollback(&self, prepared: &Prepared, pending_before: Option<(u16, u64)>) {
        let mut s = self.lock();
        let transaction_id = prepared.msg.transaction_id;
        if s.played.remove(&transaction_id).is_some() {
            s.stats.played -= 1;
        }
        if s.next_transaction_id == transaction_id + 1 {
            s.next_transaction_id = transaction_id;
        }
        if let Some(state) = s.devices.get_mut(&prepared.dev_eui) {
            let device = &mut state.device;
            if let Some(join) = &mut device.join {
                if let Some(dev_nonce) = prepared.dev_nonce {
                    join.dev_nonce = dev_nonce;
                }
                join.pending = pending_before;
            }
            if let (Some(fcnt), Some(session)) = (prepared.fcnt, &mut device.session) {
                session.fcnt = fcnt;
            }
        }
    }

    /// Another copy of a played upstream, as the RAN delivers one uplink heard by
    /// several gateways: the same frame under a new transaction id, with a MIC challenge
    /// of its own that holds the true MIC; recorded as played too.
    fn copy(&self, first: &UpstreamMessage) -> Result<UpstreamMessage> {
        let mut s = self.lock();
        let played = s
            .played
            .get(&first.transaction_id)
            .cloned()
            .ok_or_else(|| invalid(format!("no played upstream {}", first.transaction_id)))?;
        let transaction_id = s.next_transaction_id;
        let frame = first.phy_payload_with_mic(played.mic);
        let seed = self.seed ^ transaction_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut msg = mic::upstream_with_challenge(
            &frame,
            transaction_id,
            first.dev_euis.clone(),
            played.candidates - 1,
            seed,
        )
        .map_err(|e| invalid(e.to_string()))?;
        msg.radio.frequency = CHANNELS[(transaction_id % CHANNELS.len() as u64) as usize];
        msg.outdated = first.outdated;
        s.next_transaction_id += 1;
        s.stats.played += 1;
        s.played.insert(
            transaction_id,
            PlayedUpstream {
                transaction_id,
                verdict: UpstreamVerdict::Unanswered,
                ..played
            },
        );
        Ok(msg)
    }

    /// Forgets a copy that could not be sent.
    fn unplay(&self, transaction_id: u64) {
        let mut s = self.lock();
        if s.played.remove(&transaction_id).is_some() {
            s.stats.played -= 1;
        }
    }
}

/// Plays a transmission: builds it, routes it as the RAN would, sends it to the next
/// upstream connection, and returns its transaction id. A play that cannot be sent
/// (no upstream connection) uses up nothing.
pub(crate) fn play(shared: &Shared, dev_eui: DevEui, play: Play) -> Result<u64> {
    play_copies(shared, dev_eui, play, Copies::new(1)).map(|ids| ids[0])
}

/// Plays a transmission as `copies` copies (see [`Radio::copy`]), each sent to the next
/// upstream connection; returns their transaction ids, the first copy's first. A withheld
/// transmission (no routing-table row routes it) has no copies: the RAN heard nothing
/// it could deliver.
pub(crate) fn play_copies(
    shared: &Shared,
    dev_eui: DevEui,
    play: Play,
    copies: Copies,
) -> Result<Vec<u64>> {
    let Copies {
        count: copies,
        spacing,
    } = copies;
    if !(1..=MAX_COPIES).contains(&copies) {
        return Err(invalid(format!(
            "copies: expected 1 to {MAX_COPIES}, got {copies}"
        )));
    }
    let radio = &shared.radio;
    let one_at_a_time = crate::sync::lock(&radio.playing);
    let mut prepared = radio.prepare(dev_eui, &play.tx)?;
    let rules = radio.rules();
    // The routing table decides who gets the frame: a join request by its DevEUI and
    // JoinEUI, a data uplink by its DevAddr (every subscribed device with it).
    let dev_euis = match (prepared.dev_addr, prepared.join_eui) {
        (Some(addr), _) if rules.subscription => crate::sync::lock(&shared.store).by_dev_addr(addr),
        (Some(addr), _) => radio.devices_with_addr(addr),
        (None, Some(join_eui)) if rules.subscription => {
            let store = crate::sync::lock(&shared.store);
            match store.device(dev_eui) {
                Some(row) if row.join_eui == Some(join_eui) => vec![dev_eui],
                _ => Vec::new(),
            }
        }
        (None, _) => vec![dev_eui],
    };
    let transaction_id = prepared.msg.transaction_id;
    if dev_euis.is_empty() {
        log::info!(
            "emulator: upstream {transaction_id} from {dev_eui} withheld: no routing-table \
             row routes it to the LNS"
        );
        radio.commit(&prepared, false);
        return Ok(vec![transaction_id]);
    }
    prepared.msg.dev_euis = dev_euis;
    if rules.outdated && play.heard_ago > rules::OUTDATED_AFTER {
        prepared.msg.outdated = Some(true);
    }
    let heard_at = Instant::now()
        .checked_sub(rules.scale(play.heard_ago))
        .unwrap_or_else(Instant::now);
    // Recorded before it goes out, so an answer racing back finds it.
    let pending_before = radio.commit(&prepared, true);
    if let Err(e) = shared.hub.send_upstream_tracked(&prepared.msg, heard_at) {
        radio.rollback(&prepared, pending_before);
        return Err(e);
    }
    // The device transmitted once; other plays need not wait for its copies.
    drop(one_at_a_time);
    let mut ids = vec![transaction_id];
    for _ in 1..copies {
        if !spacing.is_zero() {
            std::thread::sleep(spacing);
        }
        let msg = radio.copy(&prepared.msg)?;
        if shared.hub.send_upstream_tracked(&msg, heard_at).is_err() {
            // The connection went away: the copies not sent never existed.
            radio.unplay(msg.transaction_id);
            break;
        }
        ids.push(msg.transaction_id);
    }
    Ok(ids)
}

/// Most copies of one uplink the emulator plays.
pub const MAX_COPIES: usize = 64;

/// How many times the RAN delivers one played uplink, and how far apart; see
/// [`Emulator::play_copies`]. A plain number converts into copies sent back to back.
///
/// ```
/// use std::time::Duration;
/// use ran_routing_emulator::Copies;
///
/// let copies = Copies::new(3).spaced(Duration::from_millis(200));
/// assert_eq!((copies.count(), Copies::from(2).count()), (3, 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copies {
    count: usize,
    spacing: Duration,
}

impl Copies {
    /// `count` copies (1 to [`MAX_COPIES`]), back to back.
    pub fn new(count: usize) -> Self {
        Self {
            count,
            spacing: Duration::ZERO,
        }
    }

    /// Waits `spacing` before each copy after the first (the call returns once the last
    /// was sent), as copies heard through slower routes arrive later.
    pub fn spaced(mut self, spacing: Duration) -> Self {
        self.spacing = spacing;
        self
    }

    /// How many copies.
    pub fn count(&self) -> usize {
        self.count
    }
}

impl From<usize> for Copies {
    fn from(count: usize) -> Self {
        Self::new(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RadioDevice;
    use ran_routing::mic::AesKey;

    #[test]
    fn counters_advance_and_wrap() {
        let radio = Radio::default();
        let key = AesKey::new([7; 16]);
        let dev_eui = DevEui::new(1);
        let abp = RadioDevice::abp(dev_eui, DevAddr::new(9), key.clone(), u32::MAX);
        radio.add(abp.clone(), false).unwrap();
        assert!(radio.add(abp.clone(), false).is_err());
        assert!(radio.add(abp, true).unwrap());
        let data = Transmission::Data {
            fport: 1,
            payload: vec![],
            confirmed: false,
        };
        let first = radio.prepare(dev_eui, &data).unwrap();
        // Built, not yet transmitted: nothing used up.
        assert_eq!(radio.device(dev_eui).unwrap().fcnt(), Some(u32::MAX));
        let before = radio.commit(&first, true);
        assert_eq!(first.msg.transaction_id, FIRST_TRANSACTION_ID);
        assert_eq!(radio.device(dev_eui).unwrap().fcnt(), Some(0));
        let p = radio.played(first.msg.transaction_id).unwrap();
        assert_eq!(p.fcnt, Some(u32::MAX));
        let frame = first.msg.phy_payload_with_mic(p.mic);
        assert!(mic::verify_data_uplink(&key, &frame, u32::MAX).unwrap());
        // Not OTAA.
        assert!(radio.prepare(dev_eui, &Transmission::JoinRequest).is_err());
        assert!(radio
            .prepare(DevEui::new(2), &Transmission::JoinRequest)
            .is_err());
        radio.rollback(&first, before);
        assert_eq!(radio.stats().played, 0);
        assert_eq!(radio.device(dev_eui).unwrap().fcnt(), Some(u32::MAX));
        let again = radio.prepare(dev_eui, &data).unwrap();
        assert_eq!(again.msg.transaction_id, FIRST_TRANSACTION_ID);
    }
}
