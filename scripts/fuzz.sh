#!/usr/bin/env bash
# Bounded fuzzing (cargo-fuzz / libFuzzer) of the Telemetry API decoding and
# mapping, the log-line parser, X-Ray headers and the settings. See
# fuzz/README.md.
#
# Usage: scripts/fuzz.sh [target...]      (default: every target)
#   FUZZ_SECONDS   seconds per target (default 20)
#   CARGO_TARGET_DIR  where the fuzz build goes (default fuzz/target)
#
# Steps: seeds from proto-mapping/cases/*/input.json into fuzz/corpus/<target>/,
# one build, the saved crash inputs of fuzz/regressions/<target>/ run once,
# then each target for FUZZ_SECONDS. Exits non-zero if anything crashed.
# Needs a nightly toolchain (skips, exit 0, without one) and python3 (seeds).
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(telemetry_batch log_line xray_header settings otlp_request)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
secs="${FUZZ_SECONDS:-20}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "skipping: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Same flags for build and run (a difference would rebuild): optimised, with
# debug assertions and overflow checks, no sanitizer (the crate is safe Rust;
# ASan would halve the executions).
flags=(-O --debug-assertions --sanitizer none)
if [ -n "${CARGO_TARGET_DIR:-}" ]; then flags+=(--target-dir "$CARGO_TARGET_DIR"); fi

# ---- seeds --------------------------------------------------------------
echo "== seeds from proto-mapping/cases"
python3 - <<'PY'
import glob, hashlib, json, os

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join("fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest())
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)

compact = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)
counts = {}
for path in sorted(glob.glob("proto-mapping/cases/*/input.json")):
    case = json.load(open(path))
    everything = []
    res = case.get("resource") or {}
    for step in case.get("steps", []):
        if "events" in step:
            events = step["events"]
            everything.extend(events)
            put("telemetry_batch", compact(events))
            for ev in events:
                rec = ev.get("record") if isinstance(ev, dict) else None
                if ev.get("type") in ("function", "extension") and rec is not None:
                    put("log_line", rec if isinstance(rec, str) else compact(rec))
                tracing = rec.get("tracing") if isinstance(rec, dict) else None
                if isinstance(tracing, dict):
                    for k in ("value", "spanId"):
                        if isinstance(tracing.get(k), str):
                            put("xray_header", tracing[k])
        if "invoke" in step:
            tracing = step["invoke"].get("tracing") or {}
            if isinstance(tracing.get("value"), str):
                put("xray_header", tracing["value"])
    put("telemetry_batch", compact(everything))
    env = ["AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001"]
    for key, var in (("function_name", "AWS_LAMBDA_FUNCTION_NAME"),
                     ("function_version", "AWS_LAMBDA_FUNCTION_VERSION"),
                     ("region", "AWS_REGION"), ("memory_mb", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
                     ("service_name", "OTEL_SERVICE_NAME"),
                     ("resource_attributes", "OTEL_RESOURCE_ATTRIBUTES")):
        if res.get(key) is not None:
            env.append(f"{var}={res[key]}")
    cfg = case.get("config") or {}
    if cfg.get("temporality"):
        env.append(f"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={cfg['temporality']}")
    if cfg.get("faas_trigger"):
        env.append(f"LAMBDA_OTEL_BRIDGE_FAAS_TRIGGER={cfg['faas_trigger']}")
    if cfg.get("platform_log_lines") is not None:
        env.append(f"LAMBDA_OTEL_BRIDGE_PLATFORM_LOG_LINES={str(cfg['platform_log_lines']).lower()}")
    put("settings", "\n".join(env) + "\n")

for env in [
    "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001\nOTEL_EXPORTER_OTLP_ENDPOINT=https://collector.example.com:4318/base/\n"
    "OTEL_EXPORTER_OTLP_HEADERS=api-key=s%3Dcr%2Ct,x-tenant=a b\nOTEL_EXPORTER_OTLP_COMPRESSION=gzip\n"
    "OTEL_EXPORTER_OTLP_TIMEOUT=0\n",
    "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001\nOTEL_EXPORTER_OTLP_PROTOCOL=grpc\nOTEL_EXPORTER_OTLP_ENDPOINT=collector:4317\n"
    "OTEL_EXPORTER_OTLP_INSECURE=true\nOTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://[::1]:4317\n",
    "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001\nOTEL_EXPORTER_OTLP_PROTOCOL=http/json\n"
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=http://localhost:4318\nLAMBDA_OTEL_BRIDGE_RECEIVER=false\n",
    "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001\nOTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318\n",
    "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001\nLAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_ENDPOINT=https://c.example.com\n"
    "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_TRACES_CERTIFICATE=/opt/ca.pem\nLAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_CLIENT_KEY=/opt/k.pem\n"
    "LAMBDA_OTEL_BRIDGE_RECEIVER_HTTP_ADDR=off\nLAMBDA_OTEL_BRIDGE_RECEIVER_GRPC_ADDR=127.0.0.1:0\n",
    "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001\nLAMBDA_OTEL_BRIDGE_TELEMETRY_TYPES=platform, function\n"
    "LAMBDA_OTEL_BRIDGE_TELEMETRY_PORT=9001\nLAMBDA_OTEL_BRIDGE_FLUSH=periodic:250\nLAMBDA_OTEL_BRIDGE_ADAPTIVE_WARMUP=5\n"
    "LAMBDA_OTEL_BRIDGE_INVOCATION_SPAN_ID=xray-parent\nLAMBDA_OTEL_BRIDGE_LOG_LEVEL=debug\nLAMBDA_OTEL_BRIDGE_LOG_JSON=1\n"
    "LAMBDA_OTEL_BRIDGE_OUTBOX_MAX_BYTES=65536\nLAMBDA_OTEL_BRIDGE_INVOKE_WAIT_MS=0\nOTEL_SDK_DISABLED=true\n",
    "@0=127.0.0.1:9001\n@40=delta\n@120=x=1\n",
]:
    put("settings", env)

# otlp_request: byte 0 = signal (0 logs, 1 traces, 2 metrics) | 4 for
# OTLP/JSON, byte 1 = part size bound / 64 - 1, then the body.
res = {"attributes": [{"key": "service.name", "value": {"stringValue": "orders-api"}}]}
def attrs(i):
    return [{"key": "http.request.header.authorization", "value": {"stringValue": f"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl{i}"}},
            {"key": "db.password", "value": {"stringValue": "hunter2"}},
            {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "api_key", "value": {"stringValue": "AKIAIOSFODNN7EXAMPLE"}},
                {"key": "list", "value": {"arrayValue": {"values": [{"intValue": "7"}, {"doubleValue": 1.5}, {"boolValue": True}, {"bytesValue": "AAE="}]}}}]}}}]
logs = {"resourceLogs": [{"resource": res, "scopeLogs": [{"scope": {"name": "app"}, "logRecords": [
    {"timeUnixNano": "1741083330420000000", "severityNumber": 9, "severityText": "INFO",
     "body": {"stringValue": f"order {i} password=s3cret token: abc{i}"}, "attributes": attrs(i),
     "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"} for i in range(4)]}]}]}
traces = {"resourceSpans": [{"resource": res, "scopeSpans": [{"scope": {"name": "app"}, "spans": [
    {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": f"eee19b7ec3c1b17{i}", "name": f"GET /orders/{i}", "kind": 2,
     "startTimeUnixNano": "1741083330420000000", "endTimeUnixNano": "1741083330520000000", "attributes": attrs(i),
     "events": [{"name": "exception", "timeUnixNano": "1741083330430000000", "attributes": attrs(i)}],
     "status": {"code": 2, "message": "password=oops"}} for i in range(4)]}]}]}
metrics = {"resourceMetrics": [{"resource": res, "scopeMetrics": [{"scope": {"name": "app"}, "metrics": [
    {"name": "orders", "sum": {"aggregationTemporality": 2, "isMonotonic": True,
     "dataPoints": [{"asInt": "3", "timeUnixNano": "1741083330420000000", "attributes": attrs(0)}]}},
    {"name": "latency", "unit": "ms", "histogram": {"aggregationTemporality": 1, "dataPoints": [
     {"count": "2", "sum": 3.5, "bucketCounts": ["1", "1"], "explicitBounds": [2.0], "timeUnixNano": "1741083330420000000"}]}}]}]}]}
for sel, req in ((4, logs), (5, traces), (6, metrics)):
    for size in (0, 3, 255):
        put("otlp_request", bytes([sel, size]) + compact(req).encode())
for t in sorted(os.listdir("fuzz/corpus")):
    print(f"   {t}: {len(os.listdir(os.path.join('fuzz/corpus', t)))} corpus entries")
PY

# ---- build ----------------------------------------------------------------
echo "== cargo +nightly fuzz build ${flags[*]}"
cargo +nightly fuzz build "${flags[@]}"

# The fuzzers are run directly (not through `cargo fuzz run`, which would
# rebuild first whenever a source file changed since the build).
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir="${CARGO_TARGET_DIR:-fuzz/target}/$host/release"
common=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
failed=()
summary=()
mkdir -p fuzz/logs

# ---- regressions: saved crash inputs, each run once ---------------------------
for t in "${targets[@]}"; do
  [ -d "fuzz/regressions/$t" ] || continue
  mapfile -t inputs < <(find "fuzz/regressions/$t" -type f | sort)
  [ "${#inputs[@]}" -gt 0 ] || continue
  echo "== $t: ${#inputs[@]} regression input(s)"
  if "$bin_dir/$t" "${common[@]}" "${inputs[@]}" >"fuzz/logs/$t-regressions.log" 2>&1; then
    summary+=("$(printf '%-16s regressions: %d input(s) ok' "$t" "${#inputs[@]}")")
  else
    echo "   CRASH on a regression input; see fuzz/logs/$t-regressions.log"
    tail -n 30 "fuzz/logs/$t-regressions.log"
    summary+=("$(printf '%-16s regressions: CRASH' "$t")")
    failed+=("$t (regressions)")
  fi
done

# ---- bounded runs -------------------------------------------------------------
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="fuzz/dicts/$t.dict")
  log="fuzz/logs/$t.log"
  echo "== $t: ${secs}s"
  start=$(date +%s)
  status=0
  mkdir -p "fuzz/artifacts/$t"
  "$bin_dir/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$secs" \
    "${common[@]}" "${dict[@]}" "$corpus" >"$log" 2>&1 || status=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  entries=$(find "$corpus" -type f | wc -l)
  if [ "$status" -ne 0 ] || grep -q -E '^==[0-9]+== ERROR: libFuzzer|^SUMMARY: libFuzzer' "$log"; then
    verdict="CRASH"
    failed+=("$t")
    echo "   CRASH (exit $status); input saved under fuzz/artifacts/$t/; log $log"
    grep -E 'panicked at|Test unit written|ERROR: libFuzzer' "$log" | head -n 5 | sed 's/^/   /'
  else
    verdict="no crash"
  fi
  line=$(printf '%-16s %5ss  %12s execs  %8s exec/s  %6s corpus entries  %s' \
    "$t" "$took" "$execs" "$rate" "$entries" "$verdict")
  echo "   $line"
  summary+=("$line")
done

echo "== summary"
printf '   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
