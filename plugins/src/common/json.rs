//! The JSON form of an event, shared by the socket sink's JSON lines and the http sink.
//!
//! Paths are bytes. A path that is valid UTF-8 is a JSON string; one that is not is given twice:
//! `path` holds it with each invalid sequence replaced by U+FFFD (for humans), and `path_b64`
//! holds the exact bytes in standard base64 (for programs). The same goes for `from`/`from_b64`
//! and `root`/`root_b64`. A consumer that wants exact bytes reads `X_b64` when present and `X`
//! otherwise.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde_json::{Map, Value};
use sersync_plugin_sdk::Event;

/// `{"kind", "path", "root", "is_dir", "time", "from"}` for one event; `time` is seconds since
/// the Unix epoch with millisecond precision, `from` is `null` unless the event is a move.
pub(crate) fn event(event: &Event, root: &Path) -> Value {
    let mut map = Map::new();
    map.insert("kind".into(), event.kind.as_str().into());
    put_bytes(&mut map, "path", event.path.as_bytes());
    put_bytes(&mut map, "root", root.as_os_str().as_bytes());
    map.insert("is_dir".into(), event.is_dir.into());
    let millis = event
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    map.insert("time".into(), (millis as f64 / 1000.0).into());
    match &event.from {
        Some(from) => put_bytes(&mut map, "from", from.as_bytes()),
        None => {
            map.insert("from".into(), Value::Null);
        }
    }
    Value::Object(map)
}

/// Inserts `key` as a string, plus `key_b64` when the bytes are not UTF-8.
pub(crate) fn put_bytes(map: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            map.insert(key.into(), s.into());
        }
        Err(_) => {
            map.insert(key.into(), String::from_utf8_lossy(bytes).into());
            map.insert(format!("{key}_b64"), base64(bytes).into());
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::{EventKind, RelPath, WatchId};

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn invalid_utf8_keeps_exact_bytes() {
        let mut e = Event::now(
            EventKind::Move,
            RelPath::new(&b"a\xffb"[..]),
            false,
            WatchId(0),
        );
        e.from = Some(RelPath::from("old\nname"));
        let v = event(&e, Path::new("/r"));
        assert_eq!(v["path"], "a\u{fffd}b");
        assert_eq!(v["path_b64"], base64(b"a\xffb"));
        assert_eq!(v["from"], "old\nname");
        assert!(v.get("from_b64").is_none());
        assert_eq!(v["kind"], "move");
        assert_eq!(v["root"], "/r");
    }
}
