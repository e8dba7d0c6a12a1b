//! AWS-native delivery, black-box through the real binary under the test
//! emulator (issue 14): SigV4-signed OTLP/HTTP checked by an independent
//! signer (botocore, and curl to check that endpoint itself), and collector
//! headers read from Secrets Manager and SSM served by moto with IAM
//! authentication on, with the faults that matter: missing secret, access
//! denied, missing parameter, an AWS endpoint down at first, a key rotated
//! under the collector.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use support::aws::{Forwarder, Moto, SigV4Endpoint, Signed, KEY, REGION, SECRET, TOKEN};
use support::common::{body, counter, env, invoke_line, spin_down, start_with};
use support::emulator::{http_request, Emulator};
use support::fault_collector::FaultCollector;
use support::rotel::free_port;

/// The three signals, each to be signed for its CloudWatch signing name.
const SERVICES: [&str; 3] = ["v1/traces=xray", "v1/logs=logs", "v1/metrics=monitoring"];

fn credentials<'a>(key: &'a str, secret: &'a str, token: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", token),
    ]
}

/// How many times each log body arrived in these log requests.
fn log_bodies<'a>(requests: impl Iterator<Item = &'a [u8]>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for b in requests {
        let req = ExportLogsServiceRequest::decode(b).expect("a log request");
        for r in req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            *counts.entry(body(r)).or_default() += 1;
        }
    }
    counts
}

fn delivered_lines(collector: &FaultCollector) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in collector.log_records() {
        *counts.entry(body(&r)).or_default() += 1;
    }
    counts
}

/// Every line in `lines` counted exactly once.
fn assert_each_once(counts: &HashMap<String, usize>, lines: &[String], context: &str) {
    for l in lines {
        let n = counts
            .iter()
            .filter(|(b, _)| b.contains(l.as_str()))
            .map(|(_, n)| *n)
            .sum::<usize>();
        assert_eq!(n, 1, "{l:?} arrived {n} times; {context}");
    }
}

/// The bridge's own counter `name` with `attrs` reached the collector, above 0.
fn assert_counted(collector: &FaultCollector, name: &str, attrs: &[(&str, &str)], context: &str) {
    let n = counter(collector, name, attrs);
    assert!(
        n.is_some_and(|n| n > 0),
        "{name} {attrs:?}: {n:?}; {context}"
    );
}

/// Every request of all three signals carries a valid signature for its
/// own signing name, with the session token, over the gzip-compressed
/// bytes; and every log line, every invocation's spans and the metrics
/// arrive.
/// Each signal to `base`, signed for its CloudWatch signing name, flushed
/// at every invocation.
fn signing_vars(base: &str) -> Vec<(&str, &str)> {
    vec![
        ("AWS_REGION", REGION),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base),
        ("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_TRACES_SIGV4", "xray"),
        ("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_LOGS_SIGV4", "logs"),
        (
            "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_METRICS_SIGV4",
            "monitoring",
        ),
        ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
    ]
}

/// Runs `n` invocations of one line each (`"{label} {i}"`) with `vars`,
/// then checks what the endpoint got: every request accepted, each signal
/// sent, all with the session token, each line once. Returns the requests.
async fn signed_run(
    endpoint: &SigV4Endpoint,
    vars: &[(&str, &str)],
    label: &str,
    n: usize,
) -> Vec<Signed> {
    let emu = start_with(env(vars), true).await;
    let lines: Vec<String> = (0..n).map(|i| format!("{label} {i}")).collect();
    for l in &lines {
        invoke_line(&emu, l).await;
    }
    spin_down(&emu).await;
    let requests = endpoint.requests().await;
    let refused: Vec<_> = requests.iter().filter(|r| !r.ok).collect();
    assert!(refused.is_empty(), "refused: {refused:?}\n{}", emu.output());
    for path in ["/v1/traces", "/v1/logs", "/v1/metrics"] {
        assert!(
            requests.iter().any(|r| r.path == path),
            "no request to {path}: {requests:?}\n{}",
            emu.output()
        );
    }
    assert!(requests.iter().all(|r| r.token.as_deref() == Some(TOKEN)));
    let logs = requests
        .iter()
        .filter(|r| r.path == "/v1/logs")
        .map(|r| r.body.as_slice());
    assert_each_once(&log_bodies(logs), &lines, &emu.output());
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_is_signed_for_its_service_and_arrives_complete() {
    let Some(endpoint) = SigV4Endpoint::start(&SERVICES, &[]).await else {
        return;
    };
    let base = endpoint.base();
    let mut vars = credentials(KEY, SECRET, TOKEN);
    vars.extend(signing_vars(&base));
    vars.push(("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"));
    let requests = signed_run(&endpoint, &vars, "signed line", 6).await;
    let of = |path: &'static str| {
        requests
            .iter()
            .filter(move |r| r.path == path)
            .map(|r| r.body.as_slice())
    };
    let spans: usize = of("/v1/traces")
        .map(|b| {
            ExportTraceServiceRequest::decode(b)
                .expect("a trace request")
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>()
        })
        .sum();
    // At least an invocation span per invocation (with the init span).
    assert!(spans > 6, "{spans} spans");
    let metrics: usize = of("/v1/metrics")
        .map(|b| {
            ExportMetricsServiceRequest::decode(b)
                .expect("a metrics request")
                .resource_metrics
                .len()
        })
        .sum();
    assert!(metrics > 0);
}

async fn curl(endpoint: &SigV4Endpoint, sigv4: &str, user: &str, token: Option<&str>) -> String {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
        "--aws-sigv4",
        sigv4,
        "--user",
        user,
        "-H",
        "content-type: application/x-protobuf",
        "--data-binary",
        "payload",
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("x-amz-security-token: {t}")]);
    }
    cmd.arg(format!("{}/v1/traces", endpoint.base()));
    let out = cmd.output().await.expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test endpoint itself, checked against a second independent signer
/// (`curl --aws-sigv4`): it accepts a correct signature and refuses each
/// kind of wrong one, and a body changed after signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_signatures_check_the_test_endpoint() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        support::prereq::missing("curl", "install curl 7.75 or later (--aws-sigv4)");
        return;
    }
    let Some(endpoint) = SigV4Endpoint::start(&SERVICES, &[]).await else {
        return;
    };
    let right = format!("aws:amz:{REGION}:xray");
    let user = format!("{KEY}:{SECRET}");
    assert_eq!(curl(&endpoint, &right, &user, Some(TOKEN)).await, "200");
    let wrong_key = format!("{KEY}:not-the-secret");
    for (what, sigv4, user, token) in [
        (
            "wrong secret",
            right.as_str(),
            wrong_key.as_str(),
            Some(TOKEN),
        ),
        ("missing token", right.as_str(), user.as_str(), None),
        ("wrong token", right.as_str(), user.as_str(), Some("other")),
        (
            "wrong service",
            "aws:amz:eu-west-1:logs",
            user.as_str(),
            Some(TOKEN),
        ),
        (
            "wrong region",
            "aws:amz:us-east-1:xray",
            user.as_str(),
            Some(TOKEN),
        ),
    ] {
        assert_eq!(curl(&endpoint, sigv4, user, token).await, "403", "{what}");
    }
    let Some(tampering) = SigV4Endpoint::start(&SERVICES, &["--tamper"]).await else {
        return;
    };
    assert_eq!(curl(&tampering, &right, &user, Some(TOKEN)).await, "403");
    let reasons: Vec<_> = tampering
        .requests()
        .await
        .into_iter()
        .filter_map(|r| r.reason)
        .collect();
    assert_eq!(reasons, ["signature does not match"]);
}

/// A wrong key, a missing token, the wrong service or region, a body
/// changed after signing: each refused by the endpoint, and the bridge
/// counts the failure and the refused spans in its own metrics (sent to an
/// unsigned collector) and warns, instead of dropping silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_signatures_are_refused_and_counted() {
    // (what, endpoint arguments, bridge variables changed, refusal reason)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (
            "wrong key",
            &[],
            &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
            "signature does not match",
        ),
        (
            "missing token",
            &[],
            &[("AWS_SESSION_TOKEN", "")],
            "x-amz-security-token",
        ),
        (
            "wrong service",
            &[],
            &[("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_TRACES_SIGV4", "logs")],
            "signed for service logs",
        ),
        (
            "wrong region",
            &[],
            &[(
                "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_TRACES_SIGV4",
                "xray:us-east-1",
            )],
            "signed for region us-east-1",
        ),
        (
            "body changed",
            &["--tamper"],
            &[],
            "signature does not match",
        ),
    ];
    for (what, extra, changes, reason) in cases {
        let Some(endpoint) = SigV4Endpoint::start(&SERVICES, extra).await else {
            return;
        };
        let collector = FaultCollector::start().await;
        let traces = format!("{}/v1/traces", endpoint.base());
        let open = collector.http_endpoint();
        let mut vars: HashMap<&str, &str> = credentials(KEY, SECRET, TOKEN).into_iter().collect();
        vars.extend([
            ("AWS_REGION", REGION),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", open.as_str()),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
            ("LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_TRACES_SIGV4", "xray"),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ]);
        vars.extend(changes.iter().copied());
        let vars: Vec<(&str, &str)> = vars.into_iter().collect();
        let emu = start_with(env(&vars), true).await;
        invoke_line(&emu, &format!("{what} 1")).await;
        invoke_line(&emu, &format!("{what} 2")).await;
        spin_down(&emu).await;
        let requests = endpoint.requests().await;
        assert!(
            !requests.is_empty(),
            "{what}: no trace request\n{}",
            emu.output()
        );
        for r in &requests {
            assert!(!r.ok, "{what}: accepted {r:?}");
            let got = r.reason.as_deref().unwrap_or_default();
            assert!(got.contains(reason), "{what}: refused because {got:?}");
        }
        let context = format!("{what}\n{}", emu.output());
        assert_counted(
            &collector,
            "lambda_otel_bridge.export.failures",
            &[("signal", "traces")],
            &context,
        );
        assert_counted(
            &collector,
            "lambda_otel_bridge.dropped",
            &[("signal", "traces"), ("reason", "refused")],
            &context,
        );
        assert!(
            emu.output().contains("HTTP 403"),
            "{what}: no warning naming the refusal\n{}",
            emu.output()
        );
        assert!(!emu.output().contains(SECRET) && !emu.output().contains(TOKEN));
        collector.stop().await;
    }
}

/// The bridge against `collector` with headers from `secret` (moto at
/// `aws_endpoint`), with `creds`; `signals` restricts the secret to one
/// signal (`LOGS`), all if empty.
async fn start_with_secret(
    collector_env: &[(&str, &str)],
    aws_endpoint: &str,
    creds: &support::aws::TempCredentials,
    secret_var: &str,
    secret: &str,
) -> Emulator {
    let mut vars = credentials(&creds.key, &creds.secret, &creds.token);
    vars.extend(collector_env.iter().copied());
    vars.extend([
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ENDPOINT_URL", aws_endpoint),
        (secret_var, secret),
        ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
    ]);
    start_with(env(&vars), true).await
}

const SECRET_VAR: &str = "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_HEADERS_SECRET";
const LOGS_SECRET_VAR: &str = "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_LOGS_HEADERS_SECRET";

/// moto refuses what AWS would: an unsigned call and a wrongly signed one.
async fn moto_refuses_unsigned_calls(moto: &Moto) {
    let call = |headers: Vec<(&'static str, String)>| {
        let url = moto.endpoint();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http_request(
                "POST",
                &url,
                &h,
                r#"{"SecretId":"collector/headers"}"#,
                Duration::from_secs(10),
            )
            .await
            .expect("moto answers")
        }
    };
    let base = vec![
        ("x-amz-target", "secretsmanager.GetSecretValue".to_owned()),
        ("content-type", "application/x-amz-json-1.1".to_owned()),
    ];
    let unsigned = call(base.clone()).await;
    assert!(unsigned.status >= 400, "unsigned: {}", unsigned.status);
    assert!(!unsigned.body.contains("key-one"));
    let mut forged = base;
    forged.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/eu-west-1/secretsmanager/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={}",
            moto.bridge.key,
            "0".repeat(64)
        ),
    ));
    forged.push(("x-amz-date", "20260101T000000Z".to_owned()));
    forged.push(("x-amz-security-token", moto.bridge.token.clone()));
    let forged = call(forged).await;
    assert_eq!(forged.status, 403, "forged signature: {}", forged.body);
    assert!(!forged.body.contains("key-one"));
}

/// Headers from a Secrets Manager secret and from an SSM SecureString
/// parameter reach a collector that refuses requests without them; the
/// calls to moto are signed with the role's temporary credentials (moto
/// refuses unsigned ones), and the values never show in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_from_secrets_manager_and_ssm_reach_the_collector() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto_refuses_unsigned_calls(&moto).await;
    for (secret, value, protocol) in [
        ("collector/headers", "key-one", "http/protobuf"),
        ("ssm:/otel/headers", "key-ssm", "http/protobuf"),
        ("collector/headers", "key-one", "grpc"),
    ] {
        let collector = FaultCollector::start().await;
        collector.require_header("x-api-key", value, 401);
        let endpoint = support::common::endpoint_for(&collector, protocol);
        let emu = start_with_secret(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ],
            &moto.endpoint(),
            &moto.bridge,
            SECRET_VAR,
            secret,
        )
        .await;
        let lines: Vec<String> = (0..3)
            .map(|i| format!("{secret} {protocol} line {i}"))
            .collect();
        for l in &lines {
            invoke_line(&emu, l).await;
        }
        spin_down(&emu).await;
        assert_each_once(&delivered_lines(&collector), &lines, &emu.output());
        let requests = collector.requests();
        assert!(requests
            .iter()
            .all(|r| r.header("x-api-key") == Some(value)));
        assert!(!emu.output().contains(value), "{}", emu.output());
        collector.stop().await;
    }
}

/// A missing secret, a role without access, a missing SSM parameter: the
/// logs wait in the outbox (none reach the collector without the header),
/// the failure is logged once with its reason and counted in the bridge's
/// own metrics (sent to a collector that needs no header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_faults_are_logged_once_counted_and_lose_nothing_silently() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    for (what, secret, denied, reason) in [
        (
            "missing secret",
            "collector/missing",
            false,
            "ResourceNotFoundException",
        ),
        ("access denied", "collector/headers", true, "HTTP 4"),
        (
            "missing parameter",
            "ssm:/otel/missing",
            false,
            "ParameterNotFound",
        ),
    ] {
        let logs = FaultCollector::start().await;
        logs.require_header("x-api-key", "key-one", 401);
        let open = FaultCollector::start().await;
        let logs_endpoint = format!("{}/v1/logs", logs.http_endpoint());
        let open_endpoint = open.http_endpoint();
        let creds = if denied { &moto.denied } else { &moto.bridge };
        let emu = start_with_secret(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &open_endpoint),
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &logs_endpoint),
            ],
            &moto.endpoint(),
            creds,
            LOGS_SECRET_VAR,
            secret,
        )
        .await;
        for i in 0..3 {
            invoke_line(&emu, &format!("{what} {i}")).await;
        }
        spin_down(&emu).await;
        let output = emu.output();
        assert!(logs.log_records().is_empty(), "{what}: logs delivered");
        assert_eq!(
            output.matches("could not be fetched").count(),
            1,
            "{what}: one warning\n{output}"
        );
        let warning = output
            .lines()
            .find(|l| l.contains("could not be fetched"))
            .unwrap_or_default();
        assert!(warning.contains(reason), "{what}: {warning}");
        let context = format!("{what}\n{output}");
        assert_counted(
            &open,
            "lambda_otel_bridge.secret.fetch_failures",
            &[],
            &context,
        );
        // Not dropped silently: the shutdown names what never left (the
        // bridge's own metrics cannot carry it: they are sent before).
        assert!(
            output.contains("telemetry dropped at shutdown: logs/shutdown=3"),
            "{context}"
        );
        assert!(!output.contains("key-one"));
        logs.stop().await;
        open.stop().await;
    }
}

/// A collector demanding `x-api-key: key-one`, and the bridge reading its
/// headers from `collector/headers` through `aws_endpoint`.
async fn key_one_collector_and_bridge(
    moto: &Moto,
    aws_endpoint: &str,
) -> (FaultCollector, Emulator) {
    let collector = FaultCollector::start().await;
    collector.require_header("x-api-key", "key-one", 401);
    let endpoint = collector.http_endpoint();
    let emu = start_with_secret(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
        aws_endpoint,
        &moto.bridge,
        SECRET_VAR,
        "collector/headers",
    )
    .await;
    (collector, emu)
}

/// Secrets Manager unreachable while the function starts and for two
/// invocations, then reachable: the first `/next` comes anyway, the logs
/// wait in the outbox, and once the fetch succeeds at a later flush point
/// every line arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_endpoint_down_at_first_loses_nothing() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let port = free_port();
    let (collector, emu) =
        key_one_collector_and_bridge(&moto, &format!("http://127.0.0.1:{port}")).await;
    let lines: Vec<String> = (0..4).map(|i| format!("down then up {i}")).collect();
    invoke_line(&emu, &lines[0]).await;
    invoke_line(&emu, &lines[1]).await;
    assert!(collector.log_records().is_empty());
    let _forwarder = Forwarder::start(port, moto.port).await;
    invoke_line(&emu, &lines[2]).await;
    invoke_line(&emu, &lines[3]).await;
    spin_down(&emu).await;
    assert_each_once(&delivered_lines(&collector), &lines, &emu.output());
    assert_eq!(
        emu.output().matches("could not be fetched").count(),
        1,
        "{}",
        emu.output()
    );
    collector.stop().await;
}

/// The key is rotated in Secrets Manager and the collector starts refusing
/// the old one (403): the bridge fetches the secret again once and sends
/// with the new key; nothing is lost or sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_again_after_a_refusal() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let (collector, emu) = key_one_collector_and_bridge(&moto, &moto.endpoint()).await;
    let lines: Vec<String> = (0..4).map(|i| format!("rotation {i}")).collect();
    invoke_line(&emu, &lines[0]).await;
    invoke_line(&emu, &lines[1]).await;
    moto.rotate("x-api-key=key-two").await;
    collector.require_header("x-api-key", "key-two", 403);
    invoke_line(&emu, &lines[2]).await;
    invoke_line(&emu, &lines[3]).await;
    spin_down(&emu).await;
    assert_each_once(&delivered_lines(&collector), &lines, &emu.output());
    let requests = collector.requests();
    assert!(
        requests.iter().any(|r| r.status == 403),
        "the old key was never refused"
    );
    assert!(requests
        .iter()
        .any(|r| r.status == 200 && r.header("x-api-key") == Some("key-two")));
    assert_eq!(
        emu.output().matches("fetching them again").count(),
        1,
        "{}",
        emu.output()
    );
    assert!(!emu.output().contains("key-two") && !emu.output().contains("key-one"));
    collector.stop().await;
}

/// Where Lambda gives the container credentials endpoint instead of keys
/// (SnapStart restores), the bridge fetches them there with its
/// authorization token and signs with them: every request of all three
/// signals is accepted by the independent signer, and the endpoint saw the
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_credentials_sign_every_signal() {
    use axum::http::HeaderMap;
    use std::sync::{Arc, Mutex};

    let Some(endpoint) = SigV4Endpoint::start(&SERVICES, &[]).await else {
        return;
    };
    const AUTH: &str = "container-auth-token-example";
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/credentials",
        axum::routing::get(move |headers: HeaderMap| {
            let log = log.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let ok = auth.as_deref() == Some(AUTH);
                log.lock().unwrap().push(auth);
                if !ok {
                    return (axum::http::StatusCode::FORBIDDEN, String::new());
                }
                (
                    axum::http::StatusCode::OK,
                    serde_json::json!({
                        "AccessKeyId": KEY,
                        "SecretAccessKey": SECRET,
                        "Token": TOKEN,
                        "Expiration": "2099-01-01T00:00:00Z",
                    })
                    .to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let creds_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let base = endpoint.base();
    let uri = format!("http://127.0.0.1:{creds_port}/credentials");
    let mut vars = vec![
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH),
    ];
    vars.extend(signing_vars(&base));
    signed_run(&endpoint, &vars, "container line", 3).await;
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the credentials endpoint was not called");
    assert!(
        seen.iter().all(|a| a.as_deref() == Some(AUTH)),
        "authorization sent: {seen:?}"
    );
}
