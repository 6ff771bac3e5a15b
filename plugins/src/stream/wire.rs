//! The messages of the change stream.
//!
//! **One message per batch** (split into parts when it would pass the server's
//! `max_payload`): a batch is the unit the lane delivers and a follower applies (one rsync run
//! for all its paths), so one publish and one ack per batch keep the cost per change low under
//! load, and a part is never a fraction of an event.
//!
//! - **Payload**: the batch's events as JSON lines, exactly the SDK's event format
//!   ([`sersync_plugin_sdk::json::event_json`]: `kind`, `path`, `from`, `is_dir`, `root`,
//!   `time`, and `X_b64` beside a name that is not UTF-8), one object per line, each line
//!   ending in `\n`. A consumer needs nothing else.
//! - **Headers**: `Nats-Msg-Id: BATCH-IofN` (JetStream's deduplication key), `Sersync-Batch:
//!   BATCH`, `Sersync-Part: I/N` (1-based), `Sersync-Events: COUNT`.
//! - **The id** `BATCH` is the first 128 bits, in hex, of the SHA-256 of the subject, the
//!   watch root and the whole payload: a batch the lane retries unchanged (a publish whose ack
//!   was lost) gets the same ids, and JetStream drops the copies within its duplicate window; a
//!   batch merged with newer changes is a new batch with new ids.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use sersync_plugin_sdk::json::event_json;
use sersync_plugin_sdk::{Batch, Event, EventKind, RelPath, WatchId};
use sha2::{Digest, Sha256};

/// JetStream's deduplication header.
pub const MESSAGE_ID: &str = "Nats-Msg-Id";
/// The batch id a part belongs to.
pub const BATCH: &str = "Sersync-Batch";
/// `I/N`: which part of its batch a message is (1-based).
pub const PART: &str = "Sersync-Part";
/// How many events the message holds.
pub const EVENTS: &str = "Sersync-Events";

/// What the headers of a message take at most, kept free below the server's `max_payload`.
pub const HEADER_ROOM: usize = 512;

/// One message of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The batch's id (32 hex digits).
    pub batch: String,
    /// Which part, from 1.
    pub index: usize,
    /// Of how many.
    pub count: usize,
    /// Events in this part.
    pub events: usize,
    /// JSON lines, one per event.
    pub payload: String,
}

impl Part {
    /// `BATCH-IofN`: the `Nats-Msg-Id`.
    pub fn message_id(&self) -> String {
        format!("{}-{}of{}", self.batch, self.index, self.count)
    }

    /// `I/N`: the `Sersync-Part` header.
    pub fn part_header(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// The messages `batch` is published as on `subject`, each payload at most `max_payload`
/// bytes less [`HEADER_ROOM`]. An event whose line alone is longer cannot be sent.
pub fn parts(batch: &Batch, subject: &str, max_payload: usize) -> Result<Vec<Part>, String> {
    let limit = max_payload.saturating_sub(HEADER_ROOM).max(1);
    let mut chunks: Vec<(String, usize)> = Vec::new();
    let mut hash = Sha256::new();
    hash.update(subject.as_bytes());
    hash.update([0]);
    hash.update(batch.root.as_os_str().as_encoded_bytes());
    hash.update([0]);
    for event in &batch.events {
        let mut line = event_json(event, &batch.root);
        line.push('\n');
        if line.len() > limit {
            return Err(format!(
                "the event of {} takes {} bytes, more than a message may hold ({limit})",
                event.path,
                line.len()
            ));
        }
        hash.update(line.as_bytes());
        match chunks.last_mut() {
            Some((text, n)) if text.len() + line.len() <= limit => {
                text.push_str(&line);
                *n += 1;
            }
            _ => chunks.push((line, 1)),
        }
    }
    let digest = hash.finalize();
    let batch_id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let count = chunks.len();
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(i, (payload, events))| Part {
            batch: batch_id.clone(),
            index: i + 1,
            count,
            events,
            payload,
        })
        .collect())
}

/// One change read back from a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The watch root on the publishing machine.
    pub root: PathBuf,
    /// The event (its `watch` is always 0: ids are not published).
    pub event: Event,
}

/// Reads a message's payload back into its changes. A line that is not an event of this
/// format is an error naming the line.
pub fn decode(payload: &[u8]) -> Result<Vec<Change>, String> {
    payload
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(n, line)| decode_line(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

fn decode_line(line: &[u8]) -> Result<Change, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let kind = match value.get("kind").and_then(|k| k.as_str()) {
        Some("create") => EventKind::Create,
        Some("modify") => EventKind::Modify,
        Some("close_write") => EventKind::CloseWrite,
        Some("attrib") => EventKind::Attrib,
        Some("delete") => EventKind::Delete,
        Some("move") => EventKind::Move,
        Some("rescan") => EventKind::Rescan,
        other => return Err(format!("unknown kind {other:?}")),
    };
    let path = bytes(&value, "path")?.ok_or("no path")?;
    let from = bytes(&value, "from")?;
    let root = bytes(&value, "root")?.ok_or("no root")?;
    let seconds = value.get("time").and_then(|t| t.as_f64()).unwrap_or(0.0);
    let time = UNIX_EPOCH + Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default();
    Ok(Change {
        root: PathBuf::from(std::ffi::OsString::from_vec(root)),
        event: Event {
            kind,
            path: RelPath::new(path),
            from: from.map(RelPath::new),
            is_dir: value
                .get("is_dir")
                .and_then(|d| d.as_bool())
                .unwrap_or(false),
            watch: WatchId(0),
            time,
        },
    })
}

/// The exact bytes of `key`: `key_b64` when present, else the string; `None` for null.
fn bytes(value: &serde_json::Value, key: &str) -> Result<Option<Vec<u8>>, String> {
    if let Some(b64) = value.get(format!("{key}_b64")).and_then(|v| v.as_str()) {
        return base64(b64).map(Some);
    }
    match value.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.as_bytes().to_vec())),
        Some(other) => Err(format!("{key} is {other}, not a string")),
    }
}

/// Standard padded base64 (RFC 4648 §4), as the SDK writes it.
fn base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("{text:?} is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(names: &[&[u8]]) -> Batch {
        Batch {
            watch: WatchId(0),
            root: PathBuf::from("/srv/www"),
            events: names
                .iter()
                .map(|n| Event::now(EventKind::CloseWrite, RelPath::new(*n), false, WatchId(0)))
                .collect(),
        }
    }

    #[test]
    fn parts_round_trip_every_byte_and_ids_are_deterministic() {
        let mut b = batch(&[b"plain", b"new\nline", b"\xff\xfe bytes", b"-rf $(x)"]);
        b.events.push(Event::moved(
            RelPath::new(&b"old\xff"[..]),
            RelPath::new(&b"dir/new"[..]),
            true,
            WatchId(0),
        ));
        let one = parts(&b, "sersync.www", 1 << 20).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].message_id(), format!("{}-1of1", one[0].batch));
        assert_eq!(
            parts(&b, "sersync.www", 1 << 20).unwrap(),
            one,
            "same batch, same ids"
        );
        assert_ne!(parts(&b, "other", 1 << 20).unwrap()[0].batch, one[0].batch);
        let back = decode(one[0].payload.as_bytes()).unwrap();
        assert_eq!(back.len(), b.events.len());
        for (change, event) in back.iter().zip(&b.events) {
            assert_eq!(change.root, b.root);
            assert_eq!(change.event.kind, event.kind);
            assert_eq!(change.event.path, event.path);
            assert_eq!(change.event.from, event.from);
            assert_eq!(change.event.is_dir, event.is_dir);
        }
    }

    #[test]
    fn a_large_batch_is_split_below_the_limit_with_one_id_per_part() {
        let names: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("dir/file-{i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
        let split = parts(&batch(&refs), "s", 16 * 1024).unwrap();
        assert!(split.len() > 5, "{} parts", split.len());
        let mut ids: Vec<String> = split.iter().map(Part::message_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), split.len());
        assert!(split
            .iter()
            .all(|p| p.payload.len() <= 16 * 1024 - HEADER_ROOM));
        assert!(split
            .iter()
            .all(|p| p.count == split.len() && p.batch == split[0].batch));
        let total: usize = split
            .iter()
            .map(|p| decode(p.payload.as_bytes()).unwrap().len())
            .sum();
        assert_eq!(total, 2000);
    }

    #[test]
    fn an_event_too_large_for_one_message_is_an_error() {
        let long = vec![b'x'; 4000];
        assert!(parts(&batch(&[&long]), "s", 1024).is_err());
    }

    #[test]
    fn foreign_lines_are_errors_with_their_line() {
        let e = decode(b"{\"kind\":\"create\",\"path\":\"a\",\"root\":\"/r\"}\nnot json\n")
            .unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
    }
}
