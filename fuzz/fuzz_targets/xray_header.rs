//! X-Ray trace headers (`X-Amzn-Trace-Id`, the `tracing.value` of platform
//! events and of INVOKE): `xray::parse_header`, `parse_root`,
//! `parse_span_id`, the derived ids, and how an invocation resolves its ids
//! from an INVOKE header.
#![no_main]

use libfuzzer_sys::fuzz_target;

use lambda_otel_bridge::{
    derived_span_id, derived_trace_id, parse_header, parse_root, parse_span_id, to_hex, XrayContext,
};
use lambda_otel_bridge::{Invocation, InvokeInfo};

fn root_string(t: &[u8; 16]) -> String {
    let hex = to_hex(t);
    format!("1-{}-{}", &hex[..8], &hex[8..])
}

fn check(s: &str) {
    // 16 hex digits ⇄ 8 bytes, never all zeros.
    if let Some(id) = parse_span_id(s) {
        assert_ne!(id, [0u8; 8]);
        assert_eq!(to_hex(&id), s.to_ascii_lowercase());
        assert_eq!(parse_span_id(&to_hex(&id)), Some(id));
    }
    // `1-XXXXXXXX-YYYY…` ⇄ 16 bytes, never all zeros.
    if let Some(t) = parse_root(s) {
        assert_ne!(t, [0u8; 16]);
        assert_eq!(root_string(&t), s.to_ascii_lowercase());
        assert_eq!(parse_root(&root_string(&t)), Some(t));
    }

    // A header rebuilt from what was parsed parses the same.
    let ctx = parse_header(s);
    let mut parts = Vec::new();
    if let Some(t) = &ctx.trace_id {
        assert_ne!(*t, [0u8; 16]);
        parts.push(format!("Root={}", root_string(t)));
    }
    if let Some(p) = &ctx.parent_span_id {
        assert_ne!(*p, [0u8; 8]);
        parts.push(format!("Parent={}", to_hex(p)));
    }
    if let Some(sampled) = ctx.sampled {
        parts.push(format!("Sampled={}", u8::from(sampled)));
    }
    assert_eq!(parse_header(&parts.join(";")), ctx);
    if parts.is_empty() {
        assert_eq!(ctx, XrayContext::default());
    }

    // Derived ids are never all zeros and are stable.
    let t = derived_trace_id(s);
    assert_ne!(t, [0u8; 16]);
    assert_eq!(t, derived_trace_id(s));
    let sp = derived_span_id(s, "invocation");
    assert_ne!(sp, [0u8; 8]);
    assert_eq!(sp, derived_span_id(s, "invocation"));

    // An invocation known only from INVOKE takes its ids from that header
    // (MAPPING.md "Ids"), else derives them from the request id.
    let rid = "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11";
    let inv = Invocation {
        request_id: rid.into(),
        invoke: Some(InvokeInfo {
            deadline_ms: 0,
            invoked_function_arn: None,
            xray_header: Some(s.to_owned()),
        }),
        ..Default::default()
    };
    let ids = inv.trace_ids();
    assert_eq!(ids.span_id, derived_span_id(rid, "invocation"));
    match ctx.trace_id {
        Some(trace_id) => {
            assert!(ids.from_xray);
            assert_eq!(ids.trace_id, trace_id);
            assert_eq!(ids.parent_span_id, ctx.parent_span_id);
            assert_eq!(ids.sampled, ctx.sampled.unwrap_or(true));
        }
        None => {
            assert!(!ids.from_xray);
            assert_eq!(ids.trace_id, derived_trace_id(rid));
            assert_eq!(ids.parent_span_id, None);
            assert!(ids.sampled);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(s) => check(s),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
