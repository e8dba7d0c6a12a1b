//! Typed, lenient model of the Telemetry API events (schema `2025-01-29`,
//! backward compatible with `2022-12-13` and `2022-07-01`).
//!
//! A batch is a JSON array; every element is decoded on its own
//! ([`parse_batch`]), so one malformed or unexpected element is counted and
//! skipped while the rest of the batch is kept. Within a record, unknown fields
//! are ignored, numbers are accepted as integers, floats or numeric strings,
//! a field of the wrong type reads as absent, and `function` / `extension`
//! records may be a string (Text log format) or an object (JSON log format).
//! Event types this version does not know become [`EventKind::Unknown`].

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::lenient::{
    opt_f64, opt_str_ref, opt_string, opt_u64, required_string, string_or_empty, strings,
};
use crate::time::{parse_rfc3339, UnixNanos};

/// One Telemetry API event.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEvent {
    /// The envelope `time` (when the platform generated the event), if it parsed.
    pub time: Option<UnixNanos>,
    pub kind: EventKind,
}

/// Every documented event type, plus [`EventKind::Unknown`] for new ones.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    InitStart(InitStart),
    InitRuntimeDone(PhaseDone),
    InitReport(PhaseReport),
    Start(Start),
    RuntimeDone(RuntimeDone),
    Report(Report),
    RestoreStart(RestoreStart),
    RestoreRuntimeDone(PhaseDone),
    RestoreReport(PhaseReport),
    Extension(PlatformExtension),
    TelemetrySubscription(TelemetrySubscription),
    LogsDropped(LogsDropped),
    Function(LogRecord),
    ExtensionLog(LogRecord),
    Unknown { type_name: String, record: Value },
}

impl EventKind {
    /// The Telemetry API `type` string of this event.
    pub fn type_name(&self) -> &str {
        match self {
            EventKind::Unknown { type_name, .. } => type_name,
            known => known.static_type_name(),
        }
    }

    /// The `type` of a documented event; `"unknown"` for [`EventKind::Unknown`].
    pub fn static_type_name(&self) -> &'static str {
        match self {
            EventKind::InitStart(_) => "platform.initStart",
            EventKind::InitRuntimeDone(_) => "platform.initRuntimeDone",
            EventKind::InitReport(_) => "platform.initReport",
            EventKind::Start(_) => "platform.start",
            EventKind::RuntimeDone(_) => "platform.runtimeDone",
            EventKind::Report(_) => "platform.report",
            EventKind::RestoreStart(_) => "platform.restoreStart",
            EventKind::RestoreRuntimeDone(_) => "platform.restoreRuntimeDone",
            EventKind::RestoreReport(_) => "platform.restoreReport",
            EventKind::Extension(_) => "platform.extension",
            EventKind::TelemetrySubscription(_) => "platform.telemetrySubscription",
            EventKind::LogsDropped(_) => "platform.logsDropped",
            EventKind::Function(_) => "function",
            EventKind::ExtensionLog(_) => "extension",
            EventKind::Unknown { .. } => "unknown",
        }
    }
}

/// A `function` or `extension` log record.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    /// Text log format (or plain stdout output in JSON mode).
    Text(String),
    /// JSON log format: whatever object the runtime's formatter wrote.
    Json(Map<String, Value>),
}

/// `TraceContext`: the X-Ray header Lambda attaches to platform events.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TraceContext {
    #[serde(deserialize_with = "opt_string")]
    pub span_id: Option<String>,
    #[serde(rename = "type", deserialize_with = "opt_string")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub value: Option<String>,
}

/// One entry of a `spans` array (`responseLatency`, `extensionOverhead`, ...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlatformSpan {
    #[serde(deserialize_with = "string_or_empty")]
    pub name: String,
    #[serde(deserialize_with = "opt_string")]
    pub start: Option<String>,
    #[serde(deserialize_with = "opt_f64")]
    pub duration_ms: Option<f64>,
}

/// `platform.initStart`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InitStart {
    #[serde(deserialize_with = "opt_string")]
    pub initialization_type: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub phase: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub function_name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub function_version: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub function_arn: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub instance_id: Option<String>,
    #[serde(deserialize_with = "opt_u64")]
    pub instance_max_memory: Option<u64>,
    #[serde(deserialize_with = "opt_string")]
    pub runtime_version: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub runtime_version_arn: Option<String>,
    #[serde(deserialize_with = "opt_trace")]
    pub tracing: Option<TraceContext>,
}

/// `platform.restoreStart` (SnapStart).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RestoreStart {
    #[serde(deserialize_with = "opt_string")]
    pub function_name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub function_version: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub instance_id: Option<String>,
    #[serde(deserialize_with = "opt_u64")]
    pub instance_max_memory: Option<u64>,
    #[serde(deserialize_with = "opt_string")]
    pub runtime_version: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub runtime_version_arn: Option<String>,
}

/// `platform.initRuntimeDone` and `platform.restoreRuntimeDone`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PhaseDone {
    #[serde(deserialize_with = "opt_string")]
    pub initialization_type: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub phase: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub status: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub error_type: Option<String>,
    #[serde(deserialize_with = "spans")]
    pub spans: Vec<PlatformSpan>,
    #[serde(deserialize_with = "opt_trace")]
    pub tracing: Option<TraceContext>,
}

/// `platform.initReport` and `platform.restoreReport`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PhaseReport {
    #[serde(deserialize_with = "opt_string")]
    pub initialization_type: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub phase: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub status: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub error_type: Option<String>,
    pub metrics: DurationMetrics,
    #[serde(deserialize_with = "spans")]
    pub spans: Vec<PlatformSpan>,
    #[serde(deserialize_with = "opt_trace")]
    pub tracing: Option<TraceContext>,
}

/// `InitReportMetrics` / `RestoreReportMetrics`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DurationMetrics {
    #[serde(deserialize_with = "opt_f64")]
    pub duration_ms: Option<f64>,
}

/// `platform.start`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    #[serde(deserialize_with = "required_string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub function_arn: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "opt_trace")]
    pub tracing: Option<TraceContext>,
}

/// `platform.runtimeDone`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDone {
    #[serde(deserialize_with = "required_string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub error_type: Option<String>,
    #[serde(default)]
    pub metrics: RuntimeDoneMetrics,
    #[serde(default, deserialize_with = "spans")]
    pub spans: Vec<PlatformSpan>,
    #[serde(default, deserialize_with = "opt_trace")]
    pub tracing: Option<TraceContext>,
    #[serde(default, deserialize_with = "opt_string")]
    pub tenant_id: Option<String>,
}

/// `RuntimeDoneMetrics`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuntimeDoneMetrics {
    #[serde(deserialize_with = "opt_f64")]
    pub duration_ms: Option<f64>,
    #[serde(deserialize_with = "opt_u64")]
    pub produced_bytes: Option<u64>,
}

/// `platform.report`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(deserialize_with = "required_string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub error_type: Option<String>,
    #[serde(default)]
    pub metrics: ReportMetrics,
    #[serde(default, deserialize_with = "spans")]
    pub spans: Vec<PlatformSpan>,
    #[serde(default, deserialize_with = "opt_trace")]
    pub tracing: Option<TraceContext>,
    #[serde(default, deserialize_with = "opt_string")]
    pub tenant_id: Option<String>,
}

/// `ReportMetrics` (on Lambda Managed Instances only `durationMs` is present).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReportMetrics {
    #[serde(deserialize_with = "opt_f64")]
    pub duration_ms: Option<f64>,
    #[serde(deserialize_with = "opt_f64")]
    pub billed_duration_ms: Option<f64>,
    #[serde(deserialize_with = "opt_f64")]
    pub init_duration_ms: Option<f64>,
    #[serde(deserialize_with = "opt_f64")]
    pub restore_duration_ms: Option<f64>,
    #[serde(rename = "maxMemoryUsedMB", deserialize_with = "opt_u64")]
    pub max_memory_used_mb: Option<u64>,
    #[serde(rename = "memorySizeMB", deserialize_with = "opt_u64")]
    pub memory_size_mb: Option<u64>,
}

/// `platform.extension`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlatformExtension {
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub state: Option<String>,
    #[serde(deserialize_with = "strings")]
    pub events: Vec<String>,
    #[serde(deserialize_with = "opt_string")]
    pub error_type: Option<String>,
}

/// `platform.telemetrySubscription`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TelemetrySubscription {
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub state: Option<String>,
    #[serde(deserialize_with = "strings")]
    pub types: Vec<String>,
}

/// `platform.logsDropped`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogsDropped {
    #[serde(deserialize_with = "opt_u64")]
    pub dropped_bytes: Option<u64>,
    #[serde(deserialize_with = "opt_u64")]
    pub dropped_records: Option<u64>,
    #[serde(deserialize_with = "opt_string")]
    pub reason: Option<String>,
}

/// Why a whole body was refused (the listener answers 400).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("body is not a JSON array of events: {0}")]
    NotAnArray(String),
}

/// Why one element of a batch was skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("element is not an object with a string `type`: {0}")]
    Envelope(String),
    #[error("`{type_name}` record is invalid: {reason}")]
    Record { type_name: String, reason: String },
}

/// The decoded elements of one batch and the elements that were skipped.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub events: Vec<TelemetryEvent>,
    pub skipped: Vec<EventError>,
}

/// Decodes one POST body: a JSON array whose elements are decoded one by one.
pub fn parse_batch(body: &[u8]) -> Result<ParsedBatch, BatchError> {
    let elements: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|e| BatchError::NotAnArray(e.to_string()))?;
    let mut out = ParsedBatch {
        events: Vec::with_capacity(elements.len()),
        skipped: Vec::new(),
    };
    for raw in elements {
        match parse_event(raw.get()) {
            Ok(ev) => out.events.push(ev),
            Err(e) => out.skipped.push(e),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow, deserialize_with = "opt_str_ref")]
    time: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
}

/// Decodes one element of a batch.
pub fn parse_event(json: &str) -> Result<TelemetryEvent, EventError> {
    let env: Envelope<'_> =
        serde_json::from_str(json).map_err(|e| EventError::Envelope(e.to_string()))?;
    let time = env.time.as_deref().and_then(parse_rfc3339);
    let record = env.record.map(RawValue::get).unwrap_or("null");
    let type_name = env.kind.as_ref();
    let kind = match type_name {
        "platform.initStart" => EventKind::InitStart(record_of(type_name, record)?),
        "platform.initRuntimeDone" => EventKind::InitRuntimeDone(record_of(type_name, record)?),
        "platform.initReport" => EventKind::InitReport(record_of(type_name, record)?),
        "platform.start" => EventKind::Start(record_of(type_name, record)?),
        "platform.runtimeDone" => EventKind::RuntimeDone(record_of(type_name, record)?),
        "platform.report" => EventKind::Report(record_of(type_name, record)?),
        "platform.restoreStart" => EventKind::RestoreStart(record_of(type_name, record)?),
        "platform.restoreRuntimeDone" => {
            EventKind::RestoreRuntimeDone(record_of(type_name, record)?)
        }
        "platform.restoreReport" => EventKind::RestoreReport(record_of(type_name, record)?),
        "platform.extension" => EventKind::Extension(record_of(type_name, record)?),
        "platform.telemetrySubscription" => {
            EventKind::TelemetrySubscription(record_of(type_name, record)?)
        }
        "platform.logsDropped" => EventKind::LogsDropped(record_of(type_name, record)?),
        "function" => EventKind::Function(log_record(type_name, record)?),
        "extension" => EventKind::ExtensionLog(log_record(type_name, record)?),
        other => EventKind::Unknown {
            type_name: other.to_owned(),
            record: serde_json::from_str(record).unwrap_or(Value::Null),
        },
    };
    Ok(TelemetryEvent { time, kind })
}

fn record_of<T: for<'de> Deserialize<'de>>(type_name: &str, record: &str) -> Result<T, EventError> {
    serde_json::from_str(record).map_err(|e| EventError::Record {
        type_name: type_name.to_owned(),
        reason: e.to_string(),
    })
}

fn log_record(type_name: &str, record: &str) -> Result<LogRecord, EventError> {
    let bad = |e: serde_json::Error| EventError::Record {
        type_name: type_name.to_owned(),
        reason: e.to_string(),
    };
    // Text format, the common case: decode the string directly.
    if record.starts_with('"') {
        return serde_json::from_str::<String>(record)
            .map(LogRecord::Text)
            .map_err(bad);
    }
    let value: Value = serde_json::from_str(record).map_err(bad)?;
    Ok(match value {
        Value::String(s) => LogRecord::Text(s),
        Value::Object(m) => LogRecord::Json(m),
        Value::Null => {
            return Err(EventError::Record {
                type_name: type_name.to_owned(),
                reason: "record is missing".to_owned(),
            })
        }
        other => LogRecord::Text(other.to_string()),
    })
}

fn opt_trace<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TraceContext>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Object(_) => serde_json::from_value(v).ok(),
        _ => None,
    })
}

/// An array of span objects; elements that are not objects are dropped.
fn spans<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PlatformSpan>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Array(items) => items
            .into_iter()
            .filter(Value::is_object)
            .filter_map(|i| serde_json::from_value::<PlatformSpan>(i).ok())
            .filter(|s| !s.name.is_empty())
            .collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> TelemetryEvent {
        parse_event(json).expect("event parses")
    }

    #[test]
    fn every_documented_type_decodes() {
        let batch = br#"[
          {"time":"2025-03-04T10:15:29.801Z","type":"platform.initStart","record":{"initializationType":"on-demand","phase":"init","runtimeVersion":"python:3.13.v21","functionName":"orders-api","functionVersion":"$LATEST","instanceId":"4f2c","instanceMaxMemory":536870912}},
          {"time":"2025-03-04T10:15:30.412Z","type":"platform.initRuntimeDone","record":{"initializationType":"on-demand","phase":"init","status":"success"}},
          {"time":"2025-03-04T10:15:30.415Z","type":"platform.initReport","record":{"initializationType":"on-demand","phase":"init","status":"success","metrics":{"durationMs":611.27}}},
          {"time":"2025-03-04T10:15:30.420Z","type":"platform.start","record":{"requestId":"r1","version":"$LATEST","tracing":{"spanId":"1f2e3d4c5b6a7980","type":"X-Amzn-Trace-Id","value":"Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1"}}},
          {"time":"2025-03-04T10:15:30.981Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success","spans":[{"name":"responseLatency","start":"2025-03-04T10:15:30.420Z","durationMs":548.311}],"metrics":{"durationMs":560.94,"producedBytes":187}}},
          {"time":"2025-03-04T10:15:31.002Z","type":"platform.report","record":{"requestId":"r1","status":"success","metrics":{"durationMs":581.66,"billedDurationMs":582,"memorySizeMB":512,"maxMemoryUsedMB":97,"initDurationMs":611.27}}},
          {"time":"2025-03-04T11:02:07.118Z","type":"platform.restoreStart","record":{"functionName":"orders-api","functionVersion":"17","instanceMaxMemory":"1024"}},
          {"time":"2025-03-04T11:02:07.402Z","type":"platform.restoreRuntimeDone","record":{"status":"success"}},
          {"time":"2025-03-04T11:02:07.405Z","type":"platform.restoreReport","record":{"status":"success","metrics":{"durationMs":284.61}}},
          {"time":"2025-03-04T10:15:29.905Z","type":"platform.extension","record":{"name":"lambda-otel-bridge","state":"Ready","events":["INVOKE","SHUTDOWN"]}},
          {"time":"2025-03-04T10:15:29.907Z","type":"platform.telemetrySubscription","record":{"name":"lambda-otel-bridge","state":"Subscribed","types":["platform","function"]}},
          {"time":"2025-03-04T10:16:02.550Z","type":"platform.logsDropped","record":{"droppedBytes":524288,"droppedRecords":3120,"reason":"slow"}},
          {"time":"2025-03-04T10:15:30.611Z","type":"function","record":"[INFO]\t2025-03-04T10:15:30.610Z\tr1\tcreated order 4711\n"},
          {"time":"2025-03-04T10:15:30.612Z","type":"extension","record":{"level":"INFO","message":"listener started"}}
        ]"#;
        let parsed = parse_batch(batch).unwrap();
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        let names: Vec<&str> = parsed.events.iter().map(|e| e.kind.type_name()).collect();
        assert_eq!(
            names,
            [
                "platform.initStart",
                "platform.initRuntimeDone",
                "platform.initReport",
                "platform.start",
                "platform.runtimeDone",
                "platform.report",
                "platform.restoreStart",
                "platform.restoreRuntimeDone",
                "platform.restoreReport",
                "platform.extension",
                "platform.telemetrySubscription",
                "platform.logsDropped",
                "function",
                "extension"
            ]
        );
        assert!(parsed
            .events
            .iter()
            .all(|e| !matches!(e.kind, EventKind::Unknown { .. })));
        match &parsed.events[6].kind {
            EventKind::RestoreStart(r) => assert_eq!(r.instance_max_memory, Some(1024)),
            other => panic!("{other:?}"),
        }
        match &parsed.events[5].kind {
            EventKind::Report(r) => {
                assert_eq!(r.metrics.memory_size_mb, Some(512));
                assert_eq!(r.metrics.init_duration_ms, Some(611.27));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parsed.events[0].time, Some(1_741_083_329_801_000_000));
    }

    #[test]
    fn one_bad_element_does_not_spoil_the_batch() {
        let batch = br#"[
          {"time":"2025-03-04T10:15:30.420Z","type":"platform.start","record":{"requestId":"r1"}},
          42,
          {"type":"platform.start","record":{"version":"$LATEST"}},
          {"time":"2025-03-04T10:15:30.420Z","type":"platform.somethingNew","record":{"a":1}},
          {"time":"2025-03-04T10:15:30.421Z","type":"function","record":{"level":"ERROR","message":"boom","extra":{"k":[1,2]}}}
        ]"#;
        let parsed = parse_batch(batch).unwrap();
        assert_eq!(parsed.events.len(), 3);
        assert_eq!(parsed.skipped.len(), 2);
        assert!(matches!(
            &parsed.events[1].kind,
            EventKind::Unknown { type_name, .. } if type_name == "platform.somethingNew"
        ));
        assert!(
            matches!(&parsed.events[2].kind, EventKind::Function(LogRecord::Json(m)) if m["message"] == "boom")
        );
    }

    #[test]
    fn not_an_array_is_a_batch_error() {
        assert!(parse_batch(b"{\"type\":\"function\"}").is_err());
        assert!(parse_batch(b"[1,2").is_err());
        assert!(parse_batch(b"").is_err());
        assert_eq!(parse_batch(b"[]").unwrap().events.len(), 0);
    }

    #[test]
    fn numbers_and_fields_are_lenient() {
        let ev = one(
            r#"{"time":"bad time","type":"platform.report","record":{"requestId":"r1","status":7,
               "metrics":{"durationMs":"12.5","billedDurationMs":13.0,"maxMemoryUsedMB":97.4,"memorySizeMB":"512"},
               "spans":[{"name":"extensionOverhead","start":"2025-03-04T10:15:30.981Z","durationMs":1},"junk",{"start":"x"}],
               "tracing":"not an object","newField":{"deep":true}}}"#,
        );
        assert_eq!(ev.time, None);
        let EventKind::Report(r) = ev.kind else {
            panic!("not a report")
        };
        assert_eq!(r.status.as_deref(), Some("7"));
        assert_eq!(r.metrics.duration_ms, Some(12.5));
        assert_eq!(r.metrics.billed_duration_ms, Some(13.0));
        assert_eq!(r.metrics.max_memory_used_mb, Some(97));
        assert_eq!(r.metrics.memory_size_mb, Some(512));
        assert_eq!(r.spans.len(), 1);
        assert_eq!(r.tracing, None);
    }

    #[test]
    fn log_records_as_string_or_object() {
        assert_eq!(
            one(r#"{"time":"2025-03-04T10:15:30.611Z","type":"function","record":"plain print"}"#)
                .kind,
            EventKind::Function(LogRecord::Text("plain print".into()))
        );
        assert!(matches!(
            one(r#"{"time":"2025-03-04T10:15:30.611Z","type":"extension","record":{"msg":"x"}}"#)
                .kind,
            EventKind::ExtensionLog(LogRecord::Json(_))
        ));
        assert_eq!(
            one(r#"{"type":"function","record":12}"#).kind,
            EventKind::Function(LogRecord::Text("12".into()))
        );
        assert!(parse_event(r#"{"type":"function"}"#).is_err());
    }
}
