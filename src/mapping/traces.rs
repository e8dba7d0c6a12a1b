//! Spans: one SERVER span per invocation (`platform.start` →
//! `platform.runtimeDone`), INTERNAL child spans for Lambda's `spans` arrays
//! (`responseLatency`, `responseDuration`, `runtimeOverhead`,
//! `extensionOverhead`), and INTERNAL spans for the init and SnapStart
//! restore phases, placed in the trace of the invocation they delayed.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span, Status};

use super::invocation::TraceIds;
use super::proto::{kv_bool, kv_int, kv_str};
use super::xray::derived_span_id;
use crate::lambda::events::PlatformSpan;
use crate::options::read::choice;
use crate::options::table::FAAS_TRIGGER;
use crate::options::{ConfigError, Env};
use crate::time::{millis_f64_to_nanos, parse_rfc3339, UnixNanos};

/// `flags` bits: the W3C trace flags in bits 0–7, then HAS_IS_REMOTE and IS_REMOTE.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Span flags for a span whose parent is remote (X-Ray caller) or local.
pub fn span_flags(sampled: bool, parent_remote: bool) -> u32 {
    u32::from(sampled) | HAS_IS_REMOTE | if parent_remote { IS_REMOTE } else { 0 }
}

/// Status and `error.type` from a Telemetry API `status` / `errorType`.
pub fn status_of(status: Option<&str>, error_type: Option<&str>) -> (Status, Option<KeyValue>) {
    let s = status.unwrap_or("success");
    if s.eq_ignore_ascii_case("success") {
        return (Status::default(), None);
    }
    let error_type = error_type
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| s.to_ascii_lowercase());
    (
        Status {
            message: if error_type.eq_ignore_ascii_case(s) {
                s.to_owned()
            } else {
                format!("{s}: {error_type}")
            },
            code: StatusCode::Error as i32,
        },
        Some(kv_str("error.type", error_type)),
    )
}

/// Child spans from a `spans` array. Ids derive from `key` (the request id,
/// or the phase key) and the span name, so re-mapping gives the same ids.
pub fn child_spans(
    key: &str,
    parent: &TraceIds,
    parent_span_id: [u8; 8],
    spans: &[PlatformSpan],
    fallback_start: UnixNanos,
) -> Vec<Span> {
    let mut out = Vec::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        let role = if spans[..i].iter().any(|p| p.name == s.name) {
            format!("{}#{i}", s.name)
        } else {
            s.name.clone()
        };
        let start = s
            .start
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(fallback_start);
        let end = start.saturating_add(millis_f64_to_nanos(s.duration_ms.unwrap_or(0.0)));
        let mut attributes = Vec::new();
        if let Some(d) = s.duration_ms {
            attributes.push(super::proto::kv_f64("aws.lambda.span.duration_ms", d));
        }
        out.push(Span {
            trace_id: parent.trace_id.to_vec(),
            span_id: derived_span_id(key, &role).to_vec(),
            parent_span_id: parent_span_id.to_vec(),
            flags: span_flags(parent.sampled, false),
            name: s.name.clone(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end.max(start),
            attributes,
            ..Span::default()
        });
    }
    out
}

/// Inputs of an invocation span.
pub struct InvocationSpan<'a> {
    pub name: &'a str,
    pub request_id: &'a str,
    pub ids: TraceIds,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub coldstart: bool,
    pub faas_trigger: &'a str,
    pub invoked_arn: Option<&'a str>,
    pub resource_id: Option<String>,
    pub produced_bytes: Option<u64>,
    pub tenant_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub error_type: Option<&'a str>,
    /// Set when the invocation never completed (no runtimeDone nor report).
    pub incomplete: bool,
}

pub fn invocation_span(i: InvocationSpan<'_>) -> Span {
    let mut attributes = vec![
        kv_str("faas.invocation_id", i.request_id),
        kv_bool("faas.coldstart", i.coldstart),
        kv_str("faas.trigger", i.faas_trigger),
    ];
    if let Some(arn) = i.invoked_arn {
        attributes.push(kv_str("aws.lambda.invoked_arn", arn));
    }
    if let Some(id) = i.resource_id {
        attributes.push(kv_str("cloud.resource_id", id));
    }
    if let Some(b) = i.produced_bytes {
        attributes.push(kv_int(
            "aws.lambda.produced_bytes",
            b.min(i64::MAX as u64) as i64,
        ));
    }
    if let Some(t) = i.tenant_id {
        attributes.push(kv_str("aws.lambda.tenant_id", t));
    }
    let (mut status, error_attr) = status_of(i.status, i.error_type);
    attributes.extend(error_attr);
    if i.incomplete {
        status = Status {
            message: "incomplete: the platform reported no end for this invocation".into(),
            code: StatusCode::Error as i32,
        };
        attributes.push(kv_str("error.type", "incomplete"));
    }
    Span {
        trace_id: i.ids.trace_id.to_vec(),
        span_id: i.ids.span_id.to_vec(),
        parent_span_id: i.ids.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: span_flags(i.ids.sampled, i.ids.parent_span_id.is_some()),
        name: i.name.to_owned(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: i.start,
        end_time_unix_nano: i.end.max(i.start),
        attributes,
        status: Some(status),
        ..Span::default()
    }
}

/// Inputs of an init or restore span.
pub struct PhaseSpan<'a> {
    /// `init` or `restore`.
    pub name: &'static str,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The invocation span it belongs to, if attached.
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub initialization_type: Option<&'a str>,
    pub phase: Option<&'a str>,
    pub runtime_version: Option<&'a str>,
    pub runtime_version_arn: Option<&'a str>,
    pub duration_ms: Option<f64>,
    pub status: Option<&'a str>,
    pub error_type: Option<&'a str>,
}

pub fn phase_span(p: PhaseSpan<'_>) -> Span {
    let mut attributes = Vec::new();
    let mut opt = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            attributes.push(kv_str(k, v));
        }
    };
    opt("aws.lambda.initialization_type", p.initialization_type);
    opt("aws.lambda.init.phase", p.phase);
    opt("aws.lambda.runtime_version", p.runtime_version);
    opt("aws.lambda.runtime_version_arn", p.runtime_version_arn);
    if let Some(d) = p.duration_ms {
        attributes.push(super::proto::kv_f64("aws.lambda.span.duration_ms", d));
    }
    let (status, error_attr) = status_of(p.status, p.error_type);
    attributes.extend(error_attr);
    Span {
        trace_id: p.trace_id.to_vec(),
        span_id: p.span_id.to_vec(),
        parent_span_id: p.parent_span_id.map(|s| s.to_vec()).unwrap_or_default(),
        flags: span_flags(p.sampled, false),
        name: p.name.to_owned(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: p.start,
        end_time_unix_nano: p.end.max(p.start),
        attributes,
        status: Some(status),
        ..Span::default()
    }
}

/// `cloud.resource_id`: the function ARN with the invoked qualifier (alias
/// or version) replaced by the version that ran.
pub fn resource_id(invoked_arn: &str, version: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = invoked_arn.split(':').collect();
    if parts.len() < 7 || parts[0] != "arn" || parts[5] != "function" {
        return None;
    }
    let base = parts[..7].join(":");
    Some(match version.filter(|v| !v.is_empty()) {
        Some(v) => format!("{base}:{v}"),
        None => base,
    })
}

/// Reads `LAMBDA_OTEL_BRIDGE_FAAS_TRIGGER`, the `faas.trigger` of spans and
/// metrics (the Telemetry API does not reveal the trigger).
pub fn faas_trigger(env: &dyn Env) -> Result<String, ConfigError> {
    choice(env, &FAAS_TRIGGER, |v| Some(v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_id_replaces_the_alias() {
        assert_eq!(
            resource_id(
                "arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live",
                Some("17")
            )
            .as_deref(),
            Some("arn:aws:lambda:eu-west-1:123456789012:function:orders-api:17")
        );
        assert_eq!(
            resource_id(
                "arn:aws:lambda:eu-west-1:123456789012:function:orders-api",
                None
            )
            .as_deref(),
            Some("arn:aws:lambda:eu-west-1:123456789012:function:orders-api")
        );
        assert_eq!(resource_id("not-an-arn", Some("1")), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(
            status_of(Some("success"), None).0.code,
            StatusCode::Unset as i32
        );
        let (s, attr) = status_of(Some("error"), Some("Runtime.HandlerError"));
        assert_eq!(s.code, StatusCode::Error as i32);
        assert_eq!(attr.unwrap().key, "error.type");
        let (s, attr) = status_of(Some("timeout"), None);
        assert_eq!(s.message, "timeout");
        assert!(
            matches!(attr.unwrap().value.unwrap().value, Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v)) if v == "timeout")
        );
    }

    #[test]
    fn flags() {
        assert_eq!(span_flags(true, true), 0x301);
        assert_eq!(span_flags(true, false), 0x101);
        assert_eq!(span_flags(false, false), 0x100);
    }

    #[test]
    fn children_have_deterministic_distinct_ids() {
        let ids = TraceIds {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            sampled: true,
            from_xray: false,
        };
        let spans = vec![
            PlatformSpan {
                name: "responseLatency".into(),
                start: Some("2025-03-04T10:15:30.420Z".into()),
                duration_ms: Some(548.311),
            },
            PlatformSpan {
                name: "responseDuration".into(),
                start: Some("2025-03-04T10:15:30.968Z".into()),
                duration_ms: Some(0.412),
            },
        ];
        let a = child_spans("r1", &ids, ids.span_id, &spans, 0);
        let b = child_spans("r1", &ids, ids.span_id, &spans, 0);
        assert_eq!(a, b);
        assert_ne!(a[0].span_id, a[1].span_id);
        assert_eq!(a[0].start_time_unix_nano, 1_741_083_330_420_000_000);
        assert_eq!(a[0].end_time_unix_nano, 1_741_083_330_968_311_000);
        assert_eq!(a[0].parent_span_id, vec![2; 8]);
    }
}
