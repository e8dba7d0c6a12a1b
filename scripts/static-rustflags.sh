# Sourced, not run: the flags the shipped binary is built with (glibc linked
# statically, position-dependent code; docs/PERFORMANCE.md, "glibc linked
# in"), for the crates of an explicit --target only. Used by
# scripts/build-layer.sh, scripts/startup-order.sh and .ci/run, so that the
# binary recorded, tested and shipped is linked the same way.
STATIC_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
