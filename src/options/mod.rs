//! The ground floor of configuration: where variables come from ([`Env`]),
//! what a bad value is ([`ConfigError`]), the typed readers ([`read`]) and
//! the one declarative table of every setting ([`table`]): name, default,
//! range or values, unit and a one-line doc.
//!
//! This module imports nothing of the crate. Each component owns the types
//! of its own settings and reads them through these primitives, naming the
//! table's declaration; `crate::config` only assembles the results. The
//! README's configuration tables are checked against [`table::ALL`] by a
//! unit test, so adding an option takes its declaration, its README row and
//! the line of the component that reads it.
//!
//! Rules every reader follows:
//! - an empty (or all-blank) value counts as unset: the default applies
//!   (the OpenTelemetry rule, enforced by [`Env::get`] for every source);
//! - booleans take `true` / `false` (any case) or `1` / `0`; only
//!   `OTEL_SDK_DISABLED` follows the specification's stricter rule (`true`
//!   alone is true, nothing is an error);
//! - an invalid value is a [`ConfigError`] naming the variable and the value,
//!   which the lifecycle reports to Lambda as `Extension.ConfigInvalid`.

pub mod decl;
pub mod read;
pub mod table;

#[cfg(test)]
mod readme_check;

use std::collections::HashMap;

/// Prefix of every bridge-specific variable.
pub const PREFIX: &str = "LAMBDA_OTEL_BRIDGE_";

/// A configuration error: which variable, which value, what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Where environment variables come from: the process, or a map in tests.
pub trait Env {
    /// The raw value, as the source holds it.
    fn var(&self, name: &str) -> Option<String>;

    /// The value, with an empty or all-blank one counted as unset (OTel
    /// spec rule). Every reader goes through this.
    fn get(&self, name: &str) -> Option<String> {
        self.var(name).filter(|v| !v.trim().is_empty())
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// Decodes `%XX` escapes (UTF-8); `None` on a malformed escape. Used for
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES`.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            // Two hex digits: `from_str_radix` alone also takes a sign (`%+A`).
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A map environment for tests.
#[cfg(test)]
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_values_are_unset_whatever_the_source() {
        struct Blank;
        impl Env for Blank {
            fn var(&self, _: &str) -> Option<String> {
                Some(" \t".into())
            }
        }
        assert_eq!(Blank.get("ANY"), None);
        assert_eq!(Env::get(&env_of(&[("A", "")]), "A"), None);
        assert_eq!(
            Env::get(&env_of(&[("A", " x ")]), "A").as_deref(),
            Some(" x ")
        );
    }

    #[test]
    fn percent_decode_takes_exactly_two_hex_digits() {
        assert_eq!(percent_decode("a%2Cb%3d").as_deref(), Some("a,b="));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        // Found by fuzz/fuzz_targets/settings.rs: a sign was taken as part of
        // the escape (`%+C` decoded as form feed, `%+9` as a tab).
        for bad in ["%+C", "%+9", "a%+41", "%-1", "% 1", "%1", "%", "%zz", "%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }
}
