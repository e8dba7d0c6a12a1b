//! The local OTLP receiver: the function's own OpenTelemetry data (SDK,
//! Powertools, auto-instrumentation) sent to `127.0.0.1:4317` (gRPC) or
//! `127.0.0.1:4318` (HTTP: `/v1/traces`, `/v1/metrics`, `/v1/logs`,
//! protobuf or JSON, gzip) goes into the same outbox as the bridge's own
//! data and leaves at the same flush points, so nothing the function sent
//! is lost when the sandbox freezes.
//!
//! Protobuf requests (OTLP/HTTP protobuf, OTLP/gRPC) are forwarded as
//! received: decoded only to check them, count their items and see which
//! Lambda resource attributes (`faas.*`, `cloud.*`) each resource lacks,
//! while what is queued are the received bytes, with the missing attributes
//! appended and, over the part size, split at the wire level
//! ([`crate::wire`]). So fields newer than the bridge's OTLP version reach
//! the collector. Two paths decode and re-encode instead (prost), and lose
//! such fields: OTLP/JSON (the outbox holds protobuf; there are no bytes to
//! keep), and traces and logs when redaction is configured (it rewrites
//! values inside the records).
//!
//! Answers are a collector's: success (an empty response), 400 for an
//! undecodable body, 413 over the size limit, 415 for an unknown content
//! type.
//!
//! The function is never made to wait or retry because of the collector
//! (its SDK would do so inside the handler, billed to the function): a
//! request is accepted even when the outbox is full, and the outbox drops
//! its oldest data to make room (counted as `outbox_full`). Only a part that
//! can never fit, larger than the whole outbox, is left out: its items are
//! counted the same way and answered as an OTLP partial success
//! (`rejected_spans` / `rejected_data_points` / `rejected_log_records` with
//! an error message), which clients do not retry. No answer of this
//! receiver is a retryable status.
//!
//! Both listeners are bound before the first `/next` (binding costs a few
//! microseconds), so exports made during the function's init are accepted.

mod grpc_server;
mod http_server;

use grpc_server::GrpcExport;
pub use http_server::http_router;

use std::convert::Infallible;
use std::io::Read;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};

use crate::counters::Count;
use crate::export::codec::RawCodec;
use crate::export::outbox::DropReason;
use crate::export::settings::Signal;
use crate::export::{log_items, metric_items, span_items, Exporter, Part};
use crate::options::read::{flag, int, text_or_default};
use crate::options::table::{
    Text, RECEIVER, RECEIVER_ALLOW_NON_LOOPBACK, RECEIVER_ENRICH, RECEIVER_GRPC_ADDR,
    RECEIVER_HTTP_ADDR, RECEIVER_MAX_BODY_BYTES,
};
use crate::options::{ConfigError, Env};
use crate::stage::{Origin, Stage};

/// Receiver settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSettings {
    pub enabled: bool,
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    /// Add the bridge's `faas.*` / `cloud.*` resource attributes the function did not set.
    pub enrich: bool,
    /// Largest request accepted (after decompression).
    pub max_body_bytes: usize,
}

impl ReceiverSettings {
    /// The receiver's settings, and the start-up warnings they call for.
    /// The receiver has no authentication: an address other than loopback
    /// (`0.0.0.0`, the sandbox's own address) would let anyone who reaches
    /// it send telemetry in the function's name, so it is a configuration
    /// error unless `LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK=true`,
    /// and then warned about.
    pub fn from_env(env: &dyn Env) -> Result<(ReceiverSettings, Vec<String>), ConfigError> {
        let enabled = flag(env, &RECEIVER)?;
        let allow_var = RECEIVER_ALLOW_NON_LOOPBACK.name;
        let allow_non_loopback = flag(env, &RECEIVER_ALLOW_NON_LOOPBACK)?;
        let mut warnings = Vec::new();
        let mut addr = |setting: &Text| -> Result<Option<SocketAddr>, ConfigError> {
            let given = text_or_default(env, setting);
            let (var, v) = (given.var.as_str(), given.value.as_str());
            if v.trim().eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            let a: SocketAddr = v.trim().parse().map_err(|_| {
                ConfigError::new(var, v, "expected ip:port (e.g. 127.0.0.1:4318) or off")
            })?;
            if enabled && !a.ip().to_canonical().is_loopback() {
                if !allow_non_loopback {
                    return Err(ConfigError::new(
                        var,
                        v,
                        format!(
                            "not a loopback address: the local OTLP receiver has no authentication, \
                             so anyone who can reach {a} could send telemetry in the function's name; \
                             use 127.0.0.1 (or [::1]), or set {allow_var}=true to accept that"
                        ),
                    ));
                }
                warnings.push(format!(
                    "the local OTLP receiver listens on {a} ({var}), not only on loopback, as \
                     {allow_var}=true allows: it has no authentication, and whatever reaches that \
                     address is forwarded to the collector as the function's telemetry"
                ));
            }
            Ok(Some(a))
        };
        let grpc_addr = addr(&RECEIVER_GRPC_ADDR)?;
        let http_addr = addr(&RECEIVER_HTTP_ADDR)?;
        let receiver = ReceiverSettings {
            enabled,
            grpc_addr,
            http_addr,
            enrich: flag(env, &RECEIVER_ENRICH)?,
            max_body_bytes: int(env, &RECEIVER_MAX_BODY_BYTES)? as usize,
        };
        Ok((receiver, warnings))
    }
}

/// What the receivers share: the processing stage and the exporter's outbox.
pub struct Forwarder {
    exporter: Arc<Exporter>,
    stage: Arc<Stage>,
}

/// What became of an accepted request's items: all queued (`rejected` 0,
/// no message), or some rejected because they can never fit in the outbox.
/// Answered as an OTLP partial success, which clients do not retry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: u64,
    pub message: String,
}

/// An OTLP export request of one signal, as the receiver handles it.
trait ExportRequest: Message + Default + serde::de::DeserializeOwned + Send + 'static {
    const SIGNAL: Signal;
    /// What its items are called, in answers.
    const ITEMS: &'static str;
    /// The gRPC service that receives it.
    const GRPC_SERVICE: &'static str;
    type Response: Message + serde::Serialize + Default + Send + 'static;
    /// The resource of every `resource_*` entry.
    fn resources(&self) -> Vec<Option<&Resource>>;
    /// Spans, data points or log records.
    fn items(&self) -> u64;
    /// Through the processing stage's steps, decoded.
    fn into_parts(self, stage: &Stage) -> Vec<Part>;
    /// The answer: empty, or a partial success.
    fn response(accepted: &Accepted) -> Self::Response;
}

/// The count of a partial success.
fn rejected(a: &Accepted) -> i64 {
    a.rejected.min(i64::MAX as u64) as i64
}

impl ExportRequest for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;
    const ITEMS: &'static str = "spans";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    type Response = ExportTraceServiceResponse;
    fn resources(&self) -> Vec<Option<&Resource>> {
        self.resource_spans
            .iter()
            .map(|r| r.resource.as_ref())
            .collect()
    }
    fn items(&self) -> u64 {
        span_items(self)
    }
    fn into_parts(self, stage: &Stage) -> Vec<Part> {
        stage.traces(self, Origin::Function)
    }
    fn response(a: &Accepted) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (a != &Accepted::default()).then(|| ExportTracePartialSuccess {
                rejected_spans: rejected(a),
                error_message: a.message.clone(),
            }),
        }
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;
    const ITEMS: &'static str = "data points";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    type Response = ExportMetricsServiceResponse;
    fn resources(&self) -> Vec<Option<&Resource>> {
        self.resource_metrics
            .iter()
            .map(|r| r.resource.as_ref())
            .collect()
    }
    fn items(&self) -> u64 {
        metric_items(self)
    }
    fn into_parts(self, stage: &Stage) -> Vec<Part> {
        stage.metrics(self, Origin::Function)
    }
    fn response(a: &Accepted) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (a != &Accepted::default()).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejected(a),
                error_message: a.message.clone(),
            }),
        }
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    const SIGNAL: Signal = Signal::Logs;
    const ITEMS: &'static str = "log records";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    type Response = ExportLogsServiceResponse;
    fn resources(&self) -> Vec<Option<&Resource>> {
        self.resource_logs
            .iter()
            .map(|r| r.resource.as_ref())
            .collect()
    }
    fn items(&self) -> u64 {
        log_items(self)
    }
    fn into_parts(self, stage: &Stage) -> Vec<Part> {
        stage.logs(self, Origin::Function)
    }
    fn response(a: &Accepted) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (a != &Accepted::default()).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejected(a),
                error_message: a.message.clone(),
            }),
        }
    }
}

impl Forwarder {
    pub fn new(exporter: Arc<Exporter>, stage: Arc<Stage>) -> Self {
        Forwarder { exporter, stage }
    }

    /// Counts a request refused as malformed.
    pub(super) fn count_bad_request(&self) {
        self.exporter.counters().add(Count::LocalBadRequests, 1);
    }

    /// Queues a decoded request: enriched, redacted, split and re-encoded
    /// (prost) by the stage. Fields the bridge's OTLP version does not know
    /// are lost on this path; it serves OTLP/JSON and redaction.
    fn forward<R: ExportRequest>(&self, req: R) -> Accepted {
        let parts = req.into_parts(&self.stage);
        self.queue::<R>(parts)
    }

    /// Queues a protobuf request as received. It is decoded to check it,
    /// count its items and see which attributes each resource lacks, but
    /// what is queued are the received bytes, enriched and split at the wire
    /// level ([`Stage::forward_bytes`]): fields newer than the bridge's OTLP
    /// version survive. Where the stage cannot keep the bytes (redaction, a
    /// destination's limits: [`Stage::keeps_bytes`]) the decoded path
    /// ([`Self::forward`]) is taken.
    fn forward_protobuf<R: ExportRequest>(&self, body: Bytes) -> Result<Accepted, String> {
        let req = R::decode(&body[..]).map_err(|e| e.to_string())?;
        let items = req.items();
        if !self.stage.keeps_bytes(R::SIGNAL, items, body.len()) {
            return Ok(self.forward(req));
        }
        match self
            .stage
            .forward_bytes(R::SIGNAL, body, &req.resources(), items)
        {
            Ok(parts) => Ok(self.queue::<R>(parts)),
            Err(e) => {
                // Not expected after a successful decode; re-encoding is safe.
                tracing::debug!("forwarding a re-encoded request: {e}");
                Ok(self.forward(req))
            }
        }
    }

    /// Queues every part that can fit in the outbox. The outbox makes room
    /// by dropping its oldest data (counted as `outbox_full`): the function
    /// is never asked to wait or retry because the collector is slow or
    /// down. Only a part larger than the whole outbox is left out; its items
    /// are counted as `outbox_full` too and answered as rejected.
    fn queue<R: ExportRequest>(&self, parts: Vec<Part>) -> Accepted {
        let cap = self.exporter.outbox_capacity();
        let mut accepted = Accepted::default();
        let mut too_large = 0usize;
        let (fit, over): (Vec<Part>, Vec<Part>) =
            parts.into_iter().partition(|p| p.body.len() <= cap);
        for p in over {
            too_large += 1;
            accepted.rejected += p.items;
            self.exporter
                .count_drop(R::SIGNAL, DropReason::OutboxFull, p.items);
        }
        self.exporter.queue(fit);
        if too_large > 0 {
            accepted.message = format!(
                "{} {} dropped: larger than the bridge's whole outbox ({cap} bytes, \
                 LAMBDA_OTEL_BRIDGE_OUTBOX_MAX_BYTES)",
                accepted.rejected,
                R::ITEMS,
            );
        }
        self.exporter.counters().add(Count::LocalRequests, 1);
        accepted
    }
}

/// The local receiver's sockets, bound and not yet served.
#[derive(Debug, Default)]
pub struct Bound {
    grpc: Option<std::net::TcpListener>,
    http: Option<std::net::TcpListener>,
    max_body_bytes: usize,
}

impl Bound {
    /// The addresses listened on: gRPC, HTTP.
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |l: &Option<std::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        (addr(&self.grpc), addr(&self.http))
    }
}

/// Binds the configured listeners, before the extension registers: Lambda
/// starts the runtime (and the function's init code, which may export) as
/// soon as every extension has registered, and connections that arrive
/// before serving starts wait in the kernel's backlog. A listener that
/// cannot bind (the port is taken, e.g. by another extension) is reported
/// and skipped: the function's telemetry pipeline must never break the
/// bridge's own. Blocking (no async runtime exists yet): binding is a few
/// system calls.
pub fn bind(cfg: &ReceiverSettings) -> Bound {
    let mut bound = Bound {
        max_body_bytes: cfg.max_body_bytes,
        ..Bound::default()
    };
    if !cfg.enabled {
        return bound;
    }
    if let Some(addr) = cfg.grpc_addr {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => bound.grpc = Some(listener),
            Err(e) => tracing::warn!(
                "local OTLP/gRPC receiver not started: cannot listen on {addr} (LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR): {e}"
            ),
        }
    }
    if let Some(addr) = cfg.http_addr {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => bound.http = Some(listener),
            Err(e) => tracing::warn!(
                "local OTLP/HTTP receiver not started: cannot listen on {addr} (LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR): {e}"
            ),
        }
    }
    bound
}

/// Serves the bound listeners; the lifecycle calls it after the first
/// `/next` is sent, so setting up the servers costs the extension's init
/// nothing. A listener the async runtime cannot take over is reported and
/// skipped.
pub fn serve(bound: Bound, forwarder: Arc<Forwarder>) {
    let max = bound.max_body_bytes;
    if let Some(listener) = bound.grpc.and_then(|l| take_over(l, "gRPC")) {
        let traces = GrpcExport::<ExportTraceServiceRequest>::new(forwarder.clone(), max);
        let metrics = GrpcExport::<ExportMetricsServiceRequest>::new(forwarder.clone(), max);
        let logs = GrpcExport::<ExportLogsServiceRequest>::new(forwarder.clone(), max);
        tokio::spawn(async move {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let result = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(metrics)
                .add_service(logs)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = result {
                tracing::error!("local OTLP/gRPC receiver stopped: {e}");
            }
        });
    }
    if let Some(listener) = bound.http.and_then(|l| take_over(l, "HTTP")) {
        tokio::spawn(async move {
            let router = http_router(forwarder, max);
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("local OTLP/HTTP receiver stopped: {e}");
            }
        });
    }
}

/// A listener bound before the async runtime existed, on the runtime.
fn take_over(listener: std::net::TcpListener, which: &str) -> Option<tokio::net::TcpListener> {
    let taken = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener));
    match taken {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("local OTLP/{which} receiver not started: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
    #[allow(unused_imports)]
    use grpc_server::Export;
    #[allow(unused_imports)]
    use http_server::*;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use tokio::sync::watch;

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

    use crate::export::settings::ExportSettings;
    use crate::options::env_of;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    const OUTBOX: usize = 64 * 1024;

    /// A forwarder in front of an outbox of `OUTBOX` bytes whose collector
    /// is down (nothing is ever flushed here).
    fn state() -> (Arc<Exporter>, HttpState) {
        let env = env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]);
        let settings = ExportSettings::from_env(&env).unwrap();
        let exporter = Arc::new(Exporter::new(&settings, OUTBOX));
        let stage = Arc::new(Stage::new(&settings, OUTBOX));
        let forwarder = Arc::new(Forwarder::new(exporter.clone(), stage));
        (
            exporter,
            HttpState {
                forwarder,
                max: 4 * 1024 * 1024,
            },
        )
    }

    fn text(s: String) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        })
    }

    /// One log request with a record per body length.
    fn logs(lens: &[usize]) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: lens
                        .iter()
                        .map(|n| LogRecord {
                            body: text("x".repeat(*n)),
                            ..LogRecord::default()
                        })
                        .collect(),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    async fn post_logs(st: &HttpState, json: bool, req: &ExportLogsServiceRequest) -> Response {
        let mut headers = HeaderMap::new();
        let body = if json {
            headers.insert("content-type", "application/json".parse().unwrap());
            Bytes::from(serde_json::to_vec(req).unwrap())
        } else {
            headers.insert("content-type", "application/x-protobuf".parse().unwrap());
            Bytes::from(req.encode_to_vec())
        };
        handle::<ExportLogsServiceRequest>(st, &headers, body).await
    }

    /// A gRPC `Export` call as the server makes it, with the message as bytes.
    async fn grpc_export<R: ExportRequest>(
        forwarder: &Arc<Forwarder>,
        req: &R,
    ) -> Result<R::Response, tonic::Status> {
        use tonic::server::UnaryService;
        let mut call = Export::<R>(forwarder.clone(), PhantomData);
        let resp = call
            .call(tonic::Request::new(Bytes::from(req.encode_to_vec())))
            .await?;
        Ok(R::Response::decode(resp.into_inner()).expect("a response message"))
    }

    async fn answer(resp: Response) -> (StatusCode, Bytes) {
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body)
    }

    fn outbox_full(exporter: &Exporter, signal: Signal) -> u64 {
        exporter
            .drops()
            .get(&(signal, DropReason::OutboxFull))
            .copied()
            .unwrap_or(0)
    }

    /// A body over the limit is refused unread, like a collector would
    /// (413 with a `google.rpc.Status` in the request's encoding, counted),
    /// and the answer says the connection closes.
    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_and_closes_the_connection() {
        use tower_service::Service;
        let (exporter, st) = state();
        let mut router = http_router(st.forwarder.clone(), 1024);
        let req = axum::http::Request::post("/v1/logs")
            .header("content-type", "application/x-protobuf")
            .body(axum::body::Body::from(vec![0u8; 2048]))
            .unwrap();
        let resp = router.call(req).await.unwrap();
        assert_eq!(
            resp.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        let (status, body) = answer(resp).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let rpc = crate::export::rpc::RpcStatus::decode(body).expect("a google.rpc.Status");
        assert_eq!(rpc.code, 8, "{rpc:?}");
        assert_eq!(exporter.counters().get(Count::LocalBadRequests), 1);
    }

    #[tokio::test]
    async fn a_full_outbox_drops_its_oldest_data_and_never_refuses_the_function() {
        let (exporter, st) = state();
        // Six requests of ~20 KB into a 64 KiB outbox: every one is accepted
        // with an empty answer; the oldest three make room for the newest.
        for i in 0..6 {
            let (status, body) = answer(post_logs(&st, false, &logs(&[20_000])).await).await;
            assert_eq!(status, StatusCode::OK, "request {i}");
            assert_eq!(
                ExportLogsServiceResponse::decode(body).unwrap(),
                ExportLogsServiceResponse::default(),
                "request {i}: no partial success"
            );
        }
        assert_eq!(outbox_full(&exporter, Signal::Logs), 3);
        assert!(
            exporter.queued_bytes() >= 3 * 20_000,
            "{}",
            exporter.queued_bytes()
        );
        assert!(exporter.queued_bytes() <= OUTBOX);
        assert_eq!(exporter.counters().get(Count::LocalRequests), 6);

        // The same over gRPC.
        let resp = grpc_export(&st.forwarder, &logs(&[20_000]))
            .await
            .expect("accepted");
        assert_eq!(resp, ExportLogsServiceResponse::default());
        assert_eq!(outbox_full(&exporter, Signal::Logs), 4);
    }

    #[tokio::test]
    async fn only_what_can_never_fit_is_rejected_as_a_partial_success() {
        let (exporter, st) = state();
        // A record larger than the whole outbox between two small ones:
        // the small ones are queued, the large one is rejected and counted.
        let req = logs(&[100, OUTBOX + 1000, 100]);
        let (status, body) = answer(post_logs(&st, false, &req).await).await;
        assert_eq!(status, StatusCode::OK);
        let partial = ExportLogsServiceResponse::decode(body)
            .unwrap()
            .partial_success
            .expect("a partial success");
        assert_eq!(partial.rejected_log_records, 1);
        assert!(
            partial
                .error_message
                .contains("LAMBDA_OTEL_BRIDGE_OUTBOX_MAX_BYTES"),
            "{}",
            partial.error_message
        );
        assert_eq!(outbox_full(&exporter, Signal::Logs), 1);
        assert!(exporter.queued_bytes() > 200 && exporter.queued_bytes() < 1000);

        // OTLP/JSON: the same answer in JSON.
        let (status, body) = answer(post_logs(&st, true, &req).await).await;
        assert_eq!(status, StatusCode::OK);
        let json: ExportLogsServiceResponse = serde_json::from_slice(&body).unwrap();
        assert_eq!(json.partial_success.unwrap().rejected_log_records, 1);

        // gRPC: OK with rejected_spans, not an error status.
        let span = Span {
            name: "y".repeat(OUTBOX + 1000),
            ..Span::default()
        };
        let traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span, Span::default()],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let resp = grpc_export(&st.forwarder, &traces).await.expect("accepted");
        assert_eq!(resp.partial_success.map(|p| p.rejected_spans), Some(1));
        assert_eq!(outbox_full(&exporter, Signal::Traces), 1);
    }

    /// A trace request with fields newer than the bridge's OTLP: field 1000
    /// in a Span, 999 in the ResourceSpans, 77 in the Resource, 50 in the
    /// request. `with_lambda`: its resource already has the attributes the
    /// bridge would add.
    fn request_from_the_future(with_lambda: bool) -> Vec<u8> {
        let field = |number: u32, value: &[u8]| {
            let mut out = Vec::new();
            wire::put_len_field(&mut out, number, value);
            out
        };
        let span = [
            Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                name: "handler".into(),
                ..Span::default()
            }
            .encode_to_vec(),
            field(1000, b"a field of a newer OTLP"),
        ]
        .concat();
        let mut attributes = vec![crate::mapping::proto::kv_str("service.name", "orders")];
        if with_lambda {
            attributes.extend(lambda_attributes());
        }
        let resource = [
            Resource {
                attributes,
                ..Resource::default()
            }
            .encode_to_vec(),
            field(77, b"resource extra"),
        ]
        .concat();
        let entry = [
            field(1, &resource),
            field(2, &field(2, &span)),
            field(999, b"entry extra"),
        ]
        .concat();
        [field(1, &entry), field(50, b"request extra")].concat()
    }

    fn lambda_attributes() -> Vec<KeyValue> {
        vec![
            crate::mapping::proto::kv_str("cloud.provider", "aws"),
            crate::mapping::proto::kv_str("faas.name", "orders-fn"),
        ]
    }

    /// A stage that enriches (or not) from a bridge resource with Lambda
    /// attributes.
    fn enriching(enrich: bool) -> Stage {
        let env = env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]);
        let mut resource = Resource {
            attributes: lambda_attributes(),
            ..Resource::default()
        };
        resource
            .attributes
            .push(crate::mapping::proto::kv_str("service.name", "bridge"));
        Stage::new(&ExportSettings::from_env(&env).unwrap(), OUTBOX)
            .with_enrichment(enrich, watch::channel(resource).1)
    }

    /// The bodies and item counts of parts.
    fn bodies(parts: Vec<Part>) -> Vec<(Bytes, u64)> {
        parts.into_iter().map(|p| (p.body, p.items)).collect()
    }

    #[test]
    fn unknown_fields_are_forwarded_byte_for_byte() {
        // Enrichment off, or nothing missing: the request as received.
        for (enrich, with_lambda) in [(false, false), (true, true)] {
            let body = Bytes::from(request_from_the_future(with_lambda));
            let stage = enriching(enrich);
            let req = ExportTraceServiceRequest::decode(&body[..]).unwrap();
            assert!(stage.keeps_bytes(Signal::Traces, req.items(), body.len()));
            let parts = stage
                .forward_bytes(Signal::Traces, body.clone(), &req.resources(), req.items())
                .unwrap();
            assert_eq!(bodies(parts), vec![(body.clone(), 1)], "enrich {enrich}");
            // The decoded path would have lost them.
            let decoded = bodies(req.into_parts(&stage));
            assert_ne!(decoded[0].0, body);
        }
        // Attributes to add: every unknown field is still there, and the
        // result decodes like the decoded path's.
        let body = Bytes::from(request_from_the_future(false));
        let stage = enriching(true);
        let req = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        let parts = bodies(
            stage
                .forward_bytes(Signal::Traces, body.clone(), &req.resources(), req.items())
                .unwrap(),
        );
        assert_eq!(parts.len(), 1);
        let out = &parts[0].0;
        for extra in [
            &b"a field of a newer OTLP"[..],
            b"resource extra",
            b"entry extra",
            b"request extra",
        ] {
            assert!(
                out.windows(extra.len()).any(|w| w == extra),
                "{:?} lost",
                String::from_utf8_lossy(extra)
            );
        }
        let decoded = bodies(req.into_parts(&stage));
        assert_eq!(
            ExportTraceServiceRequest::decode(&out[..]).unwrap(),
            ExportTraceServiceRequest::decode(&decoded[0].0[..]).unwrap()
        );
    }

    #[tokio::test]
    async fn protobuf_over_http_and_grpc_is_queued_as_received_unless_redacted() {
        use tonic::server::UnaryService;
        let body = Bytes::from(request_from_the_future(false));
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/x-protobuf".parse().unwrap());
        let (exporter, st) = state();
        // HTTP: the body as received (enrichment is off here).
        let (status, _) =
            answer(handle::<ExportTraceServiceRequest>(&st, &headers, body.clone()).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(exporter.queued_bytes(), body.len());
        // gRPC: the message as received.
        let mut call = Export::<ExportTraceServiceRequest>(st.forwarder.clone(), PhantomData);
        call.call(tonic::Request::new(body.clone()))
            .await
            .expect("accepted");
        assert_eq!(exporter.queued_bytes(), 2 * body.len());
        // Undecodable over gRPC: INVALID_ARGUMENT, counted.
        let status = call
            .call(tonic::Request::new(Bytes::from_static(b"\xff\xff")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(exporter.counters().get(Count::LocalBadRequests), 1);

        // With redaction the request is decoded and re-encoded: the fields
        // the bridge does not know are lost (documented).
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("LAMBDA_OTEL_BRIDGE_REDACT", "default"),
        ]);
        let redactor = crate::redact::Redactor::from_env(&env)
            .unwrap()
            .map(Arc::new);
        assert!(redactor.is_some());
        let settings = ExportSettings::from_env(&env).unwrap();
        let exporter = Arc::new(Exporter::new(&settings, OUTBOX));
        let stage = Arc::new(Stage::new(&settings, OUTBOX).with_redactor(redactor));
        assert!(!stage.keeps_bytes(Signal::Traces, 1, body.len()));
        let st = HttpState {
            forwarder: Arc::new(Forwarder::new(exporter.clone(), stage)),
            max: 4 * 1024 * 1024,
        };
        let (status, _) =
            answer(handle::<ExportTraceServiceRequest>(&st, &headers, body.clone()).await).await;
        assert_eq!(status, StatusCode::OK);
        let decoded = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        assert_eq!(exporter.queued_bytes(), decoded.encoded_len());
        assert!(decoded.encoded_len() < body.len());
    }
}
