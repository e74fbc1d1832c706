//! A small but real LNS loop: worker threads share one upstream connection, solve each
//! uplink's MIC challenge with the device keys from a file, ack or reject it, and answer
//! join requests with real join accepts and confirmed uplinks with an ACK, each a
//! downlink tracked without blocking. The upstream de-duplicates: the RAN may deliver an
//! uplink several times, the workers see it once and the connection answers the copies.
//! Both streams reconnect by themselves after a network failure.
//!
//! The join flow (LoRaWAN 1.0.x): the worker solves the join request with the AppKey,
//! acks it, allocates a DevAddr, derives the session keys from the request's DevNonce
//! and keeps them in its key store, tells the routing table the new address
//! (`update` with TargetDevAddr), and sends the join accept in RX1 (JoinAcceptDelay1,
//! 5 s after the request) with `TargetDevAddr` set, as the RAN requires. The device's
//! next uplinks come from the new address and are solved with the new session.
//!
//! Confirmed uplinks get an ACK: a data downlink signed with the device's session and its
//! next FCntDown, taken from the key store the workers share (one counter per downlink,
//! whichever worker sends it). Application payloads are read with the AppSKey when the
//! LNS has it.
//!
//! `cargo run --example lns` runs it against the embedded emulator, which plays the
//! devices of `examples/lns-keys.txt` with real MICs (one of them with a key the LNS does
//! not have), some uplinks as several copies: the OTAA devices join, then every device
//! sends uplinks; the emulator cuts the network once, enforces the service's routing
//! rules (subscription, transmission windows) and judges every answer, every copy's
//! included, and the devices judge every downlink as real ones do (address, MIC, FCntDown,
//! receive window). The example stops after it has handled every uplink, and fails unless
//! each was answered correctly, each join accept joined its device and each ACK was
//! received.
//!
//! With `REDIS_URL` set (and the `redis` feature: `cargo run --features redis --example
//! lns`) it runs as one of several LNS processes on one account: sessions and frame
//! counters live in that Redis (`RedisKeys`), and the upstream de-duplicates through it
//! (`dedup_in`), so copies of an uplink dealt to other processes are answered once.
//!
//! With `RAN_URL` and `RAN_TOKEN` set (optional `RAN_CA_CERT`) it serves that endpoint
//! with the keys of `RAN_KEYS_FILE` (default `examples/lns-keys.txt`; the format is
//! described at the top of that file). It subscribes the file's devices that are not in
//! the routing table yet, serves until stdin closes (Ctrl-D) or for `RAN_RUN_SECS`
//! seconds, then unsubscribes them again.

#[macro_use]
mod common;

use std::io::BufRead;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ran_routing::fleet::Directory;
use ran_routing::mic::{
    self, AesKey, DataDownlink, Direction, FrameKind, JoinAccept, KeyStore, Keys, Session,
};
use ran_routing::{
    ApiError, ConnectionEvent, DevAddr, DevEui, DeviceIdentity, DeviceUpdate, DownlinkTracker,
    DownstreamConnection, DownstreamMessage, DownstreamRadio, Error, JoinEui, NewDevice, Reconnect,
    TransmissionWindow, UpstreamConnection, UpstreamMessage, UpstreamRejectResultCode,
};
use ran_routing_emulator::{DownlinkVerdict, Emulator, RadioDevice, UpstreamVerdict};

const WORKERS: usize = 4;
/// The network's NetID (0x000013 is a test value); join accepts carry it.
const NET_ID: u32 = 0x000013;
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
        app_s_key: Option<AesKey>,
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
            ["abp", dev_eui, dev_addr, nwk_s_key, rest @ ..] if rest.len() <= 2 => {
                // An AppSKey is 32 hex digits, an FCntUp a decimal number.
                let (app_s_key, fcnt_up) = match rest {
                    [key, fcnt] => (Some(*key), Some(*fcnt)),
                    [one] if one.len() == 32 => (Some(*one), None),
                    [fcnt] => (None, Some(*fcnt)),
                    _ => (None, None),
                };
                Device::Abp {
                    dev_eui: dev_eui.parse().map_err(|e| at(&e))?,
                    dev_addr: dev_addr.parse().map_err(|e| at(&e))?,
                    nwk_s_key: nwk_s_key.parse().map_err(|e| at(&e))?,
                    app_s_key: match app_s_key {
                        Some(key) => Some(key.parse().map_err(|e| at(&e))?),
                        None => None,
                    },
                    fcnt_up: match fcnt_up {
                        Some(f) => Some(f.parse().map_err(|e| at(&e))?),
                        None => None,
                    },
                }
            }
            _ => {
                return Err(at(&"expected `otaa DevEUI JoinEUI AppKey` or \
                                  `abp DevEUI DevAddr NwkSKey [AppSKey] [FCntUp]`"))
            }
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
    /// Downlink outcomes, tagged with the uplink they answer and what they are.
    downlinks: DownlinkTracker<(u64, &'static str)>,
    downlinks_sent: AtomicU64,
    /// Every downlink's TransactionID, for the emulator demo's check of what the
    /// devices made of them.
    downlink_ids: Mutex<Vec<u64>>,
    /// Shared by the workers as is: solving reads it, every solved data uplink moves a
    /// session's FCntUp on, every ACK takes the next FCntDown; it locks per device (or
    /// lives in Redis, shared with other LNS processes).
    keys: Sessions,
    handled: AtomicU64,
    rejected: AtomicU64,
    downlinks_ok: AtomicU64,
    downlinks_failed: AtomicU64,
    /// The next AppNonce (24 bits): a fresh one for every join accept.
    next_app_nonce: AtomicU32,
    /// Which device each DevAddr belongs to, active or granted by a join accept: what a
    /// bridge looks a downlink's address up in. Kept in step by the join flow.
    directory: Directory,
}

impl Lns {
    /// One worker: takes upstream messages until the connection is closed for good.
    /// The iterator is shared, so each message goes to exactly one worker.
    fn work(self: &Arc<Self>) {
        for msg in self.upstream.iter() {
            if let Err(e) = self.handle(&msg) {
                println!("upstream {}: {e}", msg.transaction_id);
            }
            self.handled.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn handle(self: &Arc<Self>, msg: &UpstreamMessage) -> Result<(), Box<dyn std::error::Error>> {
        let outcome = mic::solve(&self.keys, msg);
        if let Ok(solved) = &outcome {
            // Remember the full frame counter: the next uplink carries only its low 16
            // bits, and the solver takes the high ones from here.
            self.keys.record(solved)?;
        }
        // Every upstream gets exactly one answer: an ack naming the device and its true
        // MIC, or a reject (MICFailed when no key produced a candidate). Class A windows
        // count from the acknowledged uplink, so the ack goes first.
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
        if let Some(dev_addr) = solved.frame.dev_addr() {
            // Its first uplink from a granted address makes that address the active one.
            self.directory.uplink_from(solved.dev_eui, dev_addr);
        }
        if let (Some(fcnt), Some(session)) = (solved.fcnt, self.keys.session(solved.dev_eui)) {
            self.read_payload(msg, solved.frame, fcnt, &session);
        }
        // The solver says what the frame is: a join request wants a join accept, a
        // confirmed uplink an ACK.
        let (delay, target_dev_addr, phy_payload, what) = match solved.frame {
            FrameKind::JoinRequest {
                join_eui,
                dev_nonce,
            } => {
                let (dev_addr, phy_payload) = self.join(solved.dev_eui, join_eui, dev_nonce)?;
                // RX1 of a join request: JoinAcceptDelay1, 5 s.
                (5, Some(dev_addr), phy_payload, "join accept")
            }
            FrameKind::ConfirmedData { dev_addr, .. } => {
                // RX1 of a data uplink: RxDelay, 1 s (the join accept says so too).
                (1, None, self.ack_frame(solved.dev_eui, dev_addr)?, "ACK")
            }
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
            phy_payload,
        );
        // Mandatory for a join accept: the RAN routes the device's next uplinks by it.
        downlink.target_dev_addr = target_dev_addr;
        // The worker goes on at once; the outcome (result, timeout or send error) comes
        // from the tracker, tagged, to the thread running `track_downlinks`.
        println!(
            "upstream {}: {}{fcnt} acked, sending {what}",
            msg.transaction_id, solved.dev_eui
        );
        self.downlinks_sent.fetch_add(1, Ordering::SeqCst);
        self.downlink_ids
            .lock()
            .unwrap()
            .push(downlink.transaction_id);
        self.downlinks.send((msg.transaction_id, what), downlink);
        Ok(())
    }

    /// Takes every downlink's outcome until the downstream is closed for good.
    fn track_downlinks(&self) {
        for tracked in self.downlinks.iter() {
            let (uplink, what) = tracked.tag;
            match tracked.outcome {
                Ok(result) if result.result_code.is_success() => {
                    self.downlinks_ok.fetch_add(1, Ordering::SeqCst);
                    println!("upstream {uplink}: {what} delivered");
                }
                Ok(result) => {
                    self.downlinks_failed.fetch_add(1, Ordering::SeqCst);
                    println!("upstream {uplink}: {what} failed: {}", result.result_code);
                }
                Err(e) => {
                    self.downlinks_failed.fetch_add(1, Ordering::SeqCst);
                    println!("upstream {uplink}: {what} failed: {e}");
                }
            }
        }
    }

    /// Accepts a join: a DevAddr and session keys for this DevNonce, kept in the key
    /// store and told to the routing table; returns the address and the encrypted join
    /// accept.
    fn join(
        &self,
        dev_eui: DevEui,
        join_eui: JoinEui,
        dev_nonce: u16,
    ) -> Result<(DevAddr, Vec<u8>), Box<dyn std::error::Error>> {
        let dev_addr = allocate_dev_addr(dev_eui);
        let app_nonce = self.next_app_nonce.fetch_add(1, Ordering::SeqCst) & 0x00ff_ffff;
        let accept = JoinAccept::new(app_nonce, NET_ID, dev_addr)?.with_rx_delay(1)?;
        let app_key = self.keys.join_key(dev_eui).ok_or("no AppKey")?;
        // The device derives the same keys from the same DevNonce; its next uplinks are
        // signed with the new NwkSKey from FCnt 0, and its downlink counter restarts.
        let session_keys = accept.session_keys(&app_key, dev_nonce);
        self.keys.set_session(dev_eui, session_keys.session())?;
        let phy_payload = accept.encrypt(&app_key);
        // The new address is the device's second security context until it first sends
        // from it; the RAN then makes it the active one.
        self.core
            .routing_table()
            .update(DeviceUpdate::new(dev_eui, join_eui).with_target_dev_addr(dev_addr))?;
        self.directory.set_target(dev_eui, dev_addr);
        Ok((dev_addr, phy_payload))
    }

    /// An unconfirmed data downlink with the ACK bit and no payload, signed with the
    /// device's session and its next FCntDown.
    fn ack_frame(
        &self,
        dev_eui: DevEui,
        dev_addr: DevAddr,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let (session, fcnt_down) = self
            .keys
            .next_fcnt_down(dev_eui)?
            .ok_or("no session, or its downlink counters are used up: the device must join")?;
        // No payload, so no AppSKey is needed to encrypt one; the NwkSKey stands in
        // for a session that has none.
        let app_s_key = session.app_s_key.as_ref().unwrap_or(&session.nwk_s_key);
        Ok(DataDownlink::new(dev_addr, fcnt_down)
            .ack(true)
            .build(&session.nwk_s_key, app_s_key)?)
    }

    /// Prints a data uplink's application payload, decrypted with the session's AppSKey.
    fn read_payload(&self, msg: &UpstreamMessage, frame: FrameKind, fcnt: u32, session: &Session) {
        let (Some(dev_addr), Some(app_s_key)) = (frame.dev_addr(), &session.app_s_key) else {
            return;
        };
        // MHDR, DevAddr, FCtrl, FCnt, FOpts, then FPort and the FRMPayload.
        let p = &msg.phy_payload_no_mic;
        let at = 8 + usize::from(p[5] & 0x0f);
        if p.len() > at + 1 && p[at] != 0 {
            let clear = mic::encrypt_frm_payload(
                app_s_key,
                dev_addr,
                fcnt,
                Direction::Uplink,
                &p[at + 1..],
            );
            println!(
                "upstream {}: FPort {} payload {:?}",
                msg.transaction_id,
                p[at],
                String::from_utf8_lossy(&clear)
            );
        }
    }
}

/// The DevAddr a joining device gets. A real LNS allocates one from its NetID's range;
/// here the address just follows from the DevEUI.
fn allocate_dev_addr(dev_eui: DevEui) -> DevAddr {
    DevAddr::new(0x2600_0000 | (dev_eui.get() as u32 & 0x01ff_ffff))
}

fn main() -> common::Outcome {
    common::log_to_stderr();
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
    let keys = Sessions::open()?;
    for device in devices {
        match device {
            Device::Otaa {
                dev_eui, app_key, ..
            } => {
                keys.set_join_key(*dev_eui, app_key.clone())?;
            }
            Device::Abp {
                dev_eui,
                nwk_s_key,
                app_s_key,
                fcnt_up,
                ..
            } => {
                let session = Session::new(nwk_s_key.clone());
                let session = match app_s_key {
                    Some(key) => session.with_app_s_key(key.clone()),
                    None => session,
                };
                let session = match fcnt_up {
                    Some(f) => session.with_fcnt_up(*f),
                    None => session,
                };
                keys.set_session(*dev_eui, session)?;
            }
        }
    }

    // With reconnection on, a failed connection is replaced with backoff, and the
    // iterators keep going across it; on_event reports what happens.
    let log = |stream: &'static str| move |event: &ConnectionEvent| println!("[{stream}] {event}");
    let downstream = ran
        .core
        .downstream()
        .reconnect(Reconnect::default())
        .on_event(log("downstream"))
        .connect()?;
    let lns = Arc::new(Lns {
        core: ran.core.clone(),
        // The bridges' window: copies of an uplink within 60 s are answered by the
        // connection, the way the application answered the first (through Redis,
        // whichever process they land in, when the sessions live there).
        upstream: keys
            .dedup(ran.core.upstream(), Duration::from_secs(60))
            .reconnect(Reconnect::default())
            .on_event(log("upstream"))
            .connect()?,
        downlinks: downstream.tracker(Duration::from_secs(10)),
        downlinks_sent: AtomicU64::new(0),
        downlink_ids: Mutex::new(Vec::new()),
        downstream,
        keys,
        handled: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        downlinks_ok: AtomicU64::new(0),
        downlinks_failed: AtomicU64::new(0),
        next_app_nonce: AtomicU32::new(0x00e506),
        directory: Directory::load(&ran.core)?,
    });
    let mut threads: Vec<_> = (0..WORKERS)
        .map(|_| {
            let lns = lns.clone();
            std::thread::spawn(move || lns.work())
        })
        .collect();
    let tracking = lns.clone();
    threads.push(std::thread::spawn(move || tracking.track_downlinks()));
    // Downstream replies the tracker does not claim (say, a result that came after its
    // downlink timed out) go to the iterator: drain it so they never pile up.
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
    let duplicates = lns.upstream.dedup_stats().map_or(0, |d| d.answered);
    println!(
        "Handled {} upstreams ({duplicates} duplicates answered by the connection): {} \
         rejected; downlinks: {} ok, {} failed",
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

/// On the emulator: the file's devices go on the air (the LNS subscribed them at
/// start-up, as the RAN routes only subscribed devices' traffic); the OTAA devices join,
/// then every device sends uplinks, with a network failure in between. Then every
/// verdict must be right.
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
                app_s_key,
                fcnt_up,
            } => {
                let next = fcnt_up.map_or(0, |f| f + 1);
                let device = RadioDevice::abp(*dev_eui, *dev_addr, nwk_s_key.clone(), next);
                match app_s_key {
                    Some(key) => device.with_app_s_key(key.clone()),
                    None => device,
                }
            }
        })?;
    }
    if !emu.wait_upstream_connections(1, Duration::from_secs(10)) {
        return Err("the upstream connection never reached the emulator".into());
    }

    // Round 1: the OTAA devices join, the ABP devices talk.
    let mut played = Vec::new();
    play_round(emu, lns, devices, &mut played)?;
    wait_until_handled(lns, &played)?;
    for device in devices {
        if let Device::Otaa { dev_eui, .. } = device {
            if *dev_eui == IMPOSTOR {
                continue;
            }
            let joined = emu.radio_device(*dev_eui).and_then(|d| d.dev_addr());
            let granted = lns.directory.addresses(*dev_eui).and_then(|a| a.target);
            ensure!(
                joined.is_some() && joined == granted,
                "{dev_eui} joined as {joined:?}, granted {granted:?}"
            );
            println!("{dev_eui} joined as {}", granted.unwrap_or(DevAddr::new(0)));
        }
    }

    println!("The emulator cuts both stream connections...");
    emu.drop_stream_connections();
    wait_for("upstream to notice", || !lns.upstream.is_connected())?;
    wait_for("downstream to notice", || !lns.downstream.is_connected())?;
    wait_for("the streams to reconnect", || {
        lns.upstream.is_connected() && lns.downstream.is_connected()
    })?;

    // Round 2: every device talks, the joined ones in their new sessions.
    play_round(emu, lns, devices, &mut played)?;
    wait_until_handled(lns, &played)?;

    wait_for("every downlink's outcome", || {
        lns.downlinks_ok.load(Ordering::SeqCst) + lns.downlinks_failed.load(Ordering::SeqCst)
            == lns.downlinks_sent.load(Ordering::SeqCst)
    })?;
    // The emulator knows each frame's true device and MIC, and judged every answer, the
    // duplicates' too.
    for (tid, dev_eui) in &played {
        let verdict = emu.wait_upstream_verdict(*tid, Duration::from_secs(10));
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
    // The joined devices spoke from their new addresses: those are now the active ones,
    // in the directory as in the RAN.
    for device in devices {
        if let Device::Otaa { dev_eui, .. } = device {
            let on_air = emu.radio_device(*dev_eui).and_then(|d| d.dev_addr());
            let active = lns.directory.addresses(*dev_eui).and_then(|a| a.active);
            ensure!(
                *dev_eui == IMPOSTOR || active == on_air,
                "{dev_eui}: directory says {active:?}, the device has {on_air:?}"
            );
        }
    }
    // And the devices judged every downlink: each join accept joined, each ACK was
    // taken (right address, MIC and FCntDown, in RX1).
    for tid in lns.downlink_ids.lock().unwrap().iter() {
        let verdict = emu.wait_downlink_verdict(*tid, Duration::from_secs(10));
        ensure!(
            matches!(
                verdict,
                Some(DownlinkVerdict::Joined { .. } | DownlinkVerdict::Received(_))
            ),
            "downlink {tid}: {verdict:?}"
        );
    }
    let stats = emu.mic_stats();
    ensure!(
        stats.joins == 2 && stats.ignored_downlinks == 0 && stats.withheld == 0,
        "{stats:?}"
    );
    println!("The emulator's verdicts: {stats:?}");
    Ok(())
}

/// Waits until every played upstream reached a worker once (its copies the
/// de-duplication) and every downlink's outcome is in.
fn wait_until_handled(lns: &Lns, played: &[(u64, DevEui)]) -> common::Outcome {
    wait_for("every upstream handled", || {
        let duplicates = lns.upstream.dedup_stats().map_or(0, |d| d.duplicates);
        let outcomes =
            lns.downlinks_ok.load(Ordering::SeqCst) + lns.downlinks_failed.load(Ordering::SeqCst);
        lns.handled.load(Ordering::SeqCst) + duplicates == played.len() as u64
            && outcomes == lns.downlinks_sent.load(Ordering::SeqCst)
    })
}

/// Every OTAA device that has not joined sends a join request (delivered twice), every
/// other device three uplinks (the first confirmed, the last delivered three times). As
/// a real device, one that sent a confirmed uplink transmits again only once its ACK's
/// receive window is over: a device listens after its latest uplink only.
fn play_round(
    emu: &Emulator,
    lns: &Lns,
    devices: &[Device],
    played: &mut Vec<(u64, DevEui)>,
) -> common::Outcome {
    for device in devices {
        let dev_eui = device.dev_eui();
        let joined = emu
            .radio_device(dev_eui)
            .and_then(|d| d.dev_addr())
            .is_some();
        match device {
            Device::Otaa { .. } if !joined => played.extend(
                emu.play_join_request_copies(dev_eui, 2)?
                    .into_iter()
                    .map(|tid| (tid, dev_eui)),
            ),
            _ => {
                let sent = lns.downlinks_sent.load(Ordering::SeqCst);
                played.push((
                    emu.play_confirmed_uplink(dev_eui, 1, *b"temp=21.5")?,
                    dev_eui,
                ));
                wait_for("the ACK's outcome", || {
                    let outcomes = lns.downlinks_ok.load(Ordering::SeqCst)
                        + lns.downlinks_failed.load(Ordering::SeqCst);
                    outcomes > sent
                })?;
                played.push((emu.play_uplink(dev_eui, 1, *b"temp=21.6")?, dev_eui));
                let copies = emu.play_uplink_copies(dev_eui, 1, *b"temp=21.7", 3)?;
                played.extend(copies.into_iter().map(|tid| (tid, dev_eui)));
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

/// Where the LNS keeps its devices' keys and counters: in this process, or in Redis
/// (`REDIS_URL`, feature `redis`), shared with the other LNS processes on the account.
enum Sessions {
    Local(Keys),
    #[cfg(feature = "redis")]
    Shared(
        ran_routing::redis::RedisKeys,
        ran_routing::redis::RedisStore,
    ),
}

impl Sessions {
    fn open() -> Result<Self, Box<dyn std::error::Error>> {
        let Ok(url) = std::env::var("REDIS_URL") else {
            return Ok(Self::Local(Keys::new()));
        };
        #[cfg(feature = "redis")]
        {
            let store = ran_routing::redis::RedisStore::open(&url)?;
            println!("Sessions and de-duplication shared through {store:?}");
            Ok(Self::Shared(
                ran_routing::redis::RedisKeys::new(&store),
                store,
            ))
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = url;
            Err("REDIS_URL is set: run with `--features redis`".into())
        }
    }

    /// The upstream's de-duplication: through Redis when the sessions are there.
    fn dedup<'a>(
        &self,
        builder: ran_routing::UpstreamBuilder<'a>,
        window: Duration,
    ) -> ran_routing::UpstreamBuilder<'a> {
        match self {
            Self::Local(_) => builder.dedup(window),
            #[cfg(feature = "redis")]
            Self::Shared(_, store) => builder.dedup_in(store, window),
        }
    }

    fn set_join_key(&self, dev_eui: DevEui, key: AesKey) -> Result<(), Error> {
        match self {
            Self::Local(keys) => {
                keys.set_join_key(dev_eui, key);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Self::Shared(keys, _) => keys.set_join_key(dev_eui, key),
        }
    }

    fn set_session(&self, dev_eui: DevEui, session: Session) -> Result<(), Error> {
        match self {
            Self::Local(keys) => {
                keys.set_session(dev_eui, session);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Self::Shared(keys, _) => keys.set_session(dev_eui, session),
        }
    }

    fn record(&self, solved: &mic::Solved) -> Result<(), Error> {
        match self {
            Self::Local(keys) => {
                keys.record(solved);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Self::Shared(keys, _) => keys.record(solved),
        }
    }

    fn next_fcnt_down(&self, dev_eui: DevEui) -> Result<Option<(Session, u32)>, Error> {
        match self {
            Self::Local(keys) => Ok(keys.next_fcnt_down(dev_eui)),
            #[cfg(feature = "redis")]
            Self::Shared(keys, _) => keys.next_fcnt_down(dev_eui),
        }
    }
}

impl KeyStore for Sessions {
    fn join_key(&self, dev_eui: DevEui) -> Option<AesKey> {
        match self {
            Self::Local(keys) => keys.join_key(dev_eui),
            #[cfg(feature = "redis")]
            Self::Shared(keys, _) => keys.join_key(dev_eui),
        }
    }

    fn session(&self, dev_eui: DevEui) -> Option<Session> {
        match self {
            Self::Local(keys) => keys.session(dev_eui),
            #[cfg(feature = "redis")]
            Self::Shared(keys, _) => keys.session(dev_eui),
        }
    }
}
