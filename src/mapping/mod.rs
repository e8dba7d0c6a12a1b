//! Mapping: Telemetry API events and invocation state → OTLP data.
//!
//! Pure and deterministic: no clock, no randomness. Times come from the
//! events (the observed time is passed in by the receiver), ids from the
//! X-Ray context or derived from the request id ([`xray`]). The normative
//! description is `proto-mapping/MAPPING.md`; the golden cases in
//! `proto-mapping/cases/` run through [`Mapper`].
//!
//! [`Mapper::ingest`] updates the invocation table and the metrics as
//! events arrive (the lifecycle waits on the table) and queues log records;
//! [`Mapper::take`] turns what is complete into OTLP requests at a flush
//! point: invocation spans once `platform.runtimeDone` (or, on Lambda
//! Managed Instances, `platform.report`) is in, report child spans once the
//! report is in, init/restore spans once they are attached to the invocation
//! they delayed, and log records once the span they link to is known.
//!
//! The [`Mapper`] coordinates rooms, each with its own state: [`phases`]
//! (init and restore phases, their placement and spans), `attribution`
//! (pending log records and which invocation each belongs to), `spans`
//! (invocation span assembly), `recording` (what each event adds to the
//! metrics), beside the invocation table ([`invocation`]).

pub mod invocation;
pub mod log_lines;
pub mod logs;
pub mod metrics;
pub mod platform_lines;
pub mod proto;
pub mod resource;
pub mod sampling;
pub mod traces;
pub mod xray;

mod attribution;
mod phases;
mod recording;
mod spans;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::counters::Counters;
use crate::lambda::events::{EventKind, Report, RuntimeDone, Start, TelemetryEvent};
use crate::time::UnixNanos;
use attribution::{Attribution, PendingLogs};
use invocation::{InvocationTable, InvokeInfo};
use logs::LogSource;
use metrics::Temporality;
use phases::{PhaseKind, Phases};
use recording::Recorder;

/// Instrumentation scope of everything the bridge maps.
pub const SCOPE_NAME: &str = "lambda-otel-bridge";

/// Mapping choices that are settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MapperSettings {
    pub temporality: Temporality,
    /// `faas.trigger` (the Telemetry API does not reveal the trigger).
    pub faas_trigger: String,
    /// Also emit platform events as CloudWatch-style log lines.
    pub platform_log_lines: bool,
    /// Invocation span name (the function name); `invoke` when unknown.
    pub function_name: Option<String>,
    /// Function version, for `cloud.resource_id` when `platform.start` has none.
    pub function_version: Option<String>,
    /// Which id invocation spans take.
    pub span_id_mode: invocation::SpanIdMode,
    /// Which invocations' spans are exported.
    pub sampling: sampling::Sampling,
    /// Function and extension records below this `SeverityNumber` are
    /// dropped (0: none); records of unknown severity are kept.
    pub logs_min_severity: i32,
}

impl Default for MapperSettings {
    fn default() -> Self {
        MapperSettings {
            temporality: Temporality::Cumulative,
            faas_trigger: "other".into(),
            platform_log_lines: false,
            function_name: None,
            function_version: None,
            span_id_mode: invocation::SpanIdMode::Telemetry,
            sampling: sampling::Sampling::default(),
            logs_min_severity: 0,
        }
    }
}

/// Counters about what was mapped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapStats {
    /// Events of a type the bridge does not know (skipped).
    pub unknown_events: u64,
    /// Platform events received again (a re-delivered batch), ignored.
    pub duplicate_events: u64,
    pub log_records: u64,
    pub spans: u64,
    pub reports: u64,
    /// `platform.logsDropped` events: Lambda dropped telemetry (possibly
    /// platform events too).
    pub drop_notices: u64,
    /// Log records and init phases received before a SnapStart snapshot and
    /// still pending at the restore: dropped, not exported once per
    /// restored environment.
    pub snapshot_records: u64,
}

/// What one flush exports.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    pub traces: Option<ExportTraceServiceRequest>,
    pub metrics: Option<ExportMetricsServiceRequest>,
    pub logs: Option<ExportLogsServiceRequest>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.traces.is_none() && self.metrics.is_none() && self.logs.is_none()
    }
}

/// What the mapper knows about the telemetry stream as a whole.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    /// Latest time seen in any event (ends incomplete spans at shutdown).
    latest: UnixNanos,
    /// Invocations run concurrently (Lambda Managed Instances): a record
    /// without a request id cannot be attributed to "the current" one.
    concurrent: bool,
    /// Shutdown: whatever is known is final.
    finishing: bool,
    /// Platform events are flowing (a `platform.start` was seen).
    platform_start_seen: bool,
}

/// How the mapper took an event in.
enum Taken {
    Mapped,
    /// Mapped, and it opened this init/restore phase.
    Opened(u64),
    /// A platform event received before (a re-delivered batch): ignored.
    Duplicate,
    /// An event type the bridge does not know: skipped.
    Unknown,
}

/// The mapping state of one execution environment.
pub struct Mapper {
    config: MapperSettings,
    resource: Resource,
    scope: InstrumentationScope,
    invocations: InvocationTable,
    phases: Phases,
    logs: PendingLogs,
    metrics: Recorder,
    stream: Stream,
    stats: MapStats,
}

impl Mapper {
    pub fn new(resource: Resource, config: MapperSettings) -> Self {
        Mapper {
            metrics: Recorder::new(config.temporality, &config.faas_trigger),
            invocations: InvocationTable::new(config.span_id_mode)
                .with_sampling(config.sampling.clone()),
            logs: PendingLogs::with_min_severity(config.logs_min_severity),
            config,
            resource,
            scope: InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..InstrumentationScope::default()
            },
            phases: Phases::default(),
            stream: Stream::default(),
            stats: MapStats::default(),
        }
    }

    /// Counts what the mapper drops on purpose (log records below the
    /// minimum severity) into `counters`, the bridge's one set of counters;
    /// without it they go to a set of the mapper's own.
    pub fn count_into(mut self, counters: Arc<Counters>) -> Self {
        self.logs.count_into(counters);
        self
    }

    /// The resource everything is exported with.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Counters about what was mapped.
    pub fn stats(&self) -> &MapStats {
        &self.stats
    }

    /// An INVOKE event from the Extensions API.
    pub fn on_invoke(&mut self, request_id: &str, info: InvokeInfo) {
        self.invocations.on_invoke(request_id, info);
    }

    /// Whether `platform.runtimeDone` for `request_id` has arrived.
    pub fn runtime_done_seen(&self, request_id: &str) -> bool {
        self.invocations
            .get(request_id)
            .is_some_and(|i| i.runtime_done.is_some())
    }

    /// Whether `platform.start` for `request_id` has arrived.
    pub fn start_seen(&self, request_id: &str) -> bool {
        self.invocations
            .get(request_id)
            .is_some_and(|i| i.start.is_some())
    }

    /// How many invocations started (or were invoked) whose report has not
    /// arrived.
    pub fn awaiting_report_count(&self) -> usize {
        self.invocations.awaiting_report().len()
    }

    /// Invocations forgotten unfinished to keep the table bounded (more
    /// than `MAX_TRACKED` without a report): their spans are lost.
    pub fn evicted_invocations(&self) -> u64 {
        self.invocations.evicted()
    }

    /// Whether one of the `recent` newest invocations awaits its report.
    pub fn awaits_recent_report(&self, recent: usize) -> bool {
        self.invocations.awaits_recent_report(recent)
    }

    /// Number of log records waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.logs.len()
    }

    /// One Telemetry API event; `observed` is when its batch was received.
    pub fn ingest(&mut self, ev: TelemetryEvent, observed: UnixNanos) {
        let time = ev.time;
        self.stream.latest = self.stream.latest.max(time.unwrap_or(observed));
        let event_name = ev.kind.static_type_name();
        // The event's CloudWatch-style line, queued once the event is in. A
        // line naming no invocation stands where the stream stood when its
        // event came (a phase's runtimeDone and report lines are the
        // phase's), except the line that opens a phase, which is the new
        // phase's.
        let line = self
            .config
            .platform_log_lines
            .then(|| platform_lines::of_event(&ev.kind))
            .flatten()
            .map(|line| {
                let at = match line.request_id {
                    Some(rid) => Attribution::Request(rid.into()),
                    None => self.stream_position(),
                };
                (line.text, at)
            });
        let opened = match self.take_in(ev.kind, time, observed) {
            Taken::Duplicate => {
                self.stats.duplicate_events += 1;
                return;
            }
            Taken::Unknown => {
                self.stats.unknown_events += 1;
                return;
            }
            Taken::Opened(phase) => Some(Attribution::Phase(phase)),
            Taken::Mapped => None,
        };
        if let Some((text, stood)) = line {
            let at = opened.unwrap_or(stood);
            self.logs.push_line(text, time, observed, event_name, at);
        }
    }

    /// Hands one event to the rooms it concerns.
    fn take_in(&mut self, kind: EventKind, time: Option<UnixNanos>, observed: UnixNanos) -> Taken {
        let t = time.unwrap_or(observed);
        match kind {
            EventKind::InitStart(s) => {
                self.stream.concurrent |= phases::runs_concurrently(&s);
                if let Some(instance) = s.instance_id.as_deref() {
                    self.set_faas_instance(instance);
                }
                Taken::Opened(self.phases.init_start(time, s, &mut self.invocations))
            }
            EventKind::RestoreStart(s) => {
                self.forget_snapshot_state(observed);
                if let Some(instance) = s.instance_id.as_deref() {
                    // Every environment restored from one snapshot shares the
                    // snapshot's identity: take the restored environment's instead.
                    self.set_resource_attr("faas.instance", instance);
                    self.set_resource_attr("service.instance.id", instance);
                }
                Taken::Opened(self.phases.restore_start(time, s, &mut self.invocations))
            }
            EventKind::InitRuntimeDone(d) => {
                self.phases
                    .done(PhaseKind::Init, time, d, &self.invocations);
                Taken::Mapped
            }
            EventKind::RestoreRuntimeDone(d) => {
                self.phases
                    .done(PhaseKind::Restore, time, d, &self.invocations);
                Taken::Mapped
            }
            EventKind::InitReport(r) => {
                self.metrics.phase_report(PhaseKind::Init, &r, t);
                self.phases
                    .report(PhaseKind::Init, time, r, &self.invocations);
                Taken::Mapped
            }
            EventKind::RestoreReport(r) => {
                self.metrics.phase_report(PhaseKind::Restore, &r, t);
                self.phases
                    .report(PhaseKind::Restore, time, r, &self.invocations);
                Taken::Mapped
            }
            EventKind::Start(s) => self.on_start(time, t, s),
            EventKind::RuntimeDone(d) => self.on_runtime_done(time, t, d),
            EventKind::Report(r) => self.on_report(time, t, r),
            EventKind::LogsDropped(d) => {
                self.stats.drop_notices += 1;
                self.metrics.logs_dropped(&d, t);
                let at = self.stream_position();
                self.logs.push_drop_notice(&d, time, observed, at);
                Taken::Mapped
            }
            EventKind::Extension(_) | EventKind::TelemetrySubscription(_) => Taken::Mapped,
            EventKind::Function(record) => {
                let at = self.stream_position();
                self.logs
                    .push_record(LogSource::Function, record, time, observed, at);
                Taken::Mapped
            }
            EventKind::ExtensionLog(record) => {
                let at = self.stream_position();
                self.logs
                    .push_record(LogSource::Extension, record, time, observed, at);
                Taken::Mapped
            }
            EventKind::Unknown { .. } => Taken::Unknown,
        }
    }

    fn on_start(&mut self, time: Option<UnixNanos>, t: UnixNanos, s: Start) -> Taken {
        if self.invocations.is_retired(&s.request_id) {
            return Taken::Duplicate;
        }
        self.stream.platform_start_seen = true;
        let rid = s.request_id.clone();
        if !self.invocations.on_start(time, s) {
            return Taken::Duplicate;
        }
        self.phases.place_unplaced(&rid);
        if self.invocations.get(&rid).is_some_and(|i| i.coldstart) {
            self.metrics.coldstart(t);
        }
        Taken::Mapped
    }

    fn on_runtime_done(&mut self, time: Option<UnixNanos>, t: UnixNanos, d: RuntimeDone) -> Taken {
        if self.invocations.is_retired(&d.request_id) || self.runtime_done_seen(&d.request_id) {
            return Taken::Duplicate;
        }
        // A report that overtook this runtimeDone may have counted the
        // invocation already.
        let inv = self.invocations.entry(&d.request_id);
        self.metrics.runtime_done(inv, &d, t);
        self.invocations.on_runtime_done(time, d);
        Taken::Mapped
    }

    fn on_report(&mut self, time: Option<UnixNanos>, t: UnixNanos, r: Report) -> Taken {
        let seen = |inv: &invocation::Invocation| inv.report.is_some();
        if self.invocations.is_retired(&r.request_id)
            || self.invocations.get(&r.request_id).is_some_and(seen)
        {
            return Taken::Duplicate;
        }
        self.stats.reports += 1;
        let inv = self.invocations.entry(&r.request_id);
        self.metrics.report(inv, &r, t);
        self.invocations.on_report(time, r);
        Taken::Mapped
    }

    /// Where the stream puts a record that names no invocation now.
    fn stream_position(&self) -> Attribution {
        let open = self.phases.open();
        Attribution::stream_position(open, &self.invocations, self.stream.concurrent)
    }

    /// A SnapStart restore: what the bridge received before it (observed
    /// earlier than the restore's own batch) was in memory when the
    /// snapshot was taken, and so is in every environment restored from
    /// it. Exported here it would be exported once per environment: pending
    /// log records and unexported init phases are dropped (counted in
    /// `stats().snapshot_records`) and the metric accumulations start
    /// afresh. What was exported before the snapshot (the lifecycle flushes
    /// before its first `/next`) stays exported once.
    fn forget_snapshot_state(&mut self, restore_observed: UnixNanos) {
        let records = self.logs.forget_before(restore_observed);
        let phases = self.phases.forget_snapshot();
        self.metrics.reset();
        self.stats.snapshot_records += records + phases;
    }

    /// `faas.instance`: Lambda's execution-environment id as the platform
    /// reports it (the log stream name is not visible to extensions).
    fn set_faas_instance(&mut self, instance: &str) {
        if !self
            .resource
            .attributes
            .iter()
            .any(|a| a.key == "faas.instance")
        {
            self.set_resource_attr("faas.instance", instance);
        }
    }

    fn set_resource_attr(&mut self, key: &str, value: &str) {
        self.resource.attributes.retain(|a| a.key != key);
        self.resource.attributes.push(proto::kv_str(key, value));
        self.resource.attributes.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// Maps everything that is complete into OTLP requests.
    pub fn take(&mut self) -> Output {
        self.take_with(Vec::new())
    }

    /// Shutdown output: everything, including incomplete invocations. Phases
    /// no invocation followed stand alone, and invocations that started but
    /// never ended get an incomplete span.
    pub fn take_final(&mut self) -> Output {
        self.stream.finishing = true;
        self.phases.finish();
        self.invocations.settle_unfinished();
        let incomplete =
            spans::take_incomplete_spans(&mut self.invocations, &self.config, &self.stream);
        self.take_with(incomplete)
    }

    /// [`Self::take`], with `incomplete` spans after the complete ones.
    fn take_with(&mut self, incomplete: Vec<Span>) -> Output {
        let mut spans =
            spans::take_invocation_spans(&mut self.invocations, &self.config, &self.stream);
        spans.extend(
            self.phases
                .take_spans(&self.invocations, self.stream.finishing),
        );
        spans.extend(incomplete);
        self.stats.spans += spans.len() as u64;
        // Before phases whose spans went out are forgotten: their lines
        // still take their ids.
        let logs = self
            .logs
            .take(&self.invocations, &self.phases, &self.stream);
        self.stats.log_records += logs.len() as u64;
        let metrics = self.metrics.collect(&self.resource, &self.scope);
        self.invocations.retire_completed();
        self.phases.drop_emitted();
        Output {
            traces: spans::traces_request(&self.resource, &self.scope, spans),
            metrics,
            logs: (!logs.is_empty()).then(|| ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(self.resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(self.scope.clone()),
                        log_records: logs,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            }),
        }
    }
}
