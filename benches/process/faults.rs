//! `BENCH_ONLY=faults`: what a misbehaving collector costs the function in
//! `end` mode, the policy that bills every export: the post-runtime time of
//! each invocation (`platform.runtimeDone` acknowledged → `/next`), the first
//! invocation (the first flush that meets the fault) apart from the rest,
//! and how many requests the collector received per invocation.
//!
//! Requests count for the invocation during which they reached the
//! collector (the request head): a window runs from one invocation's freeze
//! to the next one's. The collector records a request once it answers it, so
//! the requests are read after SHUTDOWN and after the slow collector's last
//! answers were due.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::emulator::{new_request_id, InvokeSpec};
use crate::fault_collector::{Fault, FaultCollector, Received};
use crate::{ms, percentile, quick, start};

/// What the collector does, and how the bridge talks to it.
struct Case {
    name: &'static str,
    protocol: &'static str,
    /// `None`: nobody listens on the endpoint's port (connection refused).
    fault: Option<Fault>,
}

fn cases() -> Vec<Case> {
    let http = "http/protobuf";
    vec![
        Case {
            name: "healthy",
            protocol: http,
            fault: Some(Fault::Ok),
        },
        Case {
            name: "429, Retry-After: 0, forever",
            protocol: http,
            fault: Some(Fault::Status {
                code: 429,
                retry_after: Some(0),
            }),
        },
        Case {
            name: "RESOURCE_EXHAUSTED, RetryInfo 0 s",
            protocol: "grpc",
            fault: Some(Fault::Grpc {
                code: 8,
                retry_after: Some(0),
            }),
        },
        Case {
            name: "every answer after 1.5 s",
            protocol: http,
            fault: Some(Fault::Slow(Duration::from_millis(1500))),
        },
        Case {
            name: "hangs (never answers)",
            protocol: http,
            fault: Some(Fault::Hang),
        },
        Case {
            name: "connection refused",
            protocol: http,
            fault: None,
        },
        Case {
            name: "503, no Retry-After",
            protocol: http,
            fault: Some(Fault::Status {
                code: 503,
                retry_after: None,
            }),
        },
    ]
}

/// A loopback port nobody listens on: bound, read, released.
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local_addr").port()
}

/// Requests per window, in all and the most for one signal; the windows end
/// at `ends`, and what came later (SHUTDOWN) is the last element.
fn windows(requests: &[Received], ends: &[Instant]) -> Vec<(usize, usize)> {
    let mut per_signal: Vec<HashMap<&str, usize>> = vec![HashMap::new(); ends.len() + 1];
    for r in requests {
        let i = ends.iter().position(|e| r.at <= *e).unwrap_or(ends.len());
        *per_signal[i].entry(r.signal.as_str()).or_default() += 1;
    }
    per_signal
        .iter()
        .map(|w| (w.values().sum(), w.values().copied().max().unwrap_or(0)))
        .collect()
}

async fn run_case(case: &Case, invocations: usize) {
    let collector = FaultCollector::start().await;
    let endpoint = match &case.fault {
        Some(fault) => {
            collector.set_fault(fault.clone());
            match case.protocol {
                "grpc" => collector.grpc_endpoint().expect("gRPC endpoint"),
                _ => collector.http_endpoint(),
            }
        }
        None => format!("http://127.0.0.1:{}", refused_port()),
    };
    let emu = start(vec![
        ("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
        (
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_PROTOCOL".into(),
            case.protocol.into(),
        ),
        ("LAMBDA_OTEL_BRIDGE_FLUSH".into(), "end".into()),
    ])
    .await;
    emu.init(vec![], Duration::from_secs(10))
        .await
        .expect("init");
    let mut post = Vec::new();
    let mut late_acks = 0;
    let mut ends = Vec::new();
    let began = Instant::now();
    for i in 0..invocations {
        let rid = new_request_id();
        let o = emu
            .invoke(InvokeSpec {
                request_id: rid,
                logs: (0..10)
                    .map(|k| json!(format!("invocation {i} line {k}: item processed")))
                    .collect(),
                handler_duration: Duration::from_millis(20),
                ..InvokeSpec::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        if o.post_runtime.is_none() {
            late_acks += 1;
        }
        post.push(ms(o.delay_after_runtime()));
        // Frozen now: nothing more starts until the next thaw.
        ends.push(Instant::now());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = began.elapsed();
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    if let Some(Fault::Slow(by)) = case.fault {
        tokio::time::sleep(by + Duration::from_millis(100)).await;
    }
    let windows = windows(&collector.requests(), &ends);
    let during: usize = windows[..invocations].iter().map(|w| w.0).sum();

    let first = post[0];
    let mut after = post[1..].to_vec();
    after.sort_by(f64::total_cmp);
    let requests = if case.fault.is_some() {
        let later = &windows[1..invocations];
        let mut totals: Vec<f64> = later.iter().map(|w| w.0 as f64).collect();
        totals.sort_by(f64::total_cmp);
        let most_per_signal = later.iter().map(|w| w.1).max().unwrap_or(0);
        format!(
            "requests per invocation: first {} (most for one signal {}), after p50 {:.0} max {:.0} (most for one signal {most_per_signal}); {} during the {invocations} invocations, {} at shutdown",
            windows[0].0,
            windows[0].1,
            percentile(&totals, 0.5),
            totals.last().copied().unwrap_or(f64::NAN),
            during,
            windows[invocations].0,
        )
    } else {
        "no collector to count requests".into()
    };
    println!(
        "{:>34} ({}): first flush {first:.1} ms | after ({}): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        case.name,
        case.protocol,
        after.len(),
        percentile(&after, 0.5),
        percentile(&after, 0.99),
        after.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "{:>34}  {requests} | /next before the runtimeDone ack (counted 0 ms): {late_acks} | {:.1} s for the invocations, shutdown {:.0} ms{}",
        "",
        wall.as_secs_f64(),
        out.elapsed.as_secs_f64() * 1000.0,
        if out.killed { " (killed at the deadline)" } else { "" },
    );
}

pub async fn run() {
    let invocations = if quick() { 10 } else { 30 };
    println!(
        "\n## billed post-runtime time per invocation (runtimeDone acknowledged → /next), `end` mode, {invocations} invocations of 20 ms with 10 log lines, 100 ms frozen between them, per collector fault"
    );
    for case in cases() {
        run_case(&case, invocations).await;
    }
}
