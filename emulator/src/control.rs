//! The control API under `/emulator/`: what the in-process handle offers, over HTTP, for
//! the `ran-emulator` binary and for tests written in other languages.
//!
//! It needs no token and answers loopback clients only. Errors use the service's error
//! body, with `Emulator.*` codes for the emulator's own failures.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use ran_routing::{DevEui, DownstreamResultCode, UpstreamMessage};

use crate::http::{FieldError, Request, Response};
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
        ("GET", "upstream/replies") => Response::json(200, &hub.replies()),
        ("GET", "downstream/received") => Response::json(200, &hub.received()),
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
            if let DownstreamResultCode::Unknown(_) = code {
                return validation_failed(format!(
                    "code: {:?} is not a downstream result code; use one of Success, \
                     WindowNotFound, GatewayNotFound, TooLate, NoAck, GatewayError",
                    body.code
                ));
            }
            hub.set_result(code, body.dev_eui, body.transaction_id);
            Response::json(200, &json!({"code": body.code}))
        }
        ("DELETE", "downstream/result-code") => {
            hub.reset_results();
            Response::json(200, &json!({"code": "Success"}))
        }
        ("GET", "devices") => {
            let store = lock(&shared.store);
            Response::json(200, &store.select(None, 0, None))
        }
        ("GET", "multicast-groups") => {
            let store = lock(&shared.store);
            Response::json(200, &store.groups(&[]))
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
