//! Routing table rows and multicast groups: the REST objects.


use serde::{Deserialize, Serialize};
use time::PrimitiveDateTime;

use crate::error::InvalidInput;
use crate::ids::{DevAddr, DevEui, JoinEui, MulticastAddr};
use crate::wire;


/// A row of the routing table: one subscribed device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
/// `JoinEui` and `DevAddr` convert into it, so
/// `routing_table.insert(dev_eui, JoinEui::new(..))` reads like the Python client's
/// `insert(dev_eui=.., join_eui=..)`.
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

    /// Checks a group name before it is sent.
    pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
        let len = name.chars().count();
        if len > Self::MAX_NAME_LEN {
            return Err(InvalidInput::GroupNameTooLong { len });
        }
        Ok(())
    }
}

