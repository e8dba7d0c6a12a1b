//! Span assembly for the invocations: what a flush point can export, and at
//! shutdown the incomplete spans of invocations that started but never
//! ended. (Init and restore spans are [`super::phases`]'.)
//!
//! An invocation span goes out once its end is known: from
//! `platform.runtimeDone`, or from the report alone where no runtimeDone
//! exists (Managed Instances), when the start is known, or at shutdown
//! (otherwise a report that overtook its start would end the span early).
//! runtimeDone's child spans go with it; the report's child spans follow in
//! the same flush or a later one, never before the invocation span. Each
//! goes out once.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::invocation::{Invocation, InvocationTable};
use super::traces;
use super::{MapperSettings, Stream};
use crate::time::millis_f64_to_nanos;

/// The invocation span's name: the function name, `invoke` when unknown.
fn span_name(config: &MapperSettings) -> &str {
    config.function_name.as_deref().unwrap_or("invoke")
}

/// What went out of one invocation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sent {
    /// The invocation span.
    span: bool,
    /// The report's child spans.
    report: bool,
}

/// Appends the spans `spans_of` finds for each invocation, in the order the
/// invocations were first seen, and marks them sent.
fn take_each(
    invocations: &mut InvocationTable,
    mut spans_of: impl FnMut(&str, &Invocation, &mut Vec<Span>) -> Sent,
) -> Vec<Span> {
    let mut spans = Vec::new();
    for rid in invocations.ids() {
        let Some(inv) = invocations.get(&rid) else {
            continue;
        };
        let sent = spans_of(&rid, inv, &mut spans);
        if let Some(inv) = invocations.get_mut(&rid) {
            inv.span_emitted |= sent.span;
            inv.report_spans_emitted |= sent.report;
        }
    }
    spans
}

/// The invocation and report spans that can go out now.
pub(super) fn take_invocation_spans(
    invocations: &mut InvocationTable,
    config: &MapperSettings,
    stream: &Stream,
) -> Vec<Span> {
    take_each(invocations, |rid, inv, spans| {
        invocation_spans(rid, inv, config, stream, spans)
    })
}

/// Shutdown: a span for every invocation that started but never ended
/// (no runtimeDone, no report), ending at the latest time seen.
pub(super) fn take_incomplete_spans(
    invocations: &mut InvocationTable,
    config: &MapperSettings,
    stream: &Stream,
) -> Vec<Span> {
    take_each(invocations, |rid, inv, spans| {
        let span = incomplete_span(rid, inv, config, stream);
        let sent = Sent {
            span: span.is_some(),
            report: false,
        };
        spans.extend(span.filter(|_| inv.trace_ids().sampled));
        sent
    })
}

/// Appends `inv`'s spans that can go out now.
fn invocation_spans(
    rid: &str,
    inv: &Invocation,
    config: &MapperSettings,
    stream: &Stream,
    spans: &mut Vec<Span>,
) -> Sent {
    let ids = inv.trace_ids();
    let start_t = inv.start.as_ref().and_then(|(t, _)| *t);
    let done = inv.runtime_done.as_ref();
    let report = inv.report.as_ref();
    let mut emit_span = false;
    let report_can_end =
        report.is_some() && (stream.concurrent || inv.start.is_some() || stream.finishing);
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
            .unwrap_or(stream.latest);
        let start = start_t.unwrap_or_else(|| end.saturating_sub(dur.unwrap_or(0)));
        let version = inv
            .start
            .as_ref()
            .and_then(|(_, s)| s.version.as_deref())
            .or(config.function_version.as_deref());
        let invoked_arn = inv
            .invoke
            .as_ref()
            .and_then(|i| i.invoked_function_arn.as_deref())
            .or_else(|| {
                inv.start
                    .as_ref()
                    .and_then(|(_, s)| s.function_arn.as_deref())
            });
        let span = traces::invocation_span(traces::InvocationSpan {
            name: span_name(config),
            request_id: rid,
            ids,
            start,
            end,
            coldstart: inv.coldstart,
            faas_trigger: &config.faas_trigger,
            invoked_arn,
            resource_id: invoked_arn.and_then(|a| traces::resource_id(a, version)),
            produced_bytes: done.and_then(|(_, d)| d.metrics.produced_bytes),
            tenant_id: inv.start.as_ref().and_then(|(_, s)| s.tenant_id.as_deref()),
            status,
            error_type,
            incomplete: false,
        });
        // Sampled out: marked sent all the same (the decision is final).
        if ids.sampled {
            spans.push(span);
            if let Some((_, d)) = done {
                spans.extend(traces::child_spans(rid, &ids, ids.span_id, &d.spans, start));
            }
        }
        emit_span = true;
    }
    let mut emit_report = false;
    if let Some((t, r)) = report {
        if !inv.report_spans_emitted && (inv.span_emitted || emit_span) && ids.sampled {
            spans.extend(traces::child_spans(
                rid,
                &ids,
                ids.span_id,
                &r.spans,
                t.unwrap_or(stream.latest),
            ));
        }
        emit_report = !inv.report_spans_emitted && (inv.span_emitted || emit_span);
    }
    Sent {
        span: emit_span,
        report: emit_report,
    }
}

/// The incomplete span of `inv` if it started but never ended.
fn incomplete_span(
    rid: &str,
    inv: &Invocation,
    config: &MapperSettings,
    stream: &Stream,
) -> Option<Span> {
    if inv.span_emitted || inv.runtime_done.is_some() || inv.report.is_some() {
        return None;
    }
    let start = inv.start.as_ref().and_then(|(t, _)| *t)?;
    let invoked_arn = inv
        .invoke
        .as_ref()
        .and_then(|i| i.invoked_function_arn.as_deref());
    Some(traces::invocation_span(traces::InvocationSpan {
        name: span_name(config),
        request_id: rid,
        ids: inv.trace_ids(),
        start,
        end: stream.latest.max(start),
        coldstart: inv.coldstart,
        faas_trigger: &config.faas_trigger,
        invoked_arn,
        resource_id: invoked_arn
            .and_then(|a| traces::resource_id(a, config.function_version.as_deref())),
        produced_bytes: None,
        tenant_id: None,
        status: None,
        error_type: None,
        incomplete: true,
    }))
}

/// The request that carries `spans`, if there are any.
pub(super) fn traces_request(
    resource: &Resource,
    scope: &InstrumentationScope,
    spans: Vec<Span>,
) -> Option<ExportTraceServiceRequest> {
    (!spans.is_empty()).then(|| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope.clone()),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::events::{PlatformSpan, Report, ReportMetrics, RuntimeDone, Start};
    use crate::mapping::invocation::InvokeInfo;

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_741_083_330_000_000_000;

    fn start(t: &mut InvocationTable, rid: &str) {
        let s = Start {
            request_id: rid.into(),
            ..Start::default()
        };
        t.on_start(Some(T0), s);
    }

    fn report(rid: &str, duration_ms: f64, spans: &[&str]) -> Report {
        Report {
            request_id: rid.into(),
            metrics: ReportMetrics {
                duration_ms: Some(duration_ms),
                ..ReportMetrics::default()
            },
            spans: spans
                .iter()
                .map(|name| PlatformSpan {
                    name: (*name).into(),
                    start: None,
                    duration_ms: Some(1.0),
                })
                .collect(),
            ..Report::default()
        }
    }

    fn names(spans: &[Span]) -> Vec<&str> {
        spans.iter().map(|s| s.name.as_str()).collect()
    }

    /// A report that overtook its invocation's start does not end the span
    /// (the start would be guessed), except on Managed Instances, where no
    /// runtimeDone comes, and at shutdown.
    #[test]
    fn a_report_without_its_start_ends_the_span_only_when_nothing_else_will() {
        let config = MapperSettings::default();
        for (stream, ends) in [
            (Stream::default(), false),
            (
                Stream {
                    concurrent: true,
                    ..Stream::default()
                },
                true,
            ),
            (
                Stream {
                    finishing: true,
                    ..Stream::default()
                },
                true,
            ),
        ] {
            let mut t = InvocationTable::default();
            t.on_report(Some(T0 + 10 * MS), report("r1", 4.0, &["responseLatency"]));
            let spans = take_invocation_spans(&mut t, &config, &stream);
            if !ends {
                assert!(spans.is_empty(), "{stream:?}");
                assert!(!t.get("r1").unwrap().span_emitted);
                continue;
            }
            assert_eq!(names(&spans), ["invoke", "responseLatency"], "{stream:?}");
            assert_eq!(spans[0].end_time_unix_nano, T0 + 10 * MS);
            assert_eq!(spans[0].start_time_unix_nano, T0 + 6 * MS);
            let inv = t.get("r1").unwrap();
            assert!(inv.span_emitted && inv.report_spans_emitted);
        }
    }

    /// The report comes during the next invocation: its child spans follow
    /// the invocation span in a later flush, and nothing goes out twice.
    #[test]
    fn report_spans_follow_the_invocation_span_once() {
        let (config, stream) = (MapperSettings::default(), Stream::default());
        let mut t = InvocationTable::default();
        start(&mut t, "r1");
        let done = RuntimeDone {
            request_id: "r1".into(),
            ..RuntimeDone::default()
        };
        t.on_runtime_done(None, done);
        let first = take_invocation_spans(&mut t, &config, &stream);
        assert_eq!(names(&first), ["invoke"]);
        // No runtimeDone time: the span ends at its start.
        assert_eq!(first[0].end_time_unix_nano, T0);
        t.on_report(Some(T0 + 9 * MS), report("r1", 5.0, &["responseLatency"]));
        let second = take_invocation_spans(&mut t, &config, &stream);
        assert_eq!(names(&second), ["responseLatency"]);
        assert_eq!(second[0].parent_span_id, first[0].span_id);
        assert!(take_invocation_spans(&mut t, &config, &stream).is_empty());
    }

    #[test]
    fn without_a_runtime_done_time_the_span_lasts_its_duration() {
        let (stream, mut t) = (Stream::default(), InvocationTable::default());
        let config = MapperSettings {
            function_name: Some("orders-api".into()),
            ..MapperSettings::default()
        };
        start(&mut t, "r1");
        let mut done = RuntimeDone {
            request_id: "r1".into(),
            ..RuntimeDone::default()
        };
        done.metrics.duration_ms = Some(12.5);
        t.on_runtime_done(None, done);
        let spans = take_invocation_spans(&mut t, &config, &stream);
        assert_eq!(names(&spans), ["orders-api"]);
        assert_eq!(spans[0].end_time_unix_nano, T0 + 12_500_000);
    }

    /// At shutdown only invocations that started and never ended get an
    /// incomplete span, ending at the latest time seen; once.
    #[test]
    fn incomplete_spans_for_started_invocations_that_never_ended() {
        let config = MapperSettings::default();
        let stream = Stream {
            latest: T0 + 30 * MS,
            finishing: true,
            ..Stream::default()
        };
        let mut t = InvocationTable::default();
        start(&mut t, "running");
        t.on_invoke("invoked-only", InvokeInfo::default());
        start(&mut t, "ended");
        let done = RuntimeDone {
            request_id: "ended".into(),
            ..RuntimeDone::default()
        };
        t.on_runtime_done(Some(T0 + MS), done);
        let spans = take_incomplete_spans(&mut t, &config, &stream);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].trace_id,
            t.get("running").unwrap().trace_ids().trace_id
        );
        assert_eq!(
            (spans[0].start_time_unix_nano, spans[0].end_time_unix_nano),
            (T0, T0 + 30 * MS)
        );
        assert!(
            !t.get("ended").unwrap().span_emitted,
            "not an incomplete one"
        );
        assert!(take_incomplete_spans(&mut t, &config, &stream).is_empty());
    }

    #[test]
    fn no_request_without_spans() {
        let (resource, scope) = (Resource::default(), InstrumentationScope::default());
        assert_eq!(traces_request(&resource, &scope, Vec::new()), None);
        let one = traces_request(&resource, &scope, vec![Span::default()]).unwrap();
        assert_eq!(one.resource_spans[0].scope_spans[0].spans.len(), 1);
    }
}
