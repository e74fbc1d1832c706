//! Wire codec edge cases. REST objects: devices, multicast groups, timestamps and error bodies.

use ran_routing::*;
use serde_json::json;

use crate::common;
use crate::support::*;

// ---------------------------------------------------------------------------------------
// REST objects
// ---------------------------------------------------------------------------------------

#[test]
fn rest_device_examples() {
    let abp: Device = round_trip(&device_abp());
    assert_eq!(
        abp.identity(),
        Some(DeviceIdentity::Abp {
            dev_addr: DevAddr::new(u32::MAX)
        })
    );
    let otaa = json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "0000000000000001",
        "ActiveDevAddr": null, "TargetDevAddr": "627bb8bb",
        "Details": "{\"owner\": \"me\"}", "CreatedAt": "2022-05-31T07:12:02.875460"});
    let otaa: Device = round_trip(&otaa);
    assert_eq!(
        otaa.identity(),
        Some(DeviceIdentity::Otaa {
            join_eui: JoinEui::new(1)
        })
    );
    assert_eq!(otaa.target_dev_addr, Some(DevAddr::new(0x627bb8bb)));
    assert_eq!(otaa.details.as_deref(), Some("{\"owner\": \"me\"}"));
    assert_eq!(
        otaa.created_at,
        time::macros::datetime!(2022-05-31 07:12:02.875460)
    );
    let list: Vec<Device> =
        round_trip(&json!([device_abp(), serde_json::to_value(&otaa).unwrap()]));
    assert_eq!(list.len(), 2);
    let empty: Vec<Device> = round_trip(&json!([]));
    assert!(empty.is_empty());
}

#[test]
fn timestamps_with_6_3_0_fractional_digits() {
    use time::macros::datetime;
    for (text, expected, written) in [
        (
            "2022-05-31T07:14:04.473749",
            datetime!(2022-05-31 07:14:04.473749),
            "2022-05-31T07:14:04.473749",
        ),
        (
            "2022-05-31T07:14:04.473",
            datetime!(2022-05-31 07:14:04.473),
            "2022-05-31T07:14:04.473000",
        ),
        (
            "2022-05-31T07:14:04",
            datetime!(2022-05-31 07:14:04),
            "2022-05-31T07:14:04.000000",
        ),
        (
            "2022-05-31T07:14:04.000000",
            datetime!(2022-05-31 07:14:04),
            "2022-05-31T07:14:04.000000",
        ),
        (
            "2022-05-31T07:14:04.1",
            datetime!(2022-05-31 07:14:04.1),
            "2022-05-31T07:14:04.100000",
        ),
        (
            "1970-01-01T00:00:00.000001",
            datetime!(1970-01-01 00:00:00.000001),
            "1970-01-01T00:00:00.000001",
        ),
    ] {
        let d: Device = decode_ok(&with(&device_abp(), "/CreatedAt", json!(text)));
        assert_eq!(d.created_at, expected, "{text}");
        assert_eq!(serde_json::to_value(&d).unwrap()["CreatedAt"], written);
        let g: MulticastGroup = decode_ok(&with(&group(), "/created_at", json!(text)));
        assert_eq!(g.created_at, expected, "{text}");
        assert_eq!(serde_json::to_value(&g).unwrap()["created_at"], written);
    }
    for bad in [
        "2022-05-31 07:14:04",
        "2022-05-31T07:14:04.",
        "2022-05-31T07:14",
        "2022-13-01T00:00:00",
        "2022-02-30T00:00:00",
        "2022-05-31T24:00:00",
        "",
    ] {
        decode_err::<Device>(&with(&device_abp(), "/CreatedAt", json!(bad)));
    }
}

#[test]
fn rest_multicast_group_example() {
    let g: MulticastGroup = round_trip(&group());
    assert_eq!(g.addr, MulticastAddr::new(0xdafa0c11));
    assert_eq!(g.devices, [DevEui::new(0xfafafafafafafafa)]);
    let unicode = with(&group(), "/name", json!("Grüße, 世界 🛰"));
    let g: MulticastGroup = round_trip(&unicode);
    assert_eq!(g.name, "Grüße, 世界 🛰");
    let list: Vec<MulticastGroup> =
        round_trip(&json!([group(), with(&group(), "/devices", json!([]))]));
    assert_eq!(list.len(), 2);
}

#[test]
fn error_bodies() {
    let body = |code: &str| {
        json!({"detail": {"error_code": code, "error_description": "text"}}).to_string()
    };
    let d = || "text".to_owned();
    for (code, expected) in [
        ("Unauthorized", ApiError::Unauthorized { description: d() }),
        (
            "Device.AlreadyExists",
            ApiError::DeviceAlreadyExists { description: d() },
        ),
        (
            "Device.LimitExhausted",
            ApiError::DevicesLimitExhausted { description: d() },
        ),
        (
            "Device.NotFound",
            ApiError::DeviceNotFound { description: d() },
        ),
        (
            "MulticastGroup.AlreadyExists",
            ApiError::MulticastGroupAlreadyExists { description: d() },
        ),
        (
            "MulticastGroup.NotFound",
            ApiError::MulticastGroupNotFound { description: d() },
        ),
        (
            "MulticastGroup.AlreadyContainsTheDevice",
            ApiError::MulticastGroupAlreadyContainsDevice { description: d() },
        ),
        (
            "ValidationFailed",
            ApiError::ValidationFailed {
                description: d(),
                detail: vec![],
                omitted: 0,
            },
        ),
    ] {
        let err = common::api_error_from(400, &body(code));
        assert_eq!(err, expected);
        assert_eq!(err.code(), code);
    }
    let err = common::api_error_from(400, &body("Unknown"));
    assert_eq!(err.code(), "Unknown");
    assert!(matches!(err, ApiError::Unknown { status: 400, .. }));

    // ValidationFailed with error_detail, loc mixing names and list indices.
    let body = json!({"detail": {"error_code": "ValidationFailed", "error_description": "invalid",
    "error_detail": [
        {"loc": ["body", "DevEUIs", 3], "msg": "bad hex", "type": "value_error"},
        {"loc": ["query", "limit"], "msg": "must be >= 0", "type": "value_error.number"},
        {"loc": [], "msg": "x"}
    ]}});
    let err = common::api_error_from(422, &body.to_string());
    let ApiError::ValidationFailed {
        description,
        detail,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(description, "invalid");
    assert_eq!(detail.len(), 3);
    assert_eq!(detail[0].loc, ["body", "DevEUIs", "3"]);
    assert_eq!(detail[0].kind, "value_error");
    assert_eq!(detail[1].loc, ["query", "limit"]);
    assert!(detail[2].loc.is_empty());
    assert_eq!(detail[2].kind, "");
    assert_eq!(
        err.to_string(),
        "validation failed: invalid; body.DevEUIs.3: bad hex; query.limit: must be >= 0; : x"
    );
    let null_detail = json!({"detail": {"error_code": "ValidationFailed", "error_description": "v",
        "error_detail": null}});
    assert_eq!(
        common::api_error_from(422, &null_detail.to_string()),
        ApiError::ValidationFailed {
            description: "v".into(),
            detail: vec![],
            omitted: 0,
        }
    );

    // An undocumented code keeps the code; its description is bounded like any body.
    let long =
        json!({"detail": {"error_code": "Shiny.New", "error_description": "é".repeat(5000)}});
    let err = common::api_error_from(409, &long.to_string());
    let ApiError::Unknown {
        status: 409,
        code: Some(code),
        body,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(code, "Shiny.New");
    assert!(body.len() <= 2048 + '…'.len_utf8(), "{}", body.len());
    assert!(body.starts_with("ééé"));

    // Bodies that are not the documented shape keep status and text (a 401 or 403 is
    // Unauthorized whatever its body: tests/rest/transport.rs).
    for (status, text) in [
        (404, r#"{"detail": "Not Found"}"#),
        (400, r#"{"detail": {"error_description": "no code"}}"#),
        (400, r#"{"detail": {"error_code": 5}}"#),
        (400, "not json"),
        (418, ""),
        (
            500,
            r#"{"detail": {"error_code": "Device.NotFound", "error_description": "x"}}"#,
        ),
        (
            302,
            r#"{"detail": {"error_code": "Device.NotFound", "error_description": "x"}}"#,
        ),
    ] {
        assert_eq!(
            common::api_error_from(status, text),
            ApiError::Unknown {
                status,
                code: None,
                body: text.into()
            },
            "{status} {text}"
        );
    }
}
