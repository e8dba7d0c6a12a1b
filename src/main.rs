//! Entry point: sets up the extension's own diagnostics and runs the
//! lifecycle on a single-threaded runtime (a Lambda sandbox may have a
//! fraction of a vCPU; one thread is enough and starts fastest).

use lambda_otel_bridge::run;
use lambda_otel_bridge::Config;
use lambda_otel_bridge::LogLevel;
use lambda_otel_bridge::{ConfigError, ProcessEnv};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

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

fn main() {
    // Read once: the logging settings come from it, and the lifecycle
    // reports its errors to Lambda after registering.
    let config = Config::from_env(&ProcessEnv);
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(run(&ProcessEnv, config));
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
