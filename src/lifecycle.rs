//! The extension's lifecycle from its first `/next` on (what comes before
//! is [`crate::startup`]): the `/next` loop, and the flush points that keep
//! telemetry safe across freezes.
//!
//! This is the only module that calls `/next` after the first. Calling it tells Lambda that
//! the extension is done with the current phase, after which the sandbox may
//! be frozen (timers stop, sockets stall) or never thawed again. So, for each
//! INVOKE, the lifecycle waits (bounded) for this invocation's
//! `platform.runtimeDone`, exports what is pending, and only then calls
//! `/next`. On SHUTDOWN it waits (bounded) for the last `platform.report`,
//! exports everything and exits well before the deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::counters::Count;
use crate::export::{Exporter, FlushKind};
use crate::flush_policy::{Decision, FlushPolicy, FlushState};
use crate::lambda::extensions_api::{ExtensionsApi, InvokeEvent, NextEvent, ShutdownEvent};
use crate::mapping::invocation::InvokeInfo;
use crate::mapping::resource::{self, ResourceInfo};
use crate::mapping::{Mapper, MapperSettings};
use crate::options::Env;
use crate::otlp_receiver::{self, Forwarder};
use crate::shared_state::Shared;
use crate::stage::Stage;
use crate::startup::Started;
use crate::telemetry_receiver;

/// Time kept free before a deadline Lambda gave us.
const DEADLINE_MARGIN: Duration = Duration::from_millis(150);

/// Converts a Lambda `deadlineMs` (Unix milliseconds) to an `Instant`, minus
/// the safety margin. A deadline more than an hour away (Lambda's longest
/// timeout is 15 minutes; a bogus value would overflow `Instant`) counts as an
/// hour.
pub fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = crate::time::now() / 1_000_000;
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms).min(3_600_000));
    Instant::now() + left.saturating_sub(DEADLINE_MARGIN)
}

fn instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{:x}-{}", crate::time::now(), std::process::id()))
}

/// Runs the extension from its first `/next` on; returns the process exit
/// code. Must run on the async runtime.
pub async fn run(env: &dyn Env, started: Started) -> i32 {
    let Started {
        config,
        registration,
        lmi,
        snap_start,
        receiver,
        listener,
        subscribed,
        first_next,
    } = started;
    let api = first_next.on_runtime();
    let id = registration.extension_id.clone();
    // What Lambda said at registration, else its environment variables.
    let function_name = registration
        .function_name
        .clone()
        .or_else(|| config.lambda.function_name.clone());
    let function_version = registration
        .function_version
        .clone()
        .or_else(|| config.lambda.function_version.clone());
    let built = resource::build(&ResourceInfo {
        service_name: env.get("OTEL_SERVICE_NAME"),
        resource_attributes: env.get("OTEL_RESOURCE_ATTRIBUTES"),
        function_name: function_name.clone(),
        function_version: function_version.clone(),
        region: config.lambda.region.clone(),
        account_id: registration.account_id.clone(),
        memory_mb: config.lambda.memory_mb,
        instance_id: instance_id(),
    });
    if let Some(w) = &built.warning {
        tracing::warn!("{w}");
    }
    let mapper_settings = MapperSettings {
        temporality: config.export.temporality,
        faas_trigger: config.faas_trigger.clone(),
        platform_log_lines: config.platform_log_lines,
        function_name,
        function_version,
        span_id_mode: config.span_id_mode,
        sampling: config.sampling.clone(),
        logs_min_severity: config.logs_min_severity,
    };
    let exporter = Arc::new(Exporter::new(&config.export, config.outbox_max_bytes));
    let shared = Arc::new(Shared::new(
        Mapper::new(built.resource, mapper_settings).count_into(exporter.counters()),
        exporter.counters(),
    ));
    exporter.follow_resource(shared.resource());
    let stage = Arc::new(
        Stage::new(&config.export, config.outbox_max_bytes)
            .with_redactor(config.redact.clone())
            .with_limits(config.limits)
            .with_enrichment(config.receiver.enrich, shared.resource()),
    );
    let forwarder = Arc::new(Forwarder::new(exporter.clone(), stage.clone()));
    let (grpc_addr, http_addr) = receiver.addrs();
    tracing::debug!(?grpc_addr, ?http_addr, "local OTLP receiver");
    otlp_receiver::serve(receiver, forwarder.clone());
    let router = telemetry_receiver::router(
        shared.clone(),
        config.telemetry.body_limit(),
        Some(exporter.clone()),
    );
    if let Err(e) = telemetry_receiver::spawn(listener, router) {
        // Subscribed already: Lambda's deliveries would wait unanswered.
        let msg = format!("cannot serve the Telemetry API listener: {e}");
        tracing::error!("{msg}");
        let _ = api.exit_error(&id, "Extension.UnknownReason", &msg).await;
        return 1;
    }
    // Without a working subscription to platform events no runtimeDone or
    // report will come: waiting for them would only delay the function.
    let platform_events = subscribed && config.telemetry.types.platform;

    let mut policy = config.flush_policy;
    if lmi && !matches!(policy, FlushPolicy::Periodic(_)) {
        // No INVOKE events on Managed Instances: flush on a timer.
        policy = FlushPolicy::Periodic(Duration::from_millis(1000));
    }
    shared.set_pressure_bytes(crate::export::max_request_bytes(config.outbox_max_bytes));
    // Background exports are not on the function's path; a request still
    // running at the end of the budget is not cut off but finishes on its
    // own (src/export/drain.rs).
    tokio::spawn(relieve_pressure(
        shared.clone(),
        stage.clone(),
        exporter.clone(),
        config.flush_timeout,
    ));
    let lifecycle = Lifecycle {
        api,
        id,
        shared,
        stage,
        exporter,
        flush: std::sync::Mutex::new(FlushState::new(policy, config.adaptive)),
        config,
        platform_events,
        lmi,
    };
    if snap_start {
        tracing::debug!("SnapStart: exporting before the snapshot, then the first /next");
        lifecycle.before_snapshot().await;
    } else {
        // Collector headers kept in AWS secrets: fetched while the function
        // initialises, the task's work queued behind the first /next (only
        // the first export waits for it). Not before a SnapStart snapshot:
        // nothing fetched then may be restored; the first export fetches.
        lifecycle.exporter.start_secret_fetches();
    }
    lifecycle.event_loop().await
}

/// Moves everything mapped so far through the processing stage into the
/// outbox.
fn map_for_export(shared: &Shared, stage: &Stage, exporter: &Exporter) {
    exporter.queue(stage.mapped(shared.take()));
}

/// Moves everything mapped into the outbox, what is incomplete too (the end).
fn map_final_for_export(shared: &Shared, stage: &Stage, exporter: &Exporter) {
    exporter.queue(stage.mapped(shared.take_final()));
}

/// A burst of telemetry between flush points (up to 1 MiB per 25 ms at
/// Lambda's limits) would otherwise pile up in the mapper and become one
/// request too large for the outbox: past the pressure threshold, what is
/// pending is mapped into the outbox at once (bounding memory) and exported
/// in the background (one export at a time).
async fn relieve_pressure(
    shared: Arc<Shared>,
    stage: Arc<Stage>,
    exporter: Arc<Exporter>,
    budget: Duration,
) {
    let mut export: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        shared.under_pressure().await;
        map_for_export(&shared, &stage, &exporter);
        if export.as_ref().is_none_or(|h| h.is_finished()) {
            let exporter = exporter.clone();
            export = Some(tokio::spawn(async move {
                // Rounds of one budget each while the outbox stays over
                // half full behind a collector that is accepting (the
                // listener holds Lambda's next batch back meanwhile).
                loop {
                    let r = exporter
                        .flush_as(Instant::now() + budget, FlushKind::Background)
                        .await;
                    if r.sent == 0 || !exporter.backlogged() {
                        break;
                    }
                }
            }));
        }
    }
}

struct Lifecycle {
    api: ExtensionsApi,
    id: String,
    shared: Arc<Shared>,
    /// Enrich, redact, limit, split, encode: between the mapper and the outbox.
    stage: Arc<Stage>,
    exporter: Arc<Exporter>,
    flush: std::sync::Mutex<FlushState>,
    config: Config,
    /// Platform events are subscribed and will be delivered.
    platform_events: bool,
    /// Lambda Managed Instances: no INVOKE, no runtimeDone.
    lmi: bool,
}

impl Lifecycle {
    fn flush_state(&self) -> std::sync::MutexGuard<'_, FlushState> {
        self.flush.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn event_loop(self) -> i32 {
        let period = match self.flush_state().policy() {
            FlushPolicy::Periodic(p) => Some(p),
            _ => None,
        };
        let mut ticker = period.map(|p| {
            let mut t = tokio::time::interval_at(Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let next = self.api.next(&self.id);
            tokio::pin!(next);
            let event = loop {
                match ticker.as_mut() {
                    // `/next` first: after a thaw the overdue tick is ready
                    // at once, and `/next` must be sent before any flush.
                    Some(t) => tokio::select! {
                        biased;
                        ev = &mut next => break ev,
                        _ = t.tick() => {
                            // Timers only tick while the sandbox runs: this is
                            // periodic mode's flush between lifecycle events.
                            // In a task of its own: this loop must keep
                            // polling `/next`, whose answer after a thaw
                            // comes through the client's connection task.
                            self.flush_state().on_timer_flush(std::time::Instant::now());
                            self.map_for_export();
                            let exporter = self.exporter.clone();
                            let deadline = Instant::now() + self.config.flush_timeout;
                            tokio::spawn(async move {
                                exporter.flush_as(deadline, FlushKind::Background).await;
                            });
                        }
                    },
                    None => break (&mut next).await,
                }
            };
            match event {
                Ok(NextEvent::Invoke(inv)) => self.on_invoke(inv).await,
                Ok(NextEvent::Shutdown(sd)) => {
                    self.on_shutdown(sd).await;
                    return 0;
                }
                Err(e) => {
                    let msg = format!("event/next failed: {e}");
                    tracing::error!("{msg}");
                    let _ = self
                        .api
                        .exit_error(&self.id, "Extension.UnknownReason", &msg)
                        .await;
                    // Last chance to deliver what was received.
                    map_final_for_export(&self.shared, &self.stage, &self.exporter);
                    self.exporter
                        .shutdown(Instant::now() + Duration::from_millis(500))
                        .await;
                    return 1;
                }
            }
        }
    }

    async fn on_invoke(&self, inv: InvokeEvent) {
        let request_id = inv.request_id.clone();
        let invocation_deadline = deadline_instant(inv.deadline_ms);
        self.shared.lock().mapper.on_invoke(
            &request_id,
            InvokeInfo {
                deadline_ms: inv.deadline_ms,
                invoked_function_arn: inv.invoked_function_arn,
                xray_header: inv.tracing.and_then(|t| t.value),
            },
        );
        let decision = self.flush_state().on_invoke(std::time::Instant::now());
        match decision {
            Decision::EndOfInvocation => {
                let mut runtime_done_at = None;
                if self.platform_events && !self.lmi {
                    let seen = self
                        .wait_for_runtime_done(&request_id, invocation_deadline)
                        .await;
                    if seen {
                        runtime_done_at = Some(Instant::now());
                    } else {
                        tracing::debug!(%request_id, "runtimeDone not received before the wait ended");
                    }
                }
                let deadline =
                    (Instant::now() + self.config.flush_timeout).min(invocation_deadline);
                self.map_and_flush(deadline).await;
                // `/next` follows at once: this is what the invocation paid
                // after its runtime was done.
                if let Some(t) = runtime_done_at {
                    self.exporter.record_post_runtime(t.elapsed());
                }
            }
            Decision::Background => {
                // Export what is pending while the function runs; `/next`
                // is called at once. A freeze mid-export leaves the data in
                // the outbox, retried at the next flush point.
                self.map_for_export();
                let exporter = self.exporter.clone();
                let deadline =
                    (Instant::now() + self.config.flush_timeout).min(invocation_deadline);
                tokio::spawn(async move {
                    exporter.flush_as(deadline, FlushKind::Background).await;
                });
            }
            Decision::Skip => {}
        }
    }

    /// Waits for this invocation's `platform.runtimeDone`. Waiting while the
    /// runtime runs costs the function nothing, so the wait lasts until the
    /// invocation's deadline as long as platform events are flowing: this
    /// invocation's `platform.start` arrived. The short bound
    /// (`LAMBDA_OTEL_BRIDGE_INVOKE_WAIT_MS`) applies only where runtimeDone
    /// may not come: no `platform.start` within it, or Lambda reporting
    /// dropped telemetry (`platform.logsDropped`) during the wait.
    async fn wait_for_runtime_done(&self, request_id: &str, invocation_deadline: Instant) -> bool {
        let short = (Instant::now() + self.config.invoke_wait).min(invocation_deadline);
        let flowing = self
            .shared
            .wait_until(short, |st| {
                st.mapper.runtime_done_seen(request_id) || st.mapper.start_seen(request_id)
            })
            .await;
        if !flowing {
            return false;
        }
        let drops_before = self.shared.lock().mapper.stats().drop_notices;
        let ended = self
            .shared
            .wait_until(invocation_deadline, |st| {
                st.mapper.runtime_done_seen(request_id)
                    || st.mapper.stats().drop_notices > drops_before
            })
            .await;
        if !ended {
            return false;
        }
        if self.shared.lock().mapper.runtime_done_seen(request_id) {
            return true;
        }
        tracing::debug!(%request_id, "Lambda dropped telemetry: runtimeDone may be lost");
        let short = (Instant::now() + self.config.invoke_wait).min(invocation_deadline);
        self.shared
            .wait_until(short, |st| st.mapper.runtime_done_seen(request_id))
            .await
    }

    /// SnapStart: the snapshot is taken while the extension waits in its
    /// first `/next`, and whatever it holds then is restored in every
    /// environment started from it. So before that `/next` everything is
    /// exported, and what could not be is dropped (counted) rather than
    /// sent once per restored environment.
    async fn before_snapshot(&self) {
        let deadline = Instant::now() + self.config.flush_timeout;
        map_for_export(&self.shared, &self.stage, &self.exporter);
        self.exporter.flush_as(deadline, FlushKind::Final).await;
        self.exporter.discard_for_snapshot(deadline).await;
    }

    /// Moves everything mapped so far into the outbox.
    fn map_for_export(&self) {
        map_for_export(&self.shared, &self.stage, &self.exporter);
    }

    async fn map_and_flush(&self, deadline: Instant) {
        self.map_for_export();
        self.exporter.flush(deadline).await;
    }

    async fn on_shutdown(&self, sd: ShutdownEvent) {
        let deadline = deadline_instant(sd.deadline_ms);
        // One budget for both waits below.
        let wait_end = (Instant::now() + self.config.shutdown_report_wait).min(deadline);
        if self.platform_events {
            // Only the reports that can still come: the last invocation's
            // (on Managed Instances, every unreported one). An older
            // invocation whose report never came is not waited for.
            let recent = if self.lmi { usize::MAX } else { 1 };
            self.shared
                .wait_until(wait_end, |st| !st.mapper.awaits_recent_report(recent))
                .await;
        }
        // Telemetry still arrives after SHUTDOWN (the runtime's last lines,
        // a late report): wait until the stream has been quiet for one
        // buffering window, within the same budget.
        let quiet = Duration::from_millis(u64::from(self.config.telemetry.timeout_ms) + 25);
        self.shared.wait_quiet(quiet, wait_end).await;
        // Batches that land while the final flush runs get another round
        // (a few at most, and never past the deadline).
        let mut sent = 0;
        for _ in 0..3 {
            let batches = self.shared.counters().get(Count::Batches);
            map_final_for_export(&self.shared, &self.stage, &self.exporter);
            sent += self.exporter.flush(deadline).await.sent;
            if self.shared.counters().get(Count::Batches) == batches || Instant::now() >= deadline {
                break;
            }
        }
        let report = self.exporter.shutdown(deadline).await;
        sent += report.sent;
        let drops = self.exporter.drops();
        let dropped: u64 = drops.values().sum();
        let unconfirmed: u64 = drops
            .iter()
            .filter(|((_, r), _)| *r == crate::export::outbox::DropReason::Unconfirmed)
            .map(|(_, n)| n)
            .sum();
        let st = self.shared.lock();
        let c = self.shared.counters();
        tracing::info!(
            reason = sd.shutdown_reason.as_deref().unwrap_or("unknown"),
            batches = c.get(Count::Batches),
            events = c.get(Count::Events),
            skipped_events = c.get(Count::SkippedEvents),
            rejected_bodies = c.get(Count::RejectedBatches),
            duplicate_batches = c.get(Count::DuplicateBatches),
            held_back = c.get(Count::HeldBackBatches),
            local_requests = c.get(Count::LocalRequests),
            local_bad_requests = c.get(Count::LocalBadRequests),
            redactions = self.stage.redactions(),
            log_records = st.mapper.stats().log_records,
            spans = st.mapper.stats().spans,
            reports = st.mapper.stats().reports,
            snapshot_records = st.mapper.stats().snapshot_records,
            unknown_events = st.mapper.stats().unknown_events,
            duplicate_events = st.mapper.stats().duplicate_events,
            awaiting_report = st.mapper.awaiting_report_count(),
            evicted_invocations = st.mapper.evicted_invocations(),
            final_requests_sent = sent,
            unconfirmed_items = unconfirmed,
            dropped_items = dropped,
            "shutting down"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_instant_is_bounded_for_bogus_deadlines() {
        // u64::MAX milliseconds would overflow `Instant`; it counts as an hour.
        let far = deadline_instant(u64::MAX);
        let left = far - Instant::now();
        assert!(left <= Duration::from_secs(3600), "{left:?}");
        assert!(left > Duration::from_secs(3500), "{left:?}");
        // A deadline in the past is now.
        assert!(deadline_instant(0) <= Instant::now());
        // A real one (10 s away) keeps its distance less the margin.
        let ten = deadline_instant(crate::time::now() / 1_000_000 + 10_000) - Instant::now();
        assert!(
            ten <= Duration::from_secs(10) && ten > Duration::from_secs(8),
            "{ten:?}"
        );
    }
}
