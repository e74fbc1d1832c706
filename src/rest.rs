//! One REST call: JSON in, JSON out, bearer token, errors mapped to [`Error`].

use std::io;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::core::Core;
use crate::error::{ApiError, Error, InvalidInput, Result};

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
        .map_err(|e| Error::Invalid(InvalidInput::Other(e.to_string())))?;
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
            return Err(if core.is_closed() {
                closed()
            } else {
                transport_error(e, name, &url, core)
            });
        }
    };
    log::debug!(
        "{name} {url} -> {status} ({} bytes) in {elapsed:?}",
        body.len()
    );
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&body);
        return Err(Error::Api(ApiError::from_response(status, &text)));
    }
    serde_json::from_slice(&body).map_err(|e| {
        let start: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        Error::decode(
            route.what,
            format!("{e} (HTTP {status}, body starts with {start:?})"),
        )
    })
}

fn closed() -> Error {
    Error::Closed("the client is closed".into())
}

/// Sorts ureq's failures into network, timeout, TLS and decode errors, each naming the
/// call (the URL never holds the token: it travels in a header).
fn transport_error(e: ureq::Error, method: &str, url: &str, core: &Core) -> Error {
    let io = |kind: io::ErrorKind, what: &dyn std::fmt::Display| {
        Error::Io(io::Error::new(kind, format!("{method} {url}: {what}")))
    };
    match e {
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            Error::Timeout(format!(
                "{method} {url}: no connection within the connect timeout ({:?})",
                core.connect_timeout()
            ))
        }
        ureq::Error::Timeout(_) => Error::Timeout(format!(
            "{method} {url}: no complete answer within the request timeout ({:?})",
            core.request_timeout()
        )),
        ureq::Error::Io(e) => {
            if let Some(tls) = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Error::Tls(format!("{method} {url}: {tls}"));
            }
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                return Error::Timeout(format!("{method} {url}: {e}"));
            }
            io(e.kind(), &e)
        }
        ureq::Error::Rustls(e) => Error::Tls(format!("{method} {url}: {e}")),
        ureq::Error::Tls(e) => Error::Tls(format!("{method} {url}: {e}")),
        ureq::Error::Pem(e) => Error::Config(format!("{method} {url}: PEM: {e:?}")),
        ureq::Error::TlsRequired => Error::Tls(format!("{method} {url}: TLS required")),
        ureq::Error::HostNotFound => io(io::ErrorKind::NotFound, &"host not found"),
        ureq::Error::ConnectionFailed => io(io::ErrorKind::ConnectionRefused, &"connection failed"),
        ureq::Error::ConnectProxyFailed(why) => {
            io(io::ErrorKind::ConnectionRefused, &format!("proxy: {why}"))
        }
        ureq::Error::BodyExceedsLimit(limit) => Error::decode(
            "response",
            format!("{method} {url}: the answer is larger than the {limit}-byte limit"),
        ),
        ureq::Error::Protocol(e) => Error::decode("HTTP response", format!("{method} {url}: {e}")),
        ureq::Error::LargeResponseHeader(size, limit) => Error::decode(
            "HTTP response",
            format!("{method} {url}: header of {size} bytes exceeds {limit}"),
        ),
        ureq::Error::BadUri(e) => Error::Config(format!("bad URL {url}: {e}")),
        ureq::Error::Http(e) => Error::Config(format!("{method} {url}: {e}")),
        ureq::Error::InvalidProxyUrl => Error::Config("bad proxy URL".into()),
        other => io(io::ErrorKind::Other, &other),
    }
}
