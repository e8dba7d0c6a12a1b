//! Attribute limits, as the OpenTelemetry specification defines them
//! (`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, `OTEL_ATTRIBUTE_COUNT_LIMIT`, their
//! span and log-record forms, `OTEL_SPAN_EVENT_COUNT_LIMIT`), applied to the
//! bridge's own spans and log records after redaction (a truncated secret
//! must have been redacted whole first) and before encoding.
//!
//! - A string value longer than the length limit is cut to that many
//!   characters (Unicode scalar values, so always at a UTF-8 boundary);
//!   so is each string of an array value. Other values are left alone.
//! - Attributes beyond the count limit are dropped, the later ones first,
//!   and counted in the record's `dropped_attributes_count`; span events
//!   beyond their limit likewise, in `dropped_events_count`.
//! - Resource attributes are not limited (the specification exempts them).
//!
//! The function's own OTLP, forwarded by the local receiver, is left as its
//! SDK sent it: its SDK applied the same variables already.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};

use crate::options::read::{int, text};
use crate::options::table::{
    Text, ATTRIBUTE_COUNT_LIMIT, ATTRIBUTE_VALUE_LENGTH_LIMIT, LOGRECORD_ATTRIBUTE_COUNT_LIMIT,
    LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT, SPAN_ATTRIBUTE_COUNT_LIMIT,
    SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, SPAN_EVENT_COUNT_LIMIT,
};
use crate::options::{ConfigError, Env};

/// The limits of one kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeLimits {
    /// Longest string value, in characters (`None`: no limit).
    pub value_length: Option<usize>,
    pub count: usize,
}

/// The limits of spans and log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub span: AttributeLimits,
    pub span_events: usize,
    pub log: AttributeLimits,
}

impl Default for Limits {
    /// The specification's defaults: 128 attributes and events, no length limit.
    fn default() -> Self {
        let general = AttributeLimits {
            value_length: None,
            count: ATTRIBUTE_COUNT_LIMIT.default as usize,
        };
        Limits {
            span: general,
            span_events: SPAN_EVENT_COUNT_LIMIT.default as usize,
            log: general,
        }
    }
}

/// An integer setting declared as [`Text`] (its default is another
/// variable): `None` when unset.
fn number(env: &dyn Env, s: &Text) -> Result<Option<usize>, ConfigError> {
    let Some(given) = text(env, s) else {
        return Ok(None);
    };
    let (min, max) = s.range.unwrap_or((0, u32::MAX));
    match given.value.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n as usize)),
        _ => Err(ConfigError::new(
            &given.var,
            &given.value,
            format!("expected an integer from {min} to {max}"),
        )),
    }
}

impl Limits {
    /// Reads the limits; a specific form wins over the general one.
    pub fn from_env(env: &dyn Env) -> Result<Limits, ConfigError> {
        let length = number(env, &ATTRIBUTE_VALUE_LENGTH_LIMIT)?;
        let count = int(env, &ATTRIBUTE_COUNT_LIMIT)? as usize;
        let specific = |len: &Text, cnt: &Text| -> Result<AttributeLimits, ConfigError> {
            Ok(AttributeLimits {
                value_length: number(env, len)?.or(length),
                count: number(env, cnt)?.unwrap_or(count),
            })
        };
        Ok(Limits {
            span: specific(
                &SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
                &SPAN_ATTRIBUTE_COUNT_LIMIT,
            )?,
            span_events: int(env, &SPAN_EVENT_COUNT_LIMIT)? as usize,
            log: specific(
                &LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT,
                &LOGRECORD_ATTRIBUTE_COUNT_LIMIT,
            )?,
        })
    }

    /// Limits every span (and span event) of `req`.
    pub fn apply_traces(&self, req: &mut ExportTraceServiceRequest) {
        let spans = req
            .resource_spans
            .iter_mut()
            .flat_map(|rs| &mut rs.scope_spans)
            .flat_map(|ss| &mut ss.spans);
        for span in spans {
            span.dropped_attributes_count += limit(&mut span.attributes, self.span);
            if span.events.len() > self.span_events {
                let excess = span.events.len() - self.span_events;
                span.events.truncate(self.span_events);
                span.dropped_events_count += excess as u32;
            }
            for event in &mut span.events {
                event.dropped_attributes_count += limit(&mut event.attributes, self.span);
            }
        }
    }

    /// Limits every log record of `req`.
    pub fn apply_logs(&self, req: &mut ExportLogsServiceRequest) {
        let records = req
            .resource_logs
            .iter_mut()
            .flat_map(|rl| &mut rl.scope_logs)
            .flat_map(|sl| &mut sl.log_records);
        for record in records {
            record.dropped_attributes_count += limit(&mut record.attributes, self.log);
        }
    }
}

/// Applies `l` to `attributes`; returns how many were dropped.
fn limit(attributes: &mut Vec<KeyValue>, l: AttributeLimits) -> u32 {
    let dropped = attributes.len().saturating_sub(l.count);
    attributes.truncate(l.count);
    if let Some(max) = l.value_length {
        for kv in attributes.iter_mut() {
            match kv.value.as_mut().and_then(|v| v.value.as_mut()) {
                Some(Value::StringValue(s)) => truncate_chars(s, max),
                Some(Value::ArrayValue(a)) => {
                    for v in &mut a.values {
                        if let Some(Value::StringValue(s)) = v.value.as_mut() {
                            truncate_chars(s, max);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    u32::try_from(dropped).unwrap_or(u32::MAX)
}

/// Cuts `s` to at most `max` characters.
pub fn truncate_chars(s: &mut String, max: usize) {
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::proto::{kv_int, kv_str};
    use crate::options::env_of;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span};

    fn read(pairs: &[(&str, &str)]) -> Result<Limits, ConfigError> {
        Limits::from_env(&env_of(pairs))
    }

    #[test]
    fn defaults_and_precedence() {
        assert_eq!(read(&[]).unwrap(), Limits::default());
        assert_eq!(Limits::default().span.count, 128);
        let l = read(&[
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "40"),
            ("OTEL_ATTRIBUTE_COUNT_LIMIT", "10"),
            ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "20"),
            ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "1"),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", "0"),
        ])
        .unwrap();
        assert_eq!(
            l.span,
            AttributeLimits {
                value_length: Some(20),
                count: 10
            }
        );
        assert_eq!(
            l.log,
            AttributeLimits {
                value_length: Some(40),
                count: 1
            }
        );
        assert_eq!(l.span_events, 0);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for var in [
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_SPAN_EVENT_COUNT_LIMIT",
            "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
        ] {
            for bad in ["-1", "ten", "4294967296"] {
                assert_eq!(read(&[(var, bad)]).unwrap_err().var, var, "{var}={bad}");
            }
        }
    }

    #[test]
    fn truncation_counts_characters_and_keeps_utf8() {
        let mut s = "héllo wörld".to_owned();
        truncate_chars(&mut s, 7);
        assert_eq!(s, "héllo w");
        let mut s = "ab".to_owned();
        truncate_chars(&mut s, 5);
        assert_eq!(s, "ab");
        let mut s = "日本語".to_owned();
        truncate_chars(&mut s, 0);
        assert_eq!(s, "");
    }

    #[test]
    fn spans_and_logs_are_limited_with_counts() {
        let limits = Limits {
            span: AttributeLimits {
                value_length: Some(3),
                count: 2,
            },
            span_events: 1,
            log: AttributeLimits {
                value_length: None,
                count: 1,
            },
        };
        let array = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue("abcdef".into())),
                }],
            })),
        };
        let mut traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        attributes: vec![
                            kv_str("a", "ümlaut"),
                            KeyValue {
                                key: "b".into(),
                                value: Some(array),
                                ..KeyValue::default()
                            },
                            kv_int("c", 123456),
                        ],
                        dropped_attributes_count: 1,
                        events: vec![Event::default(), Event::default()],
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        limits.apply_traces(&mut traces);
        let span = &traces.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.attributes[0], kv_str("a", "üml"));
        assert!(matches!(
            span.attributes[1].value.as_ref().and_then(|v| v.value.as_ref()),
            Some(Value::ArrayValue(a)) if a.values[0].value == Some(Value::StringValue("abc".into()))
        ));
        assert_eq!(span.attributes.len(), 2);
        assert_eq!(span.dropped_attributes_count, 2, "1 before, 1 now");
        assert_eq!((span.events.len(), span.dropped_events_count), (1, 1));

        let long = "x".repeat(500);
        let mut logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        attributes: vec![kv_str("k1", &long), kv_str("k2", "v")],
                        ..LogRecord::default()
                    }],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        limits.apply_logs(&mut logs);
        let r = &logs.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(
            r.attributes,
            [kv_str("k1", &long)],
            "no length limit for logs"
        );
        assert_eq!(r.dropped_attributes_count, 1);
    }
}
