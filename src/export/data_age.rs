//! How old the bridge's data is when the collector accepts it: from the
//! time of the oldest item in a request (a log record's observed time, a
//! span's end, a metric point's time) to the collector's acceptance. In
//! `adaptive` background flushing and `periodic` mode this is what users
//! trade for the function not paying for exports; the bridge exports it
//! as the histogram `lambda_otel_bridge.export.data_age` per signal.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;

/// Bucket bounds of the histogram, in seconds.
pub const BOUNDS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
];

fn min_nonzero(it: impl Iterator<Item = u64>) -> Option<u64> {
    it.filter(|t| *t > 0).min()
}

/// The end of the earliest-ending span.
pub fn oldest_span(r: &ExportTraceServiceRequest) -> Option<u64> {
    min_nonzero(
        r.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.end_time_unix_nano),
    )
}

/// The earliest observed time of a record (when the bridge received it).
pub fn oldest_record(r: &ExportLogsServiceRequest) -> Option<u64> {
    min_nonzero(
        r.resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .map(|l| {
                if l.observed_time_unix_nano > 0 {
                    l.observed_time_unix_nano
                } else {
                    l.time_unix_nano
                }
            }),
    )
}

/// The earliest point time.
pub fn oldest_point(r: &ExportMetricsServiceRequest) -> Option<u64> {
    min_nonzero(
        r.resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .flat_map(|m| -> Vec<u64> {
                match &m.data {
                    Some(metric::Data::Sum(s)) => {
                        s.data_points.iter().map(|p| p.time_unix_nano).collect()
                    }
                    Some(metric::Data::Gauge(g)) => {
                        g.data_points.iter().map(|p| p.time_unix_nano).collect()
                    }
                    Some(metric::Data::Histogram(h)) => {
                        h.data_points.iter().map(|p| p.time_unix_nano).collect()
                    }
                    _ => Vec::new(),
                }
            }),
    )
}
