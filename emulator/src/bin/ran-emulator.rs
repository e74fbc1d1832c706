//! `ran-emulator`: a local RAN Routing API server for trying an LNS without the live
//! service. Prints its URL and token, then serves until killed.
//!
//! ```sh
//! cargo run -p ran-routing-emulator --bin ran-emulator -- --port 8080
//! ```

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use ran_routing_emulator::Emulator;

const USAGE: &str = "\
ran-emulator: a local Everynet RAN Routing API server

Usage: ran-emulator [options]

Options:
  --bind <ip>             address to listen on [default: 127.0.0.1]
  --port <port>           port to listen on [default: 0, any free port]
  --token <token>         access token to accept [default: random]
  --tls                   serve https/wss with a self-signed certificate
  --cert-out <file>       with --tls, write the certificate's PEM there
  --base-path <path>      path the API is served under [default: /api/v1]
  --device-limit <n>      most devices in the routing table, or \"none\"
                          [default: 200000]
  --ping-interval <secs>  how often stream connections are pinged [default: 30]
  --lenient               turn every routing rule below off
  --no-subscription-gate  deliver played upstreams whatever the routing table says
  --no-target-dev-addr    accept join accepts without TargetDevAddr
  --no-downlink-timing    answer downlinks at once, whatever their window
  --no-outdated           never mark played upstreams Outdated
  --time-scale <f>        real seconds per emulated second [default: 1]
  --rest-latency-ms <ms>  delay each REST API answer, like a WAN link [default: 0]
  --control-token <token> make the control API ask for
                          \"Authorization: Bearer <token>\" [default: none]
  --max-connections <n>   connections served at once, at most what the descriptor
                          limit covers [default: 1024]
  --write-timeout <secs>  time to write one HTTP answer before the client is cut
                          [default: 10]
  --max-response-size <bytes>
                          largest answer; larger ones must be paged [default: 16777216]
  --max-records <n>       replies and downlinks kept for the control API, each
                          [default: 100000]
  -h, --help              print this help

The control API is served under /emulator/ to loopback clients only; it refuses a Host
or Origin that is not the emulator's own and bodies that are not application/json.
Log level: RAN_EMULATOR_LOG=error|warn|info|debug|trace [default: info], or
per module (env_logger syntax), e.g. RAN_EMULATOR_LOG=ran_routing_emulator=debug.";

#[derive(Debug)]
struct Options {
    bind: IpAddr,
    port: u16,
    token: Option<String>,
    tls: bool,
    cert_out: Option<String>,
    base_path: Option<String>,
    /// `Some(None)`: `--device-limit none`.
    device_limit: Option<Option<usize>>,
    ping_interval: Option<Duration>,
    lenient: bool,
    rules_off: Vec<&'static str>,
    time_scale: Option<f64>,
    rest_latency: Option<Duration>,
    control_token: Option<String>,
    max_connections: Option<usize>,
    write_timeout: Option<Duration>,
    max_response_size: Option<usize>,
    max_records: Option<usize>,
}

/// The options, or `None` for `--help`.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    use lexopt::prelude::*;

    let mut options = Options {
        bind: IpAddr::from([127, 0, 0, 1]),
        port: 0,
        token: None,
        tls: false,
        cert_out: None,
        base_path: None,
        device_limit: None,
        ping_interval: None,
        lenient: false,
        rules_off: Vec::new(),
        time_scale: None,
        rest_latency: None,
        control_token: None,
        max_connections: None,
        write_timeout: None,
        max_response_size: None,
        max_records: None,
    };
    let mut parser = lexopt::Parser::from_args(args);
    let text = |v: std::ffi::OsString, flag: &str| {
        v.into_string()
            .map_err(|_| format!("{flag}: not valid UTF-8"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let flag = match arg {
            Short(c) => format!("-{c}"),
            Long(name) => format!("--{name}"),
            Value(v) => return Err(format!("unexpected argument {v:?}")),
        };
        let mut value = |flag: &str| {
            parser
                .value()
                .map_err(|e| e.to_string())
                .and_then(|v| text(v, flag))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--bind" => {
                let v = value("--bind")?;
                options.bind = v.parse().map_err(|_| format!("bad address {v:?}"))?;
            }
            "--port" => {
                let v = value("--port")?;
                options.port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "--token" => options.token = Some(value("--token")?),
            "--tls" => options.tls = true,
            "--cert-out" => options.cert_out = Some(value("--cert-out")?),
            "--base-path" => options.base_path = Some(value("--base-path")?),
            "--device-limit" => {
                let v = value("--device-limit")?;
                options.device_limit = Some(if v == "none" {
                    None
                } else {
                    Some(v.parse().map_err(|_| format!("bad limit {v:?}"))?)
                });
            }
            "--ping-interval" => {
                let v = value("--ping-interval")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad interval {v:?}"))?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err(format!("bad interval {v:?}"));
                }
                options.ping_interval = Some(Duration::from_secs_f64(secs));
            }
            "--lenient" => options.lenient = true,
            "--no-subscription-gate" => options.rules_off.push("subscription"),
            "--no-target-dev-addr" => options.rules_off.push("target"),
            "--no-downlink-timing" => options.rules_off.push("timing"),
            "--no-outdated" => options.rules_off.push("outdated"),
            "--time-scale" => {
                let v = value("--time-scale")?;
                let scale: f64 = v.parse().map_err(|_| format!("bad time scale {v:?}"))?;
                if !(scale.is_finite() && scale >= 0.0) {
                    return Err(format!("bad time scale {v:?}"));
                }
                options.time_scale = Some(scale);
            }
            "--rest-latency-ms" => {
                let v = value("--rest-latency-ms")?;
                let ms: u64 = v.parse().map_err(|_| format!("bad latency {v:?}"))?;
                options.rest_latency = Some(Duration::from_millis(ms));
            }
            "--control-token" => options.control_token = Some(value("--control-token")?),
            "--max-connections" => {
                options.max_connections = Some(count(value("--max-connections")?)?)
            }
            "--write-timeout" => {
                let v = value("--write-timeout")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad timeout {v:?}"))?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err(format!("bad timeout {v:?}"));
                }
                options.write_timeout = Some(Duration::from_secs_f64(secs));
            }
            "--max-response-size" => {
                options.max_response_size = Some(count(value("--max-response-size")?)?)
            }
            "--max-records" => options.max_records = Some(count(value("--max-records")?)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if options.cert_out.is_some() && !options.tls {
        return Err("--cert-out needs --tls".into());
    }
    Ok(Some(options))
}

/// A positive whole number for a size or count option.
fn count(v: String) -> Result<usize, String> {
    match v.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("bad number {v:?}: a whole number above 0")),
    }
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ran-emulator: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("RAN_EMULATOR_LOG", "info"))
        .init();

    let mut builder = Emulator::builder()
        .bind(SocketAddr::new(options.bind, options.port))
        .tls(options.tls);
    if let Some(token) = options.token {
        builder = builder.token(token);
    }
    if let Some(path) = options.base_path {
        builder = builder.base_path(path);
    }
    if let Some(limit) = options.device_limit {
        builder = builder.device_limit(limit);
    }
    if let Some(interval) = options.ping_interval {
        builder = builder.ping_interval(interval);
    }
    if options.lenient {
        builder = builder.lenient();
    }
    for rule in &options.rules_off {
        builder = match *rule {
            "subscription" => builder.subscription_gate(false),
            "target" => builder.require_target_dev_addr(false),
            "timing" => builder.judge_downlink_timing(false),
            _ => builder.mark_outdated(false),
        };
    }
    if let Some(scale) = options.time_scale {
        builder = builder.time_scale(scale);
    }
    if let Some(latency) = options.rest_latency {
        builder = builder.rest_latency(latency);
    }
    if let Some(token) = options.control_token {
        builder = builder.control_token(token);
    }
    if let Some(n) = options.max_connections {
        builder = builder.max_connections(n);
    }
    if let Some(timeout) = options.write_timeout {
        builder = builder.write_timeout(timeout);
    }
    if let Some(bytes) = options.max_response_size {
        builder = builder.max_response_size(bytes);
    }
    if let Some(n) = options.max_records {
        builder = builder.max_records(n);
    }
    let emulator = match builder.start() {
        Ok(emulator) => emulator,
        Err(e) => {
            eprintln!("ran-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&options.cert_out, emulator.certificate_pem()) {
        if let Err(e) = std::fs::write(path, pem) {
            eprintln!("ran-emulator: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("RAN Routing API emulator");
    println!("URL:     {}", emulator.base_url());
    println!("token:   {}", emulator.token());
    println!("control: {}", emulator.control_url());
    println!(
        "serving: {} connections at once",
        emulator.connection_slots()
    );
    if emulator.control_token().is_some() {
        println!("control token: required (--control-token)");
    }
    match (&options.cert_out, emulator.certificate_pem()) {
        (Some(path), Some(_)) => println!("certificate: {path}"),
        (None, Some(pem)) => println!("certificate:\n{pem}"),
        _ => {}
    }
    // Serve until killed; the server runs on its own threads.
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_flags() {
        let o = args(&[
            "--port",
            "8080",
            "--token=abc",
            "--tls",
            "--bind",
            "0.0.0.0",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.port, 8080);
        assert_eq!(o.token.as_deref(), Some("abc"));
        assert!(o.tls);
        assert!(o.bind.is_unspecified());
        let o = args(&[]).unwrap().unwrap();
        assert_eq!(o.bind, IpAddr::from([127, 0, 0, 1]));
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&["--port"]).is_err());
        assert!(args(&["--port", "x"]).is_err());
        assert!(args(&["--nope"]).is_err());
        assert!(args(&["--cert-out", "x"]).is_err());
        assert!(args(&["--ping-interval", "0"]).is_err());
        let o = args(&[
            "--device-limit=5",
            "--ping-interval",
            "0.5",
            "--base-path",
            "/x",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.device_limit, Some(Some(5)));
        let n = args(&[
            "--device-limit",
            "none",
            "--rest-latency-ms",
            "150",
            "--control-token",
            "ct",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(n.device_limit, Some(None));
        assert_eq!(n.rest_latency, Some(Duration::from_millis(150)));
        assert_eq!(n.control_token.as_deref(), Some("ct"));
        assert!(args(&["--rest-latency-ms", "-1"]).is_err());
        assert!(args(&["--device-limit", "lots"]).is_err());
        let l = args(&[
            "--max-connections=64",
            "--write-timeout",
            "2.5",
            "--max-response-size",
            "65536",
            "--max-records=10",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.max_connections, Some(64));
        assert_eq!(l.write_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(l.max_response_size, Some(65536));
        assert_eq!(l.max_records, Some(10));
        for bad in [
            &["--max-connections", "0"][..],
            &["--write-timeout", "0"],
            &["--max-response-size", "big"],
            &["--max-records", "-1"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
        assert_eq!(o.ping_interval, Some(Duration::from_millis(500)));
        assert_eq!(o.base_path.as_deref(), Some("/x"));
        let o = args(&["--tls", "--cert-out", "c.pem"]).unwrap().unwrap();
        assert_eq!(o.cert_out.as_deref(), Some("c.pem"));
        assert!(args(&["-h"]).unwrap().is_none());
        assert!(args(&["--tls=yes"]).is_err());
    }

    #[test]
    fn parses_rule_flags() {
        let o = args(&[]).unwrap().unwrap();
        assert!(!o.lenient && o.rules_off.is_empty() && o.time_scale.is_none());
        let o = args(&[
            "--lenient",
            "--no-subscription-gate",
            "--no-target-dev-addr",
            "--no-downlink-timing",
            "--no-outdated",
            "--time-scale",
            "0.1",
        ])
        .unwrap()
        .unwrap();
        assert!(o.lenient);
        assert_eq!(
            o.rules_off,
            ["subscription", "target", "timing", "outdated"]
        );
        assert_eq!(o.time_scale, Some(0.1));
        for bad in ["-1", "x", "inf", "NaN"] {
            assert!(args(&["--time-scale", bad]).is_err(), "{bad}");
        }
        assert!(args(&["--lenient=yes"]).is_err());
    }
}
