//! `function` and `extension` records → OTLP log records.
//!
//! Text records are parsed by [`super::log_lines`]; JSON records (and text
//! records whose message is a JSON object, as Powertools writes them in Text
//! mode) give their level, message, timestamp and request id from the
//! well-known keys, and every other key becomes an attribute.

use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;
use serde_json::{Map, Value};

use super::invocation::TraceIds;
use super::log_lines::{level_number, parse_text};
use super::proto::{json_to_any, kv_str, str_value};
use crate::lambda::events::LogRecord;
use crate::options::read::choice;
use crate::options::table::LOGS_MIN_SEVERITY;
use crate::options::{ConfigError, Env};
use crate::time::{parse_rfc3339, UnixNanos};

/// Reads `LAMBDA_OTEL_BRIDGE_LOGS_MIN_SEVERITY` as the lowest
/// `SeverityNumber` of its range (0: no minimum).
pub fn min_severity(env: &dyn Env) -> Result<i32, ConfigError> {
    choice(env, &LOGS_MIN_SEVERITY, |v| match v {
        "none" => Some(0),
        "trace" => Some(1),
        "debug" => Some(5),
        "info" => Some(9),
        "warn" => Some(13),
        "error" => Some(17),
        "fatal" => Some(21),
        _ => None,
    })
}

/// Whether a mapped record of `source` is dropped by the minimum severity
/// `min`: function and extension records with a known severity below it
/// (records of unknown severity, such as plain `print` lines, are kept;
/// the lines the bridge writes itself always are).
pub fn below_min_severity(source: LogSource, record: &OtlpLogRecord, min: i32) -> bool {
    source != LogSource::Platform && record.severity_number != 0 && record.severity_number < min
}

/// Which Telemetry API stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    Function,
    Extension,
    /// Lines the bridge writes for platform events.
    Platform,
}

impl LogSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Function => "function",
            LogSource::Extension => "extension",
            LogSource::Platform => "platform",
        }
    }
}

/// `log_level`: the Python runtime's crash record on older runtimes.
const LEVEL_KEYS: [&str; 4] = ["level", "log_level", "levelname", "severity"];
const MESSAGE_KEYS: [&str; 3] = ["message", "msg", "event"];
const TIME_KEYS: [&str; 2] = ["timestamp", "time"];
const REQUEST_ID_KEYS: [&str; 3] = ["requestId", "AWSRequestId", "function_request_id"];
/// Request-id keys not kept as attributes when the record is attributed by
/// them (they would repeat `faas.invocation_id`). Powertools'
/// `function_request_id` is part of its record schema and stays.
const REPEATED_ID_KEYS: [&str; 2] = ["requestId", "AWSRequestId"];

/// Where the request id a record names itself was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// The runtime's text line prefix (`[INFO]\tTS\tRID\t…`): written by
    /// Lambda's runtime, always the invocation's id.
    Prefix,
    /// A JSON key of the record. The runtimes' JSON formatters put the
    /// invocation's id there, but an application's own logger may write an
    /// id of its own under the same name (pino with API Gateway's request
    /// id), so it only counts when the invocation table knows it.
    JsonKey(&'static str),
}

/// The request id a record names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnRequestId<'r> {
    pub id: std::borrow::Cow<'r, str>,
    pub source: IdSource,
}

impl OwnRequestId<'_> {
    /// The attribute that repeats this id, to drop once the record is
    /// attributed by it (see [`REPEATED_ID_KEYS`]).
    pub fn repeated_key(&self) -> Option<&'static str> {
        match self.source {
            IdSource::JsonKey(k) if REPEATED_ID_KEYS.contains(&k) => Some(k),
            _ => None,
        }
    }
}

/// The request id a JSON record names itself, if any, with its key.
fn json_request_id(map: &Map<String, Value>) -> Option<(&'static str, &str)> {
    REQUEST_ID_KEYS
        .iter()
        .find_map(|k| Some((*k, map.get(*k).and_then(Value::as_str)?)))
        .filter(|(_, s)| !s.is_empty())
}

fn own_json_id<'r>(map: &Map<String, Value>) -> Option<OwnRequestId<'r>> {
    json_request_id(map).map(|(k, id)| OwnRequestId {
        id: std::borrow::Cow::Owned(id.to_owned()),
        source: IdSource::JsonKey(k),
    })
}

/// Lambda continues its `LAMBDA_WARNING: Unhandled exception. …` line with
/// the error as JSON after a carriage return, in the same record:
/// `LAMBDA_WARNING: …\r{"log_level": "ERROR", "errorType": …}`. Returns the
/// warning text and the object (one with `errorType` or `errorMessage`).
fn lambda_warning_continuation(message: &str) -> Option<(&str, Map<String, Value>)> {
    if !message.starts_with(super::log_lines::LAMBDA_WARNING) {
        return None;
    }
    let at = message.find("\r{")?;
    let map = json_object(&message[at + 1..])
        .filter(|m| m.contains_key("errorType") || m.contains_key("errorMessage"))?;
    Some((message[..at].trim_end(), map))
}

fn json_object(message: &str) -> Option<Map<String, Value>> {
    let t = message.trim();
    if t.starts_with('{') && t.ends_with('}') {
        serde_json::from_str::<Map<String, Value>>(t).ok()
    } else {
        None
    }
}

/// Maps one record without trace context; also returns the request id the
/// record names itself (text prefix or JSON key), parsed in the same pass.
/// Whether that id may attribute the record is the caller's decision (see
/// [`IdSource`]); a JSON `requestId` / `AWSRequestId` stays among the
/// attributes until then.
pub fn map_log_body<'r>(
    source: LogSource,
    record: &'r LogRecord,
    event_time: Option<UnixNanos>,
    observed: UnixNanos,
) -> (OtlpLogRecord, Option<OwnRequestId<'r>>) {
    use std::borrow::Cow;
    let mut out = OtlpLogRecord {
        observed_time_unix_nano: observed,
        ..OtlpLogRecord::default()
    };
    let mut own_time = None;
    let own_rid = match record {
        LogRecord::Text(text) => {
            let line = parse_text(text);
            own_time = line.timestamp;
            if let Some(level) = line.level {
                out.severity_text = level.to_owned();
                out.severity_number = line.severity_number;
            }
            let prefix_id = line.request_id.map(|r| OwnRequestId {
                id: Cow::Borrowed(r),
                source: IdSource::Prefix,
            });
            if let Some(map) = json_object(line.message) {
                apply_json(&mut out, &map, &mut own_time);
                prefix_id.or_else(|| own_json_id(&map))
            } else if let Some((warning, map)) = lambda_warning_continuation(line.message) {
                apply_continuation(&mut out, warning, &map, &mut own_time);
                prefix_id.or_else(|| own_json_id(&map))
            } else {
                out.body = Some(str_value(line.message));
                prefix_id
            }
        }
        LogRecord::Json(map) => {
            apply_json(&mut out, map, &mut own_time);
            json_request_id(map).map(|(k, id)| OwnRequestId {
                id: Cow::Borrowed(id),
                source: IdSource::JsonKey(k),
            })
        }
    };
    out.time_unix_nano = choose_time(own_time, event_time).unwrap_or(observed);
    out.attributes
        .push(kv_str("aws.lambda.log.source", source.as_str()));
    (out, own_rid)
}

/// Adds the invocation's trace context and `faas.invocation_id`.
pub fn attach_invocation(out: &mut OtlpLogRecord, request_id: Option<&str>, ids: &TraceIds) {
    if let Some(request_id) = request_id {
        out.attributes
            .push(kv_str("faas.invocation_id", request_id));
    }
    out.trace_id = ids.trace_id.to_vec();
    out.span_id = ids.span_id.to_vec();
    out.flags = u32::from(ids.sampled);
}

/// Prefers the record's own time, unless it is only second-precise and the
/// envelope time falls in the same second (Python's JSON formatter).
fn choose_time(own: Option<UnixNanos>, envelope: Option<UnixNanos>) -> Option<UnixNanos> {
    match (own, envelope) {
        (Some(o), Some(e)) if o % 1_000_000_000 == 0 && o / 1_000_000_000 == e / 1_000_000_000 => {
            Some(e)
        }
        (Some(o), _) => Some(o),
        (None, e) => e,
    }
}

/// Numeric levels of pino / bunyan (10 trace … 60 fatal); only the exact
/// numbers (`30.5` is no level, not INFO).
fn numeric_level(n: f64) -> Option<i32> {
    if n.fract() != 0.0 {
        return None;
    }
    // Saturating for out-of-range values, which then match no level.
    Some(match n as i64 {
        10 => 1,
        20 => 5,
        30 => 9,
        40 => 13,
        50 => 17,
        60 => 21,
        _ => return None,
    })
}

/// A JSON time: an RFC 3339 string, or epoch milliseconds / seconds.
fn json_time(v: &Value) -> Option<UnixNanos> {
    match v {
        Value::String(s) => parse_rfc3339(s),
        Value::Number(n) => {
            // Integer epoch milliseconds (pino, bunyan) without float rounding.
            if let Some(i) = n.as_u64() {
                return Some(if i > 100_000_000_000 {
                    i.checked_mul(1_000_000)?
                } else {
                    i.checked_mul(1_000_000_000)?
                });
            }
            let f = n.as_f64()?;
            if !(f.is_finite() && f > 0.0) {
                None
            } else if f > 1e11 {
                Some((f * 1e6) as u64)
            } else {
                Some((f * 1e9) as u64)
            }
        }
        _ => None,
    }
}

/// The JSON continuation of a `LAMBDA_WARNING` record: the warning stays the
/// body; the error's fields become the `exception.*` attributes (and other
/// attributes), and its level counts when it is more severe than WARN (an
/// unhandled exception is an ERROR record, which is what alerting filters
/// on).
fn apply_continuation(
    out: &mut OtlpLogRecord,
    warning: &str,
    map: &Map<String, Value>,
    own_time: &mut Option<UnixNanos>,
) {
    let mut error = OtlpLogRecord::default();
    let mut error_time = None;
    apply_json(&mut error, map, &mut error_time);
    out.body = Some(str_value(warning));
    if error.severity_number > out.severity_number {
        out.severity_number = error.severity_number;
        out.severity_text = error.severity_text;
    }
    out.attributes.append(&mut error.attributes);
    if own_time.is_none() {
        *own_time = error_time;
    }
}

fn apply_json(out: &mut OtlpLogRecord, map: &Map<String, Value>, own_time: &mut Option<UnixNanos>) {
    let level_key = LEVEL_KEYS.iter().copied().find(|k| map.contains_key(*k));
    if let Some(k) = level_key {
        match &map[k] {
            Value::String(token) => {
                out.severity_text = token.clone();
                out.severity_number = level_number(token).unwrap_or(0);
            }
            Value::Number(n) => {
                out.severity_text = n.to_string();
                out.severity_number = n.as_f64().and_then(numeric_level).unwrap_or(0);
            }
            _ => {}
        }
    }
    let time_key = TIME_KEYS
        .iter()
        .copied()
        .find(|k| map.get(*k).and_then(json_time).is_some());
    if let Some(k) = time_key {
        *own_time = json_time(&map[k]);
    }
    // `event` (structlog) counts as the message only when it is a string.
    let message_key = MESSAGE_KEYS
        .iter()
        .copied()
        .find(|k| map.get(*k).is_some_and(|v| *k != "event" || v.is_string()))
        // A runtime's crash record (Python's JSON format) has no message:
        // its error message is the body.
        .or_else(|| {
            map.get("errorMessage")
                .is_some_and(Value::is_string)
                .then_some("errorMessage")
        });
    out.body = Some(match message_key {
        Some(k) => json_to_any(&map[k]),
        None => json_to_any(&Value::Object(map.clone())),
    });
    if message_key.is_some() {
        for (k, v) in map {
            let k = k.as_str();
            // `errorMessage` as the body is still `exception.message`.
            let reserved = (Some(k) == message_key && k != "errorMessage")
                || Some(k) == level_key
                || Some(k) == time_key;
            if reserved {
                continue;
            }
            // The runtimes' error fields (Node.js, Python JSON format) under
            // the semantic-convention exception attributes.
            match (k, v) {
                ("errorType", Value::String(t)) => out
                    .attributes
                    .push(super::proto::kv_str("exception.type", t.clone())),
                ("errorMessage", Value::String(m)) => out
                    .attributes
                    .push(super::proto::kv_str("exception.message", m.clone())),
                ("stackTrace", Value::Array(lines)) => {
                    // Python's frames end with a newline already; Node's do not.
                    let text: Vec<&str> = lines
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|l| l.trim_end_matches('\n'))
                        .collect();
                    out.attributes.push(super::proto::kv_str(
                        "exception.stacktrace",
                        text.join("\n"),
                    ));
                }
                ("stackTrace", Value::String(t)) => out
                    .attributes
                    .push(super::proto::kv_str("exception.stacktrace", t.clone())),
                _ => out
                    .attributes
                    .push(super::proto::kv(k.to_owned(), json_to_any(v))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;

    fn own_rid(rec: &LogRecord) -> Option<String> {
        map_log_body(LogSource::Function, rec, None, 0)
            .1
            .map(|r| r.id.into_owned())
    }

    fn body(r: &OtlpLogRecord) -> Option<&AV> {
        r.body.as_ref().and_then(|b| b.value.as_ref())
    }

    fn ids() -> TraceIds {
        TraceIds {
            trace_id: [7; 16],
            span_id: [9; 8],
            parent_span_id: None,
            sampled: true,
            from_xray: true,
        }
    }

    #[test]
    fn text_line_with_prefix() {
        let rec = LogRecord::Text(
            "[ERROR]\t2025-03-04T10:15:30.610Z\t8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11\tboom\n"
                .into(),
        );
        assert_eq!(
            own_rid(&rec).as_deref(),
            Some("8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11")
        );
        let (mut r, _) = map_log_body(LogSource::Function, &rec, Some(1), 2);
        assert!(r.trace_id.is_empty() && r.span_id.is_empty());
        attach_invocation(&mut r, Some("8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11"), &ids());
        assert_eq!(r.severity_number, 17);
        assert_eq!(r.severity_text, "ERROR");
        assert_eq!(body(&r), Some(&AV::StringValue("boom".into())));
        assert_eq!(r.time_unix_nano, 1_741_083_330_610_000_000);
        assert_eq!(r.observed_time_unix_nano, 2);
        assert_eq!(r.trace_id, vec![7; 16]);
        assert_eq!(r.span_id, vec![9; 8]);
        assert_eq!(r.flags, 1, "sampled");
        assert!(r.attributes.iter().any(|a| a.key == "faas.invocation_id"));
    }

    #[test]
    fn json_record_attributes() {
        let map: Map<String, Value> = serde_json::from_str(
            r#"{"timestamp":"2025-03-04T10:15:30Z","level":"WARNING","message":"low","logger":"root","requestId":"r1","extra":{"n":1}}"#,
        )
        .unwrap();
        let rec = LogRecord::Json(map);
        assert_eq!(own_rid(&rec).as_deref(), Some("r1"));
        let (r, _) = map_log_body(
            LogSource::Function,
            &rec,
            Some(1_741_083_330_611_000_000),
            5,
        );
        assert_eq!(
            (r.severity_number, r.severity_text.as_str()),
            (13, "WARNING")
        );
        assert_eq!(body(&r), Some(&AV::StringValue("low".into())));
        // Second-precision record time: the envelope time in that second wins.
        assert_eq!(r.time_unix_nano, 1_741_083_330_611_000_000);
        let keys: Vec<&str> = r.attributes.iter().map(|a| a.key.as_str()).collect();
        // JSON keys come in sorted order (serde_json maps are ordered), so
        // output is deterministic. `requestId` stays until the mapper
        // attributes the record by it.
        assert_eq!(
            keys,
            ["extra", "logger", "requestId", "aws.lambda.log.source"]
        );
        assert!(r.trace_id.is_empty());
    }

    #[test]
    fn powertools_json_in_text_mode() {
        let rec = LogRecord::Text(r#"{"level":"ERROR","location":"handler:12","message":"failed","function_request_id":"r9","cold_start":true}"#.into());
        assert_eq!(own_rid(&rec).as_deref(), Some("r9"));
        let (r, _) = map_log_body(LogSource::Function, &rec, Some(10), 11);
        assert_eq!(r.severity_number, 17);
        assert_eq!(body(&r), Some(&AV::StringValue("failed".into())));
        assert!(r.attributes.iter().any(|a| a.key == "cold_start"));
        assert_eq!(r.time_unix_nano, 10);
    }

    #[test]
    fn numeric_levels_are_exact_numbers() {
        for (level, number, text) in [
            ("30", 9, "30"),
            ("50", 17, "50"),
            ("30.0", 9, "30.0"),
            // `as i64` truncated these to 30 and 50.
            ("30.5", 0, "30.5"),
            ("50.99", 0, "50.99"),
            ("1e300", 0, "1e+300"),
            ("-30", 0, "-30"),
        ] {
            let rec = LogRecord::Text(format!(r#"{{"level":{level},"msg":"m"}}"#));
            let (r, _) = map_log_body(LogSource::Function, &rec, Some(1), 1);
            assert_eq!(r.severity_number, number, "level {level}");
            assert_eq!(r.severity_text, text, "level {level}");
        }
    }

    fn str_attr<'a>(r: &'a OtlpLogRecord, key: &str) -> Option<&'a str> {
        r.attributes.iter().find(|a| a.key == key).and_then(|a| {
            match a.value.as_ref()?.value.as_ref()? {
                AV::StringValue(s) => Some(s.as_str()),
                _ => None,
            }
        })
    }

    const STACK: [&str; 2] = [
        "  File \"/var/task/app.py\", line 21, in handler\n    sku = body[\"sku\"]\n",
        "  File \"/var/task/app.py\", line 9, in parse\n    return data[key]\n",
    ];

    /// The Python runtime's crash record in the JSON log format has no
    /// `message`; newer runtimes write `level`, older ones `log_level`.
    #[test]
    fn python_crash_record() {
        for level_key in ["level", "log_level"] {
            let mut map: Map<String, Value> = serde_json::from_value(serde_json::json!({
                "timestamp": "2025-03-04T10:15:30Z",
                "errorMessage": "'sku'",
                "errorType": "KeyError",
                "requestId": "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11",
                "stackTrace": STACK,
            }))
            .unwrap();
            map.insert(level_key.into(), "ERROR".into());
            let rec = LogRecord::Json(map);
            let (r, own) = map_log_body(LogSource::Function, &rec, None, 0);
            assert_eq!(
                body(&r),
                Some(&AV::StringValue("'sku'".into())),
                "{level_key}"
            );
            assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
            assert_eq!(str_attr(&r, "exception.type"), Some("KeyError"));
            assert_eq!(str_attr(&r, "exception.message"), Some("'sku'"));
            assert_eq!(
                str_attr(&r, "exception.stacktrace"),
                Some(
                    "  File \"/var/task/app.py\", line 21, in handler\n    sku = body[\"sku\"]\n  File \"/var/task/app.py\", line 9, in parse\n    return data[key]"
                )
            );
            assert_eq!(r.time_unix_nano, 1_741_083_330_000_000_000);
            assert_eq!(
                own.map(|o| (o.id.into_owned(), o.source)),
                Some((
                    "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11".to_owned(),
                    IdSource::JsonKey("requestId")
                ))
            );
            for k in [
                "errorMessage",
                "errorType",
                "stackTrace",
                level_key,
                "timestamp",
            ] {
                assert!(r.attributes.iter().all(|a| a.key != k), "{k} repeated");
            }
        }
    }

    const WARNING: &str = "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code. However, in rare cases, a Lambda runtime update can cause unexpected function behavior.";

    #[test]
    fn lambda_warning_is_warn() {
        let rec = LogRecord::Text(format!("{WARNING}\n"));
        let (r, own) = map_log_body(LogSource::Function, &rec, Some(5), 6);
        assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "WARN"));
        assert_eq!(body(&r), Some(&AV::StringValue(WARNING.into())));
        assert_eq!(own, None);
        assert_eq!(r.time_unix_nano, 5);
    }

    /// The warning continued by the error as JSON after a carriage return:
    /// the warning stays the body, the error gives the exception attributes
    /// and, being more severe, the severity.
    #[test]
    fn lambda_warning_with_error_continuation() {
        let json = serde_json::json!({
            "log_level": "ERROR",
            "errorType": "KeyError",
            "errorMessage": "'sku'",
            "stackTrace": STACK,
        });
        let rec = LogRecord::Text(format!("{WARNING}\r{json}\n"));
        let (r, _) = map_log_body(LogSource::Function, &rec, Some(5), 6);
        assert_eq!(body(&r), Some(&AV::StringValue(WARNING.into())));
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
        assert_eq!(str_attr(&r, "exception.type"), Some("KeyError"));
        assert_eq!(str_attr(&r, "exception.message"), Some("'sku'"));
        assert!(str_attr(&r, "exception.stacktrace").is_some_and(|s| s.ends_with("data[key]")));
        // A JSON object that is no error report is not taken apart.
        let rec = LogRecord::Text(format!("{WARNING}\r{{\"a\":1}}"));
        let (r, _) = map_log_body(LogSource::Function, &rec, Some(5), 6);
        assert_eq!(
            body(&r),
            Some(&AV::StringValue(format!("{WARNING}\r{{\"a\":1}}")))
        );
        assert_eq!(r.severity_number, 13);
    }

    #[test]
    fn plain_print_keeps_whole_line() {
        let rec = LogRecord::Text("hello\n".into());
        let (r, own) = map_log_body(LogSource::Extension, &rec, None, 11);
        assert_eq!(own, None);
        assert_eq!(r.severity_number, 0);
        assert_eq!(r.severity_text, "");
        assert_eq!(body(&r), Some(&AV::StringValue("hello".into())));
        assert_eq!(r.time_unix_nano, 11);
    }
}
