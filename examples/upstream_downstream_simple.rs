//! The guide's upstream and downstream example: receive one uplink and ack it with its
//! first DevEUI and first MIC candidate (as the guide does; a real LNS solves the MIC
//! challenge, see `quickstart` and `lns`), send a class A downlink, then receive its ack
//! and its result.
//!
//! Runs against the embedded emulator, which injects the uplink, or against
//! `RAN_URL`/`RAN_TOKEN`, waiting up to `RAN_WAIT_SECS` (default 30) for an uplink.

#[macro_use]
mod common;

use std::time::Duration;

use ran_routing::{
    DevAddr, DevEui, DownstreamRadio, DownstreamReply, LoRaModulation, NewDevice,
    TransmissionWindow, UpstreamMessage, UpstreamRadio,
};

const DEV_EUI: DevEui = DevEui::new(0x7ABE1B8C93D7174F);
const DEV_ADDR: DevAddr = DevAddr::new(0x627BB8BB);

fn main() -> common::Outcome {
    common::log_to_stderr();
    let ran = common::connect()?;
    // On the emulator the device must be subscribed for its downlink to go out.
    if ran.emulator.is_some() {
        ran.core
            .routing_table()
            .insert(NewDevice::abp(DEV_EUI, DEV_ADDR))?;
    }
    let outcome = run(&ran);
    if ran.emulator.is_some() {
        ran.core.routing_table().delete([DEV_EUI])?;
    }
    ran.core.close();
    outcome?;
    println!("upstream_downstream_simple: done");
    Ok(())
}

fn run(ran: &common::Ran) -> common::Outcome {
    let upstream = ran.core.upstream().connect()?;
    let downstream = ran.core.downstream().connect()?;

    // What a gateway would have heard: an unconfirmed data uplink from DEV_ADDR.
    common::play_uplink(
        ran,
        &UpstreamMessage::new(
            1,
            vec![DEV_EUI],
            UpstreamRadio::new(868_100_000, LoRaModulation::new(12, 125_000), -52.0, -3.0),
            vec![0x40, 0xBB, 0xB8, 0x7B, 0x62, 0x00, 0x01, 0x00, 0x01, 0x45],
            vec![1_308_830_714, 114_830_713],
        ),
    )?;

    let Ok(message) = upstream.recv_timeout(common::wait_for_uplink()) else {
        return Err("no uplink arrived in time".into());
    };
    println!("Received {message:?}");
    let dev_eui = message.dev_euis[0];
    upstream.send_upstream_ack(message.transaction_id, dev_eui, message.mic_challenge[0])?;
    println!("Acked uplink {} for {dev_eui}", message.transaction_id);

    let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(12, 125_000));
    let tx_window = TransmissionWindow::class_a(radio, 1);
    downstream.send_downstream(1, dev_eui, tx_window, b"some-phy-payload-from-lns".to_vec())?;

    let timeout = Duration::from_secs(10);
    let ack = downstream.recv_timeout(timeout)?;
    println!("{ack:?}");
    ensure!(
        matches!(&ack, DownstreamReply::Ack(a) if a.transaction_id == 1),
        "{ack:?}"
    );
    let result = downstream.recv_timeout(timeout)?;
    println!("{result:?}");
    ensure!(
        matches!(&result, DownstreamReply::Result(r) if r.transaction_id == 1),
        "{result:?}"
    );
    Ok(())
}
