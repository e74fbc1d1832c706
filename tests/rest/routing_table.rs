//! The routing table against the emulator: every call in every form the Python guide
//! shows, and every error the service answers with.

use crate::common::{self, api_error};

use ran_routing::{
    ApiError, DevAddr, DevEui, DeviceUpdate, Error, InvalidInput, JoinEui, NewDevice, Select,
};
use ran_routing_emulator::Emulator;

const DEV_EUI: DevEui = DevEui::new(0x7abe1b8c93d7174f);
const DEV_EUI_2: DevEui = DevEui::new(0x7bbe1b8c93d7174a);
const JOIN_EUI: JoinEui = JoinEui::new(0x3cedcf624f8b68f4);
const DEV_ADDR: DevAddr = DevAddr::new(0x627bb8bb);

#[test]
fn quick_walkthrough_from_the_guide() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let table = ran.routing_table();

    let device = table
        .insert(NewDevice::new(0x7ABE1B8C93D7174F_u64, JOIN_EUI))
        .unwrap();
    assert_eq!(device.dev_eui.get(), 8844537008791951183);
    assert_eq!(device.join_eui.map(JoinEui::get), Some(4390393232904382708));

    let devices = table.select(Select::all()).unwrap();
    assert_eq!(devices[0].dev_eui, device.dev_eui);

    assert_eq!(table.delete([device.dev_eui]).unwrap(), 1);
    assert!(table.select(Select::all()).unwrap().is_empty());
    ran.close();
}

#[test]
fn lists_of_dev_euis_take_what_a_single_dev_eui_takes() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let table = ran.routing_table();
    table
        .insert(NewDevice::new(0x7abe1b8c93d7174f_u64, JOIN_EUI))
        .unwrap();
    table.insert(NewDevice::new(2_u64, DEV_ADDR)).unwrap();
    let found = table
        .select(Select::dev_euis([0x7abe1b8c93d7174f_u64, 2]))
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(table.delete([0x7abe1b8c93d7174f_u64]).unwrap(), 1);
    assert_eq!(table.delete(vec![2_u64, 3]).unwrap(), 1);
    assert!(emu.devices().is_empty());
}

#[test]
fn insert_otaa_abp_and_details() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let table = ran.routing_table();

    let otaa = table.insert(NewDevice::otaa(DEV_EUI, JOIN_EUI)).unwrap();
    assert_eq!(otaa.dev_eui, DEV_EUI);
    assert_eq!(otaa.join_eui, Some(JOIN_EUI));
    assert_eq!(otaa.active_dev_addr, None);
    assert_eq!(otaa.target_dev_addr, None);
    assert_eq!(otaa.details, None);

    let abp = table.insert(NewDevice::abp(DEV_EUI_2, DEV_ADDR)).unwrap();
    assert_eq!(abp.join_eui, None);
    assert_eq!(abp.active_dev_addr, Some(DEV_ADDR));

    // One DevAddr may serve several devices.
    let details = r#"{"customer": "ACME Inc.", "tags": [1, 2]}"#;
    let shared = table
        .insert(NewDevice::new(DevEui::new(3), DEV_ADDR).with_details(details))
        .unwrap();
    assert_eq!(shared.details.as_deref(), Some(details));
    assert_eq!(shared.active_dev_addr, Some(DEV_ADDR));

    // The full u64 range survives the round trip.
    let max = table
        .insert(NewDevice::new(
            DevEui::new(u64::MAX),
            JoinEui::new(u64::MAX),
        ))
        .unwrap();
    assert_eq!(max.dev_eui, DevEui::new(u64::MAX));

    let all = table.select(Select::all()).unwrap();
    assert_eq!(all, [otaa, abp, shared, max]);
}

#[test]
fn select_in_every_form_of_the_guide() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let table = ran.routing_table();
    let inserted: Vec<_> = (1..=20u64)
        .map(|i| {
            table
                .insert(NewDevice::new(DevEui::new(i), JoinEui::new(i + 100)))
                .unwrap()
        })
        .collect();

    // select()
    assert_eq!(table.select(Select::all()).unwrap(), inserted);
    assert_eq!(table.select(Select::all().clone()).unwrap(), inserted);

    // select(offset=10, limit=5)
    assert_eq!(
        table.select(Select::all().offset(10).limit(5)).unwrap(),
        inserted[10..15]
    );
    assert_eq!(
        table
            .select(Select::all().offset(10).limit(5).clone())
            .unwrap(),
        inserted[10..15]
    );
    assert_eq!(
        table.select(Select::all().offset(18).clone()).unwrap(),
        inserted[18..]
    );
    assert_eq!(
        table.select(Select::all().limit(2).clone()).unwrap(),
        inserted[..2]
    );
    assert!(table
        .select(Select::all().offset(100).limit(5))
        .unwrap()
        .is_empty());

    // select(dev_euis=[...]); unknown EUIs are left out.
    let wanted = [DevEui::new(4), DevEui::new(7), DevEui::new(999)];
    assert_eq!(
        table
            .select(Select::dev_euis(wanted.iter().copied()))
            .unwrap(),
        [inserted[3].clone(), inserted[6].clone()]
    );

    // select(dev_euis=[...], offset=1, limit=1)
    let page = Select::dev_euis(wanted).offset(1).limit(1);
    assert_eq!(table.select(page.clone()).unwrap(), [inserted[6].clone()]);

    // An empty filter matches nothing (and asks nothing).
    assert!(table
        .select(Select::dev_euis(Vec::<DevEui>::new()))
        .unwrap()
        .is_empty());
}

#[test]
fn update_active_target_and_both() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let table = ran.routing_table();
    table.insert(NewDevice::otaa(DEV_EUI, JOIN_EUI)).unwrap();

    let device = table
        .update(DeviceUpdate::new(DEV_EUI, JOIN_EUI).with_active_dev_addr(DevAddr::new(0x627bb8bc)))
        .unwrap();
    assert_eq!(device.active_dev_addr, Some(DevAddr::new(0x627bb8bc)));
    assert_eq!(device.target_dev_addr, None);

    let device = table
        .update(DeviceUpdate::new(DEV_EUI, JOIN_EUI).with_target_dev_addr(DevAddr::new(1)))
        .unwrap();
    assert_eq!(device.active_dev_addr, Some(DevAddr::new(0x627bb8bc)));
    assert_eq!(device.target_dev_addr, Some(DevAddr::new(1)));

    let device = table
        .update(
            DeviceUpdate::new(DEV_EUI, JOIN_EUI)
                .with_active_dev_addr(DevAddr::new(2))
                .with_target_dev_addr(DevAddr::new(3)),
        )
        .unwrap();
    assert_eq!(device.active_dev_addr, Some(DevAddr::new(2)));
    assert_eq!(device.target_dev_addr, Some(DevAddr::new(3)));
    assert_eq!(table.select(Select::dev_euis([DEV_EUI])).unwrap(), [device]);
}

#[test]
fn delete_and_delete_all_count() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let table = ran.routing_table();
    for i in 1..=5u64 {
        table
            .insert(NewDevice::new(DevEui::new(i), DevAddr::new(i as u32)))
            .unwrap();
    }
    // delete(dev_euis=[...]); unknown ones are ignored.
    assert_eq!(
        table
            .delete([DevEui::new(1), DevEui::new(2), DEV_EUI])
            .unwrap(),
        2
    );
    assert_eq!(table.delete([DevEui::new(1)]).unwrap(), 0);
    assert_eq!(table.delete(Vec::<DevEui>::new()).unwrap(), 0);
    assert_eq!(table.select(Select::all()).unwrap().len(), 3);
    assert_eq!(table.delete_all().unwrap(), 3);
    assert_eq!(table.delete_all().unwrap(), 0);
    assert!(table.select(Select::all()).unwrap().is_empty());
}

#[test]
fn device_errors() {
    let emu = Emulator::builder()
        .device_limit(2)
        .start()
        .expect("emulator");
    let ran = common::core(&emu);
    let table = ran.routing_table();
    table.insert(NewDevice::otaa(DEV_EUI, JOIN_EUI)).unwrap();
    table.insert(NewDevice::abp(DEV_EUI_2, DEV_ADDR)).unwrap();

    let err = api_error(table.insert(NewDevice::abp(DEV_EUI, DEV_ADDR)));
    assert!(
        matches!(err, ApiError::DeviceAlreadyExists { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "Device.AlreadyExists");

    let err = api_error(table.insert(NewDevice::new(DevEui::new(3), JOIN_EUI)));
    assert!(
        matches!(err, ApiError::DevicesLimitExhausted { .. }),
        "{err:?}"
    );

    // Unknown device, wrong JoinEUI, and an ABP device: update finds none of them.
    for (dev_eui, join_eui) in [
        (DevEui::new(42), JOIN_EUI),
        (DEV_EUI, JoinEui::new(1)),
        (DEV_EUI_2, JOIN_EUI),
    ] {
        let err = api_error(
            table.update(DeviceUpdate::new(dev_eui, join_eui).with_active_dev_addr(DEV_ADDR)),
        );
        assert!(matches!(err, ApiError::DeviceNotFound { .. }), "{err:?}");
    }
}

#[test]
fn validation_failed_carries_the_field_detail() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    // Valid JSON, but larger than the emulator stores (the service limits it too).
    let details = format!("\"{}\"", "x".repeat(64 * 1024));
    let err = api_error(
        ran.routing_table()
            .insert(NewDevice::otaa(DEV_EUI, JOIN_EUI).with_details(&details)),
    );
    let ApiError::ValidationFailed { detail, .. } = &err else {
        panic!("expected ValidationFailed, got {err:?}");
    };
    assert!(
        detail.iter().any(|d| d.loc.iter().any(|l| l == "Details")),
        "{detail:?}"
    );
    assert!(err.to_string().contains("Details"), "{err}");
}

#[test]
fn wrong_token_is_unauthorized_and_never_shown() {
    let emu = common::emulator();
    let wrong = "wrong-token-0123456789";
    let ran = ran_routing::Core::builder(wrong)
        .base_url(&emu.base_url())
        .request_timeout(common::CALL_TIMEOUT)
        .build()
        .unwrap();
    let table = ran.routing_table();
    let errors = [
        table.select(Select::all()).unwrap_err(),
        table
            .insert(NewDevice::otaa(DEV_EUI, JOIN_EUI))
            .unwrap_err(),
        table.delete_all().unwrap_err(),
        ran.multicast_groups().get([]).unwrap_err(),
    ];
    for err in &errors {
        assert!(
            matches!(err, Error::Api(ApiError::Unauthorized { .. })),
            "{err:?}"
        );
        for text in [format!("{err}"), format!("{err:?}"), format!("{ran:?}")] {
            assert!(!text.contains(wrong), "{text}");
            assert!(!text.contains(emu.token()), "{text}");
        }
    }
    // Nothing was inserted.
    assert!(common::core(&emu)
        .routing_table()
        .select(Select::all())
        .unwrap()
        .is_empty());
}

#[test]
fn bad_input_is_refused_before_any_request() {
    let emu = common::emulator();
    let ran = common::core(&emu);
    let table = ran.routing_table();
    let err = table
        .update(DeviceUpdate::new(DEV_EUI, JOIN_EUI))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(InvalidInput::NothingToUpdate(_))
    ));
    assert!(err.nothing_sent());
    let err = table
        .insert(NewDevice::otaa(DEV_EUI, JOIN_EUI).with_details("customer: ACME"))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(InvalidInput::DetailsNotJson(_))
    ));
    assert_eq!(
        table
            .select(Select::dev_euis(Vec::<DevEui>::new()))
            .unwrap(),
        []
    );
    assert_eq!(emu.accepted_connections(), 0);
}
