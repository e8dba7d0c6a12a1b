//! Small helpers shared by the black-box tests: environment pairs, a started
//! emulator, Lambda-style log lines, log bodies and the shutdown summary.

#![allow(dead_code)]

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{json, Value};

use super::fault_collector::FaultCollector;
use mock_collector::{MockServer, Protocol, ServerHandle};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

use super::emulator::{
    new_request_id, Emulator, EmulatorOptions, InvokeOutcome, InvokeSpec, RecordedCall,
    ShutdownOutcome,
};

/// `(name, value)` pairs for `EmulatorOptions::extra_env`.
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL` for
/// `EmulatorOptions::extra_env`.
pub fn otlp_env(endpoint: &str, protocol: &str) -> Vec<(String, String)> {
    env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
    ])
}

/// The bridge's local receiver on these loopback ports (gRPC, HTTP), for
/// `EmulatorOptions::extra_env`.
pub fn receiver_env(grpc_port: u16, http_port: u16) -> Vec<(String, String)> {
    env(&[
        (
            "LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR",
            &format!("127.0.0.1:{grpc_port}"),
        ),
        (
            "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR",
            &format!("127.0.0.1:{http_port}"),
        ),
    ])
}

/// Starts the extension (sandbox frozen between invocations when `freeze`)
/// and runs the init phase.
pub async fn start_with(extra: Vec<(String, String)>, freeze: bool) -> Emulator {
    start_initialized(EmulatorOptions {
        freeze_between_invocations: freeze,
        extra_env: extra,
        ..EmulatorOptions::default()
    })
    .await
}

/// Starts the extension with `opts` and runs the init phase (panics if the
/// init phase fails).
pub async fn start_initialized(opts: EmulatorOptions) -> Emulator {
    let emu = Emulator::start_extension(opts).await;
    emu.init(vec![], Duration::from_secs(10))
        .await
        .expect("init");
    emu
}

/// A Python-runtime text log line of invocation `rid`.
pub fn line(rid: &str, text: &str) -> Value {
    json!(format!("[INFO]\t2025-03-04T10:15:30.610Z\t{rid}\t{text}"))
}

/// One invocation with one text log line; panics with the extension's
/// output if the emulator reports a failure.
pub async fn invoke_line(emu: &Emulator, text: &str) -> InvokeOutcome {
    let rid = new_request_id();
    emu.invoke(InvokeSpec {
        request_id: rid.clone(),
        logs: vec![line(&rid, text)],
        ..InvokeSpec::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{text}: {e}\n{}", emu.output()))
}

/// A mock collector taking OTLP/HTTP protobuf on a free loopback port.
pub async fn start_mock_collector() -> ServerHandle {
    MockServer::builder()
        .protocol(Protocol::HttpBinary)
        .port(0)
        .start()
        .await
        .expect("mock collector starts")
}

/// One invocation logging `text` (as the runtime's own line) whose record
/// reaches `server` within 5 s; panics with the extension's output if not.
/// Returns the invocation's request id.
pub async fn one_line_arrives(emu: &Emulator, server: &ServerHandle, text: &str) -> String {
    let rid = new_request_id();
    emu.invoke(InvokeSpec {
        request_id: rid.clone(),
        logs: vec![json!(text)],
        ..InvokeSpec::default()
    })
    .await
    .unwrap();
    server
        .wait_until(|c| c.log_count() >= 1, Duration::from_secs(5))
        .await
        .unwrap_or_else(|_| panic!("{}", emu.output()));
    rid
}

/// A log record's body as text (a string body as it is).
pub fn body(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(AV::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Waits for the one-line shutdown summary and returns it.
pub async fn summary_line(emu: &Emulator) -> String {
    if let Err(e) = emu
        .wait_for_output("shutting down", Duration::from_secs(10))
        .await
    {
        panic!(
            "{e}\nexit status {:?}\noutput:\n{}\ncalls: {:?}",
            emu.exit_status(),
            emu.output(),
            emu.calls()
                .iter()
                .map(|c| (&c.path, c.status))
                .collect::<Vec<_>>()
        );
    }
    emu.output()
        .lines()
        .find(|l| l.contains("shutting down"))
        .unwrap_or_default()
        .to_owned()
}

/// The number after `key=` in a summary line.
pub fn summary_field(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("{key} in {line}"));
    line[at + key.len() + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {line}"))
}

/// Whether `attributes` hold these string attributes.
fn has_attrs(attributes: &[KeyValue], attrs: &[(&str, &str)]) -> bool {
    attrs.iter().all(|(k, v)| {
        attributes.iter().any(|a| {
            a.key == *k
                && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(AV::StringValue(s)) if s == v)
        })
    })
}

/// The largest value the collector received for the counter `name` with
/// these string attributes (cumulative sums: the latest total).
pub fn counter(collector: &FaultCollector, name: &str, attrs: &[(&str, &str)]) -> Option<i64> {
    collector
        .metrics()
        .into_iter()
        .filter(|m| m.name == name)
        .flat_map(|m| match m.data {
            Some(Data::Sum(s)) => s.data_points,
            _ => Vec::new(),
        })
        .filter(|p| has_attrs(&p.attributes, attrs))
        .filter_map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        })
        .max()
}

/// The largest count the collector received for the histogram `name` with
/// these string attributes (cumulative: the latest count).
pub fn histogram_count(
    collector: &FaultCollector,
    name: &str,
    attrs: &[(&str, &str)],
) -> Option<u64> {
    collector
        .metrics()
        .into_iter()
        .filter(|m| m.name == name)
        .flat_map(|m| match m.data {
            Some(Data::Histogram(h)) => h.data_points,
            _ => Vec::new(),
        })
        .filter(|p| has_attrs(&p.attributes, attrs))
        .map(|p| p.count)
        .max()
}

/// The collector's endpoint for an `OTEL_EXPORTER_OTLP_PROTOCOL` value.
pub fn endpoint_for(collector: &FaultCollector, protocol: &str) -> String {
    match protocol {
        "grpc" => collector.grpc_endpoint().expect("gRPC listener"),
        _ => collector.http_endpoint(),
    }
}

/// Starts the extension (frozen between invocations) in `end` mode,
/// exporting to `collector` over `protocol`.
pub async fn start_end_mode(collector: &FaultCollector, protocol: &str) -> Emulator {
    start_with(
        env(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &endpoint_for(collector, protocol),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ]),
        true,
    )
    .await
}

/// The extension's `init/error` call (panics with the calls when none).
pub fn init_error_call(emu: &Emulator) -> RecordedCall {
    let calls = emu.calls();
    calls
        .iter()
        .find(|c| c.path.ends_with("/extension/init/error"))
        .cloned()
        .unwrap_or_else(|| panic!("no init/error call: {calls:?}\n{}", emu.output()))
}

/// Waits for an extension that cannot start to exit, asserts that it exited non-zero, and
/// returns its `init/error` call.
pub async fn failed_init(emu: &Emulator) -> RecordedCall {
    let code = emu
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert_ne!(code, 0);
    init_error_call(emu)
}

/// Waits until the INVOKE for `request_id` has been handed out (the runtime
/// runs the handler from then on).
pub async fn handed_out(emu: &Emulator, request_id: &str) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !emu
        .handed_out_events()
        .iter()
        .any(|(_, e)| e["requestId"] == request_id)
    {
        assert!(
            std::time::Instant::now() < until,
            "INVOKE {request_id} never handed out"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Shuts the extension down (`spindown`, 2 s) and asserts that it exited with 0.
pub async fn spin_down(emu: &Emulator) -> ShutdownOutcome {
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert_eq!(out.exit_code, Some(0), "{out:?}\n{}", emu.output());
    out
}
