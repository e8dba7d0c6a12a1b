//! The demo function's own telemetry: what an OpenTelemetry SDK in the
//! handler would send to the bridge's local OTLP receiver during an
//! invocation, as OTLP/HTTP protobuf requests: one span parented to the
//! X-Ray `Parent` (with `LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID=xray-parent`
//! that is the invocation span's id, so the span nests inside it), one log
//! record linked to that span, and a cumulative counter.
//!
//! The bridge adds the `faas.*` / `cloud.*` resource attributes the function
//! did not set and sends all three on with its own data, through the same
//! outbox and flush points.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_otel_bridge::parse_header;
use lambda_otel_bridge::{kv_int, kv_str, str_value};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::emulator::{http_request, span_id_for};

/// The instrumentation scope of the function's telemetry.
const SCOPE: &str = "orders-handler";
/// The counter the function keeps.
pub const COUNTER: &str = "orders.processed";

/// The instrumented handler of the demo function.
pub struct Function {
    receiver: SocketAddr,
    service: String,
    /// Start of the counter's cumulative series.
    started: u64,
    processed: i64,
    /// Ids of the spans it sent, for the report.
    pub span_ids: Vec<Vec<u8>>,
}

/// One handled request, as the function's telemetry describes it.
pub struct Handled<'a> {
    pub request_id: &'a str,
    pub trace_header: &'a str,
    pub order: u32,
    /// `Some(message)`: the handler failed.
    pub error: Option<&'a str>,
}

impl Function {
    pub fn new(receiver: SocketAddr, service: &str) -> Function {
        Function {
            receiver,
            service: service.to_string(),
            started: unix_nanos(SystemTime::now()),
            processed: 0,
            span_ids: Vec::new(),
        }
    }

    /// Runs the handler's work (a few milliseconds) and sends its span, log
    /// record and counter to the bridge's receiver before returning, as a
    /// handler that flushes its SDK does.
    pub async fn handle(&mut self, request: Handled<'_>) -> Result<(), String> {
        let xray = parse_header(request.trace_header);
        let trace_id = xray
            .trace_id
            .ok_or("the function needs an X-Ray Root")?
            .to_vec();
        let parent = xray.parent_span_id.map(|p| p.to_vec()).unwrap_or_default();
        let span_id = hex_bytes(&span_id_for(&format!("{}/handler", request.request_id)));
        let start = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(8)).await;
        let end = SystemTime::now();
        if request.error.is_none() {
            self.processed += 1;
        }

        let (span_status, severity, text, body) = match request.error {
            None => (
                status::StatusCode::Ok,
                SeverityNumber::Info,
                "INFO",
                format!("order {} stored", request.order),
            ),
            Some(message) => (
                status::StatusCode::Error,
                SeverityNumber::Error,
                "ERROR",
                format!("order {} failed: {message}", request.order),
            ),
        };
        let span = Span {
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
            parent_span_id: parent,
            name: "store order".into(),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: unix_nanos(start),
            end_time_unix_nano: unix_nanos(end),
            attributes: vec![kv_int("order.id", i64::from(request.order))],
            status: Some(Status {
                code: span_status as i32,
                message: request.error.unwrap_or_default().to_string(),
            }),
            ..Default::default()
        };
        let record = LogRecord {
            time_unix_nano: unix_nanos(end),
            observed_time_unix_nano: unix_nanos(end),
            severity_number: severity as i32,
            severity_text: text.into(),
            body: Some(str_value(body)),
            attributes: vec![kv_int("order.id", i64::from(request.order))],
            trace_id,
            span_id: span_id.clone(),
            flags: 1,
            ..Default::default()
        };
        let point = NumberDataPoint {
            start_time_unix_nano: self.started,
            time_unix_nano: unix_nanos(end),
            value: Some(number_data_point::Value::AsInt(self.processed)),
            ..Default::default()
        };
        let counter = Metric {
            name: COUNTER.into(),
            description: "Orders the function stored".into(),
            unit: "{order}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        };

        let resource = Some(self.resource());
        let scope = Some(InstrumentationScope {
            name: SCOPE.into(),
            ..Default::default()
        });
        let traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource.clone(),
                scope_spans: vec![ScopeSpans {
                    scope: scope.clone(),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource.clone(),
                scope_logs: vec![ScopeLogs {
                    scope: scope.clone(),
                    log_records: vec![record],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource,
                scope_metrics: vec![ScopeMetrics {
                    scope,
                    metrics: vec![counter],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        self.post("traces", traces.encode_to_vec()).await?;
        self.post("logs", logs.encode_to_vec()).await?;
        self.post("metrics", metrics.encode_to_vec()).await?;
        self.span_ids.push(span_id);
        Ok(())
    }

    /// What the function's SDK would set; the bridge adds `faas.*` / `cloud.*`.
    fn resource(&self) -> Resource {
        let attributes: Vec<KeyValue> = vec![
            kv_str("service.name", &self.service),
            kv_str("telemetry.sdk.name", "local-lambda demo"),
            kv_str("telemetry.sdk.language", "rust"),
        ];
        Resource {
            attributes,
            ..Default::default()
        }
    }

    async fn post(&self, signal: &str, body: Vec<u8>) -> Result<(), String> {
        let url = format!("http://{}/v1/{signal}", self.receiver);
        let answer = http_request(
            "POST",
            &url,
            &[("content-type", "application/x-protobuf")],
            body,
            Duration::from_secs(2),
        )
        .await?;
        match answer.status {
            200 => Ok(()),
            status => Err(format!("POST {url}: {status} {}", answer.body)),
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// 16 hex digits → 8 bytes.
fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}
