//! Splitting of large trace and log requests into requests of bounded
//! encoded size, so that a burst of telemetry becomes several outbox entries
//! (each sent, retried or dropped on its own) instead of one entry larger
//! than the outbox, which could only be dropped whole.
//!
//! Every part keeps the resource and scope of the records it holds, and the
//! records keep their order. A single record larger than the limit goes
//! alone in its part.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

/// Bytes a length-delimited field of `len` bytes takes (tag + length + data).
fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Splits `req` into parts whose encoded size stays near `max_bytes`.
pub fn split_logs(
    req: ExportLogsServiceRequest,
    max_bytes: usize,
) -> Vec<ExportLogsServiceRequest> {
    if req.encoded_len() <= max_bytes {
        return vec![req];
    }
    let mut parts = Vec::new();
    let mut current = ExportLogsServiceRequest::default();
    let mut size = 0;
    for rl in req.resource_logs {
        let resource_overhead = field_len(rl.resource.as_ref().map_or(0, |r| r.encoded_len()));
        for sl in rl.scope_logs {
            let scope_overhead = field_len(sl.scope.as_ref().map_or(0, |s| s.encoded_len()));
            let mut records = Vec::new();
            let all = sl.log_records;
            let sl = ScopeLogs {
                log_records: Vec::new(),
                ..sl
            };
            for record in all {
                let len = field_len(record.encoded_len());
                let overhead = resource_overhead + scope_overhead + 16;
                if size + len + overhead > max_bytes && (size > 0 || !records.is_empty()) {
                    push_logs(
                        &mut current,
                        &rl.resource,
                        &rl.schema_url,
                        &sl,
                        std::mem::take(&mut records),
                    );
                    parts.push(std::mem::take(&mut current));
                    size = 0;
                }
                size += len;
                records.push(record);
            }
            if !records.is_empty() {
                size += resource_overhead + scope_overhead + 16;
                push_logs(&mut current, &rl.resource, &rl.schema_url, &sl, records);
            }
        }
    }
    if !current.resource_logs.is_empty() {
        parts.push(current);
    }
    parts
}

fn push_logs(
    req: &mut ExportLogsServiceRequest,
    resource: &Option<opentelemetry_proto::tonic::resource::v1::Resource>,
    resource_schema: &str,
    sl: &ScopeLogs,
    records: Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>,
) {
    if records.is_empty() {
        return;
    }
    req.resource_logs.push(ResourceLogs {
        resource: resource.clone(),
        scope_logs: vec![ScopeLogs {
            scope: sl.scope.clone(),
            log_records: records,
            schema_url: sl.schema_url.clone(),
        }],
        schema_url: resource_schema.to_owned(),
    });
}

/// Splits `req` into parts whose encoded size stays near `max_bytes`.
pub fn split_traces(
    req: ExportTraceServiceRequest,
    max_bytes: usize,
) -> Vec<ExportTraceServiceRequest> {
    if req.encoded_len() <= max_bytes {
        return vec![req];
    }
    let mut parts = Vec::new();
    let mut current = ExportTraceServiceRequest::default();
    let mut size = 0;
    for rs in req.resource_spans {
        let resource_overhead = field_len(rs.resource.as_ref().map_or(0, |r| r.encoded_len()));
        for ss in rs.scope_spans {
            let scope_overhead = field_len(ss.scope.as_ref().map_or(0, |s| s.encoded_len()));
            let mut spans = Vec::new();
            let all = ss.spans;
            let ss = ScopeSpans {
                spans: Vec::new(),
                ..ss
            };
            for span in all {
                let len = field_len(span.encoded_len());
                let overhead = resource_overhead + scope_overhead + 16;
                if size + len + overhead > max_bytes && (size > 0 || !spans.is_empty()) {
                    push_spans(
                        &mut current,
                        &rs.resource,
                        &rs.schema_url,
                        &ss,
                        std::mem::take(&mut spans),
                    );
                    parts.push(std::mem::take(&mut current));
                    size = 0;
                }
                size += len;
                spans.push(span);
            }
            if !spans.is_empty() {
                size += resource_overhead + scope_overhead + 16;
                push_spans(&mut current, &rs.resource, &rs.schema_url, &ss, spans);
            }
        }
    }
    if !current.resource_spans.is_empty() {
        parts.push(current);
    }
    parts
}

fn push_spans(
    req: &mut ExportTraceServiceRequest,
    resource: &Option<opentelemetry_proto::tonic::resource::v1::Resource>,
    resource_schema: &str,
    ss: &ScopeSpans,
    spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>,
) {
    if spans.is_empty() {
        return;
    }
    req.resource_spans.push(ResourceSpans {
        resource: resource.clone(),
        scope_spans: vec![ScopeSpans {
            scope: ss.scope.clone(),
            spans,
            schema_url: ss.schema_url.clone(),
        }],
        schema_url: resource_schema.to_owned(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::proto::{kv, str_value};
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn logs(resources: usize, records: usize, body: usize) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: (0..resources)
                .map(|r| ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", str_value(format!("svc-{r}")))],
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: format!("scope-{r}"),
                            ..Default::default()
                        }),
                        log_records: (0..records)
                            .map(|i| LogRecord {
                                time_unix_nano: i as u64,
                                body: Some(str_value(format!("{r}/{i} {}", "x".repeat(body)))),
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    fn bodies(req: &ExportLogsServiceRequest) -> Vec<(String, String)> {
        req.resource_logs
            .iter()
            .flat_map(|rl| {
                let svc = format!("{:?}", rl.resource.as_ref().unwrap().attributes[0].value);
                rl.scope_logs.iter().flat_map(move |sl| {
                    let svc = svc.clone();
                    sl.log_records
                        .iter()
                        .map(move |r| (svc.clone(), format!("{:?}", r.body)))
                })
            })
            .collect()
    }

    #[test]
    fn small_requests_are_left_alone() {
        let req = logs(1, 10, 10);
        let parts = split_logs(req.clone(), 1 << 20);
        assert_eq!(parts, vec![req]);
    }

    #[test]
    fn parts_are_bounded_and_keep_every_record_in_order_with_its_resource() {
        let req = logs(3, 400, 200);
        let total = req.encoded_len();
        let max = 16 * 1024;
        let parts = split_logs(req.clone(), max);
        assert!(parts.len() >= total / max, "{} parts", parts.len());
        for p in &parts {
            assert!(p.encoded_len() <= max, "{} > {max}", p.encoded_len());
        }
        let joined: Vec<_> = parts.iter().flat_map(bodies).collect();
        assert_eq!(joined, bodies(&req));
    }

    #[test]
    fn an_oversized_record_goes_alone() {
        let req = logs(1, 3, 50_000);
        let parts = split_logs(req, 10_000);
        assert_eq!(parts.len(), 3);
        assert!(parts
            .iter()
            .all(|p| p.resource_logs[0].scope_logs[0].log_records.len() == 1));
    }

    #[test]
    fn spans_split_the_same_way() {
        let spans: Vec<Span> = (0..1000)
            .map(|i| Span {
                name: format!("span {i} {}", "y".repeat(100)),
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: spans.clone(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let parts = split_traces(req, 8192);
        assert!(parts.len() > 10);
        assert!(parts.iter().all(|p| p.encoded_len() <= 8192));
        let joined: Vec<Span> = parts
            .into_iter()
            .flat_map(|p| p.resource_spans.into_iter())
            .flat_map(|rs| rs.scope_spans.into_iter())
            .flat_map(|ss| ss.spans.into_iter())
            .collect();
        assert_eq!(joined, spans);
    }
}
