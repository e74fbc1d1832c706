//! LNS runtime helpers against real servers: uplink de-duplication with the emulator
//! playing each uplink as several copies and judging every copy's answer, and the
//! downlink tracker against the emulator and scripted raw WebSocket servers.

use crate::common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ran_routing::mic::{self, AesKey, Keys, Session};
use ran_routing::*;
use ran_routing::{RecvTimeoutError, TryRecvError};
use ran_routing_emulator::{ControlClient, Copies, Emulator, RadioDevice, UpstreamVerdict};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(300);

fn key(byte: u8) -> AesKey {
    AesKey::new([byte; 16])
}

/// An ABP device on the emulated air, in the routing table (so the RAN routes its
/// uplinks to us), and its session key in `keys`.
fn abp_device(emu: &Emulator, core: &Core, keys: &Keys, n: u64) -> DevEui {
    let dev_eui = DevEui::new(0x70B3_D500_0000_0000 + n);
    let dev_addr = DevAddr::new(0x2600_0000 + n as u32);
    emu.add_radio_device(RadioDevice::abp(dev_eui, dev_addr, key(n as u8), 100))
        .unwrap();
    core.routing_table()
        .insert(NewDevice::abp(dev_eui, dev_addr))
        .unwrap();
    keys.set_session(dev_eui, Session::new(key(n as u8)).with_fcnt_up(99));
    dev_eui
}

/// An upstream connection with de-duplication, once the emulator has it.
fn deduped(emu: &Emulator, core: &Core, dedup: impl Into<Dedup>) -> Arc<UpstreamConnection> {
    let up = Arc::new(core.upstream().dedup(dedup).connect().unwrap());
    assert!(emu.wait_upstream_connections(1, WAIT));
    up
}

/// How the test LNS answers an uplink.
#[derive(Clone, Copy)]
enum Answer {
    Solve,
    /// Acks with a decoy MIC of the challenge: wrong, and not among other copies'.
    Decoy,
    Never,
}

/// An LNS thread: hands every uplink it is given to the test (through the returned
/// list) and answers it after `delay` as `answer` says.
fn lns(
    up: Arc<UpstreamConnection>,
    keys: Keys,
    delay: Duration,
    answer: impl Fn(&UpstreamMessage) -> Answer + Send + 'static,
) -> Arc<Mutex<Vec<UpstreamMessage>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    thread::spawn(move || {
        for msg in up.iter() {
            record.lock().unwrap().push(msg.clone());
            thread::sleep(delay);
            let reply: UpstreamReply = match answer(&msg) {
                Answer::Solve => mic::Solver::new().reply(&keys, &msg),
                Answer::Decoy => {
                    let solved = mic::Solver::new().reply(&keys, &msg);
                    let UpstreamReply::Ack(ack) = solved else {
                        panic!("the test LNS should solve {msg:?}");
                    };
                    let decoy = msg.mic_challenge.iter().find(|m| **m != ack.mic).unwrap();
                    UpstreamAck::new(msg.transaction_id, ack.dev_eui, *decoy).into()
                }
                Answer::Never => continue,
            };
            if up.send(reply).is_err() {
                return;
            }
        }
    });
    seen
}

fn verdicts(emu: &Emulator, ids: &[u64]) -> Vec<UpstreamVerdict> {
    ids.iter()
        .map(|id| emu.wait_upstream_verdict(*id, WAIT).unwrap())
        .collect()
}

fn seen_count(seen: &Mutex<Vec<UpstreamMessage>>) -> usize {
    seen.lock().unwrap().len()
}

#[test]
fn copies_before_and_after_the_answer_get_the_first_copys_ack() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let keys = Keys::new();
    let dev = abp_device(&emu, &core, &keys, 1);
    let up = deduped(&emu, &core, Duration::from_secs(60));
    // The LNS takes its time, so copies sent back to back are held until it answers.
    let seen = lns(up.clone(), keys, Duration::from_millis(200), |_| {
        Answer::Solve
    });

    let before = emu.play_uplink_copies(dev, 1, *b"held", 3).unwrap();
    assert_eq!(before.len(), 3);
    assert_eq!(verdicts(&emu, &before), vec![UpstreamVerdict::Solved; 3]);
    // Copies arriving after the first was answered are answered at once.
    let after = emu
        .play_uplink_copies(dev, 1, *b"late", Copies::new(3).spaced(QUIET))
        .unwrap();
    assert_eq!(verdicts(&emu, &after), vec![UpstreamVerdict::Solved; 3]);

    thread::sleep(QUIET);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "the LNS saw one copy of each uplink");
    assert_eq!(
        (seen[0].transaction_id, seen[1].transaction_id),
        (before[0], after[0])
    );
    let stats = up.dedup_stats().unwrap();
    assert_eq!((stats.duplicates, stats.answered), (4, 4), "{stats:?}");
    assert_eq!(stats.expired_unanswered + stats.cap_hits, 0);
    assert_eq!(stats.entries, 2);
    // The connection's stats carry the same counters.
    assert_eq!(up.stats().dedup, Some(stats));
    let mic = emu.mic_stats();
    assert_eq!((mic.played, mic.solved, mic.duplicate_replies), (6, 6, 0));
}

#[test]
fn acks_that_do_not_fit_a_copy_become_mic_failed_and_rejects_are_not_repeated() {
    let emu = common::emulator();
    let core = common::core(&emu);
    // Two candidates per challenge: a decoy of one copy is (almost surely) not another's.
    emu.set_mic_challenge_size(2, 2).unwrap();
    let keys = Keys::new();
    let decoyed = abp_device(&emu, &core, &keys, 2);
    let unknown = {
        let other = Keys::new();
        abp_device(&emu, &core, &other, 3)
    };
    let up = deduped(&emu, &core, Duration::from_secs(60));
    let decoy_target = decoyed;
    let seen = lns(up.clone(), keys, Duration::from_millis(100), move |m| {
        if m.dev_euis.contains(&decoy_target) {
            Answer::Decoy
        } else {
            Answer::Solve // no key: the solver rejects with MICFailed
        }
    });

    let ids = emu.play_uplink_copies(decoyed, 1, *b"x", 3).unwrap();
    let v = verdicts(&emu, &ids);
    assert!(matches!(v[0], UpstreamVerdict::WrongAck { .. }), "{v:?}");
    assert_eq!(
        v[1..],
        vec![UpstreamVerdict::Rejected(UpstreamRejectResultCode::MicFailed); 2]
    );
    assert_eq!(
        seen_count(&seen),
        1,
        "the acked uplink's copies were answered"
    );
    // A rejected uplink's copies each go to the LNS, which rejects them itself.
    let ids = emu.play_uplink_copies(unknown, 1, *b"y", 3).unwrap();
    assert_eq!(
        verdicts(&emu, &ids),
        vec![UpstreamVerdict::Rejected(UpstreamRejectResultCode::MicFailed); 3]
    );
    assert_eq!(seen_count(&seen), 4);
    let stats = up.dedup_stats().unwrap();
    assert_eq!(
        (stats.duplicates, stats.answered, stats.after_reject),
        (2, 2, 2),
        "{stats:?}"
    );
}

/// A join request as the device sent it, and a forged copy: the same frame with a wrong
/// MIC, its challenge built around that MIC, so the genuine MIC is not among its
/// candidates.
fn forged_and_genuine_join_request(
    app_key: &AesKey,
    dev: DevEui,
    join_eui: JoinEui,
) -> (UpstreamMessage, UpstreamMessage, u32) {
    let genuine = mic::join_request(app_key, join_eui, dev, 0x0102);
    let (_, true_mic) = mic::split_mic(&genuine).unwrap();
    let mut forged = genuine.clone();
    let n = forged.len();
    forged[n - 4..].copy_from_slice(&(true_mic ^ 0x5a5a_5a5a).to_be_bytes());
    let forged = mic::upstream_with_challenge(&forged, 101, vec![dev], 3, 1).unwrap();
    assert!(!forged.mic_challenge.contains(&true_mic));
    let genuine = mic::upstream_with_challenge(&genuine, 102, vec![dev], 3, 2).unwrap();
    assert_eq!(forged.phy_payload_no_mic, genuine.phy_payload_no_mic);
    (forged, genuine, true_mic)
}

/// The emulator's record of the reply to `transaction_id`, waited for.
fn reply_to(emu: &Emulator, transaction_id: u64) -> UpstreamReply {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let replies = emu.upstream_replies();
        if let Some(reply) = replies
            .into_iter()
            .find(|r| r.transaction_id() == transaction_id)
        {
            return reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reply to {transaction_id}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_forged_copy_rejected_first_does_not_stand_for_the_genuine_frame() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let (dev, join_eui, app_key) = (DevEui::new(0x70B3_D5FF_0000_0009), JoinEui::new(9), key(9));
    let keys = Keys::new();
    keys.set_join_key(dev, app_key.clone());
    let up = deduped(&emu, &core, Duration::from_secs(60));
    let seen = lns(up.clone(), keys, Duration::ZERO, |_| Answer::Solve);
    let (forged, genuine, true_mic) = forged_and_genuine_join_request(&app_key, dev, join_eui);

    // The forged copy first; the genuine frame 50 ms later, once the forgery is rejected.
    emu.send_upstream(&forged).unwrap();
    let rejected = reply_to(&emu, forged.transaction_id);
    assert!(
        matches!(&rejected, UpstreamReply::Reject(r) if r.result_code == UpstreamRejectResultCode::MicFailed),
        "{rejected:?}"
    );
    thread::sleep(Duration::from_millis(50));
    emu.send_upstream(&genuine).unwrap();
    assert_eq!(
        reply_to(&emu, genuine.transaction_id),
        UpstreamAck::new(genuine.transaction_id, dev, true_mic).into(),
        "the genuine join request reached the LNS and was acked"
    );
    assert_eq!(seen_count(&seen), 2);
    let stats = up.dedup_stats().unwrap();
    assert_eq!((stats.after_reject, stats.duplicates), (1, 0), "{stats:?}");
}

#[test]
fn payloads_longer_than_a_lorawan_frame_are_handed_out_unremembered() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let up = deduped(&emu, &core, Duration::from_secs(60));
    let dev = DevEui::new(0x70B3_D5FF_0000_000A);
    let frame = |len: usize| {
        let mut frame = vec![0x40; len];
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame
    };
    for (id, len) in [
        (1, 300),
        (2, 300),
        (3, Dedup::MAX_PAYLOAD),
        (4, Dedup::MAX_PAYLOAD),
    ] {
        let message = mic::upstream_with_challenge(&frame(len), id, vec![dev], 1, id).unwrap();
        emu.send_upstream(&message).unwrap();
    }
    // Both long copies reach the application; of the longest LoRaWAN frame, one.
    let got: Vec<u64> = (0..3)
        .map(|_| up.recv_timeout(WAIT).unwrap().transaction_id)
        .collect();
    assert_eq!(got, [1, 2, 3]);
    assert!(up.recv_timeout(QUIET).is_err());
    let stats = up.dedup_stats().unwrap();
    assert_eq!(
        (stats.oversized, stats.duplicates, stats.entries),
        (2, 1, 1),
        "{stats:?}"
    );
}

#[test]
fn copies_across_the_window_edge_are_new_uplinks() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let keys = Keys::new();
    let dev = abp_device(&emu, &core, &keys, 4);
    let up = deduped(&emu, &core, Duration::from_millis(400));
    let seen = lns(up.clone(), keys, Duration::ZERO, |_| Answer::Solve);
    let ids = emu
        .play_uplink_copies(
            dev,
            1,
            *b"edge",
            Copies::new(2).spaced(Duration::from_millis(900)),
        )
        .unwrap();
    assert_eq!(verdicts(&emu, &ids), vec![UpstreamVerdict::Solved; 2]);
    assert_eq!(
        seen_count(&seen),
        2,
        "past the window a copy is a new uplink"
    );
    let stats = up.dedup_stats().unwrap();
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    // Inside the window it is a duplicate again.
    let ids = emu.play_uplink_copies(dev, 1, *b"in", 2).unwrap();
    assert_eq!(verdicts(&emu, &ids), vec![UpstreamVerdict::Solved; 2]);
    assert_eq!(seen_count(&seen), 3);
    assert_eq!(up.dedup_stats().unwrap().duplicates, 1);
}

#[test]
fn copies_of_an_unanswered_uplink_are_rejected_with_other_after_the_bound() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let keys = Keys::new();
    let dev = abp_device(&emu, &core, &keys, 5);
    let dedup = Dedup::new(Duration::from_secs(60)).answer_within(Duration::from_millis(300));
    let up = deduped(&emu, &core, dedup);
    let seen = lns(up.clone(), keys, Duration::ZERO, |_| Answer::Never);

    // Two copies held, one after the bound (rejected on arrival).
    let ids = emu
        .play_uplink_copies(
            dev,
            1,
            *b"lost",
            Copies::new(3).spaced(Duration::from_millis(200)),
        )
        .unwrap();
    let other = UpstreamVerdict::Rejected(UpstreamRejectResultCode::Other);
    assert_eq!(verdicts(&emu, &ids[1..]), vec![other.clone(), other]);
    assert_eq!(
        emu.played_upstream(ids[0]).unwrap().verdict,
        UpstreamVerdict::Unanswered,
        "the first copy is the application's to answer"
    );
    assert_eq!(seen_count(&seen), 1);
    let stats = up.dedup_stats().unwrap();
    assert_eq!(
        (stats.duplicates, stats.expired_unanswered),
        (2, 2),
        "{stats:?}"
    );
    assert_eq!(stats.answered, 0);
}

#[test]
fn at_the_entry_cap_uplinks_are_handed_out_unremembered() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let keys = Keys::new();
    let dev = abp_device(&emu, &core, &keys, 6);
    let up = deduped(
        &emu,
        &core,
        Dedup::new(Duration::from_secs(60)).max_entries(1),
    );
    let seen = lns(up.clone(), keys, Duration::ZERO, |_| Answer::Solve);
    let first = emu.play_uplink_copies(dev, 1, *b"a", 2).unwrap();
    let full = emu.play_uplink_copies(dev, 1, *b"b", 2).unwrap();
    let all: Vec<u64> = first.iter().chain(&full).copied().collect();
    assert_eq!(verdicts(&emu, &all), vec![UpstreamVerdict::Solved; 4]);
    thread::sleep(QUIET);
    assert_eq!(
        seen_count(&seen),
        3,
        "both copies past the cap reach the LNS"
    );
    let stats = up.dedup_stats().unwrap();
    assert_eq!((stats.cap_hits, stats.duplicates, stats.entries), (2, 1, 1));
}

#[test]
fn join_request_copies_over_the_control_api_and_dedup_off() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let (dev, join_eui) = (DevEui::new(0x70B3_D5FF_0000_0007), JoinEui::new(7));
    emu.add_radio_device(RadioDevice::otaa(dev, join_eui, key(7)))
        .unwrap();
    core.routing_table()
        .insert(NewDevice::otaa(dev, join_eui))
        .unwrap();
    let keys = Keys::new();
    keys.set_join_key(dev, key(7));
    // Without dedup every copy reaches the LNS.
    let plain = Arc::new(core.upstream().connect().unwrap());
    assert!(plain.dedup_stats().is_none());
    assert_eq!(plain.stats().dedup, None);
    assert!(emu.wait_upstream_connections(1, WAIT));
    let seen = lns(plain.clone(), keys.clone(), Duration::ZERO, |_| {
        Answer::Solve
    });
    let control = ControlClient::new(emu.control_url());
    let ids = control
        .play_join_request_copies(dev, 2, Duration::ZERO)
        .unwrap();
    assert_eq!(verdicts(&emu, &ids), vec![UpstreamVerdict::Solved; 2]);
    assert_eq!(seen_count(&seen), 2);
    plain.close();
    plain.wait_closed();

    let up = deduped(&emu, &core, Duration::from_secs(60));
    let seen = lns(up.clone(), keys, Duration::from_millis(100), |_| {
        Answer::Solve
    });
    let ids = control
        .play_join_request_copies(dev, 3, Duration::ZERO)
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(verdicts(&emu, &ids), vec![UpstreamVerdict::Solved; 3]);
    assert_eq!(seen_count(&seen), 1);
    assert!(control
        .play_join_request_copies(dev, 0, Duration::ZERO)
        .is_err());
}

// ---- downlink tracking -------------------------------------------------------------

fn class_c() -> TransmissionWindow {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    TransmissionWindow::class_c(
        DownstreamRadio::new(869_525_000, LoRaModulation::new(9, 125_000)),
        now + 60,
    )
}

fn downlink(id: u64, dev_eui: DevEui, marker: u8) -> DownstreamMessage {
    DownstreamMessage::new(id, dev_eui, class_c(), vec![marker])
}

#[test]
fn tracker_yields_each_result_with_its_tag() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let dev = DevEui::new(0x11);
    core.routing_table()
        .insert(NewDevice::abp(dev, DevAddr::new(0x11)))
        .unwrap();
    let group = MulticastAddr::new(0xef04_6a1e);
    core.multicast_groups().create("g", group).unwrap();
    // A group with no member reaches no device: its downlinks would not be sent.
    core.multicast_groups().add_device(group, dev).unwrap();
    let down = core.downstream().connect().unwrap();
    let tracker = down.tracker::<&str>(WAIT);

    let (a, b, c) = (
        core.next_transaction_id(),
        core.next_transaction_id(),
        core.next_transaction_id(),
    );
    emu.set_downstream_result_for_transaction(b, DownstreamResultCode::NoAck);
    tracker.send("a", downlink(a, dev, 1));
    tracker.send("b", downlink(b, dev, 2));
    tracker.send(
        "c",
        MulticastDownstreamMessage::new(c, group, class_c(), vec![3]),
    );
    let mut got: Vec<(&str, u64, DownstreamResultCode)> = (0..3)
        .map(|_| {
            let t = tracker.recv_timeout(WAIT).unwrap();
            (t.tag, t.transaction_id, t.outcome.unwrap().result_code)
        })
        .collect();
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got,
        vec![
            ("a", a, DownstreamResultCode::Success),
            ("b", b, DownstreamResultCode::NoAck),
            ("c", c, DownstreamResultCode::Success)
        ]
    );
    assert_eq!(tracker.in_flight(), 0);
    assert!(matches!(tracker.try_recv(), Err(TryRecvError::Empty)));
    // Tagged replies went to the tracker only.
    assert!(down.recv_timeout(QUIET).is_err());
    // A plain send's replies still reach the connection.
    let plain = core.next_transaction_id();
    down.send(downlink(plain, dev, 4)).unwrap();
    let reply = down.recv_timeout(WAIT).unwrap();
    assert_eq!(reply.transaction_id(), plain);
    assert!(tracker.try_recv().is_err());
}

/// A raw downstream server: each connection gets its index and the socket, after the
/// WebSocket handshake. Returns the base URL.
fn raw_downstream(
    handler: impl Fn(usize, &mut tungstenite::WebSocket<std::net::TcpStream>) + Send + Sync + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for (n, tcp) in listener.incoming().enumerate() {
            let Ok(tcp) = tcp else { return };
            let handler = handler.clone();
            thread::spawn(move || {
                tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                if let Ok(mut ws) = tungstenite::accept(tcp) {
                    handler(n, &mut ws);
                }
            });
        }
    });
    url
}

fn raw_core(url: &str) -> Core {
    Core::builder(common::RAW_TOKEN)
        .base_url(url)
        .connect_timeout(WAIT)
        .build()
        .unwrap()
}

fn ack(id: u64) -> tungstenite::Message {
    tungstenite::Message::text(format!(
        r#"{{"ProtocolVersion":1,"TransactionID":{id},"MailboxID":7}}"#
    ))
}

fn result(id: u64) -> tungstenite::Message {
    tungstenite::Message::text(format!(
        r#"{{"ProtocolVersion":1,"TransactionID":{id},"ResultCode":"Success","ResultMessage":"ok","MailboxID":7}}"#
    ))
}

/// The transaction id and first payload byte of a downlink frame.
fn request(message: &tungstenite::Message) -> Option<(u64, u8)> {
    let v: serde_json::Value = serde_json::from_str(message.to_text().ok()?).ok()?;
    Some((
        v["TransactionID"].as_u64()?,
        v["PHYPayload"][0].as_u64()? as u8,
    ))
}

#[test]
fn tracker_times_out_with_and_without_the_ack_and_late_results_reach_iter() {
    // The server answers only when told, so what the tracker holds at each check does
    // not depend on how fast either side runs: first nothing, then every reply but the
    // last downlink's result, which comes once the tracker has given up on it.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let url = raw_downstream(move |_, ws| {
        let mut ids = [0u64; 4];
        let mut seen = 0;
        while seen < 4 {
            let Ok(message) = ws.read() else { return };
            if let Some((id, marker @ 1..=4)) = request(&message) {
                ids[usize::from(marker) - 1] = id;
                seen += 1;
            }
        }
        let go = go_rx.lock().unwrap();
        if go.recv().is_err() {
            return;
        }
        // Every ack before the one last reply (#3's result), so once #3 is no longer
        // awaited, every ack has been routed too.
        let [_, ack_only, answered, late] = ids;
        let replies = [ack(ack_only), ack(late), ack(answered), result(answered)];
        if replies.into_iter().any(|reply| ws.send(reply).is_err()) || go.recv().is_err() {
            return;
        }
        let _ = ws.send(result(late));
        while ws.read().is_ok() {}
    });
    let core = raw_core(&url);
    let down = core.downstream().connect().unwrap();
    let tracker = down.tracker::<u8>(Duration::from_millis(400));
    let dev = DevEui::new(1);
    let ids: Vec<u64> = (0..4).map(|_| core.next_transaction_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        tracker.send(i as u8 + 1, downlink(*id, dev, i as u8 + 1));
    }
    assert_eq!(tracker.in_flight(), 4);
    assert_eq!(down.stats().awaiting_results, 4);
    go_tx.send(()).unwrap();
    // Replies are matched when the tracker receives, and expired entries take the
    // replies already routed to them first, so the outcomes below hold however late
    // this thread gets here: wait until #3's result (the last reply) is routed.
    let routed = std::time::Instant::now() + WAIT;
    while down.stats().awaiting_results > 3 && std::time::Instant::now() < routed {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(down.stats().awaiting_results, 3);
    let mut outcomes: Vec<Tracked<u8>> = (0..4)
        .map(|_| tracker.recv_timeout(WAIT).unwrap())
        .collect();
    outcomes.sort_by_key(|t| t.tag);
    assert!(
        matches!(&outcomes[0].outcome, Err(Error::DownstreamTimeout { transaction_id, ack: None }) if *transaction_id == ids[0]),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(&outcomes[1].outcome, Err(Error::DownstreamTimeout { ack: Some(a), .. }) if a.transaction_id == ids[1]),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2].outcome.as_ref().unwrap().transaction_id, ids[2]);
    assert!(
        matches!(
            &outcomes[3].outcome,
            Err(Error::DownstreamTimeout { ack: Some(_), .. })
        ),
        "{:?}",
        outcomes[3]
    );
    assert_eq!(tracker.in_flight(), 0);
    assert_eq!(down.stats().awaiting_results, 0);
    // The result that comes after its downlink timed out is the connection's.
    go_tx.send(()).unwrap();
    let late = down.recv_timeout(WAIT).unwrap();
    assert!(
        matches!(&late, DownstreamReply::Result(r) if r.transaction_id == ids[3]),
        "{late:?}"
    );
    assert!(tracker.recv_timeout(QUIET).is_err());
}

#[test]
fn tracker_reports_send_failures_once_and_ends_after_close() {
    let emu = common::emulator();
    let core = common::core(&emu);
    let dev = DevEui::new(0x12);
    core.routing_table()
        .insert(NewDevice::abp(dev, DevAddr::new(0x12)))
        .unwrap();
    let down = core.downstream().connect().unwrap();
    let tracker = down.tracker::<u32>(WAIT);
    let id = core.next_transaction_id();
    tracker.send(1, downlink(0, dev, 1));
    tracker.send(2, downlink(id, dev, 2));
    tracker.send(3, downlink(id, dev, 3));
    let mut outcomes: Vec<Tracked<u32>> = (0..3)
        .map(|_| tracker.recv_timeout(WAIT).unwrap())
        .collect();
    outcomes.sort_by_key(|t| t.tag);
    assert!(
        matches!(
            outcomes[0].outcome,
            Err(Error::Invalid(InvalidInput::TransactionId))
        ),
        "{:?}",
        outcomes[0]
    );
    assert!(outcomes[1].outcome.is_ok(), "{:?}", outcomes[1]);
    // Either the id was still in flight, or it was done and this is a new downlink.
    match &outcomes[2].outcome {
        Err(Error::Invalid(InvalidInput::TransactionIdInUse(x))) => assert_eq!(*x, id),
        other => assert!(other.is_ok(), "{other:?}"),
    }
    assert_eq!(tracker.in_flight(), 0);

    down.close();
    down.wait_closed();
    tracker.send(4, downlink(core.next_transaction_id(), dev, 4));
    let closed = tracker.recv_timeout(WAIT).unwrap();
    assert_eq!(closed.tag, 4);
    assert!(
        matches!(closed.outcome, Err(Error::Closed(_))),
        "{closed:?}"
    );
    assert!(matches!(
        tracker.recv_timeout(QUIET),
        Err(RecvTimeoutError::Disconnected)
    ));
    assert_eq!(tracker.iter().count(), 0);
}

#[test]
fn tracker_matches_results_that_come_on_the_new_connection() {
    let pending = Arc::new(Mutex::new(None::<u64>));
    let seen = pending.clone();
    let url = raw_downstream(move |n, ws| {
        if n == 0 {
            // Ack the downlink, then drop the connection.
            while let Ok(message) = ws.read() {
                if let Some((id, _)) = request(&message) {
                    *seen.lock().unwrap() = Some(id);
                    let _ = ws.send(ack(id));
                    return;
                }
            }
        } else {
            let id = seen.lock().unwrap().take();
            if let Some(id) = id {
                let _ = ws.send(result(id));
            }
            while ws.read().is_ok() {}
        }
    });
    let core = raw_core(&url);
    let down = core
        .downstream()
        .reconnect(Reconnect::default().initial_delay(Duration::from_millis(50)))
        .connect()
        .unwrap();
    let tracker = down.tracker::<&str>(WAIT);
    let id = core.next_transaction_id();
    tracker.send("across", downlink(id, DevEui::new(1), 1));
    let got = tracker.recv_timeout(WAIT).unwrap();
    assert_eq!((got.tag, got.transaction_id), ("across", id));
    assert_eq!(got.outcome.unwrap().result_message.as_deref(), Some("ok"));
    assert!(
        pending.lock().unwrap().is_none(),
        "the result came on the second connection"
    );
    assert!(
        down.recv_timeout(QUIET).is_err(),
        "nothing leaked to iter()"
    );
}

#[test]
fn eight_threads_send_tracked_while_one_iterates_every_tag_once() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 500;
    let emu = common::emulator();
    let core = common::core(&emu);
    let dev = DevEui::new(0x13);
    core.routing_table()
        .insert(NewDevice::abp(dev, DevAddr::new(0x13)))
        .unwrap();
    let down = core.downstream().connect().unwrap();
    let tracker = Arc::new(down.tracker::<(u64, u64)>(WAIT));
    let failed = AtomicUsize::new(0);
    let tags = thread::scope(|s| {
        let receiver = {
            let tracker = tracker.clone();
            let failed = &failed;
            s.spawn(move || {
                let mut tags = Vec::new();
                for t in tracker.iter() {
                    if t.outcome.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    tags.push(t.tag);
                    if tags.len() as u64 == THREADS * PER_THREAD {
                        break;
                    }
                }
                tags
            })
        };
        for t in 0..THREADS {
            let (tracker, core) = (tracker.clone(), core.clone());
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let id = core.next_transaction_id();
                    tracker.send((t, i), downlink(id, dev, t as u8));
                }
            });
        }
        receiver.join().unwrap()
    });
    assert_eq!(tags.len() as u64, THREADS * PER_THREAD);
    let unique: HashSet<(u64, u64)> = tags.iter().copied().collect();
    assert_eq!(unique.len(), tags.len(), "a tag came twice");
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert_eq!(tracker.in_flight(), 0);
    assert!(down.try_recv().is_err(), "tagged replies leaked to iter()");
}
