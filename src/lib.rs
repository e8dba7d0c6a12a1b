//! `lambda-otel-bridge`: an AWS Lambda extension that turns the Lambda
//! Telemetry API into OpenTelemetry traces, metrics and logs over OTLP.
//!
//! The flow goes one way:
//!
//! - [`startup`] registers with the Extensions API, binds the listeners,
//!   subscribes to the Telemetry API and sends the first `/next`, before
//!   the async runtime exists; [`lifecycle`] then serves the listeners and
//!   runs the `/next` loop; it decides the flush points (the sandbox may
//!   freeze after each `/next`) by the [`flush_policy`] beside it.
//! - [`telemetry_receiver`] accepts the batches Lambda POSTs and decodes
//!   them leniently into [`lambda::events`].
//! - [`shared_state`] holds the state the two share: the mapper, and
//!   the mapper's resource published through a `watch` to the exporter and
//!   the local receiver.
//! - [`counters`] is the one set of counters the receivers keep, read by
//!   the bridge's own metrics and the shutdown summary.
//! - [`mapping`] turns events and invocation state into OTLP data; it is
//!   pure and deterministic, specified in `proto-mapping/MAPPING.md`.
//! - [`stage`] is what both data paths go through before the outbox, in
//!   one order: enrich (forwarded resources) → redact ([`redact`],
//!   optional) → limit ([`limits`], the bridge's own spans and records) →
//!   split (bounded parts; the destination's limits) → encode.
//! - [`export`] queues encoded requests in a bounded outbox and drains it
//!   at the flush points: the drain's retry rules (`export::drain`) over a
//!   transport seam (`export::transport`, the OTLP gRPC/HTTP transport in
//!   `export::otlp`; SigV4 and collector headers from AWS secrets in
//!   `export::aws`), the collector's answers classified
//!   (`export::answers`), the bridge's own metrics through
//!   `opentelemetry_sdk` instruments (`export::self_metrics`).
//! - [`otlp_receiver`] accepts the function's own OTLP data on loopback and
//!   queues it through the same stage in the same outbox (as received, at
//!   the wire level, where nothing needs it decoded).
//! - [`wire`] walks and rewrites protobuf at the wire level, so forwarded
//!   requests keep the fields the bridge does not know.
//! - [`options`] is the ground floor of configuration: the environment,
//!   typed readers, `ConfigError` and the declarative table of every
//!   setting (checked against the README). Each component reads its own
//!   settings through it; [`config`] assembles them into one `Config`, and
//!   [`diagnostics`] holds the extension's own log settings.
//! - [`time`] parses and formats timestamps.
//!
//! Nothing imports upward: `tests/architecture.rs` fails on an import
//! circle between source files and on a file over 600 lines before its
//! tests. The modules are private; what the binary, tests, benches, fuzz
//! targets and examples use is re-exported below, so the compiler reports
//! any code nothing reaches.

mod config;
mod counters;
mod diagnostics;
mod export;
mod flush_policy;
mod lambda;
mod lifecycle;
mod limits;
mod mapping;
mod name_services;
mod options;
mod otlp_receiver;
mod redact;
mod shared_state;
mod stage;
mod startup;
mod telemetry_receiver;
mod time;
mod wire;

// The façade: all the binary, the integration tests, the benches, the fuzz
// targets and the examples may use. The modules stay private, so the
// compiler reports code nothing in the crate reaches.

// Start-up: the configuration, the extension's own log level, the lifecycle.
pub use config::Config;
pub use diagnostics::{install as install_logging, LogLevel};
pub use lifecycle::run;
pub use name_services::pin_hosts_lookup;
pub use options::{percent_decode, table as settings_table, ConfigError, Env, ProcessEnv};
pub use startup::{start, Started};

// The Telemetry API's events.
pub use lambda::events::{
    parse_batch, parse_event, EventKind, LogRecord, Start, TelemetryEvent, TraceContext,
};

// The mapping from events to OTLP.
pub use mapping::invocation::{Invocation, InvokeInfo, SpanIdMode};
pub use mapping::log_lines::{level_number, parse_text};
pub use mapping::logs::{map_log_body, min_severity, LogSource};
pub use mapping::metrics::{Temporality, DEFINITIONS};
pub use mapping::proto::{kv_int, kv_str, str_value};
pub use mapping::resource::{build as build_resource, parse_resource_attributes, ResourceInfo};
pub use mapping::sampling::Sampling;
pub use mapping::xray::{
    derived_span_id, derived_trace_id, parse_header, parse_root, parse_span_id, to_hex, XrayContext,
};
pub use mapping::{Mapper, MapperSettings, Output};

// Export: settings, splitting, item counts, OTLP/JSON, the raw gRPC codec.
pub use export::aws::target::Limits as SplitLimits;
pub use export::count_items;
pub use export::otlp::{to_json, RawCodec};
pub use export::settings::{ExportSettings, Protocol, Signal};
pub use stage::split::{split_logs, split_traces};

// Redaction, attribute limits and timestamps.
pub use limits::Limits;
pub use redact::Redactor;
pub use time::{format_rfc3339_millis, parse_rfc3339};
