//! Multicast groups: addresses many devices listen on, for multicast downlinks.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::client::Core;
use crate::error::{InvalidInput, Result};
use crate::ids::{DevEui, MulticastAddr};
use crate::model::{MulticastGroup, MulticastGroupUpdate};
use crate::rest::{self, route, Route};
use crate::wire::Deleted;

const CREATE: Route = route!(Multicast, "multicast-groups/create");
const UPDATE: Route = route!(Multicast, "multicast-groups/update");
const GET: Route = route!(Multicast, "multicast-groups/get");
const DELETE: Route = route!(Multicast, "multicast-groups/delete");
const ADD_DEVICE: Route = route!(Multicast, "multicast-groups/add-device");
const REMOVE_DEVICE: Route = route!(Multicast, "multicast-groups/remove-device");

/// The multicast groups of a [`Core`]: addresses many devices listen on, for multicast
/// downlinks.
///
/// Reached through [`Core::multicast_groups`]: `ran.multicast_groups().get([])`. The calls
/// are named like the routing table's (`create`, `get`, `update`, `delete`,
/// `add_device`, `remove_device`); each carries the Python client's name
/// (`create_multicast_group`, `get_multicast_groups`, ...) as a search alias.
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
    /// characters, checked before sending) and address (Python:
    /// `create_multicast_group`).
    ///
    /// ```
    /// use ran_routing::MulticastAddr;
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// let group = ran
    ///     .multicast_groups()
    ///     .create("test-multicast-group", MulticastAddr::new(0xef046a1e))?;
    /// assert!(group.devices.is_empty());
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    #[doc(alias = "create_multicast_group")]
    pub fn create(&self, name: &str, addr: impl Into<MulticastAddr>) -> Result<MulticastGroup> {
        MulticastGroup::validate_name(name)?;
        let body = CreateBody {
            name,
            addr: addr.into(),
        };
        rest::post(self.core, CREATE, Some(&body))
    }

    /// Renames a group and/or moves it to a new address (Python:
    /// `update_multicast_group`). An update that sets neither fails with
    /// [`InvalidInput::NothingToUpdate`] before anything is sent.
    ///
    /// ```
    /// use ran_routing::{MulticastAddr, MulticastGroupUpdate};
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// let groups = ran.multicast_groups();
    /// let addr = MulticastAddr::new(0xef046a1e);
    /// # groups.create("test-multicast-group", addr)?;
    /// // Updating the name
    /// groups.update(MulticastGroupUpdate::new(addr).with_name("new-multicast-group-name"))?;
    /// // Updating the address
    /// groups.update(MulticastGroupUpdate::new(addr).with_addr(MulticastAddr::new(0xffffffff)))?;
    /// // Updating both
    /// let group = groups.update(
    ///     MulticastGroupUpdate::new(MulticastAddr::new(0xffffffff))
    ///         .with_name("another-name")
    ///         .with_addr(addr),
    /// )?;
    /// assert_eq!(group.addr, addr);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    #[doc(alias = "update_multicast_group")]
    pub fn update(&self, update: MulticastGroupUpdate) -> Result<MulticastGroup> {
        if update.new_name().is_none() && update.new_addr().is_none() {
            return Err(InvalidInput::NothingToUpdate("new_name, new_addr").into());
        }
        if let Some(name) = update.new_name() {
            MulticastGroup::validate_name(name)?;
        }
        let body = UpdateBody {
            addr: update.addr(),
            update: UpdateFields {
                name: update.new_name(),
                addr: update.new_addr(),
            },
        };
        rest::post(self.core, UPDATE, Some(&body))
    }

    /// The groups at these addresses (unknown ones are left out), or every group when
    /// `addrs` is empty (Python: `get_multicast_groups`). Unlike the other lists of ids,
    /// this one takes [`MulticastAddr`] items only, so that `get([])`, the call for every
    /// group, needs no type named.
    ///
    /// ```
    /// use ran_routing::MulticastAddr;
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// let groups = ran.multicast_groups();
    /// # groups.create("test-multicast-group", MulticastAddr::new(0xef046a1e))?;
    /// // All groups
    /// let all = groups.get([])?;
    /// // One group (still a list)
    /// let one = groups.get([MulticastAddr::new(0xef046a1e)])?;
    /// // Some groups
    /// let some = groups.get([MulticastAddr::new(0xef046a1e), MulticastAddr::new(0xffed8719)])?;
    /// # assert_eq!((all.len(), one.len(), some.len()), (1, 1, 1));
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    #[doc(alias = "get_multicast_groups")]
    pub fn get(
        &self,
        addrs: impl IntoIterator<Item = MulticastAddr>,
    ) -> Result<Vec<MulticastGroup>> {
        let addrs: Vec<MulticastAddr> = addrs.into_iter().collect();
        rest::post(self.core, GET, Some(&AddrsBody { addrs: &addrs }))
    }

    /// Deletes the groups at these addresses and returns how many were deleted; unknown
    /// addresses are ignored (Python: `delete_multicast_groups`).
    ///
    /// ```
    /// use ran_routing::MulticastAddr;
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// # ran.multicast_groups().create("test-multicast-group", MulticastAddr::new(0xef046a1e))?;
    /// let deleted = ran.multicast_groups().delete([MulticastAddr::new(0xef046a1e)])?;
    /// # assert_eq!(deleted, 1);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    #[doc(alias = "delete_multicast_groups")]
    pub fn delete(&self, addrs: impl IntoIterator<Item = impl Into<MulticastAddr>>) -> Result<u64> {
        let addrs: Vec<MulticastAddr> = addrs.into_iter().map(Into::into).collect();
        let deleted: Deleted = rest::post(self.core, DELETE, Some(&AddrsBody { addrs: &addrs }))?;
        Ok(deleted.deleted)
    }

    /// Adds a device, which must be in the routing table, to the group at `addr` (Python:
    /// `add_device_to_multicast_group`). Returns the service's `is_added` (`true`); a
    /// device already in the group fails with
    /// [`ApiError::MulticastGroupAlreadyContainsDevice`](crate::ApiError::MulticastGroupAlreadyContainsDevice).
    ///
    /// ```
    /// use ran_routing::{DevAddr, DevEui, MulticastAddr, NewDevice};
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// let device = ran
    ///     .routing_table()
    ///     .insert(NewDevice::abp(DevEui::new(0x7abe1b8c93d7174f), DevAddr::new(0x627bb8bb)))?;
    /// let group = ran
    ///     .multicast_groups()
    ///     .create("test-multicast-group", MulticastAddr::new(0xef046a1e))?;
    /// assert!(ran.multicast_groups().add_device(group.addr, device.dev_eui)?);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    #[doc(alias = "add_device_to_multicast_group")]
    pub fn add_device(
        &self,
        addr: impl Into<MulticastAddr>,
        dev_eui: impl Into<DevEui>,
    ) -> Result<bool> {
        let added: Added = self.membership(ADD_DEVICE, addr.into(), dev_eui.into())?;
        Ok(added.is_added)
    }

    /// Removes a device from the group at `addr` (Python:
    /// `remove_device_from_multicast_group`). Returns whether it was removed: `false`
    /// when the group or the device is unknown.
    ///
    /// ```
    /// use ran_routing::{DevEui, MulticastAddr};
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// # use ran_routing::{DevAddr, NewDevice};
    /// # ran.routing_table().insert(NewDevice::abp(DevEui::new(0x7abe1b8c93d7174f), DevAddr::new(0x627bb8bb)))?;
    /// # ran.multicast_groups().create("test-multicast-group", MulticastAddr::new(0xef046a1e))?;
    /// # ran.multicast_groups().add_device(MulticastAddr::new(0xef046a1e), DevEui::new(0x7abe1b8c93d7174f))?;
    /// let removed = ran
    ///     .multicast_groups()
    ///     .remove_device(MulticastAddr::new(0xef046a1e), DevEui::new(0x7abe1b8c93d7174f))?;
    /// assert!(removed);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    #[doc(alias = "remove_device_from_multicast_group")]
    pub fn remove_device(
        &self,
        addr: impl Into<MulticastAddr>,
        dev_eui: impl Into<DevEui>,
    ) -> Result<bool> {
        let removed: Removed = self.membership(REMOVE_DEVICE, addr.into(), dev_eui.into())?;
        Ok(removed.is_removed)
    }

    /// Adds a device to a group or removes it (`route` says which): one body, two answers.
    fn membership<T: DeserializeOwned>(
        &self,
        route: Route,
        addr: MulticastAddr,
        dev_eui: DevEui,
    ) -> Result<T> {
        rest::post(self.core, route, Some(&DeviceBody { addr, dev_eui }))
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
            groups.update(MulticastGroupUpdate::new(1u32)),
            Err(crate::Error::Invalid(InvalidInput::NothingToUpdate(_)))
        ));
        let long = "x".repeat(256);
        assert!(matches!(
            groups.create(&long, 1u32),
            Err(crate::Error::Invalid(InvalidInput::GroupNameTooLong {
                len: 256
            }))
        ));
        assert!(matches!(
            groups.update(MulticastGroupUpdate::new(1u32).with_name(long)),
            Err(crate::Error::Invalid(InvalidInput::GroupNameTooLong {
                len: 256
            }))
        ));
    }
}
