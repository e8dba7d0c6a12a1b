//! The extension as a child process: a copy of the binary in a temporary directory, the Lambda
//! environment (plus, where [`EmulatorOptions::inherit_env`] asks for it, variables of this
//! process), an optional private mount namespace whose `/etc/hosts` gives
//! `sandbox.localdomain` another address (or whose `/etc/resolv.conf` names another name
//! server), output collection, exit watching, and the signals
//! that freeze, thaw and kill its process group.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::ids::new_request_id;
use super::state::Shared;
use super::types::EmulatorOptions;

/// The path of the extension binary: `LAMBDA_OTEL_BRIDGE_TEST_BINARY` when set (`.ci/run`
/// runs some tests against the shipped binary that way), else the one built by Cargo for this
/// test run.
pub fn extension_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LAMBDA_OTEL_BRIDGE_TEST_BINARY") {
        return PathBuf::from(path);
    }
    // Cargo sets CARGO_BIN_EXE_* for integration tests; examples (which
    // include this file too) find the binary next to their own directory.
    match option_env!("CARGO_BIN_EXE_lambda-otel-bridge") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("lambda-otel-bridge")))
            .unwrap_or_else(|| PathBuf::from("target/release/lambda-otel-bridge")),
    }
}

/// Whether `unshare -m` with a bind-mounted `/etc/hosts` works here (checked once).
pub fn unshare_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(probe_unshare)
}

pub(super) fn make_temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lambda-emulator-{}-{}",
        std::process::id(),
        new_request_id()
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("emulator: cannot create {}: {e}", dir.display()));
    dir
}

/// Copies the binary to `dir/exe_name` (so it registers under that name) and makes it executable.
pub(super) fn install_binary(binary: &Path, dir: &Path, exe_name: &str) -> PathBuf {
    let exe = dir.join(exe_name);
    std::fs::copy(binary, &exe).unwrap_or_else(|e| {
        panic!(
            "emulator: cannot copy {} to {}: {e}",
            binary.display(),
            exe.display()
        )
    });
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("emulator: cannot chmod {}: {e}", exe.display()));
    exe
}

pub(super) fn build_command(
    exe: &Path,
    dir: &Path,
    runtime_api: SocketAddr,
    opts: &EmulatorOptions,
) -> (Command, Option<ExecClock>) {
    let private_files = opts.sandbox_ip.is_some()
        || opts.name_server.is_some()
        || !opts.hosts_lines.is_empty()
        || opts.nsswitch_conf.is_some();
    let mut command = if private_files {
        // With a name server the hosts file leaves the sandbox's name out.
        let ip = opts.sandbox_ip.filter(|_| opts.name_server.is_none());
        let hosts = write_hosts_file(dir, ip, &opts.hosts_lines);
        let resolv_conf = opts.name_server.map(|ns| write_resolv_conf(dir, ns));
        let nsswitch = opts
            .nsswitch_conf
            .as_ref()
            .map(|text| write_file(dir.join("nsswitch.conf"), text.clone()));
        let mut command = Command::new("unshare");
        command
            .args([
                "-m",
                "sh",
                "-c",
                r#"mount --bind "$1" /etc/hosts && { [ -z "$3" ] || mount --bind "$3" /etc/resolv.conf; } && { [ -z "$4" ] || mount --bind "$4" /etc/nsswitch.conf; } && exec "$2""#,
                "sh",
            ])
            .arg(hosts)
            .arg(exe)
            .arg(resolv_conf.unwrap_or_default())
            .arg(nsswitch.unwrap_or_default());
        command
    } else {
        Command::new(exe)
    };
    command
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", &opts.function_name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", &opts.function_version)
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            opts.memory_mb.to_string(),
        )
        .env("AWS_REGION", &opts.region)
        .env("AWS_DEFAULT_REGION", &opts.region)
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", &opts.initialization_type)
        .env("TZ", ":UTC")
        // Tests run in parallel: the function-side OTLP receiver takes free
        // ports unless a test chooses them (extra_env comes after and wins).
        .env("LAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR", "127.0.0.1:0")
        .env("LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR", "127.0.0.1:0")
        .envs(inherited_env(&opts.inherit_env))
        // Always the emulator's, whatever was inherited.
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
        .envs(opts.extra_env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let clock = join_cgroups_before_exec(&mut command, &opts.cgroup_procs);
    (command, clock)
}

/// `CLOCK_MONOTONIC` now.
fn monotonic() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given; async-signal-safe.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts
}

fn timespec_ns(ts: libc::timespec) -> i128 {
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// The read end of a pipe on which the child writes the `CLOCK_MONOTONIC` time at which it
/// was about to exec (after joining its cgroups, which can take tens of milliseconds: moving a
/// process between cgroups waits for an RCU grace period).
pub(super) struct ExecClock(std::os::fd::OwnedFd);

impl ExecClock {
    /// The moment the child was about to exec; call after spawn returned and the command was
    /// dropped.
    pub(super) fn exec_instant(self) -> Option<Instant> {
        // Every writer is gone by now: the child exec'd (close-on-exec) and the parent dropped
        // the command. A spawn retried on ETXTBSY wrote more than once: the last time counts.
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(self.0), &mut all).ok()?;
        let then = i128::from_ne_bytes(all.get(all.len().checked_sub(16)?..)?.try_into().ok()?);
        let (now, now_ts) = (Instant::now(), monotonic());
        let ago = timespec_ns(now_ts) - then;
        now.checked_sub(Duration::from_nanos(u64::try_from(ago).ok()?))
    }
}

/// Makes the child write `0` (itself) into each `cgroup.procs` file between fork and exec, then
/// the time on the returned pipe.
fn join_cgroups_before_exec(command: &mut Command, procs: &[PathBuf]) -> Option<ExecClock> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if procs.is_empty() {
        return None;
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        panic!("emulator: pipe2: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned nowhere else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let paths: Vec<std::ffi::CString> = procs
        .iter()
        .map(|p| {
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                .expect("emulator: cgroup path without NUL")
        })
        .collect();
    // SAFETY: the hook runs in the forked child before exec and only calls
    // open/write/close (async-signal-safe) on strings allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            for path in &paths {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(error);
                }
            }
            let buf = timespec_ns(monotonic()).to_ne_bytes();
            libc::write(write.as_raw_fd(), buf.as_ptr().cast(), buf.len());
            Ok(())
        });
    }
    Some(ExecClock(read))
}

/// The variables of this process whose names start with one of `prefixes`, in name order.
pub fn inherited_env(prefixes: &[String]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p.as_str())))
        .collect();
    vars.sort();
    vars
}

fn write_hosts_file(dir: &Path, sandbox_ip: Option<Ipv4Addr>, lines: &[String]) -> PathBuf {
    let mut content =
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string();
    if let Some(ip) = sandbox_ip {
        content.push_str(&format!("{ip}\tsandbox.localdomain sandbox\n"));
    }
    for line in lines {
        content.push_str(line);
        content.push('\n');
    }
    write_file(dir.join("hosts"), content)
}

fn write_resolv_conf(dir: &Path, name_server: Ipv4Addr) -> PathBuf {
    write_file(
        dir.join("resolv.conf"),
        format!("nameserver {name_server}\n"),
    )
}

fn write_file(path: PathBuf, content: String) -> PathBuf {
    std::fs::write(&path, content)
        .unwrap_or_else(|e| panic!("emulator: cannot write {}: {e}", path.display()));
    path
}

/// Spawns, retrying briefly on ETXTBSY (another test thread may still hold the fresh copy open).
pub(super) async fn spawn_child(command: &mut Command, exe: &Path) -> Child {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("emulator: cannot spawn {}: {e}", exe.display()),
        }
    }
}

pub(super) async fn collect_output(
    shared: Arc<Shared>,
    stream: impl AsyncRead + Unpin,
    echo: bool,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => {
                shared.update(|st| st.output_closed += 1);
                return;
            }
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if echo {
                    eprintln!("[ext] {text}");
                }
                shared.update(|st| {
                    st.output.push_str(text);
                    st.output.push('\n');
                });
            }
        }
    }
}

pub(super) async fn watch_exit(shared: Arc<Shared>, mut child: Child) {
    let code = match child.wait().await {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1),
        Err(_) => -1,
    };
    let at = shared.since_spawn();
    shared.update(|st| {
        st.exit = Some(code);
        st.exited_at = Some(at);
        st.frozen = false;
    });
}

/// Waits until the kernel reports the process as stopped: `kill(SIGSTOP)` only queues the signal.
pub(super) async fn wait_until_stopped(pid: u32, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match process_state(pid) {
            Some('T') | None => return Ok(()),
            Some(_) if Instant::now() >= deadline => {
                return Err(format!(
                    "process {pid} did not stop within {timeout:?} after SIGSTOP"
                ))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// The state letter from `/proc/PID/stat` (`T` = stopped), `None` if unreadable.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Sends `signal` to the child's process group (it leads its own group).
pub(super) fn signal_group(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the group is our own child's.
    unsafe {
        libc::kill(-pid, signal);
    }
}

fn probe_unshare() -> bool {
    let dir = make_temp_dir();
    let hosts = dir.join("hosts");
    let probe = std::fs::write(&hosts, "127.0.0.9\temulator-unshare-probe\n").and_then(|_| {
        std::process::Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                r#"mount --bind "$1" /etc/hosts && grep -q emulator-unshare-probe /etc/hosts"#,
                "sh",
            ])
            .arg(&hosts)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    });
    let available = match probe {
        Ok(mut child) => wait_blocking(&mut child, Duration::from_secs(5)),
        Err(_) => false,
    };
    let _ = std::fs::remove_dir_all(&dir);
    available
}

/// Waits for a std child with a timeout; kills it on timeout. True if it exited successfully.
fn wait_blocking(child: &mut std::process::Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return false,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

pub(super) fn output_tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("--- extension output (last 40 lines) ---\n{tail}")
}
