//! Prerequisites of some tests that Cargo does not provide: the rotel collector and the
//! OpenTelemetry Python SDK (both in `.venv`, installed by `scripts/install-test-deps.sh`) and
//! `unshare -m` (a private `/etc/hosts` for `sandbox.localdomain`).
//!
//! Under `CI=true` (which `.ci/run` sets) or `REQUIRE_TEST_DEPS=1` a missing prerequisite fails
//! the test with a message saying how to get it. Elsewhere the test is skipped visibly: it
//! writes `SKIPPED: <test>: <why>` straight to the process's stderr, past the test harness's
//! output capture, so every `cargo test` run shows it (count them with
//! `cargo test 2>&1 | grep -c '^SKIPPED:'`), and returns, reported as `ok`.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;

/// Whether missing prerequisites fail the tests (`CI=true` or `REQUIRE_TEST_DEPS=1`).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("REQUIRE_TEST_DEPS").is_ok_and(|v| v == "1")
}

/// For a test that cannot run because `what` is missing: fails when prerequisites are
/// [`required`], else reports the skip (the test then returns). `how` says how to get it.
pub fn missing(what: &str, how: &str) {
    assert!(
        !required(),
        "{what} is missing: {how} (required because CI=true or REQUIRE_TEST_DEPS=1)"
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Not eprintln!: the harness hides what a passing test prints that way.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED: {test}: {what} is missing ({how})"
    );
}

/// The project's `.venv` Python with the OpenTelemetry SDK and its OTLP/gRPC and OTLP/HTTP
/// exporters, if it is there.
pub fn python_sdk() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let imports = "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, \
                   opentelemetry.exporter.otlp.proto.http";
    std::process::Command::new(&python)
        .args(["-c", imports])
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(python)
}
