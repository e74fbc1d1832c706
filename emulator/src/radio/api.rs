//! The in-process handle's radio methods.

use std::time::Duration;

use ran_routing::mic::AesKey;
use ran_routing::{DevEui, MulticastAddr};

use super::{
    play, play_copies, Copies, DownlinkVerdict, GroupSession, MicStats, Play, PlayedUpstream,
    RadioDevice, UpstreamVerdict,
};
use crate::error::Result;
use crate::server::Shared;
use crate::Emulator;

#[cfg(doc)]
use super::MAX_COPIES;
#[cfg(doc)]
use crate::error::Error;

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
    /// The FRMPayload is encrypted under the device's AppSKey when it has one (a joined
    /// device does), and goes out as given otherwise.
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

    /// Gives the emulated air the session keys of multicast group `addr`, as its members
    /// were provisioned with them: members on the air as class B or C devices check and
    /// read the group's downlinks with them. The group's downlink counter restarts.
    pub fn set_multicast_session(&self, addr: MulticastAddr, nwk_s_key: AesKey, app_s_key: AesKey) {
        self.shared.radio.set_group_session(
            addr,
            GroupSession {
                nwk_s_key,
                app_s_key,
            },
        );
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
