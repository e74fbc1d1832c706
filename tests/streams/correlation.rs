//! Downlink correlation against the emulator: `send_and_wait` returns each caller its
//! own result while another thread iterates the same connection.

use crate::common;
use crate::common::streams::asap;

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ran_routing::*;

const WAIT: Duration = Duration::from_secs(30);

/// Emulated time runs 1000 times faster, so thousands of results (each after its time
/// on air) come quickly.
fn emulator() -> ran_routing_emulator::Emulator {
    ran_routing_emulator::Emulator::builder()
        .time_scale(0.001)
        .start()
        .unwrap()
}

#[test]
fn send_and_wait_returns_the_result_for_that_downlink() {
    let emu = emulator();
    let core = common::core(&emu);
    let dev_eui = DevEui::new(0x7ABE1B8C93D7174F);
    core.routing_table()
        .insert(NewDevice::new(dev_eui, DevAddr::new(1)))
        .unwrap();
    let group = MulticastAddr::new(0xef046a1e);
    core.multicast_groups().create("g", group).unwrap();
    // A group with no member reaches no device: its downlinks would not be sent.
    core.multicast_groups().add_device(group, dev_eui).unwrap();
    let down = core.downstream().connect().unwrap();

    let id = core.next_transaction_id();
    emu.set_downstream_result_for_transaction(id, DownstreamResultCode::NoAck);
    let result = down
        .send_and_wait(DownstreamMessage::new(id, dev_eui, asap(), vec![1]), WAIT)
        .unwrap();
    assert_eq!(result.transaction_id, id);
    assert_eq!(result.result_code, DownstreamResultCode::NoAck);

    let id = core.next_transaction_id();
    let result = down
        .send_and_wait(
            MulticastDownstreamMessage::new(id, group, asap(), vec![2]),
            WAIT,
        )
        .unwrap();
    assert_eq!(
        (result.transaction_id, result.result_code.is_success()),
        (id, true)
    );
    // Nothing of either downlink leaked to the iterator.
    assert!(down.recv_timeout(Duration::from_millis(200)).is_err());

    let err = down
        .send_and_wait(DownstreamMessage::new(0, dev_eui, asap(), vec![1]), WAIT)
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(InvalidInput::TransactionId)),
        "{err:?}"
    );
}

#[test]
fn eight_waiting_threads_and_an_iterating_one_share_a_connection() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 1000;
    const UNCORRELATED: u64 = 200;
    let emu = emulator();
    let core = common::core(&emu);
    let dev_eui = DevEui::new(42);
    core.routing_table()
        .insert(NewDevice::new(dev_eui, DevAddr::new(42)))
        .unwrap();
    let down = Arc::new(core.downstream().connect().unwrap());

    // Plain sends whose replies must all reach the iterator, and only those.
    let uncorrelated: HashSet<u64> = (0..UNCORRELATED)
        .map(|_| core.next_transaction_id())
        .collect();
    let iterator = {
        let down = down.clone();
        let expected = uncorrelated.len() * 2;
        thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < expected {
                match down.recv_timeout(WAIT) {
                    Ok(reply) => seen.push(reply.transaction_id()),
                    Err(_) => break,
                }
            }
            seen
        })
    };
    let waiters: Vec<_> = (0..THREADS)
        .map(|t| {
            let down = down.clone();
            let core = core.clone();
            thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    let id = core.next_transaction_id();
                    let result = down
                        .send_and_wait(
                            DownstreamMessage::new(id, dev_eui, asap(), vec![t as u8]),
                            WAIT,
                        )
                        .unwrap();
                    assert_eq!(result.transaction_id, id, "thread {t} got another's result");
                }
            })
        })
        .collect();
    for &id in &uncorrelated {
        down.send_downstream(id, dev_eui, asap(), vec![0xff])
            .unwrap();
    }
    for w in waiters {
        w.join().unwrap();
    }
    let seen = iterator.join().unwrap();
    assert_eq!(
        seen.len(),
        uncorrelated.len() * 2,
        "acks and results of the plain sends"
    );
    assert!(
        seen.iter().all(|id| uncorrelated.contains(id)),
        "a correlated reply leaked"
    );
    assert_eq!(
        emu.downstream_received().len() as u64,
        THREADS * PER_THREAD + UNCORRELATED
    );
}
