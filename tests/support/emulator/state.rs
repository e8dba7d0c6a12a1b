//! The emulated platform's state, shared by the Runtime API server, the telemetry delivery loop
//! and the [`Emulator`](super::Emulator) handle: what was called and delivered, the subscription,
//! the queue of telemetry waiting for delivery, freezing, and the child's output and exit. Every
//! change wakes the waiters of [`Shared::wait_for`].

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use super::process::output_tail;
use super::types::{Delivery, EmulatorOptions, RecordedCall, Registration};

pub(super) struct Shared {
    pub(super) opts: EmulatorOptions,
    pub(super) epoch: Instant,
    pub(super) state: Mutex<PlatformState>,
    /// Signalled after every state change that someone may wait for.
    pub(super) changed: Notify,
    pub(super) client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Default)]
pub(super) struct PlatformState {
    pub(super) calls: Vec<RecordedCall>,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) delivered_events: Vec<Value>,
    pub(super) registration: Option<Registration>,
    pub(super) subscription: Option<Subscription>,
    pub(super) subscribed_at: Option<Duration>,
    pub(super) init_done: bool,
    pub(super) next_calls: Vec<Duration>,
    /// [`EmulatorOptions::cpu_counter`] read as each `/next` arrived.
    pub(super) next_cpu_counters: Vec<Option<u64>>,
    pub(super) pending_next: Option<oneshot::Sender<(Value, String)>>,
    pub(super) handed_out: Vec<(Duration, Value)>,
    /// Events waiting for delivery.
    pub(super) queue: VecDeque<QueuedEvent>,
    /// Events released into `queue` at the next thaw (`platform.report`).
    pub(super) deferred: Vec<QueuedEvent>,
    pub(super) in_flight: bool,
    pub(super) frozen: bool,
    pub(super) freeze_requested: bool,
    /// Set during shutdown: deliver without waiting for `timeoutMs`.
    pub(super) flush_immediately: bool,
    pub(super) runtime_done_acks: HashMap<String, Duration>,
    /// `initDurationMs`/`restoreDurationMs` for the first report.
    pub(super) cold_start_metric: Option<(&'static str, f64)>,
    pub(super) output: String,
    /// Output streams (stdout, stderr) that reached end of file.
    pub(super) output_closed: u32,
    pub(super) exit: Option<i32>,
    pub(super) exited_at: Option<Duration>,
}

impl PlatformState {
    pub(super) fn waiting_in_next(&self) -> bool {
        self.pending_next.as_ref().is_some_and(|tx| !tx.is_closed())
    }
}

#[derive(Debug, Clone)]
pub(super) struct Subscription {
    pub(super) body: Value,
    pub(super) types: Vec<String>,
    pub(super) buffering: Buffering,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) path: String,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Buffering {
    pub(super) max_items: usize,
    pub(super) max_bytes: usize,
    pub(super) timeout: Duration,
}

pub(super) struct QueuedEvent {
    pub(super) value: Value,
    pub(super) json: String,
    pub(super) kind: String,
    pub(super) queued_at: Instant,
}

impl QueuedEvent {
    pub(super) fn new(value: Value) -> QueuedEvent {
        QueuedEvent {
            json: value.to_string(),
            kind: value["type"].as_str().unwrap_or_default().to_string(),
            value,
            queued_at: Instant::now(),
        }
    }

    /// The subscription type that covers this event.
    pub(super) fn category(&self) -> &'static str {
        match self.kind.as_str() {
            "function" => "function",
            "extension" => "extension",
            _ => "platform",
        }
    }
}

impl Shared {
    pub(super) fn new(opts: EmulatorOptions) -> Shared {
        Shared {
            opts,
            epoch: Instant::now(),
            state: Mutex::new(PlatformState::default()),
            changed: Notify::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, PlatformState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn since_spawn(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Mutates the state and wakes every waiter.
    pub(super) fn update<R>(&self, f: impl FnOnce(&mut PlatformState) -> R) -> R {
        let result = f(&mut self.lock());
        self.changed.notify_waiters();
        result
    }

    pub(super) fn queue(&self, events: impl IntoIterator<Item = Value>) {
        self.update(|st| st.queue.extend(events.into_iter().map(QueuedEvent::new)));
    }

    fn sandbox_address(&self) -> Ipv4Addr {
        self.opts.sandbox_ip.unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// Delivery URL (host replaced by the sandbox address) and the original `Host` header.
    pub(super) fn destination(&self, sub: &Subscription) -> (String, String) {
        let url = format!("http://{}:{}{}", self.sandbox_address(), sub.port, sub.path);
        (url, format!("{}:{}", sub.host, sub.port))
    }

    /// Re-evaluates `check` under the lock after every state change until it yields a value.
    /// Fails on timeout or when the child exits first.
    pub(super) async fn wait_for<T>(
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
