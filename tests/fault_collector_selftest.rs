//! Self-test of the scriptable OTLP collector in `tests/support/fault_collector.rs`, driven by
//! plain hyper (OTLP/HTTP) and tonic (OTLP/gRPC) clients instead of the extension.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_otel_bridge::RawCodec;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use serde_json::Value;
use support::fault_collector::{Fault, FaultCollector, RpcStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const T0: u64 = 1_700_000_000_000_000_000;

// ---------------------------------------------------------------------------------------------
// Payloads

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn span(i: u8) -> Span {
    Span {
        trace_id: vec![0xa0 | (i & 0x0f); 16],
        span_id: vec![0xb0 | (i & 0x0f); 8],
        name: format!("span-{i}"),
        kind: 2,
        start_time_unix_nano: T0 + u64::from(i),
        end_time_unix_nano: T0 + 1_000 + u64::from(i),
        ..Default::default()
    }
}

fn traces(first: u8, n: u8) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource("fc-traces")),
            scope_spans: vec![ScopeSpans {
                spans: (first..first + n).map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(n: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("fc-logs")),
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|i| LogRecord {
                        time_unix_nano: T0 + i as u64,
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One gauge with `points` data points.
fn metrics(points: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource("fc-metrics")),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "fc.gauge".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..points)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: T0 + i as u64,
                                value: Some(number_data_point::Value::AsInt(i as i64)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

// ---------------------------------------------------------------------------------------------
// HTTP client

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug)]
enum PostError {
    Timeout,
    Failed(String),
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn post_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, PostError> {
    let mut req = hyper::Request::post(url)
        .header("content-type", content_type)
        .header("x-test", "fault-collector");
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let fut = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| PostError::Failed(format!("{e:?}")))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| PostError::Failed(format!("body: {e:?}")))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(PostError::Timeout))
}

async fn post(
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, PostError> {
    post_with(&client(), url, content_type, None, body, timeout).await
}

/// POSTs and expects an answer within 5 s.
async fn post_ok(url: &str, content_type: &str, body: Vec<u8>) -> Answer {
    post(url, content_type, body, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("POST {url} failed: {e:?}"))
}

fn url(c: &FaultCollector, signal: &str) -> String {
    format!("{}/v1/{signal}", c.http_endpoint())
}

async fn grpc_channel(c: &FaultCollector) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(c.grpc_endpoint().expect("gRPC endpoint"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("gRPC connect")
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[tokio::test]
async fn ok_answers_and_records_protobuf_and_json() {
    let c = FaultCollector::start().await;
    assert!(c.http_endpoint().starts_with("http://127.0.0.1:"));

    // Protobuf traces.
    let a = post_ok(&url(&c, "traces"), PB, traces(0, 3).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some(PB));
    let resp = ExportTraceServiceResponse::decode(a.body.clone()).expect("response decodes");
    assert_eq!(resp.partial_success, None);

    // OTLP-JSON logs, produced by the serde mapping (hex ids, string int64).
    let body = serde_json::to_vec(&logs(2)).expect("json");
    let a = post_ok(&url(&c, "logs"), JSON, body).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some(JSON));
    let v: Value = serde_json::from_slice(&a.body).expect("JSON response");
    assert_eq!(v, serde_json::json!({}));

    // Hand-written OTLP-JSON: hex ids, enum ints, 64-bit ints as strings.
    let hand = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"hand"}}]},
        "scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
        "spanId":"eee19b7ec3c1b174","name":"hand-span","kind":2,
        "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000",
        "status":{"code":2}}]}]}]}"#;
    let a = post_ok(&url(&c, "traces"), JSON, hand.as_bytes().to_vec()).await;
    assert_eq!(a.status, 200, "{:?}", String::from_utf8_lossy(&a.body));

    // Metrics (items count data points).
    let a = post_ok(&url(&c, "metrics"), PB, metrics(4).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    let resp = ExportMetricsServiceResponse::decode(a.body).expect("decodes");
    assert_eq!(resp.partial_success, None);

    let reqs = c.requests();
    let seen: Vec<_> = reqs
        .iter()
        .map(|r| {
            (
                r.signal.as_str(),
                r.protocol.as_str(),
                r.status,
                r.items,
                r.content_encoding.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("traces", "http/protobuf", 200, 3, None),
            ("logs", "http/json", 200, 2, None),
            ("traces", "http/json", 200, 1, None),
            ("metrics", "http/protobuf", 200, 4, None),
        ]
    );
    assert!(reqs
        .iter()
        .all(|r| r.header("X-Test") == Some("fault-collector")));
    assert!(reqs.windows(2).all(|w| w[0].at <= w[1].at));

    let spans = c.spans();
    assert_eq!(spans.len(), 4);
    assert_eq!(spans[0], span(0));
    assert_eq!(spans[3].name, "hand-span");
    assert_eq!(
        spans[3].trace_id,
        vec![
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(spans[3].start_time_unix_nano, T0);
    assert_eq!(spans[3].status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(
        c.log_records(),
        logs(2).resource_logs[0].scope_logs[0].log_records
    );
    assert_eq!(c.metrics().len(), 1);
    assert_eq!(c.metrics()[0].name, "fc.gauge");
    let services: Vec<String> = c
        .resources()
        .iter()
        .map(|r| match &r.attributes[0].value.as_ref().unwrap().value {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(services, ["fc-traces", "fc-logs", "hand", "fc-metrics"]);
}

#[tokio::test]
async fn gzip_bodies_are_decompressed() {
    let c = FaultCollector::start().await;
    let cl = client();
    let t = Duration::from_secs(5);
    let body = gzip(&traces(0, 5).encode_to_vec());
    let a = post_with(&cl, &url(&c, "traces"), PB, Some("gzip"), body, t)
        .await
        .expect("answer");
    assert_eq!(a.status, 200);
    let body = gzip(&serde_json::to_vec(&logs(3)).unwrap());
    let a = post_with(&cl, &url(&c, "logs"), JSON, Some("gzip"), body, t)
        .await
        .expect("answer");
    assert_eq!(a.status, 200);
    // Not gzip although it says so: undecodable.
    let body = traces(0, 1).encode_to_vec();
    let a = post_with(&cl, &url(&c, "traces"), PB, Some("gzip"), body, t)
        .await
        .expect("answer");
    assert_eq!(a.status, 400);
    // A gzip bomb beyond the body limit is refused, not inflated without bound.
    let bomb = gzip(&vec![0u8; support::fault_collector::BODY_LIMIT + 1]);
    let a = post_with(&cl, &url(&c, "traces"), PB, Some("gzip"), bomb, t)
        .await
        .expect("answer");
    assert_eq!(a.status, 400);

    let reqs = c.requests();
    assert_eq!(
        reqs.iter()
            .map(|r| (r.content_encoding.as_deref(), r.status, r.items))
            .collect::<Vec<_>>(),
        vec![
            (Some("gzip"), 200, 5),
            (Some("gzip"), 200, 3),
            (Some("gzip"), 400, 0),
            (Some("gzip"), 400, 0)
        ]
    );
    assert!(reqs[3].error.as_deref().unwrap().contains("exceeds"));
    assert_eq!(c.spans().len(), 5);
    assert_eq!(c.log_records().len(), 3);
}

#[tokio::test]
async fn error_statuses_with_retry_after_and_rpc_status_body() {
    let c = FaultCollector::start().await;
    c.set_fault(Fault::Status {
        code: 503,
        retry_after: Some(7),
    });
    let a = post_ok(&url(&c, "traces"), PB, traces(0, 2).encode_to_vec()).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after"), Some("7"));
    let st = RpcStatus::decode(a.body).expect("google.rpc.Status body");
    assert_eq!(st.code, 14);
    assert_eq!(st.retry_delay(), Some(Duration::from_secs(7)));

    // JSON requests get a JSON status.
    let a = post_ok(
        &url(&c, "logs"),
        JSON,
        serde_json::to_vec(&logs(1)).unwrap(),
    )
    .await;
    assert_eq!(a.status, 503);
    assert_eq!(a.header("content-type"), Some(JSON));
    let v: Value = serde_json::from_slice(&a.body).expect("JSON status");
    assert_eq!(v["code"], 14);
    assert_eq!(v["details"][0]["retryDelay"], "7s");

    for code in [400u16, 413, 429, 500] {
        c.set_fault(Fault::Status {
            code,
            retry_after: None,
        });
        let a = post_ok(&url(&c, "metrics"), PB, metrics(1).encode_to_vec()).await;
        assert_eq!(a.status, code);
        assert_eq!(a.header("retry-after"), None);
    }
    // A gRPC-coded fault on HTTP maps to the HTTP status of the same meaning.
    c.set_fault(Fault::Grpc {
        code: 8,
        retry_after: Some(1),
    });
    let a = post_ok(&url(&c, "metrics"), PB, metrics(1).encode_to_vec()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after"), Some("1"));

    let statuses: Vec<u16> = c.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 400, 413, 429, 500, 429]);
    // Rejected requests are recorded (with their item counts) but deliver nothing.
    assert_eq!(c.requests()[0].items, 2);
    assert!(c.spans().is_empty());
    assert!(c.log_records().is_empty());
    assert!(c.metrics().is_empty());
    assert!(c.resources().is_empty());
}

#[tokio::test]
async fn partial_success_decodes_back() {
    let c = FaultCollector::start().await;
    c.set_fault(Fault::PartialSuccess {
        rejected: 3,
        message: "too old".into(),
    });
    let a = post_ok(&url(&c, "traces"), PB, traces(0, 5).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    let p = ExportTraceServiceResponse::decode(a.body)
        .unwrap()
        .partial_success
        .expect("partial_success set");
    assert_eq!((p.rejected_spans, p.error_message.as_str()), (3, "too old"));

    let a = post_ok(&url(&c, "logs"), PB, logs(4).encode_to_vec()).await;
    let p = ExportLogsServiceResponse::decode(a.body)
        .unwrap()
        .partial_success
        .expect("partial_success set");
    assert_eq!(p.rejected_log_records, 3);

    let a = post_ok(&url(&c, "metrics"), PB, metrics(4).encode_to_vec()).await;
    let p = ExportMetricsServiceResponse::decode(a.body)
        .unwrap()
        .partial_success
        .expect("partial_success set");
    assert_eq!(p.rejected_data_points, 3);

    // JSON: int64 as a string, like the OpenTelemetry Collector (protojson) writes it.
    let a = post_ok(
        &url(&c, "metrics"),
        JSON,
        serde_json::to_vec(&metrics(4)).unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"partialSuccess": {"rejectedDataPoints": "3", "errorMessage": "too old"}})
    );
    // A partial success is an acceptance: the data counts as delivered.
    assert_eq!(c.spans().len(), 5);
    assert_eq!(c.log_records().len(), 4);
    assert_eq!(c.metrics().len(), 2);
}

#[tokio::test]
async fn bad_requests_are_refused_and_recorded() {
    let c = FaultCollector::start().await;
    c.push_faults(vec![Fault::Ok]);
    // Undecodable protobuf and JSON: 400, consuming the queued Ok.
    let a = post_ok(&url(&c, "traces"), PB, vec![0xff, 0xff, 0xff]).await;
    assert_eq!(a.status, 400);
    assert_eq!(c.queued_faults(), 0);
    let a = post_ok(&url(&c, "logs"), JSON, b"{\"resourceLogs\": 5}".to_vec()).await;
    assert_eq!(a.status, 400);
    // Not OTLP routes / media types.
    let a = post_ok(&format!("{}/v1/other", c.http_endpoint()), PB, vec![]).await;
    assert_eq!(a.status, 404);
    let a = post_ok(&url(&c, "traces"), "text/plain", b"x".to_vec()).await;
    assert_eq!(a.status, 415);
    let resp = client()
        .request(
            hyper::Request::get(url(&c, "traces"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .expect("GET answered");
    assert_eq!(resp.status().as_u16(), 405);

    // A declared body over 64 MiB: 413 without reading it.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.http_port()))
        .await
        .unwrap();
    s.write_all(
        b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
          content-length: 70000000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    let got: Vec<(String, String, u16)> = c
        .requests()
        .iter()
        .map(|r| (r.signal.clone(), r.protocol.clone(), r.status))
        .collect();
    let want: Vec<(String, String, u16)> = [
        ("traces", "http/protobuf", 400),
        ("logs", "http/json", 400),
        ("unknown", "http/protobuf", 404),
        ("traces", "http/unknown", 415),
        ("traces", "http/unknown", 405),
        ("traces", "http/protobuf", 413),
    ]
    .iter()
    .map(|(a, b, s)| (a.to_string(), b.to_string(), *s))
    .collect();
    assert_eq!(got, want);
    assert!(c.requests()[0]
        .error
        .as_deref()
        .unwrap()
        .contains("protobuf"));
    assert!(c.spans().is_empty() && c.log_records().is_empty());
}

#[tokio::test]
async fn hang_times_out_at_the_client_and_ends_when_dropped() {
    let c = FaultCollector::start().await;
    c.push_faults(vec![Fault::Hang, Fault::Hang]);
    let t0 = Instant::now();
    let r = post(
        &url(&c, "traces"),
        PB,
        traces(0, 1).encode_to_vec(),
        Duration::from_millis(300),
    )
    .await;
    assert!(matches!(r, Err(PostError::Timeout)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(c.requests().len(), 1);
    assert_eq!(c.requests()[0].status, 0);
    assert_eq!(c.requests()[0].items, 1, "the hanging request was read");

    // A second hanging request with a long client timeout: the collector's drop ends it.
    let u = url(&c, "traces");
    let pending = tokio::spawn(async move {
        let t = Instant::now();
        let r = post(
            &u,
            PB,
            traces(0, 1).encode_to_vec(),
            Duration::from_secs(20),
        )
        .await;
        (r, t.elapsed())
    });
    c.wait_until("the second request", Duration::from_secs(5), |c| {
        c.requests().len() == 2
    })
    .await
    .unwrap();
    // Other requests are still served meanwhile.
    let a = post_ok(&url(&c, "traces"), PB, traces(0, 1).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    drop(c);
    let (r, took) = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the hanging request ends after the drop")
        .unwrap();
    assert!(matches!(r, Err(PostError::Failed(_))), "{r:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn close_gives_a_connection_error() {
    let c = FaultCollector::start().await;
    c.push_faults(vec![Fault::Close]);
    let t0 = Instant::now();
    let r = post(
        &url(&c, "logs"),
        PB,
        logs(2).encode_to_vec(),
        Duration::from_secs(5),
    )
    .await;
    match r {
        Err(PostError::Failed(e)) => assert!(
            e.contains("IncompleteMessage") || e.contains("closed"),
            "unexpected error {e}"
        ),
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
    let a = post_ok(&url(&c, "logs"), PB, logs(2).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    let r: Vec<(u16, usize)> = c.requests().iter().map(|r| (r.status, r.items)).collect();
    assert_eq!(r, [(0, 2), (200, 2)]);
    assert_eq!(
        c.log_records().len(),
        2,
        "only the answered request delivered"
    );
}

#[tokio::test]
async fn queued_faults_are_consumed_in_order() {
    let c = FaultCollector::start().await;
    c.set_fault(Fault::Status {
        code: 500,
        retry_after: None,
    });
    c.push_faults(vec![
        Fault::Status {
            code: 503,
            retry_after: Some(1),
        },
        Fault::Status {
            code: 429,
            retry_after: None,
        },
    ]);
    c.push_faults(vec![
        Fault::PartialSuccess {
            rejected: 1,
            message: "one".into(),
        },
        Fault::Ok,
    ]);
    assert_eq!(c.queued_faults(), 4);
    let mut statuses = Vec::new();
    for i in 0..6u8 {
        let a = post_ok(&url(&c, "traces"), PB, traces(i * 10, 2).encode_to_vec()).await;
        statuses.push(a.status);
    }
    assert_eq!(statuses, [503, 429, 200, 200, 500, 500]);
    assert_eq!(
        c.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        statuses
    );
    assert_eq!(c.queued_faults(), 0);
    let names: Vec<String> = c.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["span-20", "span-21", "span-30", "span-31"]);
    c.set_fault(Fault::Ok);
    let a = post_ok(&url(&c, "traces"), PB, traces(0, 1).encode_to_vec()).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn a_required_header_refuses_requests_without_it() {
    let c = FaultCollector::start().await;
    c.push_faults(vec![Fault::Status {
        code: 503,
        retry_after: None,
    }]);
    // post_with sends `x-test: fault-collector`.
    c.require_header("x-test", "another-key", 401);
    let a = post_ok(&url(&c, "traces"), PB, traces(0, 1).encode_to_vec()).await;
    assert_eq!(a.status, 401);
    c.require_header("X-Test", "another-key", 403);
    let a = post_ok(&url(&c, "traces"), PB, traces(1, 1).encode_to_vec()).await;
    assert_eq!(a.status, 403);
    // Refusals consume no queued fault and keep no data.
    assert_eq!(c.queued_faults(), 1);
    assert!(c.spans().is_empty());
    c.require_header("x-test", "fault-collector", 401);
    let statuses: Vec<u16> = [
        post_ok(&url(&c, "traces"), PB, traces(2, 1).encode_to_vec())
            .await
            .status,
        post_ok(&url(&c, "traces"), PB, traces(3, 1).encode_to_vec())
            .await
            .status,
    ]
    .into();
    assert_eq!(statuses, [503, 200]);
    let names: Vec<String> = c.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["span-3"]);
}

#[tokio::test]
async fn wait_until_reports_success_and_timeout() {
    let c = FaultCollector::start().await;
    let u = url(&c, "traces");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post_ok(&u, PB, traces(0, 2).encode_to_vec()).await;
    });
    c.wait_until("two spans", Duration::from_secs(5), |c| {
        c.spans().len() == 2
    })
    .await
    .unwrap();
    let t0 = Instant::now();
    let e = c
        .wait_until("a third span", Duration::from_millis(200), |c| {
            c.spans().len() == 3
        })
        .await
        .unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert!(e.contains("a third span"), "{e}");
    assert!(e.contains("/v1/traces"), "{e}");
}

#[tokio::test]
async fn start_on_reuses_a_port_after_stop() {
    let c = FaultCollector::start().await;
    let port = c.http_port();
    let grpc_port = c.grpc_port();
    let endpoint = c.http_endpoint();
    // An idle keep-alive connection must not keep the port busy after stop.
    let cl = client();
    let a = post_with(
        &cl,
        &url(&c, "traces"),
        PB,
        None,
        traces(0, 1).encode_to_vec(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    c.stop().await;
    for p in [port, grpc_port] {
        let e = tokio::net::TcpStream::connect(("127.0.0.1", p))
            .await
            .expect_err("port refused after stop");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    let r = post_with(
        &cl,
        &format!("{endpoint}/v1/traces"),
        PB,
        None,
        traces(0, 1).encode_to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(r, Err(PostError::Failed(_))), "{r:?}");

    let c2 = FaultCollector::start_on(port).await;
    assert_eq!(c2.http_endpoint(), endpoint);
    assert!(c2.requests().is_empty());
    let a = post_ok(&url(&c2, "traces"), PB, traces(0, 1).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    assert_eq!(c2.spans().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// gRPC

#[tokio::test]
async fn grpc_ok_partial_success_gzip_and_status() {
    let c = FaultCollector::start().await;
    let ch = grpc_channel(&c).await;
    let mut traces_client = TraceServiceClient::new(ch.clone());

    let r = traces_client.export(traces(0, 3)).await.expect("OK");
    assert_eq!(r.into_inner().partial_success, None);

    let mut gz = TraceServiceClient::new(ch.clone())
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    gz.export(traces(10, 2)).await.expect("gzip OK");

    c.set_fault(Fault::PartialSuccess {
        rejected: 2,
        message: "dup".into(),
    });
    let r = LogsServiceClient::new(ch.clone())
        .export(logs(5))
        .await
        .expect("OK");
    let p = r.into_inner().partial_success.expect("partial_success");
    assert_eq!(
        (p.rejected_log_records, p.error_message.as_str()),
        (2, "dup")
    );

    c.set_fault(Fault::Status {
        code: 503,
        retry_after: Some(2),
    });
    let st = MetricsServiceClient::new(ch.clone())
        .export(metrics(3))
        .await
        .expect_err("UNAVAILABLE");
    assert_eq!(st.code(), tonic::Code::Unavailable);
    let details = RpcStatus::decode(st.details()).expect("grpc-status-details-bin");
    assert_eq!(details.code, 14);
    assert_eq!(details.retry_delay(), Some(Duration::from_secs(2)));

    c.set_fault(Fault::Grpc {
        code: 8,
        retry_after: None,
    });
    let st = traces_client.export(traces(0, 1)).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    assert!(st.details().is_empty(), "no RetryInfo without retry_after");

    c.set_fault(Fault::Status {
        code: 400,
        retry_after: None,
    });
    let st = traces_client.export(traces(0, 1)).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);

    let reqs = c.requests();
    let got: Vec<_> = reqs
        .iter()
        .map(|r| {
            (
                r.signal.as_str(),
                r.protocol.as_str(),
                r.content_encoding.as_deref(),
                r.status,
                r.grpc_status,
                r.items,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("traces", "grpc", None, 200, Some(0), 3),
            ("traces", "grpc", Some("gzip"), 200, Some(0), 2),
            ("logs", "grpc", None, 200, Some(0), 5),
            ("metrics", "grpc", None, 503, Some(14), 3),
            ("traces", "grpc", None, 429, Some(8), 1),
            ("traces", "grpc", None, 400, Some(3), 1),
        ]
    );
    assert!(reqs[0]
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/grpc")));
    assert_eq!(c.spans().len(), 5);
    assert_eq!(c.log_records().len(), 5);
    assert!(c.metrics().is_empty());
}

#[tokio::test]
async fn grpc_hang_close_and_bad_methods() {
    let c = FaultCollector::start().await;
    c.push_faults(vec![Fault::Hang, Fault::Close]);
    let mut cl = TraceServiceClient::new(grpc_channel(&c).await);
    let r = tokio::time::timeout(Duration::from_millis(300), cl.export(traces(0, 1))).await;
    assert!(r.is_err(), "Hang must not be answered: {r:?}");

    let mut cl = TraceServiceClient::new(grpc_channel(&c).await);
    let t0 = Instant::now();
    let st = tokio::time::timeout(Duration::from_secs(5), cl.export(traces(0, 1)))
        .await
        .expect("Close ends the call")
        .expect_err("Close is an error");
    assert_ne!(st.code(), tonic::Code::Ok);
    assert!(t0.elapsed() < Duration::from_secs(2));

    let mut cl = TraceServiceClient::new(grpc_channel(&c).await);
    cl.export(traces(0, 1)).await.expect("served again");

    // Raw messages: an undecodable one is INVALID_ARGUMENT under an accepting fault; an
    // unknown method is UNIMPLEMENTED and does not consume a fault.
    let mut grpc = tonic::client::Grpc::new(grpc_channel(&c).await);
    grpc.ready().await.unwrap();
    let st = grpc
        .unary(
            tonic::Request::new(Bytes::from_static(&[0xff, 0xff, 0xff])),
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                .parse()
                .unwrap(),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    c.push_faults(vec![Fault::Status {
        code: 503,
        retry_after: None,
    }]);
    grpc.ready().await.unwrap();
    let st = grpc
        .unary(
            tonic::Request::new(Bytes::from(traces(0, 1).encode_to_vec())),
            "/opentelemetry.proto.collector.trace.v1.TraceService/Nope"
                .parse()
                .unwrap(),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unimplemented);
    assert_eq!(c.queued_faults(), 1);

    let got: Vec<(u16, Option<i32>)> = c
        .requests()
        .iter()
        .map(|r| (r.status, r.grpc_status))
        .collect();
    assert_eq!(
        got,
        [
            (0, None),
            (0, None),
            (200, Some(0)),
            (400, Some(3)),
            (501, Some(12))
        ]
    );
    assert_eq!(c.spans().len(), 1);
}

/// Hanging and closed requests on both protocols leave no task behind once the collector and
/// the clients are dropped.
#[tokio::test]
async fn no_task_outlives_the_collector() {
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = alive();
    let c = FaultCollector::start().await;
    c.push_faults(vec![Fault::Hang, Fault::Close, Fault::Hang, Fault::Close]);
    let http = client();
    let u = url(&c, "traces");
    let body = traces(0, 1).encode_to_vec();
    let hang_http = tokio::spawn({
        let (http, u, body) = (http.clone(), u.clone(), body.clone());
        async move { post_with(&http, &u, PB, None, body, Duration::from_secs(20)).await }
    });
    c.wait_until("the hanging HTTP request", Duration::from_secs(5), |c| {
        c.requests().len() == 1
    })
    .await
    .unwrap();
    let closed = post_with(&http, &u, PB, None, body, Duration::from_secs(5)).await;
    assert!(matches!(closed, Err(PostError::Failed(_))), "{closed:?}");

    let ch = grpc_channel(&c).await;
    let hang_grpc = tokio::spawn({
        let ch = ch.clone();
        async move { TraceServiceClient::new(ch).export(traces(0, 1)).await }
    });
    c.wait_until("the hanging gRPC request", Duration::from_secs(5), |c| {
        c.requests().len() == 3
    })
    .await
    .unwrap();
    let closed = TraceServiceClient::new(grpc_channel(&c).await)
        .export(traces(0, 1))
        .await;
    assert!(closed.is_err());
    assert!(alive() > baseline);

    drop(c);
    let r = tokio::time::timeout(Duration::from_secs(5), hang_http)
        .await
        .expect("HTTP hang ends with the collector")
        .unwrap();
    assert!(matches!(r, Err(PostError::Failed(_))), "{r:?}");
    let r = tokio::time::timeout(Duration::from_secs(5), hang_grpc)
        .await
        .expect("gRPC hang ends with the collector")
        .unwrap();
    assert!(r.is_err());
    drop((http, ch));
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive() > baseline {
        assert!(
            Instant::now() < deadline,
            "{} tasks still alive (baseline {baseline})",
            alive()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
