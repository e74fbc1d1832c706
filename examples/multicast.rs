//! Multicast groups, the Python client guide's sequence: insert a device, create a group,
//! add the device, get groups (all, one, several), remove the device, update the group
//! (name, address, both) and delete it, with the guide's checks.
//!
//! Runs against the embedded emulator, or against `RAN_URL`/`RAN_TOKEN` (see
//! `examples/common/mod.rs`). Exits non-zero if a call fails or a check does not hold, and
//! removes what it created either way.

#[macro_use]
mod common;

use ran_routing::{DevAddr, DevEui, MulticastAddr, MulticastGroupUpdate, NewDevice};

const DEV_EUI: DevEui = DevEui::new(0x7abe1b8c93d7174f);
const DEV_ADDR: DevAddr = DevAddr::new(0x627bb8bb);
const GROUP_ADDR: MulticastAddr = MulticastAddr::new(0xef046a1e);
const OTHER_GROUP_ADDR: MulticastAddr = MulticastAddr::new(0xffed8719);
const NEW_GROUP_ADDR: MulticastAddr = MulticastAddr::new(0xffffffff);

fn main() -> common::Outcome {
    common::log_to_stderr();
    let ran = common::connect()?;
    let outcome = run(&ran);
    // Clean up even when a step failed; unknown addresses and DevEUIs are ignored.
    let groups = ran
        .core
        .multicast_groups()
        .delete([GROUP_ADDR, NEW_GROUP_ADDR]);
    let devices = ran.core.routing_table().delete([DEV_EUI]);
    ran.core.close();
    outcome?;
    groups?;
    devices?;
    println!("multicast: all checks passed");
    Ok(())
}

fn run(ran: &common::Ran) -> common::Outcome {
    let groups = ran.core.multicast_groups();

    // We need to create the device first, before adding it into a multicast group.
    let device = ran
        .core
        .routing_table()
        .insert(NewDevice::abp(DEV_EUI, DEV_ADDR))?;
    println!("{device:?}");

    // Creating a multicast group.
    let group = groups.create("test-multicast-group", GROUP_ADDR)?;
    println!("{group:?}");
    ensure!(group.addr == GROUP_ADDR, "{group:?}");
    ensure!(group.name == "test-multicast-group", "{group:?}");
    ensure!(group.devices.is_empty(), "{group:?}");

    // Adding the device into the multicast group.
    let added = groups.add_device(group.addr, device.dev_eui)?;
    ensure!(added, "the device was added");

    // Fetching all groups, one group (still a list), and specific groups.
    let all = groups.get([])?;
    ensure!(all.iter().any(|g| g.addr == GROUP_ADDR), "{all:?}");
    let one = groups.get([GROUP_ADDR])?;
    ensure!(one.len() == 1, "{one:?}");
    ensure!(
        one[0].devices == [DEV_EUI],
        "the group holds the device: {one:?}"
    );
    let some = groups.get([GROUP_ADDR, OTHER_GROUP_ADDR])?;
    ensure!(some.iter().any(|g| g.addr == GROUP_ADDR), "{some:?}");
    ensure!(some.len() <= 2, "{some:?}");

    // Removing the device from the multicast group.
    let removed = groups.remove_device(group.addr, device.dev_eui)?;
    ensure!(removed, "the device was removed");
    let one = groups.get([GROUP_ADDR])?;
    ensure!(one[0].devices.is_empty(), "{one:?}");

    // Updating the name.
    let renamed = groups
        .update(MulticastGroupUpdate::new(GROUP_ADDR).with_name("new-multicast-group-name"))?;
    ensure!(renamed.name == "new-multicast-group-name", "{renamed:?}");
    ensure!(renamed.addr == GROUP_ADDR, "{renamed:?}");

    // Updating the address.
    let moved = groups.update(MulticastGroupUpdate::new(GROUP_ADDR).with_addr(NEW_GROUP_ADDR))?;
    ensure!(moved.addr == NEW_GROUP_ADDR, "{moved:?}");
    ensure!(moved.name == "new-multicast-group-name", "{moved:?}");

    // Updating all fields (back to the first address, so the guide's delete finds it).
    let both = groups.update(
        MulticastGroupUpdate::new(NEW_GROUP_ADDR)
            .with_name("test-multicast-group")
            .with_addr(GROUP_ADDR),
    )?;
    ensure!(both.addr == GROUP_ADDR, "{both:?}");
    ensure!(both.name == "test-multicast-group", "{both:?}");

    // Deleting the multicast group.
    let deleted = groups.delete([GROUP_ADDR])?;
    ensure!(deleted == 1, "deleted {deleted}");
    ensure!(groups.get([GROUP_ADDR])?.is_empty(), "the group is gone");
    Ok(())
}
