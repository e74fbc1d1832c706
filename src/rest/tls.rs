//! Trusted roots for every TLS connection of a [`Core`](crate::Core).
//!
//! REST goes through ureq and the streams through our own rustls connection. Both are
//! built here from one list (the Mozilla roots plus the user's private CAs), so a server
//! that one of them trusts the other trusts too.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::{ConfigErrorKind, Error, Result};

/// The TLS settings of one `Core`, for ureq and for the stream connections.
pub(crate) struct TlsSetup {
    pub(crate) rustls: Arc<ClientConfig>,
    pub(crate) ureq: ureq::tls::TlsConfig,
}

/// Every certificate in a PEM document; anything else in it (keys, comments) is ignored.
pub(crate) fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::config(
                ConfigErrorKind::Certificate,
                format!("cannot read the PEM root certificate: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(Error::config(
            ConfigErrorKind::Certificate,
            "the PEM root certificate holds no CERTIFICATE section",
        ));
    }
    Ok(certs)
}

/// The *ring* provider, used when the process installed no default provider: ureq's
/// `rustls` feature builds on *ring*, so REST and streams negotiate alike.
///
/// rustls 0.23.48 deprecates it because *ring* has no post-quantum key exchange; it
/// stays supported through 0.23, and *ring* moves to its own crate in 0.24. An
/// application that wants post-quantum key exchange installs the aws-lc-rs provider
/// with `CryptoProvider::install_default` before building a `Core`, and both sides
/// use it.
#[allow(deprecated)]
pub(crate) fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Builds both configurations from the Mozilla roots plus `extra_roots`.
pub(crate) fn setup(extra_roots: &[CertificateDer<'static>]) -> Result<TlsSetup> {
    let mut store = RootCertStore::empty();
    // The bundled list is curated; a root this rustls cannot parse is skipped, as ureq
    // does, rather than making every client unusable.
    store.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    for cert in extra_roots {
        store.add(cert.clone()).map_err(|e| {
            Error::config(
                ConfigErrorKind::Certificate,
                format!("the root certificate cannot be used as a trust anchor: {e}"),
            )
        })?;
    }

    // The same choice ureq makes, so both sides negotiate alike.
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(ring_provider()));
    let rustls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(ConfigErrorKind::Certificate, format!("TLS setup: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();

    let ureq_roots: Vec<ureq::tls::Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()))
        .chain(
            extra_roots
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned()),
        )
        .collect();
    let ureq = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(ureq_roots)))
        .build();

    Ok(TlsSetup {
        rustls: Arc::new(rustls),
        ureq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_pem_without_certificates() {
        assert!(matches!(
            parse_pem_certificates(b"hello"),
            Err(Error::Config(_))
        ));
        let garbage = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_pem_certificates(garbage),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn rejects_a_certificate_that_is_not_one() {
        // Valid PEM framing and base64, but not a DER certificate.
        let pem = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let certs = parse_pem_certificates(pem).unwrap();
        assert!(matches!(setup(&certs), Err(Error::Config(_))));
    }

    #[test]
    fn mozilla_roots_are_loaded_for_both_sides() {
        let tls = setup(&[]).unwrap();
        let ureq::tls::RootCerts::Specific(roots) = tls.ureq.root_certs() else {
            panic!("ureq must get the explicit list");
        };
        assert_eq!(roots.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(roots.len() > 100);
    }
}
