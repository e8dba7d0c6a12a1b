//! Arbitrary bytes as a Telemetry API POST body → `parse_batch` → `Mapper`
//! → OTLP requests → protobuf / OTLP-JSON encodings. Nothing may panic.
//!
//! The batch goes through two mappers:
//! - A: default configuration, events only, one flush halfway, one at the
//!   end, then shutdown (`take_final`). Run twice: output must be
//!   deterministic (MAPPING.md).
//! - B: delta temporality, platform log lines, `xray-parent` span ids, a
//!   function name; an INVOKE (`on_invoke`) before every `platform.start`,
//!   with the event's X-Ray header; a flush after every event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;

use lambda_otel_bridge::Temporality;
use lambda_otel_bridge::{build_resource as build, ResourceInfo};
use lambda_otel_bridge::{parse_batch, EventKind, TelemetryEvent};
use lambda_otel_bridge::{InvokeInfo, SpanIdMode};
use lambda_otel_bridge::{Mapper, MapperSettings};
use lambda_otel_bridge_fuzz::check_output;

/// When the batch was received (2025-03-04T10:16:39Z).
const OBSERVED: u64 = 1_741_083_399_000_000_000;

fn mapper(config: MapperSettings) -> Mapper {
    let resource = build(&ResourceInfo {
        function_name: Some("orders-api".into()),
        function_version: Some("$LATEST".into()),
        region: Some("eu-west-1".into()),
        account_id: Some("123456789012".into()),
        memory_mb: Some(512),
        instance_id: "fuzz".into(),
        ..Default::default()
    })
    .resource;
    Mapper::new(resource, config)
}

/// Mapper A: returns the protobuf bytes of every flush.
fn run_a(events: &[TelemetryEvent]) -> Vec<Vec<u8>> {
    let mut m = mapper(MapperSettings::default());
    let mut flushes = Vec::new();
    let half = events.len() / 2;
    for (i, ev) in events.iter().enumerate() {
        if i == half && i > 0 {
            flushes.push(check_output(&m.take()));
        }
        m.ingest(ev.clone(), OBSERVED);
    }
    flushes.push(check_output(&m.take()));
    flushes.push(check_output(&m.take_final()));
    assert_eq!(m.pending(), 0, "log records left after shutdown");
    flushes
}

fn run_b(events: Vec<TelemetryEvent>) {
    let mut m = mapper(MapperSettings {
        temporality: Temporality::Delta,
        faas_trigger: "http".into(),
        platform_log_lines: true,
        function_name: Some("orders-api".into()),
        function_version: Some("7".into()),
        span_id_mode: SpanIdMode::XrayParent,
        ..MapperSettings::default()
    });
    for ev in events {
        if let EventKind::Start(s) = &ev.kind {
            m.on_invoke(
                &s.request_id,
                InvokeInfo {
                    deadline_ms: 1_741_083_400_000,
                    invoked_function_arn: s.function_arn.clone(),
                    xray_header: s.tracing.as_ref().and_then(|t| t.value.clone()),
                },
            );
        }
        m.ingest(ev, OBSERVED);
        let _ = m.runtime_done_seen("8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11");
        check_output(&m.take());
    }
    check_output(&m.take_final());
    assert_eq!(m.pending(), 0, "log records left after shutdown");
}

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = parse_batch(data) else {
        return;
    };
    // Every element is either decoded or counted as skipped.
    let elements = serde_json::from_slice::<Vec<IgnoredAny>>(data)
        .expect("parse_batch accepted a body that is not a JSON array")
        .len();
    assert_eq!(batch.events.len() + batch.skipped.len(), elements);
    for e in &batch.skipped {
        let _ = e.to_string();
    }
    for ev in &batch.events {
        let _ = ev.kind.type_name();
    }

    let a = run_a(&batch.events);
    let again = run_a(&batch.events);
    assert!(a == again, "mapping is not deterministic");
    run_b(batch.events);
});
