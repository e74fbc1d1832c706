//! Where the service is and how to authenticate: endpoints and the access token.

use std::fmt;

use crate::error::{ConfigErrorKind, Error, Result};

/// The four URLs the client talks to.
///
/// The user gives one base URL per territory, e.g. `https://eu.cloud.everynet.io/api/v1`;
/// every endpoint derives from it:
///
/// ```
/// use ran_routing::Endpoints;
///
/// let ep = Endpoints::from_base_url("https://eu.cloud.everynet.io/api/v1/").unwrap();
/// assert_eq!(ep.routing(), "https://eu.cloud.everynet.io/api/v1/");
/// assert_eq!(ep.multicast(), "https://eu.cloud.everynet.io/api/v1/multicast/");
/// assert_eq!(ep.upstream(), "wss://eu.cloud.everynet.io/api/v1/stream/upstream/");
/// assert_eq!(ep.downstream(), "wss://eu.cloud.everynet.io/api/v1/stream/downstream/");
/// ```
///
/// `https` maps to `wss` and plain `http` (for a loopback emulator) to `ws`; a URL without
/// a scheme gets `https`. A [`Core`](crate::Core) refuses plain `http`/`ws` to any host
/// but loopback unless its builder opts in with
/// [`allow_insecure_remote`](crate::CoreBuilder::allow_insecure_remote).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoints {
    routing: String,
    multicast: String,
    upstream: String,
    downstream: String,
}

impl Endpoints {
    /// Derives every endpoint from the API's base URL (a trailing slash changes nothing).
    pub fn from_base_url(base: &str) -> Result<Self> {
        let base = base.trim();
        let with_scheme;
        let base = if base.contains("://") {
            base
        } else {
            // As the Python client does; said aloud, since a plain-HTTP emulator then
            // fails with a TLS error.
            with_scheme = format!("https://{base}");
            log::info!("base URL {base:?} has no scheme: using {with_scheme:?}");
            &with_scheme
        };
        let uri = parse_uri(base, &["http", "https"])?;
        let (http_scheme, ws_scheme) = if uri.scheme_str() == Some("http") {
            ("http", "ws")
        } else {
            ("https", "wss")
        };
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = uri.path().trim_end_matches('/');
        let http = format!("{http_scheme}://{authority}{path}");
        let ws = format!("{ws_scheme}://{authority}{path}");
        Ok(Self {
            routing: format!("{http}/"),
            multicast: format!("{http}/multicast/"),
            upstream: format!("{ws}/stream/upstream/"),
            downstream: format!("{ws}/stream/downstream/"),
        })
    }

    /// Four explicit endpoints: the routing table and multicast bases (`http`/`https`) and
    /// the two stream URLs (`ws`/`wss`). A missing trailing slash on the REST bases is
    /// added.
    pub fn new(routing: &str, multicast: &str, upstream: &str, downstream: &str) -> Result<Self> {
        let rest = |url: &str| -> Result<String> {
            parse_uri(url, &["http", "https"])?;
            Ok(if url.ends_with('/') {
                url.to_owned()
            } else {
                format!("{url}/")
            })
        };
        let ws = |url: &str| -> Result<String> {
            parse_uri(url, &["ws", "wss"])?;
            Ok(url.to_owned())
        };
        Ok(Self {
            routing: rest(routing)?,
            multicast: rest(multicast)?,
            upstream: ws(upstream)?,
            downstream: ws(downstream)?,
        })
    }

    /// The routing table base, e.g. `https://host/api/v1/` (calls go to `devices/...`).
    pub fn routing(&self) -> &str {
        &self.routing
    }

    /// The multicast base, e.g. `https://host/api/v1/multicast/`.
    pub fn multicast(&self) -> &str {
        &self.multicast
    }

    /// The upstream stream URL, e.g. `wss://host/api/v1/stream/upstream/`.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The downstream stream URL, e.g. `wss://host/api/v1/stream/downstream/`.
    pub fn downstream(&self) -> &str {
        &self.downstream
    }

    /// Fails on the first endpoint that would carry the token in clear text (`http`, `ws`)
    /// to a host that is not loopback: the token travels in every request's header and in
    /// the stream URL's query, readable by anyone on the path.
    pub(crate) fn refuse_plain_text_to_remote_hosts(&self) -> Result<()> {
        for url in [
            &self.routing,
            &self.multicast,
            &self.upstream,
            &self.downstream,
        ] {
            let uri: http::Uri = url.parse().map_err(|e| {
                Error::config(ConfigErrorKind::Url, format!("bad URL {url:?}: {e}"))
            })?;
            let plain = matches!(uri.scheme_str(), Some("http" | "ws"));
            if plain && !uri.host().is_some_and(is_loopback) {
                let secure = if uri.scheme_str() == Some("ws") {
                    "wss://"
                } else {
                    "https://"
                };
                return Err(Error::config(
                    ConfigErrorKind::InsecureRemote,
                    format!(
                        "{url:?} would send the access token in clear text to a host that is not \
                     loopback: use {secure}, or opt in with allow_insecure_remote(true) on the \
                     builder (a trusted private network only)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether a URL's host is this machine over loopback: `localhost`, 127.0.0.0/8 or `::1`
/// (IPv4-mapped forms included). `0.0.0.0` is not: its meaning is the system's choice.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("routing", &self.routing)
            .field("multicast", &self.multicast)
            .field("upstream", &self.upstream)
            .field("downstream", &self.downstream)
            .finish()
    }
}

fn parse_uri(url: &str, schemes: &[&str]) -> Result<http::Uri> {
    let bad = |why: &str| Error::config(ConfigErrorKind::Url, format!("bad URL {url:?}: {why}"));
    let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    match uri.scheme_str() {
        Some(s) if schemes.contains(&s) => {}
        Some(s) => return Err(bad(&format!("scheme {s:?} is not one of {schemes:?}"))),
        None => return Err(bad("no scheme")),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => {}
        _ => return Err(bad("no host")),
    }
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad(
            "credentials in the URL are not allowed; use the access token",
        ));
    }
    Ok(uri)
}

/// The RAN Routing API access token. A secret: its `Debug` prints `AccessToken(***)`, it
/// has no `Display`, and no error or log line of this crate contains it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a token; it must be non-empty visible ASCII so it fits in a header and a
    /// query string.
    pub fn new(token: impl Into<String>) -> Result<Self> {
        let token = token.into();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::config(
                ConfigErrorKind::Credentials,
                "the access token must be non-empty visible ASCII",
            ));
        }
        Ok(Self(token))
    }

    /// The secret itself, for the `Authorization` header and the stream query.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The text with every spelling of the token replaced by `***`: as it is, and
    /// percent-encoded in any mix of upper- and lower-case escapes (a proxy echoing the stream
    /// URL's `access_token=` query), the forms a server may echo back.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let token = self.0.as_bytes();
        let bytes = text.as_bytes();
        let Some(&first) = token.first() else {
            return text.to_owned();
        };
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == first || bytes[i] == b'%' {
                if let Some(end) = token_at(bytes, i, token) {
                    out.push_str(&text[copied..i]);
                    out.push_str("***");
                    copied = end;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// Where a spelling of `token` that starts at `start` ends, if one does.
fn token_at(bytes: &[u8], start: usize, token: &[u8]) -> Option<usize> {
    let mut i = start;
    for &want in token {
        match bytes.get(i)? {
            &b if b == want => i += 1,
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                if u8::from_str_radix(hex, 16).ok()? != want {
                    return None;
                }
                i += 3;
            }
            _ => return None,
        }
    }
    Some(i)
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_endpoints_with_and_without_trailing_slash() {
        for base in [
            "http://127.0.0.1:8080/api/v1",
            "http://127.0.0.1:8080/api/v1/",
        ] {
            let ep = Endpoints::from_base_url(base).unwrap();
            assert_eq!(ep.routing(), "http://127.0.0.1:8080/api/v1/");
            assert_eq!(ep.multicast(), "http://127.0.0.1:8080/api/v1/multicast/");
            assert_eq!(ep.upstream(), "ws://127.0.0.1:8080/api/v1/stream/upstream/");
            assert_eq!(
                ep.downstream(),
                "ws://127.0.0.1:8080/api/v1/stream/downstream/"
            );
        }
        let ep = Endpoints::from_base_url("eu.example.com").unwrap();
        assert_eq!(ep.routing(), "https://eu.example.com/");
        assert_eq!(ep.upstream(), "wss://eu.example.com/stream/upstream/");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "ftp://host/api",
            "http://",
            "https://host/api?x=1",
            "https://user:pw@host/",
            "not a url",
        ] {
            assert!(
                matches!(Endpoints::from_base_url(bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
        assert!(Endpoints::new("http://a/", "http://a/m", "http://a/up", "ws://a/down").is_err());
        let ep = Endpoints::new("http://a/r", "http://a/m/", "ws://a/up", "wss://a/down").unwrap();
        assert_eq!(ep.routing(), "http://a/r/");
        assert_eq!(ep.multicast(), "http://a/m/");
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LocalHost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "0.0.0.0",
            "10.0.0.1",
            "[::]",
            "[fe80::1]",
            "localhost.example.com",
            "127.0.0.1.nip.io",
            "example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn token_is_redacted() {
        let token = AccessToken::new("s3cr3t").unwrap();
        assert_eq!(format!("{token:?}"), "AccessToken(***)");
        assert!(AccessToken::new("").is_err());
        assert!(AccessToken::new("a b").is_err());
        assert!(AccessToken::new("a\nb").is_err());
    }
}
