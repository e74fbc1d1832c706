//! Host name resolution for the REST agent, remembered for a short while. It plugs into
//! ureq through its `unversioned` API, which is why Cargo.toml pins ureq with `~`.
//!
//! ureq resolves the host before *every* request, even one that goes out on a pooled
//! connection and never uses the addresses, and with a timeout configured (we always set
//! one) it does so on a freshly spawned thread: a thread start per request, and on a real
//! network a DNS lookup per request. Addresses only matter when a new connection is
//! opened, so keeping them for a few seconds changes nothing but the cost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long resolved addresses are reused; short enough to follow DNS changes.
const TTL: Duration = Duration::from_secs(10);

/// [`DefaultResolver`] with its answers kept for [`TTL`]; failures are not kept.
#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // The scheme decides the default port; the IP family setting filters the answer.
        let key = format!(
            "{:?} {:?} {:?}",
            uri.scheme_str(),
            uri.authority().map(|a| a.as_str()),
            config.ip_family()
        );
        if let Some((at, addrs)) = self.lock().get(&key) {
            if at.elapsed() < TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.lock().insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

impl CachingResolver {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, ResolvedSocketAddrs)>> {
        crate::sync::lock(&self.cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_reused_per_host_and_port() {
        let resolver = CachingResolver::default();
        let config = Config::default();
        let timeout = NextTimeout::default;
        let a: Uri = "http://127.0.0.1:8080/api/v1/devices/select"
            .parse()
            .unwrap();
        let b: Uri = "http://127.0.0.1:9090/x".parse().unwrap();
        let first = resolver.resolve(&a, &config, timeout()).unwrap();
        assert_eq!(first[0], "127.0.0.1:8080".parse().unwrap());
        let again = resolver.resolve(&a, &config, timeout()).unwrap();
        assert_eq!(&first[..], &again[..]);
        let other = resolver.resolve(&b, &config, timeout()).unwrap();
        assert_eq!(other[0], "127.0.0.1:9090".parse().unwrap());
        assert_eq!(resolver.lock().len(), 2);
    }
}
