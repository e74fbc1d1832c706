//! Emulated devices with real keys: they send correctly signed join requests and data
//! uplinks, each wrapped in a MIC challenge like the RAN's, and every ack the LNS sends
//! back is checked against the true MIC.
//!
//! The emulator plays the radio and the RAN at once: a [`RadioDevice`] holds the keys a
//! device was provisioned with, and [`Emulator::play_join_request`] /
//! [`Emulator::play_uplink`] build the frame it would transmit, then hide its MIC among
//! decoys as the RAN does. The true DevEUI and MIC of every played upstream are kept, so
//! the answer to it gets an [`UpstreamVerdict`].

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ran_routing::mic::{self, AesKey, DataUplink, MAX_CHALLENGE, MIN_CHALLENGE};
use ran_routing::{
    DevAddr, DevEui, JoinEui, UpstreamMessage, UpstreamRejectResultCode, UpstreamReply,
};

use crate::error::{Error, Result};
use crate::server::Shared;
use crate::Emulator;

pub(crate) mod routes;

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
}

#[derive(Debug, Clone)]
struct RadioSession {
    dev_addr: DevAddr,
    nwk_s_key: AesKey,
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
                fcnt,
            }),
        }
    }

    /// Gives the device a session, as after a join: it plays data uplinks too.
    pub fn with_session(mut self, dev_addr: DevAddr, nwk_s_key: AesKey, fcnt: u32) -> Self {
        self.session = Some(RadioSession {
            dev_addr,
            nwk_s_key,
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
}

impl UpstreamVerdict {
    /// Whether the LNS has answered.
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
    /// How many candidates the MIC challenge had, the true MIC included.
    pub candidates: usize,
    /// The LNS's answer so far.
    pub verdict: UpstreamVerdict,
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
}

impl MicStats {
    /// Played upstreams not answered yet.
    pub fn unanswered(&self) -> u64 {
        self.played
            .saturating_sub(self.solved + self.wrong_acks + self.mic_failed + self.other_rejects)
    }
}

/// What a device transmits.
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
    next_transaction_id: u64,
    min_candidates: usize,
    max_candidates: usize,
    stats: MicStats,
}

/// The emulated air: devices, played upstreams and their verdicts.
pub(crate) struct Radio {
    state: Mutex<RadioState>,
    /// Signalled on every verdict.
    answered: Condvar,
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
                next_transaction_id: FIRST_TRANSACTION_ID,
                min_candidates: MIN_CHALLENGE,
                max_candidates: MAX_CHALLENGE,
                stats: MicStats::default(),
            }),
            answered: Condvar::new(),
            seed: hasher.finish(),
        }
    }
}

impl Radio {
    fn lock(&self) -> MutexGuard<'_, RadioState> {
        crate::sync::lock(&self.state)
    }

    pub(crate) fn add(&self, device: RadioDevice) {
        let mut s = self.lock();
        let candidates = s.max_candidates;
        s.devices
            .insert(device.dev_eui, DeviceState { device, candidates });
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

    /// Builds the device's next transmission as the RAN would deliver it, advancing its
    /// DevNonce or FCnt (a frame sent into the void still used its counter), and records
    /// it as played.
    fn prepare(&self, dev_eui: DevEui, tx: Transmission) -> Result<UpstreamMessage> {
        let mut s = self.lock();
        let transaction_id = s.next_transaction_id;
        let state = s
            .devices
            .get_mut(&dev_eui)
            .ok_or_else(|| invalid(format!("no radio device {dev_eui}")))?;
        let candidates = state.candidates;
        let (frame, dev_addr, fcnt) = match tx {
            Transmission::JoinRequest => {
                let join = state.device.join.as_mut().ok_or_else(|| {
                    invalid(format!("radio device {dev_eui} has no AppKey: not OTAA"))
                })?;
                let frame =
                    mic::join_request(&join.app_key, join.join_eui, dev_eui, join.dev_nonce);
                join.dev_nonce = join.dev_nonce.wrapping_add(1);
                (frame, None, None)
            }
            Transmission::Data {
                fport,
                payload,
                confirmed,
            } => {
                let session = state.device.session.as_mut().ok_or_else(|| {
                    invalid(format!(
                        "radio device {dev_eui} has no session: not ABP or joined"
                    ))
                })?;
                let fcnt = session.fcnt;
                let frame = DataUplink::new(session.dev_addr, fcnt)
                    .confirmed(confirmed)
                    .payload(fport, payload)
                    .build(&session.nwk_s_key)
                    .map_err(|e| invalid(e.to_string()))?;
                session.fcnt = fcnt.wrapping_add(1);
                (frame, Some(session.dev_addr), Some(fcnt))
            }
        };
        // A join request names its device; a data uplink only its DevAddr, so the RAN
        // lists every device with that address and the LNS finds which one it was.
        let dev_euis = match dev_addr {
            None => vec![dev_eui],
            Some(addr) => s
                .devices
                .values()
                .filter(|d| d.device.dev_addr() == Some(addr))
                .map(|d| d.device.dev_eui)
                .collect(),
        };
        let seed = self.seed ^ transaction_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut msg =
            mic::upstream_with_challenge(&frame, transaction_id, dev_euis, candidates - 1, seed)
                .map_err(|e| invalid(e.to_string()))?;
        msg.radio.frequency = CHANNELS[(transaction_id % CHANNELS.len() as u64) as usize];
        let (_, mic) = mic::split_mic(&frame).map_err(|e| invalid(e.to_string()))?;
        s.next_transaction_id += 1;
        s.stats.played += 1;
        s.played.insert(
            transaction_id,
            PlayedUpstream {
                transaction_id,
                dev_eui,
                mic,
                fcnt,
                candidates,
                verdict: UpstreamVerdict::Unanswered,
            },
        );
        Ok(msg)
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

    /// Forgets an upstream that could not be sent.
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

/// Plays a transmission: builds it, sends it to the next upstream connection, and
/// returns its transaction id.
pub(crate) fn play(shared: &Shared, dev_eui: DevEui, tx: Transmission) -> Result<u64> {
    let msg = shared.radio.prepare(dev_eui, tx)?;
    let sent = shared
        .hub
        .send_upstream(&crate::streams::upstream_json(&msg));
    match sent {
        Ok(()) => Ok(msg.transaction_id),
        Err(e) => {
            shared.radio.unplay(msg.transaction_id);
            Err(e)
        }
    }
}

/// Most copies of one uplink the emulator plays.
pub const MAX_COPIES: usize = 64;

/// How many times the RAN delivers one played uplink, and how far apart; see
/// [`Emulator::play_uplink_copies`]. A plain number converts into copies sent back to
/// back.
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

/// Plays a transmission as `copies` copies (see [`Radio::copy`]), each sent to the next
/// upstream connection; returns their transaction ids, the first copy's first.
pub(crate) fn play_copies(
    shared: &Shared,
    dev_eui: DevEui,
    tx: Transmission,
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
    let first = shared.radio.prepare(dev_eui, tx)?;
    let mut messages = vec![first];
    for _ in 1..copies {
        match shared.radio.copy(&messages[0]) {
            Ok(m) => messages.push(m),
            Err(e) => {
                for m in &messages {
                    shared.radio.unplay(m.transaction_id);
                }
                return Err(e);
            }
        }
    }
    let mut ids = Vec::with_capacity(copies);
    for (i, msg) in messages.iter().enumerate() {
        if i > 0 && !spacing.is_zero() {
            std::thread::sleep(spacing);
        }
        let sent = shared
            .hub
            .send_upstream(&crate::streams::upstream_json(msg));
        if let Err(e) = sent {
            for m in &messages[i..] {
                shared.radio.unplay(m.transaction_id);
            }
            if i == 0 {
                return Err(e);
            }
            break;
        }
        ids.push(msg.transaction_id);
    }
    Ok(ids)
}

/// Emulated devices with real keys, and the verdicts on the LNS's answers.
///
/// ```
/// use std::time::Duration;
/// use ran_routing_emulator::{Emulator, RadioDevice, UpstreamVerdict};
/// use ran_routing::mic::{self, AesKey, Keys, Session};
/// use ran_routing::{Core, DevAddr, DevEui};
///
/// let emu = Emulator::start()?;
/// let (dev_eui, dev_addr) = (DevEui::new(0x0004a30b001c0530), DevAddr::new(0x26011bda));
/// let nwk_s_key: AesKey = "000102030405060708090a0b0c0d0e0f".parse()?;
/// emu.add_radio_device(RadioDevice::abp(dev_eui, dev_addr, nwk_s_key.clone(), 70_000));
///
/// // An LNS that has the device's session key.
/// let mut keys = Keys::new();
/// keys.set_session(dev_eui, Session::new(nwk_s_key).with_fcnt_up(69_999));
/// let core = Core::new(emu.token(), &emu.base_url())?;
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
    /// Puts a device on the emulated air, replacing any with the same DevEUI (which
    /// restarts its counters from the new device's).
    pub fn add_radio_device(&self, device: RadioDevice) {
        self.shared.radio.add(device);
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

    /// The device sends its next join request (and takes the next DevNonce); the
    /// emulator delivers it, MIC hidden among decoys, to the next upstream connection.
    /// Returns the upstream's transaction id.
    ///
    /// Fails with [`Error::Invalid`] for an unknown device or one without an AppKey, and
    /// with [`Error::Closed`] when no upstream connection is open (see
    /// [`send_upstream`](Self::send_upstream)).
    pub fn play_join_request(&self, dev_eui: DevEui) -> Result<u64> {
        play(&self.shared, dev_eui, Transmission::JoinRequest)
    }

    /// The device sends an unconfirmed data uplink with the next frame counter (the
    /// frame carries its low 16 bits; the counter runs on past 65535). Its `DevEUIs`
    /// lists every radio device with the same DevAddr, as the RAN does. Returns the
    /// upstream's transaction id.
    ///
    /// The FRMPayload goes out as given, unencrypted. Fails like
    /// [`play_join_request`](Self::play_join_request), for a device without a session,
    /// and for a payload too long for a LoRaWAN frame.
    pub fn play_uplink(
        &self,
        dev_eui: DevEui,
        fport: u8,
        payload: impl Into<Vec<u8>>,
    ) -> Result<u64> {
        let tx = Transmission::Data {
            fport,
            payload: payload.into(),
            confirmed: false,
        };
        play(&self.shared, dev_eui, tx)
    }

    /// [`play_uplink`](Self::play_uplink) for a confirmed data uplink, which the LNS
    /// answers with a downlink.
    pub fn play_confirmed_uplink(
        &self,
        dev_eui: DevEui,
        fport: u8,
        payload: impl Into<Vec<u8>>,
    ) -> Result<u64> {
        let tx = Transmission::Data {
            fport,
            payload: payload.into(),
            confirmed: true,
        };
        play(&self.shared, dev_eui, tx)
    }

    /// [`play_uplink`](Self::play_uplink) as `copies` copies, as the RAN delivers an
    /// uplink heard by several gateways: one frame (one frame counter), each copy under a
    /// new transaction id with a MIC challenge of its own that holds the true MIC. Every
    /// copy's answer is judged. Takes a count or [`Copies`] (to space them out). Returns the copies' transaction ids in the order sent
    /// (fewer than asked if the upstream connection went away meanwhile). `copies` is 1
    /// to [`MAX_COPIES`].
    pub fn play_uplink_copies(
        &self,
        dev_eui: DevEui,
        fport: u8,
        payload: impl Into<Vec<u8>>,
        copies: impl Into<Copies>,
    ) -> Result<Vec<u64>> {
        let tx = Transmission::Data {
            fport,
            payload: payload.into(),
            confirmed: false,
        };
        play_copies(&self.shared, dev_eui, tx, copies.into())
    }

    /// [`play_join_request`](Self::play_join_request) as `copies` copies; see
    /// [`play_uplink_copies`](Self::play_uplink_copies).
    pub fn play_join_request_copies(
        &self,
        dev_eui: DevEui,
        copies: impl Into<Copies>,
    ) -> Result<Vec<u64>> {
        play_copies(
            &self.shared,
            dev_eui,
            Transmission::JoinRequest,
            copies.into(),
        )
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

    /// How the played upstreams were answered so far.
    pub fn mic_stats(&self) -> MicStats {
        self.shared.radio.stats()
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

    #[test]
    fn counters_advance_and_wrap() {
        let radio = Radio::default();
        let key = AesKey::new([7; 16]);
        let dev_eui = DevEui::new(1);
        radio.add(RadioDevice::abp(
            dev_eui,
            DevAddr::new(9),
            key.clone(),
            u32::MAX,
        ));
        let first = radio
            .prepare(
                dev_eui,
                Transmission::Data {
                    fport: 1,
                    payload: vec![],
                    confirmed: false,
                },
            )
            .unwrap();
        assert_eq!(first.transaction_id, FIRST_TRANSACTION_ID);
        assert_eq!(radio.device(dev_eui).unwrap().fcnt(), Some(0));
        let p = radio.played(first.transaction_id).unwrap();
        assert_eq!(p.fcnt, Some(u32::MAX));
        let frame = first.phy_payload_with_mic(p.mic);
        assert!(mic::verify_data_uplink(&key, &frame, u32::MAX).unwrap());
        // Not OTAA.
        assert!(radio.prepare(dev_eui, Transmission::JoinRequest).is_err());
        assert!(radio
            .prepare(DevEui::new(2), Transmission::JoinRequest)
            .is_err());
        radio.unplay(first.transaction_id);
        assert_eq!(radio.stats().played, 0);
    }
}
