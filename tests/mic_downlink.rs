//! Data downlinks and the FRMPayload cipher against an independent implementation.
#![cfg(feature = "mic")]

use std::sync::Arc;

use ran_routing::mic::{
    self, encrypt_frm_payload, AesKey, DataDownlink, DataUplink, Direction, KeyStore, Keys,
    MicError, Session,
};
use ran_routing::{DevAddr, DevEui};

#[path = "common/vectors.rs"]
mod vectors;
use vectors::{hex, key};

/// Produced by tests/vectors/mic_vectors.py: frames laid out with `struct.pack`, the
/// FRMPayload cipher with the `cryptography` package's AES-ECB and the MIC with its
/// AES-CMAC, no code shared with this crate. The script checks its cipher against the
/// lora-packet library's published decryption ("test") first.
mod python {
    pub const NWK_S_KEY: &str = "000102030405060708090a0b0c0d0e0f";
    pub const APP_S_KEY: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
    /// 26011bda, FCntDown 1, ACK, FPort 10, "hello".
    pub const DOWN_ACK_FCNT_1: &str = "60da1b01262001000ac0d33446377d23c77f";
    /// 01020304, confirmed, ADR, FPending, FOpts 0351ff0001, FCntDown 0x1_0002, FPort 1,
    /// bytes 0 to 19.
    pub const DOWN_CONFIRMED_FOPTS_FCNT_0X1_0002: &str =
        "a0040302019502000351ff000101418d159d83949a926d3f4326bda55d1a0698050f1fa53f14";
    /// 26011bda, FCntDown 70000, FPort 0, MAC commands 0602 (under the NwkSKey).
    pub const DOWN_PORT0_FCNT_70000: &str = "60da1b0126007011004d16f166c779";
    /// 26011bda, FCntDown 0xffff_ffff, ACK, no FPort.
    pub const DOWN_EMPTY_ACK_FCNT_MAX: &str = "60da1b012620ffff24d4f8c8";
    /// Uplink from 26011bda, FCnt 0x2_0001, FPort 5, bytes 0 to 32 under the AppSKey.
    pub const UP_ENCRYPTED_FCNT_0X2_0001: &str = "40da1b0126000100059664f3928de7a169924fd9078029271e75674527d1df7e275a781a43a2a26d5b466d07cedc";
}

fn keys() -> (AesKey, AesKey) {
    (key(python::NWK_S_KEY), key(python::APP_S_KEY))
}

#[test]
fn downlinks_match_the_independent_vectors() {
    let (nwk, app) = keys();
    let addr = DevAddr::new(0x26011bda);
    let cases = [
        (
            DataDownlink::new(addr, 1).ack(true).payload(10, *b"hello"),
            python::DOWN_ACK_FCNT_1,
        ),
        (
            DataDownlink::new(DevAddr::new(0x01020304), 0x0001_0002)
                .confirmed(true)
                .adr(true)
                .f_pending(true)
                .fopts(hex("0351ff0001"))
                .unwrap()
                .payload(1, (0..20).collect::<Vec<u8>>()),
            python::DOWN_CONFIRMED_FOPTS_FCNT_0X1_0002,
        ),
        (
            DataDownlink::new(addr, 70_000).payload(0, [0x06, 0x02]),
            python::DOWN_PORT0_FCNT_70000,
        ),
        (
            DataDownlink::new(addr, u32::MAX).ack(true),
            python::DOWN_EMPTY_ACK_FCNT_MAX,
        ),
    ];
    for (down, expected) in cases {
        let frame = down.build(&nwk, &app).unwrap();
        assert_eq!(frame, hex(expected), "{down:?}");
        // The device's side reads back every field, the payload decrypted.
        assert_eq!(
            DataDownlink::decrypt(&nwk, &app, &frame, down.fcnt_down),
            Ok(down.clone())
        );
    }
}

#[test]
fn the_full_counter_and_the_direction_are_signed() {
    let (nwk, app) = keys();
    let frame = hex(python::DOWN_CONFIRMED_FOPTS_FCNT_0X1_0002);
    // Same 16 bits on air, another epoch: the MIC says no.
    for fcnt in [0x0000_0002, 0x0002_0002] {
        assert_eq!(
            DataDownlink::decrypt(&nwk, &app, &frame, fcnt),
            Err(MicError::MicMismatch)
        );
    }
    // Another NwkSKey: no.
    assert_eq!(
        DataDownlink::decrypt(&app, &app, &frame, 0x0001_0002),
        Err(MicError::MicMismatch)
    );
    // An uplink is not a downlink, whatever its MIC.
    let up = hex(python::UP_ENCRYPTED_FCNT_0X2_0001);
    assert!(matches!(
        DataDownlink::decrypt(&nwk, &app, &up, 0x0002_0001),
        Err(MicError::WrongMType { .. })
    ));
    // One flipped payload bit breaks the MIC.
    let mut forged = frame.clone();
    forged[14] ^= 1;
    assert_eq!(
        DataDownlink::decrypt(&nwk, &app, &forged, 0x0001_0002),
        Err(MicError::MicMismatch)
    );
}

#[test]
fn uplinks_encrypt_under_the_app_s_key_and_an_lns_reads_them() {
    let (nwk, app) = keys();
    let addr = DevAddr::new(0x26011bda);
    let clear: Vec<u8> = (0..33).collect();
    let frame = DataUplink::new(addr, 0x0002_0001)
        .payload(5, clear.clone())
        .app_s_key(app.clone())
        .build(&nwk)
        .unwrap();
    assert_eq!(frame, hex(python::UP_ENCRYPTED_FCNT_0X2_0001));
    assert!(mic::verify_data_uplink(&nwk, &frame, 0x0002_0001).unwrap());
    let on_air = &frame[9..frame.len() - 4];
    assert_eq!(
        encrypt_frm_payload(&app, addr, 0x0002_0001, Direction::Uplink, on_air),
        clear
    );
    // Without an AppSKey the payload goes as given.
    let plain = DataUplink::new(addr, 1)
        .payload(5, clear.clone())
        .build(&nwk)
        .unwrap();
    assert_eq!(&plain[9..plain.len() - 4], &clear[..]);
}

#[test]
fn fopts_are_bounded_and_exclusive_with_port_zero() {
    let (nwk, app) = keys();
    let addr = DevAddr::new(1);
    assert!(DataDownlink::new(addr, 0).fopts(vec![0; 15]).is_ok());
    assert_eq!(
        DataDownlink::new(addr, 0).fopts(vec![0; 16]).unwrap_err(),
        MicError::TooLong {
            what: "FOpts",
            len: 16,
            max: 15
        }
    );
    let twice = DataDownlink::new(addr, 0)
        .fopts([0x02])
        .unwrap()
        .payload(0, [0x06]);
    assert_eq!(twice.build(&nwk, &app), Err(MicError::MacCommandsTwice));
    // 15 bytes of FOpts plus a payload up to 255 bytes without MIC, no more.
    let full = DataDownlink::new(addr, 0)
        .fopts(vec![0; 15])
        .unwrap()
        .payload(1, vec![0; 255 - 8 - 15 - 1]);
    assert_eq!(full.build(&nwk, &app).unwrap().len(), 259);
    let over = full.clone().payload(1, vec![0; 255 - 8 - 15]);
    assert!(matches!(
        over.build(&nwk, &app),
        Err(MicError::TooLong { len: 256, .. })
    ));
}

#[test]
fn a_shared_store_hands_every_worker_its_own_counter() {
    let (nwk, app) = keys();
    let devices: Vec<DevEui> = (1..=8).map(DevEui::new).collect();
    let keys = Arc::new(Keys::new());
    for &dev_eui in &devices {
        keys.set_session(
            dev_eui,
            Session::new(nwk.clone())
                .with_app_s_key(app.clone())
                .with_fcnt_down(65_530),
        );
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (keys, devices) = (Arc::clone(&keys), devices.clone());
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                for _ in 0..50 {
                    for &dev_eui in &devices {
                        let (session, fcnt) = keys.next_fcnt_down(dev_eui).unwrap();
                        let frame = DataDownlink::new(DevAddr::new(dev_eui.get() as u32), fcnt)
                            .ack(true)
                            .build(&session.nwk_s_key, session.app_s_key.as_ref().unwrap())
                            .unwrap();
                        sent.push((dev_eui, fcnt, frame));
                    }
                }
                sent
            })
        })
        .collect();
    let mut sent: Vec<_> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    sent.sort_by_key(|(d, f, _)| (*d, *f));
    for &dev_eui in &devices {
        let counters: Vec<u32> = sent
            .iter()
            .filter(|(d, ..)| *d == dev_eui)
            .map(|(_, f, _)| *f)
            .collect();
        // 200 downlinks, 200 distinct counters in a row, across the 16-bit rollover.
        assert_eq!(counters, (65_531..65_731).collect::<Vec<u32>>());
        assert_eq!(keys.session(dev_eui).unwrap().fcnt_down, Some(65_730));
    }
    // Each frame verifies only with its own full counter.
    let (_, fcnt, frame) = sent.last().unwrap();
    assert!(DataDownlink::decrypt(&nwk, &app, frame, *fcnt).is_ok());
}
