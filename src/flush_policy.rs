//! The flush policy: when the lifecycle exports, relative to `/next`.
//!
//! - `end`: on INVOKE, wait (bounded) for this invocation's
//!   `platform.runtimeDone`, export everything pending, then call `/next`.
//!   Nothing waits in a frozen sandbox, at the cost of the wait and the
//!   export being billed to the function.
//! - `adaptive` (default): `end` for the first invocations of an
//!   environment and whenever invocations are sparse. When they come
//!   frequently, the export of what is pending runs in the background while
//!   the next invocation executes and `/next` is called at once; data then
//!   waits at most one inter-invocation gap, and every `max_staleness` an
//!   `end`-style flush is done anyway.
//! - `periodic:<ms>`: export at the first INVOKE after `<ms>` have passed
//!   since the last export (without waiting for runtimeDone), and on a
//!   timer while the sandbox runs; the mode for Lambda Managed Instances,
//!   which send no INVOKE events.
//!
//! SHUTDOWN always exports everything left.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::options::read::{int, millis, text_or_default};
use crate::options::table::{
    ADAPTIVE_GAP_MS, ADAPTIVE_MAX_STALENESS_MS, ADAPTIVE_WARMUP, FLUSH, FLUSH_TIMEOUT_MS,
    INVOKE_WAIT_MS, SHUTDOWN_REPORT_WAIT_MS,
};
use crate::options::{ConfigError, Env};

/// The configured policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    End,
    Adaptive,
    Periodic(Duration),
}

/// Adaptive-mode tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveTuning {
    /// `end` for this many invocations after start-up.
    pub warmup: u32,
    /// Invocations closer together than this count as frequent.
    pub frequent_gap: Duration,
    /// Longest time without an `end`-style flush while frequent.
    pub max_staleness: Duration,
}

impl Default for AdaptiveTuning {
    /// The declared defaults.
    fn default() -> Self {
        let ms = |ms: u32| Duration::from_millis(u64::from(ms));
        AdaptiveTuning {
            warmup: ADAPTIVE_WARMUP.default,
            frequent_gap: ms(ADAPTIVE_GAP_MS.default),
            max_staleness: ms(ADAPTIVE_MAX_STALENESS_MS.default),
        }
    }
}

/// The lifecycle's bounded waits around a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// On INVOKE, the longest wait for this invocation's `platform.start`
    /// (`LAMBDA_OTEL_BRIDGE_INVOKE_WAIT_MS`).
    pub invoke: Duration,
    /// Longest time a flush may add to an invocation
    /// (`LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS`).
    pub flush_timeout: Duration,
    /// After SHUTDOWN, how long to wait for the last `platform.report`
    /// (`LAMBDA_OTEL_BRIDGE_SHUTDOWN_REPORT_WAIT_MS`).
    pub shutdown_report: Duration,
}

impl Waits {
    pub fn from_env(env: &dyn Env) -> Result<Waits, ConfigError> {
        let shutdown_report = millis(env, &SHUTDOWN_REPORT_WAIT_MS)?;
        let invoke = millis(env, &INVOKE_WAIT_MS)?;
        Ok(Waits {
            invoke,
            flush_timeout: millis(env, &FLUSH_TIMEOUT_MS)?,
            shutdown_report,
        })
    }
}

/// Reads `LAMBDA_OTEL_BRIDGE_FLUSH` and the adaptive tuning.
pub fn from_env(env: &dyn Env) -> Result<(FlushPolicy, AdaptiveTuning), ConfigError> {
    let given = text_or_default(env, &FLUSH);
    let policy = parse_policy(&given.value).ok_or_else(|| {
        let (min, max) = periodic_range();
        ConfigError::new(
            &given.var,
            &given.value,
            format!("expected end, adaptive or periodic:<milliseconds> (periodic:{min} to periodic:{max})"),
        )
    })?;
    Ok((
        policy,
        AdaptiveTuning {
            warmup: int(env, &ADAPTIVE_WARMUP)?,
            frequent_gap: millis(env, &ADAPTIVE_GAP_MS)?,
            max_staleness: millis(env, &ADAPTIVE_MAX_STALENESS_MS)?,
        },
    ))
}

/// The range of `periodic:<ms>`.
fn periodic_range() -> (u32, u32) {
    FLUSH.range.unwrap_or((1, u32::MAX))
}

pub fn parse_policy(v: &str) -> Option<FlushPolicy> {
    let v = v.trim().to_ascii_lowercase();
    match v.as_str() {
        "end" => Some(FlushPolicy::End),
        "adaptive" => Some(FlushPolicy::Adaptive),
        _ => {
            let ms: u32 = v.strip_prefix("periodic:")?.trim().parse().ok()?;
            let (min, max) = periodic_range();
            (min..=max)
                .contains(&ms)
                .then(|| FlushPolicy::Periodic(Duration::from_millis(u64::from(ms))))
        }
    }
}

/// What to do on an INVOKE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait for this invocation's runtimeDone, export, then `/next`.
    EndOfInvocation,
    /// Start exporting what is pending in the background, `/next` at once.
    Background,
    /// Nothing to do now: `/next` at once.
    Skip,
}

/// The decision state (pure: instants are passed in).
#[derive(Debug)]
pub struct FlushState {
    policy: FlushPolicy,
    tuning: AdaptiveTuning,
    invokes: u32,
    last_invoke: Option<Instant>,
    gaps: VecDeque<Duration>,
    last_end_flush: Option<Instant>,
    last_flush: Option<Instant>,
}

impl FlushState {
    pub fn new(policy: FlushPolicy, tuning: AdaptiveTuning) -> Self {
        FlushState {
            policy,
            tuning,
            invokes: 0,
            last_invoke: None,
            gaps: VecDeque::new(),
            last_end_flush: None,
            last_flush: None,
        }
    }

    pub fn policy(&self) -> FlushPolicy {
        self.policy
    }

    /// Called on every INVOKE.
    pub fn on_invoke(&mut self, now: Instant) -> Decision {
        self.invokes += 1;
        if let Some(prev) = self.last_invoke.replace(now) {
            self.gaps.push_back(now.saturating_duration_since(prev));
            if self.gaps.len() > 2 {
                self.gaps.pop_front();
            }
        }
        let decision = match self.policy {
            FlushPolicy::End => Decision::EndOfInvocation,
            FlushPolicy::Periodic(p) => match self.last_flush {
                Some(t) if now.saturating_duration_since(t) < p => Decision::Skip,
                _ => Decision::Background,
            },
            FlushPolicy::Adaptive => {
                let frequent = self.invokes > self.tuning.warmup
                    && self.gaps.len() >= 2
                    && self.gaps.iter().all(|g| *g < self.tuning.frequent_gap);
                let fresh = self
                    .last_end_flush
                    .is_some_and(|t| now.saturating_duration_since(t) < self.tuning.max_staleness);
                if frequent && fresh {
                    Decision::Background
                } else {
                    Decision::EndOfInvocation
                }
            }
        };
        match decision {
            Decision::EndOfInvocation => {
                self.last_end_flush = Some(now);
                self.last_flush = Some(now);
            }
            Decision::Background => self.last_flush = Some(now),
            Decision::Skip => {}
        }
        decision
    }

    /// A timer-driven flush happened (periodic mode).
    pub fn on_timer_flush(&mut self, now: Instant) {
        self.last_flush = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policies() {
        assert_eq!(parse_policy("END"), Some(FlushPolicy::End));
        assert_eq!(parse_policy("adaptive"), Some(FlushPolicy::Adaptive));
        assert_eq!(
            parse_policy("periodic:250"),
            Some(FlushPolicy::Periodic(Duration::from_millis(250)))
        );
        assert_eq!(parse_policy("periodic:5"), None);
        assert_eq!(parse_policy("sometimes"), None);
        let e = from_env(&crate::options::env_of(&[(
            "LAMBDA_OTEL_BRIDGE_FLUSH",
            "periodic",
        )]))
        .unwrap_err();
        assert_eq!(e.var, "LAMBDA_OTEL_BRIDGE_FLUSH");
    }

    #[test]
    fn adaptive_goes_background_when_frequent_and_back_when_sparse() {
        let mut s = FlushState::new(FlushPolicy::Adaptive, AdaptiveTuning::default());
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let decisions: Vec<Decision> = [0, 100, 200, 300, 400, 500]
            .iter()
            .map(|ms| s.on_invoke(at(*ms)))
            .collect();
        assert_eq!(&decisions[..3], &[Decision::EndOfInvocation; 3], "warm-up");
        assert_eq!(&decisions[3..], &[Decision::Background; 3]);
        // A sparse gap: back to end.
        assert_eq!(s.on_invoke(at(3000)), Decision::EndOfInvocation);
        assert_eq!(
            s.on_invoke(at(3100)),
            Decision::EndOfInvocation,
            "one short gap is not enough"
        );
        assert_eq!(s.on_invoke(at(3200)), Decision::Background);
    }

    #[test]
    fn adaptive_bounds_staleness() {
        let tuning = AdaptiveTuning {
            warmup: 0,
            frequent_gap: Duration::from_millis(1000),
            max_staleness: Duration::from_millis(1000),
        };
        let mut s = FlushState::new(FlushPolicy::Adaptive, tuning);
        let t0 = Instant::now();
        let mut ends = 0;
        for i in 0..30u64 {
            if s.on_invoke(t0 + Duration::from_millis(i * 100)) == Decision::EndOfInvocation {
                ends += 1;
            }
        }
        // 3 s of frequent traffic: the first (no gaps yet) plus about one per second.
        assert!((3..=6).contains(&ends), "{ends}");
    }

    #[test]
    fn end_and_periodic() {
        let t0 = Instant::now();
        let mut e = FlushState::new(FlushPolicy::End, AdaptiveTuning::default());
        for i in 0..10 {
            assert_eq!(
                e.on_invoke(t0 + Duration::from_millis(i * 10)),
                Decision::EndOfInvocation
            );
        }
        let mut p = FlushState::new(
            FlushPolicy::Periodic(Duration::from_millis(500)),
            AdaptiveTuning::default(),
        );
        assert_eq!(p.on_invoke(t0), Decision::Background);
        assert_eq!(p.on_invoke(t0 + Duration::from_millis(100)), Decision::Skip);
        assert_eq!(
            p.on_invoke(t0 + Duration::from_millis(600)),
            Decision::Background
        );
    }
}
