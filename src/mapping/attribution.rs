//! Log records waiting for the next flush, and the rules that attribute
//! each to an invocation (or an init/restore phase).
//!
//! A record is queued with its place in the telemetry stream: the phase
//! whose lines are arriving, else the invocation in progress; on Managed
//! Instances, where invocations overlap, nowhere. At the flush point it is
//! mapped (one parse per record), and the request id it names itself wins
//! over that place when it can be trusted: when the runtime's text prefix
//! wrote it, when the invocation table knows it (in progress, or completed
//! and retired), or on Managed Instances (the stream places nothing there,
//! so the id is all there is). Any other id under a JSON key is the
//! application's own (an API Gateway request id logged by pino, say): the
//! record stays where the stream put it, and the id stays an attribute.
//!
//! A record of an invocation whose `platform.start` has not arrived (a
//! re-ordered or re-delivered batch) is held for it, so that it gets the
//! X-Ray context that event brings: at most [`MAX_HELD`] flush points, only
//! once platform events are flowing, and never at shutdown. A record of a
//! phase waits until the phase is placed.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;

use super::invocation::{Invocation, InvocationTable, TraceIds};
use super::logs::{attach_invocation, map_log_body, IdSource, LogSource, OwnRequestId};
use super::phases::{PhaseContext, Phases};
use super::proto::kv_int;
use super::Stream;
use crate::lambda::events::{LogRecord, LogsDropped};
use crate::time::UnixNanos;

/// How many flush points a record waits for its invocation's `platform.start`.
pub(super) const MAX_HELD: u8 = 3;

/// The invocation (or init/restore phase) a log record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attribution {
    Request(Arc<str>),
    Phase(u64),
    None,
}

impl Attribution {
    /// Where the stream puts a record that names no invocation: the phase
    /// whose lines are arriving, else the invocation in progress (none when
    /// invocations overlap).
    pub(super) fn stream_position(
        open_phase: Option<u64>,
        invocations: &InvocationTable,
        concurrent: bool,
    ) -> Self {
        if let Some(p) = open_phase {
            return Attribution::Phase(p);
        }
        match invocations.current_shared() {
            Some(id) if !concurrent => Attribution::Request(id),
            _ => Attribution::None,
        }
    }
}

/// Whether the request id a record names may attribute it.
fn trusted(own: &OwnRequestId<'_>, concurrent: bool, invocations: &InvocationTable) -> bool {
    own.source == IdSource::Prefix || concurrent || invocations.knows(&own.id)
}

/// The record's own (trusted) id, else its place in the stream.
fn attribute(own: Option<OwnRequestId<'_>>, stream: &Attribution) -> Attribution {
    match (own, stream) {
        // Usually the record names the invocation it arrived in.
        (Some(own), Attribution::Request(current)) if **current == *own.id => stream.clone(),
        (Some(own), _) => Attribution::Request(own.id.as_ref().into()),
        (None, a) => a.clone(),
    }
}

/// Whether a record of `rid`, held `held` flush points so far, waits for
/// the invocation's `platform.start` once more.
fn waits_for_start(rid: &str, held: u8, invocations: &InvocationTable, stream: &Stream) -> bool {
    stream.platform_start_seen
        && !stream.finishing
        && held < MAX_HELD
        && invocations
            .get(rid)
            .is_none_or(|inv| inv.start.is_none() && inv.runtime_done.is_none())
        && !invocations.is_retired(rid)
}

/// The ids of `rid`'s records: the table's (also of a retired invocation),
/// else derived from the id, so that a record naming an invocation the
/// table never saw still correlates.
fn request_ids(rid: &str, invocations: &InvocationTable) -> TraceIds {
    invocations.ids_of(rid).unwrap_or_else(|| {
        Invocation {
            request_id: rid.to_owned(),
            ..Default::default()
        }
        .trace_ids()
    })
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
    extra: Vec<KeyValue>,
    /// Flush points this record waited for its invocation's context.
    held: u8,
}

/// The log records waiting for the next flush.
#[derive(Default)]
pub(super) struct PendingLogs {
    records: Vec<PendingLog>,
}

impl PendingLog {
    fn new(
        source: LogSource,
        record: LogRecord,
        time: Option<UnixNanos>,
        observed: UnixNanos,
        attribution: Attribution,
    ) -> Self {
        PendingLog {
            source,
            record,
            time,
            observed,
            attribution,
            event_name: "",
            severity: None,
            extra: Vec::new(),
            held: 0,
        }
    }
}

impl PendingLogs {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// A `function` or `extension` record at `at` in the stream.
    pub(super) fn push_record(
        &mut self,
        source: LogSource,
        record: LogRecord,
        time: Option<UnixNanos>,
        observed: UnixNanos,
        at: Attribution,
    ) {
        self.records
            .push(PendingLog::new(source, record, time, observed, at));
    }

    /// A line the bridge writes for platform event `event_name`.
    pub(super) fn push_line(
        &mut self,
        text: String,
        time: Option<UnixNanos>,
        observed: UnixNanos,
        event_name: &'static str,
        at: Attribution,
    ) {
        let record = LogRecord::Text(text);
        self.records.push(PendingLog {
            event_name,
            ..PendingLog::new(LogSource::Platform, record, time, observed, at)
        });
    }

    /// The warning that Lambda dropped telemetry (`platform.logsDropped`).
    pub(super) fn push_drop_notice(
        &mut self,
        d: &LogsDropped,
        time: Option<UnixNanos>,
        observed: UnixNanos,
        at: Attribution,
    ) {
        let records = d.dropped_records.unwrap_or(0);
        let bytes = d.dropped_bytes.unwrap_or(0);
        let body = format!(
            "Lambda dropped {records} log records ({bytes} bytes): {}",
            d.reason.as_deref().unwrap_or("no reason given")
        );
        let record = LogRecord::Text(body);
        self.records.push(PendingLog {
            event_name: "platform.logsDropped",
            severity: Some((13, "WARN")),
            extra: vec![
                kv_int(
                    "aws.lambda.logs_dropped.records",
                    records.min(i64::MAX as u64) as i64,
                ),
                kv_int(
                    "aws.lambda.logs_dropped.bytes",
                    bytes.min(i64::MAX as u64) as i64,
                ),
            ],
            ..PendingLog::new(LogSource::Platform, record, time, observed, at)
        });
    }

    /// Drops the records received before `observed` (a SnapStart restore:
    /// they were in the snapshot); returns how many.
    pub(super) fn forget_before(&mut self, observed: UnixNanos) -> u64 {
        let before = self.records.len();
        self.records.retain(|p| p.observed >= observed);
        (before - self.records.len()) as u64
    }

    /// Maps the records that can go now; the others wait for the next flush.
    pub(super) fn take(
        &mut self,
        invocations: &InvocationTable,
        phases: &Phases,
        stream: &Stream,
    ) -> Vec<OtlpLogRecord> {
        let pending = std::mem::take(&mut self.records);
        let mut records = Vec::with_capacity(pending.len());
        // Consecutive records mostly belong to one invocation: remember its ids.
        let mut last: Option<(Arc<str>, TraceIds)> = None;
        for mut p in pending {
            let (mut r, own) = map_log_body(p.source, &p.record, p.time, p.observed);
            let own = own.filter(|own| trusted(own, stream.concurrent, invocations));
            if let Some(key) = own.as_ref().and_then(|own| own.repeated_key()) {
                // `faas.invocation_id` says it.
                r.attributes.retain(|a| a.key != key);
            }
            match attribute(own, &p.attribution) {
                Attribution::Request(rid) => {
                    if waits_for_start(&rid, p.held, invocations, stream) {
                        p.held += 1;
                        self.records.push(p);
                        continue;
                    }
                    let ids = match &last {
                        Some((id, ids)) if *id == rid => *ids,
                        _ => {
                            let ids = request_ids(&rid, invocations);
                            last = Some((rid.clone(), ids));
                            ids
                        }
                    };
                    attach_invocation(&mut r, Some(&rid), &ids);
                }
                Attribution::Phase(id) => match phases.context(id, invocations) {
                    PhaseContext::Placed(ids) => attach_invocation(&mut r, None, &ids),
                    PhaseContext::Unplaced => {
                        self.records.push(p);
                        continue;
                    }
                    PhaseContext::Gone => {}
                },
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
        records
    }
}
