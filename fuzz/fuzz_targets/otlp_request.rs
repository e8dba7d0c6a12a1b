//! Arbitrary bytes as a request to the bridge's local OTLP receiver (the
//! function's own telemetry): decoded as OTLP protobuf or OTLP/JSON as the
//! receiver does, then redacted with every preset, split into parts of a
//! bounded size and encoded for export (protobuf, and OTLP/JSON for
//! `http/json`). Nothing may panic, and nothing may be lost on the way:
//! redaction keeps every record and span, the parts hold exactly the items
//! of the request, and every part is within the size bound unless it holds
//! a single item.
//!
//! Input: byte 0 picks the signal (bits 0-1) and the encoding (bit 2);
//! byte 1 the part size bound (64 B to 16 KiB); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

use lambda_otel_bridge::count_items;
use lambda_otel_bridge::Redactor;
use lambda_otel_bridge::Signal;
use lambda_otel_bridge::{split_logs, split_traces, SplitLimits};
use lambda_otel_bridge_fuzz::export_json;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

fn redactor() -> &'static Redactor {
    static REDACTOR: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
    REDACTOR.get_or_init(|| {
        let env: std::collections::HashMap<String, String> =
            [("LAMBDA_OTEL_BRIDGE_REDACT".to_owned(), "all".to_owned())].into();
        Redactor::from_env(&env).unwrap().unwrap()
    })
}

fn decode<M: Message + Default + serde::de::DeserializeOwned>(
    json: bool,
    body: &[u8],
) -> Option<M> {
    if json {
        serde_json::from_slice(body).ok()
    } else {
        M::decode(body).ok()
    }
}

/// The parts of one request: together exactly its items, each within the
/// bound or a single item, each encodable as OTLP/JSON.
fn check_parts<M: Message>(signal: Signal, items: u64, parts: &[M], max: usize) {
    let mut total = 0;
    for p in parts {
        let bytes = p.encode_to_vec();
        let n = count_items(signal, &bytes);
        assert!(
            bytes.len() <= max || n <= 1,
            "{signal:?}: part of {} bytes with {n} items over the {max}-byte bound",
            bytes.len()
        );
        export_json(signal, &bytes);
        total += n;
    }
    assert_eq!(
        total, items,
        "{signal:?}: items lost or duplicated by the split"
    );
}

/// A logs or traces request: decoded, redacted (nothing lost), split into
/// parts (checked by [`check_parts`]).
fn redact_and_split<R: Message + Default + serde::de::DeserializeOwned>(
    signal: Signal,
    json: bool,
    body: &[u8],
    max: usize,
    redact: fn(&Redactor, &mut R),
    split: impl Fn(R, usize) -> Vec<R>,
) {
    let Some(mut req) = decode::<R>(json, body) else {
        return;
    };
    let items = count_items(signal, &req.encode_to_vec());
    redact(redactor(), &mut req);
    let after = count_items(signal, &req.encode_to_vec());
    assert_eq!(after, items, "{signal:?}: redaction lost items");
    check_parts(signal, items, &split(req, max), max);
}

fuzz_target!(|data: &[u8]| {
    let [sel, size, body @ ..] = data else {
        return;
    };
    let json = sel & 4 != 0;
    let max = 64 + usize::from(*size) * 64;
    match sel & 3 {
        0 => redact_and_split::<ExportLogsServiceRequest>(
            Signal::Logs,
            json,
            body,
            max,
            Redactor::redact_logs,
            split_logs,
        ),
        1 => redact_and_split::<ExportTraceServiceRequest>(
            Signal::Traces,
            json,
            body,
            max,
            Redactor::redact_traces,
            // As X-Ray's limits do: a span count per request too.
            |req, max| {
                split_traces(
                    req,
                    SplitLimits {
                        max_bytes: max,
                        max_items: 1 + usize::from(*size % 16),
                        max_item_bytes: max,
                    },
                )
            },
        ),
        _ => {
            // Metrics are forwarded whole (enriched, not split or redacted).
            let Some(req) = decode::<ExportMetricsServiceRequest>(json, body) else {
                return;
            };
            let bytes = req.encode_to_vec();
            export_json(Signal::Metrics, &bytes);
        }
    }
});
