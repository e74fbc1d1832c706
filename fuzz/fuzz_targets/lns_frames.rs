//! What the emulator reads from an LNS: upstream replies and downstream requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ran_routing::{DownstreamRequest, UpstreamReply};
use ran_routing_fuzz::check_round_trip;

fuzz_target!(|data: &[u8]| {
    if let Some(reply) = check_round_trip::<UpstreamReply>(data) {
        let _ = reply.transaction_id();
        let _ = reply.validate();
    }
    if let Some(request) = check_round_trip::<DownstreamRequest>(data) {
        let _ = request.transaction_id();
        // Validation reads the clock for class C; it must never panic.
        let _ = request.validate();
    }
});
