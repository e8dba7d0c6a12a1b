//! Mapping: Telemetry API events and invocation state → OTLP data.
//!
//! Pure and deterministic: no clock, no randomness. Times come from the
//! events (the observed time is passed in by the receiver), ids from the
//! X-Ray context or derived from the request id ([`xray`]). The normative
//! description is `proto-mapping/MAPPING.md`; the golden cases in
//! `proto-mapping/cases/` run through [`Mapper`].
//!
//! [`Mapper::ingest`] updates the invocation table as events arrive (the
//! lifecycle waits on it) and queues the records; [`Mapper::take`] turns what
//! is queued into OTLP requests at a flush point, when the attribution of
//! every record is final.

pub mod invocation;
pub mod log_lines;
pub mod logs;
pub mod proto;
pub mod resource;
pub mod xray;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::lambda::events::{EventKind, LogRecord, TelemetryEvent};
use crate::time::UnixNanos;
use invocation::{InvocationTable, InvokeInfo};
use logs::{map_log, record_request_id, LogInput, LogSource};

/// Instrumentation scope of everything the bridge maps.
pub const SCOPE_NAME: &str = "lambda-otel-bridge";

/// Counters about what was mapped (exported as the bridge's own metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapStats {
    pub events: u64,
    pub unknown_events: u64,
    pub log_records: u64,
    pub reports: u64,
}

/// A record waiting for the next flush, with the invocation it belongs to as
/// far as known when it arrived.
struct PendingLog {
    source: LogSource,
    record: LogRecord,
    time: Option<UnixNanos>,
    observed: UnixNanos,
    request_id: Option<String>,
}

/// What one flush exports.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    pub logs: Option<ExportLogsServiceRequest>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.logs.is_none()
    }
}

/// The mapping state of one execution environment.
pub struct Mapper {
    resource: Resource,
    scope: InstrumentationScope,
    pub invocations: InvocationTable,
    pending_logs: Vec<PendingLog>,
    pub stats: MapStats,
}

impl Mapper {
    pub fn new(resource: Resource) -> Self {
        Mapper {
            resource,
            scope: InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..InstrumentationScope::default()
            },
            invocations: InvocationTable::default(),
            pending_logs: Vec::new(),
            stats: MapStats::default(),
        }
    }

    /// An INVOKE event from the Extensions API.
    pub fn on_invoke(&mut self, request_id: &str, info: InvokeInfo) {
        self.invocations.on_invoke(request_id, info);
    }

    /// One Telemetry API event; `observed` is when the batch was received.
    pub fn ingest(&mut self, ev: TelemetryEvent, observed: UnixNanos) {
        self.stats.events += 1;
        let time = ev.time;
        match ev.kind {
            EventKind::InitStart(_) | EventKind::RestoreStart(_) => self.invocations.mark_init(),
            EventKind::Start(s) => self.invocations.on_start(time, s),
            EventKind::RuntimeDone(d) => self.invocations.on_runtime_done(time, d),
            EventKind::Report(r) => {
                self.stats.reports += 1;
                self.invocations.on_report(time, r)
            }
            EventKind::Function(record) => {
                self.queue_log(LogSource::Function, record, time, observed)
            }
            EventKind::ExtensionLog(record) => {
                self.queue_log(LogSource::Extension, record, time, observed)
            }
            EventKind::Unknown { .. } => self.stats.unknown_events += 1,
            _ => {}
        }
    }

    fn queue_log(
        &mut self,
        source: LogSource,
        record: LogRecord,
        time: Option<UnixNanos>,
        observed: UnixNanos,
    ) {
        let request_id =
            record_request_id(&record).or_else(|| self.invocations.current_id().map(str::to_owned));
        self.pending_logs.push(PendingLog {
            source,
            record,
            time,
            observed,
            request_id,
        });
    }

    /// Whether `platform.runtimeDone` for `request_id` has arrived.
    pub fn runtime_done_seen(&self, request_id: &str) -> bool {
        self.invocations
            .get(request_id)
            .is_some_and(|i| i.runtime_done.is_some())
    }

    /// Number of records and events waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.pending_logs.len()
    }

    /// Maps everything queued into OTLP requests.
    pub fn take(&mut self) -> Output {
        let pending = std::mem::take(&mut self.pending_logs);
        let mut records = Vec::with_capacity(pending.len());
        for p in &pending {
            let invocation = p
                .request_id
                .as_deref()
                .map(|id| (id, self.invocations.get(id).map(|i| i.trace_ids())));
            let invocation = match invocation {
                Some((id, Some(ids))) => Some((id, ids)),
                // A request id the table never saw (e.g. a record naming
                // another id): ids derived from it still correlate its lines.
                Some((id, None)) => Some((
                    id,
                    invocation::Invocation {
                        request_id: id.to_owned(),
                        ..Default::default()
                    }
                    .trace_ids(),
                )),
                None => None,
            };
            records.push(map_log(LogInput {
                source: p.source,
                record: &p.record,
                event_time: p.time,
                observed: p.observed,
                invocation,
            }));
        }
        self.stats.log_records += records.len() as u64;
        self.invocations.retire_completed();
        Output {
            logs: (!records.is_empty()).then(|| ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(self.resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(self.scope.clone()),
                        log_records: records,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            }),
        }
    }
}
