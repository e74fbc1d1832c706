//! Upstream and downstream connections against the emulator, over plain WebSocket and
//! TLS: the client as users run it, the server recording the exact frames it gets.

use crate::common::{self, tls_emulator};

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ran_routing::*;
use ran_routing_emulator::Emulator;

use crate::common::streams::{asap, WAIT};

fn uplink(transaction_id: u64, dev_eui: u64) -> UpstreamMessage {
    UpstreamMessage::new(
        transaction_id,
        vec![DevEui::new(dev_eui)],
        UpstreamRadio::new(868_100_000, LoRaModulation::new(12, 125_000), -52.0, -3.0),
        vec![64, 184, 174, 199],
        vec![1_308_830_714, 114_830_713],
    )
}

fn class_a() -> TransmissionWindow {
    TransmissionWindow::class_a(
        DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000)),
        1,
    )
}

fn both_transports(test: impl Fn(&Emulator)) {
    test(&common::emulator());
    test(&tls_emulator());
}

#[test]
fn upstream_in_order_acked_and_rejected() {
    both_transports(|emu| {
        let core = common::core(emu);
        let up = core.upstream().connect().unwrap();
        assert!(emu.wait_upstream_connections(1, WAIT));
        for id in 1..=20 {
            emu.send_upstream(&uplink(id, 0x7ABE1B8C93D7174F)).unwrap();
        }
        for id in 1..=20 {
            let msg = up.recv_timeout(WAIT).unwrap();
            assert_eq!(msg.transaction_id, id);
            if id % 2 == 0 {
                up.send_upstream_ack(id, msg.dev_euis[0], msg.mic_challenge[0])
                    .unwrap();
            } else {
                up.send(
                    UpstreamReject::new(id, UpstreamRejectResultCode::MicFailed)
                        .with_message("no key"),
                )
                .unwrap();
            }
        }
        let mut replies = Vec::new();
        while replies.len() < 20 {
            replies.push(emu.wait_upstream_reply(WAIT).expect("reply recorded"));
        }
        for (i, reply) in replies.iter().enumerate() {
            let id = i as u64 + 1;
            let expected: UpstreamReply = if id.is_multiple_of(2) {
                UpstreamAck::new(id, DevEui::new(0x7ABE1B8C93D7174F), 1_308_830_714).into()
            } else {
                UpstreamReject::new(id, UpstreamRejectResultCode::MicFailed)
                    .with_message("no key")
                    .into()
            };
            assert_eq!(reply, &expected);
        }
        core.close();
        assert_eq!(up.wait_closed(), CloseReason::Local);
    });
}

#[test]
fn unicast_and_multicast_downlinks_get_ack_then_result() {
    both_transports(|emu| {
        let core = common::core(emu);
        let dev_eui = DevEui::new(0x7ABE1B8C93D7174F);
        core.routing_table()
            .insert(NewDevice::new(dev_eui, DevAddr::new(0x627bb8bb)))
            .unwrap();
        let group = MulticastAddr::new(0xef046a1e);
        core.multicast_groups().create("group", group).unwrap();
        emu.set_downstream_result_for_transaction(2, DownstreamResultCode::TooLate);
        let down = core.downstream().connect().unwrap();
        down.send_downstream(1, dev_eui, asap(), b"hi".to_vec())
            .unwrap();
        down.send_multicast_downstream(2, group, asap(), b"all".to_vec())
            .unwrap();
        let replies: Vec<DownstreamReply> =
            (0..4).map(|_| down.recv_timeout(WAIT).unwrap()).collect();
        for id in [1, 2] {
            let mine: Vec<&DownstreamReply> = replies
                .iter()
                .filter(|r| r.transaction_id() == id)
                .collect();
            assert_eq!(mine.len(), 2, "{replies:?}");
            assert!(matches!(mine[0], DownstreamReply::Ack(_)), "{mine:?}");
            let DownstreamReply::Result(result) = mine[1] else {
                panic!("{mine:?}")
            };
            let expected = if id == 1 {
                DownstreamResultCode::Success
            } else {
                DownstreamResultCode::TooLate
            };
            assert_eq!(result.result_code, expected);
        }
        let received = emu.downstream_received();
        assert_eq!(
            received,
            vec![
                DownstreamMessage::new(1, dev_eui, asap(), b"hi".to_vec()).into(),
                MulticastDownstreamMessage::new(2, group, asap(), b"all".to_vec()).into(),
            ]
        );
        down.close();
        down.wait_closed();
    });
}

#[test]
fn join_accept_carries_the_target_address() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let down = core.downstream().connect().unwrap();
    down.send(
        DownstreamMessage::new(9, DevEui::new(5), class_a(), vec![0x20; 17])
            .with_target_dev_addr(DevAddr::new(7)),
    )
    .unwrap();
    let DownstreamRequest::Unicast(sent) = emu.wait_downstream(WAIT).unwrap() else {
        panic!("not unicast")
    };
    assert_eq!(sent.target_dev_addr, Some(DevAddr::new(7)));
    // Device 5 is not subscribed: acknowledged, then discarded.
    let _ack = down.recv_timeout(WAIT).unwrap();
    let DownstreamReply::Result(result) = down.recv_timeout(WAIT).unwrap() else {
        panic!("no result")
    };
    assert_eq!(result.result_code, DownstreamResultCode::GatewayNotFound);
}

#[test]
fn invalid_downlink_is_refused_before_sending() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let down = core.downstream().connect().unwrap();
    let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(13, 125_000));
    let err = down
        .send_downstream(
            1,
            DevEui::new(1),
            TransmissionWindow::class_a(radio, 1),
            vec![1],
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(InvalidInput::Spreading(13))),
        "{err:?}"
    );
    let err = down
        .send_multicast_downstream(
            1,
            MulticastAddr::new(1),
            TransmissionWindow::class_b(class_a().radio, vec![]),
            vec![1],
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(InvalidInput::TmmsSlots(0))),
        "{err:?}"
    );
    assert!(emu.wait_downstream(Duration::from_millis(200)).is_none());
}

#[test]
fn two_upstream_connections_share_the_traffic() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let a = core.upstream().connect().unwrap();
    let b = core.upstream().connect().unwrap();
    assert!(emu.wait_upstream_connections(2, WAIT));
    for id in 1..=10 {
        emu.send_upstream(&uplink(id, 1)).unwrap();
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 10 && Instant::now() < deadline {
        got.extend(a.try_iter().map(|m| ('a', m.transaction_id)));
        got.extend(b.try_iter().map(|m| ('b', m.transaction_id)));
        thread::sleep(Duration::from_millis(5));
    }
    let on_a = got.iter().filter(|(c, _)| *c == 'a').count();
    assert_eq!(got.len(), 10, "{got:?}");
    assert_eq!(on_a, 5, "round-robin: {got:?}");
    let mut ids: Vec<u64> = got.iter().map(|(_, id)| *id).collect();
    ids.sort();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
}

#[test]
fn unauthorized_handshake() {
    both_transports(|emu| {
        let mut builder = Core::builder("not-the-token")
            .base_url(&emu.base_url())
            .connect_timeout(WAIT);
        if let Some(pem) = emu.certificate_pem() {
            builder = builder.add_root_certificate_pem(pem.as_bytes());
        }
        let core = builder.build().unwrap();
        let err = core.upstream().connect().unwrap_err();
        assert!(
            matches!(err, Error::Api(ApiError::Unauthorized { .. })),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("not-the-token"));
        let err = core.downstream().connect().unwrap_err();
        assert!(matches!(err, Error::Api(ApiError::Unauthorized { .. })));
    });
}

#[test]
fn tls_without_the_certificate_is_a_tls_error() {
    let emu = tls_emulator();
    let core = Core::builder(emu.token())
        .base_url(&emu.base_url())
        .connect_timeout(WAIT)
        .build()
        .unwrap();
    let err = core.upstream().connect().unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[test]
fn close_ends_a_blocked_iterator() {
    both_transports(|emu| {
        let core = common::core(emu);
        let up = Arc::new(core.upstream().connect().unwrap());
        let consumer = {
            let up = up.clone();
            thread::spawn(move || up.iter().count())
        };
        thread::sleep(Duration::from_millis(50));
        up.close();
        assert_eq!(up.wait_closed(), CloseReason::Local);
        assert_eq!(consumer.join().unwrap(), 0);
        assert!(matches!(
            up.send_upstream_ack(1, DevEui::new(1), 1),
            Err(Error::Closed(_))
        ));
    });
}

#[test]
fn close_with_messages_buffered_delivers_them_all() {
    both_transports(|emu| {
        let core = common::core(emu);
        // Room for half in the channel: the rest go to the stash after close, which
        // holds up to a channel's worth (a flooding server cannot grow it further).
        let up = core.upstream().capacity(20).connect().unwrap();
        assert!(emu.wait_upstream_connections(1, WAIT));
        for id in 1..=40 {
            emu.send_upstream(&uplink(id, 1)).unwrap();
        }
        assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 1);
        // Wait until the emulator has written all 40 (the rest sit in our buffers).
        thread::sleep(Duration::from_millis(200));
        up.close();
        up.wait_closed();
        let rest: Vec<u64> = up.iter().map(|m| m.transaction_id).collect();
        assert_eq!(rest, (2..=40).collect::<Vec<_>>());
    });
}

#[test]
fn server_side_close_surfaces_its_code() {
    both_transports(|emu| {
        let core = common::core(emu);
        let up = core.upstream().no_reconnect().connect().unwrap();
        assert!(emu.wait_upstream_connections(1, WAIT));
        emu.send_upstream(&uplink(1, 1)).unwrap();
        emu.close_stream_connections();
        let ids: Vec<u64> = up.iter().map(|m| m.transaction_id).collect();
        assert_eq!(ids, vec![1]);
        let reason = up.wait_closed();
        // The emulator's restart: 1001 (going away) and its reason, as sent.
        assert!(
            matches!(&reason, CloseReason::Remote { code: 1001, reason } if reason == "server restart"),
            "{reason:?}"
        );
    });
}

#[test]
fn garbage_frame_between_two_good_ones() {
    both_transports(|emu| {
        let core = common::core(emu);
        let up = core.upstream().connect().unwrap();
        assert!(emu.wait_upstream_connections(1, WAIT));
        emu.send_upstream(&uplink(1, 1)).unwrap();
        emu.send_upstream_raw("{\"this is\": not json").unwrap();
        emu.send_upstream(&uplink(2, 1)).unwrap();
        assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 1);
        assert_eq!(up.recv_timeout(WAIT).unwrap().transaction_id, 2);
        assert!(!up.is_closed());
    });
}

#[test]
fn core_close_closes_every_stream() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let up = core.upstream().connect().unwrap();
    let down = core.downstream().connect().unwrap();
    core.close();
    assert_eq!(up.wait_closed(), CloseReason::Local);
    assert_eq!(down.wait_closed(), CloseReason::Local);
    assert!(matches!(core.upstream().connect(), Err(Error::Closed(_))));
}

#[test]
fn connections_are_send_and_sync_for_worker_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<UpstreamConnection>();
    assert_send_sync::<DownstreamConnection>();
    let emu = common::emulator();
    let core = common::core(&emu);
    let up = Arc::new(core.upstream().connect().unwrap());
    assert!(emu.wait_upstream_connections(1, WAIT));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let up = up.clone();
            thread::spawn(move || {
                let mut n = 0;
                for msg in up.iter() {
                    up.send_upstream_ack(msg.transaction_id, msg.dev_euis[0], msg.mic_challenge[0])
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    for id in 1..=200 {
        emu.send_upstream(&uplink(id, 1)).unwrap();
    }
    let mut acked = std::collections::HashSet::new();
    while acked.len() < 200 {
        let reply = emu.wait_upstream_reply(WAIT).expect("every uplink acked");
        assert!(acked.insert(reply.transaction_id()), "acked twice");
    }
    up.close();
    let total: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(total, 200);
}
