//! Settings from the environment: `ExportSettings::from_env`,
//! `Config::from_env`, `percent_decode`, and the resource built from
//! `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` and the Lambda variables.
//!
//! Input format (so seeds are readable): lines of `NAME=VALUE` (split at the
//! first `=`). A name written `@N` stands for the N-th name of [`names()`]
//! (modulo its length), which biases the fuzzer towards the variables the
//! bridge reads; fuzz/dicts/settings.dict adds them as dictionary tokens too. A
//! later line overrides an earlier one; an empty value counts as unset (as in
//! the process environment).
#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;

use lambda_otel_bridge::Config;
use lambda_otel_bridge::{build_resource as build, parse_resource_attributes, ResourceInfo};
use lambda_otel_bridge::{percent_decode, settings_table as table, ConfigError, Env};
use lambda_otel_bridge::{ExportSettings, Signal};

/// The variables the bridge read when this target was written; every other
/// variable declared in src/options/table.rs is appended by [`names()`]
/// (after these, so the `@N` of saved inputs keep their name).
const BRIDGE: [&str; 24] = [
    "TELEMETRY_TYPES",
    "TELEMETRY_TIMEOUT_MS",
    "TELEMETRY_MAX_ITEMS",
    "TELEMETRY_MAX_BYTES",
    "TELEMETRY_PORT",
    "SHUTDOWN_REPORT_WAIT_MS",
    "INVOKE_WAIT_MS",
    "FLUSH_TIMEOUT_MS",
    "OUTBOX_MAX_BYTES",
    "PLATFORM_LOG_LINES",
    "FLUSH",
    "ADAPTIVE_WARMUP",
    "ADAPTIVE_GAP_MS",
    "ADAPTIVE_MAX_STALENESS_MS",
    "RECEIVER",
    "RECEIVER_GRPC_ADDR",
    "RECEIVER_HTTP_ADDR",
    "RECEIVER_ALLOW_NON_LOOPBACK",
    "RECEIVER_ENRICH",
    "RECEIVER_MAX_BODY_BYTES",
    "INVOCATION_SPAN_ID",
    "FAAS_TRIGGER",
    "LOG_LEVEL",
    "LOG_JSON",
];
const EXPORTER_OPTIONS: [&str; 10] = [
    "PROTOCOL",
    "INSECURE",
    "ENDPOINT",
    "HEADERS",
    "COMPRESSION",
    "TIMEOUT",
    "CERTIFICATE",
    "CLIENT_CERTIFICATE",
    "CLIENT_KEY",
    "TEMPORALITY_PREFERENCE",
];
const OTHER: [&str; 10] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
];

fn names() -> Vec<String> {
    let mut v: Vec<String> = OTHER.iter().map(|s| s.to_string()).collect();
    v.extend(BRIDGE.iter().map(|s| format!("LAMBDA_OTEL_BRIDGE_{s}")));
    for prefix in ["OTEL_EXPORTER_OTLP_", "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_"] {
        for signal in ["", "TRACES_", "METRICS_", "LOGS_"] {
            for option in EXPORTER_OPTIONS {
                v.push(format!("{prefix}{signal}{option}"));
            }
        }
    }
    // Bridge-only exporter options (appended: earlier `@N` keep their name).
    for signal in ["", "TRACES_", "METRICS_", "LOGS_"] {
        v.push(format!(
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_{signal}INSECURE_SKIP_VERIFY"
        ));
    }
    // Every other declared variable (appended too).
    for entry in table::ALL {
        for name in entry.variables() {
            if !v.contains(&name) {
                v.push(name);
            }
        }
    }
    v
}

fn env_from(text: &str, names: &[String]) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for line in text.split('\n') {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = match k.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => names[n % names.len()].clone(),
            None => k.to_owned(),
        };
        env.insert(k, v.to_owned());
    }
    env
}

/// `%XX` decoding as documented ("`None` on a malformed escape"): `%` must be
/// followed by two hex digits, and the result must be UTF-8.
fn reference_percent_decode(s: &str) -> Option<String> {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn check_percent(s: &str) {
    let got = percent_decode(s);
    assert_eq!(got, reference_percent_decode(s), "percent_decode({s:?})");
    if !s.contains('%') {
        assert_eq!(got.as_deref(), Some(s));
    }
}

fn check_export(e: &ExportSettings) {
    for signal in Signal::ALL {
        let s = e.signal(signal);
        assert_eq!(s.signal, signal);
        assert!(
            s.endpoint.starts_with("http://") || s.endpoint.starts_with("https://"),
            "{s:?}"
        );
        // 0 means "no limit" (bounded later by the phase deadline), never 0.
        assert!(!s.timeout.is_zero(), "{s:?}");
        for (k, v) in &s.headers {
            assert!(!k.is_empty(), "{s:?}");
            assert_eq!(*k, k.to_ascii_lowercase(), "{s:?}");
            // No header injection through a decoded CR/LF/NUL.
            assert!(!k.contains(['\r', '\n', '\0']), "{s:?}");
            assert!(!v.contains(['\r', '\n', '\0']), "{s:?}");
        }
        let _ = e.local_port(signal);
        // TLS verification is only ever turned off by the bridge's own,
        // explicit variable.
        if let Some(var) = &s.tls.skip_verify {
            assert!(
                var.starts_with("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_")
                    && var.ends_with("_INSECURE_SKIP_VERIFY"),
                "{var}"
            );
        }
    }
}

fn check_error(e: &ConfigError) {
    let _ = e.to_string();
    // Header values may hold credentials: errors never repeat them.
    if e.var.ends_with("_HEADERS") {
        assert_eq!(e.value, "<redacted>", "{e:?}");
    }
}

fn check_config(c: &Config) {
    assert_ne!(c.telemetry.listener_port, 9001);
    assert!(!c.telemetry.types.names().is_empty());
    assert!(c.telemetry.body_limit() > 0);
    check_export(&c.export);
    // Verification turned off is always warned about.
    let off = Signal::ALL
        .iter()
        .any(|&s| c.export.signal(s).tls.skip_verify.is_some());
    assert_eq!(
        off,
        c.warnings.iter().any(|w| w.contains("verification is OFF")),
        "{:?}",
        c.warnings
    );
    // Export never loops into the bridge's own receiver: either export is
    // off, the receiver is off, or no endpoint is on a receiver port.
    if c.receiver.enabled && !c.export.disabled {
        let ports: Vec<u16> = [c.receiver.grpc_addr, c.receiver.http_addr]
            .into_iter()
            .flatten()
            .map(|a| a.port())
            .filter(|&p| p != 0)
            .collect();
        for signal in Signal::ALL {
            if let Some(p) = c.export.local_port(signal) {
                assert!(!ports.contains(&p), "{signal:?} loops: {:?}", c.export);
            }
        }
    }
}

fn check_resource(env: &HashMap<String, String>, config: Option<&Config>) {
    if let Some(raw) = env.get("OTEL_RESOURCE_ATTRIBUTES") {
        if let Ok(pairs) = parse_resource_attributes(raw) {
            assert!(pairs.iter().all(|(k, _)| !k.is_empty()));
        }
    }
    let lambda = config.map(|c| c.lambda.clone()).unwrap_or_default();
    let built = build(&ResourceInfo {
        service_name: Env::get(env, "OTEL_SERVICE_NAME"),
        resource_attributes: Env::get(env, "OTEL_RESOURCE_ATTRIBUTES"),
        function_name: lambda.function_name,
        function_version: lambda.function_version,
        region: lambda.region,
        account_id: Some("123456789012".into()),
        memory_mb: lambda.memory_mb,
        instance_id: "fuzz".into(),
    });
    let attrs = &built.resource.attributes;
    assert!(attrs.iter().any(|kv| kv.key == "service.name"));
    // One value per key (user attributes override detected ones).
    let mut seen = HashSet::new();
    for kv in attrs {
        assert!(
            seen.insert(&kv.key),
            "duplicate resource attribute {:?}",
            kv.key
        );
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static NAMES: Vec<String> = names();
    }
    let text = String::from_utf8_lossy(data);
    let env = NAMES.with(|n| env_from(&text, n));

    check_percent(&text);
    for (k, v) in &env {
        check_percent(k);
        check_percent(v);
    }

    match ExportSettings::from_env(&env) {
        Ok(e) => check_export(&e),
        Err(e) => check_error(&e),
    }
    let _ = Config::runtime_api(&env);
    let config = Config::from_env(&env);
    match &config {
        Ok(c) => check_config(c),
        Err(e) => check_error(e),
    }
    check_resource(&env, config.as_ref().ok());
});
