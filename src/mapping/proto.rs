//! Small constructors for OTLP protobuf values.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use serde_json::Value;

pub fn str_value(s: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    }
}

pub fn kv(key: impl Into<String>, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..KeyValue::default()
    }
}

pub fn kv_str(key: impl Into<String>, v: impl Into<String>) -> KeyValue {
    kv(key, str_value(v))
}

pub fn kv_int(key: impl Into<String>, v: i64) -> KeyValue {
    kv(
        key,
        AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        },
    )
}

pub fn kv_f64(key: impl Into<String>, v: f64) -> KeyValue {
    kv(
        key,
        AnyValue {
            value: Some(any_value::Value::DoubleValue(v)),
        },
    )
}

pub fn kv_bool(key: impl Into<String>, v: bool) -> KeyValue {
    kv(
        key,
        AnyValue {
            value: Some(any_value::Value::BoolValue(v)),
        },
    )
}

/// A JSON value as an OTLP `AnyValue`: objects become key-value lists, arrays
/// arrays, integers that fit `i64` ints, other numbers doubles; `null` is an
/// empty value.
pub fn json_to_any(v: &Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(json_to_any).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| kv(k.clone(), json_to_any(v)))
                .collect(),
        })),
    };
    AnyValue { value }
}
