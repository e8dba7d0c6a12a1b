//! The README's "Sending straight to Tempo, Jaeger, Loki or Prometheus"
//! section, checked against the bridge's configuration: every `sh` block of
//! variables in it is accepted, exports (is not disabled), and sends each
//! signal to the endpoint and with the protocol the block sets; and the
//! warning beside it holds: a signal left without an endpoint turns all
//! export off.

use std::collections::HashMap;

use lambda_otel_bridge::Config;
use lambda_otel_bridge::{Protocol, Signal};

const SECTION: &str = "## Sending straight to Tempo, Jaeger, Loki or Prometheus (no collector)";

/// The `NAME=value` lines of each ```sh block of the section.
fn blocks() -> Vec<Vec<(String, String)>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find(SECTION)
        .unwrap_or_else(|| panic!("README.md has no section {SECTION:?}"));
    let rest = &readme[start + SECTION.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| {
            b.split("```")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(|l| {
                    let (k, v) = l
                        .split_once('=')
                        .unwrap_or_else(|| panic!("not NAME=value: {l}"));
                    (k.trim().to_string(), v.trim().to_string())
                })
                .collect()
        })
        .collect()
}

fn lambda_env(vars: &[(String, String)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "orders-api"),
        ("AWS_REGION", "eu-west-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(vars.iter().cloned());
    env
}

#[test]
fn every_block_sends_each_signal_where_it_says() {
    let blocks = blocks();
    assert!(blocks.len() >= 2, "the section's sh blocks: {blocks:?}");
    for vars in &blocks {
        let config = Config::from_env(&lambda_env(vars))
            .unwrap_or_else(|e| panic!("{vars:?}: the bridge refuses it: {e}"));
        assert!(!config.export.disabled, "{vars:?}: export is off");
        for signal in Signal::ALL {
            let name = signal.env_name();
            let endpoint_var = format!("OTEL_EXPORTER_OTLP_{name}_ENDPOINT");
            let given = vars
                .iter()
                .find(|(k, _)| *k == endpoint_var)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{vars:?}: no {endpoint_var}"));
            let protocol = vars
                .iter()
                .find(|(k, _)| *k == format!("OTEL_EXPORTER_OTLP_{name}_PROTOCOL"))
                .map(|(_, v)| v.as_str())
                .unwrap_or("http/protobuf");
            let settings = config.export.signal(signal);
            assert_eq!(
                settings.endpoint_var.as_deref(),
                Some(endpoint_var.as_str())
            );
            // A per-signal HTTP endpoint is used as written; a gRPC one is the server.
            assert_eq!(settings.endpoint.trim_end_matches('/'), given, "{name}");
            let expected = match protocol {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                other => panic!("{other}: not used in this section"),
            };
            assert_eq!(settings.protocol, expected, "{name}");
        }
    }
}

#[test]
fn a_signal_without_an_endpoint_turns_all_export_off() {
    for vars in blocks() {
        let without_logs: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k != "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
            .collect();
        let config = Config::from_env(&lambda_env(&without_logs)).expect("accepted");
        assert!(
            config.export.disabled,
            "logs default to the bridge's own receiver, which turns export off"
        );
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("no OTLP endpoint configured")),
            "{:?}",
            config.warnings
        );
    }
}
