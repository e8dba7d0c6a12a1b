//! Runs the real `lambda-otel-bridge` binary in an emulated Lambda sandbox,
//! drives a realistic workload through it, and prints what arrived over OTLP.
//!
//! ```sh
//! cargo build --release && cargo run --release --example local-lambda
//! ```
//!
//! By default the telemetry goes to an OTLP receiver embedded in this
//! program, which prints it. With `OTEL_EXPORTER_OTLP_ENDPOINT` set (and
//! optionally `OTEL_EXPORTER_OTLP_PROTOCOL`), it goes to that collector
//! instead (for example rotel or an OpenTelemetry Collector).

#[path = "../tests/support/emulator/mod.rs"]
mod emulator;
#[path = "../tests/support/otlp.rs"]
mod otlp;

use std::collections::BTreeMap;
use std::time::Duration;

use emulator::{extension_binary, new_request_id, Emulator, EmulatorOptions, InvokeSpec};
use mock_collector::{MockServer, Protocol};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use otlp::hex;
use serde_json::json;

const TS: &str = "2025-03-04T10:15:30.610Z";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binary = extension_binary();
    if !binary.exists() {
        eprintln!(
            "{} not found: run `cargo build --release` first",
            binary.display()
        );
        std::process::exit(1);
    }
    let external = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    let embedded = match external {
        Some(_) => None,
        None => Some(
            MockServer::builder()
                .protocol(Protocol::HttpBinary)
                .port(0)
                .start()
                .await
                .expect("embedded OTLP receiver starts"),
        ),
    };
    let mut env = vec![(
        "LAMBDA_OTEL_BRIDGE_LOG_LEVEL".to_string(),
        "info".to_string(),
    )];
    match (&external, &embedded) {
        (Some(endpoint), _) => {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone()));
            if let Ok(p) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
                env.push(("OTEL_EXPORTER_OTLP_PROTOCOL".into(), p));
            }
            println!("sending telemetry to {endpoint}");
        }
        (None, Some(server)) => {
            env.push((
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://{}", server.addr()),
            ));
            println!("embedded OTLP receiver on http://{}", server.addr());
        }
        (None, None) => unreachable!("one of the two is set"),
    }

    let emu = Emulator::start(
        &binary,
        "lambda-otel-bridge",
        EmulatorOptions {
            function_name: "orders-api".into(),
            extra_env: env,
            echo_output: true,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let init = emu
        .init(
            vec![json!(format!(
                "{TS}\tundefined\tINFO\tloading configuration"
            ))],
            Duration::from_secs(10),
        )
        .await
        .expect("the extension initialises");
    println!(
        "init: registered after {:?}, first /next after {:?}",
        init.registered_at, init.first_next_at
    );

    let workload: Vec<(&str, InvokeSpec)> = vec![
        ("cold start, Python logs, X-Ray traced", {
            let rid = new_request_id();
            InvokeSpec {
                trace_header: Some(
                    "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1"
                        .into(),
                ),
                logs: vec![
                    json!(format!("[INFO]\t{TS}\t{rid}\tcreated order 4711\n")),
                    json!(format!("[WARNING]\t{TS}\t{rid}\tstock low for sku 42\n")),
                ],
                request_id: rid,
                handler_duration: Duration::from_millis(40),
                ..InvokeSpec::default()
            }
        }),
        ("warm, Node.js logs", {
            let rid = new_request_id();
            InvokeSpec {
                logs: vec![json!(format!("{TS}\t{rid}\tINFO\tprocessing batch of 3"))],
                request_id: rid,
                ..InvokeSpec::default()
            }
        }),
        ("warm, JSON log format", {
            let rid = new_request_id();
            InvokeSpec {
                logs: vec![
                    json!({"timestamp": TS, "level": "DEBUG", "message": "cache hit", "requestId": rid, "key": "user:7"}),
                ],
                request_id: rid,
                ..InvokeSpec::default()
            }
        }),
        ("error with a stack trace", {
            let rid = new_request_id();
            InvokeSpec {
                logs: vec![json!(format!(
                    "{TS}\t{rid}\tERROR\tInvoke Error \tTypeError: cannot read property 'id'\n    at handler (/var/task/index.js:12:7)"
                ))],
                request_id: rid,
                status: "error".into(),
                error_type: Some("TypeError".into()),
                ..InvokeSpec::default()
            }
        }),
        ("timeout, plain print output", {
            InvokeSpec {
                logs: vec![json!("still waiting on the payment service...")],
                status: "timeout".into(),
                handler_duration: Duration::from_millis(60),
                ..InvokeSpec::default()
            }
        }),
    ];
    let total = workload.len();
    for (i, (label, spec)) in workload.into_iter().enumerate() {
        let o = emu.invoke(spec).await.expect("invocation completes");
        println!(
            "[{}/{total}] {label}: extension called /next {:?} after runtimeDone",
            i + 1,
            o.post_runtime.unwrap_or_default()
        );
    }
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    println!(
        "shutdown: exited by itself = {}, exit code {:?}, after {:?}",
        out.exited_by_itself, out.exit_code, out.elapsed
    );

    let Some(server) = embedded else {
        println!("telemetry was sent to the external collector; look there.");
        return;
    };
    let _ = server
        .wait_until(|c| c.log_count() >= 7, Duration::from_secs(3))
        .await;
    let (logs, spans, metrics): (Vec<_>, Vec<_>, Vec<_>) = server
        .with_collector(|c| {
            (
                c.logs().iter().map(|l| l.log_record().clone()).collect(),
                c.spans().iter().map(|s| s.span().clone()).collect(),
                c.metrics().iter().map(|m| m.metric().clone()).collect(),
            )
        })
        .await;
    print_traces(&spans);
    print_metrics(&metrics);
    println!("\n== logs ({}), by trace", logs.len());
    let mut by_trace: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in &logs {
        by_trace.entry(hex(&r.trace_id)).or_default().push(r);
    }
    for (trace, records) in by_trace {
        println!(
            "trace {}",
            if trace.is_empty() {
                "(none)".into()
            } else {
                trace
            }
        );
        for r in records {
            let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(AV::StringValue(s)) => s.replace('\n', "\n      "),
                other => format!("{other:?}"),
            };
            let sev = if r.severity_text.is_empty() {
                "-"
            } else {
                r.severity_text.as_str()
            };
            println!("  span {} [{sev:>7}] {body}", hex(&r.span_id));
        }
    }
}

fn print_traces(spans: &[opentelemetry_proto::tonic::trace::v1::Span]) {
    println!("\n== traces ({} spans)", spans.len());
    let mut by_trace: BTreeMap<Vec<u8>, Vec<_>> = BTreeMap::new();
    for s in spans {
        by_trace.entry(s.trace_id.clone()).or_default().push(s);
    }
    for (trace, members) in by_trace {
        println!("trace {}", hex(&trace));
        let ids: Vec<&Vec<u8>> = members.iter().map(|s| &s.span_id).collect();
        let mut roots: Vec<_> = members
            .iter()
            .filter(|s| !ids.contains(&&s.parent_span_id))
            .collect();
        roots.sort_by_key(|s| s.start_time_unix_nano);
        for r in roots {
            print_span(r, &members, 1);
        }
    }
}

fn print_span(
    s: &opentelemetry_proto::tonic::trace::v1::Span,
    all: &[&opentelemetry_proto::tonic::trace::v1::Span],
    depth: usize,
) {
    let ms = (s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano)) as f64 / 1e6;
    let status = match s.status.as_ref() {
        Some(st) if st.code == 2 => format!(" ERROR({})", st.message),
        _ => String::new(),
    };
    println!("{}{} {ms:.3} ms{status}", "  ".repeat(depth), s.name);
    let mut children: Vec<_> = all
        .iter()
        .filter(|c| c.parent_span_id == s.span_id)
        .collect();
    children.sort_by_key(|c| c.start_time_unix_nano);
    for c in children {
        print_span(c, all, depth + 1);
    }
}

fn numbers(points: &[opentelemetry_proto::tonic::metrics::v1::NumberDataPoint]) -> String {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    points
        .iter()
        .map(|p| match p.value {
            Some(Value::AsInt(i)) => i.to_string(),
            Some(Value::AsDouble(d)) => d.to_string(),
            None => "-".into(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn print_metrics(metrics: &[opentelemetry_proto::tonic::metrics::v1::Metric]) {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    println!("\n== metrics ({} points)", metrics.len());
    let mut latest: BTreeMap<&str, String> = BTreeMap::new();
    for m in metrics {
        let v = match &m.data {
            Some(Data::Sum(s)) => numbers(&s.data_points),
            Some(Data::Gauge(g)) => numbers(&g.data_points),
            Some(Data::Histogram(h)) => h
                .data_points
                .iter()
                .map(|p| {
                    format!(
                        "count={} sum={:.4} min={:.4} max={:.4}",
                        p.count,
                        p.sum.unwrap_or(0.0),
                        p.min.unwrap_or(0.0),
                        p.max.unwrap_or(0.0)
                    )
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => "?".into(),
        };
        latest.insert(&m.name, format!("{v} {}", m.unit));
    }
    for (name, v) in latest {
        println!("  {name:<34} {v}");
    }
}
