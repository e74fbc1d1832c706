//! `fleet::Directory`: which device or group a downlink's address is for, read from the
//! emulator's routing table and kept in step with fleet plans and the join flow.

use ran_routing::fleet::{DesiredDevice, DesiredGroup, Directory, Fleet, Recipient};
use ran_routing::{Core, DevAddr, DevEui, DeviceUpdate, JoinEui, MulticastAddr, NewDevice};
use ran_routing_emulator::Emulator;

const OTAA: DevEui = DevEui::new(0x0004_a30b_001c_0530);
const JOIN_EUI: JoinEui = JoinEui::new(0x70b3_d57e_d000_0001);
const ABP_1: DevEui = DevEui::new(0x70b3_d57e_d000_2001);
const ABP_2: DevEui = DevEui::new(0x70b3_d57e_d000_2002);
const SHARED: DevAddr = DevAddr::new(0x2601_1bda);
const GROUP: MulticastAddr = MulticastAddr::new(0xef04_6a1e);

fn setup() -> (Emulator, Core) {
    let emu = Emulator::start().unwrap();
    let core = Core::new(emu.token(), &emu.base_url()).unwrap();
    let table = core.routing_table();
    table.insert(NewDevice::otaa(OTAA, JOIN_EUI)).unwrap();
    table.insert(NewDevice::abp(ABP_1, SHARED)).unwrap();
    table.insert(NewDevice::abp(ABP_2, SHARED)).unwrap();
    let groups = core.multicast_groups();
    groups.create("lights", GROUP).unwrap();
    groups.add_device(GROUP, ABP_1).unwrap();
    (emu, core)
}

fn devices(recipient: Recipient) -> Vec<DevEui> {
    match recipient {
        Recipient::Devices(mut devices) => {
            devices.sort();
            devices
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn loaded_from_the_table_and_groups() {
    let (_emu, core) = setup();
    let directory = Directory::load(&core).unwrap();
    assert_eq!(directory.len(), 3);
    assert_eq!(devices(directory.recipient(SHARED)), [ABP_1, ABP_2]);
    assert_eq!(
        directory.recipient(DevAddr::new(GROUP.get())),
        Recipient::Group {
            addr: GROUP,
            members: vec![ABP_1]
        }
    );
    assert_eq!(directory.recipient(DevAddr::new(1)), Recipient::Unknown);
    // A join accept has no readable address, an uplink frame is not a downlink.
    assert_eq!(directory.recipient_of(&[0x20; 17]), None);
    assert_eq!(
        directory.recipient_of(&[0x40, 0xda, 0x1b, 0x01, 0x26]),
        None
    );
}

#[test]
fn the_join_flow_moves_a_device_from_target_to_active() {
    let (_emu, core) = setup();
    let directory = Directory::load(&core).unwrap();
    let granted = DevAddr::new(0x2600_0530);
    let row = core
        .routing_table()
        .update(DeviceUpdate::new(OTAA, JOIN_EUI).with_target_dev_addr(granted))
        .unwrap();
    directory.set_target(OTAA, granted);
    assert_eq!(
        directory.addresses(OTAA).unwrap().target,
        row.target_dev_addr
    );
    assert_eq!(directory.recipient(granted), Recipient::Devices(vec![OTAA]));
    // An uplink from elsewhere changes nothing; the first from the target switches.
    directory.uplink_from(OTAA, SHARED);
    assert_eq!(directory.addresses(OTAA).unwrap().active, None);
    directory.uplink_from(OTAA, granted);
    let addresses = directory.addresses(OTAA).unwrap();
    assert_eq!((addresses.active, addresses.target), (Some(granted), None));
    // A second join: the new target routes beside the active address until used.
    let again = DevAddr::new(0x2600_0531);
    directory.set_target(OTAA, again);
    assert_eq!(directory.recipient(granted), Recipient::Devices(vec![OTAA]));
    assert_eq!(directory.recipient(again), Recipient::Devices(vec![OTAA]));
    directory.uplink_from(OTAA, again);
    assert_eq!(directory.recipient(granted), Recipient::Unknown);
}

#[test]
fn following_fleet_plans_matches_a_fresh_load() {
    let (_emu, core) = setup();
    let directory = Directory::load(&core).unwrap();
    let fleet = Fleet::new(&core);
    // ABP_2 goes, ABP_1 moves to its own address, a new device joins the fleet.
    let moved = DevAddr::new(0x2601_0001);
    let newcomer = DevEui::new(0x70b3_d57e_d000_3001);
    let plan = fleet
        .plan([
            DesiredDevice::otaa(OTAA, JOIN_EUI),
            DesiredDevice::abp(ABP_1, moved),
            DesiredDevice::abp(newcomer, SHARED),
        ])
        .unwrap();
    let report = fleet.apply(&plan, |_| {}).unwrap();
    assert!(report.is_success(), "{report}");
    directory.follow(&plan, &report);
    let groups = fleet
        .plan_groups([DesiredGroup::new(GROUP, "lights").with_members([newcomer])])
        .unwrap();
    let report = fleet.apply_groups(&groups, |_| {}).unwrap();
    assert!(report.is_success(), "{report}");
    directory.follow_groups(&groups, &report);

    let fresh = Directory::load(&core).unwrap();
    for addr in [SHARED, moved, DevAddr::new(GROUP.get()), DevAddr::new(1)] {
        assert_eq!(directory.recipient(addr), fresh.recipient(addr), "{addr}");
    }
    assert_eq!(devices(directory.recipient(SHARED)), [newcomer]);
    assert_eq!(directory.len(), fresh.len());
}
