"""A scripted Lambda sandbox for recording which functions the bridge runs, in order.

Serves the Extensions API (register, subscribe, one INVOKE, then SHUTDOWN),
pushes the Telemetry API events of an on-demand init and of one invocation
(platform events, text and JSON function lines) to the bridge's listener,
sends one OTLP/JSON span to the bridge's local receiver during the
invocation, and answers the bridge's OTLP/HTTP exports with 200 on a second
port, where it also answers Secrets Manager's `GetSecretValue` (for a run
with the OTLP headers kept in a secret, AWS_ENDPOINT_URL pointing there).
Exits one second after answering SHUTDOWN.

Used by scripts/startup-order.sh; not a test fixture (the tests use
tests/support/emulator). Usage: fake_lambda.py API_PORT COLLECTOR_PORT.
ON_NEXT, when set, is a shell command run as the first /next arrives (to
read the bridge's memory at the end of its init).
"""
import datetime
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

API_PORT, COLLECTOR_PORT = int(sys.argv[1]), int(sys.argv[2])
ON_NEXT = os.environ.get("ON_NEXT")
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACING = {"spanId": "53995c3f42cd8ad8", "type": "X-Amzn-Trace-Id", "value": TRACE}
REQUEST_ID = str(uuid.uuid4())
state = {"destination": None, "next_calls": 0}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(kind, record):
    return {"time": now(), "type": kind, "record": record}


def post_json(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    # Generous: under gdb the bridge takes seconds to serve its listener.
    urllib.request.urlopen(request, timeout=60).read()


def deliver(events):
    if state["destination"]:
        post_json(state["destination"], events)


def init_events():
    init = {"initializationType": "on-demand", "phase": "init"}
    return [
        event("platform.initStart", {**init, "runtimeVersion": "python:3.12",
                                     "functionName": "f", "functionVersion": "$LATEST"}),
        event("platform.initRuntimeDone", {**init, "status": "success"}),
        event("platform.initReport", {**init, "status": "success", "metrics": {"durationMs": 100.0}}),
    ]


def run_invocation():
    time.sleep(0.005)
    events = [event("platform.start", {"requestId": REQUEST_ID, "version": "$LATEST", "tracing": TRACING})]
    for i in range(10):
        events.append(event("function", f"[INFO]\t{now()}\t{REQUEST_ID}\tline {i}\n"))
    events.append(event("function", json.dumps({"timestamp": now(), "level": "WARN",
                                                "message": "json line", "requestId": REQUEST_ID})))
    end = time.time_ns()
    span = {"traceId": "5759e988bd862e3fe1be46a994272793", "spanId": "1111111111111111",
            "parentSpanId": "53995c3f42cd8ad8", "name": "handler", "kind": 1,
            "startTimeUnixNano": str(end - 1_000_000), "endTimeUnixNano": str(end)}
    try:
        post_json("http://127.0.0.1:4318/v1/traces",
                  {"resourceSpans": [{"resource": {"attributes": []},
                                      "scopeSpans": [{"scope": {"name": "fn"}, "spans": [span]}]}]})
    except OSError as error:
        print("local receiver:", error, file=sys.stderr)
    events.append(event("platform.runtimeDone", {
        "requestId": REQUEST_ID, "status": "success", "tracing": TRACING,
        "metrics": {"durationMs": 5.0, "producedBytes": 12},
        "spans": [{"name": "responseLatency", "start": now(), "durationMs": 1.0},
                  {"name": "responseDuration", "start": now(), "durationMs": 0.1}]}))
    time.sleep(0.025)  # the Telemetry API's buffering
    deliver(events)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, body, headers=None, content_type="application/json"):
        self.send_response(200)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.read_body()
        if self.headers.get("x-amz-target") == "secretsmanager.GetSecretValue":
            secret = {"Name": "collector/headers", "SecretString": json.dumps({"x-api-key": "recording"})}
            return self.answer(json.dumps(secret).encode(), content_type="application/x-amz-json-1.1")
        if self.server.server_port == COLLECTOR_PORT:
            return self.answer(b"", content_type="application/x-protobuf")
        registered = {"functionName": "f", "functionVersion": "$LATEST", "handler": "h"}
        self.answer(json.dumps(registered).encode(), {"Lambda-Extension-Identifier": "ext-1"})

    def do_PUT(self):
        subscription = json.loads(self.read_body() or b"{}")
        uri = subscription.get("destination", {}).get("URI", "")
        state["destination"] = uri.replace("sandbox.localdomain", "127.0.0.1")
        self.answer(b"{}")

    def do_GET(self):
        state["next_calls"] += 1
        deadline = int(time.time() * 1000)
        if state["next_calls"] == 1:
            if ON_NEXT:
                subprocess.run(ON_NEXT, shell=True)
            # In the background, as Lambda delivers: the answer to /next does
            # not wait for the listener (served only after the first /next).
            def init_then_invoke():
                deliver(init_events())
                run_invocation()

            threading.Thread(target=init_then_invoke).start()
            invoke = {"eventType": "INVOKE", "deadlineMs": deadline + 3000, "requestId": REQUEST_ID,
                      "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                      "tracing": {"type": "X-Amzn-Trace-Id", "value": TRACE}}
            return self.answer(json.dumps(invoke).encode())
        deliver([event("platform.report", {"requestId": REQUEST_ID, "status": "success", "metrics": {
            "durationMs": 5.5, "billedDurationMs": 6, "memorySizeMB": 128, "maxMemoryUsedMB": 30}})])
        shutdown = {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline + 2000}
        self.answer(json.dumps(shutdown).encode())
        threading.Thread(target=lambda: (time.sleep(1.0), os._exit(0))).start()


collector = http.server.ThreadingHTTPServer(("127.0.0.1", COLLECTOR_PORT), Handler)
threading.Thread(target=collector.serve_forever, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", API_PORT), Handler).serve_forever()
