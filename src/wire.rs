//! The protobuf wire format, walked without decoding, so that the
//! function's OTLP requests are forwarded with every byte the bridge does
//! not need to change left as received, including fields newer than the
//! bridge's OTLP version, which a decode and re-encode (prost) would drop.
//!
//! The first part is generic: varints, tags and lengths ([`fields`] walks
//! the fields of one message). The second relies on the shape the three
//! `Export*ServiceRequest`s share (field numbers of OTLP 1.x):
//!
//! | message | field 1 | field 2 (repeated) |
//! |---|---|---|
//! | `Export{Trace,Metrics,Logs}ServiceRequest` | `resource_{spans,metrics,logs}` (repeated): the *entries* | – |
//! | `Resource{Spans,Metrics,Logs}` (an entry) | `resource` (`Resource`, whose field 1 is `attributes`) | `scope_{spans,metrics,logs}` |
//! | `Scope{Spans,Metrics,Logs}` | `scope` | `spans`, `metrics`, `log_records`: the *items* |
//!
//! - [`add_resource_attributes`] appends encoded `KeyValue`s to the
//!   `Resource` of chosen entries (a repeated field's elements may appear
//!   anywhere on the wire, so appending keeps every existing byte); every
//!   other byte stays as received.
//! - [`split`] cuts a request into parts of bounded size: between whole
//!   entries when they fit, else between whole scope entries, else between
//!   whole items, copying the enclosing messages' other fields (resource,
//!   scope, schema URLs, unknown fields) into each part, as the decoded
//!   splitter in [`crate::export::split`] does.
//!
//! Both expect a request that prost decoded without error (the receiver
//! decodes every request to check it and count its items); on anything else
//! they return a [`WireError`] and the caller falls back to re-encoding.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct WireError(&'static str);

/// How a field's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    I64,
    /// Length-delimited: strings, bytes, messages, packed repeated fields.
    Len,
    /// A group (deprecated): the fields up to the matching end tag.
    Group,
    I32,
}

/// One field of a message as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub wire_type: WireType,
    /// The whole field: tag, length (for [`WireType::Len`]) and value.
    pub raw: &'a [u8],
    /// The value: a `Len` field's bytes after the length, a group's fields
    /// before the end tag, else the varint or fixed-size bytes.
    pub value: &'a [u8],
}

/// Groups nested deeper than this are refused (prost's recursion limit).
const MAX_GROUP_DEPTH: u32 = 100;

/// Reads a varint at `*pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err(WireError("truncated varint"));
        };
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(WireError("varint over 64 bits"));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError("varint over 10 bytes"))
}

/// Reads a tag at `*pos`: field number and wire type.
fn read_tag(buf: &[u8], pos: &mut usize) -> Result<(u32, u8), WireError> {
    let key = read_varint(buf, pos)?;
    let number = key >> 3;
    if number == 0 || number > u64::from(u32::MAX >> 3) {
        return Err(WireError("field number out of range"));
    }
    Ok((number as u32, (key & 7) as u8))
}

/// Skips a value of wire type `wt` at `*pos` (a group: through the end tag
/// of field `number`).
fn skip_value(
    buf: &[u8],
    pos: &mut usize,
    wt: u8,
    number: u32,
    depth: u32,
) -> Result<(), WireError> {
    let need = |pos: &mut usize, n: usize| {
        if buf.len() - *pos < n {
            return Err(WireError("truncated field"));
        }
        *pos += n;
        Ok(())
    };
    match wt {
        0 => read_varint(buf, pos).map(|_| ()),
        1 => need(pos, 8),
        5 => need(pos, 4),
        2 => {
            let len = read_varint(buf, pos)?;
            let len = usize::try_from(len).map_err(|_| WireError("length out of range"))?;
            need(pos, len)
        }
        3 => {
            if depth >= MAX_GROUP_DEPTH {
                return Err(WireError("groups nested too deep"));
            }
            loop {
                if *pos >= buf.len() {
                    return Err(WireError("unterminated group"));
                }
                let (n, inner) = read_tag(buf, pos)?;
                if inner == 4 {
                    return if n == number {
                        Ok(())
                    } else {
                        Err(WireError("mismatched end of group"))
                    };
                }
                skip_value(buf, pos, inner, n, depth + 1)?;
            }
        }
        4 => Err(WireError("end of group without a start")),
        _ => Err(WireError("invalid wire type")),
    }
}

/// The fields of one message, in wire order.
pub fn fields(msg: &[u8]) -> Fields<'_> {
    Fields { msg, pos: 0 }
}

/// Iterator of [`fields`]; after an error it ends.
pub struct Fields<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.msg.len() {
            return None;
        }
        let start = self.pos;
        let result = (|| {
            let (number, wt) = read_tag(self.msg, &mut self.pos)?;
            let after_tag = self.pos;
            let mut value_start = after_tag;
            if wt == 2 {
                let mut p = after_tag;
                read_varint(self.msg, &mut p)?;
                value_start = p;
            }
            skip_value(self.msg, &mut self.pos, wt, number, 0)?;
            let end = self.pos;
            let (wire_type, value_end) = match wt {
                0 => (WireType::Varint, end),
                1 => (WireType::I64, end),
                2 => (WireType::Len, end),
                5 => (WireType::I32, end),
                // The value of a group stops before its end tag.
                _ => (WireType::Group, end - tag_len(number)),
            };
            Ok(Field {
                number,
                wire_type,
                raw: &self.msg[start..end],
                value: &self.msg[value_start..value_end],
            })
        })();
        if result.is_err() {
            self.pos = self.msg.len();
        }
        Some(result)
    }
}

/// Bytes of the tag of field `number`.
fn tag_len(number: u32) -> usize {
    encoded_len_varint(u64::from(number) << 3)
}

/// Bytes a length-delimited field `number` of `len` bytes takes.
pub fn len_field_size(number: u32, len: usize) -> usize {
    tag_len(number) + encoded_len_varint(len as u64) + len
}

/// Appends the tag and length of a length-delimited field `number` of `len` bytes.
pub fn put_len_header(out: &mut Vec<u8>, number: u32, len: usize) {
    encode_varint((u64::from(number) << 3) | 2, out);
    encode_varint(len as u64, out);
}

/// Appends a length-delimited field.
pub fn put_len_field(out: &mut Vec<u8>, number: u32, value: &[u8]) {
    put_len_header(out, number, value.len());
    out.extend_from_slice(value);
}

// ---- OTLP export requests ---------------------------------------------------

/// `resource_*` in a request, `resource` in an entry, `scope` in a scope entry.
const FIRST: u32 = 1;
/// The repeated children of an entry (scope entries) and of a scope entry (items).
const CHILDREN: u32 = 2;
/// `attributes` in `Resource`.
const ATTRIBUTES: u32 = 1;

/// A message's length-delimited fields `number`, and all its other fields
/// (raw, concatenated in wire order).
fn partition(msg: &[u8], number: u32) -> Result<(Vec<u8>, Vec<Field<'_>>), WireError> {
    let mut rest = Vec::new();
    let mut matching = Vec::new();
    for f in fields(msg) {
        let f = f?;
        if f.number == number && f.wire_type == WireType::Len {
            matching.push(f);
        } else {
            rest.extend_from_slice(f.raw);
        }
    }
    Ok((rest, matching))
}

/// Appends `add[i]` to the `Resource` attributes of the request's `i`-th
/// entry (in wire order, as prost decodes them into `resource_*`), creating
/// the `resource` field where it is missing. An entry with nothing to add,
/// and every field that is not on the way to an added attribute, keeps its
/// bytes. `add` must have one element per entry.
///
/// Where `resource` appears more than once in an entry (a decoder merges
/// them), the attributes go to the last occurrence, so the merged list ends
/// with them as it does when they are pushed to a decoded message.
pub fn add_resource_attributes(
    request: &[u8],
    add: &[Vec<KeyValue>],
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(request.len() + 64 * add.len());
    let mut index = 0;
    for f in fields(request) {
        let f = f?;
        if f.number != FIRST || f.wire_type != WireType::Len {
            out.extend_from_slice(f.raw);
            continue;
        }
        let attrs = add
            .get(index)
            .ok_or(WireError("more entries than expected"))?;
        index += 1;
        if attrs.is_empty() {
            out.extend_from_slice(f.raw);
            continue;
        }
        let mut encoded = Vec::new();
        for kv in attrs {
            put_len_field(&mut encoded, ATTRIBUTES, &kv.encode_to_vec());
        }
        let entry = entry_with_attributes(f.value, &encoded)?;
        put_len_field(&mut out, FIRST, &entry);
    }
    if index != add.len() {
        return Err(WireError("fewer entries than expected"));
    }
    Ok(out)
}

/// An entry whose (last) `resource` ends with `encoded` attribute fields.
fn entry_with_attributes(entry: &[u8], encoded: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut last = None;
    for (i, f) in fields(entry).enumerate() {
        let f = f?;
        if f.number == FIRST && f.wire_type == WireType::Len {
            last = Some(i);
        }
    }
    let mut out = Vec::with_capacity(entry.len() + encoded.len() + 8);
    let Some(last) = last else {
        out.extend_from_slice(entry);
        put_len_field(&mut out, FIRST, encoded);
        return Ok(out);
    };
    for (i, f) in fields(entry).enumerate() {
        let f = f?;
        if i == last {
            put_len_header(&mut out, FIRST, f.value.len() + encoded.len());
            out.extend_from_slice(f.value);
            out.extend_from_slice(encoded);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Ok(out)
}

/// Items (spans, metrics, log records) in an entry.
fn entry_items(entry: &[u8]) -> Result<u64, WireError> {
    let mut n = 0;
    for scope in fields(entry) {
        let scope = scope?;
        if scope.number == CHILDREN && scope.wire_type == WireType::Len {
            n += scope_items(scope.value)?;
        }
    }
    Ok(n)
}

/// Items in a scope entry.
fn scope_items(scope: &[u8]) -> Result<u64, WireError> {
    let mut n = 0;
    for f in fields(scope) {
        let f = f?;
        if f.number == CHILDREN && f.wire_type == WireType::Len {
            n += 1;
        }
    }
    Ok(n)
}

/// Items (spans or log records: the children of scope entries) in a request.
pub fn request_items(request: &[u8]) -> Result<u64, WireError> {
    let mut n = 0;
    for f in fields(request) {
        let f = f?;
        if f.number == FIRST && f.wire_type == WireType::Len {
            n += entry_items(f.value)?;
        }
    }
    Ok(n)
}

/// Splits a request into parts of at most `max` bytes, each with its item
/// count, keeping the items in order. A single item larger than `max` goes
/// alone in its part (within its entry and scope entry). The request's own
/// fields other than its entries (none in OTLP 1.x) are copied into every
/// part, like the entry and scope fields around split items.
pub fn split(request: &[u8], max: usize) -> Result<Vec<(Vec<u8>, u64)>, WireError> {
    if request.len() <= max {
        return Ok(vec![(request.to_vec(), request_items(request)?)]);
    }
    let (head, entries) = partition(request, FIRST)?;
    let mut packer = Packer {
        max,
        head,
        entries: Vec::new(),
        items: 0,
        open: None,
        parts: Vec::new(),
    };
    for e in entries {
        packer.entry(e)?;
    }
    packer.flush();
    Ok(packer.parts)
}

/// An entry being split: its other fields, the scope entries (whole, raw)
/// placed in the current part, and the scope entry being split.
struct OpenEntry {
    head: Vec<u8>,
    scopes: Vec<u8>,
    scope: Option<OpenScope>,
}

/// A scope entry being split: its other fields and the items in the current part.
struct OpenScope {
    head: Vec<u8>,
    items: Vec<u8>,
}

/// Fills parts greedily, in order.
struct Packer {
    max: usize,
    head: Vec<u8>,
    /// Whole entries (raw fields) in the current part.
    entries: Vec<u8>,
    items: u64,
    open: Option<OpenEntry>,
    parts: Vec<(Vec<u8>, u64)>,
}

impl OpenScope {
    fn size(&self, extra: usize) -> usize {
        len_field_size(CHILDREN, self.head.len() + self.items.len() + extra)
    }
}

impl OpenEntry {
    /// Encoded size with `scope_extra` more bytes of whole scope entries, or
    /// `item_extra` more bytes of items in the open scope entry.
    fn size(&self, scope_extra: usize, item_extra: usize) -> usize {
        let scope = match &self.scope {
            Some(s) if !s.items.is_empty() || item_extra > 0 => s.size(item_extra),
            _ => 0,
        };
        len_field_size(
            FIRST,
            self.head.len() + self.scopes.len() + scope_extra + scope,
        )
    }

    fn has_content(&self) -> bool {
        !self.scopes.is_empty() || self.scope.as_ref().is_some_and(|s| !s.items.is_empty())
    }

    /// Moves the open scope entry (if it holds items) into `scopes`.
    fn close_scope(&mut self) {
        if let Some(s) = self.scope.take() {
            if !s.items.is_empty() {
                put_len_header(&mut self.scopes, CHILDREN, s.head.len() + s.items.len());
                self.scopes.extend_from_slice(&s.head);
                self.scopes.extend_from_slice(&s.items);
            }
        }
    }

    /// Appends the entry (as placed in the current part) to `out`.
    fn write(&self, out: &mut Vec<u8>) {
        if !self.has_content() {
            return;
        }
        let scope = self
            .scope
            .as_ref()
            .filter(|s| !s.items.is_empty())
            .map_or(0, |s| s.size(0));
        put_len_header(out, FIRST, self.head.len() + self.scopes.len() + scope);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.scopes);
        if let Some(s) = self.scope.as_ref().filter(|s| !s.items.is_empty()) {
            put_len_header(out, CHILDREN, s.head.len() + s.items.len());
            out.extend_from_slice(&s.head);
            out.extend_from_slice(&s.items);
        }
    }
}

impl Packer {
    fn base(&self) -> usize {
        self.head.len() + self.entries.len()
    }

    fn has_content(&self) -> bool {
        !self.entries.is_empty() || self.open.as_ref().is_some_and(OpenEntry::has_content)
    }

    /// Ends the current part (if it holds anything); an open entry and
    /// scope entry continue, with their other fields, in the next one.
    fn flush(&mut self) {
        if !self.has_content() {
            return;
        }
        let mut part = Vec::with_capacity(self.max.min(self.base() + 1024));
        part.extend_from_slice(&self.head);
        part.extend_from_slice(&self.entries);
        if let Some(open) = &mut self.open {
            open.write(&mut part);
            open.scopes.clear();
            if let Some(s) = &mut open.scope {
                s.items.clear();
            }
        }
        self.entries.clear();
        self.parts.push((part, std::mem::take(&mut self.items)));
    }

    /// Moves the open entry (if it holds anything) into `entries`.
    fn close_entry(&mut self) {
        if let Some(mut open) = self.open.take() {
            open.close_scope();
            open.write(&mut self.entries);
        }
    }

    fn entry(&mut self, e: Field<'_>) -> Result<(), WireError> {
        self.close_entry();
        if self.base() + e.raw.len() > self.max && self.has_content() {
            self.flush();
        }
        if self.base() + e.raw.len() <= self.max {
            self.entries.extend_from_slice(e.raw);
            self.items += entry_items(e.value)?;
            return Ok(());
        }
        let (head, scopes) = partition(e.value, CHILDREN)?;
        if scopes.is_empty() {
            // Nothing to split it by: alone, whatever its size.
            self.entries.extend_from_slice(e.raw);
            return Ok(());
        }
        self.open = Some(OpenEntry {
            head,
            scopes: Vec::new(),
            scope: None,
        });
        for s in scopes {
            self.scope(s)?;
        }
        Ok(())
    }

    fn open(&mut self) -> &mut OpenEntry {
        // Invariant: `entry` opens the entry before placing its scope
        // entries, and nothing closes it until the next entry.
        self.open
            .as_mut()
            .expect("an entry is open while its scope entries are placed")
    }

    fn scope_fits(&self, len: usize) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| self.base() + o.size(len, 0) <= self.max)
    }

    fn scope(&mut self, s: Field<'_>) -> Result<(), WireError> {
        self.open().close_scope();
        if !self.scope_fits(s.raw.len()) && self.has_content() {
            self.flush();
        }
        if self.scope_fits(s.raw.len()) {
            self.open().scopes.extend_from_slice(s.raw);
            self.items += scope_items(s.value)?;
            return Ok(());
        }
        let (head, items) = partition(s.value, CHILDREN)?;
        if items.is_empty() {
            self.open().scopes.extend_from_slice(s.raw);
            return Ok(());
        }
        self.open().scope = Some(OpenScope {
            head,
            items: Vec::new(),
        });
        for item in items {
            let fits = self
                .open
                .as_ref()
                .is_some_and(|o| self.base() + o.size(0, item.raw.len()) <= self.max);
            if !fits && self.has_content() {
                self.flush();
            }
            if let Some(scope) = &mut self.open().scope {
                scope.items.extend_from_slice(item.raw);
            }
            self.items += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use proptest::prelude::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        crate::mapping::proto::kv_str(key, value)
    }

    fn varint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(v, &mut out);
        out
    }

    /// A varint field `number` = `v`.
    fn varint_field(number: u32, v: u64) -> Vec<u8> {
        let mut out = varint(u64::from(number) << 3);
        out.extend(varint(v));
        out
    }

    fn len_field(number: u32, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_len_field(&mut out, number, value);
        out
    }

    #[test]
    fn varints_round_trip_and_malformed_ones_are_errors() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let bytes = varint(v);
            let mut pos = 0;
            assert_eq!(read_varint(&bytes, &mut pos), Ok(v));
            assert_eq!(pos, bytes.len());
        }
        let mut pos = 0;
        assert!(read_varint(&[0x80, 0x80], &mut pos).is_err(), "truncated");
        let mut pos = 0;
        assert!(read_varint(&[0xff; 11], &mut pos).is_err(), "over 10 bytes");
        let mut pos = 0;
        assert!(
            read_varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &mut pos
            )
            .is_err(),
            "over 64 bits"
        );
    }

    #[test]
    fn fields_walk_every_wire_type_including_groups() {
        let group = {
            // Field 9 as a group holding a varint and a nested group 10.
            let mut g = varint((9 << 3) | 3);
            g.extend(varint_field(1, 5));
            g.extend(varint((10 << 3) | 3));
            g.extend(varint((10 << 3) | 4));
            g.extend(varint((9 << 3) | 4));
            g
        };
        let parts: Vec<Vec<u8>> = vec![
            varint_field(1, 150),
            [varint((2 << 3) | 1), vec![1; 8]].concat(),
            len_field(3, b"hello"),
            group.clone(),
            [varint((4 << 3) | 5), vec![2; 4]].concat(),
            len_field(100_000, b""),
        ];
        let msg = parts.concat();
        let walked: Vec<Field<'_>> = fields(&msg).collect::<Result<_, _>>().unwrap();
        assert_eq!(walked.len(), parts.len());
        for (f, raw) in walked.iter().zip(&parts) {
            assert_eq!(f.raw, &raw[..]);
        }
        assert_eq!(
            walked
                .iter()
                .map(|f| (f.number, f.wire_type))
                .collect::<Vec<_>>(),
            [
                (1, WireType::Varint),
                (2, WireType::I64),
                (3, WireType::Len),
                (9, WireType::Group),
                (4, WireType::I32),
                (100_000, WireType::Len),
            ]
        );
        assert_eq!(walked[2].value, b"hello");
        assert_eq!(walked[3].value, &group[1..group.len() - 1]);

        for bad in [
            vec![0x08],                                            // varint value missing
            vec![0x12, 0x05, b'a'],                                // length past the end
            vec![0x00, 0x01],                                      // field number 0
            vec![0x0f],                                            // wire type 7
            vec![0x4c],                                            // end group without a start
            vec![0x4b, 0x08, 0x01],                                // group without an end
            [varint((9 << 3) | 3), varint((8 << 3) | 4)].concat(), // mismatched end
        ] {
            assert!(
                fields(&bad).any(|f| f.is_err()),
                "{bad:02x?} walked without error"
            );
        }
    }

    /// A span with an unknown field 1000 (a string), as a newer OTLP could send.
    fn span_with_unknown_field(name: &str) -> Vec<u8> {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: name.into(),
            ..Span::default()
        };
        [span.encode_to_vec(), len_field(1000, b"from the future")].concat()
    }

    /// A trace request with unknown fields in a Span (1000), a ScopeSpans
    /// (500), a Resource (77), a ResourceSpans (999) and the request (50),
    /// and the spans' raw bytes.
    fn request_with_unknown_fields() -> (Vec<u8>, Vec<Vec<u8>>) {
        let spans: Vec<Vec<u8>> = (0..3)
            .map(|i| span_with_unknown_field(&format!("span {i} {}", "s".repeat(200))))
            .collect();
        let scope = [
            len_field(
                1,
                &InstrumentationScope {
                    name: "fn".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            len_field(2, &spans[0]),
            len_field(2, &spans[1]),
            len_field(2, &spans[2]),
            varint_field(500, 7),
        ]
        .concat();
        let resource = [
            len_field(1, &kv("service.name", "orders").encode_to_vec()),
            varint_field(77, 1),
        ]
        .concat();
        let entry = [
            varint_field(999, 42),
            len_field(2, &scope),
            len_field(1, &resource),
            len_field(3, b"https://opentelemetry.io/schemas/1.99.0"),
        ]
        .concat();
        let request = [len_field(1, &entry), varint_field(50, 3)].concat();
        (request, spans)
    }

    /// Whether `field` (raw bytes) is one of the fields of `msg`.
    fn has_field(msg: &[u8], field: &[u8]) -> bool {
        fields(msg).any(|f| f.is_ok_and(|f| f.raw == field))
    }

    fn only_len_field(msg: &[u8], number: u32) -> Vec<u8> {
        let found: Vec<Field<'_>> = fields(msg)
            .map(Result::unwrap)
            .filter(|f| f.number == number && f.wire_type == WireType::Len)
            .collect();
        assert_eq!(found.len(), 1, "one field {number}");
        found[0].value.to_vec()
    }

    #[test]
    fn added_attributes_keep_every_unknown_field() {
        let (request, spans) = request_with_unknown_fields();
        let decoded = ExportTraceServiceRequest::decode(&request[..]).expect("prost decodes it");
        let add = vec![vec![
            kv("cloud.provider", "aws"),
            kv("faas.name", "orders-fn"),
        ]];
        let out = add_resource_attributes(&request, &add).unwrap();

        // Decoded, it is the prost enrichment.
        let mut expected = decoded;
        expected.resource_spans[0]
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .extend(add[0].clone());
        assert_eq!(
            ExportTraceServiceRequest::decode(&out[..]).unwrap(),
            expected
        );

        // On the wire, everything else is as received.
        assert!(
            has_field(&out, &varint_field(50, 3)),
            "request's unknown field"
        );
        let entry = only_len_field(&out, 1);
        assert!(
            has_field(&entry, &varint_field(999, 42)),
            "entry's unknown field"
        );
        let scope = only_len_field(&entry, 2);
        for span in &spans {
            assert!(
                has_field(&scope, &len_field(2, span)),
                "span kept byte for byte"
            );
        }
        assert!(
            has_field(&scope, &varint_field(500, 7)),
            "scope entry's unknown field"
        );
        let resource = only_len_field(&entry, 1);
        assert!(
            has_field(&resource, &varint_field(77, 1)),
            "resource's unknown field"
        );
        assert!(resource.starts_with(&len_field(1, &kv("service.name", "orders").encode_to_vec())));

        // Nothing to add: the same bytes.
        assert_eq!(
            add_resource_attributes(&request, &[vec![]]).unwrap(),
            request
        );
        // One list per entry, no more, no less.
        assert!(add_resource_attributes(&request, &[]).is_err());
        assert!(add_resource_attributes(&request, &[vec![], vec![]]).is_err());
    }

    #[test]
    fn a_missing_resource_is_created() {
        let entry = len_field(2, &len_field(2, &Span::default().encode_to_vec()));
        let request = len_field(1, &entry);
        let out = add_resource_attributes(&request, &[vec![kv("faas.name", "f")]]).unwrap();
        let decoded = ExportTraceServiceRequest::decode(&out[..]).unwrap();
        assert_eq!(
            decoded.resource_spans[0].resource,
            Some(Resource {
                attributes: vec![kv("faas.name", "f")],
                ..Resource::default()
            })
        );
        assert!(
            has_field(&only_len_field(&out, 1), &entry[..])
                || out.windows(entry.len()).any(|w| w == entry)
        );
    }

    #[test]
    fn split_parts_keep_unknown_fields_around_every_item() {
        let (request, spans) = request_with_unknown_fields();
        // Room for one span per part, not three.
        let parts = split(&request, 600).unwrap();
        assert_eq!(
            parts.len(),
            3,
            "{:?}",
            parts.iter().map(|p| p.0.len()).collect::<Vec<_>>()
        );
        for ((part, items), span) in parts.iter().zip(&spans) {
            assert_eq!(*items, 1);
            assert!(part.len() <= 600, "{}", part.len());
            ExportTraceServiceRequest::decode(&part[..]).expect("each part decodes");
            assert!(has_field(part, &varint_field(50, 3)));
            let entry = only_len_field(part, 1);
            assert!(has_field(&entry, &varint_field(999, 42)));
            assert!(has_field(&only_len_field(&entry, 1), &varint_field(77, 1)));
            let scope = only_len_field(&entry, 2);
            assert!(has_field(&scope, &varint_field(500, 7)));
            assert!(
                has_field(&scope, &len_field(2, span)),
                "span kept byte for byte"
            );
        }
        // Everything fits: one part, the request as it is.
        assert_eq!(
            split(&request, request.len()).unwrap(),
            vec![(request.clone(), 3)]
        );
    }

    #[test]
    fn split_goes_between_whole_entries_when_they_fit() {
        let entry = |name: &str| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", name)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        name: "x".repeat(100),
                        ..Span::default()
                    };
                    2
                ],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        };
        let entries: Vec<Vec<u8>> = ["a", "b", "c"]
            .iter()
            .map(|n| len_field(1, &entry(n).encode_to_vec()))
            .collect();
        let request = entries.concat();
        let parts = split(&request, entries[0].len() + entries[1].len()).unwrap();
        assert_eq!(
            parts,
            vec![
                ([entries[0].clone(), entries[1].clone()].concat(), 4),
                (entries[2].clone(), 2)
            ]
        );
    }

    // ---- properties ----------------------------------------------------------

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "service.name",
            "faas.name",
            "faas.version",
            "cloud.provider",
            "cloud.region",
            "host.name",
        ])
        .prop_map(str::to_owned)
    }

    fn attrs(max: usize) -> impl Strategy<Value = Vec<KeyValue>> {
        prop::collection::vec((key(), "[a-z]{0,12}").prop_map(|(k, v)| kv(&k, &v)), 0..max)
    }

    fn resource_spans() -> impl Strategy<Value = ResourceSpans> {
        let span =
            ("[a-z ]{0,40}", attrs(3), any::<u64>()).prop_map(|(name, attributes, t)| Span {
                trace_id: vec![7; 16],
                span_id: t.to_le_bytes().to_vec(),
                name,
                attributes,
                start_time_unix_nano: t,
                ..Span::default()
            });
        let scope = (
            prop::option::of("[a-z.]{0,10}"),
            prop::collection::vec(span, 0..6),
            "[a-z:/.]{0,12}",
        )
            .prop_map(|(name, spans, schema_url)| ScopeSpans {
                scope: name.map(|name| InstrumentationScope {
                    name,
                    ..Default::default()
                }),
                spans,
                schema_url,
            });
        (
            prop::option::of((attrs(5), 0u32..3)),
            prop::collection::vec(scope, 0..4),
            "[a-z:/.]{0,12}",
        )
            .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
                resource: resource.map(|(attributes, dropped_attributes_count)| Resource {
                    attributes,
                    dropped_attributes_count,
                    ..Resource::default()
                }),
                scope_spans,
                schema_url,
            })
    }

    /// An entry encoded with its resource and schema URL at positions
    /// chosen by `order` among its scope entries (which keep their order),
    /// and its resource optionally written as two occurrences (which a
    /// decoder merges: attributes concatenated, the scalar from the last).
    fn encode_entry(rs: &ResourceSpans, order: usize, split_resource: bool) -> Vec<u8> {
        let mut fs: Vec<Vec<u8>> = rs
            .scope_spans
            .iter()
            .map(|ss| len_field(2, &ss.encode_to_vec()))
            .collect();
        if !rs.schema_url.is_empty() {
            fs.insert(
                order % (fs.len() + 1),
                len_field(3, rs.schema_url.as_bytes()),
            );
        }
        if let Some(r) = &rs.resource {
            let at = (order / 5) % (fs.len() + 1);
            if split_resource && !r.attributes.is_empty() {
                let (a, b) = r.attributes.split_at(r.attributes.len() / 2);
                let first = Resource {
                    attributes: a.to_vec(),
                    ..Resource::default()
                };
                let second = Resource {
                    attributes: b.to_vec(),
                    ..r.clone()
                };
                fs.insert(at, len_field(1, &first.encode_to_vec()));
                let later = at + 1 + (order / 25) % (fs.len() - at);
                fs.insert(later, len_field(1, &second.encode_to_vec()));
            } else {
                fs.insert(at, len_field(1, &r.encode_to_vec()));
            }
        }
        fs.concat()
    }

    /// A span with where it sits: resource, scope, the two schema URLs.
    type Placed = (
        Option<Resource>,
        Option<InstrumentationScope>,
        String,
        String,
        Span,
    );

    /// Every span with where it sits, in order.
    fn flat(req: &ExportTraceServiceRequest) -> Vec<Placed> {
        req.resource_spans
            .iter()
            .flat_map(|rs| {
                rs.scope_spans.iter().flat_map(move |ss| {
                    ss.spans.iter().map(move |s| {
                        (
                            rs.resource.clone(),
                            ss.scope.clone(),
                            rs.schema_url.clone(),
                            ss.schema_url.clone(),
                            s.clone(),
                        )
                    })
                })
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Enrichment by wire rewrite decodes to the same message as
        /// enrichment of the decoded request (prost), whatever the field
        /// order on the wire and however the resource is spread.
        #[test]
        fn wire_enrichment_decodes_like_prost_enrichment(
            entries in prop::collection::vec((resource_spans(), 0usize..1000, any::<bool>()), 0..4),
            lambda in attrs(4),
        ) {
            let request: Vec<u8> = entries
                .iter()
                .map(|(rs, order, split)| len_field(1, &encode_entry(rs, *order, *split)))
                .collect::<Vec<_>>()
                .concat();
            let decoded = ExportTraceServiceRequest::decode(&request[..]).unwrap();
            prop_assert_eq!(
                &decoded.resource_spans,
                &entries.iter().map(|e| e.0.clone()).collect::<Vec<_>>()
            );
            // What the receiver adds: the lambda attributes an entry lacks.
            let add: Vec<Vec<KeyValue>> = decoded
                .resource_spans
                .iter()
                .map(|rs| {
                    let have = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
                    lambda
                        .iter()
                        .filter(|kv| !have.iter().any(|h| h.key == kv.key))
                        .cloned()
                        .collect()
                })
                .collect();
            let mut by_prost = decoded.clone();
            for (rs, add) in by_prost.resource_spans.iter_mut().zip(&add) {
                if !add.is_empty() {
                    rs.resource.get_or_insert_with(Resource::default).attributes.extend(add.iter().cloned());
                }
            }
            let by_wire = add_resource_attributes(&request, &add).unwrap();
            prop_assert_eq!(ExportTraceServiceRequest::decode(&by_wire[..]).unwrap(), by_prost);
            if add.iter().all(Vec::is_empty) {
                prop_assert_eq!(by_wire, request);
            }
        }

        /// Split parts stay within the bound (but for a part holding a
        /// single item), hold every span once, in order, with its resource,
        /// scope and schema URLs, and count their items right.
        #[test]
        fn wire_split_keeps_every_span_with_its_context(
            entries in prop::collection::vec(resource_spans(), 0..5),
            max in 64usize..3000,
        ) {
            let req = ExportTraceServiceRequest { resource_spans: entries };
            let bytes = req.encode_to_vec();
            let parts = split(&bytes, max).unwrap();
            let mut joined = Vec::new();
            for (part, items) in &parts {
                let decoded = ExportTraceServiceRequest::decode(&part[..]).unwrap();
                let f = flat(&decoded);
                prop_assert_eq!(*items, f.len() as u64);
                prop_assert!(part.len() <= max || f.len() <= 1, "{} bytes, {} spans, max {}", part.len(), f.len(), max);
                joined.extend(f);
            }
            prop_assert_eq!(joined, flat(&req));
            prop_assert_eq!(request_items(&bytes).unwrap(), flat(&req).len() as u64);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Requests with a few bytes changed at random: whenever prost still
        /// decodes them, the wire functions either refuse them (the receiver
        /// then re-encodes) or agree with prost; they never panic.
        #[test]
        fn mutated_requests_never_panic_and_agree_with_prost(
            entries in prop::collection::vec(resource_spans(), 1..3),
            mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            max in 64usize..2000,
        ) {
            let mut bytes = ExportTraceServiceRequest { resource_spans: entries }.encode_to_vec();
            for (at, b) in &mutations {
                let i = at.index(bytes.len());
                bytes[i] = *b;
            }
            let Ok(decoded) = ExportTraceServiceRequest::decode(&bytes[..]) else {
                return Ok(());
            };
            let add: Vec<Vec<KeyValue>> =
                decoded.resource_spans.iter().map(|_| vec![kv("cloud.provider", "aws")]).collect();
            if let Ok(out) = add_resource_attributes(&bytes, &add) {
                let mut expected = decoded.clone();
                for rs in &mut expected.resource_spans {
                    rs.resource.get_or_insert_with(Resource::default).attributes.push(kv("cloud.provider", "aws"));
                }
                prop_assert_eq!(ExportTraceServiceRequest::decode(&out[..]).unwrap(), expected);
            }
            if let Ok(parts) = split(&bytes, max) {
                let mut joined = Vec::new();
                for (part, _) in &parts {
                    joined.extend(flat(&ExportTraceServiceRequest::decode(&part[..]).unwrap()));
                }
                prop_assert_eq!(joined, flat(&decoded));
            }
        }
    }

    #[test]
    fn logs_split_the_same_way() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "fn")],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: (0..50)
                        .map(|i| LogRecord {
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!(
                                    "{i} {}",
                                    "l".repeat(100)
                                ))),
                            }),
                            ..LogRecord::default()
                        })
                        .collect(),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let parts = split(&req.encode_to_vec(), 1024).unwrap();
        assert!(parts.len() >= 6, "{}", parts.len());
        let mut records = Vec::new();
        for (part, items) in parts {
            assert!(part.len() <= 1024);
            let p = ExportLogsServiceRequest::decode(&part[..]).unwrap();
            assert_eq!(p.resource_logs[0].resource, req.resource_logs[0].resource);
            let r = &p.resource_logs[0].scope_logs[0].log_records;
            assert_eq!(items, r.len() as u64);
            records.extend(r.iter().cloned());
        }
        assert_eq!(records, req.resource_logs[0].scope_logs[0].log_records);
    }
}
