//! The radio's control routes, under `/emulator/radio/`.

use serde::Deserialize;
use serde_json::{json, Value};

use ran_routing::mic::AesKey;
use ran_routing::{DevAddr, DevEui, JoinEui};

use super::{
    play, play_copies, Copies, MicStats, PlayedUpstream, RadioDevice, Transmission, UpstreamVerdict,
};
use crate::control::{no_upstream, validation_failed};
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::server::Shared;

fn parse_body<T: serde::de::DeserializeOwned>(req: &Request) -> std::result::Result<T, Response> {
    serde_json::from_slice(&req.body).map_err(|e| validation_failed(e.to_string()))
}

/// The body of `POST /emulator/radio/devices`. Keys stay strings until parsed into
/// [`AesKey`]s; nothing here derives `Debug`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    dev_eui: DevEui,
    #[serde(default)]
    join_eui: Option<JoinEui>,
    #[serde(default)]
    app_key: Option<String>,
    #[serde(default)]
    dev_nonce: Option<u16>,
    #[serde(default)]
    dev_addr: Option<DevAddr>,
    #[serde(default)]
    nwk_s_key: Option<String>,
    #[serde(default)]
    fcnt: Option<u32>,
}

impl DeviceBody {
    fn device(self) -> std::result::Result<RadioDevice, String> {
        let key = |name: &str, hex: &str| hex.parse::<AesKey>().map_err(|e| format!("{name}: {e}"));
        let join = match (self.join_eui, &self.app_key) {
            (Some(join_eui), Some(hex)) => Some((join_eui, key("app_key", hex)?)),
            (None, None) => None,
            _ => return Err("join_eui and app_key go together".into()),
        };
        let session = match (self.dev_addr, &self.nwk_s_key) {
            (Some(dev_addr), Some(hex)) => Some((dev_addr, key("nwk_s_key", hex)?)),
            (None, None) => None,
            _ => return Err("dev_addr and nwk_s_key go together".into()),
        };
        if join.is_none() && self.dev_nonce.is_some() {
            return Err("dev_nonce needs join_eui and app_key".into());
        }
        if session.is_none() && self.fcnt.is_some() {
            return Err("fcnt needs dev_addr and nwk_s_key".into());
        }
        let fcnt = self.fcnt.unwrap_or(0);
        let device = match (join, session) {
            (Some((join_eui, app_key)), session) => {
                let device = RadioDevice::otaa(self.dev_eui, join_eui, app_key)
                    .dev_nonce(self.dev_nonce.unwrap_or(0));
                match session {
                    Some((dev_addr, nwk_s_key)) => device.with_session(dev_addr, nwk_s_key, fcnt),
                    None => device,
                }
            }
            (None, Some((dev_addr, nwk_s_key))) => {
                RadioDevice::abp(self.dev_eui, dev_addr, nwk_s_key, fcnt)
            }
            (None, None) => {
                return Err("give join_eui and app_key (OTAA), dev_addr and nwk_s_key \
                            (a session), or both"
                    .into())
            }
        };
        Ok(device)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    dev_eui: DevEui,
    #[serde(default)]
    copies: Option<usize>,
    #[serde(default)]
    copies_spacing_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UplinkBody {
    dev_eui: DevEui,
    fport: u8,
    #[serde(default)]
    payload_hex: String,
    #[serde(default)]
    confirmed: bool,
    #[serde(default)]
    copies: Option<usize>,
    #[serde(default)]
    copies_spacing_ms: u64,
}

fn copies(count: usize, spacing_ms: u64) -> Copies {
    Copies::new(count).spaced(std::time::Duration::from_millis(spacing_ms))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeSizeBody {
    min: usize,
    max: usize,
}

fn parse_hex_bytes(hex: &str) -> Option<Vec<u8>> {
    // from_str_radix alone would take a sign.
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn device_json(device: &RadioDevice, candidates: usize) -> Value {
    json!({
        "dev_eui": device.dev_eui,
        "join_eui": device.join_eui(),
        "next_dev_nonce": device.next_dev_nonce(),
        "dev_addr": device.dev_addr(),
        "fcnt": device.fcnt(),
        "candidates": candidates,
    })
}

fn played_json(p: &PlayedUpstream) -> Value {
    let mut out = json!({
        "transaction_id": p.transaction_id,
        "dev_eui": p.dev_eui,
        "mic": p.mic,
        "fcnt": p.fcnt,
        "candidates": p.candidates,
    });
    let verdict = match &p.verdict {
        UpstreamVerdict::Unanswered => json!({"verdict": "Unanswered"}),
        UpstreamVerdict::Solved => json!({"verdict": "Solved"}),
        UpstreamVerdict::WrongAck { dev_eui, mic } => {
            json!({"verdict": "WrongAck", "ack_dev_eui": dev_eui, "ack_mic": mic})
        }
        UpstreamVerdict::Rejected(code) => {
            json!({"verdict": "Rejected", "result_code": code.to_string()})
        }
    };
    if let (Some(out), Value::Object(verdict)) = (out.as_object_mut(), verdict) {
        out.extend(verdict);
    }
    out
}

fn stats_json(s: &MicStats) -> Value {
    json!({
        "played": s.played,
        "solved": s.solved,
        "wrong_acks": s.wrong_acks,
        "mic_failed": s.mic_failed,
        "other_rejects": s.other_rejects,
        "duplicate_replies": s.duplicate_replies,
        "unanswered": s.unanswered(),
    })
}

fn played_response(shared: &Shared, outcome: Result<u64>) -> Response {
    match outcome {
        Ok(tid) => match shared.radio.played(tid) {
            Some(p) => Response::json(200, &played_json(&p)),
            None => Response::json(200, &json!({"transaction_id": tid})),
        },
        Err(e @ Error::Closed(_)) => no_upstream(e),
        Err(e) => validation_failed(e.to_string()),
    }
}

/// The first copy as [`played_response`] has it, and every copy's transaction id under
/// `copies`.
fn copies_response(shared: &Shared, outcome: Result<Vec<u64>>) -> Response {
    match outcome {
        Ok(ids) => {
            let mut body = shared
                .radio
                .played(ids[0])
                .map_or_else(|| json!({"transaction_id": ids[0]}), |p| played_json(&p));
            body["copies"] = json!(ids);
            Response::json(200, &body)
        }
        Err(e) => played_response(shared, Err(e)),
    }
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "devices"),
    ("POST", "devices"),
    ("DELETE", "devices/{dev_eui}"),
    ("POST", "join-request"),
    ("POST", "uplink"),
    ("GET", "upstreams/{transaction_id}"),
    ("GET", "stats"),
    ("POST", "challenge-size"),
];

/// `/emulator/radio/{route}`.
pub(crate) fn handle(shared: &std::sync::Arc<Shared>, route: &str, req: &Request) -> Response {
    let radio = &shared.radio;
    let outcome = match (req.method.as_str(), route) {
        ("GET", "devices") => {
            let devices: Vec<Value> = radio
                .devices()
                .iter()
                .map(|(d, candidates)| device_json(d, *candidates))
                .collect();
            Ok(Response::json(200, &devices))
        }
        ("POST", "devices") => parse_body::<DeviceBody>(req).and_then(|body| {
            let device = body.device().map_err(validation_failed)?;
            let dev_eui = device.dev_eui;
            radio.add(device);
            Ok(Response::json(200, &json!({"dev_eui": dev_eui})))
        }),
        ("DELETE", path) if path.starts_with("devices/") => {
            match path["devices/".len()..].parse::<DevEui>() {
                Ok(dev_eui) if radio.remove(dev_eui) => {
                    Ok(Response::json(200, &json!({"removed": dev_eui})))
                }
                Ok(dev_eui) => Err(Response::error(
                    404,
                    "Emulator.UnknownRadioDevice",
                    format!("no radio device {dev_eui}"),
                    None,
                )),
                Err(e) => Err(validation_failed(e.to_string())),
            }
        }
        ("POST", "join-request") => parse_body::<JoinBody>(req).map(|body| {
            if let Some(count) = body.copies {
                let tx = Transmission::JoinRequest;
                let n = copies(count, body.copies_spacing_ms);
                return copies_response(shared, play_copies(shared, body.dev_eui, tx, n));
            }
            played_response(
                shared,
                play(shared, body.dev_eui, Transmission::JoinRequest),
            )
        }),
        ("POST", "uplink") => parse_body::<UplinkBody>(req).and_then(|body| {
            let payload = parse_hex_bytes(&body.payload_hex)
                .ok_or_else(|| validation_failed("payload_hex: expected pairs of hex digits"))?;
            let tx = Transmission::Data {
                fport: body.fport,
                payload,
                confirmed: body.confirmed,
            };
            if let Some(count) = body.copies {
                let n = copies(count, body.copies_spacing_ms);
                let played = play_copies(shared, body.dev_eui, tx, n);
                return Ok(copies_response(shared, played));
            }
            Ok(played_response(shared, play(shared, body.dev_eui, tx)))
        }),
        ("GET", path) if path.starts_with("upstreams/") => {
            match path["upstreams/".len()..].parse::<u64>() {
                Ok(tid) => match radio.played(tid) {
                    Some(p) => Ok(Response::json(200, &played_json(&p))),
                    None => Err(Response::error(
                        404,
                        "Emulator.UnknownUpstream",
                        format!("the emulator played no upstream {tid}"),
                        None,
                    )),
                },
                Err(e) => Err(validation_failed(format!("transaction id: {e}"))),
            }
        }
        ("GET", "stats") => Ok(Response::json(200, &stats_json(&radio.stats()))),
        ("POST", "challenge-size") => parse_body::<ChallengeSizeBody>(req).and_then(|body| {
            radio
                .set_challenge_size(body.min, body.max)
                .map_err(|e| validation_failed(e.to_string()))?;
            Ok(Response::json(
                200,
                &json!({"min": body.min, "max": body.max}),
            ))
        }),
        (method, route) => Err(not_routed(method, route)),
    };
    outcome.unwrap_or_else(|response| response)
}

fn not_routed(method: &str, route: &str) -> Response {
    let shape = |r: &str| match r.split_once('/') {
        Some((head, _)) => format!("{head}/{{"),
        None => r.to_owned(),
    };
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, r)| {
            *r == route || (r.contains('{') && route.contains('/') && r.starts_with(&shape(route)))
        })
        .map(|(m, _)| *m)
        .collect();
    crate::control::not_routed(method, &format!("/emulator/radio/{route}"), &allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_payloads() {
        assert_eq!(parse_hex_bytes(""), Some(vec![]));
        assert_eq!(parse_hex_bytes("00fFa5"), Some(vec![0, 0xff, 0xa5]));
        for bad in ["0", "0g", "+1", "é0", " 01"] {
            assert_eq!(parse_hex_bytes(bad), None, "{bad:?}");
        }
    }
}
