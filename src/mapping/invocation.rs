//! Invocation state, keyed by `requestId`.
//!
//! During invocation N the Telemetry API delivers `platform.start`, the log
//! lines and `platform.runtimeDone`; `platform.report` for N is produced only
//! after the extension has called `/next`, so it arrives during N+1 or at
//! shutdown. Each event therefore looks its invocation up by `requestId`, never
//! by "the current one", and the table keeps recent invocations until their
//! report has arrived (bounded: the oldest entries are evicted first).

use std::collections::{HashMap, VecDeque};

use super::sampling::{Outcome, Sampling};
use super::xray::{derived_span_id, derived_trace_id, parse_header, parse_span_id, XrayContext};
use crate::lambda::events::{Report, RuntimeDone, Start, TraceContext};
use crate::options::read::choice;
use crate::options::table::INVOCATION_SPAN_ID;
use crate::options::{ConfigError, Env};
use crate::time::UnixNanos;

/// How many invocations are remembered at most. Lambda runs one invocation
/// at a time per environment (a few hundred concurrent ones on Managed
/// Instances), and a report lags at most one invocation behind.
pub const MAX_TRACKED: usize = 4096;

/// What the INVOKE event said about an invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvokeInfo {
    pub deadline_ms: u64,
    pub invoked_function_arn: Option<String>,
    pub xray_header: Option<String>,
}

/// The ids an invocation's span and log records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: [u8; 16],
    /// The invocation span's own id.
    pub span_id: [u8; 8],
    /// The caller's span (X-Ray `Parent`), if any.
    pub parent_span_id: Option<[u8; 8]>,
    /// The sampling decision ([`super::sampling`]): the spans go out, and
    /// the trace flags of its spans and log records say so.
    pub sampled: bool,
    /// True when the trace id came from X-Ray, false when derived.
    pub from_xray: bool,
}

/// Everything known about one invocation.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub request_id: String,
    pub invoke: Option<InvokeInfo>,
    pub start: Option<(Option<UnixNanos>, Start)>,
    pub runtime_done: Option<(Option<UnixNanos>, RuntimeDone)>,
    pub report: Option<(Option<UnixNanos>, Report)>,
    /// First invocation after an init in this environment.
    pub coldstart: bool,
    /// The invocation span (and runtimeDone's child spans) went out.
    pub span_emitted: bool,
    /// The report's child spans went out.
    pub report_spans_emitted: bool,
    /// Use the X-Ray `Parent` as the invocation span's own id (see
    /// [`SpanIdMode::XrayParent`]).
    pub parent_as_span: bool,
    /// The outcome counter (`faas.invocations` / `faas.errors` /
    /// `faas.timeouts`) was incremented: once per invocation.
    pub outcome_recorded: bool,
    /// `faas.invoke_duration` was recorded (from `runtimeDone`, else from the
    /// report): once per invocation.
    pub invoke_duration_recorded: bool,
    /// The sampler's decision for its trace (none before the table saw it).
    pub head_sampled: Option<bool>,
    /// The final sampling decision, taken once its outcome is known (its
    /// runtimeDone or report, or its end at shutdown).
    pub decision: Option<bool>,
}

/// Which id the invocation span takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpanIdMode {
    /// `tracing.spanId` of the platform events (AWS's mapping guidance), with
    /// the X-Ray `Parent` as its parent.
    #[default]
    Telemetry,
    /// The X-Ray `Parent` itself, with no parent: the function's own spans,
    /// whose X-Ray propagator makes `Parent` their parent, then nest inside
    /// the invocation span.
    XrayParent,
}

impl SpanIdMode {
    /// Reads `LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID`.
    pub fn from_env(env: &dyn Env) -> Result<SpanIdMode, ConfigError> {
        choice(env, &INVOCATION_SPAN_ID, |v| match v {
            "telemetry" => Some(SpanIdMode::Telemetry),
            "xray-parent" => Some(SpanIdMode::XrayParent),
            _ => None,
        })
    }
}

impl Invocation {
    fn tracing_contexts(&self) -> impl Iterator<Item = &TraceContext> {
        let start = self.start.as_ref().and_then(|(_, s)| s.tracing.as_ref());
        let done = self
            .runtime_done
            .as_ref()
            .and_then(|(_, d)| d.tracing.as_ref());
        let report = self.report.as_ref().and_then(|(_, r)| r.tracing.as_ref());
        start.into_iter().chain(done).chain(report)
    }

    /// The X-Ray context: from the platform events' `tracing`, else the
    /// INVOKE event's.
    fn xray(&self) -> XrayContext {
        let header = self
            .tracing_contexts()
            .find_map(|t| t.value.as_deref())
            .or_else(|| self.invoke.as_ref().and_then(|i| i.xray_header.as_deref()));
        header.map(parse_header).unwrap_or_default()
    }

    /// What the sampler is asked about: the trace id, and the X-Ray
    /// `Sampled` flag as the remote parent's decision (`None`: a root).
    pub fn sampling_input(&self) -> ([u8; 16], Option<bool>) {
        let xray = self.xray();
        match xray.trace_id {
            Some(trace_id) => (trace_id, xray.sampled),
            None => (derived_trace_id(&self.request_id), None),
        }
    }

    /// Whether the sampling decision is final.
    pub fn decided(&self) -> bool {
        self.decision.is_some()
    }

    /// Resolves the ids: X-Ray `Root`/`Parent` from the platform events'
    /// `tracing` (else the INVOKE event's), span id from `tracing.spanId`;
    /// without X-Ray, ids derived from the request id. `sampled` is the
    /// final decision, else the sampler's (before the outcome is known).
    pub fn trace_ids(&self) -> TraceIds {
        let xray = self.xray();
        let sampled = self
            .decision
            .or(self.head_sampled)
            .unwrap_or(xray.sampled.unwrap_or(true));
        let span_id = self
            .tracing_contexts()
            .find_map(|t| t.span_id.as_deref().and_then(parse_span_id))
            .unwrap_or_else(|| derived_span_id(&self.request_id, "invocation"));
        match xray.trace_id {
            Some(trace_id) if self.parent_as_span && xray.parent_span_id.is_some() => TraceIds {
                trace_id,
                span_id: xray.parent_span_id.unwrap_or(span_id),
                parent_span_id: None,
                sampled,
                from_xray: true,
            },
            Some(trace_id) => TraceIds {
                trace_id,
                span_id,
                parent_span_id: xray.parent_span_id,
                sampled,
                from_xray: true,
            },
            None => TraceIds {
                trace_id: derived_trace_id(&self.request_id),
                span_id,
                parent_span_id: None,
                sampled: self.decision.or(self.head_sampled).unwrap_or(true),
                from_xray: false,
            },
        }
    }
}

/// The table of invocations.
#[derive(Debug, Default)]
pub struct InvocationTable {
    map: HashMap<String, Invocation>,
    order: VecDeque<String>,
    /// The invocation whose `platform.start` came last: log lines without a
    /// request id belong to it (the telemetry stream is ordered).
    current: Option<std::sync::Arc<str>>,
    /// The last INVOKE: the fallback when platform events are not subscribed.
    invoked: Option<std::sync::Arc<str>>,
    /// Set by an init phase; consumed by the next invocation to start.
    pending_coldstart: bool,
    evicted: u64,
    /// How invocation span ids are chosen.
    pub span_id_mode: SpanIdMode,
    /// How each invocation's spans are sampled.
    pub sampling: Sampling,
    /// Finished invocations' ids: late events are recognised, late log
    /// lines still get the right trace.
    retired: HashMap<String, TraceIds>,
    retired_order: VecDeque<String>,
}

impl InvocationTable {
    pub fn new(span_id_mode: SpanIdMode) -> Self {
        InvocationTable {
            span_id_mode,
            ..InvocationTable::default()
        }
    }

    /// A table whose invocations are sampled by `sampling`.
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Asks the sampler again after an event that may have brought the
    /// X-Ray context.
    fn resample(&mut self, request_id: &str) {
        if let Some(inv) = self.map.get_mut(request_id) {
            let (trace_id, parent) = inv.sampling_input();
            inv.head_sampled = Some(self.sampling.head(trace_id, parent));
        }
    }

    /// The final decision once the outcome is known (the first of
    /// runtimeDone and report decides).
    fn settle(&mut self, request_id: &str, status: Option<&str>, duration_ms: Option<f64>) {
        self.resample(request_id);
        if let Some(inv) = self.map.get_mut(request_id) {
            if inv.decision.is_none() {
                let outcome = Outcome::of_status(status, inv.coldstart, duration_ms);
                let head = inv.head_sampled.unwrap_or(true);
                inv.decision = Some(head || self.sampling.keeps(&outcome));
            }
        }
    }

    /// Shutdown: invocations that started and never ended are decided as
    /// failed ones (their span says `incomplete`, an error).
    pub fn settle_unfinished(&mut self) {
        let unfinished: Vec<String> = self
            .map
            .values()
            .filter(|i| i.start.is_some() && i.runtime_done.is_none() && i.report.is_none())
            .map(|i| i.request_id.clone())
            .collect();
        for id in unfinished {
            self.settle(&id, Some("incomplete"), None);
        }
    }

    pub fn get(&self, request_id: &str) -> Option<&Invocation> {
        self.map.get(request_id)
    }

    /// The invocation in progress: the last `platform.start`, or without
    /// platform events the last INVOKE.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_deref().or(self.invoked.as_deref())
    }

    /// [`Self::current_id`] as a shared string (cheap to keep per log record).
    pub fn current_shared(&self) -> Option<std::sync::Arc<str>> {
        self.current.clone().or_else(|| self.invoked.clone())
    }

    pub fn get_mut(&mut self, request_id: &str) -> Option<&mut Invocation> {
        self.map.get_mut(request_id)
    }

    /// Request ids in the order they were first seen.
    pub fn ids(&self) -> Vec<String> {
        self.order.iter().cloned().collect()
    }

    /// How many entries were evicted to keep the table bounded.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// An init (or restore) phase happened: the next invocation is a cold start.
    pub fn mark_init(&mut self) {
        self.pending_coldstart = true;
    }

    /// The entry for `request_id`, created on first sight.
    pub fn entry(&mut self, request_id: &str) -> &mut Invocation {
        if !self.map.contains_key(request_id) {
            while self.map.len() >= MAX_TRACKED {
                match self.order.pop_front() {
                    Some(old) => {
                        if self.map.remove(&old).is_some() {
                            self.evicted += 1;
                        }
                        if self.current.as_deref() == Some(old.as_str()) {
                            self.current = None;
                        }
                        if self.invoked.as_deref() == Some(old.as_str()) {
                            self.invoked = None;
                        }
                    }
                    None => break,
                }
            }
            self.order.push_back(request_id.to_owned());
            self.map.insert(
                request_id.to_owned(),
                Invocation {
                    request_id: request_id.to_owned(),
                    parent_as_span: self.span_id_mode == SpanIdMode::XrayParent,
                    ..Invocation::default()
                },
            );
        }
        // Invariant: inserted just above when missing.
        self.map.get_mut(request_id).expect("entry exists")
    }

    pub fn on_invoke(&mut self, request_id: &str, info: InvokeInfo) {
        if self.is_retired(request_id) {
            // Its telemetry overtook the INVOKE and is already out.
            return;
        }
        self.entry(request_id).invoke = Some(info);
        self.invoked = Some(request_id.into());
        self.resample(request_id);
    }

    /// Records `platform.start`; false if this invocation already had one
    /// (a re-delivered batch), which is then ignored.
    pub fn on_start(&mut self, time: Option<UnixNanos>, start: Start) -> bool {
        let id = start.request_id.clone();
        // The telemetry stream is ordered: the first platform.start after an
        // init is the cold start (INVOKE may arrive before the init events).
        let coldstart = self.pending_coldstart;
        let inv = self.entry(&id);
        if inv.start.is_some() {
            return false;
        }
        inv.start = Some((time, start));
        inv.coldstart = coldstart;
        self.pending_coldstart = false;
        self.current = Some(id.as_str().into());
        self.resample(&id);
        true
    }

    /// Records `platform.runtimeDone`; false for a duplicate.
    pub fn on_runtime_done(&mut self, time: Option<UnixNanos>, done: RuntimeDone) -> bool {
        let id = done.request_id.clone();
        let inv = self.entry(&id);
        if inv.runtime_done.is_some() {
            return false;
        }
        let status = done.status.clone();
        // The handler's duration: Lambda's figure, else start to runtimeDone.
        let start = inv.start.as_ref().and_then(|(t, _)| *t);
        let duration_ms = done.metrics.duration_ms.or_else(|| {
            let (start, end) = (start?, time?);
            Some(end.saturating_sub(start) as f64 / 1e6)
        });
        inv.runtime_done = Some((time, done));
        self.settle(&id, status.as_deref(), duration_ms);
        true
    }

    /// Records `platform.report`; false for a duplicate.
    pub fn on_report(&mut self, time: Option<UnixNanos>, report: Report) -> bool {
        let id = report.request_id.clone();
        let inv = self.entry(&id);
        if inv.report.is_some() {
            return false;
        }
        let (status, duration_ms) = (report.status.clone(), report.metrics.duration_ms);
        inv.report = Some((time, report));
        self.settle(&id, status.as_deref(), duration_ms);
        true
    }

    /// Forgets invocations that are complete (report received, spans out)
    /// and are not the current one.
    pub fn retire_completed(&mut self) {
        let current = self.current_id().map(str::to_owned);
        let map = &mut self.map;
        let mut gone: Vec<(String, TraceIds)> = Vec::new();
        self.order.retain(|id| {
            let done = map.get(id).is_none_or(|inv| {
                inv.report.is_some() && inv.span_emitted && inv.report_spans_emitted
            });
            if done && current.as_deref() != Some(id.as_str()) {
                if let Some(inv) = map.remove(id) {
                    gone.push((id.clone(), inv.trace_ids()));
                }
                false
            } else {
                true
            }
        });
        for (id, ids) in gone {
            self.remember_retired(id, ids);
        }
    }

    /// Remembers a finished invocation so that a late or re-delivered event
    /// for it is recognised instead of starting it over (bounded).
    fn remember_retired(&mut self, id: String, ids: TraceIds) {
        if self.retired.insert(id.clone(), ids).is_none() {
            self.retired_order.push_back(id);
        }
        while self.retired_order.len() > MAX_TRACKED {
            if let Some(old) = self.retired_order.pop_front() {
                self.retired.remove(&old);
            }
        }
    }

    /// Whether this invocation was completed and forgotten already.
    pub fn is_retired(&self, request_id: &str) -> bool {
        self.retired.contains_key(request_id)
    }

    /// Whether `request_id` is an invocation this table has seen: one it
    /// holds, or one completed and forgotten (see [`Self::is_retired`]).
    pub fn knows(&self, request_id: &str) -> bool {
        self.map.contains_key(request_id) || self.is_retired(request_id)
    }

    /// The ids of an invocation, current or already finished.
    pub fn ids_of(&self, request_id: &str) -> Option<TraceIds> {
        match self.map.get(request_id) {
            Some(inv) => Some(inv.trace_ids()),
            None => self.retired.get(request_id).copied(),
        }
    }

    /// Whether one of the `recent` newest invocations started and still
    /// awaits its report.
    pub fn awaits_recent_report(&self, recent: usize) -> bool {
        self.order
            .iter()
            .rev()
            .take(recent)
            .any(|id| self.awaits_report(id))
    }

    /// Whether invocation `id` started and its report has not arrived.
    fn awaits_report(&self, id: &str) -> bool {
        self.map.get(id).is_some_and(|inv| {
            inv.report.is_none() && (inv.start.is_some() || inv.invoke.is_some())
        })
    }

    /// Request ids of invocations that started but whose report has not arrived.
    pub fn awaiting_report(&self) -> Vec<String> {
        self.order
            .iter()
            .filter(|id| self.awaits_report(id))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::xray::to_hex;

    fn start(id: &str, tracing: Option<TraceContext>) -> Start {
        Start {
            request_id: id.into(),
            tracing,
            ..Start::default()
        }
    }

    #[test]
    fn late_report_completes_the_right_invocation() {
        let mut t = InvocationTable::default();
        t.mark_init();
        t.on_start(Some(1), start("a", None));
        t.on_runtime_done(
            Some(2),
            RuntimeDone {
                request_id: "a".into(),
                ..Default::default()
            },
        );
        t.on_start(Some(3), start("b", None));
        // a's report arrives while b is in progress.
        t.on_report(
            Some(4),
            Report {
                request_id: "a".into(),
                ..Default::default()
            },
        );
        assert_eq!(t.current_id(), Some("b"));
        assert!(t.get("a").unwrap().report.is_some());
        assert!(t.get("b").unwrap().report.is_none());
        assert!(t.get("a").unwrap().coldstart);
        assert!(!t.get("b").unwrap().coldstart);
        assert_eq!(t.awaiting_report(), ["b"]);
        assert!(
            t.awaits_recent_report(1),
            "b, the newest, awaits its report"
        );
        t.on_start(Some(5), start("c", None));
        t.on_report(
            Some(6),
            Report {
                request_id: "c".into(),
                ..Default::default()
            },
        );
        assert!(!t.awaits_recent_report(1), "c, the newest, has its report");
        assert!(t.awaits_recent_report(2), "b, among the two newest, awaits");
        for inv in t.map.values_mut() {
            inv.span_emitted = true;
            inv.report_spans_emitted = true;
        }
        t.retire_completed();
        assert!(t.get("a").is_none());
        assert!(t.get("b").is_some());
    }

    #[test]
    fn ids_from_xray_or_derived() {
        let mut t = InvocationTable::default();
        t.on_start(
            None,
            start(
                "a",
                Some(TraceContext {
                    span_id: Some("1f2e3d4c5b6a7980".into()),
                    kind: Some("X-Amzn-Trace-Id".into()),
                    value: Some("Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1".into()),
                }),
            ),
        );
        let ids = t.get("a").unwrap().trace_ids();
        assert_eq!(to_hex(&ids.trace_id), "67a1b2c34d5e6f708192a3b4c5d6e7f8");
        assert_eq!(to_hex(&ids.span_id), "1f2e3d4c5b6a7980");
        assert_eq!(to_hex(&ids.parent_span_id.unwrap()), "9a8b7c6d5e4f3a2b");
        assert!(ids.from_xray);

        t.on_invoke("b", InvokeInfo::default());
        let ids = t.get("b").unwrap().trace_ids();
        assert!(!ids.from_xray);
        assert_eq!(ids.trace_id, derived_trace_id("b"));
        assert_eq!(ids.parent_span_id, None);
    }

    #[test]
    fn xray_parent_mode_takes_the_parent_as_span_id() {
        let mut t = InvocationTable::new(SpanIdMode::XrayParent);
        let tracing = TraceContext {
            span_id: Some("1f2e3d4c5b6a7980".into()),
            kind: None,
            value: Some(
                "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1".into(),
            ),
        };
        t.on_start(None, start("a", Some(tracing)));
        let ids = t.get("a").unwrap().trace_ids();
        assert_eq!(to_hex(&ids.span_id), "9a8b7c6d5e4f3a2b");
        assert_eq!(ids.parent_span_id, None);
        // Without a Parent the mode changes nothing.
        t.on_invoke("b", InvokeInfo::default());
        assert_eq!(
            t.get("b").unwrap().trace_ids().span_id,
            derived_span_id("b", "invocation")
        );
    }

    #[test]
    fn bounded() {
        let mut t = InvocationTable::default();
        for i in 0..(MAX_TRACKED + 10) {
            t.on_start(None, start(&i.to_string(), None));
        }
        assert_eq!(t.len(), MAX_TRACKED);
        assert_eq!(t.evicted(), 10);
        assert!(t.get("0").is_none());
    }
}
