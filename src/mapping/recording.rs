//! What each platform event adds to the metrics ([`super::metrics`] keeps
//! the series).
//!
//! An invocation's outcome (`faas.invocations` / `faas.errors` /
//! `faas.timeouts`) and `faas.invoke_duration` count once per invocation,
//! whichever of `platform.runtimeDone` and `platform.report` comes first:
//! runtimeDone is the source where it has the figure, the report where no
//! runtimeDone exists (Managed Instances, a lost one, one still to come) or
//! where runtimeDone carries no metrics (older payloads).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::invocation::Invocation;
use super::metrics::Temporality;
use super::metrics::{MetricId, Metrics};
use super::phases::PhaseKind;
use super::resource::mib_to_bytes;
use crate::lambda::events::{LogsDropped, PhaseReport, Report, RuntimeDone};
use crate::time::UnixNanos;

const BYTES_PER_MIB: f64 = 1_048_576.0;

/// The metrics of one execution environment, fed event by event.
#[derive(Debug)]
pub(super) struct Recorder {
    metrics: Metrics,
}

impl Recorder {
    pub(super) fn new(temporality: Temporality, faas_trigger: &str) -> Self {
        Recorder {
            metrics: Metrics::new(temporality, faas_trigger),
        }
    }

    /// Forgets every accumulation (a SnapStart restore).
    pub(super) fn reset(&mut self) {
        self.metrics.reset();
    }

    /// Points for every series changed since the last call.
    pub(super) fn collect(
        &mut self,
        resource: &Resource,
        scope: &InstrumentationScope,
    ) -> Option<ExportMetricsServiceRequest> {
        self.metrics.collect(resource, scope)
    }

    /// The first invocation after an init started.
    pub(super) fn coldstart(&mut self, t: UnixNanos) {
        self.metrics.add(MetricId::Coldstarts, 1, t);
    }

    /// `platform.initReport` / `platform.restoreReport`.
    pub(super) fn phase_report(&mut self, kind: PhaseKind, r: &PhaseReport, t: UnixNanos) {
        if let Some(ms) = r.metrics.duration_ms {
            let id = match kind {
                PhaseKind::Init => MetricId::InitDuration,
                PhaseKind::Restore => MetricId::RestoreDuration,
            };
            self.metrics.record(id, ms / 1000.0, t);
        }
    }

    /// `platform.runtimeDone` of `inv` (not seen before).
    pub(super) fn runtime_done(&mut self, inv: &mut Invocation, d: &RuntimeDone, t: UnixNanos) {
        self.outcome(inv, d.status.as_deref(), d.metrics.duration_ms, t);
        if let Some(b) = d.metrics.produced_bytes {
            self.metrics.add(MetricId::ProducedBytes, b, t);
        }
    }

    /// `platform.report` of `inv` (not seen before).
    pub(super) fn report(&mut self, inv: &mut Invocation, r: &Report, t: UnixNanos) {
        let m = &r.metrics;
        self.outcome(inv, r.status.as_deref(), m.duration_ms, t);
        if let Some(ms) = m.duration_ms {
            self.metrics
                .record(MetricId::ReportDuration, ms / 1000.0, t);
        }
        if let Some(ms) = m.billed_duration_ms {
            self.metrics
                .record(MetricId::BilledDuration, ms / 1000.0, t);
        }
        if let Some(mb) = m.max_memory_used_mb {
            self.metrics
                .record(MetricId::MemUsage, mb as f64 * BYTES_PER_MIB, t);
        }
        if let Some(mb) = m.memory_size_mb {
            self.metrics.set(MetricId::MemorySize, mib_to_bytes(mb), t);
        }
    }

    /// `platform.logsDropped`.
    pub(super) fn logs_dropped(&mut self, d: &LogsDropped, t: UnixNanos) {
        let records = d.dropped_records.unwrap_or(0);
        self.metrics.add(MetricId::LogsDroppedRecords, records, t);
        let bytes = d.dropped_bytes.unwrap_or(0);
        self.metrics.add(MetricId::LogsDroppedBytes, bytes, t);
    }

    /// The outcome counter and `faas.invoke_duration`, each once per invocation.
    fn outcome(
        &mut self,
        inv: &mut Invocation,
        status: Option<&str>,
        duration_ms: Option<f64>,
        t: UnixNanos,
    ) {
        let count_outcome = !std::mem::replace(&mut inv.outcome_recorded, true);
        let duration = duration_ms.filter(|_| !inv.invoke_duration_recorded);
        inv.invoke_duration_recorded |= duration.is_some();
        if count_outcome {
            self.metrics.add(outcome_metric(status), 1, t);
        }
        if let Some(ms) = duration {
            self.metrics
                .record(MetricId::InvokeDuration, ms / 1000.0, t);
        }
    }
}

/// The counter an invocation's status goes to.
fn outcome_metric(status: Option<&str>) -> MetricId {
    match status.map(str::to_ascii_lowercase).as_deref() {
        Some("success") | None => MetricId::Invocations,
        Some("timeout") => MetricId::Timeouts,
        // error, failure, and any status the platform adds later.
        Some(_) => MetricId::Errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::events::DurationMetrics;
    use crate::mapping::tests::{counter, gauge, histogram, metrics_of};
    use crate::mapping::Output;
    use opentelemetry_proto::tonic::metrics::v1::Metric;

    const T0: UnixNanos = 1_741_083_330_000_000_000;

    fn collect(r: &mut Recorder) -> Vec<Metric> {
        let metrics = r.collect(&Resource::default(), &InstrumentationScope::default());
        metrics_of(&Output {
            metrics,
            ..Output::default()
        })
    }

    #[test]
    fn statuses_count_as_invocations_errors_or_timeouts() {
        for (status, metric) in [
            (None, MetricId::Invocations),
            (Some("success"), MetricId::Invocations),
            (Some("Timeout"), MetricId::Timeouts),
            (Some("error"), MetricId::Errors),
            (Some("failure"), MetricId::Errors),
            (Some("a-status-added-later"), MetricId::Errors),
        ] {
            assert_eq!(outcome_metric(status), metric, "{status:?}");
        }
    }

    /// runtimeDone's outcome and duration count; the report that follows
    /// adds its own figures but counts the invocation no second time, even
    /// with another status.
    #[test]
    fn an_invocation_counts_once_across_runtime_done_and_report() {
        let mut rec = Recorder::new(Temporality::Cumulative, "other");
        let mut inv = Invocation::default();
        let mut done = RuntimeDone {
            status: Some("success".into()),
            ..RuntimeDone::default()
        };
        done.metrics.duration_ms = Some(500.0);
        done.metrics.produced_bytes = Some(42);
        rec.runtime_done(&mut inv, &done, T0);
        let mut report = Report {
            status: Some("timeout".into()),
            ..Report::default()
        };
        report.metrics.duration_ms = Some(510.0);
        report.metrics.max_memory_used_mb = Some(2);
        report.metrics.memory_size_mb = Some(128);
        rec.report(&mut inv, &report, T0 + 1);
        let m = collect(&mut rec);
        assert_eq!(counter(&m, "faas.invocations"), Some(1));
        assert_eq!(counter(&m, "faas.timeouts"), None);
        assert_eq!(histogram(&m, "faas.invoke_duration"), Some((1, 0.5)));
        assert_eq!(histogram(&m, "aws.lambda.duration"), Some((1, 0.51)));
        assert_eq!(histogram(&m, "faas.mem_usage"), Some((1, 2_097_152.0)));
        assert_eq!(gauge(&m, "aws.lambda.memory_size"), Some(134_217_728));
        assert_eq!(counter(&m, "aws.lambda.produced_bytes"), Some(42));
    }

    #[test]
    fn phase_reports_feed_init_or_restore_duration() {
        let mut rec = Recorder::new(Temporality::Cumulative, "other");
        let r = |ms| PhaseReport {
            metrics: DurationMetrics {
                duration_ms: Some(ms),
            },
            ..PhaseReport::default()
        };
        rec.phase_report(PhaseKind::Init, &r(250.0), T0);
        rec.phase_report(PhaseKind::Restore, &r(40.0), T0);
        rec.phase_report(PhaseKind::Restore, &PhaseReport::default(), T0);
        let m = collect(&mut rec);
        assert_eq!(histogram(&m, "faas.init_duration"), Some((1, 0.25)));
        assert_eq!(
            histogram(&m, "aws.lambda.restore_duration"),
            Some((1, 0.04))
        );
        rec.reset();
        rec.coldstart(T0);
        let m = collect(&mut rec);
        assert_eq!(histogram(&m, "faas.init_duration"), None, "forgotten");
        assert_eq!(counter(&m, "faas.coldstarts"), Some(1));
    }
}
