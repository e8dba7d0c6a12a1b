//! TLS for the exporters: one stack (rustls with ring) and one client
//! configuration for HTTP and gRPC alike. Server certificates are verified
//! against Mozilla's roots compiled into the binary (no trust store is read
//! at start-up), or only against `_CERTIFICATE` when set;
//! `_CLIENT_CERTIFICATE` + `_CLIENT_KEY` add a client identity (mTLS).
//! Verification can only be turned off explicitly
//! (`LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY=true`), which is
//! logged as a warning at start-up and again when the connection is set up.
//! Everything here runs on first use of an https endpoint, never before the
//! first `/next`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

/// The explicit opt-out: accepts any server certificate, but still checks
/// that the server holds the key of the certificate it presented (the
/// handshake signatures), so the session is encrypted to that key.
#[derive(Debug)]
struct AnyServerCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
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

/// An HTTP/1.1 client of the bridge's (OTLP/HTTP exports, AWS calls).
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// A client for http and https URLs over `tcp` with `tls`; a pooled
/// connection idle for longer than `max_idle` is not reused.
pub fn http1_client(
    mut tcp: hyper_util::client::legacy::connect::HttpConnector,
    tls: ClientConfig,
    max_idle: std::time::Duration,
) -> HttpClient {
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(max_idle)
        .build(https)
}

/// The rustls configuration of the exporters (ALPN left empty: the caller
/// sets `h2` for gRPC).
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let pem = load(files)?;
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match &files.skip_verify {
        Some(var) => {
            tracing::warn!(
                "TLS: the collector's certificate is NOT verified ({var}=true); \
                 anyone on the network path can impersonate the collector"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(
                    provider.signature_verification_algorithms,
                )))
        }
        None => builder.with_root_certificates(roots(files, &pem)?),
    };
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

/// The trust anchors: the `_CERTIFICATE` file's certificates, else
/// Mozilla's roots.
fn roots(files: &TlsFiles, pem: &PemFiles) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let Some(ca) = &pem.ca else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
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
    Ok(roots)
}

/// The connector of the gRPC exporter to an `https` endpoint: TCP, then TLS
/// with [`client_config`] (ALPN `h2`) to the endpoint's host. tonic is given
/// the endpoint with an `http` scheme for connecting (so it adds no TLS of
/// its own) and the real `https` origin for the requests.
#[derive(Clone)]
pub struct GrpcTlsConnector {
    tcp: hyper_util::client::legacy::connect::HttpConnector,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl GrpcTlsConnector {
    pub fn new(
        files: &TlsFiles,
        host: &str,
        tcp: hyper_util::client::legacy::connect::HttpConnector,
    ) -> Result<Self, TlsError> {
        let mut config = client_config(files)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError(format!("{host} is not a valid TLS server name")))?;
        Ok(GrpcTlsConnector {
            tcp,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Io = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<hyper::Uri> for GrpcTlsConnector {
    type Response = Io;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Io, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let connect = self.tcp.call(uri);
        let tls = self.tls.clone();
        let name = self.server_name.clone();
        Box::pin(async move {
            let tcp = connect.await?.into_inner();
            let stream = tls.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}
