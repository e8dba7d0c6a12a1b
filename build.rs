//! Link settings of the binary on Linux, all about what a cold start costs
//! (docs/PERFORMANCE.md), none about what the code does:
//!
//! - libgcc's unwinder (`libgcc_eh.a`) linked into every binary and test of
//!   the package instead of `libgcc_s.so.1` loaded at run time: one shared
//!   library fewer for the dynamic loader to open, map, relocate and
//!   initialise at every start ("libgcc's unwinder linked in").
//!   `BRIDGE_SHARED_LIBGCC=1` links `libgcc_s.so.1` as before; a `zig`
//!   linker (`cargo zigbuild`, which brings its own unwinder) is left as is.
//! - Release builds only: a linker script places the functions the bridge
//!   runs at start-up together ("Start-up order"), recorded from the same
//!   kind of link by `scripts/startup-order.sh`: `scripts/startup-order.ld`
//!   for glibc linked statically (`+crt-static`, `BRIDGE_LINK=static
//!   scripts/build-layer.sh`), `scripts/startup-order-dynamic.ld` for glibc
//!   linked dynamically (the shipped binary, linked by zig, and a plain
//!   `cargo build --release`; recorded with `BRIDGE_STATIC=0`). The two builds run different code at start-up (the
//!   C library's, and Rust code compiled for a fixed or a movable address),
//!   so one build laid out in the other's order touches more pages.
//!   `BRIDGE_STARTUP_ORDER=0` builds without either.
//! - Release builds only: a position-dependent executable (`-no-pie`): the
//!   addresses inside the binary are fixed at link time, so the dynamic
//!   loader has no ~9,000 relative relocations to apply and no read-only
//!   data pages to copy and write at every start ("A fixed load address").
//!   The binary's own code and data then load at the same address each time
//!   (the stack, heap and shared libraries stay randomised). `BRIDGE_PIE=1`
//!   builds a PIE.

fn main() {
    println!("cargo:rerun-if-changed=scripts/startup-order.ld");
    println!("cargo:rerun-if-changed=scripts/startup-order-dynamic.ld");
    println!("cargo:rerun-if-env-changed=BRIDGE_STARTUP_ORDER");
    println!("cargo:rerun-if-env-changed=BRIDGE_PIE");
    println!("cargo:rerun-if-env-changed=BRIDGE_SHARED_LIBGCC");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux {
        return;
    }
    let zig = std::env::var("RUSTC_LINKER").is_ok_and(|l| l.contains("zig"));
    // A static link (`+crt-static`, `BRIDGE_LINK=static
    // scripts/build-layer.sh`) has the standard library link libgcc_eh itself.
    let crt_static = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|f| f.split(',').any(|f| f == "crt-static"));
    if gnu && !zig && !crt_static && std::env::var("BRIDGE_SHARED_LIBGCC").as_deref() != Ok("1") {
        static_libgcc();
    }
    if !release {
        return;
    }
    if std::env::var("BRIDGE_STARTUP_ORDER").as_deref() != Ok("0") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        let script = if crt_static {
            "startup-order.ld"
        } else {
            "startup-order-dynamic.ld"
        };
        println!("cargo:rustc-link-arg-bin=lambda-otel-bridge=-Wl,-T,{dir}/scripts/{script}");
    }
    if std::env::var("BRIDGE_PIE").as_deref() != Ok("1") {
        println!("cargo:rustc-link-arg-bin=lambda-otel-bridge=-no-pie");
    }
}

/// Links libgcc's unwinder statically, as the C compiler's `-static-libgcc`
/// does. That flag alone is not enough: the standard library asks for
/// `-lgcc_s` by name, so a `libgcc_s.so` of our own, found first on the
/// search path, is a linker script that names `libgcc_eh.a` instead. Rust's
/// panics unwind through it as through `libgcc_s.so.1` (it finds each
/// binary's unwind tables the same way, with `dl_iterate_phdr`).
fn static_libgcc() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let dir = std::path::Path::new(&out).join("static-libgcc");
    std::fs::create_dir_all(&dir).expect("OUT_DIR is writable");
    std::fs::write(dir.join("libgcc_s.so"), "INPUT(-lgcc_eh)\n").expect("OUT_DIR is writable");
    println!("cargo:rustc-link-arg=-L{}", dir.display());
    println!("cargo:rustc-link-arg=-static-libgcc");
}
