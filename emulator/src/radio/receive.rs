//! A radio device receiving a downlink the RAN transmitted to it, as a real one would.

use ran_routing::mic::{fcnt_candidates, AesKey, DataDownlink, JoinAccept, MicError};
use ran_routing::{DevAddr, DevEui, DownstreamResultCode, MulticastAddr};

use super::{
    DeviceClass, DownlinkVerdict, IgnoredReason, Radio, RadioDevice, RadioSession, RadioState,
    ReceivedDownlink,
};

/// The window a downlink was transmitted in, as the device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// Class A: this many seconds after the uplink the RAN timed it from (the uplink's
    /// transaction id; `None` when the timing rule is off).
    A { delay: u8, timed_from: Option<u64> },
    /// Class B: a ping slot.
    B,
    /// Class C: at any time.
    C,
}

/// A multicast group's session, as its members were provisioned with it.
#[derive(Debug, Clone)]
pub(crate) struct GroupSession {
    pub(crate) nwk_s_key: AesKey,
    pub(crate) app_s_key: AesKey,
}

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

    /// Gives the radio the session keys a multicast group's members were provisioned
    /// with (the last accepted group counter restarts).
    pub(crate) fn set_group_session(&self, addr: MulticastAddr, session: GroupSession) {
        let mut s = self.lock();
        s.group_fcnt_down.remove(&addr);
        s.groups.insert(addr, session);
    }

    /// A radio device receives a downlink the RAN transmitted to it, as a real device
    /// would: a join accept is checked and may make it join; a data downlink is taken
    /// only if addressed to its session, signed with its NwkSKey and the full FCntDown,
    /// newer than the last it took, and in a window it listens in. Returns the verdict.
    pub(crate) fn receive(
        &self,
        dev_eui: DevEui,
        transaction_id: u64,
        phy_payload: &[u8],
        window: Window,
    ) -> DownlinkVerdict {
        let mut s = self.lock();
        let s = &mut *s;
        let verdict = match phy_payload.first().map(|mhdr| mhdr >> 5) {
            Some(0b001) => join_accept(s, dev_eui, phy_payload, window),
            Some(0b011 | 0b101) => data_downlink(s, dev_eui, phy_payload, window),
            _ => Err(IgnoredReason::Malformed),
        }
        .unwrap_or_else(DownlinkVerdict::Ignored);
        self.record(s, dev_eui, transaction_id, verdict)
    }

    /// The members of a multicast group that are on the air receive its downlink: each
    /// checks the MIC with the group's NwkSKey and the group counter, and must be class B
    /// for a `TMMS` downlink or class C for a `Deadline` one. The verdict lists what
    /// each member made of it; `None` when no member is a radio device.
    pub(crate) fn receive_multicast(
        &self,
        addr: MulticastAddr,
        members: &[DevEui],
        transaction_id: u64,
        phy_payload: &[u8],
        window: Window,
    ) -> Option<DownlinkVerdict> {
        let mut s = self.lock();
        let s = &mut *s;
        let on_air: Vec<DevEui> = members
            .iter()
            .copied()
            .filter(|d| s.devices.contains_key(d))
            .collect();
        if on_air.is_empty() {
            return None;
        }
        let opened = match s.groups.get(&addr) {
            None => Err(IgnoredReason::MicMismatch),
            Some(group) => open(
                &group.nwk_s_key,
                Some(&group.app_s_key),
                DevAddr::new(addr.get()),
                s.group_fcnt_down.get(&addr).copied(),
                phy_payload,
            ),
        };
        let mut verdicts = Vec::with_capacity(on_air.len());
        for dev_eui in on_air {
            let class = s.devices.get(&dev_eui).map(|d| d.device.class);
            let verdict = match (listens(class, window), &opened) {
                (Err(reason), _) => DownlinkVerdict::Ignored(reason),
                (Ok(()), Err(reason)) => DownlinkVerdict::Ignored(*reason),
                (Ok(()), Ok(received)) => DownlinkVerdict::Received(received.clone()),
            };
            verdicts.push((dev_eui, verdict));
        }
        if let Ok(received) = &opened {
            if verdicts
                .iter()
                .any(|(_, v)| matches!(v, DownlinkVerdict::Received(_)))
            {
                s.group_fcnt_down.insert(addr, received.fcnt_down);
            }
        }
        for (dev_eui, verdict) in &verdicts {
            if let DownlinkVerdict::Ignored(reason) = verdict {
                s.stats.ignored_downlinks += 1;
                log::warn!(
                    "emulator: radio device {dev_eui} ignored multicast downlink \
                     {transaction_id} to {addr}: {reason:?}"
                );
            }
        }
        let verdict = DownlinkVerdict::Multicast(verdicts);
        s.downlinks.insert(transaction_id, verdict.clone());
        self.answered.notify_all();
        Some(verdict)
    }

    fn record(
        &self,
        s: &mut RadioState,
        dev_eui: DevEui,
        transaction_id: u64,
        verdict: DownlinkVerdict,
    ) -> DownlinkVerdict {
        match &verdict {
            DownlinkVerdict::Joined {
                dev_addr,
                dev_nonce,
            } => {
                s.stats.joins += 1;
                if let Some(state) = s.devices.get_mut(&dev_eui) {
                    state.candidates = s.max_candidates;
                }
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

/// Whether a device of `class` listens in a class B or C `window` (class A windows are
/// judged against its uplinks instead).
fn listens(class: Option<DeviceClass>, window: Window) -> Result<(), IgnoredReason> {
    match (class, window) {
        (_, Window::A { .. }) | (Some(DeviceClass::B), Window::B) => Ok(()),
        (Some(DeviceClass::C), Window::C) => Ok(()),
        _ => Err(IgnoredReason::NotListening),
    }
}

fn join_accept(
    s: &mut RadioState,
    dev_eui: DevEui,
    phy_payload: &[u8],
    window: Window,
) -> Result<DownlinkVerdict, IgnoredReason> {
    let timing = s.rules.downlink_timing;
    let (delay, timed_from) = match window {
        Window::A { delay, timed_from } => (Some(delay), timed_from),
        _ => (None, None),
    };
    // The DevNonce of the join request the RAN timed this downlink from: any copy of
    // that request (the RAN may deliver one uplink several times) times it alike.
    let timed_nonce = timed_from
        .and_then(|t| s.played.get(&t))
        .filter(|p| p.dev_eui == dev_eui)
        .and_then(|p| p.dev_nonce);
    let device = device(s, dev_eui)?;
    let join = device.join.as_mut().ok_or(IgnoredReason::UnknownDevNonce)?;
    let (dev_nonce, tid) = join.pending.ok_or(IgnoredReason::UnknownDevNonce)?;
    if timing && timed_from != Some(tid) && timed_nonce != Some(dev_nonce) {
        return Err(IgnoredReason::UnknownDevNonce);
    }
    if timing && !matches!(delay, Some(5 | 6)) {
        return Err(IgnoredReason::OutsideJoinWindow);
    }
    let accept = JoinAccept::decrypt(&join.app_key, phy_payload).map_err(|e| match e {
        MicError::MicMismatch => IgnoredReason::MicMismatch,
        _ => IgnoredReason::Malformed,
    })?;
    let keys = accept.session_keys(&join.app_key, dev_nonce);
    join.pending = None;
    let mut session = RadioSession::new(accept.dev_addr(), keys.nwk_s_key, Some(keys.app_s_key), 0);
    session.rx1_delay = accept.rx1_delay_secs();
    device.session = Some(session);
    Ok(DownlinkVerdict::Joined {
        dev_addr: accept.dev_addr(),
        dev_nonce,
    })
}

fn data_downlink(
    s: &mut RadioState,
    dev_eui: DevEui,
    phy_payload: &[u8],
    window: Window,
) -> Result<DownlinkVerdict, IgnoredReason> {
    let timing = s.rules.downlink_timing;
    // The full counter of the uplink the RAN timed a class A downlink from.
    let timed_fcnt = match window {
        Window::A {
            timed_from: Some(t),
            ..
        } => s
            .played
            .get(&t)
            .filter(|p| p.dev_eui == dev_eui)
            .and_then(|p| p.fcnt),
        _ => None,
    };
    let device = device(s, dev_eui)?;
    let (dev_addr, _) =
        DataDownlink::addressee(phy_payload).map_err(|_| IgnoredReason::Malformed)?;
    let class = device.class;
    let session = device
        .session
        .as_mut()
        .filter(|session| session.dev_addr == dev_addr)
        .ok_or(IgnoredReason::NotForThisDevice)?;
    match window {
        Window::A { delay, .. } if timing => {
            // The device listens only after its latest uplink, in RX1 and RX2.
            let latest = session.fcnt.wrapping_sub(1);
            if timed_fcnt != Some(latest)
                || !(session.rx1_delay..=session.rx1_delay + 1).contains(&delay)
            {
                return Err(IgnoredReason::OutsideReceiveWindow);
            }
        }
        Window::A { .. } => {}
        Window::B | Window::C => listens(Some(class), window)?,
    }
    let received = open(
        &session.nwk_s_key,
        session.app_s_key.as_ref(),
        dev_addr,
        session.fcnt_down,
        phy_payload,
    )?;
    session.fcnt_down = Some(received.fcnt_down);
    Ok(DownlinkVerdict::Received(received))
}

fn device(s: &mut RadioState, dev_eui: DevEui) -> Result<&mut RadioDevice, IgnoredReason> {
    s.devices
        .get_mut(&dev_eui)
        .map(|d| &mut d.device)
        .ok_or(IgnoredReason::NotForThisDevice)
}

/// Checks and reads a data downlink as a LoRaWAN 1.0 device does: the full FCntDown is
/// the first counter after `last` that ends in the frame's 16 bits, and the MIC must
/// verify with it. A frame whose MIC verifies with an older counter instead is a replay.
fn open(
    nwk_s_key: &AesKey,
    app_s_key: Option<&AesKey>,
    dev_addr: DevAddr,
    last: Option<u32>,
    phy_payload: &[u8],
) -> Result<ReceivedDownlink, IgnoredReason> {
    let (addr, fcnt16) =
        DataDownlink::addressee(phy_payload).map_err(|_| IgnoredReason::Malformed)?;
    if addr != dev_addr {
        return Err(IgnoredReason::NotForThisDevice);
    }
    // Without an AppSKey the MIC is still checked; the payload stays unread.
    let app = app_s_key.unwrap_or(nwk_s_key);
    let expected = last.map_or(0, |l| u64::from(l) + 1);
    let newer = fcnt_candidates(last, fcnt16).find(|&f| u64::from(f) >= expected);
    if let Some(fcnt) = newer {
        match DataDownlink::decrypt(nwk_s_key, app, phy_payload, fcnt) {
            Ok(down) => return Ok(ReceivedDownlink::new(&down, app_s_key.is_some())),
            Err(MicError::MicMismatch) => {}
            Err(_) => return Err(IgnoredReason::Malformed),
        }
    }
    // The nearest older counter with these 16 bits: a replay if the MIC verifies with it.
    let older = fcnt_candidates(last, fcnt16).find(|&f| u64::from(f) < expected);
    if older.is_some_and(|f| DataDownlink::decrypt(nwk_s_key, app, phy_payload, f).is_ok()) {
        Err(IgnoredReason::ReplayedFCnt)
    } else {
        Err(IgnoredReason::MicMismatch)
    }
}
