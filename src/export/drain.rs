//! The drain: sends what the outbox holds for one signal within a flush
//! deadline, following the retry rules, through a [`Transport`].
//!
//! The rules, in the order they apply:
//!
//! - **Nothing starts without time left.** A request is only started when
//!   the deadline leaves room for the CPU work of preparing it (OTLP/JSON
//!   conversion, gzip: [`Transport::prepare_cost`]). Running out of time is
//!   not a failure of the collector and is not counted as one.
//! - **A slow request is never cancelled.** Each request runs in its own
//!   task with the export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`) as its only
//!   bound. When the flush deadline comes first the drain stops waiting and
//!   the request finishes on its own (a freeze pauses it, the thaw resumes
//!   it); it is sent again only if it failed. So a collector that is merely
//!   slow never receives the same data twice.
//! - **Bounded retries with a floor.** Within one flush a signal makes at
//!   most [`MAX_FAILED_ATTEMPTS`] failed attempts; after a failed flush (the
//!   collector failing or throttling) only one. Between attempts the drain
//!   waits at least the backoff floor with jitter, or the collector's
//!   `Retry-After` / `RetryInfo` if longer, and only if that wait ends
//!   before the deadline; otherwise the request waits in the outbox for a
//!   later flush, not before its `Retry-After`.
//! - **Bounded concurrency.** At most [`MAX_OUTSTANDING`] requests per
//!   signal are outstanding (answered or not); beyond that the drain waits
//!   for one to finish, within its deadline.

use std::time::Duration;

use tokio::time::Instant;

use super::core::{Running, Settled};
use super::outbox::Entry;
use super::settings::Signal;
use super::Exporter;

/// Failed attempts per signal within one flush while the collector is
/// healthy.
pub const MAX_FAILED_ATTEMPTS: u32 = 3;
/// Failed attempts per signal within one flush once a flush has failed.
pub const DEGRADED_FAILED_ATTEMPTS: u32 = 1;
/// Requests of one signal outstanding at once.
pub const MAX_OUTSTANDING: usize = 4;
/// Shortest wait before a retry within a flush (doubled per retry, plus
/// up to the same again as jitter), whatever `Retry-After` says.
pub const BACKOFF_FLOOR: Duration = Duration::from_millis(25);

/// How many failed attempts a drain may make.
pub fn attempts_allowed(degraded: bool) -> u32 {
    if degraded {
        DEGRADED_FAILED_ATTEMPTS
    } else {
        MAX_FAILED_ATTEMPTS
    }
}

/// The wait before retry number `retry` (0-based): the backoff floor
/// doubled per retry plus jitter (`jitter_unit` in 0..1), or the collector's
/// `Retry-After` when that is longer.
pub fn retry_wait(retry: u32, retry_after: Option<Duration>, jitter_unit: f64) -> Duration {
    let base = BACKOFF_FLOOR * (1u32 << retry.min(6));
    let jittered = base + base.mul_f64(jitter_unit.clamp(0.0, 1.0));
    retry_after.map_or(jittered, |ra| ra.max(jittered))
}

/// What one drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests accepted by the collector.
    pub sent: u32,
    /// Items in them.
    pub delivered_items: u64,
    /// Attempts that failed (retryable or permanent).
    pub failed: u32,
    /// Requests left queued for a later flush.
    pub deferred: u32,
    /// Requests still running when the deadline came (they finish on their own).
    pub in_flight: u32,
    pub errors: Vec<String>,
}

/// How a flush may spend its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushKind {
    /// On the function's path (before `/next`): once the collector has
    /// failed, or a request of the signal has been running for
    /// [`STALLED_AFTER`] (a slow or hanging collector), one attempt per
    /// signal and at most [`DEGRADED_WAIT`] of waiting for answers.
    Billed,
    /// Off the function's path (a background flush).
    Background,
    /// The last one (SHUTDOWN): full retries and Retry-After waits, within
    /// the deadline.
    Final,
}

/// A request unanswered for this long means a slow or hanging collector
/// (a healthy one answers in milliseconds; a background export may have
/// started one a moment before a billed flush, which is no reason to stop
/// waiting for answers).
pub const STALLED_AFTER: Duration = Duration::from_millis(500);

impl FlushKind {
    /// The `kind` attribute of `lambda_otel_bridge.flush.duration`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushKind::Billed => "billed",
            FlushKind::Background => "background",
            FlushKind::Final => "final",
        }
    }
}

/// The longest a billed flush waits for answers from a collector that
/// failed its last request (or is still busy with an earlier one). The
/// requests are still made and finish in the background.
pub const DEGRADED_WAIT: Duration = Duration::from_millis(30);

impl Exporter {
    /// Starts one request in its own task; the returned receiver yields how
    /// it ended (already applied to the outbox and counters).
    fn start_request(&self, entry: Entry) -> tokio::sync::oneshot::Receiver<Settled> {
        let i = entry.signal.index();
        let transport = self.transports[i].clone();
        let id = self
            .core
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.core.outstanding()[i].push(Running {
            id,
            started: Instant::now(),
            items: entry.items,
            task: None,
        });
        let send = transport
            .clone()
            .send(entry.body.clone(), Instant::now() + transport.timeout());
        let core = self.core.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let outcome = send.await;
            let settled = core.settle(entry, outcome);
            core.outstanding()[i].retain(|r| r.id != id);
            core.settled.notify_waiters();
            core.relieved.notify_waiters();
            let _ = tx.send(settled);
        });
        if let Some(r) = self.core.outstanding()[i].iter_mut().find(|r| r.id == id) {
            r.task = Some(task.abort_handle());
        }
        rx
    }

    pub(super) async fn drain(
        &self,
        signal: Signal,
        deadline: Instant,
        kind: FlushKind,
        failing: bool,
        flush_started: Instant,
    ) -> DrainReport {
        let transport = self.transports[signal.index()].clone();
        let mut report = DrainReport::default();
        // A request of this signal running for longer than a healthy
        // collector takes: the collector is slow or hanging.
        let stalled = self
            .core
            .outstanding_of(signal)
            .oldest
            .is_some_and(|t| flush_started.saturating_duration_since(t) >= STALLED_AFTER);
        let degraded = kind != FlushKind::Final && (failing || stalled);
        // Waiting for answers on the function's path is cut short while the
        // collector is failing or busy; the requests still go out.
        let wait_until = if kind == FlushKind::Billed && degraded {
            deadline.min(Instant::now() + DEGRADED_WAIT)
        } else {
            deadline
        };
        let allowed = attempts_allowed(degraded);
        let mut failures = 0u32;
        loop {
            // Bounded concurrency: wait for a slot, within the deadline; on
            // the function's path, not at all while the collector is failing
            // or busy (the slots are held by requests it has not answered).
            loop {
                let notified = self.core.settled.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.core.outstanding_of(signal).requests < MAX_OUTSTANDING {
                    break;
                }
                if kind == FlushKind::Billed && degraded {
                    return report;
                }
                if tokio::time::timeout_at(wait_until, notified).await.is_err() {
                    return report;
                }
            }
            let Some(entry) = self.outbox().pop(signal) else {
                break;
            };
            self.core.relieved.notify_waiters();
            let reserve = transport.prepare_cost(entry.body.len());
            let now = Instant::now();
            if let Some(nb) = entry.not_before.map(Instant::from_std) {
                if nb > now {
                    if !degraded && nb + reserve < wait_until {
                        tokio::time::sleep_until(nb).await;
                    } else {
                        self.outbox().push_front(entry);
                        report.deferred += 1;
                        report
                            .errors
                            .push(format!("{signal:?}: waiting for Retry-After"));
                        break;
                    }
                }
            }
            // Not started without time to prepare it: that is not a failure.
            if Instant::now() + reserve >= wait_until {
                self.outbox().push_front(entry);
                report.deferred += 1;
                break;
            }
            let done = self.start_request(entry);
            let settled = tokio::select! {
                r = done => r,
                _ = tokio::time::sleep_until(wait_until) => {
                    report.in_flight += 1;
                    break;
                }
            };
            // The task cannot end without answering unless it panicked.
            let Ok(settled) = settled else { break };
            match settled {
                Settled::Accepted { items } => {
                    report.sent += 1;
                    report.delivered_items += items;
                }
                Settled::Permanent { reason } => {
                    report.failed += 1;
                    report.errors.push(reason);
                }
                Settled::Retryable {
                    reason,
                    retry_after,
                } => {
                    report.failed += 1;
                    failures += 1;
                    report.errors.push(reason);
                    let wait = retry_wait(failures - 1, retry_after, self.core.jitter_unit());
                    if failures >= allowed || Instant::now() + wait >= wait_until {
                        report.deferred += 1;
                        break;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_have_a_floor_and_honour_longer_retry_after() {
        // Retry-After: 0 (or RetryInfo 0 s) never means "at once".
        let w = retry_wait(0, Some(Duration::ZERO), 0.0);
        assert_eq!(w, BACKOFF_FLOOR);
        assert_eq!(retry_wait(1, None, 0.0), BACKOFF_FLOOR * 2);
        assert_eq!(retry_wait(1, None, 1.0), BACKOFF_FLOOR * 4);
        assert_eq!(
            retry_wait(0, Some(Duration::from_secs(2)), 0.5),
            Duration::from_secs(2)
        );
        // Absurd retry counts do not overflow.
        assert!(retry_wait(u32::MAX, None, 1.0) <= BACKOFF_FLOOR * 128);
        assert_eq!(attempts_allowed(false), 3);
        assert_eq!(attempts_allowed(true), 1);
    }
}
