//! `BENCH_ONLY=age`: how old the bridge's data is when the collector receives
//! it, per flush policy, for bursty traffic: bursts of frequent invocations
//! with an idle gap after each (the sandbox frozen all along), then SHUTDOWN.
//!
//! The age of a log record is its arrival at the collector (the head of the
//! request that carried it, wall clock) minus the time the emulator stamped
//! on its `function` event when the emulated handler wrote it (the line has
//! no time of its own, so that is the record's `time_unix_nano`). The age of
//! an invocation span is its arrival minus its end time (Lambda's
//! `platform.runtimeDone`). Records the collector got twice count once, at
//! their first arrival.
//!
//! For each burst it counts what was produced and had not reached the
//! collector when the burst's last invocation ended (its `/next`, read once
//! the sandbox is frozen) and again at the end of the idle gap: what waits in
//! the frozen sandbox for the next INVOKE or SHUTDOWN.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde_json::json;

use crate::emulator::{new_request_id, InvokeSpec};
use crate::fault_collector::FaultCollector;
use crate::{percentile, quick, start_with_policy};

/// The emulator's default function name: the name of invocation spans.
const FUNCTION_NAME: &str = "orders-api";
const POLICIES: [&str; 3] = ["end", "adaptive", "periodic:1000"];

/// A small deterministic generator (xorshift64*): every policy sees the same
/// traffic.
struct Rng(u64);

impl Rng {
    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo + 1)
    }
}

/// One emulated invocation of the traffic shape.
struct Call {
    handler: Duration,
    lines: usize,
    /// From the previous invocation's INVOKE to this one's.
    after_previous: Duration,
}

/// Bursts of calls, each followed by `idle` with the sandbox frozen.
struct Traffic {
    bursts: Vec<Vec<Call>>,
    idle: Duration,
}

fn traffic() -> Traffic {
    let (bursts, per_burst, idle) = if quick() {
        (2, 10, Duration::from_secs(2))
    } else {
        (3, 20, Duration::from_secs(4))
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    Traffic {
        bursts: (0..bursts)
            .map(|_| {
                (0..per_burst)
                    .map(|_| Call {
                        handler: Duration::from_millis(rng.between(20, 100)),
                        lines: rng.between(5, 20) as usize,
                        after_previous: Duration::from_millis(rng.between(100, 200)),
                    })
                    .collect()
            })
            .collect(),
        idle,
    }
}

/// Converts the collector's `Instant`s to Unix nanoseconds.
struct Clock {
    instant: Instant,
    wall_ns: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            wall_ns: unix_ns(SystemTime::now()),
        }
    }

    fn wall_ns(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(d) => self.wall_ns + d.as_nanos() as u64,
            None => self.wall_ns - self.instant.duration_since(at).as_nanos() as u64,
        }
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The arrival (Unix ns) of each item the collector accepted for `signal`,
/// in the order of its flattened accepted payloads (`log_records()`,
/// `spans()`): both are recorded together, request by request.
fn arrivals(collector: &FaultCollector, signal: &str, clock: &Clock) -> Vec<u64> {
    collector
        .requests_for(signal)
        .iter()
        .filter(|r| r.accepted())
        .flat_map(|r| std::iter::repeat_n(clock.wall_ns(r.at), r.items))
        .collect()
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            AV::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// An item produced by the emulated function: which burst, and when it
/// reached the collector (first arrival) with its age.
#[derive(Default)]
struct Seen {
    /// (produced, first arrival), Unix ns.
    first: Option<(u64, u64)>,
    copies: usize,
}

/// Ages of the items that arrived, and what did not.
struct Ages {
    ages_ms: Vec<f64>,
    missing: usize,
    duplicates: usize,
}

fn ages(items: &HashMap<String, Seen>) -> Ages {
    let mut ages_ms: Vec<f64> = items
        .values()
        .filter_map(|s| s.first)
        .map(|(produced, arrived)| (arrived as f64 - produced as f64) / 1e6)
        .collect();
    ages_ms.sort_by(f64::total_cmp);
    Ages {
        missing: items.values().filter(|s| s.first.is_none()).count(),
        duplicates: items.values().map(|s| s.copies.saturating_sub(1)).sum(),
        ages_ms,
    }
}

fn describe(a: &Ages) -> String {
    let over = |ms: f64| a.ages_ms.iter().filter(|x| **x > ms).count();
    format!(
        "n {} | p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms | > 1 s: {}, > 5 s: {} | missing {}, duplicates {}",
        a.ages_ms.len(),
        percentile(&a.ages_ms, 0.5),
        percentile(&a.ages_ms, 0.99),
        a.ages_ms.last().copied().unwrap_or(f64::NAN),
        over(1000.0),
        over(5000.0),
        a.missing,
        a.duplicates,
    )
}

/// Items of bursts `..=burst` that had not arrived at `at` (Unix ns).
fn waiting(
    items: &HashMap<String, Seen>,
    burst_of: &HashMap<String, usize>,
    burst: usize,
    at: u64,
) -> usize {
    items
        .iter()
        .filter(|(key, _)| burst_of.get(*key).is_some_and(|b| *b <= burst))
        .filter(|(_, s)| s.first.is_none_or(|(_, arrived)| arrived > at))
        .count()
}

/// The bridge's own `lambda_otel_bridge.export.data_age` (bridge received →
/// accepted, oldest item per request), last point per signal.
fn bridge_histogram(collector: &FaultCollector) -> String {
    let mut last = HashMap::new();
    for m in collector.metrics() {
        if m.name != "lambda_otel_bridge.export.data_age" {
            continue;
        }
        if let Some(Data::Histogram(h)) = &m.data {
            for p in &h.data_points {
                let signal = str_attr(&p.attributes, "signal").unwrap_or_default();
                last.insert(signal, p.clone());
            }
        }
    }
    if last.is_empty() {
        return "not exported".into();
    }
    let mut signals: Vec<_> = last.into_iter().collect();
    signals.sort_by(|a, b| a.0.cmp(&b.0));
    signals
        .iter()
        .map(|(signal, p)| {
            format!(
                "{signal}: {} requests, mean {:.0} ms, max {:.0} ms",
                p.count,
                p.sum.unwrap_or(0.0) * 1000.0 / p.count.max(1) as f64,
                p.max.unwrap_or(f64::NAN) * 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn run_policy(policy: &str, traffic: &Traffic) {
    let collector = FaultCollector::start().await;
    let emu = start_with_policy(&collector, policy).await;
    let clock = Clock::now();
    let began = Instant::now();
    // Log line bodies and request ids, by burst.
    let mut burst_of: HashMap<String, usize> = HashMap::new();
    let mut burst_ends = Vec::new();
    let mut previous: Option<Instant> = None;
    for (b, burst) in traffic.bursts.iter().enumerate() {
        for (k, call) in burst.iter().enumerate() {
            // The first INVOKE of a burst comes at once after the idle gap.
            if let (Some(prev), true) = (previous, k > 0) {
                tokio::time::sleep_until((prev + call.after_previous).into()).await;
            }
            previous = Some(Instant::now());
            let rid = new_request_id();
            let texts: Vec<String> = (0..call.lines)
                .map(|i| format!("burst {b} invocation {k} line {i}: item processed"))
                .collect();
            for t in &texts {
                burst_of.insert(t.clone(), b);
            }
            burst_of.insert(rid.clone(), b);
            emu.invoke(InvokeSpec {
                request_id: rid,
                logs: texts.into_iter().map(|t| json!(t)).collect(),
                handler_duration: call.handler,
                ..InvokeSpec::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{policy}: {e}"));
        }
        // Frozen since the burst's last /next.
        let frozen = unix_ns(SystemTime::now());
        tokio::time::sleep(traffic.idle).await;
        burst_ends.push((frozen, unix_ns(SystemTime::now())));
    }
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    let elapsed = began.elapsed();

    let mut logs: HashMap<String, Seen> = burst_of
        .keys()
        .filter(|k| k.starts_with("burst "))
        .map(|k| (k.clone(), Seen::default()))
        .collect();
    let records = collector.log_records();
    let log_arrivals = arrivals(&collector, "logs", &clock);
    let mut unmatched = records.len().abs_diff(log_arrivals.len());
    for (r, arrived) in records.iter().zip(&log_arrivals) {
        let text = match r.body.as_ref().and_then(|v| v.value.as_ref()) {
            Some(AV::StringValue(s)) => s.clone(),
            _ => continue,
        };
        if let Some(seen) = logs.get_mut(&text) {
            seen.copies += 1;
            if seen.first.is_none() {
                seen.first = Some((r.time_unix_nano, *arrived));
            }
        }
    }
    let mut spans: HashMap<String, Seen> = burst_of
        .keys()
        .filter(|k| !k.starts_with("burst "))
        .map(|k| (k.clone(), Seen::default()))
        .collect();
    let all_spans = collector.spans();
    let span_arrivals = arrivals(&collector, "traces", &clock);
    unmatched += all_spans.len().abs_diff(span_arrivals.len());
    for (s, arrived) in all_spans.iter().zip(&span_arrivals) {
        if s.kind != 2 || s.name != FUNCTION_NAME {
            continue;
        }
        let Some(rid) = str_attr(&s.attributes, "faas.invocation_id") else {
            continue;
        };
        if let Some(seen) = spans.get_mut(&rid) {
            seen.copies += 1;
            if seen.first.is_none() {
                seen.first = Some((s.end_time_unix_nano, *arrived));
            }
        }
    }

    let waits = |items: &HashMap<String, Seen>| {
        burst_ends
            .iter()
            .enumerate()
            .map(|(b, (frozen, thawed))| {
                format!(
                    "{} → {}",
                    waiting(items, &burst_of, b, *frozen),
                    waiting(items, &burst_of, b, *thawed)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{policy:>14}: {:.1} s, {} requests, shutdown {:.0} ms{}",
        elapsed.as_secs_f64(),
        collector.requests().len(),
        out.elapsed.as_secs_f64() * 1000.0,
        if out.killed { " (killed)" } else { "" }
    );
    println!("{:>14}  log records      {}", "", describe(&ages(&logs)));
    println!("{:>14}  invocation spans {}", "", describe(&ages(&spans)));
    println!(
        "{:>14}  not yet at the collector per burst, at its last /next → at the end of the idle gap (frozen all along): log records {} | invocation spans {}",
        "",
        waits(&logs),
        waits(&spans)
    );
    println!(
        "{:>14}  the bridge's own data_age histogram: {}",
        "",
        bridge_histogram(&collector)
    );
    if unmatched > 0 {
        println!(
            "{:>14}  WARNING: {unmatched} items could not be matched to a request",
            ""
        );
    }
}

pub async fn run() {
    let traffic = traffic();
    let calls: usize = traffic.bursts.iter().map(Vec::len).sum();
    let lines: usize = traffic.bursts.iter().flatten().map(|c| c.lines).sum();
    println!(
        "\n## data age at the collector: {} bursts of {} invocations (INVOKEs 100–200 ms apart, handlers 20–100 ms, 5–20 log lines each; {calls} invocations, {lines} lines), each burst followed by {:.0} s idle with the sandbox frozen, then SHUTDOWN",
        traffic.bursts.len(),
        traffic.bursts.first().map_or(0, Vec::len),
        traffic.idle.as_secs_f64()
    );
    for policy in POLICIES {
        run_policy(policy, &traffic).await;
    }
}
