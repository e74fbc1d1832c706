//! Endpoint selection shared by every example.
//!
//! With `RAN_URL` and `RAN_TOKEN` set, the examples talk to that API (and trust the extra
//! CA in the PEM file `RAN_CA_CERT`, if given; a plain `http://` URL to a host that is not
//! loopback needs `RAN_ALLOW_INSECURE_REMOTE=1`). Otherwise they start the embedded
//! emulator, so `cargo run --example NAME` works with no setup. Every example logs to
//! stderr (`RUST_LOG`, default `info`).
#![allow(dead_code)] // Each example uses its own subset.

pub mod metrics;

use std::error::Error;

use ran_routing::Core;
use ran_routing_emulator::Emulator;

/// What the examples' `main` returns: any error ends the process with exit code 1.
pub type Outcome = Result<(), Box<dyn Error>>;

/// A client, and the emulator behind it when no real endpoint was configured (kept
/// alive as long as this value).
pub struct Ran {
    pub core: Core,
    pub emulator: Option<Emulator>,
}

impl Ran {
    /// Whether the examples run against a real deployment, where they must not touch
    /// what they did not create.
    pub fn is_remote(&self) -> bool {
        self.emulator.is_none()
    }
}

/// Sends the log to stderr, as a production program must: the crate reports
/// reconnections, skipped frames and refused replies only through the `log` facade, so
/// without a backend they are invisible. `RUST_LOG` picks the levels (default `info`,
/// where connection events are). Never `RUST_LOG=trace` where logs are kept: ureq's
/// TRACE level (targets `ureq`, `ureq_proto`) dumps raw wire bytes, the `Authorization`
/// header included.
pub fn log_to_stderr() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env).try_init();
}

pub fn connect() -> Result<Ran, Box<dyn Error>> {
    match (std::env::var("RAN_URL"), std::env::var("RAN_TOKEN")) {
        (Ok(url), Ok(token)) => {
            let mut builder = Core::builder(&token).base_url(&url);
            // An emulator on another machine of a test lab speaks plain HTTP: opting in
            // sends the token in clear text over that network.
            if std::env::var("RAN_ALLOW_INSECURE_REMOTE").is_ok_and(|v| v == "1") {
                builder = builder.allow_insecure_remote(true);
            }
            if let Ok(path) = std::env::var("RAN_CA_CERT") {
                let pem = std::fs::read(&path)
                    .map_err(|e| format!("cannot read RAN_CA_CERT {path:?}: {e}"))?;
                builder = builder.add_root_certificate_pem(&pem);
            }
            let core = builder.build()?;
            println!("Using the RAN Routing API at {url}");
            Ok(Ran {
                core,
                emulator: None,
            })
        }
        _ => {
            let emulator = Emulator::start()?;
            let core = Core::new(emulator.token(), &emulator.base_url())?;
            println!(
                "RAN_URL/RAN_TOKEN not set: using the embedded emulator at {}",
                emulator.base_url()
            );
            Ok(Ran {
                core,
                emulator: Some(emulator),
            })
        }
    }
}

/// Fails the example (exit code 1, after its cleanup) when a check does not hold.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("check failed: {}: {}", stringify!($cond), format!($($msg)+)).into());
        }
    };
}

/// How long the stream examples wait for an uplink from a real network:
/// `RAN_WAIT_SECS`, default 30.
pub fn wait_for_uplink() -> std::time::Duration {
    let secs = std::env::var("RAN_WAIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    std::time::Duration::from_secs(secs)
}

/// On the emulator, plays the radio side: waits for the example's upstream connection
/// and injects `message` as if a gateway had heard it. On a real network, does nothing:
/// the uplink comes from a device.
pub fn play_uplink(
    ran: &Ran,
    message: &ran_routing::UpstreamMessage,
) -> Result<(), Box<dyn Error>> {
    if let Some(emulator) = &ran.emulator {
        if !emulator.wait_upstream_connections(1, std::time::Duration::from_secs(10)) {
            return Err("the upstream connection never reached the emulator".into());
        }
        emulator.send_upstream(message)?;
    } else {
        println!(
            "Waiting up to {:?} for an uplink from one of your devices...",
            wait_for_uplink()
        );
    }
    Ok(())
}
