//! Telemetry API delivery: JSON-array POSTs to the subscribed destination (host replaced by the
//! sandbox address), batched by `timeoutMs`/`maxItems`/`maxBytes`, filtered by the subscribed
//! types, one at a time, retried with backoff, then dropped with a `platform.logsDropped` event;
//! and the [`Emulator`] calls that push telemetry or wait for its delivery.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{json, Value};

use super::events::telemetry_event;
use super::http::{post_json, HTTP_TIMEOUT};
use super::lifecycle::Emulator;
use super::state::{Buffering, PlatformState, QueuedEvent, Shared};
use super::types::Delivery;

/// Retries of a failed telemetry POST before its batch is dropped.
const DELIVERY_RETRIES: u32 = 5;
/// Backoff before the first retry; doubled for each further retry.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// The `reason` of the `platform.logsDropped` event for a dropped batch.
const DROP_REASON: &str =
    "Some logs were dropped because the downstream consumer is slower than the logs production rate";

impl Emulator {
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
}

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
pub(super) async fn delivery_loop(shared: Arc<Shared>) {
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
