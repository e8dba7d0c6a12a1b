//! Optional redaction of secrets in exported telemetry.
//!
//! Off unless configured. When on, it runs on every trace and log request
//! before it is queued for export, for the data mapped from the Telemetry API
//! and for the function's own OTLP data alike:
//!
//! - **value patterns** (built-in presets and `LAMBDA_OTEL_BRIDGE_REDACT_PATTERNS`)
//!   are searched in every string of log bodies (also inside maps and arrays),
//!   log attributes, span attributes and span event attributes. A match is
//!   replaced by the replacement text; when the pattern has a capture group
//!   named `secret`, only that group is replaced, so `password=hunter2`
//!   becomes `password=[REDACTED]`;
//! - **key patterns** (the `keys` preset and `LAMBDA_OTEL_BRIDGE_REDACT_KEYS`)
//!   are matched against attribute keys and the keys of map-valued log
//!   bodies; the whole value of a matching key is replaced.
//!
//! Resource attributes, span names and metrics are not rewritten: they are
//! set by configuration, not by request data.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use regex_lite::Regex;

mod keys;

use keys::is_secret_key_name;

use crate::options::read::{text, text_or_default};
use crate::options::table::{REDACT, REDACT_KEYS, REDACT_PATTERNS, REDACT_REPLACEMENT};
use crate::options::{ConfigError, Env};

/// A built-in value pattern.
struct Preset {
    name: &'static str,
    pattern: &'static str,
    /// What a string must contain for the pattern to have a chance.
    hint: Hint,
    /// Extra check of a match (e.g. the Luhn checksum of card numbers).
    check: Option<fn(&str) -> bool>,
}

/// What a string must contain for a preset to have a chance (a superset:
/// literals are compared with ASCII case ignored).
#[derive(Clone, Copy)]
enum Hint {
    /// No shortcut (user patterns).
    None,
    /// One of these literals occurs (ASCII case ignored: a hint may let
    /// through more than its pattern matches, never less).
    Any(&'static [&'static str]),
    /// At least this many ASCII digits occur.
    Digits(usize),
}

/// The hints of all presets at once: one pass over a string gives the set
/// of patterns worth running (a bit per pattern index below 64).
struct Prefilter {
    /// Literals by their first byte (lower-cased), with their pattern's bit.
    by_first: Vec<Vec<(&'static [u8], u64)>>,
    /// Minimum digit counts, with their pattern's bit.
    digits: Vec<(usize, u64)>,
    /// Patterns that are always run (no hint, or index 64 and above).
    always: Vec<usize>,
}

impl Prefilter {
    fn new(hints: &[Hint]) -> Prefilter {
        let mut f = Prefilter {
            by_first: vec![Vec::new(); 256],
            digits: Vec::new(),
            always: Vec::new(),
        };
        for (i, h) in hints.iter().enumerate() {
            let bit = 1u64.checked_shl(i as u32).filter(|_| i < 64);
            match (h, bit) {
                (Hint::Any(lits), Some(bit)) => {
                    for l in lits.iter() {
                        let first = l.as_bytes()[0].to_ascii_lowercase();
                        f.by_first[first as usize].push((l.as_bytes(), bit));
                    }
                }
                (Hint::Digits(n), Some(bit)) => f.digits.push((*n, bit)),
                _ => f.always.push(i),
            }
        }
        f
    }

    /// The bits of the patterns whose hint is present in `s`.
    fn candidates(&self, s: &str) -> u64 {
        let h = s.as_bytes();
        let mut hits = 0u64;
        for i in 0..h.len() {
            for (lit, bit) in &self.by_first[h[i].to_ascii_lowercase() as usize] {
                if hits & bit == 0
                    && h.len() - i >= lit.len()
                    && h[i..i + lit.len()].eq_ignore_ascii_case(lit)
                {
                    hits |= bit;
                }
            }
        }
        if !self.digits.is_empty() {
            let n = h.iter().filter(|b| b.is_ascii_digit()).count();
            for (min, bit) in &self.digits {
                if n >= *min {
                    hits |= bit;
                }
            }
        }
        hits
    }
}

/// Value presets: common credential shapes.
const PRESETS: &[Preset] = &[
    Preset {
        name: "aws-access-key-id",
        pattern: r"\b(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[0-9A-Z]{16}\b",
        hint: Hint::Any(&["AKIA", "ASIA", "ABIA", "ACCA", "AROA", "AIDA"]),
        check: None,
    },
    Preset {
        name: "aws-secret-access-key",
        pattern: r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?(?P<secret>[A-Za-z0-9/+=]{40})"#,
        hint: Hint::Any(&["secret"]),
        check: None,
    },
    Preset {
        name: "bearer",
        pattern: r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",
        hint: Hint::Any(&["bearer"]),
        check: Some(token_like),
    },
    Preset {
        name: "basic-auth",
        pattern: r"(?i)\bbasic\s+(?P<secret>[A-Za-z0-9+/]{8,}={0,2})",
        hint: Hint::Any(&["basic"]),
        check: Some(basic_credentials),
    },
    Preset {
        name: "jwt",
        pattern: r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        hint: Hint::Any(&["eyJ"]),
        check: None,
    },
    Preset {
        name: "key-value",
        pattern: r#"(?i)\b(?:password|passwd|pwd|passphrase|secret|client_secret|api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|auth[_-]?token|token)["']?\s*[:=]\s*["']?(?P<secret>[^\s"',;&]+)"#,
        hint: Hint::Any(&["pass", "pwd", "secret", "key", "token"]),
        check: None,
    },
    Preset {
        name: "url-credentials",
        pattern: r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:(?P<secret>[^/\s@]+)@",
        hint: Hint::Any(&["://"]),
        check: None,
    },
    Preset {
        name: "private-key",
        pattern: r"-----BEGIN[A-Z ]* PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]* PRIVATE KEY-----|$)",
        hint: Hint::Any(&["PRIVATE KEY"]),
        check: None,
    },
    Preset {
        name: "github-token",
        pattern: r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
        hint: Hint::Any(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
        check: None,
    },
    Preset {
        name: "slack-token",
        pattern: r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
        hint: Hint::Any(&["xox"]),
        check: None,
    },
    Preset {
        name: "stripe-key",
        pattern: r"\b[rs]k_live_[A-Za-z0-9]{16,}\b",
        hint: Hint::Any(&["_live_"]),
        check: None,
    },
    Preset {
        name: "google-api-key",
        pattern: r"\bAIza[0-9A-Za-z_-]{35}\b",
        hint: Hint::Any(&["AIza"]),
        check: None,
    },
    Preset {
        name: "credit-card",
        pattern: r"\b\d(?:[ -]?\d){12,18}\b",
        hint: Hint::Digits(13),
        check: Some(luhn_valid),
    },
];

/// Presets that `default` stands for: every credential shape, not card
/// numbers (the pattern costs more and is a data-protection rule, not a
/// credential one; enable it by name).
const DEFAULT_PRESETS: &[&str] = &[
    "keys",
    "aws-access-key-id",
    "aws-secret-access-key",
    "bearer",
    "basic-auth",
    "jwt",
    "key-value",
    "url-credentials",
    "private-key",
    "github-token",
    "slack-token",
    "stripe-key",
    "google-api-key",
];

/// Names accepted in `LAMBDA_OTEL_BRIDGE_REDACT`, for error messages and docs.
pub fn preset_names() -> Vec<&'static str> {
    let mut v = vec!["keys"];
    v.extend(PRESETS.iter().map(|p| p.name));
    v
}

struct ValuePattern {
    name: String,
    re: Regex,
    /// Index of the `secret` group, if the pattern has one.
    secret_group: Option<usize>,
    check: Option<fn(&str) -> bool>,
}

/// A compiled redaction configuration.
pub struct Redactor {
    values: Vec<ValuePattern>,
    prefilter: Prefilter,
    /// The `keys` preset.
    builtin_keys: bool,
    /// Every `LAMBDA_OTEL_BRIDGE_REDACT_KEYS` pattern in one alternation.
    keys: Option<Regex>,
    replacement: String,
    redactions: AtomicU64,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field(
                "values",
                &self.values.iter().map(|v| &v.name).collect::<Vec<_>>(),
            )
            .field("builtin_keys", &self.builtin_keys)
            .field("keys", &self.keys.is_some())
            .finish()
    }
}

/// Splits a list setting: a JSON array of strings, or a single pattern.
fn pattern_list(var: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let t = value.trim();
    if t.starts_with('[') {
        serde_json::from_str::<Vec<String>>(t).map_err(|e| {
            ConfigError::new(
                var,
                value,
                format!("expected a JSON array of regular expressions: {e}"),
            )
        })
    } else {
        Ok(vec![value.to_owned()])
    }
}

fn compile(var: &str, pattern: &str) -> Result<Regex, ConfigError> {
    regex_lite::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ConfigError::new(var, pattern, format!("invalid regular expression: {e}")))
}

impl Redactor {
    /// Reads `LAMBDA_OTEL_BRIDGE_REDACT`, `_REDACT_PATTERNS`, `_REDACT_KEYS`
    /// and `_REDACT_REPLACEMENT`; `None` when nothing is to be redacted.
    pub fn from_env(env: &dyn Env) -> Result<Option<Redactor>, ConfigError> {
        let presets_var = REDACT.name;
        let mut preset_list: Vec<&str> = Vec::new();
        let presets_value = text_or_default(env, &REDACT).value;
        for name in presets_value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match name.to_ascii_lowercase().as_str() {
                "none" | "off" | "false" => {}
                "default" | "true" | "on" => preset_list.extend_from_slice(DEFAULT_PRESETS),
                "all" => preset_list.extend(preset_names()),
                other => match preset_names().into_iter().find(|p| *p == other) {
                    Some(p) => preset_list.push(p),
                    None => {
                        return Err(ConfigError::new(
                            presets_var,
                            &presets_value,
                            format!(
                                "unknown preset {name:?}; expected a comma-separated list of default, all, none or {}",
                                preset_names().join(", ")
                            ),
                        ))
                    }
                },
            }
        }
        preset_list.sort_unstable();
        preset_list.dedup();

        let mut values = Vec::new();
        let mut hints = Vec::new();
        let mut key_patterns = Vec::new();
        let builtin_keys = preset_list.contains(&"keys");
        for name in &preset_list {
            if *name == "keys" {
                continue;
            }
            let p = PRESETS.iter().find(|p| p.name == *name).expect("listed");
            let re = Regex::new(p.pattern).expect("built-in pattern compiles");
            hints.push(p.hint);
            values.push(ValuePattern {
                name: p.name.to_owned(),
                secret_group: re.capture_names().position(|n| n == Some("secret")),
                re,
                check: p.check,
            });
        }
        let patterns_var = REDACT_PATTERNS.name;
        if let Some(v) = text(env, &REDACT_PATTERNS).map(|g| g.value) {
            for (i, p) in pattern_list(patterns_var, &v)?.into_iter().enumerate() {
                let re = compile(patterns_var, &p)?;
                hints.push(Hint::None);
                values.push(ValuePattern {
                    name: format!("pattern {}", i + 1),
                    secret_group: re.capture_names().position(|n| n == Some("secret")),
                    re,
                    check: None,
                });
            }
        }
        let keys_var = REDACT_KEYS.name;
        if let Some(v) = text(env, &REDACT_KEYS).map(|g| g.value) {
            for p in pattern_list(keys_var, &v)? {
                compile(keys_var, &p)?;
                key_patterns.push(p);
            }
        }
        if values.is_empty() && key_patterns.is_empty() && !builtin_keys {
            return Ok(None);
        }
        let replacement = text_or_default(env, &REDACT_REPLACEMENT).value;
        let keys = if key_patterns.is_empty() {
            None
        } else {
            let joined: Vec<String> = key_patterns.iter().map(|p| format!("(?:{p})")).collect();
            Some(compile(keys_var, &joined.join("|"))?)
        };
        Ok(Some(Redactor {
            values,
            prefilter: Prefilter::new(&hints),
            builtin_keys,
            keys,
            replacement,
            redactions: AtomicU64::new(0),
        }))
    }

    /// How many strings were rewritten so far.
    pub fn redactions(&self) -> u64 {
        self.redactions.load(Ordering::Relaxed)
    }

    fn key_is_secret(&self, key: &str) -> bool {
        (self.builtin_keys && is_secret_key_name(key))
            || self.keys.as_ref().is_some_and(|k| k.is_match(key))
    }

    /// Redacts one string in place; true when it changed.
    pub fn redact_str(&self, s: &mut String) -> bool {
        if self.values.is_empty() {
            return false;
        }
        let hits = self.prefilter.candidates(s);
        if hits == 0 && self.prefilter.always.is_empty() {
            return false;
        }
        let mut changed = false;
        for (i, p) in self.values.iter().enumerate() {
            let hinted = i < 64 && hits & (1u64 << i) != 0;
            if !hinted && !self.prefilter.always.contains(&i) {
                continue;
            }
            if let Some(out) = self.replace(p, s) {
                *s = out;
                changed = true;
            }
        }
        if changed {
            self.redactions.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// Replaces every (checked) match of `p` in `s`; `None` if none was replaced.
    fn replace(&self, p: &ValuePattern, s: &str) -> Option<String> {
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for caps in p.re.captures_iter(s) {
            let whole = caps.get(0).expect("group 0");
            let target = p.secret_group.and_then(|g| caps.get(g)).unwrap_or(whole);
            if target.as_str().is_empty() || !p.check.is_none_or(|c| c(target.as_str())) {
                continue;
            }
            out.push_str(&s[last..target.start()]);
            out.push_str(&self.replacement);
            last = target.end();
        }
        if last == 0 {
            return None;
        }
        out.push_str(&s[last..]);
        Some(out)
    }

    /// Redacts every string inside a value.
    pub fn redact_value(&self, v: &mut AnyValue) {
        match &mut v.value {
            Some(any_value::Value::StringValue(s)) => {
                self.redact_str(s);
            }
            Some(any_value::Value::ArrayValue(a)) => {
                for v in &mut a.values {
                    self.redact_value(v);
                }
            }
            Some(any_value::Value::KvlistValue(l)) => self.redact_attributes(&mut l.values),
            _ => {}
        }
    }

    /// Redacts attributes: whole values of secret keys, patterns elsewhere.
    pub fn redact_attributes(&self, attrs: &mut [KeyValue]) {
        for kv in attrs {
            let Some(v) = kv.value.as_mut() else { continue };
            if self.key_is_secret(&kv.key) && !is_empty_value(v) {
                *v = AnyValue {
                    value: Some(any_value::Value::StringValue(self.replacement.clone())),
                };
                self.redactions.fetch_add(1, Ordering::Relaxed);
            } else {
                self.redact_value(v);
            }
        }
    }

    /// Redacts log bodies and attributes.
    pub fn redact_logs(&self, req: &mut ExportLogsServiceRequest) {
        for rl in &mut req.resource_logs {
            for sl in &mut rl.scope_logs {
                for r in &mut sl.log_records {
                    if let Some(b) = r.body.as_mut() {
                        self.redact_value(b);
                    }
                    self.redact_attributes(&mut r.attributes);
                }
            }
        }
    }

    /// Redacts span attributes, event attributes and link attributes.
    pub fn redact_traces(&self, req: &mut ExportTraceServiceRequest) {
        for rs in &mut req.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    self.redact_attributes(&mut span.attributes);
                    for e in &mut span.events {
                        self.redact_attributes(&mut e.attributes);
                    }
                    for l in &mut span.links {
                        self.redact_attributes(&mut l.attributes);
                    }
                    if let Some(st) = span.status.as_mut() {
                        self.redact_str(&mut st.message);
                    }
                }
            }
        }
    }
}

fn is_empty_value(v: &AnyValue) -> bool {
    match &v.value {
        None => true,
        Some(any_value::Value::StringValue(s)) => s.is_empty(),
        _ => false,
    }
}

/// A bearer token has a digit or punctuation: "Bearer authentication" is prose.
fn token_like(s: &str) -> bool {
    s.bytes()
        .any(|b| b.is_ascii_digit() || b"-._~+/=".contains(&b))
}

/// `Basic` credentials are base64 of `user:password`.
fn basic_credentials(s: &str) -> bool {
    let mut bits = 0u32;
    let mut n = 0;
    for b in s.bytes().take_while(|&b| b != b'=') {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return false,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            if (bits >> n) & 0xff == u32::from(b':') {
                return true;
            }
        }
    }
    false
}

/// The Luhn checksum of the digits in `s` (separators ignored).
fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::proto::{kv, str_value};
    use crate::options::env_of;

    fn redactor(pairs: &[(&str, &str)]) -> Redactor {
        Redactor::from_env(&env_of(pairs))
            .expect("valid")
            .expect("enabled")
    }

    fn redacted(r: &Redactor, s: &str) -> String {
        let mut s = s.to_owned();
        r.redact_str(&mut s);
        s
    }

    #[test]
    fn off_by_default_and_with_none() {
        assert!(Redactor::from_env(&env_of(&[])).unwrap().is_none());
        assert!(
            Redactor::from_env(&env_of(&[("LAMBDA_OTEL_BRIDGE_REDACT", "none")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn default_presets_cover_common_credentials() {
        let r = redactor(&[("LAMBDA_OTEL_BRIDGE_REDACT", "default")]);
        // Each case: input, the secret that must be gone, text that must stay.
        let cases = [
            (
                "using key AKIAIOSFODNN7EXAMPLE for s3",
                "AKIAIOSFODNN7EXAMPLE",
                "using key",
            ),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_access_key=",
            ),
            (
                "Authorization: Bearer abcdef0123456789.xyz",
                "abcdef0123456789.xyz",
                "Bearer ",
            ),
            (
                "header Basic dXNlcjpwYXNzd29yZA== sent",
                "dXNlcjpwYXNzd29yZA==",
                " sent",
            ),
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
                "dozjgNryP4J3jVmNHl0w5N",
                " ok",
            ),
            ("login password=hunter2 user=bob", "hunter2", "user=bob"),
            (r#"{"api_key": "k-123456"}"#, "k-123456", "api_key"),
            (
                "connecting to postgres://app:s3cr3t@db.internal:5432/app",
                "s3cr3t",
                "@db.internal:5432/app",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "MIIEow",
                "",
            ),
            (
                "gh token ghp_0123456789abcdefghijABCDEFGHIJ012345",
                "ghp_0123456789",
                "gh token",
            ),
            (
                "slack xoxb-123456789012-abcdefghij",
                "xoxb-123456789012",
                "slack",
            ),
            (
                "stripe sk_live_0123456789abcdefXYZ",
                "sk_live_0123456789abcdef",
                "stripe",
            ),
            (
                "maps AIzaSyA-0123456789abcdefghijklmnopqrstu",
                "AIzaSyA-0123456789",
                "maps",
            ),
        ];
        for (input, secret, kept) in cases {
            let out = redacted(&r, input);
            assert!(!out.contains(secret), "{input:?} -> {out:?}");
            assert!(out.contains("[REDACTED]"), "{input:?} -> {out:?}");
            assert!(out.contains(kept), "{input:?} -> {out:?}");
        }
        // Ordinary lines stay as they are.
        for input in [
            "START RequestId: 8f5e6a1c-0a4b-4d7e-9b1a-2c3d4e5f6a7b Version: $LATEST",
            "processed 1234567890123 items in 42 ms",
            "the token bucket is empty",
            "GET https://example.com/path?q=1 200",
        ] {
            assert_eq!(redacted(&r, input), input);
        }
        assert!(r.redactions() >= 13);
    }

    #[test]
    fn prose_is_not_a_credential() {
        let r = redactor(&[("LAMBDA_OTEL_BRIDGE_REDACT", "bearer,basic-auth")]);
        for input in [
            "Bearer authentication failed",
            "basic understanding of the request",
            "Basic dGhpc2lzbm90YXBhc3N3b3Jk",
        ] {
            assert_eq!(redacted(&r, input), input);
        }
        assert_eq!(
            redacted(&r, "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
            "Authorization: Basic [REDACTED]"
        );
    }

    #[test]
    fn card_numbers_need_a_valid_checksum() {
        let r = redactor(&[("LAMBDA_OTEL_BRIDGE_REDACT", "credit-card")]);
        assert_eq!(
            redacted(&r, "card 4111 1111 1111 1111 charged"),
            "card [REDACTED] charged"
        );
        assert_eq!(
            redacted(&r, "card 4111-1111-1111-1112"),
            "card 4111-1111-1111-1112"
        );
        assert_eq!(redacted(&r, "ts 1732147200000 ok"), "ts 1732147200000 ok");
    }

    #[test]
    fn custom_patterns_secret_group_and_replacement() {
        let r = redactor(&[
            (
                "LAMBDA_OTEL_BRIDGE_REDACT_PATTERNS",
                r#"["ssn=(?P<secret>\\d{3}-\\d{2}-\\d{4})", "internal-[0-9]+"]"#,
            ),
            ("LAMBDA_OTEL_BRIDGE_REDACT_REPLACEMENT", "***"),
        ]);
        assert_eq!(
            redacted(&r, "ssn=123-45-6789 host internal-42 and internal-7"),
            "ssn=*** host *** and ***"
        );
        // A single pattern need not be a JSON array.
        let r = redactor(&[("LAMBDA_OTEL_BRIDGE_REDACT_PATTERNS", "order-[0-9]{4}")]);
        assert_eq!(redacted(&r, "order-1234 done"), "[REDACTED] done");
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        for (var, value, needle) in [
            (
                "LAMBDA_OTEL_BRIDGE_REDACT",
                "default,passwords",
                "unknown preset",
            ),
            (
                "LAMBDA_OTEL_BRIDGE_REDACT_PATTERNS",
                "a(b",
                "invalid regular expression",
            ),
            (
                "LAMBDA_OTEL_BRIDGE_REDACT_PATTERNS",
                r#"["ok", 3]"#,
                "JSON array",
            ),
            ("LAMBDA_OTEL_BRIDGE_REDACT_KEYS", "[", "JSON array"),
        ] {
            let err = Redactor::from_env(&env_of(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.reason.contains(needle), "{err}");
        }
    }

    #[test]
    fn secret_key_names() {
        for k in [
            "password",
            "DB_PASSWORD",
            "db.password",
            "x-api-key",
            "Set-Cookie",
            "http.request.header.proxy-authorization",
            "client_secret",
            "refresh_token",
            "aws.secret_key",
            "credentials",
            // camelCase and PascalCase, as JavaScript, Java and the AWS SDKs write them.
            "accessToken",
            "clientSecret",
            "dbPassword",
            "refreshToken",
            "SecretAccessKey",
            "SessionToken",
            "AWS_SECRET_ACCESS_KEY",
            "xApiKey",
            "APIKey",
            "apiKey",
            "X-Api-Key",
            "oauth2Token",
            "privateKey",
            "aws.secretKey",
            "user password",
        ] {
            assert!(is_secret_key_name(k), "{k}");
        }
        for k in [
            "monkey",
            "tokens_used",
            "passwordless_login",
            "secretary",
            "faas.invocation_id",
            "keyword",
            // The secret word must be the last one.
            "tokenCount",
            "TokenType",
            "passwordHash",
            "secretName",
            "AccessKeyId",
            "apiKeyId",
            "cookieConsent",
            // A name inside a word is no word of its own.
            "mytoken",
            "Secretary",
            "TOKENS",
            "passwords_rotated_at",
            "",
            "_",
            "ümlautToken_x",
        ] {
            assert!(!is_secret_key_name(k), "{k}");
        }
    }

    #[test]
    fn secret_keys_replace_whole_values_at_any_depth() {
        let r = redactor(&[
            ("LAMBDA_OTEL_BRIDGE_REDACT", "keys"),
            ("LAMBDA_OTEL_BRIDGE_REDACT_KEYS", "^customer_email$"),
        ]);
        let mut attrs = vec![
            kv("http.request.header.authorization", str_value("Token abc")),
            kv("password", str_value("hunter2")),
            kv("db.password", str_value("x")),
            kv("customer_email", str_value("a@example.com")),
            kv("tokens_used", str_value("12")),
            kv("tokenCount", str_value("34")),
            kv("message", str_value("keep me")),
            // A logged AWS SDK credentials object.
            kv(
                "credentialsObject",
                AnyValue {
                    value: Some(any_value::Value::KvlistValue(
                        opentelemetry_proto::tonic::common::v1::KeyValueList {
                            values: vec![
                                kv("AccessKeyId", str_value("key-id-kept")),
                                kv("SecretAccessKey", str_value("sak-value")),
                                kv("SessionToken", str_value("st-value")),
                            ],
                        },
                    )),
                },
            ),
            kv(
                "nested",
                AnyValue {
                    value: Some(any_value::Value::KvlistValue(
                        opentelemetry_proto::tonic::common::v1::KeyValueList {
                            values: vec![kv("Client_Secret", str_value("cs"))],
                        },
                    )),
                },
            ),
        ];
        r.redact_attributes(&mut attrs);
        let s = format!("{attrs:?}");
        for secret in [
            "Token abc",
            "hunter2",
            "\"x\"",
            "a@example.com",
            "\"cs\"",
            "sak-value",
            "st-value",
        ] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        for kept in ["keep me", "\"12\"", "\"34\"", "key-id-kept"] {
            assert!(s.contains(kept), "{kept} missing in {s}");
        }
    }
}
