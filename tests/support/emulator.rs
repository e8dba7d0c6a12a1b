//! An in-process emulator of the AWS Lambda execution environment, as one *external extension*
//! sees it. It runs the real extension binary as a subprocess and plays the platform's part, so
//! black-box tests can drive init, invocations and shutdown and observe every API call.
//!
//! The behaviour follows `/work/shared/reference/lambda-telemetry-to-otel.md` §1–3.
//!
//! # What it emulates
//! * **Extensions API** (`/2020-01-01/extension/...`): `register` (name header required, optional
//!   `accountId` feature, 403 after init), the `event/next` long-poll (INVOKE / SHUTDOWN events with
//!   `Lambda-Extension-Event-Identifier`), `init/error` and `exit/error`. The first `/next` ends init.
//! * **Telemetry API** subscribe (`PUT /2022-07-01/telemetry`) with its validation rules: schema
//!   version, types, buffering limits, `HTTP` destination on `sandbox.localdomain`/`sandbox` with a
//!   port, 403 `Telemetry.SubscriptionClosed` after init, optional 202 `Telemetry.NotSupported` mode.
//! * **Telemetry delivery**: JSON-array POSTs to the subscribed URI (host replaced by the sandbox
//!   address), batched by `timeoutMs`/`maxItems`/`maxBytes`, filtered by the subscribed types,
//!   sequential, retried with backoff on non-2xx or connection errors, then dropped with a
//!   `platform.logsDropped` event.
//! * **Lifecycle**: init (or SnapStart restore) telemetry, invocations with synthesized runtime
//!   telemetry (`platform.start`, logs, `platform.runtimeDone`, `platform.report`), shutdown with a
//!   deadline and SIGKILL when it passes; Lambda Managed Instances (no INVOKE, no runtimeDone).
//! * **Freezing**: SIGSTOP once the extension waits in `/next` and no delivery is in flight, SIGCONT
//!   before the next event. `platform.report` of invocation N is only delivered after the next thaw
//!   (during N+1 or before SHUTDOWN), as on real Lambda.
//! * **`sandbox.localdomain` on a non-127.0.0.1 address** (optional): the extension runs in a private
//!   mount namespace with a bind-mounted `/etc/hosts`.
//!
//! # What it does not emulate
//! * A runtime process or function code: runtime telemetry is synthesized from [`InvokeSpec`].
//! * More than one extension, TCP destinations, the Logs API, internal extensions.
//! * Resets after crashes/timeouts (suppressed init), init retry at first invoke, the 10 s init
//!   limit, memory-pressure drops (records are only dropped after failed retries).
//! * Cgroup freezing: the extension's process group is stopped with SIGSTOP instead.
//! * Exact error bodies of undocumented 4xx cases (the `errorType` strings of those are ours).
//!
//! All timestamps are [`Duration`]s since the child was spawned. Every wait has a timeout, all
//! servers bind loopback addresses only, and dropping the [`Emulator`] kills the child.

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// The extension's file name in `/opt/extensions` unless a test chooses another.
pub const DEFAULT_EXE_NAME: &str = "lambda-otel-bridge";

/// Per-request timeout of every HTTP call the emulator makes.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an event waits for the extension to be blocked in `/next`.
const HANDOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a failed telemetry POST before its batch is dropped.
const DELIVERY_RETRIES: u32 = 5;
/// Backoff before the first retry; doubled for each further retry.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Bound for waiting until the extension can be frozen (covers a full retry cycle).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(40);
/// Extra time allowed for the extension's `/next` after an invocation's own timeout.
const NEXT_GRACE: Duration = Duration::from_secs(2);
/// Bound for a SIGSTOPped process to show up as stopped.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound for reaping the child after SIGKILL.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
const DROP_REASON: &str =
    "Some logs were dropped because the downstream consumer is slower than the logs production rate";
const MANAGED_INSTANCES: &str = "lambda-managed-instances";
const SNAP_START: &str = "snap-start";
const ON_DEMAND: &str = "on-demand";

const NAME_HEADER: &str = "lambda-extension-name";
const ACCEPT_FEATURE_HEADER: &str = "lambda-extension-accept-feature";
const IDENTIFIER_HEADER: &str = "lambda-extension-identifier";
const EVENT_IDENTIFIER_HEADER: &str = "lambda-extension-event-identifier";
const ERROR_TYPE_HEADER: &str = "lambda-extension-function-error-type";

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// How the emulated function and platform are configured.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    pub function_name: String,
    pub function_version: String,
    pub memory_mb: u32,
    pub region: String,
    pub account_id: String,
    /// `on-demand`, `snap-start`, `provisioned-concurrency` or `lambda-managed-instances`.
    pub initialization_type: String,
    pub extra_env: Vec<(String, String)>,
    /// SIGSTOP the extension once it waits in `/next`; SIGCONT before the next event.
    pub freeze_between_invocations: bool,
    /// Subscribe `schemaVersion`s that are accepted (on Managed Instances only `2025-01-29`).
    pub accepted_schema_versions: Vec<String>,
    /// `false`: subscribe answers 202 `Telemetry.NotSupported` (like SAM/RIE).
    pub telemetry_supported: bool,
    /// `None`: telemetry goes to 127.0.0.1. `Some(ip)`: the extension runs in a mount namespace
    /// whose `/etc/hosts` maps `sandbox.localdomain`/`sandbox` to `ip`, and telemetry goes to `ip`.
    pub sandbox_ip: Option<Ipv4Addr>,
    /// Echo the child's output lines to stderr, prefixed with `[ext] `.
    pub echo_output: bool,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            function_name: "orders-api".into(),
            function_version: "$LATEST".into(),
            memory_mb: 512,
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
            initialization_type: ON_DEMAND.into(),
            extra_env: Vec::new(),
            freeze_between_invocations: true,
            accepted_schema_versions: vec![
                "2025-01-29".into(),
                "2022-12-13".into(),
                "2022-07-01".into(),
            ],
            telemetry_supported: true,
            sandbox_ip: None,
            echo_output: false,
        }
    }
}

/// Timing of the init phase, as durations since spawn.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    pub registered_at: Duration,
    /// First subscribe call answered 200 (or 202 in not-supported mode); `None` if none.
    pub subscribed_at: Option<Duration>,
    pub first_next_at: Duration,
    /// `metrics.durationMs` of `platform.initReport` (or `restoreReport`).
    pub init_duration_ms: f64,
}

/// One invocation to emulate.
#[derive(Debug, Clone)]
pub struct InvokeSpec {
    pub request_id: String,
    /// `X-Amzn-Trace-Id` value for the INVOKE event and the telemetry `tracing` objects.
    pub trace_header: Option<String>,
    /// `function` records (strings or objects), spread over `handler_duration`.
    pub logs: Vec<Value>,
    /// `extension` records, spread over `handler_duration` after the function logs.
    pub extension_logs: Vec<Value>,
    /// Time between `platform.start` and `platform.runtimeDone`.
    pub handler_duration: Duration,
    /// `success` | `error` | `failure` | `timeout`.
    pub status: String,
    pub error_type: Option<String>,
    /// `deadlineMs` = now + timeout.
    pub timeout: Duration,
    pub produced_bytes: u64,
}

impl Default for InvokeSpec {
    fn default() -> Self {
        InvokeSpec {
            request_id: new_request_id(),
            trace_header: None,
            logs: Vec::new(),
            extension_logs: Vec::new(),
            handler_duration: Duration::from_millis(20),
            status: "success".into(),
            error_type: None,
            timeout: Duration::from_secs(3),
            produced_bytes: 0,
        }
    }
}

/// Timing of one invocation, as durations since spawn.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    pub request_id: String,
    /// When INVOKE was handed out (Managed Instances: when `platform.start` was emitted).
    pub invoke_sent_at: Duration,
    /// When the POST carrying this invocation's `platform.runtimeDone` was acknowledged, if that
    /// happened before `invoke` returned.
    pub runtime_done_delivered_at: Option<Duration>,
    /// When the extension called `/next` again (Managed Instances: end of the emulated handler).
    pub next_called_at: Duration,
    /// `next_called_at - runtime_done_delivered_at`; `None` if the ack came later or never.
    pub post_runtime: Option<Duration>,
}

impl InvokeOutcome {
    /// How long the extension held the function after its runtime finished:
    /// `post_runtime`, or zero when `/next` came before `platform.runtimeDone`
    /// reached the extension (it did not wait for it, e.g. its wait ran out
    /// on a loaded machine).
    pub fn delay_after_runtime(&self) -> Duration {
        self.post_runtime.unwrap_or(Duration::ZERO)
    }
}

/// Result of [`Emulator::shutdown`].
#[derive(Debug, Clone)]
pub struct ShutdownOutcome {
    pub exited_by_itself: bool,
    /// Same convention as [`Emulator::exit_status`].
    pub exit_code: Option<i32>,
    /// From SHUTDOWN being handed out (or attempted) until the process was gone.
    pub elapsed: Duration,
    pub killed: bool,
}

/// One HTTP call the extension made to the Runtime API.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub at: Duration,
    pub method: String,
    pub path: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// 0 while the call is still pending (a `/next` long-poll).
    pub status: u16,
}

impl RecordedCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// One telemetry POST attempt to the extension's listener.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub at: Duration,
    pub finished_at: Duration,
    pub event_count: usize,
    pub bytes: usize,
    /// `None` on connection error or timeout.
    pub status: Option<u16>,
    pub event_types: Vec<String>,
}

/// The accepted registration.
#[derive(Debug, Clone)]
pub struct Registration {
    pub at: Duration,
    pub name: String,
    pub accept_feature: Option<String>,
    pub events: Vec<String>,
    pub identifier: String,
}

/// A response from [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

// ---------------------------------------------------------------------------------------------
// The emulator
// ---------------------------------------------------------------------------------------------

/// A running emulated execution environment with one extension process.
pub struct Emulator {
    shared: Arc<Shared>,
    pid: u32,
    runtime_api: SocketAddr,
    temp_dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Binds the Runtime API server on 127.0.0.1:0 and spawns a copy of `binary` named
    /// `exe_name` (usually [`DEFAULT_EXE_NAME`]), so the extension registers under that file name.
    /// Panics with a clear message if that is impossible.
    pub async fn start(binary: &Path, exe_name: &str, opts: EmulatorOptions) -> Emulator {
        let temp_dir = make_temp_dir();
        let exe = install_binary(binary, &temp_dir, exe_name);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("emulator: cannot bind the Runtime API on 127.0.0.1");
        let runtime_api = listener
            .local_addr()
            .expect("emulator: Runtime API address");
        let echo = opts.echo_output;
        let mut command = build_command(&exe, &temp_dir, runtime_api, &opts);

        let shared = Arc::new(Shared::new(opts));
        let server = tokio::spawn(serve_runtime_api(listener, shared.clone()));
        let mut child = spawn_child(&mut command, &exe).await;
        let pid = child.id().expect("emulator: child has no pid");

        let mut tasks = vec![server];
        if let Some(stdout) = child.stdout.take() {
            tasks.push(tokio::spawn(collect_output(shared.clone(), stdout, echo)));
        }
        if let Some(stderr) = child.stderr.take() {
            tasks.push(tokio::spawn(collect_output(shared.clone(), stderr, echo)));
        }
        tasks.push(tokio::spawn(watch_exit(shared.clone(), child)));
        tasks.push(tokio::spawn(delivery_loop(shared.clone())));
        Emulator {
            shared,
            pid,
            runtime_api,
            temp_dir,
            tasks,
        }
    }

    /// Starts the extension binary built by Cargo under [`DEFAULT_EXE_NAME`].
    pub async fn start_extension(opts: EmulatorOptions) -> Emulator {
        Emulator::start(&extension_binary(), DEFAULT_EXE_NAME, opts).await
    }

    /// `127.0.0.1:PORT`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        self.runtime_api.to_string()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn options(&self) -> &EmulatorOptions {
        &self.shared.opts
    }

    /// Waits for registration, emits the init (or SnapStart restore) telemetry, waits for the
    /// first `/next`, emits the init report and freezes (if enabled).
    pub async fn init(
        &self,
        init_logs: Vec<Value>,
        timeout: Duration,
    ) -> Result<InitOutcome, String> {
        let deadline = Instant::now() + timeout;
        let registered_at = self
            .shared
            .wait_for("the extension to register", timeout, |st| {
                st.registration.as_ref().map(|r| r.at)
            })
            .await?;

        let opts = &self.shared.opts;
        let restore = opts.initialization_type == SNAP_START;
        let started = Instant::now();
        let mut events = vec![phase_start_event(opts, restore)];
        events.extend(
            init_logs
                .into_iter()
                .map(|r| telemetry_event("function", r)),
        );
        events.push(phase_runtime_done_event(opts, restore));
        self.shared.queue(events);

        let first_next_at = self
            .shared
            .wait_for(
                "the extension's first /next (end of init)",
                remaining(deadline),
                |st| st.next_calls.first().copied(),
            )
            .await?;
        let init_duration_ms = millis(started.elapsed());
        self.shared
            .queue([phase_report_event(opts, restore, init_duration_ms)]);
        let cold_start_metric = match opts.initialization_type.as_str() {
            ON_DEMAND => Some(("initDurationMs", init_duration_ms)),
            SNAP_START => Some(("restoreDurationMs", init_duration_ms)),
            _ => None,
        };
        self.shared
            .update(|st| st.cold_start_metric = cold_start_metric);
        self.freeze_when_idle().await?;

        Ok(InitOutcome {
            registered_at,
            subscribed_at: self.shared.lock().subscribed_at,
            first_next_at,
            init_duration_ms,
        })
    }

    /// Emulates one invocation (thaw, INVOKE, runtime telemetry, wait for `/next`, deferred
    /// `platform.report`, freeze).
    pub async fn invoke(&self, spec: InvokeSpec) -> Result<InvokeOutcome, String> {
        if self.is_managed_instances() {
            return self.invoke_managed_instances(spec).await;
        }
        self.resume();
        let wants_invoke = self.registered_for("INVOKE");
        let (invoke_sent_at, nexts_before) = if wants_invoke {
            let event = invoke_event(&self.shared.opts, &spec);
            self.hand_out(event, HANDOUT_TIMEOUT).await?
        } else {
            (self.shared.since_spawn(), 0)
        };

        let tracing = tracing_context(&spec);
        let start_wall = SystemTime::now();
        let start = Instant::now();
        self.shared
            .queue([start_event(&self.shared.opts, &spec, &tracing)]);
        self.emulate_handler(&spec, start).await;
        let handler = start.elapsed();
        let done_wall = SystemTime::now();
        self.shared
            .queue([runtime_done_event(&spec, &tracing, start_wall, handler)]);
        let done_at = self.shared.since_spawn();

        let next_called_at = if wants_invoke {
            self.shared
                .wait_for(
                    "the extension's /next after INVOKE",
                    spec.timeout + NEXT_GRACE,
                    |st| st.next_calls.get(nexts_before).copied(),
                )
                .await?
        } else {
            done_at
        };
        let overhead = next_called_at.saturating_sub(done_at);
        let cold_start_metric = self.shared.update(|st| st.cold_start_metric.take());
        let report = report_event(
            &self.shared.opts,
            &spec,
            &tracing,
            ReportTiming {
                handler,
                overhead,
                runtime_done_wall: done_wall,
                cold_start_metric,
            },
        );
        // Delivered only after the next thaw, like on Lambda.
        self.shared
            .update(|st| st.deferred.push(QueuedEvent::new(report)));
        self.freeze_when_idle().await?;

        let runtime_done_delivered_at = self
            .shared
            .lock()
            .runtime_done_acks
            .get(&spec.request_id)
            .copied();
        Ok(InvokeOutcome {
            request_id: spec.request_id,
            invoke_sent_at,
            runtime_done_delivered_at,
            next_called_at,
            post_runtime: runtime_done_delivered_at.and_then(|d| next_called_at.checked_sub(d)),
        })
    }

    /// Thaws, delivers pending telemetry (the last `platform.report`), hands out SHUTDOWN with
    /// `deadlineMs = now + budget` and waits for the exit; SIGKILL at the deadline.
    pub async fn shutdown(&self, reason: &str, budget: Duration) -> ShutdownOutcome {
        self.resume();
        self.shared.update(|st| st.flush_immediately = true);
        // Best effort: a missing subscription or a failing listener must not block shutdown.
        let _ = self.wait_delivered(HTTP_TIMEOUT).await;

        let deadline = Instant::now() + budget;
        let shutdown_sent_at = self.shared.since_spawn();
        if self.registered_for("SHUTDOWN") && self.exit_status().is_none() {
            let event = json!({
                "eventType": "SHUTDOWN",
                "shutdownReason": reason,
                "deadlineMs": unix_ms(SystemTime::now() + budget),
            });
            let _ = self.hand_out(event, budget).await;
        }
        let exited_by_itself = self.wait_for_exit(remaining(deadline)).await.is_ok();
        let killed = !exited_by_itself;
        if killed {
            self.kill();
            let _ = self.wait_for_exit(REAP_TIMEOUT).await;
        }
        let st = self.shared.lock();
        ShutdownOutcome {
            exited_by_itself,
            exit_code: st.exit,
            elapsed: st
                .exited_at
                .map(|at| at.saturating_sub(shutdown_sent_at))
                .unwrap_or_default(),
            killed,
        }
    }

    /// POSTs `body` once to the subscribed destination, as Lambda would. Returns the status.
    pub async fn push_raw(&self, body: Vec<u8>) -> Result<u16, String> {
        let (url, host) = {
            let st = self.shared.lock();
            if st.frozen {
                return Err("the extension is frozen".into());
            }
            let sub = st
                .subscription
                .as_ref()
                .ok_or("no telemetry subscription")?;
            self.shared.destination(sub)
        };
        post_json(
            &self.shared.client,
            &url,
            &host,
            Bytes::from(body),
            HTTP_TIMEOUT,
        )
        .await
    }

    /// Queues arbitrary telemetry events (`{"time","type","record"}`) for batched delivery.
    pub async fn push_events(&self, events: Vec<Value>) {
        self.shared.queue(events);
    }

    /// Waits until every queued event has been delivered and acknowledged (or dropped). Fails at
    /// once if there is no subscription or the extension is frozen. A deferred `platform.report`
    /// (released at the next thaw) does not count as queued.
    pub async fn wait_delivered(&self, timeout: Duration) -> Result<(), String> {
        self.shared
            .wait_for("all queued telemetry to be delivered", timeout, |st| {
                if st.queue.is_empty() && !st.in_flight {
                    Some(Ok(()))
                } else if st.subscription.is_none() {
                    Some(Err(
                        "no telemetry subscription: queued events cannot be delivered",
                    ))
                } else if st.frozen {
                    Some(Err(
                        "the extension is frozen: queued events wait for the next thaw",
                    ))
                } else {
                    None
                }
            })
            .await?
            .map_err(String::from)
    }

    /// Waits until the child has exited; returns [`Emulator::exit_status`].
    pub async fn wait_for_exit(&self, timeout: Duration) -> Result<i32, String> {
        let code = self
            .shared
            .wait_for("the extension to exit", timeout, |st| st.exit)
            .await?;
        // Everything it wrote before exiting is read before this returns.
        let _ = self
            .shared
            .wait_for("the output to be read", REAP_TIMEOUT, |st| {
                (st.output_closed >= 2).then_some(())
            })
            .await;
        Ok(code)
    }

    /// Waits until the child's output contains `needle`.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        let what = format!("output containing {needle:?}");
        self.shared
            .wait_for(&what, timeout, |st| {
                st.output.contains(needle).then_some(())
            })
            .await
    }

    /// SIGCONT + SIGKILL to the child's process group (no-op once it has exited).
    pub fn kill(&self) {
        let st = self.shared.lock();
        if st.exit.is_none() {
            signal_group(self.pid, libc::SIGCONT);
            signal_group(self.pid, libc::SIGKILL);
        }
    }

    /// Forgets the recorded telemetry POSTs ([`Emulator::deliveries`]), delivered events
    /// ([`Emulator::delivered_events`]), handed-out events and runtimeDone acknowledgements, so
    /// that long soak runs keep the emulator's own memory flat. Call it between invocations.
    /// The Runtime API calls ([`Emulator::calls`]; a pending `/next` still refers to its entry)
    /// and the `/next` times (which [`Emulator::invoke`] counts) are kept.
    pub fn clear_history(&self) {
        self.shared.update(|st| {
            st.deliveries.clear();
            st.delivered_events.clear();
            st.handed_out.clear();
            st.runtime_done_acks.clear();
        });
    }

    /// Every Runtime API call the extension made, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// Every telemetry POST attempt, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Every event of every acknowledged telemetry POST, in delivery order.
    pub fn delivered_events(&self) -> Vec<Value> {
        self.shared.lock().delivered_events.clone()
    }

    /// Every event handed out on `/next` (INVOKE / SHUTDOWN), with the hand-out time.
    pub fn handed_out_events(&self) -> Vec<(Duration, Value)> {
        self.shared.lock().handed_out.clone()
    }

    /// The time of every `/next` call.
    pub fn next_call_times(&self) -> Vec<Duration> {
        self.shared.lock().next_calls.clone()
    }

    /// The accepted subscribe body.
    pub fn subscription(&self) -> Option<Value> {
        self.shared
            .lock()
            .subscription
            .as_ref()
            .map(|s| s.body.clone())
    }

    pub fn registration(&self) -> Option<Registration> {
        self.shared.lock().registration.clone()
    }

    /// The child's stdout and stderr lines so far.
    pub fn output(&self) -> String {
        self.shared.lock().output.clone()
    }

    /// `None` while running; the exit code, or 128 + signal number if killed by a signal.
    pub fn exit_status(&self) -> Option<i32> {
        self.shared.lock().exit
    }

    pub fn is_frozen(&self) -> bool {
        self.shared.lock().frozen
    }

    fn is_managed_instances(&self) -> bool {
        self.shared.opts.initialization_type == MANAGED_INSTANCES
    }

    fn registered_for(&self, event: &str) -> bool {
        self.shared
            .lock()
            .registration
            .as_ref()
            .is_some_and(|r| r.events.iter().any(|e| e == event))
    }

    /// Thaws the process if frozen and releases deferred events (the previous `platform.report`).
    fn resume(&self) {
        let pid = self.pid;
        self.shared.update(|st| {
            if st.frozen && st.exit.is_none() {
                signal_group(pid, libc::SIGCONT);
            }
            st.frozen = false;
            st.freeze_requested = false;
            let now = Instant::now();
            for mut event in std::mem::take(&mut st.deferred) {
                event.queued_at = now;
                st.queue.push_back(event);
            }
        });
    }

    /// SIGSTOPs the process group once the extension waits in `/next` and nothing is in flight.
    async fn freeze_when_idle(&self) -> Result<(), String> {
        if !self.shared.opts.freeze_between_invocations || self.is_managed_instances() {
            return Ok(());
        }
        let pid = self.pid;
        self.shared.update(|st| st.freeze_requested = true);
        let frozen = self
            .shared
            .wait_for(
                "the extension to be idle in /next (to freeze it)",
                FREEZE_TIMEOUT,
                |st| {
                    if !st.waiting_in_next() || st.in_flight {
                        return None;
                    }
                    signal_group(pid, libc::SIGSTOP);
                    st.frozen = true;
                    Some(())
                },
            )
            .await;
        if frozen.is_err() {
            self.shared.update(|st| st.freeze_requested = false);
            return frozen;
        }
        wait_until_stopped(pid, STOP_TIMEOUT).await
    }

    /// Answers the pending `/next` with `event`. Returns the hand-out time and the number of
    /// `/next` calls so far (the index of the next one).
    async fn hand_out(&self, event: Value, timeout: Duration) -> Result<(Duration, usize), String> {
        let event_id = new_request_id();
        let epoch = self.shared.epoch;
        self.shared
            .wait_for("the extension to wait in /next", timeout, |st| {
                let sender = st.pending_next.take()?;
                sender.send((event.clone(), event_id.clone())).ok()?;
                let at = epoch.elapsed();
                st.handed_out.push((at, event.clone()));
                Some((at, st.next_calls.len()))
            })
            .await
    }

    /// Emits the invocation's log records, spread over the handler duration, in real time.
    async fn emulate_handler(&self, spec: &InvokeSpec, start: Instant) {
        let records: Vec<Value> = spec
            .logs
            .iter()
            .map(|r| telemetry_event("function", r.clone()))
            .chain(
                spec.extension_logs
                    .iter()
                    .map(|r| telemetry_event("extension", r.clone())),
            )
            .collect();
        let slots = records.len() as u32 + 1;
        for (i, record) in records.into_iter().enumerate() {
            let at = start + spec.handler_duration * (i as u32 + 1) / slots;
            tokio::time::sleep_until(at.into()).await;
            let record = restamp(record);
            self.shared.queue([record]);
        }
        tokio::time::sleep_until((start + spec.handler_duration).into()).await;
    }

    /// Managed Instances: no INVOKE, no runtimeDone, no freezing; the report follows at once.
    async fn invoke_managed_instances(&self, spec: InvokeSpec) -> Result<InvokeOutcome, String> {
        let tracing = tracing_context(&spec);
        let invoke_sent_at = self.shared.since_spawn();
        let start_wall = SystemTime::now();
        let start = Instant::now();
        self.shared
            .queue([start_event(&self.shared.opts, &spec, &tracing)]);
        self.emulate_handler(&spec, start).await;
        let report = managed_instances_report_event(&spec, &tracing, start_wall, start.elapsed());
        self.shared.queue([report]);
        Ok(InvokeOutcome {
            request_id: spec.request_id,
            invoke_sent_at,
            runtime_done_delivered_at: None,
            next_called_at: self.shared.since_spawn(),
            post_runtime: None,
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
        for task in &self.tasks {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.temp_dir);
    }
}

/// The path of the extension binary built by Cargo for this test run.
pub fn extension_binary() -> PathBuf {
    // Cargo sets CARGO_BIN_EXE_* for integration tests; examples (which
    // include this file too) find the binary next to their own directory.
    match option_env!("CARGO_BIN_EXE_lambda-otel-bridge") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("lambda-otel-bridge")))
            .unwrap_or_else(|| PathBuf::from("target/release/lambda-otel-bridge")),
    }
}

/// Whether `unshare -m` with a bind-mounted `/etc/hosts` works here (checked once).
pub fn unshare_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(probe_unshare)
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

struct Shared {
    opts: EmulatorOptions,
    epoch: Instant,
    state: Mutex<PlatformState>,
    /// Signalled after every state change that someone may wait for.
    changed: Notify,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Default)]
struct PlatformState {
    calls: Vec<RecordedCall>,
    deliveries: Vec<Delivery>,
    delivered_events: Vec<Value>,
    registration: Option<Registration>,
    subscription: Option<Subscription>,
    subscribed_at: Option<Duration>,
    init_done: bool,
    next_calls: Vec<Duration>,
    pending_next: Option<oneshot::Sender<(Value, String)>>,
    handed_out: Vec<(Duration, Value)>,
    /// Events waiting for delivery.
    queue: VecDeque<QueuedEvent>,
    /// Events released into `queue` at the next thaw (`platform.report`).
    deferred: Vec<QueuedEvent>,
    in_flight: bool,
    frozen: bool,
    freeze_requested: bool,
    /// Set during shutdown: deliver without waiting for `timeoutMs`.
    flush_immediately: bool,
    runtime_done_acks: HashMap<String, Duration>,
    /// `initDurationMs`/`restoreDurationMs` for the first report.
    cold_start_metric: Option<(&'static str, f64)>,
    output: String,
    /// Output streams (stdout, stderr) that reached end of file.
    output_closed: u32,
    exit: Option<i32>,
    exited_at: Option<Duration>,
}

impl PlatformState {
    fn waiting_in_next(&self) -> bool {
        self.pending_next.as_ref().is_some_and(|tx| !tx.is_closed())
    }
}

#[derive(Debug, Clone)]
struct Subscription {
    body: Value,
    types: Vec<String>,
    buffering: Buffering,
    host: String,
    port: u16,
    path: String,
}

#[derive(Debug, Clone, Copy)]
struct Buffering {
    max_items: usize,
    max_bytes: usize,
    timeout: Duration,
}

struct QueuedEvent {
    value: Value,
    json: String,
    kind: String,
    queued_at: Instant,
}

impl QueuedEvent {
    fn new(value: Value) -> QueuedEvent {
        QueuedEvent {
            json: value.to_string(),
            kind: value["type"].as_str().unwrap_or_default().to_string(),
            value,
            queued_at: Instant::now(),
        }
    }

    /// The subscription type that covers this event.
    fn category(&self) -> &'static str {
        match self.kind.as_str() {
            "function" => "function",
            "extension" => "extension",
            _ => "platform",
        }
    }
}

impl Shared {
    fn new(opts: EmulatorOptions) -> Shared {
        Shared {
            opts,
            epoch: Instant::now(),
            state: Mutex::new(PlatformState::default()),
            changed: Notify::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PlatformState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn since_spawn(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Mutates the state and wakes every waiter.
    fn update<R>(&self, f: impl FnOnce(&mut PlatformState) -> R) -> R {
        let result = f(&mut self.lock());
        self.changed.notify_waiters();
        result
    }

    fn queue(&self, events: impl IntoIterator<Item = Value>) {
        self.update(|st| st.queue.extend(events.into_iter().map(QueuedEvent::new)));
    }

    fn sandbox_address(&self) -> Ipv4Addr {
        self.opts.sandbox_ip.unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// Delivery URL (host replaced by the sandbox address) and the original `Host` header.
    fn destination(&self, sub: &Subscription) -> (String, String) {
        let url = format!("http://{}:{}{}", self.sandbox_address(), sub.port, sub.path);
        (url, format!("{}:{}", sub.host, sub.port))
    }

    /// Re-evaluates `check` under the lock after every state change until it yields a value.
    /// Fails on timeout or when the child exits first.
    async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut PlatformState) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if let Some(value) = check(&mut st) {
                    drop(st);
                    self.changed.notify_waiters();
                    return Ok(value);
                }
                // Once the child has exited, fail, but only after all of its
                // output has been read: it may still hold what is waited for.
                if let (Some(code), true) = (st.exit, st.output_closed >= 2) {
                    return Err(format!(
                        "extension exited with status {code} while waiting for {what}\n{}",
                        output_tail(&st.output)
                    ));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    output_tail(&self.lock().output)
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime API server (Extensions API + Telemetry API subscribe)
// ---------------------------------------------------------------------------------------------

async fn serve_runtime_api(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let router = Router::new()
        .route("/2020-01-01/extension/register", post(register))
        .route("/2020-01-01/extension/event/next", get(next_event))
        .route("/2020-01-01/extension/init/error", post(report_error))
        .route("/2020-01-01/extension/exit/error", post(report_error))
        .route("/2022-07-01/telemetry", put(subscribe))
        .route("/2022-07-01/telemetry/", put(subscribe))
        .fallback(|| async { error_response(404, "NotFound", "no such Runtime API route") })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            record_call,
        ))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, router).await {
        eprintln!("emulator: Runtime API server failed: {e}");
    }
}

/// Records every call (arrival time, request, final status).
async fn record_call(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let at = shared.since_spawn();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let call = RecordedCall {
        at,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: header_pairs(&parts.headers),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
    };
    let index = shared.update(|st| {
        st.calls.push(call);
        st.calls.len() - 1
    });
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let status = response.status().as_u16();
    shared.update(|st| st.calls[index].status = status);
    response
}

async fn register(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(name) = header_value(&headers, NAME_HEADER) else {
        return error_response(
            400,
            "InvalidRequest",
            "missing Lambda-Extension-Name header",
        );
    };
    let events = match parse_register_events(&body) {
        Ok(events) => events,
        Err(message) => return error_response(400, "InvalidRequest", &message),
    };
    let accept_feature = header_value(&headers, ACCEPT_FEATURE_HEADER);
    let wants_account_id = accept_feature
        .as_deref()
        .is_some_and(|f| f.split(',').any(|f| f.trim() == "accountId"));
    let at = shared.since_spawn();
    let identifier = new_request_id();
    let refused = shared.update(|st| {
        if st.init_done {
            return Some("registration is only possible during init");
        }
        if st.registration.is_some() {
            return Some("the emulator supports exactly one extension");
        }
        st.registration = Some(Registration {
            at,
            name,
            accept_feature,
            events,
            identifier: identifier.clone(),
        });
        None
    });
    if let Some(message) = refused {
        return error_response(403, "Extension.RegistrationRefused", message);
    }
    let opts = &shared.opts;
    let mut body = json!({
        "functionName": opts.function_name,
        "functionVersion": opts.function_version,
        "handler": "index.handler",
    });
    if wants_account_id {
        body["accountId"] = json!(opts.account_id);
    }
    let mut response = json_response(200, &body);
    if let Ok(value) = identifier.parse() {
        response.headers_mut().insert(IDENTIFIER_HEADER, value);
    }
    response
}

/// `{"events": [...]}`; the body and `events` are optional; only INVOKE and SHUTDOWN are valid.
fn parse_register_events(body: &[u8]) -> Result<Vec<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Some(events) = value.get("events") else {
        return Ok(Vec::new());
    };
    let events = events.as_array().ok_or("events must be an array")?;
    events
        .iter()
        .map(|e| match e.as_str() {
            Some(name @ ("INVOKE" | "SHUTDOWN")) => Ok(name.to_string()),
            _ => Err(format!("invalid event {e}")),
        })
        .collect()
}

/// Long-poll: parks a sender that [`Emulator::hand_out`] answers.
async fn next_event(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let at = shared.since_spawn();
    let receiver = shared.update(|st| -> Result<_, Forbidden> {
        authorize(st, &headers)?;
        st.next_calls.push(at);
        st.init_done = true;
        let (sender, receiver) = oneshot::channel();
        st.pending_next = Some(sender);
        Ok(receiver)
    });
    let receiver = match receiver {
        Ok(receiver) => receiver,
        Err(forbidden) => return forbidden.response(),
    };
    match receiver.await {
        Ok((event, event_id)) => {
            let mut response = json_response(200, &event);
            if let Ok(value) = event_id.parse() {
                response
                    .headers_mut()
                    .insert(EVENT_IDENTIFIER_HEADER, value);
            }
            response
        }
        Err(_) => error_response(500, "Emulator.Stopped", "the emulator stopped"),
    }
}

/// `init/error` and `exit/error`: identifier and error-type headers required; answer 202.
async fn report_error(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let st = shared.lock();
    if let Err(forbidden) = authorize(&st, &headers) {
        return forbidden.response();
    }
    if header_value(&headers, ERROR_TYPE_HEADER).is_none() {
        return error_response(
            403,
            "Extension.MissingHeader",
            "missing Lambda-Extension-Function-Error-Type header",
        );
    }
    json_response(202, &json!({"status": "OK"}))
}

async fn subscribe(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = shared.since_spawn();
    let accepted = accepted_schema_versions(&shared.opts);
    shared.update(|st| {
        let name = match authorize(st, &headers) {
            Ok(registration) => registration.name.clone(),
            Err(forbidden) => return forbidden.response(),
        };
        if st.init_done {
            return error_response(
                403,
                "Telemetry.SubscriptionClosed",
                "subscriptions are only accepted during init",
            );
        }
        if !shared.opts.telemetry_supported {
            st.subscribed_at.get_or_insert(at);
            return error_response(
                202,
                "Telemetry.NotSupported",
                "Telemetry API is not supported",
            );
        }
        match parse_subscription(&body, &accepted) {
            Err(message) => error_response(400, "ValidationError", &message),
            Ok(subscription) => {
                let record =
                    json!({"name": name, "state": "Subscribed", "types": subscription.types});
                st.subscription = Some(subscription);
                st.subscribed_at.get_or_insert(at);
                let event = telemetry_event("platform.telemetrySubscription", record);
                st.queue.push_back(QueuedEvent::new(event));
                json_response(200, &json!("OK"))
            }
        }
    })
}

fn accepted_schema_versions(opts: &EmulatorOptions) -> Vec<String> {
    let managed = opts.initialization_type == MANAGED_INSTANCES;
    opts.accepted_schema_versions
        .iter()
        .filter(|v| !managed || v.as_str() == "2025-01-29")
        .cloned()
        .collect()
}

/// Validates a subscribe body (reference §2.1).
fn parse_subscription(body: &[u8], accepted_versions: &[String]) -> Result<Subscription, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let version = value["schemaVersion"]
        .as_str()
        .ok_or("schemaVersion is required")?;
    if !accepted_versions.iter().any(|v| v == version) {
        return Err(format!("schemaVersion {version} is not supported"));
    }
    let types = parse_types(&value["types"])?;
    let buffering = parse_buffering(&value["buffering"])?;
    let destination = &value["destination"];
    if destination["protocol"].as_str() != Some("HTTP") {
        return Err("destination.protocol must be HTTP (TCP is not emulated)".into());
    }
    let uri = destination["URI"]
        .as_str()
        .ok_or("destination.URI is required")?;
    let (host, port, path) = parse_destination_uri(uri)?;
    Ok(Subscription {
        body: value,
        types,
        buffering,
        host,
        port,
        path,
    })
}

fn parse_types(types: &Value) -> Result<Vec<String>, String> {
    let types = types.as_array().ok_or("types is required")?;
    if types.is_empty() {
        return Err("types should not be empty".into());
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            Some(name @ ("platform" | "function" | "extension")) => Ok(name.to_string()),
            _ => Err(format!("invalid type {t}")),
        })
        .collect()
}

fn parse_buffering(buffering: &Value) -> Result<Buffering, String> {
    if !buffering.is_null() && !buffering.is_object() {
        return Err("buffering must be an object".into());
    }
    let field = |name: &str, min: u64, max: u64, default: u64| -> Result<u64, String> {
        match &buffering[name] {
            Value::Null => Ok(default),
            v => v
                .as_u64()
                .filter(|n| (min..=max).contains(n))
                .ok_or(format!(
                    "buffering.{name} must be an integer between {min} and {max}"
                )),
        }
    };
    Ok(Buffering {
        max_items: field("maxItems", 1_000, 10_000, 10_000)? as usize,
        max_bytes: field("maxBytes", 262_144, 1_048_576, 262_144)? as usize,
        timeout: Duration::from_millis(field("timeoutMs", 25, 30_000, 1_000)?),
    })
}

/// `http://sandbox.localdomain:PORT[/PATH]` → (host, port, path).
fn parse_destination_uri(uri: &str) -> Result<(String, u16, String), String> {
    let rest = uri
        .strip_prefix("http://")
        .ok_or(format!("URI {uri} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or("URI port is not provided")?;
    let host_ok =
        host.eq_ignore_ascii_case("sandbox.localdomain") || host.eq_ignore_ascii_case("sandbox");
    if !host_ok {
        return Err(format!(
            "URI host {host} must be sandbox.localdomain or sandbox"
        ));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or(format!("URI port {port} is invalid"))?;
    Ok((host.to_string(), port, path))
}

/// A refused Extensions/Telemetry API call (403).
struct Forbidden {
    error_type: &'static str,
    message: &'static str,
}

impl Forbidden {
    fn response(&self) -> Response {
        error_response(403, self.error_type, self.message)
    }
}

/// Checks `Lambda-Extension-Identifier` against the registration.
fn authorize<'a>(
    st: &'a PlatformState,
    headers: &HeaderMap,
) -> Result<&'a Registration, Forbidden> {
    let Some(given) = header_value(headers, IDENTIFIER_HEADER) else {
        return Err(Forbidden {
            error_type: "Extension.MissingExtensionIdentifier",
            message: "missing Lambda-Extension-Identifier header",
        });
    };
    match &st.registration {
        Some(registration) if registration.identifier == given => Ok(registration),
        _ => Err(Forbidden {
            error_type: "Extension.InvalidExtensionIdentifier",
            message: "unknown extension identifier",
        }),
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"errorType": error_type, "errorMessage": message}),
    )
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), value)
        })
        .collect()
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// Telemetry delivery
// ---------------------------------------------------------------------------------------------

enum Step {
    Idle,
    WaitUntil(Instant),
    Send(Batch),
}

struct Batch {
    events: Vec<QueuedEvent>,
    url: String,
    host: String,
}

/// One sequential delivery loop for the single subscriber.
async fn delivery_loop(shared: Arc<Shared>) {
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (step, filtered) = {
            let mut st = shared.lock();
            next_step(&shared, &mut st, Instant::now())
        };
        if filtered {
            shared.changed.notify_waiters();
        }
        match step {
            Step::Idle => notified.await,
            Step::WaitUntil(at) => {
                let _ = tokio::time::timeout_at(at.into(), notified).await;
            }
            Step::Send(batch) => deliver(&shared, batch).await,
        }
    }
}

/// Decides what to do next. Drops queued events of unsubscribed types (second value: whether any
/// were dropped). Takes a batch once `timeoutMs`, `maxItems` or `maxBytes` is reached.
fn next_step(shared: &Shared, st: &mut PlatformState, now: Instant) -> (Step, bool) {
    let Some(sub) = st.subscription.as_ref() else {
        return (Step::Idle, false);
    };
    let types = sub.types.clone();
    let buffering = sub.buffering;
    let (url, host) = shared.destination(sub);
    let before = st.queue.len();
    st.queue.retain(|e| types.iter().any(|t| t == e.category()));
    let filtered = st.queue.len() != before;

    let blocked = st.frozen || st.freeze_requested || st.in_flight || st.exit.is_some();
    let Some(first) = st.queue.front() else {
        return (Step::Idle, filtered);
    };
    if blocked {
        return (Step::Idle, filtered);
    }
    let due = first.queued_at + buffering.timeout;
    let total_bytes: usize = st.queue.iter().map(|e| e.json.len()).sum();
    let ready = st.flush_immediately
        || now >= due
        || st.queue.len() >= buffering.max_items
        || total_bytes >= buffering.max_bytes;
    if !ready {
        return (Step::WaitUntil(due), filtered);
    }
    let events = take_batch(&mut st.queue, buffering);
    st.in_flight = true;
    (Step::Send(Batch { events, url, host }), filtered)
}

/// At most `maxItems` events and (beyond the first) at most `maxBytes` of event JSON.
fn take_batch(queue: &mut VecDeque<QueuedEvent>, buffering: Buffering) -> Vec<QueuedEvent> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(next) = queue.front() {
        let full = batch.len() >= buffering.max_items
            || (!batch.is_empty() && bytes + next.json.len() > buffering.max_bytes);
        if full {
            break;
        }
        bytes += next.json.len();
        batch.extend(queue.pop_front());
    }
    batch
}

/// POSTs one batch with retries; on final failure drops it and queues `platform.logsDropped`.
async fn deliver(shared: &Shared, batch: Batch) {
    let body = Bytes::from(batch_body(&batch.events));
    let event_types: Vec<String> = batch.events.iter().map(|e| e.kind.clone()).collect();
    for attempt in 0..=DELIVERY_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(FIRST_RETRY_DELAY * 2u32.pow(attempt - 1)).await;
        }
        if shared.lock().exit.is_some() {
            break;
        }
        let at = shared.since_spawn();
        let result = post_json(
            &shared.client,
            &batch.url,
            &batch.host,
            body.clone(),
            HTTP_TIMEOUT,
        )
        .await;
        let finished_at = shared.since_spawn();
        let status = result.ok();
        let acked = status.is_some_and(|s| (200..300).contains(&s));
        shared.update(|st| {
            st.deliveries.push(Delivery {
                at,
                finished_at,
                event_count: batch.events.len(),
                bytes: body.len(),
                status,
                event_types: event_types.clone(),
            });
            if acked {
                st.in_flight = false;
                record_acknowledged(st, &batch.events, finished_at);
            }
        });
        if acked {
            return;
        }
    }
    let only_drop_notices = batch
        .events
        .iter()
        .all(|e| e.kind == "platform.logsDropped");
    shared.update(|st| {
        st.in_flight = false;
        if st.exit.is_none() && !only_drop_notices {
            let record = json!({
                "droppedBytes": body.len(),
                "droppedRecords": batch.events.len(),
                "reason": DROP_REASON,
            });
            let event = telemetry_event("platform.logsDropped", record);
            st.queue.push_back(QueuedEvent::new(event));
        }
    });
}

fn record_acknowledged(st: &mut PlatformState, events: &[QueuedEvent], at: Duration) {
    for event in events {
        if event.kind == "platform.runtimeDone" {
            if let Some(id) = event.value["record"]["requestId"].as_str() {
                st.runtime_done_acks.insert(id.to_string(), at);
            }
        }
        st.delivered_events.push(event.value.clone());
    }
}

fn batch_body(events: &[QueuedEvent]) -> String {
    let parts: Vec<&str> = events.iter().map(|e| e.json.as_str()).collect();
    format!("[{}]", parts.join(","))
}

/// POSTs JSON and returns the status (the response body is read and discarded).
async fn post_json(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    host: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<u16, String> {
    let request = hyper::Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::HOST, host)
        .body(Full::new(body))
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        Ok(status)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("POST {url}: timed out after {timeout:?}"))?
}

/// A one-shot HTTP/1 request with a timeout (no connection reuse), for tests that drive an API
/// directly. Header names in the response are lower-case.
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut builder = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.into())))
        .map_err(|e| format!("bad request {method} {url}: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status().as_u16();
        let headers = header_pairs(response.headers());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {url}: reading body: {e}"))?
            .to_bytes();
        Ok(HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{method} {url}: timed out after {timeout:?}"))?
}

// ---------------------------------------------------------------------------------------------
// Event builders
// ---------------------------------------------------------------------------------------------

/// `{"time", "type", "record"}` stamped now.
pub fn telemetry_event(kind: &str, record: Value) -> Value {
    json!({"time": iso8601(SystemTime::now()), "type": kind, "record": record})
}

fn restamp(mut event: Value) -> Value {
    event["time"] = json!(iso8601(SystemTime::now()));
    event
}

fn function_arn(opts: &EmulatorOptions) -> String {
    let base = format!(
        "arn:aws:lambda:{}:{}:function:{}",
        opts.region, opts.account_id, opts.function_name
    );
    if opts.function_version == "$LATEST" {
        base
    } else {
        format!("{base}:{}", opts.function_version)
    }
}

/// `platform.initStart` or `platform.restoreStart`.
fn phase_start_event(opts: &EmulatorOptions, restore: bool) -> Value {
    let mut record = json!({
        "functionName": opts.function_name,
        "functionVersion": opts.function_version,
        "instanceId": new_request_id(),
        "instanceMaxMemory": u64::from(opts.memory_mb) * 1024 * 1024,
        "runtimeVersion": "python:3.13.v21",
        "runtimeVersionArn": format!("arn:aws:lambda:{}::runtime:{}", opts.region, "0d1a2b3c".repeat(8)),
    });
    if restore {
        return telemetry_event("platform.restoreStart", record);
    }
    record["initializationType"] = json!(opts.initialization_type);
    record["phase"] = json!("init");
    telemetry_event("platform.initStart", record)
}

/// `platform.initRuntimeDone` or `platform.restoreRuntimeDone`.
fn phase_runtime_done_event(opts: &EmulatorOptions, restore: bool) -> Value {
    if restore {
        return telemetry_event("platform.restoreRuntimeDone", json!({"status": "success"}));
    }
    let record = json!({
        "initializationType": opts.initialization_type,
        "phase": "init",
        "status": "success",
    });
    telemetry_event("platform.initRuntimeDone", record)
}

/// `platform.initReport` or `platform.restoreReport`.
fn phase_report_event(opts: &EmulatorOptions, restore: bool, duration_ms: f64) -> Value {
    let metrics = json!({"durationMs": duration_ms});
    if restore {
        let record = json!({"status": "success", "metrics": metrics});
        return telemetry_event("platform.restoreReport", record);
    }
    let record = json!({
        "initializationType": opts.initialization_type,
        "phase": "init",
        "status": "success",
        "metrics": metrics,
    });
    telemetry_event("platform.initReport", record)
}

fn invoke_event(opts: &EmulatorOptions, spec: &InvokeSpec) -> Value {
    let mut event = json!({
        "eventType": "INVOKE",
        "deadlineMs": unix_ms(SystemTime::now() + spec.timeout),
        "requestId": spec.request_id,
        "invokedFunctionArn": function_arn(opts),
    });
    if let Some(trace) = &spec.trace_header {
        event["tracing"] = json!({"type": "X-Amzn-Trace-Id", "value": trace});
    }
    event
}

/// Telemetry `TraceContext` with a span id derived from the request id.
fn tracing_context(spec: &InvokeSpec) -> Option<Value> {
    spec.trace_header.as_ref().map(|value| {
        json!({
            "spanId": span_id_for(&spec.request_id),
            "type": "X-Amzn-Trace-Id",
            "value": value,
        })
    })
}

/// Adds `status`, `errorType` and `tracing` to an invocation record.
fn with_outcome(mut record: Value, spec: &InvokeSpec, tracing: &Option<Value>) -> Value {
    record["status"] = json!(spec.status);
    if let Some(error_type) = &spec.error_type {
        record["errorType"] = json!(error_type);
    }
    if let Some(tracing) = tracing {
        record["tracing"] = tracing.clone();
    }
    record
}

fn start_event(opts: &EmulatorOptions, spec: &InvokeSpec, tracing: &Option<Value>) -> Value {
    let mut record = json!({"requestId": spec.request_id, "version": opts.function_version});
    if let Some(tracing) = tracing {
        record["tracing"] = tracing.clone();
    }
    telemetry_event("platform.start", record)
}

fn span(name: &str, start: SystemTime, duration_ms: f64) -> Value {
    json!({"name": name, "start": iso8601(start), "durationMs": duration_ms})
}

/// responseLatency (90 %), responseDuration (5 %) and the rest, back to back from `start`.
fn response_spans(start: SystemTime, total: Duration) -> (Value, Value, SystemTime, f64) {
    let total_ms = millis(total);
    let latency = round3(total_ms * 0.9);
    let response = round3(total_ms * 0.05);
    let latency_end = start + Duration::from_secs_f64(latency / 1000.0);
    let response_end = latency_end + Duration::from_secs_f64(response / 1000.0);
    let rest = round3((total_ms - latency - response).max(0.0));
    (
        span("responseLatency", start, latency),
        span("responseDuration", latency_end, response),
        response_end,
        rest,
    )
}

fn runtime_done_event(
    spec: &InvokeSpec,
    tracing: &Option<Value>,
    start: SystemTime,
    handler: Duration,
) -> Value {
    let (latency, response, overhead_start, overhead_ms) = response_spans(start, handler);
    let record = json!({
        "requestId": spec.request_id,
        "spans": [latency, response, span("runtimeOverhead", overhead_start, overhead_ms)],
        "metrics": {"durationMs": millis(handler), "producedBytes": spec.produced_bytes},
    });
    telemetry_event("platform.runtimeDone", with_outcome(record, spec, tracing))
}

struct ReportTiming {
    handler: Duration,
    /// From runtimeDone to the extension's `/next`.
    overhead: Duration,
    runtime_done_wall: SystemTime,
    cold_start_metric: Option<(&'static str, f64)>,
}

/// `platform.report`; `durationMs` covers handler + extension overhead (reference §6.3).
fn report_event(
    opts: &EmulatorOptions,
    spec: &InvokeSpec,
    tracing: &Option<Value>,
    timing: ReportTiming,
) -> Value {
    let duration_ms = millis(timing.handler + timing.overhead);
    let mut metrics = json!({
        "durationMs": duration_ms,
        "billedDurationMs": duration_ms.ceil() as u64,
        "memorySizeMB": opts.memory_mb,
        "maxMemoryUsedMB": (opts.memory_mb / 4).max(1),
    });
    if let Some((name, value)) = timing.cold_start_metric {
        metrics[name] = json!(value);
    }
    let overhead = span(
        "extensionOverhead",
        timing.runtime_done_wall,
        millis(timing.overhead),
    );
    let record = json!({"requestId": spec.request_id, "metrics": metrics, "spans": [overhead]});
    telemetry_event("platform.report", with_outcome(record, spec, tracing))
}

/// Managed Instances report: only `durationMs`, response spans, no extensionOverhead.
fn managed_instances_report_event(
    spec: &InvokeSpec,
    tracing: &Option<Value>,
    start: SystemTime,
    handler: Duration,
) -> Value {
    let (latency, response, _, _) = response_spans(start, handler);
    let record = json!({
        "requestId": spec.request_id,
        "metrics": {"durationMs": millis(handler)},
        "spans": [latency, response],
    });
    telemetry_event("platform.report", with_outcome(record, spec, tracing))
}

// ---------------------------------------------------------------------------------------------
// Process management
// ---------------------------------------------------------------------------------------------

fn make_temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lambda-emulator-{}-{}",
        std::process::id(),
        new_request_id()
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("emulator: cannot create {}: {e}", dir.display()));
    dir
}

/// Copies the binary to `dir/exe_name` (so it registers under that name) and makes it executable.
fn install_binary(binary: &Path, dir: &Path, exe_name: &str) -> PathBuf {
    let exe = dir.join(exe_name);
    std::fs::copy(binary, &exe).unwrap_or_else(|e| {
        panic!(
            "emulator: cannot copy {} to {}: {e}",
            binary.display(),
            exe.display()
        )
    });
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("emulator: cannot chmod {}: {e}", exe.display()));
    exe
}

fn build_command(
    exe: &Path,
    dir: &Path,
    runtime_api: SocketAddr,
    opts: &EmulatorOptions,
) -> Command {
    let mut command = match opts.sandbox_ip {
        None => Command::new(exe),
        Some(ip) => {
            let hosts = write_hosts_file(dir, ip);
            let mut command = Command::new("unshare");
            command
                .args([
                    "-m",
                    "sh",
                    "-c",
                    r#"mount --bind "$1" /etc/hosts && exec "$2""#,
                    "sh",
                ])
                .arg(hosts)
                .arg(exe);
            command
        }
    };
    command
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", &opts.function_name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", &opts.function_version)
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            opts.memory_mb.to_string(),
        )
        .env("AWS_REGION", &opts.region)
        .env("AWS_DEFAULT_REGION", &opts.region)
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", &opts.initialization_type)
        .env("TZ", ":UTC")
        // Tests run in parallel: the function-side OTLP receiver takes free
        // ports unless a test chooses them (extra_env comes after and wins).
        .env("LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR", "127.0.0.1:0")
        .env("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR", "127.0.0.1:0")
        .envs(opts.extra_env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

fn write_hosts_file(dir: &Path, ip: Ipv4Addr) -> PathBuf {
    let path = dir.join("hosts");
    let content = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\tsandbox.localdomain sandbox\n"
    );
    std::fs::write(&path, content)
        .unwrap_or_else(|e| panic!("emulator: cannot write {}: {e}", path.display()));
    path
}

/// Spawns, retrying briefly on ETXTBSY (another test thread may still hold the fresh copy open).
async fn spawn_child(command: &mut Command, exe: &Path) -> Child {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("emulator: cannot spawn {}: {e}", exe.display()),
        }
    }
}

async fn collect_output(shared: Arc<Shared>, stream: impl AsyncRead + Unpin, echo: bool) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => {
                shared.update(|st| st.output_closed += 1);
                return;
            }
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if echo {
                    eprintln!("[ext] {text}");
                }
                shared.update(|st| {
                    st.output.push_str(text);
                    st.output.push('\n');
                });
            }
        }
    }
}

async fn watch_exit(shared: Arc<Shared>, mut child: Child) {
    let code = match child.wait().await {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1),
        Err(_) => -1,
    };
    let at = shared.since_spawn();
    shared.update(|st| {
        st.exit = Some(code);
        st.exited_at = Some(at);
        st.frozen = false;
    });
}

/// Waits until the kernel reports the process as stopped: `kill(SIGSTOP)` only queues the signal.
async fn wait_until_stopped(pid: u32, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match process_state(pid) {
            Some('T') | None => return Ok(()),
            Some(_) if Instant::now() >= deadline => {
                return Err(format!(
                    "process {pid} did not stop within {timeout:?} after SIGSTOP"
                ))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// The state letter from `/proc/PID/stat` (`T` = stopped), `None` if unreadable.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Sends `signal` to the child's process group (it leads its own group).
fn signal_group(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the group is our own child's.
    unsafe {
        libc::kill(-pid, signal);
    }
}

fn probe_unshare() -> bool {
    let dir = make_temp_dir();
    let hosts = dir.join("hosts");
    let probe = std::fs::write(&hosts, "127.0.0.9\temulator-unshare-probe\n").and_then(|_| {
        std::process::Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                r#"mount --bind "$1" /etc/hosts && grep -q emulator-unshare-probe /etc/hosts"#,
                "sh",
            ])
            .arg(&hosts)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    });
    let available = match probe {
        Ok(mut child) => wait_blocking(&mut child, Duration::from_secs(5)),
        Err(_) => false,
    };
    let _ = std::fs::remove_dir_all(&dir);
    available
}

/// Waits for a std child with a timeout; kills it on timeout. True if it exited successfully.
fn wait_blocking(child: &mut std::process::Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return false,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn output_tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("--- extension output (last 40 lines) ---\n{tail}")
}

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn millis(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Unix epoch milliseconds.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// ISO-8601 UTC with milliseconds and `Z`, e.g. `2025-03-04T10:15:30.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs() as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let second_of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A random UUID (version 4 layout), e.g. for request ids.
pub fn new_request_id() -> String {
    let high = (random_u64() & 0xffff_ffff_ffff_0fff) | 0x4000;
    let low = (random_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// 16 lower-case hex digits derived from the request id (FNV-1a), never all zero.
pub fn span_id_for(request_id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in request_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:016x}", hash.max(1))
}
