//! `RedisKeys`: counters that several processes share.

use std::sync::Arc;
use std::thread;

use ran_routing::mic::{self, AesKey, DataUplink, KeyStore, Session, Solver};
use ran_routing::redis::{RedisKeys, RedisStore};
use ran_routing::{DevAddr, DevEui};

use super::server::RedisServer;

fn nwk_s_key() -> AesKey {
    "000102030405060708090a0b0c0d0e0f".parse().unwrap()
}

/// Two processes' handles: separate stores (separate pools) on one Redis.
fn two(redis: &RedisServer) -> (RedisKeys, RedisKeys) {
    let a = RedisKeys::new(&RedisStore::open(&redis.url()).unwrap());
    let b = RedisKeys::new(&RedisStore::open(&redis.url()).unwrap());
    (a, b)
}

#[test]
fn fcnt_down_is_unique_across_processes_under_concurrency() {
    let redis = RedisServer::start();
    let (a, b) = two(&redis);
    let dev = DevEui::new(0x7abe1b8c93d7174f);
    a.set_session(
        dev,
        Session::new(nwk_s_key()).with_app_s_key(AesKey::new([2; 16])),
    )
    .unwrap();
    let workers: Vec<_> = [a, b]
        .into_iter()
        .flat_map(|keys| {
            let keys = Arc::new(keys);
            (0..3).map(move |_| {
                let keys = Arc::clone(&keys);
                thread::spawn(move || {
                    (0..100)
                        .map(|_| {
                            let (session, fcnt) = keys.next_fcnt_down(dev).unwrap().unwrap();
                            assert_eq!(session.app_s_key, Some(AesKey::new([2; 16])));
                            fcnt
                        })
                        .collect::<Vec<_>>()
                })
            })
        })
        .collect();
    let mut all: Vec<u32> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..600).collect::<Vec<_>>(),
        "a counter handed out twice or skipped"
    );
}

#[test]
fn a_new_session_restarts_the_counters_and_no_session_takes_none() {
    let redis = RedisServer::start();
    let (a, b) = two(&redis);
    let dev = DevEui::new(1);
    assert_eq!(a.next_fcnt_down(dev).unwrap(), None);
    a.set_session(dev, Session::new(nwk_s_key()).with_fcnt_down(41))
        .unwrap();
    assert_eq!(b.next_fcnt_down(dev).unwrap().unwrap().1, 42);
    assert_eq!(b.session(dev).unwrap().fcnt_down, Some(42));
    b.set_session(dev, Session::new(nwk_s_key())).unwrap();
    assert_eq!(a.next_fcnt_down(dev).unwrap().unwrap().1, 0);
    a.remove(dev).unwrap();
    assert_eq!(b.session(dev), None);
}

#[test]
fn counters_past_65535_solve_in_either_process() {
    let redis = RedisServer::start();
    let (a, b) = two(&redis);
    let dev = DevEui::new(0x0004a30b001c0530);
    let addr = DevAddr::new(0x26011bda);
    a.set_session(dev, Session::new(nwk_s_key())).unwrap();
    let solver = Solver::new();
    // The counter climbs past 2^16 in steps each process solves in turn: each must find
    // the high bits from what the other recorded.
    for (i, fcnt) in (65_530u32..65_545).enumerate() {
        let keys = if i % 2 == 0 { &a } else { &b };
        let frame = DataUplink::new(addr, fcnt)
            .payload(1, *b"x")
            .build(&nwk_s_key())
            .unwrap();
        let msg = mic::upstream_with_challenge(&frame, i as u64, vec![dev], 15, i as u64).unwrap();
        let solved = solver.solve(keys, &msg).unwrap();
        assert_eq!(solved.fcnt, Some(fcnt));
        keys.record(&solved).unwrap();
    }
    assert_eq!(a.session(dev).unwrap().fcnt_up, Some(65_544));
    // A late, older counter does not move it back.
    let frame = DataUplink::new(addr, 65_540).build(&nwk_s_key()).unwrap();
    let msg = mic::upstream_with_challenge(&frame, 99, vec![dev], 15, 99).unwrap();
    let solved = solver.solve(&b, &msg).unwrap();
    b.record(&solved).unwrap();
    assert_eq!(a.session(dev).unwrap().fcnt_up, Some(65_544));
}

#[test]
fn while_redis_is_away_lookups_use_what_was_seen_and_counters_are_refused() {
    let mut redis = RedisServer::start();
    let (a, _) = two(&redis);
    let dev = DevEui::new(5);
    a.set_join_key(dev, AesKey::new([9; 16])).unwrap();
    a.set_session(dev, Session::new(nwk_s_key())).unwrap();
    redis.stop();
    assert_eq!(a.join_key(dev), Some(AesKey::new([9; 16])));
    assert!(a.session(dev).is_some());
    let err = a.next_fcnt_down(dev).unwrap_err();
    assert!(matches!(err, ran_routing::Error::Store(_)), "{err:?}");
    // Back (empty: no persistence here), the store serves again.
    redis.restart();
    let dev2 = DevEui::new(6);
    let ok = a.set_session(dev2, Session::new(nwk_s_key()));
    assert!(ok.is_ok() || a.set_session(dev2, Session::new(nwk_s_key())).is_ok());
    assert_eq!(a.next_fcnt_down(dev2).unwrap().unwrap().1, 0);
}
