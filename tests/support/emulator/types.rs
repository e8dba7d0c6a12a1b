//! The emulator's public types: how the function and platform are configured
//! ([`EmulatorOptions`]), what one invocation does ([`InvokeSpec`]), and what a test reads back
//! (outcomes of init, invocations and shutdown, recorded Runtime API calls and telemetry
//! deliveries, the registration, one-shot HTTP responses).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use super::http::find_header;
use super::ids::new_request_id;

/// The extension's file name in `/opt/extensions` unless a test chooses another.
pub const DEFAULT_EXE_NAME: &str = "lambda-otel-bridge";

pub(super) const MANAGED_INSTANCES: &str = "lambda-managed-instances";
pub(super) const SNAP_START: &str = "snap-start";
pub(super) const ON_DEMAND: &str = "on-demand";

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
    /// Name prefixes of variables of this process's own environment to pass to the extension
    /// (the demo passes `LAMBDA_OTEL_BRIDGE_`, `OTEL_` and `AWS_LAMBDA_`). They come after the
    /// emulator's own variables and before `extra_env`; `AWS_LAMBDA_RUNTIME_API` is always the
    /// emulator's. Empty by default: tests see only what they set.
    pub inherit_env: Vec<String>,
    /// SIGSTOP the extension once it waits in `/next`; SIGCONT before the next event.
    pub freeze_between_invocations: bool,
    /// Subscribe `schemaVersion`s that are accepted (on Managed Instances only `2025-01-29`).
    pub accepted_schema_versions: Vec<String>,
    /// `false`: subscribe answers 202 `Telemetry.NotSupported` (like SAM/RIE).
    pub telemetry_supported: bool,
    /// `None`: telemetry goes to 127.0.0.1. `Some(ip)`: the extension runs in a mount namespace
    /// whose `/etc/hosts` maps `sandbox.localdomain`/`sandbox` to `ip`, and telemetry goes to `ip`.
    pub sandbox_ip: Option<Ipv4Addr>,
    /// `Some(ip)`: the extension runs in a mount namespace whose `/etc/resolv.conf` names only
    /// the name server `ip` (port 53) and whose `/etc/hosts` does not name `sandbox.localdomain`
    /// (the address comes from that server, if at all). Telemetry still goes to `sandbox_ip`.
    pub name_server: Option<Ipv4Addr>,
    /// Lines added to the namespace's `/etc/hosts` (`"127.0.0.1\tcollector.test"`); any
    /// entry runs the extension in a mount namespace as `sandbox_ip` does.
    pub hosts_lines: Vec<String>,
    /// `Some(text)`: the extension runs in a mount namespace whose `/etc/nsswitch.conf` is `text`.
    pub nsswitch_conf: Option<String>,
    /// Echo the child's output lines to stderr, prefixed with `[ext] `.
    pub echo_output: bool,
    /// Addresses `register` tries to connect to before answering (what the
    /// function's init code, started once every extension has registered,
    /// would find listening); the outcomes are in [`Registration::probes`].
    pub probe_at_register: Vec<std::net::SocketAddr>,
    /// `cgroup.procs` files the child writes itself into before it execs (cgroup v1 or v2), so
    /// a CPU quota applies from its first instruction (the process bench's CPU shares).
    pub cgroup_procs: Vec<std::path::PathBuf>,
    /// A file holding a CPU-time counter of the child's cgroup (v1 `cpuacct.usage`, v2
    /// `cpu.stat`), read as each `/next` call arrives: its first number is kept
    /// ([`InitOutcome::cpu_counter_at_first_next`]).
    pub cpu_counter: Option<std::path::PathBuf>,
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
            inherit_env: Vec::new(),
            freeze_between_invocations: true,
            accepted_schema_versions: vec![
                "2025-01-29".into(),
                "2022-12-13".into(),
                "2022-07-01".into(),
            ],
            telemetry_supported: true,
            sandbox_ip: None,
            name_server: None,
            hosts_lines: Vec::new(),
            nsswitch_conf: None,
            echo_output: false,
            probe_at_register: Vec::new(),
            cgroup_procs: Vec::new(),
            cpu_counter: None,
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
    /// [`EmulatorOptions::cpu_counter`] as the first `/next` arrived.
    pub cpu_counter_at_first_next: Option<u64>,
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
    /// When the emulated runtime finished (its `platform.runtimeDone` was queued): what Lambda
    /// bills after it until `/next` is the extension's post-runtime time.
    pub runtime_done_at: Duration,
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
    /// [`EmulatorOptions::probe_at_register`]: whether each accepted a connection.
    pub probes: Vec<(std::net::SocketAddr, bool)>,
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
