//! The README's snippets, run against the emulator. Each `rust,ignore` block of README.md
//! is a region of this file between `// README: <name>` and `// README end` (dedented),
//! so what the README shows compiles and runs; `readme_shows_these_snippets` checks that.

use std::collections::BTreeMap;
use std::time::Duration;

use ran_routing::fleet::{read_csv, Fleet};
use ran_routing::mic::{self, AesKey, Keys, Solver};
use ran_routing::*;
use ran_routing_emulator::{Emulator, RadioDevice};

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// The regions marked in this file, by name, dedented.
fn regions() -> BTreeMap<String, String> {
    let source = include_str!("main.rs");
    let mut regions = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("// README: ") {
            current = Some((name.to_owned(), Vec::new()));
        } else if trimmed == "// README end" {
            let (name, lines) = current.take().expect("README end without a start");
            let indent = lines
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            let body: String = lines
                .iter()
                .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
                .collect();
            regions.insert(name, body);
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    regions
}

/// The README's `rust,ignore` blocks.
fn readme_blocks() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let mut blocks = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("```rust,ignore\n") {
        let body = &rest[start + "```rust,ignore\n".len()..];
        let end = body.find("```").expect("an unclosed block in README.md");
        blocks.push(body[..end].to_owned());
        rest = &body[end..];
    }
    blocks
}

#[test]
fn readme_shows_these_snippets() {
    let regions = regions();
    let blocks = readme_blocks();
    assert!(blocks.len() >= 7, "README.md lost its snippets");
    for block in &blocks {
        assert!(
            regions.values().any(|region| region == block),
            "README.md shows a snippet that tests/readme/main.rs does not run:\n{block}"
        );
    }
}

fn emulator() -> Emulator {
    Emulator::builder()
        .judge_downlink_timing(false)
        .start()
        .expect("emulator starts")
}

fn core(emu: &Emulator) -> Core {
    Core::new(emu.token(), &emu.base_url()).expect("client for the emulator")
}

#[test]
fn routing_table_and_multicast_groups() -> Outcome {
    let emu = emulator();
    let ran = core(&emu);
    let (dev_eui, join_eui) = (
        DevEui::new(0x7ABE1B8C93D7174F),
        JoinEui::new(0x3CEDCF624F8B68F4),
    );
    let other_eui = DevEui::new(0x0004A30B001C0530);
    let dev_addr = DevAddr::new(0x0000_2A01);
    // README: routing table
    let table = ran.routing_table();
    table.insert(NewDevice::otaa(dev_eui, join_eui))?;
    table.insert(NewDevice::abp(other_eui, "01020304".parse::<DevAddr>()?))?;
    let page = table.select(Select::all().offset(0).limit(1000))?;
    table.update(DeviceUpdate::new(dev_eui, join_eui).with_active_dev_addr(dev_addr))?;
    // README end
    assert_eq!(page.len(), 2);
    assert_eq!(emu.devices()[0].active_dev_addr, Some(dev_addr));
    // README: multicast
    let groups = ran.multicast_groups();
    groups.create("street lights", MulticastAddr::new(0x0100_0001))?;
    groups.add_device(MulticastAddr::new(0x0100_0001), dev_eui)?;
    let all = groups.get([])?; // empty: every group
                               // README end
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].devices, vec![dev_eui]);
    // README: delete
    table.delete([dev_eui, other_eui])?;
    // README end
    assert!(emu.devices().is_empty());
    Ok(())
}

#[test]
fn a_worker_pool_answers_every_uplink_once() -> Outcome {
    let emu = emulator();
    let ran = core(&emu);
    let app_key: AesKey = "2b7e151628aed2a6abf7158809cf4f3c".parse()?;
    let keys = Keys::new();
    let solver = Solver::new();
    let (join_eui, mut dev_euis) = (JoinEui::new(0x3CEDCF624F8B68F4), Vec::new());
    for n in 0..8u64 {
        let dev_eui = DevEui::new(0x7ABE1B8C93D71700 + n);
        ran.routing_table()
            .insert(NewDevice::otaa(dev_eui, join_eui))?;
        emu.add_radio_device(RadioDevice::otaa(dev_eui, join_eui, app_key.clone()))?;
        keys.set_join_key(dev_eui, app_key.clone());
        dev_euis.push(dev_eui);
    }
    let closer = ran.clone();
    std::thread::scope(|outer| -> Outcome {
        outer.spawn(|| {
            assert!(emu.wait_upstream_connections(1, Duration::from_secs(10)));
            for dev_eui in &dev_euis {
                emu.play_join_request(*dev_eui)
                    .expect("join request played");
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while emu.mic_stats().solved < 8 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Ends the workers' loops.
            closer.close();
        });
        // README: worker pool
        let upstream = ran.upstream().connect()?;
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for message in upstream.iter() {
                        let _ = upstream.send(solver.reply(&keys, &message));
                    }
                });
            }
        });
        // README end
        Ok(())
    })?;
    let stats = emu.mic_stats();
    assert_eq!((stats.solved, stats.duplicate_replies), (8, 0), "{stats:?}");
    Ok(())
}

#[test]
fn downlinks_with_send_and_wait_and_with_the_tracker() -> Outcome {
    let emu = emulator();
    let ran = core(&emu);
    let dev_eui = DevEui::new(0x7ABE1B8C93D7174F);
    ran.routing_table()
        .insert(NewDevice::abp(dev_eui, DevAddr::new(0x0102_0304)))?;
    let payload = b"hello".to_vec();
    // README: send and wait
    let downstream = ran.downstream().connect()?;
    let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
    let downlink = DownstreamMessage::new(
        ran.next_transaction_id(),
        dev_eui,
        TransmissionWindow::class_a(radio, 1),
        payload,
    );
    let result = downstream.send_and_wait(downlink.clone(), Duration::from_secs(10))?;
    // README end
    assert!(result.result_code.is_success());
    let queue_id = 17u32;
    let mut downlink = downlink;
    downlink.transaction_id = ran.next_transaction_id();
    let sent = downlink.transaction_id;
    std::thread::scope(|outer| -> Outcome {
        outer.spawn(|| {
            // The emulator has the downlink: closing now ends the tracker's iter() after
            // its one outcome (the result, or the interruption if the close came first).
            while let Some(received) = emu.wait_downstream(Duration::from_secs(10)) {
                if received.transaction_id() == sent {
                    break;
                }
            }
            downstream.close();
        });
        // README: tracker
        let tracker = downstream.tracker::<u32>(Duration::from_secs(10));
        tracker.send(queue_id, downlink);
        for tracked in tracker.iter() {
            match tracked.outcome {
                Ok(result) => println!("{}: {}", tracked.tag, result.result_code),
                Err(e) => eprintln!("{}: {e}", tracked.tag),
            }
        }
        // README end
        assert_eq!(tracker.in_flight(), 0);
        Ok(())
    })?;
    assert!(emu
        .downstream_received()
        .iter()
        .any(|d| d.transaction_id() == sent));
    Ok(())
}

#[test]
fn fleet_sync_and_dedup() -> Outcome {
    let emu = emulator();
    let ran = core(&emu);
    let dir = std::env::temp_dir().join(format!("ran-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("fleet.csv"),
        "DevEUI,JoinEUI,DevAddr\n7abe1b8c93d7174f,3cedcf624f8b68f4,\n0004a30b001c0530,,01020304\n",
    )?;
    std::env::set_current_dir(&dir)?;
    // README: fleet
    let fleet = Fleet::new(&ran).concurrency(16);
    let plan = fleet.plan(read_csv(&std::fs::read_to_string("fleet.csv")?)?)?;
    println!("{plan}");
    let report = fleet.apply(&plan, |progress| eprintln!("{progress}"))?;
    print!("{report}\n{}", report.failure_listing());
    // README end
    assert_eq!(emu.devices().len(), 2);
    assert!(fleet
        .plan(read_csv(&std::fs::read_to_string("fleet.csv")?)?)?
        .is_empty());
    std::fs::remove_dir_all(&dir)?;

    // README: dedup
    let upstream = ran.upstream().dedup(Duration::from_secs(60)).connect()?;
    // README end
    a_copy_gets_the_first_copys_ack(&emu, &upstream, DevEui::new(0x7ABE1B8C93D7174F))
}

/// Plays an uplink twice and acks the first copy: the connection answers the copy with
/// the same ack when a receiving method takes it off the channel, and never hands it out.
fn a_copy_gets_the_first_copys_ack(
    emu: &Emulator,
    upstream: &UpstreamConnection,
    device: DevEui,
) -> Outcome {
    let played = mic::upstream_with_challenge(&[0x40, 1, 2, 3, 4], 7, vec![device], 3, 1)?;
    assert!(emu.wait_upstream_connections(1, Duration::from_secs(10)));
    emu.send_upstream(&played)?;
    let mut copy = played.clone();
    copy.transaction_id = 8;
    emu.send_upstream(&copy)?;
    let first = upstream.recv_timeout(Duration::from_secs(10))?;
    // The true MIC is the frame's last four bytes.
    upstream.send_upstream_ack(first.transaction_id, device, 0x0102_0304)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while emu.upstream_replies().len() < 2 && std::time::Instant::now() < deadline {
        assert!(upstream.try_recv().is_err(), "the copy was handed out");
        std::thread::sleep(Duration::from_millis(5));
    }
    let replies = emu.upstream_replies();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(replies
        .iter()
        .all(|r| matches!(r, UpstreamReply::Ack(a) if a.mic == 0x0102_0304)));
    Ok(())
}

#[test]
fn shutdown_from_another_thread() -> Outcome {
    let emu = emulator();
    let ran = core(&emu);
    let upstream = ran.upstream().connect()?;
    let wait_for_shutdown_signal = || std::thread::sleep(Duration::from_millis(50));
    let answer = |message: UpstreamMessage| {
        let _ =
            upstream.send_upstream_reject(message.transaction_id, UpstreamRejectResultCode::Other);
    };
    // README: shutdown
    let closer = ran.clone();
    // In a signal-hook or ctrlc handler thread, on SIGINT or SIGTERM:
    std::thread::spawn(move || {
        wait_for_shutdown_signal();
        closer.close()
    });
    for message in upstream.iter() {
        answer(message)
    }
    match upstream.wait_closed() {
        CloseReason::Local => {}                       // our close
        other => eprintln!("upstream ended: {other}"), // the server's close, a failure
    }
    // README end
    assert_eq!(upstream.close_reason(), Some(CloseReason::Local));
    Ok(())
}

#[cfg(feature = "redis")]
#[allow(dead_code)] // the README needs only a running server, not stop and restart
#[path = "../common/redis.rs"]
mod redis_server;

#[cfg(feature = "redis")]
#[test]
fn beyond_one_machine() -> Outcome {
    use ran_routing::redis::{RedisKeys, RedisStore};
    let server = redis_server::RedisServer::start();
    let redis_url = server.url();
    let emu = emulator();
    let ran = core(&emu);
    // README: redis
    let store = RedisStore::open(&redis_url)?.prefix("eu868:");
    let keys = RedisKeys::new(&store); // a mic::KeyStore: sessions and counters in Redis
    let upstream = ran
        .upstream()
        .dedup_in(&store, Duration::from_secs(60))
        .connect()?;
    // README end
    let device = DevEui::new(0x7ABE1B8C93D7174F);
    keys.set_session(
        device,
        mic::Session::new(AesKey::from([7; 16])).with_fcnt_down(4),
    )?;
    // Another process's view of the same sessions takes the next counter once.
    let other = RedisKeys::new(&RedisStore::open(&redis_url)?.prefix("eu868:"));
    assert_eq!(other.next_fcnt_down(device)?.map(|(_, n)| n), Some(5));
    assert_eq!(keys.next_fcnt_down(device)?.map(|(_, n)| n), Some(6));

    // Copies are answered through Redis as the first was.
    a_copy_gets_the_first_copys_ack(&emu, &upstream, device)
}
