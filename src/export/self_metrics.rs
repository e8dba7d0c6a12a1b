//! The bridge's own metrics: what it dropped, how its exports fail, what the
//! Telemetry API listener skipped, how old its data is when the collector
//! accepts it, how long flushes take and what an invocation pays after its
//! runtime is done.
//!
//! They are `opentelemetry_sdk` instruments on a meter provider whose only
//! reader is a `ManualReader`: nothing runs in the background (timers do not
//! tick in a frozen sandbox), and the export path collects them at the flush
//! points the lifecycle chooses. A collection is converted to an OTLP
//! `ExportMetricsServiceRequest` by opentelemetry-proto, given the mapper's
//! resource, and queued in the outbox like the rest of the bridge's data.
//! Temporality is cumulative.
//!
//! A report is made only when there is something to say: as soon as a
//! counter of loss or failure is non-zero and changed, for histograms and
//! `lambda_otel_bridge.logs.filtered` (records dropped on purpose) at most
//! every [`REPORT_INTERVAL`], and at the final flush.
//!
//! | metric | instrument | unit | attributes |
//! |---|---|---|---|
//! | `lambda_otel_bridge.dropped` | counter (observes the outbox's totals) | `{item}` | `signal`, `reason` |
//! | `lambda_otel_bridge.export.failures` | counter | `{request}` | `signal` |
//! | `lambda_otel_bridge.telemetry.skipped` | counter (observes the listener's total) | `{event}` | |
//! | `lambda_otel_bridge.telemetry.batches` | counter (observes the listener's totals) | `{batch}` | `outcome` |
//! | `lambda_otel_bridge.logs.filtered` | counter (observes the mapper's count) | `{record}` | `reason` (`min_severity`) |
//! | `lambda_otel_bridge.export.data_age` | histogram | `s` | `signal` |
//! | `lambda_otel_bridge.flush.duration` | histogram | `s` | `kind` (`billed`, `background`, `final`) |
//! | `lambda_otel_bridge.post_runtime.duration` | histogram | `s` | |
//! | `lambda_otel_bridge.outbox.bytes` | gauge | `By` | |
//! | `lambda_otel_bridge.secret.fetch_failures` | counter (observes the secret fetches' count) | `{fetch}` | |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Instrument, InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream, Temporality,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::data_age;
use super::outbox::DropCounts;
use super::settings::Signal;
use crate::counters::{Count, Counters};

/// How often histograms alone (data age, flush and post-runtime durations)
/// make the bridge report its own metrics.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Series (attribute sets) one instrument may have; more would be folded
/// into the SDK's overflow series.
const MAX_SERIES: usize = 32;

/// Bucket bounds of the flush and post-runtime durations, in seconds: from
/// half a millisecond (a flush to a nearby collector) to the longest flush
/// budgets.
pub const DURATION_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The counts of the listener (`lambda_otel_bridge.telemetry.*`: what it
/// saw that was not plain data) and of the secret fetches: each change is
/// reported at once.
const ANOMALIES: [Count; 5] = [
    Count::SkippedEvents,
    Count::RejectedBatches,
    Count::DuplicateBatches,
    Count::HeldBackBatches,
    Count::SecretFetchFailures,
];

/// The outbox's drop totals, read by the observable counter's callback
/// when the reader collects.
type SharedDrops = Arc<Mutex<DropCounts>>;

/// What a report said, to tell whether there is anything new to say.
#[derive(Debug, Clone, PartialEq)]
struct Said {
    drops: DropCounts,
    /// The counted [`ANOMALIES`].
    anomalies: [u64; ANOMALIES.len()],
    /// Log records below `LAMBDA_OTEL_BRIDGE_LOGS_MIN_SEVERITY`.
    filtered_logs: u64,
    /// Export failures counted so far.
    failures: u64,
    /// Values recorded on the histograms so far.
    recorded: u64,
}

impl Said {
    /// Whether a counter is non-zero.
    fn anomalies(&self) -> bool {
        !self.drops.is_empty() || self.failures > 0 || self.anomalies.iter().any(|n| *n > 0)
    }

    fn counters_differ(&self, other: &Said) -> bool {
        self.drops != other.drops
            || self.failures != other.failures
            || self.anomalies != other.anomalies
    }
}

/// Reporting state, changed under one lock.
#[derive(Debug)]
struct Reporting {
    /// The mapper's resource, given to every report.
    resource: watch::Receiver<Resource>,
    last_at: Option<Instant>,
    last: Option<Said>,
    /// Reused by every collection.
    collected: ResourceMetrics,
}

/// `with_reader` takes its reader by value; this hands the provider a
/// reader that shares the `ManualReader` collected from here.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn signal_attr(signal: Signal) -> [KeyValue; 1] {
    [KeyValue::new("signal", signal.as_str())]
}

/// The instruments, their reader and what was last reported.
pub struct SelfMetrics {
    /// Owns the pipeline the reader collects from.
    _provider: SdkMeterProvider,
    reader: SharedReader,
    failures: Counter<u64>,
    data_age: Histogram<f64>,
    flush_duration: Histogram<f64>,
    post_runtime: Histogram<f64>,
    outbox_bytes: Gauge<u64>,
    drops: SharedDrops,
    counters: Arc<Counters>,
    failures_counted: AtomicU64,
    recorded: AtomicU64,
    reporting: Mutex<Reporting>,
}

impl SelfMetrics {
    /// Builds the provider and the instruments (no thread, no I/O).
    pub fn new(counters: Arc<Counters>) -> Self {
        let reader = SharedReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ));
        let provider = SdkMeterProvider::builder()
            // The mapper's resource replaces it in every report; an empty
            // one here keeps the SDK from reading the environment.
            .with_resource(opentelemetry_sdk::Resource::builder_empty().build())
            .with_reader(reader.clone())
            // The SDK's default (2,000 series per instrument) sizes each
            // instrument's table for it up front; the largest here has 18
            // (3 signals x 6 drop reasons).
            .with_view(|_: &Instrument| {
                Stream::builder()
                    .with_cardinality_limit(MAX_SERIES)
                    .build()
                    .ok()
            })
            .build();
        let meter = provider.meter_with_scope(
            InstrumentationScope::builder(crate::mapping::SCOPE_NAME)
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        let drops = SharedDrops::default();
        let d = drops.clone();
        meter
            .u64_observable_counter("lambda_otel_bridge.dropped")
            .with_unit("{item}")
            .with_description(
                "Spans, data points and log records the bridge could not deliver, by signal and reason.",
            )
            .with_callback(move |o| {
                for ((signal, reason), n) in lock(&d).iter() {
                    o.observe(
                        *n,
                        &[
                            KeyValue::new("signal", signal.as_str()),
                            KeyValue::new("reason", reason.as_str()),
                        ],
                    );
                }
            })
            .build();
        let failures = meter
            .u64_counter("lambda_otel_bridge.export.failures")
            .with_unit("{request}")
            .with_description("Failed export attempts of the bridge, by signal.")
            .build();
        // Every signal has a point from the first report on.
        for s in Signal::ALL {
            failures.add(0, &signal_attr(s));
        }
        let c = counters.clone();
        meter
            .u64_observable_counter("lambda_otel_bridge.telemetry.skipped")
            .with_unit("{event}")
            .with_description("Telemetry API events that could not be decoded and were skipped.")
            .with_callback(move |o| {
                let skipped = c.get(Count::SkippedEvents);
                if skipped > 0 {
                    o.observe(skipped, &[]);
                }
            })
            .build();
        let c = counters.clone();
        meter
            .u64_observable_counter("lambda_otel_bridge.telemetry.batches")
            .with_unit("{batch}")
            .with_description(
                "Telemetry API batches rejected (not a JSON array, 400), dropped as redeliveries, or answered late while the outbox drained.",
            )
            .with_callback(move |o| {
                for (outcome, count) in [
                    ("rejected", Count::RejectedBatches),
                    ("duplicate", Count::DuplicateBatches),
                    ("held_back", Count::HeldBackBatches),
                ] {
                    let n = c.get(count);
                    if n > 0 {
                        o.observe(n, &[KeyValue::new("outcome", outcome)]);
                    }
                }
            })
            .build();
        let c = counters.clone();
        meter
            .u64_observable_counter("lambda_otel_bridge.logs.filtered")
            .with_unit("{record}")
            .with_description(
                "Function and extension log records dropped on purpose: below LAMBDA_OTEL_BRIDGE_LOGS_MIN_SEVERITY.",
            )
            .with_callback(move |o| {
                let n = c.get(Count::FilteredLogs);
                if n > 0 {
                    o.observe(n, &[KeyValue::new("reason", "min_severity")]);
                }
            })
            .build();
        let c = counters.clone();
        meter
            .u64_observable_counter("lambda_otel_bridge.secret.fetch_failures")
            .with_unit("{fetch}")
            .with_description(
                "Failed fetches of collector headers from Secrets Manager or SSM (the data waits in the outbox).",
            )
            .with_callback(move |o| {
                let n = c.get(Count::SecretFetchFailures);
                if n > 0 {
                    o.observe(n, &[]);
                }
            })
            .build();
        let seconds = |name: &'static str, description: &'static str, bounds: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(bounds.to_vec())
                .build()
        };
        let data_age = seconds(
            "lambda_otel_bridge.export.data_age",
            "Age of the bridge's data when the collector accepted it (from the oldest item of a request), by signal.",
            &data_age::BOUNDS,
        );
        let flush_duration = seconds(
            "lambda_otel_bridge.flush.duration",
            "Time a flush with data to export took, by kind: billed (before /next), background or final.",
            &DURATION_BOUNDS,
        );
        let post_runtime = seconds(
            "lambda_otel_bridge.post_runtime.duration",
            "Time from the invocation's platform.runtimeDone being seen to /next, in end-style flushes: what the bridge adds to the billed duration.",
            &DURATION_BOUNDS,
        );
        let outbox_bytes = meter
            .u64_gauge("lambda_otel_bridge.outbox.bytes")
            .with_unit("By")
            .with_description("Bytes waiting in the bridge's outbox.")
            .build();
        SelfMetrics {
            _provider: provider,
            reader,
            failures,
            data_age,
            flush_duration,
            post_runtime,
            outbox_bytes,
            drops,
            counters,
            failures_counted: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            reporting: Mutex::new(Reporting {
                resource: watch::channel(Resource::default()).1,
                last_at: None,
                last: None,
                collected: ResourceMetrics::default(),
            }),
        }
    }

    /// An export attempt of `signal` failed.
    pub fn count_failure(&self, signal: Signal) {
        self.failures.add(1, &signal_attr(signal));
        self.failures_counted.fetch_add(1, Ordering::Relaxed);
    }

    /// The collector accepted data of `signal` whose oldest item was `seconds` old.
    pub fn record_data_age(&self, signal: Signal, seconds: f64) {
        self.data_age.record(seconds, &signal_attr(signal));
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// A flush of `kind` (`billed`, `background`, `final`) with data to export took `took`.
    pub fn record_flush(&self, kind: &'static str, took: Duration) {
        self.flush_duration
            .record(took.as_secs_f64(), &[KeyValue::new("kind", kind)]);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// An invocation's time from runtimeDone being seen to `/next`.
    pub fn record_post_runtime(&self, took: Duration) {
        self.post_runtime.record(took.as_secs_f64(), &[]);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters the listener's metrics observe.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Where the reports' resource comes from (the mapper's, published by
    /// the pipeline whenever it changes).
    pub fn follow_resource(&self, resource: watch::Receiver<Resource>) {
        lock(&self.reporting).resource = resource;
    }

    /// A report of every instrument, when there is something to say (see the
    /// module documentation); `drops` are the outbox's totals and
    /// `outbox_bytes` what waits in it.
    pub fn report(
        &self,
        drops: &DropCounts,
        outbox_bytes: usize,
        final_flush: bool,
    ) -> Option<ExportMetricsServiceRequest> {
        let mut r = lock(&self.reporting);
        let said = Said {
            drops: drops.clone(),
            anomalies: ANOMALIES.map(|c| self.counters.get(c)),
            filtered_logs: self.counters.get(Count::FilteredLogs),
            failures: self.failures_counted.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
        };
        // Log records filtered on purpose are no anomaly: they are reported
        // with the histograms (a report at every flush would cost more bytes
        // than the filter saves).
        let quiet = !said.anomalies() && said.recorded == 0 && said.filtered_logs == 0;
        if quiet || r.last.as_ref() == Some(&said) {
            return None;
        }
        // Histograms alone change at every flush: reported at most every
        // REPORT_INTERVAL (and at the final flush), counters at once.
        let counters_changed = r.last.as_ref().is_none_or(|l| said.counters_differ(l));
        let interval_passed = r.last_at.is_none_or(|t| t.elapsed() >= REPORT_INTERVAL);
        if !(interval_passed || final_flush || counters_changed && said.anomalies()) {
            return None;
        }
        *lock(&self.drops) = said.drops.clone();
        self.outbox_bytes
            .record(u64::try_from(outbox_bytes).unwrap_or(u64::MAX), &[]);
        let r = &mut *r;
        if let Err(e) = self.reader.collect(&mut r.collected) {
            tracing::debug!("the bridge's own metrics could not be collected: {e}");
            return None;
        }
        let mut req = ExportMetricsServiceRequest::from(&r.collected);
        let resource = r.resource.borrow().clone();
        for rm in &mut req.resource_metrics {
            rm.resource = Some(resource.clone());
        }
        r.last = Some(said);
        r.last_at = Some(Instant::now());
        Some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::outbox::DropReason;
    use crate::mapping::proto::kv_str;
    use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue as PbKeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, AggregationTemporality, Histogram as PbHistogram, Metric,
    };

    fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
        req.resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .find(|m| m.name == name)
    }

    fn histogram<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a PbHistogram {
        match metric(req, name).and_then(|m| m.data.as_ref()) {
            Some(metric::Data::Histogram(h)) => h,
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    fn attrs(kvs: &[PbKeyValue]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = kvs
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect();
        out.sort();
        out
    }

    /// A cumulative monotonic sum's points as (sorted attributes, value).
    fn sum_points(m: &Metric) -> Vec<(Vec<(String, String)>, i64)> {
        let Some(metric::Data::Sum(s)) = &m.data else {
            panic!("{} is not a sum: {m:?}", m.name);
        };
        assert!(s.is_monotonic, "{}", m.name);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32,
            "{}",
            m.name
        );
        let mut out: Vec<_> = s
            .data_points
            .iter()
            .map(|p| {
                assert!(p.start_time_unix_nano > 0 && p.time_unix_nano >= p.start_time_unix_nano);
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    other => panic!("{}: {other:?}", m.name),
                };
                (attrs(&p.attributes), v)
            })
            .collect();
        out.sort();
        out
    }

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_to_say_is_not_reported() {
        let m = SelfMetrics::new(Arc::default());
        assert!(m.report(&DropCounts::new(), 123, false).is_none());
        assert!(m.report(&DropCounts::new(), 123, true).is_none());
    }

    #[test]
    fn a_drop_is_reported_with_its_attributes_the_resource_and_the_scope() {
        let m = SelfMetrics::new(Arc::default());
        let resource = Resource {
            attributes: vec![kv_str("service.name", "fn")],
            ..Resource::default()
        };
        m.follow_resource(watch::channel(resource.clone()).1);
        let mut drops = DropCounts::new();
        drops.insert((Signal::Logs, DropReason::Refused), 3);
        let req = m
            .report(&drops, 42, false)
            .expect("a drop is something to say");
        assert_eq!(req.resource_metrics.len(), 1);
        assert_eq!(req.resource_metrics[0].resource.as_ref(), Some(&resource));
        let scope = req.resource_metrics[0].scope_metrics[0]
            .scope
            .as_ref()
            .unwrap();
        assert_eq!(scope.name, crate::mapping::SCOPE_NAME);
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        let dropped = metric(&req, "lambda_otel_bridge.dropped").unwrap();
        assert_eq!(dropped.unit, "{item}");
        assert_eq!(
            sum_points(dropped),
            vec![(pairs(&[("reason", "refused"), ("signal", "logs")]), 3)]
        );
        // Every signal's failure count, zero so far.
        let failures = metric(&req, "lambda_otel_bridge.export.failures").unwrap();
        assert_eq!(
            sum_points(failures),
            vec![
                (pairs(&[("signal", "logs")]), 0),
                (pairs(&[("signal", "metrics")]), 0),
                (pairs(&[("signal", "traces")]), 0),
            ]
        );
        let Some(metric::Data::Gauge(g)) = &metric(&req, "lambda_otel_bridge.outbox.bytes")
            .unwrap()
            .data
        else {
            panic!("outbox.bytes is a gauge");
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(42))
        );
        // Nothing recorded on these: not in the report.
        for absent in [
            "lambda_otel_bridge.telemetry.skipped",
            "lambda_otel_bridge.telemetry.batches",
            "lambda_otel_bridge.export.data_age",
        ] {
            assert!(metric(&req, absent).is_none(), "{absent}");
        }
        // The same again: nothing new to say.
        assert!(m.report(&drops, 42, false).is_none());
        // A counter changed: reported at once, cumulative.
        drops.insert((Signal::Logs, DropReason::Refused), 5);
        m.count_failure(Signal::Traces);
        let req = m.report(&drops, 0, false).expect("counters changed");
        assert_eq!(
            sum_points(metric(&req, "lambda_otel_bridge.dropped").unwrap()),
            vec![(pairs(&[("reason", "refused"), ("signal", "logs")]), 5)]
        );
        let failures = sum_points(metric(&req, "lambda_otel_bridge.export.failures").unwrap());
        assert!(
            failures.contains(&(pairs(&[("signal", "traces")]), 1)),
            "{failures:?}"
        );
    }

    #[test]
    fn listener_counts_are_reported_when_non_zero() {
        let counters = Arc::new(Counters::default());
        let m = SelfMetrics::new(counters.clone());
        counters.add(Count::SkippedEvents, 2);
        counters.add(Count::DuplicateBatches, 1);
        counters.add(Count::Batches, 7);
        let req = m.report(&DropCounts::new(), 0, false).unwrap();
        let skipped = metric(&req, "lambda_otel_bridge.telemetry.skipped").unwrap();
        assert_eq!(skipped.unit, "{event}");
        assert_eq!(sum_points(skipped), vec![(vec![], 2)]);
        let batches = metric(&req, "lambda_otel_bridge.telemetry.batches").unwrap();
        assert_eq!(
            sum_points(batches),
            vec![(pairs(&[("outcome", "duplicate")]), 1)]
        );
    }

    #[test]
    fn histograms_alone_wait_for_the_interval_or_the_final_flush() {
        let m = SelfMetrics::new(Arc::default());
        m.record_data_age(Signal::Logs, 0.3);
        m.record_flush("billed", Duration::from_micros(700));
        m.record_post_runtime(Duration::from_millis(2));
        let req = m
            .report(&DropCounts::new(), 0, false)
            .expect("first values");
        let h = histogram(&req, "lambda_otel_bridge.export.data_age");
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!(attrs(&p.attributes), pairs(&[("signal", "logs")]));
        assert_eq!(p.explicit_bounds, data_age::BOUNDS.to_vec());
        assert_eq!(
            (p.count, p.sum, p.min, p.max),
            (1, Some(0.3), Some(0.3), Some(0.3))
        );
        assert_eq!(p.bucket_counts[3], 1, "0.3 s in (0.25, 0.5]");
        for (name, attributes, bucket) in [
            (
                "lambda_otel_bridge.flush.duration",
                pairs(&[("kind", "billed")]),
                1,
            ),
            ("lambda_otel_bridge.post_runtime.duration", vec![], 2),
        ] {
            assert_eq!(metric(&req, name).unwrap().unit, "s");
            let h = histogram(&req, name);
            let p = &h.data_points[0];
            assert_eq!(attrs(&p.attributes), attributes, "{name}");
            assert_eq!(p.explicit_bounds, DURATION_BOUNDS.to_vec(), "{name}");
            assert_eq!(p.count, 1, "{name}");
            assert_eq!(p.bucket_counts[bucket], 1, "{name}: {:?}", p.bucket_counts);
        }
        // No counter is non-zero: more histogram values wait.
        m.record_flush("background", Duration::from_millis(3));
        assert!(m.report(&DropCounts::new(), 0, false).is_none());
        // ... but not at the final flush.
        let req = m.report(&DropCounts::new(), 0, true).expect("final flush");
        let h = histogram(&req, "lambda_otel_bridge.flush.duration");
        let mut kinds: Vec<_> = h
            .data_points
            .iter()
            .map(|p| (attrs(&p.attributes), p.count))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec![
                (pairs(&[("kind", "background")]), 1),
                (pairs(&[("kind", "billed")]), 1),
            ]
        );
    }

    /// Records filtered on purpose are reported, but never make a report
    /// of their own before the interval (that would cost more than the
    /// filter saves); the final flush has them.
    #[test]
    fn filtered_logs_are_reported_with_the_interval() {
        let filtered = |req: &ExportMetricsServiceRequest| match metric(
            req,
            "lambda_otel_bridge.logs.filtered",
        )
        .and_then(|m| m.data.as_ref())
        {
            Some(metric::Data::Sum(s)) => s
                .data_points
                .iter()
                .map(|p| (attrs(&p.attributes), p.value))
                .collect::<Vec<_>>(),
            other => panic!("not a sum: {other:?}"),
        };
        let counters = Arc::new(Counters::default());
        let m = SelfMetrics::new(counters.clone());
        counters.add(Count::FilteredLogs, 7);
        let req = m
            .report(&DropCounts::new(), 0, false)
            .expect("first report");
        assert_eq!(
            filtered(&req),
            vec![(
                pairs(&[("reason", "min_severity")]),
                Some(number_data_point::Value::AsInt(7))
            )]
        );
        counters.add(Count::FilteredLogs, 2);
        assert!(m.report(&DropCounts::new(), 0, false).is_none(), "waits");
        let req = m.report(&DropCounts::new(), 0, true).expect("final flush");
        assert_eq!(
            filtered(&req)[0].1,
            Some(number_data_point::Value::AsInt(9))
        );
    }
}
