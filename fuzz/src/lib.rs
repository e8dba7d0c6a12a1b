//! Helpers shared by the fuzz targets: checks on the OTLP requests the
//! mapper produces, and the export-side encodings they go through.
//!
//! Only properties the bridge documents (proto-mapping/MAPPING.md, the doc
//! comments in src/) or OTLP requires are asserted.

use lambda_otel_bridge::count_items;
use lambda_otel_bridge::to_json;
use lambda_otel_bridge::Output;
use lambda_otel_bridge::Signal;
use prost::Message;

fn nonzero(b: &[u8]) -> bool {
    b.iter().any(|&x| x != 0)
}

/// Checks one flush's output and runs it through the export encodings
/// (protobuf, and the OTLP/JSON re-encoding used for `http/json`). Returns the
/// protobuf bytes, for determinism checks.
pub fn check_output(out: &Output) -> Vec<u8> {
    let mut all = Vec::new();
    if let Some(t) = &out.traces {
        let mut n = 0u64;
        for span in t
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            // OTLP: 16-byte trace id and 8-byte span id, neither all zeros.
            assert_eq!(span.trace_id.len(), 16, "{span:?}");
            assert!(nonzero(&span.trace_id), "{span:?}");
            assert_eq!(span.span_id.len(), 8, "{span:?}");
            assert!(nonzero(&span.span_id), "{span:?}");
            assert!(
                span.parent_span_id.is_empty() || span.parent_span_id.len() == 8,
                "{span:?}"
            );
            // MAPPING.md: every span ends at or after its start.
            assert!(
                span.end_time_unix_nano >= span.start_time_unix_nano,
                "{span:?}"
            );
            n += 1;
        }
        assert!(n > 0, "a traces request without spans");
        let body = t.encode_to_vec();
        assert_eq!(count_items(Signal::Traces, &body), n, "span count");
        export_json(Signal::Traces, &body);
        all.extend_from_slice(&body);
    }
    if let Some(m) = &out.metrics {
        let body = m.encode_to_vec();
        count_items(Signal::Metrics, &body);
        export_json(Signal::Metrics, &body);
        all.extend_from_slice(&body);
    }
    if let Some(l) = &out.logs {
        let mut n = 0u64;
        for rec in l
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            // Trace context is either absent or complete and well-formed.
            assert!(
                rec.trace_id.is_empty() || rec.trace_id.len() == 16,
                "{rec:?}"
            );
            assert!(rec.span_id.is_empty() || rec.span_id.len() == 8, "{rec:?}");
            assert_eq!(rec.trace_id.is_empty(), rec.span_id.is_empty(), "{rec:?}");
            n += 1;
        }
        assert!(n > 0, "a logs request without records");
        let body = l.encode_to_vec();
        let counted = count_items(Signal::Logs, &body);
        assert_eq!(counted, n, "log record count");
        export_json(Signal::Logs, &body);
        all.extend_from_slice(&body);
    }
    all
}

/// The `http/json` export path: a request the bridge encoded must re-encode
/// as OTLP/JSON (an error there is a permanent failure: the request is dropped).
pub fn export_json(signal: Signal, body: &[u8]) {
    let json = match to_json(signal, body) {
        Ok(j) => j,
        Err(e) => panic!(
            "{signal:?} request of {} bytes cannot be exported as OTLP/JSON: {e}",
            body.len()
        ),
    };
    // What is sent must be readable by an OTLP/JSON decoder, with every
    // item (e.g. no non-finite number written as `null`).
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    };
    let back =
        match signal {
            Signal::Traces => serde_json::from_slice::<ExportTraceServiceRequest>(&json)
                .map(|r| r.encode_to_vec()),
            Signal::Metrics => serde_json::from_slice::<ExportMetricsServiceRequest>(&json)
                .map(|r| r.encode_to_vec()),
            Signal::Logs => {
                serde_json::from_slice::<ExportLogsServiceRequest>(&json).map(|r| r.encode_to_vec())
            }
        };
    let back = back.unwrap_or_else(|e| {
        panic!(
            "{signal:?}: our OTLP/JSON does not decode: {e}: {}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        count_items(signal, &back),
        count_items(signal, body),
        "{signal:?}: items lost in the OTLP/JSON round trip"
    );
}
