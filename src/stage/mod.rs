//! The processing stage: what both data paths do between their source and
//! the outbox, in one place and one order. The bridge's own data (mapped
//! from the Telemetry API) and the function's data (forwarded by the local
//! OTLP receiver) go through
//!
//! 1. **enrich**: forwarded resources get the Lambda attributes (`faas.*`,
//!    `cloud.*`) they lack (when `LAMBDA_OTEL_BRIDGE_RECEIVER_ENRICH` is on;
//!    the mapper's own resource has them already);
//! 2. **redact** (optional): secrets in trace and log attributes and bodies
//!    ([`crate::redact`]);
//! 3. **limit**: the attribute limits, on the bridge's own spans and log
//!    records ([`crate::limits`]; the function's SDK applies its own);
//! 4. **split**: trace and log requests over the part size, and trace
//!    requests over the destination's limits (X-Ray's spans per request),
//!    into parts ([`split`]);
//! 5. **encode**: protobuf, each part with its item count and, for the
//!    bridge's own data, the time of its oldest item (the data-age metric).
//!
//! A forwarded protobuf request that needs neither redaction nor a cut by
//! the destination's limits keeps its bytes instead ([`Stage::forward_bytes`]):
//! the enrichment and the split happen at the wire level ([`crate::wire`]),
//! so fields newer than the bridge's OTLP version reach the collector.
//!
//! The stage holds no data: what it returns goes to the outbox
//! ([`crate::export::Exporter::queue`]).

pub mod split;

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tokio::sync::watch;

use crate::export::aws::target::Limits as DestinationLimits;
use crate::export::settings::{ExportSettings, Signal};
use crate::export::{data_age, log_items, max_request_bytes, metric_items, span_items, Part};
use crate::limits::Limits;
use crate::mapping::Output;
use crate::redact::Redactor;
use crate::wire;

/// Where data comes from: the steps differ only by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Mapped by the bridge from the Telemetry API: limited, dated.
    Bridge,
    /// The function's own, decoded by the local receiver: enriched.
    Function,
}

/// The steps' settings.
pub struct Stage {
    /// Rewrites secrets in traces and logs.
    redactor: Option<Arc<Redactor>>,
    /// Attribute limits of the bridge's own spans and log records.
    limits: Limits,
    /// Trace and log requests above this many bytes are split.
    part_bytes: usize,
    /// How trace requests are cut: `part_bytes`, and the limits of the
    /// destination (X-Ray's OTLP endpoint).
    trace_limits: DestinationLimits,
    /// Whether forwarded resources get the Lambda attributes they lack.
    enrich: bool,
    /// The bridge's resource, kept current by the mapper (`faas.instance`
    /// arrives after init): where those attributes come from.
    resource: watch::Receiver<Resource>,
}

impl Stage {
    /// The stage for an outbox of `outbox_bytes` exporting with `export`.
    pub fn new(export: &ExportSettings, outbox_bytes: usize) -> Self {
        let part_bytes = max_request_bytes(outbox_bytes);
        Stage {
            redactor: None,
            limits: Limits::default(),
            part_bytes,
            trace_limits: DestinationLimits::for_destination(
                export.traces.sigv4.as_ref().map(|t| t.service.as_str()),
                part_bytes,
            ),
            enrich: false,
            resource: watch::channel(Resource::default()).1,
        }
    }

    /// Redacts traces and logs of both origins.
    pub fn with_redactor(mut self, redactor: Option<Arc<Redactor>>) -> Self {
        self.redactor = redactor;
        self
    }

    /// Attribute limits of the bridge's own data.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Enriches forwarded resources from `resource` (the mapper's, as the
    /// shared state publishes it); `enrich` false leaves them as they are.
    pub fn with_enrichment(mut self, enrich: bool, resource: watch::Receiver<Resource>) -> Self {
        self.enrich = enrich;
        self.resource = resource;
        self
    }

    /// Whether traces and logs are redacted.
    pub fn redacts(&self) -> bool {
        self.redactor.is_some()
    }

    /// Secrets rewritten by redaction so far.
    pub fn redactions(&self) -> u64 {
        self.redactor.as_ref().map_or(0, |r| r.redactions())
    }

    /// The parts of what the mapper produced at a flush point.
    pub fn mapped(&self, output: Output) -> Vec<Part> {
        let mut parts = Vec::new();
        if let Some(t) = output.traces {
            parts.extend(self.traces(t, Origin::Bridge));
        }
        if let Some(m) = output.metrics {
            parts.extend(self.metrics(m, Origin::Bridge));
        }
        if let Some(l) = output.logs {
            parts.extend(self.logs(l, Origin::Bridge));
        }
        parts
    }

    /// A trace request through every step.
    pub fn traces(&self, req: ExportTraceServiceRequest, origin: Origin) -> Vec<Part> {
        self.steps(req, origin)
    }

    /// A log request through every step.
    pub fn logs(&self, req: ExportLogsServiceRequest, origin: Origin) -> Vec<Part> {
        self.steps(req, origin)
    }

    /// A metrics request: enriched (forwarded) and encoded whole. Metric
    /// attributes are not redacted, and a metrics request is not split.
    pub fn metrics(&self, req: ExportMetricsServiceRequest, origin: Origin) -> Vec<Part> {
        self.steps(req, origin)
    }

    /// The steps, in their order, for any signal.
    fn steps<R: Request>(&self, mut req: R, origin: Origin) -> Vec<Part> {
        if origin == Origin::Function {
            self.enrich(req.resources_mut());
        }
        if let Some(r) = &self.redactor {
            req.redact(r);
        }
        let oldest = match origin {
            Origin::Bridge => {
                req.limit(&self.limits);
                req.oldest()
            }
            Origin::Function => None,
        };
        req.split(self)
            .into_iter()
            .map(|p| Part {
                signal: R::SIGNAL,
                items: p.items(),
                body: Bytes::from(p.encode_to_vec()),
                oldest,
            })
            .collect()
    }

    /// Whether a forwarded protobuf request of `signal` with `items` items
    /// in `len` bytes can keep its bytes ([`Stage::forward_bytes`]): not
    /// when its traces or logs are to be redacted (values inside records
    /// change), nor when a trace request may break the destination's limits
    /// beyond size (spans per request, bytes per span), which only the
    /// decoded split follows.
    pub fn keeps_bytes(&self, signal: Signal, items: u64, len: usize) -> bool {
        match signal {
            Signal::Metrics => true,
            Signal::Logs => !self.redacts(),
            Signal::Traces => {
                !self.redacts()
                    && items <= self.trace_limits.max_items as u64
                    && len <= self.trace_limits.max_item_bytes
            }
        }
    }

    /// A forwarded protobuf request, kept as received: the attributes its
    /// resources (`resources`, in order) lack appended at the wire level,
    /// and traces and logs over the part size split between whole entries,
    /// scope entries or items. `items` is the request's item count.
    pub fn forward_bytes(
        &self,
        signal: Signal,
        body: Bytes,
        resources: &[Option<&Resource>],
        items: u64,
    ) -> Result<Vec<Part>, wire::WireError> {
        let add: Vec<Vec<KeyValue>> = resources.iter().map(|r| self.missing(*r)).collect();
        let body = if add.iter().all(Vec::is_empty) {
            body
        } else {
            Bytes::from(wire::add_resource_attributes(&body, &add)?)
        };
        let part = |body: Bytes, items: u64| Part {
            signal,
            body,
            items,
            oldest: None,
        };
        if signal != Signal::Metrics && body.len() > self.part_bytes {
            Ok(wire::split(&body, self.part_bytes)?
                .into_iter()
                .map(|(body, items)| part(Bytes::from(body), items))
                .collect())
        } else {
            Ok(vec![part(body, items)])
        }
    }

    /// Adds to each resource the Lambda attributes it lacks.
    fn enrich(&self, resources: Vec<&mut Option<Resource>>) {
        for resource in resources {
            let add = self.missing(resource.as_ref());
            if !add.is_empty() {
                resource
                    .get_or_insert_with(Resource::default)
                    .attributes
                    .extend(add);
            }
        }
    }

    /// The Lambda attributes a resource lacks (none when enrichment is off).
    fn missing(&self, resource: Option<&Resource>) -> Vec<KeyValue> {
        if !self.enrich {
            return Vec::new();
        }
        let have = resource.map_or(&[][..], |r| &r.attributes[..]);
        self.resource
            .borrow()
            .attributes
            .iter()
            .filter(|kv| kv.key.starts_with("faas.") || kv.key.starts_with("cloud."))
            .filter(|kv| !have.iter().any(|a| a.key == kv.key))
            .cloned()
            .collect()
    }
}

/// What each step does to a request of one signal.
trait Request: Message + Sized {
    const SIGNAL: Signal;
    /// The resource of every `resource_*` entry.
    fn resources_mut(&mut self) -> Vec<&mut Option<Resource>>;
    fn redact(&mut self, redactor: &Redactor);
    fn limit(&mut self, limits: &Limits);
    /// Time of the oldest item (Unix nanoseconds).
    fn oldest(&self) -> Option<u64>;
    /// Parts within the stage's bounds.
    fn split(self, stage: &Stage) -> Vec<Self>;
    /// Spans, data points or log records.
    fn items(&self) -> u64;
}

impl Request for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;
    fn resources_mut(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_spans
            .iter_mut()
            .map(|r| &mut r.resource)
            .collect()
    }
    fn redact(&mut self, redactor: &Redactor) {
        redactor.redact_traces(self);
    }
    fn limit(&mut self, limits: &Limits) {
        limits.apply_traces(self);
    }
    fn oldest(&self) -> Option<u64> {
        data_age::oldest_span(self)
    }
    fn split(self, stage: &Stage) -> Vec<Self> {
        split::split_traces(self, stage.trace_limits)
    }
    fn items(&self) -> u64 {
        span_items(self)
    }
}

impl Request for ExportLogsServiceRequest {
    const SIGNAL: Signal = Signal::Logs;
    fn resources_mut(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_logs
            .iter_mut()
            .map(|r| &mut r.resource)
            .collect()
    }
    fn redact(&mut self, redactor: &Redactor) {
        redactor.redact_logs(self);
    }
    fn limit(&mut self, limits: &Limits) {
        limits.apply_logs(self);
    }
    fn oldest(&self) -> Option<u64> {
        data_age::oldest_record(self)
    }
    fn split(self, stage: &Stage) -> Vec<Self> {
        split::split_logs(self, stage.part_bytes)
    }
    fn items(&self) -> u64 {
        log_items(self)
    }
}

/// Metrics: enriched and encoded whole (metric attributes carry no
/// secrets the presets look for, and the attribute limits are the span and
/// log record ones).
impl Request for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;
    fn resources_mut(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_metrics
            .iter_mut()
            .map(|r| &mut r.resource)
            .collect()
    }
    fn redact(&mut self, _redactor: &Redactor) {}
    fn limit(&mut self, _limits: &Limits) {}
    fn oldest(&self) -> Option<u64> {
        data_age::oldest_point(self)
    }
    fn split(self, _stage: &Stage) -> Vec<Self> {
        vec![self]
    }
    fn items(&self) -> u64 {
        metric_items(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::settings::ExportSettings;
    use crate::mapping::proto::kv_str;
    use crate::options::env_of;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    const OUTBOX: usize = 256 * 1024;
    /// A secret the default redaction presets rewrite.
    const SECRET: &str = "AKIAIOSFODNN7EXAMPLE";

    fn stage(extra: &[(&str, &str)]) -> Stage {
        let mut vars = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")];
        vars.extend_from_slice(extra);
        let env = env_of(&vars);
        let redactor = crate::redact::Redactor::from_env(&env)
            .unwrap()
            .map(Arc::new);
        let mut bridge = Resource::default();
        bridge.attributes.push(kv_str("faas.name", "orders-fn"));
        bridge.attributes.push(kv_str("cloud.provider", "aws"));
        bridge.attributes.push(kv_str("service.name", "bridge"));
        Stage::new(&ExportSettings::from_env(&env).unwrap(), OUTBOX)
            .with_redactor(redactor)
            .with_limits(Limits {
                span: crate::limits::AttributeLimits {
                    value_length: None,
                    count: 2,
                },
                ..Limits::default()
            })
            .with_enrichment(true, watch::channel(bridge).1)
    }

    fn text(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    }

    /// `n` spans with four attributes each (one holding a secret), ending
    /// at second `i + 1` of the epoch, under a resource naming the service.
    fn traces(n: usize) -> ExportTraceServiceRequest {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                name: format!("span {i}"),
                start_time_unix_nano: i as u64 * 1_000_000_000,
                end_time_unix_nano: (i as u64 + 1) * 1_000_000_000,
                attributes: vec![
                    kv_str("a", "1"),
                    kv_str("b", "2"),
                    kv_str("key", SECRET),
                    kv_str("pad", "x".repeat(1000)),
                ],
                ..Span::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", "orders")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    fn decode_traces(parts: &[Part]) -> Vec<ExportTraceServiceRequest> {
        parts
            .iter()
            .map(|p| {
                assert_eq!(p.signal, Signal::Traces);
                ExportTraceServiceRequest::decode(&p.body[..]).unwrap()
            })
            .collect()
    }

    fn keys(r: &Resource) -> Vec<&str> {
        r.attributes.iter().map(|a| a.key.as_str()).collect()
    }

    #[test]
    fn the_bridges_traces_are_redacted_limited_dated_and_not_enriched() {
        let s = stage(&[("LAMBDA_OTEL_BRIDGE_REDACT", "default")]);
        let parts = s.traces(traces(3), Origin::Bridge);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].items, 3);
        // The oldest span ended at second 1.
        assert_eq!(parts[0].oldest, Some(1_000_000_000));
        let req = &decode_traces(&parts)[0];
        let rs = &req.resource_spans[0];
        assert_eq!(keys(rs.resource.as_ref().unwrap()), ["service.name"]);
        for span in &rs.scope_spans[0].spans {
            // Two attributes kept of four (the limit), the rest counted.
            assert_eq!(span.attributes.len(), 2);
            assert_eq!(span.dropped_attributes_count, 2);
        }
        // Redaction runs before the limits: the secrets were rewritten, then
        // the attributes holding them dropped by the limit.
        assert_eq!(s.redactions(), 3);
        let body = String::from_utf8_lossy(&parts[0].body);
        assert!(!body.contains(SECRET));
    }

    #[test]
    fn the_functions_traces_are_enriched_and_redacted_but_not_limited_nor_dated() {
        let s = stage(&[("LAMBDA_OTEL_BRIDGE_REDACT", "default")]);
        let parts = s.traces(traces(2), Origin::Function);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].oldest, None);
        let req = &decode_traces(&parts)[0];
        let rs = &req.resource_spans[0];
        // Its own service.name stays; the Lambda attributes it lacked are added.
        assert_eq!(
            keys(rs.resource.as_ref().unwrap()),
            ["service.name", "faas.name", "cloud.provider"]
        );
        for span in &rs.scope_spans[0].spans {
            assert_eq!(span.attributes.len(), 4);
            let key = span.attributes.iter().find(|a| a.key == "key").unwrap();
            assert_ne!(key.value, text(SECRET));
        }
        assert_eq!(s.redactions(), 2);
    }

    #[test]
    fn large_requests_are_split_into_parts_that_keep_every_item() {
        // ~1 KiB per span; parts of at most a quarter of the outbox.
        let s = stage(&[]);
        let parts = s.traces(traces(200), Origin::Function);
        assert!(parts.len() > 1, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.body.len() <= OUTBOX / 4));
        assert_eq!(parts.iter().map(|p| p.items).sum::<u64>(), 200);
        let names: Vec<String> = decode_traces(&parts)
            .iter()
            .flat_map(|r| r.resource_spans[0].scope_spans[0].spans.clone())
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            (0..200).map(|i| format!("span {i}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn logs_and_metrics_take_the_same_steps() {
        let s = stage(&[("LAMBDA_OTEL_BRIDGE_REDACT", "default")]);
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: 5,
                        body: text(&format!("key={SECRET}")),
                        ..LogRecord::default()
                    }],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let parts = s.logs(logs.clone(), Origin::Function);
        assert_eq!(
            (parts[0].signal, parts[0].items, parts[0].oldest),
            (Signal::Logs, 1, None)
        );
        let out = ExportLogsServiceRequest::decode(&parts[0].body[..]).unwrap();
        // A resource-less entry gets one with the Lambda attributes.
        assert_eq!(
            keys(out.resource_logs[0].resource.as_ref().unwrap()),
            ["faas.name", "cloud.provider"]
        );
        assert_ne!(
            out.resource_logs[0].scope_logs[0].log_records[0].body,
            logs.resource_logs[0].scope_logs[0].log_records[0].body
        );
        let bridge = s.logs(logs, Origin::Bridge);
        assert_eq!(bridge[0].oldest, Some(5));
        let out = ExportLogsServiceRequest::decode(&bridge[0].body[..]).unwrap();
        assert_eq!(out.resource_logs[0].resource, None);

        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: 7,
                                value: Some(number_data_point::Value::AsInt(1)),
                                ..NumberDataPoint::default()
                            }],
                        })),
                        ..Metric::default()
                    }],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        let parts = s.metrics(metrics.clone(), Origin::Bridge);
        assert_eq!(
            (parts[0].signal, parts[0].items, parts[0].oldest),
            (Signal::Metrics, 1, Some(7))
        );
        assert_eq!(
            ExportMetricsServiceRequest::decode(&parts[0].body[..]).unwrap(),
            metrics
        );
        let parts = s.metrics(metrics, Origin::Function);
        let out = ExportMetricsServiceRequest::decode(&parts[0].body[..]).unwrap();
        assert_eq!(
            keys(out.resource_metrics[0].resource.as_ref().unwrap()),
            ["faas.name", "cloud.provider"]
        );
    }

    #[test]
    fn mapped_output_goes_out_traces_metrics_logs() {
        let s = stage(&[]);
        let output = Output {
            traces: Some(traces(1)),
            metrics: Some(ExportMetricsServiceRequest::default()),
            logs: Some(ExportLogsServiceRequest::default()),
        };
        let signals: Vec<Signal> = s.mapped(output).iter().map(|p| p.signal).collect();
        assert_eq!(signals, [Signal::Traces, Signal::Metrics, Signal::Logs]);
        assert!(s.mapped(Output::default()).is_empty());
    }

    #[test]
    fn bytes_are_kept_unless_redaction_or_the_destinations_limits_need_the_decoded_path() {
        let plain = stage(&[]);
        for signal in Signal::ALL {
            assert!(plain.keeps_bytes(signal, 10, 1000), "{signal:?}");
        }
        let redacting = stage(&[("LAMBDA_OTEL_BRIDGE_REDACT", "default")]);
        assert!(!redacting.keeps_bytes(Signal::Traces, 1, 100));
        assert!(!redacting.keeps_bytes(Signal::Logs, 1, 100));
        assert!(redacting.keeps_bytes(Signal::Metrics, 1, 100));
        // X-Ray's OTLP endpoint takes at most 10,000 spans per request.
        let xray = stage(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://xray.us-east-1.amazonaws.com/v1/traces",
            ),
            ("AWS_REGION", "us-east-1"),
        ]);
        assert!(xray.keeps_bytes(Signal::Traces, 10, 1000));
        assert!(!xray.keeps_bytes(Signal::Traces, 10_001, 1000));
    }
}
