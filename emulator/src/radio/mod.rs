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

use ran_routing::mic::{
    self, AesKey, DataUplink, JoinAccept, MicError, MAX_CHALLENGE, MIN_CHALLENGE,
};
use ran_routing::{
    DevAddr, DevEui, DownstreamResultCode, JoinEui, UpstreamMessage, UpstreamRejectResultCode,
    UpstreamReply,
};

use crate::error::{Error, Result};
use crate::server::Shared;
use crate::Emulator;

pub(crate) mod routes;
mod rules;

pub(crate) use rules::Rules;

/// The first transaction id of played upstreams. Far above the small ids tests inject by
/// hand, so replies to those are never mistaken for answers to played ones.
const FIRST_TRANSACTION_ID: u64 = 1 << 32;

/// The EU868 default channels: played upstreams rotate over them.
const CHANNELS: [u32; 3] = [868_100_000, 868_300_000, 868_500_000];

/// A device on the emulated air, with the keys it was provisioned with: an OTAA device
/// sends join requests signed with its AppKey, a device with a session (ABP, or OTAA
/// once joined) sends data uplinks signed with its NwkSKey.
///
/// Its `Debug` never prints a key.
///
/// ```
/// use ran_routing_emulator::RadioDevice;
/// use ran_routing::mic::AesKey;
/// use ran_routing::{DevAddr, DevEui, JoinEui};
///
/// let key: AesKey = "2b7e151628aed2a6abf7158809cf4f3c".parse().unwrap();
/// let otaa = RadioDevice::otaa(DevEui::new(1), JoinEui::new(2), key.clone());
/// let abp = RadioDevice::abp(DevEui::new(3), DevAddr::new(0x26011bda), key, 65_535);
/// assert_eq!(abp.fcnt(), Some(65_535));
/// assert!(!format!("{otaa:?}{abp:?}").contains("2b7e"));
/// ```
#[derive(Debug, Clone)]
pub struct RadioDevice {
    dev_eui: DevEui,
    join: Option<JoinCredentials>,
    session: Option<RadioSession>,
}

#[derive(Debug, Clone)]
struct JoinCredentials {
    join_eui: JoinEui,
    app_key: AesKey,
    dev_nonce: u16,
    /// The join request the device is waiting to be answered: its DevNonce and the
    /// transaction id it was played with. Cleared by a join, or by any later
    /// transmission (the device listens only after its latest one).
    pending: Option<(u16, u64)>,
}

#[derive(Debug, Clone)]
struct RadioSession {
    dev_addr: DevAddr,
    nwk_s_key: AesKey,
    /// Kept for the application payload; the emulator sends FRMPayloads in clear.
    app_s_key: Option<AesKey>,
    /// The full counter of the next uplink.
    fcnt: u32,
}

impl RadioDevice {
    /// An OTAA device that has not joined: it plays join requests (DevNonce 0 first).
    pub fn otaa(dev_eui: DevEui, join_eui: JoinEui, app_key: AesKey) -> Self {
        Self {
            dev_eui,
            join: Some(JoinCredentials {
                join_eui,
                app_key,
                dev_nonce: 0,
                pending: None,
            }),
            session: None,
        }
    }

    /// An ABP device: it plays data uplinks from `dev_addr` signed with `nwk_s_key`, the
    /// first with the full 32-bit counter `fcnt`.
    pub fn abp(dev_eui: DevEui, dev_addr: DevAddr, nwk_s_key: AesKey, fcnt: u32) -> Self {
        Self {
            dev_eui,
            join: None,
            session: Some(RadioSession {
                dev_addr,
                nwk_s_key,
                app_s_key: None,
                fcnt,
            }),
        }
    }

    /// Gives the device a session, as after a join: it plays data uplinks too.
    pub fn with_session(mut self, dev_addr: DevAddr, nwk_s_key: AesKey, fcnt: u32) -> Self {
        self.session = Some(RadioSession {
            dev_addr,
            nwk_s_key,
            app_s_key: None,
            fcnt,
        });
        self
    }

    /// The DevNonce of the next join request (OTAA devices only; each join request
    /// takes the next one).
    pub fn dev_nonce(mut self, dev_nonce: u16) -> Self {
        if let Some(join) = &mut self.join {
            join.dev_nonce = dev_nonce;
        }
        self
    }

    /// The device's DevEUI.
    pub fn dev_eui(&self) -> DevEui {
        self.dev_eui
    }

    /// The JoinEUI, for an OTAA device.
    pub fn join_eui(&self) -> Option<JoinEui> {
        self.join.as_ref().map(|j| j.join_eui)
    }

    /// The DevNonce of the next join request, for an OTAA device.
    pub fn next_dev_nonce(&self) -> Option<u16> {
        self.join.as_ref().map(|j| j.dev_nonce)
    }

    /// The session's DevAddr, for a device with a session.
    pub fn dev_addr(&self) -> Option<DevAddr> {
        self.session.as_ref().map(|s| s.dev_addr)
    }

    /// The full counter of the next data uplink, for a device with a session.
    pub fn fcnt(&self) -> Option<u32> {
        self.session.as_ref().map(|s| s.fcnt)
    }

    /// The DevNonce of the join request the device waits to see answered, if any: set
    /// by each join request, cleared by a join or a later transmission.
    pub fn pending_dev_nonce(&self) -> Option<u16> {
        self.join.as_ref().and_then(|j| j.pending).map(|(n, _)| n)
    }

    /// Whether the device holds these session keys (as after a join): for tests that
    /// check what the device derived, without exposing its keys.
    pub fn has_session_keys(&self, nwk_s_key: &AesKey, app_s_key: &AesKey) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.nwk_s_key == *nwk_s_key && s.app_s_key.as_ref() == Some(app_s_key))
    }

    /// The body of `POST /emulator/radio/devices` that puts this device on the air, keys
    /// included.
    pub(crate) fn control_body(&self) -> serde_json::Value {
        let hex =
            |key: &AesKey| -> String { key.expose().iter().map(|b| format!("{b:02x}")).collect() };
        let mut body = serde_json::Map::new();
        body.insert("dev_eui".into(), self.dev_eui.to_string().into());
        if let Some(join) = &self.join {
            body.insert("join_eui".into(), join.join_eui.to_string().into());
            body.insert("app_key".into(), hex(&join.app_key).into());
            body.insert("dev_nonce".into(), join.dev_nonce.into());
        }
        if let Some(session) = &self.session {
            body.insert("dev_addr".into(), session.dev_addr.to_string().into());
            body.insert("nwk_s_key".into(), hex(&session.nwk_s_key).into());
            body.insert("fcnt".into(), session.fcnt.into());
        }
        serde_json::Value::Object(body)
    }
}

/// What became of a played upstream: how the LNS answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamVerdict {
    /// No ack or reject yet.
    Unanswered,
    /// Acked with the true MIC and the DevEUI of the device that sent the frame.
    Solved,
    /// Acked with another MIC or another DevEUI: the LNS got the challenge wrong.
    WrongAck {
        /// The DevEUI the ack named.
        dev_eui: DevEui,
        /// The MIC the ack named.
        mic: u32,
    },
    /// Rejected, with this code (`MICFailed` is the right answer for a device whose key
    /// the LNS does not have).
    Rejected(UpstreamRejectResultCode),
    /// Not delivered: no row of the routing table routes it to the LNS (a join request
    /// whose DevEUI and JoinEUI are not subscribed, a data uplink from a DevAddr no row
    /// has as active or target address), as the service withholds it. The device still
    /// transmitted it, so its DevNonce or FCnt is used.
    Withheld,
}

impl UpstreamVerdict {
    /// Whether the upstream is settled: answered by the LNS, or never delivered.
    pub fn is_answered(&self) -> bool {
        *self != Self::Unanswered
    }
}

/// An upstream the emulator played for a [`RadioDevice`], and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlayedUpstream {
    /// The upstream's transaction id.
    pub transaction_id: u64,
    /// The device that sent the frame.
    pub dev_eui: DevEui,
    /// The frame's true MIC, one of the challenge's candidates.
    pub mic: u32,
    /// The full uplink counter of a data uplink; `None` for a join request.
    pub fcnt: Option<u32>,
    /// The DevNonce of a join request; `None` for a data uplink.
    pub dev_nonce: Option<u16>,
    /// How many candidates the MIC challenge had, the true MIC included.
    pub candidates: usize,
    /// Whether it was delivered with `Outdated: true`.
    pub outdated: bool,
    /// The LNS's answer so far.
    pub verdict: UpstreamVerdict,
}

/// Why a radio device ignored a downlink the RAN transmitted to it, as a real device
/// would: it stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IgnoredReason {
    /// A join accept whose MIC the device's AppKey does not give: another key, or a
    /// corrupted or forged frame.
    MicMismatch,
    /// A join accept that answers no join request the device is waiting on: it sent none,
    /// a later one, or (with the timing rule on) the uplink the downlink was timed from is
    /// not its latest join request. The device derives keys only for the DevNonce it sent.
    UnknownDevNonce,
    /// A join accept outside the device's join-accept windows: with the timing rule on, a
    /// class A `Delay` other than JoinAcceptDelay1 (5 s, RX1) or JoinAcceptDelay2 (6 s,
    /// RX2) after its join request, or not class A at all.
    OutsideJoinWindow,
    /// A data downlink addressed to another DevAddr than the device's session, or sent to a
    /// device with no session.
    NotForThisDevice,
    /// Not a LoRaWAN 1.0 frame the device can read (too short, an uplink MType, a join
    /// accept of the wrong length).
    Malformed,
}

/// What a radio device made of a downlink sent to it; see [`Emulator::downlink_verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownlinkVerdict {
    /// The RAN did not transmit it; its `DownstreamResult` had this code.
    NotTransmitted(DownstreamResultCode),
    /// A valid join accept: the device adopted this DevAddr and the derived session keys,
    /// reset its frame counter and sends its next uplinks in that session.
    Joined {
        /// The DevAddr from the join accept.
        dev_addr: DevAddr,
        /// The DevNonce of the join request it answered (the keys are derived from it).
        dev_nonce: u16,
    },
    /// A data downlink to the device's DevAddr: received (its MIC is not checked).
    Received,
    /// Transmitted, and ignored by the device.
    Ignored(IgnoredReason),
}

/// Counts of played upstreams by verdict; see [`Emulator::mic_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MicStats {
    /// Upstreams played (sent to an upstream connection).
    pub played: u64,
    /// Acked with the true MIC and DevEUI.
    pub solved: u64,
    /// Acked with a wrong MIC or DevEUI.
    pub wrong_acks: u64,
    /// Rejected with `MICFailed`.
    pub mic_failed: u64,
    /// Rejected with another code.
    pub other_rejects: u64,
    /// Answers to an upstream that was already answered (ignored, not counted above).
    pub duplicate_replies: u64,
    /// Acks and rejects naming a transaction the emulator never sent (logged at warn).
    pub unknown_replies: u64,
    /// Upstreams the devices transmitted that the routing table did not route to the
    /// LNS ([`UpstreamVerdict::Withheld`]; not counted in `played`).
    pub withheld: u64,
    /// Join accepts that made a device join.
    pub joins: u64,
    /// Downlinks to radio devices that the RAN transmitted and the device ignored.
    pub ignored_downlinks: u64,
}

impl MicStats {
    /// Played upstreams not answered yet.
    pub fn unanswered(&self) -> u64 {
        self.played
            .saturating_sub(self.solved + self.wrong_acks + self.mic_failed + self.other_rejects)
    }
}

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
                let frame = DataUplink::new(session.dev_addr, fcnt)
                    .confirmed(*confirmed)
                    .payload(*fport, payload.clone())
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

/// Emulated devices with real keys, and the verdicts on the LNS's answers.
///
/// ```
/// use std::time::Duration;
/// use ran_routing_emulator::{Emulator, RadioDevice, UpstreamVerdict};
/// use ran_routing::mic::{self, AesKey, Keys, Session};
/// use ran_routing::{Core, DevAddr, DevEui, NewDevice};
///
/// let emu = Emulator::start()?;
/// let (dev_eui, dev_addr) = (DevEui::new(0x0004a30b001c0530), DevAddr::new(0x26011bda));
/// let nwk_s_key: AesKey = "000102030405060708090a0b0c0d0e0f".parse()?;
/// emu.add_radio_device(RadioDevice::abp(dev_eui, dev_addr, nwk_s_key.clone(), 70_000))?;
///
/// // An LNS that has the device's session key, and subscribes to it: the RAN routes
/// // only subscribed devices' traffic.
/// let keys = Keys::new();
/// keys.set_session(dev_eui, Session::new(nwk_s_key).with_fcnt_up(69_999));
/// let core = Core::new(emu.token(), &emu.base_url())?;
/// core.routing_table().insert(NewDevice::abp(dev_eui, dev_addr))?;
/// let upstream = core.upstream().connect()?;
///
/// let tid = emu.play_uplink(dev_eui, 1, *b"hello")?;
/// let uplink = upstream.recv_timeout(Duration::from_secs(5))?;
/// upstream.send(mic::Solver::new().reply(&keys, &uplink))?;
///
/// let verdict = emu.wait_upstream_verdict(tid, Duration::from_secs(5));
/// assert_eq!(verdict, Some(UpstreamVerdict::Solved));
/// assert_eq!(emu.mic_stats().solved, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Emulator {
    /// Puts a device on the emulated air. Fails with [`Error::Invalid`] when a device
    /// with this DevEUI is already there: [`replace_radio_device`](Self::replace_radio_device)
    /// says so explicitly.
    pub fn add_radio_device(&self, device: RadioDevice) -> Result<()> {
        self.shared.radio.add(device, false).map(|_| ())
    }

    /// Puts a device on the air, replacing any with the same DevEUI (its keys, and its
    /// counters restart from the new device's); returns whether one was replaced.
    pub fn replace_radio_device(&self, device: RadioDevice) -> bool {
        matches!(self.shared.radio.add(device, true), Ok(true))
    }

    /// Takes a device off the air; `false` if there was none with this DevEUI.
    pub fn remove_radio_device(&self, dev_eui: DevEui) -> bool {
        self.shared.radio.remove(dev_eui)
    }

    /// The device with this DevEUI as it is now (its next DevNonce and FCnt).
    pub fn radio_device(&self, dev_eui: DevEui) -> Option<RadioDevice> {
        self.shared.radio.device(dev_eui)
    }

    /// The number of MIC candidates of played upstreams, true MIC included: a device's
    /// first challenge has `max`; each one the LNS solves halves the next, down to
    /// `min`, and any other answer goes back to `max`, as the RAN narrows the list for
    /// an LNS that keeps solving. `min == max` fixes the size. Both must be within 2 to
    /// 4096 (the default range). Applies from each device's next upstream.
    pub fn set_mic_challenge_size(&self, min: usize, max: usize) -> Result<()> {
        self.shared.radio.set_challenge_size(min, max)
    }

    /// The device transmits `play` (a join request or a data uplink); the emulator
    /// routes it as the RAN would and delivers it, MIC hidden among decoys, to the next
    /// upstream connection. Returns the upstream's transaction id.
    ///
    /// With the subscription rule on (the default), a frame no routing-table row routes
    /// to the LNS is withheld: the device used its DevNonce or FCnt, the upstream's
    /// verdict is [`UpstreamVerdict::Withheld`] and [`MicStats::withheld`] counts it.
    ///
    /// Fails with [`Error::Invalid`] for an unknown device, one without the keys the
    /// frame needs, or a payload too long for a LoRaWAN frame, and with
    /// [`Error::Closed`] when no upstream connection is open (see
    /// [`send_upstream`](Self::send_upstream)); a failed play uses up nothing.
    pub fn play(&self, dev_eui: DevEui, play: Play) -> Result<u64> {
        self::play(&self.shared, dev_eui, play)
    }

    /// [`play`](Self::play) of the device's next join request (it takes the next
    /// DevNonce, and waits for a join accept in its RX1 or RX2 window).
    pub fn play_join_request(&self, dev_eui: DevEui) -> Result<u64> {
        self.play(dev_eui, Play::join_request())
    }

    /// [`play`](Self::play) as `copies` copies, as the RAN delivers an uplink heard by
    /// several gateways: one frame (one DevNonce or frame counter), each copy under a new
    /// transaction id with a MIC challenge of its own that holds the true MIC. Every
    /// copy's answer is judged. Takes a count or [`Copies`] (to space them out; 1 to
    /// [`MAX_COPIES`]). Returns the copies' transaction ids in the order sent: fewer than
    /// asked if the upstream connection went away meanwhile, one if the transmission
    /// was withheld.
    pub fn play_copies(
        &self,
        dev_eui: DevEui,
        play: Play,
        copies: impl Into<Copies>,
    ) -> Result<Vec<u64>> {
        play_copies(&self.shared, dev_eui, play, copies.into())
    }

    /// [`play_uplink`](Self::play_uplink) as copies; see [`play_copies`](Self::play_copies).
    pub fn play_uplink_copies(
        &self,
        dev_eui: DevEui,
        fport: u8,
        payload: impl Into<Vec<u8>>,
        copies: impl Into<Copies>,
    ) -> Result<Vec<u64>> {
        self.play_copies(dev_eui, Play::uplink(fport, payload), copies)
    }

    /// [`play_join_request`](Self::play_join_request) as copies; see
    /// [`play_copies`](Self::play_copies).
    pub fn play_join_request_copies(
        &self,
        dev_eui: DevEui,
        copies: impl Into<Copies>,
    ) -> Result<Vec<u64>> {
        self.play_copies(dev_eui, Play::join_request(), copies)
    }

    /// [`play`](Self::play) of an unconfirmed data uplink with the next frame counter
    /// (the frame carries its low 16 bits; the counter runs on past 65535). Its
    /// `DevEUIs` lists every subscribed device with the same DevAddr, as the RAN does.
    /// The FRMPayload goes out as given, unencrypted.
    pub fn play_uplink(
        &self,
        dev_eui: DevEui,
        fport: u8,
        payload: impl Into<Vec<u8>>,
    ) -> Result<u64> {
        self.play(dev_eui, Play::uplink(fport, payload))
    }

    /// [`play_uplink`](Self::play_uplink) for a confirmed data uplink, which the LNS
    /// answers with a downlink.
    pub fn play_confirmed_uplink(
        &self,
        dev_eui: DevEui,
        fport: u8,
        payload: impl Into<Vec<u8>>,
    ) -> Result<u64> {
        self.play(dev_eui, Play::confirmed_uplink(fport, payload))
    }

    /// What the radio device made of the downlink with this transaction id (the LNS's
    /// id): joined, received, ignored and why, or not transmitted; `None` while it is
    /// not judged yet, or for a downlink to a device that is not on the air.
    pub fn downlink_verdict(&self, transaction_id: u64) -> Option<DownlinkVerdict> {
        self.shared.radio.downlink(transaction_id)
    }

    /// Waits up to `timeout` for [`downlink_verdict`](Self::downlink_verdict).
    pub fn wait_downlink_verdict(
        &self,
        transaction_id: u64,
        timeout: Duration,
    ) -> Option<DownlinkVerdict> {
        self.shared
            .radio
            .wait(timeout, |s| s.downlinks.contains_key(&transaction_id));
        self.downlink_verdict(transaction_id)
    }

    /// The upstream played with this transaction id: true DevEUI and MIC, and verdict.
    pub fn played_upstream(&self, transaction_id: u64) -> Option<PlayedUpstream> {
        self.shared.radio.played(transaction_id)
    }

    /// Waits up to `timeout` for the LNS to answer the played upstream, and returns the
    /// verdict ([`UpstreamVerdict::Unanswered`] on timeout; `None` if the emulator did
    /// not play it).
    pub fn wait_upstream_verdict(
        &self,
        transaction_id: u64,
        timeout: Duration,
    ) -> Option<UpstreamVerdict> {
        self.shared.radio.wait(timeout, |s| {
            s.played
                .get(&transaction_id)
                .is_none_or(|p| p.verdict.is_answered())
        });
        self.played_upstream(transaction_id).map(|p| p.verdict)
    }

    /// Waits up to `timeout` until every played upstream has been answered; returns
    /// whether they all were.
    pub fn wait_upstream_verdicts(&self, timeout: Duration) -> bool {
        self.shared
            .radio
            .wait(timeout, |s| s.stats.unanswered() == 0)
    }

    /// How the played upstreams were answered so far, and what the devices made of
    /// their downlinks.
    pub fn mic_stats(&self) -> MicStats {
        stats(&self.shared)
    }
}

/// The radio's counts, with the replies to unknown transactions the hub counted.
pub(crate) fn stats(shared: &Shared) -> MicStats {
    let mut stats = shared.radio.stats();
    stats.unknown_replies = shared.hub.unknown_replies();
    stats
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
