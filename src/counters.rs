//! The counters of what the bridge saw and did not pass on: one handle,
//! shared by the Telemetry API listener, the local OTLP receiver, the
//! mapper (log records filtered out), the secret fetches, the bridge's own
//! metrics (read when they are collected) and the shutdown summary.
//! Imports nothing of the crate.

use std::sync::atomic::{AtomicU64, Ordering};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Telemetry API batches ingested.
    Batches,
    /// Telemetry API events ingested.
    Events,
    /// Telemetry API events that could not be decoded and were skipped.
    SkippedEvents,
    /// Telemetry API bodies rejected with a 400 (not a JSON array).
    RejectedBatches,
    /// Telemetry API batches dropped as redeliveries of one already ingested.
    DuplicateBatches,
    /// Telemetry API batches whose answer was held back while the outbox drained.
    HeldBackBatches,
    /// Requests the local OTLP receiver accepted.
    LocalRequests,
    /// Requests the local OTLP receiver refused as malformed (the function's
    /// exporter is answered 400 and reports it).
    LocalBadRequests,
    /// Function and extension log records dropped on purpose: below the
    /// minimum severity (counted by the mapper).
    FilteredLogs,
    /// Failed fetches of collector headers from Secrets Manager or SSM
    /// (counted by the exporter's secret fetches).
    SecretFetchFailures,
}

const COUNTS: usize = 10;

/// The counters, updated without a lock from any task.
#[derive(Debug, Default)]
pub struct Counters([AtomicU64; COUNTS]);

impl Counters {
    pub fn add(&self, count: Count, n: u64) {
        self.0[count as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, count: Count) -> u64 {
        self.0[count as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_kept_apart() {
        let c = Counters::default();
        c.add(Count::Batches, 2);
        c.add(Count::LocalBadRequests, 1);
        c.add(Count::Batches, 3);
        assert_eq!(c.get(Count::Batches), 5);
        assert_eq!(c.get(Count::LocalBadRequests), 1);
        assert_eq!(c.get(Count::Events), 0);
    }
}
