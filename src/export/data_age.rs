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

/// Bucket bounds in seconds.
pub const BOUNDS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
];

/// A cumulative explicit-bucket histogram of ages in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgeHistogram {
    pub counts: [u64; BOUNDS.len() + 1],
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl AgeHistogram {
    pub fn record(&mut self, seconds: f64) {
        let v = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let bucket = BOUNDS.iter().position(|b| v <= *b).unwrap_or(BOUNDS.len());
        self.counts[bucket] += 1;
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum = (self.sum + v).min(f64::MAX);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_bounds() {
        let mut h = AgeHistogram::default();
        for v in [0.01, 0.05, 0.3, 7.0, 1e9, -1.0, f64::NAN] {
            h.record(v);
        }
        assert_eq!(h.count, 7);
        // 0.01, 0.05, -1 and NaN (as 0) in the first bucket.
        assert_eq!(h.counts[0], 4);
        assert_eq!(h.counts[3], 1); // 0.3 in (0.25, 0.5]
        assert_eq!(h.counts[7], 1); // 7 in (5, 10]
        assert_eq!(h.counts[BOUNDS.len()], 1); // beyond a day
        assert_eq!(h.min, 0.0);
        assert_eq!(h.max, 1e9);
    }
}
