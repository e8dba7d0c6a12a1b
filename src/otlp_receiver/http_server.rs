//! The local receiver's OTLP/HTTP side: `/v1/traces`, `/v1/metrics`,
//! `/v1/logs`, protobuf or JSON, gzip, with a collector's answers.

use super::*;

#[derive(Clone)]
pub(super) struct HttpState {
    pub(super) forwarder: Arc<Forwarder>,
    pub(super) max: usize,
}

/// The OTLP/HTTP router.
pub fn http_router(forwarder: Arc<Forwarder>, max_body_bytes: usize) -> Router {
    let state = HttpState {
        forwarder,
        max: max_body_bytes,
    };
    Router::new()
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .route("/v1/logs", post(export::<ExportLogsServiceRequest>))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Encoding {
    Protobuf,
    Json,
}

pub(super) fn content(headers: &HeaderMap) -> Option<Encoding> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/x-protobuf" | "application/protobuf" | "application/octet-stream" => {
            Some(Encoding::Protobuf)
        }
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// An OTLP/HTTP error answer: a `google.rpc.Status` message in the request's
/// encoding. None of them asks for a retry: they are about the request itself.
pub(super) fn http_error(status: StatusCode, enc: Encoding, message: &str) -> Response {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        _ => 3,
    };
    match enc {
        Encoding::Json => (
            status,
            [("content-type", "application/json")],
            serde_json::json!({"code": code, "message": message}).to_string(),
        )
            .into_response(),
        Encoding::Protobuf => (
            status,
            [("content-type", "application/x-protobuf")],
            crate::export::rpc::RpcStatus {
                code,
                message: message.to_owned(),
                details: Vec::new(),
            }
            .encode_to_vec(),
        )
            .into_response(),
    }
}

/// 200 with the `Export*ServiceResponse`: empty, or a partial success.
pub(super) fn success<R: ExportRequest>(enc: Encoding, accepted: &Accepted) -> Response {
    let response = R::response(accepted);
    match enc {
        Encoding::Json => {
            let body = if accepted == &Accepted::default() {
                "{}".to_owned()
            } else {
                serde_json::to_string(&response).unwrap_or_else(|_| "{}".to_owned())
            };
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
        Encoding::Protobuf => (
            StatusCode::OK,
            [("content-type", "application/x-protobuf")],
            response.encode_to_vec(),
        )
            .into_response(),
    }
}

/// Reads the body: gunzip when asked, bounded by `max` after decompression.
pub(super) fn body_bytes(
    headers: &HeaderMap,
    body: Bytes,
    max: usize,
) -> Result<Bytes, (StatusCode, String)> {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body),
        "gzip" => gunzip(&body, max).map(Bytes::from),
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content-encoding {other:?}"),
        )),
    }
}

/// Most bytes reserved up front for an un-gzipped body; beyond it the
/// buffer grows with what actually arrives.
pub(super) const GUNZIP_RESERVE_MAX: usize = 1024 * 1024;

/// Un-gzips a body, bounded by `max` bytes after decompression. The buffer
/// is sized from the compressed length (OTLP compresses about 4:1) but never
/// beyond what the limit allows nor [`GUNZIP_RESERVE_MAX`]: a small request
/// under a large limit must not reserve memory it will not use.
pub(super) fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let reserve = body
        .len()
        .saturating_mul(4)
        .min(max.saturating_add(1))
        .min(GUNZIP_RESERVE_MAX);
    let mut out = Vec::with_capacity(reserve);
    let mut dec = flate2::read::GzDecoder::new(body).take(max as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
    if out.len() > max {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decompressed body exceeds {max} bytes"),
        ));
    }
    Ok(out)
}

pub(super) async fn handle<R: ExportRequest>(
    st: &HttpState,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let Some(enc) = content(headers) else {
        st.forwarder.count_bad_request();
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Encoding::Json,
            "content-type must be application/x-protobuf or application/json",
        );
    };
    let body = match body_bytes(headers, body, st.max) {
        Ok(b) => b,
        Err((status, msg)) => {
            st.forwarder.count_bad_request();
            return http_error(status, enc, &msg);
        }
    };
    let forwarded = match enc {
        Encoding::Protobuf => st.forwarder.forward_protobuf::<R>(body),
        // OTLP/JSON takes the decoded path: there is no JSON to keep.
        Encoding::Json => serde_json::from_slice::<R>(&body)
            .map(|req| st.forwarder.forward(req))
            .map_err(|e| e.to_string()),
    };
    match forwarded {
        Ok(accepted) => success::<R>(enc, &accepted),
        Err(e) => {
            st.forwarder.count_bad_request();
            http_error(
                StatusCode::BAD_REQUEST,
                enc,
                &format!("undecodable OTLP request: {e}"),
            )
        }
    }
}

/// The body as read, or axum's refusal of it (over the size limit, or
/// cut off).
type BodyRead = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// A body refused before it was read (over the limit): the error answer in
/// the request's encoding, with `Connection: close`. The rest of the body
/// is left unread and the connection is closed after the answer, so a
/// keep-alive client must not send its next request on it.
fn refused_body(
    st: &HttpState,
    headers: &HeaderMap,
    refusal: &axum::extract::rejection::BytesRejection,
) -> Response {
    st.forwarder.count_bad_request();
    let enc = content(headers).unwrap_or(Encoding::Protobuf);
    let mut resp = http_error(refusal.status(), enc, &refusal.body_text());
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// The handler of each signal's path: `R` is its export request.
async fn export<R: ExportRequest>(
    State(st): State<HttpState>,
    headers: HeaderMap,
    body: BodyRead,
) -> Response {
    match body {
        Ok(body) => handle::<R>(&st, &headers, body).await,
        Err(refusal) => refused_body(&st, &headers, &refusal),
    }
}
