//! The local OTLP receiver: the function's own OpenTelemetry data (SDK,
//! Powertools, auto-instrumentation) sent to `127.0.0.1:4317` (gRPC) or
//! `127.0.0.1:4318` (HTTP: `/v1/traces`, `/v1/metrics`, `/v1/logs`,
//! protobuf or JSON, gzip) goes into the same outbox as the bridge's own
//! data and leaves at the same flush points, so nothing the function sent
//! is lost when the sandbox freezes.
//!
//! Requests are forwarded as received: decoded only to check them, count
//! their items and optionally add the Lambda resource attributes the
//! function did not set, then re-encoded as protobuf (the outbox's form).
//! Answers are a collector's: success (an empty response), 400 for an
//! undecodable body, 413 over the size limit, 415 for an unknown content
//! type, 503 with `Retry-After` (gRPC UNAVAILABLE with `RetryInfo`) when the
//! outbox has no room.
//!
//! Both listeners are bound before the first `/next` (binding costs a few
//! microseconds), so exports made during the function's init are accepted.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::export::outbox::{DropReason, Origin};
use crate::export::settings::Signal;
use crate::export::{count_items, Exporter};

/// Receiver settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    pub enabled: bool,
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    /// Add the bridge's `faas.*` / `cloud.*` resource attributes the function did not set.
    pub enrich: bool,
    /// Largest request accepted (after decompression).
    pub max_body_bytes: usize,
}

/// What the receivers share: the exporter's outbox and the attributes to add.
pub struct Forwarder {
    exporter: Arc<Exporter>,
    enrich: bool,
    /// The bridge's `faas.*` and `cloud.*` resource attributes.
    lambda_attributes: Mutex<Vec<KeyValue>>,
    pub stats: Mutex<ReceiverStats>,
}

/// Counters of the local receiver.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReceiverStats {
    pub requests: u64,
    pub refused_full: u64,
    pub bad_requests: u64,
}

/// Why a request was not accepted.
#[derive(Debug)]
enum Refusal {
    Full,
}

impl Forwarder {
    pub fn new(exporter: Arc<Exporter>, enrich: bool) -> Self {
        Forwarder {
            exporter,
            enrich,
            lambda_attributes: Mutex::new(Vec::new()),
            stats: Mutex::new(ReceiverStats::default()),
        }
    }

    /// Updates the attributes added to forwarded resources (called when the
    /// bridge's resource changes, e.g. `faas.instance` after init).
    pub fn set_lambda_resource(&self, resource: &Resource) {
        let attrs: Vec<KeyValue> = resource
            .attributes
            .iter()
            .filter(|a| a.key.starts_with("faas.") || a.key.starts_with("cloud."))
            .cloned()
            .collect();
        *self
            .lambda_attributes
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = attrs;
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, ReceiverStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enrich(&self, resource: &mut Option<Resource>) {
        if !self.enrich {
            return;
        }
        let add = self
            .lambda_attributes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let r = resource.get_or_insert_with(Resource::default);
        for kv in add.iter() {
            if !r.attributes.iter().any(|a| a.key == kv.key) {
                r.attributes.push(kv.clone());
            }
        }
    }

    fn accept(&self, signal: Signal, body: Bytes) -> Result<(), Refusal> {
        let items = count_items(signal, &body);
        self.accept_parts(signal, vec![(body, items)])
    }

    /// Queues every part of one request, or none (a partial acceptance
    /// would make the function's retry duplicate the accepted parts).
    fn accept_parts(&self, signal: Signal, parts: Vec<(Bytes, u64)>) -> Result<(), Refusal> {
        let bytes: usize = parts.iter().map(|(b, _)| b.len()).sum();
        let items: u64 = parts.iter().map(|(_, n)| n).sum();
        self.stats().requests += 1;
        if !self.exporter.has_room(bytes) {
            self.stats().refused_full += 1;
            self.exporter
                .count_drop(signal, DropReason::OutboxFull, items);
            return Err(Refusal::Full);
        }
        for (body, items) in parts {
            self.exporter
                .enqueue_raw(signal, body, items, Origin::Function);
        }
        Ok(())
    }

    fn forward_traces(&self, mut req: ExportTraceServiceRequest) -> Result<(), Refusal> {
        for rs in &mut req.resource_spans {
            self.enrich(&mut rs.resource);
        }
        self.exporter.redact_traces(&mut req);
        let parts = self.exporter.encode_traces(req);
        self.accept_parts(Signal::Traces, parts)
    }

    fn forward_metrics(&self, mut req: ExportMetricsServiceRequest) -> Result<(), Refusal> {
        for rm in &mut req.resource_metrics {
            self.enrich(&mut rm.resource);
        }
        self.accept(Signal::Metrics, Bytes::from(req.encode_to_vec()))
    }

    fn forward_logs(&self, mut req: ExportLogsServiceRequest) -> Result<(), Refusal> {
        for rl in &mut req.resource_logs {
            self.enrich(&mut rl.resource);
        }
        self.exporter.redact_logs(&mut req);
        let parts = self.exporter.encode_logs(req);
        self.accept_parts(Signal::Logs, parts)
    }
}

// ---- HTTP ------------------------------------------------------------------

#[derive(Clone)]
struct HttpState {
    forwarder: Arc<Forwarder>,
    max: usize,
}

/// The OTLP/HTTP router.
pub fn http_router(forwarder: Arc<Forwarder>, max_body_bytes: usize) -> Router {
    let state = HttpState {
        forwarder,
        max: max_body_bytes,
    };
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

fn content(headers: &HeaderMap) -> Option<Encoding> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/x-protobuf" | "application/protobuf" | "application/octet-stream" => {
            Some(Encoding::Protobuf)
        }
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// An OTLP/HTTP error answer: a `google.rpc.Status` message in the request's encoding.
fn http_error(
    status: StatusCode,
    enc: Encoding,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let code = match status {
        StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        _ => 3,
    };
    let mut resp = match enc {
        Encoding::Json => (
            status,
            [("content-type", "application/json")],
            serde_json::json!({"code": code, "message": message}).to_string(),
        )
            .into_response(),
        Encoding::Protobuf => (
            status,
            [("content-type", "application/x-protobuf")],
            crate::export::rpc::RpcStatus {
                code,
                message: message.to_owned(),
                details: Vec::new(),
            }
            .encode_to_vec(),
        )
            .into_response(),
    };
    if let Some(s) = retry_after {
        if let Ok(v) = s.to_string().parse() {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}

fn success<M: Message + serde::Serialize + Default>(enc: Encoding) -> Response {
    let m = M::default();
    match enc {
        Encoding::Json => (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{}".to_string(),
        )
            .into_response(),
        Encoding::Protobuf => (
            StatusCode::OK,
            [("content-type", "application/x-protobuf")],
            m.encode_to_vec(),
        )
            .into_response(),
    }
}

/// Reads the body: gunzip when asked, bounded by `max` after decompression.
fn body_bytes(headers: &HeaderMap, body: Bytes, max: usize) -> Result<Bytes, (StatusCode, String)> {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body),
        "gzip" => gunzip(&body, max).map(Bytes::from),
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content-encoding {other:?}"),
        )),
    }
}

/// Most bytes reserved up front for an un-gzipped body; beyond it the
/// buffer grows with what actually arrives.
const GUNZIP_RESERVE_MAX: usize = 1024 * 1024;

/// Un-gzips a body, bounded by `max` bytes after decompression. The buffer
/// is sized from the compressed length (OTLP compresses about 4:1) but never
/// beyond what the limit allows nor [`GUNZIP_RESERVE_MAX`]: a small request
/// under a large limit must not reserve memory it will not use.
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let reserve = body
        .len()
        .saturating_mul(4)
        .min(max.saturating_add(1))
        .min(GUNZIP_RESERVE_MAX);
    let mut out = Vec::with_capacity(reserve);
    let mut dec = flate2::read::GzDecoder::new(body).take(max as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
    if out.len() > max {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decompressed body exceeds {max} bytes"),
        ));
    }
    Ok(out)
}

fn decode<M: Message + Default + serde::de::DeserializeOwned>(
    enc: Encoding,
    body: &[u8],
) -> Result<M, String> {
    match enc {
        Encoding::Protobuf => M::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
    }
}

async fn handle<M, R>(
    st: &HttpState,
    headers: &HeaderMap,
    body: Bytes,
    forward: impl Fn(&Forwarder, M) -> Result<(), Refusal>,
) -> Response
where
    M: Message + Default + serde::de::DeserializeOwned,
    R: Message + Default + serde::Serialize,
{
    let Some(enc) = content(headers) else {
        st.forwarder.stats().bad_requests += 1;
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Encoding::Json,
            "content-type must be application/x-protobuf or application/json",
            None,
        );
    };
    let body = match body_bytes(headers, body, st.max) {
        Ok(b) => b,
        Err((status, msg)) => {
            st.forwarder.stats().bad_requests += 1;
            return http_error(status, enc, &msg, None);
        }
    };
    let req: M = match decode(enc, &body) {
        Ok(r) => r,
        Err(e) => {
            st.forwarder.stats().bad_requests += 1;
            return http_error(
                StatusCode::BAD_REQUEST,
                enc,
                &format!("undecodable OTLP request: {e}"),
                None,
            );
        }
    };
    match forward(&st.forwarder, req) {
        Ok(()) => success::<R>(enc),
        Err(Refusal::Full) => http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            enc,
            "the bridge's outbox is full; retry later",
            Some(1),
        ),
    }
}

async fn traces(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    handle::<ExportTraceServiceRequest, ExportTraceServiceResponse>(
        &st,
        &headers,
        body,
        Forwarder::forward_traces,
    )
    .await
}

async fn metrics(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    handle::<ExportMetricsServiceRequest, ExportMetricsServiceResponse>(
        &st,
        &headers,
        body,
        Forwarder::forward_metrics,
    )
    .await
}

async fn logs(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    handle::<ExportLogsServiceRequest, ExportLogsServiceResponse>(
        &st,
        &headers,
        body,
        Forwarder::forward_logs,
    )
    .await
}

// ---- gRPC ------------------------------------------------------------------

#[derive(Clone)]
struct Grpc(Arc<Forwarder>);

/// UNAVAILABLE with a one-second `RetryInfo`, as a collector signals throttling.
fn unavailable() -> tonic::Status {
    let message = "the bridge's outbox is full; retry later";
    let details = crate::export::rpc::status_with_retry(
        tonic::Code::Unavailable as i32,
        message,
        std::time::Duration::from_secs(1),
    );
    tonic::Status::with_details(tonic::Code::Unavailable, message, details.into())
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .forward_traces(req.into_inner())
            .map_err(|_| unavailable())?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0
            .forward_metrics(req.into_inner())
            .map_err(|_| unavailable())?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0
            .forward_logs(req.into_inner())
            .map_err(|_| unavailable())?;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Binds and serves the configured listeners. A listener that cannot bind
/// (the port is taken, e.g. by another extension) is reported and skipped:
/// the function's telemetry pipeline must never break the bridge's own.
///
/// The sockets are bound at once (connections queue in the kernel's
/// backlog); serving starts when `go` turns true, which the lifecycle does
/// as it makes its first `/next` call, so setting up the servers costs the
/// extension's init nothing.
pub async fn start(
    cfg: &ReceiverConfig,
    forwarder: Arc<Forwarder>,
    go: tokio::sync::watch::Receiver<bool>,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    if !cfg.enabled {
        return (None, None);
    }
    let mut bound = (None, None);
    if let Some(addr) = cfg.grpc_addr {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                bound.0 = listener.local_addr().ok();
                let grpc = Grpc(forwarder.clone());
                let max = cfg.max_body_bytes;
                                let gzip = tonic::codec::CompressionEncoding::Gzip;
                let mut go = go.clone();
                tokio::spawn(async move {
                    let _ = go.wait_for(|v| *v).await;
                    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                    let result = tonic::transport::Server::builder()
                        .add_service(
                            TraceServiceServer::new(grpc.clone())
                                .max_decoding_message_size(max)
                                .accept_compressed(gzip),
                        )
                        .add_service(
                            MetricsServiceServer::new(grpc.clone())
                                .max_decoding_message_size(max)
                                .accept_compressed(gzip),
                        )
                        .add_service(
                            LogsServiceServer::new(grpc)
                                .max_decoding_message_size(max)
                                .accept_compressed(gzip),
                        )
                        .serve_with_incoming(incoming)
                        .await;
                    if let Err(e) = result {
                        tracing::error!("local OTLP/gRPC receiver stopped: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!(
                "local OTLP/gRPC receiver not started: cannot listen on {addr} (LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR): {e}"
            ),
        }
    }
    if let Some(addr) = cfg.http_addr {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                bound.1 = listener.local_addr().ok();
                                let max = cfg.max_body_bytes;
                let mut go = go.clone();
                tokio::spawn(async move {
                    let _ = go.wait_for(|v| *v).await;
                    let router = http_router(forwarder, max);
                    if let Err(e) = axum::serve(listener, router).await {
                        tracing::error!("local OTLP/HTTP receiver stopped: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!(
                "local OTLP/HTTP receiver not started: cannot listen on {addr} (LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR): {e}"
            ),
        }
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` gzipped without compression (stored blocks): the compressed
    /// body is as long as the data, like incompressible telemetry.
    fn stored_gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gunzip_reserves_no_more_than_the_limit_allows() {
        // 100 KiB under a 120 KiB limit: four times the compressed size
        // would be 400 KiB; the limit caps it.
        let data = vec![7u8; 100 * 1024];
        let max = 120 * 1024;
        let out = gunzip(&stored_gzip(&data), max).unwrap();
        assert_eq!(out, data);
        assert!(out.capacity() <= max + 1, "reserved {}", out.capacity());

        // 2 MiB under a 64 MiB limit: at most 1 MiB up front, then the
        // buffer grows with the data (not 8 MiB at once).
        let data = vec![7u8; 2 * 1024 * 1024];
        let out = gunzip(&stored_gzip(&data), 64 * 1024 * 1024).unwrap();
        assert_eq!(out.len(), data.len());
        assert!(
            out.capacity() <= 4 * 1024 * 1024,
            "reserved {}",
            out.capacity()
        );
    }

    #[test]
    fn gunzip_enforces_the_limit_and_rejects_bad_bodies() {
        let body = stored_gzip(&[1u8; 2000]);
        assert_eq!(gunzip(&body, 2000).unwrap().len(), 2000);
        assert_eq!(
            gunzip(&body, 1999).unwrap_err().0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            gunzip(b"not gzip", 2000).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
    }
}
