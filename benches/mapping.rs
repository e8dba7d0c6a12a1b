//! Micro-benchmarks (criterion): decoding Telemetry API batches, mapping
//! log lines of each runtime format and platform events to OTLP, X-Ray
//! header parsing, OTLP protobuf encoding, and redaction of mapped logs.
//!
//! ```sh
//! cargo bench --bench mapping
//! ```
//! Throughput is reported per element (events or log lines per second).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use std::hint::black_box;

use lambda_otel_bridge::parse_batch;
use lambda_otel_bridge::parse_rfc3339;
use lambda_otel_bridge::InvokeInfo;
use lambda_otel_bridge::{build_resource as build, ResourceInfo};
use lambda_otel_bridge::{Mapper, MapperSettings};

const RID: &str = "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11";
const TRACE: &str = "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1";

fn line(format: &str, i: usize) -> serde_json::Value {
    let ts = "2025-03-04T10:15:30.610Z";
    match format {
        "python" => format!("[INFO]\t{ts}\t{RID}\tprocessed order {i} for customer 42\n").into(),
        "nodejs" => format!("{ts}\t{RID}\tINFO\tprocessed order {i} for customer 42").into(),
        "dotnet" => format!("{ts}\t{RID}\tinfo\tprocessed order {i} for customer 42").into(),
        "java" => format!("[INFO] processed order {i} for customer 42").into(),
        "ruby" => {
            format!("I, [2025-03-04T10:15:30.689856 #8]  INFO {RID} -- : processed order {i}")
                .into()
        }
        "plain" => format!("processed order {i} for customer 42").into(),
        "json" => {
            serde_json::json!({"timestamp": ts, "level": "INFO", "message": format!("processed order {i}"), "requestId": RID, "customer": 42})
        }
        _ => unreachable!(),
    }
}

fn batch(format: &str, n: usize) -> Vec<u8> {
    let mut events = vec![
        serde_json::json!({"time": "2025-03-04T10:15:30.420Z", "type": "platform.start",
        "record": {"requestId": RID, "version": "$LATEST", "tracing": {"spanId": "1f2e3d4c5b6a7980", "type": "X-Amzn-Trace-Id", "value": TRACE}}}),
    ];
    for i in 0..n {
        events.push(serde_json::json!({"time": "2025-03-04T10:15:30.611Z", "type": "function", "record": line(format, i)}));
    }
    serde_json::to_vec(&events).unwrap()
}

fn mapper() -> Mapper {
    let resource = build(&ResourceInfo {
        function_name: Some("orders-api".into()),
        function_version: Some("$LATEST".into()),
        region: Some("eu-west-1".into()),
        account_id: Some("123456789012".into()),
        memory_mb: Some(512),
        instance_id: "bench".into(),
        ..Default::default()
    })
    .resource;
    let mut m = Mapper::new(resource, MapperSettings::default());
    m.on_invoke(
        RID,
        InvokeInfo {
            deadline_ms: 0,
            invoked_function_arn: Some(
                "arn:aws:lambda:eu-west-1:123456789012:function:orders-api".into(),
            ),
            xray_header: Some(TRACE.into()),
        },
    );
    m
}

/// Decodes one batch, feeds it to the mapper and maps it to OTLP.
fn map_batch(mut m: Mapper, body: &[u8]) -> lambda_otel_bridge::Output {
    for ev in parse_batch(black_box(body)).unwrap().events {
        m.ingest(ev, 1);
    }
    m.take()
}

fn log_lines(c: &mut Criterion) {
    const N: usize = 1000;
    let mut g = c.benchmark_group("log lines: decode batch + map to OTLP");
    g.throughput(Throughput::Elements(N as u64));
    for format in [
        "python", "nodejs", "dotnet", "java", "ruby", "plain", "json",
    ] {
        let body = batch(format, N);
        g.bench_function(format, |b| {
            b.iter_batched(
                mapper,
                |m| black_box(map_batch(m, &body)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn platform_events(c: &mut Criterion) {
    const N: usize = 200;
    let mut events = Vec::new();
    for i in 0..N {
        let rid = format!("{RID}-{i}");
        let tracing = serde_json::json!({"spanId": "1f2e3d4c5b6a7980", "type": "X-Amzn-Trace-Id", "value": TRACE});
        events.push(serde_json::json!({"time": "2025-03-04T10:15:30.420Z", "type": "platform.start", "record": {"requestId": rid, "tracing": tracing}}));
        events.push(serde_json::json!({"time": "2025-03-04T10:15:30.981Z", "type": "platform.runtimeDone", "record": {"requestId": rid, "status": "success",
            "spans": [{"name": "responseLatency", "start": "2025-03-04T10:15:30.420Z", "durationMs": 548.311},
                      {"name": "responseDuration", "start": "2025-03-04T10:15:30.968Z", "durationMs": 0.412},
                      {"name": "runtimeOverhead", "start": "2025-03-04T10:15:30.969Z", "durationMs": 11.204}],
            "metrics": {"durationMs": 560.94, "producedBytes": 187}}}));
        events.push(serde_json::json!({"time": "2025-03-04T10:15:31.002Z", "type": "platform.report", "record": {"requestId": rid, "status": "success",
            "metrics": {"durationMs": 581.66, "billedDurationMs": 582, "memorySizeMB": 512, "maxMemoryUsedMB": 97},
            "spans": [{"name": "extensionOverhead", "start": "2025-03-04T10:15:30.981Z", "durationMs": 20.71}]}}));
    }
    let body = serde_json::to_vec(&events).unwrap();
    let mut g = c.benchmark_group("platform events: decode + map (start, runtimeDone, report)");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("invocations", |b| {
        b.iter_batched(
            mapper,
            |m| black_box(map_batch(m, &body)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn xray_and_time(c: &mut Criterion) {
    c.bench_function("X-Ray header parse", |b| {
        b.iter(|| black_box(lambda_otel_bridge::parse_header(black_box(TRACE))))
    });
    c.bench_function("RFC 3339 parse", |b| {
        b.iter(|| black_box(parse_rfc3339(black_box("2025-03-04T10:15:30.610Z"))))
    });
}

fn encoding(c: &mut Criterion) {
    let body = batch("python", 1000);
    let logs = map_batch(mapper(), &body).logs.unwrap();
    let mut g = c.benchmark_group("OTLP encoding of 1000 log records");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("protobuf", |b| b.iter(|| black_box(logs.encode_to_vec())));
    g.bench_function("json", |b| {
        b.iter(|| black_box(serde_json::to_vec(&logs).unwrap()))
    });
    g.finish();
}

/// `LAMBDA_OTEL_BRIDGE_REDACT=default` over 1000 mapped log records: plain
/// lines, JSON lines (with attributes), and lines of which one in ten holds
/// a credential.
fn redaction(c: &mut Criterion) {
    use lambda_otel_bridge::Redactor;
    let env: std::collections::HashMap<String, String> =
        [("LAMBDA_OTEL_BRIDGE_REDACT".to_owned(), "default".to_owned())].into();
    let redactor = Redactor::from_env(&env).unwrap().unwrap();
    let with_secrets: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            if i % 10 == 0 {
                serde_json::json!({"time": "2025-03-04T10:15:30.611Z", "type": "function",
                    "record": format!("[INFO]\t2025-03-04T10:15:30.610Z\t{RID}\tcalling with Authorization: Bearer abc{i}def456ghi")})
            } else {
                serde_json::json!({"time": "2025-03-04T10:15:30.611Z", "type": "function", "record": line("python", i)})
            }
        })
        .collect();
    let mut g = c.benchmark_group("redaction (default presets) of 1000 log records");
    g.throughput(Throughput::Elements(1000));
    for (name, body) in [
        ("python", batch("python", 1000)),
        ("json", batch("json", 1000)),
        (
            "python, 10% with a token",
            serde_json::to_vec(&with_secrets).unwrap(),
        ),
    ] {
        let logs = map_batch(mapper(), &body).logs.unwrap();
        g.bench_function(name, |b| {
            b.iter_batched(
                || logs.clone(),
                |mut l| {
                    redactor.redact_logs(&mut l);
                    black_box(l)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    log_lines,
    platform_events,
    xray_and_time,
    encoding,
    redaction
);
criterion_main!(benches);
