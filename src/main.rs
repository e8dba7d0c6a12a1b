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
