//! Self-test of the Lambda platform emulator in `tests/support/emulator/`, without the real
//! extension: the child is a stand-in shell script (`exec sleep 60`), and the test itself plays
//! the extension by calling the Runtime API over HTTP and running a telemetry listener ("sink").

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use support::emulator::{
    http_request, inherited_env, iso8601, new_request_id, process_state, span_id_for,
    telemetry_event, unshare_available, Emulator, EmulatorOptions, HttpResponse, InvokeSpec,
};
use support::prereq::missing;
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(5);
const EXT_NAME: &str = "stand-in-extension";

// ---------------------------------------------------------------------------------------------
// Test scaffolding: stand-in child, fake extension client, telemetry sink
// ---------------------------------------------------------------------------------------------

/// A shell script used as the "extension binary"; removed on drop.
struct StandIn {
    dir: PathBuf,
    path: PathBuf,
}

impl StandIn {
    fn new(body: &str) -> StandIn {
        let dir = std::env::temp_dir().join(format!("emulator-selftest-{}", new_request_id()));
        std::fs::create_dir_all(&dir).expect("create stand-in dir");
        let path = dir.join("stand-in.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod stand-in");
        StandIn { dir, path }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The test playing the extension against the Runtime API.
#[derive(Clone)]
struct FakeExtension {
    base: String,
    id: String,
}

impl FakeExtension {
    fn new(emu: &Emulator) -> FakeExtension {
        FakeExtension {
            base: format!("http://{}", emu.runtime_api()),
            id: String::new(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> HttpResponse {
        let url = format!("{}{path}", self.base);
        http_request(method, &url, headers, body, STEP)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn register(&mut self, events: &[&str]) -> HttpResponse {
        let body = json!({ "events": events }).to_string();
        let headers = [
            ("Lambda-Extension-Name", EXT_NAME),
            ("Lambda-Extension-Accept-Feature", "accountId"),
            ("Content-Type", "application/json"),
        ];
        let response = self
            .call("POST", "/2020-01-01/extension/register", &headers, body)
            .await;
        if let Some(id) = response.header("lambda-extension-identifier") {
            self.id = id.to_string();
        }
        response
    }

    async fn subscribe(&self, body: &Value) -> HttpResponse {
        let headers = [("Lambda-Extension-Identifier", self.id.as_str())];
        self.call("PUT", "/2022-07-01/telemetry", &headers, body.to_string())
            .await
    }

    /// Long-poll `/next` (bounded, so a broken emulator cannot hang the test).
    async fn next(&self) -> Result<Value, String> {
        let url = format!("{}/2020-01-01/extension/event/next", self.base);
        let headers = [("Lambda-Extension-Identifier", self.id.as_str())];
        let response = http_request("GET", &url, &headers, "", Duration::from_secs(30)).await?;
        if response.status != 200 {
            return Err(format!(
                "/next answered {}: {}",
                response.status, response.body
            ));
        }
        if response
            .header("lambda-extension-event-identifier")
            .is_none()
        {
            return Err("/next response lacks Lambda-Extension-Event-Identifier".into());
        }
        Ok(response.json())
    }

    /// Calls `/next` in the background (the first call ends init).
    fn park_in_next(&self) -> tokio::task::JoinHandle<Result<Value, String>> {
        let this = self.clone();
        tokio::spawn(async move { this.next().await })
    }
}

fn subscribe_body(port: u16, types: &[&str], timeout_ms: u64) -> Value {
    json!({
        "schemaVersion": "2025-01-29",
        "types": types,
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": timeout_ms},
        "destination": {"protocol": "HTTP", "URI": format!("http://sandbox.localdomain:{port}/telemetry")},
    })
}

#[derive(Default)]
struct SinkState {
    batches: Vec<SinkBatch>,
    fail_next: usize,
    rejected: usize,
}

struct SinkBatch {
    at: Instant,
    events: Vec<Value>,
    bytes: usize,
    content_type: Option<String>,
}

/// A telemetry listener that records accepted batches. Answers 400 for non-JSON bodies, 500 for
/// the next `fail_next` batches and for any batch containing a `"poison"` record.
#[derive(Clone)]
struct Sink {
    addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
}

impl Sink {
    async fn start(ip: Ipv4Addr) -> Sink {
        let state = Arc::new(Mutex::new(SinkState::default()));
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        let app = Router::new()
            .route("/telemetry", post(sink_handler))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink { addr, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().expect("sink lock")
    }

    fn events(&self) -> Vec<Value> {
        self.lock()
            .batches
            .iter()
            .flat_map(|b| b.events.clone())
            .collect()
    }

    fn types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn find(&self, kind: &str, request_id: &str) -> Option<Value> {
        self.events()
            .into_iter()
            .find(|e| e["type"] == kind && e["record"]["requestId"] == request_id)
    }

    async fn wait_for(&self, kind: &str, request_id: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(event) = self.find(kind, request_id) {
                return Some(event);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

async fn sink_handler(
    State(state): State<Arc<Mutex<SinkState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Ok(events) = serde_json::from_slice::<Vec<Value>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut st = state.lock().expect("sink lock");
    if st.fail_next > 0 || events.iter().any(|e| e["record"] == "poison") {
        st.fail_next = st.fail_next.saturating_sub(1);
        st.rejected += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    st.batches.push(SinkBatch {
        at: Instant::now(),
        events,
        bytes: body.len(),
        content_type,
    });
    StatusCode::OK
}

/// Starts an emulator around `exec sleep 60` and registers the fake extension.
async fn start_registered(
    opts: EmulatorOptions,
    events: &[&str],
) -> (Emulator, FakeExtension, StandIn) {
    let stand_in = StandIn::new("exec sleep 60");
    let emu = Emulator::start(&stand_in.path, EXT_NAME, opts).await;
    let mut ext = FakeExtension::new(&emu);
    let response = ext.register(events).await;
    assert_eq!(response.status, 200, "register: {}", response.body);
    (emu, ext, stand_in)
}

/// Registered, subscribed to `sink` and past init (the fake extension waits in `/next`).
async fn start_initialized(
    opts: EmulatorOptions,
    sink: &Sink,
    types: &[&str],
    timeout_ms: u64,
) -> (Emulator, FakeExtension, StandIn) {
    let (emu, ext, stand_in) = start_registered(opts, &["INVOKE", "SHUTDOWN"]).await;
    let response = ext
        .subscribe(&subscribe_body(sink.addr.port(), types, timeout_ms))
        .await;
    assert_eq!(response.status, 200, "subscribe: {}", response.body);
    let _parked = ext.park_in_next();
    emu.init(vec![json!("init log line")], STEP)
        .await
        .expect("init");
    (emu, ext, stand_in)
}

fn no_freeze() -> EmulatorOptions {
    EmulatorOptions {
        freeze_between_invocations: false,
        ..EmulatorOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Extensions API
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_next_and_error_routes_follow_the_extensions_api() {
    let stand_in = StandIn::new("exec sleep 60");
    let emu = Emulator::start(&stand_in.path, EXT_NAME, EmulatorOptions::default()).await;
    let mut ext = FakeExtension::new(&emu);

    let missing_name = ext
        .call("POST", "/2020-01-01/extension/register", &[], "{}".into())
        .await;
    assert_eq!(missing_name.status, 400);

    let registered = ext.register(&["INVOKE", "SHUTDOWN"]).await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    assert_eq!(
        ext.id.len(),
        36,
        "identifier header: {:?}",
        registered.headers
    );
    let body = registered.json();
    assert_eq!(body["functionName"], "orders-api");
    assert_eq!(body["functionVersion"], "$LATEST");
    assert_eq!(body["handler"], "index.handler");
    assert_eq!(body["accountId"], "123456789012");
    let registration = emu.registration().expect("registration recorded");
    assert_eq!(registration.name, EXT_NAME);
    assert_eq!(registration.accept_feature.as_deref(), Some("accountId"));
    assert_eq!(registration.events, ["INVOKE", "SHUTDOWN"]);
    assert_eq!(registration.identifier, ext.id);

    let anonymous = FakeExtension {
        id: "bogus".into(),
        ..ext.clone()
    };
    assert!(anonymous.next().await.unwrap_err().contains("403"));
    let no_type = ext
        .call(
            "POST",
            "/2020-01-01/extension/init/error",
            &[("Lambda-Extension-Identifier", &ext.id)],
            "{}".into(),
        )
        .await;
    assert_eq!(no_type.status, 403);
    let headers = [
        ("Lambda-Extension-Identifier", ext.id.as_str()),
        (
            "Lambda-Extension-Function-Error-Type",
            "Extension.ConfigInvalid",
        ),
    ];
    let exit_error = ext
        .call(
            "POST",
            "/2020-01-01/extension/exit/error",
            &headers,
            "{}".into(),
        )
        .await;
    assert_eq!(exit_error.status, 202);

    let parked = ext.park_in_next();
    let init = emu.init(vec![], STEP).await.expect("init");
    assert!(init.first_next_at >= init.registered_at);
    assert_eq!(init.subscribed_at, None);
    let late = ext.register(&["INVOKE"]).await;
    assert_eq!(late.status, 403, "register after init: {}", late.body);

    let outcome = emu.shutdown("spindown", Duration::from_millis(300)).await;
    let event = parked.await.expect("join").expect("SHUTDOWN via /next");
    assert_eq!(event["eventType"], "SHUTDOWN");
    assert_eq!(event["shutdownReason"], "spindown");
    assert!(outcome.killed && !outcome.exited_by_itself, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(128 + libc::SIGKILL));

    let paths: Vec<(String, u16)> = emu
        .calls()
        .iter()
        .map(|c| (c.path.clone(), c.status))
        .collect();
    assert_eq!(
        paths[0],
        ("/2020-01-01/extension/register".to_string(), 400)
    );
    assert_eq!(
        paths[1],
        ("/2020-01-01/extension/register".to_string(), 200)
    );
    assert!(paths.contains(&("/2020-01-01/extension/event/next".to_string(), 200)));
    let register_call = &emu.calls()[1];
    assert_eq!(
        register_call.header("lambda-extension-name"),
        Some(EXT_NAME)
    );
    assert!(register_call.body.contains("SHUTDOWN"));
}

/// A named way to break a valid subscribe body.
type Mutation = (&'static str, fn(&mut Value));

#[tokio::test]
async fn subscribe_validates_requests_and_closes_after_init() {
    let (emu, ext, _stand_in) = start_registered(no_freeze(), &["INVOKE", "SHUTDOWN"]).await;
    let good = subscribe_body(4243, &["platform", "function"], 100);

    let anonymous = FakeExtension {
        id: String::new(),
        ..ext.clone()
    };
    assert_eq!(anonymous.subscribe(&good).await.status, 403);

    let mutations: [Mutation; 10] = [
        ("timeoutMs below 25", |v| {
            v["buffering"]["timeoutMs"] = json!(10)
        }),
        ("maxItems below 1000", |v| {
            v["buffering"]["maxItems"] = json!(999)
        }),
        ("maxBytes above 1 MiB", |v| {
            v["buffering"]["maxBytes"] = json!(2_000_000)
        }),
        ("unknown schema", |v| {
            v["schemaVersion"] = json!("2021-01-01")
        }),
        ("empty types", (|v| v["types"] = json!([]))),
        ("unknown type", |v| {
            v["types"] = json!(["platform", "bogus"])
        }),
        ("TCP protocol", |v| {
            v["destination"]["protocol"] = json!("TCP")
        }),
        ("wrong host", |v| {
            v["destination"]["URI"] = json!("http://localhost:4243/")
        }),
        ("no port", |v| {
            v["destination"]["URI"] = json!("http://sandbox.localdomain/x")
        }),
        ("https", |v| {
            v["destination"]["URI"] = json!("https://sandbox:4243/")
        }),
    ];
    for (what, mutate) in mutations {
        let mut body = good.clone();
        mutate(&mut body);
        let response = ext.subscribe(&body).await;
        assert_eq!(response.status, 400, "{what}: {}", response.body);
        assert_eq!(response.json()["errorType"], "ValidationError", "{what}");
    }
    assert!(emu.subscription().is_none());

    let mut defaults = good.clone();
    defaults
        .as_object_mut()
        .expect("object")
        .remove("buffering");
    defaults["destination"]["URI"] = json!("http://sandbox:4243");
    let accepted = ext.subscribe(&defaults).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.body, "\"OK\"");
    assert_eq!(emu.subscription(), Some(defaults));

    let _parked = ext.park_in_next();
    let init = emu.init(vec![], STEP).await.expect("init");
    assert!(init.subscribed_at.is_some());
    let late = ext.subscribe(&good).await;
    assert_eq!(late.status, 403);
    assert_eq!(late.json()["errorType"], "Telemetry.SubscriptionClosed");
}

#[tokio::test]
async fn telemetry_not_supported_mode_answers_202() {
    let opts = EmulatorOptions {
        telemetry_supported: false,
        ..no_freeze()
    };
    let (emu, ext, _stand_in) = start_registered(opts, &["SHUTDOWN"]).await;
    let response = ext
        .subscribe(&subscribe_body(4243, &["platform"], 100))
        .await;
    assert_eq!(response.status, 202);
    assert_eq!(
        response.json(),
        json!({"errorType": "Telemetry.NotSupported", "errorMessage": "Telemetry API is not supported"})
    );
    assert!(emu.subscription().is_none());
}

// ---------------------------------------------------------------------------------------------
// Telemetry delivery
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn delivery_batches_by_max_items_and_filters_unsubscribed_types() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST).await;
    let (emu, _ext, _stand_in) =
        start_initialized(no_freeze(), &sink, &["platform", "function"], 100).await;
    emu.wait_delivered(STEP)
        .await
        .expect("init telemetry delivered");
    assert_eq!(
        sink.types(),
        [
            "platform.telemetrySubscription",
            "platform.initStart",
            "function",
            "platform.initRuntimeDone",
            "platform.initReport"
        ]
    );
    let init_start = &sink.events()[1]["record"];
    assert_eq!(init_start["initializationType"], "on-demand");
    assert_eq!(init_start["instanceMaxMemory"], 512 * 1024 * 1024);
    assert!(sink.events()[4]["record"]["metrics"]["durationMs"].is_number());
    let batches_before = sink.lock().batches.len();

    let mut events: Vec<Value> = (0..2500)
        .map(|i| telemetry_event("function", json!(format!("line-{i}"))))
        .collect();
    events.push(telemetry_event("extension", json!("not subscribed")));
    emu.push_events(events).await;
    emu.wait_delivered(Duration::from_secs(10))
        .await
        .expect("delivered");

    let st = sink.lock();
    let new_batches = &st.batches[batches_before..];
    let sizes: Vec<usize> = new_batches.iter().map(|b| b.events.len()).collect();
    assert!(sizes.iter().all(|n| *n <= 1000), "batch sizes {sizes:?}");
    assert!(sizes.len() >= 3, "batch sizes {sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 2500);
    let lines: Vec<&Value> = new_batches
        .iter()
        .flat_map(|b| b.events.iter().map(|e| &e["record"]))
        .collect();
    assert_eq!(lines[0], "line-0");
    assert_eq!(lines[2499], "line-2499");
    assert!(st
        .batches
        .iter()
        .all(|b| b.content_type.as_deref() == Some("application/json")));
    drop(st);
    assert!(!sink.types().contains(&"extension".to_string()));
    assert_eq!(emu.delivered_events().len(), sink.events().len());
}

#[tokio::test]
async fn delivery_respects_max_bytes_and_timeout_ms() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST).await;
    let (emu, _ext, _stand_in) = start_initialized(no_freeze(), &sink, &["function"], 400).await;
    emu.wait_delivered(STEP)
        .await
        .expect("init telemetry delivered");

    let big = "x".repeat(10_000);
    let events = (0..60)
        .map(|_| telemetry_event("function", json!(big)))
        .collect();
    let before = sink.lock().batches.len();
    emu.push_events(events).await;
    emu.wait_delivered(STEP)
        .await
        .expect("big events delivered");
    {
        let st = sink.lock();
        let sizes: Vec<usize> = st.batches[before..].iter().map(|b| b.bytes).collect();
        assert!(
            sizes.len() >= 3,
            "60 x 10 kB must need several 256 KiB batches: {sizes:?}"
        );
        assert!(sizes.iter().all(|b| *b <= 262_144 + 100), "{sizes:?}");
    }

    let before = sink.lock().batches.len();
    let pushed = Instant::now();
    emu.push_events(vec![telemetry_event("function", json!("lonely"))])
        .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(sink.lock().batches.len(), before, "sent before timeoutMs");
    emu.wait_delivered(STEP)
        .await
        .expect("lonely event delivered");
    let arrived = sink.lock().batches[before].at.duration_since(pushed);
    assert!(
        arrived >= Duration::from_millis(380),
        "arrived after {arrived:?}"
    );
    assert!(
        arrived < Duration::from_secs(2),
        "arrived after {arrived:?}"
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_dropped_with_logs_dropped() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST).await;
    let (emu, _ext, _stand_in) =
        start_initialized(no_freeze(), &sink, &["platform", "function"], 25).await;
    emu.wait_delivered(STEP)
        .await
        .expect("init telemetry delivered");

    sink.lock().fail_next = 2;
    let attempts_before = emu.deliveries().len();
    emu.push_events(vec![telemetry_event("function", json!("retried"))])
        .await;
    emu.wait_delivered(STEP)
        .await
        .expect("delivered after retries");
    let statuses: Vec<Option<u16>> = emu.deliveries()[attempts_before..]
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
    assert!(sink.events().iter().any(|e| e["record"] == "retried"));

    let attempts_before = emu.deliveries().len();
    emu.push_events(vec![telemetry_event("function", json!("poison"))])
        .await;
    emu.wait_delivered(Duration::from_secs(10))
        .await
        .expect("dropped and reported");
    let attempts = &emu.deliveries()[attempts_before..];
    let failed = attempts.iter().filter(|d| d.status == Some(500)).count();
    assert_eq!(failed, 6, "1 attempt + 5 retries: {attempts:?}");
    let dropped = sink
        .events()
        .into_iter()
        .find(|e| e["type"] == "platform.logsDropped")
        .expect("platform.logsDropped delivered");
    assert_eq!(dropped["record"]["droppedRecords"], 1);
    assert!(dropped["record"]["droppedBytes"].as_u64() > Some(0));
}

#[tokio::test]
async fn push_raw_returns_the_listener_status() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST).await;
    let (emu, _ext, _stand_in) = start_initialized(no_freeze(), &sink, &["platform"], 25).await;
    assert_eq!(emu.push_raw(b"not json".to_vec()).await, Ok(400));
    assert_eq!(emu.push_raw(b"[]".to_vec()).await, Ok(200));
}

// ---------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------

/// What the fake extension saw: each event from `/next`, plus the sink's event types at that time.
type Seen = (Value, Vec<String>);

/// Plays the extension's event loop: on INVOKE waits until its `platform.runtimeDone` reached the
/// sink, then calls `/next` again; stops after SHUTDOWN.
fn run_fake_extension(ext: FakeExtension, sink: Sink) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok(event) = ext.next().await else { return };
            let _ = tx.send((event.clone(), sink.types()));
            if event["eventType"] != "INVOKE" {
                return;
            }
            let request_id = event["requestId"].as_str().unwrap_or_default();
            sink.wait_for("platform.runtimeDone", request_id, STEP)
                .await;
        }
    });
    rx
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("fake extension event in time")
        .expect("fake extension alive")
}

#[tokio::test]
async fn invocations_freeze_defer_the_report_and_shutdown_kills_at_the_deadline() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST).await;
    let (emu, ext, _stand_in) =
        start_registered(EmulatorOptions::default(), &["INVOKE", "SHUTDOWN"]).await;
    let subscribed = ext
        .subscribe(&subscribe_body(
            sink.addr.port(),
            &["platform", "function", "extension"],
            25,
        ))
        .await;
    assert_eq!(subscribed.status, 200);
    let mut seen = run_fake_extension(ext, sink.clone());
    emu.init(vec![], STEP).await.expect("init");
    assert!(emu.is_frozen());
    assert_eq!(process_state(emu.pid()), Some('T'), "stopped after init");

    let trace = "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1";
    let first = InvokeSpec {
        trace_header: Some(trace.into()),
        logs: vec![
            json!("hello"),
            json!({"level": "INFO", "message": "structured"}),
        ],
        extension_logs: vec![json!("ext line")],
        handler_duration: Duration::from_millis(60),
        produced_bytes: 42,
        ..InvokeSpec::default()
    };
    let first_id = first.request_id.clone();
    let before_invoke = SystemTime::now();
    let outcome = emu.invoke(first).await.expect("first invoke");
    assert_eq!(
        process_state(emu.pid()),
        Some('T'),
        "stopped between invocations"
    );
    let delivered = outcome
        .runtime_done_delivered_at
        .expect("runtimeDone acked");
    assert!(outcome.next_called_at >= delivered, "{outcome:?}");
    assert_eq!(
        outcome.post_runtime,
        Some(outcome.next_called_at - delivered)
    );
    assert!(outcome.invoke_sent_at < delivered);

    let (invoke, _) = next_seen(&mut seen).await;
    assert_eq!(invoke["eventType"], "INVOKE");
    assert_eq!(invoke["requestId"], first_id.as_str());
    assert_eq!(
        invoke["invokedFunctionArn"],
        "arn:aws:lambda:eu-west-1:123456789012:function:orders-api"
    );
    assert_eq!(
        invoke["tracing"],
        json!({"type": "X-Amzn-Trace-Id", "value": trace})
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let deadline = invoke["deadlineMs"].as_u64().expect("deadlineMs");
    let sent_ms = before_invoke
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        deadline >= sent_ms + 3000 && deadline <= now_ms + 3000,
        "deadline {deadline}"
    );

    let start = sink
        .find("platform.start", &first_id)
        .expect("platform.start");
    assert_eq!(start["record"]["tracing"]["spanId"], span_id_for(&first_id));
    assert_eq!(start["record"]["version"], "$LATEST");
    let done = sink
        .find("platform.runtimeDone", &first_id)
        .expect("runtimeDone");
    let span_names: Vec<&Value> = done["record"]["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| &s["name"])
        .collect();
    assert_eq!(
        span_names,
        ["responseLatency", "responseDuration", "runtimeOverhead"]
    );
    assert_eq!(done["record"]["metrics"]["producedBytes"], 42);
    assert!(done["record"]["metrics"]["durationMs"].as_f64() >= Some(60.0));
    let types = sink.types();
    let position = |t: &str| types.iter().position(|x| x == t).expect(t);
    assert!(position("platform.start") < position("function"));
    assert!(position("function") < position("extension"));
    assert!(position("extension") < position("platform.runtimeDone"));
    assert!(
        sink.find("platform.report", &first_id).is_none(),
        "the report must wait for the next thaw"
    );

    let second = InvokeSpec {
        status: "error".into(),
        error_type: Some("Runtime.Unknown".into()),
        ..InvokeSpec::default()
    };
    let second_id = second.request_id.clone();
    emu.invoke(second).await.expect("second invoke");
    let (_, _) = next_seen(&mut seen).await;
    let report = sink
        .find("platform.report", &first_id)
        .expect("first report delivered during the second invocation");
    let metrics = &report["record"]["metrics"];
    assert!(
        metrics["initDurationMs"].is_number(),
        "cold start: {metrics}"
    );
    assert!(metrics["billedDurationMs"].as_f64() >= metrics["durationMs"].as_f64());
    assert_eq!(metrics["memorySizeMB"], 512);
    assert_eq!(report["record"]["spans"][0]["name"], "extensionOverhead");
    let second_done = sink
        .find("platform.runtimeDone", &second_id)
        .expect("second runtimeDone");
    assert_eq!(second_done["record"]["status"], "error");
    assert_eq!(second_done["record"]["errorType"], "Runtime.Unknown");

    let outcome = emu.shutdown("spindown", Duration::from_millis(300)).await;
    let (shutdown, types_at_shutdown) = next_seen(&mut seen).await;
    assert_eq!(shutdown["eventType"], "SHUTDOWN");
    assert_eq!(shutdown["shutdownReason"], "spindown");
    assert!(shutdown["deadlineMs"].as_u64() > Some(now_ms));
    assert!(
        types_at_shutdown
            .iter()
            .filter(|t| *t == "platform.report")
            .count()
            == 2,
        "both reports delivered before SHUTDOWN: {types_at_shutdown:?}"
    );
    let second_report = sink
        .find("platform.report", &second_id)
        .expect("second report");
    assert!(second_report["record"]["metrics"]["initDurationMs"].is_null());
    assert!(outcome.killed && !outcome.exited_by_itself, "{outcome:?}");
    assert!(outcome.elapsed >= Duration::from_millis(250), "{outcome:?}");
    assert_eq!(emu.exit_status(), Some(128 + libc::SIGKILL));
}

#[tokio::test]
async fn snap_start_emits_restore_events_and_restore_duration() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST).await;
    let opts = EmulatorOptions {
        initialization_type: "snap-start".into(),
        ..no_freeze()
    };
    let (emu, ext, _stand_in) = start_registered(opts, &["INVOKE", "SHUTDOWN"]).await;
    let body = subscribe_body(sink.addr.port(), &["platform"], 25);
    assert_eq!(ext.subscribe(&body).await.status, 200);
    let mut seen = run_fake_extension(ext, sink.clone());
    emu.init(vec![], STEP).await.expect("init");
    let spec = InvokeSpec::default();
    let id = spec.request_id.clone();
    emu.invoke(spec).await.expect("invoke");
    next_seen(&mut seen).await;
    emu.wait_delivered(STEP).await.expect("delivered");
    assert!(
        sink.find("platform.report", &id).is_none(),
        "even without freezing, the report waits for the next invoke or shutdown"
    );
    emu.shutdown("spindown", Duration::from_millis(200)).await;
    let types = sink.types();
    for expected in [
        "platform.restoreStart",
        "platform.restoreRuntimeDone",
        "platform.restoreReport",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} in {types:?}"
        );
    }
    assert!(!types.iter().any(|t| t == "platform.initStart"));
    let report = sink
        .find("platform.report", &id)
        .expect("report at shutdown");
    assert!(report["record"]["metrics"]["restoreDurationMs"].is_number());
}

#[tokio::test]
async fn managed_instances_require_schema_2025_and_send_no_invoke() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST).await;
    let opts = EmulatorOptions {
        initialization_type: "lambda-managed-instances".into(),
        ..EmulatorOptions::default()
    };
    let (emu, ext, _stand_in) = start_registered(opts, &["SHUTDOWN"]).await;
    let mut old = subscribe_body(sink.addr.port(), &["platform", "function"], 25);
    old["schemaVersion"] = json!("2022-07-01");
    assert_eq!(ext.subscribe(&old).await.status, 400);
    let body = subscribe_body(sink.addr.port(), &["platform", "function"], 25);
    assert_eq!(ext.subscribe(&body).await.status, 200);
    let _parked = ext.park_in_next();
    emu.init(vec![], STEP).await.expect("init");
    assert!(!emu.is_frozen());

    let spec = InvokeSpec {
        logs: vec![json!({"level": "INFO", "message": "hi"})],
        ..InvokeSpec::default()
    };
    let id = spec.request_id.clone();
    let outcome = emu.invoke(spec).await.expect("invoke");
    assert_eq!(outcome.post_runtime, None);
    emu.wait_delivered(STEP).await.expect("delivered");
    assert!(emu.handed_out_events().is_empty(), "no INVOKE on LMI");
    assert!(sink.find("platform.start", &id).is_some());
    assert!(sink.find("platform.runtimeDone", &id).is_none());
    let report = sink.find("platform.report", &id).expect("report");
    let metrics = report["record"]["metrics"].as_object().expect("metrics");
    assert_eq!(metrics.keys().collect::<Vec<_>>(), ["durationMs"]);
    assert_eq!(report["record"]["spans"][1]["name"], "responseDuration");
}

#[tokio::test]
async fn sandbox_ip_is_resolved_through_a_private_etc_hosts() {
    if !unshare_available() {
        missing(
            "unshare -m with a bind-mounted /etc/hosts",
            "run as root where mount namespaces are allowed",
        );
        return;
    }
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let sink = Sink::start(ip).await;
    let stand_in = StandIn::new("cat /etc/hosts\nexec sleep 60");
    let opts = EmulatorOptions {
        sandbox_ip: Some(ip),
        ..no_freeze()
    };
    let emu = Emulator::start(&stand_in.path, EXT_NAME, opts).await;
    emu.wait_for_output("127.0.0.2\tsandbox.localdomain sandbox", STEP)
        .await
        .expect("hosts file inside the namespace");
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(
        !host_hosts.contains("127.0.0.2\tsandbox.localdomain"),
        "leaked to the host"
    );

    let mut ext = FakeExtension::new(&emu);
    assert_eq!(ext.register(&["SHUTDOWN"]).await.status, 200);
    let body = subscribe_body(sink.addr.port(), &["platform"], 25);
    assert_eq!(ext.subscribe(&body).await.status, 200);
    let _parked = ext.park_in_next();
    emu.init(vec![], STEP).await.expect("init");
    emu.wait_delivered(STEP)
        .await
        .expect("delivered to 127.0.0.2");
    assert!(sink.types().contains(&"platform.initStart".to_string()));
}

#[tokio::test]
async fn this_process_variables_reach_the_child_only_on_request() {
    // Cargo runs tests with CARGO_PKG_* set (name, version, authors, ...).
    let ours = inherited_env(&["CARGO_PKG_".to_string()]);
    assert!(ours.len() >= 2, "CARGO_PKG_* of the test run: {ours:?}");
    for inherit in [false, true] {
        let stand_in = StandIn::new("env\necho env-printed\nexec sleep 60");
        let opts = EmulatorOptions {
            inherit_env: if inherit {
                vec!["CARGO_PKG_".into(), "AWS_LAMBDA_".into()]
            } else {
                Vec::new()
            },
            extra_env: vec![("CARGO_PKG_NAME".into(), "from-extra-env".into())],
            ..no_freeze()
        };
        let emu = Emulator::start(&stand_in.path, EXT_NAME, opts).await;
        emu.wait_for_output("env-printed", STEP)
            .await
            .expect("the child prints its environment");
        let output = emu.output();
        let child: Vec<&str> = output.lines().collect();
        for (name, value) in &ours {
            let line = format!("{name}={value}");
            if name == "CARGO_PKG_NAME" {
                // extra_env comes last and wins.
                assert!(child.contains(&"CARGO_PKG_NAME=from-extra-env"), "{output}");
            } else {
                assert_eq!(
                    child.contains(&line.as_str()),
                    inherit,
                    "{line} (inherit: {inherit})"
                );
            }
        }
        let runtime_api = format!("AWS_LAMBDA_RUNTIME_API={}", emu.runtime_api());
        assert!(child.contains(&runtime_api.as_str()), "{output}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

#[test]
fn iso8601_ids_and_span_ids_have_the_documented_shapes() {
    let t = UNIX_EPOCH + Duration::from_millis(1_741_083_330_123);
    assert_eq!(iso8601(t), "2025-03-04T10:15:30.123Z");
    assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");

    let id = new_request_id();
    assert_ne!(id, new_request_id());
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
    assert_eq!(&id[14..15], "4");

    let span = span_id_for(&id);
    assert_eq!(span.len(), 16);
    assert!(span.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(span, span_id_for(&id));
}
