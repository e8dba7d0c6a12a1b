//! The seam between the drain's retry rules and the wire: a [`Transport`]
//! sends one encoded request and says how it ended, as an [`Outcome`]
//! classified the way the OTLP specification does. The OTLP transport
//! ([`super::otlp`]) implements it; unit tests use scripted ones.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// How an export attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accepted; `rejected` items were refused by a partial success (not retried).
    Accepted { rejected: u64, message: String },
    /// May succeed later (429/502/503/504, connection errors, gRPC UNAVAILABLE ...).
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed (400, 413, gRPC INVALID_ARGUMENT ...): drop.
    Permanent { reason: String },
}

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
