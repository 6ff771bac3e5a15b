//! The JSON form of an event, shared by the socket sink's JSON lines and the http sink.
//!
//! The format and its writer live in the SDK ([`sersync_plugin_sdk::json`]), so that the
//! example plugins write the very same objects; this module adds the http sink's batch
//! document and checks that the SDK's hand-written JSON is byte for byte what `serde_json`
//! writes (which the sinks used before, and which their peers have been parsing).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sersync_plugin_sdk::json::bytes_member;
pub(crate) use sersync_plugin_sdk::json::event_json;
use sersync_plugin_sdk::{Event, WatchId};

/// `{"events":[EVENT, …],"root":"/watched","watch":0}` (plus `root_b64` when the root is not
/// UTF-8): one POST body of the http sink, keys in the same order as in an event.
pub(crate) fn batch_document(root: &Path, watch: WatchId, events: &[Event]) -> String {
    let events: Vec<String> = events.iter().map(|e| event_json(e, root)).collect();
    format!(
        "{{\"events\":[{}],{},\"watch\":{}}}",
        events.join(","),
        bytes_member("root", root.as_os_str().as_bytes()),
        watch.0
    )
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::Value;
    use sersync_plugin_sdk::{EventKind, RelPath};

    use super::*;

    /// `text` is what `serde_json` writes for the value it parses to: same escapes, same key
    /// order, same numbers.
    fn assert_serde_json_writes(text: &str) -> Value {
        let value: Value = serde_json::from_str(text).expect(text);
        assert_eq!(value.to_string(), text);
        value
    }

    #[test]
    fn events_are_byte_identical_to_serde_json() {
        let mut names: Vec<Vec<u8>> = (1u8..=0x7f).map(|b| vec![b'a', b, b'z']).collect();
        names.extend([
            "dir/new name".into(),
            "ü/日本/😀".into(),
            b"bad\xffname".to_vec(),
            b"\xc3".to_vec(),
            b"\xed\xa0\x80".to_vec(),
            Vec::new(),
        ]);
        let mut millis: u64 = 1_764_031_125_123;
        for (i, name) in names.iter().enumerate() {
            // A spread of times: a simple LCG over about thirty years, plus round values.
            millis = millis
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                % 1_000_000_000_000
                + 1_000_000_000_000;
            let time = match i % 4 {
                0 => millis,
                1 => millis / 10 * 10,
                2 => millis / 1000 * 1000,
                _ => i as u64,
            };
            let mut event = Event::moved(
                RelPath::new(&name[..]),
                RelPath::new(&name[..]),
                i % 2 == 0,
                WatchId(0),
            );
            event.time = UNIX_EPOCH + Duration::from_millis(time);
            let root = Path::new(OsStr::from_bytes(b"/r\xfe"));
            let moved = assert_serde_json_writes(&event_json(&event, root));
            assert_eq!(moved["time"].as_f64(), Some(time as f64 / 1000.0));
            event.kind = EventKind::Delete;
            event.from = None;
            let deleted = assert_serde_json_writes(&event_json(&event, Path::new("/srv")));
            assert_eq!(deleted["from"], Value::Null);
        }
    }

    #[test]
    fn invalid_utf8_keeps_exact_bytes() {
        let e = Event::moved(
            RelPath::from("old\nname"),
            RelPath::new(&b"a\xffb"[..]),
            false,
            WatchId(0),
        );
        let v = assert_serde_json_writes(&event_json(&e, Path::new("/r")));
        assert_eq!(v["path"], "a\u{fffd}b");
        assert_eq!(v["path_b64"], "Yf9i");
        assert_eq!(v["from"], "old\nname");
        assert!(v.get("from_b64").is_none());
        assert_eq!(v["kind"], "move");
        assert_eq!(v["root"], "/r");
    }

    #[test]
    fn a_batch_document_holds_root_watch_and_events() {
        let e = Event::now(EventKind::Modify, RelPath::from("f"), false, WatchId(4));
        let root = Path::new(OsStr::from_bytes(b"/w\xff"));
        let doc = batch_document(root, WatchId(4), &[e.clone(), e]);
        let v = assert_serde_json_writes(&doc);
        assert_eq!(v["watch"], 4);
        assert_eq!(v["root_b64"], "L3f/");
        assert_eq!(v["events"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["events"][1]["root_b64"], "L3f/");
        assert_serde_json_writes(&batch_document(Path::new("/w"), WatchId(0), &[]));
    }
}
