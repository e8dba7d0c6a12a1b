#!/usr/bin/env bash
# Builds the release binary and packs the Lambda layer:
#   dist/lambda-otel-bridge-<arch>.zip  containing  extensions/lambda-otel-bridge
# Lambda unpacks a layer under /opt, and starts every executable in
# /opt/extensions as an external extension.
#
# Usage: scripts/build-layer.sh [x86_64|arm64]      (default: x86_64)
#        scripts/build-layer.sh --binary-only [arch]   builds, prints the binary's path
#
# The shipped binary is built in a target directory of its own,
# target/shipped (target/shipped-static, target/shipped-host for the other
# links below), by `cargo zigbuild --release --locked --bin
# lambda-otel-bridge`: `cargo test --release` and `cargo bench` build
# lambda-otel-bridge too, with the dev-dependencies' features unified in
# (tokio's full feature set, ...), and overwrite target/release/. The
# whole-process benchmark (benches/process.rs) measures the binary built here,
# and the sizes in README.md and docs/PERFORMANCE.md are the ones printed here.
# Cargo's output goes to stderr; --binary-only prints only the path.
#
# How glibc is linked (BRIDGE_LINK):
#   zig (default): dynamically, against glibc 2.26's symbols, with `cargo
#     zigbuild` (zig as the linker; scripts/install-build-deps.sh installs
#     it and zig into .venv from PyPI, and is run here when it is missing).
#     The binary needs no glibc newer than 2.26, so it runs on every Lambda
#     runtime (Amazon Linux 2: 2.26, Amazon Linux 2023: 2.34), and is the
#     smallest (docs/PERFORMANCE.md, "glibc 2.26 through zig"). When zig
#     cannot be installed (no PyPI), the script says so and links `static`.
#   static: glibc linked in (`-C target-feature=+crt-static`, with
#     position-dependent code, `-C relocation-model=static`): no shared
#     library and no dynamic loader, so 0.1-0.4 ms less CPU and 0.5-1.2 MiB
#     less resident memory at start-up, for 0.9 MB more binary
#     (docs/PERFORMANCE.md, "glibc linked in"). Runs on every runtime too.
#     Host names are then looked up in /etc/hosts and DNS only
#     (src/name_services.rs; every link does so).
#   host: dynamically, against the build machine's glibc; refused when that
#     makes the binary need a glibc newer than 2.34 (Amazon Linux 2023's).
# arm64 needs the aarch64-unknown-linux-gnu target (rustup target add
# aarch64-unknown-linux-gnu); `static` also a cross linker with an aarch64
# glibc's static libraries (Debian: gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross).
set -euo pipefail
cd "$(dirname "$0")/.."
binary_only=false
if [ "${1:-}" = "--binary-only" ]; then
  binary_only=true
  shift
fi
arch="${1:-x86_64}"
case "$arch" in
  x86_64) triple=x86_64-unknown-linux-gnu ;;
  arm64|aarch64) arch=arm64; triple=aarch64-unknown-linux-gnu ;;
  *) echo "unknown architecture $arch (x86_64 or arm64)" >&2; exit 2 ;;
esac
link="${BRIDGE_LINK:-zig}"
case "$link" in
  zig|static|host) ;;
  *) echo "unknown BRIDGE_LINK=$link (zig, static or host)" >&2; exit 2 ;;
esac
# Oldest glibc the binary may need: Amazon Linux 2's for zig and static
# (nothing at all for static), Amazon Linux 2023's for host.
max_glibc=GLIBC_2.26

if [ "$link" = zig ]; then
  zig_bin=""
  if command -v cargo-zigbuild >/dev/null && command -v zig >/dev/null; then
    zig_bin=$(dirname "$(command -v cargo-zigbuild)")
  elif zig_bin=$(scripts/install-build-deps.sh); then
    :
  elif [ -z "${BRIDGE_LINK:-}" ]; then
    echo "note: cargo-zigbuild and zig could not be installed (scripts/install-build-deps.sh needs PyPI); linking glibc statically instead (BRIDGE_LINK=static: runs on every Lambda runtime, 0.9 MB larger)" >&2
    link=static
  else
    echo "BRIDGE_LINK=zig needs cargo-zigbuild and zig (scripts/install-build-deps.sh)" >&2
    exit 1
  fi
fi
case "$link" in
  zig)
    target_dir=target/shipped
    PATH="$zig_bin:$PATH" \
      cargo zigbuild --release --locked --bin lambda-otel-bridge --target-dir "$target_dir" --target "$triple.2.26" >&2
    bin="$target_dir/$triple/release/lambda-otel-bridge"
    ;;
  static)
    # Flags for the target's crates only (an explicit --target keeps them
    # off build scripts and proc-macros, which must stay dynamic).
    target_dir=target/shipped-static
    . scripts/static-rustflags.sh
    RUSTFLAGS="${RUSTFLAGS:-} $STATIC_RUSTFLAGS" \
      cargo build --release --locked --bin lambda-otel-bridge --target-dir "$target_dir" --target "$triple" >&2
    bin="$target_dir/$triple/release/lambda-otel-bridge"
    ;;
  host)
    target_dir=target/shipped-host
    max_glibc=GLIBC_2.34
    cargo build --release --locked --bin lambda-otel-bridge --target-dir "$target_dir" --target "$triple" >&2
    bin="$target_dir/$triple/release/lambda-otel-bridge"
    ;;
esac
if [ "$link" = static ] && readelf -lW "$bin" | grep -q 'INTERP\|DYNAMIC'; then
  echo "$bin was to be linked statically but has a dynamic loader or dynamic section" >&2
  exit 1
fi
glibc=$(objdump -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n1 || true)
# A symbol version newer than the runtime's glibc makes the dynamic loader
# refuse to start the binary.
if [ -n "$glibc" ] && [ "$(printf '%s\n%s\n' "$glibc" "$max_glibc" | sort -V | tail -n1)" != "$max_glibc" ]; then
  echo "$bin needs $glibc: newer than $max_glibc; link it with BRIDGE_LINK=zig or static (see the top of this script)" >&2
  exit 1
fi
if $binary_only; then
  echo "$PWD/$bin"
  exit 0
fi

mkdir -p dist
zip="dist/lambda-otel-bridge-$arch.zip"
python3 - "$bin" "$zip" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("extensions/lambda-otel-bridge", date_time=(2020, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)  # regular file, rwxr-xr-x
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY
echo "binary: $bin ($(stat -c %s "$bin") bytes, BRIDGE_LINK=$link${glibc:+, needs $glibc})"
echo "layer:  $zip ($(stat -c %s "$zip") bytes)"
