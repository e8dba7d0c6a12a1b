//! Golden cases: replays every `proto-mapping/cases/<name>/input.json`
//! through the [`Mapper`] and compares the OTLP JSON of every flush with
//! `expected.json`. `BLESS=1` rewrites the expected files instead;
//! `GOLDEN_CASE=<substring>` restricts the run to matching cases. Besides the
//! comparison, case-independent invariants are asserted on the produced
//! output, so a wrong blessing cannot hide them. Format: proto-mapping/README.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use lambda_otel_bridge::parse_event;
use lambda_otel_bridge::parse_rfc3339;
use lambda_otel_bridge::Temporality;
use lambda_otel_bridge::{build_resource as build, ResourceInfo};
use lambda_otel_bridge::{min_severity, Limits, Sampling};
use lambda_otel_bridge::{InvokeInfo, SpanIdMode};
use lambda_otel_bridge::{Mapper, MapperSettings, Output};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};

#[path = "support/otlp.rs"]
mod otlp;
use otlp::{attr_str, hex};

/// Every case the suite must contain (more are welcome).
const REQUIRED_CASES: &[&str] = &[
    "cold-start-success",
    "warm-invocation",
    "error-with-error-type",
    "timeout",
    "no-xray",
    "snapstart-restore",
    "json-log-format",
    "text-logs-python",
    "text-logs-nodejs",
    "text-logs-java",
    "text-logs-dotnet",
    "text-logs-ruby",
    "plain-print",
    "multiline-stack-trace",
    "powertools-json-in-text-mode",
    "logs-dropped",
    "unknown-event-type",
    "lambda-managed-instances",
    "report-during-next-invocation",
    "provisioned-concurrency",
    "platform-log-lines",
    "delta-temporality",
    "sampled-out",
    "kept-by-rule",
    "limited-records",
];

/// Span `flags` bits (OTLP): the parent is known to be remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("proto-mapping/cases")
}

fn case_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cases_dir())
        .expect("proto-mapping/cases exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("input.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Input

struct Case {
    resource: ResourceInfo,
    config: MapperSettings,
    /// Applied to every flush's spans and log records, as the exporter does.
    limits: Limits,
    steps: Vec<Value>,
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn load_case(name: &str) -> Result<Case, String> {
    let path = cases_dir().join(name).join("input.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let input: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?;
    if input.get("description").and_then(Value::as_str).is_none() {
        return Err("input.json has no \"description\"".into());
    }
    let r = input
        .get("resource")
        .ok_or("input.json has no \"resource\"")?;
    let resource = ResourceInfo {
        service_name: opt_str(r, "service_name"),
        resource_attributes: opt_str(r, "resource_attributes"),
        function_name: opt_str(r, "function_name"),
        function_version: opt_str(r, "function_version"),
        region: opt_str(r, "region"),
        account_id: opt_str(r, "account_id"),
        memory_mb: r.get("memory_mb").and_then(Value::as_u64),
        instance_id: opt_str(r, "instance_id").ok_or("resource.instance_id is required")?,
    };
    let c = input.get("config").cloned().unwrap_or(json!({}));
    // Settings read from the environment by their own readers: sampling,
    // minimum log severity, attribute limits.
    let env: std::collections::HashMap<String, String> = match input.get("env") {
        None => Default::default(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    v.as_str().ok_or("env values are strings")?.to_owned(),
                ))
            })
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("\"env\" must be an object of strings".into()),
    };
    let sampling = Sampling::from_env(&env).map_err(|e| format!("env: {e}"))?;
    let logs_min_severity = min_severity(&env).map_err(|e| format!("env: {e}"))?;
    let limits = Limits::from_env(&env).map_err(|e| format!("env: {e}"))?;
    let temporality = match c.get("temporality").and_then(Value::as_str) {
        None | Some("cumulative") => Temporality::Cumulative,
        Some("delta") => Temporality::Delta,
        Some("lowmemory") => Temporality::LowMemory,
        Some(other) => return Err(format!("config.temporality {other:?} is not known")),
    };
    let config = MapperSettings {
        temporality,
        faas_trigger: opt_str(&c, "faas_trigger").unwrap_or_else(|| "other".into()),
        platform_log_lines: c
            .get("platform_log_lines")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        // As the lifecycle does: from the register response (= the resource inputs).
        function_name: resource.function_name.clone(),
        function_version: resource.function_version.clone(),
        span_id_mode: match opt_str(&c, "invocation_span_id").as_deref() {
            None | Some("telemetry") => SpanIdMode::Telemetry,
            Some("xray-parent") => SpanIdMode::XrayParent,
            Some(other) => return Err(format!("config.invocation_span_id {other:?} is not known")),
        },
        sampling,
        logs_min_severity,
    };
    let steps = input
        .get("steps")
        .and_then(Value::as_array)
        .ok_or("input.json has no \"steps\" array")?
        .clone();
    Ok(Case {
        resource,
        config,
        limits,
        steps,
    })
}

// ---------------------------------------------------------------------------
// Replay

/// What one replay produced: the OTLP output of every flush, and the request
/// ids of the `platform.start` events that were fed in.
struct Replay {
    flushes: Vec<Output>,
    started: BTreeSet<String>,
    /// The `observed` times of the batches.
    observed: BTreeSet<u64>,
}

fn replay(case: &Case) -> Result<Replay, String> {
    let mut mapper = Mapper::new(build(&case.resource).resource, case.config.clone());
    let mut flushes = Vec::new();
    let mut started = BTreeSet::new();
    let mut observed_times = BTreeSet::new();
    for (i, step) in case.steps.iter().enumerate() {
        let kind = step
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "observed"))
            .map(String::as_str);
        match kind {
            Some("invoke") => {
                let inv = &step["invoke"];
                let request_id =
                    opt_str(inv, "requestId").ok_or(format!("step {i}: invoke.requestId"))?;
                mapper.on_invoke(
                    &request_id,
                    InvokeInfo {
                        deadline_ms: inv.get("deadlineMs").and_then(Value::as_u64).unwrap_or(0),
                        invoked_function_arn: opt_str(inv, "invokedFunctionArn"),
                        xray_header: inv
                            .get("tracing")
                            .and_then(|t| t.get("value"))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    },
                );
            }
            Some("events") => {
                let observed = step
                    .get("observed")
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339)
                    .ok_or(format!("step {i}: \"observed\" must be an RFC 3339 time"))?;
                observed_times.insert(observed);
                let events = step["events"]
                    .as_array()
                    .ok_or(format!("step {i}: \"events\" must be an array"))?;
                for element in events {
                    // Each element is decoded on its own, as the receiver does;
                    // a malformed one is skipped.
                    let Ok(ev) = parse_event(&element.to_string()) else {
                        continue;
                    };
                    if element["type"] == "platform.start" {
                        if let Some(rid) = element["record"]["requestId"].as_str() {
                            started.insert(rid.to_owned());
                        }
                    }
                    mapper.ingest(ev, observed);
                }
            }
            Some("flush") => flushes.push(limited(&case.limits, mapper.take())),
            // SHUTDOWN: what the lifecycle does (finish, incomplete spans, take).
            Some("shutdown") => flushes.push(limited(&case.limits, mapper.take_final())),
            other => return Err(format!("step {i}: unknown step {other:?}")),
        }
    }
    Ok(Replay {
        flushes,
        started,
        observed: observed_times,
    })
}

/// What the exporter applies to the bridge's data before encoding it.
fn limited(limits: &Limits, mut o: Output) -> Output {
    if let Some(t) = o.traces.as_mut() {
        limits.apply_traces(t);
    }
    if let Some(l) = o.logs.as_mut() {
        limits.apply_logs(l);
    }
    o
}

fn to_json(flushes: &[Output]) -> Value {
    let entries: Vec<Value> = flushes
        .iter()
        .map(|o| {
            json!({
                "traces": serde_json::to_value(&o.traces).expect("traces serialize"),
                "metrics": serde_json::to_value(&o.metrics).expect("metrics serialize"),
                "logs": serde_json::to_value(&o.logs).expect("logs serialize"),
            })
        })
        .collect();
    json!({ "flushes": entries })
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON serializes");
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------
// Diff

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 {
        format!(
            "{}… ({} chars)",
            s.chars().take(300).collect::<String>(),
            s.len()
        )
    } else {
        s
    }
}

/// Collects the differing JSON paths (leaves, or containers of different shape).
fn diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<(String, String, String)>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let keys: BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (e.get(k), a.get(k)) {
                    (Some(ev), Some(av)) => diff(&p, ev, av, out),
                    (Some(ev), None) => out.push((p, short(ev), "(missing)".into())),
                    (None, Some(av)) => out.push((p, "(missing)".into(), short(av))),
                    (None, None) => unreachable!(),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for i in 0..e.len().max(a.len()) {
                let p = format!("{path}[{i}]");
                match (e.get(i), a.get(i)) {
                    (Some(ev), Some(av)) => diff(&p, ev, av, out),
                    (Some(ev), None) => out.push((p, short(ev), "(missing)".into())),
                    (None, Some(av)) => out.push((p, "(missing)".into(), short(av))),
                    (None, None) => unreachable!(),
                }
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push((path.to_owned(), short(e), short(a))),
    }
}

fn describe_diff(expected: &Value, actual: &Value) -> String {
    let mut d = Vec::new();
    diff("$", expected, actual, &mut d);
    let mut s = format!("{} differing path(s)", d.len());
    for (path, e, a) in d.iter().take(5) {
        let _ = write!(
            s,
            "\n    at {path}\n      expected: {e}\n      actual:   {a}"
        );
    }
    if d.len() > 5 {
        let _ = write!(s, "\n    … and {} more", d.len() - 5);
    }
    s
}

// ---------------------------------------------------------------------------
// Invariants

fn nonzero(b: &[u8]) -> bool {
    b.iter().any(|x| *x != 0)
}

/// Case-independent properties of what the mapper produced.
fn check_invariants(r: &Replay) -> Vec<String> {
    let mut errs = Vec::new();
    let spans: Vec<(usize, &Span)> = r
        .flushes
        .iter()
        .enumerate()
        .flat_map(|(f, o)| {
            o.traces
                .iter()
                .flat_map(|t| &t.resource_spans)
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(move |s| (f, s))
        })
        .collect();

    // Spans: ids, times, uniqueness, parents.
    let mut by_id: BTreeMap<Vec<u8>, &Span> = BTreeMap::new();
    for (f, s) in &spans {
        let who = format!("flush {f}: span {:?} {}", s.name, hex(&s.span_id));
        if s.trace_id.len() != 16 || !nonzero(&s.trace_id) {
            errs.push(format!(
                "{who}: trace id {:?} is not 16 non-zero bytes",
                hex(&s.trace_id)
            ));
        }
        if s.span_id.len() != 8 || !nonzero(&s.span_id) {
            errs.push(format!("{who}: span id is not 8 non-zero bytes"));
        }
        if !s.parent_span_id.is_empty()
            && (s.parent_span_id.len() != 8 || !nonzero(&s.parent_span_id))
        {
            errs.push(format!(
                "{who}: parent span id {:?} is malformed",
                hex(&s.parent_span_id)
            ));
        }
        if s.start_time_unix_nano == 0 {
            errs.push(format!("{who}: start time is 0"));
        }
        if s.end_time_unix_nano < s.start_time_unix_nano {
            errs.push(format!(
                "{who}: end {} < start {}",
                s.end_time_unix_nano, s.start_time_unix_nano
            ));
        }
        if by_id.insert(s.span_id.clone(), s).is_some() {
            errs.push(format!("{who}: span id exported twice in this case"));
        }
    }
    for (f, s) in &spans {
        let who = format!("flush {f}: span {:?} {}", s.name, hex(&s.span_id));
        if s.parent_span_id.is_empty() {
            continue;
        }
        let remote = s.flags & HAS_IS_REMOTE != 0 && s.flags & IS_REMOTE != 0;
        match by_id.get(&s.parent_span_id) {
            Some(p) if p.trace_id != s.trace_id => errs.push(format!(
                "{who}: parent {} is in another trace ({} vs {})",
                hex(&s.parent_span_id),
                hex(&p.trace_id),
                hex(&s.trace_id)
            )),
            Some(_) => {}
            None if !remote => errs.push(format!(
                "{who}: local parent {} was never exported (orphan)",
                hex(&s.parent_span_id)
            )),
            None => {}
        }
    }

    // One SERVER span per invocation that started.
    let mut server: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
    for (_, s) in &spans {
        if s.kind == SpanKind::Server as i32 {
            if let Some(rid) = attr_str(&s.attributes, "faas.invocation_id") {
                server.entry(rid.to_owned()).or_default().push(s);
            }
        }
    }
    // ... or none for an invocation sampled out, whose log records then all
    // carry the sampled flag off.
    let mut record_flags: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for l in r
        .flushes
        .iter()
        .flat_map(|o| &o.logs)
        .flat_map(|l| &l.resource_logs)
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
    {
        if let Some(rid) = attr_str(&l.attributes, "faas.invocation_id") {
            record_flags
                .entry(rid.to_owned())
                .or_default()
                .push(l.flags);
        }
    }
    for rid in &r.started {
        let flags = record_flags.get(rid).map(Vec::as_slice).unwrap_or(&[]);
        match server.get(rid).map(Vec::len).unwrap_or(0) {
            1 => {}
            0 if flags.iter().all(|f| f & 1 == 0) => {}
            n => errs.push(format!(
                "invocation {rid}: {n} SERVER spans (expected 1, or 0 when sampled out), record flags {flags:?}"
            )),
        }
    }
    // Only sampled spans are exported.
    for (f, s) in &spans {
        if s.flags & 1 == 0 {
            errs.push(format!(
                "flush {f}: span {:?} exported without the sampled flag",
                s.name
            ));
        }
    }

    // Logs: correlation.
    for (f, o) in r.flushes.iter().enumerate() {
        let records = o
            .logs
            .iter()
            .flat_map(|l| &l.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records);
        for (i, l) in records.enumerate() {
            let who = format!("flush {f}: log record {i}");
            if !r.observed.contains(&l.observed_time_unix_nano) {
                errs.push(format!(
                    "{who} ({:?}): observed time {} is not the receive time of any batch",
                    l.event_name, l.observed_time_unix_nano
                ));
            }
            if l.time_unix_nano == 0 {
                errs.push(format!("{who}: time is 0"));
            }
            if !l.trace_id.is_empty() && (l.trace_id.len() != 16 || !nonzero(&l.trace_id)) {
                errs.push(format!("{who}: malformed trace id {}", hex(&l.trace_id)));
            }
            if !l.span_id.is_empty() && (l.span_id.len() != 8 || !nonzero(&l.span_id)) {
                errs.push(format!("{who}: malformed span id {}", hex(&l.span_id)));
            }
            if l.trace_id.is_empty() != l.span_id.is_empty() {
                errs.push(format!("{who}: has only one of trace id / span id"));
            }
            let Some(rid) = attr_str(&l.attributes, "faas.invocation_id") else {
                continue;
            };
            if l.trace_id.len() != 16 || l.span_id.len() != 8 {
                errs.push(format!(
                    "{who}: faas.invocation_id {rid} but trace id {:?} / span id {:?}",
                    hex(&l.trace_id),
                    hex(&l.span_id)
                ));
                continue;
            }
            if let Some([s]) = server.get(rid).map(Vec::as_slice) {
                if s.trace_id != l.trace_id || s.span_id != l.span_id {
                    errs.push(format!(
                        "{who}: invocation {rid} has span {}/{} but the record carries {}/{}",
                        hex(&s.trace_id),
                        hex(&s.span_id),
                        hex(&l.trace_id),
                        hex(&l.span_id)
                    ));
                }
            }
        }
    }

    // Metrics: point times.
    for (f, o) in r.flushes.iter().enumerate() {
        let metrics = o
            .metrics
            .iter()
            .flat_map(|m| &m.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics);
        for m in metrics {
            let times: Vec<(u64, u64)> = match &m.data {
                Some(Data::Sum(s)) => s
                    .data_points
                    .iter()
                    .map(|p| (p.start_time_unix_nano, p.time_unix_nano))
                    .collect(),
                Some(Data::Gauge(g)) => g
                    .data_points
                    .iter()
                    .map(|p| (p.start_time_unix_nano, p.time_unix_nano))
                    .collect(),
                Some(Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .map(|p| (p.start_time_unix_nano, p.time_unix_nano))
                    .collect(),
                Some(Data::ExponentialHistogram(h)) => h
                    .data_points
                    .iter()
                    .map(|p| (p.start_time_unix_nano, p.time_unix_nano))
                    .collect(),
                Some(Data::Summary(s)) => s
                    .data_points
                    .iter()
                    .map(|p| (p.start_time_unix_nano, p.time_unix_nano))
                    .collect(),
                None => {
                    errs.push(format!("flush {f}: metric {:?} has no data", m.name));
                    continue;
                }
            };
            if times.is_empty() {
                errs.push(format!("flush {f}: metric {:?} has no data points", m.name));
            }
            for (start, time) in times {
                if time == 0 || time < start {
                    errs.push(format!(
                        "flush {f}: metric {:?} point time {time} < start {start}",
                        m.name
                    ));
                }
            }
        }
    }
    errs
}

// ---------------------------------------------------------------------------
// Running a case

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Runs one case; returns the failures (empty = pass).
fn run_case(name: &str, bless: bool) -> Vec<String> {
    let case = match load_case(name) {
        Ok(c) => c,
        Err(e) => return vec![format!("input: {e}")],
    };
    let first = match catch_unwind(AssertUnwindSafe(|| replay(&case))) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return vec![format!("input: {e}")],
        Err(p) => return vec![format!("mapper panicked: {}", panic_message(p))],
    };
    let mut failures = Vec::new();
    // Compared as re-parsed text: serde_json (without `float_roundtrip`)
    // does not parse every shortest-repr double back bit-exactly, so both
    // sides go through the same parser.
    let actual: Value =
        serde_json::from_str(&pretty(&to_json(&first.flushes))).expect("produced JSON parses");

    match catch_unwind(AssertUnwindSafe(|| replay(&case))) {
        Ok(Ok(second)) => {
            let again: Value = serde_json::from_str(&pretty(&to_json(&second.flushes)))
                .expect("produced JSON parses");
            if again != actual {
                failures.push(format!(
                    "not deterministic: a second replay differs: {}",
                    describe_diff(&actual, &again)
                ));
            }
        }
        Ok(Err(e)) => failures.push(format!("second replay: {e}")),
        Err(p) => failures.push(format!("second replay panicked: {}", panic_message(p))),
    }

    for e in check_invariants(&first) {
        failures.push(format!("invariant: {e}"));
    }

    let expected_path = cases_dir().join(name).join("expected.json");
    if bless {
        let text = pretty(&to_json(&first.flushes));
        if let Err(e) = std::fs::write(&expected_path, text) {
            failures.push(format!("cannot write {}: {e}", expected_path.display()));
        }
        return failures;
    }
    match std::fs::read_to_string(&expected_path) {
        Err(e) => failures.push(format!(
            "{}: {e} (run with BLESS=1 to create it)",
            expected_path.display()
        )),
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Err(e) => failures.push(format!("expected.json is not JSON: {e}")),
            Ok(expected) if expected != actual => failures.push(format!(
                "output differs from expected.json: {}",
                describe_diff(&expected, &actual)
            )),
            Ok(_) => {
                // Equal as values; the text must be equal too (formatting, or
                // the last digits of a double the parser rounds the same way).
                let produced = pretty(&to_json(&first.flushes));
                if let Some((n, (e, a))) = text
                    .lines()
                    .zip(produced.lines())
                    .enumerate()
                    .find(|(_, (e, a))| e != a)
                {
                    failures.push(format!(
                        "expected.json differs as text at line {}:\n      expected: {}\n      actual:   {}",
                        n + 1,
                        e.trim(),
                        a.trim()
                    ));
                } else if text != produced {
                    failures
                        .push("expected.json differs as text (length or trailing newline)".into());
                }
            }
        },
    }
    failures
}

#[test]
fn golden_cases() {
    let bless = std::env::var("BLESS").is_ok_and(|v| !v.is_empty() && v != "0");
    let filter = std::env::var("GOLDEN_CASE").ok().filter(|f| !f.is_empty());
    let names: Vec<String> = case_names()
        .into_iter()
        .filter(|n| filter.as_deref().is_none_or(|f| n.contains(f)))
        .collect();
    assert!(
        !names.is_empty(),
        "no golden cases found in {}",
        cases_dir().display()
    );

    let mut report = String::new();
    let mut failed = 0;
    for name in &names {
        let failures = run_case(name, bless);
        if !failures.is_empty() {
            failed += 1;
            let _ = writeln!(report, "\n=== case {name}: {} failure(s)", failures.len());
            for f in failures {
                let _ = writeln!(report, "  - {f}");
            }
        }
    }
    let verb = if bless { "blessed" } else { "checked" };
    eprintln!("golden: {verb} {} case(s), {failed} failed", names.len());
    assert!(
        failed == 0,
        "{failed} of {} golden case(s) failed:{report}",
        names.len()
    );
}

#[test]
fn every_required_case_exists() {
    let names: BTreeSet<String> = case_names().into_iter().collect();
    let missing: Vec<&str> = REQUIRED_CASES
        .iter()
        .copied()
        .filter(|n| !names.contains(*n))
        .collect();
    assert!(missing.is_empty(), "missing golden cases: {missing:?}");
    for n in &names {
        let text = std::fs::read_to_string(cases_dir().join(n).join("input.json")).unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("case {n}: input.json is not JSON: {e}"));
        let d = v["description"].as_str().unwrap_or("");
        assert!(!d.is_empty(), "case {n}: empty description");
    }
}

#[test]
fn diff_names_the_first_differing_path() {
    let e = json!({"flushes": [{"logs": {"a": [1, 2]}, "traces": null}]});
    let a = json!({"flushes": [{"logs": {"a": [1, 3]}, "traces": null}]});
    let d = describe_diff(&e, &a);
    assert!(d.starts_with("1 differing path(s)"), "{d}");
    assert!(d.contains("$.flushes[0].logs.a[1]"), "{d}");
    assert!(
        d.contains("expected: 2") && d.contains("actual:   3"),
        "{d}"
    );
}

#[test]
fn invariants_catch_broken_output() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    let rid = "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11";
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    };
    let server = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        kind: SpanKind::Server as i32,
        start_time_unix_nano: 20,
        end_time_unix_nano: 10,
        attributes: vec![kv("faas.invocation_id", rid)],
        ..Span::default()
    };
    let orphan = Span {
        trace_id: vec![1; 16],
        span_id: vec![3; 8],
        parent_span_id: vec![9; 8],
        flags: HAS_IS_REMOTE | 1,
        start_time_unix_nano: 10,
        end_time_unix_nano: 10,
        ..Span::default()
    };
    let log = LogRecord {
        observed_time_unix_nano: 1,
        attributes: vec![kv("faas.invocation_id", rid)],
        ..LogRecord::default()
    };
    let out = Output {
        traces: Some(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![server.clone(), server, orphan],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }),
        metrics: None,
        logs: Some(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![log],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }),
    };
    let errs = check_invariants(&Replay {
        flushes: vec![out],
        started: [rid.to_owned()].into(),
        observed: [1].into(),
    });
    let all = errs.join("\n");
    for needle in [
        "end 10 < start 20",
        "span id exported twice",
        "never exported (orphan)",
        "2 SERVER spans",
        "faas.invocation_id 8f5ea1f1",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn the_readme_counts_the_cases() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let stated = format!(
        "{} golden cases in `proto-mapping/cases/`",
        case_names().len()
    );
    assert!(
        readme.contains(&stated),
        "README.md should say {stated:?} (section \"What is exported\")"
    );
}
