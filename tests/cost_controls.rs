//! Cost controls through the real binary under the emulated Lambda
//! platform, checked at an OTLP collector: trace sampling per invocation
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
//! `LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP`), the minimum log severity
//! (`LAMBDA_OTEL_BRIDGE_LOGS_MIN_SEVERITY`) and the attribute limits.
//! Expected sets are computed here from what the test sent, never from the
//! bridge's code.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};
use support::common::{body, counter, env, spin_down, start_with};
use support::emulator::{new_request_id, Emulator, InvokeSpec};
use support::fault_collector::FaultCollector;
use support::otlp::{attr_str, hex};

const TS: &str = "2025-03-04T10:15:30.610Z";

/// Starts the extension in `end` mode, exporting to `collector`, with `extra` settings.
async fn start(collector: &FaultCollector, extra: &[(&str, &str)]) -> Emulator {
    let endpoint = collector.http_endpoint();
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
    ];
    vars.extend_from_slice(extra);
    start_with(env(&vars), true).await
}

async fn invoke(emu: &Emulator, spec: InvokeSpec) {
    let rid = spec.request_id.clone();
    emu.invoke(spec)
        .await
        .unwrap_or_else(|e| panic!("{rid}: {e}\n{}", emu.output()));
}

/// A Python text line of invocation `rid` at `level`.
fn py(rid: &str, level: &str, text: &str) -> Value {
    json!(format!("[{level}]\t{TS}\t{rid}\t{text}"))
}

/// The invocation (SERVER) spans, by `faas.invocation_id`.
fn invocation_spans(spans: &[Span]) -> Vec<(String, &Span)> {
    spans
        .iter()
        .filter(|s| s.kind == 2)
        .filter_map(|s| Some((attr_str(&s.attributes, "faas.invocation_id")?.to_owned(), s)))
        .collect()
}

/// Shuts down and waits until the collector holds `logs` log records.
async fn finish(emu: &Emulator, collector: &FaultCollector, logs: usize) {
    spin_down(emu).await;
    collector
        .wait_until("log records", Duration::from_secs(10), |c| {
            c.log_records().len() >= logs
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
}

/// The latest total of a FaaS counter.
fn total(collector: &FaultCollector, name: &str) -> i64 {
    counter(collector, name, &[]).unwrap_or(0)
}

/// SplitMix64: the test's own deterministic trace ids.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `traceidratio` as the OpenTelemetry SDKs define it for a 128-bit id:
/// sampled when the lower 64 bits, shifted right by one, are below
/// `ratio * 2^63`.
fn ratio_keeps(trace_id: &[u8; 16], ratio: f64) -> bool {
    let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
    (low >> 1) < (ratio * (1u64 << 63) as f64) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceidratio_keeps_the_share_its_trace_ids_select_with_all_logs_and_exact_metrics() {
    let collector = FaultCollector::start().await;
    let emu = start(
        &collector,
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ],
    )
    .await;
    let mut seed = 0x5eed_0015_u64;
    let mut expected = BTreeSet::new();
    let mut all = BTreeSet::new();
    for _ in 0..40 {
        let (hi, lo) = (splitmix(&mut seed), splitmix(&mut seed));
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&hi.to_be_bytes());
        id[8..].copy_from_slice(&lo.to_be_bytes());
        let h = hex(&id);
        all.insert(h.clone());
        if ratio_keeps(&id, 0.25) {
            expected.insert(h.clone());
        }
        let rid = new_request_id();
        invoke(
            &emu,
            InvokeSpec {
                request_id: rid.clone(),
                trace_header: Some(format!(
                    "Root=1-{}-{};Parent=9a8b7c6d5e4f3a2b;Sampled=1",
                    &h[..8],
                    &h[8..]
                )),
                logs: vec![py(&rid, "INFO", "handled")],
                ..InvokeSpec::default()
            },
        )
        .await;
    }
    // The ids are not degenerate: the ratio's share of 40, give or take.
    assert!(
        (4..=17).contains(&expected.len()),
        "{} of 40 selected",
        expected.len()
    );
    finish(&emu, &collector, 40).await;

    let spans = collector.spans();
    let kept: BTreeSet<String> = invocation_spans(&spans)
        .iter()
        .map(|(_, s)| hex(&s.trace_id))
        .collect();
    assert_eq!(
        kept, expected,
        "invocation spans of exactly the selected trace ids"
    );
    assert_eq!(invocation_spans(&spans).len(), expected.len(), "once each");
    for s in &spans {
        assert!(
            expected.contains(&hex(&s.trace_id)),
            "span {} of an unselected trace",
            s.name
        );
        assert_eq!(s.flags & 1, 1, "exported spans are sampled");
    }
    let logs = collector.log_records();
    let handled: Vec<&LogRecord> = logs.iter().filter(|r| body(r) == "handled").collect();
    assert_eq!(handled.len(), 40, "every log record");
    for r in handled {
        let trace = hex(&r.trace_id);
        assert!(all.contains(&trace), "record keeps its trace id");
        assert_eq!(
            r.flags & 1,
            u32::from(expected.contains(&trace)),
            "sampled flag of {trace}"
        );
    }
    assert_eq!(total(&collector, "faas.invocations"), 40, "exact metrics");
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_zero_with_the_default_keep_rule_exports_exactly_the_failed_and_timed_out() {
    let collector = FaultCollector::start().await;
    let emu = start(
        &collector,
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    )
    .await;
    let statuses = [
        "success", "error", "success", "timeout", "failure", "success",
    ];
    let mut failed = BTreeSet::new();
    let mut ids = Vec::new();
    for status in statuses {
        let rid = new_request_id();
        if status != "success" {
            failed.insert(rid.clone());
        }
        ids.push(rid.clone());
        invoke(
            &emu,
            InvokeSpec {
                request_id: rid.clone(),
                logs: vec![py(&rid, "INFO", status)],
                status: status.into(),
                error_type: (status == "error").then(|| "Runtime.HandlerError".into()),
                ..InvokeSpec::default()
            },
        )
        .await;
    }
    finish(&emu, &collector, statuses.len()).await;
    let spans = collector.spans();
    let exported: BTreeSet<String> = invocation_spans(&spans)
        .into_iter()
        .map(|(rid, _)| rid)
        .collect();
    assert_eq!(
        exported, failed,
        "spans of exactly the failed and timed-out ones"
    );
    let logs = collector.log_records();
    for rid in &ids {
        let r = logs
            .iter()
            .find(|r| attr_str(&r.attributes, "faas.invocation_id") == Some(rid))
            .unwrap_or_else(|| panic!("the record of {rid}"));
        assert_eq!(r.flags & 1, u32::from(failed.contains(rid)), "{rid}");
        assert_eq!(r.trace_id.len(), 16);
    }
    assert_eq!(total(&collector, "faas.invocations"), 3);
    assert_eq!(total(&collector, "faas.errors"), 2);
    assert_eq!(total(&collector, "faas.timeouts"), 1);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_off_exports_no_span_and_complete_metrics_and_logs() {
    let collector = FaultCollector::start().await;
    let emu = start(
        &collector,
        &[
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("LAMBDA_OTEL_BRIDGE_SAMPLER_KEEP", "none"),
        ],
    )
    .await;
    for status in ["success", "error", "timeout", "success"] {
        let rid = new_request_id();
        invoke(
            &emu,
            InvokeSpec {
                request_id: rid.clone(),
                logs: vec![py(&rid, "INFO", status), json!("a plain line")],
                status: status.into(),
                ..InvokeSpec::default()
            },
        )
        .await;
    }
    finish(&emu, &collector, 8).await;
    assert_eq!(collector.spans(), Vec::<Span>::new(), "no span at all");
    let logs = collector.log_records();
    assert_eq!(logs.len(), 8, "every record");
    assert!(logs
        .iter()
        .all(|r| r.flags & 1 == 0 && r.trace_id.len() == 16));
    assert_eq!(total(&collector, "faas.invocations"), 2);
    assert_eq!(total(&collector, "faas.errors"), 1);
    assert_eq!(total(&collector, "faas.timeouts"), 1);
    assert_eq!(total(&collector, "faas.coldstarts"), 1);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_severity_warn_drops_every_info_record_keeps_the_rest_and_counts() {
    let collector = FaultCollector::start().await;
    let emu = start(
        &collector,
        &[("LAMBDA_OTEL_BRIDGE_LOGS_MIN_SEVERITY", "WARN")],
    )
    .await;
    // (record, kept?) in several runtime formats; extension lines too.
    let mut kept = Vec::new();
    let mut dropped: i64 = 0;
    for i in 0..3 {
        let rid = new_request_id();
        let node = |level: &str, text: &str| json!(format!("{TS}\t{rid}\t{level}\t{text}"));
        let logs = vec![
            (py(&rid, "INFO", &format!("py info {i}")), false),
            (py(&rid, "WARNING", &format!("py warning {i}")), true),
            (node("INFO", &format!("node info {i}")), false),
            (node("WARN", &format!("node warn {i}")), true),
            (node("ERROR", &format!("node error {i}")), true),
            (
                json!({"timestamp": TS, "level": "INFO", "message": format!("json info {i}"), "requestId": rid}),
                false,
            ),
            (
                json!({"timestamp": TS, "level": "ERROR", "message": format!("json error {i}"), "requestId": rid}),
                true,
            ),
            (json!(format!("plain print {i}")), true),
        ];
        let extension = vec![
            (json!(format!("[INFO] ext info {i}")), false),
            (json!(format!("[WARN] ext warn {i}")), true),
        ];
        for (record, keep) in logs.iter().chain(&extension) {
            let text = match record {
                Value::String(s) => s.rsplit('\t').next().unwrap_or(s).to_owned(),
                other => other["message"].as_str().unwrap_or_default().to_owned(),
            };
            let text = text
                .trim_start_matches("[INFO] ")
                .trim_start_matches("[WARN] ")
                .to_owned();
            if *keep {
                kept.push(text);
            } else {
                dropped += 1;
            }
        }
        invoke(
            &emu,
            InvokeSpec {
                request_id: rid.clone(),
                logs: logs.into_iter().map(|(r, _)| r).collect(),
                extension_logs: extension.into_iter().map(|(r, _)| r).collect(),
                ..InvokeSpec::default()
            },
        )
        .await;
    }
    finish(&emu, &collector, kept.len()).await;
    let bodies: Vec<String> = collector.log_records().iter().map(body).collect();
    let mut got = bodies.clone();
    got.sort();
    let mut want = kept.clone();
    want.sort();
    assert_eq!(
        got, want,
        "every WARN, ERROR and unknown-severity record, and only them"
    );
    assert!(bodies.iter().all(|b| !b.contains("info")));
    assert_eq!(
        counter(
            &collector,
            "lambda_otel_bridge.logs.filtered",
            &[("reason", "min_severity")]
        ),
        Some(dropped),
        "the drop is counted"
    );
    collector.stop().await;
}

/// The string values of `attributes`.
fn strings(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .filter_map(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(AV::StringValue(s)) => Some((a.key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

/// One invocation whose span and log records have long string attributes.
async fn long_attributes(emu: &Emulator, customer: &str) -> String {
    let rid = new_request_id();
    invoke(
        emu,
        InvokeSpec {
            request_id: rid.clone(),
            logs: vec![
                json!({"timestamp": TS, "level": "INFO", "message": "order", "requestId": rid,
                       "customer": customer, "orderId": "4711"}),
                json!("a plain line"),
            ],
            ..InvokeSpec::default()
        },
    )
    .await;
    rid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_length_limit_40_bounds_every_span_and_log_attribute() {
    let collector = FaultCollector::start().await;
    let emu = start(&collector, &[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "40")]).await;
    // 49 characters, 52 bytes: cut by characters, at a UTF-8 boundary.
    let customer = "Müller-Lüdenscheidt GmbH & Co. KG, Abteilung Köln";
    assert_eq!((customer.chars().count(), customer.len()), (49, 52));
    let rid = long_attributes(&emu, customer).await;
    finish(&emu, &collector, 2).await;
    let spans = collector.spans();
    let logs = collector.log_records();
    assert!(!spans.is_empty() && logs.len() == 2);
    let all = spans
        .iter()
        .flat_map(|s| strings(&s.attributes))
        .chain(logs.iter().flat_map(|r| strings(&r.attributes)));
    for (key, value) in all {
        assert!(value.chars().count() <= 40, "{key}={value:?}");
    }
    let cut: String = customer.chars().take(40).collect();
    let record = logs
        .iter()
        .find(|r| body(r) == "order")
        .expect("the JSON record");
    assert_eq!(attr_str(&record.attributes, "customer"), Some(cut.as_str()));
    // The request id (36 characters) fits; the invoked ARN did not.
    let (_, span) = invocation_spans(&spans)
        .into_iter()
        .find(|(id, _)| *id == rid)
        .expect("the invocation span");
    let arn = attr_str(&span.attributes, "aws.lambda.invoked_arn").expect("ARN");
    assert_eq!(arn.chars().count(), 40, "{arn}");
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrecord_count_limit_1_leaves_one_attribute_and_counts_the_rest() {
    let collector = FaultCollector::start().await;
    let emu = start(&collector, &[("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "1")]).await;
    long_attributes(&emu, "Müller").await;
    finish(&emu, &collector, 2).await;
    let logs = collector.log_records();
    assert_eq!(logs.len(), 2);
    for r in &logs {
        assert!(r.attributes.len() <= 1, "{:?}", r.attributes);
    }
    // The JSON record would have had customer, orderId, aws.lambda.log.source and
    // faas.invocation_id; the plain line the last two.
    let dropped = |text: &str| {
        logs.iter()
            .find(|r| body(r) == text)
            .map(|r| (r.attributes.len(), r.dropped_attributes_count))
    };
    assert_eq!(dropped("order"), Some((1, 3)));
    assert_eq!(dropped("a plain line"), Some((1, 1)));
    // Spans are not limited by the log-record form.
    let spans = collector.spans();
    assert!(invocation_spans(&spans)
        .iter()
        .all(|(_, s)| s.attributes.len() > 1 && s.dropped_attributes_count == 0));
    collector.stop().await;
}
