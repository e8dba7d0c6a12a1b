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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::otlp::Outcome;

/// A boxed future of an export attempt.
pub type SendFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Sends one encoded request for one signal.
pub trait Transport: Send + Sync + 'static {
    /// Sends `body` (protobuf `Export*ServiceRequest`), giving up at
    /// `deadline`. The future owns everything it needs (it outlives the
    /// flush that started it).
    fn send(self: Arc<Self>, body: Bytes, deadline: Instant) -> SendFuture;
    /// The export timeout: how long one request may take in all.
    fn timeout(&self) -> Duration;
    /// CPU time to prepare `len` protobuf bytes for the wire (JSON
    /// conversion, compression), reserved before a deadline.
    fn prepare_cost(&self, _len: usize) -> Duration {
        Duration::ZERO
    }
}

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
