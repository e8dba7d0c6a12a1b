//! The one place that resolves where and how telemetry is exported.
//!
//! Standard variables (`OTEL_EXPORTER_OTLP_*`, general and per signal) are
//! read as the OpenTelemetry specification defines them. Because Lambda gives
//! the function and its extensions the same environment, the bridge also reads
//! its own prefixed copies (`LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_*`, same
//! suffixes), which win when set. For each option and signal the order is:
//! prefixed per-signal, prefixed general, standard per-signal, standard
//! general, default (the forms, defaults and values are declared in
//! [`crate::options::table`]).
//!
//! Header values may hold credentials: [`SignalSettings`]'s `Debug` output
//! shows header names only.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::aws::config::{default_region, CredentialSource, SecretSpec};
use super::aws::target::{self, SigningTarget};
use crate::mapping::metrics::Temporality;
use crate::options::read::{choice_for, flag, flag_for, header_list, int, text_for, Given};
use crate::options::table::{
    CERTIFICATE, CLIENT_CERTIFICATE, CLIENT_KEY, COMPRESSION, CONNECTION_MAX_IDLE_MS,
    DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, ENDPOINT, HEADERS, HEADERS_SECRET, INSECURE,
    INSECURE_SKIP_VERIFY, PROTOCOL, SDK_DISABLED, SIGV4, TIMEOUT,
};
use crate::options::{ConfigError, Env};

/// The three OTLP signals, ordered for stable maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// `traces`, `metrics` or `logs`, as in the bridge's metric attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The signal's position in [`Signal::ALL`], for per-signal arrays.
    pub fn index(self) -> usize {
        self as usize
    }

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
    /// Requests are signed with SigV4 for this signing name and region
    /// (`LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_[SIGNAL_]SIGV4`).
    pub sigv4: Option<SigningTarget>,
    /// Headers fetched from an AWS secret, merged over `headers`.
    pub headers_secret: Option<SecretSpec>,
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
            .field("sigv4", &self.sigv4)
            .field("headers_secret", &self.headers_secret)
            .finish()
    }
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
    /// Where AWS credentials come from (for SigV4 and the secrets).
    pub credentials: CredentialSource,
}

impl ExportSettings {
    pub fn from_env(env: &dyn Env) -> Result<ExportSettings, ConfigError> {
        let disabled = flag(env, &SDK_DISABLED)?;
        let temporality = Temporality::from_env(env)?;
        Ok(ExportSettings {
            disabled,
            traces: SignalSettings::from_env(env, Signal::Traces)?,
            metrics: SignalSettings::from_env(env, Signal::Metrics)?,
            logs: SignalSettings::from_env(env, Signal::Logs)?,
            temporality,
            credentials: CredentialSource::from_env(env),
        })
    }

    /// Whether any signal signs with SigV4 or reads an AWS secret.
    pub fn uses_aws(&self) -> bool {
        Signal::ALL.iter().any(|s| {
            let s = self.signal(*s);
            s.sigv4.is_some() || s.headers_secret.is_some()
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
        let at = Some(signal.env_name());
        let protocol = choice_for(env, &PROTOCOL, at, |v| match v {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            "http/json" => Some(Protocol::HttpJson),
            _ => None,
        })?;
        let (insecure, _) = flag_for(env, &INSECURE, at)?;
        let given = text_for(env, &ENDPOINT, at);
        let endpoint_var = given.as_ref().map(|g| g.var.clone());
        let endpoint = match given {
            None => default_endpoint(protocol, signal),
            Some(Given {
                var,
                value,
                per_signal,
            }) => resolve_endpoint(&var, value.trim(), per_signal, protocol, insecure, signal)?,
        };
        let headers = match text_for(env, &HEADERS, at) {
            None => Vec::new(),
            Some(g) => header_list(&g.var, &g.value)?,
        };
        let compression = choice_for(env, &COMPRESSION, at, |v| match v {
            "gzip" => Some(Compression::Gzip),
            "none" => Some(Compression::None),
            _ => None,
        })?;
        let timeout = match text_for(env, &TIMEOUT, at) {
            Some(g) => parse_timeout(&g.var, &g.value)?,
            None => parse_timeout(TIMEOUT.name, TIMEOUT.default_value().unwrap_or_default())?,
        };
        let path = |s| text_for(env, s, at).map(|g| PathBuf::from(g.value.trim()));
        // Not an OTEL_ variable (the spec has none): the bridge's prefix only.
        let skip_verify = match flag_for(env, &INSECURE_SKIP_VERIFY, at)? {
            (true, var) => var,
            (false, _) => None,
        };
        let max_idle = Duration::from_millis(u64::from(int(env, &CONNECTION_MAX_IDLE_MS)?));
        let sigv4 = signing_target(env, &endpoint, protocol, at)?;
        let headers_secret = match text_for(env, &HEADERS_SECRET, at) {
            None => None,
            Some(g) => Some(
                SecretSpec::parse(&g.value, env)
                    .map_err(|reason| ConfigError::new(&g.var, &g.value, reason))?,
            ),
        };
        Ok(SignalSettings {
            signal,
            protocol,
            endpoint,
            endpoint_var,
            headers,
            compression,
            timeout,
            tls: TlsFiles {
                ca_certificate: path(&CERTIFICATE),
                client_certificate: path(&CLIENT_CERTIFICATE),
                client_key: path(&CLIENT_KEY),
                skip_verify,
            },
            max_idle,
            sigv4,
            headers_secret,
        })
    }
}

/// The SigV4 setting resolved for an endpoint; gRPC to a signed endpoint
/// is an error (CloudWatch's OTLP endpoints take OTLP/HTTP only, and the
/// bridge signs HTTP requests only).
fn signing_target(
    env: &dyn Env,
    endpoint: &str,
    protocol: Protocol,
    at: Option<&str>,
) -> Result<Option<SigningTarget>, ConfigError> {
    let given = text_for(env, &SIGV4, at);
    let (var, value) = match &given {
        Some(g) => (g.var.as_str(), g.value.as_str()),
        None => (SIGV4.name, SIGV4.default_value().unwrap_or("auto")),
    };
    let host = endpoint
        .parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default();
    let target = target::resolve(value, &host, default_region(env).as_deref())
        .map_err(|e| ConfigError::new(var, value, e.0))?;
    if protocol == Protocol::Grpc {
        if let Some(t) = &target {
            return Err(ConfigError::new(
                var,
                value,
                format!(
                    "requests to {host} would be signed with SigV4 for `{}`, which the bridge \
                     does for OTLP/HTTP only (CloudWatch's OTLP endpoints take no gRPC): set \
                     OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or {var}=off",
                    t.service
                ),
            ));
        }
    }
    Ok(target)
}

/// The declared default endpoint for a protocol and signal.
fn default_endpoint(protocol: Protocol, signal: Signal) -> String {
    match protocol {
        Protocol::Grpc => DEFAULT_GRPC_ENDPOINT.to_owned(),
        _ => format!("{DEFAULT_HTTP_ENDPOINT}/{}", signal.http_path()),
    }
}

/// `OTEL_EXPORTER_OTLP_TIMEOUT`: whole milliseconds.
fn parse_timeout(var: &str, v: &str) -> Result<Duration, ConfigError> {
    match v.trim().parse::<u64>() {
        // The spec says 0 means "no limit"; the deadline of the
        // Lambda phase still bounds every export.
        Ok(0) => Ok(Duration::from_secs(900)),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => Err(ConfigError::new(
            var,
            v,
            "expected a whole number of milliseconds",
        )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::env_of;

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
    fn sigv4_per_signal_and_grpc_is_an_error() {
        let s = ExportSettings::from_env(&env_of(&[
            ("AWS_REGION", "eu-west-1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://xray.us-east-1.amazonaws.com/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_LOGS_SIGV4", "logs"),
        ]))
        .unwrap();
        let t = s.traces.sigv4.as_ref().unwrap();
        assert_eq!(
            (t.service.as_str(), t.region.as_str()),
            ("xray", "us-east-1")
        );
        let l = s.logs.sigv4.as_ref().unwrap();
        assert_eq!(
            (l.service.as_str(), l.region.as_str()),
            ("logs", "eu-west-1")
        );
        assert_eq!(s.metrics.sigv4, None);
        assert!(s.uses_aws());
        let e = ExportSettings::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://xray.us-east-1.amazonaws.com",
            ),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_SIGV4");
        assert!(e.reason.contains("http/protobuf"), "{e}");
        let e = ExportSettings::from_env(&env_of(&[
            ("AWS_REGION", "eu-west-1"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_METRICS_SIGV4",
                "monitoring",
            ),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_METRICS_SIGV4");
        // Off: gRPC to the same host is the user's business.
        let s = ExportSettings::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://xray.us-east-1.amazonaws.com",
            ),
            ("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_SIGV4", "off"),
        ]))
        .unwrap();
        assert!(!s.uses_aws());
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
}
