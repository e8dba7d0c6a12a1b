//! TLS to the collector through the real binary: verification against a
//! configured CA (`OTEL_EXPORTER_OTLP_CERTIFICATE`), refusal of an untrusted
//! server by default, and client certificates (mTLS) over HTTP and gRPC.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use support::common::{invoke_line, spin_down, start_with};
use support::emulator::Emulator;
use support::fault_collector::FaultCollector;
use support::tls::{make_pki, TlsProxy};

async fn run_one(env: Vec<(String, String)>, text: &str) -> Emulator {
    let emu = start_with(env, true).await;
    invoke_line(&emu, text).await;
    spin_down(&emu).await;
    emu
}

fn delivered(c: &FaultCollector, text: &str) -> bool {
    c.log_records()
        .iter()
        .any(|r| matches!(r.body.as_ref().and_then(|b| b.value.as_ref()), Some(AV::StringValue(s)) if s == text))
}

/// A TLS proxy in front of the collector's OTLP/HTTP and of its gRPC port,
/// with the protocol and the `https` endpoint to use for each.
async fn tls_in_front(
    pki: &support::tls::Pki,
    collector: &FaultCollector,
    client_auth: bool,
) -> Vec<(&'static str, TlsProxy, String)> {
    let mut out = Vec::new();
    for (protocol, port) in [
        ("http/protobuf", collector.http_port()),
        ("grpc", collector.grpc_port()),
    ] {
        let backend: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let proxy = TlsProxy::start(pki, backend, client_auth).await;
        let endpoint = format!("https://localhost:{}", proxy.addr.port());
        out.push((protocol, proxy, endpoint));
    }
    out
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
    for (protocol, _proxy, endpoint) in tls_in_front(&pki, &collector, true).await {
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

/// The explicit opt-out of certificate verification
/// (`LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY=true`): a server
/// whose CA is not trusted is refused by default over HTTP and gRPC, accepted
/// with the opt-out, and the opt-out is warned about at start-up and on
/// connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_opt_out_is_explicit_and_loud() {
    let Some(pki) = make_pki() else { return };
    let collector = FaultCollector::start().await;
    for (protocol, proxy, endpoint) in tls_in_front(&pki, &collector, false).await {
        let refused = format!("untrusted {protocol}");
        let emu = run_one(
            kv(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ]),
            &refused,
        )
        .await;
        assert!(!delivered(&collector, &refused), "{protocol}");
        assert!(proxy.failed_handshakes.load(Ordering::SeqCst) >= 1);
        assert!(!emu.output().contains("verification is OFF"));

        let accepted = format!("opted out {protocol}");
        let emu = run_one(
            kv(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
                (
                    "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY",
                    "true".to_string(),
                ),
            ]),
            &accepted,
        )
        .await;
        assert!(
            delivered(&collector, &accepted),
            "{protocol}: {}\n{}",
            collector.summary(),
            emu.output()
        );
        let out = emu.output();
        assert!(
            out.contains("TLS certificate verification is OFF (LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_INSECURE_SKIP_VERIFY=true) for localhost:"),
            "{out}"
        );
        assert!(out.contains("certificate is NOT verified"), "{out}");
    }
}
