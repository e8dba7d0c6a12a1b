"""A Lambda function's own OpenTelemetry instrumentation, for tests.

Runs the OpenTelemetry Python SDK the way an instrumented function does:
the OTLP exporters read OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL from the
environment (pointing at the bridge's local receiver), the invocation's
X-Ray context comes from _X_AMZN_TRACE_ID (as the X-Ray Lambda propagator
reads it), and everything is force-flushed before the handler returns.

Usage: function_sdk.py <marker>   (prints "flushed" on success)
"""

import logging
import os
import sys

from opentelemetry import trace, metrics
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter


def xray_parent_context():
    """The remote parent from _X_AMZN_TRACE_ID (Root, Parent, Sampled)."""
    header = os.environ.get("_X_AMZN_TRACE_ID", "")
    parts = dict(p.split("=", 1) for p in header.split(";") if "=" in p)
    root, parent = parts.get("Root", ""), parts.get("Parent", "")
    if not root or not parent:
        return None
    trace_id = int(root[2:].replace("-", ""), 16)
    span_ctx = SpanContext(
        trace_id=trace_id,
        span_id=int(parent, 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if parts.get("Sampled") == "1" else 0),
    )
    return set_span_in_context(NonRecordingSpan(span_ctx))


def main():
    marker = sys.argv[1]
    resource = Resource.create({"service.name": "orders-api-fn", "faas.name": "set-by-function"})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tp)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3_600_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(mp)
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(lp)
    logger = logging.getLogger("fn")
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))
    logger.setLevel(logging.INFO)

    tracer = trace.get_tracer("fn")
    with tracer.start_as_current_span(f"handler {marker}", context=xray_parent_context()):
        with tracer.start_as_current_span(f"db query {marker}"):
            logger.warning("function log %s", marker)
        metrics.get_meter("fn").create_counter(f"orders.created.{marker}").add(3)

    ok = tp.force_flush(10_000) and lp.force_flush(10_000)
    mp.force_flush(10_000)
    tp.shutdown()
    lp.shutdown()
    mp.shutdown()
    print("flushed" if ok else "flush failed", flush=True)


if __name__ == "__main__":
    main()
