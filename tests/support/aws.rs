//! AWS parts for tests/aws.rs, each a real implementation this project did
//! not write, run on loopback:
//!
//! * [`SigV4Endpoint`]: an OTLP/HTTP endpoint (`aws/sigv4_endpoint.py`) that
//!   recomputes every request's SigV4 signature with botocore and refuses
//!   (403) what does not match, recording what it received.
//! * [`Moto`]: moto's server (Secrets Manager, SSM, STS, IAM) with IAM
//!   authentication on after the set-up calls of `aws/moto_setup.py`, so an
//!   unsigned or wrongly signed call is refused as AWS would.
//! * [`Forwarder`]: a TCP forwarder started late, for an AWS endpoint that
//!   is down at first and up later.
//!
//! Where the Python packages are missing the starts return `None` and the
//! test skips visibly, or fails under CI ([`super::prereq`]).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::emulator::http_request;
use super::rotel::free_port;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/aws")
        .join(name)
}

/// The project's `.venv` Python when it can import `modules`; else the
/// prerequisite is reported missing and `None` returned.
pub fn python_with(modules: &str) -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        super::prereq::missing(
            &format!("Python modules {modules} in .venv"),
            "run scripts/install-test-deps.sh",
        );
        return None;
    }
    Some(python)
}

/// What the endpoint recorded of one request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub path: String,
    pub ok: bool,
    pub reason: Option<String>,
    pub token: Option<String>,
    /// The body (after gunzip) when the signature was valid.
    pub body: Vec<u8>,
}

/// See the module documentation.
pub struct SigV4Endpoint {
    _child: Child,
    pub port: u16,
}

/// The test key, secret and session token the endpoint expects by default.
pub const KEY: &str = "ASIATESTKEYEXAMPLE01";
pub const SECRET: &str = "test/secret+key/EXAMPLE0000000000000000";
pub const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE/session+token==";
pub const REGION: &str = "eu-west-1";

impl SigV4Endpoint {
    /// Expects [`KEY`], [`SECRET`], [`TOKEN`] and [`REGION`]; `services` are
    /// `v1/traces=xray` pairs; `extra` more arguments (`--tamper`).
    pub async fn start(services: &[&str], extra: &[&str]) -> Option<SigV4Endpoint> {
        let python = python_with("botocore.auth")?;
        let mut cmd = Command::new(python);
        cmd.arg(script("sigv4_endpoint.py")).args([
            "--access-key",
            KEY,
            "--secret-key",
            SECRET,
            "--token",
            TOKEN,
            "--region",
            REGION,
        ]);
        for s in services {
            cmd.args(["--service", s]);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn sigv4_endpoint.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("sigv4_endpoint.py prints its port within 20 s")
            .expect("read")
            .expect("a line");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Some(SigV4Endpoint {
            _child: child,
            port,
        })
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub async fn requests(&self) -> Vec<Signed> {
        let r = http_request(
            "GET",
            &format!("{}/_requests", self.base()),
            &[],
            Vec::new(),
            Duration::from_secs(10),
        )
        .await
        .expect("GET /_requests");
        let v: Value = serde_json::from_str(&r.body).expect("JSON");
        use base64::Engine;
        v.as_array()
            .expect("array")
            .iter()
            .map(|r| Signed {
                path: r["path"].as_str().unwrap_or_default().to_owned(),
                ok: r["ok"].as_bool().unwrap_or(false),
                reason: r["reason"].as_str().map(str::to_owned),
                token: r["token"].as_str().map(str::to_owned),
                body: base64::engine::general_purpose::STANDARD
                    .decode(r["body"].as_str().unwrap_or_default())
                    .expect("base64"),
            })
            .collect()
    }
}

/// Temporary credentials (key, secret, session token).
#[derive(Debug, Clone)]
pub struct TempCredentials {
    pub key: String,
    pub secret: String,
    pub token: String,
}

/// See the module documentation.
pub struct Moto {
    _child: Child,
    python: PathBuf,
    pub port: u16,
    admin: (String, String),
    /// The role allowed to read the secrets.
    pub bridge: TempCredentials,
    /// A role allowed nothing of them.
    pub denied: TempCredentials,
}

fn temp(v: &Value) -> TempCredentials {
    let s = |k: &str| v[k].as_str().expect(k).to_owned();
    TempCredentials {
        key: s("key"),
        secret: s("secret"),
        token: s("token"),
    }
}

impl Moto {
    /// Starts moto's server on a free loopback port and sets up the account
    /// (`aws/moto_setup.py setup`).
    pub async fn start() -> Option<Moto> {
        let python = python_with("moto.server, boto3")?;
        let port = free_port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn moto.server");
        // Up to 30 s for the server to listen.
        let mut up = false;
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "moto did not listen on {port} within 30 s");
        let out = Self::run(&python, &["setup", &format!("http://127.0.0.1:{port}")]).await;
        let v: Value = serde_json::from_str(&out).expect("setup JSON");
        Some(Moto {
            _child: child,
            python,
            port,
            admin: (
                v["admin"]["key"].as_str().expect("key").to_owned(),
                v["admin"]["secret"].as_str().expect("secret").to_owned(),
            ),
            bridge: temp(&v["bridge"]),
            denied: temp(&v["denied"]),
        })
    }

    async fn run(python: &PathBuf, args: &[&str]) -> String {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            Command::new(python)
                .arg(script("moto_setup.py"))
                .args(args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("moto_setup.py within 60 s")
        .expect("run moto_setup.py");
        assert!(
            out.status.success(),
            "moto_setup.py {}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Puts a new value in the secret `collector/headers`.
    pub async fn rotate(&self, value: &str) {
        Self::run(
            &self.python,
            &[
                "rotate",
                &self.endpoint(),
                &self.admin.0,
                &self.admin.1,
                value,
            ],
        )
        .await;
    }
}

/// Forwards connections on a loopback port to another.
pub struct Forwarder {
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(port: u16, upstream: u16) -> Forwarder {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the forwarder");
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut out) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Forwarder { task }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
