//! Multicast groups: addresses many devices listen on, for multicast downlinks.
//!
//! Reached through [`Core::multicast_groups`]; the calls carry the Python client's names
//! (`create_multicast_group`, `get_multicast_groups`, ...).

use serde::{Deserialize, Serialize};

use crate::core::Core;
use crate::error::{InvalidInput, Result};
use crate::ids::{DevEui, MulticastAddr};
use crate::model::MulticastGroup;
use crate::rest::{self, route, Route};
use crate::wire::Deleted;

const CREATE: Route = route!(Multicast, "multicast-groups/create");
const UPDATE: Route = route!(Multicast, "multicast-groups/update");
const GET: Route = route!(Multicast, "multicast-groups/get");
const DELETE: Route = route!(Multicast, "multicast-groups/delete");
const ADD_DEVICE: Route = route!(Multicast, "multicast-groups/add-device");
const REMOVE_DEVICE: Route = route!(Multicast, "multicast-groups/remove-device");

/// The multicast groups of a [`Core`]: `ran.multicast_groups().get_multicast_groups(&[])`.
#[derive(Debug, Clone, Copy)]
pub struct MulticastGroups<'a> {
    core: &'a Core,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    name: &'a str,
    addr: MulticastAddr,
}

#[derive(Serialize)]
struct UpdateBody<'a> {
    addr: MulticastAddr,
    update: UpdateFields<'a>,
}

#[derive(Serialize)]
struct UpdateFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<MulticastAddr>,
}

#[derive(Serialize)]
struct AddrsBody<'a> {
    addrs: &'a [MulticastAddr],
}

#[derive(Serialize)]
struct DeviceBody {
    addr: MulticastAddr,
    dev_eui: DevEui,
}

#[derive(Deserialize)]
struct Added {
    is_added: bool,
}

#[derive(Deserialize)]
struct Removed {
    is_removed: bool,
}

impl<'a> MulticastGroups<'a> {
    pub(crate) fn new(core: &'a Core) -> Self {
        Self { core }
    }

    /// Creates a group with this name (at most [`MulticastGroup::MAX_NAME_LEN`]
    /// characters, checked before sending) and address.
    ///
    /// ```no_run
    /// use ran_routing::MulticastAddr;
    /// # let ran = ran_routing::Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let group = ran
    ///     .multicast_groups()
    ///     .create_multicast_group("test-multicast-group", MulticastAddr::new(0xef046a1e))?;
    /// assert!(group.devices.is_empty());
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn create_multicast_group(
        &self,
        name: &str,
        addr: impl Into<MulticastAddr>,
    ) -> Result<MulticastGroup> {
        MulticastGroup::validate_name(name)?;
        let body = CreateBody {
            name,
            addr: addr.into(),
        };
        rest::post(self.core, CREATE, Some(&body))
    }

    /// Renames the group at `addr` and/or moves it to a new address; `None` leaves that
    /// field as it is, and giving neither fails with [`InvalidInput::NothingToUpdate`]
    /// before anything is sent.
    ///
    /// ```no_run
    /// use ran_routing::MulticastAddr;
    /// # let ran = ran_routing::Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let groups = ran.multicast_groups();
    /// let addr = MulticastAddr::new(0xef046a1e);
    /// // Updating the name
    /// groups.update_multicast_group(addr, Some("new-multicast-group-name"), None)?;
    /// // Updating the address
    /// groups.update_multicast_group(addr, None, Some(MulticastAddr::new(0xffffffff)))?;
    /// // Updating both
    /// let group = groups.update_multicast_group(
    ///     MulticastAddr::new(0xffffffff),
    ///     Some("another-name"),
    ///     Some(addr),
    /// )?;
    /// assert_eq!(group.addr, addr);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn update_multicast_group(
        &self,
        addr: impl Into<MulticastAddr>,
        new_name: Option<&str>,
        new_addr: Option<MulticastAddr>,
    ) -> Result<MulticastGroup> {
        if new_name.is_none() && new_addr.is_none() {
            return Err(InvalidInput::NothingToUpdate("new_name, new_addr").into());
        }
        if let Some(name) = new_name {
            MulticastGroup::validate_name(name)?;
        }
        let body = UpdateBody {
            addr: addr.into(),
            update: UpdateFields {
                name: new_name,
                addr: new_addr,
            },
        };
        rest::post(self.core, UPDATE, Some(&body))
    }

    /// The groups at these addresses (unknown ones are left out), or every group when
    /// `addrs` is empty.
    ///
    /// ```no_run
    /// use ran_routing::MulticastAddr;
    /// # let ran = ran_routing::Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let groups = ran.multicast_groups();
    /// // All groups
    /// let all = groups.get_multicast_groups(&[])?;
    /// // One group (still a list)
    /// let one = groups.get_multicast_groups(&[MulticastAddr::new(0xef046a1e)])?;
    /// // Some groups
    /// let some = groups.get_multicast_groups(&[
    ///     MulticastAddr::new(0xef046a1e),
    ///     MulticastAddr::new(0xffed8719),
    /// ])?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn get_multicast_groups(&self, addrs: &[MulticastAddr]) -> Result<Vec<MulticastGroup>> {
        rest::post(self.core, GET, Some(&AddrsBody { addrs }))
    }

    /// Deletes the groups at these addresses and returns how many were deleted; unknown
    /// addresses are ignored.
    ///
    /// ```no_run
    /// use ran_routing::MulticastAddr;
    /// # let ran = ran_routing::Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let deleted = ran
    ///     .multicast_groups()
    ///     .delete_multicast_groups(&[MulticastAddr::new(0xef046a1e)])?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn delete_multicast_groups(&self, addrs: &[MulticastAddr]) -> Result<u64> {
        let deleted: Deleted = rest::post(self.core, DELETE, Some(&AddrsBody { addrs }))?;
        Ok(deleted.deleted)
    }

    /// Adds a device, which must be in the routing table, to the group at `addr`.
    /// Returns the service's `is_added` (`true`); a device already in the group fails
    /// with
    /// [`ApiError::MulticastGroupAlreadyContainsDevice`](crate::ApiError::MulticastGroupAlreadyContainsDevice).
    ///
    /// ```no_run
    /// use ran_routing::{DevAddr, DevEui, MulticastAddr};
    /// # let ran = ran_routing::Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let device = ran
    ///     .routing_table()
    ///     .insert(DevEui::new(0x7abe1b8c93d7174f), DevAddr::new(0x627bb8bb))?;
    /// let group = ran
    ///     .multicast_groups()
    ///     .create_multicast_group("test-multicast-group", MulticastAddr::new(0xef046a1e))?;
    /// ran.multicast_groups()
    ///     .add_device_to_multicast_group(group.addr, device.dev_eui)?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn add_device_to_multicast_group(
        &self,
        addr: impl Into<MulticastAddr>,
        dev_eui: impl Into<DevEui>,
    ) -> Result<bool> {
        let body = DeviceBody {
            addr: addr.into(),
            dev_eui: dev_eui.into(),
        };
        let added: Added = rest::post(self.core, ADD_DEVICE, Some(&body))?;
        Ok(added.is_added)
    }

    /// Removes a device from the group at `addr`. Returns whether it was removed:
    /// `false` when the group or the device is unknown.
    ///
    /// ```no_run
    /// use ran_routing::{DevEui, MulticastAddr};
    /// # let ran = ran_routing::Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let removed = ran.multicast_groups().remove_device_from_multicast_group(
    ///     MulticastAddr::new(0xef046a1e),
    ///     DevEui::new(0x7abe1b8c93d7174f),
    /// )?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn remove_device_from_multicast_group(
        &self,
        addr: impl Into<MulticastAddr>,
        dev_eui: impl Into<DevEui>,
    ) -> Result<bool> {
        let body = DeviceBody {
            addr: addr.into(),
            dev_eui: dev_eui.into(),
        };
        let removed: Removed = rest::post(self.core, REMOVE_DEVICE, Some(&body))?;
        Ok(removed.is_removed)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn request_bodies() {
        let addr = MulticastAddr::new(0xef046a1e);
        assert_eq!(
            serde_json::to_value(CreateBody { name: "g", addr }).unwrap(),
            json!({"name": "g", "addr": "ef046a1e"})
        );
        let body = UpdateBody {
            addr,
            update: UpdateFields {
                name: None,
                addr: Some(MulticastAddr::new(1)),
            },
        };
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({"addr": "ef046a1e", "update": {"addr": "00000001"}})
        );
        assert_eq!(
            serde_json::to_value(AddrsBody { addrs: &[] }).unwrap(),
            json!({"addrs": []})
        );
        let body = DeviceBody {
            addr,
            dev_eui: DevEui::new(0xfafafafafafafafa),
        };
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({"addr": "ef046a1e", "dev_eui": "fafafafafafafafa"})
        );
    }

    #[test]
    fn local_checks_come_before_the_network() {
        let core = Core::new("token", "http://127.0.0.1:9/api/v1").unwrap();
        let groups = core.multicast_groups();
        assert!(matches!(
            groups.update_multicast_group(1u32, None, None),
            Err(crate::Error::Invalid(InvalidInput::NothingToUpdate(_)))
        ));
        let long = "x".repeat(256);
        assert!(matches!(
            groups.create_multicast_group(&long, 1u32),
            Err(crate::Error::Invalid(InvalidInput::GroupNameTooLong {
                len: 256
            }))
        ));
        assert!(matches!(
            groups.update_multicast_group(1u32, Some(&long), None),
            Err(crate::Error::Invalid(InvalidInput::GroupNameTooLong {
                len: 256
            }))
        ));
    }
}
