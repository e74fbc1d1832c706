//! An ack or result on the downstream stream, from the RAN.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ran_routing::DownstreamReply;
use ran_routing_fuzz::check_round_trip;

fuzz_target!(|data: &[u8]| {
    if let Some(reply) = check_round_trip::<DownstreamReply>(data) {
        let _ = reply.transaction_id();
        if let DownstreamReply::Result(result) = &reply {
            let _ = result.result_code.is_success();
            let _ = result.result_code.to_string();
        }
    }
});
