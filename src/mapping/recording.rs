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
use super::metrics::{MetricId, Metrics};
use super::phases::PhaseKind;
use super::resource::mib_to_bytes;
use crate::export::settings::Temporality;
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
