//! The function's own OpenTelemetry data through the bridge: a function
//! instrumented with the OpenTelemetry Python SDK exports to the bridge's
//! local receiver during an invocation, the sandbox is frozen right after
//! `/next`, and everything reaches a real collector (rotel) exactly once.
//! Also: the outbox-full answer (503 + Retry-After, gRPC UNAVAILABLE).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use support::common::start_initialized;
use support::emulator::{new_request_id, Emulator, EmulatorOptions, InvokeSpec};
use support::rotel::{free_port, Rotel};

const TRACE_HEADER: &str =
    "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1";

fn venv_python() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = std::process::Command::new(&p)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(p)
    } else {
        assert!(
            !support::rotel::required(),
            "the OpenTelemetry Python SDK is missing: run scripts/install-test-deps.sh"
        );
        eprintln!("SKIPPED: OpenTelemetry Python SDK not installed (scripts/install-test-deps.sh)");
        None
    }
}

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
    let until = Instant::now() + Duration::from_secs(10);
    while !emu
        .handed_out_events()
        .iter()
        .any(|(_, e)| e["requestId"] == request_id)
    {
        assert!(
            Instant::now() < until,
            "INVOKE {request_id} never handed out"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
    let Some(python) = venv_python() else { return };
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

/// With the collector down and a small outbox, the receiver answers 503 with
/// Retry-After (gRPC: UNAVAILABLE), keeps serving, and the drops are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outbox_is_answered_with_503_and_counted() {
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
    let body = Bytes::from(log_request(20_000).encode_to_vec());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let req = hyper::Request::post(format!("http://127.0.0.1:{http_port}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(Full::new(body.clone()))
            .unwrap();
        let resp = client.request(req).await.expect("the receiver answers");
        statuses.push(resp.status().as_u16());
        if resp.status() == 503 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
        let _ = resp.into_body().collect().await;
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));

    // Undecodable and oversized bodies are refused like a collector would.
    let bad = hyper::Request::post(format!("http://127.0.0.1:{http_port}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from_static(b"\xff\xff\xff not protobuf")))
        .unwrap();
    assert_eq!(client.request(bad).await.unwrap().status(), 400);
    let huge = hyper::Request::post(format!("http://127.0.0.1:{http_port}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(vec![0u8; 5 * 1024 * 1024])))
        .unwrap();
    assert_eq!(client.request(huge).await.unwrap().status(), 413);

    // gRPC: UNAVAILABLE, which OTLP clients retry.
    let mut grpc = LogsServiceClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .expect("gRPC receiver");
    let status = grpc
        .export(log_request(20_000))
        .await
        .expect_err("outbox full");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    // Still alive, and the refused items are counted.
    emu.invoke(InvokeSpec::default()).await.expect("invoke");
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert_eq!(out.exit_code, Some(0), "{}", emu.output());
    emu.wait_for_output("shutting down", Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = emu
        .output()
        .lines()
        .find(|l| l.contains("shutting down"))
        .unwrap_or_default()
        .to_owned();
    let dropped: u64 = summary
        .split("dropped_items=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped >= 4,
        "3 refused over HTTP, 1 over gRPC, plus what the dead collector cost: {summary}"
    );
}
