//! Interop test against a Lambda emulator written by someone else: the
//! third-party `lambda-simulator` crate (Runtime, Extensions and Telemetry
//! APIs) and the `mock-collector` crate (an in-process OTLP receiver).
//!
//! The real extension binary is spawned by the simulator's own process support
//! (`Simulator::spawn_process_with_config`, which injects the Lambda
//! environment variables and kills the child when the handle is dropped, so a
//! failed assertion never leaves it running). The test plays the function's
//! runtime over the Runtime API.
//!
//! `lambda-simulator` 0.2 generates the platform events itself
//! (`platform.start`, `platform.runtimeDone`, `platform.report`, ...) and
//! delivers them to the subscribed destination, rewriting `sandbox.localdomain`
//! to `127.0.0.1`. It has no way to produce `function` (or `extension`) log
//! events: it never captures a runtime's stdout and its event broadcaster is
//! crate-private. So the "function" writes its log lines the way Lambda
//! delivers them: as Telemetry API `function` events POSTed to the extension's
//! destination (`/telemetry` on the listener port, fixed through
//! `LAMBDA_OTEL_BRIDGE_TELEMETRY_PORT`), during the invocation, before the
//! runtime posts its response.
//!
//! Set `LAMBDA_OTEL_BRIDGE_LOG_LEVEL=debug` to see the extension's own
//! diagnostics (its stderr is inherited).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_simulator::process::{ManagedProcess, ProcessConfig, ProcessRole};
use lambda_simulator::{EventType, InvocationStatus, ShutdownReason, Simulator};
use mock_collector::{MockCollector, MockServer, Protocol};
use serde_json::{json, Value};

#[path = "support/otlp.rs"]
mod otlp;
use otlp::hex;

const BINARY: &str = env!("CARGO_BIN_EXE_lambda-otel-bridge");
const EXTENSION_NAME: &str = "lambda-otel-bridge";
const FUNCTION_NAME: &str = "simulated-orders";
/// Upper bound of every single step (HTTP call, registration, ...).
const STEP: Duration = Duration::from_secs(10);
/// How long the extension may wait for `platform.runtimeDone` before flushing
/// anyway. Set well above `RUNTIME_DONE_BOUND` so that a quick `/next` proves
/// the simulator's `platform.runtimeDone` reached and was understood by it.
const INVOKE_WAIT_MS: u64 = 10_000;
const RUNTIME_DONE_BOUND: Duration = Duration::from_secs(5);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct HttpResponse {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// One HTTP/1.1 request, bounded by `STEP`.
async fn http(client: &HttpClient, method: &str, url: &str, body: String) -> HttpResponse {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let call = async {
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(HttpResponse {
            status,
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(STEP, call).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("{method} {url}: {e}"),
        Err(_) => panic!("{method} {url}: no answer within {STEP:?}"),
    }
}

/// Polls `cond` until it holds; fails on timeout or if the extension exits.
async fn wait_for<F, Fut>(what: &str, ext: &mut ManagedProcess, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if let Ok(Some(status)) = ext.try_wait() {
            panic!("the extension exited ({status}) while the test waited for {what}");
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago (the extension binds it on 0.0.0.0).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Now as RFC 3339 UTC with milliseconds, as Lambda writes times.
fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// `Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;...` → the 32 hex digits of the
/// OpenTelemetry trace id.
fn trace_id_hex(xray_header: &str) -> String {
    let root = xray_header
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Root="))
        .unwrap_or_else(|| panic!("no Root in trace header {xray_header:?}"));
    let parts: Vec<&str> = root.split('-').collect();
    assert_eq!(parts.len(), 3, "malformed Root {root:?}");
    format!("{}{}", parts[1], parts[2]).to_ascii_lowercase()
}

/// A log line the "function" wrote: what Lambda delivers, and what the
/// extension should turn it into.
struct FunctionLine {
    record: String,
    body: String,
}

/// Checks that each line arrived exactly once, with its body, the
/// invocation's request id and trace id, and the function's resource.
fn check_lines(c: &MockCollector, lines: &[FunctionLine], request_id: &str, trace_hex: &str) {
    for line in lines {
        c.expect_log_with_body(line.body.as_str())
            .with_attributes([
                ("faas.invocation_id", request_id),
                ("aws.lambda.log.source", "function"),
            ])
            .with_resource_attributes([("faas.name", FUNCTION_NAME)])
            .assert_count(1);
        for rec in c.expect_log_with_body(line.body.as_str()).get_all() {
            assert_eq!(
                hex(&rec.log_record().trace_id),
                trace_hex,
                "trace id of {:?} should be the invocation's X-Ray Root",
                line.body
            );
        }
    }
}

fn lines_arrived(c: &MockCollector, lines: &[FunctionLine]) -> bool {
    lines
        .iter()
        .all(|l| c.expect_log_with_body(l.body.as_str()).count() >= 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_works_against_lambda_simulator() {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());

    // --- OTLP receiver (HTTP/protobuf, OS-assigned port) ---------------------------------
    let collector = MockServer::builder()
        .protocol(Protocol::HttpBinary)
        .port(0)
        .start()
        .await
        .expect("start mock collector");
    let otlp_endpoint = format!("http://{}", collector.addr());

    // --- Lambda simulator ------------------------------------------------------------------
    let simulator = Simulator::builder()
        .function_name(FUNCTION_NAME)
        .invocation_timeout(Duration::from_secs(30))
        // Longer than the extension's own runtimeDone wait, so that the simulator
        // never emits platform.report before the extension is really done.
        .extension_ready_timeout(Duration::from_secs(20))
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .await
        .expect("start lambda-simulator");
    simulator.enable_telemetry_capture().await;
    let runtime_api = format!("http://{}", simulator.addr());
    println!("simulator at {runtime_api}, collector at {otlp_endpoint}");

    // --- The extension, spawned by the simulator -------------------------------------------
    let telemetry_port = free_port();
    let config = ProcessConfig::new(BINARY, ProcessRole::Extension)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp_endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env(
            "LAMBDA_OTEL_BRIDGE_TELEMETRY_PORT",
            telemetry_port.to_string(),
        )
        .env(
            "LAMBDA_OTEL_BRIDGE_INVOKE_WAIT_MS",
            INVOKE_WAIT_MS.to_string(),
        )
        .inherit_stdio(true);
    let mut extension = simulator
        .spawn_process_with_config(config)
        .expect("spawn the extension");
    println!("extension pid {}", extension.pid());

    // (1) It registered, under its file name, for INVOKE and SHUTDOWN.
    wait_for("registration", &mut extension, STEP, || async {
        simulator.extension_count().await >= 1
    })
    .await;
    let registered = simulator.get_registered_extensions().await;
    assert_eq!(registered.len(), 1, "exactly one extension registers");
    let ext = &registered[0];
    assert_eq!(ext.name, EXTENSION_NAME);
    assert!(
        ext.events.contains(&EventType::Invoke) && ext.events.contains(&EventType::Shutdown),
        "registered for {:?}",
        ext.events
    );

    // Its first /next ends its init; it subscribes before that.
    let ext_id = ext.id.clone();
    wait_for(
        "the extension's first /next",
        &mut extension,
        STEP,
        || async { simulator.first_next_poll_at(&ext_id).await.is_some() },
    )
    .await;

    // (2) It subscribed to the Telemetry API (the simulator records a
    // platform.telemetrySubscription event for each accepted PUT /telemetry).
    let subs = simulator
        .get_telemetry_events_by_type("platform.telemetrySubscription")
        .await;
    assert_eq!(subs.len(), 1, "one accepted subscription: {subs:?}");
    println!("subscription: {}", subs[0].record);
    assert_eq!(subs[0].record["state"], "Subscribed");
    let types: Vec<&str> = subs[0].record["types"]
        .as_array()
        .expect("types array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in ["platform", "function", "extension"] {
        assert!(types.contains(&t), "subscribed types {types:?} lack {t}");
    }

    // --- Two invocations; the test is the runtime ------------------------------------------
    let destination = format!("http://127.0.0.1:{telemetry_port}/telemetry");
    let mut invocations = Vec::new();
    for n in 0..2 {
        let request_id = simulator.enqueue_payload(json!({ "order": n })).await;

        let next = http(
            &client,
            "GET",
            &format!("{runtime_api}/2018-06-01/runtime/invocation/next"),
            String::new(),
        )
        .await;
        assert_eq!(next.status, 200, "runtime /next");
        assert_eq!(
            next.header("Lambda-Runtime-Aws-Request-Id").as_deref(),
            Some(request_id.as_str())
        );
        let trace_header = next
            .header("Lambda-Runtime-Trace-Id")
            .expect("Lambda-Runtime-Trace-Id header");
        let trace_hex = trace_id_hex(&trace_header);

        // The handler runs for a moment. On Lambda, function lines reach the
        // extension in the same ordered stream as `platform.start`; here they
        // bypass the simulator, so give its delivery (every `timeoutMs` = 25 ms)
        // time to hand over `platform.start` first, as a bare print line is
        // attributed to the invocation in progress.
        tokio::time::sleep(Duration::from_millis(200)).await;

        // The handler logs: a Python-formatted line and a bare print.
        let lines = vec![
            FunctionLine {
                record: format!(
                    "[INFO]\t{}\t{request_id}\tprocessing order {n}\n",
                    rfc3339_now()
                ),
                body: format!("processing order {n}"),
            },
            FunctionLine {
                record: format!("plain print from invocation {n}\n"),
                body: format!("plain print from invocation {n}"),
            },
        ];
        let batch: Vec<Value> = lines
            .iter()
            .map(|l| json!({ "time": rfc3339_now(), "type": "function", "record": l.record }))
            .collect();
        let delivered = http(
            &client,
            "POST",
            &destination,
            Value::Array(batch).to_string(),
        )
        .await;
        assert_eq!(
            delivered.status,
            200,
            "function log batch: {}",
            String::from_utf8_lossy(&delivered.body)
        );

        let runtime_done_at = Instant::now();
        let resp = http(
            &client,
            "POST",
            &format!("{runtime_api}/2018-06-01/runtime/invocation/{request_id}/response"),
            json!({ "ok": n }).to_string(),
        )
        .await;
        assert_eq!(resp.status, 202, "runtime response");
        let state = simulator
            .wait_for_invocation_complete(&request_id, STEP)
            .await
            .expect("invocation completes");
        assert_eq!(state.status, InvocationStatus::Success);

        // The extension calls /next again once it is done with the invocation.
        simulator
            .wait_for_extensions_ready(&request_id, Duration::from_secs(20))
            .await
            .expect("the extension polls /next after the invocation");
        let overhead = runtime_done_at.elapsed();
        println!("invocation {n} ({request_id}): extension done {overhead:?} after the response");
        assert!(
            overhead < RUNTIME_DONE_BOUND,
            "the extension took {overhead:?} to call /next after the runtime's response; it waits \
             up to {INVOKE_WAIT_MS} ms for platform.runtimeDone, so the simulator's runtimeDone \
             apparently never reached it"
        );

        // (3) The lines were exported before that /next (on Lambda the sandbox
        // may freeze right after it).
        let before_next = collector.with_collector(|c| lines_arrived(c, &lines)).await;
        if !before_next {
            let later = collector
                .wait_until(|c| lines_arrived(c, &lines), Duration::from_secs(5))
                .await;
            let dump = collector.with_collector(|c| c.dump()).await;
            panic!(
                "invocation {n}: log lines not at the collector when the extension called /next \
                 (arrived later: {}); collector: {dump}",
                later.is_ok()
            );
        }
        collector
            .with_collector(|c| check_lines(c, &lines, &request_id, &trace_hex))
            .await;
        invocations.push((request_id, trace_hex, lines));
    }

    // platform.report of the last invocation is produced once the extension
    // polled /next; let it be emitted so that it is flushed before SHUTDOWN.
    wait_for(
        "two platform.report events",
        &mut extension,
        STEP,
        || async {
            simulator
                .get_telemetry_events_by_type("platform.report")
                .await
                .len()
                >= 2
        },
    )
    .await;
    for kind in ["platform.start", "platform.runtimeDone"] {
        let n = simulator.get_telemetry_events_by_type(kind).await.len();
        assert_eq!(n, 2, "{kind} events emitted by the simulator");
    }

    // --- SHUTDOWN --------------------------------------------------------------------------
    tokio::time::timeout(
        Duration::from_secs(20),
        simulator.graceful_shutdown(ShutdownReason::Spindown),
    )
    .await
    .expect("graceful shutdown of the simulator");

    // (4) The extension exits by itself, with status 0.
    let deadline = Instant::now() + STEP;
    let status = loop {
        match extension.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => panic!("the extension did not exit within {STEP:?} of SHUTDOWN"),
        }
    };
    assert_eq!(
        status.code(),
        Some(0),
        "extension exit status after SHUTDOWN: {status}"
    );

    // Nothing was duplicated by the final flush.
    collector
        .with_collector(|c| {
            for (request_id, trace_hex, lines) in &invocations {
                check_lines(c, lines, request_id, trace_hex);
            }
            let function_logs = c
                .expect_log()
                .with_attributes([("aws.lambda.log.source", "function")])
                .count();
            assert_eq!(function_logs, 4, "function log records: {}", c.dump());
        })
        .await;
    collector.shutdown().await.expect("collector shutdown");
}
