//! REST answers: devices, device lists, multicast groups, error bodies, identifiers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ran_routing::{ApiError, DevAddr, DevEui, Device, MulticastGroup};
use ran_routing_fuzz::check_stable_encoding;

fuzz_target!(|data: &[u8]| {
    if let Some(device) = check_stable_encoding::<Device>(data) {
        let _ = device.identity();
    }
    check_stable_encoding::<Vec<Device>>(data);
    if let Some(group) = check_stable_encoding::<MulticastGroup>(data) {
        let _ = MulticastGroup::validate_name(&group.name);
    }
    check_stable_encoding::<Vec<MulticastGroup>>(data);

    // Error bodies, as a client error (parsed) and as a server error (kept as text).
    let body = String::from_utf8_lossy(data);
    for status in [401, 422, 500] {
        let err = ApiError::from_response(status, &body);
        let _ = err.code();
        let text = err.to_string();
        match &err {
            ApiError::Unknown { body, .. } => {
                assert!(body.len() <= 2048 + '…'.len_utf8(), "{}", text.len());
            }
            ApiError::ValidationFailed { .. } => {}
            other => assert!(text.len() <= 2048 + 64, "{other:?}"),
        }
    }

    // Identifiers as users and REST bodies write them.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(eui) = text.parse::<DevEui>() {
            assert_eq!(eui.to_string().parse::<DevEui>(), Ok(eui));
        }
        if let Ok(addr) = text.parse::<DevAddr>() {
            assert_eq!(addr.to_string().parse::<DevAddr>(), Ok(addr));
        }
    }
});
