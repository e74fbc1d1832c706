//! The emulator's REST API, spoken raw with `ureq`: every endpoint, every documented
//! error code, authentication, malformed bodies, keep-alive.

mod support;

use ran_routing_emulator::Emulator;
use serde_json::{json, Value};
use support::*;

fn emulator() -> (Emulator, Api) {
    let emu = Emulator::start().expect("emulator");
    let api = Api::new(&emu);
    (emu, api)
}

fn is_timestamp(v: &Value) -> bool {
    // "2022-05-31T07:12:02.875460": naive, six fractional digits.
    let s = v.as_str().unwrap_or("");
    s.len() == 26 && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.' && !s.ends_with('Z')
}

#[test]
fn insert_otaa_and_abp_devices() {
    let (emu, api) = emulator();
    let otaa = api.ok(
        "devices/insert",
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4"}),
    );
    assert_eq!(otaa["DevEUI"], "7abe1b8c93d7174f");
    assert_eq!(otaa["JoinEUI"], "3cedcf624f8b68f4");
    assert_eq!(otaa["ActiveDevAddr"], Value::Null);
    assert_eq!(otaa["TargetDevAddr"], Value::Null);
    assert_eq!(otaa["Details"], Value::Null);
    assert!(is_timestamp(&otaa["CreatedAt"]), "{otaa}");
    // Exactly the documented keys.
    assert_eq!(otaa.as_object().unwrap().len(), 6);

    let abp = api.ok(
        "devices/insert",
        json!({"DevEUI": "FFFFFFFFFFFFFFFF", "DevAddr": "627BB8BB", "Details": "{\"model\": \"x\"}"}),
    );
    assert_eq!(abp["DevEUI"], "ffffffffffffffff");
    assert_eq!(abp["JoinEUI"], Value::Null);
    assert_eq!(abp["ActiveDevAddr"], "627bb8bb");
    assert_eq!(abp["Details"], "{\"model\": \"x\"}");

    // One DevAddr may serve several DevEUIs; a DevEUI only once.
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "627bb8bb"}),
    );
    assert_error(
        &api.post(
            "devices/insert",
            json!({"DevEUI": "7abe1b8c93d7174f", "DevAddr": "00000001"}),
        ),
        409,
        "Device.AlreadyExists",
    );
    assert_eq!(emu.devices().len(), 3);
}

#[test]
fn insert_validation() {
    let (emu, api) = emulator();
    let cases = [
        json!({"DevEUI": "7abe1b8c93d7174f"}),
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "0000000000000001", "DevAddr": "00000001"}),
        json!({"JoinEUI": "3cedcf624f8b68f4"}),
        json!({"DevEUI": 5, "JoinEUI": "0000000000000001"}),
        json!({"DevEUI": "xyz", "JoinEUI": "0000000000000001"}),
        json!({"DevEUI": "10000000000000000", "JoinEUI": "0000000000000001"}),
        json!({"DevEUI": "0000000000000001", "DevAddr": "100000000"}),
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001", "Details": "not json"}),
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001", "Details": 5}),
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001", "Details": "x".repeat(20_000)}),
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001", "DevEui": "01"}),
        json!({"DevEUI": null, "DevAddr": "00000001"}),
        json!(["DevEUI"]),
        json!("text"),
    ];
    for body in cases {
        let answer = api.post("devices/insert", body.clone());
        assert_error(&answer, 422, "ValidationFailed");
    }
    for raw in [
        &b"{"[..],
        b"",
        b"\xff\xfe",
        b"{\"DevEUI\": \"01\", \"DevAddr\": }",
    ] {
        assert_error(
            &api.post_raw("devices/insert", raw),
            422,
            "ValidationFailed",
        );
    }
    // Where the problem is, in the documented form.
    let (_, body) = api.post(
        "devices/insert",
        json!({"DevEUI": "nothex", "JoinEUI": "0000000000000001"}),
    );
    assert_eq!(
        body["detail"]["error_detail"][0]["loc"],
        json!(["body", "DevEUI"])
    );
    assert!(emu.devices().is_empty());
}

#[test]
fn device_limit() {
    let emu = Emulator::builder().device_limit(2).start().unwrap();
    let api = Api::new(&emu);
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000002", "JoinEUI": "0000000000000001"}),
    );
    assert_error(
        &api.post(
            "devices/insert",
            json!({"DevEUI": "0000000000000003", "DevAddr": "00000001"}),
        ),
        403,
        "Device.LimitExhausted",
    );
    assert_eq!(
        api.ok("devices/drop", json!({"DevEUIs": ["0000000000000001"]})),
        json!({"deleted": 1})
    );
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000003", "DevAddr": "00000001"}),
    );
}

#[test]
fn select_filters_and_paginates() {
    let (_emu, api) = emulator();
    for i in 1..=5 {
        api.ok(
            "devices/insert",
            json!({"DevEUI": format!("{i:016x}"), "DevAddr": "00000001"}),
        );
    }
    let euis = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["DevEUI"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = api.get("devices/select", &[]);
    assert_eq!(status, 200);
    assert_eq!(euis(&all).len(), 5);
    assert_eq!(euis(&all)[0], "0000000000000001");

    let (_, page) = api.get("devices/select", &[("offset", "1"), ("limit", "2")]);
    assert_eq!(euis(&page), ["0000000000000002", "0000000000000003"]);

    let (_, some) = api.get(
        "devices/select",
        &[
            ("DevEUIs", "0000000000000004"),
            ("DevEUIs", "0000000000000002"),
            ("DevEUIs", "00000000000000ff"),
        ],
    );
    assert_eq!(euis(&some), ["0000000000000002", "0000000000000004"]);

    let (_, some) = api.get(
        "devices/select",
        &[
            ("DevEUIs", "0000000000000004"),
            ("DevEUIs", "0000000000000002"),
            ("offset", "1"),
            ("limit", "1"),
        ],
    );
    assert_eq!(euis(&some), ["0000000000000004"]);
    let (_, none) = api.get("devices/select", &[("limit", "0")]);
    assert_eq!(none, json!([]));

    for bad in [
        [("offset", "-1")],
        [("limit", "-1")],
        [("limit", "many")],
        [("DevEUIs", "zz")],
    ] {
        assert_error(&api.get("devices/select", &bad), 422, "ValidationFailed");
    }
}

#[test]
fn update_by_deveui_and_joineui() {
    let (_emu, api) = emulator();
    api.ok(
        "devices/insert",
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4"}),
    );
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000002", "DevAddr": "00000002"}),
    );
    let d = api.ok(
        "devices/update",
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4", "TargetDevAddr": "ffffffff"}),
    );
    assert_eq!(d["TargetDevAddr"], "ffffffff");
    assert_eq!(d["ActiveDevAddr"], Value::Null);
    // Omitted addresses stay as they are.
    let d = api.ok(
        "devices/update",
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4", "ActiveDevAddr": "627bb8bc"}),
    );
    assert_eq!(d["TargetDevAddr"], "ffffffff");
    assert_eq!(d["ActiveDevAddr"], "627bb8bc");

    // Not found: unknown device, wrong JoinEUI, and an ABP device (it has no JoinEUI).
    for (dev, join) in [
        ("0000000000000009", "3cedcf624f8b68f4"),
        ("7abe1b8c93d7174f", "0000000000000001"),
        ("0000000000000002", "0000000000000000"),
    ] {
        assert_error(
            &api.post(
                "devices/update",
                json!({"DevEUI": dev, "JoinEUI": join, "ActiveDevAddr": "00000001"}),
            ),
            404,
            "Device.NotFound",
        );
    }
    for body in [
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4"}),
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4", "ActiveDevAddr": null}),
        json!({"DevEUI": "7abe1b8c93d7174f", "ActiveDevAddr": "00000001"}),
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4", "DevAddr": "00000001"}),
        json!({"DevEUI": "7abe1b8c93d7174f", "JoinEUI": "3cedcf624f8b68f4", "TargetDevAddr": 1}),
    ] {
        assert_error(&api.post("devices/update", body), 422, "ValidationFailed");
    }
}

#[test]
fn drop_and_drop_all() {
    let (emu, api) = emulator();
    for i in 1..=3 {
        api.ok(
            "devices/insert",
            json!({"DevEUI": format!("{i:016x}"), "JoinEUI": "0000000000000001"}),
        );
    }
    assert_eq!(
        api.ok(
            "devices/drop",
            json!({"DevEUIs": ["0000000000000001", "00000000000000aa"]})
        ),
        json!({"deleted": 1})
    );
    assert_eq!(
        api.ok("devices/drop", json!({"DevEUIs": []})),
        json!({"deleted": 0})
    );
    assert_error(
        &api.post("devices/drop", json!({"DevEUIs": ["zz"]})),
        422,
        "ValidationFailed",
    );
    assert_error(
        &api.post("devices/drop", json!({"DevEUIs": "0000000000000001"})),
        422,
        "ValidationFailed",
    );
    let (status, body) = api.post_empty("devices/drop-all");
    assert_eq!((status, body), (200, json!({"deleted": 2})));
    assert!(emu.devices().is_empty());
    assert_eq!(api.post_empty("devices/drop-all").1, json!({"deleted": 0}));
}

#[test]
fn multicast_groups() {
    let (emu, api) = emulator();
    let g = api.ok(
        "multicast/multicast-groups/create",
        json!({"name": "My first multicast group", "addr": "dafa0c11"}),
    );
    assert_eq!(g["addr"], "dafa0c11");
    assert_eq!(g["name"], "My first multicast group");
    assert_eq!(g["devices"], json!([]));
    assert!(is_timestamp(&g["created_at"]), "{g}");
    assert_eq!(g.as_object().unwrap().len(), 4);
    assert_error(
        &api.post(
            "multicast/multicast-groups/create",
            json!({"name": "again", "addr": "dafa0c11"}),
        ),
        409,
        "MulticastGroup.AlreadyExists",
    );
    api.ok(
        "multicast/multicast-groups/create",
        json!({"name": "second", "addr": "00000002"}),
    );
    let name255 = "é".repeat(255);
    api.ok(
        "multicast/multicast-groups/create",
        json!({"name": name255, "addr": "00000003"}),
    );
    for body in [
        json!({"name": "é".repeat(256), "addr": "00000004"}),
        json!({"name": "x"}),
        json!({"addr": "00000004"}),
        json!({"name": 5, "addr": "00000004"}),
        json!({"name": "x", "addr": "1ffffffff"}),
    ] {
        assert_error(
            &api.post("multicast/multicast-groups/create", body),
            422,
            "ValidationFailed",
        );
    }

    // get: all, some, unknown ones skipped.
    let all = api.ok("multicast/multicast-groups/get", json!({"addrs": []}));
    assert_eq!(all.as_array().unwrap().len(), 3);
    let some = api.ok(
        "multicast/multicast-groups/get",
        json!({"addrs": ["00000002", "0000abcd"]}),
    );
    assert_eq!(some.as_array().unwrap().len(), 1);
    assert_eq!(some[0]["name"], "second");
    assert_error(
        &api.post("multicast/multicast-groups/get", json!({})),
        422,
        "ValidationFailed",
    );

    // update: name, addr, both; at least one.
    let g = api.ok(
        "multicast/multicast-groups/update",
        json!({"addr": "dafa0c11", "update": {"name": "renamed"}}),
    );
    assert_eq!(
        (g["addr"].as_str(), g["name"].as_str()),
        (Some("dafa0c11"), Some("renamed"))
    );
    let g = api.ok(
        "multicast/multicast-groups/update",
        json!({"addr": "dafa0c11", "update": {"addr": "ef046a1e", "name": "moved"}}),
    );
    assert_eq!(g["addr"], "ef046a1e");
    assert_error(
        &api.post(
            "multicast/multicast-groups/update",
            json!({"addr": "dafa0c11", "update": {"name": "x"}}),
        ),
        404,
        "MulticastGroup.NotFound",
    );
    assert_error(
        &api.post(
            "multicast/multicast-groups/update",
            json!({"addr": "ef046a1e", "update": {"addr": "00000002"}}),
        ),
        409,
        "MulticastGroup.AlreadyExists",
    );
    for body in [
        json!({"addr": "ef046a1e", "update": {}}),
        json!({"addr": "ef046a1e"}),
        json!({"addr": "ef046a1e", "update": "x"}),
        json!({"addr": "ef046a1e", "update": {"name": "é".repeat(256)}}),
    ] {
        assert_error(
            &api.post("multicast/multicast-groups/update", body),
            422,
            "ValidationFailed",
        );
    }

    // Devices: only known ones, once.
    assert_error(
        &api.post(
            "multicast/multicast-groups/add-device",
            json!({"addr": "ef046a1e", "dev_eui": "fafafafafafafafa"}),
        ),
        404,
        "Device.NotFound",
    );
    api.ok(
        "devices/insert",
        json!({"DevEUI": "fafafafafafafafa", "DevAddr": "01020304"}),
    );
    assert_eq!(
        api.ok(
            "multicast/multicast-groups/add-device",
            json!({"addr": "ef046a1e", "dev_eui": "fafafafafafafafa"}),
        ),
        json!({"is_added": true})
    );
    assert_error(
        &api.post(
            "multicast/multicast-groups/add-device",
            json!({"addr": "ef046a1e", "dev_eui": "fafafafafafafafa"}),
        ),
        409,
        "MulticastGroup.AlreadyContainsTheDevice",
    );
    assert_error(
        &api.post(
            "multicast/multicast-groups/add-device",
            json!({"addr": "0000abcd", "dev_eui": "fafafafafafafafa"}),
        ),
        404,
        "MulticastGroup.NotFound",
    );
    let g = api.ok(
        "multicast/multicast-groups/get",
        json!({"addrs": ["ef046a1e"]}),
    );
    assert_eq!(g[0]["devices"], json!(["fafafafafafafafa"]));
    assert_eq!(emu.multicast_groups()[0].devices.len(), 1);

    let remove = |addr: &str, dev: &str| {
        api.ok(
            "multicast/multicast-groups/remove-device",
            json!({"addr": addr, "dev_eui": dev}),
        )
    };
    assert_eq!(
        remove("0000abcd", "fafafafafafafafa"),
        json!({"is_removed": false})
    );
    assert_eq!(
        remove("ef046a1e", "0000000000000001"),
        json!({"is_removed": false})
    );
    assert_eq!(
        remove("ef046a1e", "fafafafafafafafa"),
        json!({"is_removed": true})
    );
    assert_eq!(
        remove("ef046a1e", "fafafafafafafafa"),
        json!({"is_removed": false})
    );
    assert_error(
        &api.post(
            "multicast/multicast-groups/remove-device",
            json!({"addr": "ef046a1e"}),
        ),
        422,
        "ValidationFailed",
    );

    // delete: unknown ones ignored.
    assert_eq!(
        api.ok(
            "multicast/multicast-groups/delete",
            json!({"addrs": ["ef046a1e", "00000002", "0000abcd"]}),
        ),
        json!({"deleted": 2})
    );
    assert_eq!(emu.multicast_groups().len(), 1);
}

#[test]
fn dropping_a_device_removes_it_from_groups() {
    let (emu, api) = emulator();
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    api.ok(
        "multicast/multicast-groups/create",
        json!({"name": "g", "addr": "00000001"}),
    );
    api.ok(
        "multicast/multicast-groups/add-device",
        json!({"addr": "00000001", "dev_eui": "0000000000000001"}),
    );
    api.ok("devices/drop", json!({"DevEUIs": ["0000000000000001"]}));
    assert!(emu.multicast_groups()[0].devices.is_empty());
}

#[test]
fn unauthorized_everywhere() {
    let (_emu, api) = emulator();
    let routes = [
        ("GET", "devices/select"),
        ("POST", "devices/insert"),
        ("POST", "devices/update"),
        ("POST", "devices/drop"),
        ("POST", "devices/drop-all"),
        ("POST", "multicast/multicast-groups/create"),
        ("POST", "multicast/multicast-groups/update"),
        ("POST", "multicast/multicast-groups/get"),
        ("POST", "multicast/multicast-groups/delete"),
        ("POST", "multicast/multicast-groups/add-device"),
        ("POST", "multicast/multicast-groups/remove-device"),
    ];
    for (method, route) in routes {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic abc"),
            Some("Bearer"),
        ] {
            let url = format!("{}/{route}", api.base);
            let resp = match method {
                "GET" => {
                    let mut req = api.agent.get(&url);
                    if let Some(a) = auth {
                        req = req.header("Authorization", a);
                    }
                    req.call()
                }
                _ => {
                    let mut req = api.agent.post(&url);
                    if let Some(a) = auth {
                        req = req.header("Authorization", a);
                    }
                    req.send("{}")
                }
            };
            let answer = read(resp.unwrap());
            assert_error(&answer, 401, "Unauthorized");
        }
    }
    // The token is case-sensitive but the scheme is not.
    let resp = api
        .agent
        .get(format!("{}/devices/select", api.base))
        .header("Authorization", format!("bearer {}", api.token))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn unknown_paths_and_methods() {
    let (_emu, api) = emulator();
    assert_error(&api.get("devices/nope", &[]), 404, "Unknown");
    assert_error(&api.post("devices", json!({})), 404, "Unknown");
    assert_error(&api.get("devices/insert", &[]), 405, "Unknown");
    let root = api.base.trim_end_matches("/api/v1").to_owned();
    let answer = read(api.agent.get(format!("{root}/other")).call().unwrap());
    assert_error(&answer, 404, "Unknown");
    // Slashes are forgiven: trailing, doubled.
    let (status, _) = api.get("devices/select/", &[]);
    assert_eq!(status, 200);
    let (status, _) = api.get("/devices//select", &[]);
    assert_eq!(status, 200);
}

#[test]
fn custom_base_path_and_token() {
    let emu = Emulator::builder()
        .base_path("/ran/v2/")
        .token("s3cr3t")
        .start()
        .unwrap();
    assert!(emu.base_url().ends_with("/ran/v2"), "{}", emu.base_url());
    assert_eq!(emu.token(), "s3cr3t");
    let api = Api::new(&emu);
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    let root = emu.base_url().replace("/ran/v2", "/api/v1");
    let resp = api
        .agent
        .get(format!("{root}/devices/select"))
        .header("Authorization", "Bearer s3cr3t")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(Emulator::builder().token("a b").start().is_err());
    assert!(Emulator::builder().base_path("/emulator").start().is_err());
}

#[test]
fn one_agent_reuses_one_connection() {
    let (emu, api) = emulator();
    let before = emu.accepted_connections();
    for i in 0..100u64 {
        if i % 2 == 0 {
            api.ok(
                "devices/insert",
                json!({"DevEUI": format!("{i:016x}"), "DevAddr": "00000001"}),
            );
        } else {
            // Error answers keep the connection too.
            let answer = api.post("devices/insert", json!({"DevEUI": "zz"}));
            assert_eq!(answer.0, 422);
        }
    }
    assert_eq!(emu.accepted_connections() - before, 1);
}

#[test]
fn raw_http_edge_cases() {
    let (emu, api) = emulator();
    let auth = format!("Authorization: Bearer {}\r\n", api.token);
    // Chunked bodies are decoded.
    let body = r#"{"DevEUI": "0000000000000001", "DevAddr": "00000001"}"#;
    let (a, b) = body.split_at(10);
    let chunked = format!(
        "POST /api/v1/devices/insert HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let answer = raw_exchange(&emu, chunked.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(emu.devices().len(), 1);

    // Garbage, an oversized body, an oversized head: 4xx with an error body, then closed.
    let answer = raw_exchange(&emu, b"\x16\x03\x01 not http\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let big =
        format!("POST /api/v1/devices/insert HTTP/1.1\r\n{auth}Content-Length: 2000000\r\n\r\n");
    let answer = raw_exchange(&emu, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("\"error_code\""), "{answer}");
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    let answer = raw_exchange(&emu, long.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    // HTTP/1.0 without keep-alive is answered and closed.
    let get = format!("GET /api/v1/devices/select HTTP/1.0\r\n{auth}\r\n");
    let answer = raw_exchange(&emu, get.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Connection: close\r\n"), "{answer}");

    // Two pipelined requests on one connection, both answered.
    let two = format!(
        "GET /api/v1/devices/select HTTP/1.1\r\n{auth}\r\n\
         GET /api/v1/devices/select HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"
    );
    let answer = raw_exchange(&emu, two.as_bytes());
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");

    // The server survived all of it.
    let (status, _) = api.get("devices/select", &[]);
    assert_eq!(status, 200);
}

#[test]
fn shutdown_closes_connections() {
    let (emu, api) = emulator();
    api.get("devices/select", &[]);
    emu.shutdown();
    emu.shutdown();
    let err = api.agent.get(format!("{}/devices/select", api.base)).call();
    assert!(err.is_err(), "served after shutdown");
}

#[test]
fn connection_limit() {
    let emu = Emulator::builder().max_connections(2).start().unwrap();
    let api = Api::new(&emu);
    let a = agent();
    let b = agent();
    // Two agents hold one kept-alive connection each.
    let url = format!("{}/devices/select", api.base);
    let auth = format!("Bearer {}", api.token);
    for agent in [&a, &b] {
        let resp = agent
            .get(&url)
            .header("Authorization", &auth)
            .call()
            .unwrap();
        assert_eq!(read(resp).0, 200);
    }
    let answer = raw_exchange(&emu, b"GET /api/v1/devices/select HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    // Once one is free, a third client is served again.
    drop(a);
    assert!(eventually(|| {
        let answer = raw_exchange(
            &emu,
            format!("GET /api/v1/devices/select HTTP/1.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        answer.starts_with("HTTP/1.1 200 ")
    }));
}

mod hostile_bodies {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn shared() -> &'static (Emulator, Api) {
        static EMU: OnceLock<(Emulator, Api)> = OnceLock::new();
        EMU.get_or_init(emulator)
    }

    const POST_ROUTES: [&str; 10] = [
        "devices/insert",
        "devices/update",
        "devices/drop",
        "devices/drop-all",
        "multicast/multicast-groups/create",
        "multicast/multicast-groups/update",
        "multicast/multicast-groups/get",
        "multicast/multicast-groups/delete",
        "multicast/multicast-groups/add-device",
        "multicast/multicast-groups/remove-device",
    ];

    /// JSON values shaped like requests: the API's keys with values of any type.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[0-9a-fA-F]{0,18}".prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        let key = prop_oneof![
            Just("DevEUI"),
            Just("JoinEUI"),
            Just("DevAddr"),
            Just("Details"),
            Just("DevEUIs"),
            Just("ActiveDevAddr"),
            Just("TargetDevAddr"),
            Just("name"),
            Just("addr"),
            Just("addrs"),
            Just("update"),
            Just("dev_eui"),
            Just("other"),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|m| json!(m)),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_json_body_gets_a_documented_answer(route in 0..POST_ROUTES.len(), body in json_value()) {
            let (_emu, api) = shared();
            let (status, answer) = api.post(POST_ROUTES[route], body);
            prop_assert!(status == 200 || (400..500).contains(&status), "{status} {answer}");
            if status != 200 {
                prop_assert!(answer["detail"]["error_code"].is_string(), "{answer}");
            }
        }

        #[test]
        fn any_bytes_get_a_documented_answer(route in 0..POST_ROUTES.len(), body in prop::collection::vec(any::<u8>(), 0..64)) {
            let (_emu, api) = shared();
            let (status, answer) = api.post_raw(POST_ROUTES[route], &body);
            prop_assert!(status == 200 || (400..500).contains(&status), "{status} {answer}");
        }
    }
}

/// Clients that attack the HTTP layer itself, spoken raw over TCP (framing, chunk sizes,
/// slow clients, the select cap, the device limit), and the REST latency.
mod hostile_clients {
    use super::*;
    use ran_routing_emulator::ControlClient;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    /// Sends `request` on a fresh connection and reads until the server closes, or
    /// `wait` passes without a byte.
    fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
        let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        tcp.set_read_timeout(Some(wait)).unwrap();
        tcp.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn responses(answer: &str) -> usize {
        answer.matches("HTTP/1.1 ").count()
    }

    /// Before: the chunk size overflowed `body.len() + size`, the connection's thread
    /// panicked without giving its slot back, and after 1024 such requests every client
    /// was answered 503.
    #[test]
    fn an_overflowing_chunk_size_costs_no_connection_slot() {
        let (emu, api) = emulator();
        let request = b"POST /api/v1/devices/insert HTTP/1.1\r\nHost: x\r\n\
                        Transfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n";
        for i in 0..1100 {
            let answer = exchange(emu.local_addr(), request, Duration::from_secs(2));
            assert!(
                answer.starts_with("HTTP/1.1 413 ") && answer.contains("Connection: close"),
                "request {i}: {answer:?}"
            );
        }
        assert!(eventually(|| emu.open_connections() == 0));
        // The one slot in use is the status request's own.
        let status = ControlClient::new(emu.control_url()).status().unwrap();
        assert_eq!(status.open_connections, 1);
        assert_eq!(api.get("devices/select", &[]).0, 200);
    }

    /// What a slow client got: `Some(answer)` once the server cut it, `None` if it could
    /// keep sending for `TIMEOUT`.
    fn slowloris(addr: SocketAddr, send: bool) -> Option<String> {
        let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let start = b"GET /api/v1/devices/select HTTP/1.1\r\nX-Slow: ";
        let mut out = Vec::new();
        let began = Instant::now();
        let mut i = 0;
        while began.elapsed() < TIMEOUT {
            if send {
                let byte = start.get(i).copied().unwrap_or(b'a');
                i += 1;
                if tcp.write_all(&[byte]).is_err() {
                    return Some(String::from_utf8_lossy(&out).into_owned());
                }
            }
            let mut buf = [0u8; 1024];
            match tcp.read(&mut buf) {
                Ok(0) => return Some(String::from_utf8_lossy(&out).into_owned()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(String::from_utf8_lossy(&out).into_owned()),
            }
        }
        None
    }

    /// Before: the idle timeout applied to each read, so a byte every 50 ms held a slot
    /// for ever (and a silent connection for 120 s), and with every slot so held no one
    /// else was served.
    #[test]
    fn slow_clients_are_cut_at_the_request_deadline() {
        let emu = Emulator::builder()
            .max_connections(3)
            .request_timeout(Duration::from_millis(800))
            .start()
            .unwrap();
        let api = Api::new(&emu);
        let addr = emu.local_addr();
        let slow: Vec<_> = [true, true, false]
            .into_iter()
            .map(|send| std::thread::spawn(move || slowloris(addr, send)))
            .collect();
        assert!(eventually(|| emu.open_connections() == 3));
        // Every slot is taken; a normal client is served once the slow ones are cut.
        let get = format!(
            "GET /api/v1/devices/select HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Connection: close\r\n\r\n",
            api.token
        );
        assert!(eventually(
            || exchange(addr, get.as_bytes(), TIMEOUT).starts_with("HTTP/1.1 200 ")
        ));
        for (i, client) in slow.into_iter().enumerate() {
            let answer = client.join().unwrap();
            let answer = answer.unwrap_or_else(|| panic!("slow client {i} was never cut"));
            assert!(answer.starts_with("HTTP/1.1 408 "), "{i}: {answer:?}");
        }
        // A request that arrives in pieces, but in time, is served.
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        for piece in get.as_bytes().chunks(get.len() / 3) {
            tcp.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut out = String::new();
        let _ = tcp.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    }

    /// Before: `Transfer-Encoding` won over `Content-Length` and the connection stayed
    /// open, so a smuggled second request was answered; `+2` parsed as a length; `gzip,
    /// chunked` was read as chunked; HTTP/1.0 with a chunked body was kept alive.
    #[test]
    fn ambiguous_framing_is_refused_and_the_connection_closed() {
        let (emu, api) = emulator();
        let auth = format!("Authorization: Bearer {}\r\n", api.token);
        let addr = emu.local_addr();
        let select = format!("GET /api/v1/devices/select HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
        let cases = [
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "HTTP/1.1",
                "400",
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
                "HTTP/1.1",
                "400",
            ),
            ("Content-Length: +2\r\n\r\n{}", "HTTP/1.1", "400"),
            ("Content-Length: 0x2\r\n\r\n{}", "HTTP/1.1", "400"),
            ("Content-Length: 2, 2\r\n\r\n{}", "HTTP/1.1", "400"),
            (
                "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
                "HTTP/1.1",
                "400",
            ),
            (
                "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                "HTTP/1.1",
                "501",
            ),
            (
                "Transfer-Encoding: chunked, gzip\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                "HTTP/1.1",
                "400",
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                "HTTP/1.1",
                "501",
            ),
            (
                "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                "HTTP/1.0",
                "400",
            ),
        ];
        for (framing, version, status) in cases {
            let request = format!(
                "POST /api/v1/devices/insert {version}\r\nHost: x\r\n{auth}{framing}{select}"
            );
            let answer = exchange(addr, request.as_bytes(), TIMEOUT);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{framing:?}: {answer}"
            );
            assert!(answer.contains("Connection: close\r\n"), "{answer}");
            assert_eq!(responses(&answer), 1, "{framing:?}: answered on: {answer}");
        }
        assert!(emu.devices().is_empty());
        // Strict framing still takes every well-formed body.
        let request = format!(
            "POST /api/v1/devices/drop HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: \
             application/json\r\nContent-Length: 2\r\n\r\n{{}}{select}"
        );
        let answer = exchange(addr, request.as_bytes(), Duration::from_millis(500));
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    }

    /// Before: the last of several `access_token` parameters counted.
    #[test]
    fn a_repeated_access_token_is_refused() {
        let (emu, api) = emulator();
        let token = &api.token;
        for query in [
            format!("access_token=wrong&access_token={token}"),
            format!("access_token={token}&access_token={token}"),
        ] {
            let request = format!(
                "GET /api/v1/stream/upstream?{query} HTTP/1.1\r\nHost: x\r\n\
                 Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            );
            let answer = exchange(emu.local_addr(), request.as_bytes(), TIMEOUT);
            assert!(answer.starts_with("HTTP/1.1 400 "), "{query}: {answer}");
            assert!(answer.contains("more than once"), "{answer}");
        }
        assert_eq!(emu.upstream_connections(), 0);
        // One token still opens the stream.
        let url = stream_url(&emu, "upstream", token);
        assert!(try_connect(&emu, &url).is_ok());
    }

    fn insert_with_details(api: &Api, n: u64, details_len: usize) {
        let details = serde_json::to_string(&"x".repeat(details_len)).unwrap();
        for i in 0..n {
            api.ok(
                "devices/insert",
                json!({"DevEUI": format!("{:016x}", 0x1000 + i), "DevAddr": "01020304",
                       "Details": details}),
            );
        }
    }

    /// Before: a select answered the whole table in one body, however large (10 000
    /// devices with 16 KiB of details: 162 MB).
    #[test]
    fn a_select_answer_has_a_size_cap_and_pages_get_under_it() {
        let emu = Emulator::builder()
            .max_response_size(64 * 1024)
            .start()
            .unwrap();
        let api = Api::new(&emu);
        insert_with_details(&api, 40, 2000);
        let (status, body) = api.get("devices/select", &[]);
        assert_error(&(status, body.clone()), 400, "Emulator.ResponseTooLarge");
        assert!(
            body["detail"]["error_description"]
                .as_str()
                .unwrap()
                .contains("offset and limit"),
            "{body}"
        );
        assert_eq!(
            api.get("devices/select", &[("limit", "1000")]).0,
            400,
            "an explicit limit is capped the same"
        );
        let mut all = Vec::new();
        loop {
            let offset = all.len().to_string();
            let (status, page) = api.get("devices/select", &[("offset", &offset), ("limit", "10")]);
            assert_eq!(status, 200, "{page}");
            let page = page.as_array().unwrap().clone();
            if page.is_empty() {
                break;
            }
            all.extend(page);
        }
        assert_eq!(all.len(), 40);
        // The emulator's own view is not capped.
        assert_eq!(emu.devices().len(), 40);
    }

    #[test]
    fn the_device_limit_has_a_default_and_can_be_lifted() {
        let (emu, api) = emulator();
        assert_eq!(
            ran_routing_emulator::DEFAULT_DEVICE_LIMIT,
            200_000,
            "documented in the README"
        );
        insert_with_details(&api, 3, 0);
        assert_eq!(emu.devices().len(), 3);
        let emu = Emulator::builder().device_limit(2).start().unwrap();
        let api = Api::new(&emu);
        insert_with_details(&api, 2, 0);
        let answer = api.post(
            "devices/insert",
            json!({"DevEUI": "00000000000000ff", "DevAddr": "01020304"}),
        );
        assert_error(&answer, 403, "Device.LimitExhausted");
        let emu = Emulator::builder().device_limit(None).start().unwrap();
        insert_with_details(&Api::new(&emu), 3, 0);
        assert_eq!(emu.devices().len(), 3);
    }

    #[test]
    fn rest_latency_delays_the_rest_api_only() {
        let latency = Duration::from_secs(2);
        let emu = Emulator::builder().rest_latency(latency).start().unwrap();
        let api = Api::new(&emu);
        let started = Instant::now();
        assert_eq!(api.get("devices/select", &[]).0, 200);
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
        let started = Instant::now();
        assert_eq!(api.get("devices/nope", &[]).0, 404);
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
        // The control API and the streams answer without it (bounds far from the
        // latency, so a slow machine does not fail them).
        let started = Instant::now();
        ControlClient::new(emu.control_url()).status().unwrap();
        let _up = connect(&emu, "upstream");
        assert!(started.elapsed() < latency, "{:?}", started.elapsed());
        let emu = Emulator::start().unwrap();
        let started = Instant::now();
        assert_eq!(Api::new(&emu).get("devices/select", &[]).0, 200);
        assert!(started.elapsed() < latency, "no latency by default");
    }
}
