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
use super::{MapperConfig, Stream};
use crate::time::millis_f64_to_nanos;

/// The invocation span's name: the function name, `invoke` when unknown.
fn span_name(config: &MapperConfig) -> &str {
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
    config: &MapperConfig,
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
    config: &MapperConfig,
    stream: &Stream,
) -> Vec<Span> {
    take_each(invocations, |rid, inv, spans| {
        let span = incomplete_span(rid, inv, config, stream);
        let sent = Sent {
            span: span.is_some(),
            report: false,
        };
        spans.extend(span);
        sent
    })
}

/// Appends `inv`'s spans that can go out now.
fn invocation_spans(
    rid: &str,
    inv: &Invocation,
    config: &MapperConfig,
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
        spans.push(traces::invocation_span(traces::InvocationSpan {
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
        }));
        if let Some((_, d)) = done {
            spans.extend(traces::child_spans(rid, &ids, ids.span_id, &d.spans, start));
        }
        emit_span = true;
    }
    let mut emit_report = false;
    if let Some((t, r)) = report {
        if !inv.report_spans_emitted && (inv.span_emitted || emit_span) {
            spans.extend(traces::child_spans(
                rid,
                &ids,
                ids.span_id,
                &r.spans,
                t.unwrap_or(stream.latest),
            ));
            emit_report = true;
        }
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
    config: &MapperConfig,
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
