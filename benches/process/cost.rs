//! `BENCH_ONLY=cost`: bytes the collector receives per invocation, per
//! signal, with and without the cost controls (trace sampling, the minimum
//! log severity, attribute limits), for one realistic workload.
//!
//! The workload is an API handler's: per invocation 12 INFO lines of the
//! Python runtime, 2 JSON records (one INFO with a 400-character request
//! payload attribute, one WARN), an ERROR line in 1 invocation of
//! 20 (which then fails), every invocation X-Ray traced (`Sampled=1`, trace
//! ids from a fixed generator, so every run sees the same ids). Bytes are
//! the request bodies on the wire (OTLP/HTTP protobuf, no compression),
//! summed over accepted requests, after SHUTDOWN; the bridge's own metrics
//! count with the metrics.

use std::time::Duration;

use serde_json::json;

use crate::emulator::{new_request_id, InvokeSpec};
use crate::fault_collector::FaultCollector;
use crate::{quick, start};

const TS: &str = "2025-03-04T10:15:30.610Z";

/// The configurations compared: a label and the extra environment.
const CONFIGS: [(&str, &[(&str, &str)]); 5] = [
    ("none (defaults)", &[]),
    (
        "traceidratio 0.1 (+ keep errors,timeouts)",
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ],
    ),
    (
        "LOGS_MIN_SEVERITY=WARN",
        &[("LAMBDA_OTEL_BRIDGE_LOGS_MIN_SEVERITY", "WARN")],
    ),
    (
        "ATTRIBUTE_VALUE_LENGTH_LIMIT=64",
        &[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64")],
    ),
    (
        "all three",
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("LAMBDA_OTEL_BRIDGE_LOGS_MIN_SEVERITY", "WARN"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64"),
        ],
    ),
];

/// xorshift64*: the same trace ids for every configuration.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn spec(i: usize, rng: &mut u64) -> InvokeSpec {
    let rid = new_request_id();
    let root = format!("{:016x}{:016x}", next(rng), next(rng));
    let failing = i % 20 == 7;
    let mut logs: Vec<serde_json::Value> = (0..12)
        .map(|n| {
            json!(format!(
                "[INFO]\t{TS}\t{rid}\tstep {n}: loaded 17 rows from orders table"
            ))
        })
        .collect();
    logs.push(
        json!({"timestamp": TS, "level": "INFO", "message": "request received",
        "requestId": rid, "path": "/orders/4711", "payload": "x".repeat(400)}),
    );
    logs.push(
        json!({"timestamp": TS, "level": "WARN", "message": "inventory slow",
        "requestId": rid, "latencyMs": 812, "service": "inventory"}),
    );
    if failing {
        logs.push(json!(format!(
            "[ERROR]\t{TS}\t{rid}\tpayment declined: card expired"
        )));
    }
    InvokeSpec {
        request_id: rid,
        trace_header: Some(format!(
            "Root=1-{}-{};Parent=9a8b7c6d5e4f3a2b;Sampled=1",
            &root[..8],
            &root[8..]
        )),
        logs,
        handler_duration: Duration::from_millis(5),
        status: if failing { "error" } else { "success" }.into(),
        error_type: failing.then(|| "Runtime.HandlerError".into()),
        ..InvokeSpec::default()
    }
}

pub async fn run() {
    let n = if quick() { 40 } else { 200 };
    println!("\n## cost controls: bytes exported per invocation ({n} invocations, OTLP/HTTP protobuf, uncompressed)");
    println!("| controls | traces B/inv | logs B/inv | metrics B/inv | total B/inv | spans | log records |");
    println!("|---|---|---|---|---|---|---|");
    for (label, extra) in CONFIGS {
        let collector = FaultCollector::start().await;
        let mut env = vec![
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT".to_owned(),
                collector.http_endpoint(),
            ),
            ("LAMBDA_OTEL_BRIDGE_FLUSH".to_owned(), "end".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let emu = start(env).await;
        emu.init(vec![], Duration::from_secs(10))
            .await
            .expect("init");
        let mut rng = 0x0c05_7c0d_e15a_u64;
        for i in 0..n {
            emu.invoke(spec(i, &mut rng)).await.expect("invoke");
        }
        emu.shutdown("spindown", Duration::from_secs(2)).await;
        let bytes = |signal: &str| -> usize {
            collector
                .requests_for(signal)
                .iter()
                .filter(|r| r.accepted())
                .map(|r| r.body_len)
                .sum()
        };
        let (t, l, m) = (bytes("traces"), bytes("logs"), bytes("metrics"));
        let per = |b: usize| b as f64 / n as f64;
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
            per(t),
            per(l),
            per(m),
            per(t + l + m),
            collector.spans().len(),
            collector.log_records().len()
        );
        collector.stop().await;
    }
}
