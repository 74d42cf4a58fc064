//! The PostgreSQL store's TLS: rustls on *ring* (no process-wide provider installed),
//! the roots the transports trust by default, and libpq's verification levels.

use std::sync::Arc;

use class_oauth_core::flow::RootCerts;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::options::{PostgresOptions, Roots, SslMode};
use crate::StoreError;

/// The rustls client configuration for `options`, or `None` for [`SslMode::Disable`].
/// Reads the named certificate files.
pub(crate) fn client_config(
    options: &PostgresOptions,
) -> Result<Option<rustls::ClientConfig>, StoreError> {
    let failed = |what: &str, e: rustls::Error| {
        StoreError::Config(format!("PostgreSQL TLS set-up ({what}): {e}"))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| failed("protocol versions", e))?;
    // libpq: `require` with a root certificate file checks the chain (verify-ca).
    let mode = match options.ssl_mode {
        SslMode::Require if matches!(options.roots, Roots::File(_)) => SslMode::VerifyCa,
        mode => mode,
    };
    let builder = match (mode, &options.roots) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::VerifyFull, Roots::Certs(RootCerts::Platform)) => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder
                .with_platform_verifier()
                .map_err(|e| failed("the platform's certificate store", e))?
        }
        (SslMode::VerifyCa | SslMode::VerifyFull, roots) => {
            let roots = root_store(roots)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| {
                    StoreError::Config(format!("PostgreSQL TLS set-up (the roots): {e}"))
                })?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
        // prefer, require: encrypted, the certificate unchecked (libpq's meaning).
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(
                provider.signature_verification_algorithms,
            ))),
    };
    match &options.client_cert {
        None => Ok(Some(builder.with_no_client_auth())),
        Some((chain, key)) => {
            let read = |what: &str, path: &std::path::Path, e: rustls::pki_types::pem::Error| {
                StoreError::Config(format!("PostgreSQL TLS {what} {}: {e}", path.display()))
            };
            let certs = CertificateDer::pem_file_iter(chain)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| read("client certificate (sslcert)", chain, e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| read("client key (sslkey)", key, e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map(Some)
                .map_err(|e| failed("the client certificate and key", e))
        }
    }
}

fn root_store(roots: &Roots) -> Result<rustls::RootCertStore, StoreError> {
    match roots {
        Roots::File(path) => {
            let mut store = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Config(format!(
                        "PostgreSQL TLS root certificates (sslrootcert) {}: {e}",
                        path.display()
                    ))
                })?;
            let (_, refused) = store.add_parsable_certificates(certs);
            if store.is_empty() {
                return Err(StoreError::Config(format!(
                    "PostgreSQL TLS root certificates (sslrootcert) {}: no usable certificate ({refused} refused)",
                    path.display()
                )));
            }
            Ok(store)
        }
        // The platform's verifier is for verify-full only (PostgresOptions::check).
        Roots::Certs(_) => Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
    }
}

/// `verify-ca`: the chain must reach a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: any certificate is taken (libpq's meaning of these modes),
/// but the handshake's signatures are still checked against it.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A hint for a connection error caused by TLS: what was refused and where to look.
pub(crate) fn hint(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return Some(match tls {
                rustls::Error::InvalidCertificate(_) => format!(
                    "the PostgreSQL server's TLS certificate was refused ({tls}): with sslmode=verify-ca or verify-full it must chain to the CAs of sslrootcert (the bundled Mozilla roots when none is named) and, for verify-full, name the host connected to"
                ),
                _ => format!("TLS with the PostgreSQL server failed: {tls}"),
            });
        }
        cur = err.source();
    }
    None
}
