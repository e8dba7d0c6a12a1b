//! Export: resolved settings ([`settings`]), the OTLP transport ([`otlp`],
//! [`tls`]), the bounded [`outbox`] and the [`flush`] policy.
//!
//! Mapped data is encoded into `Export*ServiceRequest` protobuf bytes and
//! queued in the outbox; a flush drains the outbox within a deadline the
//! lifecycle chooses. The OTLP specification's rules decide what happens to
//! a request that fails: retryable failures (429/502/503/504, connection
//! errors, gRPC UNAVAILABLE, ...) stay queued for the next flush point,
//! honouring `Retry-After`; permanent ones (400, 413, ...) are dropped and
//! counted; partial successes are not retried and their rejected items are
//! counted. Every drop shows up in the bridge's own metric
//! `lambda_otel_bridge.dropped` and in one warning line per flush.

pub mod flush;
pub mod otlp;
pub mod outbox;
pub mod rpc;
pub mod settings;
pub mod split;
pub mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tokio::time::Instant;

use crate::mapping::proto::kv_str;
use crate::mapping::Output;
use crate::redact::Redactor;
use otlp::{Outcome, SignalExporter};
use outbox::{DropCounts, DropReason, Entry, Origin, Outbox};
use settings::{ExportSettings, Signal};

/// What one flush did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    /// Requests accepted by the collector.
    pub sent: u32,
    /// Items (spans, points, records) in them.
    pub delivered_items: u64,
    /// Requests left queued after a retryable failure.
    pub deferred: u32,
    /// Items dropped during this flush, by signal and reason.
    pub dropped: Vec<(String, u64)>,
    pub errors: Vec<String>,
}

/// Health of the export path, to avoid spending the function's time on a
/// collector that keeps failing.
#[derive(Debug, Default)]
struct Health {
    consecutive_failed_flushes: u32,
    rng: u64,
}

/// The exporters, the outbox and the bridge's own export metrics.
pub struct Exporter {
    disabled: bool,
    signals: [SignalExporter; 3],
    outbox: Mutex<Outbox>,
    /// One drain at a time (a background flush may still run when the next
    /// flush point comes).
    sending: tokio::sync::Mutex<()>,
    health: Mutex<Health>,
    self_metrics: Mutex<SelfMetrics>,
    /// Rewrites secrets in traces and logs before they are queued.
    redactor: Option<Arc<Redactor>>,
    /// Trace and log requests above this many bytes are split.
    max_request_bytes: usize,
    /// When the collector last accepted a request.
    last_accepted: Mutex<Option<Instant>>,
}

/// Largest trace or log request queued as one entry: 1 MiB, or a quarter
/// of a smaller outbox (so a burst never makes an entry the outbox cannot
/// hold).
pub fn max_request_bytes(outbox_bytes: usize) -> usize {
    (outbox_bytes / 4).clamp(16 * 1024, 1024 * 1024)
}

/// Counters behind the bridge's own metrics.
#[derive(Debug, Default)]
struct SelfMetrics {
    start: u64,
    resource: Resource,
    failures: [u64; 3],
    /// Telemetry API anomalies: skipped events, then rejected, redelivered
    /// and held-back batches.
    receiver: [u64; 4],
    last_reported: Option<(DropCounts, [u64; 3], [u64; 4])>,
}

/// What the listener saw that was not plain data, for the bridge's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverCounts {
    pub skipped_events: u64,
    pub rejected_batches: u64,
    pub duplicate_batches: u64,
    pub held_back_batches: u64,
}

fn signal_index(s: Signal) -> usize {
    match s {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

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

impl Exporter {
    /// Builds nothing expensive: connections and TLS are set up on first use.
    pub fn new(settings: &ExportSettings, outbox_bytes: usize) -> Self {
        Exporter {
            disabled: settings.disabled,
            signals: [
                SignalExporter::new(settings.traces.clone()),
                SignalExporter::new(settings.metrics.clone()),
                SignalExporter::new(settings.logs.clone()),
            ],
            outbox: Mutex::new(Outbox::new(outbox_bytes)),
            sending: tokio::sync::Mutex::new(()),
            health: Mutex::new(Health {
                consecutive_failed_flushes: 0,
                rng: crate::time::now() | 1,
            }),
            self_metrics: Mutex::new(SelfMetrics {
                start: crate::time::now(),
                ..SelfMetrics::default()
            }),
            redactor: None,
            max_request_bytes: max_request_bytes(outbox_bytes),
            last_accepted: Mutex::new(None),
        }
    }

    /// Encodes a trace request, split into parts of bounded size; each
    /// part with its span count.
    pub fn encode_traces(&self, req: ExportTraceServiceRequest) -> Vec<(Bytes, u64)> {
        split::split_traces(req, self.max_request_bytes)
            .into_iter()
            .map(|p| (Bytes::from(p.encode_to_vec()), span_items(&p)))
            .collect()
    }

    /// Encodes a log request, split into parts of bounded size; each part
    /// with its record count.
    pub fn encode_logs(&self, req: ExportLogsServiceRequest) -> Vec<(Bytes, u64)> {
        split::split_logs(req, self.max_request_bytes)
            .into_iter()
            .map(|p| (Bytes::from(p.encode_to_vec()), log_items(&p)))
            .collect()
    }

    /// Redacts every trace and log request queued from now on.
    pub fn with_redactor(mut self, redactor: Option<Arc<Redactor>>) -> Self {
        self.redactor = redactor;
        self
    }

    /// Applies the redaction (if any) to a trace request.
    pub fn redact_traces(&self, req: &mut ExportTraceServiceRequest) {
        if let Some(r) = &self.redactor {
            r.redact_traces(req);
        }
    }

    /// Applies the redaction (if any) to a log request.
    pub fn redact_logs(&self, req: &mut ExportLogsServiceRequest) {
        if let Some(r) = &self.redactor {
            r.redact_logs(req);
        }
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes waiting in the outbox.
    pub fn queued_bytes(&self) -> usize {
        self.outbox().bytes()
    }

    /// Whether more than half the outbox is waiting while the collector is
    /// accepting (a request accepted within the last second): healthy but
    /// slower than telemetry arrives. A collector that fails or hangs never
    /// counts as backlogged.
    pub fn backlogged(&self) -> bool {
        let over = {
            let o = self.outbox();
            o.bytes() > o.cap() / 2
        };
        over && !self.disabled
            && self
                .last_accepted
                .lock()
                .map(|t| t.is_some_and(|t| t.elapsed() < Duration::from_secs(1)))
                .unwrap_or(false)
    }

    /// Whether a request of `len` bytes fits without dropping older data.
    pub fn has_room(&self, len: usize) -> bool {
        self.outbox().has_room(len)
    }

    /// The outbox's byte cap: a request larger than this can never be queued.
    pub fn outbox_capacity(&self) -> usize {
        self.outbox().cap()
    }

    /// Trace and log requests above this many bytes are split into parts.
    pub fn request_part_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// Whether trace and log requests are redacted before they are queued.
    pub fn redacts(&self) -> bool {
        self.redactor.is_some()
    }

    /// The listener's counters, reported with the bridge's own metrics.
    pub fn set_receiver_counts(&self, c: ReceiverCounts) {
        self.self_metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .receiver = [
            c.skipped_events,
            c.rejected_batches,
            c.duplicate_batches,
            c.held_back_batches,
        ];
    }

    /// The resource of the bridge's own metrics (the mapper's).
    pub fn set_resource(&self, resource: &Resource) {
        let mut m = self.self_metrics.lock().unwrap_or_else(|p| p.into_inner());
        if m.resource != *resource {
            m.resource = resource.clone();
        }
    }

    /// Queues mapped data.
    pub fn enqueue(&self, mut output: Output) {
        if self.disabled {
            return;
        }
        if let Some(t) = output.traces.as_mut() {
            self.redact_traces(t);
        }
        if let Some(l) = output.logs.as_mut() {
            self.redact_logs(l);
        }
        let mut entries = Vec::new();
        if let Some(t) = output.traces {
            entries.extend(
                self.encode_traces(t)
                    .into_iter()
                    .map(|(b, n)| (Signal::Traces, b, n)),
            );
        }
        if let Some(m) = output.metrics {
            entries.push((
                Signal::Metrics,
                Bytes::from(m.encode_to_vec()),
                metric_items(&m),
            ));
        }
        if let Some(l) = output.logs {
            entries.extend(
                self.encode_logs(l)
                    .into_iter()
                    .map(|(b, n)| (Signal::Logs, b, n)),
            );
        }
        for (signal, body, items) in entries {
            self.enqueue_raw(signal, body, items, Origin::Bridge);
        }
    }

    /// Queues an encoded request as it is.
    pub fn enqueue_raw(&self, signal: Signal, body: Bytes, items: u64, origin: Origin) {
        if self.disabled {
            return;
        }
        self.outbox().push(Entry {
            signal,
            body,
            items,
            origin,
            not_before: None,
            attempts: 0,
            seq: 0,
        });
    }

    /// Exports what is queued, giving up at `deadline`; what could not be
    /// delivered for a retryable reason stays queued.
    pub async fn flush(&self, deadline: Instant) -> FlushReport {
        if self.disabled {
            return FlushReport::default();
        }
        let _guard = match tokio::time::timeout_at(deadline, self.sending.lock()).await {
            Ok(g) => g,
            Err(_) => {
                return FlushReport {
                    errors: vec!["a previous flush was still running at the deadline".into()],
                    ..FlushReport::default()
                }
            }
        };
        self.queue_self_metrics();
        if self.outbox().is_empty() {
            return FlushReport::default();
        }
        let degraded = self
            .health
            .lock()
            .map(|h| h.consecutive_failed_flushes >= 2)
            .unwrap_or(false);
        let (t, m, l) = tokio::join!(
            self.drain(Signal::Traces, deadline, degraded),
            self.drain(Signal::Metrics, deadline, degraded),
            self.drain(Signal::Logs, deadline, degraded),
        );
        let mut report = FlushReport::default();
        for r in [t, m, l] {
            report.sent += r.sent;
            report.delivered_items += r.delivered_items;
            report.deferred += r.deferred;
            report.errors.extend(r.errors);
        }
        {
            let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
            if report.deferred > 0 && report.sent == 0 {
                h.consecutive_failed_flushes += 1;
            } else if report.sent > 0 {
                h.consecutive_failed_flushes = 0;
            }
        }
        let new_drops = self.outbox().take_new_drops();
        report.dropped = new_drops
            .iter()
            .map(|((s, r), n)| (format!("{}/{}", s.as_str(), r.as_str()), *n))
            .collect();
        if !report.dropped.is_empty() {
            let summary: Vec<String> = report
                .dropped
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            tracing::warn!(
                "telemetry dropped: {} ({})",
                summary.join(", "),
                report.errors.join("; ")
            );
        } else if report.deferred > 0 {
            tracing::debug!(
                "export deferred to the next flush: {}",
                report.errors.join("; ")
            );
        }
        report
    }

    /// The final flush: whatever is still queued afterwards is dropped,
    /// counted and reported.
    pub async fn shutdown(&self, deadline: Instant) -> FlushReport {
        let mut report = self.flush(deadline).await;
        let mut outbox = self.outbox();
        if !outbox.is_empty() {
            outbox.drain_all(DropReason::Shutdown);
            let dropped = outbox.take_new_drops();
            let summary: Vec<String> = dropped
                .iter()
                .map(|((s, r), n)| format!("{}/{}={n}", s.as_str(), r.as_str()))
                .collect();
            tracing::warn!(
                "telemetry dropped at shutdown: {} ({})",
                summary.join(", "),
                report.errors.join("; ")
            );
            report.dropped.extend(
                dropped
                    .iter()
                    .map(|((s, r), n)| (format!("{}/{}", s.as_str(), r.as_str()), *n)),
            );
        }
        report
    }

    /// Counts items that were refused before reaching the outbox.
    pub fn count_drop(&self, signal: Signal, reason: DropReason, items: u64) {
        self.outbox().count_drop(signal, reason, items);
    }

    /// Total dropped items by (signal, reason).
    pub fn drops(&self) -> DropCounts {
        self.outbox().drops().clone()
    }

    fn jitter(&self, base: Duration) -> Duration {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        // xorshift64: cheap jitter, no RNG crate.
        h.rng ^= h.rng << 13;
        h.rng ^= h.rng >> 7;
        h.rng ^= h.rng << 17;
        base + Duration::from_micros(h.rng % (base.as_micros() as u64).max(1))
    }

    async fn drain(&self, signal: Signal, deadline: Instant, degraded: bool) -> FlushReport {
        let exporter = &self.signals[signal_index(signal)];
        let mut report = FlushReport::default();
        let mut quick_retries = 0u32;
        loop {
            let Some(mut entry) = self.outbox().pop(signal) else {
                break;
            };
            let now = Instant::now();
            if let Some(nb) = entry.not_before.map(Instant::from_std) {
                if nb > now {
                    if nb < deadline {
                        tokio::time::sleep_until(nb).await;
                    } else {
                        self.outbox().push_front(entry);
                        report.deferred += 1;
                        report
                            .errors
                            .push(format!("{signal:?}: waiting for Retry-After"));
                        break;
                    }
                }
            }
            entry.attempts += 1;
            match exporter.send(entry.body.clone(), deadline).await {
                Outcome::Accepted { rejected, message } => {
                    report.sent += 1;
                    *self.last_accepted.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Instant::now());
                    report.delivered_items += entry.items.saturating_sub(rejected);
                    if rejected > 0 {
                        self.outbox()
                            .count_drop(signal, DropReason::Rejected, rejected);
                        report.errors.push(format!(
                            "{signal:?}: partial success, {rejected} rejected: {message}"
                        ));
                    } else if !message.is_empty() {
                        tracing::debug!("{signal:?}: collector warning: {message}");
                    }
                }
                Outcome::Permanent { reason } => {
                    self.outbox()
                        .count_drop(signal, DropReason::Refused, entry.items);
                    self.count_failure(signal);
                    report.errors.push(format!("{signal:?}: {reason}"));
                }
                Outcome::Retryable {
                    reason,
                    retry_after,
                } => {
                    self.count_failure(signal);
                    let now = Instant::now();
                    // Honour Retry-After when it fits before the deadline.
                    if let Some(ra) = retry_after {
                        if now + ra < deadline && !degraded {
                            tokio::time::sleep(ra).await;
                            self.outbox().push_front(entry);
                            continue;
                        }
                        entry.not_before = Some((now + ra).into_std());
                    } else if !degraded && quick_retries < 2 {
                        // One or two quick retries ride over a blip; a longer
                        // outage waits for the next flush point instead.
                        let wait = self.jitter(Duration::from_millis(25 << quick_retries));
                        if now + wait < deadline {
                            quick_retries += 1;
                            tokio::time::sleep(wait).await;
                            self.outbox().push_front(entry);
                            continue;
                        }
                    }
                    self.outbox().push_front(entry);
                    report.deferred += 1;
                    report.errors.push(format!("{signal:?}: {reason}"));
                    break;
                }
            }
        }
        report
    }

    fn count_failure(&self, signal: Signal) {
        let mut m = self.self_metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.failures[signal_index(signal)] += 1;
    }

    /// Queues the bridge's own metrics when they changed since last time:
    /// `lambda_otel_bridge.dropped` {signal, reason} (cumulative),
    /// `lambda_otel_bridge.export.failures` {signal} (cumulative) and
    /// `lambda_otel_bridge.outbox.bytes` (gauge).
    fn queue_self_metrics(&self) {
        let (drops, bytes) = {
            let o = self.outbox();
            (o.drops().clone(), o.bytes())
        };
        let req = {
            let mut m = self.self_metrics.lock().unwrap_or_else(|p| p.into_inner());
            let state = (drops.clone(), m.failures, m.receiver);
            if drops.is_empty() && m.failures == [0; 3] && m.receiver == [0; 4] {
                return;
            }
            if m.last_reported.as_ref() == Some(&state) {
                return;
            }
            m.last_reported = Some(state);
            let now = crate::time::now();
            let point = |attrs, v: u64| NumberDataPoint {
                attributes: attrs,
                start_time_unix_nano: m.start,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsInt(
                    v.min(i64::MAX as u64) as i64
                )),
                ..NumberDataPoint::default()
            };
            let dropped: Vec<NumberDataPoint> = drops
                .iter()
                .map(|((s, r), n)| {
                    point(
                        vec![kv_str("signal", s.as_str()), kv_str("reason", r.as_str())],
                        *n,
                    )
                })
                .collect();
            let failures: Vec<NumberDataPoint> = Signal::ALL
                .iter()
                .map(|s| {
                    point(
                        vec![kv_str("signal", outbox::SignalKey::from(*s).as_str())],
                        m.failures[signal_index(*s)],
                    )
                })
                .collect();
            let sum = |name: &str, unit: &str, description: &str, points| Metric {
                name: name.into(),
                unit: unit.into(),
                description: description.into(),
                metadata: Vec::new(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
            };
            let mut metrics = vec![sum(
                "lambda_otel_bridge.export.failures",
                "{request}",
                "Failed export attempts of the bridge, by signal.",
                failures,
            )];
            if !dropped.is_empty() {
                metrics.insert(
                    0,
                    sum(
                        "lambda_otel_bridge.dropped",
                        "{item}",
                        "Spans, data points and log records the bridge could not deliver, by signal and reason.",
                        dropped,
                    ),
                );
            }
            let [skipped, rejected, duplicate, held_back] = m.receiver;
            if skipped > 0 {
                metrics.push(sum(
                    "lambda_otel_bridge.telemetry.skipped",
                    "{event}",
                    "Telemetry API events that could not be decoded and were skipped.",
                    vec![point(Vec::new(), skipped)],
                ));
            }
            let batches: Vec<NumberDataPoint> = [
                ("rejected", rejected),
                ("duplicate", duplicate),
                ("held_back", held_back),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(outcome, n)| point(vec![kv_str("outcome", outcome)], n))
            .collect();
            if !batches.is_empty() {
                metrics.push(sum(
                    "lambda_otel_bridge.telemetry.batches",
                    "{batch}",
                    "Telemetry API batches rejected (not a JSON array, 400), dropped as redeliveries, or answered late while the outbox drained.",
                    batches,
                ));
            }
            metrics.push(Metric {
                name: "lambda_otel_bridge.outbox.bytes".into(),
                unit: "By".into(),
                description: "Bytes waiting in the bridge's outbox.".into(),
                metadata: Vec::new(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsInt(bytes as i64)),
                        ..NumberDataPoint::default()
                    }],
                })),
            });
            ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: Some(m.resource.clone()),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: crate::mapping::SCOPE_NAME.into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..InstrumentationScope::default()
                        }),
                        metrics,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            }
        };
        let items = metric_items(&req);
        self.outbox().push(Entry {
            signal: Signal::Metrics,
            body: Bytes::from(req.encode_to_vec()),
            items,
            origin: Origin::Bridge,
            not_before: None,
            attempts: 0,
            seq: 0,
        });
    }
}
