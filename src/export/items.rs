//! Counting the items (spans, data points, log records) of an OTLP
//! request, for drop accounting and delivery reports.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric};
use prost::Message;

use super::settings::Signal;

/// Spans, data points or log records in a request (for drop accounting).
pub fn count_items(signal: Signal, body: &[u8]) -> u64 {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).map(|r| span_items(&r)),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(|r| metric_items(&r)),
        Signal::Logs => ExportLogsServiceRequest::decode(body).map(|r| log_items(&r)),
    }
    .unwrap_or(0)
}

/// Spans in a trace request.
pub fn span_items(
    r: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> u64 {
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// Data points in a metrics request.
pub fn metric_items(r: &ExportMetricsServiceRequest) -> u64 {
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(metric_points)
        .sum()
}

/// Log records in a log request.
pub fn log_items(
    r: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
) -> u64 {
    r.resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len() as u64)
        .sum()
}

fn metric_points(m: &Metric) -> u64 {
    (match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}
