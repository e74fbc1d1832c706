//! The MIC challenge solver against known-good vectors and realistic challenges.
#![cfg(feature = "mic")]

use proptest::prelude::*;
use ran_routing::mic::{
    self, AesKey, DataUplink, JoinAccept, KeyStore, Keys, MicError, Session, Solver,
};
use ran_routing::{DevAddr, DevEui, JoinEui, UpstreamRejectResultCode, UpstreamReply};

#[path = "common/vectors.rs"]
mod vectors;
use vectors::{hex, key};

fn mic_of(frame: &[u8]) -> u32 {
    mic::split_mic(frame).unwrap().1
}

// ---------------------------------------------------------------------------------------
// Vectors
// ---------------------------------------------------------------------------------------

/// Published by the lora-packet library (github.com/anthonykirby/lora-packet, test/mic)
/// and reproduced by tests/vectors/mic_vectors.py with OpenSSL's CMAC.
mod published {
    pub const NWK_S_KEY: &str = "44024241ed4ce9a68c6a8bc055233fd3";
    pub const DATA_FCNT_2: &str = "40f17dbe4900020001954378762b11ff0d";
    pub const DATA_FCNT_3_EMPTY: &str = "40f17dbe49000300012a3518af";
    pub const APP_KEY: &str = "98929b92c49edba9676d646d3b612456";
    pub const JOIN_REQUEST: &str = "0039363463336913aa05693574323831330489c65b1304";
}

/// Produced by tests/vectors/mic_vectors.py: frames laid out with `struct.pack` and
/// signed with the `cryptography` package's AES-CMAC, no code shared with this crate.
/// The script checks itself against RFC 4493 and the published vectors above first.
mod python {
    pub const APP_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    pub const NWK_S_KEY: &str = "000102030405060708090a0b0c0d0e0f";
    /// JoinEUI 70b3d57ed0000001, DevEUI 0004a30b001c0530, DevNonce 0x1234.
    pub const JOIN_REQUEST: &str = "00010000d07ed5b37030051c000ba3040034124f5ca349";
    /// DevAddr 26011bda, FCnt 1, FPort 1, "hello".
    pub const UNCONFIRMED_FCNT_1: &str = "40da1b01260001000168656c6c6f374a9024";
    /// Confirmed, FCnt 0x1_0005, FPort 2, [1, 2, 3].
    pub const CONFIRMED_FCNT_0X1_0005: &str = "80da1b01260005000201020379768371";
    /// FCnt 0xffff_ffff, FPort 10, empty FRMPayload.
    pub const UNCONFIRMED_FCNT_MAX: &str = "40da1b012600ffff0ad40810ad";
    /// FCnt 7, no FPort.
    pub const UNCONFIRMED_NO_PORT: &str = "40da1b0126000700b7d42693";
    /// DevAddr 01020304, FCtrl ADR|ACK with FOpts [2, 3], FCnt 0x2_abcd, FPort 3, 20 × 0xaa.
    pub const FOPTS_FCNT_0X2_ABCD: &str =
        "4004030201a2cdab020303aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa92646b5";
}

#[test]
fn published_vectors() {
    let nwk = key(published::NWK_S_KEY);
    for (frame, fcnt, expected) in [
        (published::DATA_FCNT_2, 2, 0x2b11ff0d),
        (published::DATA_FCNT_3_EMPTY, 3, 0x2a3518af),
    ] {
        let frame = hex(frame);
        let (msg, mic) = mic::split_mic(&frame).unwrap();
        assert_eq!(mic, expected);
        assert_eq!(mic::data_uplink_mic(&nwk, msg, fcnt), Ok(expected));
        assert_eq!(mic::verify_data_uplink(&nwk, &frame, fcnt), Ok(true));
        // The same frame under another counter epoch is not valid.
        assert_eq!(
            mic::verify_data_uplink(&nwk, &frame, fcnt + 0x1_0000),
            Ok(false)
        );
    }
    let app = key(published::APP_KEY);
    let frame = hex(published::JOIN_REQUEST);
    assert_eq!(mic::join_request_mic(&app, &frame[..19]), Ok(0xc65b1304));
    assert_eq!(mic::verify_join_request(&app, &frame), Ok(true));
    let mut bodged = frame.clone();
    bodged[22] ^= 1;
    assert_eq!(mic::verify_join_request(&app, &bodged), Ok(false));
}

#[test]
fn builders_reproduce_the_python_frames() {
    let app = key(python::APP_KEY);
    let nwk = key(python::NWK_S_KEY);
    let join = mic::join_request(
        &app,
        JoinEui::new(0x70b3d57ed0000001),
        DevEui::new(0x0004a30b001c0530),
        0x1234,
    );
    assert_eq!(join, hex(python::JOIN_REQUEST));
    assert_eq!(
        mic::Uplink::parse(&join[..19]),
        Ok(mic::Uplink::JoinRequest {
            join_eui: JoinEui::new(0x70b3d57ed0000001),
            dev_eui: DevEui::new(0x0004a30b001c0530),
            dev_nonce: 0x1234,
        })
    );

    let addr = DevAddr::new(0x26011bda);
    for (uplink, expected) in [
        (
            DataUplink::new(addr, 1).payload(1, *b"hello"),
            python::UNCONFIRMED_FCNT_1,
        ),
        (
            DataUplink::new(addr, 0x1_0005)
                .confirmed(true)
                .payload(2, [1, 2, 3]),
            python::CONFIRMED_FCNT_0X1_0005,
        ),
        (
            DataUplink::new(addr, u32::MAX).payload(10, []),
            python::UNCONFIRMED_FCNT_MAX,
        ),
        (DataUplink::new(addr, 7), python::UNCONFIRMED_NO_PORT),
    ] {
        let frame = uplink.build(&nwk).unwrap();
        assert_eq!(frame, hex(expected), "{uplink:?}");
        assert_eq!(mic::verify_data_uplink(&nwk, &frame, uplink.fcnt), Ok(true));
    }

    // FOpts are outside what the builder makes; the MIC must still cover them.
    let frame = hex(python::FOPTS_FCNT_0X2_ABCD);
    assert_eq!(mic::verify_data_uplink(&nwk, &frame, 0x2_abcd), Ok(true));
    assert_eq!(mic::verify_data_uplink(&nwk, &frame, 0xabcd), Ok(false));
}

// ---------------------------------------------------------------------------------------
// Solver
// ---------------------------------------------------------------------------------------

const DEV: DevEui = DevEui::new(0x0004a30b001c0530);

fn data_keys(dev_eui: DevEui, nwk: &AesKey, fcnt_up: Option<u32>) -> Keys {
    let keys = Keys::new();
    let mut session = Session::new(nwk.clone());
    session.fcnt_up = fcnt_up;
    keys.set_session(dev_eui, session);
    keys
}

#[test]
fn solves_a_join_request_among_4096_candidates() {
    let app = key(python::APP_KEY);
    let frame = hex(python::JOIN_REQUEST);
    let keys = Keys::new();
    keys.set_join_key(DEV, app);
    for seed in 0..8 {
        let msg = mic::upstream_with_challenge(&frame, 1 + seed, vec![DEV], 4095, seed).unwrap();
        assert_eq!(msg.mic_challenge.len(), 4096);
        let solved = mic::solve(&keys, &msg).unwrap();
        assert_eq!(solved.dev_eui, DEV);
        assert_eq!(solved.mic, 0x4f5ca349);
        assert_eq!(solved.fcnt, None);
        assert_eq!(
            Solver::new().reply(&keys, &msg),
            UpstreamReply::Ack(msg.ack(DEV, 0x4f5ca349))
        );
    }
}

#[test]
fn solves_data_uplinks_among_4096_candidates_past_fcnt_65535() {
    let nwk = key(python::NWK_S_KEY);
    let addr = DevAddr::new(0x26011bda);
    // (last accepted counter, counter of the new uplink)
    for (last, fcnt) in [
        (None, 0),
        (Some(0), 1),
        (Some(0x1_0004), 0x1_0005),     // high bits from the session
        (Some(0xffff), 0x1_0000),       // the 16-bit rollover
        (Some(0x1_fff0), 0x2_0003),     // uplinks lost across the rollover
        (Some(0x3_0009), 0x3_0009),     // a confirmed uplink's retransmission
        (Some(0x7_0000), 0x9_0001),     // more than 65536 uplinks lost
        (Some(u32::MAX - 1), u32::MAX), // the last counter there is
    ] {
        let keys = data_keys(DEV, &nwk, last);
        let frame = DataUplink::new(addr, fcnt)
            .confirmed(fcnt % 2 == 1)
            .payload(1, *b"hi")
            .build(&nwk)
            .unwrap();
        let msg = mic::upstream_with_challenge(&frame, 9, vec![DEV], 4095, fcnt.into()).unwrap();
        let solved = Solver::new()
            .solve(&keys, &msg)
            .unwrap_or_else(|e| panic!("last {last:?}, fcnt {fcnt:#x}: {e}"));
        assert_eq!(solved.mic, mic_of(&frame));
        assert_eq!(solved.dev_eui, DEV);
        assert_eq!(solved.fcnt, Some(fcnt), "last {last:?}");
    }
}

#[test]
fn the_counter_window_bounds_the_search() {
    let nwk = key(python::NWK_S_KEY);
    // Six epochs ahead of the session: beyond the default window of four counters.
    let frame = DataUplink::new(DevAddr::new(5), 0x6_0001)
        .build(&nwk)
        .unwrap();
    let msg = mic::upstream_with_challenge(&frame, 1, vec![DEV], 100, 3).unwrap();
    let keys = data_keys(DEV, &nwk, Some(0));
    assert_eq!(
        Solver::new().solve(&keys, &msg),
        Err(MicError::NoMatch {
            devices: 1,
            devices_with_keys: 1,
            guesses: Solver::DEFAULT_FCNT_WINDOW,
        })
    );
    let solved = Solver::new().fcnt_window(7).solve(&keys, &msg).unwrap();
    assert_eq!(solved.fcnt, Some(0x6_0001));
    // A window of zero still tries the expected counter.
    let msg = mic::upstream_with_challenge(
        &DataUplink::new(DevAddr::new(5), 1).build(&nwk).unwrap(),
        1,
        vec![DEV],
        100,
        3,
    )
    .unwrap();
    assert!(Solver::new().fcnt_window(0).solve(&keys, &msg).is_ok());
}

#[test]
fn a_wrong_key_or_unknown_device_is_mic_failed() {
    let nwk = key(python::NWK_S_KEY);
    let frame = hex(python::UNCONFIRMED_FCNT_1);
    let msg = mic::upstream_with_challenge(&frame, 4, vec![DEV], 4095, 11).unwrap();

    let wrong = data_keys(DEV, &AesKey::new([0x55; 16]), Some(0));
    let outcome = mic::solve(&wrong, &msg);
    assert_eq!(
        outcome,
        Err(MicError::NoMatch {
            devices: 1,
            devices_with_keys: 1,
            guesses: Solver::DEFAULT_FCNT_WINDOW,
        })
    );
    assert_eq!(
        mic::reply(&msg, &outcome),
        UpstreamReply::Reject(msg.reject(UpstreamRejectResultCode::MicFailed))
    );

    // Keys for someone else only.
    let other = data_keys(DevEui::new(1), &nwk, Some(0));
    assert_eq!(
        mic::solve(&other, &msg),
        Err(MicError::NoMatch {
            devices: 1,
            devices_with_keys: 0,
            guesses: 0,
        })
    );
    // A join key does not sign data uplinks, nor a session key join requests.
    let swapped = Keys::new();
    swapped.set_join_key(DEV, nwk.clone());
    assert!(matches!(
        mic::solve(&swapped, &msg),
        Err(MicError::NoMatch { .. })
    ));
    let join = hex(python::JOIN_REQUEST);
    let join_msg = mic::upstream_with_challenge(&join, 5, vec![DEV], 10, 1).unwrap();
    let session_only = data_keys(DEV, &key(python::APP_KEY), None);
    assert!(matches!(
        mic::solve(&session_only, &join_msg),
        Err(MicError::NoMatch { .. })
    ));
}

#[test]
fn a_truncated_or_foreign_frame_is_a_typed_error() {
    let nwk = key(python::NWK_S_KEY);
    let keys = data_keys(DEV, &nwk, Some(0));
    let frame = hex(python::UNCONFIRMED_FCNT_1);
    let mut msg = mic::upstream_with_challenge(&frame, 4, vec![DEV], 4095, 11).unwrap();
    msg.phy_payload_no_mic.truncate(6);
    let outcome = mic::solve(&keys, &msg);
    assert_eq!(
        outcome,
        Err(MicError::TooShort {
            what: "data uplink",
            len: 6,
            min: 8
        })
    );
    let UpstreamReply::Reject(reject) = mic::reply(&msg, &outcome) else {
        panic!("a truncated frame was acked");
    };
    assert_eq!(reject.result_code, UpstreamRejectResultCode::Other);
    assert!(reject.result_message.unwrap().contains("too short"));

    let mut join =
        mic::upstream_with_challenge(&hex(python::JOIN_REQUEST), 4, vec![DEV], 9, 1).unwrap();
    join.phy_payload_no_mic.pop();
    assert!(matches!(
        mic::solve(&keys, &join),
        Err(MicError::TooShort {
            what: "join request",
            len: 18,
            min: 19
        })
    ));
    join.phy_payload_no_mic.clear();
    assert!(matches!(
        mic::solve(&keys, &join),
        Err(MicError::TooShort { len: 0, .. })
    ));

    // A downlink in the upstream stream.
    let mut down = msg.clone();
    down.phy_payload_no_mic = frame[..frame.len() - 4].to_vec();
    down.phy_payload_no_mic[0] = 0x60;
    assert_eq!(
        mic::solve(&keys, &down),
        Err(MicError::UnsupportedMType(mic::MType::UnconfirmedDataDown))
    );
}

#[test]
fn picks_the_device_whose_key_signed_the_frame_among_a_shared_dev_addr() {
    let addr = DevAddr::new(0x26011bda);
    let devices: Vec<(DevEui, AesKey)> = (1..=6u8)
        .map(|i| (DevEui::new(0x1000 + u64::from(i)), AesKey::new([i; 16])))
        .collect();
    let keys = Keys::new();
    for (i, (dev_eui, nwk)) in devices.iter().enumerate() {
        // Sessions at various counters; the device without a session is skipped.
        if i != 2 {
            keys.set_session(
                *dev_eui,
                Session::new(nwk.clone()).with_fcnt_up(i as u32 * 0x1_0000),
            );
        }
    }
    let dev_euis: Vec<DevEui> = devices.iter().map(|(d, _)| *d).collect();
    for (i, (dev_eui, nwk)) in devices.iter().enumerate() {
        if i == 2 {
            continue;
        }
        let fcnt = i as u32 * 0x1_0000 + 3;
        let frame = DataUplink::new(addr, fcnt)
            .payload(1, [i as u8])
            .build(nwk)
            .unwrap();
        let msg =
            mic::upstream_with_challenge(&frame, 1, dev_euis.clone(), 4095, i as u64).unwrap();
        let solved = mic::solve(&keys, &msg).unwrap();
        assert_eq!((solved.dev_eui, solved.fcnt), (*dev_eui, Some(fcnt)));
        assert_eq!(solved.mic, mic_of(&frame));
    }

    // Join requests: two devices share an AppKey; the DevEUI in the frame decides.
    let shared = AesKey::new([9; 16]);
    let keys = Keys::new();
    keys.set_join_key(DevEui::new(1), shared.clone());
    keys.set_join_key(DevEui::new(2), shared.clone());
    let frame = mic::join_request(&shared, JoinEui::new(3), DevEui::new(2), 1);
    let msg = mic::upstream_with_challenge(&frame, 1, vec![DevEui::new(1), DevEui::new(2)], 50, 0)
        .unwrap();
    assert_eq!(mic::solve(&keys, &msg).unwrap().dev_eui, DevEui::new(2));
}

#[test]
fn record_lets_the_next_uplink_solve_past_the_window() {
    let nwk = key(python::NWK_S_KEY);
    let addr = DevAddr::new(7);
    let keys = data_keys(DEV, &nwk, None);
    // 70 000 uplinks in a row: each solved uplink advances the session.
    for fcnt in (0..70_000u32).step_by(4_999) {
        let frame = DataUplink::new(addr, fcnt).build(&nwk).unwrap();
        let msg = mic::upstream_with_challenge(&frame, 1, vec![DEV], 15, fcnt.into()).unwrap();
        let solved = mic::solve(&keys, &msg).unwrap();
        assert_eq!(solved.fcnt, Some(fcnt));
        keys.record(&solved);
    }
    assert_eq!(keys.session(DEV).unwrap().fcnt_up, Some(69_986));
}

#[test]
fn keys_never_show_in_debug_or_errors() {
    let keys = Keys::new();
    keys.set_join_key(DEV, key(python::APP_KEY));
    keys.set_session(DEV, Session::new(key(python::NWK_S_KEY)).with_fcnt_up(1));
    let debug = format!("{keys:?} {:?}", keys.session(DEV));
    assert!(debug.contains("AesKey(***)"), "{debug}");
    for secret in [
        python::APP_KEY,
        python::NWK_S_KEY,
        "2b7e",
        "2B7E",
        "43, 126",
    ] {
        assert!(!debug.contains(secret), "{debug}");
    }
    let err = "2b7e151628aed2a6abf7158809cf4f3"
        .parse::<AesKey>()
        .unwrap_err();
    assert!(!err.to_string().contains("2b7e"), "{err}");
}

/// A key store behind a trait object, as a database-backed LNS would have it.
#[test]
fn dyn_key_store() {
    struct One(AesKey);
    impl KeyStore for One {
        fn join_key(&self, _: DevEui) -> Option<AesKey> {
            Some(self.0.clone())
        }
        fn session(&self, _: DevEui) -> Option<Session> {
            None
        }
    }
    let store: Box<dyn KeyStore> = Box::new(One(key(python::APP_KEY)));
    let msg = mic::upstream_with_challenge(&hex(python::JOIN_REQUEST), 1, vec![DEV], 3, 0).unwrap();
    assert!(Solver::new().solve(&*store, &msg).is_ok());
    assert!(mic::solve(&store, &msg).is_ok());
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

fn any_keys(nwk: AesKey, app: AesKey, fcnt_up: Option<u32>) -> Keys {
    let keys = data_keys(DEV, &nwk, fcnt_up);
    keys.set_join_key(DEV, app);
    keys
}

proptest! {
    /// Arbitrary payloads, challenges and counters give a result or a typed error.
    #[test]
    fn random_bytes_never_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        challenge in proptest::collection::vec(any::<u32>(), 0..64),
        fcnt_up in any::<Option<u32>>(),
        fcnt in any::<u32>(),
        window in 0usize..9,
    ) {
        let keys = any_keys(AesKey::new([1; 16]), AesKey::new([2; 16]), fcnt_up);
        let _ = mic::Uplink::parse(&payload);
        let _ = mic::split_mic(&payload);
        let _ = mic::verify_join_request(&AesKey::new([2; 16]), &payload);
        let _ = mic::verify_data_uplink(&AesKey::new([1; 16]), &payload, fcnt);
        let _ = mic::data_uplink_mic(&AesKey::new([1; 16]), &payload, fcnt);
        let outcome = Solver::new()
            .fcnt_window(window)
            .solve_parts(&keys, &[DEV, DevEui::new(1)], &payload, &challenge);
        if let Ok(solved) = outcome {
            prop_assert!(challenge.contains(&solved.mic));
        }
        let _ = mic::upstream_with_challenge(&payload, 1, vec![DEV], challenge.len(), fcnt.into());
    }

    /// Every frame the builder makes is found among its decoys, and only with its key.
    #[test]
    fn built_frames_always_solve(
        key_bytes in any::<[u8; 16]>(),
        addr in any::<u32>(),
        fcnt in any::<u32>(),
        behind in 1u32..40_000,
        confirmed in any::<bool>(),
        port in any::<Option<u8>>(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        decoys in 1usize..4096,
        seed in any::<u64>(),
    ) {
        let nwk = AesKey::new(key_bytes);
        let mut uplink = DataUplink::new(DevAddr::new(addr), fcnt).confirmed(confirmed);
        if let Some(port) = port {
            uplink = uplink.payload(port, body);
        }
        let frame = uplink.build(&nwk).unwrap();
        let msg = mic::upstream_with_challenge(&frame, 1, vec![DEV], decoys, seed).unwrap();
        let last = fcnt.checked_sub(behind);
        let solved = mic::solve(&data_keys(DEV, &nwk, last), &msg).unwrap();
        prop_assert_eq!(solved.mic, mic_of(&frame));
        prop_assert_eq!(solved.fcnt, Some(fcnt));
        let mut other = key_bytes;
        other[0] ^= 0x80;
        let wrong = mic::solve(&data_keys(DEV, &AesKey::new(other), last), &msg);
        prop_assert!(matches!(wrong, Err(MicError::NoMatch { .. })), "{:?}", wrong);
    }
}

// ---------------------------------------------------------------------------------------
// OTAA: join accept and the session it starts
// ---------------------------------------------------------------------------------------

/// The whole OTAA exchange of the published TTN capture (Arjan van Bentem, "Deciphering a
/// LoRaWAN OTAA Join Accept", runkit.com/avbentem, referred to from
/// https://github.com/anthonykirby/lora-packet/issues/10):
/// the crate's join request builder makes the captured request byte for byte, the solver
/// finds its MIC, the LNS's join accept is the captured one, and the session keys the
/// device derives sign a data uplink that the solver then solves.
#[test]
fn otaa_join_then_data_uplink_in_the_new_session() {
    let app_key = key("b6b53f4a168a7a88bdf7ea135ce9cfca");
    let (join_eui, dev_eui) = (
        JoinEui::new(0x70b3d57ed00000dc),
        DevEui::new(0x00afee7cf5ed6f1e),
    );
    let request = mic::join_request(&app_key, join_eui, dev_eui, 0xcc85);
    assert_eq!(
        request,
        hex("00dc0000d07ed5b3701e6fedf57ceeaf0085cc587fe913")
    );

    // The LNS: solve the join request, answer with a join accept, keep the session.
    let lns_keys = Keys::new();
    lns_keys.set_join_key(dev_eui, app_key.clone());
    let msg = mic::upstream_with_challenge(&request, 1, vec![dev_eui], 4095, 3).unwrap();
    assert_eq!(mic::solve(&lns_keys, &msg).unwrap().dev_eui, dev_eui);
    let dev_nonce = match mic::Uplink::parse(&msg.phy_payload_no_mic).unwrap() {
        mic::Uplink::JoinRequest { dev_nonce, .. } => dev_nonce,
        other => panic!("{other:?}"),
    };
    let accept = JoinAccept::new(0xe5063a, 0x000013, DevAddr::new(0x26012e43))
        .unwrap()
        .with_dl_settings(0x03)
        .with_rx_delay(1)
        .unwrap()
        .with_cf_list(hex("184f84e85684b85e84886684586e8400"))
        .unwrap();
    let downlink = accept.encrypt(&app_key);
    assert_eq!(
        downlink,
        hex("204dd85ae608b87fc4889970b7d2042c9e72959b0057aed6094b16003df12de145")
    );
    let lns_session = accept.session_keys(&app_key, dev_nonce);
    lns_keys.set_session(dev_eui, lns_session.session());

    // The device: read the join accept, derive the same keys, send its first uplink.
    let received = JoinAccept::decrypt(&app_key, &downlink).unwrap();
    let device_session = received.session_keys(&app_key, 0xcc85);
    assert_eq!(device_session, lns_session);
    assert_eq!(
        device_session.nwk_s_key,
        key("2c96f7028184bb0be8aa49275290d4fc")
    );
    assert_eq!(
        device_session.app_s_key,
        key("f3a5c8f0232a38c144029c165865802c")
    );
    for fcnt in 0..3 {
        let uplink = DataUplink::new(received.dev_addr(), fcnt)
            .payload(1, *b"real")
            .build(&device_session.nwk_s_key)
            .unwrap();
        let msg =
            mic::upstream_with_challenge(&uplink, 2 + u64::from(fcnt), vec![dev_eui], 4095, 9)
                .unwrap();
        let solved = mic::solve(&lns_keys, &msg).unwrap();
        assert_eq!((solved.dev_eui, solved.fcnt), (dev_eui, Some(fcnt)));
        lns_keys.record(&solved);
    }

    // A join accept under another key is refused by the device.
    assert_eq!(
        JoinAccept::decrypt(&AesKey::new([0; 16]), &downlink),
        Err(MicError::MicMismatch)
    );
}

proptest! {
    /// Any join accept reads back as built with its key, and fails the MIC with any other.
    #[test]
    fn join_accepts_round_trip_only_under_their_key(
        key_bytes in any::<[u8; 16]>(),
        app_nonce in 0u32..=0xff_ffff,
        net_id in 0u32..=0xff_ffff,
        addr in any::<u32>(),
        dl_settings in any::<u8>(),
        rx_delay in 0u8..=15,
        cf_list in any::<Option<[u8; 16]>>(),
        flip in 0usize..128,
    ) {
        let app_key = AesKey::new(key_bytes);
        let mut accept = JoinAccept::new(app_nonce, net_id, DevAddr::new(addr))
            .unwrap()
            .with_dl_settings(dl_settings)
            .with_rx_delay(rx_delay)
            .unwrap();
        if let Some(cf_list) = cf_list {
            accept = accept.with_cf_list(cf_list).unwrap();
        }
        let wire = accept.encrypt(&app_key);
        prop_assert_eq!(JoinAccept::decrypt(&app_key, &wire), Ok(accept));
        let mut other = key_bytes;
        other[flip / 8] ^= 1 << (flip % 8);
        prop_assert_eq!(
            JoinAccept::decrypt(&AesKey::new(other), &wire),
            Err(MicError::MicMismatch)
        );
    }
}
