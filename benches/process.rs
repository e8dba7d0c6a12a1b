//! Whole-process benchmark: the shipped binary under the emulated Lambda
//! platform, exporting to a loopback collector. Prints figures; asserts
//! nothing about speed (these machines are shared and noisy).
//!
//! The binary is the one the layer ships: built by `scripts/build-layer.sh
//! --binary-only` (`cargo zigbuild --release` into `target/shipped`, or
//! the link `BRIDGE_LINK` names), not the
//! `target/release/lambda-otel-bridge` Cargo builds for this bench, which
//! has the dev-dependencies' features unified in (tokio's full feature
//! set). `BENCH_BINARY=<path>` measures another binary.
//!
//! ```sh
//! cargo bench --bench process            # all sections
//! BENCH_QUICK=1 cargo bench --bench process   # fewer repetitions
//! BENCH_ONLY=startup cargo bench --bench process   # one section
//! BENCH_ONLY=share cargo bench --bench process     # at Lambda's CPU shares (root, cgroups)
//! ```
//!
//! Sections (`BENCH_ONLY=<section>`):
//! - `startup`: spawn → first `/next` (median of N starts, with the local
//!   OTLP receiver on and off, and with a headers secret whose AWS endpoint
//!   never answers: the fetch must not delay `/next`), RSS after init;
//! - `workload`: RSS at the end and at peak, CPU seconds per 1,000
//!   invocations with 50 log lines each, post-runtime time per invocation
//!   (runtimeDone delivered → `/next`) p50/p99 in `end` and `adaptive` mode;
//! - `age`: data age at the collector per flush policy for bursty traffic
//!   ([`age`]);
//! - `faults`: billed post-runtime time and requests per invocation against
//!   a misbehaving collector ([`faults`]);
//! - `share`: start-up, memory, billed post-runtime time and CPU at
//!   Lambda's CPU shares for 128, 512 and 1,769 MB (a cgroup CPU quota on
//!   the extension, [`share`]);
//! - `cost`: bytes exported per invocation with and without the cost
//!   controls ([`cost`]).

#[path = "../tests/support/emulator/mod.rs"]
mod emulator;
#[path = "../tests/support/fault_collector.rs"]
mod fault_collector;

#[path = "process/age.rs"]
mod age;
#[path = "process/cost.rs"]
mod cost;
#[path = "process/faults.rs"]
mod faults;
#[path = "process/share.rs"]
mod share;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use emulator::{new_request_id, Emulator, EmulatorOptions, InvokeSpec};
use fault_collector::FaultCollector;
use serde_json::json;

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (VmRSS, VmHWM) in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Where the resident memory is (from /proc/PID/smaps_rollup), in KiB.
fn smaps(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    [
        "Rss:",
        "Shared_Clean:",
        "Private_Clean:",
        "Private_Dirty:",
        "Anonymous:",
    ]
    .iter()
    .filter_map(|k| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(|v| format!("{} {v} KiB", k.trim_end_matches(':')))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// utime + stime in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0]; utime is field 14 overall → [11], stime [12].
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    // SAFETY-free: sysconf via libc.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}

/// The binary under test, set once in `main`.
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// `BENCH_BINARY`, else the shipped binary as `scripts/build-layer.sh` builds
/// it for this machine's architecture (built now if it is not up to date).
fn shipped_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BENCH_BINARY") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    let mut build = Command::new(root.join("scripts/build-layer.sh"));
    // What Cargo sets for running this bench would reach the script's cargo:
    // ring's build script reruns when CARGO_MANIFEST_DIR changes, and the
    // shipped binary would be rebuilt at every switch between a bench run
    // and a plain run of the script.
    for (name, _) in std::env::vars() {
        let set_for_the_bench = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_str());
        if set_for_the_bench {
            build.env_remove(name);
        }
    }
    let output = build
        .args(["--binary-only", arch])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/build-layer.sh runs");
    assert!(
        output.status.success(),
        "scripts/build-layer.sh --binary-only {arch} failed"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

async fn start(env: Vec<(String, String)>) -> Emulator {
    Emulator::start(
        BINARY.get().expect("the binary is chosen in main"),
        "lambda-otel-bridge",
        EmulatorOptions {
            freeze_between_invocations: true,
            extra_env: env,
            ..EmulatorOptions::default()
        },
    )
    .await
}

fn lines(rid: &str, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            json!(format!(
                "[INFO]\t2025-03-04T10:15:30.610Z\t{rid}\tprocessing item {i} of the batch"
            ))
        })
        .collect()
}

/// The extension exporting to `collector` over HTTP with flush `policy`,
/// its init phase done.
async fn start_with_policy(collector: &FaultCollector, policy: &str) -> Emulator {
    let emu = start(vec![
        (
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT".into(),
            collector.http_endpoint(),
        ),
        ("LAMBDA_OTEL_BRIDGE_FLUSH".into(), policy.into()),
    ])
    .await;
    emu.init(vec![], Duration::from_secs(10))
        .await
        .expect("init");
    emu
}

async fn startup(collector: &FaultCollector) {
    let runs = if quick() { 5 } else { 25 };
    println!("\n## spawn → first /next ({runs} starts each)");
    // An AWS endpoint that accepts connections and never answers: the
    // headers secret's fetch is still pending at the first /next.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hanging_url = format!("http://{}", hanging.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = hanging.accept().await {
            held.push(sock);
        }
    });
    let secret = |url: &str| -> Vec<(String, String)> {
        [
            (
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_HEADERS_SECRET",
                "collector/headers",
            ),
            ("AWS_ENDPOINT_URL", url),
            ("AWS_ACCESS_KEY_ID", "ASIABENCHEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_SESSION_TOKEN", "bench"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    for (label, receiver, extra) in [
        ("receiver on", "true", Vec::new()),
        ("receiver off", "false", Vec::new()),
        ("headers secret", "true", secret(&hanging_url)),
    ] {
        let mut times = Vec::new();
        let mut rss_after_init = Vec::new();
        for _ in 0..runs {
            let mut env = vec![
                (
                    "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT".into(),
                    collector.http_endpoint(),
                ),
                ("LAMBDA_OTEL_BRIDGE_RECEIVER".into(), receiver.into()),
            ];
            env.extend(extra.iter().cloned());
            let emu = start(env).await;
            let init = emu
                .init(vec![], Duration::from_secs(10))
                .await
                .expect("init");
            times.push(ms(init.first_next_at));
            rss_after_init.push(rss(emu.pid()).0 as f64 / 1024.0);
            if times.len() == 1 {
                println!("{label:>13}: memory after init: {}", smaps(emu.pid()));
            }
            emu.shutdown("spindown", Duration::from_secs(2)).await;
        }
        times.sort_by(f64::total_cmp);
        rss_after_init.sort_by(f64::total_cmp);
        println!(
            "{label:>13}: median {:.2} ms, p90 {:.2} ms, min {:.2} ms | RSS after init median {:.1} MiB",
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            times[0],
            percentile(&rss_after_init, 0.5)
        );
    }
}

async fn workload(collector: &FaultCollector, policy: &str, invocations: usize, lines_per: usize) {
    let emu = start_with_policy(collector, policy).await;
    let pid = emu.pid();
    let (rss_init, _) = rss(pid);
    let cpu0 = cpu_seconds(pid);
    let mut post = Vec::new();
    let mut early = 0;
    for _ in 0..invocations {
        let rid = new_request_id();
        let o = emu
            .invoke(InvokeSpec {
                request_id: rid.clone(),
                logs: lines(&rid, lines_per),
                handler_duration: Duration::from_millis(5),
                ..InvokeSpec::default()
            })
            .await
            .expect("invoke");
        // /next before runtimeDone was delivered (a background flush; the
        // emulator may then deliver runtimeDone only after the next thaw)
        // costs the invocation nothing after its runtime finished: 0.
        match o.runtime_done_delivered_at {
            Some(done) if o.next_called_at >= done => post.push(ms(o.next_called_at - done)),
            _ => {
                early += 1;
                post.push(0.0);
            }
        }
    }
    // Read while frozen: the counters are stable.
    let cpu = cpu_seconds(pid) - cpu0;
    let (rss_now, peak) = rss(pid);
    let shutdown = emu.shutdown("spindown", Duration::from_secs(2)).await;
    post.sort_by(f64::total_cmp);
    println!(
        "{policy:>9}: {invocations} invocations x {lines_per} lines | /next before runtimeDone in {early} | post-runtime p50 {:.3} ms p99 {:.3} ms max {:.3} ms | CPU {:.3} s per 1000 invocations | RSS after init {:.1} MiB, at end {:.1} MiB, peak {:.1} MiB | SHUTDOWN to exit {:.1} ms",
        percentile(&post, 0.5),
        percentile(&post, 0.99),
        post.last().copied().unwrap_or(f64::NAN),
        cpu * 1000.0 / invocations as f64,
        rss_init as f64 / 1024.0,
        rss_now as f64 / 1024.0,
        peak as f64 / 1024.0,
        ms(shutdown.elapsed),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let binary = BINARY.get_or_init(shipped_binary);
        println!("# lambda-otel-bridge whole-process benchmark");
        println!("binary: {}", binary.display());
        if let Ok(meta) = std::fs::metadata(binary) {
            println!(
                "binary size: {} bytes ({:.2} MiB)",
                meta.len(),
                meta.len() as f64 / 1_048_576.0
            );
        }
        println!(
            "machine: {} CPUs",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let wants = |section: &str| only.is_empty() || only == section;
        if !["", "startup", "workload", "age", "faults", "share", "cost"].contains(&only.as_str()) {
            println!("unknown BENCH_ONLY={only:?}: startup, workload, age, faults, share or cost");
            return;
        }
        let collector = FaultCollector::start().await;
        if wants("startup") {
            startup(&collector).await;
        }
        if wants("workload") {
            let n = if quick() { 50 } else { 200 };
            println!(
                "\n## workload (emulated sandbox frozen between invocations, loopback collector)"
            );
            for (policy, lines_per) in [("end", 50), ("adaptive", 50), ("adaptive", 500)] {
                let t = std::time::Instant::now();
                workload(&collector, policy, n, lines_per).await;
                println!(
                    "{:>9}  ({:.1} s wall, {:.0} log lines/s offered)",
                    "",
                    t.elapsed().as_secs_f64(),
                    (n * lines_per) as f64 / t.elapsed().as_secs_f64()
                );
            }
            println!(
                "\ncollector received {} requests, {} log records",
                collector.requests().len(),
                collector.log_records().len()
            );
        }
        if wants("age") {
            age::run().await;
        }
        if wants("faults") {
            faults::run().await;
        }
        if wants("share") {
            share::run(&collector).await;
        }
        if wants("cost") {
            cost::run().await;
        }
    });
}
