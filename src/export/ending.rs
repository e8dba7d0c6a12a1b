//! How the exporter ends: the final flush at SHUTDOWN (what is still
//! queued or unanswered is counted as dropped and reported), and the
//! discard before a SnapStart snapshot (nothing queued or running may be
//! restored from it).

use tokio::time::Instant;

use super::outbox::DropReason;
use super::settings::Signal;
use super::{drop_list, drop_summary, Exporter, FlushKind, FlushReport};

impl Exporter {
    /// The final flush: waits (until `deadline`) for requests still
    /// running; whatever is still queued or unanswered afterwards is
    /// counted as dropped and reported.
    pub async fn shutdown(&self, deadline: Instant) -> FlushReport {
        let mut report = self.flush_as(deadline, FlushKind::Final).await;
        let mut running = report.in_flight > 0 || self.outstanding_requests() > 0;
        while running {
            self.wait_outstanding(deadline).await;
            // A request that failed after the flush stopped waiting for it
            // is back in the outbox: another round while time is left.
            if self.outbox().is_empty() || Instant::now() >= deadline {
                break;
            }
            let again = self.flush_as(deadline, FlushKind::Final).await;
            running = again.in_flight > 0;
            report.sent += again.sent;
            report.delivered_items += again.delivered_items;
            report.failed += again.failed;
            report.errors.extend(again.errors);
        }
        let mut outbox = self.outbox();
        for s in Signal::ALL {
            let o = self.core.outstanding_of(s);
            if o.requests > 0 {
                outbox.count_drop(s, DropReason::Unconfirmed, o.items);
            }
        }
        if !outbox.is_empty() {
            outbox.drain_all(DropReason::Shutdown);
        }
        let dropped = drop_list(&outbox.take_new_drops());
        if !dropped.is_empty() {
            tracing::warn!(
                "telemetry dropped at shutdown: {} ({})",
                drop_summary(&dropped),
                report.errors.join("; ")
            );
            report.dropped.extend(dropped);
        }
        report
    }

    /// Waits (until `deadline`) for requests still running, then drops
    /// what is left, counted with [`DropReason::Snapshot`]: nothing queued or
    /// running may be restored from a SnapStart snapshot.
    pub async fn discard_for_snapshot(&self, deadline: Instant) {
        self.wait_outstanding(deadline).await;
        // Credentials from the container endpoint are fetched again after
        // the restore.
        if let Some(c) = &self.credentials {
            c.forget().await;
        }
        let running: Vec<(Signal, u64, Option<tokio::task::AbortHandle>)> = {
            let mut o = self.core.outstanding();
            Signal::ALL
                .iter()
                .flat_map(|s| {
                    std::mem::take(&mut o[s.index()])
                        .into_iter()
                        .map(move |r| (*s, r.items, r.task))
                })
                .collect()
        };
        let mut outbox = self.outbox();
        for (signal, items, task) in running {
            if let Some(t) = task {
                t.abort();
            }
            outbox.count_drop(signal, DropReason::Snapshot, items);
        }
        outbox.drain_all(DropReason::Snapshot);
        let dropped = drop_list(&outbox.take_new_drops());
        if !dropped.is_empty() {
            tracing::warn!(
                "telemetry not delivered before the SnapStart snapshot, dropped: {}",
                drop_summary(&dropped)
            );
        }
    }

    /// Waits until no request is running, or until `deadline`.
    async fn wait_outstanding(&self, deadline: Instant) {
        loop {
            let notified = self.core.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.outstanding_requests() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}
