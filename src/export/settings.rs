//! The one place that resolves where and how telemetry is exported.
//!
//! Standard variables (`OTEL_EXPORTER_OTLP_*`, general and per signal) are
//! read as the OpenTelemetry specification defines them. Because Lambda gives
//! the function and its extensions the same environment, the bridge also reads
//! its own prefixed copies (`LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_*`, same
//! suffixes), which win when set. For each option and signal the order is:
//! prefixed per-signal, prefixed general, standard per-signal, standard
//! general, default.
//!
//! Header values may hold credentials: [`SignalSettings`]'s `Debug` output
//! shows header names only.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{bool_var, ConfigError, Env};

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// `TRACES`, `METRICS` or `LOGS`, as in the per-signal variable names.
    pub fn env_name(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
            Signal::Logs => "LOGS",
        }
    }

    /// The OTLP/HTTP path appended to a general endpoint.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "v1/traces",
            Signal::Metrics => "v1/metrics",
            Signal::Logs => "v1/logs",
        }
    }

    /// The OTLP/gRPC method path.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// PEM files for TLS (`_CERTIFICATE`, `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_certificate: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The explicit opt-out of server certificate verification
    /// (`LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_[SIGNAL_]INSECURE_SKIP_VERIFY=true`):
    /// the variable that set it, warned about at start-up and on connecting.
    pub skip_verify: Option<String>,
}

/// Everything needed to export one signal.
#[derive(Clone, PartialEq)]
pub struct SignalSettings {
    pub signal: Signal,
    pub protocol: Protocol,
    /// HTTP: the full URL requests are POSTed to. gRPC: the server's base URL.
    pub endpoint: String,
    /// The variable the endpoint came from (`None`: the default).
    pub endpoint_var: Option<String>,
    pub headers: Vec<(String, String)>,
    pub compression: Compression,
    /// Total time for one export, retries included.
    pub timeout: Duration,
    pub tls: TlsFiles,
    /// A connection unused for longer than this is not reused: a freeze
    /// can outlast the idle timeouts of NATs, load balancers and
    /// collectors, which then drop it without a word
    /// (`LAMBDA_OTEL_BRIDGE_CONNECTION_MAX_IDLE_MS`).
    pub max_idle: Duration,
}

impl fmt::Debug for SignalSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("SignalSettings")
            .field("signal", &self.signal)
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .field("headers", &header_names)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Metric aggregation temporality preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Cumulative,
    Delta,
    LowMemory,
}

/// The resolved export configuration for all signals.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// `OTEL_SDK_DISABLED=true`: run the lifecycle, export nothing.
    pub disabled: bool,
    pub traces: SignalSettings,
    pub metrics: SignalSettings,
    pub logs: SignalSettings,
    pub temporality: Temporality,
}

/// Default of `LAMBDA_OTEL_BRIDGE_CONNECTION_MAX_IDLE_MS`.
pub const DEFAULT_MAX_IDLE_MS: u32 = 15_000;

/// The bridge's own prefix for exporter variables.
pub const BRIDGE_EXPORTER_PREFIX: &str = "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_";
const STANDARD_PREFIX: &str = "OTEL_EXPORTER_OTLP_";

/// Looks up one exporter option for a signal, in precedence order. Returns the
/// variable name that supplied the value, the value, and whether it was a
/// per-signal variable.
fn lookup(env: &dyn Env, signal: Signal, option: &str) -> Option<(String, String, bool)> {
    lookup_in(
        env,
        signal,
        option,
        &[BRIDGE_EXPORTER_PREFIX, STANDARD_PREFIX],
    )
}

fn lookup_in(
    env: &dyn Env,
    signal: Signal,
    option: &str,
    prefixes: &[&str],
) -> Option<(String, String, bool)> {
    for prefix in prefixes {
        let per_signal = format!("{prefix}{}_{option}", signal.env_name());
        if let Some(v) = env.get(&per_signal) {
            return Some((per_signal, v, true));
        }
        let general = format!("{prefix}{option}");
        if let Some(v) = env.get(&general) {
            return Some((general, v, false));
        }
    }
    None
}

/// `OTEL_SDK_DISABLED`: the specification's boolean rule, stricter than the
/// bridge's own switches ([`bool_var`] also takes `1`/`0`): only `true`
/// (case-insensitive) disables; any other value, `1` included, is false.
fn sdk_disabled(env: &dyn Env) -> bool {
    env.get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl ExportSettings {
    pub fn from_env(env: &dyn Env) -> Result<ExportSettings, ConfigError> {
        let disabled = sdk_disabled(env);
        let temporality = match lookup(env, Signal::Metrics, "TEMPORALITY_PREFERENCE") {
            None => Temporality::Cumulative,
            Some((var, v, _)) => match v.trim().to_ascii_lowercase().as_str() {
                "cumulative" => Temporality::Cumulative,
                "delta" => Temporality::Delta,
                "lowmemory" => Temporality::LowMemory,
                _ => {
                    return Err(ConfigError::new(
                        &var,
                        &v,
                        "expected cumulative, delta or lowmemory",
                    ))
                }
            },
        };
        Ok(ExportSettings {
            disabled,
            traces: SignalSettings::from_env(env, Signal::Traces)?,
            metrics: SignalSettings::from_env(env, Signal::Metrics)?,
            logs: SignalSettings::from_env(env, Signal::Logs)?,
            temporality,
        })
    }

    /// The port and whether the host is this machine, for loop detection.
    pub fn local_port(&self, s: Signal) -> Option<u16> {
        let uri: hyper::Uri = self.signal(s).endpoint.parse().ok()?;
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let local = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
        if !local {
            return None;
        }
        uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            _ => Some(80),
        })
    }

    pub fn signal(&self, s: Signal) -> &SignalSettings {
        match s {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }
}

impl SignalSettings {
    pub fn from_env(env: &dyn Env, signal: Signal) -> Result<SignalSettings, ConfigError> {
        let protocol = match lookup(env, signal, "PROTOCOL") {
            None => Protocol::HttpProtobuf,
            Some((var, v, _)) => match v.trim().to_ascii_lowercase().as_str() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                "http/json" => Protocol::HttpJson,
                _ => {
                    return Err(ConfigError::new(
                        &var,
                        &v,
                        "expected grpc, http/protobuf or http/json",
                    ))
                }
            },
        };
        let insecure = match lookup(env, signal, "INSECURE") {
            None => false,
            Some((var, _, _)) => bool_var(env, &var, false)?,
        };
        let endpoint_var = lookup(env, signal, "ENDPOINT").map(|(var, _, _)| var);
        let endpoint = match lookup(env, signal, "ENDPOINT") {
            None => match protocol {
                Protocol::Grpc => "http://localhost:4317".to_owned(),
                _ => format!("http://localhost:4318/{}", signal.http_path()),
            },
            Some((var, v, per_signal)) => {
                resolve_endpoint(&var, v.trim(), per_signal, protocol, insecure, signal)?
            }
        };
        let headers = match lookup(env, signal, "HEADERS") {
            None => Vec::new(),
            Some((var, v, _)) => parse_headers(&var, &v)?,
        };
        let compression = match lookup(env, signal, "COMPRESSION") {
            None => Compression::None,
            Some((var, v, _)) => match v.trim().to_ascii_lowercase().as_str() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                _ => return Err(ConfigError::new(&var, &v, "expected gzip or none")),
            },
        };
        let timeout = match lookup(env, signal, "TIMEOUT") {
            None => Duration::from_secs(10),
            Some((var, v, _)) => match v.trim().parse::<u64>() {
                // The spec says 0 means "no limit"; the deadline of the
                // Lambda phase still bounds every export.
                Ok(0) => Duration::from_secs(900),
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => {
                    return Err(ConfigError::new(
                        &var,
                        &v,
                        "expected a whole number of milliseconds",
                    ))
                }
            },
        };
        let path =
            |option: &str| lookup(env, signal, option).map(|(_, v, _)| PathBuf::from(v.trim()));
        // Not an OTEL_ variable (the spec has none): the bridge's prefix only.
        let skip_verify = match lookup_in(
            env,
            signal,
            "INSECURE_SKIP_VERIFY",
            &[BRIDGE_EXPORTER_PREFIX],
        ) {
            Some((var, _, _)) if bool_var(env, &var, false)? => Some(var),
            _ => None,
        };
        let max_idle = Duration::from_millis(u64::from(crate::config::int_setting(
            env,
            "CONNECTION_MAX_IDLE_MS",
            DEFAULT_MAX_IDLE_MS,
            100,
            3_600_000,
        )?));
        Ok(SignalSettings {
            signal,
            protocol,
            endpoint,
            endpoint_var,
            headers,
            compression,
            timeout,
            tls: TlsFiles {
                ca_certificate: path("CERTIFICATE"),
                client_certificate: path("CLIENT_CERTIFICATE"),
                client_key: path("CLIENT_KEY"),
                skip_verify,
            },
            max_idle,
        })
    }
}

/// Applies the spec's endpoint rules: a per-signal HTTP endpoint is used as
/// is (an empty path becomes `/`); a general HTTP endpoint gets `v1/<signal>`
/// appended; a gRPC endpoint without a scheme gets `https://`, or `http://`
/// when `INSECURE=true`.
fn resolve_endpoint(
    var: &str,
    v: &str,
    per_signal: bool,
    protocol: Protocol,
    insecure: bool,
    signal: Signal,
) -> Result<String, ConfigError> {
    let has_scheme = v.starts_with("http://") || v.starts_with("https://");
    if protocol == Protocol::Grpc {
        let url = if has_scheme {
            v.to_owned()
        } else if v.contains("://") {
            return Err(ConfigError::new(var, v, "scheme must be http or https"));
        } else if insecure {
            format!("http://{v}")
        } else {
            format!("https://{v}")
        };
        check_url(var, &url)?;
        return Ok(url);
    }
    if !has_scheme {
        return Err(ConfigError::new(
            var,
            v,
            "expected an http:// or https:// URL",
        ));
    }
    check_url(var, v)?;
    let after_scheme = &v[v.find("://").map(|i| i + 3).unwrap_or(0)..];
    let has_path = after_scheme.contains('/');
    if per_signal {
        Ok(if has_path {
            v.to_owned()
        } else {
            format!("{v}/")
        })
    } else if v.ends_with('/') {
        Ok(format!("{v}{}", signal.http_path()))
    } else {
        Ok(format!("{v}/{}", signal.http_path()))
    }
}

fn check_url(var: &str, url: &str) -> Result<(), ConfigError> {
    match url.parse::<hyper::Uri>() {
        Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(ConfigError::new(var, url, "not a valid URL")),
    }
}

/// Parses `k1=v1,k2=v2` with percent-decoding. The error names the variable
/// but never repeats the value (it may hold a credential).
fn parse_headers(var: &str, v: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, val)) = pair.split_once('=') else {
            return Err(ConfigError::new(
                var,
                "<redacted>",
                "expected key=value pairs separated by commas",
            ));
        };
        let key = percent_decode(k.trim()).map(|k| k.to_ascii_lowercase());
        let value = percent_decode(val.trim());
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

/// Decodes `%XX` escapes (UTF-8); `None` on a malformed escape.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env_of;

    #[test]
    fn defaults_follow_the_spec() {
        let s = ExportSettings::from_env(&env_of(&[])).unwrap();
        assert!(!s.disabled);
        assert_eq!(s.traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.traces.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(s.logs.endpoint, "http://localhost:4318/v1/logs");
        assert_eq!(s.metrics.timeout, Duration::from_secs(10));
        assert_eq!(s.temporality, Temporality::Cumulative);
    }

    #[test]
    fn endpoint_path_rules() {
        let s = ExportSettings::from_env(&env_of(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://collector:4318/mycollector/",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:4318",
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "https://m.example/custom/path",
            ),
        ]))
        .unwrap();
        assert_eq!(s.logs.endpoint, "http://collector:4318/mycollector/v1/logs");
        assert_eq!(s.traces.endpoint, "http://collector:4318/");
        assert_eq!(s.metrics.endpoint, "https://m.example/custom/path");
    }

    #[test]
    fn grpc_endpoints_and_insecure() {
        let s = ExportSettings::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "true"),
        ]))
        .unwrap();
        assert_eq!(s.traces.endpoint, "https://collector:4317");
        assert_eq!(s.logs.endpoint, "http://collector:4317");
    }

    #[test]
    fn bridge_prefix_wins() {
        let s = ExportSettings::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://localhost:4318/v1/traces",
            ),
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT",
                "http://collector:4318",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=fn"),
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_LOGS_HEADERS",
                "x-api-key=bridge%2Ckey",
            ),
        ]))
        .unwrap();
        assert_eq!(s.traces.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.logs.endpoint, "http://collector:4318/v1/logs");
        assert_eq!(
            s.logs.headers,
            [("x-api-key".to_owned(), "bridge,key".to_owned())]
        );
        assert_eq!(
            s.traces.headers,
            [("x-api-key".to_owned(), "fn".to_owned())]
        );
    }

    #[test]
    fn header_values_never_show() {
        let s = ExportSettings::from_env(&env_of(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20s3cr3t",
        )]))
        .unwrap();
        assert_eq!(s.logs.headers[0].1, "Bearer s3cr3t");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let e = ExportSettings::from_env(&env_of(&[("OTEL_EXPORTER_OTLP_HEADERS", "s3cr3t")]))
            .unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_HEADERS"));
    }

    #[test]
    fn invalid_values_are_errors() {
        for (k, v) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "sometimes",
            ),
        ] {
            let e = ExportSettings::from_env(&env_of(&[(k, v)])).unwrap_err();
            assert_eq!(e.var, k);
        }
    }

    #[test]
    fn only_true_disables_the_sdk() {
        for (v, disabled) in [
            ("TRUE", true),
            ("true", true),
            ("True", true),
            (" true ", true),
            ("1", false),
            ("0", false),
            ("false", false),
            ("yes", false),
            ("", false),
        ] {
            let s = ExportSettings::from_env(&env_of(&[("OTEL_SDK_DISABLED", v)])).unwrap();
            assert_eq!(s.disabled, disabled, "OTEL_SDK_DISABLED={v:?}");
        }
        // The bridge's own booleans still take 1/0.
        let s = ExportSettings::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY", "1"),
        ]))
        .unwrap();
        assert!(s.traces.tls.skip_verify.is_some());
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
