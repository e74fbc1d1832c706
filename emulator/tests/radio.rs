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
use ran_routing::{Core, DevAddr, DevEui, JoinEui, UpstreamRejectResultCode};
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
    emu.add_radio_device(RadioDevice::otaa(dev_eui, join_eui, key(APP_KEY)).dev_nonce(0x00ff));
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
    emu.add_radio_device(RadioDevice::abp(
        dev_eui,
        dev_addr,
        key(NWK_S_KEY_A),
        65_534,
    ));
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
    emu.add_radio_device(RadioDevice::abp(b, shared_addr, key(NWK_S_KEY_B), 10));
    emu.add_radio_device(RadioDevice::abp(a, shared_addr, key(NWK_S_KEY_A), 0));
    emu.add_radio_device(RadioDevice::abp(
        c,
        DevAddr::new(0x26000002),
        key(NWK_S_KEY_A),
        0,
    ));
    // An OTAA device that has joined with the same address.
    let d = DevEui::new(0xd);
    emu.add_radio_device(
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
    emu.add_radio_device(RadioDevice::otaa(dev_eui, JoinEui::new(7), key(APP_KEY)));
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
    // Replies to upstreams the emulator did not play are not judged.
    assert_eq!(emu.played_upstream(5).map(|p| p.verdict), None);
    ack(&mut ws, 5, 1, 1);
    assert!(eventually(|| emu.upstream_replies().len() == 6));
    assert_eq!(emu.mic_stats(), stats);
}

#[test]
fn bad_plays_fail_with_typed_errors() {
    let emu = Emulator::start().unwrap();
    let (otaa, abp) = (DevEui::new(1), DevEui::new(2));
    emu.add_radio_device(RadioDevice::otaa(otaa, JoinEui::new(1), key(APP_KEY)));
    emu.add_radio_device(RadioDevice::abp(abp, DevAddr::new(2), key(NWK_S_KEY_A), 0));
    let invalid = |r: Result<u64, Error>| matches!(r, Err(Error::Invalid(_)));
    assert!(invalid(emu.play_join_request(DevEui::new(3))));
    assert!(invalid(emu.play_join_request(abp)));
    assert!(invalid(emu.play_uplink(otaa, 1, [])));
    assert!(invalid(emu.play_uplink(abp, 1, vec![0; 300])));
    assert!(emu.set_mic_challenge_size(1, 4096).is_err());
    assert!(emu.set_mic_challenge_size(64, 32).is_err());

    // No upstream connection: nothing is played, but the device did transmit.
    assert!(matches!(emu.play_uplink(abp, 1, []), Err(Error::Closed(_))));
    assert_eq!(emu.mic_stats().played, 0);
    assert_eq!(emu.radio_device(abp).unwrap().fcnt(), Some(1));

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
    emu.add_radio_device(device.clone());
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
    // The failed plays above still used frame counters, as frames sent into the void do.
    assert_eq!(played.fcnt, Some(70_002));
    assert_eq!(played.candidates, 16);
    assert_eq!(played.verdict, UpstreamVerdict::Unanswered);
    let up = read_upstream(&mut ws);
    assert_eq!(up.transaction_id, tid);
    assert_eq!(up.payload[0], 0x80);
    assert_eq!(&up.payload[8..], &[3, 0xca, 0xfe]);
    let mic = mic::data_uplink_mic(&key(NWK_S_KEY_A), &up.payload, 70_002).unwrap();
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

    let mut keys = Keys::new();
    keys.set_join_key(otaa, key(APP_KEY));
    emu.add_radio_device(RadioDevice::otaa(otaa, JoinEui::new(1), key(APP_KEY)));
    for (i, (&dev_eui, nwk_s_key)) in abp.iter().zip(&nwk_keys).enumerate() {
        let start = 65_530 + i as u32;
        keys.set_session(
            dev_eui,
            Session::new(nwk_s_key.clone()).with_fcnt_up(start - 1),
        );
        emu.add_radio_device(RadioDevice::abp(
            dev_eui,
            shared_addr,
            nwk_s_key.clone(),
            start,
        ));
    }
    // On the air with the shared address, but the LNS has a stale key for it.
    keys.set_session(stranger, Session::new(AesKey::new([0x55; 16])));
    emu.add_radio_device(RadioDevice::abp(
        stranger,
        shared_addr,
        AesKey::new([0x66; 16]),
        0,
    ));

    let core = Core::new(emu.token(), &emu.base_url()).unwrap();
    let upstream = Arc::new(core.upstream().connect().unwrap());
    let keys = Arc::new(std::sync::Mutex::new(keys));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (upstream, keys) = (upstream.clone(), keys.clone());
            std::thread::spawn(move || {
                for msg in upstream.iter() {
                    let mut keys = keys.lock().unwrap();
                    let outcome = mic::solve(&*keys, &msg);
                    if let Ok(solved) = &outcome {
                        keys.record(solved);
                    }
                    drop(keys);
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
        let fcnt_up = keys.lock().unwrap().session(dev_eui).unwrap().fcnt_up;
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
