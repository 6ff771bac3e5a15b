//! A batch as JSON lines, without a JSON library (the plugin has no dependency but the SDK).
//! (`as_encoded_bytes` is the raw file name on Unix and on WASI alike.)

use std::fmt::Write;

use sersync_plugin_sdk::{Batch, Event};

/// One line per event, each ending in `\n`.
pub fn batch_lines(batch: &Batch) -> String {
    let mut out = String::new();
    for event in &batch.events {
        line(&mut out, batch, event);
    }
    out
}

fn line(out: &mut String, batch: &Batch, e: &Event) {
    out.push_str("{\"watch\":");
    let _ = write!(out, "{}", batch.watch.0);
    bytes_field(out, "root", batch.root.as_os_str().as_encoded_bytes());
    let _ = write!(out, ",\"kind\":\"{}\"", e.kind);
    bytes_field(out, "path", e.path.as_bytes());
    if let Some(from) = &e.from {
        bytes_field(out, "from", from.as_bytes());
    }
    let nanos = e
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let _ = writeln!(
        out,
        ",\"is_dir\":{},\"time_unix_nanos\":{nanos}}}",
        e.is_dir
    );
}

/// `,"name":"text"` for UTF-8 bytes, `,"name_hex":"…"` for anything else.
fn bytes_field(out: &mut String, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let _ = write!(out, ",\"{name}\":\"");
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Err(_) => {
            let _ = write!(out, ",\"{name}_hex\":\"");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
            out.push('"');
        }
    }
}
