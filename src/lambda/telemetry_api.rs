//! The Telemetry API subscription (`PUT /2022-07-01/telemetry`).
//!
//! Subscribes with schema `2025-01-29` (required on Lambda Managed Instances,
//! backward compatible elsewhere) and falls back to `2022-12-13` when a
//! platform refuses the newer version with 400. Must be called after the
//! listener accepts connections and before the first `/next`.

use super::connection::BlockingConn;
use super::extensions_api::CALL_TIMEOUT;
use super::http1::Request;
use super::{snippet, ApiError};
use crate::options::read::{int, text_or_default};
use crate::options::table::{
    TELEMETRY_MAX_BYTES, TELEMETRY_MAX_ITEMS, TELEMETRY_PORT, TELEMETRY_TIMEOUT_MS, TELEMETRY_TYPES,
};
use crate::options::{ConfigError, Env};

pub const SCHEMA_VERSIONS: [&str; 2] = ["2025-01-29", "2022-12-13"];

/// The port of the Runtime API, which the listener must not take.
const RESERVED_PORT: u16 = 9001;

/// The Telemetry API streams the extension subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryTypes {
    pub platform: bool,
    pub function: bool,
    pub extension: bool,
}

impl TelemetryTypes {
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.platform {
            v.push("platform");
        }
        if self.function {
            v.push("function");
        }
        if self.extension {
            v.push("extension");
        }
        v
    }

    /// Reads `LAMBDA_OTEL_BRIDGE_TELEMETRY_TYPES`: a comma list.
    pub fn from_env(env: &dyn Env) -> Result<TelemetryTypes, ConfigError> {
        let given = text_or_default(env, &TELEMETRY_TYPES);
        let (var, v) = (given.var.as_str(), given.value.as_str());
        let mut t = TelemetryTypes {
            platform: false,
            function: false,
            extension: false,
        };
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "platform" => t.platform = true,
                "function" => t.function = true,
                "extension" => t.extension = true,
                _ => {
                    return Err(ConfigError::new(
                        var,
                        v,
                        format!("unknown type {part:?}; use platform, function and/or extension"),
                    ))
                }
            }
        }
        if !(t.platform || t.function || t.extension) {
            return Err(ConfigError::new(var, v, "at least one type is required"));
        }
        Ok(t)
    }
}

/// Telemetry API subscription settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    pub types: TelemetryTypes,
    /// `buffering.timeoutMs`.
    pub timeout_ms: u32,
    /// `buffering.maxItems`.
    pub max_items: u32,
    /// `buffering.maxBytes`.
    pub max_bytes: u32,
    /// Listener port; 0 lets the OS choose a free one.
    pub listener_port: u16,
}

impl TelemetrySettings {
    /// Reads the `LAMBDA_OTEL_BRIDGE_TELEMETRY_*` settings.
    pub fn from_env(env: &dyn Env) -> Result<TelemetrySettings, ConfigError> {
        let types = TelemetryTypes::from_env(env)?;
        let timeout_ms = int(env, &TELEMETRY_TIMEOUT_MS)?;
        let max_items = int(env, &TELEMETRY_MAX_ITEMS)?;
        let max_bytes = int(env, &TELEMETRY_MAX_BYTES)?;
        let port = int(env, &TELEMETRY_PORT)?;
        let listener_port = u16::try_from(port)
            .map_err(|_| ConfigError::new(TELEMETRY_PORT.name, &port.to_string(), "not a port"))?;
        if listener_port == RESERVED_PORT {
            return Err(ConfigError::new(
                TELEMETRY_PORT.name,
                &RESERVED_PORT.to_string(),
                format!("port {RESERVED_PORT} is reserved by Lambda"),
            ));
        }
        Ok(TelemetrySettings {
            types,
            timeout_ms,
            max_items,
            max_bytes,
            listener_port,
        })
    }

    /// Largest request body the listener accepts: Lambda may send up to
    /// `2 * maxBytes` of records plus the per-event envelope
    /// (`{"time":..,"type":..,"record":..}`, under 100 bytes each).
    pub fn body_limit(&self) -> usize {
        2 * self.max_bytes as usize + self.max_items as usize * 128 + 64 * 1024
    }
}

/// How the subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// 200: telemetry will be delivered, in this schema version.
    Subscribed { schema_version: &'static str },
    /// 202: a local emulator without Telemetry API support; nothing will arrive.
    NotSupported { body: String },
}

/// The subscription request body.
pub fn subscribe_body(cfg: &TelemetrySettings, schema_version: &str, destination: &str) -> String {
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
/// Blocking, before the first `/next` (no async runtime exists yet).
pub fn subscribe(
    conn: &mut BlockingConn,
    extension_id: &str,
    cfg: &TelemetrySettings,
    destination: &str,
) -> Result<Subscription, ApiError> {
    let mut last_400 = String::new();
    for version in SCHEMA_VERSIONS {
        let req = Request::new("PUT", "/2022-07-01/telemetry".into(), "telemetry subscribe")
            .header("Lambda-Extension-Identifier", extension_id)
            .json(subscribe_body(cfg, version, destination));
        let resp = conn.call(&req, CALL_TIMEOUT)?;
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
