//! HTTP plumbing of the emulator: JSON responses of the Runtime API, header helpers, the POST
//! that delivers telemetry, and [`http_request`], a one-shot client for tests that drive an API
//! directly.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::types::HttpResponse;

/// Per-request timeout of every HTTP call the emulator makes.
pub(super) const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(super) fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"errorType": error_type, "errorMessage": message}),
    )
}

pub(super) fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(super) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), value)
        })
        .collect()
}

pub(super) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// POSTs JSON and returns the status (the response body is read and discarded).
pub(super) async fn post_json(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    host: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<u16, String> {
    let request = hyper::Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::HOST, host)
        .body(Full::new(body))
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        Ok(status)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("POST {url}: timed out after {timeout:?}"))?
}

/// A one-shot HTTP/1 request with a timeout (no connection reuse), for tests that drive an API
/// directly. Header names in the response are lower-case.
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut builder = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.into())))
        .map_err(|e| format!("bad request {method} {url}: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status().as_u16();
        let headers = header_pairs(response.headers());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {url}: reading body: {e}"))?
            .to_bytes();
        Ok(HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{method} {url}: timed out after {timeout:?}"))?
}
