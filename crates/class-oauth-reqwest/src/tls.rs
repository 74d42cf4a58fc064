//! The default client's rustls set-up: *ring* as the crypto provider (no process-wide
//! default installed), and the roots [`RootCerts`] picks.

use std::sync::Arc;

use class_oauth_client::{RootCerts, TransportError, TransportErrorKind};

pub(crate) fn client_config(roots: RootCerts) -> Result<rustls::ClientConfig, TransportError> {
    let failed = |what: &str, e: rustls::Error| {
        TransportError::new(
            TransportErrorKind::Other,
            format!("could not set up TLS ({what})"),
        )
        .with_source(e)
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed("protocol versions", e))?;
    let config = match roots {
        RootCerts::Platform => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder
                .with_platform_verifier()
                .map_err(|e| failed("the platform's certificate store", e))?
                .with_no_client_auth()
        }
        _ => builder
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth(),
    };
    Ok(config)
}
