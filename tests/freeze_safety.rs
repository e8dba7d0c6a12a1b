//! The shapes real functions have, black-box through the real binary under
//! the test emulator (which freezes the extension with SIGSTOP once it waits
//! in `/next`): handlers of several seconds, a collector that throttles with
//! `Retry-After: 0` forever, one that answers after 1.5 s, `periodic`
//! flushing after a freeze, and a configuration error on Managed Instances.
//!
//! "Before the freeze" is checked by reading the collector right after
//! `invoke` returns: the emulator returns only once the extension is frozen,
//! so nothing can arrive between its `/next` and that read.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use support::common::{
    body, endpoint_for, env, failed_init, line, start_end_mode, start_with, summary_field,
    summary_line,
};
use support::emulator::{new_request_id, Emulator, EmulatorOptions, InvokeSpec};
use support::fault_collector::{Fault, FaultCollector};
use support::otlp::attr_str;

/// Handlers of 5 s, longer than the old fixed 2 s wait: in `end` mode and
/// with the defaults (`adaptive`, whose first invocations flush in `end`
/// style), each invocation's log lines, its invocation span with Lambda's
/// child spans, and its invoke metrics are at the collector before the
/// `/next` that ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_second_handlers_leave_before_the_freeze() {
    for policy in ["end", "adaptive"] {
        let collector = FaultCollector::start().await;
        let emu = start_with(
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
                ("LAMBDA_OTEL_BRIDGE_FLUSH", policy),
            ]),
            true,
        )
        .await;
        for i in 0..2 {
            let rid = new_request_id();
            let texts: Vec<String> = (0..4).map(|k| format!("{policy} {i} line {k}")).collect();
            let o = emu
                .invoke(InvokeSpec {
                    request_id: rid.clone(),
                    logs: texts.iter().map(|t| line(&rid, t)).collect(),
                    handler_duration: Duration::from_secs(5),
                    timeout: Duration::from_secs(20),
                    ..InvokeSpec::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
            // Frozen now: read what left before the freeze.
            let logs = collector.log_records();
            for t in &texts {
                let r = logs.iter().find(|r| body(r) == *t).unwrap_or_else(|| {
                    panic!(
                        "{policy}: '{t}' not at the collector before /next ({o:?})\n{}",
                        collector.summary()
                    )
                });
                assert_eq!(
                    attr_str(&r.attributes, "faas.invocation_id"),
                    Some(rid.as_str())
                );
            }
            let spans = collector.spans();
            let inv = spans
                .iter()
                .find(|s| {
                    // The invocation span is the SERVER span of the request.
                    s.kind == 2
                        && attr_str(&s.attributes, "faas.invocation_id") == Some(rid.as_str())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{policy}: no invocation span for {rid} before /next\n{}",
                        collector.summary()
                    )
                });
            let children = spans
                .iter()
                .filter(|s| s.parent_span_id == inv.span_id && s.trace_id == inv.trace_id)
                .count();
            assert!(
                children >= 1,
                "{policy}: no child span of {rid} before /next"
            );
            let invocations = collector
                .metrics()
                .iter()
                .filter(|m| m.name == "faas.invoke_duration")
                .count();
            assert!(
                invocations > 0,
                "{policy}: no faas.invoke_duration before /next"
            );
        }
        emu.shutdown("spindown", Duration::from_secs(2)).await;
    }
}

/// A collector that answers 429 with `Retry-After: 0` (gRPC
/// RESOURCE_EXHAUSTED with a `RetryInfo` of 0 s) forever: at most three
/// attempts per signal in the first flush, one per signal in each later
/// one, never a tight loop; the function is not held for the flush budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_collector_is_not_hammered() {
    for protocol in ["http/protobuf", "grpc"] {
        let collector = FaultCollector::start().await;
        collector.set_fault(match protocol {
            "grpc" => Fault::Grpc {
                code: 8,
                retry_after: Some(0),
            },
            _ => Fault::Status {
                code: 429,
                retry_after: Some(0),
            },
        });
        let emu = start_end_mode(&collector, protocol).await;
        let invocations = 10;
        let mut held = Vec::new();
        for i in 0..invocations {
            let rid = new_request_id();
            let o = emu
                .invoke(InvokeSpec {
                    request_id: rid.clone(),
                    logs: vec![line(&rid, &format!("throttled {i}"))],
                    ..InvokeSpec::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
            held.push(o.delay_after_runtime());
        }
        let during = collector.requests().len();
        emu.shutdown("spindown", Duration::from_secs(2)).await;
        println!(
            "{protocol}: {during} requests during {invocations} invocations, {} in all; post-runtime {held:?}",
            collector.requests().len()
        );
        // Per flush and signal: 3 attempts in the first failing flush, 1 in
        // each later one (the shutdown flush may retry 3 times again).
        assert!(
            during <= 3 * (3 + (invocations - 1)),
            "{protocol}: {during} requests during {invocations} invocations\n{}",
            collector.summary()
        );
        // Shutdown: one billed round (1 per signal) and the final flush (3).
        assert!(
            collector.requests().len() <= during + 12,
            "{protocol}: {} requests in all",
            collector.requests().len()
        );
        // After the first failing flush nothing waits for the collector:
        // far below the 1 s flush budget (the 50 ms figure is the bench's:
        // BENCH_ONLY=faults cargo bench --bench process).
        let later: Vec<_> = held.iter().skip(1).collect();
        assert!(
            later.iter().all(|d| **d < Duration::from_millis(500)),
            "{protocol}: post-runtime times {held:?}"
        );
        let summary = summary_line(&emu).await;
        // Nothing delivered, so everything is counted at shutdown.
        assert!(summary_field(&summary, "dropped_items") > 0, "{summary}");
    }
}

/// A collector whose first answer comes after 1.5 s, longer than the 1 s
/// flush budget: the request is not cancelled and sent again; it finishes
/// after `/next` (the freeze pauses it, the thaw resumes it), and no span,
/// log record or metric point arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_collector_gets_no_duplicates() {
    for protocol in ["http/protobuf", "grpc"] {
        let collector = FaultCollector::start().await;
        collector.push_faults(vec![Fault::Slow(Duration::from_millis(1500))]);
        let emu = start_end_mode(&collector, protocol).await;
        for i in 0..4 {
            let rid = new_request_id();
            emu.invoke(InvokeSpec {
                request_id: rid.clone(),
                logs: vec![line(&rid, &format!("slow {protocol} {i}"))],
                ..InvokeSpec::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let out = emu.shutdown("spindown", Duration::from_secs(3)).await;
        assert!(out.exited_by_itself, "{out:?}\n{}", emu.output());
        for r in collector.requests() {
            let ua = r.header("user-agent").unwrap_or_default();
            assert!(
                ua.starts_with("lambda-otel-bridge/"),
                "{protocol}: User-Agent {ua:?}"
            );
        }
        let mut spans = HashMap::new();
        for s in collector.spans() {
            *spans.entry((s.trace_id, s.span_id)).or_insert(0) += 1;
        }
        let twice: Vec<_> = spans.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{protocol}: spans twice {twice:?}\n{}",
            collector.summary()
        );
        let mut logs = HashMap::new();
        for r in collector.log_records() {
            *logs.entry(body(&r)).or_insert(0) += 1;
        }
        for i in 0..4 {
            let t = format!("slow {protocol} {i}");
            assert_eq!(logs.get(&t), Some(&1), "{t}\n{}", collector.summary());
        }
        let mut points = HashMap::new();
        for m in collector.metrics() {
            // A point sent twice is the same point to the letter (a
            // cumulative series sent again at a later flush has a new time).
            let keys: Vec<String> = match &m.data {
                Some(Data::Sum(s)) => s.data_points.iter().map(|p| format!("{p:?}")).collect(),
                Some(Data::Histogram(h)) => {
                    h.data_points.iter().map(|p| format!("{p:?}")).collect()
                }
                Some(Data::Gauge(g)) => g.data_points.iter().map(|p| format!("{p:?}")).collect(),
                _ => Vec::new(),
            };
            for k in keys {
                *points.entry(format!("{} {k}", m.name)).or_insert(0) += 1;
            }
        }
        let twice: Vec<_> = points.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{protocol}: points twice {twice:?}");
    }
}

/// `periodic:<ms>` after a freeze longer than the period: the overdue tick
/// must not run a flush before `/next` is sent. With a collector that takes
/// 300 ms per request, a flush before `/next` shows as 300 ms between the
/// INVOKE and the extension's `/next`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_sends_next_before_an_overdue_flush() {
    let collector = FaultCollector::start().await;
    collector.set_fault(Fault::Slow(Duration::from_millis(300)));
    let emu = start_with(
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "periodic:100"),
        ]),
        true,
    )
    .await;
    let mut gaps = Vec::new();
    for i in 0..8 {
        let rid = new_request_id();
        let o = emu
            .invoke(InvokeSpec {
                request_id: rid.clone(),
                logs: vec![line(&rid, &format!("periodic {i}"))],
                handler_duration: Duration::from_millis(10),
                ..InvokeSpec::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
        gaps.push(o.next_called_at.saturating_sub(o.invoke_sent_at));
        // Frozen for longer than the period: the tick is overdue at the thaw.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    emu.shutdown("spindown", Duration::from_secs(2)).await;
    // A loaded machine may be slow, but never by a whole slow request on
    // every invocation; one outlier is tolerated.
    let slow = gaps
        .iter()
        .filter(|g| **g >= Duration::from_millis(280))
        .count();
    assert!(slow <= 1, "INVOKE -> /next: {gaps:?}");
}

/// On Managed Instances an invalid setting must not change the
/// registration: the bridge registers for SHUTDOWN only (no INVOKE events
/// exist there) and Lambda gets the real configuration error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_with_an_invalid_setting_reports_the_real_error() {
    let emu = Emulator::start_extension(EmulatorOptions {
        initialization_type: "lambda-managed-instances".into(),
        accepted_schema_versions: vec!["2025-01-29".into()],
        extra_env: env(&[("LAMBDA_OTEL_BRIDGE_FLUSH", "sometimes")]),
        ..EmulatorOptions::default()
    })
    .await;
    let err = failed_init(&emu).await;
    let reg = emu.registration().expect("registered");
    assert_eq!(reg.events, vec!["SHUTDOWN".to_string()], "{reg:?}");
    assert!(
        err.body.contains("LAMBDA_OTEL_BRIDGE_FLUSH"),
        "{}",
        err.body
    );
}

/// Without `platform` among the subscribed types the bridge cannot see an
/// invocation end: it says so at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_platform_events_is_said_at_start_up() {
    let collector = FaultCollector::start().await;
    let emu = start_with(
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("LAMBDA_OTEL_BRIDGE_TELEMETRY_TYPES", "function,extension"),
        ]),
        true,
    )
    .await;
    emu.wait_for_output("one invocation late", Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
    emu.shutdown("spindown", Duration::from_secs(2)).await;
}

/// A connection that went silent while the sandbox was frozen (a NAT or a
/// load balancer forgot it, no FIN or RST): after a freeze longer than
/// `LAMBDA_OTEL_BRIDGE_CONNECTION_MAX_IDLE_MS` the bridge does not trust
/// the pooled connection, so the next invocations' data still leaves before
/// their `/next`, over HTTP and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_silenced_during_a_freeze_is_not_reused() {
    use support::silent_proxy::SilentProxy;
    for protocol in ["http/protobuf", "grpc"] {
        let collector = FaultCollector::start().await;
        let port = match protocol {
            "grpc" => collector.grpc_port(),
            _ => collector.http_port(),
        };
        let proxy = SilentProxy::start(([127, 0, 0, 1], port).into()).await;
        let emu = start_with(
            env(&[
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    &format!("http://{}", proxy.addr()),
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
                ("LAMBDA_OTEL_BRIDGE_CONNECTION_MAX_IDLE_MS", "500"),
            ]),
            true,
        )
        .await;
        for i in 0..3 {
            let rid = new_request_id();
            let text = format!("silenced {protocol} {i}");
            let o = emu
                .invoke(InvokeSpec {
                    request_id: rid.clone(),
                    logs: vec![line(&rid, &text)],
                    ..InvokeSpec::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
            assert!(
                collector.log_records().iter().any(|r| body(r) == text),
                "{protocol}: '{text}' not delivered before /next ({o:?})\n{}",
                collector.summary()
            );
            // Frozen: the network forgets the connection, for longer than
            // the idle limit.
            proxy.silence_open_connections();
            tokio::time::sleep(Duration::from_millis(900)).await;
        }
        assert!(
            proxy.connections() >= 3,
            "{protocol}: {} connections",
            proxy.connections()
        );
        emu.shutdown("spindown", Duration::from_secs(2)).await;
    }
}

/// Lambda Managed Instances: no INVOKE events, invocations overlap, and
/// every record names its request. Each line keeps its own invocation's
/// `faas.invocation_id` and trace, and every invocation's span arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_overlapping_invocations_keep_their_context() {
    let collector = FaultCollector::start().await;
    let emu = Emulator::start_extension(EmulatorOptions {
        initialization_type: "lambda-managed-instances".into(),
        accepted_schema_versions: vec!["2025-01-29".into()],
        freeze_between_invocations: false,
        extra_env: env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint())]),
        ..EmulatorOptions::default()
    })
    .await;
    emu.init(vec![], Duration::from_secs(10))
        .await
        .expect("init");
    let spec = |k: usize| {
        let rid = new_request_id();
        let logs = (0..3)
            .map(|j| {
                serde_json::json!({
                    "timestamp": "2025-03-04T10:15:30.610Z",
                    "level": "INFO",
                    "requestId": rid,
                    "message": format!("overlap {k} line {j}"),
                })
            })
            .collect();
        InvokeSpec {
            request_id: rid,
            logs,
            handler_duration: Duration::from_millis(300 + 50 * k as u64),
            ..InvokeSpec::default()
        }
    };
    let specs: Vec<InvokeSpec> = (0..4).map(spec).collect();
    let (a, b, c, d) = tokio::join!(
        emu.invoke(specs[0].clone()),
        emu.invoke(specs[1].clone()),
        emu.invoke(specs[2].clone()),
        emu.invoke(specs[3].clone()),
    );
    for r in [a, b, c, d] {
        r.unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
    }
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert!(out.exited_by_itself, "{out:?}\n{}", emu.output());
    let spans = collector.spans();
    let logs = collector.log_records();
    for (k, s) in specs.iter().enumerate() {
        let inv = spans
            .iter()
            .find(|sp| {
                sp.kind == 2
                    && attr_str(&sp.attributes, "faas.invocation_id") == Some(s.request_id.as_str())
            })
            .unwrap_or_else(|| panic!("no span for invocation {k}\n{}", collector.summary()));
        for j in 0..3 {
            let text = format!("overlap {k} line {j}");
            let r = logs
                .iter()
                .find(|r| body(r) == text)
                .unwrap_or_else(|| panic!("'{text}' missing\n{}", collector.summary()));
            assert_eq!(
                attr_str(&r.attributes, "faas.invocation_id"),
                Some(s.request_id.as_str()),
                "{text}"
            );
            assert_eq!(r.trace_id, inv.trace_id, "{text}");
            assert_eq!(r.span_id, inv.span_id, "{text}");
        }
    }
}

/// An older invocation whose `platform.report` never comes (Lambda dropped
/// it) does not keep SHUTDOWN waiting for the whole report budget: only
/// the last invocation's report is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_report_that_never_comes() {
    use support::emulator::telemetry_event;
    let collector = FaultCollector::start().await;
    let emu = start_with(
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
            ("LAMBDA_OTEL_BRIDGE_SHUTDOWN_REPORT_WAIT_MS", "1500"),
        ]),
        true,
    )
    .await;
    let invoke = |text: &'static str| {
        let rid = new_request_id();
        InvokeSpec {
            request_id: rid.clone(),
            logs: vec![line(&rid, text)],
            ..InvokeSpec::default()
        }
    };
    emu.invoke(invoke("first")).await.expect("invoke");
    // An invocation whose report is lost: delivered at the next thaw.
    let lost = new_request_id();
    emu.push_events(vec![
        telemetry_event("platform.start", serde_json::json!({"requestId": lost})),
        telemetry_event(
            "platform.runtimeDone",
            serde_json::json!({"requestId": lost, "status": "success"}),
        ),
    ])
    .await;
    emu.invoke(invoke("second")).await.expect("invoke");
    emu.invoke(invoke("third")).await.expect("invoke");
    let out = emu.shutdown("spindown", Duration::from_secs(5)).await;
    assert!(out.exited_by_itself, "{out:?}\n{}", emu.output());
    let summary = summary_line(&emu).await;
    // The last invocation's report was waited for and arrived; only the
    // lost one is still awaited.
    assert_eq!(summary_field(&summary, "awaiting_report"), 1, "{summary}");
    // Waiting the whole 1.5 s budget for it would show here.
    assert!(
        out.elapsed < Duration::from_millis(1200),
        "SHUTDOWN took {:?}\n{summary}",
        out.elapsed
    );
}

/// A freeze longer than the export timeout while a slow request is in
/// flight: at the thaw both the request's timer and the collector's answer
/// (waiting in the socket since the freeze) are ready. The answer wins, so
/// the data is not sent a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_freeze_with_a_request_in_flight_sends_nothing_twice() {
    for protocol in ["http/protobuf", "grpc"] {
        let collector = FaultCollector::start().await;
        collector.push_faults(vec![Fault::Slow(Duration::from_millis(1500))]);
        let emu = start_with(
            env(&[
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    &endpoint_for(&collector, protocol),
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
                ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
            ]),
            true,
        )
        .await;
        for i in 0..2 {
            let rid = new_request_id();
            emu.invoke(InvokeSpec {
                request_id: rid.clone(),
                logs: vec![line(&rid, &format!("long freeze {protocol} {i}"))],
                ..InvokeSpec::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", emu.output()));
            // Frozen for longer than the 3 s export timeout.
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        emu.shutdown("spindown", Duration::from_secs(3)).await;
        let mut logs = HashMap::new();
        for r in collector.log_records() {
            *logs.entry(body(&r)).or_insert(0) += 1;
        }
        for i in 0..2 {
            let t = format!("long freeze {protocol} {i}");
            assert_eq!(logs.get(&t), Some(&1), "{t}\n{}", collector.summary());
        }
        let mut spans = HashMap::new();
        for s in collector.spans() {
            *spans.entry((s.trace_id, s.span_id)).or_insert(0) += 1;
        }
        assert!(
            spans.values().all(|n| *n == 1),
            "{protocol}: a span twice\n{}",
            collector.summary()
        );
    }
}

/// SHUTDOWN's two waits (for the last report, then for a quiet telemetry
/// stream) share one `SHUTDOWN_REPORT_WAIT_MS` budget: with a report that
/// never comes and telemetry that never stops, SHUTDOWN takes about the
/// budget once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_share_one_budget() {
    use support::emulator::telemetry_event;
    let collector = FaultCollector::start().await;
    let emu = start_with(
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
            ("LAMBDA_OTEL_BRIDGE_SHUTDOWN_REPORT_WAIT_MS", "1000"),
        ]),
        true,
    )
    .await;
    let rid = new_request_id();
    emu.invoke(InvokeSpec {
        request_id: rid.clone(),
        logs: vec![line(&rid, "before shutdown")],
        ..InvokeSpec::default()
    })
    .await
    .expect("invoke");
    // The newest invocation's report never comes.
    let unreported = new_request_id();
    emu.push_events(vec![telemetry_event(
        "platform.start",
        serde_json::json!({"requestId": unreported}),
    )])
    .await;
    // Telemetry keeps arriving during SHUTDOWN, never quiet for 50 ms.
    let trickle = async {
        for i in 0..100 {
            let line =
                telemetry_event("extension", serde_json::json!(format!("still talking {i}")));
            let _ = emu
                .push_raw(serde_json::to_vec(&vec![line]).expect("json"))
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (out, _) = tokio::join!(emu.shutdown("spindown", Duration::from_secs(5)), trickle);
    assert!(out.exited_by_itself, "{out:?}\n{}", emu.output());
    // One budget of 1 s (plus the final flush), where two waits would take 2 s.
    assert!(
        out.elapsed < Duration::from_millis(1700),
        "SHUTDOWN took {:?}\n{}",
        out.elapsed,
        emu.output()
    );
}
