//! The routing table, every call in every form the Python client's guide shows:
//! insert (OTAA and ABP), select (all, paginated, by DevEUIs, both), update, delete and
//! delete_all, with the guide's checks.
//!
//! Runs against the embedded emulator, or against `RAN_URL`/`RAN_TOKEN` (see
//! `examples/common/mod.rs`). Exits non-zero if a call fails or a check does not hold, and
//! removes the devices it created either way.

#[macro_use]
mod common;

use ran_routing::{Core, DevAddr, DevEui, DeviceUpdate, JoinEui, NewDevice, Select};

const DEV_EUI: DevEui = DevEui::new(0x7abe1b8c93d7174f);
const DEV_EUI_2: DevEui = DevEui::new(0x7bbe1b8c93d7174a);
const JOIN_EUI: JoinEui = JoinEui::new(0x3cedcf624f8b68f4);
const DEV_ADDR: DevAddr = DevAddr::new(0x627bb8bb);
const NEW_DEV_ADDR: DevAddr = DevAddr::new(0x627bb8bc);

fn main() -> common::Outcome {
    common::log_to_stderr();
    let ran = common::connect()?;
    let outcome = run(&ran);
    // Clean up even when a step failed; unknown DevEUIs are ignored.
    let cleanup = ran.core.routing_table().delete([DEV_EUI, DEV_EUI_2]);
    ran.core.close();
    outcome?;
    cleanup?;
    println!("routing_core: all checks passed");
    Ok(())
}

fn run(ran: &common::Ran) -> common::Outcome {
    let core: &Core = &ran.core;
    let table = core.routing_table();
    let was_empty = table.select(Select::all())?.is_empty();

    // Creating an OTAA device.
    let device = table.insert(NewDevice::otaa(DEV_EUI, JOIN_EUI))?;
    println!("{device:?}");
    ensure!(device.dev_eui == DEV_EUI, "{device:?}");
    ensure!(device.join_eui == Some(JOIN_EUI), "{device:?}");
    ensure!(device.active_dev_addr.is_none(), "{device:?}");

    // Creating an ABP device.
    let abp = table.insert(NewDevice::abp(DEV_EUI_2, DEV_ADDR))?;
    println!("{abp:?}");
    ensure!(abp.active_dev_addr == Some(DEV_ADDR), "{abp:?}");
    ensure!(abp.join_eui.is_none(), "{abp:?}");

    // Select all devices.
    let devices = table.select(Select::all())?;
    if was_empty {
        ensure!(devices[0].dev_eui == device.dev_eui, "{devices:?}");
        ensure!(devices.len() == 2, "{devices:?}");
    }
    ensure!(
        devices.contains(&device) && devices.contains(&abp),
        "{devices:?}"
    );

    // Select devices with pagination.
    let page = table.select(Select::all().offset(10).limit(5))?;
    ensure!(page.len() <= 5, "{page:?}");
    if was_empty {
        ensure!(
            page.is_empty(),
            "only two devices, so page 10.. is empty: {page:?}"
        );
    }

    // Select devices by dev_euis.
    let by_eui = table.select(Select::dev_euis([DEV_EUI, DEV_EUI_2]))?;
    ensure!(by_eui.len() == 2, "{by_eui:?}");
    ensure!(
        by_eui.contains(&device) && by_eui.contains(&abp),
        "{by_eui:?}"
    );

    // Pagination also works with dev_euis.
    let one = table.select(
        Select::dev_euis([DEV_EUI, DEV_EUI_2])
            .offset(1)
            .limit(1)
            .clone(),
    )?;
    ensure!(one.len() == 1, "{one:?}");
    ensure!(one[0] == by_eui[1], "{one:?} vs {by_eui:?}");

    // Updating the device's active address (OTAA only).
    let updated =
        table.update(DeviceUpdate::new(DEV_EUI, JOIN_EUI).with_active_dev_addr(NEW_DEV_ADDR))?;
    println!("{updated:?}");
    ensure!(updated.active_dev_addr == Some(NEW_DEV_ADDR), "{updated:?}");
    ensure!(
        table.select(Select::dev_euis([DEV_EUI]))? == [updated.clone()],
        "update is stored"
    );

    // Deleting devices.
    let deleted = table.delete([DEV_EUI, DEV_EUI_2])?;
    ensure!(deleted == 2, "deleted {deleted}");
    ensure!(
        table
            .select(Select::dev_euis([DEV_EUI, DEV_EUI_2]))?
            .is_empty(),
        "devices are gone"
    );

    // Deleting all devices: only where it cannot remove someone else's devices.
    if was_empty {
        table.insert(NewDevice::otaa(DEV_EUI, JOIN_EUI))?;
        table.insert(NewDevice::abp(DEV_EUI_2, DEV_ADDR))?;
        let deleted = table.delete_all()?;
        ensure!(deleted == 2, "delete_all deleted {deleted}");
        ensure!(
            table.select(Select::all())?.is_empty(),
            "the table is empty"
        );
    } else {
        println!("skipping delete_all(): the routing table already had devices");
    }
    Ok(())
}
