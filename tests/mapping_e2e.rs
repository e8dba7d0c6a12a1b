//! End to end through the real binary: the emulated Lambda platform drives a
//! cold start and warm invocations (X-Ray traced, errors, a timeout, logs in
//! several runtime formats) with freezes in between, and the OTLP receiver
//! must show the traces, the correlated logs and every metric; lines whose
//! logger writes its own request id stay with their invocation.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use mock_collector::{MockServer, Protocol, ServerHandle};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, Metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use std::time::SystemTime;
use support::common::{body, env, otlp_env, spin_down, start_with};
use support::emulator::{
    new_request_id, span_id_for, unix_ms, Emulator, EmulatorOptions, InvokeSpec,
};
use support::fault_collector::FaultCollector;
use support::otlp::{attr, attr_str, hex};
use support::rotel::Rotel;

const ROOT: &str = "67a1b2c34d5e6f708192a3b4c5d6e7f8";
const TRACE_HEADER: &str =
    "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1";
const TS: &str = "2025-03-04T10:15:30.610Z";

/// The latest point of each metric (cumulative: the running total).
fn latest_metrics(metrics: &[Metric]) -> HashMap<String, Metric> {
    let time = |m: &Metric| match &m.data {
        Some(Data::Sum(s)) => s.data_points.first().map(|p| p.time_unix_nano),
        Some(Data::Gauge(g)) => g.data_points.first().map(|p| p.time_unix_nano),
        Some(Data::Histogram(h)) => h.data_points.first().map(|p| p.time_unix_nano),
        _ => None,
    };
    let mut out: HashMap<String, Metric> = HashMap::new();
    for m in metrics {
        let newer = out.get(&m.name).is_none_or(|old| time(m) >= time(old));
        if newer {
            out.insert(m.name.clone(), m.clone());
        }
    }
    out
}

fn int_value(m: &Metric) -> i64 {
    let p = match &m.data {
        Some(Data::Sum(s)) => &s.data_points[0],
        Some(Data::Gauge(g)) => &g.data_points[0],
        other => panic!("{} is not a sum or gauge: {other:?}", m.name),
    };
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i,
        other => panic!("{}: {other:?}", m.name),
    }
}

fn histogram(m: &Metric) -> (u64, f64, f64, f64) {
    match &m.data {
        Some(Data::Histogram(h)) => {
            let p = &h.data_points[0];
            assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count, "{}", m.name);
            assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
            (
                p.count,
                p.sum.unwrap_or(0.0),
                p.min.unwrap_or(0.0),
                p.max.unwrap_or(0.0),
            )
        }
        other => panic!("{} is not a histogram: {other:?}", m.name),
    }
}

struct Run {
    emu: Emulator,
    ids: Vec<String>,
}

async fn workload(extra_env: Vec<(String, String)>) -> Run {
    let emu = Emulator::start_extension(EmulatorOptions {
        freeze_between_invocations: true,
        extra_env,
        ..EmulatorOptions::default()
    })
    .await;
    emu.init(
        vec![json!(format!(
            "{TS}\tundefined\tINFO\tinit: loading config"
        ))],
        Duration::from_secs(10),
    )
    .await
    .expect("init");
    let ids: Vec<String> = (0..4).map(|_| new_request_id()).collect();
    let specs = vec![
        InvokeSpec {
            request_id: ids[0].clone(),
            trace_header: Some(TRACE_HEADER.into()),
            logs: vec![
                json!(format!("[INFO]\t{TS}\t{}\tcold order\n", ids[0])),
                json!("plain line in cold invocation"),
            ],
            handler_duration: Duration::from_millis(30),
            produced_bytes: 187,
            ..InvokeSpec::default()
        },
        InvokeSpec {
            request_id: ids[1].clone(),
            logs: vec![
                json!({"timestamp": TS, "level": "WARN", "message": "json warn", "requestId": ids[1]}),
            ],
            ..InvokeSpec::default()
        },
        InvokeSpec {
            request_id: ids[2].clone(),
            logs: vec![json!(format!("{TS}\t{}\tERROR\tnode failure", ids[2]))],
            status: "error".into(),
            error_type: Some("Runtime.HandlerError".into()),
            ..InvokeSpec::default()
        },
        InvokeSpec {
            request_id: ids[3].clone(),
            logs: vec![json!("[FATAL] java gave up")],
            status: "timeout".into(),
            ..InvokeSpec::default()
        },
    ];
    for spec in specs {
        emu.invoke(spec).await.expect("invoke");
    }
    spin_down(&emu).await;
    Run { emu, ids }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_logs_and_metrics_at_the_collector() {
    let server: ServerHandle = MockServer::builder()
        .protocol(Protocol::HttpBinary)
        .port(0)
        .start()
        .await
        .unwrap();
    let run = workload(vec![(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        format!("http://{}", server.addr()),
    )])
    .await;
    let ids = &run.ids;
    server
        .wait_until(
            |c| c.span_count() >= 21 && c.log_count() >= 6,
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|_| panic!("telemetry missing; extension output:\n{}", run.emu.output()));
    let (spans, logs, metrics): (Vec<Span>, Vec<_>, Vec<Metric>) = server
        .with_collector(|c| {
            (
                c.spans().iter().map(|s| s.span().clone()).collect(),
                c.logs().iter().map(|l| l.log_record().clone()).collect(),
                c.metrics().iter().map(|m| m.metric().clone()).collect(),
            )
        })
        .await;

    // --- traces -----------------------------------------------------------
    let invocation = |rid: &str| -> &Span {
        let found: Vec<&Span> = spans
            .iter()
            .filter(|s| s.kind == 2 && attr_str(&s.attributes, "faas.invocation_id") == Some(rid))
            .collect();
        assert_eq!(found.len(), 1, "one SERVER span for {rid}: {spans:#?}");
        found[0]
    };
    let cold = invocation(&ids[0]);
    assert_eq!(hex(&cold.trace_id), ROOT, "trace id from the X-Ray Root");
    assert_eq!(
        hex(&cold.parent_span_id),
        "9a8b7c6d5e4f3a2b",
        "parent from X-Ray Parent"
    );
    assert_eq!(
        hex(&cold.span_id),
        span_id_for(&ids[0]),
        "span id = tracing.spanId"
    );
    assert_eq!(cold.name, "orders-api");
    assert_eq!(
        attr(&cold.attributes, "faas.coldstart"),
        Some(&AV::BoolValue(true))
    );
    assert_eq!(
        attr(&cold.attributes, "aws.lambda.produced_bytes"),
        Some(&AV::IntValue(187))
    );
    assert!(cold.end_time_unix_nano > cold.start_time_unix_nano);
    let children = |parent: &Span| -> Vec<String> {
        let mut v: Vec<String> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
            .map(|s| s.name.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        children(cold),
        [
            "extensionOverhead",
            "init",
            "responseDuration",
            "responseLatency",
            "runtimeOverhead"
        ],
        "cold start: init and platform spans inside the invocation"
    );
    let init = spans.iter().find(|s| s.name == "init").unwrap();
    assert!(
        init.end_time_unix_nano > init.start_time_unix_nano,
        "{init:?}"
    );
    assert!(init.start_time_unix_nano <= cold.start_time_unix_nano);

    for rid in &ids[1..] {
        let s = invocation(rid);
        assert_eq!(
            attr(&s.attributes, "faas.coldstart"),
            Some(&AV::BoolValue(false))
        );
        assert_ne!(hex(&s.trace_id), ROOT);
        assert_eq!(children(s).len(), 4, "{:?}", children(s));
    }
    let err = invocation(&ids[2]);
    assert_eq!(err.status.as_ref().unwrap().code, 2);
    assert_eq!(
        attr_str(&err.attributes, "error.type"),
        Some("Runtime.HandlerError")
    );
    let to = invocation(&ids[3]);
    assert_eq!(to.status.as_ref().unwrap().code, 2);
    assert_eq!(attr_str(&to.attributes, "error.type"), Some("timeout"));
    assert_eq!(
        invocation(&ids[1])
            .status
            .as_ref()
            .map(|s| s.code)
            .unwrap_or(0),
        0
    );

    // --- logs ---------------------------------------------------------------
    let body = |r: &opentelemetry_proto::tonic::logs::v1::LogRecord| match r
        .body
        .as_ref()
        .and_then(|b| b.value.as_ref())
    {
        Some(AV::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    let expect = [
        ("cold order", 0usize, 9),
        ("plain line in cold invocation", 0, 0),
        ("json warn", 1, 13),
        ("node failure", 2, 17),
        ("java gave up", 3, 21),
    ];
    for (text, inv, severity) in expect {
        let r = logs
            .iter()
            .find(|r| body(r) == text)
            .unwrap_or_else(|| panic!("{text} missing"));
        let s = invocation(&ids[inv]);
        assert_eq!(r.trace_id, s.trace_id, "{text}: trace id of its invocation");
        assert_eq!(r.span_id, s.span_id, "{text}: span id of its invocation");
        assert_eq!(r.severity_number, severity, "{text}");
        assert_eq!(
            attr_str(&r.attributes, "faas.invocation_id"),
            Some(ids[inv].as_str())
        );
    }
    let init_line = logs
        .iter()
        .find(|r| body(r) == "init: loading config")
        .unwrap();
    assert_eq!(
        init_line.span_id, init.span_id,
        "init lines link to the init span"
    );
    assert_eq!(hex(&init_line.trace_id), ROOT);

    // --- metrics ------------------------------------------------------------
    let m = latest_metrics(&metrics);
    let get = |name: &str| {
        m.get(name)
            .unwrap_or_else(|| panic!("metric {name} missing; have {:?}", m.keys()))
    };
    assert_eq!(int_value(get("faas.invocations")), 2);
    assert_eq!(int_value(get("faas.errors")), 1);
    assert_eq!(int_value(get("faas.timeouts")), 1);
    assert_eq!(int_value(get("faas.coldstarts")), 1);
    assert_eq!(int_value(get("aws.lambda.memory_size")), 512 * 1_048_576);
    assert_eq!(int_value(get("aws.lambda.produced_bytes")), 187);
    let (count, sum, min, _) = histogram(get("faas.invoke_duration"));
    assert_eq!(count, 4);
    assert!(
        min >= 0.015 && sum < 2.0,
        "seconds, not ms: min {min} sum {sum}"
    );
    assert_eq!(get("faas.invoke_duration").unit, "s");
    assert_eq!(histogram(get("faas.init_duration")).0, 1);
    let (count, _, min, max) = histogram(get("faas.mem_usage"));
    assert_eq!(count, 4);
    assert_eq!(
        (min, max),
        (128.0 * 1_048_576.0, 128.0 * 1_048_576.0),
        "emulator reports memory/4 = 128 MB"
    );
    let (count, billed, _, _) = histogram(get("aws.lambda.billed_duration"));
    let (_, reported, _, _) = histogram(get("aws.lambda.duration"));
    assert_eq!(count, 4);
    assert!(billed >= reported, "billed {billed} >= duration {reported}");
}

/// The same workload at rotel: all three signals arrive at a collector no
/// one here wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_signals_reach_rotel() {
    let Some(rotel) = Rotel::start().await else {
        return;
    };
    let run = workload(otlp_env(&rotel.grpc_endpoint(), "grpc")).await;
    rotel
        .wait_for(
            &[
                ROOT,
                "responseLatency",
                "extensionOverhead",
                "faas.invoke_duration",
                "faas.coldstarts",
                "aws.lambda.billed_duration",
                "node failure",
                &run.ids[3],
            ],
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\nextension output:\n{}", run.emu.output()));
}

/// A Node function in Text log format whose logger (pino) writes raw JSON
/// lines with numeric levels and API Gateway's own request id under
/// `requestId`. With `LAMBDA_OTEL_BRIDGE_FLUSH=end` every such line is at
/// the collector before the `/next` that ends its invocation, with that
/// invocation's trace id, span id and `faas.invocation_id`, and keeps the
/// application's id as `requestId`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_request_ids_keep_lines_with_their_invocation() {
    let collector = FaultCollector::start().await;
    let emu = start_with(
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ]),
        true,
    )
    .await;
    let levels = [(30, 9), (40, 13), (50, 17)];
    for i in 0..3 {
        let rid = new_request_id();
        // API Gateway's request id: a UUID too, but no invocation's.
        let app_id = new_request_id();
        let root = format!("67a1b2c{i}4d5e6f708192a3b4c5d6e7f8");
        let header = format!(
            "Root=1-{}-{};Parent=9a8b7c6d5e4f3a2b;Sampled=1",
            &root[..8],
            &root[8..]
        );
        let now_ms = unix_ms(SystemTime::now());
        let logs = levels
            .iter()
            .map(|(level, _)| {
                json!(format!(
                    r#"{{"level":{level},"time":{now_ms},"pid":8,"hostname":"169.254.10.5","requestId":"{app_id}","msg":"pino {level} of invocation {i}"}}"#
                ))
            })
            .collect();
        emu.invoke(InvokeSpec {
            request_id: rid.clone(),
            trace_header: Some(header),
            logs,
            ..InvokeSpec::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
        // `invoke` returns after the extension's /next, and the sandbox is
        // frozen right after it; in `end` mode that /next comes only after
        // the export was answered. What the collector holds now arrived
        // before that /next.
        let records = collector.log_records();
        for (level, severity) in levels {
            let text = format!("pino {level} of invocation {i}");
            let found: Vec<_> = records.iter().filter(|r| body(r) == text).collect();
            assert_eq!(
                found.len(),
                1,
                "{text} at the collector before /next: {}\n{}",
                collector.summary(),
                emu.output()
            );
            let r = found[0];
            assert_eq!(hex(&r.trace_id), root, "{text}");
            assert_eq!(hex(&r.span_id), span_id_for(&rid), "{text}");
            assert_eq!(
                attr_str(&r.attributes, "faas.invocation_id"),
                Some(rid.as_str()),
                "{text}"
            );
            assert_eq!(
                attr_str(&r.attributes, "requestId"),
                Some(app_id.as_str()),
                "{text}"
            );
            assert_eq!(
                (r.severity_number, r.severity_text.as_str()),
                (severity, level.to_string().as_str()),
                "{text}"
            );
        }
    }
    spin_down(&emu).await;
    // Nothing was held back for a later flush: each line exactly once.
    let bodies: Vec<String> = collector.log_records().iter().map(body).collect();
    for i in 0..3 {
        for (level, _) in levels {
            let text = format!("pino {level} of invocation {i}");
            assert_eq!(bodies.iter().filter(|b| **b == text).count(), 1, "{text}");
        }
    }
}
