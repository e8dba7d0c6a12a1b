//! Telemetry API subscribe (`PUT /2022-07-01/telemetry`) with its validation rules: schema
//! version, types, buffering limits, an `HTTP` destination on `sandbox.localdomain`/`sandbox`
//! with a port; 403 `Telemetry.SubscriptionClosed` after init, 202 `Telemetry.NotSupported` when
//! the platform is told to lack the Telemetry API.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use super::events::telemetry_event;
use super::extensions_api::authorize;
use super::http::{error_response, json_response};
use super::state::{Buffering, QueuedEvent, Shared, Subscription};
use super::types::{EmulatorOptions, MANAGED_INSTANCES};

pub(super) async fn subscribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = shared.since_spawn();
    let accepted = accepted_schema_versions(&shared.opts);
    shared.update(|st| {
        let name = match authorize(st, &headers) {
            Ok(registration) => registration.name.clone(),
            Err(forbidden) => return forbidden.response(),
        };
        if st.init_done {
            return error_response(
                403,
                "Telemetry.SubscriptionClosed",
                "subscriptions are only accepted during init",
            );
        }
        if !shared.opts.telemetry_supported {
            st.subscribed_at.get_or_insert(at);
            return error_response(
                202,
                "Telemetry.NotSupported",
                "Telemetry API is not supported",
            );
        }
        match parse_subscription(&body, &accepted) {
            Err(message) => error_response(400, "ValidationError", &message),
            Ok(subscription) => {
                let record =
                    json!({"name": name, "state": "Subscribed", "types": subscription.types});
                st.subscription = Some(subscription);
                st.subscribed_at.get_or_insert(at);
                let event = telemetry_event("platform.telemetrySubscription", record);
                st.queue.push_back(QueuedEvent::new(event));
                json_response(200, &json!("OK"))
            }
        }
    })
}

fn accepted_schema_versions(opts: &EmulatorOptions) -> Vec<String> {
    let managed = opts.initialization_type == MANAGED_INSTANCES;
    opts.accepted_schema_versions
        .iter()
        .filter(|v| !managed || v.as_str() == "2025-01-29")
        .cloned()
        .collect()
}

/// Validates a subscribe body (reference §2.1).
fn parse_subscription(body: &[u8], accepted_versions: &[String]) -> Result<Subscription, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let version = value["schemaVersion"]
        .as_str()
        .ok_or("schemaVersion is required")?;
    if !accepted_versions.iter().any(|v| v == version) {
        return Err(format!("schemaVersion {version} is not supported"));
    }
    let types = parse_types(&value["types"])?;
    let buffering = parse_buffering(&value["buffering"])?;
    let destination = &value["destination"];
    if destination["protocol"].as_str() != Some("HTTP") {
        return Err("destination.protocol must be HTTP (TCP is not emulated)".into());
    }
    let uri = destination["URI"]
        .as_str()
        .ok_or("destination.URI is required")?;
    let (host, port, path) = parse_destination_uri(uri)?;
    Ok(Subscription {
        body: value,
        types,
        buffering,
        host,
        port,
        path,
    })
}

fn parse_types(types: &Value) -> Result<Vec<String>, String> {
    let types = types.as_array().ok_or("types is required")?;
    if types.is_empty() {
        return Err("types should not be empty".into());
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            Some(name @ ("platform" | "function" | "extension")) => Ok(name.to_string()),
            _ => Err(format!("invalid type {t}")),
        })
        .collect()
}

fn parse_buffering(buffering: &Value) -> Result<Buffering, String> {
    if !buffering.is_null() && !buffering.is_object() {
        return Err("buffering must be an object".into());
    }
    let field = |name: &str, min: u64, max: u64, default: u64| -> Result<u64, String> {
        match &buffering[name] {
            Value::Null => Ok(default),
            v => v
                .as_u64()
                .filter(|n| (min..=max).contains(n))
                .ok_or(format!(
                    "buffering.{name} must be an integer between {min} and {max}"
                )),
        }
    };
    Ok(Buffering {
        max_items: field("maxItems", 1_000, 10_000, 10_000)? as usize,
        max_bytes: field("maxBytes", 262_144, 1_048_576, 262_144)? as usize,
        timeout: Duration::from_millis(field("timeoutMs", 25, 30_000, 1_000)?),
    })
}

/// `http://sandbox.localdomain:PORT[/PATH]` → (host, port, path).
fn parse_destination_uri(uri: &str) -> Result<(String, u16, String), String> {
    let rest = uri
        .strip_prefix("http://")
        .ok_or(format!("URI {uri} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or("URI port is not provided")?;
    let host_ok =
        host.eq_ignore_ascii_case("sandbox.localdomain") || host.eq_ignore_ascii_case("sandbox");
    if !host_ok {
        return Err(format!(
            "URI host {host} must be sandbox.localdomain or sandbox"
        ));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or(format!("URI port {port} is invalid"))?;
    Ok((host.to_string(), port, path))
}
