//! Secrets through the real binary: optional redaction of log bodies,
//! attributes and span data before export (from the Telemetry API and from
//! the function's own OTLP alike), and OTLP header values and key material
//! never written to the extension's output or to Lambda's error calls.

mod support;

use std::time::Duration;

use serde_json::json;
use support::common::{env, spin_down, start_initialized, start_with};
use support::emulator::{http_request, new_request_id, Emulator, EmulatorOptions, InvokeSpec};
use support::fault_collector::{Fault, FaultCollector};
use support::rotel::free_port;

/// Everything the collector holds, as text (bodies, attributes, span events).
fn received(collector: &FaultCollector) -> String {
    format!("{:?}\n{:?}", collector.log_records(), collector.spans())
}

/// The secrets planted below, each in a different place.
const SECRETS: &[&str] = &[
    "hunter2",                  // text log line, key=value
    "abc123def456ghi",          // JSON log message, bearer token
    "k-98765",                  // JSON log field api_key (secret key)
    "order-secret-42",          // custom pattern
    "pw-in-url",                // exception message (URL credentials)
    "otlp-secret-pw",           // function's OTLP log attribute db.password
    "tok-abc-123",              // function's OTLP log body, token=
    "YWxhZGRpbjpvcGVuc2VzYW1l", // function's OTLP span attribute, Basic credentials
    "AKIAIOSFODNN7EXAMPLE",     // function's OTLP span event attribute
    // camelCase / PascalCase secret keys of JSON records
    "sak-camel-1",  // SecretAccessKey in a logged AWS SDK credentials object
    "st-camel-2",   // SessionToken, same object
    "at-camel-3",   // accessToken
    "cs-camel-4",   // clientSecret
    "dbpw-camel-5", // dbPassword
    "rt-camel-6",   // refreshToken in a Text-mode JSON line (pino)
];

/// With redaction off every planted secret reaches the collector (so the
/// test can see them); with `LAMBDA_OTEL_BRIDGE_REDACT=default` and a custom
/// pattern, none does, and the text around them still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_covers_logs_spans_and_the_functions_own_otlp() {
    for redact in [false, true] {
        let collector = FaultCollector::start().await;
        let http_port = free_port();
        let mut settings = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
            (
                "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR",
                &format!("127.0.0.1:{http_port}"),
            ),
        ]);
        if redact {
            settings.extend(env(&[
                ("LAMBDA_OTEL_BRIDGE_REDACT", "default"),
                (
                    "LAMBDA_OTEL_BRIDGE_REDACT_PATTERNS",
                    r#"["order-secret-[0-9]+"]"#,
                ),
            ]));
        }
        let emu = start_with(settings, false).await;
        let rid = new_request_id();
        emu.invoke(InvokeSpec {
            request_id: rid.clone(),
            logs: vec![
                json!(format!(
                    "[INFO]\t2025-03-04T10:15:30.610Z\t{rid}\tlogin user=bob password=hunter2"
                )),
                json!({
                    "timestamp": "2025-03-04T10:15:30.611Z",
                    "level": "INFO",
                    "requestId": rid,
                    "message": "calling partner with Bearer abc123def456ghi",
                    "api_key": "k-98765",
                    "orderRef": "order-secret-42",
                }),
                json!({
                    "timestamp": "2025-03-04T10:15:30.612Z",
                    "level": "ERROR",
                    "requestId": rid,
                    "errorType": "ConnectionError",
                    "errorMessage": "cannot reach postgres://app:pw-in-url@db:5432/orders",
                    "stackTrace": ["  at connect (db.js:10)"],
                }),
                json!({
                    "timestamp": "2025-03-04T10:15:30.613Z",
                    "level": "INFO",
                    "requestId": rid,
                    "message": "assumed role",
                    "assumed": {
                        "AccessKeyId": "key-id-context",
                        "SecretAccessKey": "sak-camel-1",
                        "SessionToken": "st-camel-2",
                    },
                    "accessToken": "at-camel-3",
                    "clientSecret": "cs-camel-4",
                    "dbPassword": "dbpw-camel-5",
                    "tokenCount": "token-count-context",
                }),
                json!(r#"{"level":30,"time":1741083330614,"msg":"session refreshed","refreshToken":"rt-camel-6"}"#),
            ],
            status: "error".into(),
            error_type: Some("ConnectionError".into()),
            ..InvokeSpec::default()
        })
        .await
        .unwrap();
        // The function's own OTLP, through the local receiver.
        let logs = json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{
            "scope": {"name": "fn"},
            "logRecords": [{"severityText": "INFO",
                "body": {"stringValue": "refreshing token=tok-abc-123 for bob"},
                "attributes": [{"key": "db.password", "value": {"stringValue": "otlp-secret-pw"}},
                               {"key": "db.user", "value": {"stringValue": "bob"}}]}]}]}]});
        let traces = json!({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{
            "scope": {"name": "fn"},
            "spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                "name": "GET /partner", "kind": 3,
                "startTimeUnixNano": "1741083330610000000", "endTimeUnixNano": "1741083330710000000",
                "attributes": [{"key": "http.request.header.authorization",
                                "value": {"stringValue": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}},
                               {"key": "http.route", "value": {"stringValue": "/partner"}}],
                "events": [{"name": "exception", "timeUnixNano": "1741083330700000000",
                    "attributes": [{"key": "exception.message",
                        "value": {"stringValue": "denied for AKIAIOSFODNN7EXAMPLE"}}]}]}]}]}]});
        for (path, body) in [("/v1/logs", logs), ("/v1/traces", traces)] {
            let resp = http_request(
                "POST",
                &format!("http://127.0.0.1:{http_port}{path}"),
                &[("content-type", "application/json")],
                serde_json::to_vec(&body).unwrap(),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            assert_eq!(resp.status, 200, "{path}: {resp:?}");
        }
        spin_down(&emu).await;

        let text = received(&collector);
        for context in [
            "user=bob",
            "calling partner",
            "db:5432/orders",
            "GET /partner",
            "/partner",
            "key-id-context",
            "token-count-context",
            "session refreshed",
        ] {
            assert!(text.contains(context), "redact={redact}: {context} missing");
        }
        for secret in SECRETS {
            assert_eq!(
                text.contains(secret),
                !redact,
                "redact={redact}: {secret}\n{text}"
            );
        }
        if redact {
            assert!(
                text.matches("[REDACTED]").count() >= SECRETS.len(),
                "{text}"
            );
        }
        // Redaction never touches the extension's own output either way.
        for secret in SECRETS {
            assert!(!emu.output().contains(secret), "{secret} logged");
        }
    }
}

/// OTLP header values reach the collector as headers and nowhere else: not
/// in the extension's output at the most verbose level while the collector
/// refuses everything, not in exported bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_are_never_logged_or_exported() {
    let collector = FaultCollector::start().await;
    collector.set_fault(Fault::Status {
        code: 401,
        retry_after: None,
    });
    let emu = start_initialized(EmulatorOptions {
        extra_env: env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-api-key=hdr-secret-1,authorization=Bearer%20hdr-secret-2",
            ),
            ("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "trace"),
            ("LAMBDA_OTEL_BRIDGE_FLUSH", "end"),
        ]),
        ..EmulatorOptions::default()
    })
    .await;
    for _ in 0..2 {
        emu.invoke(InvokeSpec::default()).await.unwrap();
    }
    collector.set_fault(Fault::Ok);
    emu.invoke(InvokeSpec::default()).await.unwrap();
    spin_down(&emu).await;

    let requests = collector.requests();
    assert!(requests.iter().any(|r| r.status == 401));
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-api-key") == Some("hdr-secret-1")
                && r.header("authorization") == Some("Bearer hdr-secret-2")),
        "headers are sent: {}",
        collector.summary()
    );
    let output = emu.output();
    assert!(
        output.contains("HTTP 401"),
        "the refusal is logged: {output}"
    );
    assert!(!output.contains("hdr-secret"), "{output}");
    assert!(!received(&collector).contains("hdr-secret"));
}

/// Configuration errors that involve secrets name the variable, not the
/// value: malformed headers, and a client key that is not a key (its
/// content is never echoed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_do_not_echo_secrets() {
    let dir = std::env::temp_dir().join(format!("lob-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("client.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nkey-material-secret\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let cert = dir.join("client.crt");
    std::fs::write(&cert, "not a certificate: cert-material-secret\n").unwrap();

    // Malformed headers: init fails with Extension.ConfigInvalid.
    let emu = Emulator::start_extension(EmulatorOptions {
        extra_env: env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key hdr-secret-3"),
        ]),
        ..EmulatorOptions::default()
    })
    .await;
    assert!(emu.init(vec![], Duration::from_secs(10)).await.is_err());
    let _ = emu.wait_for_exit(Duration::from_secs(5)).await;
    let error_call = emu
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/init/error"))
        .expect("init/error called");
    assert!(error_call.body.contains("OTEL_EXPORTER_OTLP_HEADERS"));
    assert!(
        !error_call.body.contains("hdr-secret"),
        "{}",
        error_call.body
    );
    assert!(!emu.output().contains("hdr-secret"), "{}", emu.output());

    // Unusable key material: the export fails and says which file, not what is in it.
    let collector = FaultCollector::start().await;
    let emu = Emulator::start_extension(EmulatorOptions {
        extra_env: env(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("https://127.0.0.1:{}", collector.http_port()),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.to_str().unwrap()),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                cert.to_str().unwrap(),
            ),
            ("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "trace"),
        ]),
        ..EmulatorOptions::default()
    })
    .await;
    let init = emu.init(vec![], Duration::from_secs(10)).await;
    if init.is_ok() {
        emu.invoke(InvokeSpec::default()).await.unwrap();
        let _ = emu.shutdown("spindown", Duration::from_secs(2)).await;
    } else {
        let _ = emu.wait_for_exit(Duration::from_secs(5)).await;
    }
    let said = format!(
        "{}\n{:?}",
        emu.output(),
        emu.calls().iter().map(|c| &c.body).collect::<Vec<_>>()
    );
    assert!(
        said.contains("client.key") || said.contains("client.crt"),
        "the error names the file: {said}"
    );
    assert!(!said.contains("material-secret"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
