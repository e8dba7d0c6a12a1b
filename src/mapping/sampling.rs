//! Trace sampling per invocation: one decision covers an invocation's span,
//! its child spans and the init or restore span placed in it.
//!
//! The head decision is `opentelemetry_sdk`'s sampler (`OTEL_TRACES_SAMPLER`,
//! `OTEL_TRACES_SAMPLER_ARG`) asked about the invocation's trace id, with
//! the X-Ray header's `Sampled` flag as the remote parent's decision (a
//! header without `Sampled=0|1`, or no X-Ray context at all, is a root):
//! the decision an OpenTelemetry SDK would make for the same trace. The
//! keep rules (`LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP`) then keep invocations the
//! sampler dropped once their outcome is known (errors, timeouts, cold
//! starts, slow ones): the bridge sees an invocation whole before it
//! exports its spans, which wait for `platform.runtimeDone` (or the report)
//! anyway.
//!
//! Metrics are never sampled, and log records are never dropped by the
//! sampler: they carry the decision in their trace flags.

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::Context;
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};

use crate::options::read::{choice, text, text_or_default};
use crate::options::table::{SAMPLER_KEEP, TRACES_SAMPLER, TRACES_SAMPLER_ARG};
use crate::options::{ConfigError, Env};

/// The standard sampler names (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerKind {
    /// The SDK's sampler of this name.
    fn sdk(self) -> Sampler {
        match self {
            SamplerKind::AlwaysOn => Sampler::AlwaysOn,
            SamplerKind::AlwaysOff => Sampler::AlwaysOff,
            SamplerKind::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            SamplerKind::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerKind::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            SamplerKind::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// Invocations kept whatever the sampler says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepRules {
    pub errors: bool,
    pub timeouts: bool,
    pub coldstarts: bool,
    /// Invocations that ran at least this long (ms).
    pub slow_ms: Option<u32>,
}

impl KeepRules {
    /// Parses `errors,timeouts,coldstarts,slow:<ms>` or `none`.
    fn parse(value: &str) -> Option<KeepRules> {
        let mut k = KeepRules::default();
        let words: Vec<String> = value
            .split(',')
            .map(|w| w.trim().to_ascii_lowercase())
            .collect();
        if words.len() == 1 && words[0] == "none" {
            return Some(k);
        }
        let (min, max) = SAMPLER_KEEP.range.unwrap_or((1, u32::MAX));
        for w in &words {
            match w.as_str() {
                "errors" => k.errors = true,
                "timeouts" => k.timeouts = true,
                "coldstarts" => k.coldstarts = true,
                _ => {
                    let ms: u32 = w.strip_prefix("slow:")?.trim().parse().ok()?;
                    if !(min..=max).contains(&ms) || k.slow_ms.is_some() {
                        return None;
                    }
                    k.slow_ms = Some(ms);
                }
            }
        }
        Some(k)
    }
}

/// What the keep rules look at, known once the invocation has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    pub coldstart: bool,
    /// Any status other than `success` and `timeout` (an invocation that
    /// never ended counts as one).
    pub error: bool,
    pub timeout: bool,
    pub duration_ms: Option<f64>,
}

impl Outcome {
    /// The outcome of a Telemetry API `status`.
    pub fn of_status(status: Option<&str>, coldstart: bool, duration_ms: Option<f64>) -> Outcome {
        let s = status.unwrap_or("success").to_ascii_lowercase();
        Outcome {
            coldstart,
            error: s != "success" && s != "timeout",
            timeout: s == "timeout",
            duration_ms,
        }
    }
}

/// The sampling settings, with the SDK sampler built once.
#[derive(Debug, Clone)]
pub struct Sampling {
    pub kind: SamplerKind,
    pub keep: KeepRules,
    sampler: Sampler,
}

impl PartialEq for Sampling {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.keep == other.keep
    }
}

impl Default for Sampling {
    /// `always_on`, keeping errors and timeouts (the declared defaults).
    fn default() -> Self {
        Sampling::new(
            SamplerKind::AlwaysOn,
            KeepRules {
                errors: true,
                timeouts: true,
                ..KeepRules::default()
            },
        )
    }
}

/// Samplers the OpenTelemetry specification names for `OTEL_TRACES_SAMPLER`
/// that the bridge does not implement (they need a remote sampling service
/// or X-Ray's rules). The variable is shared with the function's SDK, which
/// may be configured with one: the bridge then samples with the default
/// (`always_on`, plus the keep rules) and says so, instead of failing the
/// function's init.
const FOREIGN_SAMPLERS: [&str; 3] = ["jaeger_remote", "parentbased_jaeger_remote", "xray"];

/// The value of `OTEL_TRACES_SAMPLER` when it is one of [`FOREIGN_SAMPLERS`].
fn foreign_sampler(env: &dyn Env) -> Option<String> {
    env.get(TRACES_SAMPLER.name)
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| FOREIGN_SAMPLERS.contains(&v.as_str()))
}

/// The start-up warning when `OTEL_TRACES_SAMPLER` names a sampler for the
/// function's SDK that the bridge does not implement.
pub fn foreign_sampler_warning(env: &dyn Env) -> Option<String> {
    foreign_sampler(env).map(|v| {
        format!(
            "OTEL_TRACES_SAMPLER={v} is not a sampler the bridge implements (the function's SDK \
             may use it): the bridge samples its own spans with always_on and \
             LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP"
        )
    })
}

impl Sampling {
    pub fn new(kind: SamplerKind, keep: KeepRules) -> Self {
        Sampling {
            kind,
            keep,
            sampler: kind.sdk(),
        }
    }

    /// Reads `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` (only for the
    /// ratio samplers, as the specification says) and
    /// `LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP`.
    pub fn from_env(env: &dyn Env) -> Result<Sampling, ConfigError> {
        let name = match foreign_sampler(env) {
            Some(_) => TRACES_SAMPLER.default.to_owned(),
            None => choice(env, &TRACES_SAMPLER, |v| Some(v.to_owned()))?,
        };
        let ratio = || -> Result<f64, ConfigError> {
            let Some(given) = text(env, &TRACES_SAMPLER_ARG) else {
                return Ok(1.0);
            };
            match given.value.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(ConfigError::new(
                    &given.var,
                    &given.value,
                    "expected a ratio from 0 to 1",
                )),
            }
        };
        let kind = match name.as_str() {
            "always_off" => SamplerKind::AlwaysOff,
            "traceidratio" => SamplerKind::TraceIdRatio(ratio()?),
            "parentbased_always_on" => SamplerKind::ParentBasedAlwaysOn,
            "parentbased_always_off" => SamplerKind::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => SamplerKind::ParentBasedTraceIdRatio(ratio()?),
            _ => SamplerKind::AlwaysOn,
        };
        let given = text_or_default(env, &SAMPLER_KEEP);
        let keep = KeepRules::parse(&given.value).ok_or_else(|| {
            ConfigError::new(
                &given.var,
                &given.value,
                format!(
                    "expected {} (slow: 1 to 900000 ms, once)",
                    SAMPLER_KEEP.format
                ),
            )
        })?;
        Ok(Sampling::new(kind, keep))
    }

    /// The sampler's decision for `trace_id`; `parent` is the remote
    /// parent's sampled flag (`None`: a root).
    pub fn head(&self, trace_id: [u8; 16], parent: Option<bool>) -> bool {
        let trace_id = TraceId::from_bytes(trace_id);
        let parent = parent.map(|sampled| {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                // The parent's own id does not enter the decision.
                SpanId::from_bytes([0, 0, 0, 0, 0, 0, 0, 1]),
                flags,
                true,
                TraceState::default(),
            ))
        });
        let result =
            self.sampler
                .should_sample(parent.as_ref(), trace_id, "", &SpanKind::Server, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }

    /// Whether a keep rule keeps an invocation with this outcome.
    pub fn keeps(&self, o: &Outcome) -> bool {
        let k = &self.keep;
        (k.errors && o.error)
            || (k.timeouts && o.timeout)
            || (k.coldstarts && o.coldstart)
            || k.slow_ms
                .zip(o.duration_ms)
                .is_some_and(|(slow, ms)| ms >= f64::from(slow))
    }

    /// The decision: the sampler's, or a keep rule's once the outcome is known.
    pub fn decide(&self, trace_id: [u8; 16], parent: Option<bool>, outcome: &Outcome) -> bool {
        self.keeps(outcome) || self.head(trace_id, parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::env_of;

    fn read(pairs: &[(&str, &str)]) -> Result<Sampling, ConfigError> {
        Sampling::from_env(&env_of(pairs))
    }

    /// A trace id whose lower 8 bytes are `low`.
    fn id(low: u64) -> [u8; 16] {
        let mut b = [0xab; 16];
        b[8..].copy_from_slice(&low.to_be_bytes());
        b
    }

    /// A sampler meant for the function's SDK falls back to the default
    /// with a warning; a value nobody defines is still an error.
    #[test]
    fn foreign_samplers_fall_back_with_a_warning() {
        for name in ["xray", "jaeger_remote", " ParentBased_Jaeger_Remote "] {
            let env = env_of(&[("OTEL_TRACES_SAMPLER", name)]);
            let s = Sampling::from_env(&env).unwrap();
            assert_eq!(s.kind, SamplerKind::AlwaysOn, "{name}");
            let w = foreign_sampler_warning(&env).expect("a warning");
            assert!(w.contains("always_on"), "{w}");
        }
        assert!(
            foreign_sampler_warning(&env_of(&[("OTEL_TRACES_SAMPLER", "always_off")])).is_none()
        );
        let e = read(&[("OTEL_TRACES_SAMPLER", "sometimes")]).unwrap_err();
        assert!(e.to_string().contains("OTEL_TRACES_SAMPLER"), "{e}");
    }

    #[test]
    fn defaults_and_names() {
        let s = read(&[]).unwrap();
        assert_eq!(s, Sampling::default());
        assert_eq!(s.kind, SamplerKind::AlwaysOn);
        assert!(s.keep.errors && s.keep.timeouts && !s.keep.coldstarts);
        let s = read(&[
            ("OTEL_TRACES_SAMPLER", "ParentBased_TraceIdRatio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP", "coldstarts, slow:1500"),
        ])
        .unwrap();
        assert_eq!(s.kind, SamplerKind::ParentBasedTraceIdRatio(0.25));
        assert_eq!(
            s.keep,
            KeepRules {
                coldstarts: true,
                slow_ms: Some(1500),
                ..KeepRules::default()
            }
        );
        let s = read(&[("LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP", "none")]).unwrap();
        assert_eq!(s.keep, KeepRules::default());
        // The argument is read by the ratio samplers only.
        let s = read(&[("OTEL_TRACES_SAMPLER_ARG", "not a number")]).unwrap();
        assert_eq!(s.kind, SamplerKind::AlwaysOn);
        let s = read(&[("OTEL_TRACES_SAMPLER", "traceidratio")]).unwrap();
        assert_eq!(s.kind, SamplerKind::TraceIdRatio(1.0), "default ratio 1");
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (pairs, var) in [
            (
                vec![("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "half"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![("LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP", "errors,sometimes")],
                "LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP",
            ),
            (
                vec![("LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP", "slow:0")],
                "LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP",
            ),
            (
                vec![("LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP", "none,errors")],
                "LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP",
            ),
        ] {
            assert_eq!(read(&pairs).unwrap_err().var, var, "{pairs:?}");
        }
    }

    /// The ratio rule on the trace id's lower 64 bits, written out here:
    /// sampled when `low >> 1 < ratio * 2^63`.
    #[test]
    fn ratio_decides_by_the_trace_ids_lower_half() {
        let s = Sampling::new(SamplerKind::TraceIdRatio(0.25), KeepRules::default());
        let bound = 1u64 << 61; // 0.25 * 2^63
        assert!(s.head(id((bound - 1) << 1), None));
        assert!(!s.head(id(bound << 1), None));
        assert!(s.head(id(0), Some(false)), "no parent-based rule");
        assert!(!s.head(id(u64::MAX), Some(true)));
    }

    #[test]
    fn parent_based_follows_the_xray_flag_and_roots_use_the_root_sampler() {
        let on = Sampling::new(SamplerKind::ParentBasedAlwaysOn, KeepRules::default());
        assert!(on.head(id(1), Some(true)));
        assert!(!on.head(id(1), Some(false)), "Sampled=0 drops");
        assert!(on.head(id(1), None), "root: always_on");
        let off = Sampling::new(SamplerKind::ParentBasedAlwaysOff, KeepRules::default());
        assert!(off.head(id(1), Some(true)));
        assert!(!off.head(id(1), None));
        let ratio = Sampling::new(
            SamplerKind::ParentBasedTraceIdRatio(0.0),
            KeepRules::default(),
        );
        assert!(ratio.head(id(0), Some(true)));
        assert!(!ratio.head(id(0), None));
        let always = Sampling::new(SamplerKind::AlwaysOn, KeepRules::default());
        assert!(
            always.head(id(1), Some(false)),
            "always_on ignores the parent"
        );
        let never = Sampling::new(SamplerKind::AlwaysOff, KeepRules::default());
        assert!(!never.head(id(1), Some(true)));
    }

    #[test]
    fn keep_rules_look_at_the_outcome() {
        let keep = KeepRules::parse("errors,timeouts,coldstarts,slow:1000").unwrap();
        let s = Sampling::new(SamplerKind::AlwaysOff, keep);
        let o =
            |status: &str, cold: bool, ms: f64| Outcome::of_status(Some(status), cold, Some(ms));
        assert!(!s.decide(id(1), None, &o("success", false, 999.0)));
        assert!(s.decide(id(1), None, &o("success", false, 1000.0)));
        assert!(s.decide(id(1), None, &o("Error", false, 1.0)));
        assert!(s.decide(id(1), None, &o("failure", false, 1.0)));
        assert!(s.decide(id(1), None, &o("timeout", false, 1.0)));
        assert!(s.decide(id(1), None, &o("success", true, 1.0)));
        let errors_only =
            Sampling::new(SamplerKind::AlwaysOff, KeepRules::parse("errors").unwrap());
        assert!(!errors_only.decide(id(1), None, &o("timeout", true, 5000.0)));
        assert!(errors_only.decide(id(1), None, &o("error", false, 1.0)));
    }
}
