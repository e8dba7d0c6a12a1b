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
use super::logs::{
    attach_invocation, below_min_severity, map_log_body, IdSource, LogSource, OwnRequestId,
};
use super::phases::{PhaseContext, Phases};
use super::proto::kv_int;
use super::Stream;
use crate::counters::{Count, Counters};
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
    /// `SeverityNumber` below which function and extension records are
    /// dropped (0: none).
    min_severity: i32,
    /// Where the records dropped so are counted ([`Count::FilteredLogs`]).
    counters: Arc<Counters>,
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
    pub(super) fn with_min_severity(min_severity: i32) -> Self {
        PendingLogs {
            min_severity,
            ..PendingLogs::default()
        }
    }

    /// Counts the records dropped for their severity into `counters`.
    pub(super) fn count_into(&mut self, counters: Arc<Counters>) {
        self.counters = counters;
    }

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
            if below_min_severity(p.source, &r, self.min_severity) {
                self.counters.add(Count::FilteredLogs, 1);
                continue;
            }
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::lambda::events::{InitStart, Start};
    use crate::mapping::xray::derived_span_id;

    const T0: UnixNanos = 1_741_083_330_000_000_000;
    const RID1: &str = "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11";
    const RID2: &str = "2b7c4e9a-5d1f-4a3b-8c6e-7f9a0b1c2d3e";

    fn started(rids: &[&str]) -> InvocationTable {
        let mut t = InvocationTable::default();
        for rid in rids {
            let s = Start {
                request_id: (*rid).into(),
                ..Start::default()
            };
            t.on_start(Some(T0), s);
        }
        t
    }

    fn flowing() -> Stream {
        Stream {
            platform_start_seen: true,
            ..Stream::default()
        }
    }

    fn own(id: &str, source: IdSource) -> OwnRequestId<'_> {
        OwnRequestId {
            id: Cow::Borrowed(id),
            source,
        }
    }

    fn str_attr<'a>(r: &'a OtlpLogRecord, key: &str) -> Option<&'a str> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
        r.attributes.iter().find(|a| a.key == key).and_then(|a| {
            match a.value.as_ref()?.value.as_ref()? {
                AV::StringValue(s) => Some(s.as_str()),
                _ => None,
            }
        })
    }

    /// A text line of the Python runtime naming `rid` in its prefix.
    fn prefixed(rid: &str) -> LogRecord {
        LogRecord::Text(format!("[INFO]\t2025-03-04T10:15:30.000Z\t{rid}\tline\n"))
    }

    fn json_naming(rid: &str) -> LogRecord {
        let v = serde_json::json!({"level": "INFO", "message": "m", "requestId": rid});
        LogRecord::Json(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn the_stream_places_a_record_in_the_open_phase_else_the_current_invocation() {
        let t = started(&[RID1]);
        let current = Attribution::Request(RID1.into());
        assert_eq!(Attribution::stream_position(None, &t, false), current);
        assert_eq!(
            Attribution::stream_position(Some(4), &t, false),
            Attribution::Phase(4)
        );
        // Managed Instances: no invocation is "the current" one.
        assert_eq!(
            Attribution::stream_position(None, &t, true),
            Attribution::None
        );
        let empty = InvocationTable::default();
        assert_eq!(
            Attribution::stream_position(None, &empty, false),
            Attribution::None
        );
    }

    #[test]
    fn which_ids_a_record_names_are_trusted() {
        let mut t = started(&[RID1]);
        assert!(trusted(&own(RID2, IdSource::Prefix), false, &t));
        assert!(trusted(
            &own(RID1, IdSource::JsonKey("requestId")),
            false,
            &t
        ));
        let app = own(RID2, IdSource::JsonKey("requestId"));
        assert!(!trusted(&app, false, &t), "the application's own id");
        assert!(trusted(&app, true, &t), "on Managed Instances");
        // Completed and forgotten: still known.
        let inv = t.get_mut(RID1).unwrap();
        inv.report = Some((None, Default::default()));
        (inv.span_emitted, inv.report_spans_emitted) = (true, true);
        t.on_start(
            Some(T0),
            Start {
                request_id: RID2.into(),
                ..Start::default()
            },
        );
        t.retire_completed();
        assert!(t.get(RID1).is_none() && t.is_retired(RID1));
        assert!(trusted(
            &own(RID1, IdSource::JsonKey("AWSRequestId")),
            false,
            &t
        ));
    }

    #[test]
    fn a_records_own_id_wins_over_its_place_in_the_stream() {
        let current = Attribution::Request(RID1.into());
        assert_eq!(attribute(None, &current), current);
        assert_eq!(
            attribute(Some(own(RID2, IdSource::Prefix)), &current),
            Attribution::Request(RID2.into())
        );
        assert_eq!(
            attribute(Some(own(RID2, IdSource::Prefix)), &Attribution::Phase(1)),
            Attribution::Request(RID2.into())
        );
        // Naming the invocation it arrived in: the queued id is kept.
        let Attribution::Request(kept) = attribute(Some(own(RID1, IdSource::Prefix)), &current)
        else {
            unreachable!()
        };
        let Attribution::Request(queued) = &current else {
            unreachable!()
        };
        assert!(Arc::ptr_eq(&kept, queued));
    }

    /// A line of an invocation whose platform.start has not come waits for
    /// it at most three flush points, then goes with ids derived from its
    /// request id.
    #[test]
    fn a_record_waits_for_its_start_at_most_three_flush_points() {
        let (t, phases, stream) = (started(&[RID1]), Phases::default(), flowing());
        let mut logs = PendingLogs::default();
        let at = Attribution::Request(RID1.into());
        logs.push_record(LogSource::Function, prefixed(RID2), None, T0, at);
        for flush in 1..=MAX_HELD {
            assert!(logs.take(&t, &phases, &stream).is_empty(), "flush {flush}");
            assert_eq!(logs.len(), 1);
        }
        let out = logs.take(&t, &phases, &stream);
        assert_eq!(logs.len(), 0);
        assert_eq!(str_attr(&out[0], "faas.invocation_id"), Some(RID2));
        let derived = Invocation {
            request_id: RID2.into(),
            ..Default::default()
        }
        .trace_ids();
        assert_eq!(out[0].trace_id, derived.trace_id.to_vec());
    }

    #[test]
    fn a_record_waits_for_its_start_and_then_takes_its_context() {
        let (mut t, phases, stream) = (started(&[RID1]), Phases::default(), flowing());
        let mut logs = PendingLogs::default();
        let at = Attribution::Request(RID1.into());
        logs.push_record(LogSource::Function, prefixed(RID2), None, T0, at);
        assert!(logs.take(&t, &phases, &stream).is_empty());
        t.on_start(
            Some(T0),
            Start {
                request_id: RID2.into(),
                tracing: Some(crate::lambda::events::TraceContext {
                    span_id: Some("1f2e3d4c5b6a7981".into()),
                    kind: None,
                    value: Some(
                        "Root=1-67a1b2c4-0123456789abcdef01234567;Parent=9a8b7c6d5e4f3a2c".into(),
                    ),
                }),
                ..Start::default()
            },
        );
        let out = logs.take(&t, &phases, &stream);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].trace_id, t.get(RID2).unwrap().trace_ids().trace_id);
        assert_eq!(
            out[0].span_id,
            [0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x81]
        );
    }

    #[test]
    fn nothing_waits_at_shutdown_or_before_platform_events_flow() {
        let t = started(&[RID1]);
        let finishing = Stream {
            finishing: true,
            ..flowing()
        };
        for stream in [finishing, Stream::default()] {
            let mut logs = PendingLogs::default();
            let at = Attribution::Request(RID1.into());
            logs.push_record(LogSource::Function, prefixed(RID2), None, T0, at);
            let out = logs.take(&t, &Phases::default(), &stream);
            assert_eq!(out.len(), 1, "{stream:?}");
            assert_eq!(str_attr(&out[0], "faas.invocation_id"), Some(RID2));
        }
    }

    /// An id under a JSON key the table does not know is the application's:
    /// the record stays where the stream put it, the id an attribute. One
    /// the table knows attributes it, and does not repeat as an attribute.
    #[test]
    fn a_json_id_attributes_only_an_invocation_the_table_knows() {
        let (t, phases, stream) = (started(&[RID1, RID2]), Phases::default(), flowing());
        let mut logs = PendingLogs::default();
        let at = || Attribution::Request(RID2.into());
        logs.push_record(LogSource::Function, json_naming("app-1"), None, T0, at());
        logs.push_record(LogSource::Function, json_naming(RID1), None, T0, at());
        let out = logs.take(&t, &phases, &stream);
        assert_eq!(str_attr(&out[0], "faas.invocation_id"), Some(RID2));
        assert_eq!(str_attr(&out[0], "requestId"), Some("app-1"));
        assert_eq!(str_attr(&out[1], "faas.invocation_id"), Some(RID1));
        assert_eq!(str_attr(&out[1], "requestId"), None);
        // On Managed Instances the id is all there is.
        let lmi = Stream {
            concurrent: true,
            ..flowing()
        };
        logs.push_record(
            LogSource::Function,
            json_naming("r-9"),
            None,
            T0,
            Attribution::None,
        );
        assert!(
            logs.take(&t, &phases, &lmi).is_empty(),
            "waits for r-9's start"
        );
    }

    #[test]
    fn a_phase_record_waits_until_the_phase_is_placed() {
        let (mut t, mut phases, stream) =
            (InvocationTable::default(), Phases::default(), flowing());
        let init = InitStart {
            initialization_type: Some("on-demand".into()),
            ..InitStart::default()
        };
        let phase = phases.init_start(Some(T0), init, &mut t);
        let mut logs = PendingLogs::default();
        let line = || LogRecord::Text("init line\n".into());
        logs.push_record(
            LogSource::Function,
            line(),
            None,
            T0,
            Attribution::Phase(phase),
        );
        logs.push_record(
            LogSource::Function,
            line(),
            None,
            T0,
            Attribution::Phase(99),
        );
        let out = logs.take(&t, &phases, &stream);
        assert_eq!(out.len(), 1, "a phase that is gone does not hold its lines");
        assert!(out[0].trace_id.is_empty() && out[0].span_id.is_empty());
        assert_eq!(logs.len(), 1);
        t.on_start(
            Some(T0),
            Start {
                request_id: RID1.into(),
                ..Start::default()
            },
        );
        phases.place_unplaced(RID1);
        let out = logs.take(&t, &phases, &stream);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].span_id, derived_span_id(RID1, "init").to_vec());
        assert_eq!(out[0].trace_id, t.get(RID1).unwrap().trace_ids().trace_id);
        assert_eq!(str_attr(&out[0], "faas.invocation_id"), None);
    }

    #[test]
    fn platform_lines_and_drop_notices_keep_what_the_bridge_set() {
        let (t, phases, stream) = (InvocationTable::default(), Phases::default(), flowing());
        let mut logs = PendingLogs::default();
        let line = "EXTENSION Name: x State: Ready Events: []".to_owned();
        logs.push_line(line, Some(T0), T0, "platform.extension", Attribution::None);
        let d = LogsDropped {
            dropped_bytes: Some(u64::MAX),
            dropped_records: Some(3),
            reason: None,
        };
        logs.push_drop_notice(&d, Some(T0), T0, Attribution::None);
        let out = logs.take(&t, &phases, &stream);
        assert_eq!(out[0].event_name, "platform.extension");
        assert_eq!(str_attr(&out[0], "aws.lambda.log.source"), Some("platform"));
        assert_eq!(out[1].event_name, "platform.logsDropped");
        assert_eq!(
            (out[1].severity_number, out[1].severity_text.as_str()),
            (13, "WARN")
        );
        let int = |key: &str| {
            use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
            let a = out[1].attributes.iter().find(|a| a.key == key)?;
            match a.value.as_ref()?.value.as_ref()? {
                AV::IntValue(i) => Some(*i),
                _ => None,
            }
        };
        assert_eq!(int("aws.lambda.logs_dropped.records"), Some(3));
        assert_eq!(int("aws.lambda.logs_dropped.bytes"), Some(i64::MAX));
    }

    #[test]
    fn a_restore_forgets_the_records_received_before_it() {
        let mut logs = PendingLogs::default();
        for observed in [T0, T0 + 1, T0 + 2] {
            let r = LogRecord::Text("x".into());
            logs.push_record(LogSource::Function, r, None, observed, Attribution::None);
        }
        assert_eq!(logs.forget_before(T0 + 1), 1);
        assert_eq!(logs.len(), 2);
    }
}
