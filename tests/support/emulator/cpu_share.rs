//! Lambda's CPU share for the extension process: a cgroup of its own whose CPU quota is
//! `memory / 1,769 MB` of one CPU (cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, or v2
//! `cpu.max`), joined by the child between fork and exec
//! ([`super::EmulatorOptions::cgroup_procs`]), so start-up is throttled from its first
//! instruction.
//!
//! Used by the process bench (`BENCH_ONLY=share`) and, with `BRIDGE_TEST_CPU_SHARE_MB` set, by
//! every extension the emulator starts: the end-to-end tests then run the bridge at that share
//! (`BRIDGE_TEST_CFS_PERIOD_US` sets the period, 100 ms by default).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Memory that buys one vCPU on Lambda.
pub const FULL_CPU_MB: f64 = 1769.0;

/// One cgroup (per hierarchy) limited to one share. Dropping it removes the groups (after the
/// processes in them have left).
pub struct CpuShare {
    pub mb: u32,
    pub period_us: u64,
    /// Created directories, removed in reverse order.
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` files the extension joins.
    pub procs: Vec<PathBuf>,
    /// The CPU counter file and nanoseconds per unit of it.
    pub counter: Option<(PathBuf, u64)>,
}

impl CpuShare {
    /// Creates the groups `NAME` (under the cgroup v1 `cpu` and `cpuacct` roots, or the v2 root)
    /// with the CPU quota of `mb` per `period_us`. Groups of the same `prefix` whose creating
    /// process (the number after the prefix) is gone are removed first.
    pub fn create(prefix: &str, name: &str, mb: u32, period_us: u64) -> Result<CpuShare, String> {
        remove_stale_groups(prefix);
        // The kernel refuses a CFS quota under 1 ms.
        if quota_us(mb, period_us) < 1_000 {
            return Err(format!(
                "a {mb} MB share of a {period_us} µs period is under the kernel's smallest CPU quota (1 ms): take a period of at least {} µs",
                (1_000.0 * FULL_CPU_MB / f64::from(mb)).ceil()
            ));
        }
        let name = format!("{prefix}{}-{name}", std::process::id());
        v1(&name, mb, period_us).or_else(|e1| {
            v2(&name, mb, period_us).map_err(|e2| format!("cgroup v1: {e1}; cgroup v2: {e2}"))
        })
    }

    /// The CPU quota per period, in microseconds.
    pub fn quota_us(&self) -> u64 {
        quota_us(self.mb, self.period_us)
    }

    /// The group's CPU time so far, in nanoseconds.
    pub fn cpu_ns(&self) -> Option<u64> {
        let (path, scale) = self.counter.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        let first = text
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| !w.is_empty())?;
        first.parse::<u64>().ok().map(|v| v * scale)
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            // The last process may still be leaving the group.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if dir.exists() {
                eprintln!("cpu share: could not remove {}", dir.display());
            }
        }
    }
}

/// The period from `var` (1 ms to 1 s), 100 ms otherwise.
pub fn period_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|p| (1_000..=1_000_000).contains(p))
        .unwrap_or(100_000)
}

fn quota_us(mb: u32, period_us: u64) -> u64 {
    ((period_us as f64) * f64::from(mb) / FULL_CPU_MB).round() as u64
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

fn make_dir(dirs: &mut Vec<PathBuf>, path: PathBuf) -> Result<PathBuf, String> {
    std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
    dirs.push(path.clone());
    Ok(path)
}

fn empty(mb: u32, period_us: u64) -> CpuShare {
    CpuShare {
        mb,
        period_us,
        dirs: Vec::new(),
        procs: Vec::new(),
        counter: None,
    }
}

/// cgroup v1: the `cpu` hierarchy for the quota, `cpuacct` (the same
/// directory where the two are mounted together) for the CPU counter.
fn v1(name: &str, mb: u32, period_us: u64) -> Result<CpuShare, String> {
    let cpu_root = Path::new("/sys/fs/cgroup/cpu");
    if !cpu_root.join("cpu.cfs_quota_us").exists() {
        return Err("no cpu controller at /sys/fs/cgroup/cpu".into());
    }
    let mut group = empty(mb, period_us);
    let cpu = make_dir(&mut group.dirs, cpu_root.join(name))?;
    write(&cpu.join("cpu.cfs_period_us"), &period_us.to_string())?;
    write(&cpu.join("cpu.cfs_quota_us"), &group.quota_us().to_string())?;
    group.procs.push(cpu.join("cgroup.procs"));
    let acct_root = Path::new("/sys/fs/cgroup/cpuacct");
    if cpu.join("cpuacct.usage").exists() {
        group.counter = Some((cpu.join("cpuacct.usage"), 1));
    } else if acct_root.join("cpuacct.usage").exists() {
        let acct = make_dir(&mut group.dirs, acct_root.join(name))?;
        group.procs.push(acct.join("cgroup.procs"));
        group.counter = Some((acct.join("cpuacct.usage"), 1));
    }
    Ok(group)
}

/// cgroup v2: `cpu.max` and `cpu.stat`'s `usage_usec`.
fn v2(name: &str, mb: u32, period_us: u64) -> Result<CpuShare, String> {
    let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(Path::new)
        .find(|r| {
            std::fs::read_to_string(r.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|w| w == "cpu"))
        })
        .ok_or("no hierarchy with the cpu controller")?;
    write(&root.join("cgroup.subtree_control"), "+cpu")?;
    let mut group = empty(mb, period_us);
    let dir = make_dir(&mut group.dirs, root.join(name))?;
    write(
        &dir.join("cpu.max"),
        &format!("{} {period_us}", group.quota_us()),
    )?;
    group.procs.push(dir.join("cgroup.procs"));
    group.counter = Some((dir.join("cpu.stat"), 1_000));
    Ok(group)
}

/// Removes the (empty) groups of an earlier process that was killed before it could remove
/// them.
fn remove_stale_groups(prefix: &str) {
    let roots = [
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpuacct",
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
    ];
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}
