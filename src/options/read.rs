//! Typed readers. Each takes a declaration of [`super::table`], so the
//! variable's name, default and range are written once; each reads through
//! [`Env::get`] (an empty value is unset), and each error names the
//! variable and the value.
//!
//! The `_for` forms read an exporter option for one signal (`TRACES`,
//! `METRICS`, `LOGS`) in the order of [`EXPORTER_FORMS`]; given a
//! declaration of [`Forms::One`] they read its one variable.

use std::time::Duration;

use super::table::{Choice, Flag, Forms, Int, Text, BRIDGE_EXPORTER_PREFIX, EXPORTER_FORMS};
use super::{ConfigError, Env};

/// A value found in the environment, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The variable that supplied it.
    pub var: String,
    pub value: String,
    /// Whether `var` is a per-signal form of an exporter option.
    pub per_signal: bool,
}

/// Finds the first variable set among a setting's forms.
fn find(env: &dyn Env, name: &str, forms: Forms, signal: Option<&str>) -> Option<Given> {
    let (option, bridge_only) = match forms {
        Forms::One => {
            return env.get(name).map(|value| Given {
                var: name.to_owned(),
                value,
                per_signal: false,
            })
        }
        Forms::Exporter {
            option,
            bridge_only,
        } => (option, bridge_only),
    };
    for (prefix, per_signal) in EXPORTER_FORMS {
        if bridge_only && prefix != BRIDGE_EXPORTER_PREFIX {
            continue;
        }
        let var = match (per_signal, signal) {
            (true, Some(signal)) => format!("{prefix}{signal}_{option}"),
            (true, None) => continue,
            (false, _) => format!("{prefix}{option}"),
        };
        if let Some(value) = env.get(&var) {
            return Some(Given {
                var,
                value,
                per_signal,
            });
        }
    }
    None
}

/// An integer in the declared range, or the declared default.
pub fn int(env: &dyn Env, s: &Int) -> Result<u32, ConfigError> {
    match env.get(s.name) {
        None => Ok(s.default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (s.min..=s.max).contains(&n) => Ok(n),
            _ => Err(ConfigError::new(
                s.name,
                &v,
                format!("expected an integer from {} to {}", s.min, s.max),
            )),
        },
    }
}

/// [`int`] as milliseconds.
pub fn millis(env: &dyn Env, s: &Int) -> Result<Duration, ConfigError> {
    int(env, s).map(|ms| Duration::from_millis(u64::from(ms)))
}

/// A boolean: `true`/`false` (any case) or `1`/`0`; for a declaration with
/// `only_true`, `true` or anything else (false).
pub fn flag(env: &dyn Env, s: &Flag) -> Result<bool, ConfigError> {
    flag_for(env, s, None).map(|(on, _)| on)
}

/// [`flag`] for one signal, with the variable it came from (`None`: the default).
pub fn flag_for(
    env: &dyn Env,
    s: &Flag,
    signal: Option<&str>,
) -> Result<(bool, Option<String>), ConfigError> {
    let Some(given) = find(env, s.name, s.forms, signal) else {
        return Ok((s.default, None));
    };
    let v = given.value.trim().to_ascii_lowercase();
    let on = if s.only_true {
        v == "true"
    } else {
        match v.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(ConfigError::new(
                    &given.var,
                    &given.value,
                    "expected true or false",
                ))
            }
        }
    };
    Ok((on, Some(given.var)))
}

/// One of the declared words (aliases accepted), turned into `T` by `pick`,
/// or the declared default. `pick` answers for every declared word (a
/// `None` reads as an invalid value).
pub fn choice<T>(
    env: &dyn Env,
    s: &Choice,
    pick: impl Fn(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    choice_for(env, s, None, pick)
}

/// [`choice`] for one signal.
pub fn choice_for<T>(
    env: &dyn Env,
    s: &Choice,
    signal: Option<&str>,
    pick: impl Fn(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    let given = find(env, s.name, s.forms, signal).unwrap_or_else(|| Given {
        var: s.name.to_owned(),
        value: s.default.to_owned(),
        per_signal: false,
    });
    let v = given.value.trim().to_ascii_lowercase();
    let v = s
        .aliases
        .iter()
        .find(|(alias, _)| *alias == v)
        .map_or(v.as_str(), |(_, value)| value);
    s.values
        .iter()
        .find(|w| **w == v)
        .and_then(|w| pick(w))
        .ok_or_else(|| {
            ConfigError::new(
                &given.var,
                &given.value,
                format!("expected {}", one_of(s.values)),
            )
        })
}

/// A value for its component to parse, as given (`None`: unset; see
/// [`Text::default_value`]).
pub fn text(env: &dyn Env, s: &Text) -> Option<Given> {
    text_for(env, s, None)
}

/// [`text`] for one signal.
pub fn text_for(env: &dyn Env, s: &Text, signal: Option<&str>) -> Option<Given> {
    find(env, s.name, s.forms, signal)
}

/// [`text`], or the declared default value as if given (an empty value
/// where the declaration has none).
pub fn text_or_default(env: &dyn Env, s: &Text) -> Given {
    text(env, s).unwrap_or_else(|| Given {
        var: s.name.to_owned(),
        value: s.default_value().unwrap_or_default().to_owned(),
        per_signal: false,
    })
}

/// `a, b or c`.
pub fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Parses `k1=v1,k2=v2` with percent-decoding. The error names the variable
/// but never repeats the value (it may hold a credential).
pub fn header_list(var: &str, v: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, val)) = pair.split_once('=') else {
            return Err(ConfigError::new(
                var,
                "<redacted>",
                "expected key=value pairs separated by commas",
            ));
        };
        let key = super::percent_decode(k.trim()).map(|k| k.to_ascii_lowercase());
        let value = super::percent_decode(val.trim());
        match (key, value) {
            (Some(key), Some(value))
                if !key.is_empty()
                    && hyper::header::HeaderName::from_bytes(key.as_bytes()).is_ok()
                    && hyper::header::HeaderValue::from_str(&value).is_ok() =>
            {
                out.push((key, value))
            }
            _ => {
                return Err(ConfigError::new(
                    var,
                    "<redacted>",
                    "a header name or value is not valid (check percent-encoding)",
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::env_of;
    use super::super::table::{
        Forms, TextDefault, INSECURE_SKIP_VERIFY, LOG_LEVEL, PROTOCOL, SDK_DISABLED,
        TELEMETRY_TIMEOUT_MS,
    };
    use super::*;

    #[test]
    fn empty_means_unset_for_every_reader() {
        let blank = env_of(&[
            ("LAMBDA_OTEL_BRIDGE_TELEMETRY_TIMEOUT_MS", ""),
            ("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "  "),
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_LOGS_INSECURE_SKIP_VERIFY",
                "",
            ),
            ("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY", "1"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", " "),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SDK_DISABLED", ""),
        ]);
        assert_eq!(int(&blank, &TELEMETRY_TIMEOUT_MS), Ok(25));
        assert_eq!(
            choice(&blank, &LOG_LEVEL, |v| Some(v.to_owned())).unwrap(),
            "info"
        );
        // A blank per-signal form falls through to the general one.
        assert_eq!(
            flag_for(&blank, &INSECURE_SKIP_VERIFY, Some("LOGS")),
            Ok((
                true,
                Some("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY".into())
            ))
        );
        assert_eq!(
            choice_for(&blank, &PROTOCOL, Some("LOGS"), |v| Some(v.to_owned())).unwrap(),
            "grpc"
        );
        assert_eq!(flag(&blank, &SDK_DISABLED), Ok(false));
        let t = Text {
            name: "X",
            forms: Forms::One,
            default: TextDefault::Unset,
            format: "",
            range: None,
            doc: "",
        };
        assert_eq!(text(&env_of(&[("X", "")]), &t), None);
    }

    #[test]
    fn booleans_and_words() {
        for (v, want) in [
            ("TRUE", true),
            ("1", true),
            (" false ", false),
            ("0", false),
        ] {
            let e = env_of(&[("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY", v)]);
            assert_eq!(flag(&e, &INSECURE_SKIP_VERIFY), Ok(want), "{v}");
        }
        let e = env_of(&[(
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY",
            "yes",
        )]);
        let err = flag(&e, &INSECURE_SKIP_VERIFY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY=\"yes\": expected true or false"
        );
        let e = env_of(&[("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "Warning")]);
        assert_eq!(
            choice(&e, &LOG_LEVEL, |v| Some(v.to_owned())).unwrap(),
            "warn"
        );
        let e = env_of(&[("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "loud")]);
        let err = choice(&e, &LOG_LEVEL, |v| Some(v.to_owned())).unwrap_err();
        assert_eq!(
            err.reason,
            "expected off, error, warn, info, debug or trace"
        );
        assert_eq!(one_of(&["a", "b"]), "a or b");
    }
}
