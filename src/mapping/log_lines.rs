//! Parsing of text log lines written by the managed runtimes' formatters, and
//! of log levels in every spelling they use.
//!
//! | runtime | line |
//! |---|---|
//! | Python | `[INFO]\t2025-03-04T10:15:30.610Z\t<requestId>\tmessage` |
//! | Node.js, .NET | `2025-03-04T10:15:30.610Z\t<requestId>\tINFO\tmessage` |
//! | Java `LambdaLogger` | `[INFO] message` |
//! | Java log4j2 Lambda layout | `2025-03-04 10:15:30 <requestId> INFO Class - message` |
//! | Ruby `Logger` | `I, [2025-03-04T10:15:30.689856 #8]  INFO <requestId> -- : message` |
//! | Rust `tracing`, many others | `2025-03-04T10:15:30.610Z  INFO target: message` |
//! | Python `logging.basicConfig` | `WARNING:root:message` |
//! | Lambda, unhandled exception | `LAMBDA_WARNING: Unhandled exception. …` (WARN) |
//! | `print`, `puts`, Go `log` | anything: no level |
//!
//! Parsing is hand-written (no regex engine) and borrows from the line.

use crate::time::{parse_rfc3339, UnixNanos};

/// Maps a level token of any runtime to a severity number (the first of
/// each OpenTelemetry severity range, except where a source has two levels
/// in one range: Critical → 18). Case-insensitive.
pub fn level_number(token: &str) -> Option<i32> {
    let t = token.trim();
    if t.is_empty() || t.len() > 12 {
        return None;
    }
    let lower = t.to_ascii_lowercase();
    Some(match lower.as_str() {
        "trace" | "trce" | "verbose" => 1,
        "debug" | "dbug" => 5,
        "info" | "information" | "notice" => 9,
        "warn" | "warning" => 13,
        "error" | "fail" | "err" => 17,
        "critical" | "crit" => 18,
        "fatal" | "alert" | "emergency" | "emerg" | "panic" => 21,
        _ => return None,
    })
}

/// What a text line revealed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextLine<'a> {
    /// The level token as written (kept as the severity text).
    pub level: Option<&'a str>,
    pub severity_number: i32,
    pub timestamp: Option<UnixNanos>,
    pub request_id: Option<&'a str>,
    /// The line without the runtime's prefix (and without a trailing newline).
    pub message: &'a str,
}

/// How Lambda's runtimes start their warning about an unhandled exception
/// (`LAMBDA_WARNING: Unhandled exception. The most likely cause is …`).
pub const LAMBDA_WARNING: &str = "LAMBDA_WARNING:";

/// Parses one text record. Unrecognised lines come back with their whole
/// text as the message and no level.
pub fn parse_text(record: &str) -> TextLine<'_> {
    let line = trim_newline(record);
    parse_lambda_warning(line)
        .or_else(|| parse_python(line))
        .or_else(|| parse_tab_separated(line))
        .or_else(|| parse_ruby(line))
        .or_else(|| parse_bracket_level(line))
        .or_else(|| parse_log4j(line))
        .or_else(|| parse_timestamp_level(line))
        .or_else(|| parse_level_colon(line))
        .unwrap_or(TextLine {
            message: line,
            ..TextLine::default()
        })
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\n', '\r'])
}

fn with_level<'a>(
    level: &'a str,
    timestamp: Option<UnixNanos>,
    request_id: Option<&'a str>,
    message: &'a str,
) -> Option<TextLine<'a>> {
    let severity_number = level_number(level)?;
    Some(TextLine {
        level: Some(level),
        severity_number,
        timestamp,
        request_id: request_id.filter(|r| is_request_id(r)),
        message,
    })
}

/// Request ids are UUIDs on Lambda; anything else (`undefined`, empty) is none.
fn is_request_id(s: &str) -> bool {
    s.len() >= 8 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// `LAMBDA_WARNING: …`: a WARN record, kept whole (the prefix says what it is).
fn parse_lambda_warning(line: &str) -> Option<TextLine<'_>> {
    line.starts_with(LAMBDA_WARNING).then_some(TextLine {
        level: Some("WARN"),
        severity_number: 13,
        timestamp: None,
        request_id: None,
        message: line,
    })
}

/// `[LEVEL]\tTS\tRID\tMSG` (Python).
fn parse_python(line: &str) -> Option<TextLine<'_>> {
    let rest = line.strip_prefix('[')?;
    let (level, rest) = rest.split_once("]\t")?;
    let mut parts = rest.splitn(3, '\t');
    let ts = parts.next()?;
    let rid = parts.next()?;
    let msg = parts.next().unwrap_or("");
    let ts = parse_rfc3339(ts)?;
    with_level(level, Some(ts), Some(rid), msg)
}

/// `TS\tRID\tLEVEL\tMSG` (Node.js, .NET).
fn parse_tab_separated(line: &str) -> Option<TextLine<'_>> {
    let mut parts = line.splitn(4, '\t');
    let ts = parse_rfc3339(parts.next()?)?;
    let rid = parts.next()?;
    let level = parts.next()?;
    let msg = parts.next().unwrap_or("");
    with_level(level, Some(ts), Some(rid), msg)
}

/// `L, [TS #PID]  LEVEL RID -- PROGNAME: MSG` (Ruby).
fn parse_ruby(line: &str) -> Option<TextLine<'_>> {
    let b = line.as_bytes();
    if b.len() < 6 || !b"DIWEFA".contains(&b[0]) || &b[1..4] != b", [" {
        return None;
    }
    let rest = &line[4..];
    let (inside, rest) = rest.split_once(']')?;
    let ts = inside.split(" #").next().and_then(parse_rfc3339);
    let rest = rest.trim_start();
    let (level, rest) = rest.split_once(' ')?;
    let (head, msg) = rest.split_once(" -- ")?;
    let rid = head.trim();
    let msg = msg.split_once(": ").map(|(_, m)| m).unwrap_or(msg);
    with_level(level, ts, Some(rid), msg)
}

/// `[LEVEL] MSG` (Java `LambdaLogger`, and many hand-rolled formats).
fn parse_bracket_level(line: &str) -> Option<TextLine<'_>> {
    let rest = line.strip_prefix('[')?;
    let (level, msg) = rest.split_once(']')?;
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    with_level(level, None, None, msg)
}

/// `YYYY-MM-DD HH:MM:SS[.fff] RID LEVEL REST` (log4j2 Lambda pattern).
fn parse_log4j(line: &str) -> Option<TextLine<'_>> {
    if line.len() < 20 || line.as_bytes()[10] != b' ' {
        return None;
    }
    let (date, rest) = line.split_at(10);
    let rest = &rest[1..];
    let (time, rest) = rest.split_once(' ')?;
    let ts = parse_rfc3339(&format!("{date}T{time}"))?;
    let rest = rest.trim_start();
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    // During init the request-id column is empty (two spaces before the level).
    let (rid, rest) = if is_request_id(first) {
        (Some(first), after.trim_start())
    } else {
        (None, rest)
    };
    let (level, msg) = rest.split_once(' ').unwrap_or((rest, ""));
    with_level(level, Some(ts), rid, msg.trim_start())
}

/// `TS LEVEL MSG` with any amount of spaces (Rust `tracing`, Go zerolog
/// console, many others).
fn parse_timestamp_level(line: &str) -> Option<TextLine<'_>> {
    let (ts, rest) = line.split_once(' ')?;
    let ts = parse_rfc3339(ts)?;
    let rest = rest.trim_start();
    let (level, msg) = rest.split_once(' ').unwrap_or((rest, ""));
    with_level(level, Some(ts), None, msg.trim_start())
}

/// `LEVEL:logger:MSG` or `LEVEL: MSG` (Python's default `logging` format).
fn parse_level_colon(line: &str) -> Option<TextLine<'_>> {
    let (level, rest) = line.split_once(':')?;
    if level.is_empty() || !level.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    // `LEVEL:logger:message`: drop a logger name (no spaces) before a second colon.
    let msg = match rest.split_once(':') {
        Some((logger, msg)) if !logger.is_empty() && !logger.contains(' ') => msg,
        _ => rest,
    };
    with_level(level, None, None, msg.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RID: &str = "8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11";

    #[test]
    fn python() {
        let l = parse_text("[WARNING]\t2025-03-04T10:15:30.610Z\t8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11\tlow stock\n");
        assert_eq!(l.level, Some("WARNING"));
        assert_eq!(l.severity_number, 13);
        assert_eq!(l.request_id, Some(RID));
        assert_eq!(l.timestamp, Some(1_741_083_330_610_000_000));
        assert_eq!(l.message, "low stock");
    }

    #[test]
    fn node_and_dotnet() {
        let l = parse_text("2025-03-04T10:15:30.610Z\t8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11\tERROR\tInvoke Error \r{\"errorType\":\"Error\"}");
        assert_eq!(
            (l.level, l.severity_number, l.request_id),
            (Some("ERROR"), 17, Some(RID))
        );
        let l = parse_text("2025-03-04T10:15:30.610Z\tundefined\tINFO\tinit line");
        assert_eq!(
            (l.severity_number, l.request_id, l.message),
            (9, None, "init line")
        );
        let l = parse_text("2025-03-04T10:15:30.610Z\t8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11\tcrit\tdisk full\nSystem.Exception: x\n   at Foo()");
        assert_eq!((l.level, l.severity_number), (Some("crit"), 18));
        assert!(l.message.ends_with("at Foo()"));
        let l = parse_text(
            "2025-03-04T10:15:30.610Z\t8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11\tfail\toops",
        );
        assert_eq!(l.severity_number, 17);
    }

    #[test]
    fn java_and_log4j() {
        let l = parse_text("[ERROR] order failed");
        assert_eq!(
            (l.level, l.severity_number, l.message),
            (Some("ERROR"), 17, "order failed")
        );
        let l = parse_text(
            "2025-03-04 10:15:30 8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11 WARN  OrderHandler - slow",
        );
        assert_eq!(
            (l.severity_number, l.request_id, l.message),
            (13, Some(RID), "OrderHandler - slow")
        );
    }

    #[test]
    fn ruby() {
        let l = parse_text("E, [2025-03-04T10:15:30.689856 #8] ERROR 8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11 -- : ## EVENT");
        assert_eq!(
            (l.level, l.severity_number, l.request_id, l.message),
            (Some("ERROR"), 17, Some(RID), "## EVENT")
        );
        assert_eq!(l.timestamp, Some(1_741_083_330_689_856_000));
        let l = parse_text("I, [2025-03-04T10:15:30.689856 #8]  INFO 8f5ea1f1-3c2d-4f6b-9a51-0f3c9c2b7e11 -- app: hello");
        assert_eq!((l.severity_number, l.message), (9, "hello"));
    }

    #[test]
    fn generic_formats() {
        let l = parse_text("2025-03-04T10:15:30.610Z  INFO orders: created");
        assert_eq!((l.severity_number, l.message), (9, "orders: created"));
        let l = parse_text("WARNING:root:careful");
        assert_eq!(
            (l.level, l.severity_number, l.message),
            (Some("WARNING"), 13, "careful")
        );
        let l = parse_text("ERROR: disk full");
        assert_eq!((l.severity_number, l.message), (17, "disk full"));
        let l = parse_text("2025-03-04 10:15:30  INFO  OrderHandler - init");
        assert_eq!(
            (l.severity_number, l.request_id, l.message),
            (9, None, "OrderHandler - init")
        );
    }

    #[test]
    fn plain_lines_have_no_level() {
        for line in [
            "hello world",
            "Error handling is fine: not a level",
            "[1, 2, 3]",
            "{\"a\":1}",
            "URL: http://x",
        ] {
            let l = parse_text(line);
            assert_eq!(l.level, None, "{line}");
            assert_eq!(l.severity_number, 0);
            assert_eq!(l.message, line);
        }
    }

    #[test]
    fn level_tokens() {
        for (t, n) in [
            ("TRACE", 1),
            ("trce", 1),
            ("Debug", 5),
            ("dbug", 5),
            ("INFO", 9),
            ("Information", 9),
            ("WARN", 13),
            ("WARNING", 13),
            ("warn", 13),
            ("ERROR", 17),
            ("fail", 17),
            ("CRITICAL", 18),
            ("crit", 18),
            ("FATAL", 21),
        ] {
            assert_eq!(level_number(t), Some(n), "{t}");
        }
        assert_eq!(level_number("UNDEFINED"), None);
        assert_eq!(level_number(""), None);
    }
}
