//! Entry point: sets up the extension's own diagnostics, takes the lifecycle
//! to its first `/next` without an async runtime, then runs the rest on a
//! single-threaded runtime (a Lambda sandbox may have a fraction of a vCPU;
//! one thread is enough and starts fastest). The process starts at a C
//! `main` of its own rather than the standard library's runtime set-up (see
//! [`main`]).
#![cfg_attr(not(test), no_main)]

use lambda_otel_bridge::Config;
use lambda_otel_bridge::LogLevel;
use lambda_otel_bridge::{install_logging, run, start, Started};
use lambda_otel_bridge::{ConfigError, ProcessEnv};

// Unit tests build this file without `main`.
#[cfg_attr(test, allow(dead_code))]
fn init_logging(config: &Result<Config, ConfigError>) {
    // The level is read here (before full validation) so that configuration
    // errors themselves can be logged; an invalid value falls back to info.
    let (level, json) = match config {
        Ok(c) => (c.log_level, c.log_json),
        Err(_) => (LogLevel::Info, false),
    };
    install_logging(level, json);
}

/// The C library's `log` (natural logarithm), provided by the binary itself.
///
/// The only function the bridge needs from the C math library is `log`,
/// called by `opentelemetry_sdk`'s exponential histogram aggregation (linked
/// because the SDK picks aggregations at run time). Defining it here lets the
/// linker resolve that call in the binary and drop `libm.so.6` (linked with
/// `--as-needed`), which the dynamic loader would otherwise open, map and
/// relocate at every cold start: 0.3 MiB of resident memory
/// (docs/PERFORMANCE.md, "Start-up order"). The implementation is the `libm`
/// crate's port of musl's `log`, accurate to within one unit in the last place.
#[unsafe(no_mangle)]
pub extern "C" fn log(x: f64) -> f64 {
    libm::log(x)
}

/// glibc's `struct dl_find_object` on 64-bit targets (`<dlfcn.h>`; no
/// `dlfo_eh_dbase` on x86-64 or AArch64).
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static")
))]
#[repr(C)]
pub struct DlFindObject {
    flags: u64,
    map_start: *mut libc::c_void,
    map_end: *mut libc::c_void,
    link_map: *mut libc::c_void,
    eh_frame: *mut libc::c_void,
    reserved: [u64; 7],
}

/// glibc's `_dl_find_object`, provided by the binary itself: the loaded
/// object containing `address`, its address range and its unwind table
/// index (`PT_GNU_EH_FRAME`); 0 when found, -1 when not.
///
/// libgcc's unwinder, linked into the binary (build.rs), looks up the
/// unwind tables of each frame with this function when the C library it was
/// built against has it (glibc 2.35 and later). Taken from the C library it
/// would make the binary require glibc 2.35, which Lambda's Amazon Linux
/// 2023 (glibc 2.34) does not have; defined here, with `dl_iterate_phdr`
/// (every glibc), the binary needs nothing newer than before. Called only
/// while a panic unwinds or a backtrace is taken; zig's unwinder (the
/// shipped binary's link, scripts/build-layer.sh) does not call it. Left
/// out of a static link (`BRIDGE_LINK=static`), whose glibc brings its own.
///
/// # Safety
///
/// `result` must point to writable memory for one `DlFindObject` (the C
/// declaration's contract); `address` may be any value.
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static")
))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _dl_find_object(
    address: *mut libc::c_void,
    result: *mut DlFindObject,
) -> libc::c_int {
    struct Search {
        address: usize,
        found: Option<(usize, usize, usize)>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Search` passed below; `info` and its
        // program headers are valid for the duration of this call.
        let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: as above.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let base = info.dlpi_addr as usize;
        let (mut start, mut end, mut eh_frame, mut contains) = (usize::MAX, 0, 0, false);
        for h in headers {
            let from = base.wrapping_add(h.p_vaddr as usize);
            if h.p_type == libc::PT_LOAD {
                let to = from.wrapping_add(h.p_memsz as usize);
                start = start.min(from);
                end = end.max(to);
                contains |= (from..to).contains(&search.address);
            } else if h.p_type == libc::PT_GNU_EH_FRAME {
                eh_frame = from;
            }
        }
        if contains {
            search.found = Some((start, end, eh_frame));
            1
        } else {
            0
        }
    }
    let mut search = Search {
        address: address as usize,
        found: None,
    };
    // SAFETY: `each` only reads what the loader passes it and writes `search`.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut search).cast()) };
    let Some((start, end, eh_frame)) = search.found else {
        return -1;
    };
    // SAFETY: the caller passes a valid `struct dl_find_object` to fill.
    unsafe {
        result.write(DlFindObject {
            flags: 0,
            map_start: start as *mut libc::c_void,
            map_end: end as *mut libc::c_void,
            link_map: std::ptr::null_mut(),
            eh_frame: eh_frame as *mut libc::c_void,
            reserved: [0; 7],
        })
    };
    0
}

/// The process's entry point, called by the C library's start-up code in
/// place of the standard library's runtime set-up.
///
/// That set-up (Rust's usual `fn main`) reads `/proc/self/maps` to find the
/// main thread's stack (`pthread_getattr_np`, parsing it with `sscanf`) and
/// maps an alternate signal stack, so that a stack overflow is reported by
/// name rather than as a plain segmentation fault: 0.13 ms of the ~1.3 ms a
/// minimal extension needs before its first `/next`, ~1.8 ms of cold start
/// at a 128 MB function's CPU share (docs/PERFORMANCE.md, "The first
/// `/next` before the async runtime"). Done here instead, of what that
/// set-up does and the bridge relies on: standard descriptors 0-2 opened on
/// `/dev/null` if Lambda started us without them (else the first socket
/// would become "stderr" and receive the bridge's own log lines), SIGPIPE
/// ignored (a write to a closed connection returns an error instead of
/// killing the process), and a panic reported as by the standard runtime
/// (exit status 101) instead of unwinding into C. Arguments and environment
/// work as usual (the standard library reads them in its own constructor).
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    open_standard_descriptors();
    // SAFETY: setting a signal's disposition to "ignore" at start-up, before
    // any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    std::panic::catch_unwind(extension_main).unwrap_or(101)
}

/// Opens `/dev/null` on whichever of descriptors 0, 1 and 2 is closed.
#[cfg(not(test))]
fn open_standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd; a zero timeout returns
    // at once.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a NUL-terminated path; the lowest free descriptor, the
            // closed one, is what `open` returns (lower ones are open).
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

#[cfg_attr(test, allow(dead_code))]
fn extension_main() -> i32 {
    // Read once: the logging settings come from it, and the lifecycle
    // reports its errors to Lambda after registering.
    let config = Config::from_env(&ProcessEnv);
    init_logging(&config);
    // Up to the first `/next` without the async runtime (blocking calls):
    // nothing the first `/next` does not need is built before it.
    match start(&ProcessEnv, config) {
        Ok(started) => after_first_next(started),
        Err(code) => code,
    }
}

/// The async runtime and everything after the first `/next`. A function of
/// its own, not inlined into `main`: the runtime and the lifecycle's future
/// (tens of KB) would otherwise be in `main`'s stack frame, whose every page
/// the process touches (stack probes) before the first `/next`.
#[inline(never)]
#[cfg_attr(test, allow(dead_code))]
fn after_first_next(started: Started) -> i32 {
    // Before any thread exists and any name is looked up (src/name_services.rs).
    lambda_otel_bridge::pin_hosts_lookup();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(run(&ProcessEnv, started));
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::log;
    use std::f64::consts::{E, LN_10, LN_2};

    #[test]
    fn log_is_the_natural_logarithm() {
        assert_eq!(log(1.0), 0.0);
        assert_eq!(log(2.0), LN_2);
        assert_eq!(log(10.0), LN_10);
        assert!((log(E) - 1.0).abs() <= f64::EPSILON);
        assert_eq!(log(0.0), f64::NEG_INFINITY);
        assert_eq!(log(f64::INFINITY), f64::INFINITY);
        assert!(log(-1.0).is_nan());
        assert!(log(f64::NAN).is_nan());
        // The smallest subnormal: ln(2^-1074) = -1074 ln 2.
        assert!((log(f64::from_bits(1)) - (-1074.0 * LN_2)).abs() < 1e-12);
        // Across the range against the C library's log2 (another function,
        // not replaced here): ln x = log2 x * ln 2.
        let mut x = 1e-300_f64;
        while x < 1e300 {
            let expected = x.log2() * LN_2;
            assert!(
                (log(x) - expected).abs() <= 4.0 * f64::EPSILON * expected.abs().max(1.0),
                "log({x}) = {}, expected {expected}",
                log(x)
            );
            x *= 1.7;
        }
    }

    /// This test binary is linked as the bridge is (build.rs: libgcc's
    /// unwinder linked in, not `libgcc_s.so.1`; `.ci/run` also runs it
    /// linked by zig for glibc 2.26, with zig's unwinder, as
    /// scripts/build-layer.sh links the shipped binary, and linked
    /// statically): a panic unwinds through frames of this binary and is
    /// caught, with its message, on the same thread and across a thread's
    /// join. A broken unwinder aborts the process instead.
    #[test]
    fn panics_unwind_with_the_linked_in_unwinder() {
        #[inline(never)]
        fn deep(n: u32) -> u32 {
            if n == 0 {
                panic!("unwound from depth 0");
            }
            deep(n - 1) + 1
        }
        let caught = std::panic::catch_unwind(|| deep(20)).expect_err("the panic is caught");
        assert_eq!(caught.downcast_ref::<&str>(), Some(&"unwound from depth 0"));
        let joined = std::thread::spawn(|| deep(5))
            .join()
            .expect_err("the thread panicked");
        assert_eq!(joined.downcast_ref::<&str>(), Some(&"unwound from depth 0"));
        #[cfg(target_feature = "crt-static")]
        {
            // Linked statically (`BRIDGE_LINK=static`): no shared
            // library at all, the unwinder's lookup is the C library's own.
            let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
            assert!(!maps.contains(".so"), "{maps}");
        }
        #[cfg(not(target_feature = "crt-static"))]
        lookup_and_libraries();
    }

    #[cfg(not(target_feature = "crt-static"))]
    fn lookup_and_libraries() {
        // The object lookup the unwinder uses (defined in this file): this
        // binary's own code is found, with its unwind table index inside
        // its range; an address nothing maps is not.
        let mut found = std::mem::MaybeUninit::<super::DlFindObject>::uninit();
        let code = super::_dl_find_object as *const () as *mut libc::c_void;
        // SAFETY: a valid out-pointer; the function fills it when it returns 0.
        assert_eq!(
            unsafe { super::_dl_find_object(code, found.as_mut_ptr()) },
            0
        );
        // SAFETY: filled, as it returned 0.
        let found = unsafe { found.assume_init() };
        let (start, end) = (found.map_start as usize, found.map_end as usize);
        assert!(
            (start..end).contains(&(code as usize)),
            "{start:#x}..{end:#x}"
        );
        assert!(
            (start..end).contains(&(found.eh_frame as usize)),
            "{:?}",
            found.eh_frame
        );
        let mut nowhere = std::mem::MaybeUninit::<super::DlFindObject>::uninit();
        // SAFETY: as above.
        let at_8 = unsafe { super::_dl_find_object(8 as *mut libc::c_void, nowhere.as_mut_ptr()) };
        assert_eq!(at_8, -1);
        // Not linked against libgcc_s: this process has not mapped it.
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        assert!(maps.contains("libc.so"), "{maps}");
        assert!(!maps.contains("libgcc_s"), "{maps}");
    }
}
