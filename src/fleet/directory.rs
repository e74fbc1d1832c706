//! Which device or group a downlink is for: the routing table and multicast groups as
//! an index by address, kept in step by the fleet and the join flow.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{DesiredIdentity, DevicePlan, GroupPlan, Report, Target};
use crate::error::Result;
use crate::ids::{DevAddr, DevEui, MulticastAddr};
use crate::model::{Device, MulticastGroup};
use crate::Core;
use crate::Select;

/// Rows read per routing-table page by [`Directory::load`].
const PAGE: u64 = 1000;

/// Who a downlink to an address is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Recipient {
    /// The devices whose active or target DevAddr it is: usually one; several ABP
    /// devices may share an address (the LNS knows which one it answers).
    Devices(Vec<DevEui>),
    /// A multicast group, with its members: send a `MulticastDownstream` to it.
    Group {
        /// The group's address.
        addr: MulticastAddr,
        /// Its devices.
        members: Vec<DevEui>,
    },
    /// No device or group has this address.
    Unknown,
}

/// A device's two addresses, as the routing table has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Addresses {
    /// The address the RAN routes the device's uplinks by.
    pub active: Option<DevAddr>,
    /// The address a join accept gave it, until its first uplink from it.
    pub target: Option<DevAddr>,
}

#[derive(Debug, Default)]
struct State {
    devices: HashMap<DevEui, Addresses>,
    /// Every device whose active or target address is the key.
    by_addr: HashMap<DevAddr, Vec<DevEui>>,
    groups: HashMap<MulticastAddr, Vec<DevEui>>,
}

impl State {
    fn unindex(&mut self, dev_eui: DevEui, addr: Option<DevAddr>) {
        let Some(addr) = addr else { return };
        if let Some(devices) = self.by_addr.get_mut(&addr) {
            devices.retain(|d| *d != dev_eui);
            if devices.is_empty() {
                self.by_addr.remove(&addr);
            }
        }
    }

    fn index(&mut self, dev_eui: DevEui, addr: Option<DevAddr>) {
        let Some(addr) = addr else { return };
        let devices = self.by_addr.entry(addr).or_default();
        if !devices.contains(&dev_eui) {
            devices.push(dev_eui);
        }
    }

    fn set(&mut self, dev_eui: DevEui, addresses: Addresses) {
        let old = self.devices.insert(dev_eui, addresses).unwrap_or_default();
        self.unindex(dev_eui, old.active);
        self.unindex(dev_eui, old.target);
        self.index(dev_eui, addresses.active);
        self.index(dev_eui, addresses.target);
    }

    fn remove(&mut self, dev_eui: DevEui) {
        if let Some(old) = self.devices.remove(&dev_eui) {
            self.unindex(dev_eui, old.active);
            self.unindex(dev_eui, old.target);
        }
        // The RAN takes a deleted device out of its groups.
        for members in self.groups.values_mut() {
            members.retain(|d| *d != dev_eui);
        }
    }
}

/// The routing table and multicast groups indexed by address, for a bridge that must
/// turn the DevAddr of a downlink its LNS produced into the DevEUI (or multicast group)
/// the RAN wants.
///
/// A look-up is one hash-map probe whatever the fleet's size. Every method takes
/// `&self` (a reader-writer lock inside), so the upstream and downstream workers share
/// one directory. Keep it in step with what changes the table:
///
/// - at start-up, [`load`](Self::load) reads the table and the groups;
/// - after [`Fleet::apply`](super::Fleet::apply) / [`apply_groups`](super::Fleet::apply_groups),
///   [`follow`](Self::follow) / [`follow_groups`](Self::follow_groups) the plan (the
///   changes the report lists as failed are left as they were);
/// - in the join flow, [`set_target`](Self::set_target) with the address the join accept
///   gives (beside `update` with TargetDevAddr), and [`uplink_from`](Self::uplink_from)
///   for each solved data uplink: the first one from the target address makes it the
///   active one, as the RAN does;
/// - any other write: [`set_device`](Self::set_device) with the row the API answered,
///   [`remove_device`](Self::remove_device), [`set_group`](Self::set_group),
///   [`remove_group`](Self::remove_group).
///
/// ```
/// use ran_routing::fleet::{Directory, Recipient};
/// use ran_routing::{DevAddr, DevEui, MulticastAddr, MulticastGroup};
///
/// let directory = Directory::new();
/// let (dev_eui, addr) = (DevEui::new(0x0004a30b001c0530), DevAddr::new(0x26011bda));
/// // A join accept gave the device `addr`; the RAN routes by it once the device uses it.
/// directory.set_target(dev_eui, addr);
/// assert_eq!(directory.recipient(addr), Recipient::Devices(vec![dev_eui]));
/// directory.uplink_from(dev_eui, addr);
/// assert_eq!(directory.addresses(dev_eui).unwrap().active, Some(addr));
///
/// // The LNS's data downlink names the DevAddr; the bridge needs the DevEUI.
/// let ack = [0x60, 0xda, 0x1b, 0x01, 0x26, 0x20, 0, 0, 1, 2, 3, 4];
/// assert_eq!(directory.recipient_of(&ack), Some(Recipient::Devices(vec![dev_eui])));
/// assert_eq!(directory.recipient(DevAddr::new(7)), Recipient::Unknown);
/// ```
#[derive(Debug, Default)]
pub struct Directory {
    state: RwLock<State>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the whole routing table (a page of 1000 rows at a time) and every multicast
    /// group.
    ///
    /// # Errors
    ///
    /// The first REST error: nothing is returned half-read, so retry the whole load.
    pub fn load(core: &Core) -> Result<Self> {
        let directory = Self::new();
        let table = core.routing_table();
        let mut offset = 0;
        loop {
            let page = table.select(Select::all().offset(offset).limit(PAGE))?;
            for device in &page {
                directory.set_device(device);
            }
            if (page.len() as u64) < PAGE {
                break;
            }
            offset += PAGE;
        }
        for group in core.multicast_groups().get([])? {
            directory.set_group(&group);
        }
        Ok(directory)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Who a downlink to `addr` is for: a multicast group at that address, else the
    /// devices with it as their active or target address.
    pub fn recipient(&self, addr: DevAddr) -> Recipient {
        let state = self.read();
        if let Some(members) = state.groups.get(&MulticastAddr::new(addr.get())) {
            return Recipient::Group {
                addr: MulticastAddr::new(addr.get()),
                members: members.clone(),
            };
        }
        match state.by_addr.get(&addr) {
            Some(devices) => Recipient::Devices(devices.clone()),
            None => Recipient::Unknown,
        }
    }

    /// Who the LoRaWAN data downlink `phy_payload` is for, by the DevAddr in its FHDR;
    /// `None` for a frame that is not a data downlink (a join accept is encrypted: it
    /// goes to the DevEUI of the join request it answers).
    pub fn recipient_of(&self, phy_payload: &[u8]) -> Option<Recipient> {
        let mhdr = *phy_payload.first()?;
        // MType 011 (unconfirmed data down) or 101 (confirmed), MHDR | DevAddr | ...
        if !matches!(mhdr >> 5, 0b011 | 0b101) || phy_payload.len() < 5 {
            return None;
        }
        let addr = u32::from_le_bytes([
            phy_payload[1],
            phy_payload[2],
            phy_payload[3],
            phy_payload[4],
        ]);
        Some(self.recipient(DevAddr::new(addr)))
    }

    /// The device's addresses, if the directory has it.
    pub fn addresses(&self, dev_eui: DevEui) -> Option<Addresses> {
        self.read().devices.get(&dev_eui).copied()
    }

    /// How many devices the directory has.
    pub fn len(&self) -> usize {
        self.read().devices.len()
    }

    /// Whether the directory has no device.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a routing-table row as it is (what `select`, `insert` and `update` answer).
    pub fn set_device(&self, device: &Device) {
        self.write().set(
            device.dev_eui,
            Addresses {
                active: device.active_dev_addr,
                target: device.target_dev_addr,
            },
        );
    }

    /// The join flow gave the device a new address (`update` with TargetDevAddr): it is
    /// the device's target address until its first uplink from it.
    pub fn set_target(&self, dev_eui: DevEui, target: DevAddr) {
        let mut state = self.write();
        let current = state.devices.get(&dev_eui).copied().unwrap_or_default();
        state.set(
            dev_eui,
            Addresses {
                target: Some(target),
                ..current
            },
        );
    }

    /// The device sent an uplink from `dev_addr` (a solved data uplink): from its target
    /// address, that address becomes the active one and the old one is forgotten, as the
    /// RAN switches contexts. Any other address changes nothing.
    pub fn uplink_from(&self, dev_eui: DevEui, dev_addr: DevAddr) {
        let mut state = self.write();
        let Some(current) = state.devices.get(&dev_eui).copied() else {
            return;
        };
        if current.target == Some(dev_addr) {
            state.set(
                dev_eui,
                Addresses {
                    active: Some(dev_addr),
                    target: None,
                },
            );
        }
    }

    /// The device left the routing table (and with it, its groups).
    pub fn remove_device(&self, dev_eui: DevEui) {
        self.write().remove(dev_eui);
    }

    /// Takes a multicast group as it is (what `get` answers), its members included.
    pub fn set_group(&self, group: &MulticastGroup) {
        self.write()
            .groups
            .insert(group.addr, group.devices.clone());
    }

    /// The group was deleted.
    pub fn remove_group(&self, addr: MulticastAddr) {
        self.write().groups.remove(&addr);
    }

    /// Carries out a device plan that [`Fleet::apply`](super::Fleet::apply) carried out,
    /// except the devices `report` lists as failed (reload those, or everything, to know
    /// where they stand).
    pub fn follow(&self, plan: &DevicePlan, report: &Report) {
        let failed = |dev_eui: DevEui| {
            report
                .failures()
                .iter()
                .any(|f| f.target == Target::Device(dev_eui))
        };
        let mut state = self.write();
        // A re-created device was deleted first: out of its groups too.
        let deleted = plan
            .deletions()
            .iter()
            .chain(plan.recreations().iter().map(|r| &r.current));
        for device in deleted {
            if !failed(device.dev_eui) {
                state.remove(device.dev_eui);
            }
        }
        let desired = plan
            .inserts()
            .iter()
            .chain(plan.recreations().iter().map(|r| &r.desired));
        for device in desired {
            if failed(device.dev_eui) {
                continue;
            }
            let active = match device.identity {
                DesiredIdentity::Otaa {
                    active_dev_addr, ..
                } => active_dev_addr,
                DesiredIdentity::Abp { dev_addr } => Some(dev_addr),
            };
            // A new row has no target address.
            state.set(
                device.dev_eui,
                Addresses {
                    active,
                    target: None,
                },
            );
        }
        for update in plan.updates() {
            if !failed(update.dev_eui) {
                let current = state
                    .devices
                    .get(&update.dev_eui)
                    .copied()
                    .unwrap_or_default();
                state.set(
                    update.dev_eui,
                    Addresses {
                        active: Some(update.to),
                        ..current
                    },
                );
            }
        }
    }

    /// Carries out a group plan that [`Fleet::apply_groups`](super::Fleet::apply_groups)
    /// carried out, except the groups and memberships `report` lists as failed.
    pub fn follow_groups(&self, plan: &GroupPlan, report: &Report) {
        let failed = |target: Target| report.failures().iter().any(|f| f.target == target);
        let mut state = self.write();
        for group in plan.deletions() {
            if !failed(Target::Group(group.addr)) {
                state.groups.remove(&group.addr);
            }
        }
        for group in plan.creates() {
            if !failed(Target::Group(group.addr)) {
                state.groups.insert(group.addr, Vec::new());
            }
        }
        let memberships = |m: &super::Member| Target::Member {
            group: m.group,
            dev_eui: m.dev_eui,
        };
        for member in plan.removes() {
            if !failed(memberships(member)) {
                if let Some(members) = state.groups.get_mut(&member.group) {
                    members.retain(|d| *d != member.dev_eui);
                }
            }
        }
        for member in plan.adds() {
            if !failed(memberships(member)) {
                if let Some(members) = state.groups.get_mut(&member.group) {
                    if !members.contains(&member.dev_eui) {
                        members.push(member.dev_eui);
                    }
                }
            }
        }
    }
}
