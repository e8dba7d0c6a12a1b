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
//!
//! # Files
//! * `types`: the public options, specs, outcomes and records.
//! * `lifecycle`: the [`Emulator`] handle: spawn, init, invocations, shutdown, freezing.
//! * `inspect`: what a test reads back from a running [`Emulator`].
//! * `state`: the platform state the server, the delivery loop and the handle share.
//! * `extensions_api`: the Runtime API server and its Extensions API routes.
//! * `subscribe`: the Telemetry API subscribe route and its validation.
//! * `delivery`: batched, retried telemetry delivery to the extension's listener.
//! * `events`: the platform's event builders.
//! * `process`: the child process, its environment, output and signals.
//! * `cpu_share`: Lambda's CPU share for the child (a cgroup CPU quota); with
//!   `BRIDGE_TEST_CPU_SHARE_MB` set, every extension started runs at that share.
//! * `http`, `time`, `ids`: HTTP plumbing, timestamps, request and span ids.
//!
//! The benches and examples include this folder by path (`#[path = ".../emulator/mod.rs"]`), so
//! it uses nothing from the other support modules.

#![allow(dead_code)]

mod cpu_share;
mod delivery;
mod events;
mod extensions_api;
mod http;
mod ids;
mod inspect;
mod lifecycle;
mod process;
mod state;
mod subscribe;
mod time;
mod types;

// Each test file, bench and example uses a different part of this.
#[allow(unused_imports)]
pub use self::{
    cpu_share::{period_from_env, CpuShare, FULL_CPU_MB},
    events::telemetry_event,
    http::http_request,
    ids::{new_request_id, span_id_for},
    lifecycle::Emulator,
    process::{extension_binary, inherited_env, process_state, unshare_available},
    time::{iso8601, unix_ms},
    types::{
        Delivery, EmulatorOptions, HttpResponse, InitOutcome, InvokeOutcome, InvokeSpec,
        RecordedCall, Registration, ShutdownOutcome, DEFAULT_EXE_NAME,
    },
};
