//! Metrics: the OpenTelemetry FaaS metrics and Lambda's own figures,
//! aggregated by the bridge with event-time timestamps.
//!
//! Each metric is one series (attribute `faas.trigger`). Counters are
//! monotonic integer sums, durations and memory are explicit-bucket
//! histograms, the configured memory size is a gauge. Temporality follows
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: cumulative (default)
//! reports running totals since the series' first event; delta and lowmemory
//! (identical here: every instrument is a synchronous counter or histogram)
//! report what happened since the previous point. Only series that changed
//! since the last collection are exported. Point times come from the events,
//! never from the clock, so output is deterministic.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::proto::kv_str;
use crate::options::read::choice_for;
use crate::options::table::TEMPORALITY_PREFERENCE;
use crate::options::{ConfigError, Env};
use crate::time::UnixNanos;

/// Metric aggregation temporality preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Cumulative,
    Delta,
    LowMemory,
}

impl Temporality {
    /// Reads `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (in any of
    /// the exporter forms).
    pub fn from_env(env: &dyn Env) -> Result<Temporality, ConfigError> {
        choice_for(env, &TEMPORALITY_PREFERENCE, Some("METRICS"), |v| match v {
            "cumulative" => Some(Temporality::Cumulative),
            "delta" => Some(Temporality::Delta),
            "lowmemory" => Some(Temporality::LowMemory),
            _ => None,
        })
    }
}

/// Bucket boundaries the FaaS conventions recommend for durations (seconds).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const MIB: f64 = 1_048_576.0;
/// Memory boundaries (bytes): Lambda sizes range from 128 MiB to 10 GiB.
pub const MEMORY_BUCKETS: [f64; 9] = [
    64.0 * MIB,
    128.0 * MIB,
    256.0 * MIB,
    512.0 * MIB,
    1024.0 * MIB,
    2048.0 * MIB,
    4096.0 * MIB,
    8192.0 * MIB,
    10240.0 * MIB,
];

/// Every metric the bridge emits from Telemetry API events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricId {
    InvokeDuration,
    InitDuration,
    Coldstarts,
    Errors,
    Timeouts,
    Invocations,
    MemUsage,
    BilledDuration,
    ReportDuration,
    MemorySize,
    ProducedBytes,
    RestoreDuration,
    LogsDroppedRecords,
    LogsDroppedBytes,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Histogram(&'static [f64]),
    Gauge,
}

/// Name, unit, description and instrument of each metric.
pub struct Definition {
    pub id: MetricId,
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    kind: Kind,
}

/// The table the dashboards and MAPPING.md are checked against.
pub const DEFINITIONS: [Definition; 14] = [
    Definition {
        id: MetricId::InvokeDuration,
        name: "faas.invoke_duration",
        unit: "s",
        description:
            "Duration of the function's logic execution (platform.runtimeDone durationMs).",
        kind: Kind::Histogram(&DURATION_BUCKETS),
    },
    Definition {
        id: MetricId::InitDuration,
        name: "faas.init_duration",
        unit: "s",
        description: "Duration of the function's initialization (platform.initReport durationMs).",
        kind: Kind::Histogram(&DURATION_BUCKETS),
    },
    Definition {
        id: MetricId::Coldstarts,
        name: "faas.coldstarts",
        unit: "{coldstart}",
        description: "Number of invocation cold starts.",
        kind: Kind::Counter,
    },
    Definition {
        id: MetricId::Errors,
        name: "faas.errors",
        unit: "{error}",
        description: "Number of invocation errors (status error or failure).",
        kind: Kind::Counter,
    },
    Definition {
        id: MetricId::Timeouts,
        name: "faas.timeouts",
        unit: "{timeout}",
        description: "Number of invocation timeouts.",
        kind: Kind::Counter,
    },
    Definition {
        id: MetricId::Invocations,
        name: "faas.invocations",
        unit: "{invocation}",
        description: "Number of successful invocations.",
        kind: Kind::Counter,
    },
    Definition {
        id: MetricId::MemUsage,
        name: "faas.mem_usage",
        unit: "By",
        description:
            "Maximum memory used per invocation (platform.report maxMemoryUsedMB x 1048576).",
        kind: Kind::Histogram(&MEMORY_BUCKETS),
    },
    Definition {
        id: MetricId::BilledDuration,
        name: "aws.lambda.billed_duration",
        unit: "s",
        description: "Billed duration per invocation (platform.report billedDurationMs).",
        kind: Kind::Histogram(&DURATION_BUCKETS),
    },
    Definition {
        id: MetricId::ReportDuration,
        name: "aws.lambda.duration",
        unit: "s",
        description: "Invocation duration including extension time (platform.report durationMs).",
        kind: Kind::Histogram(&DURATION_BUCKETS),
    },
    Definition {
        id: MetricId::MemorySize,
        name: "aws.lambda.memory_size",
        unit: "By",
        description: "Configured memory (platform.report memorySizeMB x 1048576).",
        kind: Kind::Gauge,
    },
    Definition {
        id: MetricId::ProducedBytes,
        name: "aws.lambda.produced_bytes",
        unit: "By",
        description:
            "Bytes of response produced by the function (platform.runtimeDone producedBytes).",
        kind: Kind::Counter,
    },
    Definition {
        id: MetricId::RestoreDuration,
        name: "aws.lambda.restore_duration",
        unit: "s",
        description: "SnapStart restore duration (platform.restoreReport durationMs).",
        kind: Kind::Histogram(&DURATION_BUCKETS),
    },
    Definition {
        id: MetricId::LogsDroppedRecords,
        name: "aws.lambda.logs_dropped.records",
        unit: "{record}",
        description: "Log records Lambda dropped before delivery (platform.logsDropped).",
        kind: Kind::Counter,
    },
    Definition {
        id: MetricId::LogsDroppedBytes,
        name: "aws.lambda.logs_dropped.bytes",
        unit: "By",
        description: "Log bytes Lambda dropped before delivery (platform.logsDropped).",
        kind: Kind::Counter,
    },
];

fn definition(id: MetricId) -> &'static Definition {
    DEFINITIONS
        .iter()
        .find(|d| d.id == id)
        // Invariant: DEFINITIONS lists every MetricId (checked by a test).
        .expect("every metric is defined")
}

#[derive(Debug, Clone, Default)]
struct Totals {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: Vec<u64>,
}

impl Totals {
    fn add(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        // Finite values can still add up to infinity, which OTLP/JSON cannot
        // carry (it would be `null`): the sum saturates instead.
        self.sum = (self.sum + v).clamp(f64::MIN, f64::MAX);
        // Explicit buckets are upper-inclusive: (b[i-1], b[i]].
        let idx = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.buckets[idx] += 1;
    }
}

#[derive(Debug, Clone, Default)]
struct Series {
    /// Cumulative totals since the first event.
    all: Totals,
    /// Since the previous collection.
    interval: Totals,
    /// Counter/gauge value (cumulative and interval).
    value_all: i64,
    value_interval: i64,
    first_time: Option<UnixNanos>,
    last_point_time: Option<UnixNanos>,
    latest_time: UnixNanos,
    dirty: bool,
}

/// The metric state of one execution environment.
#[derive(Debug)]
pub struct Metrics {
    temporality: Temporality,
    /// First event time of any metric: the start of every cumulative series
    /// (and of the first delta interval) in this execution environment.
    env_start: Option<UnixNanos>,
    attributes: Vec<KeyValue>,
    series: Vec<Series>,
}

impl Metrics {
    pub fn new(temporality: Temporality, faas_trigger: &str) -> Self {
        Metrics {
            temporality,
            env_start: None,
            attributes: vec![kv_str("faas.trigger", faas_trigger)],
            series: vec![Series::default(); DEFINITIONS.len()],
        }
    }

    /// Forgets every accumulation (a SnapStart restore: what was counted
    /// before the snapshot belongs to the snapshot, not to this
    /// environment).
    pub fn reset(&mut self) {
        self.env_start = None;
        self.series = vec![Series::default(); DEFINITIONS.len()];
    }

    fn series(&mut self, id: MetricId, time: UnixNanos) -> &mut Series {
        let start = *self.env_start.get_or_insert(time);
        self.env_start = Some(start.min(time));
        let idx = DEFINITIONS.iter().position(|d| d.id == id).unwrap_or(0);
        let s = &mut self.series[idx];
        s.first_time.get_or_insert(time);
        s.latest_time = s.latest_time.max(time);
        s.dirty = true;
        s
    }

    /// Adds to a counter.
    pub fn add(&mut self, id: MetricId, value: u64, time: UnixNanos) {
        let v = i64::try_from(value).unwrap_or(i64::MAX);
        let s = self.series(id, time);
        s.value_all = s.value_all.saturating_add(v);
        s.value_interval = s.value_interval.saturating_add(v);
    }

    /// Records one histogram value.
    pub fn record(&mut self, id: MetricId, value: f64, time: UnixNanos) {
        if !value.is_finite() {
            return;
        }
        let Kind::Histogram(bounds) = definition(id).kind else {
            return;
        };
        let s = self.series(id, time);
        s.all.add(bounds, value);
        s.interval.add(bounds, value);
    }

    /// Sets a gauge.
    pub fn set(&mut self, id: MetricId, value: i64, time: UnixNanos) {
        let s = self.series(id, time);
        s.value_all = value;
        s.value_interval = value;
    }

    /// Points for every series changed since the last call.
    pub fn collect(
        &mut self,
        resource: &Resource,
        scope: &InstrumentationScope,
    ) -> Option<ExportMetricsServiceRequest> {
        let delta = self.temporality != Temporality::Cumulative;
        let temporality = if delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let mut metrics = Vec::new();
        let env_start = self.env_start;
        for (def, s) in DEFINITIONS.iter().zip(self.series.iter_mut()) {
            if !s.dirty {
                continue;
            }
            let first = env_start
                .unwrap_or(s.latest_time)
                .min(s.first_time.unwrap_or(s.latest_time));
            let start = if delta {
                s.last_point_time.unwrap_or(first)
            } else {
                first
            };
            let time = s.latest_time;
            let data = match def.kind {
                Kind::Counter => metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        attributes: self.attributes.clone(),
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsInt(if delta {
                            s.value_interval
                        } else {
                            s.value_all
                        })),
                        ..NumberDataPoint::default()
                    }],
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                }),
                Kind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        attributes: self.attributes.clone(),
                        start_time_unix_nano: 0,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsInt(s.value_all)),
                        ..NumberDataPoint::default()
                    }],
                }),
                Kind::Histogram(bounds) => {
                    let t = if delta { &s.interval } else { &s.all };
                    metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            attributes: self.attributes.clone(),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: t.count,
                            sum: Some(t.sum),
                            bucket_counts: if t.buckets.is_empty() {
                                vec![0; bounds.len() + 1]
                            } else {
                                t.buckets.clone()
                            },
                            explicit_bounds: bounds.to_vec(),
                            min: (t.count > 0).then_some(t.min),
                            max: (t.count > 0).then_some(t.max),
                            ..HistogramDataPoint::default()
                        }],
                        aggregation_temporality: temporality,
                    })
                }
            };
            metrics.push(Metric {
                name: def.name.to_owned(),
                description: def.description.to_owned(),
                unit: def.unit.to_owned(),
                metadata: Vec::new(),
                data: Some(data),
            });
            s.dirty = false;
            s.interval = Totals::default();
            s.value_interval = 0;
            s.last_point_time = Some(time);
        }
        (!metrics.is_empty()).then(|| ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope.clone()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(m: &mut Metrics) -> Vec<Metric> {
        m.collect(&Resource::default(), &InstrumentationScope::default())
            .map(|r| r.resource_metrics[0].scope_metrics[0].metrics.clone())
            .unwrap_or_default()
    }

    #[test]
    fn every_metric_is_defined_once() {
        let mut names: Vec<&str> = DEFINITIONS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEFINITIONS.len());
        for d in &DEFINITIONS {
            assert_eq!(definition(d.id).name, d.name);
        }
    }

    #[test]
    fn cumulative_counters_and_histograms() {
        let mut m = Metrics::new(Temporality::Cumulative, "other");
        m.add(MetricId::Invocations, 1, 100);
        m.record(MetricId::InvokeDuration, 0.5609, 100);
        m.record(MetricId::InvokeDuration, 0.02, 200);
        let out = collect(&mut m);
        assert_eq!(out.len(), 2);
        let Some(metric::Data::Histogram(h)) = &out
            .iter()
            .find(|x| x.name == "faas.invoke_duration")
            .unwrap()
            .data
        else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(p.count, 2);
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (100, 200));
        assert_eq!(p.min, Some(0.02));
        assert_eq!(p.max, Some(0.5609));
        // 0.02 falls in (0.01, 0.025], 0.5609 in (0.5, 0.75].
        assert_eq!(p.bucket_counts[2], 1);
        assert_eq!(p.bucket_counts[8], 1);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 2);
        assert!(
            collect(&mut m).is_empty(),
            "nothing changed, nothing exported"
        );
        m.add(MetricId::Invocations, 1, 300);
        let out = collect(&mut m);
        let Some(metric::Data::Sum(s)) = &out[0].data else {
            panic!()
        };
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsInt(2))
        );
        assert_eq!(s.data_points[0].start_time_unix_nano, 100);
        assert!(s.is_monotonic);
    }

    #[test]
    fn huge_values_keep_the_sum_finite_and_counters_saturate() {
        let mut m = Metrics::new(Temporality::Cumulative, "other");
        m.record(MetricId::InvokeDuration, f64::MAX, 100);
        m.record(MetricId::InvokeDuration, f64::MAX, 200);
        m.add(MetricId::Invocations, u64::MAX, 100);
        m.add(MetricId::Invocations, u64::MAX, 200);
        let out = collect(&mut m);
        let h = out
            .iter()
            .find(|x| x.name == "faas.invoke_duration")
            .unwrap();
        let Some(metric::Data::Histogram(h)) = &h.data else {
            panic!()
        };
        assert_eq!(h.data_points[0].sum, Some(f64::MAX));
        assert_eq!(h.data_points[0].count, 2);
        let c = out.iter().find(|x| x.name == "faas.invocations").unwrap();
        let Some(metric::Data::Sum(c)) = &c.data else {
            panic!()
        };
        assert_eq!(
            c.data_points[0].value,
            Some(number_data_point::Value::AsInt(i64::MAX))
        );
    }

    #[test]
    fn delta_resets_each_collection() {
        let mut m = Metrics::new(Temporality::Delta, "other");
        m.add(MetricId::Errors, 1, 100);
        collect(&mut m);
        m.add(MetricId::Errors, 1, 250);
        m.add(MetricId::Errors, 1, 300);
        let out = collect(&mut m);
        let Some(metric::Data::Sum(s)) = &out[0].data else {
            panic!()
        };
        let p = &s.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(2)));
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (100, 300));
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
    }
}
