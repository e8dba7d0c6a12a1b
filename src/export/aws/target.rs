//! Which export requests are signed with SigV4, and for which signing name
//! and region: `LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_[SIGNAL_]SIGV4` is `auto`
//! (sign when the endpoint's host is an AWS service endpoint,
//! `<service>.<region>.amazonaws.com[.cn]`, with that service and region),
//! `off`, or `SERVICE[:REGION]` (sign any endpoint, such as a VPC endpoint,
//! a proxy or a test server; the region defaults to the host's, else
//! `AWS_REGION`).
//!
//! Also the documented request limits of the CloudWatch OTLP endpoints,
//! which the splitting follows when the destination is one of them.

/// A signing name and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningTarget {
    pub service: String,
    pub region: String,
}

/// Why a SigV4 setting cannot be used (the caller names the variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError(pub String);

/// `<service>` and `<region>` of an AWS service endpoint host
/// (`xray.us-east-1.amazonaws.com`, `logs.cn-north-1.amazonaws.com.cn`);
/// a `-fips` service label signs as the service itself.
pub fn aws_host(host: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (service, region) = rest.split_once('.')?;
    let label = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !label(service) || !label(region) || !region.contains('-') {
        return None;
    }
    let service = service.strip_suffix("-fips").unwrap_or(service);
    Some((service.to_owned(), region.to_owned()))
}

/// Resolves the SigV4 setting `value` for an endpoint host. `default_region`
/// is `AWS_REGION` (or `AWS_DEFAULT_REGION`). `Ok(None)`: not signed.
pub fn resolve(
    value: &str,
    host: &str,
    default_region: Option<&str>,
) -> Result<Option<SigningTarget>, TargetError> {
    let v = value.trim();
    match v.to_ascii_lowercase().as_str() {
        "off" | "none" | "false" => return Ok(None),
        "auto" | "" => {
            return Ok(aws_host(host).map(|(service, region)| SigningTarget { service, region }))
        }
        _ => {}
    }
    let (service, region) = match v.split_once(':') {
        Some((s, r)) => (s.trim(), Some(r.trim())),
        None => (v, None),
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !name_ok(service) {
        return Err(TargetError(
            "expected `auto`, `off` or `SERVICE[:REGION]` (a signing name such as xray, logs, monitoring)"
                .into(),
        ));
    }
    let region = match region {
        Some(r) if name_ok(r) => r.to_owned(),
        Some(_) => return Err(TargetError("the region after `:` is not valid".into())),
        None => match aws_host(host)
            .map(|(_, r)| r)
            .or(default_region.map(str::to_owned))
        {
            Some(r) if !r.trim().is_empty() => r.trim().to_owned(),
            _ => {
                return Err(TargetError(
                    "no region: give it as SERVICE:REGION or set AWS_REGION".into(),
                ))
            }
        },
    };
    Ok(Some(SigningTarget {
        service: service.to_owned(),
        region,
    }))
}

/// How requests to a destination must be cut: bytes, items (spans or
/// records) per request, and the largest single item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_items: usize,
    /// An item larger than this is sent alone (a request breaking a limit
    /// is rejected whole, so it takes nothing else down with it).
    pub max_item_bytes: usize,
}

impl Limits {
    /// No limit but the bytes.
    pub fn bytes(max_bytes: usize) -> Limits {
        Limits {
            max_bytes,
            max_items: usize::MAX,
            max_item_bytes: usize::MAX,
        }
    }

    /// The limits for a destination signed as `service`, within
    /// `max_bytes` (the bridge's own part size). X-Ray's OTLP endpoint
    /// (CloudWatch User Guide, "OTLP Endpoints"): 5 MB uncompressed,
    /// 10,000 spans and 200 KB per span.
    pub fn for_destination(service: Option<&str>, max_bytes: usize) -> Limits {
        match service {
            Some("xray") => Limits {
                max_bytes: max_bytes.min(XRAY_MAX_REQUEST_BYTES),
                max_items: XRAY_MAX_SPANS,
                max_item_bytes: XRAY_MAX_SPAN_BYTES,
            },
            _ => Limits::bytes(max_bytes),
        }
    }
}

/// X-Ray OTLP endpoint: largest request, uncompressed.
pub const XRAY_MAX_REQUEST_BYTES: usize = 5_000_000;
/// X-Ray OTLP endpoint: spans per request.
pub const XRAY_MAX_SPANS: usize = 10_000;
/// X-Ray OTLP endpoint: largest span.
pub const XRAY_MAX_SPAN_BYTES: usize = 200 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, r: &str) -> Option<SigningTarget> {
        Some(SigningTarget {
            service: s.into(),
            region: r.into(),
        })
    }

    #[test]
    fn auto_signs_aws_service_hosts_only() {
        assert_eq!(
            resolve("auto", "xray.us-east-1.amazonaws.com", None),
            Ok(t("xray", "us-east-1"))
        );
        assert_eq!(
            resolve("auto", "logs.cn-north-1.amazonaws.com.cn", None),
            Ok(t("logs", "cn-north-1"))
        );
        assert_eq!(
            resolve("AUTO", "monitoring-fips.us-gov-west-1.amazonaws.com", None),
            Ok(t("monitoring", "us-gov-west-1"))
        );
        for host in [
            "collector.example.com",
            "127.0.0.1",
            "amazonaws.com",
            "xray.amazonaws.com",
            "evil.amazonaws.com.example.org",
            "a.b.c.amazonaws.com",
        ] {
            assert_eq!(resolve("auto", host, Some("eu-west-1")), Ok(None), "{host}");
        }
    }

    #[test]
    fn explicit_service_and_region() {
        assert_eq!(
            resolve("off", "xray.us-east-1.amazonaws.com", None),
            Ok(None)
        );
        assert_eq!(
            resolve("xray", "127.0.0.1", Some("eu-west-1")),
            Ok(t("xray", "eu-west-1"))
        );
        assert_eq!(
            resolve("logs:ap-south-1", "127.0.0.1", Some("eu-west-1")),
            Ok(t("logs", "ap-south-1"))
        );
        // The host's region wins over AWS_REGION.
        assert_eq!(
            resolve("xray", "xray.us-west-2.amazonaws.com", Some("eu-west-1")),
            Ok(t("xray", "us-west-2"))
        );
        assert!(resolve("xray", "127.0.0.1", None).is_err());
        assert!(resolve("x ray", "127.0.0.1", Some("r-1")).is_err());
        assert!(resolve("xray:", "127.0.0.1", Some("r-1")).is_err());
    }

    #[test]
    fn xray_limits_follow_the_documentation() {
        let l = Limits::for_destination(Some("xray"), 1 << 20);
        assert_eq!(
            (l.max_bytes, l.max_items, l.max_item_bytes),
            (1 << 20, 10_000, 204_800)
        );
        let l = Limits::for_destination(Some("xray"), 64 << 20);
        assert_eq!(l.max_bytes, 5_000_000);
        assert_eq!(
            Limits::for_destination(Some("logs"), 1000),
            Limits::bytes(1000)
        );
        assert_eq!(Limits::for_destination(None, 1000), Limits::bytes(1000));
    }
}
