//! Runs the real `lambda-otel-bridge` binary in an emulated Lambda sandbox,
//! drives five invocations through it (cold start, warm, JSON logs, an error,
//! a timeout) with a function that also sends its own OTLP to the bridge's
//! local receiver, and prints what arrived over OTLP.
//!
//! ```sh
//! cargo build && cargo run --example local-lambda          # debug build: the quickest
//! cargo build --release && cargo run --release --example local-lambda
//! ```
//!
//! Your `LAMBDA_OTEL_BRIDGE_*`, `OTEL_*` and `AWS_LAMBDA_*` variables reach the
//! extension as they would on Lambda (the run prints which ones the demo sets
//! itself), e.g. `LAMBDA_OTEL_BRIDGE_PLATFORM_LOG_LINES=true cargo run
//! --example local-lambda` adds the CloudWatch-style `START` / `END` /
//! `REPORT` lines. Without a collector of yours the telemetry goes to an OTLP
//! receiver embedded in this program, which prints it; with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (and `OTEL_EXPORTER_OTLP_PROTOCOL`) set it
//! goes to that collector instead (rotel, an OpenTelemetry Collector, ...).

#[path = "../tests/support/emulator/mod.rs"]
mod emulator;
#[path = "local-lambda/environment.rs"]
mod environment;
#[path = "local-lambda/function.rs"]
mod function;
#[path = "../tests/support/otlp.rs"]
mod otlp;
#[path = "local-lambda/report.rs"]
mod report;

use std::time::{Duration, Instant, SystemTime};

use emulator::{
    extension_binary, iso8601, new_request_id, Emulator, EmulatorOptions, InvokeOutcome, InvokeSpec,
};
use environment::{Plan, PASSED_THROUGH};
use function::{Function, Handled};
use mock_collector::{MockCollector, MockServer, Protocol, ServerHandle};
use report::{Received, Step};
use serde_json::{json, Value};

/// One invocation of the workload.
struct Invocation {
    label: &'static str,
    /// The invocation has an X-Ray header (active tracing).
    xray: bool,
    /// The function sends its own span, log record and counter.
    instrumented: bool,
    status: &'static str,
    error_type: Option<&'static str>,
    handler: Duration,
    /// The runtime's log lines, from the request id and the current time.
    logs: fn(&str, &str) -> Vec<Value>,
}

fn workload() -> Vec<Invocation> {
    vec![
        Invocation {
            label: "cold start, Python logs, X-Ray traced",
            xray: true,
            instrumented: true,
            status: "success",
            error_type: None,
            handler: Duration::from_millis(60),
            logs: |rid, ts| {
                vec![
                    json!(format!("[INFO]\t{ts}\t{rid}\tcreated order 4711\n")),
                    json!(format!("[WARNING]\t{ts}\t{rid}\tstock low for sku 42\n")),
                ]
            },
        },
        Invocation {
            label: "warm, Node.js logs",
            xray: true,
            instrumented: true,
            status: "success",
            error_type: None,
            handler: Duration::from_millis(50),
            logs: |rid, ts| vec![json!(format!("{ts}\t{rid}\tINFO\tprocessing batch of 3"))],
        },
        Invocation {
            label: "warm, JSON log format",
            xray: true,
            instrumented: true,
            status: "success",
            error_type: None,
            handler: Duration::from_millis(50),
            logs: |rid, ts| {
                vec![
                    json!({"timestamp": ts, "level": "DEBUG", "message": "cache hit", "requestId": rid, "key": "user:7"}),
                ]
            },
        },
        Invocation {
            label: "error with a stack trace",
            xray: true,
            instrumented: true,
            status: "error",
            error_type: Some("TypeError"),
            handler: Duration::from_millis(50),
            logs: |rid, ts| {
                vec![json!(format!(
                    "{ts}\t{rid}\tERROR\tInvoke Error \tTypeError: cannot read property 'id'\n    at handler (/var/task/index.js:12:7)"
                ))]
            },
        },
        Invocation {
            label: "timeout, plain print, no X-Ray header (ids derived from the request id)",
            xray: false,
            instrumented: false,
            status: "timeout",
            error_type: None,
            handler: Duration::from_millis(60),
            logs: |_, _| vec![json!("still waiting on the payment service...")],
        },
    ]
}

/// An X-Ray header with a fresh Root and Parent, sampled.
fn xray_header() -> String {
    let hex: String = new_request_id().replace('-', "") + &new_request_id().replace('-', "");
    let epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "Root=1-{epoch:08x}-{};Parent={};Sampled=1",
        &hex[..24],
        &hex[32..48]
    )
}

/// The time the runtime writes into its log lines: now.
fn now() -> String {
    iso8601(SystemTime::now())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binary = extension_binary();
    if !binary.exists() {
        eprintln!(
            "{} not found: run `cargo build` (or `cargo build --release` for --release) first",
            binary.display()
        );
        std::process::exit(1);
    }
    let mut plan = Plan::from_env();
    let embedded = match &plan.external_endpoint {
        Some(_) => None,
        None => {
            let protocol = match plan.protocol.as_str() {
                "grpc" => Protocol::Grpc,
                "http/json" => Protocol::HttpJson,
                _ => Protocol::HttpBinary,
            };
            let server = MockServer::builder()
                .protocol(protocol)
                .port(0)
                .start()
                .await
                .expect("embedded OTLP receiver starts");
            plan.send_to_embedded(format!("http://{}", server.addr()));
            Some(server)
        }
    };

    let mut options = EmulatorOptions {
        function_name: "orders-api".into(),
        inherit_env: PASSED_THROUGH.iter().map(|p| p.to_string()).collect(),
        extra_env: plan.extra_env(),
        echo_output: true,
        ..EmulatorOptions::default()
    };
    // The platform's events describe the function your variables describe.
    if let Some(v) = plan.yours("AWS_LAMBDA_FUNCTION_NAME") {
        options.function_name = v.into();
    }
    if let Some(v) = plan.yours("AWS_LAMBDA_FUNCTION_VERSION") {
        options.function_version = v.into();
    }
    if let Some(mb) = plan
        .yours("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .and_then(|v| v.parse().ok())
    {
        options.memory_mb = mb;
    }
    if let Some(v) = plan.yours("AWS_LAMBDA_INITIALIZATION_TYPE") {
        options.initialization_type = v.into();
    }
    let function_name = options.function_name.clone();
    println!(
        "emulated function: {function_name} ({}, {} MB, {}); AWS_LAMBDA_FUNCTION_NAME, _VERSION and _MEMORY_SIZE change it",
        options.function_version, options.memory_mb, options.region
    );

    let emu = Emulator::start(&binary, "lambda-otel-bridge", options).await;
    plan.print(&emu.runtime_api());
    match &plan.external_endpoint {
        Some(endpoint) => println!("sending telemetry to {endpoint} ({})", plan.protocol),
        None => println!(
            "sending telemetry to the embedded receiver ({})",
            plan.protocol
        ),
    }

    println!("\n== run");
    let init = emu
        .init(
            vec![json!(format!(
                "{}\tundefined\tINFO\tloading configuration",
                now()
            ))],
            Duration::from_secs(10),
        )
        .await
        .expect("the extension initialises");
    println!(
        "init: registered after {:?}, first /next after {:?}",
        init.registered_at, init.first_next_at
    );

    let mut function = plan
        .receiver_http
        .map(|addr| Function::new(addr, &function_name));
    if function.is_none() {
        println!("the bridge's OTLP receiver is off: the function sends nothing of its own");
    }
    let workload = workload();
    let total = workload.len();
    let mut steps = Vec::new();
    for (i, (order, inv)) in (4711u32..).zip(workload).enumerate() {
        let request_id = new_request_id();
        let trace_header = inv.xray.then(xray_header);
        let spec = InvokeSpec {
            request_id: request_id.clone(),
            trace_header: trace_header.clone(),
            logs: (inv.logs)(&request_id, &now()),
            handler_duration: inv.handler,
            status: inv.status.into(),
            error_type: inv.error_type.map(Into::into),
            produced_bytes: 42,
            ..InvokeSpec::default()
        };
        let handler = async {
            let (Some(function), Some(header), true) =
                (function.as_mut(), trace_header.as_deref(), inv.instrumented)
            else {
                return Ok(());
            };
            handed_out(&emu, &request_id).await?;
            function
                .handle(Handled {
                    request_id: &request_id,
                    trace_header: header,
                    order,
                    error: inv
                        .error_type
                        .map(|_| "TypeError: cannot read property 'id'"),
                })
                .await
        };
        let (outcome, handled) = tokio::join!(emu.invoke(spec), handler);
        let outcome = outcome.expect("invocation completes");
        if let Err(e) = handled {
            println!("  the function's own telemetry was not accepted: {e}");
        }
        println!(
            "[{}/{total}] {}: {}",
            i + 1,
            inv.label,
            next_after_runtime_done(&outcome)
        );
        steps.push(Step {
            label: inv.label.to_string(),
            request_id,
            status: inv.status.to_string(),
        });
    }
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    println!(
        "shutdown: exited by itself = {}, exit code {:?}, after {:?}",
        out.exited_by_itself, out.exit_code, out.elapsed
    );

    match embedded {
        None => println!(
            "\ntelemetry was sent to {}; look there.",
            plan.external_endpoint
                .as_deref()
                .unwrap_or("your collector")
        ),
        Some(server) => {
            let received = settle(&server).await;
            let function_spans = function.map(|f| f.span_ids).unwrap_or_default();
            report::print(&received, &steps, &function_spans);
        }
    }
    print_next_steps();
}

/// How long the extension held the function after its runtime finished.
fn next_after_runtime_done(o: &InvokeOutcome) -> String {
    match o.post_runtime {
        Some(d) => format!(
            "/next {:.2} ms after runtimeDone (exported before the freeze)",
            d.as_secs_f64() * 1000.0
        ),
        None => "background export: /next before runtimeDone".into(),
    }
}

/// Waits until the INVOKE for `request_id` has been handed out: the runtime
/// runs the handler from then on.
async fn handed_out(emu: &Emulator, request_id: &str) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(5);
    while !emu
        .handed_out_events()
        .iter()
        .any(|(_, e)| e["requestId"] == request_id)
    {
        if Instant::now() > until {
            return Err(format!("INVOKE {request_id} was never handed out"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// What the embedded receiver holds once nothing more has come for 200 ms
/// (the bridge exported everything before it exited; this covers requests
/// still being read).
async fn settle(server: &ServerHandle) -> Received {
    let count = |c: &MockCollector| c.log_count() + c.span_count() + c.metric_count();
    let until = Instant::now() + Duration::from_secs(3);
    let mut last = server.with_collector(count).await;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = server.with_collector(count).await;
        if now == last {
            break;
        }
        last = now;
    }
    server
        .with_collector(|c| Received {
            spans: c
                .spans()
                .iter()
                .map(|s| (s.resource_attrs().to_vec(), s.span().clone()))
                .collect(),
            logs: c
                .logs()
                .iter()
                .map(|l| (l.resource_attrs().to_vec(), l.log_record().clone()))
                .collect(),
            metrics: c.metrics().iter().map(|m| m.metric().clone()).collect(),
        })
        .await
}

/// `rotel-agent` as scripts/install-test-deps.sh installs it, if it is there.
fn rotel_agent() -> Option<std::path::PathBuf> {
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|d| {
        let agent = d.path().join("site-packages/rotel/rotel-agent");
        agent.exists().then_some(agent)
    })
}

fn print_next_steps() {
    let rotel = match rotel_agent() {
        Some(agent) => agent.display().to_string(),
        None => "rotel-agent (scripts/install-test-deps.sh installs it in .venv)".into(),
    };
    println!(
        "\n== next steps
- your collector: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example local-lambda
  (gRPC: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc)
- the bundled rotel collector as that target, printing what it receives:
  {rotel} start \\
    --otlp-grpc-endpoint 127.0.0.1:4317 --otlp-http-endpoint 127.0.0.1:4318 --exporter blackhole \\
    --debug-log traces --debug-log metrics --debug-log logs --debug-log-verbosity detailed
- Jaeger, Tempo, Loki, Prometheus and Grafana: cd collector-config && docker compose up -d
  (README, \"Seeing the data\")
- deploy: scripts/build-layer.sh x86_64, then examples/deploy/ (AWS SAM or Terraform)"
    );
}
