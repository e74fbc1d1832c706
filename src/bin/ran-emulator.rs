//! `ran-emulator`: a local RAN Routing API server for trying an LNS without the live
//! service. Prints its URL and token, then serves until killed.
//!
//! ```sh
//! cargo run --features emulator --bin ran-emulator -- --port 8080
//! ```

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use ran_routing::emulator::Emulator;

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
  --device-limit <n>      most devices in the routing table [default: none]
  --ping-interval <secs>  how often stream connections are pinged [default: 30]
  --rest-latency-ms <ms>  delay every REST answer, like a WAN link [default: 0]
  -h, --help              print this help

The control API is served under /emulator/ (loopback clients only, no token).
Log level: RAN_EMULATOR_LOG=error|warn|info|debug|trace [default: info].";

struct Options {
    bind: IpAddr,
    port: u16,
    token: Option<String>,
    tls: bool,
    cert_out: Option<String>,
    base_path: Option<String>,
    device_limit: Option<usize>,
    ping_interval: Option<Duration>,
    rest_latency: Option<Duration>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        bind: IpAddr::from([127, 0, 0, 1]),
        port: 0,
        token: None,
        tls: false,
        cert_out: None,
        base_path: None,
        device_limit: None,
        ping_interval: None,
        rest_latency: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
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
                options.device_limit = Some(v.parse().map_err(|_| format!("bad limit {v:?}"))?);
            }
            "--ping-interval" => {
                let v = value("--ping-interval")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad interval {v:?}"))?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err(format!("bad interval {v:?}"));
                }
                options.ping_interval = Some(Duration::from_secs_f64(secs));
            }
            "--rest-latency-ms" => {
                let v = value("--rest-latency-ms")?;
                let ms: u64 = v.parse().map_err(|_| format!("bad latency {v:?}"))?;
                options.rest_latency = Some(Duration::from_millis(ms));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.cert_out.is_some() && !options.tls {
        return Err("--cert-out needs --tls".into());
    }
    Ok(Some(options))
}

/// Log lines to stderr, filtered by `RAN_EMULATOR_LOG`.
struct StderrLog(log::LevelFilter);

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.0
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("[{}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
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
    let level = std::env::var("RAN_EMULATOR_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    let logger: &'static StderrLog = Box::leak(Box::new(StderrLog(level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }

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
    if let Some(latency) = options.rest_latency {
        builder = builder.rest_latency(latency);
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
        let o = args(&["--rest-latency-ms=20"]).unwrap().unwrap();
        assert_eq!(o.rest_latency, Some(Duration::from_millis(20)));
        assert!(args(&["--rest-latency-ms", "-1"]).is_err());
    }
}
