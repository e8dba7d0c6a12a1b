//! The function's own OpenTelemetry data through the bridge: a function
//! instrumented with the OpenTelemetry Python SDK exports to the bridge's
//! local receiver during an invocation, the sandbox is frozen right after
//! `/next`, and everything reaches a real collector (rotel) exactly once.
//! Also: a full outbox never makes the function wait or retry (the oldest
//! data makes room; only what can never fit is rejected as a partial
//! success), checked with raw clients and with the SDK's own exporters
//! while the collector is down.

mod support;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use serde_json::Value;
use support::common::{
    counter, env, handed_out, receiver_env, spin_down, start_initialized, summary_field,
    summary_line,
};
use support::emulator::{new_request_id, Emulator, EmulatorOptions, InvokeSpec};
use support::fault_collector::FaultCollector;
use support::line_process::LineProcess;
use support::prereq::{missing, python_sdk};
use support::rotel::{free_port, Rotel};

const TRACE_HEADER: &str =
    "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1";

/// Starts the instrumented "function" once the INVOKE for `request_id` has
/// been handed out, as the runtime would run the handler.
async fn run_function(
    emu: &Emulator,
    python: &std::path::Path,
    request_id: &str,
    endpoint: &str,
    protocol: &str,
    marker: &str,
) -> tokio::process::Child {
    handed_out(emu, request_id).await;
    tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/function_sdk.py"
        ))
        .arg(marker)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // The function's standard variables point at the bridge.
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("_X_AMZN_TRACE_ID", TRACE_HEADER)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts")
}

async fn finished(child: tokio::process::Child) -> String {
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the function finishes")
        .expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("flushed"), "function SDK output:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_sdk_telemetry_reaches_the_collector_through_the_bridge() {
    let Some(python) = python_sdk() else {
        missing(
            "the OpenTelemetry Python SDK",
            "run scripts/install-test-deps.sh",
        );
        return;
    };
    let Some(rotel) = Rotel::start().await else {
        return;
    };
    let (grpc_port, http_port) = (free_port(), free_port());
    let emu = start_initialized(EmulatorOptions {
        freeze_between_invocations: true,
        extra_env: vec![
            // Same environment as the function: the standard variable points
            // at the bridge, the bridge's own prefixed one at the collector.
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://127.0.0.1:{http_port}"),
            ),
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT".into(),
                rotel.grpc_endpoint(),
            ),
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_PROTOCOL".into(),
                "grpc".into(),
            ),
            (
                "LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR".into(),
                format!("127.0.0.1:{grpc_port}"),
            ),
            (
                "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR".into(),
                format!("127.0.0.1:{http_port}"),
            ),
            ("LAMBDA_OTEL_BRIDGE_FLUSH".into(), "end".into()),
        ],
        ..EmulatorOptions::default()
    })
    .await;

    // Invocations 1 (OTLP/HTTP) and 2 (OTLP/gRPC): the function flushes
    // before it returns; the bridge forwards before /next.
    for (protocol, endpoint, marker) in [
        (
            "http/protobuf",
            format!("http://127.0.0.1:{http_port}"),
            "m1",
        ),
        ("grpc", format!("http://127.0.0.1:{grpc_port}"), "m2"),
    ] {
        let rid = new_request_id();
        let spec = InvokeSpec {
            request_id: rid.clone(),
            trace_header: Some(TRACE_HEADER.into()),
            handler_duration: Duration::from_secs(6),
            timeout: Duration::from_secs(10),
            ..InvokeSpec::default()
        };
        let (outcome, function) = tokio::join!(emu.invoke(spec), async {
            let child = run_function(&emu, &python, &rid, &endpoint, protocol, marker).await;
            finished(child).await
        });
        outcome.expect("invoke");
        assert!(emu.is_frozen(), "frozen right after /next");
        // Nothing thawed since /next: it must already be at the collector.
        let needles = [
            format!("handler {marker}"),
            format!("db query {marker}"),
            format!("function log {marker}"),
            format!("orders.created.{marker}"),
        ];
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        rotel
            .wait_for(&needles, Duration::from_secs(3))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{protocol}: {e}\nfunction:\n{function}\nextension:\n{}",
                    emu.output()
                )
            });
    }

    // Invocation 3: the function's export lands after the bridge flushed
    // and froze (an SDK exporting asynchronously); it is delivered at SHUTDOWN.
    let rid = new_request_id();
    let spec = InvokeSpec {
        request_id: rid.clone(),
        trace_header: Some(TRACE_HEADER.into()),
        handler_duration: Duration::from_millis(20),
        ..InvokeSpec::default()
    };
    let (outcome, child) = tokio::join!(emu.invoke(spec), async {
        run_function(
            &emu,
            &python,
            &rid,
            &format!("http://127.0.0.1:{http_port}"),
            "http/protobuf",
            "m3",
        )
        .await
    });
    outcome.expect("invoke");
    // Give the function time to start exporting into the frozen sandbox.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !rotel.output().contains("handler m3"),
        "cannot have left a frozen sandbox"
    );
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert!(out.exited_by_itself, "{out:?}\n{}", emu.output());
    let function = finished(child).await;
    rotel
        .wait_for(&["handler m3", "function log m3"], Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}\nfunction:\n{function}\nextension:\n{}", emu.output()));

    // Exactly once: each span name shows up once at the collector.
    let output = rotel.output();
    for m in ["m1", "m2", "m3"] {
        let name = format!("handler {m}");
        let spans_named = output
            .lines()
            .filter(|l| {
                let l = l.trim();
                l.starts_with("Name") && l.split_once(':').is_some_and(|(_, v)| v.trim() == name)
            })
            .count();
        assert_eq!(spans_named, 1, "{name} delivered once:\n{output}");
    }
    // Enrichment: the function's resource got the Lambda attributes it
    // lacked, and kept the ones it set.
    assert!(output.contains("cloud.provider"), "{output}");
    assert!(output.contains("set-by-function"), "{output}");
}

fn log_request(bytes: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("x".repeat(bytes))),
                    }),
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// A request over protobuf HTTP; its status, `Retry-After` and body.
async fn post(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    body: Vec<u8>,
) -> (u16, Option<String>, Bytes) {
    let req = hyper::Request::post(url)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.expect("the receiver answers");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, body)
}

/// With the collector down and a small outbox, the receiver keeps accepting
/// (the oldest data makes room), rejects only a record larger than the whole
/// outbox as a partial success, never answers with a retryable status, and
/// the drops are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outbox_never_refuses_the_function_and_counts_drops() {
    let (grpc_port, http_port) = (free_port(), free_port());
    let emu = start_initialized(EmulatorOptions {
        freeze_between_invocations: false,
        extra_env: vec![
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://127.0.0.1:{}", free_port()),
            ),
            ("LAMBDA_OTEL_BRIDGE_OUTBOX_MAX_BYTES".into(), "65536".into()),
            (
                "LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR".into(),
                format!("127.0.0.1:{grpc_port}"),
            ),
            (
                "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR".into(),
                format!("127.0.0.1:{http_port}"),
            ),
        ],
        ..EmulatorOptions::default()
    })
    .await;

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let logs_url = format!("http://127.0.0.1:{http_port}/v1/logs");
    // Six requests of 20 KB into a 64 KiB outbox: all accepted, no partial success.
    for i in 0..6 {
        let (status, retry_after, body) =
            post(&client, &logs_url, log_request(20_000).encode_to_vec()).await;
        assert_eq!((status, retry_after), (200, None), "request {i}");
        assert_eq!(
            ExportLogsServiceResponse::decode(body).unwrap(),
            ExportLogsServiceResponse::default(),
            "request {i}"
        );
    }
    // A record larger than the whole outbox: 200 with rejected_log_records.
    let (status, retry_after, body) =
        post(&client, &logs_url, log_request(70_000).encode_to_vec()).await;
    assert_eq!((status, retry_after), (200, None));
    let partial = ExportLogsServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_log_records, 1, "{partial:?}");
    assert!(!partial.error_message.is_empty());

    // Undecodable and oversized bodies are refused like a collector would.
    let (status, _, _) = post(
        &client,
        &format!("http://127.0.0.1:{http_port}/v1/traces"),
        b"\xff\xff\xff not protobuf".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = post(&client, &logs_url, vec![0u8; 5 * 1024 * 1024]).await;
    assert_eq!(status, 413);

    // gRPC: OK, and OK with rejected_log_records for what can never fit.
    let mut grpc = LogsServiceClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .expect("gRPC receiver");
    let ok = grpc
        .export(log_request(20_000))
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!(ok, ExportLogsServiceResponse::default());
    let partial = grpc
        .export(log_request(70_000))
        .await
        .expect("accepted")
        .into_inner()
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_log_records, 1, "{partial:?}");

    // Still alive, and the drops are counted.
    emu.invoke(InvokeSpec::default()).await.expect("invoke");
    spin_down(&emu).await;
    let summary = summary_line(&emu).await;
    let dropped = summary_field(&summary, "dropped_items");
    assert!(
        dropped >= 6,
        "4 oldest records made room, 2 never fit, plus what the dead collector cost: {summary}"
    );
}

/// The instrumented function as a long-lived process, as a Lambda runtime
/// is (`function_sdk.py --serve`): one OTLP/HTTP and one OTLP/gRPC SDK
/// pipeline, one invocation per marker written to it.
struct ServedFunction(LineProcess);

impl ServedFunction {
    async fn start(python: &std::path::Path, http: &str, grpc: &str) -> ServedFunction {
        let mut command = tokio::process::Command::new(python);
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/function_sdk.py"
            ))
            .args(["--serve", http, grpc])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        ServedFunction(
            LineProcess::start("function_sdk.py --serve", command, Duration::from_secs(60)).await,
        )
    }

    /// Runs one invocation's telemetry; returns its export records.
    async fn invoke(&mut self, marker: &str) -> Vec<Value> {
        let line = self.0.ask(marker, Duration::from_secs(120)).await;
        let answer: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(answer["marker"], marker, "{line}");
        assert_eq!(
            answer["flushed"], true,
            "{marker}: force_flush failed: {line}"
        );
        answer["exports"].as_array().cloned().unwrap_or_default()
    }

    async fn stop(self) {
        self.0.stop(Duration::from_secs(10)).await;
    }
}

/// The value at quantile `q` (0..=1) of sorted figures.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The collector is down (connection refused) for 30 invocations while the
/// function exports its own traces, metrics and logs with the OpenTelemetry
/// Python SDK over OTLP/HTTP and OTLP/gRPC into a 64 KiB outbox. Every
/// export gets a non-retryable success at the first attempt (a record
/// larger than the outbox comes back as a partial success), so no export
/// waits for the collector or for an SDK retry backoff (the SDKs' first
/// retry waits about a second); the export times are printed (median about
/// 2 ms on an idle 2-core machine, see docs/RELIABILITY.md) rather than
/// asserted tightly, as this project's timing goals are checked by figures,
/// not by timed assertions on a shared machine. When the collector comes back
/// the newest data is delivered and the oldest is counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_collector_never_makes_the_functions_sdk_wait_or_retry() {
    // Required, not skipped: without the SDK this test would prove nothing.
    let python = python_sdk().unwrap_or_else(|| {
        panic!("the OpenTelemetry Python SDK is missing: run scripts/install-test-deps.sh")
    });
    let collector_port = free_port(); // nothing listens there yet
    let (grpc_port, http_port) = (free_port(), free_port());
    let emu = start_initialized(EmulatorOptions {
        freeze_between_invocations: false,
        extra_env: env(&[
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT",
                &format!("http://127.0.0.1:{collector_port}"),
            ),
            ("LAMBDA_OTEL_BRIDGE_OUTBOX_MAX_BYTES", "65536"),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ])
        .into_iter()
        .chain(receiver_env(grpc_port, http_port))
        .collect(),
        ..EmulatorOptions::default()
    })
    .await;
    let mut function = ServedFunction::start(
        &python,
        &format!("http://127.0.0.1:{http_port}"),
        &format!("http://127.0.0.1:{grpc_port}"),
    )
    .await;

    let mut ms: Vec<(String, f64)> = Vec::new();
    for i in 1..=30 {
        let marker = format!("inv{i}");
        let rid = new_request_id();
        let spec = InvokeSpec {
            request_id: rid.clone(),
            handler_duration: Duration::from_millis(300),
            ..InvokeSpec::default()
        };
        let (outcome, exports) = tokio::join!(emu.invoke(spec), async {
            handed_out(&emu, &rid).await;
            function.invoke(&marker).await
        });
        outcome.unwrap_or_else(|e| panic!("{marker}: {e}\n{}", emu.output()));
        for protocol in ["http", "grpc"] {
            let mine: Vec<&Value> = exports
                .iter()
                .filter(|e| e["protocol"] == protocol)
                .collect();
            for signal in ["traces", "metrics", "logs"] {
                assert!(
                    mine.iter().any(|e| e["signal"] == signal),
                    "{marker}: no {protocol} {signal} export: {exports:?}"
                );
            }
            let mut rejected_logs = 0;
            for e in &mine {
                let answers = e["answers"].as_array().expect("answers");
                // One request, answered with a success that asks for no retry.
                assert_eq!(answers.len(), 1, "{marker}: retried: {e}");
                let a = &answers[0];
                let success = match protocol {
                    "http" => a["status"] == 200 && a["retry_after"].is_null(),
                    _ => a["code"] == "OK",
                };
                assert!(success, "{marker}: a failed or retryable answer: {e}");
                assert_eq!(e["result"], "SUCCESS", "{marker}: {e}");
                if e["signal"] == "logs" {
                    rejected_logs += a["rejected"].as_i64().unwrap_or(0);
                }
                ms.push((protocol.to_owned(), e["ms"].as_f64().expect("ms")));
            }
            // The 70,000-character record never fits a 64 KiB outbox: it is
            // rejected (partial success), the rest of its request is not.
            assert_eq!(
                rejected_logs, 1,
                "{marker}: {protocol} rejected log records: {exports:?}"
            );
        }
    }
    let figures = |protocol: Option<&str>| {
        let mut v: Vec<f64> = ms
            .iter()
            .filter(|(p, _)| protocol.is_none_or(|x| x == p))
            .map(|(_, t)| *t)
            .collect();
        v.sort_by(f64::total_cmp);
        (
            v.len(),
            quantile(&v, 0.5),
            quantile(&v, 0.9),
            v[v.len() - 1],
        )
    };
    for protocol in [Some("http"), Some("grpc"), None] {
        let (n, median, p90, max) = figures(protocol);
        println!(
            "export time, {}: {n} exports, median {median:.2} ms, p90 {p90:.2} ms, max {max:.2} ms",
            protocol.unwrap_or("all")
        );
    }
    // Far below an SDK retry's backoff (about 1 s) even on a loaded machine.
    let (_, median, _, max) = figures(None);
    assert!(
        median < 100.0 && max < 900.0,
        "export time median {median:.2} ms, max {max:.2} ms"
    );

    // The collector comes back: the newest data goes out at the next flush
    // points; the oldest made room long ago and is counted.
    let collector = FaultCollector::start_on(collector_port).await;
    let newest = ["handler inv30 http", "handler inv30 grpc"];
    let delivered = |c: &FaultCollector| {
        let spans = c.spans();
        newest.iter().all(|n| spans.iter().any(|s| s.name == *n))
    };
    for _ in 0..5 {
        emu.invoke(InvokeSpec::default()).await.expect("invoke");
        if delivered(&collector) {
            break;
        }
    }
    collector
        .wait_until("the newest spans", Duration::from_secs(5), delivered)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
    let names: Vec<String> = collector.spans().into_iter().map(|s| s.name).collect();
    assert!(
        !names.iter().any(|n| n.starts_with("handler inv1 ")),
        "the oldest invocation's spans cannot have been kept in 64 KiB"
    );
    let logs_seen = collector
        .log_records()
        .iter()
        .any(|r| support::common::body(r).contains("function log inv30 grpc"));
    assert!(logs_seen, "the newest log line is delivered");
    for signal in ["traces", "logs"] {
        let dropped = counter(
            &collector,
            "lambda_otel_bridge.dropped",
            &[("signal", signal), ("reason", "outbox_full")],
        )
        .unwrap_or(0);
        assert!(dropped > 0, "{signal} dropped as outbox_full: {dropped}");
    }
    function.stop().await;
    spin_down(&emu).await;
}

/// A length-delimited protobuf field.
fn pb_field(number: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint((u64::from(number) << 3) | 2, &mut out);
    prost::encoding::encode_varint(value.len() as u64, &mut out);
    out.extend_from_slice(value);
    out
}

/// A trace request with fields a newer OTLP could add: 1000 inside the
/// Span, 999 inside the ResourceSpans, 50 in the request itself.
fn request_from_the_future(span_name: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::trace::v1::Span;
    let span = [
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: span_name.into(),
            ..Span::default()
        }
        .encode_to_vec(),
        pb_field(1000, b"span field from the future"),
    ]
    .concat();
    let entry = [
        pb_field(2, &pb_field(2, &span)),
        pb_field(999, b"entry field from the future"),
    ]
    .concat();
    [
        pb_field(1, &entry),
        pb_field(50, b"request field from the future"),
    ]
    .concat()
}

/// The function's protobuf requests reach the collector with the fields the
/// bridge does not know (a newer OTLP's): byte for byte when nothing is
/// added, over OTLP/HTTP and OTLP/gRPC; with the Lambda resource attributes
/// added, every unknown field is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_the_bridge_does_not_know_reach_the_collector() {
    let collector = FaultCollector::start().await;
    for enrich in ["false", "true"] {
        let (grpc_port, http_port) = (free_port(), free_port());
        let emu = start_initialized(EmulatorOptions {
            freeze_between_invocations: false,
            extra_env: env(&[
                (
                    "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT",
                    &collector.http_endpoint(),
                ),
                ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
                ("LAMBDA_OTEL_BRIDGE_RECEIVER_ENRICH", enrich),
            ])
            .into_iter()
            .chain(receiver_env(grpc_port, http_port))
            .collect(),
            ..EmulatorOptions::default()
        })
        .await;
        let over_http = request_from_the_future(&format!("future span http enrich={enrich}"));
        let over_grpc = request_from_the_future(&format!("future span grpc enrich={enrich}"));

        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let (status, _, _) = post(
            &client,
            &format!("http://127.0.0.1:{http_port}/v1/traces"),
            over_http.clone(),
        )
        .await;
        assert_eq!(status, 200);
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))
                .unwrap()
                .connect()
                .await
                .expect("gRPC receiver");
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("ready");
        grpc.unary(
            tonic::Request::new(Bytes::from(over_grpc.clone())),
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                .parse()
                .unwrap(),
            lambda_otel_bridge::RawCodec,
        )
        .await
        .expect("accepted over gRPC");

        emu.invoke(InvokeSpec::default()).await.expect("invoke");
        for (protocol, sent) in [("http", &over_http), ("grpc", &over_grpc)] {
            let marker = format!("future span {protocol} enrich={enrich}");
            let has_marker = |m: &Bytes| m.windows(marker.len()).any(|w| w == marker.as_bytes());
            collector
                .wait_until(&marker, Duration::from_secs(5), |c| {
                    c.requests_for("traces")
                        .iter()
                        .any(|r| r.accepted() && r.message.as_ref().is_some_and(has_marker))
                })
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
            let received = collector
                .requests_for("traces")
                .into_iter()
                .filter_map(|r| r.message)
                .find(|m| has_marker(m))
                .expect("found above");
            if enrich == "false" {
                assert_eq!(
                    &received[..],
                    &sent[..],
                    "{protocol}: forwarded byte for byte"
                );
            } else {
                for extra in [
                    &b"span field from the future"[..],
                    b"entry field from the future",
                    b"request field from the future",
                ] {
                    assert!(
                        received.windows(extra.len()).any(|w| w == extra),
                        "{protocol}: {:?} lost",
                        String::from_utf8_lossy(extra)
                    );
                }
                let decoded =
                    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                        &received[..],
                    )
                    .unwrap();
                let resource = decoded.resource_spans[0]
                    .resource
                    .clone()
                    .unwrap_or_default();
                assert!(
                    resource
                        .attributes
                        .iter()
                        .any(|a| a.key == "cloud.provider"),
                    "{protocol}: enriched: {resource:?}"
                );
            }
        }
        spin_down(&emu).await;
    }
}

/// Lambda starts the runtime, and with it the function's init code (which
/// may export), as soon as every extension has registered: the local
/// receiver must already accept connections when `register` arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_listens_before_the_extension_registers() {
    let (grpc_port, http_port) = (free_port(), free_port());
    let probes: Vec<std::net::SocketAddr> = [grpc_port, http_port]
        .iter()
        .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let mut extra_env = receiver_env(grpc_port, http_port);
    extra_env.push((
        "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT".into(),
        format!("http://127.0.0.1:{}", free_port()),
    ));
    let emu = start_initialized(EmulatorOptions {
        freeze_between_invocations: false,
        extra_env,
        probe_at_register: probes.clone(),
        ..EmulatorOptions::default()
    })
    .await;
    let registration = emu.registration().expect("the extension registered");
    assert_eq!(
        registration.probes,
        probes.iter().map(|a| (*a, true)).collect::<Vec<_>>(),
        "receiver ports accepting connections when register arrived (gRPC, HTTP)"
    );
    spin_down(&emu).await;
}
