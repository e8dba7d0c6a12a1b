//! The OTLP resource that describes this function and execution environment.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::proto::{kv_int, kv_str};
use crate::options::percent_decode;

/// Inputs of the resource, gathered at start-up (pure data, for golden tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceInfo {
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, raw.
    pub resource_attributes: Option<String>,
    pub function_name: Option<String>,
    pub function_version: Option<String>,
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub memory_mb: Option<u64>,
    /// Unique per execution environment (`service.instance.id`).
    pub instance_id: String,
}

/// The resource plus any warning about discarded user attributes.
pub struct BuiltResource {
    pub resource: Resource,
    pub warning: Option<String>,
}

/// Builds the resource. Precedence: `OTEL_SERVICE_NAME` > `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` > the function name; other user attributes
/// override the detected ones (the spec gives user-provided values priority).
pub fn build(info: &ResourceInfo) -> BuiltResource {
    let mut attrs: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            attrs.retain(|(key, _)| key != k);
            attrs.push((k.to_owned(), v.to_owned()));
        }
    };
    set("cloud.provider", Some("aws"));
    set("cloud.platform", Some("aws_lambda"));
    set("cloud.region", info.region.as_deref());
    set("cloud.account.id", info.account_id.as_deref());
    set("faas.name", info.function_name.as_deref());
    set("faas.version", info.function_version.as_deref());
    set("service.name", info.function_name.as_deref());
    set("service.instance.id", Some(&info.instance_id));

    let mut warning = None;
    if let Some(raw) = &info.resource_attributes {
        match parse_resource_attributes(raw) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    set(&k, Some(&v));
                }
            }
            Err(e) => warning = Some(format!("OTEL_RESOURCE_ATTRIBUTES discarded: {e}")),
        }
    }
    set("service.name", info.service_name.as_deref());
    if !attrs.iter().any(|(k, _)| k == "service.name") {
        attrs.push(("service.name".into(), "unknown_service:lambda".into()));
    }

    let mut attributes: Vec<KeyValue> = attrs.into_iter().map(|(k, v)| kv_str(k, v)).collect();
    // A value the user set in OTEL_RESOURCE_ATTRIBUTES wins (keys are unique).
    if let Some(mb) = info.memory_mb {
        if !attributes.iter().any(|a| a.key == "faas.max_memory") {
            attributes.push(kv_int("faas.max_memory", mib_to_bytes(mb)));
        }
    }
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    BuiltResource {
        resource: Resource {
            attributes,
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        },
        warning,
    }
}

/// `key1=value1,key2=value2` with percent-encoding; any error discards the
/// whole value (OpenTelemetry resource SDK rule).
pub fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let k =
            percent_decode(k.trim()).ok_or_else(|| format!("bad percent-encoding in {pair:?}"))?;
        let v =
            percent_decode(v.trim()).ok_or_else(|| format!("bad percent-encoding in {pair:?}"))?;
        if k.is_empty() {
            return Err(format!("{pair:?} has an empty key"));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Mebibytes (as Lambda gives memory sizes) to bytes for an OTLP int,
/// saturating at `i64::MAX`: an absurd size must not wrap to a negative one.
pub fn mib_to_bytes(mb: u64) -> i64 {
    i64::try_from(mb)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_048_576)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn get<'a>(r: &'a Resource, k: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn every_key_once_when_the_user_sets_a_detected_one() {
        let r = build(&ResourceInfo {
            memory_mb: Some(512),
            resource_attributes: Some("faas.max_memory=1,cloud.region=x".into()),
            region: Some("eu-west-1".into()),
            instance_id: "env-1".into(),
            ..Default::default()
        })
        .resource;
        let mut keys: Vec<&str> = r.attributes.iter().map(|a| a.key.as_str()).collect();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "{keys:?}");
    }

    #[test]
    fn detected_and_user_attributes() {
        let info = ResourceInfo {
            function_name: Some("orders-api".into()),
            function_version: Some("$LATEST".into()),
            region: Some("eu-west-1".into()),
            account_id: Some("123456789012".into()),
            memory_mb: Some(512),
            instance_id: "env-1".into(),
            resource_attributes: Some(
                "deployment.environment=prod,team=a%2Cb,service.name=from-attrs".into(),
            ),
            ..Default::default()
        };
        let r = build(&info).resource;
        assert_eq!(
            get(&r, "service.name"),
            Some(&Value::StringValue("from-attrs".into()))
        );
        assert_eq!(get(&r, "team"), Some(&Value::StringValue("a,b".into())));
        assert_eq!(
            get(&r, "faas.max_memory"),
            Some(&Value::IntValue(536_870_912))
        );
        assert_eq!(
            get(&r, "cloud.platform"),
            Some(&Value::StringValue("aws_lambda".into()))
        );

        let r = build(&ResourceInfo {
            service_name: Some("svc".into()),
            ..info.clone()
        })
        .resource;
        assert_eq!(
            get(&r, "service.name"),
            Some(&Value::StringValue("svc".into()))
        );
    }

    #[test]
    fn absurd_memory_size_saturates_instead_of_wrapping() {
        assert_eq!(mib_to_bytes(512), 536_870_912);
        assert_eq!(mib_to_bytes(u64::MAX), i64::MAX);
        assert_eq!(mib_to_bytes(1 << 63), i64::MAX);
        assert_eq!(mib_to_bytes(1 << 50), i64::MAX);
        let r = build(&ResourceInfo {
            memory_mb: Some(u64::MAX),
            instance_id: "env-1".into(),
            ..Default::default()
        })
        .resource;
        assert_eq!(get(&r, "faas.max_memory"), Some(&Value::IntValue(i64::MAX)));
    }

    #[test]
    fn invalid_user_attributes_are_discarded_whole() {
        let b = build(&ResourceInfo {
            function_name: Some("f".into()),
            resource_attributes: Some("a=1,broken,c=%zz".into()),
            ..Default::default()
        });
        assert!(b.warning.is_some());
        assert_eq!(get(&b.resource, "a"), None);
        assert_eq!(
            get(&b.resource, "service.name"),
            Some(&Value::StringValue("f".into()))
        );
    }
}
