//! TLS for `https`/`wss`: a fresh self-signed certificate per emulator.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{Error, Result};

/// The names the certificate is valid for: the loopback address and `localhost`.
const NAMES: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// A server configuration and the PEM of its certificate, for clients to trust.
pub(crate) struct Tls {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) certificate_pem: String,
}

/// The crypto provider, named explicitly so that the process-wide default (which a user
/// may or may not have installed) does not matter. rustls 0.23.48 deprecates *ring*'s
/// for lacking post-quantum key exchange, which a loopback test server does not need;
/// it stays supported through 0.23.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Generates a certificate for the loopback names and a server configuration using it.
    pub(crate) fn generate() -> Result<Self> {
        let names: Vec<String> = NAMES.iter().map(|n| (*n).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| Error::Tls(format!("cannot generate the certificate: {e}")))?;
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .map_err(|e| Error::Tls(e.to_string()))?;
        Ok(Self {
            config: Arc::new(config),
            certificate_pem: certified.cert.pem(),
        })
    }
}

/// A random access token: 32 hex digits from the crypto provider's random source.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if provider().secure_random.fill(&mut bytes).is_err() {
        // No system randomness: fall back to something unpredictable enough for a test
        // server on loopback.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
