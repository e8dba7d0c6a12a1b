//! Reading OTLP data in assertions: ids as hex, attribute values by key. It needs nothing but
//! `opentelemetry-proto`, so test files that do without the rest of `support` (and the
//! `local-lambda` example) include it by path.

#![allow(dead_code)]

use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
use opentelemetry_proto::tonic::common::v1::KeyValue;

/// Lower-case hex digits of an id (trace id, span id).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the attribute `key` among `attrs` (`None` when absent or unset).
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AV> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

/// The string value of the attribute `key` among `attrs` (`None` when absent or not a string).
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        AV::StringValue(s) => Some(s),
        _ => None,
    }
}
