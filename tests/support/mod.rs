//! Support code shared by the black-box integration tests.
//!
//! * `emulator`: runs the real extension binary as a subprocess against an in-process emulation
//!   of the Lambda platform (Extensions API, Telemetry API, freeze/thaw, shutdown).
//! * `fault_collector`: a scriptable OTLP collector (HTTP and gRPC) that answers as told.
//! * `rotel`: a real collector nobody here wrote; `silent_proxy`: connections that go silent;
//!   `tls`: a throw-away CA and a TLS-terminating proxy.
//! * `aws`: a SigV4-checking OTLP endpoint (botocore), moto's Secrets Manager / SSM / STS, and a
//!   late TCP forwarder, for tests/aws.rs.
//! * `common`: small helpers of the tests (environments, starts, log lines, the shutdown
//!   summary); `otlp`: reading ids and attributes in assertions.
//! * `prereq`: what happens when rotel, the Python SDK or `unshare -m` is missing.
//! * `line_process`: a child process driven one line at a time (the instrumented functions).
//!
//! `emulator`, `fault_collector` and `otlp` use no other support module: benches, examples and
//! tests that need only them include them by path.

pub mod aws;
pub mod common;
pub mod emulator;
pub mod fault_collector;
pub mod line_process;
pub mod otlp;
pub mod prereq;
pub mod rotel;
pub mod silent_proxy;
pub mod tls;
