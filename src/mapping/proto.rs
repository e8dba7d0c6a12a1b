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
    json_to_any_at(v, 0)
}

/// JSON nesting kept as structure; deeper values become their JSON text.
/// Each level is three protobuf messages (value, list, pair), and protobuf
/// decoders stop at 100 (prost, and so the OTLP/JSON conversion and many
/// collectors): 16 levels stay well inside that.
pub const MAX_JSON_DEPTH: usize = 16;

fn json_to_any_at(v: &Value, depth: usize) -> AnyValue {
    if depth >= MAX_JSON_DEPTH && matches!(v, Value::Array(_) | Value::Object(_)) {
        return str_value(v.to_string());
    }
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(|i| json_to_any_at(i, depth + 1)).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| kv(k.clone(), json_to_any_at(v, depth + 1)))
                .collect(),
        })),
    };
    AnyValue { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn deep_json_is_cut_to_text_and_stays_decodable() {
        let mut v = serde_json::json!("leaf");
        for i in 0..200 {
            v = if i % 2 == 0 {
                serde_json::json!({ "k": v })
            } else {
                serde_json::json!([v])
            };
        }
        let any = json_to_any(&v);
        let bytes = any.encode_to_vec();
        let back = AnyValue::decode(bytes.as_slice()).expect("within the decoder's depth limit");
        assert_eq!(back, any);
        assert!(
            format!("{any:?}").contains("leaf"),
            "the deep part is kept as text"
        );
        // Shallow values keep their structure.
        let shallow = json_to_any(&serde_json::json!({"a": {"b": [1, 2]}}));
        assert!(matches!(
            shallow.value,
            Some(any_value::Value::KvlistValue(_))
        ));
        assert!(!format!("{shallow:?}").contains("StringValue"));
    }
}
