//! The HTTP/1.1 the Lambda APIs speak, written out: requests encoded by
//! hand, responses read here (status line, headers, body framing).
//! [`super::connection`] carries them.
//!
//! Why not the HTTP client the exporter uses: before the first `/next` the
//! extension has no async runtime yet (docs/PERFORMANCE.md, "The first
//! `/next` before the async runtime"), so registering, subscribing and
//! sending the first `/next` are blocking calls on a `std` socket.
//!
//! What is understood of a response: the status, headers, and a body
//! framed by `Content-Length`, by chunked transfer encoding, or by the end
//! of the connection; `Connection: close` and HTTP/1.0 end the connection's
//! reuse. Sizes are bounded: [`MAX_HEAD`] for the status line and headers,
//! [`MAX_BODY`] for the body.

use bytes::Bytes;

use super::{snippet, ApiError};

/// Largest status line plus headers read.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest body read: the Lambda APIs answer with small JSON documents
/// (an INVOKE event is well under 1 KiB).
pub const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 64;

/// A request to the Lambda APIs.
#[derive(Debug, Clone)]
pub struct Request {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// What the request is, for error messages (`register`, `event/next`).
    pub what: &'static str,
}

impl Request {
    pub fn new(method: &'static str, path: String, what: &'static str) -> Self {
        Request {
            method,
            path,
            headers: Vec::new(),
            body: Vec::new(),
            what,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// A JSON body (with its `Content-Type`).
    pub fn json(mut self, body: String) -> Self {
        self.headers
            .push(("Content-Type", "application/json".to_owned()));
        self.body = body.into_bytes();
        self
    }

    /// The request's bytes as sent to `host` (`AWS_LAMBDA_RUNTIME_API`).
    /// Header values with a line break would end the header early: they are
    /// cut there (the values come from Lambda and the extension itself).
    pub fn encode(&self, host: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        let line = |out: &mut Vec<u8>, name: &str, value: &str| {
            let value = value.split(['\r', '\n']).next().unwrap_or("");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        line(&mut out, "Host", host);
        for (name, value) in &self.headers {
            line(&mut out, name, value);
        }
        if !self.body.is_empty() || self.method != "GET" {
            line(&mut out, "Content-Length", &self.body.len().to_string());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A status code, headers and body read in full.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl ApiResponse {
    /// The first value of header `name` (any case); `None` when absent or
    /// not text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response read from the front of a buffer.
#[derive(Debug)]
pub struct Parsed {
    pub response: ApiResponse,
    /// The connection may carry another request.
    pub keep_alive: bool,
}

/// How the body of a response is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads a response from `buf` (everything received so far; `eof` when the
/// peer has closed). `Ok(None)`: more bytes are needed. Interim (1xx)
/// responses are skipped. Bytes after the response (never expected: one
/// request at a time) make the connection unusable for another request.
pub fn parse_response(
    buf: &[u8],
    eof: bool,
    what: &'static str,
) -> Result<Option<Parsed>, ApiError> {
    let protocol = |detail: String| ApiError::Protocol { what, detail };
    let mut start = 0;
    loop {
        let head = match parse_head(&buf[start..]).map_err(protocol)? {
            Some(head) => head,
            None => {
                if buf.len() - start > MAX_HEAD {
                    return Err(protocol(format!("response head over {MAX_HEAD} bytes")));
                }
                if eof {
                    return Err(closed_early(what, buf.len() - start));
                }
                return Ok(None);
            }
        };
        let status = head.status;
        let body_start = start + head.len;
        if (100..200).contains(&status) {
            start = body_start;
            continue;
        }
        let mut close = head.minor_version == 0;
        let mut chunked = false;
        let mut length = None;
        let mut kept = Vec::with_capacity(head.headers.len());
        for (name, value) in head.headers {
            if name.eq_ignore_ascii_case("connection") {
                let tokens = || value.split(',').map(str::trim);
                if tokens().any(|t| t.eq_ignore_ascii_case("close")) {
                    close = true;
                } else if tokens().any(|t| t.eq_ignore_ascii_case("keep-alive")) {
                    close = false;
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("content-length") {
                let n: usize = value
                    .parse()
                    .map_err(|_| protocol(format!("bad Content-Length {value:?}")))?;
                if length.is_some_and(|m| m != n) {
                    return Err(protocol("conflicting Content-Length headers".into()));
                }
                length = Some(n);
            }
            kept.push((name.to_owned(), value.to_owned()));
        }
        let framing = if status == 204 || status == 304 {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let rest = &buf[body_start..];
        let (body, used) = match framing {
            Framing::Length(n) => {
                if n > MAX_BODY {
                    return Err(protocol(format!("body of {n} bytes, over {MAX_BODY}")));
                }
                if rest.len() < n {
                    if eof {
                        return Err(closed_early(what, rest.len()));
                    }
                    return Ok(None);
                }
                (rest[..n].to_vec(), n)
            }
            Framing::Chunked => match dechunk(rest).map_err(protocol)? {
                Some(done) => done,
                None if eof => return Err(closed_early(what, rest.len())),
                None => return Ok(None),
            },
            Framing::UntilClose => {
                if rest.len() > MAX_BODY {
                    return Err(protocol(format!("body over {MAX_BODY} bytes")));
                }
                if !eof {
                    return Ok(None);
                }
                close = true;
                (rest.to_vec(), rest.len())
            }
        };
        let trailing = rest.len() > used;
        return Ok(Some(Parsed {
            response: ApiResponse {
                status,
                headers: kept,
                body: Bytes::from(body),
            },
            keep_alive: !close && !trailing && !eof,
        }));
    }
}

/// A response's status line and headers.
struct Head<'a> {
    /// The `x` of `HTTP/1.x`.
    minor_version: u8,
    status: u16,
    headers: Vec<(&'a str, &'a str)>,
    /// Bytes up to and including the empty line that ends the head.
    len: usize,
}

/// Reads the head at the front of `buf` (RFC 9112 §2-5): `Ok(None)` while
/// the empty line ending it has not arrived; an error as soon as the status
/// line is complete and is not one, or for a header line that is not
/// `name: value` (folded lines included), or over [`MAX_HEADERS`] headers.
/// Lines may end in CRLF or a bare LF. A value that is not UTF-8 reads as
/// empty (the values read here are ASCII: identifiers, lengths, tokens).
fn parse_head(buf: &[u8]) -> Result<Option<Head<'_>>, String> {
    let mut lines = Vec::new();
    let mut at = 0;
    let len = loop {
        let Some(nl) = buf[at..].iter().position(|&b| b == b'\n') else {
            if lines.is_empty() {
                // Not even the status line yet: reject garbage early.
                status_prefix_ok(&buf[at..])?;
            }
            return Ok(None);
        };
        let line = &buf[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        if line.is_empty() {
            if lines.is_empty() {
                // Blank lines before the status line are tolerated (§2.2).
                continue;
            }
            break at;
        }
        if lines.len() > MAX_HEADERS {
            return Err(format!("over {MAX_HEADERS} headers"));
        }
        lines.push(line);
    };
    let status_line = std::str::from_utf8(lines[0]).map_err(|_| "status line is not text")?;
    let bad_status = || {
        format!(
            "not an HTTP/1 status line: {:?}",
            snippet(status_line.as_bytes())
        )
    };
    let rest = status_line.strip_prefix("HTTP/1.").ok_or_else(bad_status)?;
    let minor_version = match rest.as_bytes().first() {
        Some(d @ b'0'..=b'9') => d - b'0',
        _ => return Err(bad_status()),
    };
    let code = rest
        .get(1..)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(bad_status)?;
    let digits = code
        .get(..3)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let status: u16 = digits.and_then(|d| d.parse().ok()).ok_or_else(bad_status)?;
    if code.len() > 3 && !code[3..].starts_with(' ') {
        return Err(bad_status());
    }
    let mut headers = Vec::with_capacity(lines.len() - 1);
    for line in &lines[1..] {
        let colon = line.iter().position(|&b| b == b':');
        let (name, value) = match colon {
            Some(c) if c > 0 => (&line[..c], &line[c + 1..]),
            _ => {
                return Err(format!(
                    "malformed header line {:?}",
                    String::from_utf8_lossy(line)
                ))
            }
        };
        let token = |b: &u8| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(b);
        if !name.iter().all(token) {
            return Err(format!(
                "malformed header name {:?}",
                String::from_utf8_lossy(name)
            ));
        }
        let name = std::str::from_utf8(name).map_err(|_| "header name is not text")?;
        let value = match std::str::from_utf8(value) {
            Ok(v) => v.trim(),
            Err(_) => "",
        };
        headers.push((name, value));
    }
    Ok(Some(Head {
        minor_version,
        status,
        headers,
        len,
    }))
}

/// Whether `partial` (the start of a status line) can still become one.
fn status_prefix_ok(partial: &[u8]) -> Result<(), String> {
    let expected = b"HTTP/1.";
    let n = partial.len().min(expected.len());
    if partial[..n] == expected[..n] {
        Ok(())
    } else {
        Err(format!(
            "not an HTTP/1 response: {:?}",
            String::from_utf8_lossy(&partial[..n])
        ))
    }
}

pub(super) fn closed_early(what: &'static str, got: usize) -> ApiError {
    ApiError::Transport(format!(
        "the Lambda API closed the connection during the answer to {what} (after {got} bytes)"
    ))
}

/// Decodes a chunked body from the front of `buf`: the body and the bytes
/// it took, or `None` while incomplete. Chunk extensions and trailers are
/// read past.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&buf[at..]) else {
            return if buf.len() - at > 1024 {
                Err("chunk size line too long".into())
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| "bad chunk size")?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, each ended by CRLF, then an empty line.
            loop {
                let Some(eol) = find_crlf(&buf[at..]) else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(format!("chunked body over {MAX_BODY} bytes"));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHAT: &str = "test";

    fn parse(buf: &[u8], eof: bool) -> Result<Option<Parsed>, ApiError> {
        parse_response(buf, eof, WHAT)
    }

    fn complete(buf: &[u8], eof: bool) -> Parsed {
        parse(buf, eof).unwrap().expect("a complete response")
    }

    #[test]
    fn a_request_is_encoded_with_host_length_and_headers() {
        let req = Request::new("POST", "/2020-01-01/extension/register".into(), WHAT)
            .header("Lambda-Extension-Name", "bridge")
            .json("{}".into());
        assert_eq!(
            String::from_utf8(req.encode("127.0.0.1:9001")).unwrap(),
            "POST /2020-01-01/extension/register HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\
             Lambda-Extension-Name: bridge\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\n\r\n{}"
        );
        let get = Request::new("GET", "/next".into(), WHAT).header("Id", "a\r\nInjected: 1");
        assert_eq!(
            String::from_utf8(get.encode("h")).unwrap(),
            "GET /next HTTP/1.1\r\nHost: h\r\nId: a\r\n\r\n"
        );
    }

    #[test]
    fn content_length_frames_the_body_and_keeps_the_connection() {
        let full = b"HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: id-1\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..full.len() {
            assert!(
                parse(&full[..cut], false).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        let p = complete(full, false);
        assert_eq!(p.response.status, 200);
        assert_eq!(
            p.response.header("lambda-extension-identifier"),
            Some("id-1")
        );
        assert_eq!(&p.response.body[..], b"hello");
        assert!(p.keep_alive);
    }

    #[test]
    fn chunked_bodies_are_decoded_with_extensions_and_trailers() {
        let full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                     4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nTrailer: x\r\n\r\n";
        for cut in 0..full.len() {
            assert!(
                parse(&full[..cut], false).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        let p = complete(full, false);
        assert_eq!(&p.response.body[..], b"{\"a\":1}");
        assert!(p.keep_alive);
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(parse(bad, false), Err(ApiError::Protocol { .. })));
    }

    #[test]
    fn without_a_length_the_body_runs_to_the_close() {
        let buf = b"HTTP/1.1 200 OK\r\n\r\n{\"eventType\":\"SHUTDOWN\"}";
        assert!(parse(buf, false).unwrap().is_none());
        let p = complete(buf, true);
        assert_eq!(&p.response.body[..], b"{\"eventType\":\"SHUTDOWN\"}");
        assert!(!p.keep_alive);
    }

    #[test]
    fn close_and_http_1_0_end_reuse_and_keep_alive_restores_it() {
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert!(!complete(close, false).keep_alive);
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(!complete(old, false).keep_alive);
        let old_kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        assert!(complete(old_kept, false).keep_alive);
        // Bytes after the answer (never asked for): the connection is not reused.
        let extra = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert!(!complete(extra, false).keep_alive);
    }

    #[test]
    fn interim_answers_are_skipped() {
        let buf =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok";
        let p = complete(buf, false);
        assert_eq!(p.response.status, 202);
        assert_eq!(&p.response.body[..], b"ok");
    }

    #[test]
    fn oversized_malformed_and_truncated_answers_are_errors() {
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            parse(huge.as_bytes(), false),
            Err(ApiError::Protocol { .. })
        ));
        let long_head = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD + 1));
        assert!(matches!(
            parse(long_head.as_bytes(), false),
            Err(ApiError::Protocol { .. })
        ));
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(ApiError::Protocol { .. })
        ));
        let conflicting = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert!(matches!(
            parse(conflicting, false),
            Err(ApiError::Protocol { .. })
        ));
        let truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(
            parse(truncated, true),
            Err(ApiError::Transport(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 20", true),
            Err(ApiError::Transport(_))
        ));
    }

    #[test]
    fn heads_are_read_strictly_but_with_bare_line_feeds_and_no_reason() {
        let p = complete(b"HTTP/1.1 200\nContent-Length: 2\n\nok", false);
        assert_eq!((p.response.status, &p.response.body[..]), (200, &b"ok"[..]));
        let lead = complete(b"\r\nHTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(lead.response.status, 204);
        // Not HTTP at all: refused before the head could end.
        assert!(matches!(
            parse(b"SSH-2.0", false),
            Err(ApiError::Protocol { .. })
        ));
        assert!(parse(b"HTTP/1", false).unwrap().is_none());
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20x OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad, false), Err(ApiError::Protocol { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(
            parse(many.as_bytes(), false),
            Err(ApiError::Protocol { .. })
        ));
    }
}
