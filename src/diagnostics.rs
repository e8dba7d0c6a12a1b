//! Settings of the extension's own diagnostics: how much it writes to
//! stderr and in which format. Lambda sends that output to CloudWatch and
//! back to the bridge as `extension` logs; `main` sets `tracing` up from it.

use crate::options::read::{choice, flag};
use crate::options::table::{LOG_JSON, LOG_LEVEL};
use crate::options::{ConfigError, Env};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{DefaultFields, Format};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// The level of the extension's own diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Reads `LAMBDA_OTEL_BRIDGE_LOG_LEVEL` and `LAMBDA_OTEL_BRIDGE_LOG_JSON`.
pub fn from_env(env: &dyn Env) -> Result<(LogLevel, bool), ConfigError> {
    let level = choice(env, &LOG_LEVEL, |v| match v {
        "off" => Some(LogLevel::Off),
        "error" => Some(LogLevel::Error),
        "warn" => Some(LogLevel::Warn),
        "info" => Some(LogLevel::Info),
        "debug" => Some(LogLevel::Debug),
        "trace" => Some(LogLevel::Trace),
        _ => None,
    })?;
    Ok((level, flag(env, &LOG_JSON)?))
}

/// Installs the process's `tracing` subscriber: our own events at `level`,
/// libraries' (hyper, h2, tonic) from warn up, or debug output would drown
/// in connection-pool chatter; one line per event on stderr, as text or JSON.
pub fn install(level: LogLevel, json: bool) {
    let lazy = LazyFmt::new(level, json, std::io::stderr, formatter);
    // Fails only if a subscriber is already set (then that one stays).
    let _ = tracing::subscriber::set_global_default(lazy);
}

/// The level filter of `level`.
fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Off => LevelFilter::OFF,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// `tracing-subscriber`'s formatter, built at the first event that passes
/// the filter rather than at start-up.
///
/// Its span registry allocates and zeroes 32 KiB at once (8 pages, each a
/// page fault) and the formatter is built with it; a start without warnings
/// writes no line before its first `/next`, so the process pays for neither
/// before it (docs/PERFORMANCE.md, "libgcc's unwinder linked in, the
/// formatter built at the first line"). The filter is answered here, from
/// the same [`Targets`], without building anything; every span and event
/// call that gets past it goes to the formatter, built then.
struct LazyFmt<W> {
    filter: Targets,
    max: LevelFilter,
    json: bool,
    writer: W,
    build: fn(W, bool) -> Box<dyn Subscriber + Send + Sync>,
    inner: std::sync::OnceLock<Box<dyn Subscriber + Send + Sync>>,
}

/// Our events at `level`, libraries' from warn up.
fn targets(level: LogLevel) -> Targets {
    let ours = level_filter(level);
    Targets::new()
        .with_default(ours.min(LevelFilter::WARN))
        .with_target("lambda_otel_bridge", ours)
}

/// The formatting layer: one line per event, UTC timestamp, level, message
/// and fields (no target, no colours).
fn fmt_layer<S, W>(writer: W) -> tracing_subscriber::fmt::Layer<S, DefaultFields, Format, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
}

/// [`fmt_layer`] on its registry, as text or JSON objects.
fn formatter<W>(writer: W, json: bool) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = fmt_layer(writer);
    let registry = tracing_subscriber::registry();
    if json {
        Box::new(registry.with(layer.json()))
    } else {
        Box::new(registry.with(layer))
    }
}

impl<W> LazyFmt<W>
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    fn new(
        level: LogLevel,
        json: bool,
        writer: W,
        build: fn(W, bool) -> Box<dyn Subscriber + Send + Sync>,
    ) -> Self {
        LazyFmt {
            filter: targets(level),
            max: level_filter(level),
            json,
            writer,
            build,
            inner: std::sync::OnceLock::new(),
        }
    }

    fn inner(&self) -> &(dyn Subscriber + Send + Sync) {
        self.inner
            .get_or_init(|| (self.build)(self.writer.clone(), self.json))
            .as_ref()
    }

    fn passes(&self, meta: &Metadata<'_>) -> bool {
        self.filter.would_enable(meta.target(), meta.level())
    }
}

impl<W> Subscriber for LazyFmt<W>
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.passes(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.passes(meta)
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Our own events' level; the libraries' is never above it.
        Some(self.max)
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner().new_span(span)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner().record(span, values)
    }
    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner().record_follows_from(span, follows)
    }
    fn event(&self, event: &Event<'_>) {
        self.inner().event(event)
    }
    fn enter(&self, span: &Id) {
        self.inner().enter(span)
    }
    fn exit(&self, span: &Id) {
        self.inner().exit(span)
    }
    fn clone_span(&self, id: &Id) -> Id {
        self.inner().clone_span(id)
    }
    fn try_close(&self, id: Id) -> bool {
        self.inner().try_close(id)
    }
    fn current_span(&self) -> tracing_core::span::Current {
        match self.inner.get() {
            Some(inner) => inner.current_span(),
            None => tracing_core::span::Current::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::env_of;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::Layer;

    /// Collects what a formatter writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// [`formatter`] without timestamps, so that outputs compare.
    fn untimed(out: Capture, json: bool) -> Box<dyn Subscriber + Send + Sync> {
        let layer = fmt_layer(out).without_time();
        let registry = tracing_subscriber::registry();
        if json {
            Box::new(registry.with(layer.json()))
        } else {
            Box::new(registry.with(layer))
        }
    }

    /// Events of our own and of a library at every level, one in a span.
    fn emit() {
        tracing::trace!("own trace");
        tracing::debug!(n = 1, "own debug");
        tracing::info!(text = "quoted", shown = %"plain", "own info");
        tracing::warn!("own warn");
        tracing::error!(code = 7u16, "own error");
        tracing::info!(target: "hyper::proto", "library info");
        tracing::warn!(target: "hyper::proto", "library warn");
        let span = tracing::warn_span!("outer", k = 1);
        let _entered = span.enter();
        tracing::warn!("inside a span");
    }

    /// The formatter as it was set up before it was built lazily: a per-layer
    /// filter on `tracing-subscriber`'s own registry.
    fn eager(level: LogLevel, json: bool, out: Capture) -> tracing::Dispatch {
        let (targets, layer) = (targets(level), fmt_layer(out).without_time());
        let registry = tracing_subscriber::registry();
        if json {
            tracing::Dispatch::new(registry.with(layer.json().with_filter(targets)))
        } else {
            tracing::Dispatch::new(registry.with(layer.with_filter(targets)))
        }
    }

    #[test]
    fn lazy_formatter_writes_what_the_eager_one_wrote() {
        for json in [false, true] {
            for level in [
                LogLevel::Off,
                LogLevel::Error,
                LogLevel::Info,
                LogLevel::Trace,
            ] {
                let (lazy_out, eager_out) = (Capture::default(), Capture::default());
                let lazy = LazyFmt::new(level, json, lazy_out.clone(), untimed);
                tracing::dispatcher::with_default(&tracing::Dispatch::new(lazy), emit);
                tracing::dispatcher::with_default(&eager(level, json, eager_out.clone()), emit);
                assert_eq!(lazy_out.text(), eager_out.text(), "{level:?} json={json}");
            }
        }
        // And the comparison sees the filter and the format at all.
        let out = Capture::default();
        let lazy = LazyFmt::new(LogLevel::Info, false, out.clone(), untimed);
        tracing::dispatcher::with_default(&tracing::Dispatch::new(lazy), emit);
        let text = out.text();
        assert!(
            text.contains(" INFO own info text=\"quoted\" shown=plain\n"),
            "{text}"
        );
        assert!(
            text.contains("library warn") && !text.contains("library info"),
            "{text}"
        );
        assert!(text.contains("outer{k=1}: inside a span"), "{text}");
        assert!(!text.contains("own debug"), "{text}");
    }

    #[test]
    fn the_lines_have_a_utc_timestamp_level_message_and_fields() {
        let (text, json) = (Capture::default(), Capture::default());
        let to_text =
            tracing::Dispatch::new(LazyFmt::new(LogLevel::Info, false, text.clone(), formatter));
        tracing::dispatcher::with_default(&to_text, || tracing::warn!(n = 3, "hello"));
        let line =
            regex_lite::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z  WARN hello n=3\n$")
                .unwrap();
        assert!(line.is_match(&text.text()), "{:?}", text.text());
        let to_json =
            tracing::Dispatch::new(LazyFmt::new(LogLevel::Info, true, json.clone(), formatter));
        tracing::dispatcher::with_default(&to_json, || tracing::warn!(n = 3, "hello"));
        let v: serde_json::Value = serde_json::from_str(json.text().trim_end()).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["fields"], serde_json::json!({"message": "hello", "n": 3}));
        assert!(line.is_match(&format!(
            "{}  WARN hello n=3\n",
            v["timestamp"].as_str().unwrap()
        )));
        assert!(v.get("target").is_none(), "{v}");
    }

    #[test]
    fn the_formatter_is_built_at_the_first_line_that_passes() {
        let out = Capture::default();
        let lazy = Arc::new(LazyFmt::new(LogLevel::Warn, false, out.clone(), untimed));
        let dispatch = tracing::Dispatch::from(lazy.clone());
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("below the level");
            tracing::error!(target: "h2::codec", "x");
        });
        assert!(lazy.inner.get().is_some());
        let quiet = Arc::new(LazyFmt::new(LogLevel::Warn, false, out.clone(), untimed));
        let dispatch = tracing::Dispatch::from(quiet.clone());
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("below the level");
            tracing::debug!(target: "h2::codec", "below the libraries' level");
        });
        assert!(quiet.inner.get().is_none(), "built without a line to write");
        assert_eq!(out.text(), "ERROR x\n");
    }

    #[test]
    fn levels_and_aliases() {
        assert_eq!(from_env(&env_of(&[])), Ok((LogLevel::Info, false)));
        for (v, level) in [
            ("off", LogLevel::Off),
            ("NONE", LogLevel::Off),
            ("warning", LogLevel::Warn),
            (" debug ", LogLevel::Debug),
            ("trace", LogLevel::Trace),
        ] {
            let env = env_of(&[("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", v)]);
            assert_eq!(from_env(&env).map(|(l, _)| l), Ok(level), "{v}");
        }
        let e = from_env(&env_of(&[("LAMBDA_OTEL_BRIDGE_LOG_LEVEL", "loud")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LAMBDA_OTEL_BRIDGE_LOG_LEVEL=\"loud\": expected off, error, warn, info, debug or trace"
        );
    }
}
