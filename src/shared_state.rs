//! The state shared by the telemetry receiver (which feeds it) and the
//! lifecycle (which waits on it and flushes it): the [`Mapper`] behind a
//! mutex, a notification each time new events arrive, the listener's
//! [`Counters`], and the mapper's resource published through a `watch`.
//!
//! Everything runs on one current-thread runtime; the lock is only held for
//! in-memory work, never across an `.await`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::counters::{Count, Counters};
use crate::lambda::events::ParsedBatch;
use crate::mapping::Mapper;
use crate::time::UnixNanos;

/// How many recent batch digests are remembered to spot redeliveries.
const RECENT_BATCHES: usize = 64;

pub struct State {
    pub mapper: Mapper,
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
    /// What the listener counts (shared with the exporter's own metrics).
    counters: Arc<Counters>,
    /// The mapper's resource, published whenever it changes (`faas.instance`
    /// arrives with the first platform event) for the exporter's own metrics
    /// and the local receiver's enrichment.
    resource: watch::Sender<Resource>,
}

impl Shared {
    pub fn new(mapper: Mapper, counters: Arc<Counters>) -> Self {
        let resource = watch::Sender::new(mapper.resource().clone());
        Shared {
            state: Mutex::new(State {
                mapper,
                last_batch_at: None,
                pending_bytes: 0,
                recent: std::collections::VecDeque::with_capacity(RECENT_BATCHES),
            }),
            changed: Notify::new(),
            pressure: Notify::new(),
            pressure_bytes: AtomicUsize::new(usize::MAX),
            counters,
            resource,
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

    /// The mapper's resource, kept current.
    pub fn resource(&self) -> watch::Receiver<Resource> {
        self.resource.subscribe()
    }

    /// Takes what the mapper has completed.
    pub fn take(&self) -> crate::mapping::Output {
        let mut st = self.lock();
        st.pending_bytes = 0;
        st.mapper.take()
    }

    /// Takes everything the mapper holds, what is incomplete too (the end).
    pub fn take_final(&self) -> crate::mapping::Output {
        let mut st = self.lock();
        st.pending_bytes = 0;
        st.mapper.take_final()
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
            st.last_batch_at = Some(Instant::now());
            self.counters.add(Count::Batches, 1);
            self.counters.add(Count::Events, batch.events.len() as u64);
            self.counters
                .add(Count::SkippedEvents, batch.skipped.len() as u64);
            for ev in batch.events {
                st.mapper.ingest(ev, observed);
            }
            let current = st.mapper.resource();
            self.resource.send_if_modified(|r| {
                let changed = r != current;
                if changed {
                    r.clone_from(current);
                }
                changed
            });
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
            self.counters.add(Count::DuplicateBatches, 1);
            return true;
        }
        if st.recent.len() == RECENT_BATCHES {
            st.recent.pop_front();
        }
        st.recent.push_back(digest);
        false
    }

    pub fn count(&self, count: Count) {
        self.counters.add(count, 1);
    }

    /// The listener's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
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
