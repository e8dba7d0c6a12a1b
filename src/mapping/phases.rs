//! Init and SnapStart restore phases: their records, where each is placed,
//! the ids its span and log lines take, and its spans.
//!
//! A phase opens with `platform.initStart` / `platform.restoreStart` (or,
//! for an init Lambda retries inside the first invocation, with its
//! runtimeDone or report alone) and collects its runtimeDone and report.
//! It is placed in the trace of the invocation it delayed when that
//! invocation starts; an init ahead of traffic (provisioned concurrency,
//! Managed Instances, SnapStart's snapshot) and a phase no invocation
//! followed before shutdown stand alone, in a trace of their own. A
//! suppressed init (phase `invoke`) re-runs inside the invocation in
//! progress and is placed there at once. The log lines that arrive while a
//! phase is open (until the next `platform.start`) belong to it.

use std::collections::HashMap;

use opentelemetry_proto::tonic::trace::v1::Span;

use super::invocation::{InvocationTable, TraceIds};
use super::sampling::Outcome;
use super::traces;
use super::xray::{derived_span_id, derived_trace_id};
use crate::lambda::events::{InitStart, PhaseDone, PhaseReport, RestoreStart};
use crate::time::{millis_f64_to_nanos, UnixNanos};

/// How many (invocation, kind) placements are remembered for span-id
/// ordinals before the memory starts afresh.
const MAX_SLOTS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PhaseKind {
    Init,
    Restore,
}

/// Where the log lines of a phase stand at a flush point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PhaseContext {
    /// Placed: the ids its lines carry.
    Placed(TraceIds),
    /// Not yet known which invocation it delayed: its lines wait.
    Unplaced,
    /// Exported and forgotten (or dropped at a restore): its lines go
    /// without trace context.
    Gone,
}

/// Whether an init is Lambda Managed Instances': invocations then overlap.
pub(super) fn runs_concurrently(s: &InitStart) -> bool {
    s.initialization_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("lambda-managed-instances"))
}

/// An init or SnapStart restore phase.
#[derive(Debug, Clone)]
struct Phase {
    id: u64,
    kind: PhaseKind,
    start: Option<UnixNanos>,
    initialization_type: Option<String>,
    phase: Option<String>,
    runtime_version: Option<String>,
    runtime_version_arn: Option<String>,
    instance_id: Option<String>,
    done: Option<(Option<UnixNanos>, PhaseDone)>,
    report: Option<(Option<UnixNanos>, PhaseReport)>,
    /// The invocation it delayed.
    attached: Option<String>,
    /// Delayed no invocation (provisioned concurrency, managed instances, or
    /// none came before shutdown): its own trace.
    standalone: bool,
    emitted: bool,
    /// How many phases of this kind were placed in the same invocation before.
    ordinal: u32,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self.kind {
            PhaseKind::Init => "init",
            PhaseKind::Restore => "restore",
        }
    }

    fn resolved(&self) -> bool {
        self.attached.is_some() || self.standalone
    }

    /// Key for derived ids of a standalone phase.
    fn key(&self) -> String {
        format!(
            "{}:{}@{}#{}",
            self.name(),
            self.instance_id.as_deref().unwrap_or(""),
            self.start.unwrap_or(0),
            self.id
        )
    }

    /// The ids its span and log records carry, once it is placed.
    fn ids(&self, invocations: &InvocationTable) -> Option<TraceIds> {
        if let Some(rid) = &self.attached {
            let ids = invocations.get(rid)?.trace_ids();
            // The first phase placed in an invocation has the plain role; a
            // later one (a retried init) gets its ordinal appended.
            let role = if self.ordinal == 0 {
                self.name().to_owned()
            } else {
                format!("{}#{}", self.name(), self.ordinal)
            };
            return Some(TraceIds {
                trace_id: ids.trace_id,
                span_id: derived_span_id(rid, &role),
                parent_span_id: Some(ids.span_id),
                sampled: ids.sampled,
                from_xray: ids.from_xray,
            });
        }
        if self.standalone {
            let key = self.key();
            let trace_id = derived_trace_id(&key);
            // Its own trace, a root: the sampler, and the keep rules on its status.
            let outcome = Outcome::of_status(self.status().0, false, None);
            return Some(TraceIds {
                trace_id,
                span_id: derived_span_id(&key, self.name()),
                parent_span_id: None,
                sampled: invocations.sampling.decide(trace_id, None, &outcome),
                from_xray: false,
            });
        }
        None
    }

    /// Status and error type: initRuntimeDone's, else the report's.
    fn status(&self) -> (Option<&str>, Option<&str>) {
        match (&self.done, &self.report) {
            (Some((_, d)), _) if d.status.is_some() => {
                (d.status.as_deref(), d.error_type.as_deref())
            }
            (_, Some((_, r))) => (r.status.as_deref(), r.error_type.as_deref()),
            _ => (None, None),
        }
    }

    /// Its span, then the child spans its runtimeDone and report list.
    fn spans(&self, ids: &TraceIds) -> Vec<Span> {
        let start = self.start.unwrap_or(0);
        let duration_ms = self
            .report
            .as_ref()
            .and_then(|(_, r)| r.metrics.duration_ms);
        // End: initRuntimeDone's time, else initReport's; when the phase
        // has a start and a reported duration, never shorter than it (the
        // platform may stamp start and done in the same millisecond).
        let by_duration = duration_ms.map(|d| start.saturating_add(millis_f64_to_nanos(d)));
        let end = self
            .done
            .as_ref()
            .and_then(|(t, _)| *t)
            .or_else(|| self.report.as_ref().and_then(|(t, _)| *t))
            .map(|t| match (self.start, by_duration) {
                (Some(_), Some(d)) => t.max(d),
                _ => t,
            })
            .or(by_duration)
            .unwrap_or(start);
        let start = if self.start.is_some() {
            start
        } else {
            end.saturating_sub(millis_f64_to_nanos(duration_ms.unwrap_or(0.0)))
        };
        let (status, error_type) = self.status();
        let mut spans = vec![traces::phase_span(traces::PhaseSpan {
            name: self.name(),
            trace_id: ids.trace_id,
            span_id: ids.span_id,
            parent_span_id: ids.parent_span_id,
            sampled: ids.sampled,
            start,
            end,
            initialization_type: self.initialization_type.as_deref(),
            phase: self.phase.as_deref(),
            runtime_version: self.runtime_version.as_deref(),
            runtime_version_arn: self.runtime_version_arn.as_deref(),
            duration_ms,
            status,
            error_type,
        })];
        let key = match &self.attached {
            Some(rid) => format!("{rid}/{}", self.name()),
            None => self.key(),
        };
        let children = self
            .done
            .iter()
            .flat_map(|(_, d)| d.spans.iter())
            .chain(self.report.iter().flat_map(|(_, r)| r.spans.iter()))
            .cloned()
            .collect::<Vec<_>>();
        spans.extend(traces::child_spans(
            &key,
            ids,
            ids.span_id,
            &children,
            start,
        ));
        spans
    }
}

/// The phases of one execution environment not exported yet.
#[derive(Debug, Default)]
pub(super) struct Phases {
    list: Vec<Phase>,
    next_id: u64,
    /// The phase whose log lines are arriving (until the next platform.start).
    open: Option<u64>,
    /// Phases already placed per invocation and kind (span-id ordinals).
    slots: HashMap<String, u32>,
}

impl Phases {
    /// The phase whose log lines are arriving, if any.
    pub(super) fn open(&self) -> Option<u64> {
        self.open
    }

    /// `platform.initStart`; returns the phase it opens.
    pub(super) fn init_start(
        &mut self,
        time: Option<UnixNanos>,
        s: InitStart,
        invocations: &mut InvocationTable,
    ) -> u64 {
        let init_type = s.initialization_type.as_deref().unwrap_or_default();
        // Provisioned concurrency and managed instances initialise ahead of
        // traffic: no invocation waits for them, so no cold start.
        let ahead_of_traffic = init_type.eq_ignore_ascii_case("provisioned-concurrency")
            || runs_concurrently(&s)
            || init_type.eq_ignore_ascii_case("snap-start");
        // A suppressed init (phase `invoke`) re-runs inside the invocation in
        // progress: it belongs to that invocation.
        let within = s
            .phase
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("invoke"))
            .then(|| invocations.current_id().map(str::to_owned))
            .flatten();
        if !ahead_of_traffic && within.is_none() {
            invocations.mark_init();
        }
        let p = self.new_phase(PhaseKind::Init, time);
        p.standalone = ahead_of_traffic;
        p.initialization_type = s.initialization_type;
        p.phase = s.phase;
        p.runtime_version = s.runtime_version;
        p.runtime_version_arn = s.runtime_version_arn;
        p.instance_id = s.instance_id;
        let id = p.id;
        if let Some(rid) = within {
            self.attach(id, &rid);
        }
        id
    }

    /// `platform.restoreStart`; returns the phase it opens.
    pub(super) fn restore_start(
        &mut self,
        time: Option<UnixNanos>,
        s: RestoreStart,
        invocations: &mut InvocationTable,
    ) -> u64 {
        invocations.mark_init();
        let p = self.new_phase(PhaseKind::Restore, time);
        p.initialization_type = Some("snap-start".into());
        p.runtime_version = s.runtime_version;
        p.runtime_version_arn = s.runtime_version_arn;
        p.instance_id = s.instance_id;
        p.id
    }

    /// `platform.initRuntimeDone` / `platform.restoreRuntimeDone`.
    pub(super) fn done(
        &mut self,
        kind: PhaseKind,
        time: Option<UnixNanos>,
        d: PhaseDone,
        invocations: &InvocationTable,
    ) {
        let retry = (d.phase.as_deref(), d.initialization_type.as_deref());
        if let Some(p) = self.receiving(kind, |p| p.done.is_some(), retry, invocations) {
            p.done.get_or_insert((time, d));
        }
    }

    /// `platform.initReport` / `platform.restoreReport`.
    pub(super) fn report(
        &mut self,
        kind: PhaseKind,
        time: Option<UnixNanos>,
        r: PhaseReport,
        invocations: &InvocationTable,
    ) {
        let retry = (r.phase.as_deref(), r.initialization_type.as_deref());
        if let Some(p) = self.receiving(kind, |p| p.report.is_some(), retry, invocations) {
            p.report.get_or_insert((time, r));
        }
    }

    /// `platform.start` of `rid`: the phases not placed yet delayed it, and
    /// the lines that follow are the invocation's.
    pub(super) fn place_unplaced(&mut self, rid: &str) {
        self.open = None;
        let unplaced: Vec<u64> = self
            .list
            .iter()
            .filter(|p| !p.resolved())
            .map(|p| p.id)
            .collect();
        for id in unplaced {
            self.attach(id, rid);
        }
    }

    /// Shutdown: phases no invocation followed stand alone.
    pub(super) fn finish(&mut self) {
        for p in self.list.iter_mut().filter(|p| !p.resolved()) {
            p.standalone = true;
        }
        self.open = None;
    }

    /// A SnapStart restore: init phases not exported yet belong to the
    /// snapshot, not to this environment. Returns how many were dropped.
    pub(super) fn forget_snapshot(&mut self) -> u64 {
        let before = self.list.len();
        self.list.retain(|p| p.emitted || p.kind != PhaseKind::Init);
        self.open = None;
        (before - self.list.len()) as u64
    }

    /// Where the lines of phase `id` stand.
    pub(super) fn context(&self, id: u64, invocations: &InvocationTable) -> PhaseContext {
        match self.list.iter().find(|p| p.id == id) {
            None => PhaseContext::Gone,
            Some(p) => p
                .ids(invocations)
                .map_or(PhaseContext::Unplaced, PhaseContext::Placed),
        }
    }

    /// The spans of phases that are placed and have ended; each goes out
    /// once. A phase placed in an invocation shares its sampling decision,
    /// so it waits for it (as the invocation span waits for its end),
    /// except at shutdown (`finishing`).
    pub(super) fn take_spans(
        &mut self,
        invocations: &InvocationTable,
        finishing: bool,
    ) -> Vec<Span> {
        let mut spans = Vec::new();
        let decided = |p: &Phase| {
            finishing
                || p.attached
                    .as_deref()
                    .and_then(|rid| invocations.get(rid))
                    .is_none_or(|inv| inv.decided())
        };
        let ready = |p: &&mut Phase| {
            !p.emitted && p.resolved() && (p.done.is_some() || p.report.is_some()) && decided(p)
        };
        for p in self.list.iter_mut().filter(ready) {
            if let Some(ids) = p.ids(invocations) {
                if ids.sampled {
                    spans.extend(p.spans(&ids));
                }
                p.emitted = true;
            }
        }
        spans
    }

    /// Forgets the phases whose spans went out (after their lines were
    /// mapped in the same flush).
    pub(super) fn drop_emitted(&mut self) {
        self.list.retain(|p| !p.emitted);
    }

    fn new_phase(&mut self, kind: PhaseKind, time: Option<UnixNanos>) -> &mut Phase {
        self.next_id += 1;
        let id = self.next_id;
        self.open = Some(id);
        self.list.push(Phase {
            id,
            kind,
            start: time,
            initialization_type: None,
            phase: None,
            runtime_version: None,
            runtime_version_arn: None,
            instance_id: None,
            done: None,
            report: None,
            attached: None,
            standalone: false,
            emitted: false,
            ordinal: 0,
        });
        // Invariant: pushed just above.
        self.list.last_mut().expect("phase just pushed")
    }

    /// The phase of `kind` a runtimeDone or report completes: the latest,
    /// unless it has that event already or went out; then a retried phase
    /// seen only from these events, with `retry`'s phase and init type.
    fn receiving(
        &mut self,
        kind: PhaseKind,
        has_it: fn(&Phase) -> bool,
        retry: (Option<&str>, Option<&str>),
        invocations: &InvocationTable,
    ) -> Option<&mut Phase> {
        if self.last_mut(kind).is_none_or(|p| has_it(p) || p.emitted) {
            self.open_retry(kind, retry, invocations.current_id());
        }
        self.last_mut(kind)
    }

    /// A phase seen only from its done/report events: it ran inside the
    /// invocation in progress (or, before any, on its own).
    fn open_retry(
        &mut self,
        kind: PhaseKind,
        (phase, init_type): (Option<&str>, Option<&str>),
        within: Option<&str>,
    ) {
        let p = self.new_phase(kind, None);
        p.standalone = within.is_none();
        p.phase = phase.map(str::to_owned);
        p.initialization_type = init_type.map(str::to_owned);
        let id = p.id;
        self.open = None;
        if let Some(rid) = within {
            self.attach(id, rid);
        }
    }

    /// Places phase `id` in invocation `rid`'s trace.
    fn attach(&mut self, id: u64, rid: &str) {
        let Some(kind) = self.list.iter().find(|p| p.id == id).map(|p| p.kind) else {
            return;
        };
        if self.slots.len() > MAX_SLOTS {
            self.slots.clear();
        }
        let slot = self.slots.entry(format!("{rid}/{kind:?}")).or_insert(0);
        let ordinal = *slot;
        *slot += 1;
        if let Some(p) = self.list.iter_mut().find(|p| p.id == id) {
            p.attached = Some(rid.to_owned());
            p.ordinal = ordinal;
        }
    }

    fn last_mut(&mut self, kind: PhaseKind) -> Option<&mut Phase> {
        self.list.iter_mut().rev().find(|p| p.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::events::{DurationMetrics, PlatformSpan, Start};

    const MS: UnixNanos = 1_000_000;
    const T0: UnixNanos = 1_741_083_330_000_000_000;

    fn init(init_type: &str, phase: &str) -> InitStart {
        InitStart {
            initialization_type: Some(init_type.into()),
            phase: Some(phase.into()),
            instance_id: Some("i-1".into()),
            ..InitStart::default()
        }
    }

    fn start(invocations: &mut InvocationTable, rid: &str) {
        let s = Start {
            request_id: rid.into(),
            ..Start::default()
        };
        assert!(invocations.on_start(Some(T0), s));
    }

    /// `rid`'s runtimeDone: its sampling decision is taken.
    fn ended(invocations: &mut InvocationTable, rid: &str) {
        let d = crate::lambda::events::RuntimeDone {
            request_id: rid.into(),
            ..Default::default()
        };
        assert!(invocations.on_runtime_done(Some(T0 + 500 * MS), d));
    }

    fn done(status: &str) -> PhaseDone {
        PhaseDone {
            status: Some(status.into()),
            ..PhaseDone::default()
        }
    }

    fn report(duration_ms: f64) -> PhaseReport {
        PhaseReport {
            metrics: DurationMetrics {
                duration_ms: Some(duration_ms),
            },
            ..PhaseReport::default()
        }
    }

    /// The ids a phase placed in `rid` as its `role` ("init", "init#1") has.
    fn placed_in(invocations: &InvocationTable, rid: &str, role: &str) -> PhaseContext {
        let ids = invocations.get(rid).expect("invocation").trace_ids();
        PhaseContext::Placed(TraceIds {
            trace_id: ids.trace_id,
            span_id: derived_span_id(rid, role),
            parent_span_id: Some(ids.span_id),
            sampled: ids.sampled,
            from_xray: ids.from_xray,
        })
    }

    #[test]
    fn an_on_demand_init_is_placed_in_the_invocation_it_delayed() {
        let (mut phases, mut inv) = (Phases::default(), InvocationTable::default());
        let id = phases.init_start(Some(T0), init("on-demand", "init"), &mut inv);
        assert_eq!(phases.open(), Some(id), "its lines are arriving");
        phases.done(PhaseKind::Init, Some(T0 + 200 * MS), done("success"), &inv);
        assert_eq!(phases.context(id, &inv), PhaseContext::Unplaced);
        assert!(phases.take_spans(&inv, false).is_empty(), "not placed yet");

        start(&mut inv, "r1");
        phases.place_unplaced("r1");
        assert_eq!(phases.open(), None, "the invocation's lines follow");
        assert!(inv.get("r1").unwrap().coldstart);
        assert_eq!(phases.context(id, &inv), placed_in(&inv, "r1", "init"));
        assert!(
            phases.take_spans(&inv, false).is_empty(),
            "it waits for the invocation's sampling decision"
        );
        ended(&mut inv, "r1");
        let spans = phases.take_spans(&inv, false);
        assert_eq!(spans.len(), 1);
        let PhaseContext::Placed(ids) = phases.context(id, &inv) else {
            unreachable!()
        };
        assert_eq!(spans[0].name, "init");
        assert_eq!(spans[0].span_id, ids.span_id.to_vec());
        assert_eq!(
            spans[0].parent_span_id,
            ids.parent_span_id.unwrap().to_vec()
        );
        assert_eq!(
            (spans[0].start_time_unix_nano, spans[0].end_time_unix_nano),
            (T0, T0 + 200 * MS)
        );
        assert!(phases.take_spans(&inv, false).is_empty(), "once");
        // Its lines still find it until the flush is over.
        assert!(matches!(phases.context(id, &inv), PhaseContext::Placed(_)));
        phases.drop_emitted();
        assert_eq!(phases.context(id, &inv), PhaseContext::Gone);
    }

    #[test]
    fn an_init_ahead_of_traffic_stands_alone_and_is_no_cold_start() {
        for init_type in [
            "provisioned-concurrency",
            "Lambda-Managed-Instances",
            "snap-start",
        ] {
            let (mut phases, mut inv) = (Phases::default(), InvocationTable::default());
            let id = phases.init_start(Some(T0), init(init_type, "init"), &mut inv);
            let PhaseContext::Placed(ids) = phases.context(id, &inv) else {
                panic!("{init_type}: not placed");
            };
            assert_eq!(ids.parent_span_id, None, "{init_type}");
            assert_eq!(
                ids.trace_id,
                derived_trace_id("init:i-1@1741083330000000000#1")
            );
            start(&mut inv, "r1");
            assert!(!inv.get("r1").unwrap().coldstart, "{init_type}");
        }
        let lmi = init("lambda-managed-instances", "init");
        assert!(runs_concurrently(&lmi));
        assert!(!runs_concurrently(&init("provisioned-concurrency", "init")));
    }

    #[test]
    fn a_suppressed_init_belongs_to_the_invocation_in_progress() {
        let (mut phases, mut inv) = (Phases::default(), InvocationTable::default());
        start(&mut inv, "r1");
        let id = phases.init_start(Some(T0 + MS), init("on-demand", "invoke"), &mut inv);
        assert_eq!(phases.context(id, &inv), placed_in(&inv, "r1", "init"));
        // It delayed r1, not the next invocation.
        start(&mut inv, "r2");
        assert!(!inv.get("r2").unwrap().coldstart);
    }

    /// Lambda retries a failed init inside the first invocation, without an
    /// initStart of its own: a second phase in the same trace, with its own
    /// span id.
    #[test]
    fn a_retried_init_is_a_second_phase_of_the_invocation() {
        let (mut phases, mut inv) = (Phases::default(), InvocationTable::default());
        let first = phases.init_start(Some(T0), init("on-demand", "init"), &mut inv);
        phases.done(PhaseKind::Init, Some(T0 + MS), done("error"), &inv);
        phases.report(PhaseKind::Init, Some(T0 + MS), report(1.0), &inv);
        start(&mut inv, "r1");
        phases.place_unplaced("r1");
        phases.done(PhaseKind::Init, Some(T0 + 9 * MS), done("success"), &inv);
        assert_eq!(
            phases.open(),
            None,
            "the retry's lines are the invocation's"
        );
        phases.report(PhaseKind::Init, Some(T0 + 9 * MS), report(5.0), &inv);
        assert_eq!(phases.context(first, &inv), placed_in(&inv, "r1", "init"));
        assert_eq!(
            phases.context(first + 1, &inv),
            placed_in(&inv, "r1", "init#1")
        );
        assert!(phases.take_spans(&inv, false).is_empty(), "not decided");
        let spans = phases.take_spans(&inv, true);
        assert_eq!(spans.len(), 2, "one span each, the report joined the retry");
        assert_ne!(spans[0].span_id, spans[1].span_id);
        // No start: the retry begins its reported duration before its end.
        assert_eq!(spans[1].start_time_unix_nano, T0 + 4 * MS);
    }

    #[test]
    fn a_report_before_any_invocation_without_a_start_stands_alone() {
        let (mut phases, inv) = (Phases::default(), InvocationTable::default());
        phases.report(PhaseKind::Init, Some(T0), report(3.0), &inv);
        assert!(matches!(
            phases.context(1, &inv),
            PhaseContext::Placed(TraceIds {
                parent_span_id: None,
                ..
            })
        ));
    }

    #[test]
    fn at_shutdown_a_phase_no_invocation_followed_stands_alone() {
        let (mut phases, mut inv) = (Phases::default(), InvocationTable::default());
        let id = phases.init_start(Some(T0), init("on-demand", "init"), &mut inv);
        phases.finish();
        assert_eq!(phases.open(), None);
        assert!(matches!(
            phases.context(id, &inv),
            PhaseContext::Placed(TraceIds {
                parent_span_id: None,
                ..
            })
        ));
        assert!(
            phases.take_spans(&inv, false).is_empty(),
            "no runtimeDone or report"
        );
        phases.done(PhaseKind::Init, Some(T0 + MS), done("success"), &inv);
        assert_eq!(phases.take_spans(&inv, false).len(), 1);
    }

    #[test]
    fn a_restore_forgets_the_snapshots_unexported_inits_only() {
        let (mut phases, mut inv) = (Phases::default(), InvocationTable::default());
        let sent = phases.init_start(Some(T0), init("snap-start", "init"), &mut inv);
        phases.done(PhaseKind::Init, Some(T0 + MS), done("success"), &inv);
        assert_eq!(phases.take_spans(&inv, false).len(), 1);
        let kept = phases.init_start(Some(T0 + 2 * MS), init("snap-start", "init"), &mut inv);
        assert_eq!(phases.forget_snapshot(), 1);
        assert_eq!(phases.open(), None);
        assert_eq!(phases.context(kept, &inv), PhaseContext::Gone);
        assert!(matches!(
            phases.context(sent, &inv),
            PhaseContext::Placed(_)
        ));
        let restore = phases.restore_start(Some(T0 + 3 * MS), RestoreStart::default(), &mut inv);
        assert_eq!(phases.open(), Some(restore));
        assert_eq!(phases.forget_snapshot(), 0, "a restore phase stays");
        assert_eq!(phases.context(restore, &inv), PhaseContext::Unplaced);
    }

    /// The platform may stamp start and runtimeDone in the same millisecond:
    /// the span is never shorter than the reported duration. Child spans
    /// come from runtimeDone and the report.
    #[test]
    fn a_phase_span_lasts_at_least_its_reported_duration() {
        let (mut phases, mut inv) = (Phases::default(), InvocationTable::default());
        phases.init_start(Some(T0), init("provisioned-concurrency", "init"), &mut inv);
        let child = |name: &str| PlatformSpan {
            name: name.into(),
            start: None,
            duration_ms: Some(1.0),
        };
        let d = PhaseDone {
            spans: vec![child("runtimeInit")],
            ..done("success")
        };
        phases.done(PhaseKind::Init, Some(T0), d, &inv);
        let r = PhaseReport {
            spans: vec![child("extensionInit")],
            ..report(250.5)
        };
        phases.report(PhaseKind::Init, Some(T0 + 300 * MS), r, &inv);
        let spans = phases.take_spans(&inv, false);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["init", "runtimeInit", "extensionInit"]);
        assert_eq!(spans[0].end_time_unix_nano, T0 + 250_500_000);
        for child in &spans[1..] {
            assert_eq!(child.parent_span_id, spans[0].span_id);
            assert_eq!(child.start_time_unix_nano, T0);
        }
    }
}
