//! The Python client's opening walkthrough, in Rust: subscribe a device, receive one
//! uplink and answer its MIC challenge, send a downlink and receive its ack and result,
//! then unsubscribe the device.
//!
//! `cargo run --example quickstart` runs it against the embedded emulator, which plays
//! the radio side: it hears a join request from the device, signed with a demo AppKey.
//! With `RAN_URL` and `RAN_TOKEN` set it runs against that API instead and waits up to
//! `RAN_WAIT_SECS` (default 30) for an uplink; set `RAN_APP_KEY` (hex) to the device's
//! AppKey to solve its join requests' challenges there too.

#[macro_use]
mod common;

use std::time::Duration;

use ran_routing::mic::{self, AesKey, Keys};
use ran_routing::{
    DevEui, DownstreamRadio, DownstreamReply, JoinEui, LoRaModulation, NewDevice, Select,
    TransmissionWindow,
};

const DEV_EUI: DevEui = DevEui::new(0x7ABE1B8C93D7174F);
const JOIN_EUI: JoinEui = JoinEui::new(0x3CEDCF624F8B68F4);
/// The emulated device's AppKey. A real LNS keeps its keys in its own store.
const DEMO_APP_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";

fn main() -> common::Outcome {
    common::log_to_stderr();
    let ran = common::connect()?;
    let outcome = walkthrough(&ran);
    // Unsubscribe even when a step failed; an unknown DevEUI is ignored.
    let cleanup = ran.core.routing_table().delete([DEV_EUI]);
    ran.core.close();
    outcome?;
    println!(
        "7. Device {DEV_EUI} deleted from the routing table: {} row(s)",
        cleanup?
    );
    println!("quickstart: done");
    Ok(())
}

fn walkthrough(ran: &common::Ran) -> common::Outcome {
    let core = &ran.core;

    // 1. Subscribe an OTAA device: a routing table row keyed by (DevEUI, JoinEUI).
    let device = core
        .routing_table()
        .insert(NewDevice::otaa(DEV_EUI, JOIN_EUI))?;
    println!("1. Inserted {device:?}");

    // 2. The routing table can be read back at any time.
    let devices = core.routing_table().select(Select::dev_euis([DEV_EUI]))?;
    ensure!(
        devices.first().map(|d| d.dev_eui) == Some(device.dev_eui),
        "{devices:?}"
    );
    println!(
        "2. Selected {} device(s); the first is {}",
        devices.len(),
        devices[0].dev_eui
    );

    // 3. One connection per stream. Each has its own reader and writer thread.
    let upstream = core.upstream().connect()?;
    let downstream = core.downstream().connect()?;
    println!("3. Upstream and downstream connected");

    // The keys the LNS solves MIC challenges with.
    let app_key: AesKey = match std::env::var("RAN_APP_KEY") {
        Ok(hex) => hex.parse()?,
        Err(_) => DEMO_APP_KEY.parse()?,
    };
    let keys = Keys::new();
    keys.set_join_key(DEV_EUI, app_key.clone());

    // On the emulator: the device sends a join request, its MIC hidden among 16
    // candidates.
    let frame = mic::join_request(&app_key, JOIN_EUI, DEV_EUI, 0x0102);
    common::play_uplink(
        ran,
        &mic::upstream_with_challenge(&frame, 1, vec![DEV_EUI], 15, 42)?,
    )?;

    // 4. Receive one uplink and answer it: an ack naming the true MIC, or a reject.
    let Ok(uplink) = upstream.recv_timeout(common::wait_for_uplink()) else {
        return Err("no uplink arrived in time".into());
    };
    println!(
        "4. Uplink {}: DevEUIs {:?}, {} bytes, {} MIC candidates, RSSI {} dBm",
        uplink.transaction_id,
        uplink.dev_euis,
        uplink.phy_payload_no_mic.len(),
        uplink.mic_challenge.len(),
        uplink.radio.rssi
    );
    let reply = mic::Solver::new().reply(&keys, &uplink);
    println!("   answering with {reply:?}");
    upstream.send(reply)?;

    // 5. A class A downlink to the device, 1 s after its uplink.
    let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
    let tx_window = TransmissionWindow::class_a(radio, 1);
    downstream.send_downstream(1, DEV_EUI, tx_window, b"some-phy-payload-from-lns".to_vec())?;
    println!("5. Downlink 1 sent");

    // 6. The RAN acknowledges the downlink ("scheduled"), then reports its result.
    let timeout = Duration::from_secs(10);
    let ack = downstream.recv_timeout(timeout)?;
    ensure!(matches!(ack, DownstreamReply::Ack(_)), "{ack:?}");
    println!("6. {ack:?}");
    let result = downstream.recv_timeout(timeout)?;
    let DownstreamReply::Result(result) = result else {
        return Err(format!("expected a result, got {result:?}").into());
    };
    ensure!(result.transaction_id == 1, "{result:?}");
    println!("   {result:?}");
    if ran.emulator.is_some() {
        ensure!(result.result_code.is_success(), "{result:?}");
    }

    upstream.close();
    downstream.close();
    upstream.wait_closed();
    downstream.wait_closed();
    Ok(())
}
