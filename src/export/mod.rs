//! Export: resolved settings ([`settings`]), the OTLP transport ([`otlp`],
//! [`tls`], [`codec`]), AWS-native delivery ([`aws`]: SigV4 signing and
//! collector headers from Secrets Manager or SSM), the bounded [`outbox`],
//! the drain's retry rules ([`drain`]) and the bridge's own metrics
//! ([`self_metrics`]).
//!
//! The processing stage ([`crate::stage`]) encodes both data paths into
//! `Export*ServiceRequest` protobuf parts, queued here ([`Exporter::queue`]);
//! a flush drains the outbox within a deadline the lifecycle chooses. The OTLP specification's rules decide what happens to
//! a request that fails: retryable failures (429/502/503/504, connection
//! errors, gRPC UNAVAILABLE, ...) stay queued for the next flush point,
//! honouring `Retry-After`; permanent ones (400, 413, ...) are dropped and
//! counted; partial successes are not retried and their rejected items are
//! counted. Every drop shows up in the bridge's own metric
//! `lambda_otel_bridge.dropped` and in one warning line per flush; the
//! bridge's own metrics are collected at the flush points and queued in the
//! same outbox.

pub mod answers;
pub mod aws;
pub mod codec;
pub mod core;
pub mod data_age;
pub mod drain;
mod ending;
pub mod items;
pub mod otlp;
pub mod outbox;
pub mod rpc;
pub mod self_metrics;
pub mod settings;
pub mod tls;
pub mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::time::Instant;

use crate::counters::Counters;
pub use drain::FlushKind;
pub use items::{count_items, log_items, metric_items, span_items};

use core::{Core, Health};
use otlp::SignalExporter;
use outbox::{DropCounts, DropReason, Entry, Outbox};
use self_metrics::SelfMetrics;
use settings::{ExportSettings, Signal};
use transport::Transport;

/// The collector counts as accepting for this long after it last accepted
/// a request ([`Exporter::backlogged`]).
const BACKLOG_ACCEPTED_WITHIN: Duration = Duration::from_secs(1);

/// What one flush did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    /// Requests accepted by the collector.
    pub sent: u32,
    /// Items (spans, points, records) in them.
    pub delivered_items: u64,
    /// Attempts that failed (retryable or permanent).
    pub failed: u32,
    /// Requests left queued for a later flush (retryable failure, Retry-After
    /// not yet due, or no time left).
    pub deferred: u32,
    /// Requests still running at the deadline: they finish on their own and
    /// are sent again only if they fail.
    pub in_flight: u32,
    /// Items dropped during this flush, by signal and reason.
    pub dropped: Vec<(String, u64)>,
    pub errors: Vec<String>,
}

/// One encoded request for the outbox, as the processing stage makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub signal: Signal,
    /// `Export*ServiceRequest`, protobuf-encoded.
    pub body: Bytes,
    /// Spans, data points or log records in it.
    pub items: u64,
    /// Time (Unix nanoseconds) of its oldest item: the bridge's own data,
    /// for the data-age metric.
    pub oldest: Option<u64>,
}

/// The exporters, the outbox and the bridge's own export metrics.
pub struct Exporter {
    disabled: bool,
    transports: [Arc<dyn Transport>; 3],
    core: Arc<Core>,
    /// The AWS credentials of signed exports and secret fetches, if any.
    credentials: Option<Arc<aws::credentials::CredentialProvider>>,
}

/// Largest trace or log request queued as one entry: 1 MiB, or a quarter
/// of a smaller outbox (so a burst never makes an entry the outbox cannot
/// hold).
pub fn max_request_bytes(outbox_bytes: usize) -> usize {
    (outbox_bytes / 4).clamp(16 * 1024, 1024 * 1024)
}

/// Drops as `("signal/reason", items)`.
fn drop_list(drops: &DropCounts) -> Vec<(String, u64)> {
    drops
        .iter()
        .map(|((s, r), n)| (format!("{}/{}", s.as_str(), r.as_str()), *n))
        .collect()
}

/// `signal/reason=items, ...` for a warning line.
fn drop_summary(drops: &[(String, u64)]) -> String {
    drops
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Exporter {
    /// Builds nothing expensive: connections and TLS are set up on first use.
    /// AWS credentials and secrets are read on first use, or when
    /// [`Exporter::start_secret_fetches`] is called.
    pub fn new(settings: &ExportSettings, outbox_bytes: usize) -> Self {
        let credentials = settings
            .uses_aws()
            .then(|| aws::credentials::CredentialProvider::new(settings.credentials.clone()));
        let counters = Arc::new(Counters::default());
        // One fetch per distinct secret, shared by the signals naming it.
        let mut secrets: Vec<Arc<aws::secrets::SecretHeaders>> = Vec::new();
        let mut transport = |s: &settings::SignalSettings| -> Arc<dyn Transport> {
            let secret = match (&s.headers_secret, &credentials) {
                (Some(spec), Some(creds)) => {
                    Some(match secrets.iter().find(|h| h.spec() == spec) {
                        Some(h) => h.clone(),
                        None => {
                            let h = aws::secrets::SecretHeaders::new(
                                spec.clone(),
                                creds.clone(),
                                counters.clone(),
                            );
                            secrets.push(h.clone());
                            h
                        }
                    })
                }
                _ => None,
            };
            Arc::new(SignalExporter::new(s.clone()).with_aws(credentials.clone(), secret))
        };
        let transports = [
            transport(&settings.traces),
            transport(&settings.metrics),
            transport(&settings.logs),
        ];
        let mut e = Exporter::build(transports, outbox_bytes, secrets, counters);
        e.disabled = settings.disabled;
        e.credentials = credentials;
        e
    }

    /// An exporter over the given transports (traces, metrics, logs).
    #[cfg(test)]
    pub fn with_transports(transports: [Arc<dyn Transport>; 3], outbox_bytes: usize) -> Self {
        Exporter::build(transports, outbox_bytes, Vec::new(), Arc::default())
    }

    fn build(
        transports: [Arc<dyn Transport>; 3],
        outbox_bytes: usize,
        secrets: Vec<Arc<aws::secrets::SecretHeaders>>,
        counters: Arc<Counters>,
    ) -> Self {
        Exporter {
            disabled: false,
            transports,
            core: Arc::new(Core {
                outbox: Mutex::new(Outbox::new(outbox_bytes)),
                health: Mutex::new(Health {
                    failing: false,
                    rng: crate::time::now() | 1,
                }),
                self_metrics: SelfMetrics::new(counters),
                last_accepted: Mutex::new(None),
                outstanding: Mutex::new([Vec::new(), Vec::new(), Vec::new()]),
                next_request: std::sync::atomic::AtomicU64::new(0),
                settled: tokio::sync::Notify::new(),
                relieved: tokio::sync::Notify::new(),
                secrets,
            }),
            credentials: None,
        }
    }

    /// Starts fetching the collector headers kept in AWS secrets, in the
    /// background (while the function initialises: nothing waits for it
    /// but the first export that needs them).
    pub fn start_secret_fetches(&self) {
        if self.disabled {
            return;
        }
        for s in &self.core.secrets {
            s.retry_if_failed();
        }
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.core.outbox()
    }

    /// Bytes waiting in the outbox.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.outbox().bytes()
    }

    /// Whether more than half the outbox is waiting while the collector is
    /// accepting (a request accepted within the last second): healthy but
    /// slower than telemetry arrives. A collector that fails or hangs never
    /// counts as backlogged.
    pub fn backlogged(&self) -> bool {
        self.backlogged_until().is_some()
    }

    /// While [`Exporter::backlogged`], when it stops being so unless the
    /// collector accepts again: one second after the last acceptance.
    fn backlogged_until(&self) -> Option<Instant> {
        let over = {
            let o = self.outbox();
            o.bytes() > o.cap() / 2
        };
        if !over || self.disabled {
            return None;
        }
        let accepted = (*self
            .core
            .last_accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner()))?;
        let until = accepted + BACKLOG_ACCEPTED_WITHIN;
        (until > Instant::now()).then_some(until)
    }

    /// Waits until the outbox is no longer [`Exporter::backlogged`], or
    /// until `deadline`; woken by the drain taking entries and by requests
    /// ending, never by polling.
    pub async fn wait_relieved(&self, deadline: Instant) {
        loop {
            let relieved = self.core.relieved.notified();
            tokio::pin!(relieved);
            relieved.as_mut().enable();
            let Some(until) = self.backlogged_until() else {
                return;
            };
            let wake = until.min(deadline);
            if tokio::time::timeout_at(wake, relieved).await.is_err() && wake == deadline {
                return;
            }
        }
    }

    /// The outbox's byte cap: a request larger than this can never be queued.
    pub fn outbox_capacity(&self) -> usize {
        self.outbox().cap()
    }

    /// The receivers' counters: the listener and the local receiver count
    /// into them, the bridge's own metrics report them.
    pub fn counters(&self) -> Arc<Counters> {
        self.core.self_metrics.counters()
    }

    /// Where the resource of the bridge's own metrics comes from (the
    /// mapper's, as the pipeline publishes it).
    pub fn follow_resource(&self, resource: tokio::sync::watch::Receiver<Resource>) {
        self.core.self_metrics.follow_resource(resource);
    }

    /// An invocation's billed time after its runtime was done: from
    /// `platform.runtimeDone` being seen to `/next`.
    pub fn record_post_runtime(&self, took: Duration) {
        self.core.self_metrics.record_post_runtime(took);
    }

    /// Queues what the processing stage ([`crate::stage`]) made.
    pub fn queue(&self, parts: impl IntoIterator<Item = Part>) {
        if self.disabled {
            return;
        }
        let mut outbox = self.outbox();
        for p in parts {
            outbox.push(Entry {
                signal: p.signal,
                body: p.body,
                items: p.items,
                not_before: None,
                oldest: p.oldest,
                seq: 0,
            });
        }
    }

    /// Queues an encoded request of `items` items as it is.
    #[cfg(test)]
    pub(crate) fn enqueue_raw(&self, signal: Signal, body: Bytes, items: u64) {
        self.queue([Part {
            signal,
            body,
            items,
            oldest: None,
        }]);
    }

    /// Whether the last request that ended failed retryably and nothing was
    /// accepted since.
    pub fn failing(&self) -> bool {
        self.core.health().failing
    }

    /// Requests sent and not yet ended, over all signals.
    pub fn outstanding_requests(&self) -> usize {
        self.core.outstanding().iter().map(Vec::len).sum()
    }

    /// A billed flush: exports what is queued before `deadline`; what could
    /// not be delivered for a retryable reason stays queued.
    pub async fn flush(&self, deadline: Instant) -> FlushReport {
        self.flush_as(deadline, FlushKind::Billed).await
    }

    /// Exports what is queued, giving up waiting at `deadline` (requests
    /// still running then finish on their own); what could not be
    /// delivered for a retryable reason stays queued.
    pub async fn flush_as(&self, deadline: Instant, kind: FlushKind) -> FlushReport {
        if self.disabled {
            return FlushReport::default();
        }
        let started = Instant::now();
        // A fetch of collector headers that failed is tried again at each
        // flush point (the data waits in the outbox meanwhile).
        self.start_secret_fetches();
        // A flush that only sends the bridge's own metrics is not timed:
        // timing it would make the next report, and so on forever.
        let had_data = !self.outbox().is_empty();
        self.queue_self_metrics(kind == FlushKind::Final);
        if self.outbox().is_empty() {
            return FlushReport::default();
        }
        let failing = self.failing();
        let (t, m, l) = tokio::join!(
            self.drain(Signal::Traces, deadline, kind, failing, started),
            self.drain(Signal::Metrics, deadline, kind, failing, started),
            self.drain(Signal::Logs, deadline, kind, failing, started),
        );
        let mut report = FlushReport::default();
        for r in [t, m, l] {
            report.sent += r.sent;
            report.delivered_items += r.delivered_items;
            report.failed += r.failed;
            report.deferred += r.deferred;
            report.in_flight += r.in_flight;
            report.errors.extend(r.errors);
        }
        if had_data {
            self.core
                .self_metrics
                .record_flush(kind.as_str(), started.elapsed());
        }
        report.dropped = drop_list(&self.outbox().take_new_drops());
        if !report.dropped.is_empty() {
            tracing::warn!(
                "telemetry dropped: {} ({})",
                drop_summary(&report.dropped),
                report.errors.join("; ")
            );
        } else if report.deferred > 0 || report.in_flight > 0 {
            tracing::debug!(
                deferred = report.deferred,
                in_flight = report.in_flight,
                "export not finished at the flush deadline: {}",
                report.errors.join("; ")
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

    fn queue_self_metrics(&self, final_flush: bool) {
        self.core.queue_self_metrics(final_flush);
    }
}

#[cfg(test)]
mod tests {
    //! The drain's rules against a scripted transport (no network).
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric, Metric};
    use prost::Message;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};
    use transport::Outcome;

    /// Answers from a script (then `fallback`), each after its delay.
    struct Scripted {
        script: Mutex<VecDeque<(Duration, Outcome)>>,
        fallback: (Duration, Outcome),
        calls: AtomicU32,
    }

    impl Scripted {
        fn new(script: Vec<(Duration, Outcome)>, fallback: (Duration, Outcome)) -> Arc<Self> {
            Arc::new(Scripted {
                script: Mutex::new(script.into()),
                fallback,
                calls: AtomicU32::new(0),
            })
        }
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Transport for Scripted {
        fn send(self: Arc<Self>, _body: Bytes, deadline: Instant) -> transport::SendFuture {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let (delay, outcome) = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| self.fallback.clone());
            Box::pin(async move {
                if tokio::time::timeout_at(deadline, tokio::time::sleep(delay))
                    .await
                    .is_err()
                {
                    return Outcome::Retryable {
                        reason: "timed out".into(),
                        retry_after: None,
                    };
                }
                outcome
            })
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(5)
        }
    }

    fn ok() -> Outcome {
        Outcome::Accepted {
            rejected: 0,
            message: String::new(),
        }
    }

    fn throttled() -> Outcome {
        Outcome::Retryable {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::ZERO),
        }
    }

    /// An exporter whose logs go through `logs`; traces and metrics accept.
    fn exporter(logs: Arc<Scripted>) -> Exporter {
        let quiet = || -> Arc<dyn Transport> { Scripted::new(vec![], (Duration::ZERO, ok())) };
        Exporter::with_transports([quiet(), quiet(), logs], 1 << 20)
    }

    fn queue_log(e: &Exporter, items: u64) {
        e.enqueue_raw(Signal::Logs, Bytes::from_static(b"x"), items);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn a_throttling_collector_gets_three_attempts_then_one_per_flush() {
        let logs = Scripted::new(vec![], (Duration::ZERO, throttled()));
        let e = exporter(logs.clone());
        queue_log(&e, 1);
        let r = e.flush(Instant::now() + ms(1000)).await;
        assert_eq!(logs.calls(), 3, "{r:?}");
        assert_eq!((r.failed, r.deferred, r.sent), (3, 1, 0), "{r:?}");
        assert!(e.failing());
        // Once failing: one attempt per flush, and the flush waits for nothing.
        for n in 0..5 {
            let started = Instant::now();
            let r = e.flush(Instant::now() + ms(1000)).await;
            assert_eq!(logs.calls(), 4 + n, "{r:?}");
            assert!(started.elapsed() < ms(500), "{:?}", started.elapsed());
        }
        // Still queued, nothing dropped.
        assert_eq!(e.outbox().len(), 1);
        assert!(e.drops().is_empty());
    }

    #[tokio::test]
    async fn retries_within_a_flush_wait_at_least_the_floor() {
        let logs = Scripted::new(
            vec![(Duration::ZERO, throttled()), (Duration::ZERO, throttled())],
            (Duration::ZERO, ok()),
        );
        let e = exporter(logs.clone());
        queue_log(&e, 2);
        let started = Instant::now();
        let r = e.flush(Instant::now() + ms(2000)).await;
        assert_eq!(
            (r.sent, r.delivered_items, logs.calls()),
            (1, 2, 3),
            "{r:?}"
        );
        // Two waits: at least 25 ms and 50 ms although Retry-After said 0.
        assert!(started.elapsed() >= ms(75), "{:?}", started.elapsed());
        assert!(!e.failing());
    }

    #[tokio::test]
    async fn a_slow_request_is_not_cancelled_or_sent_twice() {
        let logs = Scripted::new(vec![(ms(300), ok())], (Duration::ZERO, ok()));
        let e = exporter(logs.clone());
        queue_log(&e, 7);
        let r = e.flush(Instant::now() + ms(100)).await;
        assert_eq!((r.in_flight, r.sent), (1, 0), "{r:?}");
        assert_eq!(e.outstanding_requests(), 1);
        // The next flush point comes while it is still running: not sent again.
        let r = e.flush(Instant::now() + ms(100)).await;
        assert_eq!(logs.calls(), 1, "{r:?}");
        tokio::time::sleep(ms(300)).await;
        assert_eq!(e.outstanding_requests(), 0);
        let r = e.flush(Instant::now() + ms(100)).await;
        assert_eq!(logs.calls(), 1, "{r:?}");
        assert!(e.outbox().is_empty());
        assert!(e.drops().is_empty());
    }

    #[tokio::test]
    async fn a_failed_slow_request_is_queued_again() {
        let logs = Scripted::new(
            vec![(
                ms(200),
                Outcome::Retryable {
                    reason: "HTTP 503".into(),
                    retry_after: None,
                },
            )],
            (Duration::ZERO, ok()),
        );
        let e = exporter(logs.clone());
        queue_log(&e, 3);
        let r = e.flush(Instant::now() + ms(50)).await;
        assert_eq!(r.in_flight, 1, "{r:?}");
        tokio::time::sleep(ms(250)).await;
        assert_eq!(e.outbox().len(), 1);
        let r = e.flush(Instant::now() + ms(500)).await;
        // Sent again once (the bridge's own failure metric goes out too).
        assert_eq!(logs.calls(), 2, "{r:?}");
        assert!(e.outbox().is_empty() && e.drops().is_empty(), "{r:?}");
    }

    #[tokio::test]
    async fn no_time_left_is_not_a_collector_failure() {
        let logs = Scripted::new(vec![], (Duration::ZERO, ok()));
        let e = exporter(logs.clone());
        queue_log(&e, 1);
        let r = e.flush(Instant::now()).await;
        assert_eq!((logs.calls(), r.failed, r.deferred), (0, 0, 1), "{r:?}");
        assert!(!e.failing());
        let req = queued_self_metrics(&e);
        let failures = find(&req, "lambda_otel_bridge.export.failures");
        assert_eq!(sum_values(failures), vec![0, 0, 0]);
    }

    /// The bridge's own metrics as a final flush would queue them now.
    fn queued_self_metrics(e: &Exporter) -> ExportMetricsServiceRequest {
        e.core.queue_self_metrics(true);
        let entry = e.outbox().pop(Signal::Metrics).expect("a report is queued");
        let req = ExportMetricsServiceRequest::decode(entry.body).unwrap();
        assert_eq!(entry.items, metric_items(&req));
        req
    }

    fn find<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        req.resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} not in the report"))
    }

    /// A sum's point values, in attribute order.
    fn sum_values(m: &Metric) -> Vec<i64> {
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
        let Some(metric::Data::Sum(s)) = &m.data else {
            panic!("{m:?}");
        };
        let mut points: Vec<_> = s
            .data_points
            .iter()
            .map(|p| {
                let key = format!("{:?}", p.attributes);
                match p.value {
                    Some(Value::AsInt(v)) => (key, v),
                    _ => panic!("{p:?}"),
                }
            })
            .collect();
        points.sort();
        points.into_iter().map(|(_, v)| v).collect()
    }

    #[tokio::test]
    async fn a_refused_request_shows_in_the_queued_self_metrics() {
        let logs = Scripted::new(
            vec![(
                Duration::ZERO,
                Outcome::Permanent {
                    reason: "HTTP 400".into(),
                },
            )],
            (Duration::ZERO, ok()),
        );
        let e = exporter(logs);
        let (_resource, rx) = tokio::sync::watch::channel(Resource {
            attributes: vec![crate::mapping::proto::kv_str("faas.name", "f")],
            ..Resource::default()
        });
        e.follow_resource(rx);
        queue_log(&e, 4);
        let r = e.flush(Instant::now() + ms(500)).await;
        assert_eq!(r.failed, 1, "{r:?}");
        let req = queued_self_metrics(&e);
        assert_eq!(
            req.resource_metrics[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes,
            vec![crate::mapping::proto::kv_str("faas.name", "f")]
        );
        let dropped = find(&req, "lambda_otel_bridge.dropped");
        let Some(metric::Data::Sum(s)) = &dropped.data else {
            panic!("{dropped:?}");
        };
        assert_eq!(s.data_points.len(), 1);
        let p = &s.data_points[0];
        let mut attrs: Vec<_> = p
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), format!("{:?}", kv.value)))
            .collect();
        attrs.sort();
        assert_eq!(attrs[0].0, "reason");
        assert!(attrs[0].1.contains("\"refused\""), "{attrs:?}");
        assert_eq!(attrs[1].0, "signal");
        assert!(attrs[1].1.contains("\"logs\""), "{attrs:?}");
        assert_eq!(sum_values(dropped), vec![4]);
        // One failure, of logs (attribute order: logs, metrics, traces).
        let failures = find(&req, "lambda_otel_bridge.export.failures");
        assert_eq!(sum_values(failures), vec![1, 0, 0]);
        // The flush that had data was timed, as billed.
        let flushes = find(&req, "lambda_otel_bridge.flush.duration");
        let Some(metric::Data::Histogram(h)) = &flushes.data else {
            panic!("{flushes:?}");
        };
        assert_eq!(h.data_points.len(), 1);
        assert_eq!(h.data_points[0].count, 1);
        assert!(format!("{:?}", h.data_points[0].attributes).contains("\"billed\""));
    }

    #[tokio::test]
    async fn a_flush_of_only_the_bridges_own_metrics_is_not_timed() {
        let e = exporter(Scripted::new(vec![], (Duration::ZERO, ok())));
        e.count_drop(Signal::Traces, DropReason::OutboxFull, 1);
        // The drop makes a report; sending it is not timed, so nothing new
        // is left to say afterwards.
        let r = e.flush(Instant::now() + ms(500)).await;
        assert_eq!(r.sent, 1, "{r:?}");
        let r = e.flush_as(Instant::now() + ms(500), FlushKind::Final).await;
        assert_eq!(r.sent, 0, "{r:?}");
        assert!(e.outbox().is_empty());
    }

    #[tokio::test]
    async fn retry_after_beyond_the_deadline_waits_in_the_outbox() {
        let logs = Scripted::new(
            vec![(
                Duration::ZERO,
                Outcome::Retryable {
                    reason: "HTTP 429".into(),
                    retry_after: Some(ms(400)),
                },
            )],
            (Duration::ZERO, ok()),
        );
        let e = exporter(logs.clone());
        queue_log(&e, 1);
        e.flush(Instant::now() + ms(100)).await;
        assert_eq!(logs.calls(), 1);
        // Before the Retry-After: not sent.
        let r = e.flush(Instant::now() + ms(100)).await;
        assert_eq!(logs.calls(), 1, "{r:?}");
        tokio::time::sleep(ms(400)).await;
        let r = e.flush(Instant::now() + ms(100)).await;
        assert_eq!((logs.calls(), r.sent), (2, 1), "{r:?}");
    }

    /// A collector that never answers: one request of 4 log records
    /// running, and one of `queued` records waiting.
    async fn one_hanging_and_one_queued(queued: u64) -> Exporter {
        let logs = Scripted::new(vec![], (ms(10_000), ok()));
        let e = exporter(logs);
        queue_log(&e, 4);
        e.flush(Instant::now() + ms(20)).await;
        queue_log(&e, queued);
        e
    }

    // Paused clock: the waits below are virtual, so the check is exact.
    #[tokio::test(start_paused = true)]
    async fn a_busy_collector_costs_a_billed_flush_nothing_once_slots_are_full() {
        let logs = Scripted::new(vec![], (ms(10_000), ok()));
        let e = exporter(logs.clone());
        for _ in 0..drain::MAX_OUTSTANDING {
            queue_log(&e, 1);
            e.flush(Instant::now() + ms(20)).await;
        }
        assert_eq!(e.outstanding_requests(), drain::MAX_OUTSTANDING);
        // Unanswered for long enough to count as a busy collector.
        tokio::time::sleep(drain::STALLED_AFTER).await;
        queue_log(&e, 1);
        let started = Instant::now();
        let r = e.flush(Instant::now() + ms(1000)).await;
        assert_eq!(logs.calls() as usize, drain::MAX_OUTSTANDING, "{r:?}");
        // No slot: the billed flush does not wait for one (it used to wait
        // DEGRADED_WAIT).
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn requests_unanswered_at_shutdown_are_counted() {
        let e = one_hanging_and_one_queued(5).await;
        let r = e.shutdown(Instant::now() + ms(100)).await;
        let drops = e.drops();
        assert_eq!(
            drops.get(&(Signal::Logs, DropReason::Unconfirmed)),
            Some(&9),
            "{r:?} {drops:?}"
        );
    }

    /// A transport whose requests take `prepare` of CPU first (OTLP/JSON,
    /// gzip).
    struct Costly(Arc<Scripted>, Duration);

    impl Transport for Costly {
        fn send(self: Arc<Self>, body: Bytes, deadline: Instant) -> transport::SendFuture {
            self.0.clone().send(body, deadline)
        }
        fn timeout(&self) -> Duration {
            self.0.timeout()
        }
        fn prepare_cost(&self, _len: usize) -> Duration {
            self.1
        }
    }

    #[tokio::test]
    async fn preparation_cost_is_reserved_before_the_deadline() {
        let logs = Scripted::new(vec![], (Duration::ZERO, ok()));
        let quiet = || -> Arc<dyn Transport> { Scripted::new(vec![], (Duration::ZERO, ok())) };
        let costly: Arc<dyn Transport> = Arc::new(Costly(logs.clone(), ms(200)));
        let e = Exporter::with_transports([quiet(), quiet(), costly], 1 << 20);
        queue_log(&e, 1);
        // 100 ms left, 200 ms of work: not started, not a failure.
        let r = e.flush(Instant::now() + ms(100)).await;
        assert_eq!((logs.calls(), r.deferred, r.failed), (0, 1, 0), "{r:?}");
        let r = e.flush(Instant::now() + ms(400)).await;
        // The log request, and the bridge's own metrics (the first flush's
        // duration) through the metrics transport.
        assert_eq!((logs.calls(), r.sent), (1, 2), "{r:?}");
        assert!(e.outbox().is_empty());
    }

    #[tokio::test]
    async fn nothing_is_kept_for_a_snapshot() {
        let e = one_hanging_and_one_queued(6).await;
        e.discard_for_snapshot(Instant::now() + ms(50)).await;
        assert_eq!(e.outstanding_requests(), 0);
        assert!(e.outbox().is_empty());
        assert_eq!(
            e.drops().get(&(Signal::Logs, DropReason::Snapshot)),
            Some(&10)
        );
    }
}
