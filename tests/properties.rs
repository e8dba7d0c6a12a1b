//! Property tests of the mapping (proptest): for any order of events —
//! reordered, duplicated, with platform.start / runtimeDone / report missing
//! — and any flush points, the mapper never panics, is deterministic, never
//! emits a span id twice, keeps every span's end at or after its start, and
//! correlates every log line that names a known invocation with that
//! invocation's trace.
//!
//! `PROPTEST_CASES=5000 cargo test --test properties` runs longer.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Value};

use lambda_otel_bridge::parse_event;
use lambda_otel_bridge::TraceContext;
use lambda_otel_bridge::{build_resource as build, ResourceInfo};
use lambda_otel_bridge::{Invocation, InvokeInfo};
use lambda_otel_bridge::{Mapper, MapperSettings, Output};

/// One step of a generated sequence.
#[derive(Debug, Clone)]
enum Step {
    Invoke(usize),
    Event(Value),
    Flush,
}

fn rid(i: usize) -> String {
    format!("0000000{i}-3c2d-4f6b-9a51-0f3c9c2b7e11")
}

fn root(i: usize) -> String {
    format!("Root=1-67a1b2c{i}-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2{i};Sampled=1")
}

fn ts(ms: u64) -> String {
    lambda_otel_bridge::format_rfc3339_millis(1_741_083_330_000_000_000 + ms * 1_000_000)
}

/// The events of invocation `i`, in Lambda's order.
fn invocation_events(i: usize, xray: bool, status: &str, lines: usize) -> Vec<Value> {
    let r = rid(i);
    let base = i as u64 * 1000;
    let tracing = xray.then(|| json!({"spanId": format!("1f2e3d4c5b6a79{i:02}"), "type": "X-Amzn-Trace-Id", "value": root(i)}));
    let mut ev = vec![
        json!({"time": ts(base), "type": "platform.start", "record": {"requestId": r, "tracing": tracing}}),
    ];
    for l in 0..lines {
        ev.push(json!({"time": ts(base + 1 + l as u64), "type": "function",
            "record": format!("[INFO]\t{}\t{r}\tline {l} of {i}\n", ts(base + 1 + l as u64))}));
    }
    ev.push(json!({"time": ts(base + 100), "type": "platform.runtimeDone", "record": {"requestId": r, "status": status,
        "tracing": tracing,
        "spans": [{"name": "responseLatency", "start": ts(base), "durationMs": 90.5},
                  {"name": "runtimeOverhead", "start": ts(base + 91), "durationMs": 9.0}],
        "metrics": {"durationMs": 100.0, "producedBytes": 10}}}));
    ev.push(json!({"time": ts(base + 120), "type": "platform.report", "record": {"requestId": r, "status": status,
        "tracing": tracing,
        "metrics": {"durationMs": 120.0, "billedDurationMs": 120, "memorySizeMB": 512, "maxMemoryUsedMB": 64},
        "spans": [{"name": "extensionOverhead", "start": ts(base + 100), "durationMs": 20.0}]}}));
    ev
}

fn init_events() -> Vec<Value> {
    vec![
        json!({"time": ts(0), "type": "platform.initStart", "record": {"initializationType": "on-demand", "phase": "init", "instanceId": "env-1"}}),
        json!({"time": ts(1), "type": "function", "record": "init line"}),
        json!({"time": ts(50), "type": "platform.initRuntimeDone", "record": {"status": "success"}}),
        json!({"time": ts(51), "type": "platform.initReport", "record": {"status": "success", "metrics": {"durationMs": 51.0}}}),
    ]
}

/// A realistic sequence, then perturbed: events dropped, duplicated, moved.
fn sequences() -> impl Strategy<Value = Vec<Step>> {
    let inv = (
        any::<bool>(),
        prop_oneof!["success", "error", "timeout", "failure"],
        0usize..4,
    );
    (
        proptest::collection::vec(inv, 1..5),
        any::<bool>(),
        proptest::collection::vec((0usize..200, 0u8..4), 0..12),
    )
        .prop_map(|(invs, with_init, perturbations)| {
            let mut steps = Vec::new();
            if with_init {
                steps.extend(init_events().into_iter().map(Step::Event));
            }
            for (i, (xray, status, lines)) in invs.iter().enumerate() {
                steps.push(Step::Invoke(i));
                steps.extend(
                    invocation_events(i, *xray, status, *lines)
                        .into_iter()
                        .map(Step::Event),
                );
                steps.push(Step::Flush);
            }
            for (pos, op) in perturbations {
                if steps.is_empty() {
                    break;
                }
                let p = pos % steps.len();
                match op {
                    0 => {
                        steps.remove(p);
                    }
                    1 => {
                        let s = steps[p].clone();
                        steps.insert(p, s);
                    }
                    2 => {
                        let s = steps.remove(p);
                        let q = (pos * 7 + 3) % (steps.len() + 1);
                        steps.insert(q, s);
                    }
                    _ => steps.insert(p, Step::Flush),
                }
            }
            steps.push(Step::Flush);
            steps
        })
}

fn run(steps: &[Step]) -> Vec<Output> {
    let resource = build(&ResourceInfo {
        function_name: Some("orders-api".into()),
        instance_id: "test".into(),
        ..Default::default()
    })
    .resource;
    let mut m = Mapper::new(
        resource,
        MapperSettings {
            function_name: Some("orders-api".into()),
            ..MapperSettings::default()
        },
    );
    let mut outputs = Vec::new();
    for s in steps {
        match s {
            Step::Invoke(i) => m.on_invoke(
                &rid(*i),
                InvokeInfo {
                    deadline_ms: 0,
                    invoked_function_arn: None,
                    xray_header: None,
                },
            ),
            Step::Event(v) => {
                if let Ok(ev) = parse_event(&v.to_string()) {
                    m.ingest(ev, 1_741_083_399_000_000_000);
                }
            }
            Step::Flush => outputs.push(m.take()),
        }
    }
    outputs.push(m.take_final());
    outputs
}

fn trace_of(steps: &[Step], request_id: &str) -> Vec<u8> {
    // The invocation's ids as the mapper derives them: from the X-Ray Root
    // of its platform events when present, else from the request id.
    let tracing = steps.iter().find_map(|s| match s {
        Step::Event(v)
            if v["record"]["requestId"] == request_id && v["record"]["tracing"].is_object() =>
        {
            Some(TraceContext {
                span_id: None,
                kind: None,
                value: v["record"]["tracing"]["value"].as_str().map(str::to_owned),
            })
        }
        _ => None,
    });
    let mut inv = Invocation {
        request_id: request_id.to_owned(),
        ..Default::default()
    };
    if let Some(t) = tracing {
        inv.invoke = Some(InvokeInfo {
            deadline_ms: 0,
            invoked_function_arn: None,
            xray_header: t.value,
        });
    }
    inv.trace_ids().trace_id.to_vec()
}

/// Whether invocation `request_id`'s platform.start comes before the first
/// occurrence of the log line `body` in the sequence.
fn start_precedes(steps: &[Step], request_id: &str, body: &str) -> bool {
    let line_at = steps.iter().position(|s| match s {
        Step::Event(v) => {
            v["type"] == "function" && v["record"].as_str().is_some_and(|r| r.contains(body))
        }
        _ => false,
    });
    let start_at = steps.iter().position(|s| match s {
        Step::Event(v) => v["type"] == "platform.start" && v["record"]["requestId"] == request_id,
        _ => false,
    });
    matches!((start_at, line_at), (Some(s), Some(l)) if s < l)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mapping_invariants(steps in sequences()) {
        let a = run(&steps);
        let b = run(&steps);
        prop_assert_eq!(&a, &b, "deterministic");

        let mut span_ids = HashSet::new();
        for out in &a {
            for rs in out.traces.iter().flat_map(|t| &t.resource_spans) {
                for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                    prop_assert!(span.end_time_unix_nano >= span.start_time_unix_nano, "{:?}", span);
                    prop_assert_eq!(span.trace_id.len(), 16);
                    prop_assert_eq!(span.span_id.len(), 8);
                    prop_assert!(
                        span_ids.insert((span.trace_id.clone(), span.span_id.clone())),
                        "span id emitted twice: {}", span.name
                    );
                }
            }
            for rl in out.logs.iter().flat_map(|l| &l.resource_logs) {
                for rec in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                    let named = rec.attributes.iter().find(|a| a.key == "faas.invocation_id");
                    if let Some(kv) = named {
                        prop_assert!(matches!(
                            kv.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(_))
                        ));
                        prop_assert_eq!(rec.span_id.len(), 8);
                        prop_assert_eq!(rec.trace_id.len(), 16);
                    }
                    if let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(body)) =
                        rec.body.as_ref().and_then(|b| b.value.as_ref())
                    {
                        if let Some(i) = body.strip_prefix("line ").and_then(|s| s.split(" of ").nth(1)) {
                            // A line naming its invocation always carries it,
                            // and when its platform.start came before it (the
                            // order of Lambda's stream) the invocation's trace.
                            let expected = rid(i.parse().unwrap());
                            prop_assert!(named.is_some(), "{} lost its invocation", body);
                            if start_precedes(&steps, &expected, body) {
                                prop_assert_eq!(&rec.trace_id, &trace_of(&steps, &expected));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Times at the end of the u64-nanosecond range (2554) and durations far
/// past it: the mapper neither overflows (debug builds check) nor emits a
/// span ending before it starts. The fuzzer found the overflow.
#[test]
fn times_and_durations_at_the_end_of_the_range() {
    let durations = [0.0, 1.0, 1e9, 1e15, 1e300, f64::MAX];
    let times = [
        "2554-07-21T23:34:33.000Z",
        "2554-07-21T23:34:33.709Z",
        "2025-03-04T10:16:39.000Z",
    ];
    for t in times {
        for d in durations {
            let steps: Vec<Step> = [
                json!({"time": t, "type": "platform.initStart",
                       "record": {"initializationType": "on-demand", "phase": "init"}}),
                json!({"time": t, "type": "platform.initReport",
                       "record": {"initializationType": "on-demand", "phase": "init",
                                  "status": "success", "metrics": {"durationMs": d}}}),
                json!({"time": t, "type": "platform.start", "record": {"requestId": rid(1)}}),
                json!({"time": t, "type": "platform.report",
                       "record": {"requestId": rid(1), "status": "success",
                                  "metrics": {"durationMs": d, "billedDurationMs": 1,
                                              "memorySizeMB": 128, "maxMemoryUsedMB": 60},
                                  "spans": [{"name": "responseLatency", "start": t, "durationMs": d}]}}),
            ]
            .into_iter()
            .map(Step::Event)
            .collect();
            let out = run(&steps);
            let spans: Vec<_> = out
                .iter()
                .flat_map(|o| &o.traces)
                .flat_map(|t| &t.resource_spans)
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|s| &s.spans)
                .collect();
            assert!(spans.len() >= 3, "{t} {d}: {} spans", spans.len());
            for s in spans {
                assert!(
                    s.end_time_unix_nano >= s.start_time_unix_nano,
                    "{t} {d}: {s:?}"
                );
            }
        }
    }
}
