//! Radio devices judge data downlinks as real ones do: addressed to them, signed with
//! their session and a new FCntDown, in a window they listen in; class B slots and class
//! C deadlines that cannot be met are not transmitted; multicast members take group
//! downlinks with the group's keys. The LNS side is the crate's client, signing with
//! `mic::DataDownlink`.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ran_routing::mic::{self, AesKey, DataDownlink, Keys, Session};
use ran_routing::{
    Core, DevAddr, DevEui, DownstreamMessage, DownstreamRadio, DownstreamResult,
    DownstreamResultCode, LoRaModulation, MulticastAddr, MulticastDownstreamMessage, NewDevice,
    TransmissionWindow, TxTiming, UpstreamMessage,
};
use ran_routing_emulator::{
    DeviceClass, DownlinkVerdict, Emulator, IgnoredReason, RadioDevice, ReceivedDownlink,
    UpstreamVerdict,
};
use serde_json::json;
use support::*;

const TIME_SCALE: f64 = 0.2;
const WAIT: Duration = Duration::from_secs(10);
const DEV_EUI: DevEui = DevEui::new(0x0004_a30b_001c_0530);
const DEV_ADDR: DevAddr = DevAddr::new(0x2601_1bda);

fn nwk() -> AesKey {
    "000102030405060708090a0b0c0d0e0f".parse().unwrap()
}

fn app() -> AesKey {
    "f0e1d2c3b4a5968778695a4b3c2d1e0f".parse().unwrap()
}

/// An LNS with the device's session, subscribed to it, and a device on the air in
/// `class` with the same session.
struct Air {
    emu: Emulator,
    core: Core,
    upstream: ran_routing::UpstreamConnection,
    downstream: ran_routing::DownstreamConnection,
    keys: Keys,
}

impl Air {
    fn new(class: DeviceClass) -> Self {
        let emu = Emulator::builder().time_scale(TIME_SCALE).start().unwrap();
        emu.set_mic_challenge_size(2, 16).unwrap();
        emu.add_radio_device(device(class)).unwrap();
        let core = Core::new(emu.token(), &emu.base_url()).unwrap();
        core.routing_table()
            .insert(NewDevice::abp(DEV_EUI, DEV_ADDR))
            .unwrap();
        let upstream = core.upstream().connect().unwrap();
        let downstream = core.downstream().connect().unwrap();
        assert!(emu.wait_upstream_connections(1, TIMEOUT));
        assert!(emu.wait_downstream_connections(1, TIMEOUT));
        let keys = Keys::new();
        keys.set_session(DEV_EUI, Session::new(nwk()).with_app_s_key(app()));
        Self {
            emu,
            core,
            upstream,
            downstream,
            keys,
        }
    }

    /// The device sends a confirmed uplink; the LNS solves and acks it and reads its
    /// payload with the AppSKey.
    fn uplink(&self, payload: &[u8]) -> UpstreamMessage {
        let tid = self.emu.play_confirmed_uplink(DEV_EUI, 2, payload).unwrap();
        let msg = self.upstream.recv_timeout(WAIT).unwrap();
        let solved = mic::Solver::new().solve(&self.keys, &msg).unwrap();
        assert!(solved.frame.is_confirmed());
        self.keys.record(&solved);
        // The device encrypted its payload under the AppSKey: the LNS reads it back.
        let on_air = &msg.phy_payload_no_mic[9..];
        assert_ne!(on_air, payload);
        let clear = mic::encrypt_frm_payload(
            &app(),
            DEV_ADDR,
            solved.fcnt.unwrap(),
            mic::Direction::Uplink,
            on_air,
        );
        assert_eq!(clear, payload);
        self.upstream.send(msg.ack(DEV_EUI, solved.mic)).unwrap();
        assert_eq!(
            self.emu.wait_upstream_verdict(tid, WAIT),
            Some(UpstreamVerdict::Solved)
        );
        msg
    }

    /// A downlink with the device's next FCntDown, signed with its session.
    fn signed(&self, payload: &[u8]) -> Vec<u8> {
        let (session, fcnt) = self.keys.next_fcnt_down(DEV_EUI).unwrap();
        DataDownlink::new(DEV_ADDR, fcnt)
            .ack(true)
            .payload(10, payload)
            .build(&session.nwk_s_key, session.app_s_key.as_ref().unwrap())
            .unwrap()
    }

    fn send(&self, window: TransmissionWindow, frame: Vec<u8>) -> (u64, DownstreamResult) {
        let tid = self.core.next_transaction_id();
        let msg = DownstreamMessage::new(tid, DEV_EUI, window, frame);
        (tid, self.downstream.send_and_wait(msg, WAIT).unwrap())
    }

    /// Sends `frame` in RX1 of `uplink` (delay 1 s) and returns the device's verdict.
    fn rx1(&self, uplink: &UpstreamMessage, frame: Vec<u8>) -> DownlinkVerdict {
        self.rx(uplink, 1, frame)
    }

    fn rx(&self, uplink: &UpstreamMessage, delay: u8, frame: Vec<u8>) -> DownlinkVerdict {
        let window = TransmissionWindow::class_a(radio_of(uplink), delay);
        let (tid, result) = self.send(window, frame);
        assert_eq!(
            result.result_code,
            DownstreamResultCode::Success,
            "{result:?}"
        );
        self.emu.wait_downlink_verdict(tid, WAIT).unwrap()
    }
}

fn device(class: DeviceClass) -> RadioDevice {
    RadioDevice::abp(DEV_EUI, DEV_ADDR, nwk(), 0)
        .with_app_s_key(app())
        .with_class(class)
}

fn radio_of(uplink: &UpstreamMessage) -> DownstreamRadio {
    DownstreamRadio::new(uplink.radio.frequency, uplink.radio.modulation.clone())
}

fn class_b_radio() -> DownstreamRadio {
    DownstreamRadio::new(869_525_000, LoRaModulation::new(9, 125_000))
}

fn gps_ms_now() -> u64 {
    ran_routing::timing::gps_time(SystemTime::now())
        .unwrap()
        .as_millis() as u64
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn received(verdict: &DownlinkVerdict) -> &ReceivedDownlink {
    match verdict {
        DownlinkVerdict::Received(received) => received,
        other => panic!("not received: {other:?}"),
    }
}

#[test]
fn a_good_downlink_is_received_with_its_payload_and_counter() {
    let air = Air::new(DeviceClass::A);
    let uplink = air.uplink(b"temperature");
    let verdict = air.rx1(&uplink, air.signed(b"setpoint"));
    let got = received(&verdict);
    assert_eq!(
        (got.fcnt_down, got.fport, got.ack, got.confirmed),
        (0, Some(10), true, false)
    );
    assert_eq!(got.frm_payload.as_deref(), Some(&b"setpoint"[..]));
    assert_eq!(air.emu.radio_device(DEV_EUI).unwrap().fcnt_down(), Some(0));

    // The control API says the same, payload decrypted.
    let tid = air.emu.downstream_received()[0].transaction_id();
    let (status, body) = Control::new(&air.emu).get(&format!("radio/downlinks/{tid}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verdict"], "Received");
    assert_eq!(body["fcnt_down"], 0);
    assert_eq!(body["fport"], 10);
    assert_eq!(body["frm_payload_hex"], "736574706f696e74");
    assert_eq!(body["ack"], true);
}

#[test]
fn wrong_mic_replayed_counter_wrong_addr_and_wrong_window_are_ignored() {
    let air = Air::new(DeviceClass::A);
    let uplink = air.uplink(b"1");
    let first = air.signed(b"once");
    received(&air.rx1(&uplink, first.clone()));

    // Signed with another NwkSKey.
    let uplink = air.uplink(b"2");
    let forged = DataDownlink::new(DEV_ADDR, 1)
        .ack(true)
        .build(&app(), &app())
        .unwrap();
    assert_eq!(
        air.rx1(&uplink, forged),
        DownlinkVerdict::Ignored(IgnoredReason::MicMismatch)
    );
    // The same frame again: a counter the device has taken.
    let uplink = air.uplink(b"3");
    assert_eq!(
        air.rx1(&uplink, first),
        DownlinkVerdict::Ignored(IgnoredReason::ReplayedFCnt)
    );
    // Another DevAddr.
    let uplink = air.uplink(b"4");
    let (session, fcnt) = air.keys.next_fcnt_down(DEV_EUI).unwrap();
    let elsewhere = DataDownlink::new(DevAddr::new(0x2601_0001), fcnt)
        .build(&session.nwk_s_key, &app())
        .unwrap();
    assert_eq!(
        air.rx1(&uplink, elsewhere),
        DownlinkVerdict::Ignored(IgnoredReason::NotForThisDevice)
    );
    // Delay 3: the device listens 1 s (RX1) and 2 s (RX2) after its uplink only.
    let uplink = air.uplink(b"5");
    assert_eq!(
        air.rx(&uplink, 3, air.signed(b"late")),
        DownlinkVerdict::Ignored(IgnoredReason::OutsideReceiveWindow)
    );
    // RX2 is fine, and counters skipped by ignored downlinks do not matter.
    let uplink = air.uplink(b"6");
    assert_eq!(
        received(&air.rx(&uplink, 2, air.signed(b"rx2"))).fcnt_down,
        3
    );
    assert_eq!(air.emu.mic_stats().ignored_downlinks, 4);
}

#[test]
fn fcnt_down_runs_past_65535() {
    let air = Air::new(DeviceClass::A);
    air.keys.set_session(
        DEV_EUI,
        Session::new(nwk())
            .with_app_s_key(app())
            .with_fcnt_down(65_534),
    );
    for expected in [65_535, 65_536, 65_537] {
        let uplink = air.uplink(b"x");
        let verdict = air.rx1(&uplink, air.signed(b"y"));
        assert_eq!(received(&verdict).fcnt_down, expected);
    }
}

#[test]
fn class_b_slots_must_be_ahead_in_gps_milliseconds_and_the_device_in_class_b() {
    let air = Air::new(DeviceClass::A);
    let window = |slots: Vec<u64>| TransmissionWindow::class_b(class_b_radio(), slots);

    // A class A device does not listen in ping slots.
    let (tid, result) = air.send(window(vec![gps_ms_now() + 100]), air.signed(b"b"));
    assert_eq!(result.result_code, DownstreamResultCode::Success);
    assert_eq!(
        air.emu.wait_downlink_verdict(tid, WAIT),
        Some(DownlinkVerdict::Ignored(IgnoredReason::NotListening))
    );

    air.emu.replace_radio_device(device(DeviceClass::B));
    let (tid, result) = air.send(
        window(vec![gps_ms_now() + 100, gps_ms_now() + 1_100]),
        air.signed(b"b"),
    );
    assert_eq!(
        result.result_code,
        DownstreamResultCode::Success,
        "{result:?}"
    );
    let verdict = air.emu.wait_downlink_verdict(tid, WAIT).unwrap();
    assert_eq!(received(&verdict).frm_payload.as_deref(), Some(&b"b"[..]));

    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let gps_secs = gps_ms_now() / 1000 + 5;
    for (slots, code) in [
        // Every slot passed.
        (
            vec![gps_ms_now() - 10_000, gps_ms_now() - 5_000],
            DownstreamResultCode::TooLate,
        ),
        // GPS seconds given as milliseconds: 1980.
        (vec![gps_secs], DownstreamResultCode::TooLate),
        // Unix milliseconds: ten years ahead of GPS milliseconds.
        (vec![unix_ms + 100], DownstreamResultCode::WindowNotFound),
    ] {
        let (tid, result) = air.send(window(slots.clone()), air.signed(b"b"));
        assert_eq!(result.result_code, code, "{slots:?}: {result:?}");
        assert_eq!(
            air.emu.wait_downlink_verdict(tid, WAIT),
            Some(DownlinkVerdict::NotTransmitted(code))
        );
    }
}

#[test]
fn class_c_deadlines_as_soon_as_possible_or_not_yet_passed() {
    let air = Air::new(DeviceClass::B);
    let radio = class_b_radio;
    // A class B device does not listen continuously.
    let (tid, _) = air.send(TransmissionWindow::class_c_asap(radio()), air.signed(b"c"));
    assert_eq!(
        air.emu.wait_downlink_verdict(tid, WAIT),
        Some(DownlinkVerdict::Ignored(IgnoredReason::NotListening))
    );

    air.emu.replace_radio_device(device(DeviceClass::C));
    // Deadline 1, as both official bridges send: at once.
    let (tid, result) = air.send(TransmissionWindow::class_c_asap(radio()), air.signed(b"c"));
    assert_eq!(
        result.result_code,
        DownstreamResultCode::Success,
        "{result:?}"
    );
    received(&air.emu.wait_downlink_verdict(tid, WAIT).unwrap());
    // A deadline ahead.
    let soon = SystemTime::now() + Duration::from_secs(5);
    let (tid, result) = air.send(
        TransmissionWindow::class_c_by(radio(), soon).unwrap(),
        air.signed(b"c"),
    );
    assert_eq!(
        result.result_code,
        DownstreamResultCode::Success,
        "{result:?}"
    );
    received(&air.emu.wait_downlink_verdict(tid, WAIT).unwrap());
    // A deadline already past cannot be met.
    let (_, result) = air.send(
        TransmissionWindow::class_c(radio(), unix_now() - 30),
        air.signed(b"c"),
    );
    assert_eq!(
        result.result_code,
        DownstreamResultCode::TooLate,
        "{result:?}"
    );
    assert_eq!(TxTiming::DEADLINE_ASAP, 1);
}

#[test]
fn multicast_members_in_class_b_or_c_receive_group_downlinks() {
    let air = Air::new(DeviceClass::C);
    let group = MulticastAddr::new(0xef04_6a1e);
    let class_a = DevEui::new(2);
    let off_air = DevEui::new(3);
    air.emu
        .add_radio_device(RadioDevice::abp(
            class_a,
            DevAddr::new(0x2601_0002),
            nwk(),
            0,
        ))
        .unwrap();
    let table = air.core.routing_table();
    table
        .insert(NewDevice::abp(class_a, DevAddr::new(0x2601_0002)))
        .unwrap();
    table
        .insert(NewDevice::abp(off_air, DevAddr::new(0x2601_0003)))
        .unwrap();
    let groups = air.core.multicast_groups();
    groups.create("all", group).unwrap();
    for dev_eui in [DEV_EUI, class_a, off_air] {
        groups.add_device(group, dev_eui).unwrap();
    }
    let (g_nwk, g_app) = (AesKey::new([0x61; 16]), AesKey::new([0x62; 16]));
    air.emu
        .set_multicast_session(group, g_nwk.clone(), g_app.clone());

    let frame = DataDownlink::new(DevAddr::new(group.get()), 0)
        .payload(5, *b"firmware")
        .build(&g_nwk, &g_app)
        .unwrap();
    let send = |frame: Vec<u8>| {
        let tid = air.core.next_transaction_id();
        let msg = MulticastDownstreamMessage::new(
            tid,
            group,
            TransmissionWindow::class_c_asap(class_b_radio()),
            frame,
        );
        let result = air.downstream.send_and_wait(msg, WAIT).unwrap();
        (tid, result)
    };
    let (tid, result) = send(frame.clone());
    assert_eq!(
        result.result_code,
        DownstreamResultCode::Success,
        "{result:?}"
    );
    match air.emu.wait_downlink_verdict(tid, WAIT).unwrap() {
        DownlinkVerdict::Multicast(members) => {
            assert_eq!(members.len(), 2, "{members:?}");
            let (dev, verdict) = &members[0];
            assert_eq!(*dev, DEV_EUI);
            assert_eq!(
                received(verdict).frm_payload.as_deref(),
                Some(&b"firmware"[..])
            );
            assert_eq!(
                members[1],
                (
                    class_a,
                    DownlinkVerdict::Ignored(IgnoredReason::NotListening)
                )
            );
        }
        other => panic!("{other:?}"),
    }
    // The same group counter again is a replay.
    let (tid, _) = send(frame);
    match air.emu.wait_downlink_verdict(tid, WAIT).unwrap() {
        DownlinkVerdict::Multicast(members) => assert_eq!(
            members[0].1,
            DownlinkVerdict::Ignored(IgnoredReason::ReplayedFCnt)
        ),
        other => panic!("{other:?}"),
    }
    // An empty group reaches nobody.
    let empty = MulticastAddr::new(0x0000_0009);
    groups.create("none", empty).unwrap();
    let tid = air.core.next_transaction_id();
    let msg = MulticastDownstreamMessage::new(
        tid,
        empty,
        TransmissionWindow::class_c_asap(class_b_radio()),
        vec![0x60, 9, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
    );
    let result = air.downstream.send_and_wait(msg, WAIT).unwrap();
    assert_eq!(result.result_code, DownstreamResultCode::GatewayNotFound);
}

#[test]
fn a_reject_with_dev_eui_as_in_the_spec_is_judged() {
    let emu = Emulator::builder().time_scale(TIME_SCALE).start().unwrap();
    emu.add_radio_device(device(DeviceClass::A)).unwrap();
    let api = Api::new(&emu);
    api.ok(
        "devices/insert",
        json!({"DevEUI": DEV_EUI.to_string(), "DevAddr": DEV_ADDR.to_string()}),
    );
    let mut up = connect(&emu, "upstream");
    assert!(emu.wait_upstream_connections(1, TIMEOUT));
    let tid = emu.play_uplink(DEV_EUI, 1, *b"hi").unwrap();
    assert_eq!(next_json(&mut up)["TransactionID"], tid);
    // The specification's UpstreamReject example names the device.
    send_json(
        &mut up,
        json!({"ProtocolVersion": 1, "TransactionID": tid, "DevEUI": DEV_EUI.get(),
               "ResultCode": "MICFailed"}),
    );
    assert_eq!(
        emu.wait_upstream_verdict(tid, WAIT),
        Some(UpstreamVerdict::Rejected(
            ran_routing::UpstreamRejectResultCode::MicFailed
        ))
    );
    assert_eq!(emu.invalid_frames(), 0);
}

#[test]
fn chosen_codes_and_messages_reach_the_client() {
    let air = Air::new(DeviceClass::C);
    let control = Control::new(&air.emu);
    let asap = || TransmissionWindow::class_c_asap(class_b_radio());

    // TOO_EARLY lives in the message only.
    let tid = air.core.next_transaction_id();
    let (status, body) = control.post_json(
        "downstream/result-code",
        json!({"code": "WindowNotFound", "message": "gateway says TOO_EARLY",
               "transaction_id": tid}),
    );
    assert_eq!(status, 200, "{body}");
    let msg = DownstreamMessage::new(tid, DEV_EUI, asap(), air.signed(b"c"));
    let result = air.downstream.send_and_wait(msg, WAIT).unwrap();
    assert!(result.is_too_early(), "{result:?}");
    assert_eq!(
        air.emu.downlink_verdict(tid),
        Some(DownlinkVerdict::NotTransmitted(
            DownstreamResultCode::WindowNotFound
        ))
    );

    // A code the client does not know is kept as Unknown.
    let tid = air.core.next_transaction_id();
    let (status, body) = control.post_json(
        "downstream/result-code",
        json!({"code": "RadioBusy", "unknown_code": true, "transaction_id": tid}),
    );
    assert_eq!(status, 200, "{body}");
    let msg = DownstreamMessage::new(tid, DEV_EUI, asap(), air.signed(b"c"));
    let result = air.downstream.send_and_wait(msg, WAIT).unwrap();
    assert_eq!(
        result.result_code,
        DownstreamResultCode::Unknown("RadioBusy".into())
    );
    // And in-process.
    let tid = air.core.next_transaction_id();
    air.emu.set_downstream_result_message_for_transaction(
        tid,
        DownstreamResultCode::GatewayError,
        "TOO_EARLY",
    );
    let msg = DownstreamMessage::new(tid, DEV_EUI, asap(), air.signed(b"c"));
    assert!(air
        .downstream
        .send_and_wait(msg, WAIT)
        .unwrap()
        .is_too_early());
}

#[test]
fn a_transaction_id_still_in_flight_is_refused() {
    let emu = Emulator::builder().time_scale(TIME_SCALE).start().unwrap();
    let api = Api::new(&emu);
    api.ok(
        "devices/insert",
        json!({"DevEUI": "0000000000000001", "DevAddr": "00000001"}),
    );
    let mut down = connect(&emu, "downstream");
    // A class C downlink at SF12 is on air for over a second: its result is due later.
    let frame = |deadline: u64| {
        json!({"ProtocolVersion": 1, "TransactionID": 77, "DevEUI": 1,
               "TxWindow": {"Radio": {"Frequency": 869525000,
                                      "LoRa": {"Spreading": 12, "Bandwidth": 125000}},
                            "Deadline": deadline},
               "PHYPayload": vec![0x60u8; 40]})
    };
    send_json(&mut down, frame(1));
    send_json(&mut down, frame(1));
    let mut results = Vec::new();
    while results.len() < 2 {
        let frame = next_json(&mut down);
        if frame.get("ResultCode").is_some() {
            results.push(frame);
        }
    }
    // The second is refused at once, before the first's result.
    assert_eq!(results[0]["ResultCode"], "GatewayError", "{results:?}");
    assert!(
        results[0]["ResultMessage"]
            .as_str()
            .unwrap()
            .contains("still in flight"),
        "{results:?}"
    );
    assert_eq!(results[1]["ResultCode"], "Success", "{results:?}");
    // Once the result is out, the id may be used again.
    send_json(&mut down, frame(1));
    let mut last = next_json(&mut down);
    while last.get("ResultCode").is_none() {
        last = next_json(&mut down);
    }
    assert_eq!(last["ResultCode"], "Success", "{last}");
}

#[test]
fn the_control_api_puts_a_class_c_device_with_both_session_keys_on_the_air() {
    let emu = Emulator::builder().time_scale(TIME_SCALE).start().unwrap();
    let control = Control::new(&emu);
    let (status, body) = control.post_json(
        "radio/devices",
        json!({"dev_eui": DEV_EUI.to_string(), "dev_addr": DEV_ADDR.to_string(),
               "nwk_s_key": "000102030405060708090a0b0c0d0e0f",
               "app_s_key": "f0e1d2c3b4a5968778695a4b3c2d1e0f", "class": "C"}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, devices) = control.get("radio/devices");
    assert_eq!(devices[0]["class"], "C", "{devices}");
    let (status, body) = control.post_json(
        "radio/devices",
        json!({"dev_eui": "0000000000000002", "dev_addr": "00000002",
               "nwk_s_key": "000102030405060708090a0b0c0d0e0f", "class": "D"}),
    );
    assert_eq!(status, 422, "{body}");

    let core = Core::new(emu.token(), &emu.base_url()).unwrap();
    core.routing_table()
        .insert(NewDevice::abp(DEV_EUI, DEV_ADDR))
        .unwrap();
    let down = core.downstream().connect().unwrap();
    let frame = DataDownlink::new(DEV_ADDR, 0)
        .confirmed(true)
        .payload(3, *b"on")
        .build(&nwk(), &app())
        .unwrap();
    let tid = core.next_transaction_id();
    let msg = DownstreamMessage::new(
        tid,
        DEV_EUI,
        TransmissionWindow::class_c_asap(class_b_radio()),
        frame,
    );
    let result = down.send_and_wait(msg, WAIT).unwrap();
    assert_eq!(result.result_code, DownstreamResultCode::Success);
    emu.wait_downlink_verdict(tid, WAIT).unwrap();
    let (status, body) = control.get(&format!("radio/downlinks/{tid}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["verdict"], &body["fcnt_down"], &body["fport"]),
        (&json!("Received"), &json!(0), &json!(3)),
        "{body}"
    );
    assert_eq!(body["frm_payload_hex"], "6f6e");
    assert_eq!(
        (&body["ack"], &body["confirmed"]),
        (&json!(false), &json!(true))
    );
}
