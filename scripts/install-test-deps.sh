#!/usr/bin/env bash
# Installs what the integration tests need besides Rust: a Python venv in
# .venv with the `rotel` OTLP collector (a real collector nobody here wrote)
# and the OpenTelemetry Python SDK with its OTLP exporters (the "function"
# that sends its own telemetry to the bridge's local receiver).
# Idempotent; prints the rotel-agent path it found or installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! ls .venv/lib/python3*/site-packages/rotel/rotel-agent >/dev/null 2>&1; then
  .venv/bin/pip install --quiet --disable-pip-version-check rotel
fi
if ! .venv/bin/python -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check \
    opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http
fi
if ! .venv/bin/python -c "import moto.server, botocore.auth, flask_cors" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]'
fi
agent=$(ls .venv/lib/python3*/site-packages/rotel/rotel-agent | head -n1)
chmod +x "$agent"
echo "$agent"
