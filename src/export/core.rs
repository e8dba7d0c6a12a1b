//! The state export tasks share with the exporter: the outbox, the
//! collector's health, the requests still running, and the bridge's own
//! metrics; and how one request's end is applied to them ([`Core::settle`]).

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use tokio::time::Instant;

use super::items::metric_items;
use super::outbox::{DropReason, Entry, Outbox};
use super::self_metrics::SelfMetrics;
use super::settings::Signal;
use super::transport::Outcome;

/// Health of the export path, to avoid spending the function's time on a
/// collector that keeps failing.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// The last request that ended failed retryably, and none was accepted since.
    pub(super) failing: bool,
    pub(super) rng: u64,
}

/// Requests of one signal sent and not yet ended.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Outstanding {
    pub(super) requests: usize,
    pub(super) items: u64,
    /// When the oldest of them was started.
    pub(super) oldest: Option<Instant>,
}

/// A request sent and not yet ended.
pub(super) struct Running {
    pub(super) id: u64,
    pub(super) started: Instant,
    pub(super) items: u64,
    pub(super) task: Option<tokio::task::AbortHandle>,
}

/// The state export tasks share: outbox, health, counters.
pub(super) struct Core {
    pub(super) outbox: Mutex<Outbox>,
    pub(super) health: Mutex<Health>,
    pub(super) self_metrics: SelfMetrics,
    /// When the collector last accepted a request.
    pub(super) last_accepted: Mutex<Option<Instant>>,
    pub(super) outstanding: Mutex<[Vec<Running>; 3]>,
    pub(super) next_request: std::sync::atomic::AtomicU64,
    /// Notified each time a request ends.
    pub(super) settled: tokio::sync::Notify,
    /// Notified each time the outbox may have stopped being backlogged: an
    /// entry taken to be sent, or a request ended.
    pub(super) relieved: tokio::sync::Notify,
    /// Collector headers fetched from AWS secrets (one per distinct secret).
    pub(super) secrets: Vec<std::sync::Arc<super::aws::secrets::SecretHeaders>>,
}

impl Core {
    pub(super) fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn outstanding(&self) -> std::sync::MutexGuard<'_, [Vec<Running>; 3]> {
        self.outstanding.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn outstanding_of(&self, signal: Signal) -> Outstanding {
        let o = self.outstanding();
        let list = &o[signal.index()];
        Outstanding {
            requests: list.len(),
            items: list.iter().map(|r| r.items).sum(),
            oldest: list.iter().map(|r| r.started).min(),
        }
    }

    /// A uniform number in 0..1 for jitter (xorshift64: no RNG crate).
    pub(super) fn jitter_unit(&self) -> f64 {
        let mut h = self.health();
        h.rng ^= h.rng << 13;
        h.rng ^= h.rng >> 7;
        h.rng ^= h.rng << 17;
        (h.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Applies how a request ended: counted as delivered, dropped, or put
    /// back at the front of the outbox (not before its `Retry-After`).
    pub(super) fn settle(&self, mut entry: Entry, outcome: Outcome) -> Settled {
        let signal = entry.signal;
        match outcome {
            Outcome::Accepted { rejected, message } => {
                *self.last_accepted.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now());
                self.health().failing = false;
                if let Some(oldest) = entry.oldest {
                    let age = crate::time::now().saturating_sub(oldest) as f64 / 1e9;
                    self.self_metrics.record_data_age(signal, age);
                }
                if rejected > 0 {
                    self.outbox()
                        .count_drop(signal, DropReason::Rejected, rejected);
                    tracing::debug!("{signal:?}: partial success, {rejected} rejected: {message}");
                } else if !message.is_empty() {
                    tracing::debug!("{signal:?}: collector warning: {message}");
                }
                Settled::Accepted {
                    items: entry.items.saturating_sub(rejected),
                }
            }
            Outcome::Permanent { reason } => {
                self.outbox()
                    .count_drop(signal, DropReason::Refused, entry.items);
                self.self_metrics.count_failure(signal);
                Settled::Permanent {
                    reason: format!("{signal:?}: {reason}"),
                }
            }
            Outcome::Retryable {
                reason,
                retry_after,
            } => {
                self.self_metrics.count_failure(signal);
                self.health().failing = true;
                entry.not_before = retry_after.map(|ra| (Instant::now() + ra).into_std());
                self.outbox().push_front(entry);
                Settled::Retryable {
                    reason: format!("{signal:?}: {reason}"),
                    retry_after,
                }
            }
        }
    }
}

impl Core {
    /// Queues the bridge's own metrics when there is something to say
    /// ([`self_metrics`]).
    pub(super) fn queue_self_metrics(&self, final_flush: bool) {
        let (drops, bytes) = {
            let o = self.outbox();
            (o.drops().clone(), o.bytes())
        };
        let Some(req) = self.self_metrics.report(&drops, bytes, final_flush) else {
            return;
        };
        let items = metric_items(&req);
        self.outbox().push(Entry {
            signal: Signal::Metrics,
            body: Bytes::from(req.encode_to_vec()),
            items,
            not_before: None,
            oldest: None,
            seq: 0,
        });
    }
}

/// How a request ended, as the drain needs to know it (the exporter has
/// already applied it: counted, re-queued or dropped).
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    Accepted {
        items: u64,
    },
    Permanent {
        reason: String,
    },
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
}
