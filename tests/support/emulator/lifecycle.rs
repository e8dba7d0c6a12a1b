//! The [`Emulator`] handle and the lifecycle it drives: spawning the extension, init (or
//! SnapStart restore), invocations with synthesized runtime telemetry, shutdown with a deadline
//! and SIGKILL, and freezing (SIGSTOP once the extension waits in `/next` with no delivery in
//! flight, SIGCONT before the next event, deferred `platform.report`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::cpu_share::{period_from_env, CpuShare};
use super::delivery::delivery_loop;
use super::events::{
    invoke_event, managed_instances_report_event, phase_report_event, phase_runtime_done_event,
    phase_start_event, report_event, restamp, runtime_done_event, start_event, telemetry_event,
    tracing_context, ReportTiming,
};
use super::extensions_api::serve_runtime_api;
use super::http::HTTP_TIMEOUT;
use super::ids::new_request_id;
use super::process::{
    build_command, collect_output, extension_binary, install_binary, make_temp_dir, signal_group,
    spawn_child, wait_until_stopped, watch_exit,
};
use super::state::{QueuedEvent, Shared};
use super::time::{millis, remaining, unix_ms};
use super::types::{
    EmulatorOptions, InitOutcome, InvokeOutcome, InvokeSpec, ShutdownOutcome, DEFAULT_EXE_NAME,
    MANAGED_INSTANCES, ON_DEMAND, SNAP_START,
};

/// How long an event waits for the extension to be blocked in `/next`.
const HANDOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound for waiting until the extension can be frozen (covers a full retry cycle).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(40);
/// Extra time allowed for the extension's `/next` after an invocation's own timeout.
const NEXT_GRACE: Duration = Duration::from_secs(2);
/// Bound for a SIGSTOPped process to show up as stopped.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound for reaping the child after SIGKILL.
pub(super) const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running emulated execution environment with one extension process.
pub struct Emulator {
    pub(super) shared: Arc<Shared>,
    pub(super) pid: u32,
    pub(super) runtime_api: SocketAddr,
    pub(super) temp_dir: PathBuf,
    /// When the child was about to exec, after joining its cgroups (only with
    /// [`EmulatorOptions::cgroup_procs`]).
    exec_at: Option<Duration>,
    tasks: Vec<JoinHandle<()>>,
    /// The CPU share of `BRIDGE_TEST_CPU_SHARE_MB`, removed after the child is killed.
    cpu_share: Option<CpuShare>,
}

impl Emulator {
    /// Binds the Runtime API server on 127.0.0.1:0 and spawns a copy of `binary` named
    /// `exe_name` (usually [`DEFAULT_EXE_NAME`]), so the extension registers under that file name.
    /// Panics with a clear message if that is impossible.
    pub async fn start(binary: &Path, exe_name: &str, mut opts: EmulatorOptions) -> Emulator {
        let cpu_share = share_from_env(&mut opts);
        let temp_dir = make_temp_dir();
        let exe = install_binary(binary, &temp_dir, exe_name);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("emulator: cannot bind the Runtime API on 127.0.0.1");
        let runtime_api = listener
            .local_addr()
            .expect("emulator: Runtime API address");
        let echo = opts.echo_output;
        let (mut command, exec_clock) = build_command(&exe, &temp_dir, runtime_api, &opts);

        let shared = Arc::new(Shared::new(opts));
        let server = tokio::spawn(serve_runtime_api(listener, shared.clone()));
        let mut child = spawn_child(&mut command, &exe).await;
        let pid = child.id().expect("emulator: child has no pid");
        // The command (and the write end of the exec clock's pipe with it) is no longer needed.
        drop(command);
        let exec_at = exec_clock
            .and_then(|c| c.exec_instant())
            .map(|at| at.saturating_duration_since(shared.epoch));

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
            exec_at,
            tasks,
            cpu_share,
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

    /// Since spawn, when the child was about to exec after joining its cgroups
    /// ([`EmulatorOptions::cgroup_procs`]); `None` without cgroups.
    pub fn exec_at(&self) -> Option<Duration> {
        self.exec_at
    }

    /// The CPU share the extension runs at (`BRIDGE_TEST_CPU_SHARE_MB`), if any.
    pub fn cpu_share(&self) -> Option<&CpuShare> {
        self.cpu_share.as_ref()
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

        let (subscribed_at, cpu_counter_at_first_next) = {
            let st = self.shared.lock();
            (
                st.subscribed_at,
                st.next_cpu_counters.first().copied().flatten(),
            )
        };
        Ok(InitOutcome {
            registered_at,
            subscribed_at,
            first_next_at,
            init_duration_ms,
            cpu_counter_at_first_next,
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
            runtime_done_at: done_at,
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

    /// SIGCONT + SIGKILL to the child's process group (no-op once it has exited).
    pub fn kill(&self) {
        let st = self.shared.lock();
        if st.exit.is_none() {
            signal_group(self.pid, libc::SIGCONT);
            signal_group(self.pid, libc::SIGKILL);
        }
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
            runtime_done_at: self.shared.since_spawn(),
            runtime_done_delivered_at: None,
            next_called_at: self.shared.since_spawn(),
            post_runtime: None,
        })
    }
}

/// `BRIDGE_TEST_CPU_SHARE_MB=MB`: the extension runs in a cgroup of its own with the CPU quota
/// of a MB-sized function (unless the options already name cgroups). Panics when no cgroup CPU
/// controller is writable: a test run asked to be throttled must not pass unthrottled.
fn share_from_env(opts: &mut EmulatorOptions) -> Option<CpuShare> {
    let mb = std::env::var("BRIDGE_TEST_CPU_SHARE_MB").ok()?;
    if !opts.cgroup_procs.is_empty() {
        return None;
    }
    let mb: u32 = mb
        .parse()
        .ok()
        .filter(|mb| (128..=10_240).contains(mb))
        .unwrap_or_else(|| panic!("BRIDGE_TEST_CPU_SHARE_MB={mb}: a memory size, 128 to 10240"));
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let share = CpuShare::create(
        "lambda-otel-bridge-test-",
        &n.to_string(),
        mb,
        period_from_env("BRIDGE_TEST_CFS_PERIOD_US"),
    )
    .unwrap_or_else(|e| panic!("BRIDGE_TEST_CPU_SHARE_MB={mb}: cannot create a cgroup: {e}"));
    opts.cgroup_procs = share.procs.clone();
    if opts.cpu_counter.is_none() {
        opts.cpu_counter = share.counter.as_ref().map(|(p, _)| p.clone());
    }
    Some(share)
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
