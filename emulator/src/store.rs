//! The emulated account: routing table and multicast groups, with the live service's rules.
//!
//! Requests reach this module already decoded and shape-checked (see `rest`); what is left
//! here are the rules that depend on the stored state, each answered with the service's
//! error code.

use std::collections::{BTreeMap, HashMap};

use time::{OffsetDateTime, PrimitiveDateTime};

use ran_routing::{
    DevAddr, DevEui, Device, DeviceIdentity, JoinEui, MulticastAddr, MulticastGroup,
};

/// A failed rule: the error code and its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) description: String,
}

impl Refusal {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

/// Rows keep their insertion order, as the service lists them in the order they were
/// created.
#[derive(Debug)]
struct Ordered<K, V> {
    next: u64,
    index: HashMap<K, u64>,
    rows: BTreeMap<u64, V>,
}

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Self {
            next: 0,
            index: HashMap::new(),
            rows: BTreeMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V> Ordered<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        self.index.get(key).and_then(|seq| self.rows.get(seq))
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let seq = self.index.get(key)?;
        self.rows.get_mut(seq)
    }

    fn insert(&mut self, key: K, value: V) {
        self.next += 1;
        self.index.insert(key, self.next);
        self.rows.insert(self.next, value);
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let seq = self.index.remove(key)?;
        self.rows.remove(&seq)
    }

    /// Moves a row to a new key, keeping its position.
    fn rekey(&mut self, old: &K, new: K) {
        if let Some(seq) = self.index.remove(old) {
            self.index.insert(new, seq);
        }
    }

    fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.rows.values()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.rows.values_mut()
    }

    fn clear(&mut self) -> usize {
        let n = self.rows.len();
        self.index.clear();
        self.rows.clear();
        n
    }
}

/// What `devices/update` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeviceUpdate {
    pub(crate) active_dev_addr: Option<DevAddr>,
    pub(crate) target_dev_addr: Option<DevAddr>,
}

/// What `multicast-groups/update` changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupUpdate {
    pub(crate) name: Option<String>,
    pub(crate) addr: Option<MulticastAddr>,
}

/// One account's state.
#[derive(Debug, Default)]
pub(crate) struct Store {
    devices: Ordered<DevEui, Device>,
    groups: Ordered<MulticastAddr, MulticastGroup>,
    device_limit: Option<usize>,
}

/// The current time as the service stamps rows: naive UTC, microsecond precision (so a
/// row read back through the API equals the stored one).
pub(crate) fn now() -> PrimitiveDateTime {
    let now = OffsetDateTime::now_utc();
    let micros = now.microsecond();
    let now = now.replace_microsecond(micros).unwrap_or(now);
    PrimitiveDateTime::new(now.date(), now.time())
}

impl Store {
    pub(crate) fn new(device_limit: Option<usize>) -> Self {
        Self {
            device_limit,
            ..Self::default()
        }
    }

    // --- routing table -----------------------------------------------------------------

    /// `devices/select`: the devices in table order, optionally only those in `filter`,
    /// then paginated.
    pub(crate) fn select(
        &self,
        filter: Option<&[DevEui]>,
        offset: usize,
        limit: Option<usize>,
    ) -> Vec<Device> {
        self.devices
            .values()
            .filter(|d| filter.is_none_or(|f| f.contains(&d.dev_eui)))
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// The devices `select` would answer, borrowed: for writing a large answer without
    /// copying the table first.
    pub(crate) fn select_iter<'a>(
        &'a self,
        filter: Option<&'a [DevEui]>,
        offset: usize,
        limit: Option<usize>,
    ) -> impl Iterator<Item = &'a Device> + 'a {
        self.devices
            .values()
            .filter(move |d| filter.is_none_or(|f| f.contains(&d.dev_eui)))
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
    }

    /// `devices/insert`.
    pub(crate) fn insert(
        &mut self,
        dev_eui: DevEui,
        identity: DeviceIdentity,
        details: Option<String>,
    ) -> Result<Device, Refusal> {
        if self.devices.contains(&dev_eui) {
            return Err(Refusal::new(
                "Device.AlreadyExists",
                format!("device with DevEUI {dev_eui} already exists"),
            ));
        }
        if let Some(limit) = self.device_limit {
            if self.devices.len() >= limit {
                return Err(Refusal::new(
                    "Device.LimitExhausted",
                    format!("devices limit ({limit}) exhausted"),
                ));
            }
        }
        let (join_eui, active_dev_addr) = match identity {
            DeviceIdentity::Otaa { join_eui } => (Some(join_eui), None),
            DeviceIdentity::Abp { dev_addr } => (None, Some(dev_addr)),
        };
        let device = Device::new(dev_eui, now())
            .with_join_eui(join_eui)
            .with_active_dev_addr(active_dev_addr)
            .with_details(details);
        self.devices.insert(dev_eui, device.clone());
        Ok(device)
    }

    /// `devices/update`: the device is found by the pair (DevEUI, JoinEUI), so ABP devices
    /// (no JoinEUI) are never found.
    pub(crate) fn update(
        &mut self,
        dev_eui: DevEui,
        join_eui: JoinEui,
        update: DeviceUpdate,
    ) -> Result<Device, Refusal> {
        let device = self
            .devices
            .get_mut(&dev_eui)
            .filter(|d| d.join_eui == Some(join_eui))
            .ok_or_else(|| {
                Refusal::new(
                    "Device.NotFound",
                    format!("device with DevEUI {dev_eui} and JoinEUI {join_eui} not found"),
                )
            })?;
        if let Some(addr) = update.active_dev_addr {
            device.active_dev_addr = Some(addr);
        }
        if let Some(addr) = update.target_dev_addr {
            device.target_dev_addr = Some(addr);
        }
        Ok(device.clone())
    }

    /// `devices/drop`: unknown EUIs are ignored. Dropped devices leave their groups too.
    pub(crate) fn drop_devices(&mut self, dev_euis: &[DevEui]) -> u64 {
        let mut deleted = 0;
        for dev_eui in dev_euis {
            if self.devices.remove(dev_eui).is_some() {
                deleted += 1;
                for group in self.groups.values_mut() {
                    group.devices.retain(|d| d != dev_eui);
                }
            }
        }
        deleted
    }

    /// `devices/drop-all`.
    pub(crate) fn drop_all(&mut self) -> u64 {
        for group in self.groups.values_mut() {
            group.devices.clear();
        }
        self.devices.clear() as u64
    }

    pub(crate) fn device(&self, dev_eui: DevEui) -> Option<&Device> {
        self.devices.get(&dev_eui)
    }

    /// The devices a data uplink from `dev_addr` is routed to: every row with it as
    /// active or target address (the second security context of a join in progress).
    pub(crate) fn by_dev_addr(&self, dev_addr: DevAddr) -> Vec<DevEui> {
        self.devices
            .values()
            .filter(|d| d.active_dev_addr == Some(dev_addr) || d.target_dev_addr == Some(dev_addr))
            .map(|d| d.dev_eui)
            .collect()
    }

    /// A Downstream's `TargetDevAddr` (a join accept's) becomes the row's target address.
    pub(crate) fn set_target(&mut self, dev_eui: DevEui, dev_addr: DevAddr) -> bool {
        match self.devices.get_mut(&dev_eui) {
            Some(device) => {
                device.target_dev_addr = Some(dev_addr);
                true
            }
            None => false,
        }
    }

    /// The device sent an uplink from `dev_addr`: if that is its row's target address,
    /// the security context switches (the target becomes active, the target is
    /// cleared). Returns whether it switched.
    pub(crate) fn switch_context(&mut self, dev_eui: DevEui, dev_addr: DevAddr) -> bool {
        match self.devices.get_mut(&dev_eui) {
            Some(device) if device.target_dev_addr == Some(dev_addr) => {
                device.active_dev_addr = Some(dev_addr);
                device.target_dev_addr = None;
                true
            }
            _ => false,
        }
    }

    // --- multicast groups --------------------------------------------------------------

    pub(crate) fn create_group(
        &mut self,
        name: String,
        addr: MulticastAddr,
    ) -> Result<MulticastGroup, Refusal> {
        if self.groups.contains(&addr) {
            return Err(group_exists(addr));
        }
        let group = MulticastGroup::new(addr, name, now(), Vec::new());
        self.groups.insert(addr, group.clone());
        Ok(group)
    }

    pub(crate) fn update_group(
        &mut self,
        addr: MulticastAddr,
        update: GroupUpdate,
    ) -> Result<MulticastGroup, Refusal> {
        if !self.groups.contains(&addr) {
            return Err(group_not_found(addr));
        }
        if let Some(new_addr) = update.addr {
            if new_addr != addr && self.groups.contains(&new_addr) {
                return Err(group_exists(new_addr));
            }
        }
        let group = self
            .groups
            .get_mut(&addr)
            .ok_or_else(|| group_not_found(addr))?;
        if let Some(name) = update.name {
            group.name = name;
        }
        if let Some(new_addr) = update.addr {
            group.addr = new_addr;
        }
        let group = group.clone();
        if group.addr != addr {
            self.groups.rekey(&addr, group.addr);
        }
        Ok(group)
    }

    /// `multicast-groups/get`: the listed groups (unknown ones skipped), or all of them.
    /// Every multicast group, in creation order, without copying them.
    pub(crate) fn group_iter(&self) -> impl Iterator<Item = &MulticastGroup> + '_ {
        self.groups.values()
    }

    pub(crate) fn groups(&self, addrs: &[MulticastAddr]) -> Vec<MulticastGroup> {
        self.groups
            .values()
            .filter(|g| addrs.is_empty() || addrs.contains(&g.addr))
            .cloned()
            .collect()
    }

    pub(crate) fn group(&self, addr: MulticastAddr) -> Option<&MulticastGroup> {
        self.groups.get(&addr)
    }

    pub(crate) fn delete_groups(&mut self, addrs: &[MulticastAddr]) -> u64 {
        addrs
            .iter()
            .filter(|addr| self.groups.remove(addr).is_some())
            .count() as u64
    }

    pub(crate) fn add_device(
        &mut self,
        addr: MulticastAddr,
        dev_eui: DevEui,
    ) -> Result<(), Refusal> {
        if !self.groups.contains(&addr) {
            return Err(group_not_found(addr));
        }
        if !self.devices.contains(&dev_eui) {
            return Err(Refusal::new(
                "Device.NotFound",
                format!("device with DevEUI {dev_eui} is not in the routing table"),
            ));
        }
        let group = self
            .groups
            .get_mut(&addr)
            .ok_or_else(|| group_not_found(addr))?;
        if group.devices.contains(&dev_eui) {
            return Err(Refusal::new(
                "MulticastGroup.AlreadyContainsTheDevice",
                format!("multicast group {addr} already contains device {dev_eui}"),
            ));
        }
        group.devices.push(dev_eui);
        Ok(())
    }

    /// `multicast-groups/remove-device`: `false` when the group or the device is unknown.
    pub(crate) fn remove_device(&mut self, addr: MulticastAddr, dev_eui: DevEui) -> bool {
        let Some(group) = self.groups.get_mut(&addr) else {
            return false;
        };
        let before = group.devices.len();
        group.devices.retain(|d| *d != dev_eui);
        group.devices.len() != before
    }
}

fn group_exists(addr: MulticastAddr) -> Refusal {
    Refusal::new(
        "MulticastGroup.AlreadyExists",
        format!("multicast group with addr {addr} already exists"),
    )
}

fn group_not_found(addr: MulticastAddr) -> Refusal {
    Refusal::new(
        "MulticastGroup.NotFound",
        format!("multicast group with addr {addr} not found"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otaa(j: u64) -> DeviceIdentity {
        JoinEui::new(j).into()
    }

    #[test]
    fn insert_rules() {
        let mut s = Store::new(Some(2));
        let d = s.insert(DevEui::new(1), otaa(9), None).unwrap();
        assert_eq!(d.active_dev_addr, None);
        assert_eq!(
            s.insert(DevEui::new(1), otaa(9), None).unwrap_err().code,
            "Device.AlreadyExists"
        );
        let abp = s
            .insert(DevEui::new(2), DevAddr::new(7).into(), None)
            .unwrap();
        assert_eq!(abp.active_dev_addr, Some(DevAddr::new(7)));
        assert_eq!(
            s.insert(DevEui::new(3), DevAddr::new(7).into(), None)
                .unwrap_err()
                .code,
            "Device.LimitExhausted"
        );
        assert_eq!(s.drop_devices(&[DevEui::new(2), DevEui::new(5)]), 1);
        s.insert(DevEui::new(3), DevAddr::new(7).into(), None)
            .unwrap();
        let order: Vec<u64> = s
            .select(None, 0, None)
            .iter()
            .map(|d| d.dev_eui.get())
            .collect();
        assert_eq!(order, [1, 3]);
    }

    #[test]
    fn update_finds_by_pair() {
        let mut s = Store::new(None);
        s.insert(DevEui::new(1), otaa(9), None).unwrap();
        s.insert(DevEui::new(2), DevAddr::new(7).into(), None)
            .unwrap();
        let up = DeviceUpdate {
            target_dev_addr: Some(DevAddr::new(5)),
            ..Default::default()
        };
        let d = s.update(DevEui::new(1), JoinEui::new(9), up).unwrap();
        assert_eq!(d.target_dev_addr, Some(DevAddr::new(5)));
        assert_eq!(d.active_dev_addr, None);
        for (dev, join) in [(1, 8), (2, 0), (3, 9)] {
            assert_eq!(
                s.update(DevEui::new(dev), JoinEui::new(join), up)
                    .unwrap_err()
                    .code,
                "Device.NotFound"
            );
        }
    }

    #[test]
    fn security_contexts_switch_on_the_first_uplink_from_the_target() {
        let mut s = Store::new(None);
        let (dev, old, new) = (DevEui::new(1), DevAddr::new(0x10), DevAddr::new(0x20));
        s.insert(dev, otaa(9), None).unwrap();
        s.update(
            dev,
            JoinEui::new(9),
            DeviceUpdate {
                active_dev_addr: Some(old),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(s.by_dev_addr(new).is_empty());
        assert!(s.set_target(dev, new));
        assert!(!s.set_target(DevEui::new(2), new));
        // Both contexts route while the join is in progress.
        assert_eq!(s.by_dev_addr(old), [dev]);
        assert_eq!(s.by_dev_addr(new), [dev]);
        // An uplink from the old address switches nothing.
        assert!(!s.switch_context(dev, old));
        assert!(s.switch_context(dev, new));
        let row = s.device(dev).unwrap();
        assert_eq!(
            (row.active_dev_addr, row.target_dev_addr),
            (Some(new), None)
        );
        assert!(s.by_dev_addr(old).is_empty());
        assert!(!s.switch_context(dev, new));
    }

    #[test]
    fn group_rules() {
        let mut s = Store::new(None);
        let a = MulticastAddr::new(1);
        let b = MulticastAddr::new(2);
        s.create_group("a".into(), a).unwrap();
        s.create_group("b".into(), b).unwrap();
        assert_eq!(
            s.create_group("x".into(), a).unwrap_err().code,
            "MulticastGroup.AlreadyExists"
        );
        let to_b = GroupUpdate {
            addr: Some(b),
            ..Default::default()
        };
        assert_eq!(
            s.update_group(a, to_b).unwrap_err().code,
            "MulticastGroup.AlreadyExists"
        );
        assert_eq!(
            s.add_device(a, DevEui::new(1)).unwrap_err().code,
            "Device.NotFound"
        );
        s.insert(DevEui::new(1), otaa(1), None).unwrap();
        s.add_device(a, DevEui::new(1)).unwrap();
        assert_eq!(
            s.add_device(a, DevEui::new(1)).unwrap_err().code,
            "MulticastGroup.AlreadyContainsTheDevice"
        );
        let c = MulticastAddr::new(3);
        let g = s
            .update_group(
                a,
                GroupUpdate {
                    addr: Some(c),
                    name: Some("c".into()),
                },
            )
            .unwrap();
        assert_eq!((g.addr, g.name.as_str()), (c, "c"));
        assert_eq!(
            s.groups(&[]).iter().map(|g| g.addr).collect::<Vec<_>>(),
            [c, b]
        );
        assert!(s.group(a).is_none());
        assert_eq!(s.group(c).unwrap().devices, [DevEui::new(1)]);
        assert!(!s.remove_device(a, DevEui::new(1)));
        assert_eq!(s.drop_all(), 1);
        assert!(s.group(c).unwrap().devices.is_empty());
        assert!(!s.remove_device(c, DevEui::new(1)));
        assert_eq!(s.delete_groups(&[a, b, c]), 2);
    }
}
