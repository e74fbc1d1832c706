//! Helpers shared by the REST integration tests.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::time::Duration;

use ran_routing::{Core, CoreBuilder};
use ran_routing_emulator::Emulator;

/// Bounds every REST call of a test, so a bug fails instead of hanging.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A builder pointed at the emulator, with its token and test timeouts.
pub fn builder(emu: &Emulator) -> CoreBuilder {
    Core::builder(emu.token())
        .base_url(&emu.base_url())
        .request_timeout(CALL_TIMEOUT)
        .connect_timeout(CALL_TIMEOUT)
}

/// A client for the emulator; TLS emulators have their certificate trusted.
pub fn core(emu: &Emulator) -> Core {
    let mut builder = builder(emu);
    if let Some(pem) = emu.certificate_pem() {
        builder = builder.add_root_certificate_pem(pem.as_bytes());
    }
    builder.build().expect("client for the emulator")
}

pub fn emulator() -> Emulator {
    Emulator::start().expect("emulator starts")
}
