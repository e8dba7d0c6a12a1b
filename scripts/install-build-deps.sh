#!/usr/bin/env bash
# Installs what scripts/build-layer.sh links the shipped binary with: the
# zig toolchain (PyPI `ziglang`) and `cargo-zigbuild` (PyPI
# `cargo-zigbuild`), in the project's Python venv, .venv. With them the
# binary is linked against glibc 2.26's symbols (Amazon Linux 2, the oldest
# glibc of a Lambda runtime) instead of the build machine's, so one layer
# runs on every runtime (docs/PERFORMANCE.md, "glibc 2.26 through zig").
# Idempotent; prints the directory holding `cargo-zigbuild` (put it first
# on PATH: cargo-zigbuild finds zig as that directory's `python3 -m
# ziglang`). Exits non-zero when PyPI cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
# Versions the layer was measured with (docs/PERFORMANCE.md).
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv >&2
fi
if ! .venv/bin/python -m ziglang version >/dev/null 2>&1 || [ ! -x .venv/bin/cargo-zigbuild ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" >&2
fi
.venv/bin/python -m ziglang version >/dev/null
echo "$PWD/.venv/bin"
