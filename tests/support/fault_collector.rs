//! A scriptable in-process OTLP collector for black-box tests: it receives OTLP/HTTP (protobuf and
//! JSON, optionally gzip-compressed) and OTLP/gRPC, records every request, and answers each one
//! the way the test says — success, partial success, an error status with or without
//! `Retry-After`, no answer at all, or a dropped connection.
//!
//! # Servers
//! * **HTTP/1.1** on `127.0.0.1`: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`.
//!   `content-type: application/x-protobuf` (or `application/protobuf`) is decoded with prost,
//!   `application/json` with the OTLP-JSON serde mapping of `opentelemetry-proto` (hex ids, enum
//!   ints, 64-bit ints as strings). `content-encoding: gzip` is gunzipped first. Other paths
//!   answer 404, other methods 405, other content types 415 (none of these consume a fault).
//!   Bodies (compressed or not) over [`BODY_LIMIT`] answer 413.
//! * **gRPC** (HTTP/2 with prior knowledge, no TLS) on another `127.0.0.1` port: the
//!   `Export` methods of `opentelemetry.proto.collector.{trace,metrics,logs}.v1`, messages
//!   optionally gzip-compressed (`grpc-encoding: gzip`). Unknown methods answer `UNIMPLEMENTED`.
//!
//! # Answers
//! Every request that reaches an OTLP route takes one [`Fault`]: the head of the queue filled by
//! [`FaultCollector::push_faults`], else the value of [`FaultCollector::set_fault`] (initially
//! [`Fault::Ok`]). Success answers carry an `Export*ServiceResponse` encoded like the request
//! (protobuf, or OTLP-JSON with 64-bit ints as strings as the OpenTelemetry Collector writes them);
//! error answers carry a `google.rpc.Status` (protobuf, or JSON for JSON requests) with a
//! `google.rpc.RetryInfo` detail when a retry delay is set. A body that cannot be decoded answers
//! 400 (`INVALID_ARGUMENT` on gRPC) when the fault would have accepted it.
//!
//! One fault core decides the answer for both transports (which fault, decoding, what is
//! recorded and delivered); each transport only writes it. On gRPC an HTTP status fault becomes
//! the gRPC code with the same meaning (see [`http_to_grpc`]: 503 → `UNAVAILABLE`, 429 →
//! `RESOURCE_EXHAUSTED`, 400 → `INVALID_ARGUMENT`, ...) and a retry delay becomes a `RetryInfo`
//! in `grpc-status-details-bin`; [`Fault::Grpc`] sets the gRPC code directly (and maps back
//! with [`grpc_to_http`] on HTTP).
//!
//! # Records
//! [`Received`] is recorded for every request, rejected or not. `status` is the HTTP status that
//! was answered; for gRPC (always HTTP 200 on the wire) it is the HTTP equivalent of the gRPC code
//! (`grpc_status` holds the code itself), so `2xx` means "accepted" on every protocol. Decoded
//! payloads are kept only for accepted requests (2xx, including partial successes), so
//! [`FaultCollector::spans`] etc. show what was delivered, duplicates included.
//!
//! Everything is bounded: servers bind loopback only, and dropping the collector (or
//! [`FaultCollector::stop`]) closes the listeners and every connection and ends every hanging
//! request.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// Largest accepted request body, before and after decompression.
pub const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// gRPC method paths of the three OTLP export services.
pub const GRPC_TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const GRPC_METRICS_PATH: &str =
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub const GRPC_LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// How the collector answers one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 200 with an empty `Export*ServiceResponse` (gRPC `OK`).
    Ok,
    /// This HTTP status (gRPC: the code of the same meaning, see [`http_to_grpc`]), with a
    /// `Retry-After: <seconds>` header (gRPC: `RetryInfo`) when `retry_after` is set. A 2xx code
    /// accepts the data like [`Fault::Ok`] but answers that status with an empty body.
    Status { code: u16, retry_after: Option<u64> },
    /// This gRPC status code (0..=16), with a `RetryInfo` when `retry_after` is set. HTTP
    /// requests get the HTTP status of the same meaning (see [`grpc_to_http`]).
    Grpc { code: i32, retry_after: Option<u64> },
    /// 200 with `partial_success { rejected_<signal>: rejected, error_message: message }`.
    /// The request counts as accepted (its items show up in [`FaultCollector::spans`] etc.).
    PartialSuccess { rejected: i64, message: String },
    /// Read the request, wait this long, then answer like [`Fault::Ok`] (a slow collector).
    Slow(Duration),
    /// Read the request, never answer (until the collector is dropped or stopped).
    Hang,
    /// Read the request, then drop the connection without an answer (on gRPC: the whole HTTP/2
    /// connection, so other streams on it fail too).
    Close,
}

/// One request as the collector saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// When the request head arrived.
    pub at: Instant,
    /// `"traces"`, `"metrics"`, `"logs"`, or `"unknown"` for other paths.
    pub signal: String,
    /// `"http/protobuf"`, `"http/json"`, `"grpc"`, or `"http/unknown"` for other content types.
    pub protocol: String,
    pub method: String,
    pub path: String,
    /// `content-encoding` (HTTP) or `grpc-encoding` (gRPC).
    pub content_encoding: Option<String>,
    /// All request headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The HTTP status answered (for gRPC: the HTTP equivalent of `grpc_status`); 0 when nothing
    /// was answered (Hang, Close, or the client went away before its body was read).
    pub status: u16,
    /// The gRPC status answered (gRPC requests only; `None` for Hang/Close).
    pub grpc_status: Option<i32>,
    /// Spans, metric data points or log records in the request (0 when it could not be decoded).
    pub items: usize,
    /// Body length on the wire (still compressed; for gRPC including the 5-byte frame header).
    pub body_len: usize,
    /// The protobuf request message exactly as received (decompressed; for gRPC without the
    /// frame header), whether or not it could be decoded; `None` for OTLP/JSON and for bodies
    /// that could not be read or decompressed.
    pub message: Option<Bytes>,
    /// Why the body could not be read or decoded, if it could not.
    pub error: Option<String>,
}

impl Received {
    /// The first value of a request header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request was answered with a 2xx status (its data was accepted).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The record of a request whose head just arrived, before anything is answered.
    fn arrived(
        at: Instant,
        head: &hyper::http::request::Parts,
        signal: Option<Signal>,
        protocol: &str,
        content_encoding: Option<String>,
    ) -> Received {
        Received {
            at,
            signal: signal.map_or("unknown", Signal::name).to_string(),
            protocol: protocol.to_string(),
            method: head.method.to_string(),
            path: head.uri.path().to_string(),
            content_encoding,
            headers: header_list(&head.headers),
            status: 0,
            grpc_status: None,
            items: 0,
            body_len: 0,
            message: None,
            error: None,
        }
    }
}

/// `google.rpc.Status`, as sent in error bodies and in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RpcStatus {
    /// The `RetryInfo` delay among the details, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details
            .iter()
            .filter(|d| d.type_url == RETRY_INFO_TYPE_URL)
            .find_map(|d| RetryInfo::decode(&d.value[..]).ok()?.retry_delay)
            .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
    }
}

/// The gRPC code with the meaning of an HTTP status, as this collector answers gRPC requests.
pub fn http_to_grpc(status: u16) -> i32 {
    match status {
        200..=299 => 0,
        400 => 3,        // INVALID_ARGUMENT
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 => 5,        // NOT_FOUND
        408 | 504 => 4,  // DEADLINE_EXCEEDED
        409 => 10,       // ABORTED
        413 | 429 => 8,  // RESOURCE_EXHAUSTED
        499 => 1,        // CANCELLED
        501 => 12,       // UNIMPLEMENTED
        502 | 503 => 14, // UNAVAILABLE
        500 => 13,       // INTERNAL
        _ => 2,          // UNKNOWN
    }
}

/// The HTTP status with the meaning of a gRPC code, as this collector answers HTTP requests
/// for [`Fault::Grpc`] (and records gRPC answers in [`Received::status`]).
pub fn grpc_to_http(code: i32) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Protobuf,
    Json,
    Grpc,
}

/// The transport a request came by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http,
    Grpc,
}

impl Kind {
    /// How this transport answers an HTTP status (gRPC: the code of the same meaning).
    fn http(self, status: u16) -> Code {
        match self {
            Kind::Http => Code::Http(status),
            Kind::Grpc => Code::Grpc(http_to_grpc(status)),
        }
    }

    /// How this transport answers a gRPC code (HTTP: the status of the same meaning).
    fn grpc(self, code: i32) -> Code {
        match self {
            Kind::Http => Code::Http(grpc_to_http(code)),
            Kind::Grpc => Code::Grpc(code),
        }
    }
}

/// A status as the request's transport writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    Http(u16),
    Grpc(i32),
}

impl Code {
    /// Whether the request's data counts as accepted (2xx, gRPC `OK`).
    fn accepts(self) -> bool {
        match self {
            Code::Http(status) => (200..300).contains(&status),
            Code::Grpc(code) => code == 0,
        }
    }

    /// The HTTP status (for gRPC the status of the same meaning).
    fn http_status(self) -> u16 {
        match self {
            Code::Http(status) => status,
            Code::Grpc(code) => grpc_to_http(code),
        }
    }

    /// The gRPC code (for HTTP the code of the same meaning).
    fn grpc_code(self) -> i32 {
        match self {
            Code::Http(status) => http_to_grpc(status),
            Code::Grpc(code) => code,
        }
    }

    /// Notes the answer in the record ([`Received::status`], [`Received::grpc_status`]).
    fn record(self, rec: &mut Received) {
        rec.status = self.http_status();
        if let Code::Grpc(code) = self {
            rec.grpc_status = Some(code);
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Http(status) => write!(f, "HTTP {status}"),
            Code::Grpc(code) => write!(f, "gRPC code {code}"),
        }
    }
}

/// What the fault core decided to answer; each transport writes it in its own way.
enum Answer {
    /// The data is accepted: an `Export*ServiceResponse`, with this partial success if any.
    Accepted { partial: Option<(i64, String)> },
    /// This status with an optional retry delay: an injected fault, or 400/`INVALID_ARGUMENT`
    /// for a body that could not be decoded. A 2xx/`OK` status accepts the data without a
    /// partial success (on HTTP with an empty body).
    Status {
        code: Code,
        retry_after: Option<u64>,
        message: String,
    },
}

/// A decoded export request.
#[derive(Clone, Debug)]
enum Payload {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Payload {
    fn decode(signal: Signal, json: bool, body: &[u8]) -> Result<Payload, String> {
        fn pb<M: prost::Message + Default>(b: &[u8]) -> Result<M, String> {
            M::decode(b).map_err(|e| format!("protobuf: {e}"))
        }
        fn js<M: serde::de::DeserializeOwned>(b: &[u8]) -> Result<M, String> {
            serde_json::from_slice(b).map_err(|e| format!("OTLP-JSON: {e}"))
        }
        Ok(match (signal, json) {
            (Signal::Traces, false) => Payload::Traces(pb(body)?),
            (Signal::Traces, true) => Payload::Traces(js(body)?),
            (Signal::Metrics, false) => Payload::Metrics(pb(body)?),
            (Signal::Metrics, true) => Payload::Metrics(js(body)?),
            (Signal::Logs, false) => Payload::Logs(pb(body)?),
            (Signal::Logs, true) => Payload::Logs(js(body)?),
        })
    }

    fn items(&self) -> usize {
        match self {
            Payload::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            Payload::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(data_points)
                .sum(),
            Payload::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
        }
    }
}

/// Number of data points of a metric (the unit of `rejected_data_points`).
pub fn data_points(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

struct State {
    default: Fault,
    /// A header every request must carry with this value, else the status.
    required: Option<(String, String, u16)>,
    queue: VecDeque<Fault>,
    requests: Vec<Received>,
    accepted: Vec<Payload>,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_fault(&self) -> Fault {
        let mut s = self.lock();
        match s.queue.pop_front() {
            Some(f) => f,
            None => s.default.clone(),
        }
    }

    fn record(&self, rec: Received, accepted: Option<Payload>) {
        let mut s = self.lock();
        s.requests.push(rec);
        if let Some(p) = accepted {
            s.accepted.push(p);
        }
    }
}

/// Per-connection context handed to the request handlers.
#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    /// Closed (sender dropped) when the collector goes away: ends hanging requests.
    shutdown: watch::Receiver<()>,
    /// Tells the connection task to drop the connection ([`Fault::Close`]).
    close: Arc<Notify>,
}

impl Ctx {
    /// Waits until the collector is dropped or stopped.
    async fn wait_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        while rx.changed().await.is_ok() {}
    }
}

/// Listener and connection tasks; `None` once the collector is stopped.
type Tasks = Arc<Mutex<Option<JoinSet<()>>>>;

/// See the module documentation.
pub struct FaultCollector {
    shared: Arc<Shared>,
    tasks: Tasks,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    _shutdown: watch::Sender<()>,
}

impl FaultCollector {
    /// HTTP and gRPC on free loopback ports.
    pub async fn start() -> FaultCollector {
        Self::start_on_ports(0, 0).await
    }

    /// HTTP on this loopback port (e.g. one a previous collector used), gRPC on a free one.
    pub async fn start_on(http_port: u16) -> FaultCollector {
        Self::start_on_ports(http_port, 0).await
    }

    /// HTTP and gRPC on these loopback ports (0: a free one). Panics when a port stays taken
    /// for 5 s.
    pub async fn start_on_ports(http_port: u16, grpc_port: u16) -> FaultCollector {
        let http = bind(http_port).await;
        let grpc = bind(grpc_port).await;
        let http_addr = http.local_addr().expect("local_addr");
        let grpc_addr = grpc.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                default: Fault::Ok,
                required: None,
                queue: VecDeque::new(),
                requests: Vec::new(),
                accepted: Vec::new(),
            }),
        });
        let (tx, rx) = watch::channel(());
        let tasks: Tasks = Arc::new(Mutex::new(Some(JoinSet::new())));
        {
            let mut guard = lock_tasks(&tasks);
            let set = guard.as_mut().expect("fresh task set");
            for (listener, kind) in [(http, Kind::Http), (grpc, Kind::Grpc)] {
                set.spawn(accept_loop(
                    listener,
                    kind,
                    shared.clone(),
                    rx.clone(),
                    tasks.clone(),
                ));
            }
        }
        FaultCollector {
            shared,
            tasks,
            http_addr,
            grpc_addr,
            _shutdown: tx,
        }
    }

    /// `http://127.0.0.1:PORT`, the base of `/v1/traces`, `/v1/metrics`, `/v1/logs`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn http_port(&self) -> u16 {
        self.http_addr.port()
    }

    /// `http://127.0.0.1:PORT` of the gRPC server (plaintext HTTP/2).
    pub fn grpc_endpoint(&self) -> Option<String> {
        Some(format!("http://{}", self.grpc_addr))
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc_addr.port()
    }

    /// The answer to every following request once the queue is empty.
    pub fn set_fault(&self, f: Fault) {
        self.shared.lock().default = f;
    }

    /// Appends answers consumed one per request (before falling back to [`Self::set_fault`]'s).
    pub fn push_faults(&self, fs: Vec<Fault>) {
        self.shared.lock().queue.extend(fs);
    }

    /// From now on a request without header `name: value` is answered
    /// `status` (401 or 403; gRPC UNAUTHENTICATED or PERMISSION_DENIED) and
    /// its data not kept, as a collector that checks an API key does (before
    /// any queued fault is consumed).
    pub fn require_header(&self, name: &str, value: &str, status: u16) {
        self.shared.lock().required = Some((name.to_ascii_lowercase(), value.to_owned(), status));
    }

    /// Queued faults not yet consumed.
    pub fn queued_faults(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Every request so far, in arrival order of their records (a request is recorded once its
    /// answer is decided, or once its body is read for Hang/Close).
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().requests.clone()
    }

    /// Requests of one signal (`"traces"`, `"metrics"`, `"logs"`).
    pub fn requests_for(&self, signal: &str) -> Vec<Received> {
        let s = self.shared.lock();
        s.requests
            .iter()
            .filter(|r| r.signal == signal)
            .cloned()
            .collect()
    }

    /// What `items` takes from each accepted (2xx) request, in order.
    fn accepted<T>(&self, items: impl Fn(&Payload) -> Vec<T>) -> Vec<T> {
        self.shared.lock().accepted.iter().flat_map(items).collect()
    }

    /// Spans of accepted (2xx) requests, in order, duplicates included.
    pub fn spans(&self) -> Vec<Span> {
        self.accepted(|p| match p {
            Payload::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| ss.spans.clone())
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Log records of accepted (2xx) requests, in order, duplicates included.
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.accepted(|p| match p {
            Payload::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .flat_map(|sl| sl.log_records.clone())
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Metrics of accepted (2xx) requests, in order, duplicates included.
    pub fn metrics(&self) -> Vec<Metric> {
        self.accepted(|p| match p {
            Payload::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| sm.metrics.clone())
                .collect(),
            _ => Vec::new(),
        })
    }

    /// The resource of every `Resource{Spans,Metrics,Logs}` of accepted requests, in order
    /// (an absent resource counts as an empty one).
    pub fn resources(&self) -> Vec<Resource> {
        let of = |r: &Option<Resource>| r.clone().unwrap_or_default();
        self.accepted(|p| match p {
            Payload::Traces(r) => r.resource_spans.iter().map(|x| of(&x.resource)).collect(),
            Payload::Metrics(r) => r.resource_metrics.iter().map(|x| of(&x.resource)).collect(),
            Payload::Logs(r) => r.resource_logs.iter().map(|x| of(&x.resource)).collect(),
        })
    }

    /// Polls `f` every 10 ms until it holds; on timeout the error names `what` and lists the
    /// requests received so far.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&FaultCollector) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; requests so far:\n{}",
                    self.summary()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One line per request, for failure messages.
    pub fn summary(&self) -> String {
        let s = self.shared.lock();
        let first = s.requests.first().map(|r| r.at);
        let mut out = String::new();
        for r in &s.requests {
            let t = first.map(|f| r.at.duration_since(f)).unwrap_or_default();
            out.push_str(&format!(
                "  +{:>6}ms {} {} {} enc={:?} status={} grpc={:?} items={}{}\n",
                t.as_millis(),
                r.protocol,
                r.method,
                r.path,
                r.content_encoding,
                r.status,
                r.grpc_status,
                r.items,
                r.error
                    .as_deref()
                    .map(|e| format!(" error={e}"))
                    .unwrap_or_default(),
            ));
        }
        if out.is_empty() {
            out.push_str("  (none)\n");
        }
        out
    }

    /// Closes both listeners (their ports refuse connections once this returns), every
    /// connection, and ends hanging requests.
    pub async fn stop(self) {
        let set = lock_tasks(&self.tasks).take();
        if let Some(mut set) = set {
            set.shutdown().await;
        }
    }
}

impl Drop for FaultCollector {
    fn drop(&mut self) {
        // Dropping the set aborts the listener and connection tasks; dropping `_shutdown` after
        // this ends requests hanging in tasks hyper spawned for HTTP/2 streams.
        let set = lock_tasks(&self.tasks).take();
        drop(set);
    }
}

fn lock_tasks(tasks: &Tasks) -> MutexGuard<'_, Option<JoinSet<()>>> {
    tasks.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds `127.0.0.1:port` with `SO_REUSEADDR`, retrying for up to 5 s while the port is taken.
async fn bind(port: u16) -> TcpListener {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        })();
        match attempt {
            Ok(l) => return l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("fault collector cannot bind {addr}: {e}"),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    kind: Kind,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<()>,
    tasks: Tasks,
) {
    let mut closed = shutdown.clone();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            r = closed.changed() => match r {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        let _ = stream.set_nodelay(true);
        let ctx = Ctx {
            shared: shared.clone(),
            shutdown: shutdown.clone(),
            close: Arc::new(Notify::new()),
        };
        let mut guard = lock_tasks(&tasks);
        let Some(set) = guard.as_mut() else {
            return; // stopped
        };
        while set.try_join_next().is_some() {}
        set.spawn(serve_connection(stream, kind, ctx));
    }
}

async fn serve_connection(stream: TcpStream, kind: Kind, ctx: Ctx) {
    let close = ctx.close.clone();
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let ctx = svc_ctx.clone();
        async move {
            match kind {
                Kind::Http => handle_http(ctx, req).await,
                Kind::Grpc => handle_grpc(ctx, req).await,
            }
        }
    });
    let io = TokioIo::new(stream);
    match kind {
        Kind::Http => {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(io, svc);
            tokio::select! {
                _ = conn => {}
                _ = close.notified() => {}
            }
        }
        Kind::Grpc => {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(io, svc);
            tokio::select! {
                _ = conn => {}
                _ = close.notified() => {}
            }
        }
    }
    // Dropping the connection here closes the socket.
}

/// A response body of at most one data frame, optionally followed by trailers.
pub struct OneBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl OneBody {
    fn empty() -> Self {
        OneBody {
            data: None,
            trailers: None,
        }
    }

    fn data(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        OneBody {
            data: (!b.is_empty()).then_some(b),
            trailers: None,
        }
    }
}

impl Body for OneBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

type HandlerResult = Result<Response<OneBody>, String>;

fn header_list(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
}

enum BodyError {
    TooLarge,
    Read(String),
}

async fn read_body(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(BODY_LIMIT as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if out.len() > BODY_LIMIT {
        return Err(format!("decompressed body exceeds {BODY_LIMIT} bytes"));
    }
    Ok(out)
}

fn decompress(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    match encoding.map(|e| e.to_ascii_lowercase()) {
        None => Ok(body.to_vec()),
        Some(e) if e.is_empty() || e == "identity" => Ok(body.to_vec()),
        Some(e) if e == "gzip" => gunzip(body),
        Some(e) => Err(format!("unsupported encoding {e:?}")),
    }
}

/// The `Export*ServiceResponse` protobuf for a success.
fn response_proto(signal: Signal, partial: Option<&(i64, String)>) -> Vec<u8> {
    let msg = partial.cloned();
    match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: msg.map(|(n, m)| ExportTracePartialSuccess {
                rejected_spans: n,
                error_message: m,
            }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: msg.map(|(n, m)| ExportMetricsPartialSuccess {
                rejected_data_points: n,
                error_message: m,
            }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: msg.map(|(n, m)| ExportLogsPartialSuccess {
                rejected_log_records: n,
                error_message: m,
            }),
        }
        .encode_to_vec(),
    }
}

/// The OTLP-JSON `Export*ServiceResponse` for a success (int64 as a string, like protojson).
fn response_json(signal: Signal, partial: Option<&(i64, String)>) -> Vec<u8> {
    let v = match partial {
        None => serde_json::json!({}),
        Some((n, m)) => {
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            let mut p = serde_json::Map::new();
            p.insert(field.into(), serde_json::Value::String(n.to_string()));
            p.insert("errorMessage".into(), serde_json::Value::String(m.into()));
            serde_json::json!({ "partialSuccess": p })
        }
    };
    serde_json::to_vec(&v).expect("JSON")
}

fn rpc_status(grpc_code: i32, message: &str, retry_after: Option<u64>) -> RpcStatus {
    RpcStatus {
        code: grpc_code,
        message: message.to_string(),
        details: retry_after
            .map(|s| ProtoAny {
                type_url: RETRY_INFO_TYPE_URL.into(),
                value: RetryInfo {
                    retry_delay: Some(ProtoDuration {
                        seconds: s as i64,
                        nanos: 0,
                    }),
                }
                .encode_to_vec(),
            })
            .into_iter()
            .collect(),
    }
}

fn rpc_status_json(grpc_code: i32, message: &str, retry_after: Option<u64>) -> Vec<u8> {
    let mut v = serde_json::json!({ "code": grpc_code, "message": message });
    if let Some(s) = retry_after {
        v["details"] =
            serde_json::json!([{ "@type": RETRY_INFO_TYPE_URL, "retryDelay": format!("{s}s") }]);
    }
    serde_json::to_vec(&v).expect("JSON")
}

fn http_response(status: u16, content_type: Option<&str>, body: Vec<u8>) -> Response<OneBody> {
    let mut r = Response::new(OneBody::data(body));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert("content-type", HeaderValue::from_str(ct).expect("ct"));
    }
    r
}

/// An HTTP error answer: `google.rpc.Status` in the request's encoding.
fn http_error(
    status: u16,
    json: bool,
    retry_after: Option<u64>,
    message: &str,
) -> Response<OneBody> {
    let code = http_to_grpc(status);
    let mut r = if json {
        http_response(
            status,
            Some("application/json"),
            rpc_status_json(code, message, retry_after),
        )
    } else {
        http_response(
            status,
            Some("application/x-protobuf"),
            rpc_status(code, message, retry_after).encode_to_vec(),
        )
    };
    if let Some(s) = retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    r
}

/// The fault core of both transports: takes the request's [`Fault`] (after waiting out
/// [`Fault::Slow`]), decodes the OTLP message `raw` (decompressed; protobuf, or OTLP-JSON when
/// `json`), records the request with what it delivered, and decides the answer. For
/// [`Fault::Hang`] and [`Fault::Close`] (which first drops the connection) it returns an error
/// once the collector goes away, and nothing is answered.
async fn answer(
    ctx: &Ctx,
    kind: Kind,
    mut rec: Received,
    signal: Signal,
    json: bool,
    raw: Result<Vec<u8>, String>,
) -> Result<Answer, String> {
    let required = ctx.shared.lock().required.clone();
    let refused = required.and_then(|(name, value, status)| {
        (rec.header(&name) != Some(value.as_str())).then_some(status)
    });
    let next = match refused {
        Some(code) => Fault::Status {
            code,
            retry_after: None,
        },
        None => ctx.shared.next_fault(),
    };
    let fault = match next {
        Fault::Slow(by) => {
            tokio::time::sleep(by).await;
            Fault::Ok
        }
        f => f,
    };
    if let (false, Ok(m)) = (json, &raw) {
        rec.message = Some(Bytes::copy_from_slice(m));
    }
    let decoded = raw.and_then(|raw| Payload::decode(signal, json, &raw));
    match &decoded {
        Ok(p) => rec.items = p.items(),
        Err(e) => rec.error = Some(e.clone()),
    }

    let (code, retry_after) = match fault {
        Fault::Hang => {
            ctx.shared.record(rec, None);
            ctx.wait_shutdown().await;
            return Err("fault collector stopped".into());
        }
        Fault::Close => {
            ctx.shared.record(rec, None);
            ctx.close.notify_one();
            ctx.wait_shutdown().await;
            return Err("connection closed by fault".into());
        }
        Fault::Ok | Fault::Slow(_) | Fault::PartialSuccess { .. } => {
            let partial = match fault {
                Fault::PartialSuccess { rejected, message } => Some((rejected, message)),
                _ => None,
            };
            return Ok(match decoded {
                Ok(p) => {
                    kind.grpc(0).record(&mut rec);
                    ctx.shared.record(rec, Some(p));
                    Answer::Accepted { partial }
                }
                Err(message) => {
                    let code = kind.http(400);
                    code.record(&mut rec);
                    ctx.shared.record(rec, None);
                    Answer::Status {
                        code,
                        retry_after: None,
                        message,
                    }
                }
            });
        }
        Fault::Status { code, retry_after } => (kind.http(code), retry_after),
        Fault::Grpc { code, retry_after } => (kind.grpc(code), retry_after),
    };
    code.record(&mut rec);
    let delivered = if code.accepts() { decoded.ok() } else { None };
    ctx.shared.record(rec, delivered);
    Ok(Answer::Status {
        code,
        retry_after,
        message: format!("injected fault: {code}"),
    })
}

async fn handle_http(ctx: Ctx, req: Request<hyper::body::Incoming>) -> HandlerResult {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let signal = match parts.uri.path() {
        "/v1/traces" => Some(Signal::Traces),
        "/v1/metrics" => Some(Signal::Metrics),
        "/v1/logs" => Some(Signal::Logs),
        _ => None,
    };
    let content_type = header_str(&parts.headers, "content-type")
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let wire = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Wire::Protobuf),
        "application/json" => Some(Wire::Json),
        _ => None,
    };
    let json = wire == Some(Wire::Json);
    let content_encoding = header_str(&parts.headers, "content-encoding");
    let protocol = match wire {
        Some(Wire::Protobuf) => "http/protobuf",
        Some(Wire::Json) => "http/json",
        _ => "http/unknown",
    };
    let mut rec = Received::arrived(at, &parts, signal, protocol, content_encoding.clone());

    let declared = header_str(&parts.headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let body = if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        Err(BodyError::TooLarge)
    } else {
        read_body(body, BODY_LIMIT).await
    };
    let body = match body {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            rec.status = 413;
            rec.error = Some(format!("body exceeds {BODY_LIMIT} bytes"));
            ctx.shared.record(rec, None);
            let mut r = http_error(413, json, None, "request body too large");
            // The rest of the body is not read: do not reuse the connection.
            r.headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
            return Ok(r);
        }
        Err(BodyError::Read(e)) => {
            rec.error = Some(format!("reading body: {e}"));
            ctx.shared.record(rec, None);
            return Err(e);
        }
    };
    rec.body_len = body.len();

    let early = if parts.method != Method::POST {
        Some((405, "only POST is supported".to_string()))
    } else if signal.is_none() {
        Some((404, format!("no OTLP route {}", parts.uri.path())))
    } else if wire.is_none() {
        Some((415, format!("unsupported content-type {content_type:?}")))
    } else {
        None
    };
    if let Some((status, msg)) = early {
        rec.status = status;
        rec.error = Some(msg.clone());
        ctx.shared.record(rec, None);
        return Ok(http_error(status, json, None, &msg));
    }
    let signal = signal.expect("checked");

    let raw = decompress(content_encoding.as_deref(), &body);
    let answered = answer(&ctx, Kind::Http, rec, signal, json, raw).await?;
    Ok(match answered {
        Answer::Accepted { partial } => {
            let (content_type, body) = if json {
                ("application/json", response_json(signal, partial.as_ref()))
            } else {
                (
                    "application/x-protobuf",
                    response_proto(signal, partial.as_ref()),
                )
            };
            http_response(200, Some(content_type), body)
        }
        Answer::Status {
            code, retry_after, ..
        } if code.accepts() => {
            let mut r = http_response(code.http_status(), None, Vec::new());
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", HeaderValue::from(s));
            }
            r
        }
        Answer::Status {
            code,
            retry_after,
            message,
        } => http_error(code.http_status(), json, retry_after, &message),
    })
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        let chars = c.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out // unpadded, as gRPC allows
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A gRPC "trailers-only" error answer.
fn grpc_error(code: i32, message: &str, retry_after: Option<u64>) -> Response<OneBody> {
    let mut r = Response::new(OneBody::empty());
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    h.insert(
        "grpc-message",
        HeaderValue::from_str(&percent_encode(message)).expect("ascii"),
    );
    if retry_after.is_some() {
        let details = rpc_status(code, message, retry_after).encode_to_vec();
        h.insert(
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderValue::from_str(&base64(&details)).expect("base64"),
        );
    }
    r
}

fn grpc_ok(message: Vec<u8>) -> Response<OneBody> {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut r = Response::new(OneBody {
        data: Some(framed.freeze()),
        trailers: Some(trailers),
    });
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static("gzip,identity"),
    );
    r
}

/// The message of a unary gRPC request body (one length-prefixed frame).
fn grpc_message(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    if body.len() < 5 {
        return Err(format!("gRPC frame too short ({} bytes)", body.len()));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err(format!(
            "gRPC frame length {len} does not match body of {} bytes",
            body.len()
        ));
    }
    let msg = &body[5..];
    match body[0] {
        0 => Ok(msg.to_vec()),
        1 => match encoding {
            Some(e) if !e.eq_ignore_ascii_case("identity") => decompress(Some(e), msg),
            _ => Err("compressed gRPC message without grpc-encoding".into()),
        },
        f => Err(format!("bad gRPC compression flag {f}")),
    }
}

async fn handle_grpc(ctx: Ctx, req: Request<hyper::body::Incoming>) -> HandlerResult {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let signal = match parts.uri.path() {
        GRPC_TRACES_PATH => Some(Signal::Traces),
        GRPC_METRICS_PATH => Some(Signal::Metrics),
        GRPC_LOGS_PATH => Some(Signal::Logs),
        _ => None,
    };
    let content_encoding = header_str(&parts.headers, "grpc-encoding");
    let mut rec = Received::arrived(at, &parts, signal, "grpc", content_encoding.clone());

    let body = match read_body(body, BODY_LIMIT + 5).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            Code::Grpc(8).record(&mut rec);
            rec.error = Some(format!("message exceeds {BODY_LIMIT} bytes"));
            ctx.shared.record(rec, None);
            return Ok(grpc_error(8, "message too large", None));
        }
        Err(BodyError::Read(e)) => {
            rec.error = Some(format!("reading body: {e}"));
            ctx.shared.record(rec, None);
            return Err(e);
        }
    };
    rec.body_len = body.len();
    let Some(signal) = signal else {
        Code::Grpc(12).record(&mut rec);
        let msg = format!("unknown method {}", parts.uri.path());
        rec.error = Some(msg.clone());
        ctx.shared.record(rec, None);
        return Ok(grpc_error(12, &msg, None));
    };

    let raw = grpc_message(content_encoding.as_deref(), &body);
    let answered = answer(&ctx, Kind::Grpc, rec, signal, false, raw).await?;
    Ok(match answered {
        Answer::Accepted { partial } => grpc_ok(response_proto(signal, partial.as_ref())),
        Answer::Status { code, .. } if code.accepts() => grpc_ok(response_proto(signal, None)),
        Answer::Status {
            code,
            retry_after,
            message,
        } => grpc_error(code.grpc_code(), &message, retry_after),
    })
}
