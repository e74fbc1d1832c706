//! The radio's control routes, under `/emulator/radio/`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use ran_routing::mic::AesKey;
use ran_routing::{DevAddr, DevEui, JoinEui, MulticastAddr};

use super::{
    play, play_copies, Copies, DeviceClass, DownlinkVerdict, GroupSession, MicStats, Play,
    PlayedUpstream, RadioDevice, UpstreamVerdict,
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
    app_s_key: Option<String>,
    #[serde(default)]
    fcnt: Option<u32>,
    /// `"A"` (the default), `"B"` or `"C"`.
    #[serde(default)]
    class: Option<String>,
    /// Replace a device already on the air with this DevEUI (its keys and counters).
    #[serde(default)]
    replace: bool,
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
        if session.is_none() && self.app_s_key.is_some() {
            return Err("app_s_key needs dev_addr and nwk_s_key".into());
        }
        let app_s_key = self
            .app_s_key
            .as_deref()
            .map(|hex| key("app_s_key", hex))
            .transpose()?;
        // "C", "c", "class C" and "ClassC" all name class C.
        let class = match self.class.as_deref().map(class_letter) {
            None | Some(Some('A')) => DeviceClass::A,
            Some(Some('B')) => DeviceClass::B,
            Some(Some('C')) => DeviceClass::C,
            _ => {
                return Err(format!(
                    "class: {:?} is not \"A\", \"B\" or \"C\"",
                    self.class.unwrap_or_default()
                ))
            }
        };
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
        let device = device.with_class(class);
        Ok(match app_s_key {
            Some(app_s_key) => device.with_app_s_key(app_s_key),
            None => device,
        })
    }
}

/// The class letter of `"C"`, `"c"`, `"class C"` or `"ClassC"`.
fn class_letter(name: &str) -> Option<char> {
    let name = name.trim();
    let letter = match name.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("class") => {
            name[5..].trim_start_matches([' ', '_', '-'])
        }
        _ => name,
    };
    let mut chars = letter.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c.to_ascii_uppercase()),
        _ => None,
    }
}

/// The body of `POST /emulator/radio/multicast-groups`: a group's session keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSessionBody {
    addr: MulticastAddr,
    nwk_s_key: String,
    app_s_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    dev_eui: DevEui,
    #[serde(default)]
    heard_ago_ms: u64,
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
    heard_ago_ms: u64,
    #[serde(default)]
    copies: Option<usize>,
    #[serde(default)]
    copies_spacing_ms: u64,
}

/// Plays `tx` once, or as the body's `copies` (answered with every copy's transaction id
/// under `copies`, beside the first copy as a single play has it).
fn play_response(
    shared: &Shared,
    dev_eui: DevEui,
    tx: Play,
    copies: Option<usize>,
    spacing_ms: u64,
) -> Response {
    let Some(count) = copies else {
        return played_response(shared, play(shared, dev_eui, tx));
    };
    let copies = Copies::new(count).spaced(Duration::from_millis(spacing_ms));
    match play_copies(shared, dev_eui, tx, copies) {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeSizeBody {
    min: usize,
    max: usize,
}

fn parse_hex_bytes(hex: &str) -> Option<Vec<u8>> {
    // from_str_radix alone would take a sign.
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
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
        "fcnt_down": device.fcnt_down(),
        "class": device.class().as_str(),
        "pending_dev_nonce": device.pending_dev_nonce(),
        "candidates": candidates,
    })
}

fn played_json(p: &PlayedUpstream) -> Value {
    let mut out = json!({
        "transaction_id": p.transaction_id,
        "dev_eui": p.dev_eui,
        "mic": p.mic,
        "fcnt": p.fcnt,
        "dev_nonce": p.dev_nonce,
        "candidates": p.candidates,
        "outdated": p.outdated,
    });
    let verdict = match &p.verdict {
        UpstreamVerdict::Unanswered => json!({"verdict": "Unanswered"}),
        UpstreamVerdict::Solved => json!({"verdict": "Solved"}),
        UpstreamVerdict::Withheld => json!({"verdict": "Withheld"}),
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
        "unknown_replies": s.unknown_replies,
        "withheld": s.withheld,
        "joins": s.joins,
        "ignored_downlinks": s.ignored_downlinks,
        "unanswered": s.unanswered(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn downlink_json(transaction_id: u64, v: &DownlinkVerdict) -> Value {
    let (verdict, extra) = match v {
        DownlinkVerdict::NotTransmitted(code) => {
            ("NotTransmitted", json!({"result_code": code.to_string()}))
        }
        DownlinkVerdict::Joined {
            dev_addr,
            dev_nonce,
        } => (
            "Joined",
            json!({"dev_addr": dev_addr, "dev_nonce": dev_nonce}),
        ),
        DownlinkVerdict::Received(received) => (
            "Received",
            json!({
                "fcnt_down": received.fcnt_down,
                "fport": received.fport,
                "frm_payload_hex": received.frm_payload.as_deref().map(hex),
                "ack": received.ack,
                "confirmed": received.confirmed,
            }),
        ),
        DownlinkVerdict::Ignored(reason) => ("Ignored", json!({"reason": format!("{reason:?}")})),
        DownlinkVerdict::Multicast(members) => {
            let members: Vec<Value> = members
                .iter()
                .map(|(dev_eui, v)| {
                    let mut member = downlink_json(transaction_id, v);
                    member["dev_eui"] = json!(dev_eui);
                    member
                })
                .collect();
            ("Multicast", json!({ "members": members }))
        }
    };
    let mut out = json!({"transaction_id": transaction_id, "verdict": verdict});
    if let (Some(out), Value::Object(extra)) = (out.as_object_mut(), extra) {
        out.extend(extra);
    }
    out
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

const ROUTES: &[(&str, &str)] = &[
    ("GET", "devices"),
    ("POST", "devices"),
    ("DELETE", "devices/{dev_eui}"),
    ("POST", "join-request"),
    ("POST", "uplink"),
    ("GET", "upstreams/{transaction_id}"),
    ("GET", "downlinks/{transaction_id}"),
    ("GET", "stats"),
    ("POST", "challenge-size"),
    ("POST", "multicast-groups"),
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
            let replace = body.replace;
            let device = body.device().map_err(validation_failed)?;
            let dev_eui = device.dev_eui;
            match radio.add(device, replace) {
                Ok(replaced) => Ok(Response::json(
                    200,
                    &json!({"dev_eui": dev_eui, "replaced": replaced}),
                )),
                Err(e) => Err(Response::error(
                    409,
                    "Emulator.RadioDeviceExists",
                    format!("{e}: post it with \"replace\": true"),
                    None,
                )),
            }
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
            let tx = Play::join_request().heard_ago(Duration::from_millis(body.heard_ago_ms));
            play_response(
                shared,
                body.dev_eui,
                tx,
                body.copies,
                body.copies_spacing_ms,
            )
        }),
        ("POST", "uplink") => parse_body::<UplinkBody>(req).and_then(|body| {
            let payload = parse_hex_bytes(&body.payload_hex)
                .ok_or_else(|| validation_failed("payload_hex: expected pairs of hex digits"))?;
            let tx = if body.confirmed {
                Play::confirmed_uplink(body.fport, payload)
            } else {
                Play::uplink(body.fport, payload)
            }
            .heard_ago(Duration::from_millis(body.heard_ago_ms));
            Ok(play_response(
                shared,
                body.dev_eui,
                tx,
                body.copies,
                body.copies_spacing_ms,
            ))
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
        ("GET", path) if path.starts_with("downlinks/") => {
            match path["downlinks/".len()..].parse::<u64>() {
                Ok(tid) => match radio.downlink(tid) {
                    Some(v) => Ok(Response::json(200, &downlink_json(tid, &v))),
                    None => Err(Response::error(
                        404,
                        "Emulator.UnknownDownlink",
                        format!("no radio device has judged a downlink {tid}"),
                        None,
                    )),
                },
                Err(e) => Err(validation_failed(format!("transaction id: {e}"))),
            }
        }
        ("GET", "stats") => Ok(Response::json(200, &stats_json(&super::stats(shared)))),
        ("POST", "challenge-size") => parse_body::<ChallengeSizeBody>(req).and_then(|body| {
            radio
                .set_challenge_size(body.min, body.max)
                .map_err(|e| validation_failed(e.to_string()))?;
            Ok(Response::json(
                200,
                &json!({"min": body.min, "max": body.max}),
            ))
        }),
        ("POST", "multicast-groups") => parse_body::<GroupSessionBody>(req).and_then(|body| {
            let key = |name: &str, hex: &str| {
                hex.parse::<AesKey>()
                    .map_err(|e| validation_failed(format!("{name}: {e}")))
            };
            radio.set_group_session(
                body.addr,
                GroupSession {
                    nwk_s_key: key("nwk_s_key", &body.nwk_s_key)?,
                    app_s_key: key("app_s_key", &body.app_s_key)?,
                },
            );
            Ok(Response::json(200, &json!({"addr": body.addr})))
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
    fn class_names() {
        for (name, letter) in [
            ("C", 'C'),
            ("b", 'B'),
            ("class A", 'A'),
            ("ClassC", 'C'),
            ("CLASS_B", 'B'),
        ] {
            assert_eq!(class_letter(name), Some(letter), "{name}");
        }
        for bad in ["", "AB", "class", "classes"] {
            assert!(!matches!(class_letter(bad), Some('A' | 'B' | 'C')), "{bad}");
        }
    }

    #[test]
    fn hex_payloads() {
        assert_eq!(parse_hex_bytes(""), Some(vec![]));
        assert_eq!(parse_hex_bytes("00fFa5"), Some(vec![0, 0xff, 0xa5]));
        for bad in ["0", "0g", "+1", "é0", " 01"] {
            assert_eq!(parse_hex_bytes(bad), None, "{bad:?}");
        }
    }
}
