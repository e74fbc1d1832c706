//! The client, [`Core`], and its builder.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use super::config::{AccessToken, Endpoints};
use super::multicast::MulticastGroups;
use super::routing_table::RoutingTable;
use super::tls;
use crate::error::{ConfigErrorKind, Error, Result};
use crate::sync::lock;

/// Something that lives on a [`Core`]'s connections and must end when the core closes.
pub(crate) trait StreamCloser: Send + Sync {
    /// Closes the stream; must not block on the network.
    fn close_stream(&self);

    /// The stream itself, which the stream side reads its health from (the REST side
    /// knows nothing of streams but that they close).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// The RAN Routing API client.
///
/// Like the Python client's `Core`, it is the one object an application keeps: it owns
/// the HTTP connection pool and the TLS settings, and hands out the routing table
/// ([`Core::routing_table`]), the multicast groups ([`Core::multicast_groups`]) and the
/// streams ([`Core::upstream`], [`Core::downstream`]).
///
/// Cheap to clone and safe to share across threads: clones share one connection pool,
/// and closing any of them closes all. Build one per territory (base URL). There is no
/// `connect()`: a `Core` is usable once built and opens connections as it needs them.
/// [`Core::close`] ends them, streams included. Dropping the last clone only lets the
/// HTTP pool go: a stream connection keeps what it needs and stays open until it is
/// closed (its own `close()`, or [`Core::close`] on a clone kept for that) or dropped,
/// so `Core::new(..)?.upstream().connect()?` is a working connection.
///
/// ```no_run
/// use std::thread;
/// use ran_routing::Core;
///
/// let ran = Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
/// let worker = {
///     let ran = ran.clone();
///     thread::spawn(move || ran.routing_table().select(ran_routing::Select::all()))
/// };
/// let devices = worker.join().unwrap()?;
/// # Ok::<(), ran_routing::Error>(())
/// ```
///
/// # Logging
///
/// Each REST call is logged through the `log` facade at DEBUG: method, URL, status, size
/// and duration, never the token. The HTTP client underneath, ureq, keeps headers
/// redacted up to DEBUG too, but its TRACE level (targets `ureq` and `ureq_proto`) dumps
/// raw wire bytes, `Authorization` header included: keep those targets below TRACE
/// wherever logs are kept.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Endpoints,
    token: AccessToken,
    agent: ureq::Agent,
    tls: Arc<rustls::ClientConfig>,
    request_timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    max_response_size: u64,
    closed: AtomicBool,
    streams: Mutex<Vec<Weak<dyn StreamCloser>>>,
    transaction_ids: std::sync::atomic::AtomicU64,
    rest_stats: super::stats::RestCounters,
}

impl Core {
    /// A client with default settings for the API at `base_url`, e.g.
    /// `https://eu.cloud.everynet.io/api/v1`.
    ///
    /// Fails with [`Error::Config`] on a bad URL or token; nothing is sent yet.
    ///
    /// ```
    /// use ran_routing::{Core, Error};
    ///
    /// let ran = Core::new("access-token", "https://eu.cloud.everynet.io/api/v1").unwrap();
    /// assert_eq!(ran.endpoints().routing(), "https://eu.cloud.everynet.io/api/v1/");
    /// assert!(matches!(Core::new("access-token", "ftp://host/"), Err(Error::Config(_))));
    /// ```
    pub fn new(token: &str, base_url: &str) -> Result<Core> {
        Core::builder(token).base_url(base_url).build()
    }

    /// A builder to tune timeouts, TLS roots, the pool and more.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ran_routing::Core;
    ///
    /// let ran = Core::builder("access-token")
    ///     .base_url("https://eu.cloud.everynet.io/api/v1")
    ///     .request_timeout(Duration::from_secs(10))
    ///     .connect_timeout(Duration::from_secs(3))
    ///     .user_agent("my-lns/1.0")
    ///     .build()?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn builder(token: &str) -> CoreBuilder {
        CoreBuilder::new(token)
    }

    /// The routing table: subscribe, update and unsubscribe devices.
    ///
    /// ```
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// let devices = ran.routing_table().select(ran_routing::Select::all())?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn routing_table(&self) -> RoutingTable<'_> {
        RoutingTable::new(self)
    }

    /// The multicast groups.
    ///
    /// ```
    /// # let emu = ran_routing_emulator::Emulator::start().unwrap();
    /// # let ran = ran_routing::Core::new(emu.token(), &emu.base_url())?;
    /// let groups = ran.multicast_groups().get([])?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn multicast_groups(&self) -> MulticastGroups<'_> {
        MulticastGroups::new(self)
    }

    /// The URLs this client talks to.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// Closes the client: idle and in-flight HTTP connections and every stream opened
    /// from it, and a `connect()` still retrying its first connection
    /// ([`StreamBuilder::retry_first_connect`](crate::StreamBuilder::retry_first_connect)).
    /// Calls made afterwards fail with [`Error::Closed`] holding
    /// [`Closed::Core`](crate::Closed::Core), without touching the network: a program
    /// that means to go on builds a new `Core`. Closing again does nothing. Call it from
    /// a signal handler's thread to shut a program down: its stream loops end once what
    /// was received is handed out.
    ///
    /// ```
    /// use ran_routing::{Closed, Core, Error};
    ///
    /// let ran = Core::new("access-token", "https://eu.cloud.everynet.io/api/v1")?;
    /// ran.close();
    /// ran.close();
    /// assert!(ran.is_closed());
    /// assert!(matches!(
    ///     ran.routing_table().select(ran_routing::Select::all()),
    ///     Err(Error::Closed(Closed::Core))
    /// ));
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether [`Core::close`] was called (on this or any clone).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// A fresh downlink transaction id, unique for this `Core` and shared by unicast and
    /// multicast downlinks as the service requires. Ids start from the clock (so a
    /// restarted LNS does not reuse the previous run's) and count up from there.
    ///
    /// ```
    /// let ran = ran_routing::Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let (a, b) = (ran.next_transaction_id(), ran.next_transaction_id());
    /// assert!(a > 0 && b > a);
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn next_transaction_id(&self) -> u64 {
        self.inner
            .transaction_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A snapshot of the REST calls made through this `Core` and its clones since it was
    /// built: calls, outcomes (ok, API error code, transport, decode) and time, by
    /// operation. See [`RestStats`](crate::RestStats).
    ///
    /// ```
    /// use ran_routing::{Core, RestOperation};
    ///
    /// let ran = Core::new("token", "https://eu.cloud.everynet.io/api/v1")?;
    /// let stats = ran.rest_stats();
    /// assert_eq!(stats.operation(RestOperation::Insert).calls, 0);
    /// println!("{stats}");
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn rest_stats(&self) -> super::stats::RestStats {
        self.inner.rest_stats.snapshot()
    }

    /// The stream connections opened from this `Core` and not dropped, in opening order.
    pub(crate) fn live_streams(&self) -> Vec<Arc<dyn StreamCloser>> {
        lock(&self.inner.streams)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub(crate) fn rest_counters(&self) -> &super::stats::RestCounters {
        &self.inner.rest_stats
    }

    /// The access token, for the `Authorization` header and the stream query string.
    pub(crate) fn token(&self) -> &AccessToken {
        &self.inner.token
    }

    /// TLS settings for the stream connections, trusting exactly what ureq trusts.
    pub(crate) fn tls_client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.inner.tls)
    }

    /// How long to wait for a TCP connection (and TLS handshake) to be set up.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// The `User-Agent` sent with every request and stream upgrade.
    pub(crate) fn user_agent(&self) -> &str {
        &self.inner.user_agent
    }

    /// Registers a stream so that [`Core::close`] closes it. A stream registered after
    /// the close is closed at once.
    pub(crate) fn track_stream(&self, closer: Weak<dyn StreamCloser>) {
        {
            let mut streams = lock(&self.inner.streams);
            if !self.is_closed() {
                streams.retain(|s| s.strong_count() > 0);
                streams.push(closer);
                return;
            }
        }
        if let Some(stream) = closer.upgrade() {
            stream.close_stream();
        }
    }

    pub(crate) fn agent(&self) -> &ureq::Agent {
        &self.inner.agent
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    pub(crate) fn max_response_size(&self) -> u64 {
        self.inner.max_response_size
    }
}

impl Inner {
    fn close(&self) {
        // The flag flips under the lock so that a concurrent track_stream either lands in
        // the list taken below or sees the flag and closes its stream itself.
        let streams = {
            let mut streams = lock(&self.streams);
            if self.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            std::mem::take(&mut *streams)
        };
        log::debug!("closing the RAN Routing API client");
        self.agent.clone().shutdown();
        for stream in streams.iter().filter_map(Weak::upgrade) {
            stream.close_stream();
        }
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Core")
            .field("endpoints", &inner.endpoints)
            .field("token", &inner.token)
            .field("request_timeout", &inner.request_timeout)
            .field("connect_timeout", &inner.connect_timeout)
            .field("user_agent", &inner.user_agent)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Settings for a [`Core`]; start with [`Core::builder`].
///
/// Every setting has a default except where the API is: give
/// [`base_url`](CoreBuilder::base_url) or [`endpoints`](CoreBuilder::endpoints).
pub struct CoreBuilder {
    token: String,
    endpoints: Option<Result<Endpoints>>,
    request_timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    roots: Vec<Result<Vec<CertificateDer<'static>>>>,
    max_idle_connections: usize,
    idle_timeout: Duration,
    proxy: Option<String>,
    max_response_size: u64,
    allow_insecure_remote: bool,
}

impl CoreBuilder {
    /// Default for [`CoreBuilder::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for [`CoreBuilder::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default for [`CoreBuilder::max_idle_connections`].
    pub const DEFAULT_MAX_IDLE_CONNECTIONS: usize = 4;
    /// Default for [`CoreBuilder::idle_timeout`].
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
    /// Default for [`CoreBuilder::max_response_size`] (64 MiB, a few hundred thousand
    /// devices in one `select`).
    pub const DEFAULT_MAX_RESPONSE_SIZE: u64 = 64 << 20;

    fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            endpoints: None,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            user_agent: concat!("ran-routing-rust/", env!("CARGO_PKG_VERSION")).to_owned(),
            roots: Vec::new(),
            max_idle_connections: Self::DEFAULT_MAX_IDLE_CONNECTIONS,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            proxy: None,
            max_response_size: Self::DEFAULT_MAX_RESPONSE_SIZE,
            allow_insecure_remote: false,
        }
    }

    /// The API's base URL, e.g. `https://eu.cloud.everynet.io/api/v1`; every endpoint
    /// derives from it (see [`Endpoints::from_base_url`]). `https` unless the URL says
    /// `http`.
    pub fn base_url(mut self, base_url: &str) -> Self {
        self.endpoints = Some(Endpoints::from_base_url(base_url));
        self
    }

    /// Four explicit endpoints instead of a base URL.
    ///
    /// ```
    /// use ran_routing::{Core, Endpoints};
    ///
    /// let endpoints = Endpoints::new(
    ///     "https://rest.example.com/api/v1/",
    ///     "https://rest.example.com/api/v1/multicast/",
    ///     "wss://up.example.com/stream/upstream/",
    ///     "wss://down.example.com/stream/downstream/",
    /// )?;
    /// let ran = Core::builder("access-token").endpoints(endpoints).build()?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn endpoints(mut self, endpoints: Endpoints) -> Self {
        self.endpoints = Some(Ok(endpoints));
        self
    }

    /// The longest a REST call may take from start to the last byte of the answer
    /// (default 30 s). A call that runs over fails with [`Error::Timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The longest setting up a connection may take: TCP connect, proxy and TLS
    /// handshake (default 10 s). Applies to the streams too.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header (default `ran-routing-rust/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Also trusts the certificate authorities in this PEM document (one or more
    /// `CERTIFICATE` sections), for example a private CA in front of the service. The
    /// Mozilla roots stay trusted. Can be called several times.
    ///
    /// ```no_run
    /// use ran_routing::Core;
    ///
    /// let pem = std::fs::read("/etc/ssl/private-ca.pem").unwrap();
    /// let ran = Core::builder("access-token")
    ///     .base_url("https://ran.internal.example/api/v1")
    ///     .add_root_certificate_pem(&pem)
    ///     .build()?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Self {
        self.roots.push(tls::parse_pem_certificates(pem));
        self
    }

    /// How many idle connections to keep open per host for reuse (default 4). A burst
    /// of calls from one thread reuses a single connection; raise this when many
    /// threads call at once.
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.max_idle_connections = max;
        self
    }

    /// How long an idle connection is kept for reuse (default 15 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sends REST calls through this proxy, e.g. `http://proxy.example:3128` (HTTP
    /// CONNECT). By default no proxy is used, whatever the environment says: the
    /// stream connections always connect directly, and REST does the same unless told.
    pub fn proxy(mut self, proxy_url: &str) -> Self {
        self.proxy = Some(proxy_url.to_owned());
        self
    }

    /// The largest REST answer accepted, in bytes (default 64 MiB). Bigger answers fail
    /// with [`Error::Decode`]; page through large routing tables with
    /// [`Select`](crate::Select) instead.
    pub fn max_response_size(mut self, bytes: u64) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Lets plain `http://` and `ws://` URLs reach hosts that are not loopback (default
    /// off). The access token then crosses the network in clear text, in every REST
    /// call's header and in the stream URLs' query: opt in only on a network you trust,
    /// e.g. an emulator on another machine of a test lab. Loopback hosts (`localhost`,
    /// 127.0.0.0/8, `::1`) are always allowed, `https`/`wss` everywhere.
    ///
    /// ```
    /// use ran_routing::{Core, Error};
    ///
    /// let refused = Core::new("access-token", "http://lab-emulator.example:8080/api/v1");
    /// assert!(matches!(refused, Err(Error::Config(_))));
    /// let ran = Core::builder("access-token")
    ///     .base_url("http://lab-emulator.example:8080/api/v1")
    ///     .allow_insecure_remote(true)
    ///     .build()?;
    /// # Ok::<(), ran_routing::Error>(())
    /// ```
    pub fn allow_insecure_remote(mut self, allow: bool) -> Self {
        self.allow_insecure_remote = allow;
        self
    }

    /// Checks the settings and builds the client. Nothing is sent yet.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] on a bad token, URL, certificate, proxy or user agent, a zero
    /// timeout, or when no URL was given; the message names the setting to fix. A plain
    /// `http://`/`ws://` URL to a host that is not loopback is refused too: use
    /// `https://`, or [`allow_insecure_remote`](CoreBuilder::allow_insecure_remote) on a
    /// trusted network.
    pub fn build(self) -> Result<Core> {
        let token = AccessToken::new(self.token)?;
        let endpoints = self.endpoints.ok_or_else(|| {
            Error::config(
                ConfigErrorKind::Url,
                "no API URL: call base_url() or endpoints() on the builder",
            )
        })??;
        if !self.allow_insecure_remote {
            endpoints.refuse_plain_text_to_remote_hosts()?;
        }
        let mut roots = Vec::new();
        for pem in self.roots {
            roots.extend(pem?);
        }
        let tls = tls::setup(&roots)?;
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::config(
                ConfigErrorKind::Timeout,
                "timeouts must be longer than zero",
            ));
        }
        if self.user_agent.is_empty()
            || !self
                .user_agent
                .bytes()
                .all(|b| b == b' ' || b.is_ascii_graphic())
        {
            return Err(Error::config(
                ConfigErrorKind::Credentials,
                "the user agent must be non-empty visible ASCII",
            ));
        }
        let proxy = self
            .proxy
            .as_deref()
            .map(|url| {
                ureq::Proxy::new(url).map_err(|e| {
                    Error::config(ConfigErrorKind::Proxy, format!("bad proxy URL: {e}"))
                })
            })
            .transpose()?;

        let config = ureq::Agent::config_builder()
            // 4xx and 5xx carry the service's error body, which rest.rs maps.
            .http_status_as_error(false)
            // The service does not redirect; following one would re-send a POST blindly.
            .max_redirects(0)
            .tls_config(tls.ureq)
            .proxy(proxy)
            .user_agent(self.user_agent.as_str())
            .timeout_global(Some(self.request_timeout))
            .timeout_connect(Some(self.connect_timeout))
            .max_idle_connections_per_host(self.max_idle_connections)
            // Routing and multicast endpoints may be two hosts.
            .max_idle_connections(self.max_idle_connections.saturating_mul(2))
            .max_idle_age(self.idle_timeout)
            .build();

        Ok(Core {
            inner: Arc::new(Inner {
                endpoints,
                token,
                agent: ureq::Agent::with_parts(
                    config,
                    ureq::unversioned::transport::DefaultConnector::default(),
                    super::resolver::CachingResolver::default(),
                ),
                tls: tls.rustls,
                request_timeout: self.request_timeout,
                connect_timeout: self.connect_timeout,
                user_agent: self.user_agent,
                max_response_size: self.max_response_size,
                closed: AtomicBool::new(false),
                streams: Mutex::new(Vec::new()),
                transaction_ids: std::sync::atomic::AtomicU64::new(first_transaction_id()),
                rest_stats: super::stats::RestCounters::new(),
            }),
        })
    }
}

impl fmt::Debug for CoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreBuilder")
            .field("token", &"***")
            .field("endpoints", &self.endpoints)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("user_agent", &self.user_agent)
            .field("extra_roots", &self.roots.len())
            .field("max_idle_connections", &self.max_idle_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("proxy", &self.proxy.as_ref().map(|_| "***"))
            .field("max_response_size", &self.max_response_size)
            .field("allow_insecure_remote", &self.allow_insecure_remote)
            .finish()
    }
}

/// The first transaction id of a `Core`: microseconds since the epoch, far below
/// `u64::MAX` for the next half million years, and never zero.
fn first_transaction_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
        .max(1)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    const TOKEN: &str = "s3cr3t-t0ken";

    fn core() -> Core {
        Core::new(TOKEN, "http://127.0.0.1:9/api/v1").unwrap()
    }

    #[test]
    fn is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Core>();
    }

    #[test]
    fn https_by_default() {
        let ran = Core::new(TOKEN, "eu.cloud.everynet.io/api/v1").unwrap();
        assert_eq!(
            ran.endpoints().routing(),
            "https://eu.cloud.everynet.io/api/v1/"
        );
        assert_eq!(
            ran.endpoints().upstream(),
            "wss://eu.cloud.everynet.io/api/v1/stream/upstream/"
        );
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let cases = [
            Core::builder(TOKEN).build(),
            Core::builder(TOKEN).base_url("ftp://host/").build(),
            Core::builder("").base_url("https://host/").build(),
            Core::builder("two words").base_url("https://host/").build(),
            Core::builder(TOKEN)
                .base_url("https://host/")
                .add_root_certificate_pem(b"not pem")
                .build(),
            Core::builder(TOKEN)
                .base_url("https://host/")
                .user_agent("bad\nagent")
                .build(),
            Core::builder(TOKEN)
                .base_url("https://host/")
                .proxy("http://[::1")
                .build(),
            Core::builder(TOKEN)
                .base_url("https://host/")
                .request_timeout(Duration::ZERO)
                .build(),
        ];
        for (i, case) in cases.into_iter().enumerate() {
            match case {
                Err(Error::Config(msg)) => assert!(!msg.detail().contains(TOKEN), "{i}: {msg}"),
                other => panic!("case {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let ran = core();
        let text = format!("{ran:?}");
        assert!(!text.contains(TOKEN), "{text}");
        assert!(text.contains("127.0.0.1:9"), "{text}");
        let builder = format!("{:?}", Core::builder(TOKEN).proxy("http://u:pw@proxy:1"));
        assert!(
            !builder.contains(TOKEN) && !builder.contains("pw"),
            "{builder}"
        );
    }

    #[test]
    fn default_user_agent_names_the_crate() {
        assert_eq!(
            core().user_agent(),
            concat!("ran-routing-rust/", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn config_errors_say_which_setting() {
        use crate::error::ConfigErrorKind as Kind;
        let kind = |built: Result<Core>| match built {
            Err(Error::Config(e)) => e.kind(),
            other => panic!("expected a configuration error, got {other:?}"),
        };
        let https = "https://eu.cloud.everynet.io/api/v1";
        assert_eq!(kind(Core::new("t", "ftp://host/api/v1")), Kind::Url);
        assert_eq!(kind(Core::builder("t").build()), Kind::Url);
        assert_eq!(
            kind(Core::new("t", "http://10.1.2.3:8080/api/v1")),
            Kind::InsecureRemote
        );
        assert_eq!(kind(Core::new("", https)), Kind::Credentials);
        let pem = Core::builder("t")
            .base_url(https)
            .add_root_certificate_pem(b"nope");
        assert_eq!(kind(pem.build()), Kind::Certificate);
        let proxy = Core::builder("t").base_url(https).proxy("not a proxy url");
        assert_eq!(kind(proxy.build()), Kind::Proxy);
        let zero = Core::builder("t")
            .base_url(https)
            .request_timeout(Duration::ZERO);
        assert_eq!(kind(zero.build()), Kind::Timeout);
    }

    struct Counter(AtomicUsize);

    impl StreamCloser for Counter {
        fn close_stream(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    fn counter() -> Arc<Counter> {
        Arc::new(Counter(AtomicUsize::new(0)))
    }

    fn weak(c: &Arc<Counter>) -> Weak<dyn StreamCloser> {
        let c: Arc<dyn StreamCloser> = c.clone();
        Arc::downgrade(&c)
    }

    #[test]
    fn close_closes_tracked_streams_once() {
        let ran = core();
        let live = counter();
        ran.track_stream(weak(&live));
        {
            let gone = counter();
            ran.track_stream(weak(&gone));
        }
        ran.clone().close();
        ran.close();
        assert!(ran.is_closed());
        assert_eq!(live.0.load(Ordering::SeqCst), 1);

        let late = counter();
        ran.track_stream(weak(&late));
        assert_eq!(late.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dropping_the_last_clone_leaves_streams_open() {
        let ran = core();
        let stream = counter();
        ran.track_stream(weak(&stream));
        let other = ran.clone();
        drop(ran);
        drop(other);
        assert_eq!(stream.0.load(Ordering::SeqCst), 0);
    }
}
