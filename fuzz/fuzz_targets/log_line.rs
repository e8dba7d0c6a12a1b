//! `function` / `extension` log records: the text-line parser
//! (`log_lines::parse_text`, `level_number`), the record → OTLP log mapping
//! (`logs::map_log_body`) for the text form and, when the input is a JSON
//! object, for the JSON form, and the same records through a `Mapper`
//! inside an invocation (attribution, trace context, flush, encoding), and
//! the redaction of what they map to (every preset).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

use lambda_otel_bridge::Redactor;
use lambda_otel_bridge::{build_resource as build, ResourceInfo};
use lambda_otel_bridge::{level_number, parse_text};
use lambda_otel_bridge::{map_log_body, LogSource};
use lambda_otel_bridge::{EventKind, LogRecord, Start, TelemetryEvent};
use lambda_otel_bridge::{Mapper, MapperSettings};
use lambda_otel_bridge_fuzz::check_output;

const RID: &str = "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11";
const T0: u64 = 1_741_083_330_420_000_000;
const OBSERVED: u64 = 1_741_083_399_000_000_000;
const LEVELS: [i32; 7] = [1, 5, 9, 13, 17, 18, 21];

fn check_text(s: &str) {
    let line = parse_text(s);
    // The message is the line without the runtime's prefix and without a
    // trailing newline.
    let trimmed = s.trim_end_matches(['\n', '\r']);
    assert!(trimmed.ends_with(line.message), "{line:?}");
    assert!(!line.message.ends_with(['\n', '\r']), "{line:?}");
    match line.level {
        Some(level) => {
            assert_eq!(level_number(level), Some(line.severity_number), "{line:?}")
        }
        None => assert_eq!(line.severity_number, 0, "{line:?}"),
    }
    if let Some(rid) = line.request_id {
        // Request ids are UUID-like (hex digits and dashes), never empty.
        assert!(
            (8..=64).contains(&rid.len())
                && rid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{line:?}"
        );
    }

    // Level tokens: case-insensitive, one of the severity range starts.
    for token in [s, trimmed, line.message.split(' ').next().unwrap_or("")] {
        let n = level_number(token);
        if let Some(n) = n {
            assert!(LEVELS.contains(&n), "{token:?} -> {n}");
        }
        assert_eq!(level_number(&token.to_ascii_uppercase()), n, "{token:?}");
        assert_eq!(level_number(&token.to_ascii_lowercase()), n, "{token:?}");
    }
}

fn check_record(record: &LogRecord) {
    for source in [LogSource::Function, LogSource::Extension] {
        for event_time in [None, Some(T0)] {
            let (out, _rid) = map_log_body(source, record, event_time, OBSERVED);
            assert_eq!(out.observed_time_unix_nano, OBSERVED);
            assert!(
                out.attributes
                    .iter()
                    .any(|kv| kv.key == "aws.lambda.log.source"),
                "{out:?}"
            );
            // Without trace context until the mapper attaches it.
            assert!(out.trace_id.is_empty() && out.span_id.is_empty());
        }
    }
}

/// One invocation whose log stream carries `records`.
fn through_mapper(records: &[LogRecord]) {
    let resource = build(&ResourceInfo {
        function_name: Some("orders-api".into()),
        instance_id: "fuzz".into(),
        ..Default::default()
    })
    .resource;
    let mut m = Mapper::new(resource, MapperSettings::default());
    m.ingest(
        TelemetryEvent {
            time: Some(T0),
            kind: EventKind::Start(Start {
                request_id: RID.into(),
                ..Default::default()
            }),
        },
        OBSERVED,
    );
    for (i, r) in records.iter().enumerate() {
        m.ingest(
            TelemetryEvent {
                time: Some(T0 + 1 + i as u64),
                kind: EventKind::Function(r.clone()),
            },
            OBSERVED,
        );
        m.ingest(
            TelemetryEvent {
                time: None,
                kind: EventKind::ExtensionLog(r.clone()),
            },
            OBSERVED,
        );
    }
    for out in [m.take(), m.take_final()] {
        check_output(&out);
        if let Some(logs) = out.logs {
            check_redaction(logs);
        }
    }
    assert_eq!(m.pending(), 0, "log records left after shutdown");
}

/// Redaction with every preset never panics, keeps every record, and is
/// idempotent: a second pass finds nothing more to change.
fn check_redaction(
    mut logs: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
) {
    static REDACTOR: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
    let r = REDACTOR.get_or_init(|| {
        let env: std::collections::HashMap<String, String> =
            [("LAMBDA_OTEL_BRIDGE_REDACT".to_owned(), "all".to_owned())].into();
        Redactor::from_env(&env).unwrap().unwrap()
    });
    let records =
        |l: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest| {
            l.resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum::<usize>()
        };
    let before = records(&logs);
    r.redact_logs(&mut logs);
    assert_eq!(records(&logs), before);
    let once = logs.clone();
    r.redact_logs(&mut logs);
    assert_eq!(logs, once, "redaction is idempotent");
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    check_text(&s);
    let mut records = vec![LogRecord::Text(s.to_string())];
    if let Ok(map) = serde_json::from_slice::<Map<String, Value>>(data) {
        records.push(LogRecord::Json(map));
    }
    for r in &records {
        check_record(r);
    }
    through_mapper(&records);
});
