//! Settings of the extension's own diagnostics: how much it writes to
//! stderr and in which format. Lambda sends that output to CloudWatch and
//! back to the bridge as `extension` logs; `main` sets `tracing` up from it.

use crate::options::read::{choice, flag};
use crate::options::table::{LOG_JSON, LOG_LEVEL};
use crate::options::{ConfigError, Env};

/// The level of the extension's own diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Reads `LAMBDA_OTEL_BRIDGE_LOG_LEVEL` and `LAMBDA_OTEL_BRIDGE_LOG_JSON`.
pub fn from_env(env: &dyn Env) -> Result<(LogLevel, bool), ConfigError> {
    let level = choice(env, &LOG_LEVEL, |v| match v {
        "off" => Some(LogLevel::Off),
        "error" => Some(LogLevel::Error),
        "warn" => Some(LogLevel::Warn),
        "info" => Some(LogLevel::Info),
        "debug" => Some(LogLevel::Debug),
        "trace" => Some(LogLevel::Trace),
        _ => None,
    })?;
    Ok((level, flag(env, &LOG_JSON)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::env_of;

    #[test]
    fn levels_and_aliases() {
        assert_eq!(from_env(&env_of(&[])), Ok((LogLevel::Info, false)));
        for (v, level) in [
            ("off", LogLevel::Off),
            ("NONE", LogLevel::Off),
            ("warning", LogLevel::Warn),
            (" debug ", LogLevel::Debug),
            ("trace", LogLevel::Trace),
        ] {
            let env = env_of(&[("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", v)]);
            assert_eq!(from_env(&env).map(|(l, _)| l), Ok(level), "{v}");
        }
        let e = from_env(&env_of(&[("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "loud")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LAMBDA_OTEL_BRIDGE_LOG_LEVEL=\"loud\": expected off, error, warn, info, debug or trace"
        );
    }
}
