#!/usr/bin/env bash
# Regenerates scripts/startup-order.ld, the linker script that lays the
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
# bridge starts while it is pending is included) apart from the rest.
# Needs gdb (Debian: apt-get install gdb) and python3; takes 2-4 minutes.
# Run it after upgrading dependencies or the toolchain, or after large
# changes to start-up; a stale script still links and only gathers less.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gdb >/dev/null || { echo "startup-order.sh needs gdb (apt-get install gdb)" >&2; exit 2; }
dir=target/startup-order
mkdir -p "$dir"
BRIDGE_STARTUP_ORDER=0 cargo rustc --release --locked --bin lambda-otel-bridge --target-dir "$dir" -- -C strip=none
bin="$dir/release/lambda-otel-bridge"
nm --defined-only -S "$bin" > "$dir/symbols.txt"
awk 'NF == 4 && ($3 == "t" || $3 == "T") { print $1 }' "$dir/symbols.txt" > "$dir/functions.txt"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(free_port)
collector_port=$(free_port)
rm -f "$dir/init-hits.txt"
ON_NEXT="sleep 3; wc -l < $dir/hits.txt > $dir/init-hits.txt" \
  python3 scripts/startup_order/fake_lambda.py "$api_port" "$collector_port" &
fake=$!
trap 'kill $fake 2>/dev/null || true' EXIT
sleep 0.5
AWS_LAMBDA_RUNTIME_API="127.0.0.1:$api_port" \
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$collector_port" \
OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
STARTUP_ORDER_FUNCTIONS="$dir/functions.txt" STARTUP_ORDER_HITS="$dir/hits.txt" \
  timeout 300 gdb -q -batch -x scripts/startup_order/record.py --args "$bin" > "$dir/gdb.log" 2>&1 \
  || { tail -20 "$dir/gdb.log" >&2; exit 1; }
grep -q 'shutting down' "$dir/gdb.log" \
  || { echo "the bridge did not reach SHUTDOWN under gdb; see $dir/gdb.log" >&2; exit 1; }
python3 scripts/startup_order/write_script.py "$dir/symbols.txt" "$dir/hits.txt" "$(cat "$dir/init-hits.txt")" \
  > scripts/startup-order.ld
echo "scripts/startup-order.ld: $(grep -c '^    \*(' scripts/startup-order.ld) patterns from $(wc -l < "$dir/hits.txt") functions run"
