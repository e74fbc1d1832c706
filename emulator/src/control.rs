//! The control API under `/emulator/`: what the in-process handle offers, over HTTP, for
//! the `ran-emulator` binary and for tests written in other languages.
//!
//! It answers loopback clients only. Since a web page in a browser on the same machine is
//! a loopback client too, it also refuses what only a browser would send: a `Host` that is
//! not the emulator's own (DNS rebinding), an `Origin` that is not the emulator's own, and
//! a body that is not `application/json` (the one type a page cannot send cross-origin
//! without asking first). A control token can be required on top. Errors use the
//! service's error body, with `Emulator.*` codes for the emulator's own failures.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use ran_routing::{DevEui, DownstreamResultCode, UpstreamMessage};

use crate::http::{json_list, FieldError, Request, Response};
use crate::server::Shared;
use crate::streams::Kind;
use crate::sync::lock;

/// A 422 `ValidationFailed` answer about the request body.
pub(crate) fn validation_failed(msg: impl Into<String>) -> Response {
    Response::error(
        422,
        "ValidationFailed",
        "request validation failed",
        Some(vec![FieldError {
            loc: vec!["body".into()],
            msg: msg.into(),
            kind: "value_error".into(),
        }]),
    )
}

pub(crate) fn no_upstream(e: crate::Error) -> Response {
    Response::error(503, "Emulator.NoUpstreamConnection", e.to_string(), None)
}

/// The body of `POST /emulator/downstream/result-code`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultCodeRequest {
    code: String,
    #[serde(default)]
    dev_eui: Option<DevEui>,
    #[serde(default)]
    transaction_id: Option<u64>,
    /// The `ResultMessage` to send with the code.
    #[serde(default)]
    message: Option<String>,
    /// The code is meant to be one the client crate does not know (to test how it
    /// reads one), not a misspelt known code.
    #[serde(default)]
    unknown_code: bool,
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "upstream"),
    ("POST", "upstream/raw"),
    ("GET", "upstream/replies"),
    ("GET", "downstream/received"),
    ("POST", "downstream/result-code"),
    ("DELETE", "downstream/result-code"),
    ("GET", "devices"),
    ("GET", "multicast-groups"),
    ("GET", "status"),
    ("POST", "streams/drop"),
    ("POST", "streams/close"),
    ("POST", "records/clear"),
];

pub(crate) fn handle(
    shared: &Arc<Shared>,
    route: &str,
    req: &Request,
    peer: SocketAddr,
) -> Response {
    if !peer.ip().to_canonical().is_loopback() {
        return Response::error(
            403,
            "Emulator.Forbidden",
            "the control API answers loopback clients only",
            None,
        );
    }
    if let Err(refusal) = admit(shared, req) {
        return refusal;
    }
    if let Some(radio_route) = route.strip_prefix("radio/") {
        return crate::radio::routes::handle(shared, radio_route, req);
    }
    let hub = &shared.hub;
    match (req.method.as_str(), route) {
        ("POST", "upstream") => {
            let text = String::from_utf8_lossy(&req.body);
            if let Err(e) = serde_json::from_str::<UpstreamMessage>(&text) {
                return validation_failed(format!("not an Upstream frame: {e}"));
            }
            // The frame goes out as given, so exact numbers and extra keys survive.
            match hub.send_upstream(&text) {
                Ok(()) => Response::json(200, &json!({"sent": true})),
                Err(e) => no_upstream(e),
            }
        }
        ("POST", "upstream/raw") => match hub.send_upstream(&String::from_utf8_lossy(&req.body)) {
            Ok(()) => Response::json(200, &json!({"sent": true})),
            Err(e) => no_upstream(e),
        },
        ("GET", "upstream/replies" | "downstream/received" | "devices" | "multicast-groups") => {
            list(shared, route, req)
        }
        ("POST", "downstream/result-code") => {
            let body: ResultCodeRequest = match serde_json::from_slice(&req.body) {
                Ok(body) => body,
                Err(e) => return validation_failed(e.to_string()),
            };
            if body.code.is_empty() {
                return validation_failed("code must not be empty");
            }
            if body.dev_eui.is_some() && body.transaction_id.is_some() {
                return validation_failed("give dev_eui or transaction_id, not both");
            }
            let code = DownstreamResultCode::from(body.code.as_str());
            // A code the client crate does not know only when asked for: otherwise it
            // is a misspelling that would make every downlink fail oddly.
            if let (DownstreamResultCode::Unknown(_), false) = (&code, body.unknown_code) {
                return validation_failed(format!(
                    "code: {:?} is not a downstream result code; use one of Success, \
                     WindowNotFound, GatewayNotFound, TooLate, NoAck, GatewayError, or set \
                     \"unknown_code\": true for a code the client does not know",
                    body.code
                ));
            }
            hub.set_result(
                code,
                body.message.clone(),
                body.dev_eui,
                body.transaction_id,
            );
            Response::json(200, &json!({"code": body.code, "message": body.message}))
        }
        ("DELETE", "downstream/result-code") => {
            hub.reset_results();
            Response::json(200, &json!({"code": "Success"}))
        }
        ("GET", "status") => Response::json(
            200,
            &json!({
                "base_url": crate::base_url(shared),
                "upstream_connections": hub.connections(Kind::Upstream),
                "downstream_connections": hub.connections(Kind::Downstream),
                "accepted_connections": shared.accepted.load(std::sync::atomic::Ordering::SeqCst),
                "invalid_frames": hub.invalid_frames(),
                "unknown_upstream_replies": hub.unknown_replies(),
                "withheld_upstreams": shared.radio.stats().withheld,
                "open_connections": shared.open_connections(),
                "connection_slots": shared.slots,
                "refused_connections": shared.refused_busy.load(std::sync::atomic::Ordering::Relaxed),
                "records_dropped": hub.records_dropped(),
            }),
        ),
        ("POST", "streams/drop") => {
            hub.drop_connections();
            Response::json(200, &json!({"dropped": true}))
        }
        ("POST", "streams/close") => {
            hub.close_connections();
            Response::json(200, &json!({"closed": true}))
        }
        ("POST", "records/clear") => {
            hub.clear_records();
            Response::json(200, &json!({"cleared": true}))
        }
        (method, route) => {
            let allowed: Vec<&str> = ROUTES
                .iter()
                .filter(|(_, r)| *r == route)
                .map(|(m, _)| *m)
                .collect();
            not_routed(method, &format!("/emulator/{route}"), &allowed)
        }
    }
}

/// A list the control API answers, from `?offset=` (default 0), at most `?limit=`
/// items (default all), within the answer size cap: a list too large for it is refused
/// and must be paged, so no answer pins more than the cap in memory.
fn list(shared: &Shared, route: &str, req: &Request) -> Response {
    let (offset, limit) = match page(req) {
        Ok(page) => page,
        Err(refusal) => return refusal,
    };
    let max = shared.config.max_response_bytes;
    let take = limit.unwrap_or(usize::MAX);
    let body = match route {
        "upstream/replies" => shared.hub.recorded_json(Kind::Upstream, offset, limit, max),
        "downstream/received" => shared
            .hub
            .recorded_json(Kind::Downstream, offset, limit, max),
        "devices" => json_list(lock(&shared.store).select_iter(None, offset, limit), max),
        _ => json_list(
            lock(&shared.store).group_iter().skip(offset).take(take),
            max,
        ),
    };
    Response::json_list(body, max)
}

/// `offset` and `limit` from the query string.
fn page(req: &Request) -> Result<(usize, Option<usize>), Response> {
    let number = |key: &str| -> Result<Option<usize>, Response> {
        match req.query_values(key).last() {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                Response::error(
                    422,
                    "ValidationFailed",
                    "request validation failed",
                    Some(vec![FieldError {
                        loc: vec!["query".into(), key.into()],
                        msg: "ensure this value is a non-negative integer".into(),
                        kind: "type_error.integer".into(),
                    }]),
                )
            }),
        }
    };
    Ok((number("offset")?.unwrap_or(0), number("limit")?))
}

/// 404 for a path no control endpoint has, 405 (with `Allow`) for a known path with
/// another method.
pub(crate) fn not_routed(method: &str, path: &str, allowed: &[&str]) -> Response {
    if allowed.is_empty() {
        Response::error(
            404,
            "Unknown",
            format!("no such control endpoint: {method} {path}"),
            None,
        )
    } else {
        Response::error(
            405,
            "Unknown",
            format!("use {}", allowed.join(" or ")),
            None,
        )
        .with_header("Allow", allowed.join(", "))
    }
}

/// The checks every control request passes before it is routed.
fn admit(shared: &Shared, req: &Request) -> Result<(), Response> {
    let forbidden = |why: String| Response::error(403, "Emulator.Forbidden", why, None);
    match req.header("Host") {
        Some(host) if own_authority(shared, host, None) => {}
        Some(host) => {
            return Err(forbidden(format!(
                "Host {:?} is not this emulator",
                host.chars().take(100).collect::<String>()
            )))
        }
        None => return Err(forbidden("a Host header is required".into())),
    }
    if let Some(origin) = req.header("Origin") {
        let scheme = if shared.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let own = origin
            .strip_prefix(scheme)
            .and_then(|o| o.strip_prefix("://"))
            .is_some_and(|authority| own_authority(shared, authority, Some(scheme)));
        if !own {
            return Err(forbidden(format!(
                "requests from Origin {:?} are refused",
                origin.chars().take(100).collect::<String>()
            )));
        }
    }
    if let Some(token) = &shared.config.control_token {
        let given = req.header("Authorization").and_then(|h| {
            let (scheme, value) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
        });
        if given != Some(token.expose()) {
            return Err(Response::error(
                401,
                "Emulator.Unauthorized",
                "the control API needs its token: Authorization: Bearer <control token>",
                None,
            )
            .with_header("WWW-Authenticate", "Bearer"));
        }
    }
    if !req.body.is_empty() {
        let json = req.header("Content-Type").is_some_and(|t| {
            let media = t.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/json")
        });
        if !json {
            return Err(Response::error(
                415,
                "Emulator.UnsupportedMediaType",
                "control request bodies must be sent as Content-Type: application/json",
                None,
            ));
        }
    }
    Ok(())
}

/// Whether `authority` (`host[:port]`) names this emulator: a loopback name or address,
/// or the address it listens on, with its port. `scheme` gives the default port when an
/// Origin has none (a Host without a port means the scheme's default too).
fn own_authority(shared: &Shared, authority: &str, scheme: Option<&str>) -> bool {
    let tls = match scheme {
        Some(scheme) => scheme == "https",
        None => shared.config.tls.is_some(),
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => Some(if tls { 443 } else { 80 }),
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
        Some(_) => None,
    };
    if port != Some(shared.local_addr.port()) {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback() || ip == shared.local_addr.ip())
}
