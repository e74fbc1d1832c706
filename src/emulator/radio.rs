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
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::control::validation_failed;
use super::http::{Request, Response};
use super::server::Shared;
use super::Emulator;
use crate::error::{Error, InvalidInput, Result};
use crate::ids::{DevAddr, DevEui, JoinEui};
use crate::mic::{self, AesKey, DataUplink, MAX_CHALLENGE, MIN_CHALLENGE};
use crate::model::{UpstreamMessage, UpstreamRejectResultCode, UpstreamReply};

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
/// use ran_routing::emulator::RadioDevice;
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
enum Transmission {
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
    Error::Invalid(InvalidInput::Other(msg.into()))
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

    fn add(&self, device: RadioDevice) {
        let mut s = self.lock();
        let candidates = s.max_candidates;
        s.devices
            .insert(device.dev_eui, DeviceState { device, candidates });
    }

    fn remove(&self, dev_eui: DevEui) -> bool {
        self.lock().devices.remove(&dev_eui).is_some()
    }

    fn device(&self, dev_eui: DevEui) -> Option<RadioDevice> {
        self.lock().devices.get(&dev_eui).map(|d| d.device.clone())
    }

    fn devices(&self) -> Vec<(RadioDevice, usize)> {
        self.lock()
            .devices
            .values()
            .map(|d| (d.device.clone(), d.candidates))
            .collect()
    }

    fn set_challenge_size(&self, min: usize, max: usize) -> Result<()> {
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

    fn played(&self, transaction_id: u64) -> Option<PlayedUpstream> {
        self.lock().played.get(&transaction_id).cloned()
    }

    fn stats(&self) -> MicStats {
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
fn play(shared: &Shared, dev_eui: DevEui, tx: Transmission) -> Result<u64> {
    let msg = shared.radio.prepare(dev_eui, tx)?;
    let sent = serde_json::to_string(&msg)
        .map_err(|e| invalid(e.to_string()))
        .and_then(|text| shared.hub.send_upstream(&text));
    match sent {
        Ok(()) => Ok(msg.transaction_id),
        Err(e) => {
            shared.radio.unplay(msg.transaction_id);
            Err(e)
        }
    }
}

/// Emulated devices with real keys, and the verdicts on the LNS's answers.
///
/// ```
/// use std::time::Duration;
/// use ran_routing::emulator::{Emulator, RadioDevice, UpstreamVerdict};
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

    /// The upstream played with this transaction id: true DevEUI and MIC, and verdict.
    pub fn played_upstream(&self, transaction_id: u64) -> Option<PlayedUpstream> {
        self.shared.radio.played(transaction_id)
    }

    /// The verdict on the played upstream with this transaction id; `None` if the
    /// emulator did not play it.
    pub fn upstream_verdict(&self, transaction_id: u64) -> Option<UpstreamVerdict> {
        self.played_upstream(transaction_id).map(|p| p.verdict)
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
        self.upstream_verdict(transaction_id)
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

// --- control API ------------------------------------------------------------------------

fn parse_body<T: serde::de::DeserializeOwned>(req: &Request) -> std::result::Result<T, Response> {
    serde_json::from_slice(&req.body).map_err(|e| validation_failed(e.to_string()))
}

/// The body of `POST /emulator/radio/devices`. Keys stay strings until parsed into
/// [`AesKey`]s; nothing here derives `Debug`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    dev_eui: DevEui,
    #[serde(default)]
    join_eui: Option<JoinEui>,
    #[serde(default)]
    app_key: Option<String>,
    #[serde(default)]
    dev_nonce: Option<u16>,
    #[serde(default)]
    dev_addr: Option<DevAddr>,
    #[serde(default)]
    nwk_s_key: Option<String>,
    #[serde(default)]
    fcnt: Option<u32>,
}

impl DeviceBody {
    fn device(self) -> std::result::Result<RadioDevice, String> {
        let key = |name: &str, hex: &str| hex.parse::<AesKey>().map_err(|e| format!("{name}: {e}"));
        let join = match (self.join_eui, &self.app_key) {
            (Some(join_eui), Some(hex)) => Some((join_eui, key("app_key", hex)?)),
            (None, None) => None,
            _ => return Err("join_eui and app_key go together".into()),
        };
        let session = match (self.dev_addr, &self.nwk_s_key) {
            (Some(dev_addr), Some(hex)) => Some((dev_addr, key("nwk_s_key", hex)?)),
            (None, None) => None,
            _ => return Err("dev_addr and nwk_s_key go together".into()),
        };
        if join.is_none() && self.dev_nonce.is_some() {
            return Err("dev_nonce needs join_eui and app_key".into());
        }
        if session.is_none() && self.fcnt.is_some() {
            return Err("fcnt needs dev_addr and nwk_s_key".into());
        }
        let fcnt = self.fcnt.unwrap_or(0);
        let device = match (join, session) {
            (Some((join_eui, app_key)), session) => {
                let device = RadioDevice::otaa(self.dev_eui, join_eui, app_key)
                    .dev_nonce(self.dev_nonce.unwrap_or(0));
                match session {
                    Some((dev_addr, nwk_s_key)) => device.with_session(dev_addr, nwk_s_key, fcnt),
                    None => device,
                }
            }
            (None, Some((dev_addr, nwk_s_key))) => {
                RadioDevice::abp(self.dev_eui, dev_addr, nwk_s_key, fcnt)
            }
            (None, None) => {
                return Err("give join_eui and app_key (OTAA), dev_addr and nwk_s_key \
                            (a session), or both"
                    .into())
            }
        };
        Ok(device)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    dev_eui: DevEui,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UplinkBody {
    dev_eui: DevEui,
    fport: u8,
    #[serde(default)]
    payload_hex: String,
    #[serde(default)]
    confirmed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeSizeBody {
    min: usize,
    max: usize,
}

fn parse_hex_bytes(hex: &str) -> Option<Vec<u8>> {
    // from_str_radix alone would take a sign.
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn device_json(device: &RadioDevice, candidates: usize) -> Value {
    json!({
        "dev_eui": device.dev_eui,
        "join_eui": device.join_eui(),
        "next_dev_nonce": device.next_dev_nonce(),
        "dev_addr": device.dev_addr(),
        "fcnt": device.fcnt(),
        "candidates": candidates,
    })
}

fn played_json(p: &PlayedUpstream) -> Value {
    let mut out = json!({
        "transaction_id": p.transaction_id,
        "dev_eui": p.dev_eui,
        "mic": p.mic,
        "fcnt": p.fcnt,
        "candidates": p.candidates,
    });
    let verdict = match &p.verdict {
        UpstreamVerdict::Unanswered => json!({"verdict": "Unanswered"}),
        UpstreamVerdict::Solved => json!({"verdict": "Solved"}),
        UpstreamVerdict::WrongAck { dev_eui, mic } => {
            json!({"verdict": "WrongAck", "ack_dev_eui": dev_eui, "ack_mic": mic})
        }
        UpstreamVerdict::Rejected(code) => {
            json!({"verdict": "Rejected", "result_code": code.to_string()})
        }
    };
    if let (Some(out), Value::Object(verdict)) = (out.as_object_mut(), verdict) {
        out.extend(verdict);
    }
    out
}

fn stats_json(s: &MicStats) -> Value {
    json!({
        "played": s.played,
        "solved": s.solved,
        "wrong_acks": s.wrong_acks,
        "mic_failed": s.mic_failed,
        "other_rejects": s.other_rejects,
        "duplicate_replies": s.duplicate_replies,
        "unanswered": s.unanswered(),
    })
}

fn played_response(shared: &Shared, outcome: Result<u64>) -> Response {
    match outcome {
        Ok(tid) => match shared.radio.played(tid) {
            Some(p) => Response::json(200, &played_json(&p)),
            None => Response::json(200, &json!({"transaction_id": tid})),
        },
        Err(e @ Error::Closed(_)) => {
            Response::error(503, "Emulator.NoUpstreamConnection", e.to_string(), None)
        }
        Err(e) => validation_failed(e.to_string()),
    }
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "devices"),
    ("POST", "devices"),
    ("DELETE", "devices/{dev_eui}"),
    ("POST", "join-request"),
    ("POST", "uplink"),
    ("GET", "upstreams/{transaction_id}"),
    ("GET", "stats"),
    ("POST", "challenge-size"),
];

/// `/emulator/radio/{route}`.
pub(crate) fn handle(shared: &Arc<Shared>, route: &str, req: &Request) -> Response {
    let radio = &shared.radio;
    let outcome = match (req.method.as_str(), route) {
        ("GET", "devices") => {
            let devices: Vec<Value> = radio
                .devices()
                .iter()
                .map(|(d, candidates)| device_json(d, *candidates))
                .collect();
            Ok(Response::json(200, &devices))
        }
        ("POST", "devices") => parse_body::<DeviceBody>(req).and_then(|body| {
            let device = body.device().map_err(validation_failed)?;
            let dev_eui = device.dev_eui;
            radio.add(device);
            Ok(Response::json(200, &json!({"dev_eui": dev_eui})))
        }),
        ("DELETE", path) if path.starts_with("devices/") => {
            match path["devices/".len()..].parse::<DevEui>() {
                Ok(dev_eui) if radio.remove(dev_eui) => {
                    Ok(Response::json(200, &json!({"removed": dev_eui})))
                }
                Ok(dev_eui) => Err(Response::error(
                    404,
                    "Emulator.UnknownRadioDevice",
                    format!("no radio device {dev_eui}"),
                    None,
                )),
                Err(e) => Err(validation_failed(e.to_string())),
            }
        }
        ("POST", "join-request") => parse_body::<JoinBody>(req).map(|body| {
            played_response(
                shared,
                play(shared, body.dev_eui, Transmission::JoinRequest),
            )
        }),
        ("POST", "uplink") => parse_body::<UplinkBody>(req).and_then(|body| {
            let payload = parse_hex_bytes(&body.payload_hex)
                .ok_or_else(|| validation_failed("payload_hex: expected pairs of hex digits"))?;
            let tx = Transmission::Data {
                fport: body.fport,
                payload,
                confirmed: body.confirmed,
            };
            Ok(played_response(shared, play(shared, body.dev_eui, tx)))
        }),
        ("GET", path) if path.starts_with("upstreams/") => {
            match path["upstreams/".len()..].parse::<u64>() {
                Ok(tid) => match radio.played(tid) {
                    Some(p) => Ok(Response::json(200, &played_json(&p))),
                    None => Err(Response::error(
                        404,
                        "Emulator.UnknownUpstream",
                        format!("the emulator played no upstream {tid}"),
                        None,
                    )),
                },
                Err(e) => Err(validation_failed(format!("transaction id: {e}"))),
            }
        }
        ("GET", "stats") => Ok(Response::json(200, &stats_json(&radio.stats()))),
        ("POST", "challenge-size") => parse_body::<ChallengeSizeBody>(req).and_then(|body| {
            radio
                .set_challenge_size(body.min, body.max)
                .map_err(|e| validation_failed(e.to_string()))?;
            Ok(Response::json(
                200,
                &json!({"min": body.min, "max": body.max}),
            ))
        }),
        (method, route) => Err(not_routed(method, route)),
    };
    outcome.unwrap_or_else(|response| response)
}

fn not_routed(method: &str, route: &str) -> Response {
    let shape = |r: &str| match r.split_once('/') {
        Some((head, _)) => format!("{head}/{{"),
        None => r.to_owned(),
    };
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, r)| {
            *r == route || (r.contains('{') && route.contains('/') && r.starts_with(&shape(route)))
        })
        .map(|(m, _)| *m)
        .collect();
    super::control::not_routed(method, &format!("/emulator/radio/{route}"), &allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_payloads() {
        assert_eq!(parse_hex_bytes(""), Some(vec![]));
        assert_eq!(parse_hex_bytes("00fFa5"), Some(vec![0, 0xff, 0xa5]));
        for bad in ["0", "0g", "+1", "é0", " 01"] {
            assert_eq!(parse_hex_bytes(bad), None, "{bad:?}");
        }
    }

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
