//! The JSON form of an event: the one format sersync writes events in, shared by the socket
//! sink's JSON lines, the http sink's documents and the example plugins. Written by hand, so
//! that the SDK stays free of dependencies and a plugin can use it on any target.
//!
//! # The format
//!
//! One event is one JSON object on one line:
//!
//! ```json
//! {"from":"dir/old name","is_dir":false,"kind":"move","path":"dir/new name","root":"/srv/www","time":1764031125.123}
//! ```
//!
//! | key | value |
//! | --- | --- |
//! | `kind` | [`EventKind::as_str`](crate::EventKind::as_str): `create`, `modify`, `close_write`, `attrib`, `delete`, `move`, `rescan` |
//! | `path` | the path relative to `root` (the empty string is the root itself) |
//! | `root` | the absolute watch root |
//! | `is_dir` | the path is (for a delete: was) a directory |
//! | `time` | when the change was seen: seconds since the Unix epoch with millisecond precision, a JSON number (`1764031125.123`, `1764031125.0`; `0.0` for a time before the epoch) |
//! | `from` | for a move, the old relative path; `null` otherwise |
//! | `path_b64`, `root_b64`, `from_b64` | only when that name is **not valid UTF-8**: its exact bytes in standard base64 (RFC 4648 §4, padded); the plain key then holds the name with each invalid sequence replaced by U+FFFD, for humans. A program that wants exact bytes reads `X_b64` when present, else `X`. |
//!
//! Keys come in byte order of their names (as above). That is the order the sinks wrote when
//! they built a `serde_json` map, kept so that their output did not change by a byte when they
//! moved to this writer; JSON readers do not care about the order.
//!
//! Strings are escaped as `serde_json` escapes them: `"` and `\` with a backslash; backspace,
//! form feed, newline, carriage return and tab as `\b` `\f` `\n` `\r` `\t`; every other
//! control character below U+0020 as `\u00XX` (lower-case hex); anything else, including
//! non-ASCII, as it is.

use std::fmt::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::{Batch, Event};
use crate::os_bytes;

/// One event as a JSON object (no trailing newline); `root` is its watch root.
pub fn event_json(event: &Event, root: &Path) -> String {
    let mut out = String::with_capacity(96 + 2 * event.path.as_bytes().len());
    out.push_str("{\"from\":");
    match &event.from {
        Some(from) => push_bytes_value(&mut out, "from", from.as_bytes()),
        None => out.push_str("null"),
    }
    out.push_str(",\"is_dir\":");
    out.push_str(if event.is_dir { "true" } else { "false" });
    out.push_str(",\"kind\":");
    push_string(&mut out, event.kind.as_str());
    out.push(',');
    push_member(&mut out, "path", event.path.as_bytes());
    out.push(',');
    push_member(&mut out, "root", os_bytes::bytes(root.as_os_str()));
    out.push_str(",\"time\":");
    push_time(&mut out, event.time);
    out.push('}');
    out
}

/// Every event of `batch` as a JSON object (see [`event_json`]), one per line, each line
/// ending in `\n`; the empty string for an empty batch.
pub fn batch_lines(batch: &Batch) -> String {
    let mut out = String::new();
    for event in &batch.events {
        out.push_str(&event_json(event, &batch.root));
        out.push('\n');
    }
    out
}

/// The object member(s) for a name held as raw bytes, without braces or surrounding commas:
/// `"key":"text"`, or `"key":"lossy text","key_b64":"…"` when the bytes are not UTF-8. For
/// documents that wrap events, such as the http sink's `{"events":[…],"root":…,"watch":…}`.
pub fn bytes_member(key: &str, bytes: &[u8]) -> String {
    let mut out = String::new();
    push_member(&mut out, key, bytes);
    out
}

/// Appends `"key":` and the value of [`push_bytes_value`].
fn push_member(out: &mut String, key: &str, bytes: &[u8]) {
    push_string(out, key);
    out.push(':');
    push_bytes_value(out, key, bytes);
}

/// Appends the bytes as a string value, and when they are not UTF-8 `,"key_b64":"…"` after it.
fn push_bytes_value(out: &mut String, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => push_string(out, text),
        Err(_) => {
            push_string(out, &String::from_utf8_lossy(bytes));
            out.push(',');
            push_string(out, &format!("{key}_b64"));
            out.push_str(":\"");
            push_base64(out, bytes);
            out.push('"');
        }
    }
}

/// Appends `s` as a JSON string, escaped as `serde_json` does it.
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte escaped is ASCII, so `i` and `i + 1` are character boundaries.
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// Appends seconds since the epoch with millisecond precision, the way `serde_json` writes the
/// `f64` `millis / 1000.0`: the shortest decimal that reads back as that number, which for a
/// whole number of milliseconds is the seconds, a point, and the milliseconds without trailing
/// zeros (at least one digit after the point).
fn push_time(out: &mut String, time: SystemTime) {
    let millis = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let (secs, millis) = (millis / 1000, millis % 1000);
    let _ = write!(out, "{secs}.");
    if millis == 0 {
        out.push('0');
    } else {
        let digits = format!("{millis:03}");
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// Appends standard base64 with padding (RFC 4648 §4).
fn push_base64(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::event::{EventKind, RelPath, WatchId};

    fn base64(bytes: &[u8]) -> String {
        let mut out = String::new();
        push_base64(&mut out, bytes);
        out
    }

    fn string(s: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, s);
        out
    }

    fn at(mut event: Event, millis: u64) -> Event {
        event.time = UNIX_EPOCH + Duration::from_millis(millis);
        event
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        assert_eq!(string("plain/ü 日本"), "\"plain/ü 日本\"");
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("\n\r\t\x08\x0c"), r#""\n\r\t\b\f""#);
        assert_eq!(string("\0\x01\x1f\x7f/"), "\"\\u0000\\u0001\\u001f\x7f/\"");
        assert_eq!(string(""), "\"\"");
    }

    #[test]
    fn an_event_is_one_object_with_keys_in_order() {
        let e = at(
            Event::now(
                EventKind::CloseWrite,
                RelPath::from("a/index.html"),
                false,
                WatchId(3),
            ),
            1_764_031_125_123,
        );
        assert_eq!(
            event_json(&e, Path::new("/data/www")),
            r#"{"from":null,"is_dir":false,"kind":"close_write","path":"a/index.html","root":"/data/www","time":1764031125.123}"#
        );
    }

    #[test]
    fn a_move_names_its_old_path() {
        let e = Event::moved(
            RelPath::from("dir/old\"name"),
            RelPath::from("dir/new name"),
            true,
            WatchId(0),
        );
        let e = at(e, 1_700_000_000_000);
        assert_eq!(
            event_json(&e, Path::new("/srv/www")),
            r#"{"from":"dir/old\"name","is_dir":true,"kind":"move","path":"dir/new name","root":"/srv/www","time":1700000000.0}"#
        );
    }

    #[test]
    fn names_that_are_not_utf8_keep_their_exact_bytes() {
        let e = Event::moved(
            RelPath::new(&b"old\xff"[..]),
            RelPath::new(&b"a\xffb"[..]),
            false,
            WatchId(0),
        );
        let root = PathBuf::from(os_bytes::os_str(b"/r\xfe"));
        assert_eq!(
            event_json(&at(e, 5), &root),
            "{\"from\":\"old\u{fffd}\",\"from_b64\":\"b2xk/w==\",\"is_dir\":false,\"kind\":\"move\",\
             \"path\":\"a\u{fffd}b\",\"path_b64\":\"Yf9i\",\"root\":\"/r\u{fffd}\",\"root_b64\":\"L3L+\",\
             \"time\":0.005}"
        );
        assert_eq!(bytes_member("root", b"/srv"), r#""root":"/srv""#);
        assert_eq!(
            bytes_member("root", b"/r\xfe"),
            "\"root\":\"/r\u{fffd}\",\"root_b64\":\"L3L+\""
        );
    }

    #[test]
    fn time_has_millisecond_precision_without_trailing_zeros() {
        let e = Event::now(EventKind::Modify, RelPath::from("f"), false, WatchId(0));
        let time = |e: &Event| {
            let json = event_json(e, Path::new("/"));
            json[json.find("\"time\":").unwrap() + 7..json.len() - 1].to_string()
        };
        for (millis, text) in [
            (0, "0.0"),
            (1, "0.001"),
            (10, "0.01"),
            (100, "0.1"),
            (1_000, "1.0"),
            (1_764_031_125_120, "1764031125.12"),
            (1_764_031_125_999, "1764031125.999"),
        ] {
            assert_eq!(time(&at(e.clone(), millis)), text);
        }
        let mut nanos = e.clone();
        nanos.time = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_999_999);
        assert_eq!(time(&nanos), "1700000000.0");
        let mut before = e;
        before.time = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(time(&before), "0.0");
    }

    #[test]
    fn a_batch_is_one_line_per_event() {
        let event = |path: &str| {
            at(
                Event::now(EventKind::Delete, RelPath::from(path), false, WatchId(1)),
                2_000,
            )
        };
        let mut batch = Batch {
            watch: WatchId(1),
            root: PathBuf::from("/w"),
            events: vec![event("x\ny"), event("")],
        };
        assert_eq!(
            batch_lines(&batch),
            concat!(
                r#"{"from":null,"is_dir":false,"kind":"delete","path":"x\ny","root":"/w","time":2.0}"#,
                "\n",
                r#"{"from":null,"is_dir":false,"kind":"delete","path":"","root":"/w","time":2.0}"#,
                "\n",
            )
        );
        batch.events.clear();
        assert_eq!(batch_lines(&batch), "");
    }
}
