//! The Telemetry API subscription (`PUT /2022-07-01/telemetry`).
//!
//! Subscribes with schema `2025-01-29` (required on Lambda Managed Instances,
//! backward compatible elsewhere) and falls back to `2022-12-13` when a
//! platform refuses the newer version with 400. Must be called after the
//! listener accepts connections and before the first `/next`.

use bytes::Bytes;
use http_body_util::Full;

use super::{send, snippet, ApiClient, ApiError};
use crate::config::TelemetryConfig;

pub const SCHEMA_VERSIONS: [&str; 2] = ["2025-01-29", "2022-12-13"];

/// How the subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// 200: telemetry will be delivered, in this schema version.
    Subscribed { schema_version: &'static str },
    /// 202: a local emulator without Telemetry API support; nothing will arrive.
    NotSupported { body: String },
}

/// The subscription request body.
pub fn subscribe_body(cfg: &TelemetryConfig, schema_version: &str, destination: &str) -> String {
    serde_json::json!({
        "schemaVersion": schema_version,
        "types": cfg.types.names(),
        "buffering": {
            "maxItems": cfg.max_items,
            "maxBytes": cfg.max_bytes,
            "timeoutMs": cfg.timeout_ms,
        },
        "destination": { "protocol": "HTTP", "URI": destination },
    })
    .to_string()
}

/// Subscribes `destination` (e.g. `http://sandbox.localdomain:PORT/telemetry`).
pub async fn subscribe(
    client: &ApiClient,
    runtime_api: &str,
    extension_id: &str,
    cfg: &TelemetryConfig,
    destination: &str,
) -> Result<Subscription, ApiError> {
    let url = format!("http://{runtime_api}/2022-07-01/telemetry");
    let mut last_400 = String::new();
    for version in SCHEMA_VERSIONS {
        let req = hyper::Request::put(&url)
            .header("Lambda-Extension-Identifier", extension_id)
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(subscribe_body(
                cfg,
                version,
                destination,
            ))))
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let resp = send(client, req).await?;
        match resp.status {
            200 => {
                return Ok(Subscription::Subscribed {
                    schema_version: version,
                })
            }
            202 => {
                return Ok(Subscription::NotSupported {
                    body: snippet(&resp.body),
                })
            }
            400 => last_400 = snippet(&resp.body),
            status => {
                return Err(ApiError::Status {
                    what: "telemetry subscribe",
                    status,
                    body: snippet(&resp.body),
                })
            }
        }
    }
    Err(ApiError::Status {
        what: "telemetry subscribe",
        status: 400,
        body: last_400,
    })
}
