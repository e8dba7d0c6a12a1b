//! The collector's answers, classified the way the OTLP specification
//! does: success, partial success (rejected items are not retried),
//! retryable failure (with the delay `Retry-After` or `RetryInfo` asks for)
//! and permanent failure.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::settings::{Protocol, Signal};
use super::transport::Outcome;

/// OTLP/gRPC retry rules (specification "Failures"): RESOURCE_EXHAUSTED is
/// retryable only when the server says when (a `RetryInfo` detail), whose
/// delay is honoured like HTTP's `Retry-After`.
pub fn classify_grpc(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    let retry_after = retry_info(status.details());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retryable {
            reason,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => Outcome::Retryable {
            reason,
            retry_after,
        },
        // Made up on this side from a broken connection (tonic's "transport
        // error", with the cause attached), not answered by the server: the
        // request may never have arrived, so it is sent again.
        Code::Unknown if std::error::Error::source(status).is_some() => Outcome::Retryable {
            reason,
            retry_after: None,
        },
        _ => Outcome::Permanent { reason },
    }
}

/// The `RetryInfo.retry_delay` in a status' details, capped at 600 s.
fn retry_info(details: &[u8]) -> Option<Duration> {
    use super::rpc::{RetryInfo, RpcStatus};
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .find_map(|a| RetryInfo::decode(a.value.as_slice()).ok()?.retry_delay)
        .map(|d| {
            Duration::from_secs(d.seconds.clamp(0, 600) as u64)
                + Duration::from_nanos(d.nanos.clamp(0, 999_999_999) as u64)
        })
}

/// `Retry-After`: a delay in seconds or an HTTP date (RFC 9110: IMF-fixdate,
/// and the obsolete RFC 850 and asctime forms), relative to `now`; capped
/// at 600 s. A date in the past means at once.
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s.min(600)));
    }
    let at = crate::time::parse_http_date(v)?;
    let now = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now).min(600)))
}

pub fn partial_success(signal: Signal, protocol: Protocol, body: &[u8]) -> Outcome {
    let (rejected, message) = if body.is_empty() {
        (0, String::new())
    } else if protocol == Protocol::HttpJson {
        decode_partial_json(signal, body)
    } else {
        decode_partial_proto(signal, body)
    };
    Outcome::Accepted { rejected, message }
}

fn decode_partial_proto(signal: Signal, body: &[u8]) -> (u64, String) {
    match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans.max(0) as u64, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points.max(0) as u64, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records.max(0) as u64, p.error_message)),
    }
    .unwrap_or_default()
}

fn decode_partial_json(signal: Signal, body: &[u8]) -> (u64, String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (0, String::new());
    };
    let Some(p) = v.get("partialSuccess") else {
        return (0, String::new());
    };
    let key = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    let rejected = match p.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let message = p
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_owned();
    (rejected, message)
}
