//! Support code shared by the black-box integration tests.
//!
//! `emulator` runs the real extension binary as a subprocess against an in-process emulation of
//! the Lambda platform (Extensions API, Telemetry API, freeze/thaw, shutdown).

pub mod common;
pub mod emulator;
pub mod fault_collector;
pub mod otlp;
pub mod prereq;
pub mod rotel;
pub mod silent_proxy;
pub mod tls;
