//! A device on the emulated air: its keys, its class and its counters.

use ran_routing::mic::AesKey;
use ran_routing::{DevAddr, DevEui, JoinEui};

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
    pub(super) dev_eui: DevEui,
    pub(super) join: Option<JoinCredentials>,
    pub(super) session: Option<RadioSession>,
    pub(super) class: DeviceClass,
}

/// When a device listens for downlinks, beyond the two class A windows after each
/// uplink that every device opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DeviceClass {
    /// Only in RX1 and RX2 after its own uplinks.
    #[default]
    A,
    /// Also in the ping slots of the beacon period: it takes `TMMS` downlinks.
    B,
    /// Continuously: it takes `Deadline` downlinks.
    C,
}

impl DeviceClass {
    /// `"A"`, `"B"` or `"C"`, as the control API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
            Self::C => "C",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct JoinCredentials {
    pub(super) join_eui: JoinEui,
    pub(super) app_key: AesKey,
    pub(super) dev_nonce: u16,
    /// The join request the device is waiting to be answered: its DevNonce and the
    /// transaction id it was played with. Cleared by a join, or by any later
    /// transmission (the device listens only after its latest one).
    pub(super) pending: Option<(u16, u64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct RadioSession {
    pub(super) dev_addr: DevAddr,
    pub(super) nwk_s_key: AesKey,
    /// Encrypts the application payload of uplinks and decrypts that of downlinks;
    /// without it uplinks carry their FRMPayload in clear.
    pub(super) app_s_key: Option<AesKey>,
    /// The full counter of the next uplink.
    pub(super) fcnt: u32,
    /// The full counter of the last data downlink the device accepted: a later one
    /// must be greater.
    pub(super) fcnt_down: Option<u32>,
    /// RX1's delay after an uplink, in seconds (RX2 opens a second later): 1 unless a
    /// join accept said otherwise.
    pub(super) rx1_delay: u8,
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
            class: DeviceClass::A,
        }
    }

    /// An ABP device: it plays data uplinks from `dev_addr` signed with `nwk_s_key`, the
    /// first with the full 32-bit counter `fcnt`.
    pub fn abp(dev_eui: DevEui, dev_addr: DevAddr, nwk_s_key: AesKey, fcnt: u32) -> Self {
        Self {
            dev_eui,
            join: None,
            session: Some(RadioSession::new(dev_addr, nwk_s_key, None, fcnt)),
            class: DeviceClass::A,
        }
    }

    /// Gives the device a session, as after a join: it plays data uplinks too.
    pub fn with_session(mut self, dev_addr: DevAddr, nwk_s_key: AesKey, fcnt: u32) -> Self {
        self.session = Some(RadioSession::new(dev_addr, nwk_s_key, None, fcnt));
        self
    }

    /// Gives the device's session its AppSKey: its uplinks' FRMPayload is encrypted
    /// under it, and it decrypts the payload of the data downlinks it receives. No
    /// effect on a device without a session (a join derives both keys).
    pub fn with_app_s_key(mut self, app_s_key: AesKey) -> Self {
        if let Some(session) = &mut self.session {
            session.app_s_key = Some(app_s_key);
        }
        self
    }

    /// Puts the device in class B or C (or back to A): only such a device takes class B
    /// (`TMMS`) or class C (`Deadline`) downlinks.
    pub fn with_class(mut self, class: DeviceClass) -> Self {
        self.class = class;
        self
    }

    /// The device's class.
    pub fn class(&self) -> DeviceClass {
        self.class
    }

    /// The full counter of the last data downlink the device accepted, for a device
    /// with a session that accepted one.
    pub fn fcnt_down(&self) -> Option<u32> {
        self.session.as_ref().and_then(|s| s.fcnt_down)
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
            if let Some(app_s_key) = &session.app_s_key {
                body.insert("app_s_key".into(), hex(app_s_key).into());
            }
            body.insert("fcnt".into(), session.fcnt.into());
        }
        body.insert("class".into(), self.class.as_str().into());
        serde_json::Value::Object(body)
    }
}

impl RadioSession {
    /// A session as ABP provisions it, or a join establishes it: no downlink accepted
    /// yet, RX1 one second after each uplink.
    pub(crate) fn new(
        dev_addr: DevAddr,
        nwk_s_key: AesKey,
        app_s_key: Option<AesKey>,
        fcnt: u32,
    ) -> Self {
        Self {
            dev_addr,
            nwk_s_key,
            app_s_key,
            fcnt,
            fcnt_down: None,
            rx1_delay: 1,
        }
    }
}
