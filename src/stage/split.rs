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
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::export::aws::target::Limits;

/// Bytes a length-delimited field of `len` bytes takes (tag + length + data).
fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// One resource's scopes, each with its items (records or spans).
struct Group<I> {
    resource: Option<Resource>,
    schema_url: String,
    scopes: Vec<(Option<InstrumentationScope>, String, Vec<I>)>,
}

/// A request made of resource groups of scoped items.
trait Grouped: Message + Default + Sized {
    type Item: Message;
    fn into_groups(self) -> Vec<Group<Self::Item>>;
    /// Appends one resource group holding one scope's items.
    fn push(
        &mut self,
        resource: &Option<Resource>,
        schema_url: &str,
        scope: &(Option<InstrumentationScope>, String),
        items: Vec<Self::Item>,
    );
    fn is_empty(&self) -> bool;
    fn item_count(&self) -> usize;
}

impl Grouped for ExportLogsServiceRequest {
    type Item = LogRecord;
    fn into_groups(self) -> Vec<Group<LogRecord>> {
        self.resource_logs
            .into_iter()
            .map(|rl| Group {
                resource: rl.resource,
                schema_url: rl.schema_url,
                scopes: rl
                    .scope_logs
                    .into_iter()
                    .map(|sl| (sl.scope, sl.schema_url, sl.log_records))
                    .collect(),
            })
            .collect()
    }
    fn push(
        &mut self,
        resource: &Option<Resource>,
        schema_url: &str,
        scope: &(Option<InstrumentationScope>, String),
        items: Vec<LogRecord>,
    ) {
        self.resource_logs.push(ResourceLogs {
            resource: resource.clone(),
            scope_logs: vec![ScopeLogs {
                scope: scope.0.clone(),
                log_records: items,
                schema_url: scope.1.clone(),
            }],
            schema_url: schema_url.to_owned(),
        });
    }
    fn is_empty(&self) -> bool {
        self.resource_logs.is_empty()
    }
    fn item_count(&self) -> usize {
        crate::export::log_items(self) as usize
    }
}

impl Grouped for ExportTraceServiceRequest {
    type Item = Span;
    fn into_groups(self) -> Vec<Group<Span>> {
        self.resource_spans
            .into_iter()
            .map(|rs| Group {
                resource: rs.resource,
                schema_url: rs.schema_url,
                scopes: rs
                    .scope_spans
                    .into_iter()
                    .map(|ss| (ss.scope, ss.schema_url, ss.spans))
                    .collect(),
            })
            .collect()
    }
    fn push(
        &mut self,
        resource: &Option<Resource>,
        schema_url: &str,
        scope: &(Option<InstrumentationScope>, String),
        items: Vec<Span>,
    ) {
        self.resource_spans.push(ResourceSpans {
            resource: resource.clone(),
            scope_spans: vec![ScopeSpans {
                scope: scope.0.clone(),
                spans: items,
                schema_url: scope.1.clone(),
            }],
            schema_url: schema_url.to_owned(),
        });
    }
    fn is_empty(&self) -> bool {
        self.resource_spans.is_empty()
    }
    fn item_count(&self) -> usize {
        crate::export::span_items(self) as usize
    }
}

/// Closes the part being filled: the scope's pending `items` (if any) join
/// it under their resource and scope, and it goes to `parts`.
fn close_part<R: Grouped>(
    parts: &mut Vec<R>,
    current: &mut R,
    (resource, schema_url, scope): (
        &Option<Resource>,
        &str,
        &(Option<InstrumentationScope>, String),
    ),
    items: &mut Vec<R::Item>,
) {
    if !items.is_empty() {
        current.push(resource, schema_url, scope, std::mem::take(items));
    }
    parts.push(std::mem::take(current));
}

fn split<R: Grouped>(req: R, limits: Limits) -> Vec<R> {
    let len = req.encoded_len();
    let small = len <= limits.max_bytes && len <= limits.max_item_bytes;
    if small && (limits.max_items == usize::MAX || req.item_count() <= limits.max_items) {
        return vec![req];
    }
    let mut parts = Vec::new();
    let mut current = R::default();
    let mut size = 0;
    let mut count = 0;
    for group in req.into_groups() {
        let resource_overhead = field_len(group.resource.as_ref().map_or(0, |r| r.encoded_len()));
        for (scope, scope_schema, all) in group.scopes {
            let scope_overhead = field_len(scope.as_ref().map_or(0, |s| s.encoded_len()));
            // Wrapper tags and lengths of the resource and scope groups.
            let overhead = resource_overhead + scope_overhead + 16;
            let scope = (scope, scope_schema);
            let place = (&group.resource, group.schema_url.as_str(), &scope);
            let mut items = Vec::new();
            for item in all {
                let len = field_len(item.encoded_len());
                // An item over the per-item limit goes alone: the part
                // before it is closed, and so is its own after it.
                let alone = len > limits.max_item_bytes;
                let full =
                    size + len + overhead > limits.max_bytes || count >= limits.max_items || alone;
                if full && (size > 0 || !items.is_empty()) {
                    close_part(&mut parts, &mut current, place, &mut items);
                    size = 0;
                    count = 0;
                }
                size += len;
                count += 1;
                items.push(item);
                if alone {
                    close_part(&mut parts, &mut current, place, &mut items);
                    size = 0;
                    count = 0;
                }
            }
            if !items.is_empty() {
                size += overhead;
                current.push(&group.resource, &group.schema_url, &scope, items);
            }
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Splits a log request into parts whose encoded size stays within
/// `max_bytes` (but for a single record larger than that).
pub fn split_logs(
    req: ExportLogsServiceRequest,
    max_bytes: usize,
) -> Vec<ExportLogsServiceRequest> {
    split(req, Limits::bytes(max_bytes))
}

/// Splits a trace request the same way, within `limits` (the
/// destination's: X-Ray's OTLP endpoint also limits spans per request and
/// the size of one span).
pub fn split_traces(
    req: ExportTraceServiceRequest,
    limits: Limits,
) -> Vec<ExportTraceServiceRequest> {
    split(req, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::proto::{kv, str_value};

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
        let parts = split_traces(req, Limits::bytes(8192));
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

    fn spans_of(sizes: &[usize]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: sizes
                        .iter()
                        .enumerate()
                        .map(|(i, n)| Span {
                            name: format!("{i} {}", "z".repeat(*n)),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn names(parts: &[ExportTraceServiceRequest]) -> Vec<Vec<String>> {
        parts
            .iter()
            .map(|p| {
                p.resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .flat_map(|ss| &ss.spans)
                    .map(|s| s.name.split(' ').next().unwrap().to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn xray_limits_cap_spans_per_request_and_isolate_large_spans() {
        let xray = Limits::for_destination(Some("xray"), 1 << 20);
        // 25,000 tiny spans: well under a MiB, over 10,000 spans.
        let parts = split_traces(spans_of(&[1; 25_000]), xray);
        let counts: Vec<usize> = names(&parts).iter().map(Vec::len).collect();
        assert_eq!(counts, [10_000, 10_000, 5_000]);
        // A span over 200 KB goes alone; its neighbours stay together.
        let parts = split_traces(spans_of(&[10, 10, 250_000, 10, 10]), xray);
        assert_eq!(names(&parts), [vec!["0", "1"], vec!["2"], vec!["3", "4"]]);
        // Elsewhere the same request is one part.
        let one = split_traces(spans_of(&[10, 10, 250_000, 10, 10]), Limits::bytes(1 << 20));
        assert_eq!(one.len(), 1);
    }
}
