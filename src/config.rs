//! Every setting of the extension, read from environment variables, with
//! defaults and validation. An invalid value is an error that names the
//! variable and the value, so it can be reported to Lambda as
//! `Extension.ConfigInvalid` and read in the function's logs.
//!
//! Settings of the bridge itself use the `LAMBDA_OTEL_BRIDGE_` prefix; the
//! OpenTelemetry ones keep their standard `OTEL_` names (see
//! [`crate::export::settings`]). The table in README.md ("Configuration")
//! lists them all with defaults and units.

use std::collections::HashMap;
use std::time::Duration;

use crate::export::settings::ExportSettings;

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
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment. An empty value counts as unset (OTel spec rule).
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .cloned()
            .filter(|v| !v.trim().is_empty())
    }
}

/// The Telemetry API streams the extension subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryTypes {
    pub platform: bool,
    pub function: bool,
    pub extension: bool,
}

impl TelemetryTypes {
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.platform {
            v.push("platform");
        }
        if self.function {
            v.push("function");
        }
        if self.extension {
            v.push("extension");
        }
        v
    }
}

/// Telemetry API subscription settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    pub types: TelemetryTypes,
    /// `buffering.timeoutMs` (25..=30000).
    pub timeout_ms: u32,
    /// `buffering.maxItems` (1000..=10000).
    pub max_items: u32,
    /// `buffering.maxBytes` (262144..=1048576).
    pub max_bytes: u32,
    /// Listener port; 0 lets the OS choose a free one.
    pub listener_port: u16,
}

impl TelemetryConfig {
    /// Largest request body the listener accepts: Lambda may send up to
    /// `2 * maxBytes` of records plus the per-event envelope
    /// (`{"time":..,"type":..,"record":..}`, under 100 bytes each).
    pub fn body_limit(&self) -> usize {
        2 * self.max_bytes as usize + self.max_items as usize * 128 + 64 * 1024
    }
}

/// Facts about the function, from the variables Lambda sets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LambdaEnv {
    /// `AWS_LAMBDA_RUNTIME_API` (`host:port`).
    pub runtime_api: String,
    pub function_name: Option<String>,
    pub function_version: Option<String>,
    pub memory_mb: Option<u64>,
    pub region: Option<String>,
    pub initialization_type: Option<String>,
}

/// How the extension's own diagnostics are written (to stderr; Lambda sends
/// them to CloudWatch and back to us as `extension` logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub lambda: LambdaEnv,
    pub telemetry: TelemetryConfig,
    pub log_level: LogLevel,
    pub log_json: bool,
    /// After SHUTDOWN, how long to wait for the last `platform.report`.
    pub shutdown_report_wait: Duration,
    /// On INVOKE, the longest wait for this invocation's `platform.runtimeDone`
    /// before flushing anyway (also bounded by the invocation's deadline).
    pub invoke_wait: Duration,
    pub export: ExportSettings,
    /// `faas.trigger` on spans and metrics.
    pub faas_trigger: String,
    /// Emit platform events as CloudWatch-style log lines.
    pub platform_log_lines: bool,
    pub flush_policy: crate::flush_policy::FlushPolicy,
    pub adaptive: crate::flush_policy::AdaptiveTuning,
    /// Longest time a flush may add to an invocation (also bounded by its deadline).
    pub flush_timeout: Duration,
    /// Byte cap of the outbox of undelivered requests.
    pub outbox_max_bytes: usize,
    /// The local OTLP receiver for the function's own telemetry.
    pub receiver: crate::otlp_receiver::ReceiverConfig,
    /// Which id invocation spans take.
    pub span_id_mode: crate::mapping::invocation::SpanIdMode,
    /// Redaction of secrets in traces and logs (off unless configured).
    pub redact: Option<std::sync::Arc<crate::redact::Redactor>>,
    /// Valid but noteworthy settings, logged once logging is set up.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads `AWS_LAMBDA_RUNTIME_API` alone: it is needed to report every
    /// other configuration error to Lambda.
    pub fn runtime_api(env: &dyn Env) -> Option<String> {
        env.get("AWS_LAMBDA_RUNTIME_API")
    }

    /// Reads and validates every setting.
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let lambda = LambdaEnv {
            runtime_api: env.get("AWS_LAMBDA_RUNTIME_API").ok_or_else(|| {
                ConfigError::new(
                    "AWS_LAMBDA_RUNTIME_API",
                    "",
                    "is not set; not running in Lambda?",
                )
            })?,
            function_name: env.get("AWS_LAMBDA_FUNCTION_NAME"),
            function_version: env.get("AWS_LAMBDA_FUNCTION_VERSION"),
            memory_mb: env
                .get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .and_then(|v| v.trim().parse().ok()),
            region: env
                .get("AWS_REGION")
                .or_else(|| env.get("AWS_DEFAULT_REGION")),
            initialization_type: env.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        };
        let telemetry = TelemetryConfig {
            types: parse_types(env)?,
            timeout_ms: int_setting(env, "TELEMETRY_TIMEOUT_MS", 25, 25, 30_000)?,
            max_items: int_setting(env, "TELEMETRY_MAX_ITEMS", 1000, 1000, 10_000)?,
            max_bytes: int_setting(env, "TELEMETRY_MAX_BYTES", 262_144, 262_144, 1_048_576)?,
            listener_port: int_setting(env, "TELEMETRY_PORT", 0, 0, 65_535)? as u16,
        };
        if telemetry.listener_port == 9001 {
            return Err(ConfigError::new(
                &format!("{PREFIX}TELEMETRY_PORT"),
                "9001",
                "port 9001 is reserved by Lambda",
            ));
        }
        let (log_level, log_json) = parse_log(env)?;
        let (flush_policy, adaptive) = crate::flush_policy::from_env(env)?;
        let (receiver, receiver_warnings) = parse_receiver(env)?;
        let mut export = ExportSettings::from_env(env)?;
        let mut warnings: Vec<String> = check_export_loop(&receiver, &mut export)?
            .into_iter()
            .collect();
        warnings.extend(receiver_warnings);
        warnings.extend(skip_verify_warnings(&export));
        Ok(Config {
            lambda,
            telemetry,
            log_level,
            log_json,
            shutdown_report_wait: Duration::from_millis(u64::from(int_setting(
                env,
                "SHUTDOWN_REPORT_WAIT_MS",
                300,
                0,
                1500,
            )?)),
            invoke_wait: Duration::from_millis(u64::from(int_setting(
                env,
                "INVOKE_WAIT_MS",
                2000,
                0,
                900_000,
            )?)),
            export,
            faas_trigger: parse_trigger(env)?,
            platform_log_lines: bool_var(env, &format!("{PREFIX}PLATFORM_LOG_LINES"), false)?,
            flush_policy,
            adaptive,
            flush_timeout: Duration::from_millis(u64::from(int_setting(
                env,
                "FLUSH_TIMEOUT_MS",
                1000,
                10,
                900_000,
            )?)),
            outbox_max_bytes: int_setting(
                env,
                "OUTBOX_MAX_BYTES",
                4 * 1024 * 1024,
                64 * 1024,
                256 * 1024 * 1024,
            )? as usize,
            receiver,
            span_id_mode: parse_span_id_mode(env)?,
            redact: crate::redact::Redactor::from_env(env)?.map(std::sync::Arc::new),
            warnings,
        })
    }
}

/// Reads `LAMBDA_OTEL_BRIDGE_<name>` as an integer in `min..=max`.
pub fn int_setting(
    env: &dyn Env,
    name: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ConfigError> {
    let var = format!("{PREFIX}{name}");
    match env.get(&var) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::new(
                &var,
                &v,
                format!("expected an integer from {min} to {max}"),
            )),
        },
    }
}

/// Reads a boolean: `true`/`false` (case-insensitive), also `1`/`0`.
pub fn bool_var(env: &dyn Env, var: &str, default: bool) -> Result<bool, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ConfigError::new(var, &v, "expected true or false")),
        },
    }
}

fn parse_types(env: &dyn Env) -> Result<TelemetryTypes, ConfigError> {
    let var = format!("{PREFIX}TELEMETRY_TYPES");
    let Some(v) = env.get(&var) else {
        return Ok(TelemetryTypes {
            platform: true,
            function: true,
            extension: true,
        });
    };
    let mut t = TelemetryTypes {
        platform: false,
        function: false,
        extension: false,
    };
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.to_ascii_lowercase().as_str() {
            "platform" => t.platform = true,
            "function" => t.function = true,
            "extension" => t.extension = true,
            _ => {
                return Err(ConfigError::new(
                    &var,
                    &v,
                    format!("unknown type {part:?}; use platform, function and/or extension"),
                ))
            }
        }
    }
    if !(t.platform || t.function || t.extension) {
        return Err(ConfigError::new(&var, &v, "at least one type is required"));
    }
    Ok(t)
}

/// The local OTLP receiver's settings, and the start-up warnings they call
/// for. The receiver has no authentication: an address other than loopback
/// (`0.0.0.0`, the sandbox's own address) would let anyone who reaches it
/// send telemetry in the function's name, so it is a configuration error
/// unless `LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK=true`, and then
/// warned about.
fn parse_receiver(
    env: &dyn Env,
) -> Result<(crate::otlp_receiver::ReceiverConfig, Vec<String>), ConfigError> {
    let enabled = bool_var(env, &format!("{PREFIX}RECEIVER"), true)?;
    let allow_var = format!("{PREFIX}RECEIVER_ALLOW_NON_LOOPBACK");
    let allow_non_loopback = bool_var(env, &allow_var, false)?;
    let mut warnings = Vec::new();
    let mut addr =
        |name: &str, default: &str| -> Result<Option<std::net::SocketAddr>, ConfigError> {
            let var = format!("{PREFIX}{name}");
            let v = env.get(&var).unwrap_or_else(|| default.to_owned());
            if v.trim().eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            let a: std::net::SocketAddr = v.trim().parse().map_err(|_| {
                ConfigError::new(&var, &v, "expected ip:port (e.g. 127.0.0.1:4318) or off")
            })?;
            if enabled && !a.ip().to_canonical().is_loopback() {
                if !allow_non_loopback {
                    return Err(ConfigError::new(
                        &var,
                        &v,
                        format!(
                        "not a loopback address: the local OTLP receiver has no authentication, \
                         so anyone who can reach {a} could send telemetry in the function's name; \
                         use 127.0.0.1 (or [::1]), or set {allow_var}=true to accept that"
                    ),
                    ));
                }
                warnings.push(format!(
                    "the local OTLP receiver listens on {a} ({var}), not only on loopback, as \
                 {allow_var}=true allows: it has no authentication, and whatever reaches that \
                 address is forwarded to the collector as the function's telemetry"
                ));
            }
            Ok(Some(a))
        };
    let grpc_addr = addr("RECEIVER_GRPC_ADDR", "127.0.0.1:4317")?;
    let http_addr = addr("RECEIVER_HTTP_ADDR", "127.0.0.1:4318")?;
    let receiver = crate::otlp_receiver::ReceiverConfig {
        enabled,
        grpc_addr,
        http_addr,
        enrich: bool_var(env, &format!("{PREFIX}RECEIVER_ENRICH"), true)?,
        max_body_bytes: int_setting(
            env,
            "RECEIVER_MAX_BODY_BYTES",
            4 * 1024 * 1024,
            1024,
            64 * 1024 * 1024,
        )? as usize,
    };
    Ok((receiver, warnings))
}

/// Lambda gives the function and the bridge the same environment: a
/// function told `OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318` would
/// also point the bridge at its own receiver. An explicitly configured
/// endpoint that does is an error naming both variables; the default
/// endpoint (nothing configured) only disables export, with a warning.
/// The loud side of the TLS verification opt-out: one start-up warning per
/// variable that turned it off, naming the endpoints it affects.
fn skip_verify_warnings(export: &ExportSettings) -> Vec<String> {
    let mut by_var: Vec<(&str, Vec<String>)> = Vec::new();
    for signal in crate::export::settings::Signal::ALL {
        let s = export.signal(signal);
        let Some(var) = s.tls.skip_verify.as_deref() else {
            continue;
        };
        let host = if s.endpoint.starts_with("https://") {
            crate::export::otlp::host_of(&s.endpoint)
        } else {
            format!(
                "{} (not https: no effect)",
                crate::export::otlp::host_of(&s.endpoint)
            )
        };
        match by_var.iter_mut().find(|(v, _)| *v == var) {
            Some((_, hosts)) if hosts.contains(&host) => {}
            Some((_, hosts)) => hosts.push(host),
            None => by_var.push((var, vec![host])),
        }
    }
    by_var
        .into_iter()
        .map(|(var, hosts)| {
            format!(
                "TLS certificate verification is OFF ({var}=true) for {}: \
                 anyone on the network path can impersonate the collector and read the telemetry; \
                 trust a private CA with OTEL_EXPORTER_OTLP_CERTIFICATE instead",
                hosts.join(", ")
            )
        })
        .collect()
}

fn check_export_loop(
    receiver: &crate::otlp_receiver::ReceiverConfig,
    export: &mut ExportSettings,
) -> Result<Option<String>, ConfigError> {
    if !receiver.enabled || export.disabled {
        return Ok(None);
    }
    let ports: Vec<(u16, &str)> = [
        (receiver.grpc_addr, "RECEIVER_GRPC_ADDR"),
        (receiver.http_addr, "RECEIVER_HTTP_ADDR"),
    ]
    .into_iter()
    .filter_map(|(a, n)| a.filter(|a| a.port() != 0).map(|a| (a.port(), n)))
    .collect();
    for signal in crate::export::settings::Signal::ALL {
        let Some(port) = export.local_port(signal) else {
            continue;
        };
        let Some((_, receiver_var)) = ports.iter().find(|(p, _)| *p == port) else {
            continue;
        };
        let settings = export.signal(signal);
        match &settings.endpoint_var {
            Some(var) => {
                return Err(ConfigError::new(
                    var,
                    &settings.endpoint,
                    format!(
                        "points at the bridge's own OTLP receiver ({PREFIX}{receiver_var}), which would loop; \
                         set {}ENDPOINT to your collector (the function keeps {var} pointing at the bridge), \
                         or turn the receiver off with {PREFIX}RECEIVER=false",
                        crate::export::settings::BRIDGE_EXPORTER_PREFIX
                    ),
                ))
            }
            None => {
                export.disabled = true;
                return Ok(Some(format!(
                    "no OTLP endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT or {}ENDPOINT): exporting nothing",
                    crate::export::settings::BRIDGE_EXPORTER_PREFIX
                )));
            }
        }
    }
    Ok(None)
}

fn parse_span_id_mode(
    env: &dyn Env,
) -> Result<crate::mapping::invocation::SpanIdMode, ConfigError> {
    use crate::mapping::invocation::SpanIdMode;
    let var = format!("{PREFIX}INVOCATION_SPAN_ID");
    match env.get(&var) {
        None => Ok(SpanIdMode::Telemetry),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "telemetry" => Ok(SpanIdMode::Telemetry),
            "xray-parent" => Ok(SpanIdMode::XrayParent),
            _ => Err(ConfigError::new(
                &var,
                &v,
                "expected telemetry or xray-parent",
            )),
        },
    }
}

fn parse_trigger(env: &dyn Env) -> Result<String, ConfigError> {
    let var = format!("{PREFIX}FAAS_TRIGGER");
    match env.get(&var) {
        None => Ok("other".into()),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            t @ ("datasource" | "http" | "pubsub" | "timer" | "other") => Ok(t.to_owned()),
            _ => Err(ConfigError::new(
                &var,
                &v,
                "expected datasource, http, pubsub, timer or other",
            )),
        },
    }
}

fn parse_log(env: &dyn Env) -> Result<(LogLevel, bool), ConfigError> {
    let var = format!("{PREFIX}LOG_LEVEL");
    let level = match env.get(&var) {
        None => LogLevel::Info,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => {
                return Err(ConfigError::new(
                    &var,
                    &v,
                    "expected off, error, warn, info, debug or trace",
                ))
            }
        },
    };
    let json = bool_var(env, &format!("{PREFIX}LOG_JSON"), false)?;
    Ok((level, json))
}

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
    fn defaults() {
        let c = Config::from_env(&env_of(&[("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")])).unwrap();
        assert_eq!(c.telemetry.timeout_ms, 25);
        assert_eq!(c.telemetry.max_items, 1000);
        assert_eq!(c.telemetry.max_bytes, 262_144);
        assert_eq!(
            c.telemetry.types.names(),
            ["platform", "function", "extension"]
        );
        assert!(c.telemetry.body_limit() >= 2 * 262_144);
        assert_eq!(c.log_level, LogLevel::Info);
    }

    #[test]
    fn errors_name_the_variable_and_value() {
        let e = Config::from_env(&env_of(&[
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("LAMBDA_OTEL_BRIDGE_TELEMETRY_TIMEOUT_MS", "10"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "LAMBDA_OTEL_BRIDGE_TELEMETRY_TIMEOUT_MS");
        assert_eq!(e.value, "10");
        assert!(e.to_string().contains("25 to 30000"), "{e}");

        let e = Config::from_env(&env_of(&[
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("LAMBDA_OTEL_BRIDGE_TELEMETRY_TYPES", "platform,metrics"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("\"metrics\""), "{e}");

        let e = Config::from_env(&env_of(&[
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("LAMBDA_OTEL_BRIDGE_TELEMETRY_PORT", "9001"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
    }

    #[test]
    fn export_loop_is_an_error_naming_both_variables() {
        let e = Config::from_env(&env_of(&[
            ("AWS_LAMBDA_RUNTIME_API", "x:1"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert!(
            e.reason.contains("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR"),
            "{e}"
        );
        assert!(
            e.reason
                .contains("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT"),
            "{e}"
        );
        // The usual set-up: the function points at the bridge, the bridge at the collector.
        let c = Config::from_env(&env_of(&[
            ("AWS_LAMBDA_RUNTIME_API", "x:1"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT",
                "http://collector:4318",
            ),
        ]))
        .unwrap();
        assert_eq!(c.export.logs.endpoint, "http://collector:4318/v1/logs");
        // gRPC to 127.0.0.1:4317 loops too; with the receiver off it does not.
        assert!(Config::from_env(&env_of(&[
            ("AWS_LAMBDA_RUNTIME_API", "x:1"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4317"
            ),
        ]))
        .is_err());
        assert!(Config::from_env(&env_of(&[
            ("AWS_LAMBDA_RUNTIME_API", "x:1"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
            ("LAMBDA_OTEL_BRIDGE_RECEIVER", "false"),
        ]))
        .is_ok());
        // Nothing configured: the default endpoint is the receiver; export is off.
        let c = Config::from_env(&env_of(&[("AWS_LAMBDA_RUNTIME_API", "x:1")])).unwrap();
        assert!(c.export.disabled);
        assert!(
            c.warnings[0].contains("no OTLP endpoint configured"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn tls_verification_opt_out_is_explicit_and_warned() {
        let base = [
            ("AWS_LAMBDA_RUNTIME_API", "x:1"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector.example:4318",
            ),
        ];
        // Off by default, and the OTEL_ prefix does not turn it off.
        let mut vars = base.to_vec();
        vars.push(("OTEL_EXPORTER_OTLP_INSECURE_SKIP_VERIFY", "true"));
        let c = Config::from_env(&env_of(&vars)).unwrap();
        assert!(c.export.traces.tls.skip_verify.is_none());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Anything but true/false is an error naming the variable.
        let mut vars = base.to_vec();
        vars.push((
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY",
            "yes please",
        ));
        let e = Config::from_env(&env_of(&vars)).unwrap_err();
        assert!(e.to_string().contains("INSECURE_SKIP_VERIFY"), "{e}");
        // On for every signal: one warning naming the variable and the host.
        let mut vars = base.to_vec();
        vars.push((
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY",
            "true",
        ));
        let c = Config::from_env(&env_of(&vars)).unwrap();
        for signal in crate::export::settings::Signal::ALL {
            assert_eq!(
                c.export.signal(signal).tls.skip_verify.as_deref(),
                Some("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY")
            );
        }
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("verification is OFF"),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings[0].contains("collector.example:4318"),
            "{:?}",
            c.warnings
        );
        // Per signal: only logs; a per-signal false wins over a general true.
        let mut vars = base.to_vec();
        vars.push((
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY",
            "true",
        ));
        vars.push((
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_TRACES_INSECURE_SKIP_VERIFY",
            "false",
        ));
        vars.push((
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_METRICS_INSECURE_SKIP_VERIFY",
            "false",
        ));
        let c = Config::from_env(&env_of(&vars)).unwrap();
        assert!(c.export.traces.tls.skip_verify.is_none());
        assert!(c.export.metrics.tls.skip_verify.is_none());
        assert!(c.export.logs.tls.skip_verify.is_some());
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn receiver_addresses_must_be_loopback_unless_allowed() {
        let with = |pairs: &[(&str, &str)]| {
            let mut vars = vec![
                ("AWS_LAMBDA_RUNTIME_API", "x:1"),
                (
                    "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT",
                    "http://collector:4318",
                ),
            ];
            vars.extend_from_slice(pairs);
            Config::from_env(&env_of(&vars))
        };
        // Loopback in every spelling is accepted without a warning.
        for (var, addr) in [
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR", "127.0.0.1:4318"),
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR", "127.0.0.9:4318"),
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR", "[::1]:4317"),
            (
                "LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR",
                "[::ffff:127.0.0.1]:4317",
            ),
        ] {
            let c = with(&[(var, addr)]).unwrap_or_else(|e| panic!("{addr}: {e}"));
            assert!(c.warnings.is_empty(), "{addr}: {:?}", c.warnings);
        }
        // Anything else is an error naming the variable and the value.
        for (var, addr) in [
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR", "0.0.0.0:4318"),
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR", "0.0.0.0:4317"),
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR", "[::]:4317"),
            (
                "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR",
                "169.254.100.1:4318",
            ),
            (
                "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR",
                "[::ffff:10.0.0.1]:4318",
            ),
        ] {
            let e = with(&[(var, addr)]).expect_err(addr);
            assert_eq!((e.var.as_str(), e.value.as_str()), (var, addr));
            assert!(e.reason.contains("loopback"), "{e}");
            assert!(
                e.reason
                    .contains("LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK=true"),
                "{e}"
            );
        }
        // Allowed explicitly: accepted, and a start-up warning names the address.
        let c = with(&[
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR", "0.0.0.0:4318"),
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK", "true"),
        ])
        .unwrap();
        assert_eq!(c.receiver.http_addr, Some("0.0.0.0:4318".parse().unwrap()));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("0.0.0.0:4318"), "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK"),
            "{:?}",
            c.warnings
        );
        // Off by default, false keeps it off, and other values are errors.
        assert!(with(&[
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR", "0.0.0.0:4318"),
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK", "false"),
        ])
        .is_err());
        let e = with(&[("LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK", "yes")]).unwrap_err();
        assert_eq!(e.var, "LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK");
        // With the receiver off nothing listens: its addresses do not matter.
        assert!(with(&[
            ("LAMBDA_OTEL_BRIDGE_RECEIVER", "false"),
            ("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR", "0.0.0.0:4318"),
        ])
        .is_ok());
    }

    #[test]
    fn types_subset() {
        let c = Config::from_env(&env_of(&[
            ("AWS_LAMBDA_RUNTIME_API", "x:1"),
            ("LAMBDA_OTEL_BRIDGE_TELEMETRY_TYPES", " Function , platform"),
        ]))
        .unwrap();
        assert_eq!(c.telemetry.types.names(), ["platform", "function"]);
    }
}
