//! A real OTLP collector for tests: `rotel-agent` (PyPI package `rotel`,
//! installed into `.venv` by `scripts/install-test-deps.sh`), started on free
//! loopback ports with the blackhole exporter and detailed debug logging, so
//! a test can read what it received.
//!
//! Where rotel is missing, [`Rotel::start`] returns `None` and the test skips
//! visibly, or fails where prerequisites are required (see [`super::prereq`]).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Rotel {
    child: Child,
    pub grpc_port: u16,
    pub http_port: u16,
    output: Arc<Mutex<String>>,
    pid_file: PathBuf,
}

/// The rotel-agent binary: `$ROTEL_AGENT`, else the project's `.venv`.
pub fn rotel_agent() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROTEL_AGENT") {
        return Some(PathBuf::from(p));
    }
    let venv_lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    std::fs::read_dir(venv_lib).ok()?.flatten().find_map(|d| {
        let p = d.path().join("site-packages/rotel/rotel-agent");
        p.exists().then_some(p)
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Rotel {
    /// Starts rotel, or returns `None` when it is not installed and not
    /// required ([`super::prereq::missing`]).
    pub async fn start() -> Option<Rotel> {
        let Some(agent) = rotel_agent() else {
            super::prereq::missing(
                "rotel-agent",
                "run scripts/install-test-deps.sh, or set ROTEL_AGENT",
            );
            return None;
        };
        let grpc_port = free_port();
        let http_port = free_port();
        let pid_file = std::env::temp_dir().join(format!("rotel-test-{grpc_port}.pid"));
        let mut child = Command::new(&agent)
            .args(["start", "--otlp-grpc-endpoint"])
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http_port}"))
            .args(["--exporter", "blackhole"])
            .args([
                "--debug-log",
                "traces",
                "--debug-log",
                "metrics",
                "--debug-log",
                "logs",
            ])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--pid-file")
            .arg(&pid_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("rotel-agent starts");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let rotel = Rotel {
            child,
            grpc_port,
            http_port,
            output,
            pid_file,
        };
        // Ready when both ports accept connections.
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let g = tokio::net::TcpStream::connect(("127.0.0.1", grpc_port))
                .await
                .is_ok();
            let h = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
                .await
                .is_ok();
            if g && h {
                break;
            }
            assert!(
                Instant::now() < until,
                "rotel did not start:\n{}",
                rotel.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(rotel)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Everything rotel printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until rotel's output contains every needle (or times out).
    pub async fn wait_for(&self, needles: &[&str], timeout: Duration) -> Result<(), String> {
        let until = Instant::now() + timeout;
        loop {
            let out = self.output();
            let missing: Vec<&&str> = needles.iter().filter(|n| !out.contains(**n)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!(
                    "rotel never showed {missing:?}; it printed:\n{out}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}
