//! A Lambda function written in Rust that sends its own traces, logs and metrics to the bridge's
//! local receiver with `opentelemetry_sdk` and `opentelemetry-otlp`, set up the way that works
//! inside Lambda.
//!
//! Every invocation gets one span nested in the bridge's invocation span, one log record inside
//! that span and one counter increment; before the handler returns, every provider is flushed
//! and the exports are awaited, so the data has reached the bridge before Lambda freezes the
//! sandbox (the bridge forwards it to the collector before its own `/next`).
//!
//! # How it fits Lambda
//! * **One current-thread runtime**, as a function on a fraction of a vCPU has, and **no
//!   background thread or timer**: the SDK's `BatchSpanProcessor`, `BatchLogProcessor` and
//!   `PeriodicReader` export from their own threads, where the async OTLP/HTTP clients panic
//!   ("there is no reactor running"), and `PeriodicReader` + `force_flush` deadlocks on a
//!   current-thread runtime with the gRPC exporter (its thread waits on a tonic task that cannot
//!   run). The SDK's `SimpleSpanProcessor` exports inside `span.end()` with a blocking
//!   `block_on`, which on a current-thread runtime never returns (the connection's task cannot
//!   run while the thread is blocked). Timers do not tick in a frozen sandbox either.
//! * Instead, the processors and the reader below are simple: a finished span or an emitted log
//!   record is handed off as it is, and `force_flush` on the meter provider collects the
//!   metrics (a `ManualReader`, delta temporality: each flush carries what this invocation
//!   counted). The handler then awaits the three OTLP exporters on its own runtime
//!   ([`Telemetry::flush`]). Nothing blocks a thread; nothing is exported after the handler
//!   returned.
//! * The exporters are built once, inside the runtime (the gRPC exporter needs it), and reused
//!   by every invocation; they reconnect by themselves after a freeze.
//! * **X-Ray context.** Lambda hands the invocation's `Root=…;Parent=…;Sampled=…` header to the
//!   runtime, which exposes it as `_X_AMZN_TRACE_ID`. The handler's span takes `Root` as its
//!   trace id and `Parent` as its (remote) parent, which is the invocation span's id when the
//!   bridge runs with `LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID=xray-parent`.
//!
//! # Configuration (the standard variables)
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (the bridge: `http://localhost:4318`, or
//! `http://localhost:4317` for gRPC), `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the
//! default, `http/json` or `grpc`), `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`.
//!
//! # Driving it without Lambda
//! It stands in for the runtime loop with stdin: each line is one invocation,
//! `<request id> [<X-Ray trace header>]` (without a header, `_X_AMZN_TRACE_ID` is used). It prints
//! `ready` once set up, then `flushed <request id>` (or `flush failed <request id>: <why>`) per
//! invocation, and shuts the providers down at the end of the input.
//!
//! ```sh
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example rust-function
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::{Counter, MeterProvider as _};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter as _, LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider,
};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::trace::{
    SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter as _, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The instrumentation scope of everything this function records.
const SCOPE: &str = "rust-function";

/// The variable in which the runtime exposes the invocation's X-Ray trace header.
const TRACE_HEADER_VAR: &str = "_X_AMZN_TRACE_ID";

/// The remote parent carried by an X-Ray trace header
/// (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`): the trace id
/// is `Root` without its version and dashes, the parent span id is `Parent`, and `Sampled=1`
/// sets the sampled flag. `None` when `Root` or `Parent` is missing or malformed.
fn xray_parent(header: &str) -> Option<SpanContext> {
    let (mut root, mut parent, mut sampled) = (None, None, false);
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("Root", v)) => root = Some(v),
            Some(("Parent", v)) => parent = Some(v),
            Some(("Sampled", v)) => sampled = v == "1",
            _ => {}
        }
    }
    // Root is `1-<8 hex digits: epoch seconds>-<24 hex digits>`.
    let mut fields = root?.split('-');
    let (version, time, random) = (fields.next()?, fields.next()?, fields.next()?);
    if version != "1" || time.len() != 8 || random.len() != 24 || fields.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(&format!("{time}{random}")).ok()?;
    let parent = parent?;
    let span_id = SpanId::from_hex(parent)
        .ok()
        .filter(|_| parent.len() == 16)?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Some(SpanContext::new(
        trace_id,
        span_id,
        flags,
        true,
        TraceState::default(),
    ))
}

/// Where the providers leave finished telemetry until the handler sends it.
#[derive(Default)]
struct Handoff {
    spans: Mutex<Vec<SpanData>>,
    logs: Mutex<Vec<(SdkLogRecord, InstrumentationScope)>>,
    metrics: Mutex<Option<ResourceMetrics>>,
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff")
            .field("spans", &locked(&self.spans).len())
            .field("logs", &locked(&self.logs).len())
            .finish_non_exhaustive()
    }
}

/// The data behind a lock; a panic elsewhere while it was held does not make it unusable.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands every finished span off as it is, on the thread that ended it: no thread, no export.
#[derive(Debug)]
struct HandoffSpans(Arc<Handoff>);

impl SpanProcessor for HandoffSpans {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        locked(&self.0.spans).push(span);
    }

    /// Finished spans are handed off already; [`Telemetry::flush`] sends them.
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Hands every emitted log record off as it is (see [`HandoffSpans`]).
#[derive(Debug)]
struct HandoffLogs(Arc<Handoff>);

impl LogProcessor for HandoffLogs {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        locked(&self.0.logs).push((record.clone(), scope.clone()));
    }

    /// Emitted records are handed off already; [`Telemetry::flush`] sends them.
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// A `ManualReader` whose `force_flush` collects the metrics and hands them off (the SDK's
/// `PeriodicReader` would export from its own thread instead).
#[derive(Debug)]
struct HandoffReader {
    reader: ManualReader,
    handoff: Arc<Handoff>,
}

impl MetricReader for HandoffReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.reader.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.reader.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut rm = ResourceMetrics::default();
        self.reader.collect(&mut rm)?;
        *locked(&self.handoff.metrics) = Some(rm);
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.reader.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.reader.temporality(kind)
    }
}

/// The function's OpenTelemetry set-up: three providers and the exporters that send what they
/// hand off.
struct Telemetry {
    tracer_provider: SdkTracerProvider,
    logger_provider: SdkLoggerProvider,
    meter_provider: SdkMeterProvider,
    handoff: Arc<Handoff>,
    span_exporter: SpanExporter,
    log_exporter: LogExporter,
    metric_exporter: MetricExporter,
}

impl Telemetry {
    /// Builds the exporters for `OTEL_EXPORTER_OTLP_PROTOCOL` (they read the endpoint, headers,
    /// timeout and compression from the standard variables themselves) and the providers. Must
    /// run inside the tokio runtime that will await the exports.
    fn new() -> Result<Telemetry, String> {
        let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            Ok("grpc") => Protocol::Grpc,
            Ok("http/json") => Protocol::HttpJson,
            Ok("http/protobuf") | Ok("") | Err(_) => Protocol::HttpBinary,
            Ok(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported"
                ))
            }
        };
        let built = |e: opentelemetry_otlp::ExporterBuildError| e.to_string();
        let (mut span_exporter, mut log_exporter, metric_exporter) = match protocol {
            Protocol::Grpc => (
                SpanExporter::builder()
                    .with_tonic()
                    .build()
                    .map_err(built)?,
                LogExporter::builder().with_tonic().build().map_err(built)?,
                MetricExporter::builder()
                    .with_tonic()
                    .build()
                    .map_err(built)?,
            ),
            http => (
                SpanExporter::builder()
                    .with_http()
                    .with_protocol(http)
                    .build()
                    .map_err(built)?,
                LogExporter::builder()
                    .with_http()
                    .with_protocol(http)
                    .build()
                    .map_err(built)?,
                MetricExporter::builder()
                    .with_http()
                    .with_protocol(http)
                    .build()
                    .map_err(built)?,
            ),
        };
        // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the bridge adds the Lambda attributes
        // (cloud.*, faas.*) the function did not set.
        let resource = Resource::builder().build();
        // Spans and log records are exported by hand: their exporters need the resource.
        span_exporter.set_resource(&resource);
        log_exporter.set_resource(&resource);

        let handoff = Arc::new(Handoff::default());
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_span_processor(HandoffSpans(handoff.clone()))
            .build();
        let logger_provider = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_log_processor(HandoffLogs(handoff.clone()))
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(HandoffReader {
                reader: ManualReader::builder()
                    .with_temporality(Temporality::Delta)
                    .build(),
                handoff: handoff.clone(),
            })
            .build();
        Ok(Telemetry {
            tracer_provider,
            logger_provider,
            meter_provider,
            handoff,
            span_exporter,
            log_exporter,
            metric_exporter,
        })
    }

    /// Flushes every provider, then awaits the exports of what they handed off, on the
    /// handler's runtime. Call it before the handler returns.
    async fn flush(&self) -> Result<(), String> {
        let flushed = [
            ("traces", self.tracer_provider.force_flush()),
            ("logs", self.logger_provider.force_flush()),
            ("metrics", self.meter_provider.force_flush()),
        ];
        let spans = std::mem::take(&mut *locked(&self.handoff.spans));
        let logs = std::mem::take(&mut *locked(&self.handoff.logs));
        let metrics = locked(&self.handoff.metrics).take();
        let (traces, log_records, metric_points) = tokio::join!(
            async {
                if spans.is_empty() {
                    return Ok(());
                }
                self.span_exporter.export(spans).await
            },
            async {
                if logs.is_empty() {
                    return Ok(());
                }
                let batch: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                    logs.iter().map(|(r, s)| (r, s)).collect();
                self.log_exporter.export(LogBatch::new(&batch)).await
            },
            async {
                match &metrics {
                    Some(rm) if rm.scope_metrics().next().is_some() => {
                        self.metric_exporter.export(rm).await
                    }
                    _ => Ok(()),
                }
            },
        );
        let exported = [
            ("traces", traces),
            ("logs", log_records),
            ("metrics", metric_points),
        ];
        let failures: Vec<String> = flushed
            .into_iter()
            .chain(exported)
            .filter_map(|(signal, r)| r.err().map(|e| format!("{signal}: {e}")))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// Shuts the providers down (at the end of the runtime process).
    fn shutdown(&self) -> Result<(), OTelSdkError> {
        self.tracer_provider.shutdown()?;
        self.logger_provider.shutdown()?;
        self.meter_provider.shutdown()
    }
}

/// The function's business: what it records per invocation.
struct Handler {
    tracer: SdkTracer,
    logger: SdkLogger,
    orders: Counter<u64>,
}

impl Handler {
    fn new(telemetry: &Telemetry) -> Handler {
        let meter = telemetry.meter_provider.meter(SCOPE);
        Handler {
            tracer: telemetry.tracer_provider.tracer(SCOPE),
            logger: telemetry.logger_provider.logger(SCOPE),
            orders: meter
                .u64_counter("orders.handled")
                .with_description("Orders this function handled")
                .build(),
        }
    }

    /// One invocation: a span under the X-Ray parent, a log record inside it, a counter.
    fn handle(&self, request_id: &str, trace_header: Option<&str>) {
        let parent = trace_header
            .and_then(xray_parent)
            .map(|sc| Context::new().with_remote_span_context(sc))
            .unwrap_or_default();
        let span = self
            .tracer
            .span_builder("handle order")
            .with_kind(SpanKind::Internal)
            .with_attributes([KeyValue::new("faas.invocation_id", request_id.to_owned())])
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span);
        {
            // The log record takes its trace and span ids from the current span.
            let _current = cx.clone().attach();
            let mut record = self.logger.create_log_record();
            record.set_severity_number(Severity::Info);
            record.set_severity_text("INFO");
            record.set_body(AnyValue::from(format!("order {request_id} handled")));
            record.add_attribute("faas.invocation_id", request_id.to_owned());
            self.logger.emit(record);
            self.orders.add(1, &[KeyValue::new("outcome", "ok")]);
        }
        cx.span().end();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let telemetry = match Telemetry::new() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rust-function: cannot set up OpenTelemetry: {e}");
            std::process::exit(2);
        }
    };
    let handler = Handler::new(&telemetry);
    let default_header = std::env::var(TRACE_HEADER_VAR).ok();
    println!("ready");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split_whitespace();
        let Some(request_id) = words.next() else {
            continue;
        };
        let header = words.next().or(default_header.as_deref());
        handler.handle(request_id, header);
        // Flush before the handler returns: after that, Lambda may freeze the sandbox.
        match telemetry.flush().await {
            Ok(()) => println!("flushed {request_id}"),
            Err(e) => println!("flush failed {request_id}: {e}"),
        }
    }
    if let Err(e) = telemetry.shutdown() {
        eprintln!("rust-function: shutdown: {e}");
    }
}
