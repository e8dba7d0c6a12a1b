//! Prints what the embedded OTLP receiver got: the resource once, the traces
//! in invocation order with their labels and every span's id, the metrics
//! with a line on the values that surprise, and the log records under the
//! trace and span they link to (so the links can be checked by eye).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Metric, NumberDataPoint,
};
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::function::COUNTER;
use crate::otlp::{attr_str, hex};

/// One invocation of the run, in order.
pub struct Step {
    pub label: String,
    pub request_id: String,
    pub status: String,
}

/// Everything the receiver got, with each item's resource attributes.
pub struct Received {
    pub spans: Vec<(Vec<KeyValue>, Span)>,
    pub logs: Vec<(Vec<KeyValue>, LogRecord)>,
    pub metrics: Vec<Metric>,
}

/// Prints the four sections.
pub fn print(received: &Received, steps: &[Step], function_spans: &[Vec<u8>]) {
    print_resources(received, function_spans);
    let order = trace_order(&received.spans, steps);
    print_traces(&received.spans, &order, function_spans);
    print_metrics(&received.metrics, steps);
    print_logs(received, &order);
}

fn any_text(v: &AnyValue) -> String {
    match &v.value {
        Some(AV::StringValue(s)) => s.clone(),
        Some(AV::IntValue(i)) => i.to_string(),
        Some(AV::DoubleValue(d)) => d.to_string(),
        Some(AV::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().map(any_text).unwrap_or_default();
            (kv.key.clone(), value)
        })
        .collect()
}

fn print_resources(received: &Received, function_spans: &[Vec<u8>]) {
    let bridge = received
        .spans
        .iter()
        .find(|(_, s)| attr_str(&s.attributes, "faas.invocation_id").is_some())
        .map(|(r, _)| attributes(r))
        .unwrap_or_default();
    println!("\n== resource (the same on every span, metric point and log record of the bridge)");
    for (key, value) in &bridge {
        println!("  {key}={value}");
    }
    let function = received
        .spans
        .iter()
        .find(|(_, s)| function_spans.contains(&s.span_id))
        .map(|(r, _)| attributes(r));
    if let Some(function) = function {
        let own: Vec<String> = function
            .iter()
            .filter(|(k, v)| bridge.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "  the function's own data keeps its resource, with the faas.* / cloud.* attributes it lacked added by the bridge; it differs in: {}",
            own.join(", ")
        );
    }
}

/// Trace ids in invocation order, each with its label; traces of no
/// invocation last.
fn trace_order(spans: &[(Vec<KeyValue>, Span)], steps: &[Step]) -> Vec<(String, Vec<u8>)> {
    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let label = format!("[{}/{}] {}", i + 1, steps.len(), step.label);
        let ids: BTreeSet<&Vec<u8>> = spans
            .iter()
            .filter(|(_, s)| {
                attr_str(&s.attributes, "faas.invocation_id") == Some(&step.request_id)
            })
            .map(|(_, s)| &s.trace_id)
            .collect();
        for id in ids {
            order.push((label.clone(), id.clone()));
        }
    }
    let mut others: Vec<Vec<u8>> = spans
        .iter()
        .map(|(_, s)| s.trace_id.clone())
        .filter(|id| !order.iter().any(|(_, known)| known == id))
        .collect();
    others.sort();
    others.dedup();
    order.extend(others.into_iter().map(|id| ("(no invocation)".into(), id)));
    order
}

fn print_traces(
    spans: &[(Vec<KeyValue>, Span)],
    order: &[(String, Vec<u8>)],
    function: &[Vec<u8>],
) {
    println!(
        "\n== traces ({} spans), in invocation order; each span with its id",
        spans.len()
    );
    for (label, trace) in order {
        println!("{label}\n  trace {}", hex(trace));
        let members: Vec<&Span> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| &s.trace_id == trace)
            .collect();
        let ids: Vec<&Vec<u8>> = members.iter().map(|s| &s.span_id).collect();
        let mut roots: Vec<&Span> = members
            .iter()
            .copied()
            .filter(|s| !ids.contains(&&s.parent_span_id))
            .collect();
        roots.sort_by_key(|s| s.start_time_unix_nano);
        for root in roots {
            print_span(root, &members, function, 2);
        }
    }
}

fn print_span(s: &Span, all: &[&Span], function: &[Vec<u8>], depth: usize) {
    let ms = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
    let status = match s.status.as_ref() {
        Some(st) if st.code == 2 => format!(" ERROR({})", st.message),
        _ => String::new(),
    };
    let from = if function.contains(&s.span_id) {
        "  <- the function's own span, via the bridge's receiver"
    } else {
        ""
    };
    let name = format!("{}{}", "  ".repeat(depth), s.name);
    println!(
        "{name:<26} {ms:>8.3} ms  span {}{status}{from}",
        hex(&s.span_id)
    );
    let mut children: Vec<&Span> = all
        .iter()
        .copied()
        .filter(|c| c.parent_span_id == s.span_id)
        .collect();
    children.sort_by_key(|c| c.start_time_unix_nano);
    for c in children {
        print_span(c, all, function, depth + 1);
    }
}

/// One series' value: a number, or a histogram's count, sum, min and max.
#[derive(Clone, Copy)]
enum Value {
    Number(f64),
    Histogram {
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
    },
}

impl Value {
    fn add(self, other: Value) -> Value {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => Value::Number(a + b),
            (
                Value::Histogram {
                    count: c1,
                    sum: s1,
                    min: lo1,
                    max: hi1,
                },
                Value::Histogram {
                    count: c2,
                    sum: s2,
                    min: lo2,
                    max: hi2,
                },
            ) => Value::Histogram {
                count: c1 + c2,
                sum: s1 + s2,
                min: lo1.min(lo2),
                max: hi1.max(hi2),
            },
            (_, b) => b,
        }
    }

    fn text(self) -> String {
        match self {
            Value::Number(n) => number(n),
            Value::Histogram {
                count,
                sum,
                min,
                max,
            } => format!(
                "count={count} sum={} min={} max={}",
                number(sum),
                number(min),
                number(max)
            ),
        }
    }

    fn number(self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(n),
            Value::Histogram { .. } => None,
        }
    }
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        format!("{n:.4}")
    }
}

/// `AggregationTemporality::Delta`.
const DELTA: i32 = 1;

/// (attributes, time, value) of each point.
fn number_points(points: &[NumberDataPoint]) -> Vec<(String, u64, Value)> {
    points
        .iter()
        .map(|p| {
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                Some(number_data_point::Value::AsDouble(d)) => d,
                None => 0.0,
            };
            (
                format!("{:?}", p.attributes),
                p.time_unix_nano,
                Value::Number(v),
            )
        })
        .collect()
}

/// Per metric name: the total over its series at the end of the run
/// (cumulative series: the last point; delta series: the sum of points).
fn totals(metrics: &[Metric]) -> BTreeMap<String, (Value, String)> {
    // (name, attributes) → (time, value)
    let mut series: BTreeMap<(String, String), (u64, Value)> = BTreeMap::new();
    for m in metrics {
        let (delta, points): (bool, Vec<(String, u64, Value)>) = match &m.data {
            Some(Data::Sum(s)) => (
                s.aggregation_temporality == DELTA,
                number_points(&s.data_points),
            ),
            Some(Data::Gauge(g)) => (false, number_points(&g.data_points)),
            Some(Data::Histogram(h)) => (
                h.aggregation_temporality == DELTA,
                h.data_points
                    .iter()
                    .map(|p| {
                        let v = Value::Histogram {
                            count: p.count,
                            sum: p.sum.unwrap_or(0.0),
                            min: p.min.unwrap_or(0.0),
                            max: p.max.unwrap_or(0.0),
                        };
                        (format!("{:?}", p.attributes), p.time_unix_nano, v)
                    })
                    .collect(),
            ),
            _ => continue,
        };
        for (attrs, time, value) in points {
            match series.entry((m.name.clone(), attrs)) {
                Entry::Vacant(e) => {
                    e.insert((time, value));
                }
                Entry::Occupied(mut e) => {
                    let slot = e.get_mut();
                    if delta {
                        *slot = (slot.0.max(time), slot.1.add(value));
                    } else if time >= slot.0 {
                        *slot = (time, value);
                    }
                }
            }
        }
    }
    let units: BTreeMap<&str, &str> = metrics
        .iter()
        .map(|m| (m.name.as_str(), m.unit.as_str()))
        .collect();
    let mut out: BTreeMap<String, (Value, String)> = BTreeMap::new();
    for ((name, _), (_, value)) in series {
        let unit = units
            .get(name.as_str())
            .copied()
            .unwrap_or_default()
            .to_string();
        out.entry(name)
            .and_modify(|(v, _)| *v = v.add(value))
            .or_insert((value, unit));
    }
    out
}

fn print_metrics(metrics: &[Metric], steps: &[Step]) {
    let totals = totals(metrics);
    println!(
        "\n== metrics ({} points received; each metric's total at the end of the run)",
        metrics.len()
    );
    for (name, (value, unit)) in &totals {
        println!("  {name:<34} {} {unit}", value.text());
    }
    let get = |name: &str| totals.get(name).and_then(|(v, _)| v.number());
    let count = |status: &str| steps.iter().filter(|s| s.status == status).count();
    println!("what the values mean:");
    if let Some(n) = get("faas.invocations") {
        println!(
            "  faas.invocations {} after {} invocations: it counts successes only (semantic conventions); {} failed (faas.errors {}) and {} timed out (faas.timeouts {})",
            number(n),
            steps.len(),
            count("error") + count("failure"),
            get("faas.errors").map(number).unwrap_or("-".into()),
            count("timeout"),
            get("faas.timeouts").map(number).unwrap_or("-".into()),
        );
    }
    if totals.contains_key("faas.mem_usage") {
        println!("  faas.mem_usage and the durations are histograms of one value per invocation: read count and max; a sum of memory figures means nothing");
    }
    if totals.contains_key("faas.invoke_duration") && totals.contains_key("aws.lambda.duration") {
        println!("  faas.invoke_duration (runtimeDone: the handler) is shorter than aws.lambda.duration (the report: it includes the extension's time after the handler)");
    }
    if totals.contains_key(COUNTER) {
        println!("  {COUNTER} is the function's own counter, sent to the bridge's receiver and forwarded as received");
    }
    if totals.keys().any(|n| n.starts_with("lambda_otel_bridge.")) {
        println!("  lambda_otel_bridge.* are the bridge's own metrics about its exports (README, \"Flush policy and delivery\")");
    }
}

fn print_logs(received: &Received, order: &[(String, Vec<u8>)]) {
    let names: BTreeMap<&Vec<u8>, &str> = received
        .spans
        .iter()
        .map(|(_, s)| (&s.span_id, s.name.as_str()))
        .collect();
    println!(
        "\n== logs ({} records), under the trace and span they link to",
        received.logs.len()
    );
    let mut groups: Vec<(String, Vec<u8>)> = order.to_vec();
    for (_, r) in &received.logs {
        if !groups.iter().any(|(_, t)| t == &r.trace_id) {
            let label = if r.trace_id.is_empty() {
                "(no trace)".to_string()
            } else {
                "(no invocation)".to_string()
            };
            groups.push((label, r.trace_id.clone()));
        }
    }
    for (label, trace) in groups {
        let mut records: Vec<&LogRecord> = received
            .logs
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.trace_id == trace)
            .collect();
        records.sort_by_key(|r| match r.time_unix_nano {
            0 => r.observed_time_unix_nano,
            t => t,
        });
        if records.is_empty() {
            continue;
        }
        if trace.is_empty() {
            println!("{label}");
        } else {
            println!("{label}\n  trace {}", hex(&trace));
        }
        for r in records {
            let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(AV::StringValue(s)) => s.replace('\n', "\n      "),
                other => format!("{other:?}"),
            };
            let severity = if r.severity_text.is_empty() {
                "-"
            } else {
                r.severity_text.as_str()
            };
            let span = if r.span_id.is_empty() {
                "-".to_string()
            } else {
                let name = names.get(&r.span_id).copied().unwrap_or("?");
                format!("{} ({name})", hex(&r.span_id))
            };
            println!("    span {span:<36} [{severity:>7}] {body}");
        }
    }
}
