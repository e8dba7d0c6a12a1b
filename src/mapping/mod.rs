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

pub mod invocation;
pub mod log_lines;
pub mod logs;
pub mod metrics;
pub mod platform_lines;
pub mod proto;
pub mod resource;
pub mod traces;
pub mod xray;

#[cfg(test)]
mod tests;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::lambda::events::{
    EventKind, InitStart, LogRecord, PhaseDone, PhaseReport, RestoreStart, TelemetryEvent,
};
use crate::time::{millis_f64_to_nanos, UnixNanos};
use invocation::{InvocationTable, InvokeInfo, TraceIds};
use logs::{attach_invocation, map_log_body, IdSource, LogSource};
use metrics::{MetricId, Metrics, Temporality};
use xray::{derived_span_id, derived_trace_id};

/// Instrumentation scope of everything the bridge maps.
pub const SCOPE_NAME: &str = "lambda-otel-bridge";

/// Mapping choices that are settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MapperConfig {
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
}

impl Default for MapperConfig {
    fn default() -> Self {
        MapperConfig {
            temporality: Temporality::Cumulative,
            faas_trigger: "other".into(),
            platform_log_lines: false,
            function_name: None,
            function_version: None,
            span_id_mode: invocation::SpanIdMode::Telemetry,
        }
    }
}

/// Counters about what was mapped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapStats {
    pub events: u64,
    pub unknown_events: u64,
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

/// The invocation (or init/restore phase) a log record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attribution {
    Request(std::sync::Arc<str>),
    Phase(u64),
    None,
}

/// A record waiting for the next flush.
struct PendingLog {
    source: LogSource,
    record: LogRecord,
    time: Option<UnixNanos>,
    observed: UnixNanos,
    attribution: Attribution,
    event_name: &'static str,
    /// Severity set by the bridge (platform lines), else parsed from the record.
    severity: Option<(i32, &'static str)>,
    extra: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    /// Flush points this record waited for its invocation's context.
    held: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PhaseKind {
    Init,
    Restore,
}

/// An init or SnapStart restore phase.
#[derive(Debug, Clone)]
struct Phase {
    id: u64,
    kind: PhaseKind,
    start: Option<UnixNanos>,
    initialization_type: Option<String>,
    phase: Option<String>,
    runtime_version: Option<String>,
    runtime_version_arn: Option<String>,
    instance_id: Option<String>,
    done: Option<(Option<UnixNanos>, PhaseDone)>,
    report: Option<(Option<UnixNanos>, PhaseReport)>,
    /// The invocation it delayed.
    attached: Option<String>,
    /// Delayed no invocation (provisioned concurrency, managed instances, or
    /// none came before shutdown): its own trace.
    standalone: bool,
    emitted: bool,
    /// How many phases of this kind were placed in the same invocation before.
    ordinal: u32,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self.kind {
            PhaseKind::Init => "init",
            PhaseKind::Restore => "restore",
        }
    }

    fn resolved(&self) -> bool {
        self.attached.is_some() || self.standalone
    }

    /// Key for derived ids of a standalone phase.
    fn key(&self) -> String {
        format!(
            "{}:{}@{}#{}",
            self.name(),
            self.instance_id.as_deref().unwrap_or(""),
            self.start.unwrap_or(0),
            self.id
        )
    }
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

/// The mapping state of one execution environment.
pub struct Mapper {
    config: MapperConfig,
    resource: Resource,
    scope: InstrumentationScope,
    pub invocations: InvocationTable,
    phases: Vec<Phase>,
    next_phase_id: u64,
    /// The phase whose log lines are arriving (until the next platform.start).
    open_phase: Option<u64>,
    pending_logs: Vec<PendingLog>,
    metrics: Metrics,
    /// Latest time seen in any event (ends incomplete spans at shutdown).
    latest: UnixNanos,
    /// Invocations run concurrently (Lambda Managed Instances): a record
    /// without a request id cannot be attributed to "the current" one.
    concurrent: bool,
    /// Shutdown: whatever is known is final.
    finishing: bool,
    /// Platform events are flowing (a `platform.start` was seen).
    seen_platform_start: bool,
    /// Phases already placed per invocation and kind (span-id ordinals).
    phase_slots: std::collections::HashMap<String, u32>,
    pub stats: MapStats,
}

impl Mapper {
    pub fn new(resource: Resource, config: MapperConfig) -> Self {
        let span_id_mode = config.span_id_mode;
        Mapper {
            metrics: Metrics::new(config.temporality, &config.faas_trigger),
            config,
            resource,
            scope: InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..InstrumentationScope::default()
            },
            invocations: InvocationTable::new(span_id_mode),
            phases: Vec::new(),
            next_phase_id: 0,
            open_phase: None,
            pending_logs: Vec::new(),
            latest: 0,
            concurrent: false,
            finishing: false,
            seen_platform_start: false,
            phase_slots: std::collections::HashMap::new(),
            stats: MapStats::default(),
        }
    }

    /// The resource everything is exported with.
    pub fn resource(&self) -> &Resource {
        &self.resource
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

    /// Number of log records waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.pending_logs.len()
    }

    /// One Telemetry API event; `observed` is when its batch was received.
    pub fn ingest(&mut self, ev: TelemetryEvent, observed: UnixNanos) {
        self.stats.events += 1;
        let time = ev.time;
        let t = time.unwrap_or(observed);
        self.latest = self.latest.max(t);
        let type_name = ev.kind.static_type_name();
        match ev.kind {
            EventKind::InitStart(s) => self.on_init_start(time, observed, s),
            EventKind::RestoreStart(s) => self.on_restore_start(time, observed, s),
            EventKind::InitRuntimeDone(d) | EventKind::RestoreRuntimeDone(d) => {
                let kind = phase_kind(type_name);
                if self.config.platform_log_lines {
                    let line = platform_lines::phase_done(type_name, &d);
                    self.queue_platform_line(line, time, observed, type_name);
                }
                if self
                    .last_phase_mut(kind)
                    .is_none_or(|p| p.done.is_some() || p.emitted)
                {
                    // A retried init without its own initStart (Lambda re-runs
                    // a failed init inside the first invocation).
                    self.open_retry_phase(kind, d.phase.clone(), d.initialization_type.clone());
                }
                if let Some(p) = self.last_phase_mut(kind) {
                    p.done.get_or_insert((time, d));
                }
            }
            EventKind::InitReport(r) | EventKind::RestoreReport(r) => {
                let kind = phase_kind(type_name);
                if let Some(ms) = r.metrics.duration_ms {
                    let id = if kind == PhaseKind::Init {
                        MetricId::InitDuration
                    } else {
                        MetricId::RestoreDuration
                    };
                    self.metrics.record(id, ms / 1000.0, t);
                }
                if self.config.platform_log_lines {
                    let line = platform_lines::phase_report(type_name, &r);
                    self.queue_platform_line(line, time, observed, type_name);
                }
                if self
                    .last_phase_mut(kind)
                    .is_none_or(|p| p.report.is_some() || p.emitted)
                {
                    self.open_retry_phase(kind, r.phase.clone(), r.initialization_type.clone());
                }
                if let Some(p) = self.last_phase_mut(kind) {
                    p.report.get_or_insert((time, r));
                }
            }
            EventKind::Start(s) if self.invocations.is_retired(&s.request_id) => {
                self.stats.duplicate_events += 1;
            }
            EventKind::RuntimeDone(d) if self.invocations.is_retired(&d.request_id) => {
                self.stats.duplicate_events += 1;
            }
            EventKind::Report(r) if self.invocations.is_retired(&r.request_id) => {
                self.stats.duplicate_events += 1;
            }
            EventKind::Start(s) => {
                self.seen_platform_start = true;
                let rid = s.request_id.clone();
                let line = self
                    .config
                    .platform_log_lines
                    .then(|| platform_lines::start(&s));
                if !self.invocations.on_start(time, s) {
                    self.stats.duplicate_events += 1;
                    return;
                }
                self.open_phase = None;
                let pending: Vec<u64> = self
                    .phases
                    .iter()
                    .filter(|p| !p.resolved())
                    .map(|p| p.id)
                    .collect();
                for id in pending {
                    self.attach_phase(id, &rid);
                }
                if self.invocations.get(&rid).is_some_and(|i| i.coldstart) {
                    self.metrics.add(MetricId::Coldstarts, 1, t);
                }
                if let Some(line) = line {
                    self.queue_platform_line(line, time, observed, type_name);
                }
            }
            EventKind::RuntimeDone(d) => {
                if self.runtime_done_seen(&d.request_id) {
                    // A re-delivered batch: already counted and mapped.
                    self.stats.duplicate_events += 1;
                    return;
                }
                let line = self
                    .config
                    .platform_log_lines
                    .then(|| platform_lines::runtime_done(&d));
                // A report that overtook this runtimeDone may have counted
                // the invocation already.
                let inv = self.invocations.entry(&d.request_id);
                let count_outcome = !std::mem::replace(&mut inv.outcome_recorded, true);
                let duration = d
                    .metrics
                    .duration_ms
                    .filter(|_| !inv.invoke_duration_recorded);
                inv.invoke_duration_recorded |= duration.is_some();
                if count_outcome {
                    self.record_outcome(d.status.as_deref(), t);
                }
                if let Some(ms) = duration {
                    self.metrics
                        .record(MetricId::InvokeDuration, ms / 1000.0, t);
                }
                if let Some(b) = d.metrics.produced_bytes {
                    self.metrics.add(MetricId::ProducedBytes, b, t);
                }
                self.invocations.on_runtime_done(time, d);
                if let Some(line) = line {
                    self.queue_platform_line(line, time, observed, type_name);
                }
            }
            EventKind::Report(r) => {
                let rid = r.request_id.clone();
                if self
                    .invocations
                    .get(&rid)
                    .is_some_and(|i| i.report.is_some())
                {
                    self.stats.duplicate_events += 1;
                    return;
                }
                self.stats.reports += 1;
                let m = &r.metrics;
                // Without a runtimeDone (Managed Instances, a lost one, or
                // one still to come) the report is the source of the
                // outcome; without runtimeDone metrics (older payloads) it is
                // the source of the invoke duration.
                let inv = self.invocations.entry(&rid);
                let count_outcome = !std::mem::replace(&mut inv.outcome_recorded, true);
                let duration = m.duration_ms.filter(|_| !inv.invoke_duration_recorded);
                inv.invoke_duration_recorded |= duration.is_some();
                if count_outcome {
                    self.record_outcome(r.status.as_deref(), t);
                }
                if let Some(ms) = duration {
                    self.metrics
                        .record(MetricId::InvokeDuration, ms / 1000.0, t);
                }
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
                        .record(MetricId::MemUsage, mb as f64 * 1_048_576.0, t);
                }
                if let Some(mb) = m.memory_size_mb {
                    self.metrics
                        .set(MetricId::MemorySize, resource::mib_to_bytes(mb), t);
                }
                let line = self
                    .config
                    .platform_log_lines
                    .then(|| platform_lines::report(&r));
                self.invocations.on_report(time, r);
                if let Some(line) = line {
                    self.queue_platform_line(line, time, observed, type_name);
                }
            }
            EventKind::LogsDropped(d) => {
                self.stats.drop_notices += 1;
                self.metrics.add(
                    MetricId::LogsDroppedRecords,
                    d.dropped_records.unwrap_or(0),
                    t,
                );
                self.metrics
                    .add(MetricId::LogsDroppedBytes, d.dropped_bytes.unwrap_or(0), t);
                let body = format!(
                    "Lambda dropped {} log records ({} bytes): {}",
                    d.dropped_records.unwrap_or(0),
                    d.dropped_bytes.unwrap_or(0),
                    d.reason.as_deref().unwrap_or("no reason given")
                );
                let attribution = self.default_attribution();
                self.pending_logs.push(PendingLog {
                    source: LogSource::Platform,
                    record: LogRecord::Text(body),
                    time,
                    observed,
                    attribution,
                    event_name: type_name,
                    held: 0,
                    severity: Some((13, "WARN")),
                    extra: vec![
                        proto::kv_int(
                            "aws.lambda.logs_dropped.records",
                            d.dropped_records.unwrap_or(0).min(i64::MAX as u64) as i64,
                        ),
                        proto::kv_int(
                            "aws.lambda.logs_dropped.bytes",
                            d.dropped_bytes.unwrap_or(0).min(i64::MAX as u64) as i64,
                        ),
                    ],
                });
            }
            EventKind::Extension(e) => {
                if self.config.platform_log_lines {
                    let line = platform_lines::extension(&e);
                    self.queue_platform_line(line, time, observed, type_name);
                }
            }
            EventKind::TelemetrySubscription(s) => {
                if self.config.platform_log_lines {
                    let line = platform_lines::subscription(&s);
                    self.queue_platform_line(line, time, observed, type_name);
                }
            }
            EventKind::Function(record) => {
                self.queue_log(LogSource::Function, record, time, observed)
            }
            EventKind::ExtensionLog(record) => {
                self.queue_log(LogSource::Extension, record, time, observed)
            }
            EventKind::Unknown { .. } => self.stats.unknown_events += 1,
        }
    }

    fn record_outcome(&mut self, status: Option<&str>, t: UnixNanos) {
        let id = match status.map(str::to_ascii_lowercase).as_deref() {
            Some("success") | None => MetricId::Invocations,
            Some("timeout") => MetricId::Timeouts,
            // error, failure, and any status the platform adds later.
            Some(_) => MetricId::Errors,
        };
        self.metrics.add(id, 1, t);
    }

    fn new_phase(&mut self, kind: PhaseKind, time: Option<UnixNanos>) -> &mut Phase {
        self.next_phase_id += 1;
        let id = self.next_phase_id;
        self.phases.push(Phase {
            id,
            kind,
            start: time,
            initialization_type: None,
            phase: None,
            runtime_version: None,
            runtime_version_arn: None,
            instance_id: None,
            done: None,
            report: None,
            attached: None,
            standalone: false,
            emitted: false,
            ordinal: 0,
        });
        self.open_phase = Some(id);
        // Invariant: pushed just above.
        self.phases.last_mut().expect("phase just pushed")
    }

    fn on_init_start(&mut self, time: Option<UnixNanos>, observed: UnixNanos, s: InitStart) {
        let init_type = s.initialization_type.clone().unwrap_or_default();
        // Provisioned concurrency and managed instances initialise ahead of
        // traffic: no invocation waits for them, so no cold start.
        let ahead_of_traffic = init_type.eq_ignore_ascii_case("provisioned-concurrency")
            || init_type.eq_ignore_ascii_case("lambda-managed-instances")
            || init_type.eq_ignore_ascii_case("snap-start");
        if init_type.eq_ignore_ascii_case("lambda-managed-instances") {
            self.concurrent = true;
        }
        // A suppressed init (phase `invoke`) re-runs inside the invocation in
        // progress: it belongs to that invocation.
        let within = s
            .phase
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("invoke"))
            .then(|| self.invocations.current_id().map(str::to_owned))
            .flatten();
        if !ahead_of_traffic && within.is_none() {
            self.invocations.mark_init();
        }
        if let Some(instance) = s.instance_id.as_deref() {
            self.set_faas_instance(instance);
        }
        let line = self
            .config
            .platform_log_lines
            .then(|| platform_lines::init_start(&s));
        let p = self.new_phase(PhaseKind::Init, time);
        p.standalone = ahead_of_traffic;
        let id = p.id;
        p.initialization_type = s.initialization_type;
        p.phase = s.phase;
        p.runtime_version = s.runtime_version;
        p.runtime_version_arn = s.runtime_version_arn;
        p.instance_id = s.instance_id;
        if let Some(rid) = within {
            self.attach_phase(id, &rid);
        }
        if let Some(line) = line {
            self.queue_platform_line(line, time, observed, "platform.initStart");
        }
    }

    fn on_restore_start(&mut self, time: Option<UnixNanos>, observed: UnixNanos, s: RestoreStart) {
        self.forget_snapshot_state(observed);
        self.invocations.mark_init();
        if let Some(instance) = s.instance_id.as_deref() {
            // Every environment restored from one snapshot shares the
            // snapshot's identity: take the restored environment's instead.
            self.set_resource_attr("faas.instance", instance);
            self.set_resource_attr("service.instance.id", instance);
        }
        let line = self
            .config
            .platform_log_lines
            .then(|| platform_lines::restore_start(&s));
        let p = self.new_phase(PhaseKind::Restore, time);
        p.initialization_type = Some("snap-start".into());
        p.runtime_version = s.runtime_version;
        p.runtime_version_arn = s.runtime_version_arn;
        p.instance_id = s.instance_id;
        if let Some(line) = line {
            self.queue_platform_line(line, time, observed, "platform.restoreStart");
        }
    }

    /// A SnapStart restore: what the bridge received before it (observed
    /// earlier than the restore's own batch) was in memory when the
    /// snapshot was taken, and so is in every environment restored from
    /// it. Exported here it would be exported once per environment: it is
    /// dropped (counted in `stats.snapshot_records`) and the metric
    /// accumulations start afresh. What was exported before the snapshot
    /// (the lifecycle flushes before its first `/next`) stays exported once.
    fn forget_snapshot_state(&mut self, restore_observed: UnixNanos) {
        let before = self.pending_logs.len();
        self.pending_logs.retain(|p| p.observed >= restore_observed);
        let mut dropped = (before - self.pending_logs.len()) as u64;
        let phases = self.phases.len();
        self.phases
            .retain(|p| p.emitted || p.kind != PhaseKind::Init);
        dropped += (phases - self.phases.len()) as u64;
        self.open_phase = None;
        self.metrics.reset();
        self.stats.snapshot_records += dropped;
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

    /// A phase seen only from its done/report events: it ran inside the
    /// invocation in progress (or, before any, on its own).
    fn open_retry_phase(
        &mut self,
        kind: PhaseKind,
        phase: Option<String>,
        init_type: Option<String>,
    ) {
        let within = self.invocations.current_id().map(str::to_owned);
        let p = self.new_phase(kind, None);
        p.standalone = within.is_none();
        p.phase = phase;
        p.initialization_type = init_type;
        let id = p.id;
        self.open_phase = None;
        if let Some(rid) = within {
            self.attach_phase(id, &rid);
        }
    }

    /// Places phase `id` in invocation `rid`'s trace.
    fn attach_phase(&mut self, id: u64, rid: &str) {
        let Some(kind) = self.phases.iter().find(|p| p.id == id).map(|p| p.kind) else {
            return;
        };
        if self.phase_slots.len() > 1024 {
            self.phase_slots.clear();
        }
        let slot = self
            .phase_slots
            .entry(format!("{rid}/{kind:?}"))
            .or_insert(0);
        let ordinal = *slot;
        *slot += 1;
        if let Some(p) = self.phases.iter_mut().find(|p| p.id == id) {
            p.attached = Some(rid.to_owned());
            p.ordinal = ordinal;
        }
    }

    fn last_phase_mut(&mut self, kind: PhaseKind) -> Option<&mut Phase> {
        self.phases.iter_mut().rev().find(|p| p.kind == kind)
    }

    fn default_attribution(&self) -> Attribution {
        if let Some(p) = self.open_phase {
            return Attribution::Phase(p);
        }
        match self.invocations.current_shared() {
            Some(id) if !self.concurrent => Attribution::Request(id),
            _ => Attribution::None,
        }
    }

    fn queue_log(
        &mut self,
        source: LogSource,
        record: LogRecord,
        time: Option<UnixNanos>,
        observed: UnixNanos,
    ) {
        // A request id the record names itself (the runtime's text prefix,
        // or a JSON key naming an invocation the table knows) wins; it is
        // found when the record is mapped (one parse per record). This is
        // the fallback, as of the record's place in the telemetry stream.
        let attribution = self.default_attribution();
        self.pending_logs.push(PendingLog {
            source,
            record,
            time,
            observed,
            attribution,
            event_name: "",
            severity: None,
            extra: Vec::new(),
            held: 0,
        });
    }

    fn queue_platform_line(
        &mut self,
        line: platform_lines::Line,
        time: Option<UnixNanos>,
        observed: UnixNanos,
        event_name: &'static str,
    ) {
        let attribution = match line.request_id {
            Some(rid) => Attribution::Request(rid.into()),
            None => self.default_attribution(),
        };
        self.pending_logs.push(PendingLog {
            source: LogSource::Platform,
            record: LogRecord::Text(line.text),
            time,
            observed,
            attribution,
            event_name,
            severity: None,
            extra: Vec::new(),
            held: 0,
        });
    }

    /// The ids log records of a phase carry, once it is resolved.
    fn phase_ids(&self, phase: &Phase) -> Option<TraceIds> {
        if let Some(rid) = &phase.attached {
            let inv = self.invocations.get(rid)?;
            let ids = inv.trace_ids();
            // The first phase placed in an invocation has the plain role; a
            // later one (a retried init) gets its ordinal appended.
            let role = if phase.ordinal == 0 {
                phase.name().to_owned()
            } else {
                format!("{}#{}", phase.name(), phase.ordinal)
            };
            return Some(TraceIds {
                trace_id: ids.trace_id,
                span_id: derived_span_id(rid, &role),
                parent_span_id: Some(ids.span_id),
                sampled: ids.sampled,
                from_xray: ids.from_xray,
            });
        }
        if phase.standalone {
            let key = phase.key();
            return Some(TraceIds {
                trace_id: derived_trace_id(&key),
                span_id: derived_span_id(&key, phase.name()),
                parent_span_id: None,
                sampled: true,
                from_xray: false,
            });
        }
        None
    }

    /// Shutdown: phases no invocation followed become standalone, and
    /// invocations that never ended get an incomplete span. Call `take` after.
    pub fn finish(&mut self) {
        self.finishing = true;
        for p in self.phases.iter_mut().filter(|p| !p.resolved()) {
            p.standalone = true;
        }
        self.open_phase = None;
    }

    /// Maps everything that is complete into OTLP requests.
    pub fn take(&mut self) -> Output {
        let spans = self.take_spans();
        let logs = self.take_logs();
        let metrics = self.metrics.collect(&self.resource, &self.scope);
        self.invocations.retire_completed();
        self.phases.retain(|p| !p.emitted);
        Output {
            traces: (!spans.is_empty()).then(|| ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(self.resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(self.scope.clone()),
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            }),
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

    fn take_spans(&mut self) -> Vec<Span> {
        let mut spans = Vec::new();
        let name = self
            .config
            .function_name
            .clone()
            .unwrap_or_else(|| "invoke".into());
        for rid in self.invocations.ids() {
            let Some(inv) = self.invocations.get(&rid) else {
                continue;
            };
            let ids = inv.trace_ids();
            let start_t = inv.start.as_ref().and_then(|(t, _)| *t);
            let done = inv.runtime_done.as_ref();
            let report = inv.report.as_ref();
            let mut emit_span = false;
            // From the report alone only where no runtimeDone exists (Managed
            // Instances), with the start known, or at shutdown: otherwise a
            // report that overtook its start would end the span early.
            let report_can_end =
                report.is_some() && (self.concurrent || inv.start.is_some() || self.finishing);
            if !inv.span_emitted && (done.is_some() || report_can_end) {
                let (end_t, status, error_type, duration_ms) = match (done, report) {
                    (Some((t, d)), _) => (
                        *t,
                        d.status.as_deref(),
                        d.error_type.as_deref(),
                        d.metrics.duration_ms,
                    ),
                    (None, Some((t, r))) => (
                        *t,
                        r.status.as_deref(),
                        r.error_type.as_deref(),
                        r.metrics.duration_ms,
                    ),
                    (None, None) => (None, None, None, None),
                };
                let dur = duration_ms.map(millis_f64_to_nanos);
                let end = end_t
                    .or_else(|| Some(start_t?.saturating_add(dur?)))
                    .or(start_t)
                    .unwrap_or(self.latest);
                let start = start_t.unwrap_or_else(|| end.saturating_sub(dur.unwrap_or(0)));
                let version = inv
                    .start
                    .as_ref()
                    .and_then(|(_, s)| s.version.as_deref())
                    .or(self.config.function_version.as_deref());
                let invoked_arn = inv
                    .invoke
                    .as_ref()
                    .and_then(|i| i.invoked_function_arn.as_deref())
                    .or_else(|| {
                        inv.start
                            .as_ref()
                            .and_then(|(_, s)| s.function_arn.as_deref())
                    });
                spans.push(traces::invocation_span(traces::InvocationSpan {
                    name: &name,
                    request_id: &rid,
                    ids,
                    start,
                    end,
                    coldstart: inv.coldstart,
                    faas_trigger: &self.config.faas_trigger,
                    invoked_arn,
                    resource_id: invoked_arn.and_then(|a| traces::resource_id(a, version)),
                    produced_bytes: done.and_then(|(_, d)| d.metrics.produced_bytes),
                    tenant_id: inv.start.as_ref().and_then(|(_, s)| s.tenant_id.as_deref()),
                    status,
                    error_type,
                    incomplete: false,
                }));
                if let Some((_, d)) = done {
                    spans.extend(traces::child_spans(
                        &rid,
                        &ids,
                        ids.span_id,
                        &d.spans,
                        start,
                    ));
                }
                emit_span = true;
            }
            let mut emit_report = false;
            if let Some((t, r)) = report {
                if !inv.report_spans_emitted && (inv.span_emitted || emit_span) {
                    spans.extend(traces::child_spans(
                        &rid,
                        &ids,
                        ids.span_id,
                        &r.spans,
                        t.unwrap_or(self.latest),
                    ));
                    emit_report = true;
                }
            }
            if let Some(inv) = self.invocations.get_mut(&rid) {
                inv.span_emitted |= emit_span;
                inv.report_spans_emitted |= emit_report;
            }
        }
        for i in 0..self.phases.len() {
            let p = &self.phases[i];
            if p.emitted || !p.resolved() || (p.done.is_none() && p.report.is_none()) {
                continue;
            }
            let Some(ids) = self.phase_ids(p) else {
                continue;
            };
            let start = p.start.unwrap_or(0);
            let duration_ms = p.report.as_ref().and_then(|(_, r)| r.metrics.duration_ms);
            // End: initRuntimeDone's time, else initReport's; when the phase
            // has a start and a reported duration, never shorter than it (the
            // platform may stamp start and done in the same millisecond).
            let by_duration = duration_ms.map(|d| start.saturating_add(millis_f64_to_nanos(d)));
            let end = p
                .done
                .as_ref()
                .and_then(|(t, _)| *t)
                .or_else(|| p.report.as_ref().and_then(|(t, _)| *t))
                .map(|t| match (p.start, by_duration) {
                    (Some(_), Some(d)) => t.max(d),
                    _ => t,
                })
                .or(by_duration)
                .unwrap_or(start);
            let start = if p.start.is_some() {
                start
            } else {
                end.saturating_sub(millis_f64_to_nanos(duration_ms.unwrap_or(0.0)))
            };
            let (status, error_type) = match (&p.done, &p.report) {
                (Some((_, d)), _) if d.status.is_some() => {
                    (d.status.as_deref(), d.error_type.as_deref())
                }
                (_, Some((_, r))) => (r.status.as_deref(), r.error_type.as_deref()),
                _ => (None, None),
            };
            spans.push(traces::phase_span(traces::PhaseSpan {
                name: p.name(),
                trace_id: ids.trace_id,
                span_id: ids.span_id,
                parent_span_id: ids.parent_span_id,
                sampled: ids.sampled,
                start,
                end,
                initialization_type: p.initialization_type.as_deref(),
                phase: p.phase.as_deref(),
                runtime_version: p.runtime_version.as_deref(),
                runtime_version_arn: p.runtime_version_arn.as_deref(),
                duration_ms,
                status,
                error_type,
            }));
            let key = match &p.attached {
                Some(rid) => format!("{rid}/{}", p.name()),
                None => p.key(),
            };
            let children = p
                .done
                .iter()
                .flat_map(|(_, d)| d.spans.iter())
                .chain(p.report.iter().flat_map(|(_, r)| r.spans.iter()))
                .cloned()
                .collect::<Vec<_>>();
            spans.extend(traces::child_spans(
                &key,
                &ids,
                ids.span_id,
                &children,
                start,
            ));
            self.phases[i].emitted = true;
        }
        self.stats.spans += spans.len() as u64;
        spans
    }

    /// Emits spans for invocations that started but never ended; called at
    /// shutdown (after `finish`) so nothing that started is lost.
    pub fn finish_incomplete(&mut self) -> Vec<Span> {
        let name = self
            .config
            .function_name
            .clone()
            .unwrap_or_else(|| "invoke".into());
        let mut spans = Vec::new();
        for rid in self.invocations.ids() {
            let Some(inv) = self.invocations.get(&rid) else {
                continue;
            };
            if inv.span_emitted || inv.runtime_done.is_some() || inv.report.is_some() {
                continue;
            }
            let Some(start) = inv.start.as_ref().and_then(|(t, _)| *t) else {
                continue;
            };
            let ids = inv.trace_ids();
            let invoked_arn = inv
                .invoke
                .as_ref()
                .and_then(|i| i.invoked_function_arn.as_deref());
            spans.push(traces::invocation_span(traces::InvocationSpan {
                name: &name,
                request_id: &rid,
                ids,
                start,
                end: self.latest.max(start),
                coldstart: inv.coldstart,
                faas_trigger: &self.config.faas_trigger,
                invoked_arn,
                resource_id: invoked_arn
                    .and_then(|a| traces::resource_id(a, self.config.function_version.as_deref())),
                produced_bytes: None,
                tenant_id: None,
                status: None,
                error_type: None,
                incomplete: true,
            }));
            if let Some(inv) = self.invocations.get_mut(&rid) {
                inv.span_emitted = true;
            }
        }
        self.stats.spans += spans.len() as u64;
        spans
    }

    fn take_logs(&mut self) -> Vec<OtlpLogRecord> {
        let pending = std::mem::take(&mut self.pending_logs);
        let mut records = Vec::with_capacity(pending.len());
        let mut keep = Vec::new();
        // Consecutive records mostly belong to one invocation: remember its ids.
        let mut last: Option<(std::sync::Arc<str>, TraceIds)> = None;
        for p in pending {
            let (mut r, own_rid) = map_log_body(p.source, &p.record, p.time, p.observed);
            // The id a record names itself attributes it when the runtime's
            // text prefix wrote it, or when it is an invocation the table
            // knows. Any other id under a JSON key is the application's own
            // (an API Gateway request id logged by pino, say): the record
            // stays where the stream put it, and the id stays an attribute.
            // On Managed Instances invocations overlap and the stream puts a
            // record nowhere: the id it names is all there is (and may be
            // one whose platform.start is still to come).
            let own_rid = own_rid.filter(|own| {
                own.source == IdSource::Prefix || self.concurrent || self.invocations.knows(&own.id)
            });
            if let Some(key) = own_rid.as_ref().and_then(|own| own.repeated_key()) {
                // `faas.invocation_id` says it.
                r.attributes.retain(|a| a.key != key);
            }
            let attribution = match (own_rid, &p.attribution) {
                // Usually the record names the invocation it arrived in.
                (Some(own), Attribution::Request(current)) if **current == *own.id => {
                    p.attribution.clone()
                }
                (Some(own), _) => Attribution::Request(own.id.as_ref().into()),
                (None, a) => a.clone(),
            };
            // A line of an invocation whose platform.start has not arrived
            // (a re-ordered or re-delivered batch) waits for it, so it gets
            // the X-Ray context that event brings; at most 3 flush points,
            // and never at shutdown.
            if let Attribution::Request(rid) = &attribution {
                let waiting = self.seen_platform_start
                    && !self.finishing
                    && p.held < 3
                    && self
                        .invocations
                        .get(rid)
                        .is_none_or(|inv| inv.start.is_none() && inv.runtime_done.is_none())
                    && !self.invocations.is_retired(rid);
                if waiting {
                    let mut p = p;
                    p.held += 1;
                    keep.push(p);
                    continue;
                }
            }
            match &attribution {
                Attribution::Request(rid) => {
                    let ids = match &last {
                        Some((id, ids)) if id == rid => *ids,
                        _ => {
                            let ids = match self.invocations.ids_of(rid) {
                                Some(ids) => ids,
                                // A request id the table never saw (a record
                                // naming another id): derived ids still correlate.
                                None => invocation::Invocation {
                                    request_id: rid.to_string(),
                                    ..Default::default()
                                }
                                .trace_ids(),
                            };
                            last = Some((rid.clone(), ids));
                            ids
                        }
                    };
                    attach_invocation(&mut r, Some(rid), &ids);
                }
                Attribution::Phase(id) => {
                    if let Some(phase) = self.phases.iter().find(|ph| ph.id == *id) {
                        match self.phase_ids(phase) {
                            Some(ids) => attach_invocation(&mut r, None, &ids),
                            None => {
                                // Not yet known which invocation this phase delayed.
                                keep.push(p);
                                continue;
                            }
                        }
                    }
                }
                Attribution::None => {}
            }
            if let Some((n, text)) = p.severity {
                r.severity_number = n;
                r.severity_text = text.to_owned();
            }
            r.event_name = p.event_name.to_owned();
            r.attributes.extend(p.extra);
            records.push(r);
        }
        self.pending_logs = keep;
        self.stats.log_records += records.len() as u64;
        records
    }

    /// Shutdown output: everything, including incomplete invocations.
    pub fn take_final(&mut self) -> Output {
        self.finish();
        let incomplete = self.finish_incomplete();
        let mut out = self.take();
        if !incomplete.is_empty() {
            match &mut out.traces {
                Some(t) => t.resource_spans[0].scope_spans[0].spans.extend(incomplete),
                None => {
                    out.traces = Some(ExportTraceServiceRequest {
                        resource_spans: vec![ResourceSpans {
                            resource: Some(self.resource.clone()),
                            scope_spans: vec![ScopeSpans {
                                scope: Some(self.scope.clone()),
                                spans: incomplete,
                                schema_url: String::new(),
                            }],
                            schema_url: String::new(),
                        }],
                    })
                }
            }
        }
        out
    }
}

fn phase_kind(type_name: &str) -> PhaseKind {
    if type_name.starts_with("platform.restore") {
        PhaseKind::Restore
    } else {
        PhaseKind::Init
    }
}
