//! Unit tests of [`Mapper`] as a whole: events in, OTLP out (the golden
//! cases in `proto-mapping/cases/` cover whole sequences; these pin single
//! rules).

use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, Metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{json, Value};

use super::*;
use crate::lambda::events::parse_event;

const T0: &str = "2025-03-04T10:15:30.000Z";
const RID1: &str = "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11";

fn mapper() -> Mapper {
    Mapper::new(Resource::default(), MapperConfig::default())
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

fn metrics_of(out: &Output) -> Vec<Metric> {
    out.metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| sm.metrics.clone())
        .collect()
}

/// `(count, sum)` of the histogram `name` in `metrics`, if exported.
fn histogram(metrics: &[Metric], name: &str) -> Option<(u64, f64)> {
    metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.first(),
            _ => None,
        })
        .map(|p| (p.count, p.sum.unwrap_or(0.0)))
}

fn gauge(metrics: &[Metric], name: &str) -> Option<i64> {
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

fn counter(metrics: &[Metric], name: &str) -> Option<i64> {
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
