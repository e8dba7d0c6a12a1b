//! OTLP transport: sends one encoded export request over gRPC, HTTP/protobuf
//! or HTTP/JSON and classifies the answer the way the OTLP specification does
//! (success, partial success, retryable failure, permanent failure).
//!
//! Requests travel as protobuf bytes (`Export*ServiceRequest`), the form
//! shared by the bridge's own mapped signals and by forwarded requests; the
//! JSON encoding is produced from them only when the protocol asks for it.
//! The gRPC call uses a pass-through codec so no re-encoding happens.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::answers::{classify_grpc, parse_retry_after, partial_success};
use super::aws::client::{error_chain, read_capped};
use super::aws::credentials::CredentialProvider;
use super::aws::secrets::{merge, SecretHeaders};
use super::aws::sigv4::{host_header, sign_request};
use super::codec::gzip;
pub use super::codec::{to_json, RawCodec};
use super::settings::{Compression, Protocol, SignalSettings};
use super::transport::{Outcome, SendFuture, Transport};

/// Sends requests for one signal.
pub struct SignalExporter {
    pub settings: SignalSettings,
    http: OnceCell<Result<HttpClient, String>>,
    /// The gRPC channel and when it was last used: a channel idle for
    /// longer than `max_idle` is replaced (its connection may be gone).
    grpc: std::sync::Mutex<Option<(tonic::transport::Channel, std::time::Instant)>>,
    /// Measured CPU cost of preparing a request (JSON conversion, gzip), in
    /// picoseconds per protobuf byte, to reserve it before a deadline.
    prepare_ps_per_byte: AtomicU64,
    /// Header names that could not be sent (warned about once).
    bad_headers: std::sync::Once,
    /// The process's AWS credentials, when requests are signed (SigV4).
    credentials: Option<std::sync::Arc<CredentialProvider>>,
    /// Headers kept in an AWS secret, merged over the configured ones.
    secret: Option<std::sync::Arc<SecretHeaders>>,
}

use super::tls::HttpClient;

/// The headers fetched from a secret that a request was sent with.
type Secret = std::sync::Arc<Vec<(String, String)>>;

/// Marks a 401/403 (gRPC UNAUTHENTICATED/PERMISSION_DENIED) answer until
/// [`SignalExporter::export`] decides, knowing the headers used, whether it
/// is final.
const REFUSED: &str = "refused: ";

/// `User-Agent` of every export request.
pub const USER_AGENT: &str = concat!("lambda-otel-bridge/", env!("CARGO_PKG_VERSION"));

/// The most of a response body that is read (OTLP answers are small: an
/// empty message or a partial-success count and message).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Extra time a request gets once its timeout has passed, for an answer
/// that is already waiting: after a freeze longer than the timeout, the
/// timer and the answer are both ready at the thaw.
pub const THAW_GRACE: Duration = Duration::from_millis(50);

fn http_client(settings: &SignalSettings) -> Result<HttpClient, String> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.set_keepalive(Some(Duration::from_secs(30)));
    // TLS is set up only for https endpoints (reading certificate files and
    // building the root store is not free).
    let tls = if settings.endpoint.starts_with("https://") {
        super::tls::client_config(&settings.tls).map_err(|e| e.to_string())?
    } else {
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
    };
    // A pooled connection idle for longer than `max_idle` is not reused
    // (checked when it is taken from the pool, so a freeze counts).
    Ok(super::tls::http1_client(connector, tls, settings.max_idle))
}

/// The gRPC channel (connected lazily). For `https` endpoints the TLS is
/// ours ([`super::tls::GrpcTlsConnector`]): tonic connects to the same
/// host and port as `http` and sends the requests with the `https` origin.
/// HTTP/2 and TCP keep-alives find a connection that died while the
/// sandbox was frozen.
fn grpc_channel(settings: &SignalSettings) -> Result<tonic::transport::Channel, String> {
    let endpoint = |uri: String| {
        tonic::transport::Endpoint::from_shared(uri)
            .and_then(|e| e.user_agent(USER_AGENT))
            .map(|e| {
                e.connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .tcp_keepalive(Some(Duration::from_secs(30)))
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(2))
                    .keep_alive_while_idle(false)
            })
            .map_err(|e| format!("invalid gRPC endpoint: {e}"))
    };
    if !settings.endpoint.starts_with("https://") {
        return Ok(endpoint(settings.endpoint.clone())?.connect_lazy());
    }
    let origin: hyper::Uri = settings
        .endpoint
        .parse()
        .map_err(|e| format!("invalid gRPC endpoint: {e}"))?;
    let host = origin.host().unwrap_or_default().to_owned();
    let port = origin.port_u16().unwrap_or(443);
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(Duration::from_secs(30)));
    tcp.enforce_http(false);
    let connector =
        super::tls::GrpcTlsConnector::new(&settings.tls, &host, tcp).map_err(|e| e.to_string())?;
    Ok(endpoint(format!("http://{host}:{port}"))?
        .origin(origin)
        .connect_with_connector_lazy(connector))
}

impl Transport for SignalExporter {
    fn send(self: std::sync::Arc<Self>, body: Bytes, deadline: Instant) -> SendFuture {
        Box::pin(async move { self.export(body, deadline).await })
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    fn prepare_cost(&self, len: usize) -> Duration {
        let ps = self.prepare_ps_per_byte.load(Ordering::Relaxed);
        Duration::from_nanos((len as u64).saturating_mul(ps) / 1000)
    }
}

impl SignalExporter {
    /// Builds nothing expensive: connections are made on first use.
    pub fn new(settings: SignalSettings) -> Self {
        // A first guess of the preparation cost until one is measured:
        // OTLP/JSON conversion about 40 ns per protobuf byte, gzip about 15
        // (on a full core; at a small Lambda's CPU share, more).
        let json = if settings.protocol == Protocol::HttpJson {
            40_000
        } else {
            0
        };
        let gzip = if settings.compression == Compression::Gzip {
            15_000
        } else {
            0
        };
        SignalExporter {
            settings,
            http: OnceCell::new(),
            grpc: std::sync::Mutex::new(None),
            prepare_ps_per_byte: AtomicU64::new(json + gzip),
            bad_headers: std::sync::Once::new(),
            credentials: None,
            secret: None,
        }
    }

    /// Signs with `credentials` (when the settings name a SigV4 target)
    /// and merges the headers of `secret` over the configured ones.
    pub fn with_aws(
        mut self,
        credentials: Option<std::sync::Arc<CredentialProvider>>,
        secret: Option<std::sync::Arc<SecretHeaders>>,
    ) -> Self {
        self.credentials = credentials;
        self.secret = secret;
        self
    }

    /// The headers to send: the configured ones with the secret's merged
    /// over them, and the secret's value used (to tell, on a refusal,
    /// whether a newer one has come since). While the secret is not
    /// available the request is not sent (it stays queued: a retryable
    /// outcome).
    async fn headers(
        &self,
        deadline: Instant,
    ) -> Result<(Vec<(String, String)>, Option<Secret>), Outcome> {
        let Some(secret) = &self.secret else {
            return Ok((self.settings.headers.clone(), None));
        };
        match secret.headers(deadline).await {
            Ok(h) => Ok((merge(&self.settings.headers, &h), Some(h))),
            Err(reason) => Err(Outcome::Retryable {
                reason,
                retry_after: None,
            }),
        }
    }

    /// The SigV4 headers for a request with `headers` and `body` (none
    /// when the signal is not signed).
    async fn signature(
        &self,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, Outcome> {
        let Some(target) = &self.settings.sigv4 else {
            return Ok(Vec::new());
        };
        let credentials = match &self.credentials {
            Some(c) => c.get().await,
            None => Err("no AWS credentials".to_owned()),
        };
        // The container credentials endpoint may answer later.
        let credentials = credentials.map_err(|reason| Outcome::Retryable {
            reason: format!("SigV4: {reason}"),
            retry_after: None,
        })?;
        sign_request(
            &credentials,
            target,
            "POST",
            &self.settings.endpoint,
            headers,
            body,
            std::time::SystemTime::now(),
        )
        .map_err(|reason| Outcome::Permanent { reason })
    }

    /// Sends one protobuf-encoded request, giving up at `deadline` (plus
    /// [`THAW_GRACE`] for an answer already waiting).
    pub async fn export(&self, body: Bytes, deadline: Instant) -> Outcome {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Outcome::Retryable {
                reason: "no time left before the deadline".into(),
                retry_after: None,
            };
        }
        let timeout = budget.min(self.settings.timeout);
        let attempt = async {
            let (headers, used) = match self.headers(deadline).await {
                Ok(h) => h,
                Err(outcome) => return outcome,
            };
            let outcome = match self.settings.protocol {
                Protocol::Grpc => self.send_grpc(body, timeout, &headers).await,
                Protocol::HttpProtobuf | Protocol::HttpJson => self.send_http(body, &headers).await,
            };
            match outcome {
                Outcome::Permanent { reason } if reason.starts_with(REFUSED) => match used {
                    Some(used) => self.refused(reason, &used),
                    None => Outcome::Permanent {
                        reason: reason[REFUSED.len()..].to_owned(),
                    },
                },
                outcome => outcome,
            }
        };
        tokio::pin!(attempt);
        if let Ok(outcome) = tokio::time::timeout(timeout, &mut attempt).await {
            return outcome;
        }
        match tokio::time::timeout(THAW_GRACE, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retryable {
                reason: format!("timed out after {} ms", timeout.as_millis()),
                retry_after: None,
            },
        }
    }

    /// JSON conversion and compression; the time it took updates the
    /// reserved cost.
    fn prepare(&self, body: Bytes) -> Result<(&'static str, Bytes), String> {
        let s = &self.settings;
        if s.protocol != Protocol::HttpJson && s.compression != Compression::Gzip {
            return Ok(("application/x-protobuf", body));
        }
        let started = std::time::Instant::now();
        let len = body.len().max(1) as u64;
        let (content_type, body) = match s.protocol {
            Protocol::HttpJson => ("application/json", Bytes::from(to_json(s.signal, &body)?)),
            _ => ("application/x-protobuf", body),
        };
        let body = if s.compression == Compression::Gzip {
            gzip(&body)?
        } else {
            body
        };
        // Large requests only: small ones are dominated by fixed costs.
        if len >= 4096 {
            let ps = (started.elapsed().as_nanos() as u64).saturating_mul(1000) / len;
            let old = self.prepare_ps_per_byte.load(Ordering::Relaxed);
            // Moving average, quick to rise (a slower CPU share), slow to fall.
            let new = if ps > old {
                (old + ps) / 2
            } else {
                (old * 7 + ps) / 8
            };
            self.prepare_ps_per_byte.store(new, Ordering::Relaxed);
        }
        Ok((content_type, body))
    }

    async fn send_http(&self, body: Bytes, configured: &[(String, String)]) -> Outcome {
        let s = &self.settings;
        let client = match self.http.get_or_init(|| async { http_client(s) }).await {
            Ok(c) => c,
            Err(e) => return Outcome::Permanent { reason: e.clone() },
        };
        let (content_type, body) = match self.prepare(body) {
            Ok(p) => p,
            Err(e) => return Outcome::Permanent { reason: e },
        };
        // Every header sent but the user agent, in the form it is signed:
        // `host` is set here so that the signed value is the one sent.
        let mut headers = Vec::with_capacity(configured.len() + 6);
        if let Some(host) = s
            .endpoint
            .parse::<hyper::Uri>()
            .ok()
            .as_ref()
            .and_then(host_header)
        {
            headers.push(("host".to_owned(), host));
        }
        headers.push(("content-type".to_owned(), content_type.to_owned()));
        if s.compression == Compression::Gzip {
            headers.push(("content-encoding".to_owned(), "gzip".to_owned()));
        }
        headers.extend(configured.iter().cloned());
        // Signed afresh for every attempt, over the bytes sent (after gzip).
        match self.signature(&headers, &body).await {
            Ok(signed) => headers.extend(signed),
            Err(outcome) => return outcome,
        }
        let mut req = hyper::Request::post(&s.endpoint).header("user-agent", USER_AGENT);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Permanent {
                    reason: format!("bad request: {e}"),
                }
            }
        };
        let resp = match client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retryable {
                    reason: format!(
                        "connection to {} failed: {}",
                        host_of(&s.endpoint),
                        error_chain(&e)
                    ),
                    retry_after: None,
                }
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        let (body, _) = read_capped(resp.into_body(), MAX_RESPONSE_BYTES).await;
        match status {
            200..=299 => partial_success(s.signal, s.protocol, &body),
            429 | 502 | 503 | 504 => Outcome::Retryable {
                reason: format!("HTTP {status}"),
                retry_after,
            },
            401 | 403 => Outcome::Permanent {
                reason: format!("{REFUSED}HTTP {status}"),
            },
            _ => Outcome::Permanent {
                reason: format!("HTTP {status}"),
            },
        }
    }

    /// The collector refused the credentials of a request sent with the
    /// secret's value `used`: the secret is fetched again once (keys
    /// rotate) and the request stays queued, waiting out a back-off when
    /// that did not help.
    fn refused(&self, reason: String, used: &Secret) -> Outcome {
        let reason = reason[REFUSED.len()..].to_owned();
        let Some(secret) = &self.secret else {
            return Outcome::Permanent { reason };
        };
        let retry_after = secret.on_refused(used);
        let reason = match retry_after {
            None => format!("{reason}: retrying with the headers secret's latest value"),
            Some(_) => format!("{reason} with the headers secret's latest value: backing off"),
        };
        Outcome::Retryable {
            reason,
            retry_after,
        }
    }

    /// The channel, replaced by a new one when unused for longer than
    /// `max_idle`.
    fn channel(&self) -> Result<tonic::transport::Channel, String> {
        let mut slot = self.grpc.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if let Some((channel, last)) = slot.as_mut() {
            if now.saturating_duration_since(*last) <= self.settings.max_idle {
                *last = now;
                return Ok(channel.clone());
            }
            tracing::debug!(
                "gRPC connection to {} unused for {} ms: reconnecting",
                host_of(&self.settings.endpoint),
                now.saturating_duration_since(*last).as_millis()
            );
        }
        let channel = grpc_channel(&self.settings)?;
        *slot = Some((channel.clone(), now));
        Ok(channel)
    }

    /// The request metadata from the configured headers: `-bin` keys take
    /// base64 values (as gRPC carries them), others ASCII text. A header
    /// that cannot be sent is named in one warning.
    fn metadata(&self, headers: &[(String, String)]) -> tonic::metadata::MetadataMap {
        use tonic::metadata::{BinaryMetadataValue, MetadataKey, MetadataMap, MetadataValue};
        let mut map = MetadataMap::new();
        let mut bad = Vec::new();
        for (k, v) in headers {
            let ok = if k.to_ascii_lowercase().ends_with("-bin") {
                match (
                    MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
                    decode_base64(v),
                ) {
                    (Ok(key), Some(bytes)) => {
                        map.insert_bin(key, BinaryMetadataValue::from_bytes(&bytes));
                        true
                    }
                    _ => false,
                }
            } else {
                match (
                    MetadataKey::from_bytes(k.as_bytes()),
                    MetadataValue::try_from(v.as_str()),
                ) {
                    (Ok(key), Ok(value)) => {
                        map.insert(key, value);
                        true
                    }
                    _ => false,
                }
            };
            if !ok {
                bad.push(k.clone());
            }
        }
        if !bad.is_empty() {
            self.bad_headers.call_once(|| {
                tracing::warn!(
                    "{:?}: these headers cannot be sent as gRPC metadata and are left out: {} \
                     (names must be lower-case ASCII; values of -bin headers must be base64)",
                    self.settings.signal,
                    bad.join(", ")
                )
            });
        }
        map
    }

    async fn send_grpc(
        &self,
        body: Bytes,
        timeout: Duration,
        headers: &[(String, String)],
    ) -> Outcome {
        let channel = match self.channel() {
            Ok(c) => c,
            Err(reason) => return Outcome::Permanent { reason },
        };
        let mut grpc = tonic::client::Grpc::new(channel);
        if self.settings.compression == Compression::Gzip {
            grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        if let Err(e) = grpc.ready().await {
            return Outcome::Retryable {
                reason: format!(
                    "gRPC channel to {} not ready: {}",
                    host_of(&self.settings.endpoint),
                    error_chain(&e)
                ),
                retry_after: None,
            };
        }
        let mut req = tonic::Request::new(body);
        req.set_timeout(timeout);
        *req.metadata_mut() = self.metadata(headers);
        let path = hyper::http::uri::PathAndQuery::from_static(self.settings.signal.grpc_path());
        match grpc.unary(req, path, RawCodec).await {
            Ok(resp) => partial_success(self.settings.signal, Protocol::Grpc, resp.get_ref()),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                Outcome::Permanent {
                    reason: format!("{REFUSED}gRPC {:?}: {}", status.code(), status.message()),
                }
            }
            Err(status) => match classify_grpc(&status) {
                Outcome::Retryable {
                    reason,
                    retry_after,
                } if std::error::Error::source(&status).is_some() => Outcome::Retryable {
                    reason: format!(
                        "{reason} (to {}): {}",
                        host_of(&self.settings.endpoint),
                        error_chain(&status)
                    ),
                    retry_after,
                },
                other => other,
            },
        }
    }
}

/// Standard base64 (padding optional), for `-bin` header values.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .ok()
}

/// `host:port` of an endpoint URL, for error messages (no user info, path
/// or query: those may carry credentials).
pub fn host_of(endpoint: &str) -> String {
    match endpoint.parse::<hyper::Uri>() {
        Ok(u) => match (u.host(), u.port_u16()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => "the endpoint".to_owned(),
        },
        Err(_) => "the endpoint".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::export::settings::{self, Signal};
    use prost::Message;

    #[test]
    fn grpc_classification_follows_the_spec() {
        use tonic::{Code, Status};
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(
                matches!(
                    classify_grpc(&Status::new(code, "x")),
                    Outcome::Retryable { .. }
                ),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
            Code::Unknown,
        ] {
            assert!(
                matches!(
                    classify_grpc(&Status::new(code, "x")),
                    Outcome::Permanent { .. }
                ),
                "{code:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_host_but_never_credentials() {
        assert_eq!(
            host_of("https://user:pw@collector.example:4318/v1/logs?key=k"),
            "collector.example:4318"
        );
        assert_eq!(host_of("http://[::1]:4317"), "[::1]:4317");
        assert_eq!(host_of("not a url"), "the endpoint");
    }

    #[test]
    fn a_broken_connection_is_retryable_not_a_refusal() {
        // What tonic makes of a connection closed mid-request: UNKNOWN with
        // the transport error as its source (a server's UNKNOWN has none).
        let broken = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        )));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        assert!(matches!(
            classify_grpc(&broken),
            Outcome::Retryable {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn resource_exhausted_needs_retry_info() {
        use crate::export::rpc::{ProtoAny, ProtoDuration, RetryInfo, RpcStatus};
        use tonic::{Code, Status};
        let details = RpcStatus {
            code: Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: RetryInfo {
                    retry_delay: Some(ProtoDuration {
                        seconds: 2,
                        nanos: 500_000_000,
                    }),
                }
                .encode_to_vec(),
            }],
        }
        .encode_to_vec();
        let with = Status::with_details(Code::ResourceExhausted, "slow down", details.into());
        assert_eq!(
            classify_grpc(&with),
            Outcome::Retryable {
                reason: "gRPC ResourceExhausted: slow down".into(),
                retry_after: Some(Duration::from_millis(2500))
            }
        );
    }

    #[test]
    fn retry_after_seconds() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("99999", now),
            Some(Duration::from_secs(600))
        );
        // HTTP dates: ten seconds ahead, in each of the three forms.
        for date in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(10)),
                "{date}"
            );
        }
        // A date in the past: at once.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// A collector that answers with an endless body: the exporter reads
    /// at most MAX_RESPONSE_BYTES of it and moves on.
    #[tokio::test]
    async fn response_bodies_are_read_up_to_a_cap() {
        use std::sync::atomic::AtomicUsize;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let w = written.clone();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            // Read the request head and body (small), then answer forever.
            let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ntransfer-encoding: chunked\r\n\r\n";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 65536, "A".repeat(65536));
            // At most 256 MiB, in case the client reads everything.
            for _ in 0..4096 {
                if sock.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                w.fetch_add(65536, Ordering::SeqCst);
            }
        });
        let mut settings =
            settings::ExportSettings::from_env(&std::collections::HashMap::<String, String>::new())
                .unwrap()
                .logs;
        settings.endpoint = format!("http://{addr}/v1/logs");
        let exporter = SignalExporter::new(settings);
        let outcome = exporter
            .export(Bytes::new(), Instant::now() + Duration::from_secs(10))
            .await;
        assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Socket buffers hold a few MiB; everything would be 256 MiB.
        let n = written.load(Ordering::SeqCst);
        assert!(n < 32 << 20, "{n} bytes of the answer were read");
    }

    #[test]
    fn bin_headers_are_base64_and_bad_ones_are_left_out() {
        let mut settings =
            settings::ExportSettings::from_env(&std::collections::HashMap::<String, String>::new())
                .unwrap()
                .traces;
        settings.headers = vec![
            ("x-trace-ctx-bin".into(), "AQID".into()),
            ("x-api-key".into(), "k1".into()),
            ("Bad Name".into(), "v".into()),
            ("x-broken-bin".into(), "%%%".into()),
        ];
        let headers = settings.headers.clone();
        let m = SignalExporter::new(settings).metadata(&headers);
        assert_eq!(
            m.get_bin("x-trace-ctx-bin").map(|v| v.to_bytes().unwrap()),
            Some(Bytes::from_static(&[1, 2, 3]))
        );
        assert_eq!(m.get("x-api-key").unwrap(), "k1");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn partial_success_is_read() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
        let body = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 3,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            partial_success(Signal::Logs, Protocol::HttpProtobuf, &body),
            Outcome::Accepted {
                rejected: 3,
                message: "too old".into()
            }
        );
        assert_eq!(
            partial_success(
                Signal::Logs,
                Protocol::HttpJson,
                br#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"m"}}"#
            ),
            Outcome::Accepted {
                rejected: 2,
                message: "m".into()
            }
        );
    }
}
