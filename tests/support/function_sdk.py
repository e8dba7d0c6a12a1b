"""A Lambda function's own OpenTelemetry instrumentation, for tests.

Runs the OpenTelemetry Python SDK the way an instrumented function does:
the OTLP exporters read OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL from the
environment (pointing at the bridge's local receiver), the invocation's
X-Ray context comes from _X_AMZN_TRACE_ID (as the X-Ray Lambda propagator
reads it), and everything is force-flushed before the handler returns.

Usage: function_sdk.py <marker>   (prints "flushed" on success)

       function_sdk.py --serve <http endpoint> <grpc endpoint>
A long-lived function, as a Lambda runtime process is: the SDK pipelines
are set up once (one exporting over OTLP/HTTP, one over OTLP/gRPC, each
with its own providers), then every line read from stdin is one
invocation's marker. For each, both pipelines emit a handler span with 20
child spans, a log line, a log record of 70,000 characters (larger than a
64 KiB bridge outbox) and a counter, and are force-flushed; the answer is
one JSON line on stdout:
  {"marker": "...", "exports": [{"signal": "traces", "protocol": "http",
    "ms": 1.7, "result": "SUCCESS", "answers": [...]}, ...]}
with one entry per call of an exporter's export() and its wall time, and
what the receiver answered each request that call made (one per attempt:
a retry shows as a second answer):
  HTTP: {"status": 200, "retry_after": null, "rejected": 0, "message": ""}
  gRPC: {"code": "OK", "rejected": 0, "message": ""}
"rejected" and "message" come from the response's partial_success.
"ready" is printed once the pipelines are set up.
"""

import json
import logging
import os
import sys
import time

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

SERVE = len(sys.argv) > 1 and sys.argv[1] == "--serve"

if SERVE:
    import grpc
    import requests
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_traces
    from opentelemetry.exporter.otlp.proto.grpc import metric_exporter as grpc_metrics
    from opentelemetry.exporter.otlp.proto.grpc import _log_exporter as grpc_logs
    from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_traces
    from opentelemetry.exporter.otlp.proto.http import metric_exporter as http_metrics
    from opentelemetry.exporter.otlp.proto.http import _log_exporter as http_logs
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
elif os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc":
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


# ---- --serve -----------------------------------------------------------------

REJECTED_FIELDS = ("rejected_spans", "rejected_data_points", "rejected_log_records")


def partial_success(response):
    """(rejected, message) of an Export*ServiceResponse."""
    ps = response.partial_success
    rejected = next(getattr(ps, f) for f in REJECTED_FIELDS if f in ps.DESCRIPTOR.fields_by_name)
    return rejected, ps.error_message


def timed(exporter, signal, protocol, answers, sink):
    """Wraps exporter.export: each call's wall time, result and answers go to sink."""
    inner = exporter.export

    def export(*args, **kwargs):
        first = len(answers)
        start = time.perf_counter()
        result = inner(*args, **kwargs)
        ms = (time.perf_counter() - start) * 1000.0
        sink.append({
            "signal": signal,
            "protocol": protocol,
            "ms": ms,
            "result": getattr(result, "name", str(result)),
            "answers": answers[first:],
        })
        return result

    exporter.export = export
    return exporter


def http_exporter(cls, endpoint, path, response_cls, signal, sink):
    """An OTLP/HTTP exporter whose session records every answer."""
    answers = []
    session = requests.Session()

    def record(resp, *args, **kwargs):
        rejected, message = 0, ""
        if resp.status_code == 200 and resp.content:
            r = response_cls()
            r.ParseFromString(resp.content)
            rejected, message = partial_success(r)
        answers.append({
            "status": resp.status_code,
            "retry_after": resp.headers.get("Retry-After"),
            "rejected": rejected,
            "message": message,
        })

    session.hooks["response"].append(record)
    exporter = cls(endpoint=endpoint + path, session=session)
    return timed(exporter, signal, "http", answers, sink)


def grpc_exporter(cls, endpoint, signal, sink):
    """An OTLP/gRPC exporter whose stub records every answer (the exporter
    builds its stub from `_stub` again when it reconnects)."""
    answers = []
    exporter = cls(endpoint=endpoint, insecure=True)
    if not (hasattr(exporter, "_stub") and hasattr(exporter, "_channel")):
        raise SystemExit("this OTLP gRPC exporter has no _stub/_channel to record answers with")
    stub_cls = exporter._stub

    class Recording:
        def __init__(self, channel):
            self._inner = stub_cls(channel)

        def Export(self, *args, **kwargs):
            try:
                response = self._inner.Export(*args, **kwargs)
            except grpc.RpcError as e:
                answers.append({"code": e.code().name, "rejected": 0, "message": e.details() or ""})
                raise
            rejected, message = partial_success(response)
            answers.append({"code": "OK", "rejected": rejected, "message": message})
            return response

    exporter._stub = Recording
    exporter._client = Recording(exporter._channel)
    return timed(exporter, signal, "grpc", answers, sink)


class Pipeline:
    """One function's SDK set-up exporting over one protocol."""

    def __init__(self, protocol, exporters):
        span_exporter, metric_exporter, log_exporter = exporters
        self.protocol = protocol
        resource = Resource.create({"service.name": "orders-api-fn"})
        self.tp = TracerProvider(resource=resource)
        self.tp.add_span_processor(BatchSpanProcessor(span_exporter))
        self.reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
        self.mp = MeterProvider(resource=resource, metric_readers=[self.reader])
        self.lp = LoggerProvider(resource=resource)
        self.lp.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
        self.logger = logging.getLogger(f"fn.{protocol}")
        self.logger.propagate = False
        self.logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=self.lp))
        self.logger.setLevel(logging.INFO)
        self.tracer = self.tp.get_tracer("fn")
        self.counter = self.mp.get_meter("fn").create_counter("orders.handled")

    def invoke(self, marker):
        tag = f"{marker} {self.protocol}"
        with self.tracer.start_as_current_span(f"handler {tag}"):
            for i in range(20):
                with self.tracer.start_as_current_span(f"step {i} {tag}") as span:
                    span.set_attribute("payload", "p" * 300)
            self.logger.warning("function log %s", tag)
            self.logger.warning("%s %s", tag, "x" * 70_000)
            self.counter.add(1, {"protocol": self.protocol})

    def flush(self):
        ok = self.tp.force_flush(10_000) and self.lp.force_flush(10_000)
        self.mp.force_flush(10_000)
        return ok

    def shutdown(self):
        self.tp.shutdown()
        self.lp.shutdown()
        self.mp.shutdown()


def serve(http_endpoint, grpc_endpoint):
    sink = []
    pipelines = [
        Pipeline("http", (
            http_exporter(http_traces.OTLPSpanExporter, http_endpoint, "/v1/traces",
                          ExportTraceServiceResponse, "traces", sink),
            http_exporter(http_metrics.OTLPMetricExporter, http_endpoint, "/v1/metrics",
                          ExportMetricsServiceResponse, "metrics", sink),
            http_exporter(http_logs.OTLPLogExporter, http_endpoint, "/v1/logs",
                          ExportLogsServiceResponse, "logs", sink),
        )),
        Pipeline("grpc", (
            grpc_exporter(grpc_traces.OTLPSpanExporter, grpc_endpoint, "traces", sink),
            grpc_exporter(grpc_metrics.OTLPMetricExporter, grpc_endpoint, "metrics", sink),
            grpc_exporter(grpc_logs.OTLPLogExporter, grpc_endpoint, "logs", sink),
        )),
    ]
    print("ready", flush=True)
    for line in sys.stdin:
        marker = line.strip()
        if not marker:
            continue
        first = len(sink)
        for p in pipelines:
            p.invoke(marker)
        flushed = [p.flush() for p in pipelines]
        print(json.dumps({"marker": marker, "flushed": all(flushed), "exports": sink[first:]}), flush=True)
    for p in pipelines:
        p.shutdown()


if __name__ == "__main__":
    if SERVE:
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
