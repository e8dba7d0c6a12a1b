//! TLS for the exporters: one stack (rustls with ring). Server certificates
//! are verified against Mozilla's roots compiled into the binary (no trust
//! store is read at start-up), or only against `_CERTIFICATE` when set;
//! `_CLIENT_CERTIFICATE` + `_CLIENT_KEY` add a client identity (mTLS).
//! Everything here runs on first use of an https endpoint, never before the
//! first `/next`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::settings::TlsFiles;

/// Why TLS could not be set up (names the file, never its content).
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS setup failed: {0}")]
pub struct TlsError(pub String);

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))
}

fn shown(path: &Option<std::path::PathBuf>) -> String {
    path.as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// PEM bytes of the CA file and of the client identity, if configured.
pub struct PemFiles {
    pub ca: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

pub fn load(files: &TlsFiles) -> Result<PemFiles, TlsError> {
    let ca = files.ca_certificate.as_deref().map(read).transpose()?;
    let identity = match (&files.client_certificate, &files.client_key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        (None, None) => None,
        _ => {
            return Err(TlsError(
                "a client certificate needs both _CLIENT_CERTIFICATE and _CLIENT_KEY".into(),
            ))
        }
    };
    Ok(PemFiles { ca, identity })
}

/// The rustls configuration for the HTTP exporter.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let pem = load(files)?;
    let mut roots = RootCertStore::empty();
    match &pem.ca {
        Some(ca) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    TlsError(format!(
                        "bad PEM in the CA certificate file {}: {e}",
                        shown(&files.ca_certificate)
                    ))
                })?;
            if certs.is_empty() {
                return Err(TlsError(format!(
                    "the CA certificate file {} holds no certificate",
                    shown(&files.ca_certificate)
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| TlsError(format!("unusable CA certificate: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots);
    match pem.identity {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    TlsError(format!(
                        "bad PEM in the client certificate file {}: {e}",
                        shown(&files.client_certificate)
                    ))
                })?;
            let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                TlsError(format!(
                    "bad PEM in the client key file {}: {e}",
                    shown(&files.client_key)
                ))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError(format!("client certificate and key do not match: {e}")))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The tonic TLS configuration for the gRPC exporter.
pub fn tonic_config(files: &TlsFiles) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    // tonic parses the PEM only when it connects, with errors that do not
    // say which file: check the files the same way as for HTTP first.
    client_config(files)?;
    let pem = load(files)?;
    let mut cfg = tonic::transport::ClientTlsConfig::new();
    cfg = match pem.ca {
        Some(ca) => cfg.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
        None => cfg.with_webpki_roots(),
    };
    if let Some((cert, key)) = pem.identity {
        cfg = cfg.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Ok(cfg)
}
