//! AWS-native delivery: OTLP straight to CloudWatch's endpoints (X-Ray,
//! CloudWatch Logs, CloudWatch metrics) signed with AWS Signature Version 4,
//! and collector headers kept in Secrets Manager or SSM Parameter Store.
//!
//! - [`config`]: the plain settings (which secret, where credentials come
//!   from), read at start-up.
//! - [`target`]: which requests are signed, for which signing name and
//!   region (`LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_[SIGNAL_]SIGV4`), and the
//!   request limits of the destination. Pure.
//! - [`credentials`]: the credentials Lambda gives the process, from the
//!   environment or the container credentials endpoint (SnapStart), cached
//!   and refreshed before they expire.
//! - [`sigv4`]: signs one request over the exact bytes sent, with the
//!   `aws-sigv4` crate of the AWS SDK for Rust.
//! - [`secrets`]: fetches header values from a Secrets Manager secret or an
//!   SSM parameter (`..._HEADERS_SECRET`) while the function initialises,
//!   again at flush points after a failure and once after a 401/403.
//! - [`client`]: the small HTTP client of those AWS calls (timeouts, capped
//!   answers).

pub mod client;
pub mod config;
pub mod credentials;
pub mod secrets;
pub mod sigv4;
pub mod target;
