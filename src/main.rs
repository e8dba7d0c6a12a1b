//! Entry point: sets up the extension's own diagnostics, takes the lifecycle
//! to its first `/next` without an async runtime, then runs the rest on a
//! single-threaded runtime (a Lambda sandbox may have a fraction of a vCPU;
//! one thread is enough and starts fastest). The process starts at a C
//! `main` of its own rather than the standard library's runtime set-up (see
//! [`main`]).
#![cfg_attr(not(test), no_main)]

use lambda_otel_bridge::Config;
use lambda_otel_bridge::LogLevel;
use lambda_otel_bridge::{run, start};
use lambda_otel_bridge::{ConfigError, ProcessEnv};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

// Unit tests build this file without `main`.
#[cfg_attr(test, allow(dead_code))]
fn init_logging(config: &Result<Config, ConfigError>) {
    // The level is read here (before full validation) so that configuration
    // errors themselves can be logged; an invalid value falls back to info.
    let (level, json) = match config {
        Ok(c) => (c.log_level, c.log_json),
        Err(_) => (LogLevel::Info, false),
    };
    let filter = match level {
        LogLevel::Off => tracing::level_filters::LevelFilter::OFF,
        LogLevel::Error => tracing::level_filters::LevelFilter::ERROR,
        LogLevel::Warn => tracing::level_filters::LevelFilter::WARN,
        LogLevel::Info => tracing::level_filters::LevelFilter::INFO,
        LogLevel::Debug => tracing::level_filters::LevelFilter::DEBUG,
        LogLevel::Trace => tracing::level_filters::LevelFilter::TRACE,
    };
    // Our own events at the chosen level; libraries (hyper, h2, tonic) only
    // from warn up, or debug output would drown in connection-pool chatter.
    let targets = tracing_subscriber::filter::Targets::new()
        .with_default(filter.min(tracing::level_filters::LevelFilter::WARN))
        .with_target("lambda_otel_bridge", filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let registry = tracing_subscriber::registry();
    if json {
        registry.with(layer.json().with_filter(targets)).init();
    } else {
        registry.with(layer.with_filter(targets)).init();
    }
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
    let started = match start(&ProcessEnv, config) {
        Ok(s) => s,
        Err(code) => return code,
    };
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
}
