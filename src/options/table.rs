//! The declarative table of every setting the bridge reads: name, default,
//! range or values, unit and a one-line doc, declared once here.
//!
//! The typed readers of [`super::read`] take their defaults and ranges from
//! these declarations, and a unit test compares [`ALL`] with the tables of
//! README.md's "Configuration" section (name, default, unit / values).
//!
//! Exporter options ([`Forms::Exporter`]) are read in several forms, in the
//! order of [`EXPORTER_FORMS`]; a row names the general standard form.

use super::decl::exporter;
pub use super::decl::*;

pub const TELEMETRY_TYPES: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_TELEMETRY_TYPES",
    forms: Forms::One,
    default: TextDefault::Value("platform,function,extension"),
    format: "comma list of `platform`, `function`, `extension`",
    range: None,
    doc: "Telemetry API streams to subscribe to",
};
pub const TELEMETRY_TIMEOUT_MS: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_TELEMETRY_TIMEOUT_MS",
    default: 25,
    min: 25,
    max: 30_000,
    unit: "ms",
    doc: "subscription `buffering.timeoutMs` (how long Lambda holds a batch)",
};
pub const TELEMETRY_MAX_ITEMS: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_TELEMETRY_MAX_ITEMS",
    default: 1000,
    min: 1000,
    max: 10_000,
    unit: "events",
    doc: "subscription `buffering.maxItems`",
};
pub const TELEMETRY_MAX_BYTES: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_TELEMETRY_MAX_BYTES",
    default: 262_144,
    min: 262_144,
    max: 1_048_576,
    unit: "bytes",
    doc: "subscription `buffering.maxBytes`",
};
pub const TELEMETRY_PORT: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_TELEMETRY_PORT",
    default: 0,
    min: 0,
    max: 65_535,
    unit: "TCP port (not 9001)",
    doc: "Telemetry API listener port; 0 lets the OS pick a free one",
};

// ---- the lifecycle and its flush policy (src/flush_policy.rs) --------------

pub const INVOKE_WAIT_MS: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_INVOKE_WAIT_MS",
    default: 2000,
    min: 0,
    max: 900_000,
    unit: "ms",
    doc: "wait for `platform.start` (and for `runtimeDone` after dropped telemetry)",
};
pub const SHUTDOWN_REPORT_WAIT_MS: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_SHUTDOWN_REPORT_WAIT_MS",
    default: 300,
    min: 0,
    max: 1500,
    unit: "ms",
    doc: "after SHUTDOWN, longest wait for the last report and a quiet window",
};
pub const FLUSH: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_FLUSH",
    forms: Forms::One,
    default: TextDefault::Value("adaptive"),
    format: "`end`, `adaptive`, `periodic:<ms>`",
    range: Some((100, 600_000)),
    doc: "when to export, relative to `/next`",
};
pub const FLUSH_TIMEOUT_MS: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS",
    default: 1000,
    min: 10,
    max: 900_000,
    unit: "ms",
    doc: "longest time one flush may take",
};
pub const ADAPTIVE_WARMUP: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_ADAPTIVE_WARMUP",
    default: 3,
    min: 0,
    max: 1000,
    unit: "invocations",
    doc: "`adaptive`: first invocations flushed in `end` style",
};
pub const ADAPTIVE_GAP_MS: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_ADAPTIVE_GAP_MS",
    default: 1000,
    min: 0,
    max: 60_000,
    unit: "ms",
    doc: "`adaptive`: invocations closer than this count as frequent",
};
pub const ADAPTIVE_MAX_STALENESS_MS: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_ADAPTIVE_MAX_STALENESS_MS",
    default: 5000,
    min: 0,
    max: 3_600_000,
    unit: "ms",
    doc: "`adaptive`: an `end`-style flush at least this often",
};

// ---- export (src/export/) --------------------------------------------------

pub const OUTBOX_MAX_BYTES: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_OUTBOX_MAX_BYTES",
    default: 4 * 1024 * 1024,
    min: 64 * 1024,
    max: 256 * 1024 * 1024,
    unit: "bytes",
    doc: "cap of encoded requests kept for retry",
};
pub const CONNECTION_MAX_IDLE_MS: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_CONNECTION_MAX_IDLE_MS",
    default: 15_000,
    min: 100,
    max: 3_600_000,
    unit: "ms",
    doc: "a collector connection unused for longer is not reused",
};

// ---- the local OTLP receiver (src/otlp_receiver.rs) ------------------------

pub const RECEIVER: Flag = Flag {
    name: "LAMBDA_OTEL_BRIDGE_RECEIVER",
    forms: Forms::One,
    default: true,
    only_true: false,
    doc: "the local OTLP receiver for the function's own telemetry",
};
pub const RECEIVER_GRPC_ADDR: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR",
    forms: Forms::One,
    default: TextDefault::Value("127.0.0.1:4317"),
    format: "loopback ip:port or `off`",
    range: None,
    doc: "its gRPC listener",
};
pub const RECEIVER_HTTP_ADDR: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR",
    forms: Forms::One,
    default: TextDefault::Value("127.0.0.1:4318"),
    format: "loopback ip:port or `off`",
    range: None,
    doc: "its HTTP listener",
};
pub const RECEIVER_ALLOW_NON_LOOPBACK: Flag = Flag {
    name: "LAMBDA_OTEL_BRIDGE_RECEIVER_ALLOW_NON_LOOPBACK",
    forms: Forms::One,
    default: false,
    only_true: false,
    doc: "let the receiver's addresses be non-loopback (warned about)",
};
pub const RECEIVER_ENRICH: Flag = Flag {
    name: "LAMBDA_OTEL_BRIDGE_RECEIVER_ENRICH",
    forms: Forms::One,
    default: true,
    only_true: false,
    doc: "add missing `faas.*` / `cloud.*` resource attributes to forwarded data",
};
pub const RECEIVER_MAX_BODY_BYTES: Int = Int {
    name: "LAMBDA_OTEL_BRIDGE_RECEIVER_MAX_BODY_BYTES",
    default: 4 * 1024 * 1024,
    min: 1024,
    max: 64 * 1024 * 1024,
    unit: "bytes",
    doc: "largest request accepted (after gzip)",
};

// ---- mapping (src/mapping/) ------------------------------------------------

pub const INVOCATION_SPAN_ID: Choice = Choice {
    name: "LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID",
    forms: Forms::One,
    default: "telemetry",
    values: &["telemetry", "xray-parent"],
    aliases: &[],
    doc: "invocation span id: Lambda's `tracing.spanId` or the X-Ray `Parent`",
};
pub const FAAS_TRIGGER: Choice = Choice {
    name: "LAMBDA_OTEL_BRIDGE_FAAS_TRIGGER",
    forms: Forms::One,
    default: "other",
    values: &["datasource", "http", "pubsub", "timer", "other"],
    aliases: &[],
    doc: "`faas.trigger` on spans and metrics",
};
pub const PLATFORM_LOG_LINES: Flag = Flag {
    name: "LAMBDA_OTEL_BRIDGE_PLATFORM_LOG_LINES",
    forms: Forms::One,
    default: false,
    only_true: false,
    doc: "also export platform events as CloudWatch-style log lines",
};

// ---- cost controls: sampling (src/mapping/sampling.rs), log severity
// (src/mapping/attribution.rs), attribute limits (src/limits.rs) ------------

pub const TRACES_SAMPLER: Choice = Choice {
    name: "OTEL_TRACES_SAMPLER",
    forms: Forms::One,
    default: "always_on",
    values: &[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ],
    aliases: &[],
    doc: "the sampler deciding per invocation whether its spans are exported",
};
pub const TRACES_SAMPLER_ARG: Text = Text {
    name: "OTEL_TRACES_SAMPLER_ARG",
    forms: Forms::One,
    default: TextDefault::Value("1.0"),
    format: "ratio, 0–1 (`*traceidratio` only)",
    range: None,
    doc: "the share of trace ids sampled",
};
pub const SAMPLER_KEEP: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP",
    forms: Forms::One,
    default: TextDefault::Value("errors,timeouts"),
    format: "comma list of `errors`, `timeouts`, `coldstarts`, `slow:<ms>`, or `none`",
    range: Some((1, 900_000)),
    doc: "invocations whose spans are exported whatever the sampler says",
};
pub const LOGS_MIN_SEVERITY: Choice = Choice {
    name: "LAMBDA_OTEL_BRIDGE_LOGS_MIN_SEVERITY",
    forms: Forms::One,
    default: "none",
    values: &["none", "trace", "debug", "info", "warn", "error", "fatal"],
    aliases: &[("warning", "warn")],
    doc: "function and extension log records below this severity are dropped (counted)",
};
pub const ATTRIBUTE_VALUE_LENGTH_LIMIT: Text = Text {
    name: "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    forms: Forms::One,
    default: TextDefault::Unset,
    format: "characters",
    range: Some((0, u32::MAX)),
    doc: "longest attribute string value of the bridge's spans and log records",
};
pub const ATTRIBUTE_COUNT_LIMIT: Int = Int {
    name: "OTEL_ATTRIBUTE_COUNT_LIMIT",
    default: 128,
    min: 0,
    max: u32::MAX,
    unit: "attributes",
    doc: "most attributes per span or log record of the bridge",
};
pub const SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: Text = Text {
    name: "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    forms: Forms::One,
    default: TextDefault::Described("`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`"),
    format: "characters",
    range: Some((0, u32::MAX)),
    doc: "the value length limit for spans",
};
pub const SPAN_ATTRIBUTE_COUNT_LIMIT: Text = Text {
    name: "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    forms: Forms::One,
    default: TextDefault::Described("`OTEL_ATTRIBUTE_COUNT_LIMIT`"),
    format: "attributes",
    range: Some((0, u32::MAX)),
    doc: "the attribute count limit for spans",
};
pub const SPAN_EVENT_COUNT_LIMIT: Int = Int {
    name: "OTEL_SPAN_EVENT_COUNT_LIMIT",
    default: 128,
    min: 0,
    max: u32::MAX,
    unit: "events",
    doc: "most events per span of the bridge",
};
pub const LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT: Text = Text {
    name: "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    forms: Forms::One,
    default: TextDefault::Described("`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`"),
    format: "characters",
    range: Some((0, u32::MAX)),
    doc: "the value length limit for log records",
};
pub const LOGRECORD_ATTRIBUTE_COUNT_LIMIT: Text = Text {
    name: "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    forms: Forms::One,
    default: TextDefault::Described("`OTEL_ATTRIBUTE_COUNT_LIMIT`"),
    format: "attributes",
    range: Some((0, u32::MAX)),
    doc: "the attribute count limit for log records",
};

// ---- redaction (src/redact.rs) ---------------------------------------------

pub const REDACT: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_REDACT",
    forms: Forms::One,
    default: TextDefault::Unset,
    format: "comma list: `default`, `all`, `none`, or preset names",
    range: None,
    doc: "redaction presets",
};
pub const REDACT_PATTERNS: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_REDACT_PATTERNS",
    forms: Forms::One,
    default: TextDefault::Unset,
    format: "a regular expression, or a JSON array of them",
    range: None,
    doc: "extra value patterns to redact",
};
pub const REDACT_KEYS: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_REDACT_KEYS",
    forms: Forms::One,
    default: TextDefault::Unset,
    format: "a regular expression, or a JSON array of them",
    range: None,
    doc: "attribute keys whose whole value is redacted",
};
pub const REDACT_REPLACEMENT: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_REDACT_REPLACEMENT",
    forms: Forms::One,
    default: TextDefault::Value("[REDACTED]"),
    format: "text",
    range: None,
    doc: "what replaces a secret",
};

// ---- the extension's own diagnostics (src/diagnostics.rs) ------------------

pub const LOG_LEVEL: Choice = Choice {
    name: "LAMBDA_OTEL_BRIDGE_LOG_LEVEL",
    forms: Forms::One,
    default: "info",
    values: &["off", "error", "warn", "info", "debug", "trace"],
    aliases: &[("none", "off"), ("warning", "warn")],
    doc: "the extension's own diagnostics (stderr)",
};
pub const LOG_JSON: Flag = Flag {
    name: "LAMBDA_OTEL_BRIDGE_LOG_JSON",
    forms: Forms::One,
    default: false,
    only_true: false,
    doc: "diagnostics as JSON lines",
};

// ---- OTLP exporter (src/export/settings.rs) --------------------------------

/// The default OTLP/HTTP endpoint (`v1/<signal>` is appended).
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// The default OTLP/gRPC endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
pub const ENDPOINT: Text = Text {
    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
    forms: exporter("ENDPOINT"),
    default: TextDefault::ByProtocol {
        http: DEFAULT_HTTP_ENDPOINT,
        grpc: DEFAULT_GRPC_ENDPOINT,
    },
    format: "URL",
    range: None,
    doc: "collector URL",
};
pub const PROTOCOL: Choice = Choice {
    name: "OTEL_EXPORTER_OTLP_PROTOCOL",
    forms: exporter("PROTOCOL"),
    default: "http/protobuf",
    values: &["grpc", "http/protobuf", "http/json"],
    aliases: &[],
    doc: "OTLP transport",
};
pub const HEADERS: Text = Text {
    name: "OTEL_EXPORTER_OTLP_HEADERS",
    forms: exporter("HEADERS"),
    default: TextDefault::Unset,
    format: "`key=value,…`, percent-decoded",
    range: None,
    doc: "request headers (values never logged)",
};
pub const TIMEOUT: Text = Text {
    name: "OTEL_EXPORTER_OTLP_TIMEOUT",
    forms: exporter("TIMEOUT"),
    default: TextDefault::Value("10000"),
    format: "ms (`0`: the Lambda deadline only)",
    range: None,
    doc: "time for one export, retries included",
};
pub const INSECURE: Flag = Flag {
    name: "OTEL_EXPORTER_OTLP_INSECURE",
    forms: exporter("INSECURE"),
    default: false,
    only_true: false,
    doc: "gRPC endpoints without a scheme: `http://` instead of `https://`",
};
pub const COMPRESSION: Choice = Choice {
    name: "OTEL_EXPORTER_OTLP_COMPRESSION",
    forms: exporter("COMPRESSION"),
    default: "none",
    values: &["gzip", "none"],
    aliases: &[],
    doc: "request compression (both transports)",
};
pub const CERTIFICATE: Text = Text {
    name: "OTEL_EXPORTER_OTLP_CERTIFICATE",
    forms: exporter("CERTIFICATE"),
    default: TextDefault::Described("Mozilla roots (built in)"),
    format: "PEM file",
    range: None,
    doc: "CA(s) to trust instead",
};
pub const CLIENT_CERTIFICATE: Text = Text {
    name: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    forms: exporter("CLIENT_CERTIFICATE"),
    default: TextDefault::Unset,
    format: "PEM file",
    range: None,
    doc: "client certificate chain (mTLS)",
};
pub const CLIENT_KEY: Text = Text {
    name: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    forms: exporter("CLIENT_KEY"),
    default: TextDefault::Unset,
    format: "PEM file",
    range: None,
    doc: "client key (mTLS)",
};
pub const INSECURE_SKIP_VERIFY: Flag = Flag {
    name: "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY",
    forms: Forms::Exporter {
        option: "INSECURE_SKIP_VERIFY",
        bridge_only: true,
    },
    default: false,
    only_true: false,
    doc: "do not verify the collector's certificate (warned about)",
};
pub const SIGV4: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_SIGV4",
    forms: Forms::Exporter {
        option: "SIGV4",
        bridge_only: true,
    },
    default: TextDefault::Value("auto"),
    format: "`auto`, `off` or `SERVICE[:REGION]`",
    range: None,
    doc: "sign with AWS SigV4 (`auto`: when the host is `<service>.<region>.amazonaws.com`)",
};
pub const HEADERS_SECRET: Text = Text {
    name: "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_HEADERS_SECRET",
    forms: Forms::Exporter {
        option: "HEADERS_SECRET",
        bridge_only: true,
    },
    default: TextDefault::Unset,
    format: "Secrets Manager name or ARN, `ssm:<name>` or SSM ARN",
    range: None,
    doc: "headers from an AWS secret, merged over `_HEADERS` (values never logged)",
};
pub const TEMPORALITY_PREFERENCE: Choice = Choice {
    name: "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    forms: exporter("TEMPORALITY_PREFERENCE"),
    default: "cumulative",
    values: &["cumulative", "delta", "lowmemory"],
    aliases: &[],
    doc: "metric temporality (`lowmemory` = `delta` here)",
};

// ---- OpenTelemetry SDK and resource ----------------------------------------

pub const SERVICE_NAME: Text = Text {
    name: "OTEL_SERVICE_NAME",
    forms: Forms::One,
    default: TextDefault::Described("function name"),
    format: "text",
    range: None,
    doc: "`service.name`",
};
pub const RESOURCE_ATTRIBUTES: Text = Text {
    name: "OTEL_RESOURCE_ATTRIBUTES",
    forms: Forms::One,
    default: TextDefault::Unset,
    format: "`key=value,…`, percent-decoded",
    range: None,
    doc: "extra resource attributes",
};
pub const SDK_DISABLED: Flag = Flag {
    name: "OTEL_SDK_DISABLED",
    forms: Forms::One,
    default: false,
    only_true: true,
    doc: "run the lifecycle, export nothing",
};

/// Every setting, in the README's order.
pub static ALL: &[Entry] = &[
    Entry::Text(&TELEMETRY_TYPES),
    Entry::Int(&TELEMETRY_TIMEOUT_MS),
    Entry::Int(&TELEMETRY_MAX_ITEMS),
    Entry::Int(&TELEMETRY_MAX_BYTES),
    Entry::Int(&TELEMETRY_PORT),
    Entry::Int(&INVOKE_WAIT_MS),
    Entry::Int(&SHUTDOWN_REPORT_WAIT_MS),
    Entry::Text(&FLUSH),
    Entry::Int(&FLUSH_TIMEOUT_MS),
    Entry::Int(&OUTBOX_MAX_BYTES),
    Entry::Int(&CONNECTION_MAX_IDLE_MS),
    Entry::Int(&ADAPTIVE_WARMUP),
    Entry::Int(&ADAPTIVE_GAP_MS),
    Entry::Int(&ADAPTIVE_MAX_STALENESS_MS),
    Entry::Flag(&RECEIVER),
    Entry::Text(&RECEIVER_GRPC_ADDR),
    Entry::Text(&RECEIVER_HTTP_ADDR),
    Entry::Flag(&RECEIVER_ALLOW_NON_LOOPBACK),
    Entry::Flag(&RECEIVER_ENRICH),
    Entry::Int(&RECEIVER_MAX_BODY_BYTES),
    Entry::Choice(&INVOCATION_SPAN_ID),
    Entry::Choice(&FAAS_TRIGGER),
    Entry::Flag(&PLATFORM_LOG_LINES),
    Entry::Text(&SAMPLER_KEEP),
    Entry::Choice(&LOGS_MIN_SEVERITY),
    Entry::Text(&REDACT),
    Entry::Text(&REDACT_PATTERNS),
    Entry::Text(&REDACT_KEYS),
    Entry::Text(&REDACT_REPLACEMENT),
    Entry::Choice(&LOG_LEVEL),
    Entry::Flag(&LOG_JSON),
    Entry::Text(&ENDPOINT),
    Entry::Choice(&PROTOCOL),
    Entry::Text(&HEADERS),
    Entry::Text(&TIMEOUT),
    Entry::Flag(&INSECURE),
    Entry::Choice(&COMPRESSION),
    Entry::Text(&CERTIFICATE),
    Entry::Text(&CLIENT_CERTIFICATE),
    Entry::Text(&CLIENT_KEY),
    Entry::Flag(&INSECURE_SKIP_VERIFY),
    Entry::Text(&SIGV4),
    Entry::Text(&HEADERS_SECRET),
    Entry::Choice(&TEMPORALITY_PREFERENCE),
    Entry::Text(&SERVICE_NAME),
    Entry::Text(&RESOURCE_ATTRIBUTES),
    Entry::Flag(&SDK_DISABLED),
    Entry::Choice(&TRACES_SAMPLER),
    Entry::Text(&TRACES_SAMPLER_ARG),
    Entry::Text(&ATTRIBUTE_VALUE_LENGTH_LIMIT),
    Entry::Int(&ATTRIBUTE_COUNT_LIMIT),
    Entry::Text(&SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT),
    Entry::Text(&SPAN_ATTRIBUTE_COUNT_LIMIT),
    Entry::Int(&SPAN_EVENT_COUNT_LIMIT),
    Entry::Text(&LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT),
    Entry::Text(&LOGRECORD_ATTRIBUTE_COUNT_LIMIT),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_consistent() {
        let mut names = std::collections::HashSet::new();
        for e in ALL {
            let name = e.name();
            assert!(names.insert(name), "{name} is declared twice");
            assert!(
                name.starts_with(super::super::PREFIX) || name.starts_with("OTEL_"),
                "{name}"
            );
            assert!(!e.doc().is_empty() && !e.doc().contains('\n'), "{name}");
            // A row names one of the variables the setting is read from.
            assert!(e.variables().iter().any(|v| v == name), "{name}");
            match e {
                Entry::Int(s) => assert!(
                    s.min <= s.default && s.default <= s.max,
                    "{name}: default outside its range"
                ),
                Entry::Choice(s) => {
                    assert!(s.values.contains(&s.default), "{name}");
                    for (alias, v) in s.aliases {
                        assert!(s.values.contains(v) && !s.values.contains(alias), "{name}");
                    }
                }
                Entry::Text(Text {
                    range: Some((min, max)),
                    ..
                }) => assert!(min <= max, "{name}"),
                _ => {}
            }
        }
    }

    #[test]
    fn exporter_forms_in_precedence_order() {
        assert_eq!(
            Entry::Text(&ENDPOINT).variables(),
            [
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_TRACES_ENDPOINT",
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_METRICS_ENDPOINT",
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_LOGS_ENDPOINT",
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ]
        );
        assert_eq!(Entry::Flag(&INSECURE_SKIP_VERIFY).variables().len(), 4);
    }
}
