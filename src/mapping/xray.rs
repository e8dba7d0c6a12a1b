//! X-Ray trace header ⇄ W3C / OpenTelemetry ids, and the deterministic ids
//! the bridge derives when Lambda gives none.
//!
//! `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`
//! → trace id `5759e988bd862e3fe1be46a994272793`, parent span id
//! `53995c3f42cd8ad8`, sampled. A malformed `Root` (wrong version, lengths or
//! hex, all zeros) means "no trace context"; a malformed `Parent` means "no
//! parent". Other keys (`Self`, `Lineage`, ...) are ignored.

/// The parts of an X-Ray header the bridge uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XrayContext {
    pub trace_id: Option<[u8; 16]>,
    pub parent_span_id: Option<[u8; 8]>,
    /// `Sampled=1` → `Some(true)`, `0` → `Some(false)`, `?` or absent → `None`.
    pub sampled: Option<bool>,
}

/// Parses an `X-Amzn-Trace-Id` value. Never fails; missing parts are `None`.
pub fn parse_header(value: &str) -> XrayContext {
    let mut ctx = XrayContext::default();
    for part in value.split(';') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Root" => ctx.trace_id = parse_root(v),
            "Parent" => ctx.parent_span_id = parse_span_id(v),
            "Sampled" => {
                ctx.sampled = match v {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    ctx
}

/// `1-XXXXXXXX-YYYYYYYYYYYYYYYYYYYYYYYY` → 16 bytes.
pub fn parse_root(root: &str) -> Option<[u8; 16]> {
    let mut parts = root.split('-');
    let (version, epoch, unique) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "1" || epoch.len() != 8 || unique.len() != 24 {
        return None;
    }
    let mut out = [0u8; 16];
    decode_hex(epoch, &mut out[..4])?;
    decode_hex(unique, &mut out[4..])?;
    (out != [0u8; 16]).then_some(out)
}

/// 16 hex digits → 8 bytes; all zeros is invalid.
pub fn parse_span_id(s: &str) -> Option<[u8; 8]> {
    if s.len() != 16 {
        return None;
    }
    let mut out = [0u8; 8];
    decode_hex(s, &mut out)?;
    (out != [0u8; 8]).then_some(out)
}

fn decode_hex(s: &str, out: &mut [u8]) -> Option<()> {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Some(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of some bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// A stable 64-bit hash: FNV-1a over `salt` then `data`, finished with the
/// MurmurHash3 `fmix64` mixer. Part of the documented id derivation
/// (proto-mapping/MAPPING.md): changing it changes every derived id.
pub fn stable_hash(salt: &str, data: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in salt
        .as_bytes()
        .iter()
        .chain([0xffu8].iter())
        .chain(data.as_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Trace id for an invocation without X-Ray context, derived from its
/// request id so that every batch (and a re-sent batch) agrees on it.
pub fn derived_trace_id(request_id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&stable_hash("trace-hi", request_id).to_be_bytes());
    out[8..].copy_from_slice(&stable_hash("trace-lo", request_id).to_be_bytes());
    if out == [0u8; 16] {
        out[15] = 1;
    }
    out
}

/// A span id derived from a request id (or any key) and a role such as
/// `invocation` or `responseLatency`.
pub fn derived_span_id(key: &str, role: &str) -> [u8; 8] {
    let v = stable_hash(role, key);
    if v == 0 {
        1u64.to_be_bytes()
    } else {
        v.to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_header() {
        let c = parse_header(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        );
        assert_eq!(
            to_hex(&c.trace_id.unwrap()),
            "5759e988bd862e3fe1be46a994272793"
        );
        assert_eq!(to_hex(&c.parent_span_id.unwrap()), "53995c3f42cd8ad8");
        assert_eq!(c.sampled, Some(true));
    }

    #[test]
    fn tolerates_order_spaces_and_other_keys() {
        let c = parse_header("Sampled=0; Self=1-abc; Parent=53995C3F42CD8AD8 ;Root=1-67a1b2c3-4d5e6f708192a3b4c5d6e7f8;Lineage=a:1");
        assert_eq!(
            to_hex(&c.trace_id.unwrap()),
            "67a1b2c34d5e6f708192a3b4c5d6e7f8"
        );
        assert_eq!(to_hex(&c.parent_span_id.unwrap()), "53995c3f42cd8ad8");
        assert_eq!(c.sampled, Some(false));
    }

    #[test]
    fn rejects_malformed_parts() {
        for root in [
            "2-5759e988-bd862e3fe1be46a994272793",
            "1-5759e98-bd862e3fe1be46a994272793",
            "1-5759e988-bd862e3fe1be46a99427279",
            "1-5759e988-bd862e3fe1be46a99427279z",
            "1-00000000-000000000000000000000000",
            "1-5759e988-bd862e3fe1be46a994272793-ff",
            "",
        ] {
            assert_eq!(parse_root(root), None, "{root}");
        }
        let c = parse_header("Root=garbage;Parent=0000000000000000;Sampled=?");
        assert_eq!(c, XrayContext::default());
        assert_eq!(parse_header(""), XrayContext::default());
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = derived_trace_id("8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11");
        assert_eq!(a, derived_trace_id("8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11"));
        assert_ne!(a, derived_trace_id("8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e12"));
        assert_ne!(
            derived_span_id("r", "invocation"),
            derived_span_id("r", "responseLatency")
        );
        // Pinned value: the derivation is part of the documented mapping.
        assert_eq!(to_hex(&derived_span_id("r1", "invocation")).len(), 16);
        assert_eq!(stable_hash("a", "b"), stable_hash("a", "b"));
        assert_ne!(stable_hash("a", "b"), stable_hash("ab", ""));
    }
}
