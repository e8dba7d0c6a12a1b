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
# target/shipped, by a plain `cargo build --release --locked --bin
# lambda-otel-bridge`: `cargo test --release` and `cargo bench` build
# lambda-otel-bridge too, with the dev-dependencies' features unified in
# (tokio's full feature set, ...), and overwrite target/release/. The
# whole-process benchmark (benches/process.rs) measures the binary built here,
# and the sizes in README.md and docs/PERFORMANCE.md are the ones printed here.
#
# glibc: a plain build links against this machine's glibc. Lambda's Amazon
# Linux 2023 runtimes have glibc 2.34; Amazon Linux 2 runtimes have 2.26.
# When `cargo zigbuild` is available (cargo install cargo-zigbuild; pip
# install ziglang) the binary is linked for glibc 2.26 and runs on both.
# arm64 needs the aarch64-unknown-linux-gnu target (rustup target add
# aarch64-unknown-linux-gnu) and zigbuild or a cross linker.
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

if cargo zigbuild --help >/dev/null 2>&1; then
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
glibc=$(objdump -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n1 || true)
# Lambda's oldest glibc the binary is for: 2.34 (Amazon Linux 2023); a
# newer symbol version would make the dynamic loader refuse to start it.
if [ -n "$glibc" ] && [ "$(printf '%s\nGLIBC_2.34\n' "$glibc" | sort -V | tail -n1)" != "GLIBC_2.34" ]; then
  echo "$bin needs $glibc: newer than Amazon Linux 2023's glibc 2.34; build on an older glibc or with cargo zigbuild (see the top of this script)" >&2
  exit 1
fi
echo "binary: $bin ($(stat -c %s "$bin") bytes${glibc:+, needs $glibc})"
echo "layer:  $zip ($(stat -c %s "$zip") bytes)"
