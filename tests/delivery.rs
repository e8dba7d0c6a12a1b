//! Delivery through the real binary with the sandbox frozen between
//! invocations: every protocol to a real collector, a collector that is down
//! and comes back, one that hangs, one that throttles or refuses, and the
//! timing difference between the `end` and `adaptive` flush policies.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use serde_json::json;
use support::common::{
    body, counter, env, histogram_count, line, spin_down, start_initialized, start_with,
};
use support::emulator::{new_request_id, Emulator, EmulatorOptions, InvokeSpec};
use support::fault_collector::{Fault, FaultCollector};
use support::rotel::{free_port, Rotel};

async fn start(extra: Vec<(String, String)>) -> Emulator {
    start_with(extra, true).await
}

/// Each protocol delivers traces, metrics and logs to rotel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_delivers_all_signals_to_rotel() {
    let Some(rotel) = Rotel::start().await else {
        return;
    };
    for (protocol, endpoint) in [
        ("http/protobuf", rotel.http_endpoint()),
        ("http/json", rotel.http_endpoint()),
        ("grpc", rotel.grpc_endpoint()),
    ] {
        let emu = start(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ]))
        .await;
        let rid = new_request_id();
        let text = format!("delivered over {protocol}");
        emu.invoke(InvokeSpec {
            request_id: rid.clone(),
            logs: vec![line(&rid, &text)],
            ..InvokeSpec::default()
        })
        .await
        .unwrap();
        // Before the next thaw: the invocation span and its log line left before /next.
        rotel
            .wait_for(
                &[&text, "responseLatency", &rid, "faas.invoke_duration"],
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}\n{}", emu.output()));
        spin_down(&emu).await;
        rotel
            .wait_for(
                &["extensionOverhead", "aws.lambda.billed_duration"],
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
    }
}

/// Each protocol delivers all three signals to mock-collector, with gzip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_delivers_all_signals_to_mock_collector() {
    use mock_collector::{MockServer, Protocol};
    for (protocol, mock) in [
        ("http/protobuf", Protocol::HttpBinary),
        ("http/json", Protocol::HttpJson),
        ("grpc", Protocol::Grpc),
    ] {
        let server = MockServer::builder()
            .protocol(mock)
            .port(0)
            .start()
            .await
            .unwrap();
        let emu = start(env(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("http://{}", server.addr()),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ]))
        .await;
        let rid = new_request_id();
        emu.invoke(InvokeSpec {
            request_id: rid.clone(),
            logs: vec![line(&rid, "to mock-collector")],
            ..InvokeSpec::default()
        })
        .await
        .unwrap();
        spin_down(&emu).await;
        server
            .wait_until(
                |c| c.span_count() >= 5 && c.log_count() >= 1 && c.metric_count() >= 5,
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|_| panic!("{protocol}: missing data\n{}", emu.output()));
        server
            .with_collector(|c| {
                c.expect_log_with_body("to mock-collector")
                    .with_attributes([("faas.invocation_id", rid.as_str())])
                    .assert_count(1);
                c.expect_span_with_name("responseLatency").assert_count(1);
                c.expect_metric_with_name("faas.invocations")
                    .assert_exists();
            })
            .await;
    }
}

/// The collector is down for the first invocations and comes up on the same
/// port: everything is delivered, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_then_up_delivers_everything_once() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let emu = start(env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ("LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS", "300"),
    ]))
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let rid = new_request_id();
        let o = emu
            .invoke(InvokeSpec {
                request_id: rid.clone(),
                logs: vec![line(&rid, &format!("while down {i}"))],
                ..InvokeSpec::default()
            })
            .await
            .unwrap();
        assert!(
            o.delay_after_runtime() < Duration::from_millis(1500),
            "{o:?}"
        );
        ids.push(rid);
    }
    let collector = FaultCollector::start_on(port).await;
    for i in 0..2 {
        let rid = new_request_id();
        emu.invoke(InvokeSpec {
            request_id: rid.clone(),
            logs: vec![line(&rid, &format!("while up {i}"))],
            ..InvokeSpec::default()
        })
        .await
        .unwrap();
        ids.push(rid);
    }
    spin_down(&emu).await;

    let logs = collector.log_records();
    let bodies: Vec<String> = logs.iter().map(body).collect();
    for text in [
        "while down 0",
        "while down 1",
        "while down 2",
        "while up 0",
        "while up 1",
    ] {
        assert_eq!(
            bodies.iter().filter(|b| *b == text).count(),
            1,
            "{text} exactly once: {bodies:?}"
        );
    }
    let spans = collector.spans();
    let unique: HashSet<(Vec<u8>, Vec<u8>)> = spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect();
    assert_eq!(unique.len(), spans.len(), "no span delivered twice");
    // 5 invocations x (invocation + 3 runtimeDone children + extensionOverhead) + init.
    assert_eq!(spans.len(), 26, "{}", collector.summary());
    let invocation_ids: HashSet<String> = spans
        .iter()
        .filter(|s| s.kind == 2)
        .flat_map(|s| {
            s.attributes
                .iter()
                .filter(|a| a.key == "faas.invocation_id")
        })
        .filter_map(|a| match a.value.as_ref()?.value.as_ref()? {
            AV::StringValue(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(invocation_ids, ids.iter().cloned().collect::<HashSet<_>>());
    // Cumulative metrics: the last invocations count reflects all 5.
    let last_invocations = collector
        .metrics()
        .iter()
        .filter(|m| m.name == "faas.invocations")
        .filter_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.first().and_then(|p| match p.value {
                Some(number_data_point::Value::AsInt(v)) => Some(v),
                _ => None,
            }),
            _ => None,
        })
        .max();
    assert_eq!(last_invocations, Some(5));
}

/// A collector that accepts connections and never answers costs each
/// invocation at most the flush budget, and SHUTDOWN still exits in time;
/// what could not be sent is reported as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_collector_costs_at_most_the_budget() {
    let collector = FaultCollector::start().await;
    collector.set_fault(Fault::Hang);
    let emu = start(env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
        ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ("LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS", "200"),
    ]))
    .await;
    for _ in 0..3 {
        let o = emu.invoke(InvokeSpec::default()).await.unwrap();
        // Budget 200 ms; generous margin for a loaded machine.
        assert!(
            o.delay_after_runtime() < Duration::from_millis(1200),
            "{o:?}"
        );
    }
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert!(
        out.exited_by_itself && !out.killed,
        "{out:?}\n{}",
        emu.output()
    );
    // The bridge stops waiting 150 ms before Lambda's deadline; its wrap-up
    // (counting and reporting what is dropped) takes a few milliseconds at
    // full CPU. At a small CPU share (`BRIDGE_TEST_CPU_SHARE_MB`) that
    // wrap-up spans a few throttled CFS periods: Lambda's deadline is then
    // the bound (passing it would have the process killed).
    let bound = if emu.cpu_share().is_some() {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(1900)
    };
    assert!(out.elapsed < bound, "{out:?}");
    assert!(
        emu.output().contains("telemetry dropped at shutdown"),
        "{}",
        emu.output()
    );
}

/// 503 with Retry-After: the request is retried after the delay, not
/// before. 400: dropped, not retried, counted, and the drop metric arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_400_is_dropped_and_counted() {
    let collector = FaultCollector::start().await;
    let emu = start(env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
        ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ("LAMBDA_OTEL_BRIDGE_FLUSH_TIMEOUT_MS", "3000"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
    ]))
    .await;

    // Invocation 1: every first request answered 503 Retry-After: 1.
    collector.push_faults(vec![
        Fault::Status {
            code: 503,
            retry_after: Some(1),
        },
        Fault::Status {
            code: 503,
            retry_after: Some(1),
        },
        Fault::Status {
            code: 503,
            retry_after: Some(1),
        },
    ]);
    let rid = new_request_id();
    emu.invoke(InvokeSpec {
        request_id: rid.clone(),
        logs: vec![line(&rid, "after a retry")],
        ..InvokeSpec::default()
    })
    .await
    .unwrap();
    let logs_requests = collector.requests_for("logs");
    assert!(logs_requests.len() >= 2, "{}", collector.summary());
    let (first, second) = (&logs_requests[0], &logs_requests[1]);
    assert_eq!(first.status, 503);
    assert!(second.accepted(), "{}", collector.summary());
    assert!(
        second.at.duration_since(first.at) >= Duration::from_millis(950),
        "retried after {:?}, before the Retry-After second",
        second.at.duration_since(first.at)
    );
    assert_eq!(
        collector
            .log_records()
            .iter()
            .filter(|r| body(r) == "after a retry")
            .count(),
        1
    );

    // Invocation 2: everything answered 400 while it flushes.
    let before = collector.requests_for("logs").len();
    let rid2 = new_request_id();
    collector.set_fault(Fault::Status {
        code: 400,
        retry_after: None,
    });
    emu.invoke(InvokeSpec {
        request_id: rid2.clone(),
        logs: vec![line(&rid2, "refused")],
        ..InvokeSpec::default()
    })
    .await
    .unwrap();
    collector.set_fault(Fault::Ok);
    let refused: Vec<_> = collector.requests_for("logs")[before..].to_vec();
    assert_eq!(
        refused.len(),
        1,
        "a 400 is not retried: {}",
        collector.summary()
    );
    assert_eq!(refused[0].status, 400);
    spin_down(&emu).await;
    assert!(
        emu.output().contains("logs/refused"),
        "warning line names the drop: {}",
        emu.output()
    );
    assert!(!collector.log_records().iter().any(|r| body(r) == "refused"));

    // The drop metric reached the collector.
    let dropped = counter(
        &collector,
        "lambda_otel_bridge.dropped",
        &[("signal", "logs"), ("reason", "refused")],
    );
    assert_eq!(dropped, Some(1), "{}", collector.summary());
}

/// The bridge's own timings at the collector: in `end` mode every
/// invocation's post-runtime time (runtimeDone seen → `/next`) and every
/// billed flush, cumulative, the last report sent at SHUTDOWN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_runtime_and_flush_durations_reach_the_collector() {
    let collector = FaultCollector::start().await;
    let emu = start(env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
        ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
    ]))
    .await;
    for i in 0..3 {
        let rid = new_request_id();
        emu.invoke(InvokeSpec {
            request_id: rid.clone(),
            logs: vec![line(&rid, &format!("timed {i}"))],
            ..InvokeSpec::default()
        })
        .await
        .unwrap();
    }
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert_eq!(out.exit_code, Some(0), "{}", emu.output());
    assert_eq!(
        histogram_count(&collector, "lambda_otel_bridge.post_runtime.duration", &[]),
        Some(3),
        "{}",
        collector.summary()
    );
    let billed = histogram_count(
        &collector,
        "lambda_otel_bridge.flush.duration",
        &[("kind", "billed")],
    );
    assert!(billed >= Some(3), "{billed:?} {}", collector.summary());
}

/// `end` waits for runtimeDone before /next; `adaptive` with frequent
/// invocations calls /next at once and exports in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_and_adaptive_are_visible_in_next_timing() {
    let collector = FaultCollector::start().await;
    let handler = Duration::from_millis(150);
    for policy in ["end", "adaptive"] {
        let emu = start(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", policy),
        ]))
        .await;
        let mut immediate = 0;
        let mut rids = Vec::new();
        for i in 0..8 {
            let rid = new_request_id();
            let o = emu
                .invoke(InvokeSpec {
                    request_id: rid.clone(),
                    logs: vec![line(&rid, &format!("{policy} {i}"))],
                    handler_duration: handler,
                    ..InvokeSpec::default()
                })
                .await
                .unwrap();
            rids.push(rid);
            // /next before the handler could have finished: no wait for runtimeDone.
            if o.next_called_at.saturating_sub(o.invoke_sent_at) < handler {
                immediate += 1;
            }
        }
        spin_down(&emu).await;
        match policy {
            "end" => assert_eq!(immediate, 0, "end never calls /next early"),
            _ => assert!(
                immediate >= 3,
                "adaptive went to background mode: {immediate} of 8"
            ),
        }
        // Either way, every line arrives.
        collector
            .wait_until("all lines", Duration::from_secs(5), |c| {
                (0..8).all(|i| {
                    c.log_records()
                        .iter()
                        .any(|r| body(r) == format!("{policy} {i}"))
                })
            })
            .await
            .unwrap();
    }
}

/// Lambda Managed Instances: no INVOKE events (the extension registers for
/// SHUTDOWN only), so telemetry is flushed on a timer, and at SHUTDOWN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_flush_periodically() {
    let collector = FaultCollector::start().await;
    let emu = start_initialized(EmulatorOptions {
        initialization_type: "lambda-managed-instances".into(),
        freeze_between_invocations: false,
        extra_env: env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint())]),
        ..EmulatorOptions::default()
    })
    .await;
    assert_eq!(emu.registration().unwrap().events, ["SHUTDOWN"]);
    let rid = new_request_id();
    emu.invoke(InvokeSpec {
        request_id: rid.clone(),
        logs: vec![json!({"level": "INFO", "message": "lmi line", "requestId": rid})],
        ..InvokeSpec::default()
    })
    .await
    .unwrap();
    // No lifecycle event comes: only the timer can have sent it.
    collector
        .wait_until("the periodic flush", Duration::from_secs(5), |c| {
            c.log_records().iter().any(|r| body(r) == "lmi line")
                && c.spans().iter().any(|s| s.kind == 2)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
    spin_down(&emu).await;
}

/// `OTEL_SDK_DISABLED=true`: the extension registers and runs the lifecycle
/// (Lambda requires it) but exports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_disabled_exports_nothing() {
    let collector = FaultCollector::start().await;
    let emu = start(env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
        ("OTEL_SDK_DISABLED", "true"),
    ]))
    .await;
    let rid = new_request_id();
    emu.invoke(InvokeSpec {
        request_id: rid.clone(),
        logs: vec![line(&rid, "should not leave")],
        ..InvokeSpec::default()
    })
    .await
    .unwrap();
    spin_down(&emu).await;
    assert!(emu.calls().iter().any(|c| c.path.ends_with("/event/next")));
    assert!(collector.requests().is_empty(), "{}", collector.summary());
}
