//! The state shared by the telemetry receiver (which feeds it) and the
//! lifecycle (which waits on it and flushes it): the [`Mapper`] behind a
//! mutex, and a notification each time new events arrive.
//!
//! Everything runs on one current-thread runtime; the lock is only held for
//! in-memory work, never across an `.await`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::lambda::events::ParsedBatch;
use crate::mapping::Mapper;
use crate::time::UnixNanos;

/// Receiver counters (the anomalies among them are exported as the
/// bridge's own metrics and repeated in the shutdown summary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub batches: u64,
    pub events: u64,
    pub skipped_events: u64,
    pub rejected_bodies: u64,
    /// Batches dropped as redeliveries of one already ingested.
    pub duplicate_batches: u64,
    /// Batches whose answer was held back while the outbox drained.
    pub held_back: u64,
}

/// How many recent batch digests are remembered to spot redeliveries.
const RECENT_BATCHES: usize = 64;

pub struct State {
    pub mapper: Mapper,
    pub receiver: ReceiverStats,
    /// When the last batch arrived.
    pub last_batch_at: Option<Instant>,
    /// Telemetry bytes received since the mapper's output was last taken.
    pub pending_bytes: usize,
    /// Digests of the last batch bodies (newest last).
    recent: std::collections::VecDeque<u64>,
}

pub struct Shared {
    state: Mutex<State>,
    changed: Notify,
    /// Signalled when `pending_bytes` reaches `pressure_bytes`.
    pressure: Notify,
    pressure_bytes: AtomicUsize,
}

impl Shared {
    pub fn new(mapper: Mapper) -> Self {
        Shared {
            state: Mutex::new(State {
                mapper,
                receiver: ReceiverStats::default(),
                last_batch_at: None,
                pending_bytes: 0,
                recent: std::collections::VecDeque::with_capacity(RECENT_BATCHES),
            }),
            changed: Notify::new(),
            pressure: Notify::new(),
            pressure_bytes: AtomicUsize::new(usize::MAX),
        }
    }

    /// From how many received bytes on [`Shared::under_pressure`] fires.
    pub fn set_pressure_bytes(&self, bytes: usize) {
        self.pressure_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Waits until the telemetry received since the last take reaches the
    /// pressure threshold (a burst between flush points).
    pub async fn under_pressure(&self) {
        self.pressure.notified().await;
    }

    /// Takes what the mapper has produced (`last`: also what is still
    /// incomplete, at the end), with the resource it belongs to.
    pub fn take(
        &self,
        last: bool,
    ) -> (
        crate::mapping::Output,
        opentelemetry_proto::tonic::resource::v1::Resource,
    ) {
        let mut st = self.lock();
        st.pending_bytes = 0;
        let output = if last {
            st.mapper.take_final()
        } else {
            st.mapper.take()
        };
        (output, st.mapper.resource().clone())
    }

    /// Locks the state. A panic while holding the lock cannot leave the
    /// mapper half-updated in a way that matters more than losing it, so a
    /// poisoned lock is simply taken over.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds one decoded batch of `bytes` bytes.
    pub fn ingest(&self, batch: ParsedBatch, observed: UnixNanos, bytes: usize) {
        let pressure = {
            let mut st = self.lock();
            st.pending_bytes += bytes;
            st.receiver.batches += 1;
            st.last_batch_at = Some(Instant::now());
            st.receiver.events += batch.events.len() as u64;
            st.receiver.skipped_events += batch.skipped.len() as u64;
            for ev in batch.events {
                st.mapper.ingest(ev, observed);
            }
            st.pending_bytes >= self.pressure_bytes.load(Ordering::Relaxed)
        };
        if pressure {
            self.pressure.notify_one();
        }
        self.changed.notify_waiters();
    }

    /// Whether `body` repeats one of the last batches byte for byte: Lambda
    /// sends a batch again when it got no 2xx in time, and events carry
    /// millisecond times, so a repeated body is a redelivery. Remembers the
    /// body otherwise.
    pub fn is_redelivery(&self, body: &[u8]) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        let digest = h.finish();
        let mut st = self.lock();
        if st.recent.contains(&digest) {
            st.receiver.duplicate_batches += 1;
            return true;
        }
        if st.recent.len() == RECENT_BATCHES {
            st.recent.pop_front();
        }
        st.recent.push_back(digest);
        false
    }

    pub fn count_held_back(&self) {
        self.lock().receiver.held_back += 1;
    }

    pub fn count_rejected_body(&self) {
        self.lock().receiver.rejected_bodies += 1;
    }

    /// Waits until no batch has arrived for `quiet`, or until `cap`.
    pub async fn wait_quiet(&self, quiet: std::time::Duration, cap: Instant) {
        loop {
            let Some(last) = self.lock().last_batch_at else {
                return;
            };
            let now = Instant::now();
            let until = last + quiet;
            if until <= now || cap <= now {
                return;
            }
            tokio::time::sleep_until(until.min(cap)).await;
        }
    }

    /// Waits until `done` holds or `deadline` passes; returns whether it holds.
    pub async fn wait_until(&self, deadline: Instant, done: impl Fn(&State) -> bool) -> bool {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.lock()) {
                return true;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return done(&self.lock()),
            }
        }
    }
}
