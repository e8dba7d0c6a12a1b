//! Faults the bridge must survive, black-box, through the real binary under
//! the test emulator: a collector that flaps between failure modes, an
//! endpoint host that does not resolve, the extension killed mid-stream and
//! started again, telemetry still arriving during SHUTDOWN, and SHUTDOWN with
//! a slow collector. docs/RELIABILITY.md lists each with what is expected.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;
use support::common::{
    body, counter, endpoint_for, env, invoke_line, line, spin_down, start_with, summary_field,
    summary_line,
};
use support::emulator::{http_request, new_request_id, telemetry_event, InvokeSpec};
use support::fault_collector::{Fault, FaultCollector};
use support::rotel::free_port;

/// How many times each body arrived.
fn body_counts(collector: &FaultCollector) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in collector.log_records() {
        *counts.entry(body(&r)).or_default() += 1;
    }
    counts
}

/// The collector cycles through every failure mode (connection closed after
/// the request, 503 without Retry-After, 502, a hang past the export timeout,
/// gRPC UNAVAILABLE) with successes in between. No invocation waits more than
/// the flush budget, and every line and span arrives exactly once: failed
/// requests stay queued and are sent again, accepted ones are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_collector_delivers_everything_once_within_budget() {
    for protocol in ["http/protobuf", "grpc"] {
        let collector = FaultCollector::start().await;
        let endpoint = endpoint_for(&collector, protocol);
        let emu = start_with(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
                ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
                ("LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS", "400"),
            ]),
            true,
        )
        .await;
        let cycle = [
            Fault::Close,
            Fault::Ok,
            Fault::Status {
                code: 503,
                retry_after: None,
            },
            Fault::Ok,
            Fault::Status {
                code: 502,
                retry_after: None,
            },
            Fault::Hang,
            Fault::Ok,
            Fault::Grpc {
                code: 14,
                retry_after: None,
            },
            Fault::Ok,
        ];
        collector.push_faults(cycle.iter().cycle().take(45).cloned().collect());

        let invocations = 12;
        // The init span, then 5 per invocation.
        let mut spans_expected = 1;
        for i in 0..invocations {
            let o = invoke_line(&emu, &format!("flap {protocol} {i}")).await;
            // Budget 400 ms; the margin is for a loaded machine, not a target.
            assert!(
                o.delay_after_runtime() < Duration::from_millis(2000),
                "{protocol} {i}: {o:?}"
            );
            spans_expected += 5;
        }
        // The scripted faults end; on a slow machine some are still ahead
        // and an item may be waiting out a retry delay. Healthy flush points
        // deliver it (bounded): what is then left at SHUTDOWN is the
        // bridge's doing, not the machine's speed.
        let all_arrived = |expected: usize| {
            let counts = body_counts(&collector);
            collector.spans().len() >= expected
                && (0..invocations).all(|i| counts.contains_key(&format!("flap {protocol} {i}")))
        };
        for settle in 0..10 {
            if all_arrived(spans_expected as usize) {
                break;
            }
            invoke_line(&emu, &format!("settle {protocol} {settle}")).await;
            spans_expected += 5;
        }
        let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
        assert!(
            out.exited_by_itself,
            "{protocol}: {out:?}\n{}",
            emu.output()
        );
        let summary = summary_line(&emu).await;
        // Whatever the shutdown flush could not send is counted, never silent.
        let dropped = summary_field(&summary, "dropped_items");

        let counts = body_counts(&collector);
        let mut missing = 0;
        for i in 0..invocations {
            let text = format!("flap {protocol} {i}");
            match counts.get(&text).copied().unwrap_or(0) {
                0 => missing += 1,
                1 => {}
                n => panic!("{text} arrived {n} times\n{}", collector.summary()),
            }
        }
        assert!(
            missing as u64 <= dropped,
            "{protocol}: {missing} lines missing, {dropped} dropped items reported\n{summary}\n{}",
            collector.summary()
        );
        let spans = collector.spans();
        let unique: HashSet<(Vec<u8>, Vec<u8>)> = spans
            .iter()
            .map(|s| (s.trace_id.clone(), s.span_id.clone()))
            .collect();
        assert_eq!(unique.len(), spans.len(), "{protocol}: a span twice");
        // Every span arrived or was reported dropped.
        assert!(
            spans.len() as u64 + dropped >= spans_expected,
            "{protocol}: {} spans, {dropped} dropped\n{}",
            spans.len(),
            collector.summary()
        );
        // The faults were really served: failures happened and were retried.
        let failed = collector
            .requests()
            .iter()
            .filter(|r| !r.accepted())
            .count();
        assert!(failed >= 10, "{protocol}: {}", collector.summary());
        // With a healthy collector at the end (and flush points after the
        // faults), nothing is left behind.
        assert_eq!(
            dropped,
            0,
            "{protocol}: {}\n{}",
            emu.output(),
            collector.summary()
        );
    }
}

/// An endpoint whose host does not resolve: each invocation costs at most
/// the flush budget, SHUTDOWN exits by itself, and the undelivered data is
/// reported as dropped with the resolution error named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_endpoint_costs_the_budget_and_is_reported() {
    let emu = start_with(
        env(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://otel-collector.invalid:4318",
            ),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
            ("LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS", "300"),
        ]),
        true,
    )
    .await;
    for i in 0..3 {
        let o = invoke_line(&emu, &format!("unresolvable {i}")).await;
        assert!(
            o.delay_after_runtime() < Duration::from_millis(1500),
            "{o:?}"
        );
    }
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert!(out.exited_by_itself && !out.killed, "{out:?}");
    let summary = summary_line(&emu).await;
    // 3 log records at least, plus spans and metric points.
    assert!(summary_field(&summary, "dropped_items") >= 3, "{summary}");
    let output = emu.output();
    assert!(
        output.contains("telemetry dropped at shutdown")
            && output.contains("otel-collector.invalid"),
        "{output}"
    );
}

/// The extension is SIGKILLed while a telemetry batch is being delivered
/// (with a function connection open on its OTLP receiver), and Lambda starts
/// a new one in the same network namespace: it registers again, binds the
/// same receiver ports, and works. What was flushed before the kill was
/// already at the collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_extension_restarts_and_works() {
    let collector = FaultCollector::start().await;
    let (grpc_port, http_port) = (free_port(), free_port());
    let settings = env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
        ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        (
            "LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR",
            &format!("127.0.0.1:{grpc_port}"),
        ),
        (
            "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR",
            &format!("127.0.0.1:{http_port}"),
        ),
    ]);
    let first = start_with(settings.clone(), false).await;
    let rid = new_request_id();
    first
        .invoke(InvokeSpec {
            request_id: rid.clone(),
            logs: vec![line(&rid, "before the kill")],
            ..InvokeSpec::default()
        })
        .await
        .unwrap();
    // The function keeps a connection to the receiver open (keep-alive).
    let mut function_conn = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    let otlp = serde_json::to_vec(&otlp_log("function line before the kill")).unwrap();
    write!(
        function_conn,
        "POST /v1/logs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        otlp.len()
    )
    .unwrap();
    function_conn.write_all(&otlp).unwrap();
    function_conn
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = [0u8; 12];
    function_conn.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the receiver accepted");

    // Mid-stream: a large batch is on its way when the process dies.
    let big: Vec<_> = (0..2000)
        .map(|i| telemetry_event("function", line(&rid, &format!("in flight {i}"))))
        .collect();
    let push = first.push_raw(serde_json::to_vec(&big).unwrap());
    let kill = async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        first.kill();
    };
    let (_pushed, ()) = tokio::join!(push, kill);
    first
        .wait_for_exit(Duration::from_secs(5))
        .await
        .expect("killed");
    assert!(
        body_counts(&collector).contains_key("before the kill"),
        "flushed before /next, so already delivered: {}",
        collector.summary()
    );

    // Lambda restarts the environment.
    let second = start_with(settings, false).await;
    assert!(second.registration().is_some());
    let rid2 = new_request_id();
    second
        .invoke(InvokeSpec {
            request_id: rid2.clone(),
            logs: vec![line(&rid2, "after the restart")],
            ..InvokeSpec::default()
        })
        .await
        .unwrap();
    let resp = http_request(
        "POST",
        &format!("http://127.0.0.1:{http_port}/v1/logs"),
        &[("content-type", "application/json")],
        serde_json::to_vec(&otlp_log("function line after the restart")).unwrap(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{resp:?}\n{}", second.output());
    spin_down(&second).await;
    let counts = body_counts(&collector);
    for text in ["after the restart", "function line after the restart"] {
        assert_eq!(
            counts.get(text),
            Some(&1),
            "{text}: {}\n{}",
            collector.summary(),
            second.output()
        );
    }
    drop(function_conn);
}

fn otlp_log(text: &str) -> serde_json::Value {
    json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"scope": {"name": "fn"},
        "logRecords": [{"severityText": "INFO", "body": {"stringValue": text}}]}]}]})
}

/// Telemetry keeps arriving after SHUTDOWN is handed out (the runtime's last
/// lines): it is exported before the extension exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_arriving_during_shutdown_is_exported() {
    let collector = FaultCollector::start().await;
    let emu = start_with(
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint())]),
        true,
    )
    .await;
    let rid = new_request_id();
    emu.invoke(InvokeSpec {
        request_id: rid.clone(),
        logs: vec![line(&rid, "during the invocation")],
        ..InvokeSpec::default()
    })
    .await
    .unwrap();
    let late = async {
        // Bounded: 400 x 5 ms.
        for _ in 0..400 {
            if emu
                .handed_out_events()
                .iter()
                .any(|(_, e)| e["eventType"] == "SHUTDOWN")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let batch = json!([
            telemetry_event("function", json!("runtime shutdown hook: closing pool")),
            telemetry_event("extension", json!("another extension says goodbye")),
        ]);
        emu.push_raw(serde_json::to_vec(&batch).unwrap()).await
    };
    let (out, pushed) = tokio::join!(emu.shutdown("spindown", Duration::from_secs(2)), late);
    assert_eq!(pushed, Ok(200));
    assert!(out.exited_by_itself, "{out:?}\n{}", emu.output());
    let counts = body_counts(&collector);
    for text in [
        "during the invocation",
        "runtime shutdown hook: closing pool",
        "another extension says goodbye",
    ] {
        assert_eq!(
            counts.get(text),
            Some(&1),
            "{text}: {}\n{}",
            collector.summary(),
            emu.output()
        );
    }
}

/// SHUTDOWN with a collector that takes 300 ms per request and a 1 s budget:
/// the extension exits by itself before the deadline, and what it could not
/// send in time is counted in the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_slow_collector_exits_before_the_deadline() {
    let collector = FaultCollector::start().await;
    let emu = start_with(
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
            // Nothing is flushed before SHUTDOWN: all of it is pending then.
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "periodic:600000"),
        ]),
        true,
    )
    .await;
    for i in 0..5 {
        invoke_line(&emu, &format!("slow {i}")).await;
    }
    collector.set_fault(Fault::Slow(Duration::from_millis(300)));
    let budget = Duration::from_millis(1000);
    let out = emu.shutdown("spindown", budget).await;
    assert!(
        out.exited_by_itself && !out.killed,
        "{out:?}\n{}",
        emu.output()
    );
    assert!(out.elapsed < budget, "{out:?}");
    let summary = summary_line(&emu).await;
    let sent = summary_field(&summary, "final_requests_sent");
    let dropped = summary_field(&summary, "dropped_items");
    assert!(
        sent >= 1,
        "a slow collector still gets what fits: {summary}"
    );
    let delivered: usize = collector.log_records().len();
    assert!(
        delivered == 5 || dropped > 0,
        "all 5 lines delivered, or the rest counted: {summary}\n{}",
        collector.summary()
    );
}

/// Lambda sends a batch again when it got no 2xx in time: the same body
/// twice is ingested once (the repeat is answered 200 and counted), so no
/// log line or span is exported twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_batches_are_not_exported_twice() {
    let collector = FaultCollector::start().await;
    let emu = start_with(
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint())]),
        false,
    )
    .await;
    invoke_line(&emu, "an invocation first").await;
    let rid = new_request_id();
    let batch = serde_json::to_vec(&json!([
        telemetry_event("function", line(&rid, "sent twice")),
        telemetry_event("function", line(&rid, "also sent twice")),
    ]))
    .unwrap();
    for _ in 0..3 {
        assert_eq!(emu.push_raw(batch.clone()).await, Ok(200));
    }
    // A different batch with the same lines at a later time is new data.
    let again = serde_json::to_vec(&json!([telemetry_event(
        "function",
        line(&rid, "sent twice")
    )]))
    .unwrap();
    assert_ne!(again, batch);
    assert_eq!(emu.push_raw(again).await, Ok(200));
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert!(out.exited_by_itself, "{out:?}");
    let summary = summary_line(&emu).await;
    assert_eq!(summary_field(&summary, "duplicate_batches"), 2, "{summary}");
    assert_eq!(
        counter(
            &collector,
            "lambda_otel_bridge.telemetry.batches",
            &[("outcome", "duplicate")]
        ),
        Some(2),
        "the bridge's own metric: {}",
        collector.summary()
    );
    let counts = body_counts(&collector);
    assert_eq!(counts.get("also sent twice"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("sent twice"), Some(&2), "{counts:?}");
}

/// Throttling: HTTP 429 with `Retry-After`, and gRPC RESOURCE_EXHAUSTED with
/// a `RetryInfo`. The throttled requests stay queued, are not sent again
/// before the delay, and arrive once, with nothing dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_honoured_and_nothing_is_lost() {
    for protocol in ["http/protobuf", "grpc"] {
        let collector = FaultCollector::start().await;
        let endpoint = endpoint_for(&collector, protocol);
        let emu = start_with(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
                ("LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS", "300"),
            ]),
            true,
        )
        .await;
        let throttle = match protocol {
            "grpc" => Fault::Grpc {
                code: 8,
                retry_after: Some(1),
            },
            _ => Fault::Status {
                code: 429,
                retry_after: Some(1),
            },
        };
        collector.push_faults(vec![throttle; 3]);
        let first = invoke_line(&emu, &format!("throttled {protocol}")).await;
        assert!(
            first.delay_after_runtime() < Duration::from_millis(1500),
            "the 1 s delay does not fit the 300 ms budget: deferred, not awaited: {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        invoke_line(&emu, &format!("after the delay {protocol}")).await;
        let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
        assert!(out.exited_by_itself, "{out:?}");
        let summary = summary_line(&emu).await;
        assert_eq!(summary_field(&summary, "dropped_items"), 0, "{summary}");
        let counts = body_counts(&collector);
        for text in [
            format!("throttled {protocol}"),
            format!("after the delay {protocol}"),
        ] {
            assert_eq!(
                counts.get(&text),
                Some(&1),
                "{text}: {}",
                collector.summary()
            );
        }
        // No throttled signal was retried within its second.
        let requests = collector.requests();
        let throttled: Vec<_> = requests.iter().filter(|r| !r.accepted()).collect();
        assert_eq!(throttled.len(), 3, "{}", collector.summary());
        for r in throttled {
            let retry = requests
                .iter()
                .find(|x| x.signal == r.signal && x.at > r.at)
                .expect("retried");
            assert!(
                retry.at.duration_since(r.at) >= Duration::from_millis(950),
                "{protocol}: {} retried after {:?}",
                r.signal,
                retry.at.duration_since(r.at)
            );
        }
    }
}

/// A burst against a collector that hangs: the listener never holds its
/// answers back (that is only for a collector that is accepting), every
/// batch is answered 2xx, the invocation costs at most the flush budget, and
/// what could not be sent is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_against_a_hanging_collector_is_not_held_back() {
    let collector = FaultCollector::start().await;
    collector.set_fault(Fault::Hang);
    let emu = start_with(
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
            ("LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS", "300"),
            ("LAMBDA_OTEL_BRIDGE_TELEMETRY_MAX_BYTES", "1048576"),
            ("LAMBDA_OTEL_BRIDGE_TELEMETRY_MAX_ITEMS", "10000"),
        ]),
        false,
    )
    .await;
    let rid = new_request_id();
    let pad = "x".repeat(200);
    let mut lines = 0u64;
    for b in 0..12 {
        let batch: Vec<_> = (0..3000)
            .map(|i| telemetry_event("function", line(&rid, &format!("burst {b}-{i} {pad}"))))
            .collect();
        lines += batch.len() as u64;
        assert_eq!(
            emu.push_raw(serde_json::to_vec(&batch).unwrap()).await,
            Ok(200)
        );
    }
    let o = invoke_line(&emu, "after the burst").await;
    assert!(
        o.delay_after_runtime() < Duration::from_millis(2000),
        "{o:?}"
    );
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert!(out.exited_by_itself, "{out:?}\n{}", emu.output());
    let summary = summary_line(&emu).await;
    assert_eq!(summary_field(&summary, "held_back"), 0, "{summary}");
    assert!(
        summary_field(&summary, "dropped_items") >= lines,
        "every line of the burst is counted as dropped: {summary}"
    );
    assert!(collector.log_records().is_empty());
}
