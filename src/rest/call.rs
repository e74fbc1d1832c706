//! One REST call: JSON in, JSON out, bearer token, errors mapped to [`Error`].

use std::io;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::Core;
use super::config::AccessToken;
use super::stats::{Outcome, RestOperation};
use crate::error::{
    ApiError, ConfigErrorKind, Error, FieldError, InvalidInput, Result, TimeoutKind,
};

/// Which REST base a path is relative to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Service {
    Routing,
    Multicast,
}

/// One REST endpoint: its base, its path below it and how to name its answer in a
/// [`Error::Decode`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) service: Service,
    pub(crate) path: &'static str,
    pub(crate) what: &'static str,
}

/// `route!(Routing, "devices/insert")`: a [`Route`] whose answer is named
/// `"devices/insert response"`.
macro_rules! route {
    ($service:ident, $path:literal) => {
        $crate::rest::Route {
            service: $crate::rest::Service::$service,
            path: $path,
            what: concat!($path, " response"),
        }
    };
}
pub(crate) use route;

/// `GET` with a query string; decodes the JSON answer.
pub(crate) fn get<T: DeserializeOwned>(
    core: &Core,
    route: Route,
    query: &[(&'static str, String)],
) -> Result<T> {
    call(core, route, Method::Get(query))
}

/// `POST` with `body` as JSON (`None`: an empty body); decodes the JSON answer.
pub(crate) fn post<B: Serialize, T: DeserializeOwned>(
    core: &Core,
    route: Route,
    body: Option<&B>,
) -> Result<T> {
    let body = body
        .map(serde_json::to_vec)
        .transpose()
        // Our request bodies are plain strings and numbers; this cannot fail.
        .map_err(|e| Error::Invalid(InvalidInput::Encode(e.to_string())))?;
    call(core, route, Method::Post(body))
}

enum Method<'a> {
    Get(&'a [(&'static str, String)]),
    Post(Option<Vec<u8>>),
}

fn call<T: DeserializeOwned>(core: &Core, route: Route, method: Method<'_>) -> Result<T> {
    if core.is_closed() {
        return Err(closed());
    }
    let base = match route.service {
        Service::Routing => core.endpoints().routing(),
        Service::Multicast => core.endpoints().multicast(),
    };
    let url = format!("{base}{}", route.path);
    let bearer = format!("Bearer {}", core.token().expose());
    let agent = core.agent();
    let started = Instant::now();
    let (name, sent) = match method {
        Method::Get(query) => (
            "GET",
            agent
                .get(&url)
                .header("Authorization", &bearer)
                .header("Accept", "application/json")
                .query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
                .call(),
        ),
        Method::Post(body) => {
            let request = agent
                .post(&url)
                .header("Authorization", &bearer)
                .header("Accept", "application/json");
            let sent = match body {
                Some(json) => request.content_type("application/json").send(&json[..]),
                None => request.send_empty(),
            };
            ("POST", sent)
        }
    };
    let answer = sent.and_then(|mut response| {
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(core.max_response_size())
            .read_to_vec()?;
        Ok((status, body))
    });
    let elapsed = started.elapsed();
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            log::debug!("{name} {url} failed after {elapsed:?}: {e}");
            let e = if core.is_closed() {
                closed()
            } else {
                transport_error(e, name, &url, core)
            };
            return count(core, route, Err(e), started);
        }
    };
    log::debug!(
        "{name} {url} -> {status} ({} bytes) in {elapsed:?}",
        body.len()
    );
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&body);
        let e = Error::Api(api_error(status, &text, core.token()));
        return count(core, route, Err(e), started);
    }
    let decoded = serde_json::from_slice(&body).map_err(|e| {
        let start = scrub(&String::from_utf8_lossy(&body), core.token());
        let start: String = start.chars().take(200).collect();
        Error::decode(
            route.what,
            format!("{e} (HTTP {status}, body starts with {start:?})"),
        )
    });
    count(core, route, decoded, started)
}

/// Counts a call that went to the network in the `Core`'s REST stats, and passes its
/// result on. Timed to the decoded answer, so the time is what the caller waited.
fn count<T>(core: &Core, route: Route, result: Result<T>, started: Instant) -> Result<T> {
    if let Some(op) = RestOperation::from_path(route.path) {
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(e),
        };
        core.rest_counters().record(op, outcome, started.elapsed());
    }
    result
}

fn closed() -> Error {
    Error::Closed(crate::error::Closed::Core)
}

/// Sorts ureq's failures into network, timeout, TLS and decode errors, each naming the
/// call (the URL never holds the token: it travels in a header).
fn transport_error(e: ureq::Error, method: &str, url: &str, core: &Core) -> Error {
    let io = |kind: io::ErrorKind, what: &dyn std::fmt::Display| {
        Error::Io(io::Error::new(kind, format!("{method} {url}: {what}")))
    };
    match e {
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => Error::timeout(
            TimeoutKind::Connect,
            format!(
                "{method} {url}: no connection within the connect timeout ({:?})",
                core.connect_timeout()
            ),
        ),
        ureq::Error::Timeout(_) => Error::timeout(
            TimeoutKind::Request,
            format!(
                "{method} {url}: no complete answer within the request timeout ({:?})",
                core.request_timeout()
            ),
        ),
        ureq::Error::Io(e) => {
            if let Some(tls) = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Error::tls(format_args!("{method} {url}"), tls.clone());
            }
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                return Error::timeout(TimeoutKind::Request, format!("{method} {url}: {e}"));
            }
            io(e.kind(), &e)
        }
        ureq::Error::Rustls(e) => Error::tls(format_args!("{method} {url}"), e),
        ureq::Error::Tls(e) => Error::tls_text(format!("{method} {url}: {e}")),
        ureq::Error::Pem(e) => Error::config(
            ConfigErrorKind::Certificate,
            format!("{method} {url}: PEM: {e:?}"),
        ),
        ureq::Error::TlsRequired => Error::tls_text(format!("{method} {url}: TLS required")),
        ureq::Error::HostNotFound => io(io::ErrorKind::NotFound, &"host not found"),
        ureq::Error::ConnectionFailed => io(io::ErrorKind::ConnectionRefused, &"connection failed"),
        ureq::Error::ConnectProxyFailed(why) => {
            io(io::ErrorKind::ConnectionRefused, &format!("proxy: {why}"))
        }
        ureq::Error::BodyExceedsLimit(limit) => Error::decode(
            "response",
            format!("{method} {url}: the answer is larger than the {limit}-byte limit"),
        ),
        // A TLS record is no HTTP status line: its first byte (0x15 for an alert, 0x16 for
        // a handshake) fails the version check.
        ureq::Error::Protocol(e)
            if url.starts_with("http://") && e.to_string().contains("invalid HTTP version") =>
        {
            Error::decode(
                "HTTP response",
                format!("{method} {url}: the server speaks TLS: use an https:// URL? ({e})"),
            )
        }
        ureq::Error::Protocol(e) => Error::decode("HTTP response", format!("{method} {url}: {e}")),
        ureq::Error::LargeResponseHeader(size, limit) => Error::decode(
            "HTTP response",
            format!("{method} {url}: header of {size} bytes exceeds {limit}"),
        ),
        ureq::Error::BadUri(e) => {
            Error::config(ConfigErrorKind::Url, format!("bad URL {url}: {e}"))
        }
        ureq::Error::Http(e) => Error::config(ConfigErrorKind::Url, format!("{method} {url}: {e}")),
        ureq::Error::InvalidProxyUrl => Error::config(ConfigErrorKind::Proxy, "bad proxy URL"),
        other => io(io::ErrorKind::Other, &other),
    }
}

/// The body of a 4xx error answer:
/// `{"detail": {"error_code", "error_description", "error_detail"?}}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) detail: ErrorDetail,
}

/// The `detail` object of an [`ErrorBody`].
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct ErrorDetail {
    pub(crate) error_code: String,
    #[serde(default)]
    pub(crate) error_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error_detail: Option<Vec<FieldError>>,
}

/// How much of a server-chosen text an error keeps (bodies, descriptions, field errors).
pub(crate) const MAX_TEXT: usize = 2048;

/// Maps an error answer (REST, or a refused stream handshake) to its [`ApiError`]: by the
/// documented `error_code` when the body has one (a 403 `Device.LimitExhausted` stays
/// that); any other 401 or 403 is [`ApiError::Unauthorized`] whatever its body (a proxy's
/// page, an empty body, an undocumented code), so that a refused token reads the same
/// everywhere; anything else is [`ApiError::Unknown`] keeping the status and body text.
/// Every text taken from the body is scrubbed of the token (servers and proxies echo
/// requests) and cut to [`MAX_TEXT`].
pub(crate) fn api_error(status: u16, body: &str, token: &AccessToken) -> ApiError {
    let body = scrub(body, token);
    let parsed = if (400..500).contains(&status) {
        serde_json::from_str::<ErrorBody>(&body).ok()
    } else {
        None
    };
    // JSON escapes can spell the token in ways the raw text did not: scrub again.
    let text = |s: &str| bounded(&scrub(s, token));
    let refused = status == 401 || status == 403;
    let Some(ErrorBody { detail }) = parsed else {
        if refused {
            let description = match body.trim() {
                "" => format!("HTTP {status}"),
                text => format!("HTTP {status}: {}", bounded(text)),
            };
            return ApiError::Unauthorized { description };
        }
        return ApiError::Unknown {
            status,
            code: None,
            body: bounded(&body),
        };
    };
    let description = text(&detail.error_description);
    match detail.error_code.as_str() {
        "Unauthorized" => ApiError::Unauthorized { description },
        "ValidationFailed" => {
            let (detail, omitted) = field_errors(detail.error_detail.unwrap_or_default(), token);
            ApiError::ValidationFailed {
                description,
                detail,
                omitted,
            }
        }
        "Device.AlreadyExists" => ApiError::DeviceAlreadyExists { description },
        "Device.NotFound" => ApiError::DeviceNotFound { description },
        "Device.LimitExhausted" => ApiError::DevicesLimitExhausted { description },
        "MulticastGroup.AlreadyExists" => ApiError::MulticastGroupAlreadyExists { description },
        "MulticastGroup.NotFound" => ApiError::MulticastGroupNotFound { description },
        "MulticastGroup.AlreadyContainsTheDevice" => {
            ApiError::MulticastGroupAlreadyContainsDevice { description }
        }
        other if refused => ApiError::Unauthorized {
            description: format!("HTTP {status}, {}: {description}", text(other)),
        },
        other => ApiError::Unknown {
            status,
            code: Some(text(other)),
            body: description,
        },
    }
}

/// Whether an error answer is the service's own `Unauthorized` error object, rather than
/// a 401 or 403 page of something in front of it (which [`api_error`] maps to
/// [`ApiError::Unauthorized`] too): a stream reconnect gives up at once only on the
/// service's word.
pub(crate) fn is_services_unauthorized(status: u16, body: &str) -> bool {
    (400..500).contains(&status)
        && serde_json::from_str::<ErrorBody>(body)
            .is_ok_and(|b| b.detail.error_code == "Unauthorized")
}

/// Keeps the field errors that fit in [`MAX_TEXT`] (a hostile list can be megabytes),
/// scrubbed; returns them and how many were left out.
fn field_errors(all: Vec<FieldError>, token: &AccessToken) -> (Vec<FieldError>, usize) {
    let total = all.len();
    let mut kept = Vec::new();
    let mut size = 0;
    for e in all {
        let e = FieldError {
            loc: e.loc.iter().map(|l| bounded(&scrub(l, token))).collect(),
            msg: bounded(&scrub(&e.msg, token)),
            kind: bounded(&scrub(&e.kind, token)),
        };
        let len = e.loc.iter().map(|l| l.len() + 1).sum::<usize>() + e.msg.len() + e.kind.len();
        if size + len > MAX_TEXT && !kept.is_empty() {
            break;
        }
        size += len;
        kept.push(e);
    }
    let omitted = total - kept.len();
    (kept, omitted)
}

/// Cuts a server-chosen text to a length that is safe to keep in an error and log.
pub(crate) fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut cut = MAX_TEXT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// The text with every spelling of the token replaced by `***` (see
/// [`AccessToken::scrub`]).
pub(crate) fn scrub(text: &str, token: &AccessToken) -> String {
    token.scrub(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AccessToken {
        AccessToken::new("s3cr3t/t0k+n").unwrap()
    }

    fn from_response(status: u16, body: &str) -> ApiError {
        api_error(status, body, &token())
    }

    #[test]
    fn maps_documented_codes() {
        let body =
            r#"{"detail": {"error_code": "Device.AlreadyExists", "error_description": "exists"}}"#;
        assert_eq!(
            from_response(409, body),
            ApiError::DeviceAlreadyExists {
                description: "exists".into()
            }
        );
        let body = r#"{"detail": {"error_code": "ValidationFailed", "error_description": "bad",
            "error_detail": [{"loc": ["body", "DevEUIs", 0], "msg": "not hex", "type": "value_error"}]}}"#;
        let err = from_response(422, body);
        assert_eq!(err.code(), "ValidationFailed");
        assert_eq!(
            err.to_string(),
            "validation failed: bad; body.DevEUIs.0: not hex"
        );
    }

    #[test]
    fn unknown_keeps_status_and_body() {
        let err = from_response(500, "boom");
        assert_eq!(
            err,
            ApiError::Unknown {
                status: 500,
                code: None,
                body: "boom".into()
            }
        );
        let err = from_response(418, "<html>");
        assert!(matches!(err, ApiError::Unknown { status: 418, .. }));
        let err = from_response(400, r#"{"detail": {"error_code": "Shiny.New"}}"#);
        assert_eq!(err.code(), "Shiny.New");
        let long = "é".repeat(5000);
        let ApiError::Unknown { body, .. } = from_response(500, &long) else {
            panic!()
        };
        assert!(body.len() <= 2048 + '…'.len_utf8());
    }

    #[test]
    fn scrubs_every_spelling_of_the_token() {
        let token = token();
        for echo in [
            "GET /stream/upstream/?access_token=s3cr3t/t0k+n HTTP/1.1",
            "GET /stream/upstream/?access_token=s3cr3t%2Ft0k%2Bn HTTP/1.1",
            "GET /stream/upstream/?access_token=s3cr3t%2ft0k%2bn HTTP/1.1",
            "GET /?access_token=%73%33cr3t%2Ft0k+n HTTP/1.1",
            "Authorization: Bearer s3cr3t/t0k+n",
        ] {
            let clean = scrub(echo, &token);
            assert!(clean.contains("***"), "{clean}");
            assert!(
                !clean.contains("s3cr3t") && !clean.contains("t0k"),
                "{clean}"
            );
        }
        assert_eq!(scrub("s3cr3t/t0k and %", &token), "s3cr3t/t0k and %");
        assert_eq!(scrub("a s3cr3t/t0k+ns3cr3t/t0k+n é", &token), "a ****** é");
        // Inside JSON, written with escapes the raw text does not show.
        let body = r#"{"detail": {"error_code": "Unauthorized", "error_description": "token s3cr3t\/t0k\u002bn refused"}}"#;
        let err = api_error(401, body, &token);
        assert_eq!(err.to_string(), "unauthorized: token *** refused");
    }

    proptest::proptest! {
        #[test]
        fn any_error_body_maps_without_panicking(data: Vec<u8>, status in 400u16..600) {
            let body = String::from_utf8_lossy(&data);
            let err = from_response(status, &body);
            let _ = (err.code(), err.to_string());
        }
    }

    #[test]
    fn validation_failures_are_bounded() {
        let fields: Vec<String> = (0..100_000)
            .map(|i| format!(r#"{{"loc": ["body", "DevEUIs", {i}], "msg": "not hex", "type": "value_error"}}"#))
            .collect();
        let body = format!(
            r#"{{"detail": {{"error_code": "ValidationFailed", "error_description": "bad", "error_detail": [{}]}}}}"#,
            fields.join(",")
        );
        let err = from_response(422, &body);
        let ApiError::ValidationFailed {
            detail, omitted, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(!detail.is_empty());
        assert_eq!(detail.len() + omitted, 100_000);
        let text = err.to_string();
        assert!(text.len() < 3 * MAX_TEXT, "{} bytes", text.len());
        assert!(text.ends_with(&format!("; and {omitted} more")), "{text}");
        assert!(format!("{err:?}").len() < 4 * MAX_TEXT);
        // One huge field is cut too.
        let body = format!(
            r#"{{"detail": {{"error_code": "ValidationFailed", "error_description": "bad", "error_detail": [{{"loc": ["x"], "msg": "{}"}}]}}}}"#,
            "m".repeat(1 << 20)
        );
        assert!(from_response(422, &body).to_string().len() < 3 * MAX_TEXT);
    }
}
