//! The emulator's radio devices: realistic upstreams with the true MIC among decoys, and
//! verdicts on the answers. The LNS side is a raw `tungstenite` client that computes MICs
//! with the `mic` module's functions from the keys alone, so the emulator's frames are
//! checked independently of how it built them; the last test runs the crate's client and
//! solver end to end.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ran_routing::mic::{self, AesKey, KeyStore, Keys, Session};
use ran_routing::{
    Core, DevAddr, DevEui, DeviceUpdate, JoinEui, NewDevice, Select, UpstreamRejectResultCode,
};
use ran_routing_emulator::{ControlClient, Emulator, Error, RadioDevice, UpstreamVerdict};
use serde_json::json;
use support::*;

const APP_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const NWK_S_KEY_A: &str = "000102030405060708090a0b0c0d0e0f";
const NWK_S_KEY_B: &str = "f0e0d0c0b0a090807060504030201000";

fn key(hex: &str) -> AesKey {
    hex.parse().unwrap()
}

/// An upstream frame as the LNS sees it.
struct Upstream {
    transaction_id: u64,
    dev_euis: Vec<u64>,
    payload: Vec<u8>,
    challenge: Vec<u32>,
}

fn read_upstream(ws: &mut Ws) -> Upstream {
    let v = next_json(ws);
    let u64s = |key: &str| -> Vec<u64> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {v}"))
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    Upstream {
        transaction_id: v["TransactionID"].as_u64().unwrap(),
        dev_euis: u64s("DevEUIs"),
        payload: u64s("PHYPayloadNoMIC").iter().map(|&b| b as u8).collect(),
        challenge: u64s("MICChallenge").iter().map(|&m| m as u32).collect(),
    }
}

fn ack(ws: &mut Ws, transaction_id: u64, dev_eui: u64, mic: u32) {
    send_json(
        ws,
        json!({"ProtocolVersion": 1, "TransactionID": transaction_id, "DevEUI": dev_eui, "MIC": mic}),
    );
}

fn reject(ws: &mut Ws, transaction_id: u64, code: &str) {
    send_json(
        ws,
        json!({"ProtocolVersion": 1, "TransactionID": transaction_id, "ResultCode": code}),
    );
}

/// Subscribes the device as its LNS would (the RAN routes only subscribed devices'
/// traffic) and puts it on the air.
fn on_air(emu: &Emulator, device: RadioDevice) {
    subscribe(emu, &device);
    emu.add_radio_device(device).unwrap();
}

fn subscribe(emu: &Emulator, device: &RadioDevice) {
    let api = Api::new(emu);
    let dev_eui = device.dev_eui().to_string();
    let body = match (device.join_eui(), device.dev_addr()) {
        (Some(join_eui), _) => json!({"DevEUI": dev_eui, "JoinEUI": join_eui.to_string()}),
        (None, Some(dev_addr)) => json!({"DevEUI": dev_eui, "DevAddr": dev_addr.to_string()}),
        (None, None) => unreachable!("a radio device has keys"),
    };
    let (status, answer) = api.post("devices/insert", body);
    assert_eq!(status, 200, "{answer}");
    if let (Some(join_eui), Some(dev_addr)) = (device.join_eui(), device.dev_addr()) {
        let body = json!({"DevEUI": dev_eui, "JoinEUI": join_eui.to_string(),
                          "ActiveDevAddr": dev_addr.to_string()});
        let (status, answer) = api.post("devices/update", body);
        assert_eq!(status, 200, "{answer}");
    }
}

fn verdict(emu: &Emulator, transaction_id: u64) -> UpstreamVerdict {
    emu.wait_upstream_verdict(transaction_id, TIMEOUT)
        .expect("a played upstream")
}

/// The true MIC must be among the candidates exactly once, and the candidates distinct.
fn assert_hidden_once(up: &Upstream, mic: u32) {
    assert_eq!(up.challenge.iter().filter(|&&c| c == mic).count(), 1);
    assert_eq!(
        up.challenge.iter().collect::<HashSet<_>>().len(),
        up.challenge.len()
    );
}

#[test]
fn join_requests_hide_the_true_mic_and_take_the_next_dev_nonce() {
    let emu = Emulator::start().unwrap();
    let (dev_eui, join_eui) = (
        DevEui::new(0x0004a30b001c0530),
        JoinEui::new(0x70b3d57ed0000001),
    );
    on_air(
        &emu,
        RadioDevice::otaa(dev_eui, join_eui, key(APP_KEY)).dev_nonce(0x00ff),
    );
    let mut ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));

    let mut sizes = Vec::new();
    for nonce in 0x00ffu16..0x0103 {
        let tid = emu.play_join_request(dev_eui).unwrap();
        let up = read_upstream(&mut ws);
        assert_eq!(up.transaction_id, tid);
        assert_eq!(up.dev_euis, [dev_eui.get()]);
        // MHDR | JoinEUI | DevEUI | DevNonce, little-endian on air.
        assert_eq!(up.payload.len(), 19);
        assert_eq!(up.payload[0], 0x00);
        assert_eq!(&up.payload[1..9], &join_eui.get().to_le_bytes());
        assert_eq!(&up.payload[9..17], &dev_eui.get().to_le_bytes());
        assert_eq!(&up.payload[17..19], &nonce.to_le_bytes());
        let mic = mic::join_request_mic(&key(APP_KEY), &up.payload).unwrap();
        assert_hidden_once(&up, mic);
        sizes.push(up.challenge.len());
        ack(&mut ws, tid, dev_eui.get(), mic);
        assert_eq!(verdict(&emu, tid), UpstreamVerdict::Solved);
        let played = emu.played_upstream(tid).unwrap();
        assert_eq!(
            (played.dev_eui, played.mic, played.fcnt),
            (dev_eui, mic, None)
        );
    }
    // The RAN narrows the challenge while the LNS keeps solving.
    assert_eq!(sizes, [4096, 2048, 1024, 512]);
    assert_eq!(
        emu.radio_device(dev_eui).unwrap().next_dev_nonce(),
        Some(0x0103)
    );
    let stats = emu.mic_stats();
    assert_eq!((stats.played, stats.solved, stats.unanswered()), (4, 4, 0));
}

#[test]
fn data_uplinks_count_past_65535() {
    let emu = Emulator::start().unwrap();
    emu.set_mic_challenge_size(4096, 4096).unwrap();
    let (dev_eui, dev_addr) = (DevEui::new(0x0004a30b001c0531), DevAddr::new(0x26011bda));
    on_air(
        &emu,
        RadioDevice::abp(dev_eui, dev_addr, key(NWK_S_KEY_A), 65_534),
    );
    let mut ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));

    for (i, fcnt) in [65_534u32, 65_535, 65_536, 65_537].into_iter().enumerate() {
        let confirmed = i % 2 == 1;
        let tid = if confirmed {
            emu.play_confirmed_uplink(dev_eui, 2, vec![i as u8; 3])
                .unwrap()
        } else {
            emu.play_uplink(dev_eui, 2, vec![i as u8; 3]).unwrap()
        };
        let up = read_upstream(&mut ws);
        assert_eq!(up.transaction_id, tid);
        assert_eq!(up.dev_euis, [dev_eui.get()]);
        assert_eq!(up.challenge.len(), 4096);
        // MHDR | DevAddr | FCtrl | FCnt (low 16 bits) | FPort | FRMPayload.
        assert_eq!(up.payload[0], if confirmed { 0x80 } else { 0x40 });
        assert_eq!(&up.payload[1..5], &dev_addr.get().to_le_bytes());
        assert_eq!(&up.payload[6..8], &(fcnt as u16).to_le_bytes());
        assert_eq!(&up.payload[8..], &[2, i as u8, i as u8, i as u8]);
        let mic = mic::data_uplink_mic(&key(NWK_S_KEY_A), &up.payload, fcnt).unwrap();
        assert_hidden_once(&up, mic);
        // The 16-bit counter alone gives the wrong MIC past the rollover.
        if fcnt > 0xffff {
            let wrong = mic::data_uplink_mic(&key(NWK_S_KEY_A), &up.payload, fcnt & 0xffff);
            assert!(!up.challenge.contains(&wrong.unwrap()));
        }
        ack(&mut ws, tid, dev_eui.get(), mic);
        assert_eq!(verdict(&emu, tid), UpstreamVerdict::Solved);
        assert_eq!(emu.played_upstream(tid).unwrap().fcnt, Some(fcnt));
    }
    assert_eq!(emu.radio_device(dev_eui).unwrap().fcnt(), Some(65_538));
}

#[test]
fn devices_sharing_a_dev_addr_are_all_candidates() {
    let emu = Emulator::start().unwrap();
    let shared_addr = DevAddr::new(0x26000001);
    let (a, b, c) = (DevEui::new(0xa), DevEui::new(0xb), DevEui::new(0xc));
    // The RAN lists the subscribed devices with the address, in table order.
    on_air(&emu, RadioDevice::abp(a, shared_addr, key(NWK_S_KEY_A), 0));
    on_air(&emu, RadioDevice::abp(b, shared_addr, key(NWK_S_KEY_B), 10));
    on_air(
        &emu,
        RadioDevice::abp(c, DevAddr::new(0x26000002), key(NWK_S_KEY_A), 0),
    );
    // An OTAA device that has joined with the same address.
    let d = DevEui::new(0xd);
    on_air(
        &emu,
        RadioDevice::otaa(d, JoinEui::new(1), key(APP_KEY)).with_session(
            shared_addr,
            key(APP_KEY),
            0,
        ),
    );
    let mut ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));

    let tid = emu.play_uplink(b, 1, *b"hi").unwrap();
    let up = read_upstream(&mut ws);
    assert_eq!(up.dev_euis, [a.get(), b.get(), d.get()]);
    let mic_b = mic::data_uplink_mic(&key(NWK_S_KEY_B), &up.payload, 10).unwrap();
    let mic_a = mic::data_uplink_mic(&key(NWK_S_KEY_A), &up.payload, 10).unwrap();
    assert_hidden_once(&up, mic_b);
    assert!(!up.challenge.contains(&mic_a));
    // The true MIC with another candidate's DevEUI is still wrong.
    ack(&mut ws, tid, a.get(), mic_b);
    assert_eq!(
        verdict(&emu, tid),
        UpstreamVerdict::WrongAck {
            dev_eui: a,
            mic: mic_b
        }
    );
    assert_eq!(emu.mic_stats().wrong_acks, 1);

    // The OTAA device plays both kinds.
    emu.play_join_request(d).unwrap();
    assert_eq!(read_upstream(&mut ws).dev_euis, [d.get()]);
    emu.play_uplink(d, 1, []).unwrap();
    assert_eq!(read_upstream(&mut ws).dev_euis, [a.get(), b.get(), d.get()]);
}

#[test]
fn wrong_acks_rejects_and_duplicates_are_counted() {
    let emu = Emulator::start().unwrap();
    emu.set_mic_challenge_size(8, 64).unwrap();
    let dev_eui = DevEui::new(0x77);
    on_air(
        &emu,
        RadioDevice::otaa(dev_eui, JoinEui::new(7), key(APP_KEY)),
    );
    let mut ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    let play = |ws: &mut Ws| {
        let tid = emu.play_join_request(dev_eui).unwrap();
        let up = read_upstream(ws);
        let mic = mic::join_request_mic(&key(APP_KEY), &up.payload).unwrap();
        (tid, up, mic)
    };

    // A decoy instead of the true MIC.
    let (tid, up, mic) = play(&mut ws);
    assert_eq!(up.challenge.len(), 64);
    let decoy = *up.challenge.iter().find(|&&c| c != mic).unwrap();
    ack(&mut ws, tid, dev_eui.get(), decoy);
    assert_eq!(
        verdict(&emu, tid),
        UpstreamVerdict::WrongAck {
            dev_eui,
            mic: decoy
        }
    );
    // Answered twice: the first answer stands.
    ack(&mut ws, tid, dev_eui.get(), mic);

    let (tid, up, mic) = play(&mut ws);
    assert_eq!(
        up.challenge.len(),
        64,
        "a failure widens the challenge again"
    );
    ack(&mut ws, tid, dev_eui.get(), mic);
    assert_eq!(verdict(&emu, tid), UpstreamVerdict::Solved);

    let (tid, up, _) = play(&mut ws);
    assert_eq!(up.challenge.len(), 32);
    reject(&mut ws, tid, "MICFailed");
    assert_eq!(
        verdict(&emu, tid),
        UpstreamVerdict::Rejected(UpstreamRejectResultCode::MicFailed)
    );

    let (tid, up, _) = play(&mut ws);
    assert_eq!(up.challenge.len(), 64);
    reject(&mut ws, tid, "Other");
    assert_eq!(
        verdict(&emu, tid),
        UpstreamVerdict::Rejected(UpstreamRejectResultCode::Other)
    );

    // Left unanswered.
    let (tid, _, _) = play(&mut ws);
    assert_eq!(
        emu.wait_upstream_verdict(tid, Duration::from_millis(50)),
        Some(UpstreamVerdict::Unanswered)
    );
    assert!(!emu.wait_upstream_verdicts(Duration::from_millis(50)));

    assert!(eventually(|| emu.mic_stats().duplicate_replies == 1));
    let stats = emu.mic_stats();
    assert_eq!(stats.played, 5);
    assert_eq!(stats.solved, 1);
    assert_eq!(stats.wrong_acks, 1);
    assert_eq!(stats.mic_failed, 1);
    assert_eq!(stats.other_rejects, 1);
    assert_eq!(stats.unanswered(), 1);
    // Replies to upstreams the emulator never sent are not judged, but counted (and
    // logged at warn): a confused LNS shows.
    assert_eq!(stats.unknown_replies, 0);
    assert_eq!(emu.played_upstream(5).map(|p| p.verdict), None);
    ack(&mut ws, 5, 1, 1);
    assert!(eventually(|| emu.upstream_replies().len() == 6));
    let mut expected = stats;
    expected.unknown_replies = 1;
    assert_eq!(emu.mic_stats(), expected);
    let status = ControlClient::new(emu.control_url());
    let raw = Control::at(format!("{}radio/", emu.control_url()));
    assert_eq!(raw.get("stats").1["unknown_replies"], 1);
    assert_eq!(status.mic_stats().unwrap().unknown_replies, 1);
    let root = Control::at(emu.control_url());
    assert_eq!(root.get("status").1["unknown_upstream_replies"], 1);
}

#[test]
fn bad_plays_fail_with_typed_errors() {
    let emu = Emulator::start().unwrap();
    let (otaa, abp) = (DevEui::new(1), DevEui::new(2));
    on_air(&emu, RadioDevice::otaa(otaa, JoinEui::new(1), key(APP_KEY)));
    on_air(
        &emu,
        RadioDevice::abp(abp, DevAddr::new(2), key(NWK_S_KEY_A), 0),
    );
    let invalid = |r: Result<u64, Error>| matches!(r, Err(Error::Invalid(_)));
    assert!(invalid(emu.play_join_request(DevEui::new(3))));
    assert!(invalid(emu.play_join_request(abp)));
    assert!(invalid(emu.play_uplink(otaa, 1, [])));
    assert!(invalid(emu.play_uplink(abp, 1, vec![0; 300])));
    assert!(emu.set_mic_challenge_size(1, 4096).is_err());
    assert!(emu.set_mic_challenge_size(64, 32).is_err());

    // No upstream connection: nothing is played, and nothing used up, so the next
    // play takes the same DevNonce and FCnt.
    assert!(matches!(emu.play_uplink(abp, 1, []), Err(Error::Closed(_))));
    assert!(matches!(emu.play_join_request(otaa), Err(Error::Closed(_))));
    assert_eq!(emu.mic_stats().played, 0);
    assert_eq!(emu.radio_device(abp).unwrap().fcnt(), Some(0));
    assert_eq!(emu.radio_device(otaa).unwrap().next_dev_nonce(), Some(0));
    assert_eq!(emu.radio_device(otaa).unwrap().pending_dev_nonce(), None);

    // Re-adding a device is refused; replacing it is explicit.
    let other = RadioDevice::abp(abp, DevAddr::new(2), key(NWK_S_KEY_B), 9);
    assert!(matches!(
        emu.add_radio_device(other.clone()),
        Err(Error::Invalid(_))
    ));
    assert_eq!(emu.radio_device(abp).unwrap().fcnt(), Some(0));
    assert!(emu.replace_radio_device(other));
    assert_eq!(emu.radio_device(abp).unwrap().fcnt(), Some(9));

    assert!(emu.remove_radio_device(abp));
    assert!(!emu.remove_radio_device(abp));
    assert!(emu.radio_device(abp).is_none());
}

#[test]
fn keys_never_appear_in_debug() {
    let emu = Emulator::start().unwrap();
    let device = RadioDevice::otaa(DevEui::new(1), JoinEui::new(1), key(APP_KEY)).with_session(
        DevAddr::new(1),
        key(NWK_S_KEY_A),
        0,
    );
    on_air(&emu, device.clone());
    for text in [
        format!("{device:?}"),
        format!("{:?}", emu.radio_device(DevEui::new(1))),
        format!("{emu:?}"),
    ] {
        let lower = text.to_lowercase();
        assert!(!lower.contains(&APP_KEY[..8]), "{text}");
        assert!(!lower.contains(&NWK_S_KEY_A[..8]), "{text}");
    }
}

#[test]
fn control_api_plays_and_judges() {
    let emu = Emulator::start().unwrap();
    let control = ControlClient::new(emu.control_url());
    let raw = Control::at(format!("{}radio/", emu.control_url()));
    let otaa = DevEui::new(0x0004a30b001c0530);
    let abp = DevEui::new(0x0004a30b001c0531);
    subscribe(
        &emu,
        &RadioDevice::otaa(otaa, JoinEui::new(0x70b3d57ed0000001), key(APP_KEY)),
    );
    subscribe(
        &emu,
        &RadioDevice::abp(abp, DevAddr::new(0x26011bda), key(NWK_S_KEY_A), 0),
    );
    control
        .add_radio_device(&RadioDevice::otaa(
            otaa,
            JoinEui::new(0x70b3d57ed0000001),
            key(APP_KEY),
        ))
        .unwrap();
    // The raw body the typed client sends, as a test in another language would.
    let (status, answer) = raw.post_json(
        "devices",
        json!({"dev_eui": "0004a30b001c0531", "dev_addr": "26011bda",
               "nwk_s_key": NWK_S_KEY_A, "fcnt": 70000}),
    );
    assert_eq!(status, 200, "{answer}");
    // Posting it again would silently change its keys: refused unless said explicitly.
    let again = json!({"dev_eui": "0004a30b001c0531", "dev_addr": "26011bda",
                       "nwk_s_key": NWK_S_KEY_B, "fcnt": 5});
    let answer = raw.post_json("devices", again.clone());
    assert_error(&answer, 409, "Emulator.RadioDeviceExists");
    assert!(answer.1.to_string().contains("replace"), "{}", answer.1);
    assert!(!answer.1.to_string().contains(&NWK_S_KEY_B[..8]));
    assert_eq!(emu.radio_device(abp).unwrap().fcnt(), Some(70000));
    let mut replace = again;
    replace["replace"] = json!(true);
    let (status, answer) = raw.post_json("devices", replace);
    assert_eq!(
        (status, &answer["replaced"]),
        (200, &json!(true)),
        "{answer}"
    );
    assert_eq!(emu.radio_device(abp).unwrap().fcnt(), Some(5));
    let (status, answer) = raw.post_json(
        "devices",
        json!({"dev_eui": "0004a30b001c0531", "dev_addr": "26011bda",
               "nwk_s_key": NWK_S_KEY_A, "fcnt": 70000, "replace": true}),
    );
    assert_eq!(status, 200, "{answer}");
    control.set_mic_challenge_size(16, 16).unwrap();
    let devices = control.radio_devices().unwrap();
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert_eq!(devices[0].join_eui, Some(JoinEui::new(0x70b3d57ed0000001)));
    assert_eq!(devices[0].next_dev_nonce, Some(0));
    assert_eq!(devices[1].dev_addr, Some(DevAddr::new(0x26011bda)));
    assert_eq!(devices[1].fcnt, Some(70000));
    assert_eq!(devices[1].candidates, 16);
    assert!(!raw.get("devices").1.to_string().contains(&APP_KEY[..8]));

    // Nothing listens yet.
    assert!(matches!(
        control.play_uplink(abp, 3, &[0xca, 0xfe], false),
        Err(Error::Closed(_))
    ));
    let body = json!({"dev_eui": "0004a30b001c0531", "fport": 3, "payload_hex": "cafe"});
    assert_error(
        &raw.post_json("uplink", body),
        503,
        "Emulator.NoUpstreamConnection",
    );

    let mut ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    let played = control.play_uplink(abp, 3, &[0xca, 0xfe], true).unwrap();
    let tid = played.transaction_id;
    // The plays refused with 503 above used up no frame counter.
    assert_eq!(played.fcnt, Some(70_000));
    assert_eq!(played.candidates, 16);
    assert_eq!(played.verdict, UpstreamVerdict::Unanswered);
    let up = read_upstream(&mut ws);
    assert_eq!(up.transaction_id, tid);
    assert_eq!(up.payload[0], 0x80);
    assert_eq!(&up.payload[8..], &[3, 0xca, 0xfe]);
    let mic = mic::data_uplink_mic(&key(NWK_S_KEY_A), &up.payload, 70_000).unwrap();
    assert_eq!(played.mic, mic);
    ack(&mut ws, tid, 0x0004a30b001c0531, mic);
    assert_eq!(verdict(&emu, tid), UpstreamVerdict::Solved);
    assert_eq!(
        control.played_upstream(tid).unwrap().map(|p| p.verdict),
        Some(UpstreamVerdict::Solved)
    );

    let played = control.play_join_request(otaa).unwrap();
    let tid = played.transaction_id;
    assert_eq!(read_upstream(&mut ws).transaction_id, tid);
    reject(&mut ws, tid, "MICFailed");
    assert_eq!(
        verdict(&emu, tid),
        UpstreamVerdict::Rejected(UpstreamRejectResultCode::MicFailed)
    );
    assert_eq!(
        control.played_upstream(tid).unwrap(),
        emu.played_upstream(tid)
    );
    let answer = raw.get(&format!("upstreams/{tid}")).1;
    assert_eq!(answer["verdict"], "Rejected", "{answer}");
    assert_eq!(answer["result_code"], "MICFailed", "{answer}");
    let stats = control.mic_stats().unwrap();
    assert_eq!(stats, emu.mic_stats());
    assert_eq!((stats.played, stats.solved, stats.mic_failed), (2, 1, 1));
    assert_eq!(stats.unanswered(), 0);
    assert_eq!(raw.get("stats").1["unanswered"], 0);

    // Bad input: 422, and a mistyped key is never echoed.
    let bad_key = "2b7e151628aed2a6abf7158809cf4f3g";
    let answer = raw.post_json(
        "devices",
        json!({"dev_eui": "0000000000000001", "join_eui": "0000000000000002", "app_key": bad_key}),
    );
    assert_error(&answer, 422, "ValidationFailed");
    assert!(
        !answer.1.to_string().contains(&bad_key[..8]),
        "{}",
        answer.1
    );
    for body in [
        json!({"dev_eui": "0000000000000001"}),
        json!({"dev_eui": "0000000000000001", "join_eui": "0000000000000002"}),
        json!({"dev_eui": "0000000000000001", "dev_addr": "00000002", "nwk_s_key": NWK_S_KEY_A, "dev_nonce": 1}),
        json!({"dev_eui": "0000000000000001", "join_eui": "0000000000000002", "app_key": APP_KEY, "extra": 1}),
    ] {
        assert_error(&raw.post_json("devices", body), 422, "ValidationFailed");
    }
    let uplink = |hex: &str| json!({"dev_eui": "0004a30b001c0531", "fport": 1, "payload_hex": hex});
    assert_error(
        &raw.post_json("uplink", uplink("abc")),
        422,
        "ValidationFailed",
    );
    assert_error(
        &raw.post_json("uplink", json!({"dev_eui": "0000000000000099", "fport": 1})),
        422,
        "ValidationFailed",
    );
    assert_error(
        &raw.post_json("challenge-size", json!({"min": 1, "max": 2})),
        422,
        "ValidationFailed",
    );
    assert_error(&raw.get("upstreams/5"), 404, "Emulator.UnknownUpstream");
    assert_error(&raw.get("downlinks/5"), 404, "Emulator.UnknownDownlink");
    assert_error(&raw.get("upstreams/x"), 422, "ValidationFailed");
    assert_error(&raw.get("nothing"), 404, "Unknown");
    assert_error(&raw.get("uplink"), 405, "Unknown");
    assert_error(&raw.post_json("upstreams/1", json!({})), 405, "Unknown");

    assert!(control.remove_radio_device(otaa).unwrap());
    assert_error(
        &raw.delete("devices/0004a30b001c0530"),
        404,
        "Emulator.UnknownRadioDevice",
    );
    assert_eq!(control.radio_devices().unwrap().len(), 1);
}

/// The crate's client and solver, end to end: four LNS workers on one upstream
/// connection answer every uplink of a small fleet correctly, past the 16-bit counter
/// rollover, and reject the device whose key they do not have.
#[test]
fn client_and_solver_answer_every_upstream() {
    let emu = Emulator::start().unwrap();
    // Each wrong key tried is a 1 in 2^32 / candidates chance of hitting a decoy; small
    // challenges keep that chance out of this test.
    emu.set_mic_challenge_size(2, 64).unwrap();
    let shared_addr = DevAddr::new(0x26000100);
    let otaa = DevEui::new(0x100);
    let abp: Vec<DevEui> = (0x101..0x104).map(DevEui::new).collect();
    let stranger = DevEui::new(0x1ff);
    let nwk_keys = [key(NWK_S_KEY_A), key(NWK_S_KEY_B), key(APP_KEY)];

    let keys = Keys::new();
    keys.set_join_key(otaa, key(APP_KEY));
    on_air(&emu, RadioDevice::otaa(otaa, JoinEui::new(1), key(APP_KEY)));
    for (i, (&dev_eui, nwk_s_key)) in abp.iter().zip(&nwk_keys).enumerate() {
        let start = 65_530 + i as u32;
        keys.set_session(
            dev_eui,
            Session::new(nwk_s_key.clone()).with_fcnt_up(start - 1),
        );
        on_air(
            &emu,
            RadioDevice::abp(dev_eui, shared_addr, nwk_s_key.clone(), start),
        );
    }
    // On the air with the shared address, but the LNS has a stale key for it.
    keys.set_session(stranger, Session::new(AesKey::new([0x55; 16])));
    on_air(
        &emu,
        RadioDevice::abp(stranger, shared_addr, AesKey::new([0x66; 16]), 0),
    );

    let core = Core::new(emu.token(), &emu.base_url()).unwrap();
    let upstream = Arc::new(core.upstream().connect().unwrap());
    // Shared as is: the store locks per device, so the workers need no lock around it.
    let keys = Arc::new(keys);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (upstream, keys) = (upstream.clone(), keys.clone());
            std::thread::spawn(move || {
                for msg in upstream.iter() {
                    let outcome = mic::solve(&*keys, &msg);
                    if let Ok(solved) = &outcome {
                        keys.record(solved);
                    }
                    upstream.send(mic::reply(&msg, &outcome)).unwrap();
                }
            })
        })
        .collect();
    assert!(emu.wait_upstream_connections(1, TIMEOUT));

    let mut expected = Vec::new();
    for round in 0..12u8 {
        expected.push((emu.play_join_request(otaa).unwrap(), true));
        for &dev_eui in &abp {
            let tid = if round % 3 == 0 {
                emu.play_confirmed_uplink(dev_eui, 1, [round]).unwrap()
            } else {
                emu.play_uplink(dev_eui, 1, [round]).unwrap()
            };
            expected.push((tid, true));
        }
        expected.push((emu.play_uplink(stranger, 1, [round]).unwrap(), false));
    }
    assert!(emu.wait_upstream_verdicts(TIMEOUT), "{:?}", emu.mic_stats());
    for (tid, solvable) in expected {
        let want = if solvable {
            UpstreamVerdict::Solved
        } else {
            UpstreamVerdict::Rejected(UpstreamRejectResultCode::MicFailed)
        };
        assert_eq!(
            emu.played_upstream(tid).map(|p| p.verdict),
            Some(want),
            "upstream {tid}"
        );
    }
    let stats = emu.mic_stats();
    assert_eq!((stats.played, stats.solved, stats.mic_failed), (60, 48, 12));
    // Every ABP device crossed the 16-bit rollover, and the LNS followed.
    for &dev_eui in &abp {
        let fcnt_up = keys.session(dev_eui).unwrap().fcnt_up;
        assert!(fcnt_up > Some(0xffff), "{dev_eui}: {fcnt_up:?}");
        assert_eq!(
            fcnt_up.map(|f| f + 1),
            emu.radio_device(dev_eui).unwrap().fcnt()
        );
    }

    upstream.close();
    for worker in workers {
        worker.join().unwrap();
    }
}

// --- OTAA end to end, and the routing rules, with the crate's client and solver -------

/// Emulated time runs five times faster: JoinAcceptDelay1 (5 s) is 1 s, RX1 of a data
/// downlink with RxDelay 5 is 1 s.
const TIME_SCALE: f64 = 0.2;
const WAIT: Duration = Duration::from_secs(10);
const NET_ID: u32 = 0x000013;

/// A small LNS: one upstream and one downstream connection and a key store.
struct Lns {
    core: Core,
    upstream: ran_routing::UpstreamConnection,
    downstream: ran_routing::DownstreamConnection,
    keys: Keys,
}

impl Lns {
    fn new(emu: &Emulator) -> Self {
        let core = Core::new(emu.token(), &emu.base_url()).unwrap();
        let upstream = core.upstream().connect().unwrap();
        let downstream = core.downstream().connect().unwrap();
        assert!(emu.wait_upstream_connections(1, TIMEOUT));
        assert!(emu.wait_downstream_connections(1, TIMEOUT));
        Self {
            core,
            upstream,
            downstream,
            keys: Keys::new(),
        }
    }

    /// Takes the next upstream, solves it with its keys and acks or rejects it.
    fn answer(&mut self) -> (ran_routing::UpstreamMessage, Option<mic::Solved>) {
        let msg = self.upstream.recv_timeout(WAIT).expect("an upstream");
        let outcome = mic::Solver::new().solve(&self.keys, &msg);
        if let Ok(solved) = &outcome {
            self.keys.record(solved);
        }
        self.upstream.send(mic::reply(&msg, &outcome)).unwrap();
        (msg, outcome.ok())
    }

    /// Answers a join request with a join accept granting `dev_addr`, timed `delay`
    /// seconds after it, encrypted with `app_key` and carrying `target` as
    /// TargetDevAddr. Returns the downlink's id, its result and the session keys for
    /// the request's DevNonce.
    fn join_accept(
        &self,
        join_request: &ran_routing::UpstreamMessage,
        dev_eui: DevEui,
        app_key: &AesKey,
        dev_addr: DevAddr,
        delay: u8,
        target: Option<DevAddr>,
    ) -> (u64, ran_routing::DownstreamResult, mic::SessionKeys) {
        let p = &join_request.phy_payload_no_mic;
        let dev_nonce = u16::from_le_bytes([p[17], p[18]]);
        let accept = mic::JoinAccept::new(0x00abcd, NET_ID, dev_addr)
            .unwrap()
            .with_rx_delay(5)
            .unwrap();
        let keys = accept.session_keys(app_key, dev_nonce);
        let tid = self.core.next_transaction_id();
        let mut downlink = ran_routing::DownstreamMessage::new(
            tid,
            dev_eui,
            rx_window(join_request, delay),
            accept.encrypt(app_key),
        );
        downlink.target_dev_addr = target;
        let result = self.downstream.send_and_wait(downlink, WAIT).unwrap();
        (tid, result, keys)
    }

    /// Answers a confirmed uplink with an ACK downlink in RX1, `delay` seconds after it.
    fn ack_downlink(
        &self,
        uplink: &ran_routing::UpstreamMessage,
        dev_eui: DevEui,
        dev_addr: DevAddr,
        delay: u8,
    ) -> (u64, ran_routing::DownstreamResult) {
        // An ACK signed with the device's session and its next FCntDown.
        let (session, fcnt_down) = self.keys.next_fcnt_down(dev_eui).unwrap();
        let frame = mic::DataDownlink::new(dev_addr, fcnt_down)
            .ack(true)
            .build(
                &session.nwk_s_key,
                session.app_s_key.as_ref().unwrap_or(&session.nwk_s_key),
            )
            .unwrap();
        let tid = self.core.next_transaction_id();
        let downlink =
            ran_routing::DownstreamMessage::new(tid, dev_eui, rx_window(uplink, delay), frame);
        (tid, self.downstream.send_and_wait(downlink, WAIT).unwrap())
    }
}

/// RX1: the uplink's channel and data rate, `delay` seconds after it.
fn rx_window(uplink: &ran_routing::UpstreamMessage, delay: u8) -> ran_routing::TransmissionWindow {
    let radio =
        ran_routing::DownstreamRadio::new(uplink.radio.frequency, uplink.radio.modulation.clone());
    ran_routing::TransmissionWindow::class_a(radio, delay)
}

fn fast_emulator() -> Emulator {
    let emu = Emulator::builder().time_scale(TIME_SCALE).start().unwrap();
    // Small challenges: a wrong key cannot hit a decoy by chance.
    emu.set_mic_challenge_size(2, 16).unwrap();
    emu
}

/// A device from its first join request through three data uplinks and a
/// confirmed uplink answered with a downlink, every upstream solved by the crate's
/// solver, and the routing table's two security contexts switching on the way.
#[test]
fn a_join_request_delivered_twice_joins_on_the_accept_for_either_copy() {
    // The RAN may deliver one join request several times; the LNS acks every copy (the
    // last ack names a copy's transaction), and the join accept still answers the one
    // request the device sent.
    let emu = fast_emulator();
    let (dev_eui, join_eui) = (
        DevEui::new(0x0004a30b001c0601),
        JoinEui::new(0x70b3d57e00000001),
    );
    let dev_addr = DevAddr::new(0x26012e44);
    let mut lns = Lns::new(&emu);
    lns.core
        .routing_table()
        .insert(NewDevice::new(dev_eui, join_eui))
        .unwrap();
    lns.keys.set_join_key(dev_eui, key(APP_KEY));
    emu.add_radio_device(RadioDevice::otaa(dev_eui, join_eui, key(APP_KEY)))
        .unwrap();
    let copies = emu.play_join_request_copies(dev_eui, 2).unwrap();
    assert_eq!(copies.len(), 2);
    let (first, _) = lns.answer();
    let (second, _) = lns.answer();
    assert_eq!(first.phy_payload_no_mic, second.phy_payload_no_mic);
    let (down_tid, result, _) =
        lns.join_accept(&first, dev_eui, &key(APP_KEY), dev_addr, 5, Some(dev_addr));
    assert!(result.result_code.is_success(), "{result:?}");
    assert!(
        matches!(
            emu.downlink_verdict(down_tid),
            Some(ran_routing_emulator::DownlinkVerdict::Joined { .. })
        ),
        "{:?}",
        emu.downlink_verdict(down_tid)
    );
    assert_eq!(
        emu.radio_device(dev_eui).unwrap().dev_addr(),
        Some(dev_addr)
    );
}

#[test]
fn an_otaa_device_joins_and_talks_in_its_new_session() {
    let emu = fast_emulator();
    let (dev_eui, join_eui) = (
        DevEui::new(0x0004a30b001c0600),
        JoinEui::new(0x70b3d57e00000001),
    );
    let dev_addr = DevAddr::new(0x26012e43);
    let mut lns = Lns::new(&emu);
    lns.core
        .routing_table()
        .insert(NewDevice::new(dev_eui, join_eui))
        .unwrap();
    lns.keys.set_join_key(dev_eui, key(APP_KEY));
    emu.add_radio_device(RadioDevice::otaa(dev_eui, join_eui, key(APP_KEY)).dev_nonce(0x0101))
        .unwrap();

    // Join request, solved; join accept in RX1 (JoinAcceptDelay1, 5 s).
    let tid = emu.play_join_request(dev_eui).unwrap();
    let (join_request, solved) = lns.answer();
    assert_eq!(solved.map(|s| s.dev_eui), Some(dev_eui));
    assert_eq!(emu.played_upstream(tid).unwrap().dev_nonce, Some(0x0101));
    assert_eq!(
        emu.radio_device(dev_eui).unwrap().pending_dev_nonce(),
        Some(0x0101)
    );
    let (down_tid, result, session_keys) = lns.join_accept(
        &join_request,
        dev_eui,
        &key(APP_KEY),
        dev_addr,
        5,
        Some(dev_addr),
    );
    assert_eq!(
        result.result_code,
        ran_routing::DownstreamResultCode::Success,
        "{result:?}"
    );
    assert_eq!(
        emu.downlink_verdict(down_tid),
        Some(ran_routing_emulator::DownlinkVerdict::Joined {
            dev_addr,
            dev_nonce: 0x0101
        })
    );
    // The device derived the same keys, and starts its session at FCnt 0.
    let device = emu.radio_device(dev_eui).unwrap();
    assert!(device.has_session_keys(&session_keys.nwk_s_key, &session_keys.app_s_key));
    assert_eq!(
        (device.dev_addr(), device.fcnt()),
        (Some(dev_addr), Some(0))
    );
    assert_eq!(device.pending_dev_nonce(), None);
    // The join accept's TargetDevAddr is the row's second context until the device
    // speaks from it.
    let row = &lns.core.routing_table().select(Select::all()).unwrap()[0];
    assert_eq!(
        (row.active_dev_addr, row.target_dev_addr),
        (None, Some(dev_addr))
    );
    lns.keys.set_session(dev_eui, session_keys.session());

    // Three data uplinks in the new session.
    let mut played = vec![tid];
    for i in 0..3u8 {
        let tid = emu.play_uplink(dev_eui, 1, [i]).unwrap();
        let (msg, solved) = lns.answer();
        assert_eq!(msg.dev_euis, [dev_eui]);
        assert_eq!(solved.and_then(|s| s.fcnt), Some(u32::from(i)));
        played.push(tid);
        assert_eq!(verdict(&emu, tid), UpstreamVerdict::Solved);
        if i == 0 {
            // The first uplink from the target address switched the context.
            let row = &emu.devices()[0];
            assert_eq!(
                (row.active_dev_addr, row.target_dev_addr),
                (Some(dev_addr), None)
            );
        }
    }
    // A confirmed uplink, answered with an ACK in RX1.
    let tid = emu.play_confirmed_uplink(dev_eui, 1, *b"ack me").unwrap();
    let (msg, solved) = lns.answer();
    assert_eq!(solved.and_then(|s| s.fcnt), Some(3));
    played.push(tid);
    let (down_tid, result) = lns.ack_downlink(&msg, dev_eui, dev_addr, 5);
    assert_eq!(
        result.result_code,
        ran_routing::DownstreamResultCode::Success,
        "{result:?}"
    );
    match emu.downlink_verdict(down_tid) {
        Some(ran_routing_emulator::DownlinkVerdict::Received(received)) => {
            assert_eq!((received.fcnt_down, received.ack), (0, true));
        }
        other => panic!("{other:?}"),
    }
    for tid in played {
        assert_eq!(
            verdict(&emu, tid),
            UpstreamVerdict::Solved,
            "upstream {tid}"
        );
    }
    let stats = emu.mic_stats();
    assert_eq!(
        (stats.played, stats.solved, stats.joins),
        (5, 5, 1),
        "{stats:?}"
    );
    assert_eq!((stats.withheld, stats.ignored_downlinks), (0, 0));
}

/// A join accept that comes too late is lost; the device tries again with a new DevNonce
/// and joins with the keys of that one.
#[test]
fn a_rejoin_after_a_lost_join_accept_works() {
    let emu = fast_emulator();
    let (dev_eui, join_eui) = (DevEui::new(0x0004a30b001c0601), JoinEui::new(1));
    let dev_addr = DevAddr::new(0x26012e44);
    let mut lns = Lns::new(&emu);
    lns.core
        .routing_table()
        .insert(NewDevice::new(dev_eui, join_eui))
        .unwrap();
    lns.keys.set_join_key(dev_eui, key(APP_KEY));
    emu.add_radio_device(RadioDevice::otaa(dev_eui, join_eui, key(APP_KEY)))
        .unwrap();

    emu.play_join_request(dev_eui).unwrap();
    let (first, _) = lns.answer();
    // Past RX2 (6 s, 1.2 s here): the RAN cannot send it.
    std::thread::sleep(Duration::from_millis(1_400));
    let (lost, result, _) =
        lns.join_accept(&first, dev_eui, &key(APP_KEY), dev_addr, 6, Some(dev_addr));
    assert_eq!(
        result.result_code,
        ran_routing::DownstreamResultCode::TooLate
    );
    assert_eq!(
        emu.downlink_verdict(lost),
        Some(ran_routing_emulator::DownlinkVerdict::NotTransmitted(
            ran_routing::DownstreamResultCode::TooLate
        ))
    );
    assert_eq!(emu.radio_device(dev_eui).unwrap().dev_addr(), None);

    // The device tries again, with DevNonce 1; RX2 this time.
    emu.play_join_request(dev_eui).unwrap();
    let (second, _) = lns.answer();
    let (joined, result, keys) =
        lns.join_accept(&second, dev_eui, &key(APP_KEY), dev_addr, 6, Some(dev_addr));
    assert!(result.result_code.is_success(), "{result:?}");
    assert_eq!(
        emu.downlink_verdict(joined),
        Some(ran_routing_emulator::DownlinkVerdict::Joined {
            dev_addr,
            dev_nonce: 1
        })
    );
    lns.keys.set_session(dev_eui, keys.session());
    let tid = emu.play_uplink(dev_eui, 2, *b"back").unwrap();
    lns.answer();
    assert_eq!(verdict(&emu, tid), UpstreamVerdict::Solved);
}

/// What a real device does with bad join accepts: ignores them (and the RAN refuses
/// those it cannot send), each with its reason; then a good one still works.
#[test]
fn bad_join_accepts_are_refused_or_ignored_with_the_reason() {
    use ran_routing::DownstreamResultCode as Code;
    use ran_routing_emulator::{DownlinkVerdict, IgnoredReason};
    let emu = fast_emulator();
    let (dev_eui, join_eui) = (DevEui::new(0x0004a30b001c0602), JoinEui::new(1));
    let dev_addr = DevAddr::new(0x26012e45);
    let mut lns = Lns::new(&emu);
    lns.core
        .routing_table()
        .insert(NewDevice::new(dev_eui, join_eui))
        .unwrap();
    lns.keys.set_join_key(dev_eui, key(APP_KEY));
    emu.add_radio_device(RadioDevice::otaa(dev_eui, join_eui, key(APP_KEY)))
        .unwrap();
    let app_key = key(APP_KEY);
    let join_request = |lns: &mut Lns| {
        emu.play_join_request(dev_eui).unwrap();
        lns.answer().0
    };

    // Encrypted and signed with another key: sent, and ignored by the device.
    let request = join_request(&mut lns);
    let (tid, result, _) = lns.join_accept(
        &request,
        dev_eui,
        &key(NWK_S_KEY_A),
        dev_addr,
        5,
        Some(dev_addr),
    );
    assert_eq!(result.result_code, Code::Success);
    assert_eq!(
        emu.downlink_verdict(tid),
        Some(DownlinkVerdict::Ignored(IgnoredReason::MicMismatch))
    );
    // Without TargetDevAddr: the RAN refuses it, and says why.
    let (tid, result, _) = lns.join_accept(&request, dev_eui, &app_key, dev_addr, 6, None);
    assert_eq!(result.result_code, Code::GatewayError);
    assert!(
        result
            .result_message
            .as_deref()
            .unwrap_or("")
            .contains("TargetDevAddr"),
        "{result:?}"
    );
    assert_eq!(
        emu.downlink_verdict(tid),
        Some(DownlinkVerdict::NotTransmitted(Code::GatewayError))
    );
    // Too late for this request's RX1 and RX2.
    let request = join_request(&mut lns);
    std::thread::sleep(Duration::from_millis(1_400));
    let (tid, result, _) =
        lns.join_accept(&request, dev_eui, &app_key, dev_addr, 6, Some(dev_addr));
    assert_eq!(result.result_code, Code::TooLate);
    assert_eq!(
        emu.downlink_verdict(tid),
        Some(DownlinkVerdict::NotTransmitted(Code::TooLate))
    );
    // An answer to a join request the device is no longer waiting on: the LNS acked an
    // older one and answers it, but the device has sent a newer one since (unacked).
    let older = join_request(&mut lns);
    emu.play_join_request(dev_eui).unwrap();
    let newer = lns.upstream.recv_timeout(WAIT).unwrap();
    lns.upstream
        .send(newer.reject(UpstreamRejectResultCode::Other))
        .unwrap();
    let (tid, result, _) = lns.join_accept(&older, dev_eui, &app_key, dev_addr, 5, Some(dev_addr));
    assert_eq!(result.result_code, Code::Success);
    assert_eq!(
        emu.downlink_verdict(tid),
        Some(DownlinkVerdict::Ignored(IgnoredReason::UnknownDevNonce))
    );
    // In no join-accept window (1 s after the request).
    let request = join_request(&mut lns);
    let (tid, result, _) =
        lns.join_accept(&request, dev_eui, &app_key, dev_addr, 1, Some(dev_addr));
    assert_eq!(result.result_code, Code::Success);
    assert_eq!(
        emu.downlink_verdict(tid),
        Some(DownlinkVerdict::Ignored(IgnoredReason::OutsideJoinWindow))
    );
    assert_eq!(emu.radio_device(dev_eui).unwrap().dev_addr(), None);
    let stats = emu.mic_stats();
    assert_eq!((stats.joins, stats.ignored_downlinks), (0, 3), "{stats:?}");

    // The device is still waiting for that request's answer in RX2: a good one works.
    let (tid, result, _) =
        lns.join_accept(&request, dev_eui, &app_key, dev_addr, 6, Some(dev_addr));
    assert!(result.result_code.is_success());
    assert!(matches!(
        emu.downlink_verdict(tid),
        Some(DownlinkVerdict::Joined { .. })
    ));
}

/// Routing rules: only subscribed devices' traffic reaches the LNS, `DevEUIs` lists only
/// subscribed devices, and an LNS whose join accept names another address in
/// TargetDevAddr than it gave the device loses the device's uplinks.
#[test]
fn unsubscribed_traffic_is_withheld_and_counted() {
    let emu = fast_emulator();
    let mut lns = Lns::new(&emu);
    let core = lns.core.clone();
    let table = core.routing_table();
    let shared_addr = DevAddr::new(0x26000200);
    let (a, b, otaa) = (DevEui::new(0xa1), DevEui::new(0xb1), DevEui::new(0xc1));
    emu.add_radio_device(RadioDevice::abp(a, shared_addr, key(NWK_S_KEY_A), 0))
        .unwrap();
    emu.add_radio_device(RadioDevice::abp(b, shared_addr, key(NWK_S_KEY_B), 0))
        .unwrap();
    emu.add_radio_device(RadioDevice::otaa(otaa, JoinEui::new(5), key(APP_KEY)))
        .unwrap();

    // Nobody subscribed: everything is withheld, and nothing reaches the LNS.
    let withheld = [
        emu.play_uplink(a, 1, []).unwrap(),
        emu.play_join_request(otaa).unwrap(),
    ];
    // Subscribed with another JoinEUI: the join request is still not routed.
    table
        .insert(NewDevice::otaa(otaa, JoinEui::new(6)))
        .unwrap();
    let wrong_join_eui = emu.play_join_request(otaa).unwrap();
    for tid in withheld.into_iter().chain([wrong_join_eui]) {
        assert_eq!(
            emu.played_upstream(tid).unwrap().verdict,
            UpstreamVerdict::Withheld
        );
    }
    assert!(lns
        .upstream
        .recv_timeout(Duration::from_millis(200))
        .is_err());
    let stats = emu.mic_stats();
    assert_eq!((stats.withheld, stats.played), (3, 0));
    let status = Control::at(emu.control_url()).get("status").1;
    assert_eq!(status["withheld_upstreams"], 3, "{status}");
    // The devices did transmit: their counters moved on.
    assert_eq!(emu.radio_device(a).unwrap().fcnt(), Some(1));
    assert_eq!(emu.radio_device(otaa).unwrap().next_dev_nonce(), Some(2));

    // Only b is subscribed: a's uplink from the shared address names only b.
    table.insert(NewDevice::abp(b, shared_addr)).unwrap();
    lns.keys.set_session(b, Session::new(key(NWK_S_KEY_B)));
    let tid = emu.play_uplink(a, 1, []).unwrap();
    let (msg, solved) = lns.answer();
    assert_eq!(msg.dev_euis, [b]);
    assert!(solved.is_none(), "b's key does not sign a's frame");
    assert_eq!(
        verdict(&emu, tid),
        UpstreamVerdict::Rejected(UpstreamRejectResultCode::MicFailed)
    );

    // The join accept's TargetDevAddr differs from the address it grants: the device
    // joins, but the RAN routes its uplinks by the table, and finds no row.
    table.delete([otaa]).unwrap();
    table
        .insert(NewDevice::otaa(otaa, JoinEui::new(5)))
        .unwrap();
    lns.keys.set_join_key(otaa, key(APP_KEY));
    emu.play_join_request(otaa).unwrap();
    let (request, _) = lns.answer();
    let granted = DevAddr::new(0x26000300);
    let (tid, result, _) = lns.join_accept(
        &request,
        otaa,
        &key(APP_KEY),
        granted,
        5,
        Some(DevAddr::new(0x26000301)),
    );
    assert!(result.result_code.is_success());
    assert!(matches!(
        emu.downlink_verdict(tid),
        Some(ran_routing_emulator::DownlinkVerdict::Joined { .. })
    ));
    let tid = emu.play_uplink(otaa, 1, []).unwrap();
    assert_eq!(
        emu.played_upstream(tid).unwrap().verdict,
        UpstreamVerdict::Withheld
    );
    // Once the table has the granted address (the `update` a real LNS does), it flows.
    table
        .update(DeviceUpdate::new(otaa, JoinEui::new(5)).with_target_dev_addr(granted))
        .unwrap();
    let tid = emu.play_uplink(otaa, 1, []).unwrap();
    assert_eq!(
        emu.played_upstream(tid).unwrap().verdict,
        UpstreamVerdict::Unanswered
    );

    // With the rule off, the RAN delivers everything the devices send.
    let lenient = Emulator::builder()
        .subscription_gate(false)
        .start()
        .unwrap();
    lenient
        .add_radio_device(RadioDevice::abp(a, shared_addr, key(NWK_S_KEY_A), 0))
        .unwrap();
    lenient
        .add_radio_device(RadioDevice::abp(b, shared_addr, key(NWK_S_KEY_B), 0))
        .unwrap();
    let mut ws = connect(&lenient, "upstream");
    assert!(lenient.wait_upstream_connections(1, TIMEOUT));
    lenient.play_uplink(a, 1, []).unwrap();
    assert_eq!(read_upstream(&mut ws).dev_euis, [a.get(), b.get()]);
}

/// Routing rule: an uplink the RAN heard over 2.5 s before delivering carries
/// `Outdated: true`, and its class A windows count from when it was heard.
#[test]
fn late_uplinks_are_outdated() {
    use ran_routing_emulator::Play;
    let emu = fast_emulator();
    let dev_eui = DevEui::new(0xd1);
    let dev_addr = DevAddr::new(0x26000400);
    let mut lns = Lns::new(&emu);
    lns.core
        .routing_table()
        .insert(NewDevice::new(dev_eui, dev_addr))
        .unwrap();
    lns.keys
        .set_session(dev_eui, Session::new(key(NWK_S_KEY_A)));
    emu.add_radio_device(RadioDevice::abp(dev_eui, dev_addr, key(NWK_S_KEY_A), 0))
        .unwrap();

    let fresh = emu
        .play(
            dev_eui,
            Play::uplink(1, []).heard_ago(Duration::from_secs(2)),
        )
        .unwrap();
    let (msg, _) = lns.answer();
    assert_eq!(msg.outdated, None);
    assert!(!emu.played_upstream(fresh).unwrap().outdated);

    let late = emu
        .play(
            dev_eui,
            Play::confirmed_uplink(1, []).heard_ago(Duration::from_secs(3)),
        )
        .unwrap();
    let (msg, solved) = lns.answer();
    assert_eq!(msg.outdated, Some(true));
    assert!(solved.is_some());
    assert!(emu.played_upstream(late).unwrap().outdated);
    assert_eq!(verdict(&emu, late), UpstreamVerdict::Solved);
    // Its RX1 (2 s) passed before it was even delivered.
    let (_, result) = lns.ack_downlink(&msg, dev_eui, dev_addr, 2);
    assert_eq!(
        result.result_code,
        ran_routing::DownstreamResultCode::TooLate
    );

    // With the rule off, no upstream is marked.
    let emu = Emulator::builder().mark_outdated(false).start().unwrap();
    Api::new(&emu).ok(
        "devices/insert",
        json!({"DevEUI": "00000000000000d1", "DevAddr": "26000400"}),
    );
    emu.add_radio_device(RadioDevice::abp(dev_eui, dev_addr, key(NWK_S_KEY_A), 0))
        .unwrap();
    let mut ws = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    emu.play(
        dev_eui,
        Play::uplink(1, []).heard_ago(Duration::from_secs(60)),
    )
    .unwrap();
    assert!(next_json(&mut ws).get("Outdated").is_none());
}
