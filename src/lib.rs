//! `lambda-otel-bridge`: an AWS Lambda extension that turns the Lambda
//! Telemetry API into OpenTelemetry traces, metrics and logs over OTLP.
//!
//! The flow goes one way:
//!
//! - [`lifecycle`] registers with the Extensions API, starts the listener,
//!   subscribes to the Telemetry API and runs the `/next` loop; it decides
//!   the flush points (the sandbox may freeze after each `/next`) by the
//!   [`flush_policy`] beside it.
//! - [`telemetry_receiver`] accepts the batches Lambda POSTs and decodes
//!   them leniently into [`lambda::events`].
//! - [`pipeline`] holds the shared state between the two.
//! - [`mapping`] turns events and invocation state into OTLP data; it is
//!   pure and deterministic, specified in `proto-mapping/MAPPING.md`.
//! - [`export`] queues encoded requests in a bounded outbox and drains it
//!   at the flush points: the drain's retry rules (`export::drain`) over a
//!   transport seam (`export::transport`, the OTLP gRPC/HTTP transport in
//!   `export::otlp`; SigV4 and collector headers from AWS secrets in
//!   `export::aws`), the collector's answers classified
//!   (`export::answers`), the bridge's own metrics through
//!   `opentelemetry_sdk` instruments (`export::self_metrics`).
//! - [`otlp_receiver`] accepts the function's own OTLP data on loopback and
//!   queues it, as received, in the same outbox.
//! - [`redact`] (optional) rewrites secrets in traces and logs before
//!   they are queued.
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
//! tests.

pub mod config;
pub mod diagnostics;
pub mod export;
pub mod flush_policy;
pub mod lambda;
pub mod lifecycle;
pub mod mapping;
pub mod options;
pub mod otlp_receiver;
pub mod pipeline;
pub mod redact;
pub mod telemetry_receiver;
pub mod time;
pub mod wire;
