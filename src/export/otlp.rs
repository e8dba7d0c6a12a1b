//! OTLP transport: sends one encoded export request over gRPC, HTTP/protobuf
//! or HTTP/JSON and classifies the answer the way the OTLP specification does
//! (success, partial success, retryable failure, permanent failure).
//!
//! Requests travel as protobuf bytes (`Export*ServiceRequest`), the form
//! shared by the bridge's own mapped signals and by forwarded requests; the
//! JSON encoding is produced from them only when the protocol asks for it.
//! The gRPC call uses a pass-through codec so no re-encoding happens.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::settings::{Compression, Protocol, Signal, SignalSettings};

/// How an export attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accepted; `rejected` items were refused by a partial success (not retried).
    Accepted { rejected: u64, message: String },
    /// May succeed later (429/502/503/504, connection errors, gRPC UNAVAILABLE ...).
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed (400, 413, gRPC INVALID_ARGUMENT ...): drop.
    Permanent { reason: String },
}

/// Sends requests for one signal.
pub struct SignalExporter {
    pub settings: SignalSettings,
    http: OnceCell<Result<HttpClient, String>>,
    grpc: OnceCell<Result<tonic::transport::Channel, String>>,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

fn http_client(settings: &SignalSettings) -> Result<HttpClient, String> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.enforce_http(false);
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
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// The gRPC channel (connected lazily). For `https` endpoints the TLS is
/// ours ([`super::tls::GrpcTlsConnector`]): tonic connects to the same
/// host and port as `http` and sends the requests with the `https` origin.
fn grpc_channel(settings: &SignalSettings) -> Result<tonic::transport::Channel, String> {
    let endpoint = |uri: String| {
        tonic::transport::Endpoint::from_shared(uri)
            .map(|e| e.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true))
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
    tcp.enforce_http(false);
    let connector =
        super::tls::GrpcTlsConnector::new(&settings.tls, &host, tcp).map_err(|e| e.to_string())?;
    Ok(endpoint(format!("http://{host}:{port}"))?
        .origin(origin)
        .connect_with_connector_lazy(connector))
}

impl SignalExporter {
    /// Builds nothing expensive: connections are made on first use.
    pub fn new(settings: SignalSettings) -> Self {
        SignalExporter {
            settings,
            http: OnceCell::new(),
            grpc: OnceCell::new(),
        }
    }

    /// Sends one protobuf-encoded request, giving up at `deadline`.
    pub async fn send(&self, body: Bytes, deadline: Instant) -> Outcome {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Outcome::Retryable {
                reason: "no time left before the deadline".into(),
                retry_after: None,
            };
        }
        let timeout = budget.min(self.settings.timeout);
        let attempt = async {
            match self.settings.protocol {
                Protocol::Grpc => self.send_grpc(body, timeout).await,
                Protocol::HttpProtobuf | Protocol::HttpJson => self.send_http(body).await,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retryable {
                reason: format!("timed out after {} ms", timeout.as_millis()),
                retry_after: None,
            },
        }
    }

    async fn send_http(&self, body: Bytes) -> Outcome {
        let s = &self.settings;
        let client = match self.http.get_or_init(|| async { http_client(s) }).await {
            Ok(c) => c,
            Err(e) => return Outcome::Permanent { reason: e.clone() },
        };
        let (content_type, body) = match s.protocol {
            Protocol::HttpJson => match to_json(s.signal, &body) {
                Ok(json) => ("application/json", Bytes::from(json)),
                Err(e) => return Outcome::Permanent { reason: e },
            },
            _ => ("application/x-protobuf", body),
        };
        let mut req = hyper::Request::post(&s.endpoint).header("content-type", content_type);
        let body = if s.compression == Compression::Gzip {
            req = req.header("content-encoding", "gzip");
            match gzip(&body) {
                Ok(b) => b,
                Err(e) => return Outcome::Permanent { reason: e },
            }
        } else {
            body
        };
        for (k, v) in &s.headers {
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
            .and_then(parse_retry_after);
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        match status {
            200..=299 => partial_success(s.signal, s.protocol, &body),
            429 | 502 | 503 | 504 => Outcome::Retryable {
                reason: format!("HTTP {status}"),
                retry_after,
            },
            _ => Outcome::Permanent {
                reason: format!("HTTP {status}"),
            },
        }
    }

    async fn channel(&self) -> Result<tonic::transport::Channel, String> {
        self.grpc
            .get_or_init(|| async { grpc_channel(&self.settings) })
            .await
            .clone()
    }

    async fn send_grpc(&self, body: Bytes, timeout: Duration) -> Outcome {
        let channel = match self.channel().await {
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
        for (k, v) in &self.settings.headers {
            if let (Ok(k), Ok(v)) = (
                tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
                tonic::metadata::MetadataValue::try_from(v.as_str()),
            ) {
                req.metadata_mut().insert(k, v);
            }
        }
        let path = hyper::http::uri::PathAndQuery::from_static(self.settings.signal.grpc_path());
        match grpc.unary(req, path, RawCodec).await {
            Ok(resp) => partial_success(self.settings.signal, Protocol::Grpc, resp.get_ref()),
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

/// OTLP/gRPC retry rules (specification "Failures"): RESOURCE_EXHAUSTED is
/// retryable only when the server says when (a `RetryInfo` detail), whose
/// delay is honoured like HTTP's `Retry-After`.
pub fn classify_grpc(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    let retry_after = retry_info(status.details());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retryable {
            reason,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => Outcome::Retryable {
            reason,
            retry_after,
        },
        // Made up on this side from a broken connection (tonic's "transport
        // error", with the cause attached), not answered by the server: the
        // request may never have arrived, so it is sent again.
        Code::Unknown if std::error::Error::source(status).is_some() => Outcome::Retryable {
            reason,
            retry_after: None,
        },
        _ => Outcome::Permanent { reason },
    }
}

/// The `RetryInfo.retry_delay` in a status' details, capped at 600 s.
fn retry_info(details: &[u8]) -> Option<Duration> {
    use super::rpc::{RetryInfo, RpcStatus};
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .find_map(|a| RetryInfo::decode(a.value.as_slice()).ok()?.retry_delay)
        .map(|d| {
            Duration::from_secs(d.seconds.clamp(0, 600) as u64)
                + Duration::from_nanos(d.nanos.clamp(0, 999_999_999) as u64)
        })
}

/// `Retry-After`: delay in seconds (HTTP-dates are treated as absent).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(600)))
}

fn partial_success(signal: Signal, protocol: Protocol, body: &[u8]) -> Outcome {
    let (rejected, message) = if body.is_empty() {
        (0, String::new())
    } else if protocol == Protocol::HttpJson {
        decode_partial_json(signal, body)
    } else {
        decode_partial_proto(signal, body)
    };
    Outcome::Accepted { rejected, message }
}

fn decode_partial_proto(signal: Signal, body: &[u8]) -> (u64, String) {
    match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans.max(0) as u64, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points.max(0) as u64, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records.max(0) as u64, p.error_message)),
    }
    .unwrap_or_default()
}

fn decode_partial_json(signal: Signal, body: &[u8]) -> (u64, String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (0, String::new());
    };
    let Some(p) = v.get("partialSuccess") else {
        return (0, String::new());
    };
    let key = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    let rejected = match p.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let message = p
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_owned();
    (rejected, message)
}

/// Re-encodes a protobuf request as OTLP/JSON.
pub fn to_json(signal: Signal, body: &[u8]) -> Result<Vec<u8>, String> {
    let r = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
        Signal::Logs => ExportLogsServiceRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
    };
    r.map_err(|e| format!("cannot encode as OTLP/JSON: {e}"))
}

fn gzip(body: &[u8]) -> Result<Bytes, String> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)
        .map_err(|e| format!("gzip failed: {e}"))?;
    enc.finish()
        .map(Bytes::from)
        .map_err(|e| format!("gzip failed: {e}"))
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A gRPC codec that passes already-encoded protobuf bytes through.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn partial_success_is_read() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
        let body = ExportLogsServiceResponse {
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
