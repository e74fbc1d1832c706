//! The client's hot path: an upstream frame from the RAN.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ran_routing::UpstreamMessage;
use ran_routing_fuzz::check_round_trip;

fuzz_target!(|data: &[u8]| {
    if let Some(m) = check_round_trip::<UpstreamMessage>(data) {
        // The helpers a user calls on every message must hold for any decoded frame.
        let _ = m.is_outdated();
        if let Some(&mic) = m.mic_challenge.first() {
            let frame = m.phy_payload_with_mic(mic);
            assert_eq!(frame.len(), m.phy_payload_no_mic.len() + 4);
        }
        let _ = m
            .ack(m.dev_euis.first().copied().unwrap_or_default(), 0)
            .validate();
        m.radio.modulation.validate().ok();
    }
});
