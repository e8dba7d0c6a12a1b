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
# target/shipped, by `cargo build --release --locked --bin
# lambda-otel-bridge` (with the static link's flags below): `cargo test
# --release` and `cargo bench` build
# lambda-otel-bridge too, with the dev-dependencies' features unified in
# (tokio's full feature set, ...), and overwrite target/release/. The
# whole-process benchmark (benches/process.rs) measures the binary built here,
# and the sizes in README.md and docs/PERFORMANCE.md are the ones printed here.
#
# glibc: linked in statically (`-C target-feature=+crt-static`, with
# position-dependent code, `-C relocation-model=static`): the binary needs
# no shared library and no dynamic loader, so it starts with less work
# (docs/PERFORMANCE.md, "glibc linked in") and runs on any Lambda runtime
# whatever its glibc (Amazon Linux 2: 2.26, Amazon Linux 2023: 2.34). Host
# names are then looked up in /etc/hosts and DNS only (src/name_services.rs).
# BRIDGE_STATIC=0 links glibc dynamically as before: against this machine's
# glibc, or, when `cargo zigbuild` is available (cargo install
# cargo-zigbuild; pip install ziglang), for glibc 2.26.
# arm64 needs the aarch64-unknown-linux-gnu target (rustup target add
# aarch64-unknown-linux-gnu) and a cross linker with an aarch64 glibc's
# static libraries (Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross),
# or zigbuild with BRIDGE_STATIC=0.
set -euo pipefail
cd "$(dirname "$0")/.."
binary_only=false
if [ "${1:-}" = "--binary-only" ]; then
  binary_only=true
  shift
fi
arch="${1:-x86_64}"
target_dir=target/shipped
case "$arch" in
  x86_64) triple=x86_64-unknown-linux-gnu ;;
  arm64|aarch64) arch=arm64; triple=aarch64-unknown-linux-gnu ;;
  *) echo "unknown architecture $arch (x86_64 or arm64)" >&2; exit 2 ;;
esac
host=$(rustc -vV | sed -n 's/^host: //p')

if [ "${BRIDGE_STATIC:-1}" != "0" ]; then
  # Flags for the target's crates only (an explicit --target keeps them off
  # build scripts and proc-macros, which must stay dynamic).
  . scripts/static-rustflags.sh
  RUSTFLAGS="${RUSTFLAGS:-} $STATIC_RUSTFLAGS" \
    cargo build --release --locked --bin lambda-otel-bridge --target-dir "$target_dir" --target "$triple"
  bin="$target_dir/$triple/release/lambda-otel-bridge"
elif cargo zigbuild --help >/dev/null 2>&1; then
  cargo zigbuild --release --locked --bin lambda-otel-bridge --target-dir "$target_dir" --target "$triple.2.26"
  bin="$target_dir/$triple/release/lambda-otel-bridge"
elif [ "$triple" = "$host" ]; then
  cargo build --release --locked --bin lambda-otel-bridge --target-dir "$target_dir"
  bin="$target_dir/release/lambda-otel-bridge"
else
  cargo build --release --locked --bin lambda-otel-bridge --target-dir "$target_dir" --target "$triple"
  bin="$target_dir/$triple/release/lambda-otel-bridge"
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
if [ "${BRIDGE_STATIC:-1}" != "0" ] && readelf -lW "$bin" | grep -q 'INTERP\|DYNAMIC'; then
  echo "$bin was to be linked statically but has a dynamic loader or dynamic section" >&2
  exit 1
fi
glibc=$(objdump -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n1 || true)
# Lambda's oldest glibc the binary is for: 2.34 (Amazon Linux 2023); a
# newer symbol version would make the dynamic loader refuse to start it.
if [ -n "$glibc" ] && [ "$(printf '%s\nGLIBC_2.34\n' "$glibc" | sort -V | tail -n1)" != "GLIBC_2.34" ]; then
  echo "$bin needs $glibc: newer than Amazon Linux 2023's glibc 2.34; build on an older glibc or with cargo zigbuild (see the top of this script)" >&2
  exit 1
fi
linked=static
[ "${BRIDGE_STATIC:-1}" = "0" ] && linked=dynamic
echo "binary: $bin ($(stat -c %s "$bin") bytes, $linked${glibc:+, needs $glibc})"
echo "layer:  $zip ($(stat -c %s "$zip") bytes)"
