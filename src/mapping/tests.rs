//! Unit tests of [`Mapper`] as a whole: events in, OTLP out (the golden
//! cases in `proto-mapping/cases/` cover whole sequences; these pin single
//! rules).

use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, Metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{json, Value};

use super::*;
use crate::lambda::events::parse_event;

const T0: &str = "2025-03-04T10:15:30.000Z";

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
