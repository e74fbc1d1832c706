//! The routing table: which devices' traffic the RAN routes to this LNS.

use serde::Serialize;

use super::client::Core;
use crate::error::{InvalidInput, Result};
use crate::ids::{DevAddr, DevEui, JoinEui};
use crate::model::{Device, DeviceIdentity, DeviceUpdate, NewDevice};
use crate::rest::{self, route, Route};
use crate::wire::Deleted;

const SELECT: Route = route!(Routing, "devices/select");
const INSERT: Route = route!(Routing, "devices/insert");
const UPDATE: Route = route!(Routing, "devices/update");
const DROP: Route = route!(Routing, "devices/drop");
const DROP_ALL: Route = route!(Routing, "devices/drop-all");

/// Which devices [`RoutingTable::select`] fetches: all, or those with the given
/// DevEUIs, optionally one page (`offset`, `limit`) of them.
///
/// ```
/// use ran_routing::{DevEui, Select};
///
/// let all = Select::all();
/// let page = Select::all().offset(10).limit(5);
/// let some = Select::dev_euis([DevEui::new(0x7abe1b8c93d7174f), DevEui::new(0x7bbe1b8c93d7174a)]);
/// let some_page = some.clone().offset(1).limit(1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Select {
    dev_euis: Option<Vec<DevEui>>,
    offset: Option<u64>,
    limit: Option<u64>,
}

impl Select {
    /// Every device.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only the devices with these DevEUIs (unknown ones are left out of the answer),
    /// given as anything a single DevEUI can be given as (`DevEui`, `u64`). An empty list
    /// selects nothing.
    pub fn dev_euis(dev_euis: impl IntoIterator<Item = impl Into<DevEui>>) -> Self {
        Self {
            dev_euis: Some(dev_euis.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// Skips this many devices of the selection.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Returns at most this many devices.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether the selection is an empty list of DevEUIs, which matches nothing.
    fn is_empty(&self) -> bool {
        self.dev_euis.as_ref().is_some_and(Vec::is_empty)
    }

    /// The query string: `DevEUIs` repeated, then `offset` and `limit`.
    fn query(&self) -> Vec<(&'static str, String)> {
        let euis = self.dev_euis.iter().flatten();
        euis.map(|eui| ("DevEUIs", eui.to_string()))
            .chain(self.offset.map(|o| ("offset", o.to_string())))
            .chain(self.limit.map(|l| ("limit", l.to_string())))
            .collect()
    }
}

/// The routing table of a [`Core`]: which devices' traffic the RAN routes to this LNS.
///
/// Reached through [`Core::routing_table`]: `ran.routing_table().select(Select::all())`.
/// The calls mirror the Python client's `RoutingTable` (`select`, `insert`, `update`,
/// `delete`, `delete_all`).
#[derive(Debug, Clone, Copy)]
pub struct RoutingTable<'a> {
    core: &'a Core,
}

#[derive(Serialize)]
struct InsertBody<'a> {
    #[serde(rename = "DevEUI")]
    dev_eui: DevEui,
    #[serde(rename = "JoinEUI", skip_serializing_if = "Option::is_none")]
    join_eui: Option<JoinEui>,
    #[serde(rename = "DevAddr", skip_serializing_if = "Option::is_none")]
    dev_addr: Option<DevAddr>,
    #[serde(rename = "Details", skip_serializing_if = "Option::is_none")]
    details: Option<&'a str>,
}

#[derive(Serialize)]
struct UpdateBody {
    #[serde(rename = "DevEUI")]
    dev_eui: DevEui,
    #[serde(rename = "JoinEUI")]
    join_eui: JoinEui,
    #[serde(rename = "ActiveDevAddr", skip_serializing_if = "Option::is_none")]
    active_dev_addr: Option<DevAddr>,
    #[serde(rename = "TargetDevAddr", skip_serializing_if = "Option::is_none")]
    target_dev_addr: Option<DevAddr>,
}

#[derive(Serialize)]
struct DropBody<'a> {
    #[serde(rename = "DevEUIs")]
    dev_euis: &'a [DevEui],
}

impl<'a> RoutingTable<'a> {
    pub(crate) fn new(core: &'a Core) -> Self {
        Self { core }
    }

    /// The devices a [`Select`] picks: all of them, those with given DevEUIs (unknown
    /// ones are left out), and/or one page. An empty DevEUI list returns no devices
    /// without asking the service.
    ///
    /// ```
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// use ran_routing::{DevEui, Select};
    ///
    /// let table = ran.routing_table();
    /// // select()
    /// let all = table.select(Select::all())?;
    /// // select(dev_euis=[...])
    /// let some = table.select(Select::dev_euis([
    ///     DevEui::new(0x7abe1b8c93d7174f),
    ///     DevEui::new(0x7bbe1b8c93d7174a),
    /// ]))?;
    /// // select(offset=10, limit=5)
    /// let page = table.select(Select::all().offset(10).limit(5))?;
    /// assert!(page.len() <= 5);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn select(&self, select: Select) -> Result<Vec<Device>> {
        if select.is_empty() {
            return Ok(Vec::new());
        }
        rest::get(self.core, SELECT, &select.query())
    }

    /// Subscribes a device: OTAA with its JoinEUI, or ABP with its DevAddr, optionally
    /// with details (Python: `insert(dev_eui=.., join_eui=..)` /
    /// `insert(dev_eui=.., dev_addr=.., details=..)`). The DevEUI must not be in the table
    /// yet ([`ApiError::DeviceAlreadyExists`](crate::ApiError::DeviceAlreadyExists));
    /// details that are not JSON fail with [`InvalidInput::DetailsNotJson`] before
    /// anything is sent.
    ///
    /// ```
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// use ran_routing::{DevAddr, DevEui, JoinEui, NewDevice};
    ///
    /// let otaa = ran.routing_table().insert(NewDevice::otaa(
    ///     DevEui::new(0x7abe1b8c93d7174f),
    ///     JoinEui::new(0x3cedcf624f8b68f4),
    /// ))?;
    /// assert_eq!(otaa.active_dev_addr, None);
    /// let abp = ran.routing_table().insert(
    ///     NewDevice::abp(DevEui::new(0x7bbe1b8c93d7174a), DevAddr::new(0x627bb8bb))
    ///         .with_details(r#"{"customer": "ACME Inc."}"#),
    /// )?;
    /// assert_eq!(abp.active_dev_addr, Some(DevAddr::new(0x627bb8bb)));
    /// assert_eq!(abp.details.as_deref(), Some(r#"{"customer": "ACME Inc."}"#));
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn insert(&self, device: NewDevice) -> Result<Device> {
        device.validate()?;
        let (join_eui, dev_addr) = match device.identity() {
            DeviceIdentity::Otaa { join_eui } => (Some(join_eui), None),
            DeviceIdentity::Abp { dev_addr } => (None, Some(dev_addr)),
        };
        let body = InsertBody {
            dev_eui: device.dev_eui(),
            join_eui,
            dev_addr,
            details: device.details(),
        };
        rest::post(self.core, INSERT, Some(&body))
    }

    /// Sets the addresses of an OTAA device, found by its (DevEUI, JoinEUI) pair: the
    /// active one the RAN routes by now, and/or the target one handed out in a join
    /// accept, which becomes active with the device's first uplink using it (Python:
    /// `update(dev_eui=.., join_eui=.., active_dev_addr=..)`). An update that sets
    /// neither fails with [`InvalidInput::NothingToUpdate`] before anything is sent. ABP
    /// devices cannot be updated
    /// ([`ApiError::DeviceNotFound`](crate::ApiError::DeviceNotFound)).
    ///
    /// ```
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// use ran_routing::{DevAddr, DevEui, DeviceUpdate, JoinEui, NewDevice};
    ///
    /// let (dev_eui, join_eui) = (DevEui::new(0x7abe1b8c93d7174f), JoinEui::new(0x3cedcf624f8b68f4));
    /// # ran.routing_table().insert(NewDevice::otaa(dev_eui, join_eui))?;
    /// let device = ran.routing_table().update(
    ///     DeviceUpdate::new(dev_eui, join_eui).with_active_dev_addr(DevAddr::new(0x627bb8bc)),
    /// )?;
    /// assert_eq!(device.active_dev_addr, Some(DevAddr::new(0x627bb8bc)));
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn update(&self, update: DeviceUpdate) -> Result<Device> {
        if update.active_dev_addr().is_none() && update.target_dev_addr().is_none() {
            return Err(InvalidInput::NothingToUpdate("active_dev_addr, target_dev_addr").into());
        }
        let body = UpdateBody {
            dev_eui: update.dev_eui(),
            join_eui: update.join_eui(),
            active_dev_addr: update.active_dev_addr(),
            target_dev_addr: update.target_dev_addr(),
        };
        rest::post(self.core, UPDATE, Some(&body))
    }

    /// Unsubscribes these devices and returns how many were deleted; unknown DevEUIs
    /// are ignored (Python: `delete(dev_euis=[...])`). The DevEUIs are given as anything a
    /// single DevEUI can be given as: `delete([0x7abe1b8c93d7174f_u64])` works too.
    ///
    /// ```
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// use ran_routing::DevEui;
    ///
    /// # ran.routing_table().insert(ran_routing::NewDevice::otaa(DevEui::new(0x7abe1b8c93d7174f), ran_routing::JoinEui::new(1)))?;
    /// let deleted = ran
    ///     .routing_table()
    ///     .delete([DevEui::new(0x7abe1b8c93d7174f), DevEui::new(0x7bbe1b8c93d7174a)])?;
    /// println!("{deleted} devices unsubscribed");
    /// # assert_eq!(deleted, 1);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn delete(&self, dev_euis: impl IntoIterator<Item = impl Into<DevEui>>) -> Result<u64> {
        let dev_euis: Vec<DevEui> = dev_euis.into_iter().map(Into::into).collect();
        let body = DropBody {
            dev_euis: &dev_euis,
        };
        let deleted: Deleted = rest::post(self.core, DROP, Some(&body))?;
        Ok(deleted.deleted)
    }

    /// Unsubscribes every device and returns how many were deleted (Python:
    /// `delete_all()`).
    ///
    /// ```
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// use ran_routing::Select;
    ///
    /// # ran.routing_table().insert(ran_routing::NewDevice::otaa(ran_routing::DevEui::new(1), ran_routing::JoinEui::new(1)))?;
    /// let deleted = ran.routing_table().delete_all()?;
    /// # assert_eq!(deleted, 1);
    /// assert!(ran.routing_table().select(Select::all())?.is_empty());
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn delete_all(&self) -> Result<u64> {
        let deleted: Deleted = rest::post::<(), _>(self.core, DROP_ALL, None)?;
        Ok(deleted.deleted)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn select_queries() {
        let a = DevEui::new(0x7abe1b8c93d7174f);
        let b = DevEui::new(0x7bbe1b8c93d7174a);
        assert!(Select::all().query().is_empty());
        assert_eq!(
            Select::all().offset(10).limit(5).query(),
            [("offset", "10".to_owned()), ("limit", "5".to_owned())]
        );
        assert_eq!(
            Select::dev_euis([a, b]).offset(1).limit(1).query(),
            [
                ("DevEUIs", "7abe1b8c93d7174f".to_owned()),
                ("DevEUIs", "7bbe1b8c93d7174a".to_owned()),
                ("offset", "1".to_owned()),
                ("limit", "1".to_owned()),
            ]
        );
        assert!(Select::dev_euis(Vec::<DevEui>::new()).is_empty());
        assert!(!Select::all().is_empty());
    }

    #[test]
    fn request_bodies() {
        let body = InsertBody {
            dev_eui: DevEui::new(0x7abe1b8c93d7174f),
            join_eui: Some(JoinEui::new(0x3cedcf624f8b68f4)),
            dev_addr: None,
            details: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4"})
        );
        let body = InsertBody {
            dev_eui: DevEui::new(1),
            join_eui: None,
            dev_addr: Some(DevAddr::new(0x627bb8bb)),
            details: Some("{}"),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"DevEUI": "0000000000000001", "DevAddr": "627bb8bb", "Details": "{}"})
        );
        let body = UpdateBody {
            dev_eui: DevEui::new(1),
            join_eui: JoinEui::new(2),
            active_dev_addr: None,
            target_dev_addr: Some(DevAddr::new(3)),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"DevEUI": "0000000000000001", "JoinEUI": "0000000000000002",
                   "TargetDevAddr": "00000003"})
        );
        let euis = [DevEui::new(u64::MAX)];
        assert_eq!(
            serde_json::to_value(DropBody { dev_euis: &euis }).unwrap(),
            json!({"DevEUIs": ["ffffffffffffffff"]})
        );
    }

    #[test]
    fn local_checks_come_before_the_network() {
        // Port 9 (discard) on loopback: nothing should ever be sent there.
        let core = Core::new("token", "http://127.0.0.1:9/api/v1").unwrap();
        let table = core.routing_table();
        let err = table.update(DeviceUpdate::new(1u64, 2u64)).unwrap_err();
        assert!(matches!(
            err,
            crate::Error::Invalid(InvalidInput::NothingToUpdate(_))
        ));
        let err = table
            .insert(NewDevice::otaa(1u64, 2u64).with_details("{not json"))
            .unwrap_err();
        assert!(matches!(
            err,
            crate::Error::Invalid(InvalidInput::DetailsNotJson(_))
        ));
        assert_eq!(
            table
                .select(Select::dev_euis(Vec::<DevEui>::new()))
                .unwrap(),
            []
        );
    }
}
