//! `dedup_in`: several processes' connections on one account, copies dealt round robin,
//! de-duplicated through one Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ran_routing::mic::{AesKey, Session, Solver};
use ran_routing::redis::{RedisKeys, RedisStore};
use ran_routing::{
    Core, DevAddr, DevEui, NewDevice, UpstreamAck, UpstreamConnection, UpstreamRejectResultCode,
    UpstreamReply,
};
use ran_routing_emulator::{Emulator, RadioDevice, UpstreamVerdict};

use super::server::RedisServer;

const WAIT: Duration = Duration::from_secs(20);
const WINDOW: Duration = Duration::from_secs(60);

fn key(n: u8) -> AesKey {
    AesKey::new([n; 16])
}

/// One LNS process: its own `Core`, its own store handle (pool), one de-duplicating
/// upstream connection, and a thread that records every uplink it is handed and answers
/// it (solved from the shared sessions, or rejected when `reject` says so).
struct Process {
    up: Arc<UpstreamConnection>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn process(
    emu: &Emulator,
    redis: &RedisServer,
    reject: impl Fn(&[u8], usize) -> bool + Send + 'static,
    seen_everywhere: Arc<Mutex<HashMap<Vec<u8>, usize>>>,
) -> Process {
    let core = Core::new(emu.token(), &emu.base_url()).unwrap();
    let store = RedisStore::open(&redis.url()).unwrap();
    let keys = RedisKeys::new(&store);
    let up = Arc::new(core.upstream().dedup_in(&store, WINDOW).connect().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (lns_up, record) = (up.clone(), seen.clone());
    thread::spawn(move || {
        let solver = Solver::new();
        for msg in lns_up.iter() {
            record.lock().unwrap().push(msg.phy_payload_no_mic.clone());
            let nth = {
                let mut all = seen_everywhere.lock().unwrap();
                let n = all.entry(msg.phy_payload_no_mic.clone()).or_default();
                *n += 1;
                *n
            };
            let reply: UpstreamReply = if reject(&msg.phy_payload_no_mic, nth) {
                msg.reject(UpstreamRejectResultCode::MicFailed).into()
            } else {
                solver.reply(&keys, &msg)
            };
            if let UpstreamReply::Ack(_) = &reply {
                if let Ok(solved) = solver.solve(&keys, &msg) {
                    let _ = keys.record(&solved);
                }
            }
            if lns_up.send(reply).is_err() {
                return;
            }
        }
    });
    Process { up, seen }
}

/// A device on the air and in the routing table, its session in Redis.
fn device(emu: &Emulator, redis: &RedisServer, n: u64) -> DevEui {
    let dev_eui = DevEui::new(0x70B3_D500_0000_0000 + n);
    let dev_addr = DevAddr::new(0x2600_0000 + n as u32);
    emu.add_radio_device(RadioDevice::abp(dev_eui, dev_addr, key(n as u8), 100))
        .unwrap();
    let core = Core::new(emu.token(), &emu.base_url()).unwrap();
    core.routing_table()
        .insert(NewDevice::abp(dev_eui, dev_addr))
        .unwrap();
    RedisKeys::new(&RedisStore::open(&redis.url()).unwrap())
        .set_session(dev_eui, Session::new(key(n as u8)).with_fcnt_up(99))
        .unwrap();
    dev_eui
}

fn verdicts(emu: &Emulator, ids: &[u64]) -> Vec<UpstreamVerdict> {
    ids.iter()
        .map(|id| emu.wait_upstream_verdict(*id, WAIT).unwrap())
        .collect()
}

fn total_seen(processes: &[&Process]) -> usize {
    processes.iter().map(|p| p.seen.lock().unwrap().len()).sum()
}

/// Waits until the processes' applications were handed `n` uplinks in all, then a
/// little longer for any that should not come.
fn settle(processes: &[&Process], n: usize) {
    let deadline = Instant::now() + WAIT;
    while total_seen(processes) < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(300));
}

#[test]
fn copies_dealt_round_robin_reach_one_application_once_and_all_are_solved() {
    let redis = RedisServer::start();
    let emu = Emulator::start().unwrap();
    let dev = device(&emu, &redis, 1);
    let everywhere = Arc::new(Mutex::new(HashMap::new()));
    let a = process(&emu, &redis, |_, _| false, everywhere.clone());
    let b = process(&emu, &redis, |_, _| false, everywhere.clone());
    assert!(emu.wait_upstream_connections(2, WAIT));
    let mut ids = Vec::new();
    for i in 0..20u8 {
        ids.extend(emu.play_uplink_copies(dev, 1, vec![i; 4], 3).unwrap());
    }
    assert_eq!(ids.len(), 60);
    assert_eq!(verdicts(&emu, &ids), vec![UpstreamVerdict::Solved; 60]);
    settle(&[&a, &b], 20);
    let everywhere = everywhere.lock().unwrap();
    assert_eq!(everywhere.len(), 20, "every uplink reached an application");
    assert!(
        everywhere.values().all(|n| *n == 1),
        "an uplink reached applications more than once: {everywhere:?}"
    );
    // Both processes took part: copies are dealt round robin.
    assert!(!a.seen.lock().unwrap().is_empty() && !b.seen.lock().unwrap().is_empty());
    let (sa, sb) = (a.up.dedup_stats().unwrap(), b.up.dedup_stats().unwrap());
    assert_eq!(sa.duplicates + sb.duplicates, 40, "{sa:?} {sb:?}");
    assert_eq!(sa.store_failures + sb.store_failures, 0);
}

#[test]
fn a_rejected_first_copy_hands_the_uplink_to_the_next_copy_in_any_process() {
    let redis = RedisServer::start();
    let emu = Emulator::start().unwrap();
    let dev = device(&emu, &redis, 2);
    let everywhere = Arc::new(Mutex::new(HashMap::new()));
    // Each LNS rejects the first copy of an uplink it hears of (as it would a forged
    // copy with a wrong MIC), and solves the next one.
    let a = process(&emu, &redis, |_, nth| nth == 1, everywhere.clone());
    let b = process(&emu, &redis, |_, nth| nth == 1, everywhere.clone());
    assert!(emu.wait_upstream_connections(2, WAIT));
    let ids = emu.play_uplink_copies(dev, 1, *b"rej", 3).unwrap();
    let mut verdicts = verdicts(&emu, &ids);
    // Whichever copy was claimed first (the processes race for it) is the one rejected.
    let rejected = UpstreamVerdict::Rejected(UpstreamRejectResultCode::MicFailed);
    let Some(first) = verdicts.iter().position(|v| *v == rejected) else {
        panic!("no copy was rejected: {verdicts:?}");
    };
    verdicts.remove(first);
    assert!(
        verdicts.iter().all(|v| *v == UpstreamVerdict::Solved),
        "{verdicts:?}"
    );
    settle(&[&a, &b], 2);
    let everywhere = everywhere.lock().unwrap();
    assert_eq!(
        everywhere.values().copied().collect::<Vec<_>>(),
        [2],
        "{everywhere:?}"
    );
}

#[test]
fn redis_lost_mid_run_degrades_to_the_process_and_recovers() {
    let mut redis = RedisServer::start();
    let emu = Emulator::start().unwrap();
    let dev = device(&emu, &redis, 3);
    let everywhere = Arc::new(Mutex::new(HashMap::new()));
    let a = process(&emu, &redis, |_, _| false, everywhere.clone());
    let b = process(&emu, &redis, |_, _| false, everywhere.clone());
    assert!(emu.wait_upstream_connections(2, WAIT));

    redis.stop();
    // Sessions come from what each process saw (nothing yet): the uplinks are not
    // solved, but every copy is answered and none hangs.
    let ids = emu.play_uplink_copies(dev, 1, *b"down", 2).unwrap();
    for id in &ids {
        let verdict = emu.wait_upstream_verdict(*id, WAIT).unwrap();
        assert_ne!(verdict, UpstreamVerdict::Unanswered);
    }
    let failures =
        a.up.dedup_stats().unwrap().store_failures + b.up.dedup_stats().unwrap().store_failures;
    assert!(failures > 0, "the outage was not counted");

    redis.restart();
    RedisKeys::new(&RedisStore::open(&redis.url()).unwrap())
        .set_session(dev, Session::new(key(3)).with_fcnt_up(99))
        .unwrap();
    // Past the retry delay, the shared store is used again.
    thread::sleep(Duration::from_millis(1500));
    everywhere.lock().unwrap().clear();
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.extend(
            emu.play_uplink_copies(dev, 1, vec![0xb0 + i; 3], 2)
                .unwrap(),
        );
    }
    assert_eq!(verdicts(&emu, &ids), vec![UpstreamVerdict::Solved; 10]);
    settle(&[&a, &b], 5);
    let everywhere = everywhere.lock().unwrap();
    assert_eq!(everywhere.len(), 5);
    assert!(everywhere.values().all(|n| *n == 1), "{everywhere:?}");
}

#[test]
fn while_redis_is_away_a_rejected_first_copy_still_hands_the_uplink_to_the_next_copy() {
    let mut redis = RedisServer::start();
    let emu = Emulator::start().unwrap();
    let dev = device(&emu, &redis, 4);
    let core = Core::new(emu.token(), &emu.base_url()).unwrap();
    let store = RedisStore::open(&redis.url()).unwrap();
    let up = Arc::new(core.upstream().dedup_in(&store, WINDOW).connect().unwrap());
    assert!(emu.wait_upstream_connections(1, WAIT));
    let seen = Arc::new(Mutex::new(0));
    let (lns_up, count) = (up.clone(), seen.clone());
    // Rejects the first copy it gets after a while (so that the others are held for it
    // meanwhile), acks the next with the first MIC candidate (no session needed).
    thread::spawn(move || {
        for msg in lns_up.iter() {
            let nth = {
                let mut n = count.lock().unwrap();
                *n += 1;
                *n
            };
            let reply: UpstreamReply = if nth == 1 {
                thread::sleep(Duration::from_millis(300));
                msg.reject(UpstreamRejectResultCode::MicFailed).into()
            } else {
                UpstreamAck::new(msg.transaction_id, msg.dev_euis[0], msg.mic_challenge[0]).into()
            };
            if lns_up.send(reply).is_err() {
                return;
            }
        }
    });

    redis.stop();
    // All copies reach the one connection, whose in-process layer holds the later ones.
    let ids = emu.play_uplink_copies(dev, 1, *b"away", 3).unwrap();
    let verdicts: Vec<_> = ids
        .iter()
        .map(|id| emu.wait_upstream_verdict(*id, WAIT).unwrap())
        .collect();
    assert!(
        verdicts.iter().all(|v| *v != UpstreamVerdict::Unanswered),
        "copies held for the rejected first copy were lost: {verdicts:?}"
    );
    thread::sleep(Duration::from_millis(300));
    let stats = up.dedup_stats().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        2,
        "the next copy reached the application: {stats:?}"
    );
    assert_eq!((stats.after_reject, stats.answered), (1, 1), "{stats:?}");
    assert!(stats.store_failures > 0);
}
