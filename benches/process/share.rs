//! `BENCH_ONLY=share`: the bridge at Lambda's CPU shares. Lambda gives a
//! function CPU in proportion to its memory (1,769 MB buys one vCPU, so
//! 128 MB runs with ~7 % of one); here the extension runs in a cgroup of its
//! own whose CPU quota is that share of one CPU (cgroup v1
//! `cpu.cfs_quota_us` per 100 ms `cpu.cfs_period_us`, or v2 `cpu.max`;
//! `BENCH_CFS_PERIOD_US` sets another period),
//! joined between fork and exec so start-up is throttled from its first
//! instruction. The runs of the shares are interleaved (the order rotates
//! every round); per share it prints medians and spreads of:
//!
//! - exec → first `/next` (joining the cgroups between fork and exec waits
//!   for the kernel, tens of milliseconds, and is not counted);
//! - CPU time before the first `/next` (the cgroup's CPU counter as the
//!   `/next` call arrives) and for the whole init phase (read once the
//!   emulator froze the process after it), minor page faults;
//! - RSS after init and at peak (VmRSS, VmHWM);
//! - billed post-runtime time per invocation in `end` mode (the emulated
//!   runtime done → `/next`: Lambda's 25 ms buffering, the wait for
//!   `platform.runtimeDone`, the flush) and CPU per invocation.
//!
//! On Lambda the quota covers the whole sandbox (runtime and extensions);
//! here only the extension is throttled, the emulator and collector are not.
//! The cgroups are removed at the end; where neither cgroup version is
//! writable the section says so and is skipped.

use std::time::Duration;

use crate::emulator::{
    new_request_id, period_from_env, CpuShare, Emulator, EmulatorOptions, InvokeSpec,
};
use crate::fault_collector::FaultCollector;
use crate::{lines, ms, percentile, quick, rss, BINARY};

/// Memory sizes whose CPU share is measured; 1,769 MB buys one vCPU.
const SHARES_MB: [u32; 3] = [128, 512, 1769];
/// The CFS period: 100 ms unless `BENCH_CFS_PERIOD_US` says otherwise (a
/// shorter period throttles sooner: start-up CPU above one period's quota
/// waits for the next period).
fn period_us() -> u64 {
    period_from_env("BENCH_CFS_PERIOD_US")
}

const GROUP_PREFIX: &str = "lambda-otel-bridge-bench-";

fn create_groups() -> Result<Vec<CpuShare>, String> {
    SHARES_MB
        .iter()
        .map(|&mb| CpuShare::create(GROUP_PREFIX, &format!("{mb}mb"), mb, period_us()))
        .collect()
}

#[derive(Default)]
struct Samples {
    join_ms: Vec<f64>,
    first_next_ms: Vec<f64>,
    cpu_before_next_ms: Vec<f64>,
    cpu_init_ms: Vec<f64>,
    minflt: Vec<f64>,
    rss_init_mib: Vec<f64>,
    peak_mib: Vec<f64>,
    billed_ms: Vec<f64>,
    cpu_per_invocation_ms: Vec<f64>,
}

/// Minor page faults so far, from /proc/PID/stat.
fn minor_faults(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    // Field 10 overall (minflt) is [7] after the command.
    after
        .split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

async fn one_run(
    collector: &FaultCollector,
    group: &CpuShare,
    invocations: usize,
    out: &mut Samples,
) {
    let cpu0 = group.cpu_ns();
    let emu = Emulator::start(
        BINARY.get().expect("the binary is chosen in main"),
        "lambda-otel-bridge",
        EmulatorOptions {
            freeze_between_invocations: true,
            memory_mb: group.mb,
            extra_env: vec![
                (
                    "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT".into(),
                    collector.http_endpoint(),
                ),
                ("LAMBDA_OTEL_BRIDGE_FLUSH".into(), "end".into()),
            ],
            cgroup_procs: group.procs.clone(),
            cpu_counter: group.counter.as_ref().map(|(p, _)| p.clone()),
            ..EmulatorOptions::default()
        },
    )
    .await;
    let init = emu
        .init(vec![], Duration::from_secs(20))
        .await
        .expect("init");
    let pid = emu.pid();
    let scale = group.counter.as_ref().map_or(1, |(_, s)| *s);
    let cpu_init = group.cpu_ns();
    // Joining the cgroups (before exec) is the bench's cost, not the bridge's.
    let exec_at = emu.exec_at().unwrap_or_default();
    out.join_ms.push(ms(exec_at));
    out.first_next_ms
        .push(ms(init.first_next_at.saturating_sub(exec_at)));
    if let (Some(c0), Some(at_next)) = (cpu0, init.cpu_counter_at_first_next) {
        out.cpu_before_next_ms
            .push(ns_to_ms((at_next * scale).saturating_sub(c0)));
    }
    if let (Some(c0), Some(c1)) = (cpu0, cpu_init) {
        out.cpu_init_ms.push(ns_to_ms(c1.saturating_sub(c0)));
    }
    out.minflt.push(minor_faults(pid));
    out.rss_init_mib.push(rss(pid).0 as f64 / 1024.0);
    for _ in 0..invocations {
        let rid = new_request_id();
        let o = emu
            .invoke(InvokeSpec {
                request_id: rid.clone(),
                logs: lines(&rid, 10),
                handler_duration: Duration::from_millis(5),
                ..InvokeSpec::default()
            })
            .await
            .expect("invoke");
        out.billed_ms
            .push(ms(o.next_called_at.saturating_sub(o.runtime_done_at)));
    }
    // Read while frozen after the last invocation.
    if let (Some(c1), Some(c2)) = (cpu_init, group.cpu_ns()) {
        out.cpu_per_invocation_ms
            .push(ns_to_ms(c2.saturating_sub(c1)) / invocations as f64);
    }
    out.peak_mib.push(rss(pid).1 as f64 / 1024.0);
    emu.shutdown("spindown", Duration::from_secs(2)).await;
}

/// `median (p10–p90, min–max)`.
fn spread(values: &mut [f64], digits: usize) -> String {
    if values.is_empty() {
        return "n/a".into();
    }
    values.sort_by(f64::total_cmp);
    let f = |v: f64| format!("{v:.digits$}");
    format!(
        "{} ({}–{}, min {} max {})",
        f(percentile(values, 0.5)),
        f(percentile(values, 0.1)),
        f(percentile(values, 0.9)),
        f(values[0]),
        f(values[values.len() - 1])
    )
}

pub async fn run(collector: &FaultCollector) {
    let rounds = if quick() { 5 } else { 15 };
    let invocations = if quick() { 10 } else { 20 };
    println!(
        "\n## Lambda CPU shares ({rounds} interleaved rounds; per run: init, {invocations} invocations of 5 ms with 10 log lines in `end` mode, SHUTDOWN)"
    );
    let groups = match create_groups() {
        Ok(g) => g,
        Err(e) => {
            println!("skipped: no writable cgroup CPU controller here ({e})");
            return;
        }
    };
    if groups.iter().any(|g| g.counter.is_none()) {
        println!("(no cgroup CPU counter here: CPU figures are n/a)");
    }
    let mut samples: Vec<Samples> = groups.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds {
        for k in 0..groups.len() {
            let i = (round + k) % groups.len();
            one_run(collector, &groups[i], invocations, &mut samples[i]).await;
        }
    }
    for (group, s) in groups.iter().zip(samples.iter_mut()) {
        println!(
            "{} MB (CPU quota {} µs per {} µs): median (p10–p90, min–max)",
            group.mb,
            group.quota_us(),
            group.period_us
        );
        let rows: [(&str, &mut Vec<f64>, usize, &str); 9] = [
            ("exec → first /next", &mut s.first_next_ms, 1, "ms"),
            (
                "(fork → exec: joining the cgroups, not counted)",
                &mut s.join_ms,
                1,
                "ms",
            ),
            ("CPU before first /next", &mut s.cpu_before_next_ms, 2, "ms"),
            (
                "CPU of the init phase (until frozen after it)",
                &mut s.cpu_init_ms,
                2,
                "ms",
            ),
            ("minor faults after init", &mut s.minflt, 0, ""),
            ("RSS after init", &mut s.rss_init_mib, 2, "MiB"),
            ("RSS peak (VmHWM)", &mut s.peak_mib, 2, "MiB"),
            (
                "billed post-runtime (`end`, runtime done → /next)",
                &mut s.billed_ms,
                1,
                "ms",
            ),
            ("CPU per invocation", &mut s.cpu_per_invocation_ms, 2, "ms"),
        ];
        for (label, values, digits, unit) in rows {
            println!("  {label}: {} {unit}", spread(values, digits));
        }
    }
    drop(groups);
}
