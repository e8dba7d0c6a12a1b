//! The Lambda side: the Extensions API client, the Telemetry API subscription
//! (with its settings), the variables Lambda sets, the typed model of the
//! events Lambda delivers, and the address they are delivered to.

pub mod environment;
pub mod events;
pub mod extensions_api;
mod lenient;
pub mod sandbox_host;
pub mod telemetry_api;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Plain-HTTP client for the Runtime API host (`AWS_LAMBDA_RUNTIME_API`).
pub type ApiClient = Client<HttpConnector, Full<Bytes>>;

/// A status code and body read in full.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

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

pub fn new_client() -> ApiClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(None)
        .build(connector)
}

/// Sends a request and reads the whole response. No timeout: `/next` is a
/// long poll that may span a freeze.
pub async fn send(
    client: &ApiClient,
    req: hyper::Request<Full<Bytes>>,
) -> Result<ApiResponse, ApiError> {
    let resp = client
        .request(req)
        .await
        .map_err(|e| ApiError::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| ApiError::Transport(e.to_string()))?
        .to_bytes();
    Ok(ApiResponse {
        status,
        headers: parts.headers,
        body,
    })
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
