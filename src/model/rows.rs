//! Routing table rows and multicast groups: the REST objects, and the arguments of the
//! calls that create and change them.

use serde::{Deserialize, Serialize};
use time::PrimitiveDateTime;

use crate::error::InvalidInput;
use crate::ids::{DevAddr, DevEui, JoinEui, MulticastAddr};
use crate::wire;

/// A row of the routing table: one subscribed device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Device {
    /// The device's EUI, unique in the routing table.
    #[serde(rename = "DevEUI")]
    pub dev_eui: DevEui,
    /// The JoinEUI of an OTAA device; `None` for ABP devices.
    #[serde(rename = "JoinEUI", default)]
    pub join_eui: Option<JoinEui>,
    /// The address the RAN routes uplinks by. An ABP device starts with its `DevAddr`; an
    /// OTAA device has none until the LNS sets one.
    #[serde(rename = "ActiveDevAddr", default)]
    pub active_dev_addr: Option<DevAddr>,
    /// The address handed out in a join accept; it becomes active once the device sends
    /// its first uplink with it.
    #[serde(rename = "TargetDevAddr", default)]
    pub target_dev_addr: Option<DevAddr>,
    /// Free-form details the LNS stored with the device (a string of JSON).
    #[serde(rename = "Details", default)]
    pub details: Option<String>,
    /// When the device was inserted (naive UTC, as the service reports it).
    #[serde(rename = "CreatedAt", with = "wire::timestamp")]
    pub created_at: PrimitiveDateTime,
}

impl Device {
    /// A row as the service answers it, with no JoinEUI, addresses or details yet (see
    /// the `with_` methods). For tests and emulators; an LNS gets rows from
    /// [`RoutingTable`](crate::RoutingTable).
    pub fn new(dev_eui: DevEui, created_at: PrimitiveDateTime) -> Self {
        Self {
            dev_eui,
            join_eui: None,
            active_dev_addr: None,
            target_dev_addr: None,
            details: None,
            created_at,
        }
    }

    /// Sets the JoinEUI (OTAA devices).
    #[must_use]
    pub fn with_join_eui(mut self, join_eui: Option<JoinEui>) -> Self {
        self.join_eui = join_eui;
        self
    }

    /// Sets the active address.
    #[must_use]
    pub fn with_active_dev_addr(mut self, addr: Option<DevAddr>) -> Self {
        self.active_dev_addr = addr;
        self
    }

    /// Sets the target address.
    #[must_use]
    pub fn with_target_dev_addr(mut self, addr: Option<DevAddr>) -> Self {
        self.target_dev_addr = addr;
        self
    }

    /// Sets the details (a string of JSON).
    #[must_use]
    pub fn with_details(mut self, details: Option<String>) -> Self {
        self.details = details;
        self
    }

    /// The device's identity: OTAA when it has a JoinEUI, ABP otherwise.
    ///
    /// Returns `None` only for a row with neither, which the service does not produce.
    pub fn identity(&self) -> Option<DeviceIdentity> {
        match (self.join_eui, self.active_dev_addr) {
            (Some(join_eui), _) => Some(DeviceIdentity::Otaa { join_eui }),
            (None, Some(dev_addr)) => Some(DeviceIdentity::Abp { dev_addr }),
            (None, None) => None,
        }
    }
}

/// How a new device joins the network: over the air with a JoinEUI, or personalized
/// with a fixed DevAddr. The service takes exactly one of the two.
///
/// `JoinEui` and `DevAddr` convert into it; [`NewDevice::otaa`] and [`NewDevice::abp`]
/// pick one by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceIdentity {
    /// Over-the-air activation.
    Otaa {
        /// The device's JoinEUI.
        join_eui: JoinEui,
    },
    /// Activation by personalization.
    Abp {
        /// The device's fixed address.
        dev_addr: DevAddr,
    },
}

impl From<JoinEui> for DeviceIdentity {
    fn from(join_eui: JoinEui) -> Self {
        Self::Otaa { join_eui }
    }
}

impl From<DevAddr> for DeviceIdentity {
    fn from(dev_addr: DevAddr) -> Self {
        Self::Abp { dev_addr }
    }
}

/// A multicast group: an address that many devices listen on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MulticastGroup {
    /// The group's address.
    pub addr: MulticastAddr,
    /// When the group was created (naive UTC).
    #[serde(with = "wire::timestamp")]
    pub created_at: PrimitiveDateTime,
    /// The group's name, at most [`MulticastGroup::MAX_NAME_LEN`] characters.
    pub name: String,
    /// The devices in the group.
    #[serde(default)]
    pub devices: Vec<DevEui>,
}

impl MulticastGroup {
    /// The longest name the service accepts, in characters.
    pub const MAX_NAME_LEN: usize = 255;

    /// A group as the service answers it. For tests and emulators; an LNS gets groups
    /// from [`MulticastGroups`](crate::MulticastGroups).
    pub fn new(
        addr: MulticastAddr,
        name: impl Into<String>,
        created_at: PrimitiveDateTime,
        devices: Vec<DevEui>,
    ) -> Self {
        Self {
            addr,
            created_at,
            name: name.into(),
            devices,
        }
    }

    /// Checks a group name before it is sent.
    pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
        let len = name.chars().count();
        if len > Self::MAX_NAME_LEN {
            return Err(InvalidInput::GroupNameTooLong { len });
        }
        Ok(())
    }
}

/// A device to insert in the routing table: its DevEUI, its [`DeviceIdentity`] and
/// optional details. The argument of [`RoutingTable::insert`](crate::RoutingTable::insert),
/// read like the Python client's keywords:
///
/// ```
/// use ran_routing::{DevAddr, DevEui, JoinEui, NewDevice};
///
/// // insert(dev_eui=.., join_eui=..)
/// let otaa = NewDevice::otaa(DevEui::new(0x7abe1b8c93d7174f), JoinEui::new(0x3cedcf624f8b68f4));
/// // insert(dev_eui=.., dev_addr=.., details=..)
/// let abp = NewDevice::abp(DevEui::new(0x7bbe1b8c93d7174a), DevAddr::new(0x627bb8bb))
///     .with_details(r#"{"customer": "ACME Inc."}"#);
/// assert_eq!(abp.details(), Some(r#"{"customer": "ACME Inc."}"#));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[must_use]
pub struct NewDevice {
    dev_eui: DevEui,
    identity: DeviceIdentity,
    details: Option<String>,
}

impl NewDevice {
    /// A device with this identity (a [`JoinEui`] or a [`DevAddr`] converts into one).
    pub fn new(dev_eui: impl Into<DevEui>, identity: impl Into<DeviceIdentity>) -> Self {
        Self {
            dev_eui: dev_eui.into(),
            identity: identity.into(),
            details: None,
        }
    }

    /// An OTAA device, found by the RAN by its JoinEUI when it joins.
    pub fn otaa(dev_eui: impl Into<DevEui>, join_eui: impl Into<JoinEui>) -> Self {
        Self::new(dev_eui, join_eui.into())
    }

    /// An ABP device with its fixed address.
    pub fn abp(dev_eui: impl Into<DevEui>, dev_addr: impl Into<DevAddr>) -> Self {
        Self::new(dev_eui, dev_addr.into())
    }

    /// Stores `details` with the device: a string of JSON (checked before sending,
    /// [`InvalidInput::DetailsNotJson`]); the service limits its size.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// The device's EUI.
    pub fn dev_eui(&self) -> DevEui {
        self.dev_eui
    }

    /// OTAA or ABP.
    pub fn identity(&self) -> DeviceIdentity {
        self.identity
    }

    /// The details to store, if any.
    pub fn details(&self) -> Option<&str> {
        self.details.as_deref()
    }

    /// Checks the details are JSON.
    pub(crate) fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(details) = &self.details {
            serde_json::from_str::<serde::de::IgnoredAny>(details)
                .map_err(|e| InvalidInput::DetailsNotJson(e.to_string()))?;
        }
        Ok(())
    }
}

/// New addresses for an OTAA device, found by its (DevEUI, JoinEUI) pair: the argument of
/// [`RoutingTable::update`](crate::RoutingTable::update). Give at least one address.
///
/// ```
/// use ran_routing::{DevAddr, DevEui, DeviceUpdate, JoinEui};
///
/// // update(dev_eui=.., join_eui=.., active_dev_addr=..)
/// let update = DeviceUpdate::new(DevEui::new(0x7abe1b8c93d7174f), JoinEui::new(0x3cedcf624f8b68f4))
///     .with_active_dev_addr(DevAddr::new(0x627bb8bc));
/// assert_eq!(update.target_dev_addr(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct DeviceUpdate {
    dev_eui: DevEui,
    join_eui: JoinEui,
    active_dev_addr: Option<DevAddr>,
    target_dev_addr: Option<DevAddr>,
}

impl DeviceUpdate {
    /// An update of the device with this DevEUI and JoinEUI that changes nothing yet.
    pub fn new(dev_eui: impl Into<DevEui>, join_eui: impl Into<JoinEui>) -> Self {
        Self {
            dev_eui: dev_eui.into(),
            join_eui: join_eui.into(),
            active_dev_addr: None,
            target_dev_addr: None,
        }
    }

    /// The address the RAN routes by from now on.
    pub fn with_active_dev_addr(mut self, addr: impl Into<DevAddr>) -> Self {
        self.active_dev_addr = Some(addr.into());
        self
    }

    /// The address handed out in a join accept; it becomes active with the device's first
    /// uplink using it.
    pub fn with_target_dev_addr(mut self, addr: impl Into<DevAddr>) -> Self {
        self.target_dev_addr = Some(addr.into());
        self
    }

    /// The device's EUI.
    pub fn dev_eui(&self) -> DevEui {
        self.dev_eui
    }

    /// The device's JoinEUI.
    pub fn join_eui(&self) -> JoinEui {
        self.join_eui
    }

    /// The new active address, if set.
    pub fn active_dev_addr(&self) -> Option<DevAddr> {
        self.active_dev_addr
    }

    /// The new target address, if set.
    pub fn target_dev_addr(&self) -> Option<DevAddr> {
        self.target_dev_addr
    }
}

/// A new name and/or address for the multicast group at an address: the argument of
/// [`MulticastGroups::update`](crate::MulticastGroups::update). Give at least one.
///
/// ```
/// use ran_routing::{MulticastAddr, MulticastGroupUpdate};
///
/// // update_multicast_group(addr=.., new_name=..)
/// let rename = MulticastGroupUpdate::new(MulticastAddr::new(0xef046a1e)).with_name("new-name");
/// // update_multicast_group(addr=.., new_addr=..)
/// let moved = MulticastGroupUpdate::new(MulticastAddr::new(0xef046a1e))
///     .with_addr(MulticastAddr::new(0xffffffff));
/// assert_eq!(moved.new_addr(), Some(MulticastAddr::new(0xffffffff)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[must_use]
pub struct MulticastGroupUpdate {
    addr: MulticastAddr,
    new_name: Option<String>,
    new_addr: Option<MulticastAddr>,
}

impl MulticastGroupUpdate {
    /// An update of the group at `addr` that changes nothing yet.
    pub fn new(addr: impl Into<MulticastAddr>) -> Self {
        Self {
            addr: addr.into(),
            new_name: None,
            new_addr: None,
        }
    }

    /// Renames the group (at most [`MulticastGroup::MAX_NAME_LEN`] characters).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.new_name = Some(name.into());
        self
    }

    /// Moves the group to a new address.
    pub fn with_addr(mut self, addr: impl Into<MulticastAddr>) -> Self {
        self.new_addr = Some(addr.into());
        self
    }

    /// The group's current address.
    pub fn addr(&self) -> MulticastAddr {
        self.addr
    }

    /// The new name, if set.
    pub fn new_name(&self) -> Option<&str> {
        self.new_name.as_deref()
    }

    /// The new address, if set.
    pub fn new_addr(&self) -> Option<MulticastAddr> {
        self.new_addr
    }
}
