//! The whole configuration, assembled from the settings of every component.
//!
//! Each component owns its settings and reads them from the environment
//! through [`crate::options`], where every variable is declared once with
//! its default, range and doc (and checked against the README's
//! "Configuration" tables). This module only puts the results together and
//! checks what spans components: an exporter pointed at the bridge's own
//! receiver, and the TLS verification opt-out's warnings. An invalid value
//! is an error that names the variable and the value, so it can be reported
//! to Lambda as `Extension.ConfigInvalid` and read in the function's logs.

use std::time::Duration;

use crate::diagnostics::LogLevel;
use crate::export::settings::{ExportSettings, Signal};
use crate::flush_policy::{AdaptiveTuning, FlushPolicy, Waits};
use crate::lambda::environment::{LambdaEnv, RUNTIME_API};
use crate::lambda::telemetry_api::TelemetrySettings;
use crate::limits::Limits;
use crate::mapping::invocation::SpanIdMode;
use crate::mapping::sampling::Sampling;
use crate::options::table::BRIDGE_EXPORTER_PREFIX;
use crate::options::{ConfigError, Env, PREFIX};
use crate::otlp_receiver::ReceiverSettings;
use crate::redact::Redactor;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub lambda: LambdaEnv,
    pub telemetry: TelemetrySettings,
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
    pub flush_policy: FlushPolicy,
    pub adaptive: AdaptiveTuning,
    /// Longest time a flush may add to an invocation (also bounded by its deadline).
    pub flush_timeout: Duration,
    /// Byte cap of the outbox of undelivered requests.
    pub outbox_max_bytes: usize,
    /// The local OTLP receiver for the function's own telemetry.
    pub receiver: ReceiverSettings,
    /// Which id invocation spans take.
    pub span_id_mode: SpanIdMode,
    /// Which invocations' spans are exported.
    pub sampling: Sampling,
    /// Function and extension records below this `SeverityNumber` are
    /// dropped (0: none).
    pub logs_min_severity: i32,
    /// Attribute limits of the bridge's own spans and log records.
    pub limits: Limits,
    /// Redaction of secrets in traces and logs (off unless configured).
    pub redact: Option<std::sync::Arc<Redactor>>,
    /// Valid but noteworthy settings, logged once logging is set up.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads `AWS_LAMBDA_RUNTIME_API` alone: it is needed to report every
    /// other configuration error to Lambda.
    pub fn runtime_api(env: &dyn Env) -> Option<String> {
        env.get(RUNTIME_API)
    }

    /// Reads and validates every setting.
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let lambda = LambdaEnv::from_env(env)?;
        let telemetry = TelemetrySettings::from_env(env)?;
        let (log_level, log_json) = crate::diagnostics::from_env(env)?;
        let (flush_policy, adaptive) = crate::flush_policy::from_env(env)?;
        let (receiver, receiver_warnings) = ReceiverSettings::from_env(env)?;
        let mut export = ExportSettings::from_env(env)?;
        let mut warnings: Vec<String> = check_export_loop(&receiver, &mut export)?
            .into_iter()
            .collect();
        warnings.extend(receiver_warnings);
        warnings.extend(skip_verify_warnings(&export));
        if export.uses_aws()
            && export.credentials == crate::export::aws::config::CredentialSource::None
        {
            warnings.push(
                "SigV4 signing or a headers secret is configured but there are no AWS \
                 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or \
                 AWS_CONTAINER_CREDENTIALS_FULL_URI): those exports will fail"
                    .to_owned(),
            );
        }
        warnings.extend(crate::mapping::sampling::foreign_sampler_warning(env));
        let waits = Waits::from_env(env)?;
        Ok(Config {
            lambda,
            telemetry,
            log_level,
            log_json,
            shutdown_report_wait: waits.shutdown_report,
            invoke_wait: waits.invoke,
            export,
            faas_trigger: crate::mapping::traces::faas_trigger(env)?,
            platform_log_lines: crate::mapping::platform_lines::enabled(env)?,
            flush_policy,
            adaptive,
            flush_timeout: waits.flush_timeout,
            outbox_max_bytes: crate::export::outbox::max_bytes_from_env(env)?,
            receiver,
            span_id_mode: SpanIdMode::from_env(env)?,
            sampling: Sampling::from_env(env)?,
            logs_min_severity: crate::mapping::logs::min_severity(env)?,
            limits: Limits::from_env(env)?,
            redact: Redactor::from_env(env)?.map(std::sync::Arc::new),
            warnings,
        })
    }
}

/// The loud side of the TLS verification opt-out: one start-up warning per
/// variable that turned it off, naming the endpoints it affects.
fn skip_verify_warnings(export: &ExportSettings) -> Vec<String> {
    let mut by_var: Vec<(&str, Vec<String>)> = Vec::new();
    for signal in Signal::ALL {
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

/// Lambda gives the function and the bridge the same environment: a
/// function told `OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318` would
/// also point the bridge at its own receiver. An explicitly configured
/// endpoint that does is an error naming both variables; the default
/// endpoint (nothing configured) only disables export, with a warning.
fn check_export_loop(
    receiver: &ReceiverSettings,
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
    for signal in Signal::ALL {
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
                        BRIDGE_EXPORTER_PREFIX
                    ),
                ))
            }
            None => {
                export.disabled = true;
                return Ok(Some(format!(
                    "no OTLP endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT or {}ENDPOINT): exporting nothing",
                    BRIDGE_EXPORTER_PREFIX
                )));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::env_of;

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
        for signal in Signal::ALL {
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

    /// Every declared setting, read by its component through the table:
    /// a blank value is its default, every declared word and both ends of
    /// every range are accepted, and a value just outside a range is an
    /// error naming the variable and the value.
    #[test]
    fn every_declared_setting_is_read_as_declared() {
        use crate::options::table::{Entry, ALL};
        const API: (&str, &str) = ("AWS_LAMBDA_RUNTIME_API", "x:1");
        struct Blank;
        impl Env for Blank {
            fn var(&self, name: &str) -> Option<String> {
                Some(if name == API.0 { API.1 } else { " " }.to_owned())
            }
        }
        let defaults = Config::from_env(&env_of(&[API])).unwrap();
        let blank = Config::from_env(&Blank).unwrap();
        assert_eq!(format!("{blank:?}"), format!("{defaults:?}"));
        assert_eq!(blank.export, defaults.export);
        assert_eq!(blank.telemetry, defaults.telemetry);
        assert_eq!(blank.receiver, defaults.receiver);
        assert_eq!(blank.lambda, defaults.lambda);

        let read = |name: &str, v: &str| Config::from_env(&env_of(&[API, (name, v)]));
        for e in ALL {
            let name = e.name();
            let good: Vec<String> = match e {
                Entry::Int(s) => vec![s.min.to_string(), s.max.to_string()],
                Entry::Flag(_) => ["true", "FALSE", "1", "0"].map(String::from).to_vec(),
                Entry::Choice(s) => s
                    .values
                    .iter()
                    .chain(s.aliases.iter().map(|(alias, _)| alias))
                    .map(|v| v.to_uppercase())
                    .collect(),
                Entry::Text(s) => s.default_value().map(String::from).into_iter().collect(),
            };
            for v in good {
                if let Err(err) = read(name, &v) {
                    panic!("{name}={v:?}: {err}");
                }
            }
            let bad: Vec<String> = match e {
                Entry::Int(s) => (s.min.checked_sub(1).into_iter())
                    .chain(s.max.checked_add(1))
                    .map(|n| n.to_string())
                    .chain(["x".to_owned()])
                    .collect(),
                Entry::Flag(s) if !s.only_true => vec!["yes".to_owned()],
                Entry::Choice(_) => vec!["no-such-value".to_owned()],
                _ => vec![],
            };
            for v in bad {
                let err = read(name, &v).expect_err(name);
                assert_eq!((err.var.as_str(), err.value.as_str()), (name, v.as_str()));
            }
        }
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
