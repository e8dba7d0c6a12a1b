//! Entry point: sets up the extension's own diagnostics and runs the
//! lifecycle on a single-threaded runtime (a Lambda sandbox may have a
//! fraction of a vCPU; one thread is enough and starts fastest).

use lambda_otel_bridge::config::{Config, LogLevel, ProcessEnv};
use lambda_otel_bridge::lifecycle;

fn init_logging() {
    // The level is read here (before full validation) so that configuration
    // errors themselves can be logged; an invalid value falls back to info.
    let (level, json) = match Config::from_env(&ProcessEnv) {
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
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(lifecycle::run(&ProcessEnv));
    std::process::exit(code);
}
