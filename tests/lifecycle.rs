//! Black-box tests of the extension lifecycle and the Telemetry receiver: the
//! real binary runs under the emulated Lambda platform (`support::emulator`)
//! and exports to an OTLP receiver (`mock-collector`, or `rotel`).

mod support;

use std::time::Duration;

use mock_collector::ServerHandle;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::json;
use support::common::{
    body, env, failed_init, one_line_arrives, otlp_env, spin_down, start_initialized,
    start_mock_collector, start_with, summary_field, summary_line,
};
use support::emulator::{
    extension_binary, new_request_id, telemetry_event, Emulator, EmulatorOptions, InvokeSpec,
};
use support::otlp::{attr, attr_str, hex};
use support::rotel::Rotel;

const TRACE_HEADER: &str =
    "Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Parent=9a8b7c6d5e4f3a2b;Sampled=1";

async fn logs_of(server: &ServerHandle) -> Vec<LogRecord> {
    server
        .with_collector(|c| c.logs().iter().map(|l| l.log_record().clone()).collect())
        .await
}

fn find<'a>(logs: &'a [LogRecord], body_text: &str) -> &'a LogRecord {
    let hits: Vec<&LogRecord> = logs.iter().filter(|r| body(r) == body_text).collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one record {body_text:?}; got {:?}",
        logs.iter().map(body).collect::<Vec<_>>()
    );
    hits[0]
}

/// The whole happy path, frozen between invocations: registration under the
/// executable's own name, subscription before the first /next and never
/// after, function log lines of several runtimes at the collector with their
/// invocation's ids and severity, and a clean exit after SHUTDOWN with the
/// last report processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_end_to_end_with_freezes() {
    let server = start_mock_collector().await;
    let emu = Emulator::start(
        &extension_binary(),
        "my-telemetry-ext",
        EmulatorOptions {
            freeze_between_invocations: true,
            extra_env: otlp_env(&format!("http://{}", server.addr()), "http/protobuf"),
            ..EmulatorOptions::default()
        },
    )
    .await;
    emu.init(
        vec![json!(
            "2025-03-04T10:15:30.000Z\tundefined\tINFO\tloading config"
        )],
        Duration::from_secs(10),
    )
    .await
    .expect("init completes");

    let reg = emu.registration().expect("registered");
    assert_eq!(reg.name, "my-telemetry-ext");
    assert!(reg
        .accept_feature
        .as_deref()
        .unwrap_or("")
        .contains("accountId"));
    assert_eq!(reg.events, ["INVOKE", "SHUTDOWN"]);

    let r1 = new_request_id();
    let r2 = new_request_id();
    let r3 = new_request_id();
    let ts = "2025-03-04T10:15:30.610Z";
    emu.invoke(InvokeSpec {
        request_id: r1.clone(),
        trace_header: Some(TRACE_HEADER.into()),
        logs: vec![
            json!(format!("[WARNING]\t{ts}\t{r1}\tpython warning\n")),
            json!(format!("{ts}\t{r1}\tERROR\tnode error")),
            json!("plain print one"),
        ],
        ..InvokeSpec::default()
    })
    .await
    .expect("invocation 1");
    assert!(
        emu.is_frozen(),
        "the emulator froze the extension after /next"
    );
    // Exported before /next, i.e. before the freeze: already at the collector.
    let before_freeze: Vec<String> = logs_of(&server).await.iter().map(body).collect();
    for text in [
        "python warning",
        "node error",
        "plain print one",
        "loading config",
    ] {
        assert!(
            before_freeze.iter().any(|b| b == text),
            "{text:?} not exported before /next: {before_freeze:?}"
        );
    }
    emu.invoke(InvokeSpec {
        request_id: r2.clone(),
        logs: vec![
            json!({"timestamp": ts, "level": "ERROR", "message": "json error", "requestId": r2, "orderId": 4711}),
            json!(format!("E, [2025-03-04T10:15:30.689856 #8] ERROR {r2} -- : ruby error")),
        ],
        status: "error".into(),
        error_type: Some("Runtime.HandlerError".into()),
        ..InvokeSpec::default()
    })
    .await
    .expect("invocation 2");
    emu.invoke(InvokeSpec {
        request_id: r3.clone(),
        logs: vec![json!("[INFO] java info"), json!("plain print three")],
        ..InvokeSpec::default()
    })
    .await
    .expect("invocation 3");

    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert!(
        out.exited_by_itself && !out.killed,
        "{out:?}\n{}",
        emu.output()
    );
    assert_eq!(out.exit_code, Some(0), "{}", emu.output());
    assert!(out.elapsed < Duration::from_millis(1500), "{out:?}");
    // The last invocation's report arrived during shutdown and was processed.
    // The last invocation's report is delivered only at shutdown (after its
    // /next); its extensionOverhead span at the collector shows it was
    // processed and exported before the exit.
    server
        .wait_until(|c| c.span_count() >= 16, Duration::from_secs(5))
        .await
        .unwrap_or_else(|_| panic!("spans missing; extension output:\n{}", emu.output()));
    let overhead_of_r3 = server
        .with_collector(|c| {
            let spans: Vec<_> = c.spans().iter().map(|s| s.span().clone()).collect();
            let inv = spans.iter().find(|s| {
                s.kind == 2
                    && s.attributes.iter().any(|a| {
                        a.key == "faas.invocation_id"
                            && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()), Some(AV::StringValue(v)) if *v == r3)
                    })
            })?;
            Some(
                spans
                    .iter()
                    .any(|s| s.name == "extensionOverhead" && s.parent_span_id == inv.span_id),
            )
        })
        .await;
    assert_eq!(
        overhead_of_r3,
        Some(true),
        "the last report was not processed before exit"
    );

    // Calls: one subscription, after register and before the first /next.
    let calls = emu.calls();
    let idx = |pred: &dyn Fn(&support::emulator::RecordedCall) -> bool| calls.iter().position(pred);
    let register = idx(&|c| c.path.ends_with("/extension/register")).unwrap();
    let subscribes: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.path.contains("/telemetry"))
        .map(|(i, _)| i)
        .collect();
    let first_next = idx(&|c| c.path.ends_with("/event/next")).unwrap();
    assert_eq!(subscribes.len(), 1, "{calls:?}");
    assert!(register < subscribes[0] && subscribes[0] < first_next);
    let sub = emu.subscription().unwrap();
    assert_eq!(sub["schemaVersion"], "2025-01-29");
    assert_eq!(sub["buffering"]["timeoutMs"], 25);
    assert!(sub["destination"]["URI"]
        .as_str()
        .unwrap()
        .starts_with("http://sandbox.localdomain:"));

    // Logs at the collector: every line exactly once, with its invocation.
    server
        .wait_until(|c| c.log_count() >= 8, Duration::from_secs(5))
        .await
        .unwrap_or_else(|_| panic!("logs missing; extension output:\n{}", emu.output()));
    let logs = logs_of(&server).await;
    let function_logs: Vec<&LogRecord> = logs
        .iter()
        .filter(|r| attr_str(&r.attributes, "aws.lambda.log.source") == Some("function"))
        .collect();
    assert_eq!(
        function_logs.len(),
        8,
        "{:?}",
        logs.iter().map(body).collect::<Vec<_>>()
    );

    let w = find(&logs, "python warning");
    assert_eq!(
        (w.severity_number, w.severity_text.as_str()),
        (13, "WARNING")
    );
    assert_eq!(
        attr_str(&w.attributes, "faas.invocation_id"),
        Some(r1.as_str())
    );
    assert_eq!(hex(&w.trace_id), "67a1b2c34d5e6f708192a3b4c5d6e7f8");
    let n = find(&logs, "node error");
    assert_eq!(n.severity_number, 17);
    let p = find(&logs, "plain print one");
    assert_eq!(p.severity_number, 0);
    assert_eq!(
        attr_str(&p.attributes, "faas.invocation_id"),
        Some(r1.as_str())
    );
    assert_eq!(p.trace_id, w.trace_id);
    assert_eq!(p.span_id, w.span_id);

    let j = find(&logs, "json error");
    assert_eq!(j.severity_number, 17);
    assert_eq!(
        attr_str(&j.attributes, "faas.invocation_id"),
        Some(r2.as_str())
    );
    assert_eq!(attr(&j.attributes, "orderId"), Some(&AV::IntValue(4711)));
    let rb = find(&logs, "ruby error");
    assert_eq!(rb.trace_id, j.trace_id, "same invocation, same trace");
    assert_ne!(
        rb.trace_id, w.trace_id,
        "different invocations, different traces"
    );
    assert_eq!(rb.trace_id.len(), 16);

    let ji = find(&logs, "java info");
    assert_eq!(ji.severity_number, 9);
    let p3 = find(&logs, "plain print three");
    assert_eq!(
        attr_str(&p3.attributes, "faas.invocation_id"),
        Some(r3.as_str())
    );
    assert_eq!(p3.span_id, ji.span_id);

    let init = find(&logs, "loading config");
    assert_eq!(init.severity_number, 9);
}

/// A batch with SnapStart restore events, JSON-object function records, an
/// unknown event type and one malformed element loses none of its other
/// events; a non-array body gets 400 and the listener keeps serving; an
/// oversized body gets 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_is_lenient_and_bounded() {
    let server = start_mock_collector().await;
    let emu = start_with(
        otlp_env(&format!("http://{}", server.addr()), "http/protobuf"),
        false,
    )
    .await;
    emu.wait_delivered(Duration::from_secs(5))
        .await
        .expect("init telemetry delivered");

    let rid = new_request_id();
    let batch = json!([
        telemetry_event(
            "platform.restoreStart",
            json!({"functionName": "orders-api", "functionVersion": "17", "instanceMaxMemory": "1024"})
        ),
        telemetry_event("platform.restoreRuntimeDone", json!({"status": "success"})),
        telemetry_event(
            "platform.restoreReport",
            json!({"status": "success", "metrics": {"durationMs": 284.61}})
        ),
        telemetry_event(
            "function",
            json!({"level": "INFO", "message": "json one", "requestId": rid})
        ),
        42,
        telemetry_event("platform.somethingNew", json!({"whatever": [1, 2, 3]})),
        telemetry_event(
            "function",
            json!({"level": "DEBUG", "message": "json two", "requestId": rid, "nested": {"a": true}})
        ),
        telemetry_event("extension", json!("ext text line")),
    ]);
    let status = emu
        .push_raw(serde_json::to_vec(&batch).unwrap())
        .await
        .unwrap();
    assert_eq!(status, 200);

    // Not an array: 400 with a JSON error, and the listener keeps serving.
    let sub = emu.subscription().unwrap();
    let uri = sub["destination"]["URI"]
        .as_str()
        .unwrap()
        .replace("sandbox.localdomain", "127.0.0.1");
    let bad = support::emulator::http_request(
        "POST",
        &uri,
        &[("content-type", "application/json")],
        br#"{"type":"function","record":"not in an array"}"#.to_vec(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["errorMessage"]
            .as_str()
            .unwrap()
            .contains("array"),
        "{}",
        bad.body
    );
    let again = json!([telemetry_event(
        "function",
        json!({"level": "WARN", "message": "after the bad body", "requestId": rid})
    )]);
    assert_eq!(
        emu.push_raw(serde_json::to_vec(&again).unwrap())
            .await
            .unwrap(),
        200
    );

    // Over the limit (2 x 262144 + envelope allowance): 413; still serving after.
    let huge = format!(
        "[{}]",
        vec![format!("{:?}", "x".repeat(1000)); 1200].join(",")
    );
    assert!(huge.len() > 1_000_000);
    // The answer (with `Connection: close`) comes before the body has been
    // read; the listener then closes the connection with the rest of the
    // body unread, which resets it: a client still sending may see the reset
    // instead of the 413 (Lambda retries either, then drops the batch with
    // `platform.logsDropped`). The next batch goes on a new connection.
    match emu.push_raw(huge.into_bytes()).await {
        Ok(status) => assert_eq!(status, 413),
        Err(e) => assert!(e.contains("client error"), "{e}"),
    }
    let last = json!([telemetry_event(
        "function",
        json!({"level": "INFO", "message": "after the huge body", "requestId": rid})
    )]);
    assert_eq!(
        emu.push_raw(serde_json::to_vec(&last).unwrap())
            .await
            .unwrap(),
        200
    );

    // An invocation makes the extension flush.
    emu.invoke(InvokeSpec::default()).await.expect("invoke");
    spin_down(&emu).await;
    summary_line(&emu).await;
    assert!(
        emu.output().contains("skipped_events=1"),
        "{}",
        emu.output()
    );
    assert!(
        emu.output().contains("rejected_bodies=1"),
        "{}",
        emu.output()
    );

    server
        .wait_until(|c| c.log_count() >= 5, Duration::from_secs(5))
        .await
        .unwrap_or_else(|_| panic!("logs missing; extension output:\n{}", emu.output()));
    let logs = logs_of(&server).await;
    for text in [
        "json one",
        "json two",
        "ext text line",
        "after the bad body",
        "after the huge body",
    ] {
        let r = find(&logs, text);
        if text != "ext text line" {
            // No invocation has this id (the records are pushed by hand, with
            // no INVOKE or platform.start naming it): it attributes nothing
            // and stays the record's `requestId` attribute.
            assert_eq!(attr_str(&r.attributes, "requestId"), Some(rid.as_str()));
            assert_eq!(attr(&r.attributes, "faas.invocation_id"), None);
        }
    }
    assert_eq!(find(&logs, "json two").severity_number, 5);
    assert_eq!(
        attr_str(
            &find(&logs, "ext text line").attributes,
            "aws.lambda.log.source"
        ),
        Some("extension")
    );
}

/// A configuration error after registering goes to /extension/init/error
/// with Extension.ConfigInvalid and a message naming the variable, and the
/// process exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_error_is_reported_as_init_error() {
    let emu = Emulator::start_extension(EmulatorOptions {
        extra_env: vec![("LAMBDA_OTEL_BRIDGE_TELEMETRY_TIMEOUT_MS".into(), "5".into())],
        ..EmulatorOptions::default()
    })
    .await;
    let err = failed_init(&emu).await;
    let calls = emu.calls();
    assert_eq!(
        err.header("Lambda-Extension-Function-Error-Type"),
        Some("Extension.ConfigInvalid")
    );
    assert!(
        err.body.contains("LAMBDA_OTEL_BRIDGE_TELEMETRY_TIMEOUT_MS"),
        "{}",
        err.body
    );
    assert!(!calls
        .iter()
        .any(|c| c.path.contains("/telemetry") || c.path.ends_with("/event/next")));
}

/// A 202 from an emulator without Telemetry API support: one warning, and
/// the lifecycle keeps working without waiting for telemetry that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_not_supported_keeps_working() {
    let emu = start_initialized(EmulatorOptions {
        telemetry_supported: false,
        // The longest report wait (1.5 s): a shutdown that waited for a
        // report could not end before it.
        extra_env: env(&[("LAMBDA_OTEL_BRIDGE_SHUTDOWN_REPORT_WAIT_MS", "1500")]),
        ..EmulatorOptions::default()
    })
    .await;
    for _ in 0..3 {
        let o = emu.invoke(InvokeSpec::default()).await.expect("invoke");
        let post = o.next_called_at.saturating_sub(o.invoke_sent_at);
        assert!(
            post < Duration::from_millis(1500),
            "waited for telemetry that cannot come: {o:?}"
        );
    }
    let out = spin_down(&emu).await;
    // The last invocation's report is outstanding (with the Telemetry API
    // SHUTDOWN would wait for it), but none can come, so shutdown does not
    // wait: it ends before the report wait could have.
    let summary = summary_line(&emu).await;
    assert!(summary_field(&summary, "awaiting_report") >= 1, "{summary}");
    eprintln!("shutdown without the Telemetry API took {:?}", out.elapsed);
    assert!(
        out.exited_by_itself && out.elapsed < Duration::from_millis(1500),
        "waited for a report that cannot come: {out:?}"
    );
    assert_eq!(
        emu.output()
            .matches("the Telemetry API is not supported here")
            .count(),
        1,
        "{}",
        emu.output()
    );
}

/// A platform that refuses schema 2025-01-29 with 400 gets 2022-12-13.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_fallback() {
    let server = start_mock_collector().await;
    let emu = start_initialized(EmulatorOptions {
        accepted_schema_versions: vec!["2022-12-13".into()],
        extra_env: otlp_env(&format!("http://{}", server.addr()), "http/protobuf"),
        ..EmulatorOptions::default()
    })
    .await;
    assert_eq!(emu.subscription().unwrap()["schemaVersion"], "2022-12-13");
    let rid = one_line_arrives(&emu, &server, "after fallback").await;
    let logs = logs_of(&server).await;
    assert_eq!(
        attr_str(
            &find(&logs, "after fallback").attributes,
            "faas.invocation_id"
        ),
        Some(rid.as_str())
    );
    spin_down(&emu).await;
}

/// SnapStart: the bridge takes its SnapStart path (the export before the
/// snapshot, then the first `/next` sent by the event loop over the
/// connection the registration used, not before the async runtime exists)
/// and invocations after it are delivered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_start_sends_the_first_next_after_the_snapshot_export() {
    let server = start_mock_collector().await;
    let mut extra = otlp_env(&format!("http://{}", server.addr()), "http/protobuf");
    extra.extend(env(&[("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "debug")]));
    let emu = start_initialized(EmulatorOptions {
        initialization_type: "snap-start".into(),
        extra_env: extra,
        ..EmulatorOptions::default()
    })
    .await;
    assert!(
        emu.output()
            .contains("SnapStart: exporting before the snapshot, then the first /next"),
        "{}",
        emu.output()
    );
    let rid = one_line_arrives(&emu, &server, "after the restore").await;
    let logs = logs_of(&server).await;
    assert_eq!(
        attr_str(
            &find(&logs, "after the restore").attributes,
            "faas.invocation_id"
        ),
        Some(rid.as_str())
    );
    spin_down(&emu).await;
}

/// Whether the ELF executable at `path` names a dynamic loader (`PT_INTERP`).
fn has_interpreter(path: &std::path::Path) -> bool {
    let elf = std::fs::read(path).expect("the extension binary");
    assert_eq!(&elf[..4], b"\x7fELF");
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .any(|i| u32::from_le_bytes(elf[phoff + i * phentsize..][..4].try_into().unwrap()) == 3)
}

/// The shared libraries the running extension maps: none at all for a
/// binary that links glibc statically (`BRIDGE_LINK=static
/// scripts/build-layer.sh`); for a dynamic build (the shipped one, linked by
/// zig, or `cargo build`) the C library and no `libgcc_s.so.1`: the
/// unwinder is linked into the binary (zig's own, or libgcc's by build.rs),
/// one shared library fewer to load at every cold start
/// (docs/PERFORMANCE.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extension_loads_no_libgcc_s() {
    let emu = start_initialized(EmulatorOptions::default()).await;
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", emu.pid()))
        .expect("the extension's /proc/PID/maps");
    if has_interpreter(&extension_binary()) {
        assert!(maps.contains("libc.so"), "{maps}");
        assert!(!maps.contains("libgcc_s"), "{maps}");
    } else {
        assert!(!maps.contains(".so"), "{maps}");
    }
    spin_down(&emu).await;
}

/// `LAMBDA_OTEL_BRIDGE_LOG_JSON=true`: the extension's own lines on stderr
/// are JSON objects with a timestamp, the level and the message in `fields`
/// (the formatter is built at the first line; src/diagnostics.rs), and the
/// debug level shows the subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_log_lines_in_json() {
    let emu = start_initialized(EmulatorOptions {
        extra_env: env(&[
            ("LAMBDA_OTEL_BRIDGE_LOG_JSON", "true"),
            ("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "debug"),
        ]),
        ..EmulatorOptions::default()
    })
    .await;
    spin_down(&emu).await;
    let output = emu.output();
    let lines: Vec<serde_json::Value> = output
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let subscribed = lines
        .iter()
        .find(|v| v["fields"]["message"] == "subscribed to the Telemetry API")
        .unwrap_or_else(|| panic!("no JSON line for the subscription in:\n{output}"));
    assert_eq!(subscribed["level"], "DEBUG", "{subscribed}");
    assert!(
        subscribed["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{subscribed}"
    );
}

/// Interop with a collector nobody here wrote: rotel receives the function
/// log lines over HTTP/protobuf and over gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_reach_rotel_over_http_and_grpc() {
    let Some(rotel) = Rotel::start().await else {
        return;
    };
    for (protocol, endpoint) in [
        ("http/protobuf", rotel.http_endpoint()),
        ("grpc", rotel.grpc_endpoint()),
    ] {
        let emu = start_initialized(EmulatorOptions {
            extra_env: otlp_env(&endpoint, protocol),
            ..EmulatorOptions::default()
        })
        .await;
        let rid = new_request_id();
        let line = format!("hello rotel over {protocol}");
        emu.invoke(InvokeSpec {
            request_id: rid.clone(),
            logs: vec![json!(format!(
                "[ERROR]\t2025-03-04T10:15:30.610Z\t{rid}\t{line}"
            ))],
            ..InvokeSpec::default()
        })
        .await
        .unwrap();
        rotel
            .wait_for(&[&line, &rid], Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}\nextension output:\n{}", emu.output()));
        spin_down(&emu).await;
    }
}
