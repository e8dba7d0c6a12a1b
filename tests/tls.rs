//! TLS to the collector through the real binary: verification against a
//! configured CA (`OTEL_EXPORTER_OTLP_CERTIFICATE`), refusal of an untrusted
//! server by default, and client certificates (mTLS) over HTTP and gRPC.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use support::common::{invoke_line, start_with};
use support::emulator::Emulator;
use support::fault_collector::FaultCollector;
use support::tls::{make_pki, TlsProxy};

async fn run_one(env: Vec<(String, String)>, text: &str) -> Emulator {
    let emu = start_with(env, true).await;
    invoke_line(&emu, text).await;
    let out = emu.shutdown("spindown", Duration::from_secs(2)).await;
    assert_eq!(out.exit_code, Some(0), "{}", emu.output());
    emu
}

fn delivered(c: &FaultCollector, text: &str) -> bool {
    c.log_records()
        .iter()
        .any(|r| matches!(r.body.as_ref().and_then(|b| b.value.as_ref()), Some(AV::StringValue(s)) if s == text))
}

fn kv(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_verifies_the_server_against_the_configured_ca() {
    let Some(pki) = make_pki() else { return };
    let collector = FaultCollector::start().await;
    let backend: SocketAddr = format!("127.0.0.1:{}", collector.http_port())
        .parse()
        .unwrap();
    let proxy = TlsProxy::start(&pki, backend, false).await;
    let endpoint = format!("https://localhost:{}", proxy.addr.port());

    // Trusted through OTEL_EXPORTER_OTLP_CERTIFICATE: delivered.
    run_one(
        kv(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            (
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                pki.ca.display().to_string(),
            ),
        ]),
        "over https",
    )
    .await;
    assert!(
        delivered(&collector, "over https"),
        "{}",
        collector.summary()
    );
    assert!(proxy.completed_handshakes.load(Ordering::SeqCst) >= 1);

    // Without it the test CA is unknown: verification fails, nothing is sent,
    // and the loss is reported.
    let failed_before = proxy.failed_handshakes.load(Ordering::SeqCst);
    let emu = run_one(
        kv(&[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)]),
        "untrusted",
    )
    .await;
    assert!(!delivered(&collector, "untrusted"));
    assert!(proxy.failed_handshakes.load(Ordering::SeqCst) > failed_before);
    assert!(
        emu.output().contains("telemetry dropped"),
        "{}",
        emu.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_over_http_and_grpc() {
    let Some(pki) = make_pki() else { return };
    let collector = FaultCollector::start().await;
    for (protocol, port) in [
        ("http/protobuf", collector.http_port()),
        ("grpc", collector.grpc_port()),
    ] {
        let backend: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let proxy = TlsProxy::start(&pki, backend, true).await;
        let endpoint = format!("https://localhost:{}", proxy.addr.port());
        let with_cert = format!("mtls {protocol}");
        run_one(
            kv(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
                (
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    pki.ca.display().to_string(),
                ),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    pki.client_cert.display().to_string(),
                ),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    pki.client_key.display().to_string(),
                ),
            ]),
            &with_cert,
        )
        .await;
        assert!(
            delivered(&collector, &with_cert),
            "{protocol}: {}",
            collector.summary()
        );

        let without = format!("no client cert {protocol}");
        run_one(
            kv(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
                (
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    pki.ca.display().to_string(),
                ),
            ]),
            &without,
        )
        .await;
        assert!(
            !delivered(&collector, &without),
            "{protocol}: the server requires a client certificate"
        );
    }
}
