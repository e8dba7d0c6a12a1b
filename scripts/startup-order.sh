#!/usr/bin/env bash
# Regenerates scripts/startup-order.ld (BRIDGE_STATIC=0:
# scripts/startup-order-dynamic.ld), the linker script that lays the
# release binary's functions out in the order the bridge first runs them
# (init, then one invocation, then SHUTDOWN), so that start-up touches a
# few hundred KiB of the binary instead of most of it: the kernel maps each
# page fault's 64 KiB surroundings, so scattered start-up code makes nearly
# the whole text resident (docs/PERFORMANCE.md, "Start-up order").
#
# How: builds the release binary with symbols in target/startup-order (the
# release profile as shipped, with `-C strip=none` for this crate only: a
# profile change such as CARGO_PROFILE_RELEASE_STRIP would change every
# symbol's hash, so the names would not match the shipped build's), runs it
# under gdb with a one-shot breakpoint on every function against a scripted
# sandbox (scripts/startup_order/fake_lambda.py: register, subscribe, init
# and invocation events, a span to the local receiver, SHUTDOWN), and writes
# the functions in first-hit order (scripts/startup_order/write_script.py),
# the init's (counted 3 s after the first /next arrives, so that what the
# bridge starts while it is pending is included) apart from the rest. Two
# runs: the default configuration, and with the OTLP headers in a secret.
# Needs gdb (Debian: apt-get install gdb) and python3; takes 2-4 minutes.
# Run it after upgrading dependencies or the toolchain, or after large
# changes to start-up; a stale script still links and only gathers less.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gdb >/dev/null || { echo "startup-order.sh needs gdb (apt-get install gdb)" >&2; exit 2; }
dir=target/startup-order
mkdir -p "$dir"
# Built as `BRIDGE_LINK=static scripts/build-layer.sh` builds: glibc linked
# statically, so the C library's functions are placed too. BRIDGE_STATIC=0
# records a dynamic link (a plain `cargo build --release`) into the script
# build.rs links such builds with, the shipped one by zig included (it runs
# the same Rust code at start-up): the two run different code at start-up.
if [ "${BRIDGE_STATIC:-1}" != "0" ]; then
  out=scripts/startup-order.ld
  triple=$(rustc -vV | sed -n 's/^host: //p')
  . scripts/static-rustflags.sh
  RUSTFLAGS="${RUSTFLAGS:-} $STATIC_RUSTFLAGS" \
    BRIDGE_STARTUP_ORDER=0 cargo rustc --release --locked --bin lambda-otel-bridge \
    --target-dir "$dir" --target "$triple" -- -C strip=none
  bin="$dir/$triple/release/lambda-otel-bridge"
  LIBC_ARCHIVE=$(cc -print-file-name=libc.a)
  export LIBC_ARCHIVE
else
  out=scripts/startup-order-dynamic.ld
  BRIDGE_STARTUP_ORDER=0 cargo rustc --release --locked --bin lambda-otel-bridge --target-dir "$dir" -- -C strip=none
  bin="$dir/release/lambda-otel-bridge"
fi
nm --defined-only -S "$bin" > "$dir/symbols.txt"
awk 'NF == 4 && ($3 == "t" || $3 == "T") { print $1 }' "$dir/symbols.txt" > "$dir/functions.txt"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# record RUN [VAR=value ...]: one run under gdb, writing $dir/RUN.hits and
# $dir/RUN.init (the number of hits by the end of the init).
record() {
  local run=$1
  shift
  local api_port collector_port fake
  api_port=$(free_port)
  collector_port=$(free_port)
  rm -f "$dir/$run.init"
  ON_NEXT="sleep 3; wc -l < $dir/$run.hits > $dir/$run.init" \
    python3 scripts/startup_order/fake_lambda.py "$api_port" "$collector_port" &
  fake=$!
  sleep 0.5
  env AWS_LAMBDA_RUNTIME_API="127.0.0.1:$api_port" \
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$collector_port" \
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
    STARTUP_ORDER_FUNCTIONS="$dir/functions.txt" STARTUP_ORDER_HITS="$dir/$run.hits" \
    "${@/@COLLECTOR@/http://127.0.0.1:$collector_port}" \
    timeout 300 gdb -q -batch -x scripts/startup_order/record.py --args "$bin" > "$dir/$run.log" 2>&1 \
    || { tail -20 "$dir/$run.log" >&2; kill $fake 2>/dev/null; exit 1; }
  wait $fake || true
  grep -q 'shutting down' "$dir/$run.log" \
    || { echo "the bridge did not reach SHUTDOWN under gdb; see $dir/$run.log" >&2; exit 1; }
  [ -s "$dir/$run.init" ] || { echo "the first /next of run $run was not seen" >&2; exit 1; }
}

# The default configuration first; then with the OTLP headers in a secret,
# whose fetch runs during the init only when configured.
record default
record secret LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_HEADERS_SECRET=collector/headers \
  AWS_ENDPOINT_URL=@COLLECTOR@ AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=ASIARECORDING AWS_SECRET_ACCESS_KEY=recording AWS_SESSION_TOKEN=recording
python3 scripts/startup_order/write_script.py "$dir/symbols.txt" \
  "$dir/default.hits" "$(cat "$dir/default.init")" "$dir/secret.hits" "$(cat "$dir/secret.init")" \
  > "$out"
echo "$out: $(grep -c '^    \*(' "$out") patterns from $(sort -u "$dir"/*.hits | wc -l) functions run"
