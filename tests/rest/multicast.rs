//! Multicast groups against the emulator: the guide's sequence, every call form, and
//! the multicast error codes.

use crate::common::{self, api_error};

use ran_routing::{
    ApiError, DevAddr, DevEui, Error, InvalidInput, MulticastAddr, MulticastGroupUpdate, NewDevice,
};

const ADDR: MulticastAddr = MulticastAddr::new(0xef046a1e);
const OTHER: MulticastAddr = MulticastAddr::new(0xffed8719);
const DEV_EUI: DevEui = DevEui::new(0x7abe1b8c93d7174f);

#[test]
fn the_guide_sequence() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let groups = ran.multicast_groups();

    let device = ran
        .routing_table()
        .insert(NewDevice::new(DEV_EUI, DevAddr::new(0x627bb8bb)))
        .unwrap();

    let group = groups.create("test-multicast-group", ADDR).unwrap();
    assert_eq!(group.addr, ADDR);
    assert_eq!(group.name, "test-multicast-group");
    assert!(group.devices.is_empty());

    assert!(groups.add_device(group.addr, device.dev_eui).unwrap());
    let fetched = groups.get([ADDR]).unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].devices, [DEV_EUI]);
    assert_eq!(fetched[0].created_at, group.created_at);

    assert!(groups.remove_device(group.addr, device.dev_eui).unwrap());
    assert!(groups.get([ADDR]).unwrap()[0].devices.is_empty());

    // Updating the name, the address, and both.
    let renamed = groups
        .update(MulticastGroupUpdate::new(ADDR).with_name("new-multicast-group-name"))
        .unwrap();
    assert_eq!(renamed.name, "new-multicast-group-name");
    assert_eq!(renamed.addr, ADDR);
    let moved = groups
        .update(MulticastGroupUpdate::new(ADDR).with_addr(MulticastAddr::new(0xffffffff)))
        .unwrap();
    assert_eq!(moved.addr, MulticastAddr::new(0xffffffff));
    assert_eq!(moved.name, "new-multicast-group-name");
    let both = groups
        .update(
            MulticastGroupUpdate::new(0xffffffff_u32)
                .with_name("test-multicast-group")
                .with_addr(ADDR),
        )
        .unwrap();
    assert_eq!(
        (both.addr, both.name.as_str()),
        (ADDR, "test-multicast-group")
    );

    assert_eq!(groups.delete([ADDR]).unwrap(), 1);
    assert!(groups.get([]).unwrap().is_empty());
    assert_eq!(ran.routing_table().delete([DEV_EUI]).unwrap(), 1);
}

#[test]
fn get_all_one_and_some() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let groups = ran.multicast_groups();
    let third = MulticastAddr::new(3);
    let created: Vec<_> = [(ADDR, "a"), (OTHER, "b"), (third, "c")]
        .into_iter()
        .map(|(addr, name)| groups.create(name, addr).unwrap())
        .collect();

    assert_eq!(groups.get([]).unwrap(), created);
    assert_eq!(groups.get([ADDR]).unwrap(), created[..1]);
    assert_eq!(groups.get([ADDR, OTHER]).unwrap(), created[..2]);
    // Unknown addresses are left out.
    assert_eq!(
        groups.get([third, MulticastAddr::new(99)]).unwrap(),
        created[2..]
    );
    assert_eq!(
        groups
            .delete([OTHER, third, MulticastAddr::new(99)])
            .unwrap(),
        2
    );
    assert_eq!(groups.delete([OTHER]).unwrap(), 0);
    // As plain numbers, as a single address is given.
    assert_eq!(groups.delete([ADDR.get(), 99_u32]).unwrap(), 1);
}

#[test]
fn multicast_errors() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let groups = ran.multicast_groups();
    ran.routing_table()
        .insert(NewDevice::new(DEV_EUI, DevAddr::new(1)))
        .unwrap();
    groups.create("one", ADDR).unwrap();
    groups.create("two", OTHER).unwrap();

    let err = api_error(groups.create("again", ADDR));
    assert!(
        matches!(err, ApiError::MulticastGroupAlreadyExists { .. }),
        "{err:?}"
    );
    let err = api_error(groups.update(MulticastGroupUpdate::new(ADDR).with_addr(OTHER)));
    assert!(
        matches!(err, ApiError::MulticastGroupAlreadyExists { .. }),
        "{err:?}"
    );

    let unknown = MulticastAddr::new(42);
    let err = api_error(groups.update(MulticastGroupUpdate::new(unknown).with_name("x")));
    assert!(
        matches!(err, ApiError::MulticastGroupNotFound { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "MulticastGroup.NotFound");
    let err = api_error(groups.add_device(unknown, DEV_EUI));
    assert!(
        matches!(err, ApiError::MulticastGroupNotFound { .. }),
        "{err:?}"
    );

    // Only devices in the routing table can join.
    let err = api_error(groups.add_device(ADDR, DevEui::new(7)));
    assert!(matches!(err, ApiError::DeviceNotFound { .. }), "{err:?}");

    assert!(groups.add_device(ADDR, DEV_EUI).unwrap());
    let err = api_error(groups.add_device(ADDR, DEV_EUI));
    assert!(
        matches!(err, ApiError::MulticastGroupAlreadyContainsDevice { .. }),
        "{err:?}"
    );

    // Removing what is not there is not an error: false.
    assert!(!groups.remove_device(unknown, DEV_EUI).unwrap());
    assert!(!groups.remove_device(OTHER, DEV_EUI).unwrap());
    assert!(groups.remove_device(ADDR, DEV_EUI).unwrap());
}

#[test]
fn names_up_to_255_characters() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let groups = ran.multicast_groups();
    // 255 characters of several bytes each are fine: the limit counts characters.
    let longest = "é".repeat(255);
    assert_eq!(groups.create(&longest, ADDR).unwrap().name, longest);

    let before = emu.accepted_connections();
    let too_long = "x".repeat(256);
    let err = groups.create(&too_long, OTHER).unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(InvalidInput::GroupNameTooLong { len: 256 })
    ));
    let err = groups
        .update(MulticastGroupUpdate::new(ADDR).with_name(&too_long))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(InvalidInput::GroupNameTooLong { .. })
    ));
    let err = groups.update(MulticastGroupUpdate::new(ADDR)).unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(InvalidInput::NothingToUpdate(_))
    ));
    assert_eq!(emu.accepted_connections(), before);
    assert_eq!(groups.get([]).unwrap().len(), 1);
}
