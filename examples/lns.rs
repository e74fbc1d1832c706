//! A small but real LNS loop: worker threads share one upstream connection, solve each
//! uplink's MIC challenge with the device keys from a file, ack or reject it, and answer
//! join requests and confirmed uplinks with a downlink whose result they wait for. Both
//! streams reconnect by themselves after a network failure.
//!
//! `cargo run --example lns` runs it against the embedded emulator, which plays the
//! devices of `examples/lns-keys.txt` with real MICs (one of them with a key the LNS does
//! not have), cuts the network once, and judges every answer. The example stops after it
//! has handled every uplink, and fails unless each was answered correctly.
//!
//! With `RAN_URL` and `RAN_TOKEN` set (optional `RAN_CA_CERT`) it serves that endpoint
//! with the keys of `RAN_KEYS_FILE` (default `examples/lns-keys.txt`; the format is
//! described at the top of that file). It subscribes the file's devices that are not in
//! the routing table yet, serves until stdin closes (Ctrl-D) or for `RAN_RUN_SECS`
//! seconds, then unsubscribes them again.

#[macro_use]
mod common;

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ran_routing::mic::{self, AesKey, Keys, Session, Uplink};
use ran_routing::{
    ApiError, ConnectionEvent, DevAddr, DevEui, DeviceIdentity, DownstreamConnection,
    DownstreamMessage, DownstreamRadio, Error, JoinEui, NewDevice, Reconnect, TransmissionWindow,
    UpstreamConnection, UpstreamMessage, UpstreamRejectResultCode,
};
use ran_routing_emulator::{Emulator, RadioDevice, UpstreamVerdict};

const WORKERS: usize = 4;
/// Plays with a wrong AppKey on the emulator (see `lns-keys.txt`).
const IMPOSTOR: DevEui = DevEui::new(0x70b3d57ed00010ee);

/// One line of the keys file.
enum Device {
    Otaa {
        dev_eui: DevEui,
        join_eui: JoinEui,
        app_key: AesKey,
    },
    Abp {
        dev_eui: DevEui,
        dev_addr: DevAddr,
        nwk_s_key: AesKey,
        fcnt_up: Option<u32>,
    },
}

impl Device {
    fn dev_eui(&self) -> DevEui {
        match self {
            Device::Otaa { dev_eui, .. } | Device::Abp { dev_eui, .. } => *dev_eui,
        }
    }
}

/// Reads the keys file. Errors name the line, never a key.
fn load_keys(path: &str) -> Result<Vec<Device>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut devices = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let at = |e: &dyn std::fmt::Display| format!("{path}:{}: {e}", n + 1);
        let device = match fields.as_slice() {
            [] => continue,
            ["otaa", dev_eui, join_eui, app_key] => Device::Otaa {
                dev_eui: dev_eui.parse().map_err(|e| at(&e))?,
                join_eui: join_eui.parse().map_err(|e| at(&e))?,
                app_key: app_key.parse().map_err(|e| at(&e))?,
            },
            ["abp", dev_eui, dev_addr, nwk_s_key, fcnt_up @ ..] if fcnt_up.len() <= 1 => {
                Device::Abp {
                    dev_eui: dev_eui.parse().map_err(|e| at(&e))?,
                    dev_addr: dev_addr.parse().map_err(|e| at(&e))?,
                    nwk_s_key: nwk_s_key.parse().map_err(|e| at(&e))?,
                    fcnt_up: match fcnt_up.first() {
                        Some(f) => Some(f.parse().map_err(|e| at(&e))?),
                        None => None,
                    },
                }
            }
            _ => return Err(at(
                &"expected `otaa DevEUI JoinEUI AppKey` or `abp DevEUI DevAddr NwkSKey [FCntUp]`",
            )),
        };
        devices.push(device);
    }
    Ok(devices)
}

/// What the workers share.
struct Lns {
    core: ran_routing::Core,
    upstream: UpstreamConnection,
    downstream: DownstreamConnection,
    /// Solving reads it, every solved data uplink moves a session's FCnt on.
    keys: Mutex<Keys>,
    handled: AtomicU64,
    rejected: AtomicU64,
    downlinks_ok: AtomicU64,
    downlinks_failed: AtomicU64,
}

impl Lns {
    /// One worker: takes upstream messages until the connection is closed for good.
    /// The iterator is shared, so each message goes to exactly one worker.
    fn work(&self) {
        for msg in self.upstream.iter() {
            if let Err(e) = self.handle(&msg) {
                println!("upstream {}: {e}", msg.transaction_id);
            }
            self.handled.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn handle(&self, msg: &UpstreamMessage) -> Result<(), Error> {
        let outcome = {
            let mut keys = self.keys.lock().unwrap();
            let outcome = mic::solve(&*keys, msg);
            if let Ok(solved) = &outcome {
                // Remember the full frame counter: the next uplink carries only its low
                // 16 bits, and the solver takes the high ones from here.
                keys.record(solved);
            }
            outcome
        };
        // Every upstream gets exactly one answer: an ack naming the device and its true
        // MIC, or a reject (MICFailed when no key produced a candidate).
        self.upstream.send(mic::reply(msg, &outcome))?;
        let solved = match outcome {
            Ok(solved) => solved,
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::SeqCst);
                println!("upstream {}: rejected ({e})", msg.transaction_id);
                return Ok(());
            }
        };

        let fcnt = solved
            .fcnt
            .map(|f| format!(" FCnt {f}"))
            .unwrap_or_default();
        // A join request wants a join accept, a confirmed uplink an ACK.
        let (delay, target_dev_addr, what) = match Uplink::parse(&msg.phy_payload_no_mic) {
            Ok(Uplink::JoinRequest { .. }) => {
                (5, Some(allocate_dev_addr(solved.dev_eui)), "join accept")
            }
            Ok(Uplink::Data {
                confirmed: true, ..
            }) => (1, None, "ACK"),
            _ => {
                println!(
                    "upstream {}: {}{fcnt} acked",
                    msg.transaction_id, solved.dev_eui
                );
                return Ok(());
            }
        };
        // RX1: the uplink's channel and data rate (EU868), `delay` seconds after it.
        let radio = DownstreamRadio::new(msg.radio.frequency, msg.radio.modulation.clone());
        let mut downlink = DownstreamMessage::new(
            // Unique per Core, across unicast and multicast, as the RAN requires.
            self.core.next_transaction_id(),
            solved.dev_eui,
            TransmissionWindow::class_a(radio, delay),
            // A real LNS builds the frame here (a join accept encrypted with the AppKey,
            // or a data downlink with the ACK bit and its own MIC).
            format!("demo {what}").into_bytes(),
        );
        downlink.target_dev_addr = target_dev_addr;
        // The ack and result of this downlink come back to this call only, even though
        // other workers use the same connection at the same time.
        match self
            .downstream
            .send_and_wait(downlink, Duration::from_secs(10))
        {
            Ok(result) if result.result_code.is_success() => {
                self.downlinks_ok.fetch_add(1, Ordering::SeqCst);
                println!(
                    "upstream {}: {}{fcnt} acked, {what} sent",
                    msg.transaction_id, solved.dev_eui
                );
            }
            Ok(result) => {
                self.downlinks_failed.fetch_add(1, Ordering::SeqCst);
                println!(
                    "upstream {}: {what} failed: {}",
                    msg.transaction_id, result.result_code
                );
            }
            Err(e) => {
                self.downlinks_failed.fetch_add(1, Ordering::SeqCst);
                println!("upstream {}: {what} failed: {e}", msg.transaction_id);
            }
        }
        Ok(())
    }
}

/// The DevAddr a joining device gets. A real LNS allocates one from its NetID's range
/// and derives the session keys; here the address just follows from the DevEUI.
fn allocate_dev_addr(dev_eui: DevEui) -> DevAddr {
    DevAddr::new(0x2600_0000 | (dev_eui.get() as u32 & 0x01ff_ffff))
}

fn main() -> common::Outcome {
    let ran = common::connect()?;
    let _metrics = metrics_endpoint(&ran)?;
    let path = std::env::var("RAN_KEYS_FILE")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lns-keys.txt").into());
    let devices = load_keys(&path)?;
    println!("Loaded the keys of {} devices from {path}", devices.len());

    // Subscribe the devices; those already in the routing table stay as they are.
    let mut subscribed = Vec::new();
    for device in &devices {
        let identity: DeviceIdentity = match device {
            Device::Otaa { join_eui, .. } => (*join_eui).into(),
            Device::Abp { dev_addr, .. } => (*dev_addr).into(),
        };
        match ran
            .core
            .routing_table()
            .insert(NewDevice::new(device.dev_eui(), identity))
        {
            Ok(_) => subscribed.push(device.dev_eui()),
            Err(Error::Api(ApiError::DeviceAlreadyExists { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let outcome = serve(&ran, &devices);
    let cleanup = ran.core.routing_table().delete(subscribed.iter().copied());
    ran.core.close();
    outcome?;
    cleanup?;
    println!("lns: done");
    Ok(())
}

fn serve(ran: &common::Ran, devices: &[Device]) -> common::Outcome {
    let mut keys = Keys::new();
    for device in devices {
        match device {
            Device::Otaa {
                dev_eui, app_key, ..
            } => {
                keys.set_join_key(*dev_eui, app_key.clone());
            }
            Device::Abp {
                dev_eui,
                nwk_s_key,
                fcnt_up,
                ..
            } => {
                let session = Session::new(nwk_s_key.clone());
                let session = match fcnt_up {
                    Some(f) => session.with_fcnt_up(*f),
                    None => session,
                };
                keys.set_session(*dev_eui, session);
            }
        }
    }

    // With reconnection on, a failed connection is replaced with backoff, and the
    // iterators keep going across it; on_event reports what happens.
    let log = |stream: &'static str| move |event: &ConnectionEvent| println!("[{stream}] {event}");
    let lns = Arc::new(Lns {
        core: ran.core.clone(),
        upstream: ran
            .core
            .upstream()
            .reconnect(Reconnect::default())
            .on_event(log("upstream"))
            .connect()?,
        downstream: ran
            .core
            .downstream()
            .reconnect(Reconnect::default())
            .on_event(log("downstream"))
            .connect()?,
        keys: Mutex::new(keys),
        handled: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        downlinks_ok: AtomicU64::new(0),
        downlinks_failed: AtomicU64::new(0),
    });
    let mut threads: Vec<_> = (0..WORKERS)
        .map(|_| {
            let lns = lns.clone();
            std::thread::spawn(move || lns.work())
        })
        .collect();
    // Downstream replies no waiter claims (say, a result that came after its waiter gave
    // up) go to the iterator: drain it so they never pile up.
    let drain = lns.clone();
    threads.push(std::thread::spawn(move || {
        for reply in drain.downstream.iter() {
            println!("downstream reply nobody waited for: {reply:?}");
        }
    }));

    let stats = stats_printer(&lns);
    let outcome = match &ran.emulator {
        Some(emulator) => demo(emulator, &lns, devices),
        None => {
            wait_until_stopped();
            Ok(())
        }
    };

    // Clean shutdown: closing ends the iterators once the messages already received are
    // handed out, so every worker finishes what it holds and returns.
    lns.upstream.close();
    lns.downstream.close();
    for thread in threads {
        thread.join().map_err(|_| "a worker panicked")?;
    }
    drop(stats);
    print_stats(&lns);
    println!(
        "Handled {} upstreams: {} rejected; downlinks: {} ok, {} failed",
        lns.handled.load(Ordering::SeqCst),
        lns.rejected.load(Ordering::SeqCst),
        lns.downlinks_ok.load(Ordering::SeqCst),
        lns.downlinks_failed.load(Ordering::SeqCst),
    );
    outcome
}

/// Observability: with `RAN_METRICS_ADDR` set, Prometheus text at `/metrics` and a
/// readiness probe at `/ready`. Started before the streams open: they register their
/// counters with the recorder when they do.
fn metrics_endpoint(
    ran: &common::Ran,
) -> Result<Option<common::metrics::MetricsServer>, Box<dyn std::error::Error>> {
    let core = ran.core.clone();
    let ready: common::metrics::ReadyFn = Arc::new(move || {
        let health = core.health();
        (health.is_ready(), health.to_string())
    });
    let server = common::metrics::MetricsServer::from_env(Some(ready))?;
    if let Some(server) = &server {
        println!(
            "metrics: serving Prometheus text at http://{}/metrics",
            server.addr()
        );
        if !cfg!(feature = "metrics") {
            println!("metrics: built without the `metrics` feature, the crate publishes nothing");
        }
    }
    Ok(server)
}

/// Every `RAN_STATS_SECS` (default 10 s), one line per stream, REST and health.
fn stats_printer(lns: &Arc<Lns>) -> common::metrics::Every {
    let lns = lns.clone();
    common::metrics::Every::start(common::metrics::stats_interval(), move || print_stats(&lns))
}

fn print_stats(lns: &Lns) {
    println!("stats: {}", lns.upstream.stats());
    println!("stats: {}", lns.downstream.stats());
    println!("stats: {}; {}", lns.core.rest_stats(), lns.core.health());
}

/// Against a real endpoint: until stdin closes, or for `RAN_RUN_SECS` seconds.
fn wait_until_stopped() {
    if let Some(secs) = std::env::var("RAN_RUN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("Serving for {secs} s (RAN_RUN_SECS)...");
        std::thread::sleep(Duration::from_secs(secs));
    } else {
        println!("Serving until stdin closes (Ctrl-D)...");
        for _ in std::io::stdin().lock().lines().map_while(Result::ok) {}
    }
}

/// On the emulator: the file's devices go on the air and send join requests and
/// uplinks, twice, with a network failure in between. Then every verdict must be right.
fn demo(emu: &Emulator, lns: &Lns, devices: &[Device]) -> common::Outcome {
    // Small challenges: a wrong key's MIC could collide with one of thousands of decoys
    // (odds candidates / 2^32 per guess), which would make the demo's check flaky.
    emu.set_mic_challenge_size(2, 64)?;
    for device in devices {
        emu.add_radio_device(match device {
            Device::Otaa {
                dev_eui, join_eui, ..
            } if *dev_eui == IMPOSTOR => {
                RadioDevice::otaa(*dev_eui, *join_eui, AesKey::new([0x5a; 16]))
            }
            Device::Otaa {
                dev_eui,
                join_eui,
                app_key,
            } => RadioDevice::otaa(*dev_eui, *join_eui, app_key.clone()),
            Device::Abp {
                dev_eui,
                dev_addr,
                nwk_s_key,
                fcnt_up,
            } => {
                let next = fcnt_up.map_or(0, |f| f + 1);
                RadioDevice::abp(*dev_eui, *dev_addr, nwk_s_key.clone(), next)
            }
        });
    }
    if !emu.wait_upstream_connections(1, Duration::from_secs(10)) {
        return Err("the upstream connection never reached the emulator".into());
    }

    let mut played = Vec::new();
    play_round(emu, devices, &mut played)?;
    wait_for("every upstream handled", || {
        lns.handled.load(Ordering::SeqCst) == played.len() as u64
    })?;

    println!("The emulator cuts both stream connections...");
    emu.drop_stream_connections();
    wait_for("upstream to notice", || !lns.upstream.is_connected())?;
    wait_for("downstream to notice", || !lns.downstream.is_connected())?;
    wait_for("the streams to reconnect", || {
        lns.upstream.is_connected() && lns.downstream.is_connected()
    })?;

    play_round(emu, devices, &mut played)?;
    wait_for("every upstream handled", || {
        lns.handled.load(Ordering::SeqCst) == played.len() as u64
    })?;

    // The emulator knows each frame's true device and MIC, and judged every answer.
    for (tid, dev_eui) in &played {
        let verdict = emu.played_upstream(*tid).map(|p| p.verdict);
        let want = if *dev_eui == IMPOSTOR {
            UpstreamVerdict::Rejected(UpstreamRejectResultCode::MicFailed)
        } else {
            UpstreamVerdict::Solved
        };
        ensure!(
            verdict == Some(want),
            "upstream {tid} from {dev_eui}: {verdict:?}"
        );
    }
    ensure!(
        lns.downlinks_failed.load(Ordering::SeqCst) == 0,
        "some downlinks failed"
    );
    println!("The emulator's verdicts: {:?}", emu.mic_stats());
    Ok(())
}

/// Every OTAA device sends a join request, every ABP device three uplinks (the first
/// confirmed).
fn play_round(
    emu: &Emulator,
    devices: &[Device],
    played: &mut Vec<(u64, DevEui)>,
) -> common::Outcome {
    for device in devices {
        let dev_eui = device.dev_eui();
        match device {
            Device::Otaa { .. } => played.push((emu.play_join_request(dev_eui)?, dev_eui)),
            Device::Abp { .. } => {
                played.push((
                    emu.play_confirmed_uplink(dev_eui, 1, *b"temp=21.5")?,
                    dev_eui,
                ));
                for _ in 0..2 {
                    played.push((emu.play_uplink(dev_eui, 1, *b"temp=21.6")?, dev_eui));
                }
            }
        }
    }
    Ok(())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> common::Outcome {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
