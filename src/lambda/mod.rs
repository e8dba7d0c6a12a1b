//! The Lambda side: the Extensions API client (over [`http1`]), the Telemetry API subscription
//! (with its settings), the variables Lambda sets, the typed model of the
//! events Lambda delivers, and the address they are delivered to.

pub mod connection;
pub mod environment;
pub mod events;
pub mod extensions_api;
pub mod http1;
mod lenient;
pub mod sandbox_host;
pub mod telemetry_api;

pub use http1::ApiResponse;

/// Errors talking to the Lambda APIs.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request to the Lambda API failed: {0}")]
    Transport(String),
    #[error("Lambda API answered {status} to {what}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("unexpected response to {what}: {detail}")]
    Protocol { what: &'static str, detail: String },
}

/// Body text for error messages, shortened.
pub(crate) fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let mut s: String = s.chars().take(300).collect();
    if body.len() > 300 {
        s.push('…');
    }
    s
}
