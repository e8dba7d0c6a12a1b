//! Unit tests of [`Mapper`] as a whole: events in, OTLP out (the golden
//! cases in `proto-mapping/cases/` cover whole sequences; these pin single
//! rules).

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, Metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{json, Value};

use super::xray::to_hex;
use super::*;
use crate::lambda::events::parse_event;

const T0: &str = "2025-03-04T10:15:30.000Z";
const RID1: &str = "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11";
const RID2: &str = "2b7c4e9a-5d1f-4a3b-8c6e-7f9a0b1c2d3e";
/// An id the application logs itself (API Gateway's request id).
const APP_ID: &str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef";
const ROOT1: &str = "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1";
const ROOT2: &str = "Root=1-67a1b2c4-0123456789abcdef01234567;Parent=9a8b7c6d5e4f3a2c;Sampled=1";

fn mapper() -> Mapper {
    Mapper::new(Resource::default(), MapperSettings::default())
}

fn ingest(m: &mut Mapper, events: &[Value]) {
    for e in events {
        m.ingest(parse_event(&e.to_string()).expect("valid event"), 1);
    }
}

fn event(kind: &str, record: Value) -> Value {
    json!({"time": T0, "type": kind, "record": record})
}

fn start(rid: &str) -> Value {
    event("platform.start", json!({"requestId": rid}))
}

/// `platform.start` with X-Ray context: trace id from `root`, span id `span`.
fn start_traced(rid: &str, root: &str, span: &str) -> Value {
    event(
        "platform.start",
        json!({"requestId": rid, "tracing": {"spanId": span, "type": "X-Amzn-Trace-Id", "value": root}}),
    )
}

fn function(record: Value) -> Value {
    event("function", record)
}

fn runtime_done(rid: &str, metrics: Option<Value>) -> Value {
    let mut r = json!({"requestId": rid, "status": "success"});
    if let Some(m) = metrics {
        r["metrics"] = m;
    }
    event("platform.runtimeDone", r)
}

fn report(rid: &str, metrics: Value) -> Value {
    event(
        "platform.report",
        json!({"requestId": rid, "status": "success", "metrics": metrics}),
    )
}

pub(super) fn metrics_of(out: &Output) -> Vec<Metric> {
    out.metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| sm.metrics.clone())
        .collect()
}

fn logs_of(out: &Output) -> Vec<OtlpLogRecord> {
    out.logs
        .iter()
        .flat_map(|l| &l.resource_logs)
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| sl.log_records.clone())
        .collect()
}

/// `(count, sum)` of the histogram `name` in `metrics`, if exported.
pub(super) fn histogram(metrics: &[Metric], name: &str) -> Option<(u64, f64)> {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.first(),
            _ => None,
        })
        .map(|p| (p.count, p.sum.unwrap_or(0.0)))
}

pub(super) fn gauge(metrics: &[Metric], name: &str) -> Option<i64> {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.first(),
            _ => None,
        })
        .and_then(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        })
}

pub(super) fn counter(metrics: &[Metric], name: &str) -> Option<i64> {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.first(),
            _ => None,
        })
        .and_then(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        })
}

fn attr<'a>(r: &'a OtlpLogRecord, key: &str) -> Option<&'a AV> {
    r.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn str_attr<'a>(r: &'a OtlpLogRecord, key: &str) -> Option<&'a str> {
    match attr(r, key) {
        Some(AV::StringValue(s)) => Some(s),
        _ => None,
    }
}

#[test]
fn absurd_memory_size_saturates_instead_of_wrapping() {
    let mut m = mapper();
    ingest(
        &mut m,
        &[
            start("r1"),
            runtime_done("r1", Some(json!({"durationMs": 5.0}))),
            // 2^64 - 1: read as u64::MAX, which `as i64` made -1 (-1 MiB).
            report(
                "r1",
                json!({"durationMs": 6.0, "memorySizeMB": 18446744073709551615u64}),
            ),
        ],
    );
    let metrics = metrics_of(&m.take());
    assert_eq!(gauge(&metrics, "aws.lambda.memory_size"), Some(i64::MAX));
}

/// A Node function in Text format whose logger (pino) writes raw JSON lines
/// with API Gateway's request id under `requestId`; in the JSON format an
/// object record with the same key. The id names no invocation: the lines
/// belong to the invocation the stream puts them in, leave at the first
/// flush, and keep the application's id as an attribute.
#[test]
fn an_application_request_id_does_not_attribute_a_line() {
    let mut m = mapper();
    m.on_invoke(RID1, InvokeInfo::default());
    ingest(
        &mut m,
        &[
            start_traced(RID1, ROOT1, "1f2e3d4c5b6a7980"),
            function(json!(format!(
                r#"{{"level":30,"time":1741083330000,"requestId":"{APP_ID}","msg":"GET /orders"}}"#
            ))),
            function(json!({"level": "INFO", "message": "object form", "AWSRequestId": APP_ID})),
            runtime_done(RID1, Some(json!({"durationMs": 5.0}))),
        ],
    );
    let logs = logs_of(&m.take());
    assert_eq!(
        logs.len(),
        2,
        "exported at the flush before /next, not held"
    );
    assert_eq!(m.pending(), 0);
    for (r, key) in logs.iter().zip(["requestId", "AWSRequestId"]) {
        assert_eq!(str_attr(r, "faas.invocation_id"), Some(RID1), "{r:?}");
        assert_eq!(to_hex(&r.trace_id), "67a1b2c34d5e6f708192a3b4c5d6e7f8");
        assert_eq!(to_hex(&r.span_id), "1f2e3d4c5b6a7980");
        assert_eq!(str_attr(r, key), Some(APP_ID), "{r:?}");
    }
    assert_eq!(
        (logs[0].severity_number, logs[0].severity_text.as_str()),
        (9, "30")
    );
}

/// An id the table knows attributes the record, also a late line of an
/// invocation already completed and forgotten; the key then does not repeat
/// `faas.invocation_id`.
#[test]
fn a_known_request_id_attributes_a_line() {
    let mut m = mapper();
    m.on_invoke(RID1, InvokeInfo::default());
    ingest(
        &mut m,
        &[
            start_traced(RID1, ROOT1, "1f2e3d4c5b6a7980"),
            runtime_done(RID1, Some(json!({"durationMs": 5.0}))),
        ],
    );
    m.take();
    m.on_invoke(RID2, InvokeInfo::default());
    ingest(
        &mut m,
        &[
            report(RID1, json!({"durationMs": 6.0})),
            start_traced(RID2, ROOT2, "1f2e3d4c5b6a7981"),
        ],
    );
    m.take();
    assert!(m.invocations.is_retired(RID1));
    ingest(
        &mut m,
        &[
            function(json!({"level": "INFO", "message": "late", "requestId": RID1})),
            function(json!({"level": "INFO", "message": "current", "AWSRequestId": RID2})),
            runtime_done(RID2, Some(json!({"durationMs": 5.0}))),
        ],
    );
    let logs = logs_of(&m.take());
    assert_eq!(logs.len(), 2);
    assert_eq!(str_attr(&logs[0], "faas.invocation_id"), Some(RID1));
    assert_eq!(
        to_hex(&logs[0].trace_id),
        "67a1b2c34d5e6f708192a3b4c5d6e7f8"
    );
    assert_eq!(to_hex(&logs[0].span_id), "1f2e3d4c5b6a7980");
    assert_eq!(str_attr(&logs[1], "faas.invocation_id"), Some(RID2));
    assert_eq!(
        to_hex(&logs[1].trace_id),
        "67a1b2c40123456789abcdef01234567"
    );
    for r in &logs {
        assert_eq!(attr(r, "requestId"), None, "{r:?}");
        assert_eq!(attr(r, "AWSRequestId"), None, "{r:?}");
    }
}

/// The runtime's text prefix is trusted even for an id not seen yet: the
/// line waits for its `platform.start` (a re-ordered batch) and then gets
/// that invocation's context.
#[test]
fn a_prefix_request_id_attributes_a_line_before_its_start() {
    let mut m = mapper();
    ingest(
        &mut m,
        &[
            start(RID1),
            runtime_done(RID1, None),
            function(json!(format!("[INFO]\t{T0}\t{RID2}\tearly line\n"))),
        ],
    );
    assert!(logs_of(&m.take()).is_empty());
    assert_eq!(m.pending(), 1);
    ingest(&mut m, &[start_traced(RID2, ROOT2, "1f2e3d4c5b6a7981")]);
    let logs = logs_of(&m.take());
    assert_eq!(logs.len(), 1);
    assert_eq!(str_attr(&logs[0], "faas.invocation_id"), Some(RID2));
    assert_eq!(
        to_hex(&logs[0].trace_id),
        "67a1b2c40123456789abcdef01234567"
    );
}

/// Managed Instances: invocations overlap, so a JSON record's own
/// `requestId` is all that places it, even before its `platform.start`.
#[test]
fn on_managed_instances_a_json_request_id_attributes_a_line_before_its_start() {
    let mut m = mapper();
    ingest(
        &mut m,
        &[
            event(
                "platform.initStart",
                json!({"initializationType": "lambda-managed-instances", "phase": "init"}),
            ),
            start(RID1),
            function(
                json!({"timestamp": T0, "level": "INFO", "requestId": RID2, "message": "early"}),
            ),
        ],
    );
    assert!(logs_of(&m.take()).is_empty());
    ingest(&mut m, &[start_traced(RID2, ROOT2, "1f2e3d4c5b6a7981")]);
    let logs = logs_of(&m.take());
    assert_eq!(logs.len(), 1);
    assert_eq!(str_attr(&logs[0], "faas.invocation_id"), Some(RID2));
    assert_eq!(
        to_hex(&logs[0].trace_id),
        "67a1b2c40123456789abcdef01234567"
    );
}

/// `faas.invoke_duration` and the outcome counter, once per invocation:
/// from runtimeDone's metrics, else the report's `durationMs` (older
/// runtimeDone payloads have no metrics), whatever order the two arrive in.
#[test]
fn invoke_duration_once_per_invocation() {
    let cases = [
        (
            "runtimeDone without metrics",
            vec![
                start(RID1),
                runtime_done(RID1, None),
                report(RID1, json!({"durationMs": 581.66})),
            ],
            0.58166,
        ),
        (
            "runtimeDone with metrics",
            vec![
                start(RID1),
                runtime_done(RID1, Some(json!({"durationMs": 560.94}))),
                report(RID1, json!({"durationMs": 581.66})),
            ],
            0.56094,
        ),
        (
            "report before runtimeDone",
            vec![
                start(RID1),
                report(RID1, json!({"durationMs": 581.66})),
                runtime_done(RID1, Some(json!({"durationMs": 560.94}))),
            ],
            0.58166,
        ),
        (
            "no runtimeDone",
            vec![start(RID1), report(RID1, json!({"durationMs": 581.66}))],
            0.58166,
        ),
    ];
    for (name, events, seconds) in cases {
        let mut m = mapper();
        ingest(&mut m, &events);
        let metrics = metrics_of(&m.take());
        let (count, sum) = histogram(&metrics, "faas.invoke_duration")
            .unwrap_or_else(|| panic!("{name}: no faas.invoke_duration"));
        assert_eq!(count, 1, "{name}");
        assert!((sum - seconds).abs() < 1e-9, "{name}: {sum}");
        assert_eq!(counter(&metrics, "faas.invocations"), Some(1), "{name}");
        let (count, _) = histogram(&metrics, "aws.lambda.duration").expect("report duration");
        assert_eq!(count, 1, "{name}");
    }
}

#[test]
fn records_below_the_minimum_severity_are_dropped_and_counted_where_the_bridge_counts() {
    let counters = Arc::new(Counters::default());
    let mut m = Mapper::new(
        Resource::default(),
        MapperSettings {
            logs_min_severity: 13, // WARN
            ..MapperSettings::default()
        },
    )
    .count_into(counters.clone());
    ingest(
        &mut m,
        &[
            start(RID1),
            function(
                json!({"timestamp": T0, "level": "INFO", "requestId": RID1, "message": "quiet"}),
            ),
            function(
                json!({"timestamp": T0, "level": "ERROR", "requestId": RID1, "message": "loud"}),
            ),
            function(
                json!({"timestamp": T0, "level": "DEBUG", "requestId": RID1, "message": "quieter"}),
            ),
            event("extension", json!("no level at all")),
        ],
    );
    let logs = logs_of(&m.take());
    let bodies: Vec<_> = logs
        .iter()
        .map(|r| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(AV::StringValue(s)) => s.as_str(),
            other => panic!("not a string body: {other:?}"),
        })
        .collect();
    // Unknown severity is kept; INFO and DEBUG are not.
    assert_eq!(bodies, ["loud", "no level at all"]);
    assert_eq!(counters.get(crate::counters::Count::FilteredLogs), 2);
}
