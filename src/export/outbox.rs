//! The outbox: encoded OTLP requests waiting to be delivered, bounded in
//! bytes, kept across invocations (and freezes) until the collector accepts
//! them.
//!
//! Requests are kept per signal in arrival order. When the byte cap is hit
//! the oldest requests are dropped first, and every dropped item (span, data
//! point, log record) is counted by signal and reason, so the loss can be
//! reported (the bridge's own `lambda_otel_bridge.dropped` metric and a
//! warning line per flush).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::settings::Signal;
use crate::options::read::int;
use crate::options::table::OUTBOX_MAX_BYTES;
use crate::options::{ConfigError, Env};

/// Reads `LAMBDA_OTEL_BRIDGE_OUTBOX_MAX_BYTES`, the outbox's byte cap.
pub fn max_bytes_from_env(env: &dyn Env) -> Result<usize, ConfigError> {
    int(env, &OUTBOX_MAX_BYTES).map(|n| n as usize)
}

/// Why items were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The outbox was full: the oldest data made room for new data.
    OutboxFull,
    /// The collector refused the request permanently (400, 413, gRPC INVALID_ARGUMENT, ...).
    Refused,
    /// The collector accepted the request but rejected these items (partial success).
    Rejected,
    /// Still undelivered when the extension had to exit.
    Shutdown,
    /// Sent, but not answered when the extension had to exit: the
    /// collector may or may not have received them.
    Unconfirmed,
    /// Not delivered before a SnapStart snapshot: dropped rather than
    /// restored (and sent) in every environment started from it.
    Snapshot,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OutboxFull => "outbox_full",
            DropReason::Refused => "refused",
            DropReason::Rejected => "rejected",
            DropReason::Shutdown => "shutdown",
            DropReason::Unconfirmed => "unconfirmed",
            DropReason::Snapshot => "snapshot",
        }
    }
}

/// One encoded export request.
#[derive(Debug, Clone)]
pub struct Entry {
    pub signal: Signal,
    /// `Export*ServiceRequest`, protobuf-encoded.
    pub body: Bytes,
    /// Spans, data points or log records in it.
    pub items: u64,
    /// Not to be sent before this instant (a `Retry-After`).
    pub not_before: Option<Instant>,
    /// Time (Unix nanoseconds) of the oldest item, when known: the bridge's
    /// own data, for the data-age metric.
    pub oldest: Option<u64>,
    /// Arrival order across signals (set by the outbox).
    pub seq: u64,
}

/// Dropped items by (signal, reason), cumulative.
pub type DropCounts = BTreeMap<(Signal, DropReason), u64>;

/// The bounded queue.
#[derive(Debug)]
pub struct Outbox {
    queues: [VecDeque<Entry>; 3],
    bytes: usize,
    cap: usize,
    drops: DropCounts,
    /// Drops since the last `take_new_drops` (for the per-flush warning).
    new_drops: DropCounts,
    next_seq: u64,
}

impl Outbox {
    pub fn new(cap_bytes: usize) -> Self {
        Outbox {
            queues: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            bytes: 0,
            cap: cap_bytes,
            drops: DropCounts::new(),
            new_drops: DropCounts::new(),
            next_seq: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts dropped items.
    pub fn count_drop(&mut self, signal: Signal, reason: DropReason, items: u64) {
        if items == 0 {
            return;
        }
        *self.drops.entry((signal, reason)).or_default() += items;
        *self.new_drops.entry((signal, reason)).or_default() += items;
    }

    /// All drops so far.
    pub fn drops(&self) -> &DropCounts {
        &self.drops
    }

    /// Drops since the previous call.
    pub fn take_new_drops(&mut self) -> DropCounts {
        std::mem::take(&mut self.new_drops)
    }

    /// Queues a request, dropping the oldest ones (any signal) if the cap
    /// would be exceeded. A request larger than the whole cap is dropped.
    pub fn push(&mut self, mut entry: Entry) {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        let len = entry.body.len();
        if len > self.cap {
            self.count_drop(entry.signal, DropReason::OutboxFull, entry.items);
            return;
        }
        while self.bytes + len > self.cap {
            if !self.drop_oldest() {
                break;
            }
        }
        self.bytes += len;
        self.queues[entry.signal.index()].push_back(entry);
    }

    /// Puts a request back at the front of its queue (after a retryable
    /// failure), keeping its place in line.
    pub fn push_front(&mut self, entry: Entry) {
        self.bytes += entry.body.len();
        self.queues[entry.signal.index()].push_front(entry);
        while self.bytes > self.cap {
            if !self.drop_oldest() {
                break;
            }
        }
    }

    /// Takes the oldest request of a signal.
    pub fn pop(&mut self, signal: Signal) -> Option<Entry> {
        let e = self.queues[signal.index()].pop_front()?;
        self.bytes -= e.body.len();
        Some(e)
    }

    /// Drops everything left, counting it with `reason`.
    pub fn drain_all(&mut self, reason: DropReason) {
        for s in Signal::ALL {
            while let Some(e) = self.pop(s) {
                self.count_drop(s, reason, e.items);
            }
        }
    }

    fn drop_oldest(&mut self) -> bool {
        // Queues are FIFO: the oldest request is the front with the lowest seq.
        let victim = (0..3)
            .filter_map(|i| self.queues[i].front().map(|e| (e.seq, i)))
            .min()
            .map(|(_, i)| i);
        let Some(i) = victim else { return false };
        let Some(e) = self.queues[i].pop_front() else {
            return false;
        };
        self.bytes -= e.body.len();
        self.count_drop(e.signal, DropReason::OutboxFull, e.items);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(signal: Signal, len: usize, items: u64) -> Entry {
        Entry {
            signal,
            body: Bytes::from(vec![0u8; len]),
            items,
            not_before: None,
            oldest: None,
            seq: 0,
        }
    }

    #[test]
    fn bounded_dropping_oldest_first() {
        let mut o = Outbox::new(100);
        o.push(entry(Signal::Traces, 10, 1));
        o.push(entry(Signal::Logs, 40, 4));
        o.push(entry(Signal::Logs, 40, 5));
        assert_eq!(o.bytes(), 90);
        o.push(entry(Signal::Logs, 40, 6));
        // The oldest requests made room: the traces one, then the first logs one.
        assert_eq!(o.bytes(), 80);
        assert_eq!(o.drops()[&(Signal::Traces, DropReason::OutboxFull)], 1);
        assert_eq!(o.drops()[&(Signal::Logs, DropReason::OutboxFull)], 4);
        assert_eq!(o.pop(Signal::Logs).unwrap().items, 5);
        assert_eq!(o.pop(Signal::Logs).unwrap().items, 6);
        assert!(o.pop(Signal::Logs).is_none());
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn oversized_request_is_dropped_and_counted() {
        let mut o = Outbox::new(10);
        o.push(entry(Signal::Metrics, 11, 7));
        assert!(o.is_empty());
        assert_eq!(
            o.take_new_drops()[&(Signal::Metrics, DropReason::OutboxFull)],
            7
        );
        assert!(o.take_new_drops().is_empty());
        assert_eq!(o.drops().len(), 1);
    }

    #[test]
    fn push_front_keeps_order_and_drain_counts() {
        let mut o = Outbox::new(1000);
        o.push(entry(Signal::Logs, 10, 1));
        o.push(entry(Signal::Logs, 10, 2));
        let first = o.pop(Signal::Logs).unwrap();
        o.push_front(first);
        assert_eq!(o.pop(Signal::Logs).unwrap().items, 1);
        o.drain_all(DropReason::Shutdown);
        assert_eq!(o.drops()[&(Signal::Logs, DropReason::Shutdown)], 2);
    }
}
