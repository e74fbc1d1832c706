//! The shared-state commands against a real `redis-server` on loopback.

use std::time::Duration;

use super::shared::{Answered, Claim, ClaimToken};
use super::{RedisStore, StoreErrorKind};
use crate::ids::DevEui;

#[path = "../../tests/common/redis.rs"]
mod server;

#[test]
fn a_payload_is_claimed_once_and_its_ack_read_by_copies() {
    let redis = server::RedisServer::start();
    let store = RedisStore::open(&redis.url()).unwrap();
    let other = RedisStore::open(&redis.url()).unwrap();
    let window = Duration::from_secs(60);
    let claims = store.claim(&[b"one", b"two"], window).unwrap();
    let Claim::First(token) = &claims[0] else {
        panic!("first copy not first: {claims:?}")
    };
    assert!(matches!(claims[1], Claim::First(_)));
    assert_eq!(other.claim(&[b"one"], window).unwrap(), [Claim::Pending]);
    store
        .record_answers(&[ack(b"one", token, 7, 0xdead_beef)])
        .unwrap();
    assert_eq!(
        other.claim(&[b"one"], window).unwrap(),
        [Claim::Acked {
            dev_eui: DevEui::new(7),
            mic: 0xdead_beef
        }]
    );
    // Another prefix shares nothing.
    let apart = RedisStore::open(&redis.url()).unwrap().prefix("b:");
    assert!(matches!(
        apart.claim(&[b"one"], window).unwrap()[0],
        Claim::First(_)
    ));
}

#[test]
fn a_released_claim_makes_the_next_copy_first_and_old_tokens_change_nothing() {
    let redis = server::RedisServer::start();
    let store = RedisStore::open(&redis.url()).unwrap();
    let window = Duration::from_secs(60);
    let Claim::First(old) = store.claim(&[b"x"], window).unwrap().remove(0) else {
        panic!("not first")
    };
    store.record_answers(&[release(b"x", &old)]).unwrap();
    let Claim::First(new) = store.claim(&[b"x"], window).unwrap().remove(0) else {
        panic!("a released claim is free again")
    };
    // The old claim's answers change nothing: the new claim stays pending.
    store
        .record_answers(&[ack(b"x", &old, 1, 1), release(b"x", &old)])
        .unwrap();
    assert_eq!(store.claim(&[b"x"], window).unwrap(), [Claim::Pending]);
    store.record_answers(&[ack(b"x", &new, 2, 2)]).unwrap();
    assert_eq!(
        store.claim(&[b"x"], window).unwrap(),
        [Claim::Acked {
            dev_eui: DevEui::new(2),
            mic: 2
        }]
    );
}

#[test]
fn unreachable_redis_is_a_typed_error_without_the_password() {
    let mut redis = server::RedisServer::start();
    let url = redis.url().replace("redis://", "redis://:hunter2@");
    redis.stop();
    let err = RedisStore::open(&url).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    match err {
        crate::Error::Store(e) => assert_eq!(e.kind(), &StoreErrorKind::Unreachable),
        other => panic!("expected a store error, got {other:?}"),
    }
}

#[test]
fn the_store_recovers_when_redis_returns() {
    let mut redis = server::RedisServer::start();
    let store = RedisStore::open(&redis.url()).unwrap();
    store.ping().unwrap();
    redis.restart();
    // The pooled connection broke with the old server: one error at most, then a
    // fresh connection.
    let first = store.ping();
    assert!(first.is_ok() || store.ping().is_ok());
    store.ping().unwrap();
}

fn ack(payload: &[u8], token: &ClaimToken, dev_eui: u64, mic: u32) -> Answered {
    Answered {
        payload: payload.to_vec(),
        token: token.clone(),
        ack: Some((DevEui::new(dev_eui), mic)),
    }
}

fn release(payload: &[u8], token: &ClaimToken) -> Answered {
    Answered {
        payload: payload.to_vec(),
        token: token.clone(),
        ack: None,
    }
}
