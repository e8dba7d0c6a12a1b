//! The Runtime API server with the Extensions API (`register`, the `event/next` long-poll,
//! `init/error`, `exit/error`), the identifier check every call after `register` passes, and the
//! record of every call. The Telemetry API subscribe route is served here too
//! ([`super::subscribe`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::http::{error_response, header_pairs, header_value, json_response};
use super::ids::new_request_id;
use super::state::{PlatformState, Shared};
use super::subscribe::subscribe;
use super::types::{RecordedCall, Registration};

const NAME_HEADER: &str = "lambda-extension-name";
const ACCEPT_FEATURE_HEADER: &str = "lambda-extension-accept-feature";
const IDENTIFIER_HEADER: &str = "lambda-extension-identifier";
const EVENT_IDENTIFIER_HEADER: &str = "lambda-extension-event-identifier";
const ERROR_TYPE_HEADER: &str = "lambda-extension-function-error-type";

pub(super) async fn serve_runtime_api(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let router = Router::new()
        .route("/2020-01-01/extension/register", post(register))
        .route("/2020-01-01/extension/event/next", get(next_event))
        .route("/2020-01-01/extension/init/error", post(report_error))
        .route("/2020-01-01/extension/exit/error", post(report_error))
        .route("/2022-07-01/telemetry", put(subscribe))
        .route("/2022-07-01/telemetry/", put(subscribe))
        .fallback(|| async { error_response(404, "NotFound", "no such Runtime API route") })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            record_call,
        ))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, router).await {
        eprintln!("emulator: Runtime API server failed: {e}");
    }
}

/// Records every call (arrival time, request, final status).
async fn record_call(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let at = shared.since_spawn();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let call = RecordedCall {
        at,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: header_pairs(&parts.headers),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
    };
    let index = shared.update(|st| {
        st.calls.push(call);
        st.calls.len() - 1
    });
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let status = response.status().as_u16();
    shared.update(|st| st.calls[index].status = status);
    response
}

async fn register(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(name) = header_value(&headers, NAME_HEADER) else {
        return error_response(
            400,
            "InvalidRequest",
            "missing Lambda-Extension-Name header",
        );
    };
    let events = match parse_register_events(&body) {
        Ok(events) => events,
        Err(message) => return error_response(400, "InvalidRequest", &message),
    };
    let accept_feature = header_value(&headers, ACCEPT_FEATURE_HEADER);
    let wants_account_id = accept_feature
        .as_deref()
        .is_some_and(|f| f.split(',').any(|f| f.trim() == "accountId"));
    let at = shared.since_spawn();
    let mut probes = Vec::new();
    for addr in &shared.opts.probe_at_register {
        let connect = tokio::net::TcpStream::connect(*addr);
        let ok = matches!(
            tokio::time::timeout(std::time::Duration::from_millis(500), connect).await,
            Ok(Ok(_))
        );
        probes.push((*addr, ok));
    }
    let identifier = new_request_id();
    let refused = shared.update(|st| {
        if st.init_done {
            return Some("registration is only possible during init");
        }
        if st.registration.is_some() {
            return Some("the emulator supports exactly one extension");
        }
        st.registration = Some(Registration {
            at,
            name,
            accept_feature,
            events,
            identifier: identifier.clone(),
            probes,
        });
        None
    });
    if let Some(message) = refused {
        return error_response(403, "Extension.RegistrationRefused", message);
    }
    let opts = &shared.opts;
    let mut body = json!({
        "functionName": opts.function_name,
        "functionVersion": opts.function_version,
        "handler": "index.handler",
    });
    if wants_account_id {
        body["accountId"] = json!(opts.account_id);
    }
    let mut response = json_response(200, &body);
    if let Ok(value) = identifier.parse() {
        response.headers_mut().insert(IDENTIFIER_HEADER, value);
    }
    response
}

/// `{"events": [...]}`; the body and `events` are optional; only INVOKE and SHUTDOWN are valid.
fn parse_register_events(body: &[u8]) -> Result<Vec<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Some(events) = value.get("events") else {
        return Ok(Vec::new());
    };
    let events = events.as_array().ok_or("events must be an array")?;
    events
        .iter()
        .map(|e| match e.as_str() {
            Some(name @ ("INVOKE" | "SHUTDOWN")) => Ok(name.to_string()),
            _ => Err(format!("invalid event {e}")),
        })
        .collect()
}

/// The first number in a counter file (`cpuacct.usage`, or `cpu.stat`'s `usage_usec`).
fn read_counter(path: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())?
        .parse()
        .ok()
}

/// Long-poll: parks a sender that [`Emulator::hand_out`] answers.
async fn next_event(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let at = shared.since_spawn();
    let counter = shared.opts.cpu_counter.as_deref().and_then(read_counter);
    let receiver = shared.update(|st| -> Result<_, Forbidden> {
        authorize(st, &headers)?;
        st.next_calls.push(at);
        st.next_cpu_counters.push(counter);
        st.init_done = true;
        let (sender, receiver) = oneshot::channel();
        st.pending_next = Some(sender);
        Ok(receiver)
    });
    let receiver = match receiver {
        Ok(receiver) => receiver,
        Err(forbidden) => return forbidden.response(),
    };
    match receiver.await {
        Ok((event, event_id)) => {
            let mut response = json_response(200, &event);
            if let Ok(value) = event_id.parse() {
                response
                    .headers_mut()
                    .insert(EVENT_IDENTIFIER_HEADER, value);
            }
            response
        }
        Err(_) => error_response(500, "Emulator.Stopped", "the emulator stopped"),
    }
}

/// `init/error` and `exit/error`: identifier and error-type headers required; answer 202.
async fn report_error(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let st = shared.lock();
    if let Err(forbidden) = authorize(&st, &headers) {
        return forbidden.response();
    }
    if header_value(&headers, ERROR_TYPE_HEADER).is_none() {
        return error_response(
            403,
            "Extension.MissingHeader",
            "missing Lambda-Extension-Function-Error-Type header",
        );
    }
    json_response(202, &json!({"status": "OK"}))
}

/// A refused Extensions/Telemetry API call (403).
pub(super) struct Forbidden {
    error_type: &'static str,
    message: &'static str,
}

impl Forbidden {
    pub(super) fn response(&self) -> Response {
        error_response(403, self.error_type, self.message)
    }
}

/// Checks `Lambda-Extension-Identifier` against the registration.
pub(super) fn authorize<'a>(
    st: &'a PlatformState,
    headers: &HeaderMap,
) -> Result<&'a Registration, Forbidden> {
    let Some(given) = header_value(headers, IDENTIFIER_HEADER) else {
        return Err(Forbidden {
            error_type: "Extension.MissingExtensionIdentifier",
            message: "missing Lambda-Extension-Identifier header",
        });
    };
    match &st.registration {
        Some(registration) if registration.identifier == given => Ok(registration),
        _ => Err(Forbidden {
            error_type: "Extension.InvalidExtensionIdentifier",
            message: "unknown extension identifier",
        }),
    }
}
