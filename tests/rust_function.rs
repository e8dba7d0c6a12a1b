//! The function side in Rust: the example `examples/rust-function.rs` (a Lambda function
//! instrumented with `opentelemetry_sdk` + `opentelemetry-otlp`) exports to the real bridge
//! binary's local receiver during its handler, over OTLP/gRPC and over OTLP/HTTP, while the
//! bridge runs under the emulated Lambda platform with
//! `LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID=xray-parent`. Right after `invoke` returns (the
//! extension is frozen after `/next`) the collector already has the function's span nested in
//! the invocation span, its log record inside that span, its counter, all with the Lambda
//! resource attributes added, and nothing twice.
//!
//! The example is a long-lived process, as a Lambda runtime is: each line written to its stdin
//! is one invocation (`<request id> <X-Ray trace header>`), answered with `flushed <request id>`
//! once its handler flushed.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::common::{body, env, handed_out, receiver_env, spin_down, start_initialized};
use support::emulator::{new_request_id, span_id_for, Emulator, EmulatorOptions, InvokeSpec};
use support::fault_collector::FaultCollector;
use support::line_process::LineProcess;
use support::otlp::{attr, attr_str, hex};
use support::rotel::free_port;

/// `OTEL_SERVICE_NAME` of the function: tells its data from the bridge's at the collector.
const SERVICE: &str = "orders-fn-rust";

/// The example's binary. Cargo sets no `CARGO_BIN_EXE_*` for examples; `cargo test` builds them
/// into `examples/` beside the `deps/` folder this test binary runs from.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("rust-function"))
        .expect("the test binary lives in <target>/<profile>/deps");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds the examples; when running this test file alone, \
         run `cargo build --example rust-function` first",
        path.display()
    );
    path
}

/// The running example.
struct RustFunction(LineProcess);

impl RustFunction {
    /// Starts it with the function's standard OTLP variables pointing at the bridge.
    async fn start(binary: &Path, endpoint: &str, protocol: &str) -> RustFunction {
        let mut command = tokio::process::Command::new(binary);
        command
            .env_clear()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("OTEL_SERVICE_NAME", SERVICE);
        let name = format!("rust-function ({protocol})");
        RustFunction(LineProcess::start(&name, command, Duration::from_secs(30)).await)
    }

    /// Runs one handler; returns once it has flushed (panics if the flush failed).
    async fn invoke(&mut self, request_id: &str, trace_header: &str) {
        let line = format!("{request_id} {trace_header}");
        let answer = self.0.ask(&line, Duration::from_secs(30)).await;
        assert_eq!(answer, format!("flushed {request_id}"));
    }

    /// Ends its input; it shuts its providers down and exits with 0.
    async fn stop(self) {
        let status = self.0.stop(Duration::from_secs(10)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "the example exits with 0 at the end of its input: {status:?}"
        );
    }
}

/// One invocation's X-Ray context: `Root` and `Parent` as OTLP hex ids, and the header.
struct Xray {
    trace_id: String,
    parent: String,
    header: String,
}

impl Xray {
    /// A distinct trace per request id.
    fn for_request(request_id: &str) -> Xray {
        let random: String = request_id.replace('-', "").chars().take(24).collect();
        let trace_id = format!("67a1b2c3{random}");
        let parent = span_id_for(&format!("parent of {request_id}"));
        let header = format!("Root=1-67a1b2c3-{random};Parent={parent};Sampled=1");
        Xray {
            trace_id,
            parent,
            header,
        }
    }
}

/// The one span the filter picks; panics with every span otherwise.
fn one_span<'a>(spans: &'a [Span], what: &str, f: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| f(s)).collect();
    assert_eq!(found.len(), 1, "one {what}: {spans:#?}");
    found[0]
}

/// The sum of the function's `orders.handled` points with `outcome=ok` (delta temporality, so
/// a point arriving twice would show in the sum).
fn orders_handled(collector: &FaultCollector) -> i64 {
    collector
        .metrics()
        .into_iter()
        .filter(|m| m.name == "orders.handled")
        .flat_map(|m| match m.data {
            Some(Data::Sum(s)) => {
                assert_eq!(s.aggregation_temporality, 1, "delta temporality");
                assert!(s.is_monotonic);
                s.data_points
            }
            other => panic!("orders.handled is a sum: {other:?}"),
        })
        .map(|p| {
            assert_eq!(attr_str(&p.attributes, "outcome"), Some("ok"));
            match p.value {
                Some(number_data_point::Value::AsInt(v)) => v,
                other => panic!("an integer point: {other:?}"),
            }
        })
        .sum()
}

/// What the collector must hold right after invocation `n` (1-based) of `request_id` returned.
fn assert_delivered(collector: &FaultCollector, emu: &Emulator, request_id: &str, n: usize) {
    let context = || {
        format!(
            "requests:\n{}\nextension:\n{}",
            collector.summary(),
            emu.output()
        )
    };
    let xray = Xray::for_request(request_id);
    let spans = collector.spans();
    let invocation_id =
        |s: &Span| attr_str(&s.attributes, "faas.invocation_id") == Some(request_id);

    // The bridge's invocation span takes the X-Ray Parent as its id (xray-parent mode).
    let invocation = one_span(&spans, "invocation span", |s| {
        s.kind == SpanKind::Server as i32 && invocation_id(s)
    });
    assert_eq!(hex(&invocation.trace_id), xray.trace_id, "{}", context());
    assert_eq!(
        hex(&invocation.span_id),
        xray.parent,
        "invocation span id = the X-Ray Parent (xray-parent mode): {}",
        context()
    );

    // The function's span is nested in it: same trace, parent = the invocation span.
    let function = one_span(&spans, "function span", |s| {
        s.name == "handle order" && invocation_id(s)
    });
    assert_eq!(function.kind, SpanKind::Internal as i32);
    assert_eq!(hex(&function.trace_id), xray.trace_id, "{}", context());
    assert_eq!(
        hex(&function.parent_span_id),
        hex(&invocation.span_id),
        "the function's span is a child of the invocation span"
    );
    assert!(function.end_time_unix_nano >= function.start_time_unix_nano);

    // Its log record carries that trace and span.
    let text = format!("order {request_id} handled");
    let records: Vec<_> = collector
        .log_records()
        .into_iter()
        .filter(|r| body(r) == text)
        .collect();
    assert_eq!(records.len(), 1, "one log record {text:?}: {records:#?}");
    let record = &records[0];
    assert_eq!(hex(&record.trace_id), xray.trace_id);
    assert_eq!(hex(&record.span_id), hex(&function.span_id));
    assert_eq!(record.severity_text, "INFO");
    assert_eq!(
        attr_str(&record.attributes, "faas.invocation_id"),
        Some(request_id)
    );

    // One count per invocation so far, each delivered once.
    assert_eq!(orders_handled(collector), n as i64, "{}", context());

    // The function's resource, once per signal per invocation, enriched by the bridge with the
    // Lambda attributes it did not set, keeping the service name it did set.
    let resources: Vec<_> = collector
        .resources()
        .into_iter()
        .filter(|r| attr_str(&r.attributes, "service.name") == Some(SERVICE))
        .collect();
    assert_eq!(
        resources.len(),
        3 * n,
        "traces, logs and metrics once per invocation: {}",
        context()
    );
    for r in &resources {
        assert_eq!(attr_str(&r.attributes, "cloud.provider"), Some("aws"));
        assert_eq!(
            attr_str(&r.attributes, "cloud.platform"),
            Some("aws_lambda")
        );
        assert_eq!(attr_str(&r.attributes, "cloud.region"), Some("eu-west-1"));
        assert_eq!(attr_str(&r.attributes, "faas.name"), Some("orders-api"));
        assert!(
            matches!(
                attr(&r.attributes, "faas.max_memory"),
                Some(AV::IntValue(_))
            ),
            "{r:?}"
        );
    }

    // Nothing arrived twice, the bridge's own spans included.
    let mut ids: Vec<(Vec<u8>, Vec<u8>)> = spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "a span arrived twice: {spans:#?}");
}

/// Runs the bridge with the function exporting over `protocol` (`grpc` or `http/protobuf`):
/// two invocations with a freeze between them, checked at the collector right after each.
async fn function_nested_in_the_invocation(protocol: &str) {
    let binary = example_binary(); // before anything starts: fails fast when not built
    let collector = FaultCollector::start().await;
    let (grpc_port, http_port) = (free_port(), free_port());
    let emu = start_initialized(EmulatorOptions {
        freeze_between_invocations: true,
        extra_env: env(&[
            // Lambda gives the function and the extension one environment: the standard
            // variable points at the bridge, the bridge's own one at the collector.
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("http://127.0.0.1:{http_port}"),
            ),
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT",
                &collector.http_endpoint(),
            ),
            ("LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID", "xray-parent"),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ])
        .into_iter()
        .chain(receiver_env(grpc_port, http_port))
        .collect(),
        ..EmulatorOptions::default()
    })
    .await;
    let port = if protocol == "grpc" {
        grpc_port
    } else {
        http_port
    };
    let mut function =
        RustFunction::start(&binary, &format!("http://127.0.0.1:{port}"), protocol).await;

    for n in 1..=2 {
        let rid = new_request_id();
        let xray = Xray::for_request(&rid);
        let spec = InvokeSpec {
            request_id: rid.clone(),
            trace_header: Some(xray.header.clone()),
            // The emulated runtime reports the handler done after this; the example's
            // handler has flushed long before.
            handler_duration: Duration::from_millis(1500),
            timeout: Duration::from_secs(10),
            ..InvokeSpec::default()
        };
        let (outcome, ()) = tokio::join!(emu.invoke(spec), async {
            handed_out(&emu, &rid).await;
            function.invoke(&rid, &xray.header).await;
        });
        outcome.unwrap_or_else(|e| panic!("{protocol} invocation {n}: {e}\n{}", emu.output()));
        assert!(emu.is_frozen(), "frozen right after /next");
        // Nothing has thawed since /next: it must be at the collector already.
        assert_delivered(&collector, &emu, &rid, n);
    }
    function.stop().await;
    spin_down(&emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_function_over_grpc_is_nested_in_the_invocation_span() {
    function_nested_in_the_invocation("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_function_over_http_is_nested_in_the_invocation_span() {
    function_nested_in_the_invocation("http/protobuf").await;
}
