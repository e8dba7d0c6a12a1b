//! Builders of the Telemetry API events and Extensions API events the emulated platform emits:
//! init (or SnapStart restore) phases, INVOKE, and each invocation's `platform.start`,
//! `platform.runtimeDone` (with response spans) and `platform.report`, as on real Lambda
//! (reference §6).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::ids::{new_request_id, span_id_for};
use super::time::{iso8601, millis, round3, unix_ms};
use super::types::{EmulatorOptions, InvokeSpec};

/// `{"time", "type", "record"}` stamped now.
pub fn telemetry_event(kind: &str, record: Value) -> Value {
    json!({"time": iso8601(SystemTime::now()), "type": kind, "record": record})
}

pub(super) fn restamp(mut event: Value) -> Value {
    event["time"] = json!(iso8601(SystemTime::now()));
    event
}

fn function_arn(opts: &EmulatorOptions) -> String {
    let base = format!(
        "arn:aws:lambda:{}:{}:function:{}",
        opts.region, opts.account_id, opts.function_name
    );
    if opts.function_version == "$LATEST" {
        base
    } else {
        format!("{base}:{}", opts.function_version)
    }
}

/// `platform.initStart` or `platform.restoreStart`.
pub(super) fn phase_start_event(opts: &EmulatorOptions, restore: bool) -> Value {
    let mut record = json!({
        "functionName": opts.function_name,
        "functionVersion": opts.function_version,
        "instanceId": new_request_id(),
        "instanceMaxMemory": u64::from(opts.memory_mb) * 1024 * 1024,
        "runtimeVersion": "python:3.13.v21",
        "runtimeVersionArn": format!("arn:aws:lambda:{}::runtime:{}", opts.region, "0d1a2b3c".repeat(8)),
    });
    if restore {
        return telemetry_event("platform.restoreStart", record);
    }
    record["initializationType"] = json!(opts.initialization_type);
    record["phase"] = json!("init");
    telemetry_event("platform.initStart", record)
}

/// `platform.initRuntimeDone` or `platform.restoreRuntimeDone`.
pub(super) fn phase_runtime_done_event(opts: &EmulatorOptions, restore: bool) -> Value {
    if restore {
        return telemetry_event("platform.restoreRuntimeDone", json!({"status": "success"}));
    }
    let record = json!({
        "initializationType": opts.initialization_type,
        "phase": "init",
        "status": "success",
    });
    telemetry_event("platform.initRuntimeDone", record)
}

/// `platform.initReport` or `platform.restoreReport`.
pub(super) fn phase_report_event(opts: &EmulatorOptions, restore: bool, duration_ms: f64) -> Value {
    let metrics = json!({"durationMs": duration_ms});
    if restore {
        let record = json!({"status": "success", "metrics": metrics});
        return telemetry_event("platform.restoreReport", record);
    }
    let record = json!({
        "initializationType": opts.initialization_type,
        "phase": "init",
        "status": "success",
        "metrics": metrics,
    });
    telemetry_event("platform.initReport", record)
}

pub(super) fn invoke_event(opts: &EmulatorOptions, spec: &InvokeSpec) -> Value {
    let mut event = json!({
        "eventType": "INVOKE",
        "deadlineMs": unix_ms(SystemTime::now() + spec.timeout),
        "requestId": spec.request_id,
        "invokedFunctionArn": function_arn(opts),
    });
    if let Some(trace) = &spec.trace_header {
        event["tracing"] = json!({"type": "X-Amzn-Trace-Id", "value": trace});
    }
    event
}

/// Telemetry `TraceContext` with a span id derived from the request id.
pub(super) fn tracing_context(spec: &InvokeSpec) -> Option<Value> {
    spec.trace_header.as_ref().map(|value| {
        json!({
            "spanId": span_id_for(&spec.request_id),
            "type": "X-Amzn-Trace-Id",
            "value": value,
        })
    })
}

/// Adds `status`, `errorType` and `tracing` to an invocation record.
fn with_outcome(mut record: Value, spec: &InvokeSpec, tracing: &Option<Value>) -> Value {
    record["status"] = json!(spec.status);
    if let Some(error_type) = &spec.error_type {
        record["errorType"] = json!(error_type);
    }
    if let Some(tracing) = tracing {
        record["tracing"] = tracing.clone();
    }
    record
}

pub(super) fn start_event(
    opts: &EmulatorOptions,
    spec: &InvokeSpec,
    tracing: &Option<Value>,
) -> Value {
    let mut record = json!({"requestId": spec.request_id, "version": opts.function_version});
    if let Some(tracing) = tracing {
        record["tracing"] = tracing.clone();
    }
    telemetry_event("platform.start", record)
}

fn span(name: &str, start: SystemTime, duration_ms: f64) -> Value {
    json!({"name": name, "start": iso8601(start), "durationMs": duration_ms})
}

/// responseLatency (90 %), responseDuration (5 %) and the rest, back to back from `start`.
fn response_spans(start: SystemTime, total: Duration) -> (Value, Value, SystemTime, f64) {
    let total_ms = millis(total);
    let latency = round3(total_ms * 0.9);
    let response = round3(total_ms * 0.05);
    let latency_end = start + Duration::from_secs_f64(latency / 1000.0);
    let response_end = latency_end + Duration::from_secs_f64(response / 1000.0);
    let rest = round3((total_ms - latency - response).max(0.0));
    (
        span("responseLatency", start, latency),
        span("responseDuration", latency_end, response),
        response_end,
        rest,
    )
}

pub(super) fn runtime_done_event(
    spec: &InvokeSpec,
    tracing: &Option<Value>,
    start: SystemTime,
    handler: Duration,
) -> Value {
    let (latency, response, overhead_start, overhead_ms) = response_spans(start, handler);
    let record = json!({
        "requestId": spec.request_id,
        "spans": [latency, response, span("runtimeOverhead", overhead_start, overhead_ms)],
        "metrics": {"durationMs": millis(handler), "producedBytes": spec.produced_bytes},
    });
    telemetry_event("platform.runtimeDone", with_outcome(record, spec, tracing))
}

pub(super) struct ReportTiming {
    pub(super) handler: Duration,
    /// From runtimeDone to the extension's `/next`.
    pub(super) overhead: Duration,
    pub(super) runtime_done_wall: SystemTime,
    pub(super) cold_start_metric: Option<(&'static str, f64)>,
}

/// `platform.report`; `durationMs` covers handler + extension overhead (reference §6.3).
pub(super) fn report_event(
    opts: &EmulatorOptions,
    spec: &InvokeSpec,
    tracing: &Option<Value>,
    timing: ReportTiming,
) -> Value {
    let duration_ms = millis(timing.handler + timing.overhead);
    let mut metrics = json!({
        "durationMs": duration_ms,
        "billedDurationMs": duration_ms.ceil() as u64,
        "memorySizeMB": opts.memory_mb,
        "maxMemoryUsedMB": (opts.memory_mb / 4).max(1),
    });
    if let Some((name, value)) = timing.cold_start_metric {
        metrics[name] = json!(value);
    }
    let overhead = span(
        "extensionOverhead",
        timing.runtime_done_wall,
        millis(timing.overhead),
    );
    let record = json!({"requestId": spec.request_id, "metrics": metrics, "spans": [overhead]});
    telemetry_event("platform.report", with_outcome(record, spec, tracing))
}

/// Managed Instances report: only `durationMs`, response spans, no extensionOverhead.
pub(super) fn managed_instances_report_event(
    spec: &InvokeSpec,
    tracing: &Option<Value>,
    start: SystemTime,
    handler: Duration,
) -> Value {
    let (latency, response, _, _) = response_spans(start, handler);
    let record = json!({
        "requestId": spec.request_id,
        "metrics": {"durationMs": millis(handler)},
        "spans": [latency, response],
    });
    telemetry_event("platform.report", with_outcome(record, spec, tracing))
}
